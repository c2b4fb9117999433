// SPDX-License-Identifier: GPL-2.0-only
/*
 * The page link, receiving side: one thread per session reads PageMsg
 * frames from the source worker (length-prefixed, at most
 * STREAM_PAGE_MSG_MAX bytes, checked before anything is allocated),
 * checks each PageData against the layout and the request it answers,
 * places its pages with UFFDIO_COPY (which wakes the faulting threads),
 * clears their needed bits and times the faults that waited for them.
 * A link that closes or errs pauses the session; a frame that breaks the
 * protocol fails it; either way the thread ends and everything else
 * stays as it is until Relink or Detach (session.c, on the event loop).
 */
#include <errno.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "common/bitmap.h"
#include "common/log.h"
#include "common/ramhash.h"
#include "common/rtspawn.h"
#include "common/uffdio.h"
#include "common/util.h"
#include "faultd/faultd.h"

#define LINK_SPIN_NS 100000ULL          /* awake this long for an answer */

/*
 * Link threads waiting awake right now, and how many may: a link thread
 * runs in SCHED_FIFO (rtspawn.c), so with many sessions faulting at once
 * their waits alone could leave ordinary threads (the guests' vCPUs, the
 * push) almost nothing of the CPUs; at most half of them spin, the
 * others sleep in poll() as they would without the real-time class.
 */
static unsigned int spinning, max_spinning = 1;  /* set by link_start */

static bool spin_enter(void)
{
	unsigned int n = __atomic_load_n(&spinning, __ATOMIC_RELAXED);
	unsigned int max = __atomic_load_n(&max_spinning, __ATOMIC_RELAXED);

	do {
		if (n >= max)
			return false;
	} while (!__atomic_compare_exchange_n(&spinning, &n, n + 1, false,
					      __ATOMIC_RELAXED, __ATOMIC_RELAXED));
	return true;
}

static void spin_leave(void)
{
	__atomic_fetch_sub(&spinning, 1, __ATOMIC_RELAXED);
}

/*
 * Place a run of pages: the whole run in one UFFDIO_COPY; a page that is
 * already there (pushed by the worker) is skipped after waking its
 * waiters, and the rest continues.
 */
static int link_place(struct session *s, uint64_t dst, const uint8_t *src,
		      uint64_t len, uint64_t page, uint64_t *ret_copied,
		      uint64_t *ret_exist)
{
	struct uffdio_range w = { .len = STREAM_PAGE };
	uint64_t copied = 0, exist = 0, done, i;
	int r;

	/* With verify: the hashes of what we place, before the needed bits
	 * clear (link_placed_locked), and before the copy itself: a faultd
	 * that died between a copy and its hashes left the page without
	 * them, and verify reported a false mismatch at the end.  Whoever
	 * places a page, the push or this, places the same bytes (the
	 * source is stopped since the switch), so a page there already
	 * keeps the hash it had. */
	for (i = 0; s->hashes && i < len / STREAM_PAGE; i++)
		__atomic_store_n(&s->hashes[page + i],
				 ramhash_entry(src + i * STREAM_PAGE), __ATOMIC_RELAXED);
	while (len) {
		r = uffdio_fill(s->uffd, dst, src, len, &done);
		copied += done / STREAM_PAGE;
		page += done / STREAM_PAGE;
		dst += done;
		src += done;
		len -= done;
		if (r == -EEXIST) {
			w.start = dst;
			if (ioctl(s->uffd, UFFDIO_WAKE, &w) < 0)
				return -errno;
			exist++;
			page++;
			dst += STREAM_PAGE;
			src += STREAM_PAGE;
			len -= STREAM_PAGE;
		} else if (r < 0) {
			return r;
		}
	}
	*ret_copied = copied;
	*ret_exist = exist;
	return 0;
}

/* Under lock: clear needed and requested bits of the run, serve waiters. */
static void link_placed_locked(struct session *s, const struct fault_region *r,
			       uint64_t offset, uint64_t n)
{
	uint64_t page = r->first_page + offset / STREAM_PAGE, i;

	for (i = page; i < page + n; i++)
		__atomic_fetch_and(&s->needed[i / 64], ~(1ULL << (i % 64)),
				   __ATOMIC_RELEASE);
	bitmap_clear_range(s->requested, page, n);
	session_serve_waiting_locked(s, page, n, now_ns());
}

/*
 * One PageData, which came in a frame of frame_bytes: 0, or -EPROTO with
 * why (a protocol violation), or another -errno with why (placing failed).
 */
