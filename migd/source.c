// SPDX-License-Identifier: GPL-2.0-only
/*
 * The source side of a migration (one worker process): its set-up,
 * precopy and the switchover, and the job's end.  worker_main (worker.c)
 * calls source_run.
 *
 *  setup:  connect to the vmm, map its RAM, connect the main connection
 *          and the ram channels to the destination, exchange hellos and
 *          the RAM layout, start dirty logging.
 *  active: round 1 sends every page that holds data (holes, pages never
 *          touched, are skipped without a read); each later round syncs
 *          the dirty log and sends what was dirtied, until the remaining
 *          pages fit in downtime-limit at the measured bandwidth (or at
 *          avail-switchover-bandwidth when given).
 *  device: stop the VM, send the last dirty pages and the device state;
 *          when the destination has loaded it (Ready), tell it to resume
 *          (Go) - from that moment the source never resumes - and wait
 *          for Resumed.  Downtime is measured from the stop to Resumed.
 * Any failure before Go resumes the VM (if it was running) and turns
 * dirty logging off: the guest is never lost.
 *
 * A switch to postcopy goes on in source_postcopy.c, which shares the
 * job's struct source and the steps here it also takes (the main
 * connection, the dirty log, queueing pages, the switch's stop and Go),
 * listed in migd.h.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/sockios.h>

#include "common/bitmap.h"
#include "common/log.h"
#include "common/uri.h"
#include "common/util.h"
#include "migd/migd.h"
#include "proto/stream.pb-c.h"

#define CHUNK_PAGES 64                  /* pages of one chunk go to one channel */
#define PC_SWITCH 1                     /* a round stopped to switch to postcopy */
#define PC_AUTO_ROUNDS 5                /* postcopy auto: switch after this many */
#define ROUND_MIN_US 5000               /* precopy rounds: at most one this often */

static uint64_t deadline(void)
{
	return deadline_ms(MIGD_IO_TIMEOUT_MS);
}

/* A message on the main connection (whole: source_abort may write too). */
int source_send(struct source *s, const ProtobufCMessage *m)
{
	int r;

	pthread_mutex_lock(&s->main_tx);
	r = stream_msg_send(s->main_fd, m, deadline());
	pthread_mutex_unlock(&s->main_tx);
	return r;
}

/* The same, failing the job with what could not be sent. */
int source_send_named(struct source *s, const ProtobufCMessage *m,
		      const char *what)
{
	int r = source_send(s, m);

	if (r < 0)
		return worker_fail(s->w, r, "sending %s: %s", what, strerror(-r));
	return 0;
}

/* ---- set-up ------------------------------------------------------------- */

static int source_vmm(struct source *s)
{
	struct vmm_start st;
	int r;

	r = vmm_link_open(&s->vmm, s->w->spec->rundir, s->w->spec->vm, s->err,
			  sizeof(s->err));
	if (r == 0)
		r = vmm_link_status(&s->vmm, &st, s->err, sizeof(s->err));
	if (r < 0)
		return worker_fail(s->w, r, "%s", s->err);
	/* The vmm would refuse these only at DirtyStart, after the
	 * destination's waiting job was used up by the connections. */
	if (st.moved_to[0])
		return worker_fail(s->w, EBUSY, "vmm %s: the guest moved to %s: "
				   "this stale copy is not migrated (nothing was "
				   "sent to %s)", s->w->spec->vm, st.moved_to,
				   s->peer);
	if (st.uffd)
		return worker_fail(s->w, EBUSY, "vmm %s still waits for pages of "
				   "a postcopy migration: its memory is not all "
				   "here yet, and is not migrated (nothing was sent "
				   "to %s; migctl status %s)", s->w->spec->vm,
				   s->peer, s->w->spec->vm);
	if (st.state != TERN__VMM__RUN_STATE__RUN_STATE_RUNNING &&
	    st.state != TERN__VMM__RUN_STATE__RUN_STATE_PAUSED)
		return worker_fail(s->w, EINVAL, "vmm %s has no running or paused "
				   "guest to migrate", s->w->spec->vm);
	s->vcpus = st.vcpus;
	s->base_throttle = st.throttle;
	pthread_mutex_lock(&s->w->lock);
	s->w->source_was_running = st.state == TERN__VMM__RUN_STATE__RUN_STATE_RUNNING;
	s->w->throttle_before = st.throttle;
	pthread_mutex_unlock(&s->w->lock);
	r = vmm_link_map_ram(&s->vmm, &s->ram, false, s->err,
			     sizeof(s->err));
	if (r < 0)
		return worker_fail(s->w, r, "%s", s->err);
	pthread_mutex_lock(&s->w->lock);
	s->w->total_bytes = s->ram.pages * STREAM_PAGE;
	pthread_mutex_unlock(&s->w->lock);
	return 0;
}

static const char *conn_name(enum stream_role role)
{
	return role == STREAM_ROLE_MAIN ? "main connection" :
	       role == STREAM_ROLE_RAM ? "ram connection" : "page link";
}

/* The connection source_dial waits on (-1: none), under the job's lock:
 * a timeout's abort shuts it, as a peer that never answers the hello
 * would hold the job MIGD_IO_TIMEOUT_MS past its timeout.  Whether the
 * job was aborted before. */
static bool source_dialing(struct source *s, int fd)
{
	bool aborted;

	pthread_mutex_lock(&s->w->lock);
	s->dialing = fd;
	aborted = s->w->abort_done;
	pthread_mutex_unlock(&s->w->lock);
	return aborted;
}

/* Connect one connection and say hello; returns the fd or -errno. */
int source_dial(struct source *s, const struct uri *u, enum stream_role role,
		uint32_t index)
{
	struct stream_hello h;
	uint32_t status;
	int fd, r;

	/* Aborted meanwhile (a timeout in set-up): not one connection more. */
	if (worker_aborted(s->w))
		return -ECANCELED;
	fd = uri_connect(u, MIGD_IO_TIMEOUT_MS);
	if (fd < 0)
		return worker_fail(s->w, fd, "cannot connect to %s: %s",
				   s->peer, strerror(-fd));
	if (source_dialing(s, fd)) {
		source_dialing(s, -1);
		close(fd);
		return -ECANCELED;
	}
	chan_tune_socket(fd, role == STREAM_ROLE_RAM);
	stream_hello_init(&h, role, index, s->w->id, s->w->spec->token);
	r = stream_write_full(fd, &h, sizeof(h), deadline());
	if (r == 0)
		r = stream_read_full(fd, &status, 4, deadline());
	source_dialing(s, -1);
	if (r == 0 && le32toh(status)) {
		status = le32toh(status);
		close(fd);
		/* The peer's word: an errno (1 to 4095) or it is damaged. */
		if (status > STREAM_MAX_ERRNO)
			return worker_fail(s->w, EPROTO, "the destination answered "
					   "the %s's hello with %u, which is no error "
					   "code", conn_name(role), status);
		r = -(int)status;
		return worker_fail(s->w, r, "the destination refused the %s: %s",
				   conn_name(role), r == -EACCES ?
				   "token mismatch" : strerror(-r));
	}
	if (r < 0) {
		close(fd);
		return worker_fail(s->w, r, "%s: no answer to our hello: %s",
				   s->peer, strerror(-r));
	}
	return fd;
}

