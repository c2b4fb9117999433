// SPDX-License-Identifier: GPL-2.0-only
/*
 * The source side of a migration past a postcopy switch (one worker
 * process): source_run (source.c) calls source_postcopy when precopy
 * stops to switch (asked, or postcopy auto).
 *
 *  switch:  with the VM still running, the pages the destination holds
 *           stale so far (PostcopyDiscard, then PostcopyStale rounds
 *           while many are dirtied); then stop the VM, send the device
 *           state and the pages dirtied since (Postcopy), start the page
 *           server on the page link and tell the destination to resume
 *           (Go), with the switchover's steps (source.c).
 *  active:  the background push sends every page still needed over the
 *           ram channels while the page server answers the guest's
 *           faults; with verify, the stopped RAM's hashes follow; the job
 *           completes at PostcopyDone.
 *  paused:  a link failed after the switch: the VM stays paused here with
 *           the guest's pages, until Recover names the destination's
 *           address; then new connections, and the push resumes from the
 *           destination's bitmap of what it still needs.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/bitmap.h"
#include "common/log.h"
#include "common/uri.h"
#include "common/util.h"
#include "migd/migd.h"
#include "proto/stream.pb-c.h"

#define PC_STALE_MAX 1024               /* pages left to drop inside the pause */
#define PC_STALE_ROUNDS 4               /* rounds of dropping them before it */

/* ---- postcopy ------------------------------------------------------------------ */

/* Step one, the VM running: what the destination holds that is stale. */
static int source_send_discard(struct source *s)
{
	Tern__Stream__StreamMsg m = TERN__STREAM__STREAM_MSG__INIT;
	Tern__Stream__PostcopyDiscard pd = TERN__STREAM__POSTCOPY_DISCARD__INIT;
	uint64_t counts[STREAM_MAX_CHANNELS];

	source_channel_pages(s, counts);
	/* TERN_FAULT=source-discard-undercount: a miscounting source. */
	if (fault_active("source-discard-undercount") && counts[0])
		counts[0]--;
	pd.n_channel_pages = s->nchan;
	pd.channel_pages = counts;
	pd.pages = s->ram.pages;
	/* x86: the words are little-endian in memory already. */
	pd.needed.data = (uint8_t *)s->tosend;
	pd.needed.len = BITMAP_BYTES(s->ram.pages);
	pd.verify = s->w->spec->params.verify;
	m.body_case = TERN__STREAM__STREAM_MSG__BODY_POSTCOPY_DISCARD;
	m.postcopy_discard = &pd;
	return source_send_named(s, &m.base, "the postcopy discard");
}

/*
 * The dirty bitmap as a PostcopyStale or Postcopy message carries it:
 * its non-zero words as (index, word) pairs when that is smaller, so
 * that the pause does not grow with the RAM's size (8 GiB: 256 KiB of
 * bitmap to send and scan, for the few hundred pages dirtied in it), else
 * the bitmap itself.  *ret_words is to be freed.
 */
static void source_needed_encode(struct source *s, ProtobufCBinaryData *bm,
				 uint64_t **ret_words, size_t *ret_n)
{
	uint64_t words = BITMAP_WORDS(s->ram.pages), i, nz = 0, *v = NULL;
	size_t k = 0;

	bm->data = NULL;
	bm->len = 0;
	for (i = 0; i < words; i++)
		nz += s->dirty[i] != 0;
	if (nz && nz * 2 < words)
		v = malloc(nz * 2 * sizeof(uint64_t));
	if (nz && !v) {                 /* dense, or no memory to spare */
		bm->data = (uint8_t *)s->dirty;
		bm->len = BITMAP_BYTES(s->ram.pages);
	}
	for (i = 0; v && i < words; i++) {
		if (s->dirty[i]) {
			v[k++] = i;
			v[k++] = s->dirty[i];
		}
	}
	*ret_words = v;
	*ret_n = k;
}

