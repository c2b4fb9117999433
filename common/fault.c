// SPDX-License-Identifier: GPL-2.0-only
/* Fault injection for tests (fault.h). */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fault.h"
#include "common/log.h"
#include "common/util.h"

#define FAULT_HOLD_MAX_NS (60 * 1000000000ULL)  /* a hold's file, at most */

bool fault_active(const char *name)
{
	const char *f = getenv("TERN_FAULT");
	size_t n = strlen(name);

	while (f && *f) {
		if (!strncmp(f, name, n) && (f[n] == 0 || f[n] == ','))
			return true;
		f = strchr(f, ',');
		if (f)
			f++;
	}
	return false;
}

void fault_point(const char *name)
{
	if (fault_active(name)) {
		log_warnx("TERN_FAULT: crashing at %s", name);
		raise(SIGKILL);
	}
}

bool fault_held(const char *dir, const char *name)
{
	char path[PATH_MAX];

	if (!fault_active(name) ||
	    snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
		return false;
	return access(path, F_OK) == 0;
}

bool fault_hold_over(const char *dir, const char *name, uint64_t since_ns,
		     unsigned int ms)
{
	uint64_t held = now_ns() - since_ns;

	if (!fault_active(name))
		return true;
	if (held < ms * 1000000ULL)
		return false;
	return held >= FAULT_HOLD_MAX_NS || !fault_held(dir, name);
}

void fault_hold(const char *dir, const char *name, unsigned int ms)
{
	uint64_t since = now_ns();

	while (!fault_hold_over(dir, name, since, ms))
		usleep(10000);
}
