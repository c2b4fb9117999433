// SPDX-License-Identifier: GPL-2.0-only
/*
 * The worker's figures and its reports to migd (one worker process): the
 * counters the ram channels and the page server add to, each channel's
 * throughput from samples of its byte count, the JobStatus built from
 * them under the job's lock, and the frames this side writes on the
 * status link: "status" events (worker_report) and the replies to migd's
 * deferred calls (worker_answer).  The reporter thread (worker.c) samples
 * the throughputs and reports every MIGD_STATUS_INTERVAL_MS; every state
 * change reports too, and adopt.c offers the packed status to the next
 * migd.  The job's state, its cancel and migd's commands are worker.c's.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "migd/migd.h"

void worker_count(struct worker *w, unsigned int chan, uint64_t bytes,
		  uint64_t pages, uint64_t zero_pages)
{
	struct chan_stats *c = &w->chan[chan];

	__atomic_add_fetch(&c->bytes, bytes, __ATOMIC_RELAXED);
	__atomic_add_fetch(&c->pages, pages, __ATOMIC_RELAXED);
	__atomic_add_fetch(&c->zero_pages, zero_pages, __ATOMIC_RELAXED);
	__atomic_add_fetch(&w->transferred_bytes, bytes, __ATOMIC_RELAXED);
}

uint64_t worker_pages_counted(struct worker *w, unsigned int nchan)
{
	uint64_t pages = 0;
	unsigned int i;

	for (i = 0; i < nchan; i++)
		pages += __atomic_load_n(&w->chan[i].pages, __ATOMIC_RELAXED);
	return pages;
}

void worker_count_zstd(struct worker *w, unsigned int chan, uint64_t pages,
		       uint64_t raw_bytes)
{
	__atomic_add_fetch(&w->chan[chan].zstd_pages, pages, __ATOMIC_RELAXED);
	__atomic_add_fetch(&w->chan[chan].raw_bytes, raw_bytes, __ATOMIC_RELAXED);
}

void worker_count_served(struct worker *w, uint64_t pages, uint64_t taken,
			 uint64_t bytes)
{
	__atomic_add_fetch(&w->pc_requests, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&w->pc_served, pages, __ATOMIC_RELAXED);
	__atomic_add_fetch(&w->pc_taken, taken, __ATOMIC_RELAXED);
	__atomic_add_fetch(&w->transferred_bytes, bytes, __ATOMIC_RELAXED);
}

void worker_count_dropped(struct worker *w, uint64_t pages)
{
	/* Taken from the push by the page server, as much as those it
	 * took before the push queued them. */
	__atomic_add_fetch(&w->pc_taken, pages, __ATOMIC_RELAXED);
}

/*
 * A source in postcopy, from its counters (w->lock held): the page
 * server's figures, the pages pushed, and what the push still has to
 * send, down from its base by each page pushed or taken by the page
 * server since; so the figures move while the push runs, not only when
 * its main thread looks.
 */
static void worker_fill_push(struct worker *w, Tern__Migd__JobStatus *js,
			     Tern__Migd__PostcopyStats *pcst)
{
	uint64_t done, taken = __atomic_load_n(&w->pc_taken, __ATOMIC_RELAXED);
	uint64_t pushed = __atomic_load_n(&w->pc_pushed, __ATOMIC_RELAXED);

	pcst->requests_served = __atomic_load_n(&w->pc_requests, __ATOMIC_RELAXED);
	pcst->pages_on_demand = __atomic_load_n(&w->pc_served, __ATOMIC_RELAXED);
	/* One read for both figures, so that they add up at any time
	 * (before, the push copied this in now and then, and needed_pages
	 * went down with the channels' counts: it ran hundreds of pages
	 * ahead). */
	pcst->pages_pushed = pushed;
	if (!w->pc_counting)
		return;
	done = (pushed - MIN(pushed, w->pc_base_pushed)) +
	       (taken - MIN(taken, w->pc_base_taken));
	pcst->needed_pages = w->pc_base_left - MIN(w->pc_base_left, done);
	js->remaining_bytes = pcst->needed_pages * STREAM_PAGE;
}

