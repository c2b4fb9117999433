// SPDX-License-Identifier: GPL-2.0-only
/*
 * RAM channels: one thread per ram connection on each side.
 *
 * Sending: the job's main thread queues batches of page offsets; the
 * channel thread splits each batch into zero pages (sent as offsets only)
 * and data pages, which go out with sendmsg() straight from the mapped
 * memfd (iovecs, no copy in user space).  A page is always queued to the
 * same channel (source_precopy.c picks the channel from its page
 * number), so the order of its versions is the channel's order and no
 * cross-channel barrier is needed.
 *
 * With compression, a packet's data pages are compressed as one zstd frame
 * straight from the mapping (streaming input, no copy) and sent that way
 * only when it pays; otherwise raw.
 *
 * Receiving: every header and every offset is checked against the
 * announced layout before use.  Pages that arrived before are read
 * straight into the destination's memfd mapping; a packet with pages
 * arriving for the first time is read into a staging buffer and placed
 * from there (place.c: UFFDIO_COPY, which neither zeroes the new pages
 * nor takes the memfd's inode lock; 2-2.5 GB/s per thread against
 * 1.3-1.5 through the mapping); with fewer channels than CPUs, a helper
 * thread places part of each such packet.  Zero pages become holes
 * (fallocate), so nothing is allocated for them.  The received-pages
 * bitmap is exact.  Nothing logs per page.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <zstd.h>

#include "common/bitmap.h"
#include "common/log.h"
#include "common/ramhash.h"
#include "common/uffdio.h"
#include "common/util.h"
#include "migd/migd.h"

#define KEEPALIVE_IDLE_S 5
#define KEEPALIVE_INTVL_S 1
#define KEEPALIVE_CNT 5

void chan_tune_socket(int fd, bool bulk)
{
	int one = 1, idle = KEEPALIVE_IDLE_S, intvl = KEEPALIVE_INTVL_S;
	int cnt = KEEPALIVE_CNT, buf = 4 << 20;
	unsigned int user_timeout = MIGD_STALL_TIMEOUT_MS;
	struct timeval tv = { MIGD_STALL_TIMEOUT_MS / 1000, 0 };

	/* Keepalive finds a peer that vanished without closing; the user
	 * timeout, data that stays unacknowledged (a partition: keepalive
	 * does not probe then); the send timeout, a peer that stopped
	 * reading (a stall).  Most fail harmlessly on unix sockets. */
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout,
		   sizeof(user_timeout));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	/* Every packet goes out in one sendmsg() and nothing waits for an
	 * answer, so Nagle has nothing to merge; it did hold a channel's
	 * last small packet (its end) until the peer's delayed ACK, 40 ms
	 * inside the guest's pause. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (bulk) {
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
		/* A ram channel is never quiet that long: idle senders send
		 * NOPs (the page link may be: it is not set there). */
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	}
}

void chan_abort_fd(int fd)
{
	if (fd >= 0)
		shutdown(fd, SHUT_RDWR);
}

/* ---- sending ------------------------------------------------------------ */

static bool page_is_zero(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)p;
	unsigned int i;

	/* A cache line at a time: most non-zero pages stop at the first. */
	for (i = 0; i < STREAM_PAGE / 8; i += 8)
		if (w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] |
		    w[i + 6] | w[i + 7])
			return false;
	return true;
}

/* Step past `done` bytes of an iovec array (consumed in place). */
static void iov_advance(struct iovec **iovp, int *np, size_t done)
{
	struct iovec *iov = *iovp;
	int n = *np;

	while (n > 0 && done >= iov->iov_len) {
		done -= iov->iov_len;
		iov++;
		n--;
	}
	if (n > 0) {
		iov->iov_base = (uint8_t *)iov->iov_base + done;
		iov->iov_len -= done;
	}
	*iovp = iov;
	*np = n;
}

/* sendmsg() until every iovec is out; the iovecs are consumed. */
static int send_iov(int fd, struct iovec *iov, int n)
{
	struct msghdr mh = { 0 };
	ssize_t s;

	while (n > 0) {
		mh.msg_iov = iov;
		mh.msg_iovlen = n;
		s = sendmsg(fd, &mh, MSG_NOSIGNAL);
		if (s < 0 && errno == EINTR)
			continue;
		if (s < 0)
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		iov_advance(&iov, &n, s);
	}
	return 0;
}

