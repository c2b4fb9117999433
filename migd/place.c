// SPDX-License-Identifier: GPL-2.0-only
/*
 * First-time pages on the destination.
 *
 * A page written through the mapping is zeroed by its fault first, then
 * overwritten.  pwrite() into the memfd skips the zeroing, but holds the
 * inode's lock, so the ram channels' threads wait for each other on one
 * memfd (and spin doing it).  UFFDIO_COPY allocates, copies and maps in
 * one step with neither: measured here into a fresh 1 GiB memfd, 64-page
 * runs, two threads, 4.3-4.8 GB/s against 2.1-2.7 GB/s for pwrite().
 *
 * So each memfd gets a second mapping here, registered with a
 * userfaultfd of this process, used only as the target of UFFDIO_COPY:
 * nothing ever reads or writes it, so no fault is ever raised on it and
 * the uffd needs no handler (and only UFFD_USER_MODE_ONLY, which any
 * process may have).  A page already present answers EEXIST and is
 * written through the ordinary mapping.  Without userfaultfd (a kernel or
 * a policy that refuses it) pages go by pwrite(), as before.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/uffdio.h"
#include "common/util.h"
#include "migd/migd.h"

int ram_place_open(struct ram_place *p, const struct ram_view *v)
{
	struct uffdio_api api = { .api = UFFD_API };
	unsigned int i;
	int r;

	memset(p, 0, sizeof(*p));
	p->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
	if (p->uffd < 0)
		return -errno;
	if (ioctl(p->uffd, UFFDIO_API, &api) < 0)
		goto fail;
	for (i = 0; i < v->n; i++) {
		struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MISSING };
		void *at = mmap(NULL, v->r[i].size, PROT_READ | PROT_WRITE,
				MAP_SHARED, v->r[i].fd, 0);

		if (at == MAP_FAILED)
			goto fail;
		p->at[i] = at;
		p->n = i + 1;
		reg.range.start = (uintptr_t)at;
		reg.range.len = v->r[i].size;
		if (ioctl(p->uffd, UFFDIO_REGISTER, &reg) < 0)
			goto fail;
	}
	return 0;
fail:
	r = -errno;
	ram_place_close(p, v);
	return r;
}

void ram_place_close(struct ram_place *p, const struct ram_view *v)
{
	unsigned int i;

	for (i = 0; i < p->n; i++)
		munmap(p->at[i], v->r[i].size);
	if (p->uffd >= 0)
		close(p->uffd);
	p->n = 0;
	p->uffd = -1;
}

/* n adjacent pages from src to off, by pwrite(): 0 or -errno. */
static int place_pwrite(const struct ram_view *v, unsigned int region,
			uint64_t off, const uint8_t *src, uint64_t len)
{
	ssize_t w;

	while (len) {
		w = pwrite(v->r[region].fd, src, len, (off_t)off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		/* A short write leaves the rest for the next turn. */
		w = ALIGN_DOWN(w, (ssize_t)STREAM_PAGE);
		if (w == 0)
			return -EIO;
		off += w;
		src += w;
		len -= w;
	}
	return 0;
}

/* n adjacent pages from src to off: 0 or -errno. */
static int place_run(const struct ram_place *p, const struct ram_view *v,
		     unsigned int region, uint64_t off, const uint8_t *src,
		     uint64_t n)
{
	uint64_t len = n * STREAM_PAGE, done;
	int r;

	if (p->uffd < 0)
		return place_pwrite(v, region, off, src, len);
	while (len) {
		r = uffdio_fill(p->uffd, (uintptr_t)p->at[region] + off, src, len,
				&done);
		if (r == -EEXIST) {
			/* There already: through the ordinary mapping. */
			memcpy(v->r[region].host + off + done, src + done,
			       STREAM_PAGE);
			done += STREAM_PAGE;
		} else if (r < 0) {
			return r;
		}
		off += done;
		src += done;
		len -= done;
	}
	return 0;
}

int ram_place_pages(const struct ram_place *p, const struct ram_view *v,
		    unsigned int region, const uint64_t *off, const uint8_t *src,
		    uint32_t n)
{
	uint32_t i = 0, j;
	int r;

	while (i < n) {
		j = stream_run_end(off, i, n);
		r = place_run(p, v, region, off[i], src + (size_t)i * STREAM_PAGE,
			      j - i);
		if (r < 0)
			return r;
		i = j;
	}
	return 0;
}