static int source_hello(struct source *s)
{
	Tern__Stream__StreamMsg m = TERN__STREAM__STREAM_MSG__INIT, *reply = NULL;
	Tern__Stream__Hello h = TERN__STREAM__HELLO__INIT;
	Tern__Stream__Region reg[STREAM_MAX_REGIONS], *preg[STREAM_MAX_REGIONS];
	Tern__Migd__Params pp;
	uint8_t ppbuf[256];
	uint64_t t0;
	unsigned int i;
	int r;

	for (i = 0; i < s->ram.n; i++) {
		tern__stream__region__init(&reg[i]);
		reg[i].gpa = s->ram.r[i].gpa;
		reg[i].size = s->ram.r[i].size;
		preg[i] = &reg[i];
	}
	h.vm = (char *)s->w->spec->vm;
	h.channels = s->nchan;
	h.memory = s->ram.pages * STREAM_PAGE;
	h.vcpus = s->vcpus;
	h.n_regions = s->ram.n;
	h.regions = preg;
	h.page_size = STREAM_PAGE;
	/* The job's parameters, so that the destination's status shows them. */
	params_to_proto(&s->w->spec->params, &pp);
	if (tern__migd__params__get_packed_size(&pp) <= sizeof(ppbuf)) {
		h.params.len = tern__migd__params__pack(&pp, ppbuf);
		h.params.data = ppbuf;
	}
	m.body_case = TERN__STREAM__STREAM_MSG__BODY_HELLO;
	m.hello = &h;
	t0 = now_ns();
	r = source_send(s, &m.base);
	if (r == 0)
		r = stream_msg_recv(s->main_fd, &tern__stream__stream_msg__descriptor,
				    4096, deadline(), (ProtobufCMessage **)&reply);
	s->hello_rtt_ns = now_ns() - t0;
	if (r < 0)
		return worker_fail(s->w, r, "%s: the destination did not answer our "
				   "layout: %s", s->w->spec->peer, strerror(-r));
	if (reply->body_case == TERN__STREAM__STREAM_MSG__BODY_REFUSE &&
	    reply->refuse->cancelled)
		r = worker_fail_cancelled(s->w, "the destination",
					  reply->refuse->migd_ended);
	else if (reply->body_case == TERN__STREAM__STREAM_MSG__BODY_REFUSE)
		r = worker_fail(s->w, stream_peer_errno(reply->refuse->err),
				"the destination refused: %s", reply->refuse->message);
	else if (reply->body_case != TERN__STREAM__STREAM_MSG__BODY_ACCEPT)
		r = worker_fail(s->w, EPROTO, "the destination answered our layout "
				"with message %d", reply->body_case);
	protobuf_c_message_free_unpacked(&reply->base, NULL);
	return r;
}

static int source_connect(struct source *s)
{
	const struct job_spec *spec = s->w->spec;
	struct uri u;
	unsigned int i;
	int r;

	if (uri_parse(spec->peer, &u) < 0 || u.kind == URI_FILE)
		return worker_fail(s->w, EINVAL, "'%s' is not a tcp: or unix: address",
				   spec->peer);
	/* A test's slow dial (t_precopy_features): the job connects only
	 * once its timeout (or a cancel) has aborted it, a minute at most,
	 * whatever the load: the abort finds no connection to shut. */
	for (i = 0; i < 6000 && fault_active("source-slow-connect") &&
	     !worker_aborted(s->w); i++)
		usleep(10000);
	s->main_fd = source_dial(s, &u, STREAM_ROLE_MAIN, 0);
	if (s->main_fd < 0)
		return s->main_fd;
	r = source_hello(s);
	for (i = 0; r == 0 && i < s->nchan; i++) {
		struct chan_tx *c = &s->chan[i];

		c->w = s->w;
		c->index = i;
		c->ram = &s->ram;
		c->zstd_level = spec->params.compress == COMPRESS_KIND_ZSTD ?
				(int)spec->params.compress_level : 0;
		c->fd = source_dial(s, &u, STREAM_ROLE_RAM, i);
		if (c->fd < 0)
			return c->fd;
		r = chan_tx_start(c);
		if (r < 0)
			return worker_fail(s->w, r, "ram channel %u: cannot start "
					   "its thread: %s", i, strerror(-r));
	}
	/* Dialled now so that a switch to postcopy costs no connection set-up. */
	if (r == 0) {
		s->page_fd = source_dial(s, &u, STREAM_ROLE_PAGE, 0);
		if (s->page_fd < 0)
			return s->page_fd;
	}
	return r;
}

static int source_dirty_start(struct source *s)
{
	Tern__Vmm__DirtyInfo *info = NULL;
	struct rpc_result res;
	void *p = MAP_FAILED;
	uint64_t size = 0;
	char why[256];
	int r;

	r = vmm_link_call(&s->vmm, "DirtyStart", NULL, NULL, 0,
			  (ProtobufCMessage **)&info, &res, s->err, sizeof(s->err));
	if (r < 0)
		return worker_fail(s->w, r, "%s", s->err);
	s->dirty_on = true;
	/* A memfd shorter than it says, or one the vmm may shrink later,
	 * would kill this worker (SIGBUS). */
	r = -EPROTO;
	snprintf(why, sizeof(why), "DirtyStart answered %zu descriptors and %llu "
		 "pages in %llu bytes, for a guest of %llu pages", res.nfds,
		 (unsigned long long)info->pages,
		 (unsigned long long)info->bitmap_bytes,
		 (unsigned long long)s->ram.pages);
	if (res.nfds == 1 && info->pages == s->ram.pages &&
	    info->bitmap_bytes == BITMAP_BYTES(info->pages))
		r = vmm_memfd_check(res.fds[0], "its dirty bitmap", &size, why,
				    sizeof(why));
	if (r == 0 && size < info->bitmap_bytes) {
		snprintf(why, sizeof(why), "its dirty bitmap has %llu bytes of %llu",
			 (unsigned long long)size,
			 (unsigned long long)info->bitmap_bytes);
		r = -EPROTO;
	}
	if (r == 0) {
		p = mmap(NULL, info->bitmap_bytes, PROT_READ | PROT_WRITE,
			 MAP_SHARED, res.fds[0], 0);
		if (p == MAP_FAILED) {
			r = -errno;
			snprintf(why, sizeof(why), "its dirty bitmap: %s",
				 strerror(-r));
		}
	}
	rpc_result_close_fds(&res);
	if (r < 0) {
		protobuf_c_message_free_unpacked(&info->base, NULL);
		return worker_fail(s->w, r, "vmm %s: %s", s->w->spec->vm, why);
	}
	s->dirty = p;
	s->dirty_bytes = info->bitmap_bytes;
	protobuf_c_message_free_unpacked(&info->base, NULL);
	return 0;
}

/* ---- sending pages ---------------------------------------------------------- */

static int source_auto_converge(struct source *s, uint64_t sent_bytes,
				uint64_t dirty);

/*
 * A sync in mid-round put newly dirty pages in the bitmap: the round
 * takes those ahead of it, the next one the rest.  Either way they are
 * to send, so the status counts them: what the round took, sent or not,
 * and what the bitmap holds now (worker_fill subtracts what was sent).
 */
static void source_round_recount(struct source *s)
{
	uint64_t known = s->round_taken + bitmap_count(s->dirty, s->ram.pages);

	pthread_mutex_lock(&s->w->lock);
	s->w->round_pages = known;
	pthread_mutex_unlock(&s->w->lock);
}

#define MIDROUND_CHECK_NS 500000000ULL

/*
 * Auto-converge looks every MIDROUND_CHECK_NS, not only between rounds:
 * a first round of a large guest can last seconds while the guest takes
 * the CPUs the migration needs.  Syncing the dirty log in mid-round only
 * moves bits from KVM into the shared bitmap early; its newly dirty pages
 * over the interval, against the bytes sent meanwhile, are the test.
 */
static int source_midround(struct source *s)
{
	Tern__Vmm__DirtySyncResult *res = NULL;
	uint64_t now = now_ns(), sent;
	int r;

	if (s->precopy && worker_postcopy_requested())
		return PC_SWITCH;
	/* Not in the final round: the VM is stopped, every RPC is downtime. */
	if (!s->w->spec->params.auto_converge || !s->precopy)
		return 0;
	if (!s->check_ns) {
		s->check_ns = now;
		s->check_bytes = __atomic_load_n(&s->w->transferred_bytes,
						 __ATOMIC_RELAXED);
		return 0;
	}
	if (now - s->check_ns < MIDROUND_CHECK_NS)
		return 0;
	r = vmm_link_call(&s->vmm, "DirtySync", NULL, NULL, 0,
			  (ProtobufCMessage **)&res, NULL, s->err, sizeof(s->err));
	if (r < 0)
		return worker_fail(s->w, r, "%s", s->err);
	source_round_recount(s);
	sent = __atomic_load_n(&s->w->transferred_bytes, __ATOMIC_RELAXED);
	r = source_auto_converge(s, sent - s->check_bytes, res->dirty_pages);
	protobuf_c_message_free_unpacked(&res->base, NULL);
	s->check_ns = now;
	s->check_bytes = sent;
	return r;
}

/* Queue page `off` of `region` to the channel that owns its chunk. */
int source_queue(struct source *s, unsigned int region, uint64_t off)
{
	uint64_t page = s->ram.first_page[region] + off / STREAM_PAGE;
	unsigned int ch = (page / CHUNK_PAGES) % s->nchan;
	struct batch *b = &s->pending[ch][region];
	int r = 0;

	b->region = region;
	b->off[b->npages++] = off;
	if (b->npages == STREAM_MAX_BATCH) {
		r = chan_tx_push(&s->chan[ch], b);
		b->npages = 0;
		if (r == 0)
			r = source_midround(s);
	}
	return r;
}

