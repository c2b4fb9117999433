// SPDX-License-Identifier: GPL-2.0-only
/*
 * The source's precopy (one worker process, its main thread): the rounds
 * that send the guest's pages through the ram channels while it runs,
 * and their convergence: the expected downtime after each round, the
 * settle before the stop, auto-converge's vCPU throttle and verify's
 * share of the pause.  source_run (source.c) calls source_precopy once
 * the job is set up: 0 when the rest fits the downtime limit, or
 * SOURCE_PC_SWITCH to switch to postcopy.
 *
 * The queueing of pages to their channels is also the switchover's
 * (source.c takes the last dirty round with the VM stopped) and the
 * postcopy push's (source_postcopy.c); those steps, and the throttle
 * lifted at the job's end, are listed in migd.h.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/bitmap.h"
#include "common/log.h"
#include "common/util.h"
#include "migd/migd.h"
#include "proto/stream.pb-c.h"

#define PC_AUTO_ROUNDS 5                /* postcopy auto: switch after this many */
#define ROUND_MIN_US 5000               /* precopy rounds: at most one this often */
/* Postcopy auto: after a refused switch, ask again 1 s later, then 2, 4,
 * up to 16 s while refusals go on (an ask may hold precopy up to the
 * destination's probe of its faultd, MIGD_FAULTD_PROBE_MS). */
#define PC_ASK_AGAIN_NS 1000000000ULL
#define PC_ASK_AGAIN_MAX_NS 16000000000ULL

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
		return SOURCE_PC_SWITCH;
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
	/* The size under the cap is looked at per batch, not per page (a
	 * cap lowered meanwhile: a batch over the new size goes next). */
	if (!s->batch_pages)
		s->batch_pages = pace_batch_pages(__atomic_load_n(&s->w->chan_rate,
								  __ATOMIC_RELAXED));
	if (b->npages >= s->batch_pages) {
		r = chan_tx_push(&s->chan[ch], b);
		b->npages = 0;
		s->batch_pages = 0;
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
	uint64_t sent = worker_pages_counted(w, s->nchan);

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
	s->sync_gap_ns = now_ns() - s->synced_ns;
	s->synced_ns += s->sync_gap_ns;
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
	if (s->stopped)
		return worker_fail(s->w, EPIPE, "vmm %s closed its connection in "
				   "the stop-and-copy, after round %llu",
				   s->w->spec->vm, (unsigned long long)s->w->rounds);
	return worker_fail(s->w, EPIPE, "vmm %s closed its connection in round %llu",
			   s->w->spec->vm, (unsigned long long)s->w->rounds + 1);
}

/* Send every page the bitmap holds, clearing bits as they are taken. */
int source_dirty_round(struct source *s, uint64_t *ret_pages)
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
		if (r == SOURCE_PC_SWITCH && w)
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

	for (i = 0; i < s->ram.n; i++)
		ram_view_mark_data(&s->ram, i, s->dirty);
	/* Counted now: a round cut short (a cancel, a failure, a switch
	 * to postcopy) did not skip the pages it had no time for. */
	__atomic_store_n(&s->w->skipped_pages, s->ram.pages -
			 bitmap_count(s->dirty, s->ram.pages), __ATOMIC_RELAXED);
	return source_dirty_round(s, ret_pages);
}

/* ---- convergence ------------------------------------------------------------ */

/* Verify hashes the RAM's data on this host, then on the other, both
 * inside the pause: at the rate timed before round 1, what the data
 * holds now; the data's size in bytes. */
uint64_t source_verify_estimate(struct source *s)
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
				   uint64_t dirty_ns)
{
	struct worker *w = s->w;
	uint64_t expected;

	s->round_bytes += sent_bytes;
	s->round_ns += send_ns;
	pthread_mutex_lock(&w->lock);
	w->rounds++;
	w->round_pages = 0;             /* between rounds: the sync's count */
	w->dirty_rate = dirty_ns ? dirty * 1000000000ULL / dirty_ns : 0;
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
	uint64_t pending, sent, given;
	char rate[32];
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
	/* The rate the estimate took: the one given, else the measured. */
	given = s->w->params.avail_switchover_bandwidth;
	bw = given ? given : s->w->bandwidth;
	pthread_mutex_unlock(&s->w->lock);
	worker_report(s->w);
	/* (in status's units) */
	log_info("the pages sent settled there in %llu us (%llu still on their "
		 "way); %llu dirty since, %llu ms expected at %s%s (%llu us "
		 "of it not for pages)",
		 US(waited), (unsigned long long)pending,
		 (unsigned long long)dirty, (unsigned long long)*ret_expected,
		 given ? "the avail-switchover-bandwidth of " : "",
		 fmt_rate(bw, rate, sizeof(rate)),
		 (unsigned long long)s->w->pause_fixed_us);
	return 0;
}