/* The channel's share of the job's max-bandwidth now (a Tune changes
 * it), 0 = no cap. */
static uint64_t chan_rate(const struct chan_tx *c)
{
	return __atomic_load_n(&c->w->chan_rate, __ATOMIC_RELAXED);
}

/* Hold the channel to its share of max-bandwidth (pace.c), as it is at
 * this packet.  The wait ends early when the job's abort shuts the
 * socket or the peer closes it (the next send then fails), and when a
 * tune changes the cap:
 * what is left of it is then owed at the new cap (none: nothing). */
static void chan_pace(struct chan_tx *c, struct pace *pc, uint64_t bytes)
{
	uint64_t wait, left, now, rate = chan_rate(c);
	int r;

	if (!rate && !pc->rate)
		return;                 /* no cap: no clock read per packet */
	now = now_ns();
	pace_set_rate(pc, rate, now);
	wait = pace_sent(pc, now, bytes);
	while (wait) {
		r = pace_wait(c->fd, c->wake_fd, wait);
		if (r == 0)
			return;
		/* (Once per connection at most: the wait ends only with it.) */
		if (r < 0) {
			log_info("ram channel %u: its connection ends (the job "
				 "ends, fails or pauses): its wait for the cap "
				 "(%llu ms) is cut short", c->index,
				 (unsigned long long)(wait / 1000000));
			return;
		}
		now = now_ns();
		left = pace_sent(pc, now, 0);
		rate = chan_rate(c);
		/* Woken by a tune that left this channel's cap as it was
		 * (or one it already took at this packet): waits on. */
		if (rate == pc->rate) {
			wait = left;
			continue;
		}
		pace_set_rate(pc, rate, now);
		wait = pace_sent(pc, now, 0);
		/* (Once per tune at most.) */
		log_info("ram channel %u: the cap changed: the %llu ms left of "
			 "its wait are now %llu ms", c->index,
			 (unsigned long long)(left / 1000000),
			 (unsigned long long)(wait / 1000000));
	}
}

/* Packets without page data. */
#define NO_DATA (STREAM_PKT_ZERO | STREAM_PKT_END | STREAM_PKT_POSTCOPY | \
		 STREAM_PKT_NOP)
/* An idle channel says so this often, so that its receiver can tell a
 * quiet source from a stalled connection (MIGD_STALL_TIMEOUT_MS). */
#define NOP_INTERVAL_MS 2000

struct tx_state {
	uint64_t seq;
	struct pace pace;
};

/*
 * Compress n pages of a region into c->zbuf as one frame.  Returns its
 * size when that is at most 7/8 of the pages (worth sending), else 0.
 */
static size_t zstd_pack(struct chan_tx *c, uint16_t region, const uint64_t *off,
			uint32_t n)
{
	size_t limit = (size_t)n * STREAM_PAGE / 8 * 7, ret;
	ZSTD_outBuffer out = { c->zbuf, limit, 0 };
	uint32_t i;

	ZSTD_CCtx_reset(c->zctx, ZSTD_reset_session_only);
	ZSTD_CCtx_setPledgedSrcSize(c->zctx, (unsigned long long)n * STREAM_PAGE);
	for (i = 0; i < n; i++) {
		ZSTD_inBuffer in = { c->ram->r[region].host + off[i], STREAM_PAGE, 0 };
		ZSTD_EndDirective mode = i + 1 == n ? ZSTD_e_end : ZSTD_e_continue;

		do {
			ret = ZSTD_compressStream2(c->zctx, &out, &in, mode);
			if (ZSTD_isError(ret) || (ret && out.pos == out.size))
				return 0;       /* error, or it does not pay */
		} while (in.pos < in.size || (mode == ZSTD_e_end && ret));
	}
	return out.pos;
}

