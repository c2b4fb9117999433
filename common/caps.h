/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Dropping privilege with libcap: keep exactly the listed capabilities
 * (effective and permitted), drop the rest from the bounding set too, and
 * set PR_SET_NO_NEW_PRIVS so nothing can be gained back through exec.
 */
#ifndef TERN_CAPS_H
#define TERN_CAPS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/capability.h>

/*
 * Optionally switch to uid/gid first (pass (uid_t)-1 to stay), keeping
 * the listed capabilities across the switch.  Returns 0 or -errno.
 */
int caps_drop(const cap_value_t *keep, size_t nkeep, uid_t uid, gid_t gid);
/* The calling thread's effective set (capabilities are per thread), as
 * the CapEff mask of /proc/thread-self/status. */
int caps_effective_mask(uint64_t *ret);

#endif
