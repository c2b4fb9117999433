// SPDX-License-Identifier: GPL-2.0-only
/*
 * The source side of a migration (one worker process): its set-up, the
 * switchover, and the job's end.  worker_main (worker.c) calls
 * source_run.
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
 * The connections to the destination (dialled, their hellos, the
 * layout and its answer) and the main connection's messages both ways
 * are source_conn.c's: source_connect, source_send, source_expect.  The
 * rounds of the active phase, and the estimates, settle and throttle
 * that decide when they end, are source_precopy.c's: source_precopy, and
 * the dirty-log sync and page queueing that the switchover's last round
 * and the postcopy push also take.  A switch to postcopy goes on in
 * source_postcopy.c.  The four share the job's struct source; the steps
 * one takes from another (from here: the switch's stop and Go) are
 * listed in migd.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/bitmap.h"
#include "common/log.h"
#include "common/util.h"
#include "migd/migd.h"
#include "proto/stream.pb-c.h"

/* ---- set-up ------------------------------------------------------------- */

static int source_vmm(struct source *s)
{
	struct vmm_start st;
	char why[PATH_MAX];
	int r;

	r = vmm_link_open(&s->vmm, s->w->spec->rundir, s->w->spec->vm, s->err,
			  sizeof(s->err));
	/* Not 30 s of silence first (the Status call's bound): a frozen
	 * vmm is not one to migrate now. */
	if (r == 0 && vmm_link_stopped(&s->vmm, why, sizeof(why)))
		return worker_fail(s->w, EAGAIN, "%s; not migrated now "
				   "(nothing was sent to %s)", why, s->peer);
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
	s->state_known = true;
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
	s->synced_ns = now_ns();
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

/* ---- the switchover --------------------------------------------------------- */

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
	s->stop_ns = now_ns();
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
int source_moved(struct source *s, bool confirmed, enum source_copy copy)
{
	Tern__Vmm__MovedNote n = TERN__VMM__MOVED_NOTE__INIT;
	char to[256], id[2 * STREAM_ID_LEN + 1], err[256];
	int r;

	if (!source_switched(s))
		return 0;
	stream_hex(s->w->id, STREAM_ID_LEN, id);
	snprintf(to, sizeof(to), "%.160s (job %.12s%s)", s->peer, id,
		 confirmed ? "" : ", not confirmed: it may not run there");
	n.to = to;
	n.postcopy = copy != SOURCE_COPY_STALE;
	n.lost = copy == SOURCE_COPY_ONLY;
	r = vmm_link_call(&s->vmm, "SetMoved", &n.base, NULL, 0, NULL, NULL, err,
			  sizeof(err));
	if (r < 0)
		log_warnx("the source vmm was not marked as moved: %s", err);
	return r;
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
	source_moved(s, r == 0, SOURCE_COPY_STALE);
	if (r < 0 && source_switched(s)) {
		/* The error says only what broke ("waiting for the
		 * destination's Resumed: ..."): say what is left here, and
		 * the way out vmmctl(8) gives for a destination that lost
		 * the guest. */
		worker_fail(w, r, "lost the destination after telling it to "
			    "resume");
		worker_note(w, "the guest may be running there, so the source VM "
			    "stays paused, marked as moved (this copy is stale): "
			    "check the destination, whose vmm may run the guest "
			    "or hold it loaded and not started (its job then "
			    "says how to start it there); only if it has no "
			    "copy, 'vmmctl cont %s --force' runs it here again, "
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
	char msg[sizeof(w->error)];

	/* Past the switch, only a pause on request is said: any other
	 * end there is a link's, or this worker's. */
	if (s->main_fd < 0 || (w->switched && w->cmd != WORKER_CMD_PAUSE) ||
	    pthread_mutex_trylock(&s->main_tx))
		return;
	snprintf(msg, sizeof(msg), "%s", w->error[0] ? w->error : "failed");
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
	/* Said: the destination's close or reset that follows is this
	 * end, not news of its own (peer_gone, worker.c). */
	if (stream_msg_send(s->main_fd, &m.base, now_ns() + 200000000ULL) == 0)
		w->peer_heard = true;
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

#define VMM_LOST "the source vmm no longer answers: its guest may be gone"

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
	if (switched || !s->stopped || !s->vmm.cl)
		return;
	if (!was_running) {
		worker_note(w, "the source VM stays paused, as it was when the "
			    "job stopped it");
		return;
	}
	if (vmm_link_gone(&s->vmm)) {   /* (stopped by the job, then gone) */
		worker_note(w, VMM_LOST);
		return;
	}
	if (fault_active("source-no-cont"))
		return;
	/* A vmm that did not answer cannot say whether its operator
	 * paused it meanwhile: a Cont queued for it could override that.
	 * It stays paused, said (and migd's clean-up does not resume it). */
	if (s->vmm.deaf) {
		pthread_mutex_lock(&w->lock);
		w->source_was_running = false;
		pthread_mutex_unlock(&w->lock);
		worker_note(w, "its vmm does not answer: the source VM, which the "
			    "job paused, stays paused ('vmmctl cont %s' resumes "
			    "it once its vmm runs again)", w->spec->vm);
		return;
	}
	/* Its operator may have paused it during the job's pause (a
	 * vmmctl stop): it stays so, and migd's clean-up after this
	 * worker must not resume it either (source_resumable, jobend.c). */
	if (source_stop_found(s, &found) == 0 &&
	    found == TERN__VMM__RUN_STATE__RUN_STATE_PAUSED) {
		pthread_mutex_lock(&w->lock);
		w->source_was_running = false;
		pthread_mutex_unlock(&w->lock);
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
	/* (how long the guest was paused for nothing: no downtime of a
	 * switch, which never came) */
	worker_note(w, "the source VM runs again, after a pause of %llu ms",
		    (unsigned long long)((now_ns() - s->stop_ns) / 1000000));
}

/* What set-up does next, for a timeout's words (NULL: it is over). */
static void source_setup_step(struct worker *w, const char *next)
{
	pthread_mutex_lock(&w->lock);
	w->setup_step = next;
	pthread_mutex_unlock(&w->lock);
}

/* 0, or -ECANCELED once the job was aborted (its error is set); then
 * the next step, as source_setup_step. */
static int source_set_up_goes_on(struct worker *w, const char *next)
{
	source_setup_step(w, next);
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
	source_setup_step(w, "asking the source vmm for its RAM");
	r = source_vmm(&s);
	/* Migrate's caller hears now whether the vmm can be migrated at
	 * all (a refusal's text comes with the job's end, jobs.c), and,
	 * reported first, what the job found: its reply showed 0 bytes of
	 * RAM and a guest that did not run, until the reporter's first tick. */
	if (r == 0)
		worker_report(w);
	worker_answer(w, r, NULL);
	if (r == 0)
		r = source_set_up_goes_on(w, "connecting to the destination, or "
					  "waiting for its answer");
	if (r == 0)
		r = source_connect(&s);
	if (r == 0)
		r = source_set_up_goes_on(w, "asking the source vmm to log the "
					  "pages its guest dirties");
	if (r == 0)
		r = source_dirty_start(&s);
	if (r == 0)
		r = source_set_up_goes_on(w, NULL);
	pthread_mutex_lock(&w->lock);
	w->setup_ms = (now_ns() - w->started_ns) / 1000000;
	pthread_mutex_unlock(&w->lock);
	if (r == 0)
		r = source_precopy(&s);
	if (r == 0) {
		worker_clear_note(w);   /* a refused switch is past */
		r = source_switchover(&s);
	} else if (r == SOURCE_PC_SWITCH)
		r = source_postcopy(&s);
	if (r < 0 && worker_cancelled())
		worker_fail(w, ECANCELED, "cancelled");
	if (r < 0) {
		Tern__Vmm__RunState st = TERN__VMM__RUN_STATE__RUN_STATE_RUNNING;
		bool never_stopped, was_running;
		const char *how;

		/* First the destination's word: it may be the cause. */
		if (!worker_cancelled())
			worker_note_refuse(w, s.main_fd, 500, "the destination");
		pthread_mutex_lock(&w->lock);
		never_stopped = !w->switched && !s.stopped;
		was_running = w->source_was_running;
		pthread_mutex_unlock(&w->lock);
		/* From here a vmm that did not answer is only asked. */
		if (s.vmm.deaf)
			s.vmm.short_ms = VMM_ASK_MS;
		/* Untouched by the job: paused before it, as it stays; or its
		 * operator may have paused it since, or the vmm may be gone
		 * (and the guest with it).  One that did not answer the
		 * job's last call is not asked its state: that would hold the
		 * job's end (and the destination's word) for nothing. */
		if (never_stopped && vmm_link_gone(&s.vmm))
			st = TERN__VMM__RUN_STATE__RUN_STATE_NONE;
		else if (never_stopped && s.state_known && !was_running)
			st = TERN__VMM__RUN_STATE__RUN_STATE_PAUSED;
		else if (never_stopped && s.state_known && !s.vmm.deaf &&
			 vmm_link_state(&s.vmm, &st, NULL, 0) < 0)
			st = TERN__VMM__RUN_STATE__RUN_STATE_NONE;
		how = s.vmm.deaf ? "the job did not pause the source VM, whose "
		      "vmm does not answer" :
		      st == TERN__VMM__RUN_STATE__RUN_STATE_PAUSED ?
		      "the job did not pause the source VM, which stays paused" :
		      st == TERN__VMM__RUN_STATE__RUN_STATE_RUNNING ?
		      "the source VM kept running" :
		      st == TERN__VMM__RUN_STATE__RUN_STATE_NONE ? VMM_LOST :
		      "the source VM is neither running nor paused";
		pthread_mutex_lock(&w->lock);
		/* (nothing of a guest whose state the job never learnt: its
		 * first look at the vmm failed, and said why) */
		if (never_stopped && (s.state_known || s.vmm.deaf))
			snprintf(w->error + strlen(w->error),
				 sizeof(w->error) - strlen(w->error), "%s%s",
				 w->error[0] ? "; " : "", how);
		source_abort(w, &s);
		pthread_mutex_unlock(&w->lock);
		source_recover(&s);
	}
	worker_set_abort(w, NULL, NULL);
	/* (a vmm that does not answer is asked: it lifts the throttle once
	 * it runs again; the job says so) */
	if (s.throttled && source_throttle(&s, 0) < 0) {
		if (s.vmm.deaf)
			worker_note(w, "the job asked its vmm to lift the vCPU "
				    "throttle, which it does once it runs again");
		else
			log_warnx("could not lift the vCPU throttle");
	}
	source_drop_links(&s);
	if (s.dirty)
		munmap(s.dirty, s.dirty_bytes);
	if (s.dirty_on)
		vmm_link_call(&s.vmm, "DirtyStop", NULL, NULL, 0, NULL, NULL, NULL, 0);
	free(s.tosend);
	free(s.served);
	free(s.pc_hashes);
	/* The guest's RAM stays mapped, the worker's now: its exit unmaps
	 * it, after the final report (or worker_offer_end, before a wait).
	 * Unmapping 2 GiB read here took 40-50 ms of page tables, counted
	 * in the job's time and holding back its end. */
	worker_keep_ram(w, &s.ram, NULL);
	vmm_link_close(&s.vmm);
	return r;
}