/*
 * Between the discard and the stop, while the pages dirtied since are
 * too many to drop inside the pause (about 1 us a page here: the vmm's
 * and KVM's mappings of each go too), the destination drops them with
 * the guest still running here, in rounds, until few are left or a round
 * no longer shrinks them.  What is left goes with the device state.
 */
static int source_drop_stale(struct source *s, unsigned int *ret_rounds,
			     uint64_t *ret_pages)
{
	Tern__Stream__StreamMsg m = TERN__STREAM__STREAM_MSG__INIT;
	Tern__Stream__PostcopyStale ps = TERN__STREAM__POSTCOPY_STALE__INIT;
	uint64_t dirty, last = UINT64_MAX;
	unsigned int i;
	int r = 0;

	*ret_rounds = 0;
	*ret_pages = 0;
	for (i = 0; i < PC_STALE_ROUNDS; i++) {
		r = source_sync(s, &dirty);
		if (r < 0 || dirty <= PC_STALE_MAX || dirty >= last)
			break;
		last = dirty;
		bitmap_or(s->tosend, s->dirty, s->ram.pages);
		source_needed_encode(s, &ps.needed, &ps.needed_words,
				     &ps.n_needed_words);
		m.body_case = TERN__STREAM__STREAM_MSG__BODY_POSTCOPY_STALE;
		m.postcopy_stale = &ps;
		r = source_send_named(s, &m.base, "the stale pages");
		free(ps.needed_words);
		memset(s->dirty, 0, s->dirty_bytes);
		if (r == 0)
			r = source_expect(s, TERN__STREAM__STREAM_MSG__BODY_POSTCOPY_DISCARDED,
					  "PostcopyDiscarded", NULL);
		if (r < 0)
			break;
		(*ret_rounds)++;
		*ret_pages += dirty;
	}
	return r;
}

/* Step two, the VM stopped: its state and the pages dirtied since. */
static int source_send_postcopy(struct source *s)
{
	Tern__Stream__StreamMsg m = TERN__STREAM__STREAM_MSG__INIT;
	Tern__Stream__Postcopy pc = TERN__STREAM__POSTCOPY__INIT;
	int r;

	r = source_save_state(s, &pc.vm_state);
	if (r < 0)
		return r;
	source_needed_encode(s, &pc.needed, &pc.needed_words, &pc.n_needed_words);
	m.body_case = TERN__STREAM__STREAM_MSG__BODY_POSTCOPY;
	m.postcopy = &pc;
	r = source_send_named(s, &m.base, "the device state");
	free(pc.needed_words);
	free(pc.vm_state.data);
	return r;
}

/* The page link or a channel failed, or the destination went away. */
static int source_check_links(struct source *s)
{
	int r = page_server_error(&s->ps);
	unsigned int i;

	if (r < 0)
		return worker_fail(s->w, r, "%s", s->ps.why);
	for (i = 0; i < s->nchan; i++) {
		pthread_mutex_lock(&s->chan[i].lock);
		r = s->chan[i].err;
		pthread_mutex_unlock(&s->chan[i].lock);
		if (r < 0)
			return r;       /* the channel recorded why */
	}
	return 0;
}

/* Pages the push sent, as the channels sent them: not those they
 * dropped as the page server had sent them meanwhile.  (Counted as
 * queued, less those dropped, the figure went down as drops came.) */
static uint64_t source_pushed(struct source *s)
{
	return __atomic_load_n(&s->w->pc_pushed, __ATOMIC_RELAXED);
}

/*
 * The push has `left` pages to send from now (the bitmap just made, or
 * the destination's after a recovery; 0 once it has them all): the
 * status counts down from here (worker_fill_push), with the page server
 * stopped or not started yet.
 */
static void source_pc_base(struct source *s, uint64_t left)
{
	struct worker *w = s->w;

	pthread_mutex_lock(&w->lock);
	w->pc_counting = true;
	w->pc_base_left = left;
	w->pc_base_pushed = source_pushed(s);
	w->pc_base_taken = __atomic_load_n(&w->pc_taken, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&w->lock);
}