static int send_packet(struct chan_tx *c, struct tx_state *t, uint16_t flags,
		       uint16_t region, const uint64_t *off, uint32_t n)
{
	size_t zlen = 0;

	struct iovec iov[2 + STREAM_MAX_BATCH];
	uint64_t wire_off[STREAM_MAX_BATCH];
	struct stream_pkt p = {
		.magic = STREAM_PKT_MAGIC,
		.flags = flags,
		.region = region,
		.npages = n,
		.data_len = (flags & NO_DATA) ? 0 : n * STREAM_PAGE,
		.seq = t->seq,
	};
	uint64_t bytes, sum;
	uint32_t i;
	int iovn = 0, r;

	if (c->zstd_level && !(flags & NO_DATA))
		zlen = zstd_pack(c, region, off, n);
	if (zlen) {
		p.flags |= STREAM_PKT_ZSTD;
		p.data_len = zlen;
	}
	bytes = sizeof(p) + n * 8 + p.data_len;
	stream_pkt_to_wire(&p);
	iov[iovn++] = (struct iovec){ &p, sizeof(p) };
	for (i = 0; i < n; i++)
		wire_off[i] = htole64(off[i]);
	if (n)
		iov[iovn++] = (struct iovec){ wire_off, n * 8 };
	if (zlen)
		iov[iovn++] = (struct iovec){ c->zbuf, zlen };
	else if (!(flags & NO_DATA))
		for (i = 0; i < n; i++)
			iov[iovn++] = (struct iovec){
				c->ram->r[region].host + off[i], STREAM_PAGE };
	/* Header and offsets: the data is live guest memory (it may change
	 * between a sum and the send, which is fine for precopy but not for
	 * a sum); --verify checks the data end to end. */
	sum = stream_sum_start(&p);
	if (n)
		sum = stream_sum_add(sum, wire_off, n * 8);
	p.sum = htole64(sum);
	r = send_iov(c->fd, iov, iovn);
	if (r < 0)
		return r;
	t->seq++;
	worker_count(c->w, c->index, bytes, n,
		     (flags & STREAM_PKT_ZERO) ? n : 0);
	if (zlen)
		worker_count_zstd(c->w, c->index, n, (uint64_t)n * STREAM_PAGE);
	chan_pace(c, &t->pace, bytes);
	return 0;
}

static int send_batch(struct chan_tx *c, struct tx_state *t, const struct batch *b)
{
	uint64_t zero[STREAM_MAX_BATCH], data[STREAM_MAX_BATCH], first;
	uint32_t nz = 0, nd = 0, dropped = 0, i;
	const uint64_t *served;
	bool pushing;
	int r = 0;

	if (b->nop)
		return send_packet(c, t, STREAM_PKT_NOP, 0, NULL, 0);
	if (b->end) {
		c->ended = true;        /* nothing after it, not even a NOP */
		return send_packet(c, t, STREAM_PKT_END, 0, NULL, 0);
	}
	if (b->marker) {
		c->past_marker = true;
		return send_packet(c, t, STREAM_PKT_POSTCOPY, 0, NULL, 0);
	}
	served = __atomic_load_n(&c->served, __ATOMIC_ACQUIRE);
	/* Pushed: past the marker (the page server may not serve yet), or
	 * on a channel of a recovery (which sends none) */
	pushing = c->past_marker || served;
	first = c->ram->first_page[b->region];
	for (i = 0; i < b->npages; i++) {
		/* In postcopy a page the guest faulted on since the push
		 * queued it went on the page link: the destination has it
		 * (or has it back by a recovery's needed pages). */
		if (served && bitmap_test_atomic(served, first + b->off[i] / STREAM_PAGE))
			dropped++;
		else if (page_is_zero(c->ram->r[b->region].host + b->off[i]))
			zero[nz++] = b->off[i];
		else
			data[nd++] = b->off[i];
	}
	if (dropped)
		worker_count_dropped(c->w, dropped);
	/* (pc_pushed with each packet, as the channel's page count: the
	 * status's needed_pages counts down from that) */
	if (nz)
		r = send_packet(c, t, STREAM_PKT_ZERO, b->region, zero, nz);
	if (r == 0 && nz && pushing)
		__atomic_add_fetch(&c->w->pc_pushed, nz, __ATOMIC_RELAXED);
	if (r == 0 && nd)
		r = send_packet(c, t, 0, b->region, data, nd);
	if (r == 0 && nd && pushing)
		__atomic_add_fetch(&c->w->pc_pushed, nd, __ATOMIC_RELAXED);
	if (r == 0)
		c->pages_total += nz + nd;
	return r;
}

/* The calling thread's nice value (raising it needs no privilege);
 * want 0 (*applied's start) leaves the worker's own (--worker-nice). */