/* Push the partial batches and wait until every channel is idle. */
int source_flush(struct source *s)
{
	unsigned int ch, reg;
	int r = 0;

	for (ch = 0; ch < s->nchan; ch++)
		for (reg = 0; reg < s->ram.n; reg++) {
			struct batch *b = &s->pending[ch][reg];

			if (b->npages && r == 0)
				r = chan_tx_push(&s->chan[ch], b);
			b->npages = 0;
		}
	for (ch = 0; ch < s->nchan; ch++) {
		int e = chan_tx_drain(&s->chan[ch]);

		if (r == 0)
			r = e;
	}
	return r;
}

/* A round of `pages` begins: the status counts them as remaining. */
static void source_round_begin(struct source *s, uint64_t pages)
{
	struct worker *w = s->w;
	uint64_t sent = 0;
	unsigned int i;

	for (i = 0; i < s->nchan; i++)
		sent += __atomic_load_n(&w->chan[i].pages, __ATOMIC_RELAXED);
	s->round_taken = 0;
	pthread_mutex_lock(&w->lock);
	w->round_pages = pages;
	w->round_base = sent;
	pthread_mutex_unlock(&w->lock);
}

int source_sync(struct source *s, uint64_t *ret_dirty)
{
	Tern__Vmm__DirtySyncResult *res = NULL;
	uint64_t t0 = now_ns();
	int r;

	r = vmm_link_call(&s->vmm, "DirtySync", NULL, NULL, 0,
			  (ProtobufCMessage **)&res, NULL, s->err, sizeof(s->err));
	if (r < 0)
		return worker_fail(s->w, r, "%s", s->err);
	t0 = now_ns() - t0;
	if (!s->vmm_rtt_ns || t0 < s->vmm_rtt_ns)
		s->vmm_rtt_ns = t0;
	protobuf_c_message_free_unpacked(&res->base, NULL);
	*ret_dirty = bitmap_count(s->dirty, s->ram.pages);
	return 0;
}

unsigned int source_page_region(const struct ram_view *v, uint64_t page)
{
	unsigned int i = v->n - 1;

	while (i > 0 && page < v->first_page[i])
		i--;
	return i;
}

/*
 * A vmm that died (or quit) took the guest with it: nothing left to
 * send.  Between DirtySyncs a round may last minutes on a slow link, so
 * the round looks every VMM_WATCH_MS, without a call: the vmm's end of
 * the connection closed.
 */
#define VMM_WATCH_MS 200

static int source_vmm_alive(struct source *s)
{
	uint64_t now = now_ns();

	if (now - s->vmm_seen_ns < VMM_WATCH_MS * 1000000ULL)
		return 0;
	s->vmm_seen_ns = now;
	if (!vmm_link_gone(&s->vmm))
		return 0;
	/* (source_run adds what that means for the guest) */
	return worker_fail(s->w, EPIPE, "vmm %s closed its connection in round %llu",
			   s->w->spec->vm, (unsigned long long)s->w->rounds + 1);
}

/* Send every page the bitmap holds, clearing bits as they are taken. */
static int source_dirty_round(struct source *s, uint64_t *ret_pages)
{
	uint64_t words = BITMAP_WORDS(s->ram.pages), i, w;
	int r = 0;

	source_round_begin(s, bitmap_count(s->dirty, s->ram.pages));
	for (i = 0; i < words && r == 0; i++) {
		if (!__atomic_load_n(&s->dirty[i], __ATOMIC_RELAXED))
			continue;
		w = __atomic_exchange_n(&s->dirty[i], 0, __ATOMIC_RELAXED);
		while (w && r == 0) {
			uint64_t page = i * 64 + __builtin_ctzll(w);
			unsigned int reg = source_page_region(&s->ram, page);

			w &= w - 1;
			if (page >= s->ram.pages)
				break;
			r = source_queue(s, reg,
					 (page - s->ram.first_page[reg]) * STREAM_PAGE);
			s->round_taken++;
		}
		/* Stopped for postcopy: the pages not taken stay to send. */
		if (r == PC_SWITCH && w)
			__atomic_fetch_or(&s->dirty[i], w, __ATOMIC_RELAXED);
		if ((i & 1023) == 0 && worker_cancelled())
			r = -ECANCELED;
		if ((i & 15) == 0 && r == 0)
			r = source_vmm_alive(s);
	}
	if (r >= 0) {
		int e = source_flush(s);

		r = e < 0 ? e : r;
	}
	*ret_pages = s->round_taken;
	return r;
}

/*
 * Round 1: every page that holds data, holes skipped unread.  The pages
 * go into the dirty bitmap and out as in any round, so a page the guest
 * dirties ahead of the round goes once, and a round cut short for
 * postcopy leaves the rest of its pages there, to send.
 */
static int source_first_round(struct source *s, uint64_t *ret_pages)
{
	unsigned int i;
	int r;

	for (i = 0; i < s->ram.n; i++)
		ram_view_mark_data(&s->ram, i, s->dirty);
	r = source_dirty_round(s, ret_pages);
	__atomic_store_n(&s->w->skipped_pages, s->ram.pages - *ret_pages,
			 __ATOMIC_RELAXED);
	return r;
}

/* ---- convergence and switchover --------------------------------------------- */

/* Verify hashes the RAM's data on this host, then on the other, both
 * inside the pause: at the rate timed before round 1, what the data
 * holds now; the data's size in bytes. */
static uint64_t source_verify_estimate(struct source *s)
{
	uint64_t data;

	if (!s->w->spec->params.verify || !s->hash_rate)
		return 0;
	data = ram_view_data_bytes(&s->ram);
	s->verify_ms = 2 * data * 1000 / s->hash_rate;
	return data;
}

/*
 * The part of the pause that does not depend on pages, in us.  Without
 * it a limit of a few ms was overrun 2x (limit 2 ms, downtime 4 ms: 0 ms
 * expected for 41 pages).  Timed before any pause: three calls to the
 * vmm here (Stop, the last DirtySync, SaveState), and for the device
 * state's way to the other vmm and back and Go's way there, two Hello
 * round trips (each the link both ways and a call to that vmm).  That
 * misses what the stand-ins do not do, above all waking the vCPUs there
 * (here, in a nested VM: 0.4 ms timed, 3.8 ms real).  So the fixed part
 * of this host's recent completed pauses counts when it is more
 * (job_pause_fixed_us: their lower median).
 */
/*
 * A learned figure at or above the limit is left out, the job counting
 * what a first job would (its own timing, or the first guess): counted,
 * it could never be met, and the job went round every ROUND_MIN_US for
 * ever (a destination that once took 1.4 s to resume, a 300 ms limit:
 * 4184 rounds and on), with no job completing to teach a smaller one.
 * Capped at the limit it would be the same for any guest that dirties a
 * page.  Left out, the job switches as a fresh migd's would; if that
 * host is still slow, its downtime says so, and it teaches the next.
 * limit_ms is the job's limit now (a Tune may change it).
 */
static bool source_learned_too_big(const struct source *s, uint32_t limit_ms)
{
	return s->w->spec->pause_fixed_us >= (uint64_t)limit_ms * 1000;
}

static uint64_t source_fixed_us(const struct source *s, uint32_t limit_ms)
{
	uint64_t timed = (3 * s->vmm_rtt_ns + 2 * s->hello_rtt_ns) / 1000;
	uint64_t seen = s->w->spec->pause_fixed_us;

	if (!seen || source_learned_too_big(s, limit_ms))
		seen = PAUSE_FIXED_FIRST_US;
	return MAX(timed, seen);
}

/*
 * The bandwidth is that of all rounds so far, not of the last one: a
 * short round goes into empty socket buffers (4 MiB a channel on each
 * side) at several times the rate the destination takes it, and an
 * estimate from it let the final round overrun the limit (4 channels:
 * 3.1 GB/s "measured", 0.85 GB/s real, 28 ms for 20).  With verify,
 * the hashing counts too.  Under w->lock; the expected downtime in ms.
 */