/*
 * The background push: every page still to send, over the ram channels.
 * It walks the bitmap from where the last page request was (faults come
 * in clusters), wrapping around, until a whole pass finds nothing.
 */
/*
 * A failed page server (say, a damaged frame from faultd) is noticed here
 * and in source_wait_done.  Once a pass over the bitmap was the only
 * look: under --max-bandwidth a pass can take half a minute, long enough
 * for faultd to give up on the silent link first (its 20 s stall) and
 * the job to fail for the wrong reason.
 */
#define LINK_CHECK_NS 100000000ULL      /* 100 ms */

/*
 * The source vmm quit or died past the switch.  Its RAM is still mapped
 * here, and the job's pages go on from this worker's mapping (the push,
 * the page server); but this worker now holds the only copy of the pages
 * the destination lacks: said, not failed.  (Once the job ended on it:
 * the destination's guest, which runs on those pages, was lost with it.)
 */
#define VMM_GONE "vmm %s closed its connection (it quit or died): this " \
		 "worker now holds the only copy of the pages the destination " \
		 "still lacks"

static void source_vmm_watch(struct source *s)
{
	if (s->vmm_gone_said || !vmm_link_gone(&s->vmm))
		return;
	s->vmm_gone_said = true;
	worker_set_note(s->w, VMM_GONE "; the push goes on", s->w->spec->vm);
}

static int source_push(struct source *s)
{
	uint64_t words = BITMAP_WORDS(s->ram.pages), cur = 0, empty = 0;
	uint64_t seen = 0, hint, bits, page, checked = now_ns();
	unsigned int reg;
	int r = 0;

	while (empty < words && r == 0) {
		hint = __atomic_load_n(&s->ps.hint, __ATOMIC_RELAXED);
		if (hint != seen) {
			seen = hint;
			cur = (hint / 64) % words;
			empty = 0;
		}
		bits = __atomic_exchange_n(&s->tosend[cur], 0, __ATOMIC_RELAXED);
		if (!bits)
			empty++;
		else
			empty = 0;
		while (bits && r == 0) {
			page = cur * 64 + __builtin_ctzll(bits);
			bits &= bits - 1;
			if (page >= s->ram.pages)
				break;
			reg = source_page_region(&s->ram, page);
			r = source_queue(s, reg, (page - s->ram.first_page[reg]) *
					 STREAM_PAGE);
		}
		if (r < 0 && bits)
			__atomic_fetch_or(&s->tosend[cur], bits, __ATOMIC_RELAXED);
		if (r == 0 && ((cur & 1023) == 0 || now_ns() - checked >= LINK_CHECK_NS)) {
			checked = now_ns();
			r = source_check_links(s);
			source_vmm_watch(s);
		}
		cur = (cur + 1) % words;
	}
	if (r == 0)
		r = source_flush(s);
	return r;
}

/*
 * Verify in postcopy: once the push ended, the hashes of the RAM stopped
 * here since the switch (hashed once; sent again after each recovery),
 * for the destination to compare with what it placed.
 */
static int source_send_pc_hashes(struct source *s)
{
	Tern__Stream__StreamMsg m = TERN__STREAM__STREAM_MSG__INIT;
	Tern__Stream__PostcopyHashes h = TERN__STREAM__POSTCOPY_HASHES__INIT;
	uint64_t t0 = now_ns();
	int r;

	if (!s->pc_hashes) {
		r = ram_view_hash(&s->ram, &s->pc_hashes, &s->n_pc_hashes);
		if (r < 0)
			return worker_fail(s->w, r, "verify: hashing the RAM: %s",
					   strerror(-r));
		log_info("verify: the stopped RAM hashed in %llu ms",
			 (unsigned long long)((now_ns() - t0) / 1000000));
	}
	h.ram_hashes = s->pc_hashes;
	h.n_ram_hashes = s->n_pc_hashes;
	m.body_case = TERN__STREAM__STREAM_MSG__BODY_POSTCOPY_HASHES;
	m.postcopy_hashes = &h;
	return source_send_named(s, &m.base, "the RAM's hashes");
}