static void thread_nice(int *applied, int want)
{
	if (*applied == want)
		return;
	*applied = want;
	if (setpriority(PRIO_PROCESS, (id_t)gettid(), want) < 0)
		log_debug("setpriority %d: %s", want, strerror(errno));
}

static void *chan_tx_thread(void *arg)
{
	struct chan_tx *c = arg;
	struct tx_state t = { 0 };
	struct batch *b, nop = { .nop = true };
	bool idle;
	int r, nice = 0;

	pace_start(&t.pace, chan_rate(c), now_ns());

	for (;;) {
		thread_nice(&nice, __atomic_load_n(&c->nice, __ATOMIC_RELAXED));
		pthread_mutex_lock(&c->lock);
		idle = false;
		while (!c->len && !c->stop && !idle)
			idle = cond_wait_ms(&c->cond, &c->lock, NOP_INTERVAL_MS) ==
			       ETIMEDOUT && !c->ended && !c->err;
		if (!c->len && !idle) {
			pthread_mutex_unlock(&c->lock);
			break;
		}
		b = c->len ? &c->q[c->head] : &nop;
		c->busy = true;
		pthread_mutex_unlock(&c->lock);

		r = send_batch(c, &t, b);
		if (b == &nop) {
			pthread_mutex_lock(&c->lock);
			c->busy = false;
			if (r < 0 && !c->err) {
				c->err = r;
				worker_fail_link(c->w, r, "ram channel %u: send: %s",
					    c->index, strerror(-r));
			}
			pthread_cond_broadcast(&c->cond);
			pthread_mutex_unlock(&c->lock);
			continue;
		}

		pthread_mutex_lock(&c->lock);
		c->head = (c->head + 1) % CHAN_QUEUE;
		c->len--;
		c->busy = false;
		if (r < 0 && !c->err) {
			c->err = r;
			worker_fail_link(c->w, r, "ram channel %u: send: %s", c->index,
				    strerror(-r));
		}
		if (c->err)
			c->len = 0;     /* a dead channel drops what is queued */
		pthread_cond_broadcast(&c->cond);
		pthread_mutex_unlock(&c->lock);
	}
	return NULL;
}

int chan_tx_start(struct chan_tx *c)
{
	int r;

	c->q = calloc(CHAN_QUEUE, sizeof(*c->q));
	if (!c->q)
		return -ENOMEM;
	if (c->zstd_level) {
		c->zctx = ZSTD_createCCtx();
		c->zbuf = malloc(STREAM_MAX_BATCH * STREAM_PAGE);
		if (!c->zctx || !c->zbuf ||
		    ZSTD_isError(ZSTD_CCtx_setParameter(c->zctx, ZSTD_c_compressionLevel,
							c->zstd_level)))
			return -ENOMEM;
	}
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	c->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->wake_fd < 0)
		return -errno;
	worker_set_chan_wake(c->w, c->index, c->wake_fd);
	r = pthread_create(&c->thread, NULL, chan_tx_thread, c);
	if (r) {
		worker_set_chan_wake(c->w, c->index, -1);
		close(c->wake_fd);
		c->wake_fd = -1;
		return -r;
	}
	c->started = true;
	return 0;
}

/*
 * How many batches may wait.  A capped channel holds what it sends in
 * CHAN_QUEUE_MS: what is queued must go out before the source can stop
 * or switch to postcopy, and 64 batches (16 MiB) at 0.5 MB/s held a
 * requested switch for half a minute.  But at least 2 batches, and a
 * chunk's pages: the source queues a chunk to one channel in a row, and
 * a queue too short for it (small batches under a low cap) held the
 * source on one channel while the others idled.
 */
static unsigned int chan_queue_max(const struct chan_tx *c)
{
	uint64_t n, rate = chan_rate(c);
	unsigned int batch;

	if (!rate)
		return CHAN_QUEUE;
	batch = pace_batch_pages(rate);
	n = rate * CHAN_QUEUE_MS / 1000 / ((uint64_t)batch * STREAM_PAGE);
	n = MAX(n, MAX(2u, DIV_ROUND_UP(CHUNK_PAGES, batch)));
	return (unsigned int)MIN(n, CHAN_QUEUE);
}