/* Since when the quietest channel sampled has sent nothing; 0: none. */
static uint64_t worker_quiet_since(const struct worker *w)
{
	unsigned int i, n = MIN(w->rate_seen, STREAM_MAX_CHANNELS);
	uint64_t since = 0;

	for (i = 0; i < n; i++)
		if (w->moved_ns[i] && (!since || w->moved_ns[i] < since))
			since = w->moved_ns[i];
	return since;
}

/* Build the JobStatus; the caller holds w->lock.  chans must have room. */
static void worker_fill(struct worker *w, Tern__Migd__JobStatus *js,
			Tern__Migd__Params *pp, Tern__Migd__ChannelStats *cs,
			Tern__Migd__ChannelStats **pcs, char *idhex,
			Tern__Migd__PostcopyStats *pcst)
{
	const struct job_spec *s = w->spec;
	uint64_t pages = 0, zero = 0, zstd = 0, raw = 0, quiet;
	unsigned int i, nch = __atomic_load_n(&w->nchannels, __ATOMIC_RELAXED);

	stream_hex(w->id, STREAM_ID_LEN, idhex);
	js->id = idhex;
	js->vm = (char *)s->vm;
	js->role = s->role == JOB_ROLE_SOURCE ? TERN__MIGD__JOB_ROLE__ROLE_SOURCE :
					       TERN__MIGD__JOB_ROLE__ROLE_DEST;
	js->state = (Tern__Migd__JobState)w->state;
	js->peer = w->peer[0] ? w->peer : (char *)s->peer;
	params_to_proto(w->has_source_params ? &w->source_params : &w->params, pp);
	js->params = pp;
	js->total_bytes = w->total_bytes;
	js->transferred_bytes = __atomic_load_n(&w->transferred_bytes, __ATOMIC_RELAXED);
	js->remaining_bytes = w->remaining_bytes;
	js->skipped_pages = __atomic_load_n(&w->skipped_pages, __ATOMIC_RELAXED);
	js->rounds = w->rounds;
	js->dirty_rate = w->dirty_rate;
	js->bandwidth = w->bandwidth;
	js->expected_downtime_ms = w->expected_downtime_ms;
	js->pause_fixed_us = w->pause_fixed_us;
	if (w->spec->role == JOB_ROLE_SOURCE)
		js->pause_fixed_learned_us = w->spec->pause_fixed_us;
	js->downtime_ms = w->downtime_us / 1000;
	js->downtime_us = w->downtime_us;
	js->resume_ms = w->resume_ms;
	js->setup_ms = w->setup_ms;
	js->total_ms = (now_ns() - w->started_ns) / 1000000;
	for (i = 0; i < nch; i++) {
		struct chan_stats *c = &w->chan[i];

		tern__migd__channel_stats__init(&cs[i]);
		cs[i].index = i;
		cs[i].bytes = __atomic_load_n(&c->bytes, __ATOMIC_RELAXED);
		cs[i].pages = __atomic_load_n(&c->pages, __ATOMIC_RELAXED);
		cs[i].zero_pages = __atomic_load_n(&c->zero_pages, __ATOMIC_RELAXED);
		cs[i].throughput = __atomic_load_n(&c->throughput, __ATOMIC_RELAXED);
		pages += cs[i].pages;
		zero += cs[i].zero_pages;
		zstd += __atomic_load_n(&c->zstd_pages, __ATOMIC_RELAXED);
		raw += __atomic_load_n(&c->raw_bytes, __ATOMIC_RELAXED);
		pcs[i] = &cs[i];
	}
	js->pages_sent = pages;
	js->zero_pages = zero;
	js->compressed_pages = zstd;
	js->raw_bytes = raw;
	/* Within a round, what it still has to send counts as remaining;
	 * and where a precopy job ended in one (a cancel, a failure). */
	if (w->round_pages && !w->pc_counting &&
	    (w->state == JOB_STATE_ACTIVE || w->state == JOB_STATE_CANCELLING ||
	     w->state == JOB_STATE_CANCELLED || w->state == JOB_STATE_FAILED)) {
		js->round_pages = w->round_pages;
		js->round_sent = MIN(w->round_pages, pages - w->round_base);
		js->remaining_bytes = (js->round_pages - js->round_sent) *
				      STREAM_PAGE;
	}
	js->n_channels = nch;
	js->channels = pcs;
	js->error = w->error;
	js->started_unix_ms = w->started_unix_ms;
	js->finished_unix_ms = job_state_final(w->state) ? unix_ms() : 0;
	js->worker_pid = getpid();
	js->listen = w->listen;
	/* (a destination: from Go on, as a source from sending it; a Cont
	 * that failed leaves the guest on the source) */
	js->switched = w->switched || (w->go_taken && !w->failed);
	js->source_was_running = w->source_was_running;
	js->source_stopped = w->source_stopped;
	js->guest_paused = w->guest_paused;
	js->unrecoverable = w->unrecoverable;
	js->throttle = w->throttle;
	js->throttle_before = w->throttle_before;
	js->verified = w->verified;
	js->no_postcopy = w->no_postcopy;
	js->postcopy_started = w->postcopy;
	if (w->postcopy) {
		*pcst = w->pc;
		pcst->n_latency_hist = PC_HIST_BUCKETS;
		pcst->latency_hist = w->pc_hist;
		js->postcopy_stats = pcst;
	}
	if (w->postcopy && s->role == JOB_ROLE_SOURCE)
		worker_fill_push(w, js, pcst);
	/* Pages left, and a channel that sent nothing for a while: the
	 * destination takes nothing (its worker stopped, say), which a
	 * precopy waits out up to MIGD_STALL_TIMEOUT_MS. */
	quiet = worker_quiet_since(w);
	if (s->role == JOB_ROLE_SOURCE && js->remaining_bytes && quiet &&
	    (w->state == JOB_STATE_ACTIVE || w->state == JOB_STATE_DEVICE) &&
	    !w->postcopy && now_ns() - quiet >= WORKER_STALL_SHOWN_NS)
		js->stalled_ms = (now_ns() - quiet) / 1000000;
}

