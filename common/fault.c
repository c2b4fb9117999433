// SPDX-License-Identifier: GPL-2.0-only
/* Fault injection for tests (fault.h). */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "common/fault.h"
#include "common/log.h"

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