static int handle_page_data(struct session *s, const Tern__Stream__PageData *d,
			    uint64_t frame_bytes, char *why, size_t len)
{
	const struct fault_region *r;
	struct page_req q;
	uint64_t npages, copied = 0, exist = 0;
	long i;
	int ret;

	if (d->region >= s->nregions) {
		snprintf(why, len, "PageData seq %llu: region %u, the layout has %u",
			 (unsigned long long)d->seq, d->region, s->nregions);
		return -EPROTO;
	}
	r = &s->r[d->region];
	npages = d->data.len / STREAM_PAGE;
	if (d->offset % STREAM_PAGE || d->data.len % STREAM_PAGE || !npages ||
	    npages > STREAM_PAGE_REQ_MAX || d->offset >= r->size ||
	    d->data.len > r->size - d->offset) {
		snprintf(why, len, "PageData seq %llu: %zu bytes at offset 0x%llx of "
			 "region %u (%llu bytes) are not whole pages inside it",
			 (unsigned long long)d->seq, d->data.len,
			 (unsigned long long)d->offset, d->region,
			 (unsigned long long)r->size);
		return -EPROTO;
	}
	pthread_mutex_lock(&s->lock);
	i = session_req_find_locked(s, d->seq);
	if (i >= 0) {
		q = s->reqs[i];
		if (q.region == d->region && q.offset == d->offset && q.pages == npages)
			memmove(&s->reqs[i], &s->reqs[i + 1],
				(--s->nreqs - i) * sizeof(s->reqs[0]));
	}
	pthread_mutex_unlock(&s->lock);
	if (i < 0) {
		snprintf(why, len, "PageData seq %llu answers no outstanding request",
			 (unsigned long long)d->seq);
		return -EPROTO;
	}
	if (q.region != d->region || q.offset != d->offset || q.pages != npages) {
		snprintf(why, len, "PageData seq %llu (region %u offset 0x%llx, %llu "
			 "pages) does not match its request (region %u offset 0x%llx, "
			 "%u pages)", (unsigned long long)d->seq, d->region,
			 (unsigned long long)d->offset, (unsigned long long)npages,
			 q.region, (unsigned long long)q.offset, q.pages);
		return -EPROTO;
	}
	ret = link_place(s, r->host + d->offset, d->data.data, d->data.len,
			 r->first_page + d->offset / STREAM_PAGE, &copied, &exist);
	pthread_mutex_lock(&s->lock);
	s->st.fetched += copied;
	s->st.exist += exist;
	s->st.link_bytes += frame_bytes;
	if (ret == 0)
		link_placed_locked(s, r, d->offset, npages);
	else    /* no request covers them now: a fault there asks anew */
		bitmap_clear_range(s->requested,
				   r->first_page + d->offset / STREAM_PAGE, npages);
	pthread_mutex_unlock(&s->lock);
	if (ret < 0)
		snprintf(why, len, "UFFDIO_COPY of %llu pages at gpa 0x%llx: %s",
			 (unsigned long long)npages,
			 (unsigned long long)(r->gpa + d->offset), strerror(-ret));
	return ret;
}

/*
 * Under lock: the age of the oldest request sent on this link and not
 * answered, in ms (0 if none).  A source that is merely idle has none.
 */
static uint64_t link_oldest_ms_locked(const struct session *s, uint64_t now)
{
	uint64_t oldest = now;
	size_t i;

	for (i = 0; i < s->nreqs; i++)
		if (s->reqs[i].gen == s->link_gen && s->reqs[i].sent_ns < oldest)
			oldest = s->reqs[i].sent_ns;
	return (now - oldest) / 1000000;
}

/*
 * Wait for the next frame.  No deadline while nothing is asked (the
 * source may be idle), but a request unanswered for FAULTD_LINK_STALL_MS
 * on a link silent for a second means a link that is open and stalled:
 * -ETIMEDOUT, so that the session pauses and a recovery can bring a new
 * link, instead of vCPUs waiting forever behind it.  While frames still
 * come, the link is alive, only slow (the source answers in order; a
 * page it never answered is pushed all the same).
 */
static int link_wait(struct session *s, int fd)
{
	struct pollfd p = { fd, POLLIN, 0 };
	uint64_t stalled_ms;
	bool stop, asked;
	int r;

	for (;;) {
		/* A page asked for comes back in tens of microseconds: wait
		 * for it awake, so that the answer does not also wait for this
		 * thread to be woken and scheduled (a vCPU waits on it). */
		pthread_mutex_lock(&s->lock);
		asked = s->nreqs > 0;
		pthread_mutex_unlock(&s->lock);
		if (asked && spin_enter()) {
			uint64_t until = now_ns() + LINK_SPIN_NS;
			char c;

			while (recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) < 0 &&
			       errno == EAGAIN && now_ns() < until)
				;
			spin_leave();
		}
		r = poll(&p, 1, 1000);
		if (r < 0 && errno != EINTR)
			return -errno;
		pthread_mutex_lock(&s->lock);
		stop = s->link_stopping;
		stalled_ms = r == 0 ? link_oldest_ms_locked(s, now_ns()) : 0;
		pthread_mutex_unlock(&s->lock);
		if (stop)
			return -ECANCELED;
		if (r > 0)
			return 0;
		if (stalled_ms >= FAULTD_LINK_STALL_MS)
			return -ETIMEDOUT;
	}
}