/* s, or what str_shown makes of it when it is not text. */
static const char *shown_field(const char *s, char *buf, size_t len)
{
	return str_is_text(s) ? s : str_shown(s, buf, len);
}

/*
 * What may quote a peer (its Refuse, its verdict, why it takes no
 * postcopy), a vmm or faultd: in a protobuf string, what is not text
 * shows as \xNN.  A strict decoder refuses a whole List otherwise, and
 * migd.state keeps it, across an upgrade too (job_status_copy).
 */
void status_text_shown(Tern__Migd__JobStatus *js, struct status_text *t)
{
	js->error = (char *)shown_field(js->error, t->error, sizeof(t->error));
	js->verified = (char *)shown_field(js->verified, t->verified,
					   sizeof(t->verified));
	js->no_postcopy = (char *)shown_field(js->no_postcopy, t->no_postcopy,
					      sizeof(t->no_postcopy));
}

int worker_status_pack(struct worker *w, uint8_t **ret, size_t *ret_len)
{
	Tern__Migd__JobStatus js = TERN__MIGD__JOB_STATUS__INIT;
	Tern__Migd__Params pp = TERN__MIGD__PARAMS__INIT;
	Tern__Migd__ChannelStats cs[STREAM_MAX_CHANNELS];
	Tern__Migd__ChannelStats *pcs[STREAM_MAX_CHANNELS];
	Tern__Migd__PostcopyStats pcst;
	char idhex[2 * STREAM_ID_LEN + 1];
	struct status_text text;
	uint8_t *payload;
	size_t len;

	pthread_mutex_lock(&w->lock);
	worker_fill(w, &js, &pp, cs, pcs, idhex, &pcst);
	status_text_shown(&js, &text);
	len = tern__migd__job_status__get_packed_size(&js);
	payload = malloc(len ? len : 1);
	if (payload)
		tern__migd__job_status__pack(&js, payload);
	pthread_mutex_unlock(&w->lock);
	if (!payload)
		return -ENOMEM;
	*ret = payload;
	*ret_len = len;
	return 0;
}

