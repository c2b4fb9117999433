// SPDX-License-Identifier: GPL-2.0-only
/*
 * One postcopy VM: its session's life (start, relink, stop), the fault
 * thread, and the statistics.  The fault thread polls the uffd, reads its
 * events and, per missing page: places a zero page if the page is not
 * needed from the source (a hole), remembers the fault if the page is
 * already requested, or sends a PageRequest for it and up to `prefetch`
 * following needed pages.  It keeps reading faults whatever the link
 * does: while the session is PAUSED or FAILED they are queued as
 * requests to send on the next link.  Only what it cannot serve ends it:
 * an error of the uffd, or a message other than a missing-page fault
 * (uffdcheck.c), which fails the session for good.  Called from
 * control.c (event loop).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/bitmap.h"
#include "common/fault.h"
#include "common/log.h"
#include "common/ramhash.h"
#include "common/rtspawn.h"
#include "common/util.h"
#include "faultd/faultd.h"

#define FAULT_BATCH 16                  /* uffd events per read */

static const char *const state_names[SESSION_STATE_MAX] = {
	[SESSION_STATE_NONE] = "none",
	[SESSION_STATE_ACTIVE] = "active",
	[SESSION_STATE_PAUSED] = "paused",
	[SESSION_STATE_DONE] = "done",
	[SESSION_STATE_FAILED] = "failed",
};

const char *session_state_name(enum session_state st)
{
	return (unsigned int)st < SESSION_STATE_MAX ? state_names[st] : "?";
}

/*
 * ACTIVE -> PAUSED | FAILED | DONE; PAUSED, FAILED -> ACTIVE (Relink) or
 * FAILED; DONE stays DONE (a link closing then is the normal end).
 */
void session_set_state_locked(struct session *s, enum session_state to,
			      const char *fmt, ...)
{
	enum session_state from = s->state;
	va_list ap;

	if (from == to || from == SESSION_STATE_DONE ||
	    (from == SESSION_STATE_FAILED && to == SESSION_STATE_PAUSED))
		return;
	s->state = to;
	s->error[0] = 0;
	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(s->error, sizeof(s->error), fmt, ap);
		va_end(ap);
	}
	if (to == SESSION_STATE_PAUSED || to == SESSION_STATE_FAILED)
		log_warnx("%s: %s -> %s: %s", s->vm, state_names[from],
			  state_names[to], s->error);
	else
		log_info("%s: %s -> %s", s->vm, state_names[from], state_names[to]);
}

/* ---- statistics ------------------------------------------------------ */

/*
 * Latencies go to log-linear buckets: 0-15 us one each, then 8 buckets
 * per power of two, so that percentiles are right to an eighth; the
 * reported histogram (power-of-two buckets) is summed from them.
 */
static unsigned int fine_bucket(uint64_t us)
{
	unsigned int o, b;

	if (us < 16)
		return us;
	o = 63 - __builtin_clzll(us);
	b = 16 + (o - 4) * 8 + ((us >> (o - 3)) & 7);
	return b < FAULTD_FINE_BUCKETS ? b : FAULTD_FINE_BUCKETS - 1;
}

/* The lowest latency of fine bucket b, and the lowest of the next. */
static uint64_t fine_low(unsigned int b)
{
	unsigned int o;

	if (b < 16)
		return b;
	o = (b - 16) / 8 + 4;
	return (uint64_t)(8 + (b - 16) % 8) << (o - 3);
}

static unsigned int hist_bucket(uint64_t us)
{
	unsigned int b = us < 2 ? 0 : 63 - __builtin_clzll(us);

	return b < FAULTD_HIST_BUCKETS ? b : FAULTD_HIST_BUCKETS - 1;
}

void session_record_latency(struct session *s, uint64_t t_ns, uint64_t now,
			    int kind)
{
	uint64_t us = now > t_ns ? (now - t_ns) / 1000 : 0;

	s->st.fine[kind][fine_bucket(us)]++;
	s->st.blocked_us += us;
	if (kind == FINE_REMOTE && us > s->st.max_us)
		s->st.max_us = us;
}

/* Quantile q of a fine histogram: the upper end of its bucket (at most
 * max when given). */