/*
 * Wait for PostcopyDone, serving page requests meanwhile (their thread).
 * The destination lets faultd close the page link only after it sent
 * PostcopyDone, but the two connections race (a lost segment of main's
 * is resent later): a page link closed in good order gives main
 * DONE_GRACE_NS to speak before it counts as a failure.
 */
#define DONE_GRACE_NS 2000000000ULL     /* 2 s */
static int source_wait_done(struct source *s)
{
	struct pollfd pfd = { .fd = s->main_fd, .events = POLLIN };
	Tern__Stream__StreamMsg *done = NULL;
	int r;

	for (;;) {
		if (page_server_error(&s->ps) == -EPIPE &&
		    poll_until(&pfd, 1, now_ns() + DONE_GRACE_NS) > 0)
			break;
		r = source_check_links(s);
		if (r < 0)
			return r;
		r = poll_until(&pfd, 1, now_ns() + 200000000ULL);
		if (r > 0)
			break;
		if (r != -ETIMEDOUT)
			return worker_fail(s->w, r, "main connection: %s",
					   strerror(-r));
	}
	r = source_expect(s, TERN__STREAM__STREAM_MSG__BODY_POSTCOPY_DONE,
			  "PostcopyDone", &done);
	if (r < 0)
		return r;
	if (s->w->spec->params.verify) {
		pthread_mutex_lock(&s->w->lock);
		snprintf(s->w->verified, sizeof(s->w->verified), "%s",
			 done->postcopy_done->verified[0] ?
			 done->postcopy_done->verified :
			 "not checked: the destination did not say");
		pthread_mutex_unlock(&s->w->lock);
	}
	protobuf_c_message_free_unpacked(&done->base, NULL);
	return 0;
}

/*
 * Recovery: new connections to uri (hellos with this job's id and
 * token), Resume, the ram channels and the page link; the destination
 * answers with the exact bitmap of what it still needs, which becomes
 * what the push sends; the page server serves the new link.
 */
