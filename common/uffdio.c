// SPDX-License-Identifier: GPL-2.0-only
/* Placing pages through a userfaultfd (see common/uffdio.h). */
#include <errno.h>
#include <linux/userfaultfd.h>
#include <stddef.h>
#include <sys/ioctl.h>

#include "common/uffdio.h"

int uffdio_fill(int uffd, uint64_t dst, const void *src, uint64_t len,
		uint64_t *ret_done)
{
	uint64_t done = 0;
	unsigned int again = 0;
	int64_t got;
	int r = 0, err;

	while (done < len) {
		if (src) {
			struct uffdio_copy c = {
				.dst = dst + done,
				.src = (uint64_t)(uintptr_t)src + done,
				.len = len - done,
			};

			err = ioctl(uffd, UFFDIO_COPY, &c) < 0 ? errno : 0;
			got = c.copy;
		} else {
			struct uffdio_zeropage z = {
				.range = { .start = dst + done, .len = len - done },
			};

			err = ioctl(uffd, UFFDIO_ZEROPAGE, &z) < 0 ? errno : 0;
			got = z.zeropage;
		}
		if (!err) {
			done = len;
		} else if (got > 0) {
			done += (uint64_t)got;  /* a partial run: on from there */
			again = 0;
		} else if ((err == EAGAIN || err == EINTR) &&
			   ++again <= UFFDIO_AGAIN_MAX) {
			continue;
		} else {
			r = -err;               /* -EEXIST: the caller's turn */
			break;
		}
	}
	*ret_done = done;
	return r;
}
