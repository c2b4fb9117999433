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
		/* The view's memfd: ram_view_map found it sealed against
		 * shrinking, so this mapping cannot outlast its pages. */
		void *at = mmap(NULL, v->r[i].size, PROT_READ | PROT_WRITE,
				MAP_SHARED, v->r[i].fd, 0);

		if (at == MAP_FAILED)
			goto fail;
		madvise(at, v->r[i].size, MADV_RANDOM);  /* see ram_view_map */
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

/*
 * Sharing a packet's first-time pages between a ram channel's thread and
 * a helper.  Each takes pieces of PIECE_PAGES pages in turn, under the
 * lock, until none are left; the channel's thread then waits for the
 * helper's piece, so the staging buffer is never reused under it.  A
 * helper that is slow to wake costs nothing: the channel's thread takes
 * every piece itself.  A page's versions keep the channel's order, since
 * a packet is placed whole before the next one is read.
 *
 * Why: into memory that the host must back first (free page reporting,
 * as here), UFFDIO_COPY fills 0.7 GB/s with one thread and 1.1-1.5 with
 * two; scenario b with one channel went from 0.33-0.36 GB/s to 0.44-0.46
 * (three alternating runs each).
 */
#define PIECE_PAGES 16u

/* Take the next piece (under h->lock): its first page, *end its end. */
static bool take_piece(struct place_helper *h, uint32_t *start, uint32_t *end)
{
	if (h->next >= h->n)
		return false;
	*start = h->next;
	*end = MIN(h->n, h->next + PIECE_PAGES);
	h->next = *end;
	h->busy++;
	return true;
}

/* Place pages start..end of the packet, then account for it (h->lock
 * held on entry and on return). */
static void place_piece(struct place_helper *h, uint32_t start, uint32_t end)
{
	const struct ram_place *p = h->p;
	const struct ram_view *v = h->v;
	const uint64_t *off = h->off;
	const uint8_t *src = h->src;
	unsigned int region = h->region;
	int r;

	pthread_mutex_unlock(&h->lock);
	r = ram_place_pages(p, v, region, off + start,
			    src + (size_t)start * STREAM_PAGE, end - start);
	pthread_mutex_lock(&h->lock);
	if (r < 0 && !h->err) {
		h->err = r;
		h->next = h->n;         /* take nothing more */
	}
	h->busy--;
}

static void *helper_main(void *arg)
{
	struct place_helper *h = arg;
	uint32_t start, end;

	pthread_mutex_lock(&h->lock);
	for (;;) {
		while (!h->stop && h->next >= h->n)
			pthread_cond_wait(&h->work, &h->lock);
		if (h->stop)
			break;
		if (take_piece(h, &start, &end)) {
			place_piece(h, start, end);
			h->helped += end - start;
			if (!h->busy)
				pthread_cond_signal(&h->idle);
		}
	}
	pthread_mutex_unlock(&h->lock);
	return NULL;
}

static void helper_destroy(struct place_helper *h)
{
	pthread_cond_destroy(&h->idle);
	pthread_cond_destroy(&h->work);
	pthread_mutex_destroy(&h->lock);
}

int place_helper_start(struct place_helper *h)
{
	int r;

	memset(h, 0, sizeof(*h));
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->work, NULL);
	pthread_cond_init(&h->idle, NULL);
	r = pthread_create(&h->thread, NULL, helper_main, h);
	if (r) {
		helper_destroy(h);
		return -r;
	}
	h->started = true;
	return 0;
}

void place_helper_stop(struct place_helper *h)
{
	if (!h->started)
		return;
	pthread_mutex_lock(&h->lock);
	h->stop = true;
	pthread_cond_signal(&h->work);
	pthread_mutex_unlock(&h->lock);
	pthread_join(h->thread, NULL);
	helper_destroy(h);
	h->started = false;
}

int place_helper_pages(struct place_helper *h, const struct ram_place *p,
		       const struct ram_view *v, unsigned int region,
		       const uint64_t *off, const uint8_t *src, uint32_t n)
{
	uint32_t start, end;
	int r;

	if (!h->started || n < 2 * PIECE_PAGES)
		return ram_place_pages(p, v, region, off, src, n);
	pthread_mutex_lock(&h->lock);
	h->p = p;
	h->v = v;
	h->region = region;
	h->off = off;
	h->src = src;
	h->n = n;
	h->next = 0;
	h->err = 0;
	pthread_cond_signal(&h->work);
	while (take_piece(h, &start, &end))
		place_piece(h, start, end);
	while (h->busy)
		pthread_cond_wait(&h->idle, &h->lock);
	r = h->err;                     /* next >= n: the helper waits */
	pthread_mutex_unlock(&h->lock);
	return r;
}