static uint64_t fine_quantile(const uint64_t *fine, double q, uint64_t max)
{
	uint64_t total = 0, seen = 0, want, v;
	unsigned int i;

	for (i = 0; i < FAULTD_FINE_BUCKETS; i++)
		total += fine[i];
	if (!total)
		return 0;
	want = (uint64_t)(q * total);
	if (want < q * total || want == 0)
		want++;
	for (i = 0; i < FAULTD_FINE_BUCKETS - 1; i++) {
		seen += fine[i];
		if (seen >= want)
			break;
	}
	v = i + 1 < FAULTD_FINE_BUCKETS ? fine_low(i + 1) : fine_low(i);
	return max ? MIN(v, max) : v;
}

uint64_t session_needed(struct session *s)
{
	uint64_t n = 0, w, i, words = BITMAP_WORDS(s->pages);

	for (i = 0; i < words; i++) {
		w = __atomic_load_n(&s->needed[i], __ATOMIC_RELAXED);
		if (i == words - 1 && s->pages % 64)
			w &= (1ULL << (s->pages % 64)) - 1;
		n += __builtin_popcountll(w);
	}
	return n;
}

void session_stats(struct session *s, Tern__Faultd__FaultStats *out,
		   struct stats_buf *buf)
{
	uint64_t needed = session_needed(s);
	struct fault_stats st;
	unsigned int i;

	pthread_mutex_lock(&s->lock);
	if (needed == 0 && s->state == SESSION_STATE_ACTIVE)
		session_set_state_locked(s, SESSION_STATE_DONE, NULL);
	st = s->st;
	out->state = (Tern__Faultd__SessionState)s->state;
	str_copy(buf->error, s->error, sizeof(buf->error));
	pthread_mutex_unlock(&s->lock);
	out->vm = s->vm;
	out->faults = st.faults;
	out->remote_faults = st.remote;
	out->zero_faults = st.zero;
	out->merged_faults = st.merged;
	out->requests = st.requests;
	out->pages_fetched = st.fetched;
	out->pages_exist = st.exist;
	out->link_bytes = st.link_bytes;
	out->error = buf->error;
	memset(buf->hist, 0, sizeof(buf->hist));
	for (i = 0; i < FAULTD_FINE_BUCKETS; i++)
		buf->hist[hist_bucket(fine_low(i))] += st.fine[FINE_REMOTE][i];
	out->n_latency_hist = FAULTD_HIST_BUCKETS;
	out->latency_hist = buf->hist;
	out->latency_p50_us = fine_quantile(st.fine[FINE_REMOTE], 0.50, st.max_us);
	out->latency_p99_us = fine_quantile(st.fine[FINE_REMOTE], 0.99, st.max_us);
	out->zero_latency_p50_us = fine_quantile(st.fine[FINE_ZERO], 0.50, 0);
	out->zero_latency_p99_us = fine_quantile(st.fine[FINE_ZERO], 0.99, 0);
	out->latency_max_us = st.max_us;
	out->blocked_us = st.blocked_us;
	out->needed_pages = needed;
}

/* ---- the fault thread --------------------------------------------------- */

static bool needed_test(struct session *s, uint64_t page)
{
	return __atomic_load_n(&s->needed[page / 64], __ATOMIC_ACQUIRE) &
	       (1ULL << (page % 64));
}

/* Under lock.  Past the cap a fault is still served, only not timed. */
static void wait_add(struct session *s, uint64_t page, uint64_t t_ns)
{
	struct waiting_fault *w;
	size_t cap;

	if (s->nwait == s->wait_cap) {
		cap = s->wait_cap ? 2 * s->wait_cap : 64;
		if (cap > FAULTD_MAX_WAITING)
			return;
		w = realloc(s->wait, cap * sizeof(*w));
		if (!w)
			return;
		s->wait = w;
		s->wait_cap = cap;
	}
	s->wait[s->nwait++] = (struct waiting_fault){ page, t_ns };
}

void session_serve_waiting_locked(struct session *s, uint64_t page, uint64_t n,
				  uint64_t now)
{
	size_t i = 0;

	while (i < s->nwait) {
		if (s->wait[i].page - page < n) {
			session_record_latency(s, s->wait[i].t_ns, now, FINE_REMOTE);
			s->wait[i] = s->wait[--s->nwait];
		} else {
			i++;
		}
	}
}