static uint64_t source_estimate(struct source *s, uint64_t dirty)
{
	struct worker *w = s->w;
	uint64_t use_bw, remaining = dirty * STREAM_PAGE, us;

	if (s->round_bytes && s->round_ns)
		w->bandwidth = mul_div(s->round_bytes, 1000000000ULL, s->round_ns);
	use_bw = w->params.avail_switchover_bandwidth ?
		 w->params.avail_switchover_bandwidth : w->bandwidth;
	source_verify_estimate(s);
	w->remaining_bytes = remaining;
	w->pause_fixed_us = source_fixed_us(s, w->params.downtime_limit_ms);
	if (source_learned_too_big(s, w->params.downtime_limit_ms) !=
	    s->learned_left_out) {
		s->learned_left_out = !s->learned_left_out;
		if (s->learned_left_out)
			log_info("the part of the pause not for pages learned "
				 "from earlier jobs here (%llu ms) is at or above "
				 "the downtime limit of %u ms: not counted (%llu us "
				 "counted instead, as for a first job)",
				 (unsigned long long)w->spec->pause_fixed_us / 1000,
				 w->params.downtime_limit_ms,
				 (unsigned long long)w->pause_fixed_us);
		else
			log_info("the part of the pause not for pages learned "
				 "from earlier jobs here (%llu ms) is below the "
				 "downtime limit of %u ms: counted",
				 (unsigned long long)w->spec->pause_fixed_us / 1000,
				 w->params.downtime_limit_ms);
	}
	if (remaining && !use_bw) {
		w->expected_downtime_ms = UINT64_MAX;
	} else {
		us = (remaining && use_bw ? DIV_ROUND_UP(remaining * 1000000, use_bw) : 0) +
		     s->verify_ms * 1000 + w->pause_fixed_us;
		w->expected_downtime_ms = DIV_ROUND_UP(us, 1000);
	}
	return w->expected_downtime_ms;
}

static uint64_t source_round_stats(struct source *s, uint64_t sent_bytes,
				   uint64_t send_ns, uint64_t dirty,
				   uint64_t round_ns)
{
	struct worker *w = s->w;
	uint64_t expected;

	s->round_bytes += sent_bytes;
	s->round_ns += send_ns;
	pthread_mutex_lock(&w->lock);
	w->rounds++;
	w->round_pages = 0;             /* between rounds: the sync's count */
	w->dirty_rate = round_ns ? dirty * 1000000000ULL / round_ns : 0;
	expected = source_estimate(s, dirty);
	pthread_mutex_unlock(&w->lock);
	worker_report(w);
	return expected;
}

/* Pages each ram channel carried so far (the channels idle), and their sum. */
uint64_t source_channel_pages(const struct source *s, uint64_t *counts)
{
	uint64_t sum = 0;
	unsigned int i;

	for (i = 0; i < s->nchan; i++)
		sum += counts[i] = s->chan[i].pages_total;
	return sum;
}

/*
 * The last look before the stop.  What the channels sent can still sit
 * in the sockets' buffers on both hosts (megabytes a channel, 40 ms to
 * place here with 4 channels into fresh memory), and it would land inside
 * the pause, which the estimate does not count.  So wait, with the guest
 * still running, until the destination has placed all of it (or says,
 * after SETTLE_WAIT_MS, how much is still on its way: counted as still
 * to send); the wait is the tail of those bytes and counts into the
 * bandwidth.  Then take the pages dirtied meanwhile: the expected
 * downtime, again.
 */
static int source_settle(struct source *s, uint64_t *ret_expected)
{
	Tern__Stream__StreamMsg m = TERN__STREAM__STREAM_MSG__INIT, *ans = NULL;
	Tern__Stream__Settle f = TERN__STREAM__SETTLE__INIT;
	uint64_t counts[STREAM_MAX_CHANNELS], t0 = now_ns(), waited, dirty, bw;
	uint64_t pending, sent;
	int r;

	r = source_flush(s);            /* the channels are idle: counts */
	if (r < 0)
		return r;
	sent = source_channel_pages(s, counts);
	f.n_channel_pages = s->nchan;
	f.channel_pages = counts;
	m.body_case = TERN__STREAM__STREAM_MSG__BODY_SETTLE;
	m.settle = &f;
	r = source_send_named(s, &m.base, "Settle");
	if (r < 0)
		return r;
	r = source_expect(s, TERN__STREAM__STREAM_MSG__BODY_SETTLED, "Settled", &ans);
	if (r < 0)
		return r;
	pending = ans->settled->pending_pages;
	protobuf_c_message_free_unpacked(&ans->base, NULL);
	if (pending > sent)
		return worker_fail(s->w, EPROTO, "the destination says %llu pages "
				   "are still on their way", (unsigned long long)pending);
	waited = now_ns() - t0;
	s->round_ns += waited;
	s->settle_ns += waited;
	r = source_sync(s, &dirty);
	if (r < 0)
		return r;
	pthread_mutex_lock(&s->w->lock);
	/* What a slow link still carries is part of the pause too. */
	*ret_expected = source_estimate(s, dirty + pending);
	bw = s->w->bandwidth;
	pthread_mutex_unlock(&s->w->lock);
	worker_report(s->w);
	log_info("the pages sent settled there in %llu us (%llu still on their "
		 "way); %llu dirty since, %llu ms expected at %llu MB/s (%llu us "
		 "of it not for pages)",
		 US(waited), (unsigned long long)pending,
		 (unsigned long long)dirty, (unsigned long long)*ret_expected,
		 (unsigned long long)bw / 1000000,
		 (unsigned long long)s->w->pause_fixed_us);
	return 0;
}

/* Ask the vmm to take percent of the vCPUs' time (0 lifts it). */
/* Auto-converge's throttle (0: lift it); the vmm gets at least the one an
 * operator had set before the job, and that one back at the end. */
static int source_throttle(struct source *s, uint32_t percent)
{
	Tern__Vmm__Throttle t = TERN__VMM__THROTTLE__INIT;
	int r;

	t.percent = MAX(percent, s->base_throttle);
	if (percent)
		s->throttled = true;
	r = vmm_link_call(&s->vmm, "SetThrottle", &t.base, NULL, 0, NULL, NULL,
			  s->err, sizeof(s->err));
	if (r < 0)
		return worker_fail(s->w, r, "%s", s->err);
	if (!percent)
		s->throttled = false;
	pthread_mutex_lock(&s->w->lock);
	s->w->throttle = percent;
	pthread_mutex_unlock(&s->w->lock);
	if (percent)
		log_info("auto-converge: vCPUs throttled %u%%%s", t.percent,
			 t.percent > percent ? " (the operator's)" : "");
	return 0;
}

/*
 * Auto-converge: a round that dirtied more than half of what it could send
 * will not converge; take more of the vCPUs' time (initial, then plus the
 * increment each such round, up to the maximum).
 */
static int source_auto_converge(struct source *s, uint64_t sent_bytes,
				uint64_t dirty)
{
	const struct mig_params *p = &s->w->spec->params;
	uint32_t now, next;

	if (!p->auto_converge || dirty * STREAM_PAGE * 2 <= sent_bytes)
		return 0;
	pthread_mutex_lock(&s->w->lock);
	now = s->w->throttle;
	pthread_mutex_unlock(&s->w->lock);
	next = now ? MIN(now + p->throttle_increment, p->throttle_max) :
		     p->throttle_initial;
	return next == now ? 0 : source_throttle(s, next);
}

/*
 * Verify hashes all of the RAM's data inside the pause, on both hosts: a
 * limit that cannot hold that much, and the part of the pause that is
 * not for pages, can never be met (a job whose estimate was the limit's
 * 250 ms with 4.9 of them fixed went 120,000 rounds), and the guest
 * should not pay many times its limit for the proof.  Fail the job
 * before the stop, saying so; the guest runs on here.  Timed once, before
 * round 1, on a sample (source_verify_time); the data counted again at
 * each estimate (source_estimate).
 */