static int source_resume(struct source *s, const char *uri)
{
	Tern__Stream__StreamMsg m = TERN__STREAM__STREAM_MSG__INIT, *rn = NULL;
	Tern__Stream__Resume rs = TERN__STREAM__RESUME__INIT;
	Tern__Stream__ResumeAck ack = TERN__STREAM__RESUME_ACK__INIT;
	struct uri u;
	unsigned int i, extra = 0;
	int r;

	if (uri_parse(uri, &u) < 0 || (u.kind != URI_TCP && u.kind != URI_UNIX))
		return worker_fail(s->w, EINVAL, "recover: '%s' is not a tcp: or "
				   "unix: address", uri);
	str_copy(s->peer, uri, sizeof(s->peer));
	/* The job's status (and a next migd's adoption) say it from now,
	 * written as Migrate's address is. */
	pthread_mutex_lock(&s->w->lock);
	if (uri_format(&u, s->w->peer, sizeof(s->w->peer)) < 0)
		s->w->peer[0] = 0;
	pthread_mutex_unlock(&s->w->lock);
	s->main_fd = source_dial(s, &u, STREAM_ROLE_MAIN, 0);
	if (s->main_fd < 0)
		return s->main_fd;
	if (!s->fault_extra_done && fault_active("source-resume-extra-channel")) {
		s->fault_extra_done = true;
		extra = 1;
	}
	rs.channels = s->nchan + extra;
	m.body_case = TERN__STREAM__STREAM_MSG__BODY_RESUME;
	m.resume = &rs;
	r = source_send(s, &m.base);
	if (r < 0)
		return worker_fail(s->w, r, "recover: sending Resume: %s", strerror(-r));
	for (i = 0; i < s->nchan; i++) {
		struct chan_tx *c = &s->chan[i];
		struct chan_tx keep = *c;

		memset(c, 0, sizeof(*c));
		c->w = keep.w;
		c->index = keep.index;
		c->ram = keep.ram;
		c->zstd_level = keep.zstd_level;
		c->nice = PC_BULK_NICE;
		c->served = s->served;
		c->fd = source_dial(s, &u, STREAM_ROLE_RAM, i);
		if (c->fd < 0)
			return c->fd;
		r = chan_tx_start(c);
		if (r < 0)
			return worker_fail(s->w, r, "recover: ram channel %u: %s", i,
					   strerror(-r));
	}
	if (extra) {
		r = source_dial(s, &u, STREAM_ROLE_RAM, s->nchan);
		if (r < 0)
			return r;
		close(r);
	}
	s->page_fd = source_dial(s, &u, STREAM_ROLE_PAGE, 0);
	if (s->page_fd < 0)
		return s->page_fd;
	r = source_expect(s, TERN__STREAM__STREAM_MSG__BODY_RESUME_NEEDED,
			  "ResumeNeeded", &rn);
	if (r < 0)
		return r;
	if (rn->resume_needed->pages != s->ram.pages ||
	    rn->resume_needed->needed.len != s->dirty_bytes)
		r = worker_fail(s->w, EPROTO, "recover: the destination's bitmap "
				"has %zu bytes for %llu pages", rn->resume_needed->needed.len,
				(unsigned long long)rn->resume_needed->pages);
	else
		memcpy(s->tosend, rn->resume_needed->needed.data, s->dirty_bytes);
	/* What the page server sent before the break may not have come:
	 * the destination's needed pages say, and the push sends them all. */
	memset(s->served, 0, s->dirty_bytes);
	protobuf_c_message_free_unpacked(&rn->base, NULL);
	if (r < 0)
		return r;
	if (s->ram.pages % 64)
		s->tosend[s->ram.pages / 64] &= (1ULL << (s->ram.pages % 64)) - 1;
	source_pc_base(s, bitmap_count(s->tosend, s->ram.pages));
	s->ps.fd = s->page_fd;
	s->ps.err = 0;
	s->ps.why[0] = 0;
	r = page_server_start(&s->ps);
	if (r < 0)
		return worker_fail(s->w, r, "recover: page server: %s", strerror(-r));
	m.body_case = TERN__STREAM__STREAM_MSG__BODY_RESUME_ACK;
	m.resume_ack = &ack;
	r = source_send(s, &m.base);
	if (r < 0)
		return worker_fail(s->w, r, "recover: sending ResumeAck: %s",
				   strerror(-r));
	return 0;
}

/* Cancelled while postcopy is paused: by migd's end, or by an operator
 * whose destination lost the guest (cancel --force). */
static void source_paused_end(struct source *s)
{
	char how[160] = "";

	/* Nothing is kept by a vmm that has exited: say that instead (and
	 * not the advice of a never recoverable job: this cancel). */
	if (vmm_link_gone(&s->vmm)) {
		if (worker_unrecoverable(s->w))
			worker_error_cut(s->w, NEVER_RECOVER);
		worker_note(s->w, "%s; vmm %s had closed its connection (it quit "
			    "or died), and the guest's remaining pages, which "
			    "only this job held since, end with it: the "
			    "destination can never get them",
			    worker_abandoned() ? "cancelled while postcopy was "
			    "paused" : "postcopy paused", s->w->spec->vm);
	} else if (!worker_abandoned())
		worker_note(s->w, "postcopy paused; the source VM keeps the "
			    "guest's remaining pages (paused)");
	else if (worker_unrecoverable(s->w)) {
		/* The error's advice was this cancel: what it did instead. */
		worker_error_cut(s->w, NEVER_RECOVER);
		worker_note(s->w, "vmm %s stays paused, marked as moved, with "
			    "the guest as it was at the switch ('vmmctl cont %s "
			    "--force' runs it from there)", s->w->spec->vm,
			    s->w->spec->vm);
	} else {
		snprintf(how, sizeof(how), " (if the destination lost the guest, "
			 "'vmmctl cont %s --force' runs it again from there)",
			 s->w->spec->vm);
		worker_note(s->w, "cancelled while postcopy was paused: the source "
			    "VM stays paused, marked as moved, with the guest as "
			    "it was at the switch%s", how);
	}
}

