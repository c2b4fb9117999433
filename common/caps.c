// SPDX-License-Identifier: GPL-2.0-only
/*
 * Dropping privilege after the privileged set-up steps: optionally become
 * another user while keeping a few capabilities, drop every other one
 * from the effective, permitted, inheritable, ambient and bounding sets,
 * and set PR_SET_NO_NEW_PRIVS.  Called by migd workers and faultd.
 */
#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "common/caps.h"

static bool caps_listed(const cap_value_t *keep, size_t nkeep, cap_value_t c)
{
	size_t i;

	for (i = 0; i < nkeep; i++)
		if (keep[i] == c)
			return true;
	return false;
}

static bool caps_have_permitted(cap_value_t c)
{
	cap_flag_value_t v = CAP_CLEAR;
	cap_t cur = cap_get_proc();

	if (!cur)
		return false;
	cap_get_flag(cur, c, CAP_PERMITTED, &v);
	cap_free(cur);
	return v == CAP_SET;
}

/*
 * Without CAP_SETPCAP the bounding set cannot shrink; it only limits what
 * exec can grant, and PR_SET_NO_NEW_PRIVS already stops that, so skip it.
 */
static int caps_drop_bounding(const cap_value_t *keep, size_t nkeep)
{
	cap_value_t c, max = (cap_value_t)cap_max_bits();

	if (!caps_have_permitted(CAP_SETPCAP))
		return 0;
	for (c = 0; c < max; c++) {
		if (caps_listed(keep, nkeep, c) || cap_get_bound(c) != 1)
			continue;
		if (cap_drop_bound(c) < 0)
			return -errno;
	}
	return 0;
}

static int caps_switch_user(uid_t uid, gid_t gid)
{
	if (uid == (uid_t)-1 && gid == (gid_t)-1)
		return 0;
	if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
		return -errno;
	if (gid != (gid_t)-1 &&
	    (setgroups(1, &gid) < 0 || setresgid(gid, gid, gid) < 0))
		return -errno;
	if (gid == (gid_t)-1 && setgroups(0, NULL) < 0)
		return -errno;
	if (uid != (uid_t)-1 && setresuid(uid, uid, uid) < 0)
		return -errno;
	if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
		return -errno;
	return 0;
}

static int caps_set_exactly(const cap_value_t *keep, size_t nkeep)
{
	cap_t caps = cap_init();
	int r = 0;

	if (!caps)
		return -ENOMEM;
	if (nkeep &&
	    (cap_set_flag(caps, CAP_EFFECTIVE, (int)nkeep, keep, CAP_SET) < 0 ||
	     cap_set_flag(caps, CAP_PERMITTED, (int)nkeep, keep, CAP_SET) < 0))
		r = -errno;
	if (r == 0 && cap_set_proc(caps) < 0)
		r = -errno;
	cap_free(caps);
	return r;
}

int caps_drop(const cap_value_t *keep, size_t nkeep, uid_t uid, gid_t gid)
{
	size_t i;
	int r;

	for (i = 0; i < nkeep; i++)
		if (!cap_valid(keep[i]))
			return -EINVAL;
	r = caps_drop_bounding(keep, nkeep);
	if (r == 0)
		r = caps_switch_user(uid, gid);
	if (r == 0)
		r = caps_set_exactly(keep, nkeep);
	if (r == 0 && CAP_AMBIENT_SUPPORTED() && cap_reset_ambient() < 0)
		r = -errno;
	if (r == 0 && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		r = -errno;
	return r;
}

int caps_effective_mask(uint64_t *ret)
{
	char line[256];
	uint64_t mask;
	FILE *f;
	int r = -ENOENT;

	f = fopen("/proc/thread-self/status", "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "CapEff: %" SCNx64, &mask) == 1) {
			*ret = mask;
			r = 0;
			break;
		}
	}
	fclose(f);
	return r;
}