static int source_verify_fits(struct source *s)
{
	struct mig_params pp, *p = &pp;
	uint64_t fixed_ms;

	worker_params(s->w, p);
	fixed_ms = DIV_ROUND_UP(source_fixed_us(s, p->downtime_limit_ms), 1000);
	/* Verify is the cause only if the limit holds the rest: a fixed
	 * part beyond it alone is the estimate's to say (round by round),
	 * verify or not.  A job that may switch to postcopy ends that way,
	 * verified outside the pause (when postcopy completes). */
	if ((s->verify_ms <= p->downtime_limit_ms &&
	     (fixed_ms >= p->downtime_limit_ms ||
	      s->verify_ms + fixed_ms <= p->downtime_limit_ms)) ||
	    p->postcopy == POSTCOPY_POLICY_AUTO ||
	    (p->timeout_s && p->timeout_action == TIMEOUT_ACTION_POSTCOPY))
		return 0;
	return worker_fail(s->w, EINVAL, "verify needs about %llu ms of the "
			   "pause (hashing %llu MiB of RAM on each host), and the "
			   "rest of the pause about %llu ms, more than the downtime "
			   "limit of %u ms: raise downtime-limit or turn verify off",
			   (unsigned long long)s->verify_ms,
			   (unsigned long long)ram_view_data_bytes(&s->ram) >> 20,
			   (unsigned long long)fixed_ms, p->downtime_limit_ms);
}

static int source_verify_time(struct source *s)
{
	int r;

	if (!s->w->spec->params.verify)
		return 0;
	r = ram_view_hash_rate(&s->ram, &s->hash_rate);
	if (r < 0)
		return worker_fail(s->w, r, "timing the RAM's hashing: %s",
				   strerror(-r));
	log_info("verify: %llu MiB of RAM data, hashed at %llu MB/s here",
		 (unsigned long long)source_verify_estimate(s) >> 20,
		 (unsigned long long)s->hash_rate / 1000000);
	return source_verify_fits(s);   /* before any page is sent */
}

static int source_precopy(struct source *s)
{
	struct worker *w = s->w;
	uint64_t t0, t1, b0, el, dirty, pages, expected, sent;
	struct mig_params p;
	int r;

	/* Until round 1 has counted the pages that hold data, all of them
	 * may be to send: not 0 (marking them takes a while in a large,
	 * scattered guest). */
	pthread_mutex_lock(&w->lock);
	w->remaining_bytes = w->total_bytes;
	pthread_mutex_unlock(&w->lock);
	worker_set_state(w, JOB_STATE_ACTIVE);
	s->precopy = true;
	r = source_verify_time(s);
	if (r < 0)
		return r;
	t0 = now_ns();
	b0 = __atomic_load_n(&w->transferred_bytes, __ATOMIC_RELAXED);
	r = source_first_round(s, &pages);
	for (;;) {
		if (r != 0)
			return r;       /* an error, or PC_SWITCH */
		t1 = now_ns();
		r = source_sync(s, &dirty);
		if (r < 0)
			return r;
		sent = __atomic_load_n(&w->transferred_bytes, __ATOMIC_RELAXED) - b0;
		expected = source_round_stats(s, sent, t1 - t0, dirty, now_ns() - t0);
		r = source_verify_fits(s);
		if (r < 0)
			return r;
		worker_params(w, &p);   /* a Tune's limit from this round on */
		if (expected <= p.downtime_limit_ms) {
			r = source_settle(s, &expected);
			if (r < 0)
				return r;
			if (expected <= p.downtime_limit_ms)
				return 0;
		}
		if (worker_postcopy_requested())
			return PC_SWITCH;
		/* Postcopy auto: a round that dirtied more than half of what it
		 * sent will not converge (nor will PC_AUTO_ROUNDS of them). */
		if (w->spec->params.postcopy == POSTCOPY_POLICY_AUTO &&
		    (dirty * STREAM_PAGE * 2 > sent || w->rounds >= PC_AUTO_ROUNDS)) {
			log_info("precopy will not converge (round %llu): switching "
				 "to postcopy", (unsigned long long)w->rounds);
			return PC_SWITCH;
		}
		r = source_auto_converge(s, sent, dirty);
		if (r < 0)
			return r;
		if (worker_cancelled())
			return -ECANCELED;
		/* A guest that dirties little, under a limit below the fixed
		 * part of the pause, gives rounds of microseconds: not more
		 * than one a ROUND_MIN_US (syncs cost the vmm). */
		el = now_ns() - t0;     /* once: a second reading may be later */
		if (el < ROUND_MIN_US * 1000ULL)
			usleep(ROUND_MIN_US - el / 1000);
		t0 = now_ns();
		b0 = __atomic_load_n(&w->transferred_bytes, __ATOMIC_RELAXED);
		r = source_dirty_round(s, &pages);
	}
}

int source_expect(struct source *s, int body, const char *what,
		  Tern__Stream__StreamMsg **ret)
{
	Tern__Stream__StreamMsg *m = NULL;
	uint64_t more_ns = 0;
	int r;

	/* The largest answer is ResumeNeeded's bitmap.  Ready comes after
	 * the destination's verify, which may take far longer than I/O
	 * (and, with TERN_FAULT=source-channel-no-end, a minute later: a
	 * source that does not give up). */
	if (body == TERN__STREAM__STREAM_MSG__BODY_READY)
		more_ns = 2 * s->verify_ms * 1000000ULL +
			  (fault_active("source-channel-no-end") ? 60000000000ULL : 0);
	r = stream_msg_recv(s->main_fd, &tern__stream__stream_msg__descriptor,
			    s->dirty_bytes + 4096, deadline() + more_ns,
			    (ProtobufCMessage **)&m);
	if (r < 0)
		return worker_fail(s->w, r, "waiting for the destination's %s: %s",
				   what, r == -EPIPE ? "connection closed" :
				   strerror(-r));
	if ((int)m->body_case == body) {
		if (ret)
			*ret = m;
		else
			protobuf_c_message_free_unpacked(&m->base, NULL);
		return 0;
	}
	if (m->body_case == TERN__STREAM__STREAM_MSG__BODY_REFUSE &&
	    m->refuse->discarded && body == TERN__STREAM__STREAM_MSG__BODY_RESUMED) {
		/* The one answer to Go that lets the guest run here again:
		 * the destination proved it can never run it.  The switch
		 * is undone (source_recover resumes the guest). */
		bool ran;

		pthread_mutex_lock(&s->w->lock);
		s->w->switched = false;
		ran = s->w->source_was_running;
		pthread_mutex_unlock(&s->w->lock);
		r = worker_fail(s->w, stream_peer_errno(m->refuse->err),
				"the destination failed: %s; %s", m->refuse->message,
				ran ? "the guest resumes here" : "the guest stays "
				"paused here, as it was when the job stopped it");
	} else if (m->body_case == TERN__STREAM__STREAM_MSG__BODY_REFUSE &&
		   m->refuse->cancelled && body != TERN__STREAM__STREAM_MSG__BODY_RESUMED) {
		r = worker_fail_cancelled(s->w, "the destination",
					  m->refuse->migd_ended);
	} else if (m->body_case == TERN__STREAM__STREAM_MSG__BODY_REFUSE) {
		r = worker_fail(s->w, stream_peer_errno(m->refuse->err),
				"the destination failed: %s", m->refuse->message);
		/* A recovery refused for good: no later one can succeed. */
		if (m->refuse->unrecoverable)
			worker_set_unrecoverable(s->w);
		if (!strncmp(m->refuse->message, "verify", 6)) {
			pthread_mutex_lock(&s->w->lock);
			snprintf(s->w->verified, sizeof(s->w->verified), "%s",
				 m->refuse->message);
			pthread_mutex_unlock(&s->w->lock);
		}
	}
	else
		r = worker_fail(s->w, EPROTO, "the destination sent message %d "
				"instead of its %s", m->body_case, what);
	protobuf_c_message_free_unpacked(&m->base, NULL);
	return r;
}

/* Bytes the ram channels' sockets still hold: not yet taken by the peer. */
static uint64_t source_in_flight(const struct source *s)
{
	uint64_t sum = 0;
	unsigned int i;
	int n;

	for (i = 0; i < s->nchan; i++)
		if (ioctl(s->chan[i].fd, SIOCOUTQ, &n) == 0 && n > 0)
			sum += n;
	return sum;
}

/*
 * Wait for an answer that the destination gives only once its ram
 * channels have delivered what is on its way: a slow link may take
 * longer than MIGD_IO_TIMEOUT_MS, so the wait lasts while those bytes
 * still move.  Once they stopped moving, the destination has
 * MIGD_SWITCH_STALL_MS of its own (it refuses when no page arrives that
 * long; a relay may have taken bytes it did not deliver yet) and
 * MIGD_IO_TIMEOUT_MS more to say so; with verify, also twice what
 * hashing the RAM on both hosts is expected to take (the destination
 * hashes what it holds before it answers).
 */