/*
 * A link failed after the switch: the guest runs on the destination with
 * pages that only this side has.  Keep everything (the VM stays paused
 * here, its RAM mapped), resend nothing, and wait for Recover with the
 * destination's address (or for the end of migd).  why: the -errno that
 * paused it.  0 once recovered.
 */
static int source_postcopy_paused(struct source *s, int why)
{
	struct worker *w = s->w;
	enum worker_cmd cmd;
	char uri[PATH_MAX];
	bool told_only = false;

	pthread_mutex_lock(&w->lock);
	/* The reason, where no thread gave one (a call that failed without
	 * saying, a cancel): the log and the status said "postcopy paused: ". */
	if (!w->error[0]) {
		snprintf(w->error, sizeof(w->error), "%s", why == -ECANCELED ?
			 (worker_orphaned() ? "migd died" : "cancelled") :
			 strerror(-why));
		w->failed = true;
	}
	pthread_mutex_unlock(&w->lock);
	/* The destination's word, if it had one: its guest may be gone, and
	 * the job never recoverable. */
	if (why != -ECANCELED)
		worker_note_refuse(w, s->main_fd, 500, "the destination");
	pthread_mutex_lock(&w->lock);
	log_warnx("postcopy paused: %s", w->error);
	pthread_mutex_unlock(&w->lock);
	for (;;) {
		worker_set_state(w, JOB_STATE_POSTCOPY_PAUSED);
		source_drop_links(s);
		s->vmm_gone_said = false;       /* (in this pause's error) */
		/* The destination's migd said the guest is gone there: the
		 * vmm's status says what its copy is now (once). */
		if (worker_unrecoverable(w) && !told_only) {
			source_moved(s, true, SOURCE_COPY_ONLY);
			told_only = true;
		}
		/* A cancel taken ends the job, even with a Recover pending. */
		for (cmd = WORKER_CMD_NONE; cmd != WORKER_CMD_RECOVER; ) {
			cmd = worker_wait_cmd(w, 500, uri, sizeof(uri));
			if (worker_cancelled()) {
				source_paused_end(s);
				return -ECANCELED;
			}
			if (!s->vmm_gone_said && vmm_link_gone(&s->vmm)) {
				s->vmm_gone_said = true;
				worker_note(w, VMM_GONE ": recover the job ('migctl "
					    "recover'); its cancel, or this worker's "
					    "end, loses them", w->spec->vm);
				worker_report(w);
			}
		}
		worker_new_links(w);
		worker_set_state(w, JOB_STATE_POSTCOPY_RECOVER);
		log_info("recovering via %s", uri);
		if (source_resume(s, uri) == 0)
			break;
		pthread_mutex_lock(&w->lock);
		log_warnx("recovery via %s failed: %s", uri, w->error);
		pthread_mutex_unlock(&w->lock);
	}
	pthread_mutex_lock(&w->lock);
	w->pc.recoveries++;
	pthread_mutex_unlock(&w->lock);
	s->vmm_gone_said = false;       /* (the error was cleared) */
	worker_set_state(w, JOB_STATE_POSTCOPY_ACTIVE);
	log_info("postcopy recovered");
	return 0;
}