int chan_tx_push(struct chan_tx *c, const struct batch *b)
{
	unsigned int max = chan_queue_max(c);
	int r;

	pthread_mutex_lock(&c->lock);
	while (c->len >= max && !c->err && !worker_cancelled())
		pthread_cond_wait(&c->cond, &c->lock);
	r = c->err ? c->err : worker_cancelled() ? -ECANCELED : 0;
	if (r == 0) {
		c->q[(c->head + c->len) % CHAN_QUEUE] = *b;
		c->len++;
		pthread_cond_broadcast(&c->cond);
	}
	pthread_mutex_unlock(&c->lock);
	return r;
}

int chan_tx_drain(struct chan_tx *c)
{
	int r;

	pthread_mutex_lock(&c->lock);
	while ((c->len || c->busy) && !c->err)
		pthread_cond_wait(&c->cond, &c->lock);
	r = c->err;
	pthread_mutex_unlock(&c->lock);
	return r;
}

void chan_tx_stop(struct chan_tx *c)
{
	if (!c->started)
		return;
	pthread_mutex_lock(&c->lock);
	c->stop = true;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	chan_abort_fd(c->fd);
	pthread_join(c->thread, NULL);
	c->started = false;
	worker_set_chan_wake(c->w, c->index, -1);
	close(c->wake_fd);
	c->wake_fd = -1;
	free(c->q);
	c->q = NULL;
	ZSTD_freeCCtx(c->zctx);
	c->zctx = NULL;
	free(c->zbuf);
	c->zbuf = NULL;
}

/* ---- receiving ------------------------------------------------------------ */

/*
 * Map n pages of the ordinary mapping before they are written through
 * it.  Pages written there are ones received before (or preallocated),
 * but this mapping has never touched them (first-time pages go in
 * through place.c's mapping), so each would take its own write fault:
 * ~1 us a page on this PVM host, a third of a worker's time into
 * preallocated RAM.  A read of each page maps it instead: the first
 * read's fault maps its neighbours too (fault-around, 16 pages by
 * default; a shared shmem mapping's pages come writable), the rest find
 * theirs mapped.  MADV_POPULATE_READ did the same in one call, but it
 * marks every page accessed, and the LRU lock that takes was 37% of each
 * thread's time with two ram channels into preallocated RAM: b-2ch
 * prealloc 2.64-2.86 GB/s with it, 3.26-3.32 with reads, same runs.  A
 * page punched to a hole since is allocated by its read, as the write
 * would have done.
 */
static void map_pages(const struct chan_rx *c, unsigned int region,
		      const uint64_t *off, uint32_t n)
{
	const volatile uint8_t *host = c->ram->r[region].host;
	uint32_t i;

	for (i = 0; i < n; i++)
		(void)host[off[i]];
}

/*
 * Zero pages become holes (runs coalesced into few fallocate calls): a
 * page never received here is one already.  In preallocated RAM (vmm
 * --prealloc) every page stays allocated: zeros are written instead.
 */
static int punch_zero(struct chan_rx *c, unsigned int region, const uint64_t *off,
		      uint32_t n)
{
	int fd = c->ram->r[region].fd;
	uint32_t i, j;

	if (c->keep_alloc) {
		map_pages(c, region, off, n);
		for (i = 0; i < n; i++)
			memset(c->ram->r[region].host + off[i], 0, STREAM_PAGE);
		return 0;
	}
	for (i = 0; i < n; i = j) {
		j = stream_run_end(off, i, n);
		if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      off[i], (uint64_t)(j - i) * STREAM_PAGE) < 0)
			return -errno;
	}
	return 0;
}

/*
 * One zstd frame of data_len bytes (already in c->zbuf) must decode to
 * exactly n pages: each is written in place, nothing is left over.
 */
static int unpack_zstd(struct chan_rx *c, uint8_t *const *dst, uint32_t n,
		       uint32_t data_len)
{
	ZSTD_inBuffer in = { c->zbuf, data_len, 0 };
	size_t ret = 1;
	uint32_t i;

	if (!c->zctx && !(c->zctx = ZSTD_createDCtx()))
		return -ENOMEM;
	ZSTD_DCtx_reset(c->zctx, ZSTD_reset_session_only);
	/* A frame may not ask for a window larger than one packet needs. */
	ZSTD_DCtx_setParameter(c->zctx, ZSTD_d_windowLogMax, 20);
	for (i = 0; i < n; i++) {
		ZSTD_outBuffer out = { dst[i], STREAM_PAGE, 0 };

		while (out.pos < out.size) {
			size_t before_in = in.pos, before_out = out.pos;

			ret = ZSTD_decompressStream(c->zctx, &out, &in);
			if (ZSTD_isError(ret))
				return -EPROTO;
			if (in.pos == before_in && out.pos == before_out)
				return -EPROTO; /* short frame */
			if (ret == 0 && out.pos < out.size)
				return -EPROTO;
		}
	}
	return ret == 0 && in.pos == in.size ? 0 : -EPROTO;
}