/* Send one status frame to migd (blocking; it reads fast). */
int worker_report(struct worker *w)
{
	Tern__Rpc__Event ev = TERN__RPC__EVENT__INIT;
	Tern__Rpc__Frame f = TERN__RPC__FRAME__INIT;
	uint8_t *payload = NULL, *frame = NULL;
	size_t len, flen;
	int r;

	pthread_mutex_lock(&w->report_lock);
	r = worker_status_pack(w, &payload, &len);
	if (r < 0)
		goto out;
	ev.name = "status";
	ev.data.data = payload;
	ev.data.len = len;
	f.body_case = TERN__RPC__FRAME__BODY_EVENT;
	f.event = &ev;
	flen = RPC_LEN_BYTES + tern__rpc__frame__get_packed_size(&f);
	frame = malloc(flen);
	r = frame ? rpc_frame_encode(&f, frame, flen) : -ENOMEM;
	if (r > 0)
		r = stream_write_full(w->status_fd, frame, r, 0);
	if (r < 0)
		log_debug("status report: %s", strerror(-r));
out:
	free(payload);
	free(frame);
	pthread_mutex_unlock(&w->report_lock);
	return r < 0 ? r : 0;
}

void worker_answer(struct worker *w, int err, const char *msg)
{
	Tern__Rpc__Reply rep = TERN__RPC__REPLY__INIT;
	Tern__Rpc__Frame f = TERN__RPC__FRAME__INIT;
	uint8_t frame[WORKER_ANSWER_MAX + 64];
	char text[WORKER_ANSWER_MAX];
	int n;

	rep.status = err < 0 ? -err : err;
	snprintf(text, sizeof(text), "%s", msg ? msg : "");
	rep.message = text;
	f.body_case = TERN__RPC__FRAME__BODY_REPLY;
	f.reply = &rep;
	pthread_mutex_lock(&w->report_lock);
	n = rpc_frame_encode(&f, frame, sizeof(frame));
	if (n > 0 && stream_write_full(w->status_fd, frame, n, 0) < 0)
		log_debug("answer: migd gone");
	pthread_mutex_unlock(&w->report_lock);
}

/*
 * Each channel's throughput over the last second, from a sample of its
 * byte count at now (w->lock held): the reporter's, every status
 * interval, and the job's last one as it ends, so that a finished job
 * shows the last second it ran, and one that ran less than a second its
 * bytes over the time it ran (it used to show 0 B/s when it ended
 * before the reporter's first sample).
 */
void worker_sample_rates_locked(struct worker *w, uint64_t now)
{
	unsigned int i, n = __atomic_load_n(&w->nchannels, __ATOMIC_RELAXED);

	n = MIN(n, STREAM_MAX_CHANNELS);
	for (i = 0; i < n; i++) {
		struct chan_stats *c = &w->chan[i];
		uint64_t b = __atomic_load_n(&c->bytes, __ATOMIC_RELAXED);

		/* A channel counts nothing before nchannels shows it. */
		if (i >= w->rate_seen)
			rate_start(&w->rate[i], w->rate_prev_ns, 0);
		__atomic_store_n(&c->throughput, rate_sample(&w->rate[i], now, b),
				 __ATOMIC_RELAXED);
		/* Per channel: the kernel fails a link whose peer took
		 * nothing for MIGD_STALL_TIMEOUT_MS, however busy the
		 * others are. */
		if (b != w->seen_bytes[i] || !w->moved_ns[i]) {
			w->seen_bytes[i] = b;
			w->moved_ns[i] = now;
		}
	}
	w->rate_seen = MAX(w->rate_seen, n);
	w->rate_prev_ns = now;
}