/* Under lock: a new outstanding request (seq order is append order). */
static int req_add(struct session *s, const struct page_req *q)
{
	struct page_req *r;
	size_t cap;

	if (s->nreqs == s->reqs_cap) {
		cap = s->reqs_cap ? 2 * s->reqs_cap : 64;
		r = realloc(s->reqs, cap * sizeof(*r));
		if (!r)
			return -ENOMEM;
		s->reqs = r;
		s->reqs_cap = cap;
	}
	s->reqs[s->nreqs++] = *q;
	return 0;
}

/* Under lock: the index of the outstanding request seq, or -1. */
long session_req_find_locked(struct session *s, uint64_t seq)
{
	size_t lo = 0, hi = s->nreqs, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (s->reqs[mid].seq == seq)
			return (long)mid;
		if (s->reqs[mid].seq < seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/*
 * Send the outstanding request seq on the current link unless it went
 * there already (a request reaches each link once: the fault thread and
 * a Relink may both try) or was answered meanwhile.
 */
int session_send_request(struct session *s, uint64_t seq)
{
	Tern__Stream__PageMsg m = TERN__STREAM__PAGE_MSG__INIT;
	Tern__Stream__PageRequest r = TERN__STREAM__PAGE_REQUEST__INIT;
	bool send = false;
	uint64_t gen;
	long i;
	int fd, ret = 0;

	m.body_case = TERN__STREAM__PAGE_MSG__BODY_REQUEST;
	m.request = &r;
	pthread_mutex_lock(&s->send_lock);
	pthread_mutex_lock(&s->lock);
	i = session_req_find_locked(s, seq);
	if (i >= 0 && s->reqs[i].gen != s->link_gen &&
	    (s->state == SESSION_STATE_ACTIVE || s->state == SESSION_STATE_DONE)) {
		send = true;
		s->reqs[i].gen = s->link_gen;
		s->reqs[i].sent_ns = now_ns();
		r.seq = seq;
		r.region = s->reqs[i].region;
		r.offset = s->reqs[i].offset;
		r.pages = s->reqs[i].pages;
	}
	fd = s->link_fd;
	gen = s->link_gen;
	pthread_mutex_unlock(&s->lock);
	if (send)
		ret = stream_msg_send(fd, &m.base, deadline_ms(FAULTD_LINK_IO_MS));
	pthread_mutex_unlock(&s->send_lock);
	if (!send)
		return 0;
	pthread_mutex_lock(&s->lock);
	/* A link replaced since (Relink, between the two locks) is not the
	 * one that failed: Relink sends this request again on it. */
	if (ret == 0)
		s->st.requests++;
	else if (!s->link_stopping && s->link_gen == gen)
		session_set_state_locked(s, SESSION_STATE_PAUSED,
					 "page link: sending a request: %s",
					 strerror(-ret));
	pthread_mutex_unlock(&s->lock);
	return ret;
}

/* 0: a zero page placed; 1: the page was there (placed meanwhile, by
 * the worker's push or by us), the faulting thread woken. */
static int fault_zero(struct session *s, uint64_t addr)
{
	struct uffdio_zeropage z = { .range = { addr, STREAM_PAGE } };
	struct uffdio_range w = { addr, STREAM_PAGE };

	if (ioctl(s->uffd, UFFDIO_ZEROPAGE, &z) == 0)
		return 0;
	if (errno == EEXIST && ioctl(s->uffd, UFFDIO_WAKE, &w) == 0)
		return 1;
	return -errno;
}

static void handle_fault(struct session *s, uint64_t addr, uint64_t t_ns)
{
	const struct fault_region *r = NULL;
	struct page_req q;
	uint64_t page, off, n, max;
	unsigned int i;
	bool send;
	int ret;

	for (i = 0; i < s->nregions; i++)
		if (addr >= s->r[i].host && addr - s->r[i].host < s->r[i].size) {
			r = &s->r[i];
			break;
		}
	if (!r)
		return;         /* outside the layout: the vmm registered only it */
	pthread_mutex_lock(&s->lock);
	s->st.faults++;
	/* For a test: read and left, as by a faultd that dies next. */
	if (s->unserved) {
		pthread_mutex_unlock(&s->lock);
		return;
	}
	off = ALIGN_DOWN(addr - r->host, (uint64_t)STREAM_PAGE);
	page = r->first_page + off / STREAM_PAGE;
	/*
	 * Not needed: a zero page, or a page placed since the kernel queued
	 * this fault (a thread may fault again on a page it already waits
	 * for, and that second fault be read after the page came).  The
	 * latter counts as merged: it waited on a page on its way.
	 */
	if (!needed_test(s, page)) {
		pthread_mutex_unlock(&s->lock);
		ret = fault_zero(s, r->host + off);
		pthread_mutex_lock(&s->lock);
		if (ret < 0 && s->state != SESSION_STATE_FAILED)
			session_set_state_locked(s, SESSION_STATE_FAILED,
						 "UFFDIO_ZEROPAGE at gpa 0x%llx: %s",
						 (unsigned long long)(r->gpa + off),
						 strerror(-ret));
		if (ret == 1)
			s->st.merged++;
		else
			s->st.zero++;
		if (ret >= 0)
			session_record_latency(s, t_ns, now_ns(),
					       ret ? FINE_REMOTE : FINE_ZERO);
		pthread_mutex_unlock(&s->lock);
		return;
	}
	if (bitmap_test(s->requested, page)) {
		s->st.merged++;
		wait_add(s, page, t_ns);
		pthread_mutex_unlock(&s->lock);
		return;
	}
	s->st.remote++;
	max = MIN((uint64_t)s->prefetch + 1, (r->size - off) / STREAM_PAGE);
	for (n = 1; n < max; n++)
		if (!needed_test(s, page + n) || bitmap_test(s->requested, page + n))
			break;
	q = (struct page_req){ .seq = s->next_seq++, .region = i,
			       .pages = (uint32_t)n, .offset = off };
	send = req_add(s, &q) == 0;
	if (send)
		bitmap_set_range(s->requested, page, n);
	else
		session_set_state_locked(s, SESSION_STATE_FAILED,
					 "out of memory for page requests");
	wait_add(s, page, t_ns);
	pthread_mutex_unlock(&s->lock);
	if (send)
		session_send_request(s, q.seq);
}

static void *fault_main(void *arg)
{
	struct session *s = arg;
	struct uffd_msg msg[FAULT_BATCH];
	struct pollfd pfd[2] = { { s->uffd, POLLIN, 0 }, { s->wake_fd, POLLIN, 0 } };
	char why[320];
	bool bad = false;
	uint64_t t;
	ssize_t n;
	int i;

	for (;;) {
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			pthread_mutex_lock(&s->lock);
			session_set_state_locked(s, SESSION_STATE_FAILED,
						 "waiting for page faults: %s",
						 strerror(errno));
			pthread_mutex_unlock(&s->lock);
			break;
		}
		if (pfd[1].revents)
			break;
		if (pfd[0].revents & (POLLERR | POLLNVAL)) {
			/* The kernel's answer to a uffd made blocking again
			 * (by the vmm, which shares its file description). */
			pthread_mutex_lock(&s->lock);
			session_set_state_locked(s, SESSION_STATE_FAILED,
						 "the userfaultfd reported an error%s",
						 fcntl(s->uffd, F_GETFL) & O_NONBLOCK ? "" :
						 " (the vmm made it blocking)");
			pthread_mutex_unlock(&s->lock);
			break;
		}
		n = read(s->uffd, msg, sizeof(msg));
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n <= 0 || n % sizeof(msg[0])) {
			pthread_mutex_lock(&s->lock);
			session_set_state_locked(s, SESSION_STATE_FAILED,
						 "reading the userfaultfd: %s",
						 n < 0 ? strerror(errno) : "short read");
			pthread_mutex_unlock(&s->lock);
			break;
		}
		t = now_ns();
		/* Attach took no uffd with other features than page faults
		 * need; whatever else comes ends the session (and what that
		 * message and the rest of the batch hold is closed). */
		for (i = 0; i < n / (ssize_t)sizeof(msg[0]); i++) {
			if (uffd_check_msg(&msg[i], bad ? NULL : why,
					   bad ? 0 : sizeof(why)) < 0)
				bad = true;
			else if (!bad)
				handle_fault(s, msg[i].arg.pagefault.address, t);
		}
		if (bad) {
			pthread_mutex_lock(&s->lock);
			session_set_state_locked(s, SESSION_STATE_FAILED,
						 "vmm %s: %s", s->vm, why);
			/* A DONE session stays DONE: say it here, as
			 * nothing serves its faults (holes) any more. */
			if (s->state != SESSION_STATE_FAILED)
				log_warnx("%s: no longer reads its page faults: "
					  "vmm %s: %s", s->vm, s->vm, why);
			pthread_mutex_unlock(&s->lock);
			break;
		}
	}
	pthread_mutex_lock(&s->lock);
	s->fault_ended = true;
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* ---- life ---------------------------------------------------------------- */

static void session_close(struct session *s)
{
	if (s->uffd >= 0)
		close(s->uffd);
	if (s->vmm_pidfd >= 0)
		close(s->vmm_pidfd);
	if (s->link_fd >= 0)
		close(s->link_fd);
	if (s->wake_fd >= 0)
		close(s->wake_fd);
	if (s->needed)
		munmap(s->needed, s->needed_bytes);
	free(s->requested);
	free(s->reqs);
	free(s->wait);
	pthread_mutex_destroy(&s->lock);
	pthread_mutex_destroy(&s->send_lock);
	free(s);
}

/*
 * A former faultd read the faults of the threads that wait now: the
 * kernel will not tell them again.  Woken, each fault is taken again
 * (VM_FAULT_RETRY), and one on a page still missing comes to our uffd as
 * a new event; the others go on.  Best effort: a range that cannot be
 * woken waits for the push to place its pages.
 */
static void wake_all(struct session *s)
{
	unsigned int i;

	for (i = 0; i < s->nregions; i++) {
		struct uffdio_range rg = { .start = s->r[i].host,
					   .len = s->r[i].size };

		if (ioctl(s->uffd, UFFDIO_WAKE, &rg) < 0)
			log_warn("%s: UFFDIO_WAKE of region %u", s->vm, i);
	}
}

int session_start(const struct session_attach *a, struct session **ret,
		  char *err, size_t len)
{
	struct session *s;
	int r;

	s = calloc(1, sizeof(*s));
	if (!s) {
		close(a->uffd);
		close(a->link_fd);
		close(a->needed_fd);
		if (a->vmm_pidfd >= 0)
			close(a->vmm_pidfd);
		snprintf(err, len, "out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->send_lock, NULL);
	s->wake_fd = -1;                /* session_close must not close fd 0 */
	s->uffd = a->uffd;
	s->vmm_pidfd = a->vmm_pidfd;
	s->link_fd = a->link_fd;
	str_copy(s->vm, a->vm, sizeof(s->vm));
	str_copy(s->job, a->job, sizeof(s->job));
	s->pages = a->pages;
	s->prefetch = a->prefetch;
	s->unserved = fault_active("faults-unserved");
	s->nregions = a->nregions;
	memcpy(s->r, a->r, a->nregions * sizeof(s->r[0]));
	s->state = SESSION_STATE_ACTIVE;
	s->link_gen = 1;
	s->needed_bytes = BITMAP_BYTES(a->pages);
	if (a->hashes)
		s->needed_bytes = ramhash_shared_size(s->needed_bytes, a->pages);
	s->needed = mmap(NULL, s->needed_bytes, PROT_READ | PROT_WRITE, MAP_SHARED,
			 a->needed_fd, 0);
	close(a->needed_fd);
	if (s->needed == MAP_FAILED) {
		r = -errno;
		s->needed = NULL;
		snprintf(err, len, "cannot map the needed bitmap: %s", strerror(-r));
		goto fail;
	}
	if (a->hashes)
		s->hashes = (uint64_t *)((uint8_t *)s->needed +
					 ramhash_table_offset(BITMAP_BYTES(a->pages)));
	s->requested = calloc(BITMAP_WORDS(a->pages), 8);
	s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!s->requested || s->wake_fd < 0) {
		r = -ENOMEM;
		snprintf(err, len, "out of memory");
		goto fail;
	}
	r = rtspawn_create(&s->fault_thread, fault_main, s);
	if (r < 0) {
		snprintf(err, len, "cannot start the fault thread: %s", strerror(-r));
		goto fail;
	}
	r = link_start(s);
	if (r < 0) {
		snprintf(err, len, "cannot start the link thread: %s", strerror(-r));
		eventfd_write(s->wake_fd, 1);
		pthread_join(s->fault_thread, NULL);
		goto fail;
	}
	if (a->again)
		wake_all(s);
	*ret = s;
	return 0;
fail:
	session_close(s);
	return r;
}

/* Send the requests outstanding at a Relink again, on the new link.  A
 * thread of its own: a source slow to read would otherwise hold the
 * event loop, and the link thread must go on reading the answers. */
static void *resend_main(void *arg)
{
	struct session *s = arg;
	size_t i;

	for (i = 0; i < s->nresend; i++)
		if (session_send_request(s, s->resend[i]) < 0)
			break;
	log_info("%s: new page link; %zu request%s outstanding sent again", s->vm,
		 i, i == 1 ? "" : "s");
	return NULL;
}

bool session_relinkable(struct session *s, char *why, size_t len)
{
	bool ok;

	pthread_mutex_lock(&s->lock);
	ok = !s->fault_ended;
	snprintf(why, len, "%s", s->error[0] ? s->error : state_names[s->state]);
	pthread_mutex_unlock(&s->lock);
	return ok;
}

/*
 * A new page link (postcopy recovery): end the old link's threads, swap
 * the descriptor, go ACTIVE, start reading, then send every request not
 * yet answered again (the answers may come in any order).
 */
int session_relink(struct session *s, int link_fd)
{
	uint64_t *again = NULL;
	size_t n, i;
	int r;

	link_stop(s);
	pthread_mutex_lock(&s->send_lock);
	pthread_mutex_lock(&s->lock);
	close(s->link_fd);
	s->link_fd = link_fd;
	s->link_stopping = false;
	s->link_gen++;
	/* A fault thread that ended since the caller asked leaves the
	 * session FAILED: nothing would read its faults. */
	if (s->state != SESSION_STATE_DONE && !s->fault_ended)
		session_set_state_locked(s, SESSION_STATE_ACTIVE, NULL);
	n = s->nreqs;
	if (n)
		again = malloc(n * sizeof(*again));
	for (i = 0; again && i < n; i++)
		again[i] = s->reqs[i].seq;
	pthread_mutex_unlock(&s->lock);
	pthread_mutex_unlock(&s->send_lock);
	r = link_start(s);
	if (r < 0 || (n && !again)) {
		pthread_mutex_lock(&s->lock);
		session_set_state_locked(s, SESSION_STATE_FAILED, "relink: %s",
					 strerror(r < 0 ? -r : ENOMEM));
		pthread_mutex_unlock(&s->lock);
		free(again);
		return r < 0 ? r : -ENOMEM;
	}
	s->resend = again;
	s->nresend = n;
	if (!n) {
		log_info("%s: new page link; no request outstanding", s->vm);
		return 0;
	}
	r = -pthread_create(&s->resend_thread, NULL, resend_main, s);
	if (r < 0) {
		pthread_mutex_lock(&s->lock);
		session_set_state_locked(s, SESSION_STATE_PAUSED, "relink: cannot "
					 "send the requests again: %s", strerror(-r));
		pthread_mutex_unlock(&s->lock);
		return 0;       /* paused, as over a dead link: Relink again */
	}
	s->resend_running = true;
	return 0;
}

void session_stop(struct session *s)
{
	if (s->stopped)
		return;
	link_stop(s);
	eventfd_write(s->wake_fd, 1);
	/*
	 * The fault thread sees wake_fd on its next poll.  Unless it sleeps
	 * in read(): the vmm shares the uffd's file description and may have
	 * made it blocking, and a fault can vanish between poll and read (a
	 * page pushed meanwhile).  FAULTD_NUDGE, without SA_RESTART, makes
	 * that read return EINTR.
	 */
	while (thread_join_ms(s->fault_thread, 20) == ETIMEDOUT)
		pthread_kill(s->fault_thread, FAULTD_NUDGE);
	s->stopped = true;
}

bool session_vmm_gone(const struct session *s)
{
	struct pollfd p = { s->vmm_pidfd, POLLIN, 0 };

	return s->vmm_pidfd >= 0 && poll(&p, 1, 0) == 1;
}

void session_free(struct session *s)
{
	session_stop(s);
	session_close(s);
}