int source_await(struct source *s, const char *what)
{
	struct pollfd pfd = { .fd = s->main_fd, .events = POLLIN };
	uint64_t quiet, limit, held, seen = UINT64_MAX;
	int r;

	source_verify_estimate(s);      /* verify_ms for the data held now */
	quiet = (MIGD_SWITCH_STALL_MS + MIGD_IO_TIMEOUT_MS +
		 (s->w->spec->params.verify ? 2 * s->verify_ms : 0)) * 1000000ULL;
	limit = now_ns() + quiet;

	for (;;) {
		r = poll_until(&pfd, 1, now_ns() + 200000000ULL);
		if (r > 0)
			return 0;
		if (r != -ETIMEDOUT)
			return worker_fail(s->w, r, "waiting for the destination's "
					   "%s: %s", what, strerror(-r));
		if (worker_cancelled())
			return -ECANCELED;
		held = source_in_flight(s);
		if (held != seen) {
			seen = held;
			limit = now_ns() + quiet;
		} else if (now_ns() > limit) {
			return worker_fail(s->w, ETIMEDOUT, "waiting for the "
					   "destination's %s: no answer, and the "
					   "ram channels moved nothing for %u s",
					   what, (unsigned int)(quiet / 1000000000ULL));
		}
	}
}

/* The stopped VM's complete state, encoded (free out->data). */
int source_save_state(struct source *s, ProtobufCBinaryData *out)
{
	Tern__Vmm__VmState *st = NULL;
	int r;

	r = vmm_link_call(&s->vmm, "SaveState", NULL, NULL, 0,
			  (ProtobufCMessage **)&st, NULL, s->err, sizeof(s->err));
	if (r < 0)
		return worker_fail(s->w, r, "%s", s->err);
	out->len = tern__vmm__vm_state__get_packed_size(st);
	out->data = malloc(out->len ? out->len : 1);
	if (out->data)
		tern__vmm__vm_state__pack(st, out->data);
	protobuf_c_message_free_unpacked(&st->base, NULL);
	if (!out->data)
		return worker_fail(s->w, ENOMEM, "no memory for the device state");
	return 0;
}

/* The device state, with verify's hashes of the RAM (none: n 0). */
static int source_send_device(struct source *s, uint64_t *hashes, size_t n)
{
	Tern__Stream__StreamMsg m = TERN__STREAM__STREAM_MSG__INIT;
	Tern__Stream__DeviceState d = TERN__STREAM__DEVICE_STATE__INIT;
	uint64_t counts[STREAM_MAX_CHANNELS];
	int r;

	r = source_save_state(s, &d.vm_state);
	if (r < 0)
		return r;
	source_channel_pages(s, counts);
	d.n_channel_pages = s->nchan;
	d.channel_pages = counts;
	d.ram_hashes = hashes;
	d.n_ram_hashes = n;
	m.body_case = TERN__STREAM__STREAM_MSG__BODY_DEVICE;
	m.device = &d;
	r = source_send_named(s, &m.base, "the device state");
	free(d.vm_state.data);
	return r;
}

/*
 * The guest's pause: from Stop here to the release of its vCPUs there,
 * not to the moment this side hears of it (the Resumed message can wait
 * for a CPU on both hosts while the guest already runs).  The
 * destination times Go -> release and Go -> Resumed on its own clock;
 * the rest of the round trip is the network's, split evenly between the
 * two ways.  Figures that do not fit the round trip seen here (an older
 * or a confused peer) leave the whole of it counted.
 */
uint64_t source_pause_ns(uint64_t t_stop, uint64_t t_go, uint64_t t_ack,
			 const Tern__Stream__Resumed *r)
{
	uint64_t rtt = t_ack - t_go;

	if (!r->hold_ns || r->release_ns > r->hold_ns || r->hold_ns > rtt)
		return t_ack - t_stop;
	return t_go - t_stop + (rtt - r->hold_ns) / 2 + r->release_ns;
}

/*
 * Past this the guest may run there: switched, under the job's lock,
 * unless a cancel or the timeout was taken first (worker_check_cancel).
 * Their abort shut the sockets, but a Ready already buffered still reads,
 * and Go would then fail with the destination never told: the guest
 * would run nowhere.  So the source resumes instead.
 */
int source_cross(struct source *s)
{
	struct worker *w = s->w;
	bool aborted;

	pthread_mutex_lock(&w->lock);
	aborted = w->abort_done;
	if (!aborted)
		w->switched = true;
	pthread_mutex_unlock(&w->lock);
	return aborted ? -ECANCELED : 0;
}

/*
 * Just before the Stop: counted as stopped before the call, since one
 * that fails (or times out) may still have paused the VM, which
 * source_recover then looks at rather than claiming it kept running.
 * The parent hears it first (the report of DEVICE carries it): should
 * this worker die, migd resumes only a VM the job paused, never one an
 * operator paused meanwhile.
 */
void source_stopping(struct source *s)
{
	s->stopped = true;
	pthread_mutex_lock(&s->w->lock);
	s->w->source_stopped = true;
	pthread_mutex_unlock(&s->w->lock);
	worker_set_state(s->w, JOB_STATE_DEVICE);
}

/*
 * The Stop, and what it found (VmmStatus.found): whether the guest ran
 * when the job stopped it, or its operator had paused it, before the job
 * or during it.  That, not the state when the job began, is what the
 * destination keeps (Go) and what a failure gives back here
 * (source_recover, and migd's clean-up should this worker die: told at
 * once when it differs from what the job began with).  With a vmm that
 * does not say (an older one) the destination runs the guest, as before,
 * and a failure gives back the state the job began with.
 */
/* The job's Stop (transient: the job's pause, not the operator's), and
 * what it found, as the operator has the guest (NONE: an older vmm). */
static int source_stop_found(struct source *s, Tern__Vmm__RunState *found)
{
	Tern__Vmm__StopRequest rq = TERN__VMM__STOP_REQUEST__INIT;
	Tern__Vmm__VmmStatus *st = NULL;
	int r;

	rq.transient = true;
	r = vmm_link_call(&s->vmm, "Stop", &rq.base, NULL, 0,
			  (ProtobufCMessage **)&st, NULL, s->err, sizeof(s->err));
	if (r < 0)
		return r;
	*found = st->found;
	protobuf_c_message_free_unpacked(&st->base, NULL);
	return 0;
}

int source_stop(struct source *s)
{
	Tern__Vmm__RunState found;
	struct worker *w = s->w;
	bool paused, changed;
	int r;

	r = source_stop_found(s, &found);
	if (r < 0)
		return worker_fail(w, r, "%s", s->err);
	pthread_mutex_lock(&w->lock);
	/* An older vmm does not say: the destination runs the guest, as
	 * before the field; a failure gives back what the job began with. */
	paused = found == TERN__VMM__RUN_STATE__RUN_STATE_PAUSED;
	changed = found != TERN__VMM__RUN_STATE__RUN_STATE_NONE &&
		  w->source_was_running == paused;
	if (changed)
		w->source_was_running = !paused;
	w->guest_paused = paused;
	pthread_mutex_unlock(&w->lock);
	if (paused)
		log_info("the guest was paused when the job stopped it: the "
			 "destination keeps it paused");
	/* migd resumes the source by it should this worker die. */
	if (changed)
		worker_report(w);
	return 0;
}

/* The guest was paused when the job stopped it (source_stop). */
bool source_guest_paused(struct source *s)
{
	bool r;

	pthread_mutex_lock(&s->w->lock);
	r = s->w->guest_paused;
	pthread_mutex_unlock(&s->w->lock);
	return r;
}

/* Whether the switch stands: set by source_cross, undone only by a
 * destination that gave the guest back (source_expect). */
bool source_switched(struct source *s)
{
	bool r;

	pthread_mutex_lock(&s->w->lock);
	r = s->w->switched;
	pthread_mutex_unlock(&s->w->lock);
	return r;
}

/*
 * After Go, while the switch stands: the copy of the guest left here is
 * stale, and the vmm is told so (vmm.proto, SetMoved), so that neither a
 * Cont nor another migration ever runs it beside the destination's (its
 * operator may still, after a lost destination: vmmctl cont NAME --force).
 * Outside the pause; a vmm that does not take the mark costs the job
 * nothing.  After a postcopy's Go the copy is not stale: until the job
 * completes, it holds the pages the destination lacks, and the mark says
 * so (postcopy), so that an operator who finds it after this worker or
 * migd died does not quit it; the completed job marks it again without.
 */
