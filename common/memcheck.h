/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The test guest's memory checker: given a view of a paused test guest's
 * RAM, tell page by page whether memory is intact and consistent with the
 * guest's write order (page format in common/testguest.h).  Used by
 * `vmmctl check` and by tests; pure computation, no I/O.
 *
 * Each vCPU walks its slice in ascending order writing generation g+1
 * over g, so a paused slice must read: pages of generation h, then at
 * most one page caught mid-write from h-1 to h, then pages of h-1 (or all
 * pages of one generation).  h must be the vCPU's current pass or the one
 * before.  Pages of the test range outside every slice must be zero.
 */
#ifndef TERN_MEMCHECK_H
#define TERN_MEMCHECK_H

#include <stddef.h>
#include <stdint.h>

#define MEMCHECK_MAX_REGIONS 4
#define MEMCHECK_MAX_REPORTS 8

struct memcheck_view {
	int nregions;
	struct {
		uint64_t gpa;
		uint64_t size;
		const uint8_t *host;
	} r[MEMCHECK_MAX_REGIONS];
};

struct memcheck_result {
	uint64_t mode;                  /* TG_MODE_* */
	uint64_t nvcpus;
	uint64_t pages;                 /* pages checked */
	uint64_t bad;                   /* pages that are wrong */
	uint64_t guest_errors;          /* failures the guest itself reported */
	uint64_t gen_min, gen_max;      /* generations seen in the test range */
	int nreports;
	char reports[MEMCHECK_MAX_REPORTS][160]; /* the first problems, in words */
};

/* The host address of [gpa, gpa + len) if it lies in one region. */
const uint8_t *memcheck_ptr(const struct memcheck_view *v, uint64_t gpa,
			    uint64_t len);

/*
 * Returns 0 when the check ran (res->bad and res->guest_errors say
 * whether memory is intact), -ENOENT when the memory holds no test guest
 * parameters, -EINVAL when the parameters are inconsistent with the RAM.
 */
int memcheck_run(const struct memcheck_view *v, struct memcheck_result *res);

#endif