static uint64_t page_index(const struct chan_rx *c, unsigned int region,
			   uint64_t off)
{
	return c->ram->first_page[region] + off / STREAM_PAGE;
}

static bool all_received(const struct chan_rx *c, unsigned int region,
			 const uint64_t *off, uint32_t n)
{
	uint32_t i;

	for (i = 0; i < n; i++)
		if (!bitmap_test(c->received, page_index(c, region, off[i])))
			return false;
	return true;
}

static void mark_received(struct chan_rx *c, unsigned int region,
			  const uint64_t *off, uint32_t n)
{
	uint32_t i;

	for (i = 0; i < n; i++)
		bitmap_set_atomic(c->received, page_index(c, region, off[i]));
}

/* ---- postcopy placement ---- */

static bool page_needed(const struct chan_rx *c, unsigned int region, uint64_t off)
{
	uint64_t p = page_index(c, region, off);

	return __atomic_load_n(&c->pc->needed[p / 64], __ATOMIC_RELAXED) &
	       (1ULL << (p % 64));
}

/* With verify: the hash-table entries of n pages this channel placed at
 * off, from src (NULL: zero pages), before their needed bits clear. */
static void page_hashed(struct chan_rx *c, unsigned int region, uint64_t off,
			const uint8_t *src, uint64_t n)
{
	uint64_t p = page_index(c, region, off), i;

	if (!c->pc->hashes)
		return;
	for (i = 0; i < n; i++)
		c->pc->hashes[p + i] = ramhash_entry(src ? src + i * STREAM_PAGE :
						     NULL);
}

static void page_placed(struct chan_rx *c, unsigned int region, uint64_t off,
			uint64_t n)
{
	uint64_t p = page_index(c, region, off), i;

	for (i = p; i < p + n; i++)
		__atomic_fetch_and(&c->pc->needed[i / 64], ~(1ULL << (i % 64)),
				   __ATOMIC_RELEASE);
}

/*
 * Place n adjacent pages at off through the uffd: copied from src, or
 * zero pages when src is NULL.  A page that is already there (faultd
 * fetched it on demand) answers EEXIST and is skipped; either way it is
 * no longer needed.
 */
static int uffd_place(struct chan_rx *c, unsigned int region, uint64_t off,
		      const uint8_t *src, uint32_t n)
{
	uint64_t dst = c->pc->host[region] + off, len = (uint64_t)n * STREAM_PAGE;
	uint64_t done = 0, got;
	int r;

	while (done < len) {
		r = uffdio_fill(c->pc->uffd, dst + done, src ? src + done : NULL,
				len - done, &got);
		if (got) {
			page_hashed(c, region, off + done, src ? src + done : NULL,
				    got / STREAM_PAGE);
			page_placed(c, region, off + done, got / STREAM_PAGE);
			__atomic_fetch_add(&c->pc->pushed, got / STREAM_PAGE,
					   __ATOMIC_RELAXED);
			done += got;
		}
		if (r == -EEXIST) {
			page_placed(c, region, off + done, 1);
			done += STREAM_PAGE;
		} else if (r < 0) {
			return r;
		}
	}
	return 0;
}

/* Place a packet's pages (staged, or zero) that are still needed. */
static int place_pages(struct chan_rx *c, unsigned int region, const uint64_t *off,
		       uint32_t n, bool zero)
{
	uint32_t i = 0, j, end;
	int r;

	while (i < n) {
		if (!page_needed(c, region, off[i])) {
			i++;
			continue;
		}
		end = stream_run_end(off, i, n);
		for (j = i + 1; j < end && page_needed(c, region, off[j]); j++)
			;
		r = uffd_place(c, region, off[i],
			       zero ? NULL : c->stage + (size_t)i * STREAM_PAGE, j - i);
		if (r < 0)
			return r;
		i = j;
	}
	return 0;
}