void source_moved(struct source *s, bool confirmed, bool postcopy)
{
	Tern__Vmm__MovedNote n = TERN__VMM__MOVED_NOTE__INIT;
	char to[256], id[2 * STREAM_ID_LEN + 1], err[256];

	if (!source_switched(s))
		return;
	stream_hex(s->w->id, STREAM_ID_LEN, id);
	snprintf(to, sizeof(to), "%.160s (job %.12s%s)", s->peer, id,
		 confirmed ? "" : ", not confirmed: it may not run there");
	n.to = to;
	n.postcopy = postcopy;
	if (vmm_link_call(&s->vmm, "SetMoved", &n.base, NULL, 0, NULL, NULL, err,
			  sizeof(err)) < 0)
		log_warnx("the source vmm was not marked as moved: %s", err);
}

/*
 * Whether the destination kept a paused guest paused, as Go asked
 * (Resumed.guest): one older than the field resumes it whatever Go
 * said.  The guest is there now, so nothing is taken back; the job's
 * status says so, and counts it as a guest that runs (its downtime).
 */
void source_check_kept(struct source *s, const Tern__Stream__Resumed *r)
{
	struct worker *w = s->w;

	if (!source_guest_paused(s) ||
	    r->guest == TERN__STREAM__GUEST_STATE__GUEST_PAUSED)
		return;
	pthread_mutex_lock(&w->lock);
	w->guest_paused = false;
	pthread_mutex_unlock(&w->lock);
	if (r->guest == TERN__STREAM__GUEST_STATE__GUEST_RUNNING)
		worker_note(w, "the guest, paused here, runs on the destination: "
			    "it resumed it (a destination older than this source "
			    "cannot keep it paused)");
	else
		worker_note(w, "the destination answered Go with guest state %d, "
			    "which this source does not know: the guest, paused "
			    "here, may run there", (int)r->guest);
	log_warnx("the destination did not keep the paused guest paused "
		  "(Resumed says guest state %d)", (int)r->guest);
}

/* Go, then the destination's Resumed (*resumed, for the caller to
 * free); *t_go: when Go left. */
int source_go(struct source *s, uint64_t *t_go,
	      Tern__Stream__StreamMsg **resumed)
{
	Tern__Stream__StreamMsg m = TERN__STREAM__STREAM_MSG__INIT;
	Tern__Stream__Go go = TERN__STREAM__GO__INIT;
	int r;

	go.guest = source_guest_paused(s) ? TERN__STREAM__GUEST_STATE__GUEST_PAUSED :
					     TERN__STREAM__GUEST_STATE__GUEST_RUNNING;
	m.body_case = TERN__STREAM__STREAM_MSG__BODY_GO;
	m.go = &go;
	*t_go = now_ns();
	r = source_send(s, &m.base);
	if (r == 0)
		r = source_expect(s, TERN__STREAM__STREAM_MSG__BODY_RESUMED,
				  "Resumed", resumed);
	return r;
}

static int source_switchover(struct source *s)
{
	Tern__Stream__StreamMsg *resumed = NULL;
	struct batch end = { .end = true }, marker = { .marker = true };
	struct worker *w = s->w;
	uint64_t t_stop, t_stopped, t_synced, t_pages, t_dev, t_ready, t_go, t_ack;
	uint64_t pause, t_hash = 0;
	uint64_t dirty, pages, *hashes = NULL;
	size_t nhashes = 0;
	unsigned int i;
	bool paused;
	int r;

	s->precopy = false;
	source_stopping(s);
	t_stop = now_ns();
	r = source_stop(s);
	if (r < 0)
		return r;
	t_stopped = now_ns();
	fault_point("source-after-stop");
	/* (a test's hold point: the pause is 400 ms or more longer) */
	fault_hold(w->spec->rundir, "source-slow-pause", 400);
	r = source_sync(s, &dirty);
	t_synced = now_ns();
	if (r == 0)
		r = source_dirty_round(s, &pages);
	/* Verify: the VM is stopped, so these hashes are of the RAM the
	 * guest resumes with, and the destination must match them before it
	 * may.  Taken while the channels send the last pages (both only
	 * read), and before the ENDs: the destination expects the device
	 * state soon after those. */
	if (r == 0 && w->spec->params.verify) {
		t_hash = now_ns();
		r = ram_view_hash(&s->ram, &hashes, &nhashes);
		if (r < 0)
			r = worker_fail(w, r, "hashing the guest RAM: %s", strerror(-r));
		t_hash = now_ns() - t_hash;
	}
	if (r == 0 && fault_active("source-marker-then-device"))
		r = chan_tx_push(&s->chan[0], &marker);
	/* TERN_FAULT=source-channel-no-end: channel 0 stays open, with
	 * NOPs, as a broken or hostile source could keep it. */
	for (i = 0; r == 0 && i < s->nchan; i++)
		if (i || !fault_active("source-channel-no-end"))
			r = chan_tx_push(&s->chan[i], &end);
	for (i = 0; r == 0 && i < s->nchan; i++)
		r = chan_tx_drain(&s->chan[i]);
	t_pages = now_ns();
	if (r == 0)
		r = source_send_device(s, hashes, nhashes);
	free(hashes);
	t_dev = now_ns();
	if (r == 0)
		r = source_expect(s, TERN__STREAM__STREAM_MSG__BODY_READY, "Ready", NULL);
	if (r < 0)
		return r;
	t_ready = now_ns();
	if (w->spec->params.verify) {
		pthread_mutex_lock(&w->lock);
		snprintf(w->verified, sizeof(w->verified), "ok");
		pthread_mutex_unlock(&w->lock);
	}

	/* The point of no return: once Go may have left, the source must
	 * never resume.  Tell the parent first, in case this process dies. */
	r = source_cross(s);
	if (r < 0)
		return r;
	pthread_mutex_lock(&w->lock);
	w->remaining_bytes = 0;
	pthread_mutex_unlock(&w->lock);
	worker_report(w);
	fault_point("source-before-go");
	r = source_go(s, &t_go, &resumed);
	t_ack = now_ns();
	source_moved(s, r == 0, false);
	if (r < 0 && source_switched(s)) {
		/* The error says only what broke ("waiting for the
		 * destination's Resumed: ..."): say what is left here, and
		 * the way out vmmctl(8) gives for a destination that lost
		 * the guest. */
		worker_fail(w, r, "lost the destination after telling it to "
			    "resume");
		worker_note(w, "the guest may be running there, so the source VM "
			    "stays paused, marked as moved (this copy is stale): "
			    "check whether the guest runs on the destination; if "
			    "not, 'vmmctl cont %s --force' runs it here again, "
			    "from where it stopped", w->spec->vm);
		return r;
	}
	if (r < 0)
		return worker_fail(w, r, "lost the destination after telling it to "
				   "resume");
	pause = source_pause_ns(t_stop, t_go, t_ack, resumed->resumed);
	source_check_kept(s, resumed->resumed);
	paused = source_guest_paused(s);
	pthread_mutex_lock(&w->lock);
	/* A guest paused throughout had no downtime: the switch's time is
	 * logged below, but no figure counts it as the guest's pause, nor
	 * for the next jobs' fixed part (no vCPUs were woken there). */
	w->downtime_us = paused ? 0 : pause / 1000;
	w->resume_ms = resumed->resumed->resume_ns / 1000000;
	/* What did not depend on pages: the next jobs count it (not with
	 * verify: the hashing was in the pause too). */
	if (!w->spec->params.verify && !paused)
		w->pause_fixed_us = (pause - (t_pages - t_synced)) / 1000;
	pthread_mutex_unlock(&w->lock);
	log_info("completed%s %llu ms: stop %llu us, last %llu pages %llu us "
		 "(%llu us of it hashing for verify), "
		 "device state %llu us, destination ready %llu us, Go to vCPUs "
		 "released there %llu us; %llu us not for pages (Resumed heard after "
		 "%llu us; before the stop, %llu us waiting for the pages sent to "
		 "settle there)",
		 paused ? ", the guest kept paused as it was here (no downtime): "
		 "the switch took" : ": downtime",
		 (unsigned long long)(pause / 1000000), US(t_stopped - t_stop),
		 (unsigned long long)pages, US(t_pages - t_stopped), US(t_hash),
		 US(t_dev - t_pages), US(t_ready - t_dev),
		 US(pause - (t_go - t_stop)), US(pause - (t_pages - t_synced)),
		 US(t_ack - t_go), US(s->settle_ns));
	protobuf_c_message_free_unpacked(&resumed->base, NULL);
	return 0;
}