void *link_main(void *arg)
{
	struct session *s = arg;
	enum session_state to = SESSION_STATE_NONE;
	Tern__Stream__PageMsg *m;
	char why[320];
	int fd, ret;

	pthread_mutex_lock(&s->lock);
	fd = s->link_fd;        /* ours until link_stop() joins us */
	pthread_mutex_unlock(&s->lock);
	while (to == SESSION_STATE_NONE) {
		m = NULL;
		ret = link_wait(s, fd);
		if (ret == -ECANCELED)
			break;
		if (ret == -ETIMEDOUT) {
			to = SESSION_STATE_PAUSED;
			snprintf(why, sizeof(why), "page link stalled: a page request "
				 "went unanswered for %d s", FAULTD_LINK_STALL_MS / 1000);
			break;
		}
		if (ret == 0)
			ret = stream_msg_recv(fd, &tern__stream__page_msg__descriptor,
					      STREAM_PAGE_MSG_MAX,
					      deadline_ms(FAULTD_LINK_IO_MS),
					      (ProtobufCMessage **)&m);
		if (ret == -EMSGSIZE) {
			to = SESSION_STATE_FAILED;
			snprintf(why, sizeof(why), "page link: protocol violation: a "
				 "frame longer than %u bytes", STREAM_PAGE_MSG_MAX);
		} else if (ret == -EPROTO) {
			to = SESSION_STATE_FAILED;
			snprintf(why, sizeof(why), "page link: protocol violation: a "
				 "frame that is not a PageMsg");
		} else if (ret == -EPIPE) {
			to = SESSION_STATE_PAUSED;
			snprintf(why, sizeof(why), "page link closed by the source");
		} else if (ret < 0) {
			to = SESSION_STATE_PAUSED;
			snprintf(why, sizeof(why), "page link: %s", strerror(-ret));
		} else if (m->body_case == TERN__STREAM__PAGE_MSG__BODY_DATA) {
			/* + 4: the frame's length prefix */
			ret = handle_page_data(s, m->data, 4 +
					       protobuf_c_message_get_packed_size(&m->base),
					       why, sizeof(why));
			if (ret < 0)
				to = SESSION_STATE_FAILED;
		} else if (m->body_case == TERN__STREAM__PAGE_MSG__BODY_REFUSE) {
			to = SESSION_STATE_FAILED;
			snprintf(why, sizeof(why), "the source dropped the page link: "
				 "%.200s (%s)", m->refuse->message ? m->refuse->message : "",
				 m->refuse->err > 0 ? strerror(m->refuse->err) : "no code");
		} else {
			to = SESSION_STATE_FAILED;
			snprintf(why, sizeof(why), "page link: protocol violation: "
				 "unexpected %s from the source",
				 m->body_case == TERN__STREAM__PAGE_MSG__BODY_REQUEST ?
				 "PageRequest" : "empty PageMsg");
		}
		if (m)
			protobuf_c_message_free_unpacked(&m->base, NULL);
	}
	pthread_mutex_lock(&s->lock);
	if (to != SESSION_STATE_NONE && !s->link_stopping)
		session_set_state_locked(s, to, "%s", why);
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

int link_start(struct session *s)
{
	unsigned int cpus = cpus_usable();
	int r;

	__atomic_store_n(&max_spinning, cpus >= 4 ? cpus / 2 : 1, __ATOMIC_RELAXED);
	r = rtspawn_create(&s->link_thread, link_main, s);

	if (r == 0)
		s->link_running = true;
	return r;
}

void link_stop(struct session *s)
{
	if (!s->link_running)
		return;
	pthread_mutex_lock(&s->lock);
	s->link_stopping = true;
	pthread_mutex_unlock(&s->lock);
	/* Wakes the reader (EOF) and a writer blocked on a full socket. */
	shutdown(s->link_fd, SHUT_RDWR);
	pthread_join(s->link_thread, NULL);
	s->link_running = false;
	if (s->resend_running)
		pthread_join(s->resend_thread, NULL);
	s->resend_running = false;
	free(s->resend);
	s->resend = NULL;
	s->nresend = 0;
}