/* The postcopy marker: wait until the uffd is there (or the job failed). */
static int rx_marker(struct chan_rx *c)
{
	struct pc_place *pc = c->pc;
	bool go;

	if (!pc || c->postcopy)
		return worker_fail(c->w, EPROTO, "ram channel %u: %s", c->index,
				   c->postcopy ? "a second postcopy marker" :
				   "a postcopy marker in a precopy job");
	pthread_mutex_lock(&pc->lock);
	/* TERN_FAULT=dest-marker-late: counted only once the device state
	 * came, as over a channel slower than the main connection. */
	while (fault_active("dest-marker-late") && !pc->abort)
		pthread_cond_wait(&pc->cond, &pc->lock);
	pc->markers++;
	c->marker_pages = c->pages_total;
	pthread_cond_broadcast(&pc->cond);
	while (!pc->go && !pc->abort)
		pthread_cond_wait(&pc->cond, &pc->lock);
	go = pc->go && !pc->abort;
	pthread_mutex_unlock(&pc->lock);
	c->postcopy = true;
	return go ? 0 : -ECANCELED;
}

/* readv() until every iovec is full. */
static int read_iov(int fd, struct iovec *iov, int n)
{
	ssize_t s;

	while (n > 0) {
		s = readv(fd, iov, n);
		if (s < 0 && errno == EAGAIN)
			return -ETIMEDOUT;      /* SO_RCVTIMEO: a stall */
		if (s < 0 && errno == EINTR)
			continue;
		if (s < 0)
			return -errno;
		if (s == 0)
			return -EBADMSG;
		iov_advance(&iov, &n, s);
	}
	return 0;
}

static int rx_fail(struct chan_rx *c, int r)
{
	return worker_fail_link(c->w, r, "ram channel %u: %s", c->index,
			   r == -EPIPE || r == -EBADMSG ?
			   "the source closed the connection mid-stream" :
			   r == -ETIMEDOUT ? "nothing received for 20 s: the "
			   "connection stalled (timed out)" : strerror(-r));
}