/* Ask the vmm to take percent of the vCPUs' time (0 lifts it). */
/* Auto-converge's throttle (0: lift it); the vmm gets at least the one an
 * operator had set before the job, and that one back at the end. */
int source_throttle(struct source *s, uint32_t percent)
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
 * Auto-converge: a round (or half a second of one) that dirtied more than
 * half of what it could send will not converge; take more of the vCPUs'
 * time (initial, then plus the increment at each such look, up to the
 * maximum).
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
	char rate[32];
	int r;

	if (!s->w->spec->params.verify)
		return 0;
	r = ram_view_hash_rate(&s->ram, &s->hash_rate);
	if (r < 0)
		return worker_fail(s->w, r, "timing the RAM's hashing: %s",
				   strerror(-r));
	log_info("verify: %llu MiB of RAM data, hashed at %s here",
		 (unsigned long long)source_verify_estimate(s) >> 20,
		 fmt_rate(s->hash_rate, rate, sizeof(rate)));
	return source_verify_fits(s);   /* before any page is sent */
}

/* The switch is taken: the status says so before migd's Postcopy hears
 * it (its reply shows postcopy_started). */
static void source_switch_taken(struct source *s)
{
	pthread_mutex_lock(&s->w->lock);
	s->w->postcopy = true;
	pthread_mutex_unlock(&s->w->lock);
	worker_report(s->w);
	worker_postcopy_answer(s->w, 0, NULL);
}

/*
 * Precopy stopped to switch to postcopy (r: SOURCE_PC_SWITCH; asked, the
 * timeout's action, or postcopy auto): first, whether the destination can
 * take it now (PostcopyAsk).  The markers it would send next cannot be
 * taken back, so a refusal here is the last point where the job goes on
 * in precopy with nothing lost: the pages a round cut short did not take
 * stay in the bitmap.  SOURCE_PC_SWITCH to switch, 0 to go on, or r as
 * it came.
 */
static int source_ask_switch(struct source *s, int r)
{
	Tern__Stream__StreamMsg m = TERN__STREAM__STREAM_MSG__INIT, *a = NULL;
	Tern__Stream__PostcopyAsk ask = TERN__STREAM__POSTCOPY_ASK__INIT;
	char why[400];

	if (r != SOURCE_PC_SWITCH)
		return r;
	/* (an older destination does not answer: the switch goes ahead) */
	if (!s->dest_answers_ask) {
		source_switch_taken(s);
		return r;
	}
	m.body_case = TERN__STREAM__STREAM_MSG__BODY_POSTCOPY_ASK;
	m.postcopy_ask = &ask;
	r = source_send_named(s, &m.base, "the postcopy ask");
	if (r == 0)
		r = source_expect(s, TERN__STREAM__STREAM_MSG__BODY_POSTCOPY_ANSWER,
				  "PostcopyAnswer", &a);
	if (r < 0)
		return r;
	snprintf(why, sizeof(why), "%s", a->postcopy_answer->refused);
	protobuf_c_message_free_unpacked(&a->base, NULL);
	if (!why[0]) {
		worker_clear_note(s->w);
		source_switch_taken(s);
		return SOURCE_PC_SWITCH;
	}
	s->pc_refused_ns = now_ns();
	s->pc_ask_again_ns = !s->pc_ask_again_ns ? PC_ASK_AGAIN_NS :
			     MIN(2 * s->pc_ask_again_ns, PC_ASK_AGAIN_MAX_NS);
	return worker_postcopy_refused(s->w, why);
}

int source_precopy(struct source *s)
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
		r = source_ask_switch(s, r);
		if (r != 0)
			return r;       /* an error, or SOURCE_PC_SWITCH */
		t1 = now_ns();
		r = source_sync(s, &dirty);
		if (r < 0)
			return r;
		sent = __atomic_load_n(&w->transferred_bytes, __ATOMIC_RELAXED) - b0;
		/* The pages dirtied since the last sync, over that time: the
		 * wait between short rounds too (before, over the round's own
		 * time only: 2000 pages/s showed as 15000) */
		expected = source_round_stats(s, sent, t1 - t0, dirty, s->sync_gap_ns);
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
		r = 0;
		if (worker_postcopy_requested())
			r = SOURCE_PC_SWITCH;
		/* Postcopy auto: a round that dirtied more than half of what it
		 * sent will not converge (nor will PC_AUTO_ROUNDS of them);
		 * refused, it asks again a while later. */
		else if (w->spec->params.postcopy == POSTCOPY_POLICY_AUTO &&
			 (dirty * STREAM_PAGE * 2 > sent || w->rounds >= PC_AUTO_ROUNDS) &&
			 now_ns() - s->pc_refused_ns >= s->pc_ask_again_ns) {
			log_info("precopy will not converge (round %llu): switching "
				 "to postcopy", (unsigned long long)w->rounds);
			r = SOURCE_PC_SWITCH;
		}
		r = source_ask_switch(s, r);
		if (r != 0)
			return r;
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
