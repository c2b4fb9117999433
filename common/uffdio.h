/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Placing pages through a userfaultfd, the one loop every placer needs:
 * UFFDIO_COPY (or UFFDIO_ZEROPAGE) of a run, continued after a partial
 * placement, retried while the address space is changing (EAGAIN,
 * EINTR), and stopped at a page that is already there, which each caller
 * treats its own way.
 */
#ifndef TERN_UFFDIO_H
#define TERN_UFFDIO_H

#include <stdint.h>

#define UFFDIO_AGAIN_MAX 1000           /* EAGAIN/EINTR in a row without progress */

/*
 * Place len bytes at dst (page multiples): copied from src, or zero pages
 * when src is NULL.  *ret_done is what was placed from dst on; 0 when all
 * of it was, -EEXIST when the page at dst + *ret_done is already there,
 * or another -errno.
 */
int uffdio_fill(int uffd, uint64_t dst, const void *src, uint64_t len,
		uint64_t *ret_done);

#endif