static int recv_packet(struct chan_rx *c, uint64_t seq, bool *ended)
{
	struct iovec iov[STREAM_MAX_BATCH];
	uint64_t off[STREAM_MAX_BATCH], sum;
	uint8_t *dst[STREAM_MAX_BATCH];
	struct stream_pkt p;
	const char *why;
	bool fresh;
	uint32_t i;
	int r;

	r = stream_read_full(c->fd, &p, sizeof(p), 0);
	if (r < 0)
		return rx_fail(c, r);
	sum = stream_sum_start(&p);     /* the header as it came */
	if (stream_pkt_check(&p, &c->layout, seq, &why) < 0)
		return worker_fail(c->w, EPROTO, "ram channel %u: %s", c->index, why);
	r = stream_read_full(c->fd, off, p.npages * 8, 0);
	if (r < 0)
		return rx_fail(c, r);
	sum = p.npages ? stream_sum_add(sum, off, p.npages * 8) : sum;
	if (sum != p.sum)
		return worker_fail(c->w, EPROTO, "ram channel %u: packet %llu is "
				   "damaged (the checksum of its header and offsets "
				   "differs)", c->index, (unsigned long long)seq);
	for (i = 0; i < p.npages; i++)
		if (stream_offset_check(&off[i], &c->layout, p.region) < 0)
			return worker_fail(c->w, EPROTO,
					   "ram channel %u: page offset 0x%llx outside "
					   "region %u", c->index,
					   (unsigned long long)off[i], p.region);
	/* Where data lands: the pages, or the staging buffer (first-time
	 * pages; in postcopy always, for pages appear only whole, via the
	 * uffd).  Staged data is checked before it goes anywhere. */
	fresh = c->postcopy || !all_received(c, p.region, off, p.npages);
	for (i = 0; i < p.npages; i++)
		dst[i] = fresh ? c->stage + (size_t)i * STREAM_PAGE :
			 c->ram->r[p.region].host + off[i];
	if (!fresh && p.data_len)
		map_pages(c, p.region, off, p.npages);
	if (p.flags & STREAM_PKT_ZSTD) {
		r = stream_read_full(c->fd, c->zbuf, p.data_len, 0);
		if (r < 0)
			return rx_fail(c, r);
	} else if (p.data_len) {
		for (i = 0; i < p.npages; i++)
			iov[i] = (struct iovec){ dst[i], STREAM_PAGE };
		r = read_iov(c->fd, iov, p.npages);
		if (r < 0)
			return rx_fail(c, r);
	}
	if (p.flags & STREAM_PKT_NOP)
		return 0;
	if (p.flags & STREAM_PKT_POSTCOPY)
		return rx_marker(c);
	if (p.flags & STREAM_PKT_END) {
		*ended = true;
		if (c->postcopy) {
			pthread_mutex_lock(&c->pc->lock);
			c->pc->ended++;
			pthread_cond_broadcast(&c->pc->cond);
			pthread_mutex_unlock(&c->pc->lock);
		}
		return 0;
	}
	if (p.flags & STREAM_PKT_ZERO) {
		r = c->postcopy ? place_pages(c, p.region, off, p.npages, true) :
		    punch_zero(c, p.region, off, p.npages);
	} else {
		/* Only a frame that does not decode is the source's fault;
		 * a decoder we cannot make fails below like any error here. */
		if (p.flags & STREAM_PKT_ZSTD) {
			r = unpack_zstd(c, dst, p.npages, p.data_len);
			if (r == -EPROTO)
				return worker_fail(c->w, EPROTO, "ram channel %u: a "
						   "compressed packet does not decode "
						   "to its %u pages", c->index, p.npages);
			if (r == 0)
				worker_count_zstd(c->w, c->index, p.npages,
						  (uint64_t)p.npages * STREAM_PAGE);
		}
		if (r == 0 && c->postcopy)
			r = place_pages(c, p.region, off, p.npages, false);
		else if (r == 0 && fresh)
			r = place_helper_pages(&c->helper, c->place, c->ram,
					       p.region, off, c->stage, p.npages);
	}
	if (r < 0)
		return worker_fail(c->w, r, "ram channel %u: %s", c->index,
				   strerror(-r));
	mark_received(c, p.region, off, p.npages);
	worker_count(c->w, c->index, sizeof(p) + p.npages * 8 + p.data_len,
		     p.npages, (p.flags & STREAM_PKT_ZERO) ? p.npages : 0);
	/* published for Settle (dest_settle) */
	__atomic_store_n(&c->pages_total, c->pages_total + p.npages,
			 __ATOMIC_RELEASE);
	return 0;
}

static void *chan_rx_thread(void *arg)
{
	struct chan_rx *c = arg;
	uint64_t seq = 0;
	bool ended = false;
	int r = 0, nice = 0;

	c->zbuf = malloc(STREAM_MAX_BATCH * STREAM_PAGE);
	c->stage = malloc(STREAM_MAX_BATCH * STREAM_PAGE);
	if (!c->zbuf || !c->stage)
		r = worker_fail(c->w, ENOMEM, "ram channel %u: no memory", c->index);

	while (!ended && r == 0) {
		if (c->postcopy)
			thread_nice(&nice, PC_DEST_BULK_NICE);
		r = recv_packet(c, seq++, &ended);
	}
	c->err = r;
	__atomic_store_n(&c->ended, ended, __ATOMIC_RELEASE);
	ZSTD_freeDCtx(c->zctx);
	c->zctx = NULL;
	free(c->zbuf);
	free(c->stage);
	c->zbuf = c->stage = NULL;
	return NULL;
}

int chan_rx_start(struct chan_rx *c)
{
	int r = 0;

	/* No helper is not an error: the channel places alone. */
	if (c->share && !c->postcopy)
		r = place_helper_start(&c->helper);
	if (r < 0)
		log_warnc(-r, "ram channel %u: no helper thread, placing alone",
			  c->index);
	r = pthread_create(&c->thread, NULL, chan_rx_thread, c);
	if (r) {
		place_helper_stop(&c->helper);
		return -r;
	}
	c->started = true;
	return 0;
}

int chan_rx_join_ms(struct chan_rx *c, unsigned int ms)
{
	if (c->started) {
		if (thread_join_ms(c->thread, ms) == ETIMEDOUT)
			return 1;
		c->started = false;
	}
	return chan_rx_join(c);
}

int chan_rx_join(struct chan_rx *c)
{
	if (c->started) {
		pthread_join(c->thread, NULL);
		c->started = false;
	}
	place_helper_stop(&c->helper);
	return c->err;
}