/* ---- the job ---------------------------------------------------------------- */

/*
 * The job ends here (w->lock held): tell the destination why, if the main
 * connection is free to write on (not in the middle of a message), so
 * that its status names the cause rather than a closed connection.
 */
static void source_tell_dest(struct source *s, struct worker *w)
{
	Tern__Stream__StreamMsg m = TERN__STREAM__STREAM_MSG__INIT;
	Tern__Stream__Refuse rf = TERN__STREAM__REFUSE__INIT;
	char msg[200];

	if (s->main_fd < 0 || w->switched || pthread_mutex_trylock(&s->main_tx))
		return;
	snprintf(msg, sizeof(msg), "%.199s", w->error[0] ? w->error : "failed");
	rf.err = ECANCELED;
	rf.message = msg;
	/* Cancelled, not failed: the destination says the source cancelled,
	 * whatever broke there first as this closes the connections. */
	rf.cancelled = worker_cancelled();
	/* Nobody cancelled: migd stopped or died (an older peer takes it
	 * for a cancel). */
	rf.migd_ended = rf.cancelled && worker_migd_ended();
	m.body_case = TERN__STREAM__STREAM_MSG__BODY_REFUSE;
	m.refuse = &rf;
	stream_msg_send(s->main_fd, &m.base, now_ns() + 200000000ULL);
	pthread_mutex_unlock(&s->main_tx);
}

/* Cancel or failure (w->lock held): tell the destination, then make
 * every blocked call fail. */
static void source_abort(struct worker *w, void *arg)
{
	struct source *s = arg;
	unsigned int i;

	source_tell_dest(s, w);
	chan_abort_fd(s->dialing);
	chan_abort_fd(s->main_fd);
	chan_abort_fd(s->page_fd);
	for (i = 0; i < s->nchan; i++)
		chan_abort_fd(s->chan[i].fd);
}

/* Drop every connection to the destination; the threads on them end. */
void source_drop_links(struct source *s)
{
	unsigned int i;

	page_server_stop(&s->ps);
	for (i = 0; i < s->nchan; i++) {
		chan_tx_stop(&s->chan[i]);
		if (s->chan[i].fd >= 0)
			close(s->chan[i].fd);
		s->chan[i].fd = -1;
	}
	if (s->main_fd >= 0)
		close(s->main_fd);
	if (s->page_fd >= 0)
		close(s->page_fd);
	s->main_fd = s->page_fd = -1;
	memset(s->pending, 0, sizeof(s->pending));
}

/* After a failure: the guest runs again on the source, unless Go left. */
static void source_recover(struct source *s)
{
	Tern__Vmm__RunState found;
	struct worker *w = s->w;
	bool switched, was_running;
	char msg[256] = "";

	pthread_mutex_lock(&w->lock);
	switched = w->switched;
	was_running = w->source_was_running;
	pthread_mutex_unlock(&w->lock);
	if (switched || !s->stopped || !was_running || !s->vmm.cl)
		return;
	if (fault_active("source-no-cont"))
		return;
	/* Its operator may have paused it during the job's pause (a
	 * vmmctl stop): it stays so. */
	if (source_stop_found(s, &found) == 0 &&
	    found == TERN__VMM__RUN_STATE__RUN_STATE_PAUSED) {
		worker_note(w, "the source VM stays paused: its operator paused "
			    "it during the job's stop");
		return;
	}
	if (vmm_link_call(&s->vmm, "Cont", NULL, NULL, 0, NULL, NULL, msg,
			  sizeof(msg)) < 0) {
		/* The parent tries again when this worker has exited
		 * (job_source_tidy). */
		log_warnx("could not resume the source VM: %s", msg);
		return;
	}
	s->stopped = false;
	worker_note(w, "the source VM runs again");
}

/* 0, or -ECANCELED once the job was aborted (its error is set). */
static int source_set_up_goes_on(struct worker *w)
{
	return worker_aborted(w) ? -ECANCELED : 0;
}

int source_run(struct worker *w)
{
	struct source s = { .w = w, .main_fd = -1, .page_fd = -1, .dialing = -1 };
	unsigned int i;
	int r;

	str_copy(s.peer, w->spec->peer, sizeof(s.peer));
	s.nchan = MIN(MAX(w->spec->params.channels, 1u), STREAM_MAX_CHANNELS);
	for (i = 0; i < STREAM_MAX_CHANNELS; i++)
		s.chan[i].fd = -1;
	pthread_mutex_init(&s.main_tx, NULL);
	__atomic_store_n(&w->nchannels, s.nchan, __ATOMIC_RELAXED);
	worker_set_abort(w, source_abort, &s);
	/* A timeout or cancel in set-up shuts only the connections made so
	 * far: each connection (source_dial) and each step looks first. */
	r = source_vmm(&s);
	/* Migrate's caller hears now whether the vmm can be migrated at
	 * all (a refusal's text comes with the job's end, jobs.c). */
	worker_answer(w, r, NULL);
	if (r == 0)
		r = source_connect(&s);
	if (r == 0)
		r = source_set_up_goes_on(w);
	if (r == 0)
		r = source_dirty_start(&s);
	if (r == 0)
		r = source_set_up_goes_on(w);
	pthread_mutex_lock(&w->lock);
	w->setup_ms = (now_ns() - w->started_ns) / 1000000;
	pthread_mutex_unlock(&w->lock);
	if (r == 0)
		r = source_precopy(&s);
	if (r == 0)
		r = source_switchover(&s);
	else if (r == PC_SWITCH)
		r = source_postcopy(&s);
	if (r < 0 && worker_cancelled())
		worker_fail(w, ECANCELED, "cancelled");
	if (r < 0) {
		Tern__Vmm__RunState st = TERN__VMM__RUN_STATE__RUN_STATE_RUNNING;
		bool never_stopped;
		const char *how;

		/* First the destination's word: it may be the cause. */
		if (!worker_cancelled())
			worker_note_refuse(w, s.main_fd, 500, "the destination");
		pthread_mutex_lock(&w->lock);
		never_stopped = !w->switched && w->source_was_running && !s.stopped;
		pthread_mutex_unlock(&w->lock);
		/* Untouched by the job; but its operator may have paused it,
		 * or the vmm may be gone (and the guest with it). */
		if (never_stopped && (!s.vmm.cl ||
				      vmm_link_state(&s.vmm, &st, NULL, 0) < 0))
			st = TERN__VMM__RUN_STATE__RUN_STATE_NONE;
		how = st == TERN__VMM__RUN_STATE__RUN_STATE_PAUSED ?
		      "the job did not pause the source VM, which stays paused" :
		      st == TERN__VMM__RUN_STATE__RUN_STATE_RUNNING ?
		      "the source VM kept running" :
		      st == TERN__VMM__RUN_STATE__RUN_STATE_NONE ?
		      "the source vmm no longer answers: its guest may be gone" :
		      "the source VM is neither running nor paused";
		pthread_mutex_lock(&w->lock);
		if (never_stopped)
			snprintf(w->error + strlen(w->error),
				 sizeof(w->error) - strlen(w->error), "%s%s",
				 w->error[0] ? "; " : "", how);
		source_abort(w, &s);
		pthread_mutex_unlock(&w->lock);
		source_recover(&s);
	}
	worker_set_abort(w, NULL, NULL);
	if (s.throttled && source_throttle(&s, 0) < 0)
		log_warnx("could not lift the vCPU throttle");
	source_drop_links(&s);
	if (s.dirty)
		munmap(s.dirty, s.dirty_bytes);
	if (s.dirty_on)
		vmm_link_call(&s.vmm, "DirtyStop", NULL, NULL, 0, NULL, NULL, NULL, 0);
	free(s.tosend);
	free(s.pc_hashes);
	/* The guest's RAM stays mapped, the worker's now: its exit unmaps
	 * it, after the final report (or worker_offer_end, before a wait).
	 * Unmapping 2 GiB read here took 40-50 ms of page tables, counted
	 * in the job's time and holding back its end. */
	worker_keep_ram(w, &s.ram, NULL);
	vmm_link_close(&s.vmm);
	return r;
}