int source_postcopy(struct source *s)
{
	Tern__Stream__StreamMsg *resumed = NULL;
	struct batch marker = { .marker = true }, end = { .end = true };
	struct worker *w = s->w;
	uint64_t t_stop, t[4], t_go, pause, dirty, left, stale = 0;
	unsigned int i, stale_rounds = 0;
	bool paused;
	int r;

	s->precopy = false;
	pthread_mutex_lock(&w->lock);
	w->postcopy = true;
	if (w->spec->params.verify)
		snprintf(w->verified, sizeof(w->verified), "not checked yet: the "
			 "job switched to postcopy, checked when it completes");
	pthread_mutex_unlock(&w->lock);
	log_info("switching to postcopy");

	/* Step one, the guest still running here: the pages stale or
	 * missing there so far, so that the destination drops them (and
	 * drains its channels) outside the pause. */
	r = source_sync(s, &dirty);
	if (r < 0)
		return r;
	s->tosend = malloc(s->dirty_bytes);
	s->served = calloc(1, s->dirty_bytes);
	if (!s->tosend || !s->served)
		return worker_fail(w, ENOMEM, "no memory for the postcopy bitmaps");
	memcpy(s->tosend, s->dirty, s->dirty_bytes);
	memset(s->dirty, 0, s->dirty_bytes);
	/* Left from here: these pages, and those dirtied until the pause.
	 * (Before, a switch in round 1 showed the whole RAM as left until
	 * the push began: the round's start's figure.) */
	left = bitmap_count(s->tosend, s->ram.pages);
	pthread_mutex_lock(&w->lock);
	w->round_pages = 0;
	w->remaining_bytes = left * STREAM_PAGE;
	pthread_mutex_unlock(&w->lock);
	for (i = 0; r == 0 && i < s->nchan; i++) {
		__atomic_store_n(&s->chan[i].nice, PC_BULK_NICE, __ATOMIC_RELAXED);
		if (i == 0 && fault_active("source-marker-withheld"))
			continue;
		r = chan_tx_push(&s->chan[i], &marker);
	}
	for (i = 0; r == 0 && i < s->nchan; i++)
		r = chan_tx_drain(&s->chan[i]);
	if (r == 0)
		r = source_send_discard(s);
	if (r == 0)
		r = source_await(s, "PostcopyDiscarded");
	if (r == 0)
		r = source_expect(s, TERN__STREAM__STREAM_MSG__BODY_POSTCOPY_DISCARDED,
				  "PostcopyDiscarded", NULL);
	if (r == 0)
		r = source_drop_stale(s, &stale_rounds, &stale);
	if (r < 0)
		return r;

	/* Step two: the pause. */
	source_stopping(s);
	/* (a test's hold point: the job stays in its state 'device' while
	 * the file is there, a minute at most) */
	if (fault_held(w->spec->rundir, "source-switch-held")) {
		log_info("TERN_FAULT: holding in the switch's pause");
		fault_hold(w->spec->rundir, "source-switch-held", 0);
	}
	t_stop = now_ns();
	r = source_stop(s);
	if (r < 0)
		return r;
	t[0] = now_ns();
	r = source_sync(s, &dirty);
	if (r < 0)
		return r;
	bitmap_or(s->tosend, s->dirty, s->ram.pages);
	left = bitmap_count(s->tosend, s->ram.pages);
	source_pc_base(s, left);
	t[1] = now_ns();
	if (r == 0)
		r = source_send_postcopy(s);
	t[2] = now_ns();
	if (r == 0)
		r = source_expect(s, TERN__STREAM__STREAM_MSG__BODY_READY, "Ready", NULL);
	t[3] = now_ns();
	s->ps.fd = s->page_fd;
	s->ps.ram = &s->ram;
	s->ps.w = w;
	s->ps.tosend = s->tosend;
	s->ps.served = s->served;
	for (i = 0; i < s->nchan; i++)
		__atomic_store_n(&s->chan[i].served, s->served, __ATOMIC_RELEASE);
	if (r == 0) {
		r = page_server_start(&s->ps);
		if (r < 0)
			return worker_fail(w, r, "cannot start the page server: %s",
					   strerror(-r));
	}
	if (r < 0)
		return r;

	/* The point of no return, as in precopy. */
	r = source_cross(s);
	if (r < 0)
		return r;
	worker_report(w);
	fault_point("source-postcopy-before-go");
	r = source_go(s, &t_go, &resumed);
	source_moved(s, r == 0, SOURCE_COPY_POSTCOPY);
	if (r < 0 && !source_switched(s))
		return r;               /* given back: source_recover resumes it */
	if (r < 0) {
		/* Go may have arrived: the guest may run there.  If it does,
		 * recovery brings its pages; if not, its job failed, and the
		 * guest here stays paused (outcome unknown). */
		r = source_postcopy_paused(s, r);
		if (r < 0)
			return r;
		pause = now_ns() - t_stop;
	} else {
		pause = source_pause_ns(t_stop, t_go, now_ns(),
					resumed->resumed);
		source_check_kept(s, resumed->resumed);
		pthread_mutex_lock(&w->lock);
		w->resume_ms = resumed->resumed->resume_ns / 1000000;
		pthread_mutex_unlock(&w->lock);
		protobuf_c_message_free_unpacked(&resumed->base, NULL);
	}
	/* A guest paused throughout had no pause at the switch (as in
	 * source_switchover): the destination holds it paused, and the
	 * push brings every page before anything runs it. */
	paused = source_guest_paused(s);
	pthread_mutex_lock(&w->lock);
	w->downtime_us = paused ? 0 : pause / 1000;
	w->pc.pause_us = paused ? 0 : pause / 1000;
	pthread_mutex_unlock(&w->lock);
	worker_set_state(w, JOB_STATE_POSTCOPY_ACTIVE);
	/* (a test's fault point: with its file there, the worker stops
	 * itself here, its pages left to push, until a SIGCONT) */
	if (fault_held(w->spec->rundir, "source-postcopy-stop")) {
		log_info("TERN_FAULT: stopping in postcopy-active");
		raise(SIGSTOP);
	}
	log_info("postcopy: the destination %s after a %llu us "
		 "%s (stop %llu us, last sync %llu us, device state and "
		 "needed pages %llu us, destination ready %llu us, Go to release "
		 "%llu us); %llu pages to go; stale pages dropped after the "
		 "discard: %llu before the pause (%u round%s), %llu in it",
		 paused ? "holds the guest, paused as it was here (no downtime)," :
		 "runs the guest", (unsigned long long)(pause / 1000),
		 paused ? "switch" : "pause",
		 US(t[0] - t_stop), US(t[1] - t[0]), US(t[2] - t[1]),
		 US(t[3] - t[2]), US(pause) - US(t_go - t_stop),
		 (unsigned long long)left, (unsigned long long)stale,
		 stale_rounds, stale_rounds == 1 ? "" : "s", (unsigned long long)dirty);

	for (;;) {
		r = source_push(s);
		for (i = 0; r == 0 && i < s->nchan; i++)
			r = chan_tx_push(&s->chan[i], &end);
		for (i = 0; r == 0 && i < s->nchan; i++)
			r = chan_tx_drain(&s->chan[i]);
		if (r == 0 && w->spec->params.verify)
			r = source_send_pc_hashes(s);
		if (r == 0)
			r = source_wait_done(s);
		if (r == 0) {
			source_pc_base(s, 0);   /* PostcopyDone: it has them all */
			break;
		}
		r = source_postcopy_paused(s, r);
		if (r < 0)
			return r;
	}
	source_vmm_watch(s);
	if (s->vmm_gone_said)   /* (the note, as it ends) */
		worker_set_note(w, "vmm %s closed its connection (it quit or died) "
				"during the postcopy: the pages the destination "
				"lacked went from this worker's copy", w->spec->vm);
	else if (source_moved(s, true, SOURCE_COPY_STALE) < 0)  /* stale now */
		worker_set_note(w, "vmm %s did not take the mark of a completed "
				"move: it still says that it holds pages the "
				"destination lacks, which it does not ('vmmctl "
				"quit %s --force' quits it)", w->spec->vm,
				w->spec->vm);
	log_info("postcopy completed: %llu pages pushed, %llu on demand",
		 (unsigned long long)source_pushed(s),
		 (unsigned long long)__atomic_load_n(&w->pc_served, __ATOMIC_RELAXED));
	return 0;
}
