// SPDX-License-Identifier: GPL-2.0-only
/*
 * The worker process of one migration job: drops privileges, runs the
 * source or destination side (source.c, dest.c), and reports the job's
 * status to the parent migd over a socketpair, every
 * MIGD_STATUS_INTERVAL_MS and on every state change, as tern.rpc.Frame
 * events named "status".  SIGTERM from the parent cancels the job
 * before its switch.  Past a postcopy switch the job outlives its migd:
 * when the status link ends, adopt.c finds the next migd.
 *
 * Here: the job's state and its one transition, its failure, the
 * cancel in all its forms, migd's commands on the status link, and the
 * reporter and command threads.  The figures the reports carry, and the
 * frames this side writes, are worker_status.c's.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/caps.h"
#include "common/fault.h"
#include "common/log.h"
#include "common/pbuf.h"
#include "common/rtspawn.h"
#include "common/util.h"
#include "migd/migd.h"
#include "proto/stream.pb-c.h"

/*
 * A cancel comes three ways: migd's command "cancel" (migctl cancel),
 * its "abandon" (cancel --force of a paused postcopy), and SIGTERM
 * (migd's end, or the kernel when migd died).  worker_check_cancel()
 * takes it, under the job's lock, only while the job has not passed its
 * point of no return: the command thread as the command comes, the
 * reporter thread at its next tick for SIGTERM (and for a command the
 * command thread could not take yet: worker-slow-cancel).  One that
 * crossed the switch is dropped: the guest runs there, with pages only
 * here.  Paused, only an abandon is taken; an operator's plain cancel
 * that was on its way at the switch never is (migd refuses one once it
 * sees the switch), nor is migd's end: the job waits, without migd,
 * for the next one to adopt it (adopt.c) and for its recovery.
 * A SIGTERM or SIGINT that another process sent (a stray kill) is told
 * apart by its sender (worker_check_stray_locked).
 */
static int cancel_signalled;            /* (A): set by the handler, read by
					 * the reporter thread */
static int signalled_by_migd;           /* (A): cancel_signalled came from the
					 * migd that forked us (its stop, or
					 * the kernel at its death) */
static int stray_signalled;             /* (A): the same, for a signal
					 * neither migd nor the kernel sent */
static int stray_from;                  /* (A): ... and its sender's pid */
static char stray_comm[PROC_COMM_LEN];  /* ... and name, read in the handler
					 * (a pkill is gone by the next tick) */
static char stray_cancel[128];          /* (L): "SIGTERM from pid N (COMM)"
					 * once such a signal cancelled the job */
static uint64_t plain_cancel_at;        /* (A): now_ns() when a plain cancel
					 * came; 0 for none */
static int cancel_taken;                /* (A): what worker_cancelled() says */
static pid_t parent_pid;                /* the migd that forked us */
static int migd_gone;                   /* (A): the status link ended, and
					 * no migd has adopted the job since */
static int adopted;                     /* (A): a later migd took the job:
					 * the parent is no migd of ours */
static int postcopy_requested;          /* (A): Migd.Postcopy or the timeout */
static int postcopy_answer_due;         /* (A): migd waits for Postcopy's
					 * answer (worker_postcopy_answer) */
static int abandon_requested;           /* (A): the cancel is an operator's
					 * end of a paused postcopy (cancel
					 * --force), not migd's end */
static int cancel_by_migd;              /* (A): the cancel taken was migd's
					 * end (SIGTERM), no operator's:
					 * what worker_migd_ended() says */
static bool orphan_noted;               /* (L): "goes on without migd" logged */
static bool migd_acks = true;           /* (L): the migd on the status link
					 * says "taken" of a final report:
					 * the one that forked us (this
					 * code), or one whose Adopt said so */
static bool end_taken;                  /* (L): it did */

/*
 * migd's signal is migd's end: that of the migd that forked us (the
 * kernel's SIGTERM at its death comes from its pid too, SI_USER), and
 * the kernel's own (si_code > 0: a terminal's ^C).  Anyone else's is a
 * stray, and so is every one once another migd adopted the job (which
 * never signals a job past its switch, jobs_signal_all).
 */
static void handle_term(int sig, siginfo_t *si, void *ctx)
{
	(void)ctx;
	if (si->si_code <= 0 && (si->si_pid != parent_pid ||
				 __atomic_load_n(&adopted, __ATOMIC_SEQ_CST))) {
		__atomic_store_n(&stray_from, (int)si->si_pid, __ATOMIC_RELAXED);
		proc_comm((int)si->si_pid, stray_comm);
		__atomic_store_n(&stray_signalled, sig, __ATOMIC_SEQ_CST);
		return;
	}
	if (si->si_code <= 0)
		__atomic_store_n(&signalled_by_migd, 1, __ATOMIC_RELAXED);
	__atomic_store_n(&cancel_signalled, sig, __ATOMIC_RELAXED);
}

static void request_postcopy(void)
{
	__atomic_store_n(&postcopy_requested, 1, __ATOMIC_RELAXED);
}

bool worker_postcopy_requested(void)
{
	return __atomic_load_n(&postcopy_requested, __ATOMIC_RELAXED) != 0;
}

static bool worker_timed_out(struct worker *w);

/* Why postcopy cannot be, as Postcopy's answer says it. */
static void no_postcopy_answer(const struct worker *w, char *buf, size_t len)
{
	snprintf(buf, len, "%s: postcopy cannot be: %s; the migration goes on "
		 "in precopy", w->spec->vm, w->no_postcopy);
}

void worker_no_postcopy(struct worker *w, const char *why)
{
	char msg[WORKER_ANSWER_MAX];

	pthread_mutex_lock(&w->lock);
	snprintf(w->no_postcopy, sizeof(w->no_postcopy), "%s", why);
	__atomic_store_n(&postcopy_requested, 0, __ATOMIC_RELAXED);
	no_postcopy_answer(w, msg, sizeof(msg));
	pthread_mutex_unlock(&w->lock);
	worker_report(w);
	/* (a request made in set-up, before the hello said so) */
	worker_postcopy_answer(w, EOPNOTSUPP, msg);
}

int worker_postcopy_refused(struct worker *w, const char *why)
{
	const struct mig_params *p = &w->spec->params;
	/* The timeout's way out is gone: it cancels, as without one. */
	bool timed_out = p->timeout_action == TIMEOUT_ACTION_POSTCOPY &&
			 worker_timed_out(w);
	char msg[WORKER_ANSWER_MAX], then[64];
	char answer[sizeof(w->spec->vm) + 2 + WORKER_ANSWER_MAX];
	int r = 0;

	snprintf(then, sizeof(then), "the job fails: its %u s timeout passed",
		 p->timeout_s);
	snprintf(msg, sizeof(msg), "the destination refused the switch to "
		 "postcopy: %s; %s", why, timed_out ? then : "the migration goes "
		 "on in precopy ('migctl postcopy' asks again)");
	if (timed_out) {
		r = worker_fail(w, ETIMEDOUT, "did not complete within the %u s "
				"timeout, and the destination refused the "
				"switch to postcopy, its action: %s",
				p->timeout_s, why);
	} else {
		__atomic_store_n(&postcopy_requested, 0, __ATOMIC_RELAXED);
		worker_set_note(w, "%s", msg);
	}
	/* (the report first: the caller may look at the status next) */
	snprintf(answer, sizeof(answer), "%s: %s", w->spec->vm, msg);
	worker_postcopy_answer(w, ECONNREFUSED, answer);
	return r;
}

void worker_set_note(struct worker *w, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&w->lock);
	if (!w->error[0] || w->error_is_note) {
		va_start(ap, fmt);
		vsnprintf(w->error, sizeof(w->error), fmt, ap);
		va_end(ap);
		w->error_is_note = true;
		log_warnx("%s", w->error);
	}
	pthread_mutex_unlock(&w->lock);
	worker_report(w);
}

static void clear_note_locked(struct worker *w)
{
	if (w->error_is_note) {
		w->error[0] = 0;
		w->error_is_note = false;
	}
}

void worker_clear_note(struct worker *w)
{
	pthread_mutex_lock(&w->lock);
	clear_note_locked(w);
	pthread_mutex_unlock(&w->lock);
}

void worker_postcopy_answer(struct worker *w, int err, const char *msg)
{
	if (__atomic_exchange_n(&postcopy_answer_due, 0, __ATOMIC_SEQ_CST))
		worker_answer(w, err, msg);
}

/* Migd.Postcopy, unless the job cannot (worker_no_postcopy); migd waits
 * for the answer (worker_postcopy_answer). */
static void worker_postcopy_asked(struct worker *w)
{
	char msg[WORKER_ANSWER_MAX] = "";

	pthread_mutex_lock(&w->lock);
	__atomic_store_n(&postcopy_answer_due, 1, __ATOMIC_SEQ_CST);
	if (w->no_postcopy[0]) {
		log_warnx("postcopy asked, but it cannot be: %s; the job goes "
			  "on in precopy", w->no_postcopy);
		no_postcopy_answer(w, msg, sizeof(msg));
	} else {
		request_postcopy();
		/* A refusal before is not this request's answer. */
		clear_note_locked(w);
	}
	pthread_mutex_unlock(&w->lock);
	if (msg[0])
		worker_postcopy_answer(w, EOPNOTSUPP, msg);
}

void worker_params(struct worker *w, struct mig_params *ret)
{
	pthread_mutex_lock(&w->lock);
	*ret = w->params;
	pthread_mutex_unlock(&w->lock);
}

void worker_set_chan_wake(struct worker *w, unsigned int chan, int fd)
{
	pthread_mutex_lock(&w->lock);
	w->chan_wake[chan] = fd;
	pthread_mutex_unlock(&w->lock);
}

/* The parent's "tune": p is the job's parameters in full, checked there
 * (params_check_live, params_update); the fields a running job takes
 * are taken as they are, 0 (no cap, measured) included.  A ram channel
 * waiting out its share of the old cap is woken to owe the rest at the
 * new one (chan_pace). */
static void worker_tune(struct worker *w, const Tern__Migd__Params *p)
{
	unsigned int nch = MAX(w->spec->params.channels, 1u), limit, i;

	pthread_mutex_lock(&w->lock);
	w->params.max_bandwidth = p->max_bandwidth;
	w->params.avail_switchover_bandwidth = p->avail_switchover_bandwidth;
	if (p->downtime_limit_ms)
		w->params.downtime_limit_ms = p->downtime_limit_ms;
	limit = w->params.downtime_limit_ms;
	__atomic_store_n(&w->chan_rate, p->max_bandwidth / nch, __ATOMIC_RELAXED);
	/* (Under the lock: a channel that stops closes its fd only once
	 * it took it back from here.) */
	for (i = 0; i < STREAM_MAX_CHANNELS; i++)
		if (w->chan_wake[i] >= 0)
			eventfd_write(w->chan_wake[i], 1);
	pthread_mutex_unlock(&w->lock);
	params_log_tuned(NULL, p->max_bandwidth, p->avail_switchover_bandwidth,
			 limit);
	worker_report(w);
}

bool worker_cancelled(void)
{
	return __atomic_load_n(&cancel_taken, __ATOMIC_RELAXED) != 0;
}

/* Past the point where a cancel is taken (w->lock held): the source's
 * switch, or a destination's Go. */
bool worker_past_switch_locked(const struct worker *w)
{
	return w->switched || w->go_taken;
}

/* The job has no migd now: its status link ended (adopt.c looks for
 * the next one), or, before that shows, the migd that forked it died. */
bool worker_orphaned(void)
{
	if (__atomic_load_n(&migd_gone, __ATOMIC_SEQ_CST))
		return true;
	return !__atomic_load_n(&adopted, __ATOMIC_SEQ_CST) &&
	       getppid() != parent_pid;
}

/* Past a postcopy switch (w->lock held): the guest runs on the
 * destination, and only this job can bring it the pages it lacks. */
bool worker_in_postcopy_locked(const struct worker *w)
{
	return worker_past_switch_locked(w) &&
	       (w->state == JOB_STATE_POSTCOPY_ACTIVE ||
		w->state == JOB_STATE_POSTCOPY_PAUSED ||
		w->state == JOB_STATE_POSTCOPY_RECOVER);
}

bool worker_was_postcopy_locked(const struct worker *w)
{
	return w->postcopy && worker_past_switch_locked(w);
}

/* w->lock held: said once per migd lost.  (A precopy past its switch,
 * in its device phase, ends on its own, and is adopted by none.) */
static void worker_note_orphan_locked(struct worker *w)
{
	if (orphan_noted)
		return;
	orphan_noted = true;
	if (worker_in_postcopy_locked(w))
		log_warnx("migd is gone: past the switch, the migration goes on "
			  "without it, and the next migd on %s/migd.sock adopts "
			  "the job", w->spec->rundir);
	else
		log_warnx("migd is gone: past the switch, the migration goes on "
			  "to its end without it");
}

bool worker_migd_ended(void)
{
	return __atomic_load_n(&cancel_by_migd, __ATOMIC_RELAXED) != 0;
}

void worker_set_unrecoverable(struct worker *w)
{
	pthread_mutex_lock(&w->lock);
	w->unrecoverable = true;
	pthread_mutex_unlock(&w->lock);
}

bool worker_unrecoverable(struct worker *w)
{
	bool u;

	pthread_mutex_lock(&w->lock);
	u = w->unrecoverable;
	pthread_mutex_unlock(&w->lock);
	return u;
}

bool worker_abandoned(void)
{
	return __atomic_load_n(&abandon_requested, __ATOMIC_SEQ_CST) != 0;
}

void worker_error_cut(struct worker *w, const char *upto)
{
	char *p;

	pthread_mutex_lock(&w->lock);
	p = strstr(w->error, upto);
	if (p)
		p[strlen(upto)] = 0;
	pthread_mutex_unlock(&w->lock);
}

void worker_note(struct worker *w, const char *fmt, ...)
{
	size_t n;
	va_list ap;

	pthread_mutex_lock(&w->lock);
	n = strlen(w->error);
	if (n + 3 < sizeof(w->error)) {
		if (n)
			n += snprintf(w->error + n, sizeof(w->error) - n, "; ");
		va_start(ap, fmt);
		vsnprintf(w->error + n, sizeof(w->error) - n, fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&w->lock);
}

/* Whether the peer's end was heard (or said here) before; now it is. */
static bool heard_once(struct worker *w)
{
	bool before;

	pthread_mutex_lock(&w->lock);
	before = w->peer_heard;
	w->peer_heard = true;
	pthread_mutex_unlock(&w->lock);
	return before;
}

void worker_heard(struct worker *w, const Tern__Stream__StreamMsg *m)
{
	if (m->body_case == TERN__STREAM__STREAM_MSG__BODY_REFUSE)
		heard_once(w);
}

/* A peer that ends a job says why (Refuse), then closes: a close without
 * a word is its worker's death, as a rule; a reset, that or the network's
 * doing.  Said once: after its word (or this), a close is only the rest
 * of it.  False if r is neither, or it was said. */
static bool peer_gone(struct worker *w, int r, const char *who, char *why,
		      size_t len)
{
	if ((r != -EPIPE && r != -ECONNRESET) || heard_once(w))
		return false;
	if (r == -EPIPE)
		snprintf(why, len, "%s closed the connection without a word: its "
			 "worker died or was killed, or a proxy between closed "
			 "it ('migctl status' there says which)", who);
	else
		snprintf(why, len, "%s reset the connection: its worker died, or "
			 "the network between cut it ('migctl status' there says "
			 "which)", who);
	return true;
}

const char *worker_peer_why(struct worker *w, int r, const char *who)
{
	static __thread char why[200];

	return peer_gone(w, r, who, why, sizeof(why)) ? why : strerror(-r);
}

/* The peer's word, after this side's failure: in place of a link's
 * close that it explains (worker_fail_said), else noted after it. */
static void worker_said(struct worker *w, const Tern__Stream__Refuse *rf,
			const char *who)
{
	bool guessed;

	pthread_mutex_lock(&w->lock);
	guessed = w->peer_guessed;
	pthread_mutex_unlock(&w->lock);
	if (guessed)
		worker_fail_said(w, rf->err, "%s said: %.*s", who,
				 str_cut(rf->message, 400), rf->message);
	else
		worker_note(w, "%s said: %.*s", who, str_cut(rf->message, 400),
			    rf->message);
}

void worker_note_refuse(struct worker *w, int fd, unsigned int ms, const char *who)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	Tern__Stream__StreamMsg *m = NULL;
	uint64_t end = deadline_ms(ms);
	char why[200];
	int r;

	if (fd < 0 || poll_until(&pfd, 1, end) <= 0)
		return;
	r = stream_msg_recv(fd, &tern__stream__stream_msg__descriptor, 4096, end,
			    (ProtobufCMessage **)&m);
	if (r < 0 && peer_gone(w, r, who, why, sizeof(why)))
		worker_note(w, "%s", why);
	if (r < 0)
		return;
	worker_heard(w, m);
	if (m->body_case == TERN__STREAM__STREAM_MSG__BODY_REFUSE &&
	    m->refuse->cancelled)
		worker_fail_cancelled(w, who, m->refuse->migd_ended);
	else if (m->body_case == TERN__STREAM__STREAM_MSG__BODY_REFUSE)
		worker_said(w, m->refuse, who);
	if (m->body_case == TERN__STREAM__STREAM_MSG__BODY_REFUSE &&
	    m->refuse->unrecoverable)
		worker_set_unrecoverable(w);
	protobuf_c_message_free_unpacked(&m->base, NULL);
}

int worker_fail_cancelled(struct worker *w, const char *who, bool migd_ended)
{
	bool past;

	pthread_mutex_lock(&w->lock);
	past = w->switched;
	w->failed = true;
	pthread_mutex_unlock(&w->lock);
	/* Once Go has left, the guest may run there whatever it says: the
	 * error that says so stays (a destination that took the cancel
	 * before Go never resumes, but this side cannot prove it). */
	if (past) {
		worker_note(w, migd_ended ? "%s said its migd stopped or died" :
			    "%s said it cancelled", who);
		return -ECANCELED;
	}
	pthread_mutex_lock(&w->lock);
	/* Cancelled here too: that is this job's own end. */
	if (!worker_cancelled()) {
		snprintf(w->error, sizeof(w->error), migd_ended ?
			 "%s's migd stopped or died, cancelling the migration" :
			 "%s cancelled the migration", who);
		w->error_is_note = false;
		log_warnx("%s", w->error);
	}
	pthread_mutex_unlock(&w->lock);
	return -ECANCELED;
}

/* The job's abort callback ran (cancel, timeout, failure): whatever it
 * could not shut yet must not be started. */
bool worker_aborted(struct worker *w)
{
	bool a;

	pthread_mutex_lock(&w->lock);
	a = w->abort_done;
	pthread_mutex_unlock(&w->lock);
	return a;
}

bool worker_failed(struct worker *w)
{
	bool f;

	pthread_mutex_lock(&w->lock);
	f = w->failed;
	pthread_mutex_unlock(&w->lock);
	return f;
}

/* Under w->lock: the one place the job's state changes.  A change the
 * state machine does not allow (jobstate.c) is refused: expected from
 * cancelling (the job is on its way out), a bug otherwise. */
static void state_change_locked(struct worker *w, enum job_state st)
{
	if (!job_state_may_change(w->state, st)) {
		if (w->state == JOB_STATE_CANCELLING)
			log_debug("state %s -> %s: not while cancelling",
				  job_state_name(w->state), job_state_name(st));
		else
			log_warnx("state %s -> %s refused: not a change a job "
				  "makes", job_state_name(w->state),
				  job_state_name(st));
		return;
	}
	if (w->state != st)
		log_debug("state %s -> %s", job_state_name(w->state),
			  job_state_name(st));
	/* A cancel --force that met a recovery is dropped once it succeeded
	 * (worker_check_cancel kept it): a later pause is no reason to end. */
	if (w->state == JOB_STATE_POSTCOPY_RECOVER && st == JOB_STATE_POSTCOPY_ACTIVE &&
	    !worker_orphaned() &&
	    __atomic_exchange_n(&cancel_signalled, 0, __ATOMIC_SEQ_CST)) {
		__atomic_store_n(&plain_cancel_at, 0, __ATOMIC_SEQ_CST);
		__atomic_store_n(&abandon_requested, 0, __ATOMIC_SEQ_CST);
		log_warnx("a cancel came during the recovery, which succeeded: "
			  "ignored, the migration goes on");
	}
	w->state = st;
}

void worker_set_state(struct worker *w, enum job_state st)
{
	pthread_mutex_lock(&w->lock);
	state_change_locked(w, st);
	pthread_mutex_unlock(&w->lock);
	worker_report(w);
}

/* How a failure takes the job's error: the first one wins; a link's
 * close may be the peer's doing that its word, later, says; the peer's
 * word replaces such a close. */
enum fail_kind { FAIL_PLAIN, FAIL_LINK, FAIL_SAID };

static int worker_vfail(struct worker *w, int err, enum fail_kind kind,
			const char *fmt, va_list ap)
{
	err = err < 0 ? -err : err;
	pthread_mutex_lock(&w->lock);
	w->failed = true;
	if (!w->error[0] || w->error_is_note ||
	    (kind == FAIL_SAID && w->peer_guessed)) {
		w->error_is_note = false;
		w->peer_guessed = kind == FAIL_LINK &&
				  (err == EPIPE || err == ECONNRESET || err == EBADMSG);
		vsnprintf(w->error, sizeof(w->error), fmt, ap);
		log_warnx("%s", w->error);
	}
	pthread_mutex_unlock(&w->lock);
	return -(err ? err : EIO);
}

int worker_fail(struct worker *w, int err, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = worker_vfail(w, err, FAIL_PLAIN, fmt, ap);
	va_end(ap);
	return r;
}

int worker_fail_link(struct worker *w, int err, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = worker_vfail(w, err, FAIL_LINK, fmt, ap);
	va_end(ap);
	return r;
}

int worker_fail_said(struct worker *w, int err, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = worker_vfail(w, err, FAIL_SAID, fmt, ap);
	va_end(ap);
	return r;
}

static void worker_abort_cancelled_locked(struct worker *w);

void worker_set_abort(struct worker *w, void (*fn)(struct worker *, void *),
		      void *arg)
{
	pthread_mutex_lock(&w->lock);
	w->abort_fn = fn;
	w->abort_arg = arg;
	/* A cancel the command thread took before the job could be
	 * aborted (it came with the job): aborted now. */
	if (fn && worker_cancelled() && !worker_past_switch_locked(w))
		worker_abort_cancelled_locked(w);
	pthread_mutex_unlock(&w->lock);
}

/* The job's timeout, if any, has passed before the switchover began. */
static bool worker_timed_out(struct worker *w)
{
	uint32_t t = w->spec->params.timeout_s;

	/* The source decides; a destination waits as long as it is asked to. */
	return t && w->spec->role == JOB_ROLE_SOURCE &&
	       (w->state == JOB_STATE_SETUP || w->state == JOB_STATE_ACTIVE) &&
	       now_ns() - w->started_ns > t * 1000000000ULL;
}

/* Whether a plain cancel has come (a test's hold point, worker-slow-
 * cancel, has the worker look at it only 10 s later, or later while the
 * test holds it, a minute at most). */
static bool plain_cancel_seen(const struct worker *w)
{
	uint64_t at = __atomic_load_n(&plain_cancel_at, __ATOMIC_SEQ_CST);

	return at && fault_hold_over(w->spec->rundir, "worker-slow-cancel",
				     at, 10000);
}

/* A cancel taken, before the switch (w->lock held): the job's abort, once
 * (none yet, worker_set_abort runs it), and a paused job's wait for a
 * command (worker_wait_cmd) ends. */
static void worker_abort_cancelled_locked(struct worker *w)
{
	pthread_cond_broadcast(&w->cmd_cond);
	if (w->abort_done || !w->abort_fn)
		return;
	w->abort_done = true;
	/* The reason, before the broken connections it causes. */
	if ((!w->failed || w->error_is_note) && stray_cancel[0])
		snprintf(w->error, sizeof(w->error), "cancelled: %s",
			 stray_cancel);
	else if (!w->failed || w->error_is_note)
		snprintf(w->error, sizeof(w->error), "%s", worker_migd_ended() &&
			 worker_orphaned() ? "cancelled: migd died" : "cancelled");
	w->failed = true;
	w->error_is_note = false;
	state_change_locked(w, JOB_STATE_CANCELLING);
	w->abort_fn(w, w->abort_arg);
}

/*
 * A SIGTERM or SIGINT that neither our migd nor the kernel sent (w->lock
 * held): said as what it is, with its sender's pid and name.  Before the
 * switch it cancels the job as migd's would, though the peer hears of a
 * cancel, not of migd's end; past it, it is dropped as migd's is (the
 * guest runs there, with pages only here).  True when one was taken or
 * dropped now.
 */
static bool worker_check_stray_locked(struct worker *w)
{
	int sig = __atomic_exchange_n(&stray_signalled, 0, __ATOMIC_SEQ_CST);
	int pid = __atomic_load_n(&stray_from, __ATOMIC_RELAXED);
	char comm[64], who[sizeof(stray_cancel)];

	if (!sig || worker_cancelled())
		return false;
	/* (pid 0: a process outside our pid namespace) */
	snprintf(who, sizeof(who), "%s from pid %d (%s)",
		 sig == SIGINT ? "SIGINT" : "SIGTERM", pid,
		 stray_comm[0] ? str_shown(stray_comm, comm, sizeof(comm)) :
		 "gone or unknown");
	if (worker_past_switch_locked(w)) {
		log_warnx("%s, not from migd %d, which started the job: ignored "
			  "past the switch, the migration goes on", who,
			  (int)parent_pid);
		return true;
	}
	log_warnx("%s, not from migd %d, which started the job: cancelling "
		  "it", who, (int)parent_pid);
	snprintf(stray_cancel, sizeof(stray_cancel), "%s", who);
	__atomic_store_n(&cancel_taken, 1, __ATOMIC_RELAXED);
	worker_abort_cancelled_locked(w);
	return true;
}

/* Once cancelled or timed out, shut the job's sockets so blocked calls
 * return; the job then ends through its usual failure path.  Called by
 * the reporter every tick and by the command thread when a cancel
 * comes, holding no lock (abort_fn runs under w->lock, as a pause's
 * does).  True when a cancel was taken or dropped now. */
static bool worker_check_cancel(struct worker *w)
{
	bool timeout, past, sig, plain, stray;
	int n;

	pthread_mutex_lock(&w->lock);
	/* A job that already failed on its own keeps its cause: it is on
	 * its way out, and the timeout would only hide why. */
	timeout = !w->abort_done && w->abort_fn &&
		  (!w->failed || w->error_is_note) && worker_timed_out(w);
	/* Postcopy needs precopy begun: in set-up the timeout cancels. */
	if (timeout && w->spec->params.timeout_action == TIMEOUT_ACTION_POSTCOPY &&
	    w->state != JOB_STATE_SETUP && !w->no_postcopy[0]) {
		if (!worker_postcopy_requested())
			log_info("the %u s timeout passed: switching to postcopy",
				 w->spec->params.timeout_s);
		request_postcopy();
		timeout = false;
	}
	if (timeout) {
		n = snprintf(w->error, sizeof(w->error), "did not complete within "
			     "the %u s timeout", w->spec->params.timeout_s);
		/* Why not: still setting up (connecting, the hello), or, if
		 * it was in precopy, the last estimate. */
		if (w->state == JOB_STATE_SETUP && n > 0 &&
		    (size_t)n < sizeof(w->error))
			snprintf(w->error + n, sizeof(w->error) - n, " (still "
				 "setting up, before any page was sent: %s)",
				 w->setup_step ? w->setup_step : "with its peer");
		else if (w->expected_downtime_ms &&
			 w->expected_downtime_ms != UINT64_MAX &&
			 w->rounds && n > 0 && (size_t)n < sizeof(w->error))
			snprintf(w->error + n, sizeof(w->error) - n, " (expected "
				 "downtime %llu ms against the %u ms limit, %llu us "
				 "of it not for pages)",
				 (unsigned long long)w->expected_downtime_ms,
				 w->params.downtime_limit_ms,
				 (unsigned long long)w->pause_fixed_us);
		w->failed = true;
		w->error_is_note = false;
		w->abort_done = true;
		w->abort_fn(w, w->abort_arg);
	}
	/* Looked at under the lock: both threads may look at once, and
	 * only one takes (or drops) the cancel. */
	stray = worker_check_stray_locked(w);
	sig = __atomic_load_n(&cancel_signalled, __ATOMIC_SEQ_CST) != 0;
	plain = plain_cancel_seen(w);
	if ((!sig && !plain) || worker_cancelled()) {
		pthread_mutex_unlock(&w->lock);
		return stray;
	}
	past = worker_past_switch_locked(w);
	/* SIGTERM past the switch that no abandon came with: migd's end
	 * (its stop, or the kernel at its death) or a stray signal.  The
	 * job needs nobody to go on (a postcopy source pushing and serving
	 * pages, a destination taking them), and paused, a recovery needs
	 * only a migd, which the next one is once it adopts the job
	 * (adopt.c): ending it would lose the guest's pages since the
	 * switch.  Dropped. */
	if (past && sig && !worker_abandoned()) {
		__atomic_store_n(&cancel_signalled, 0, __ATOMIC_SEQ_CST);
		sig = false;
		/* (migd's end, maybe taken after an adoption, is no cancel;
		 * a plain cancel's is said below) */
		if (worker_orphaned() ||
		    (!plain && __atomic_load_n(&signalled_by_migd, __ATOMIC_RELAXED)))
			worker_note_orphan_locked(w);
		else if (!plain)
			log_warnx("a cancel came after the switch: ignored, the "
				  "migration goes on");
		if (!plain) {
			pthread_mutex_unlock(&w->lock);
			return true;
		}
	}
	/* A cancel --force that met a recovery under way: taken if that
	 * fails (the job is paused again), dropped if it succeeds. */
	if (past && w->state == JOB_STATE_POSTCOPY_RECOVER) {
		pthread_mutex_unlock(&w->lock);
		return false;
	}
	if (past && (w->state != JOB_STATE_POSTCOPY_PAUSED || !sig)) {
		/* migd refuses to cancel a job past its switch; this one
		 * crossed it.  (Paused, only a cancel --force ends it at
		 * once, migd(8); a plain cancel never does.) */
		__atomic_store_n(&cancel_signalled, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&plain_cancel_at, 0, __ATOMIC_SEQ_CST);
		__atomic_store_n(&abandon_requested, 0, __ATOMIC_SEQ_CST);
		log_warnx("a cancel came after the switch: ignored, the "
			  "migration goes on");
		pthread_mutex_unlock(&w->lock);
		return true;
	}
	/* SIGTERM that no operator's cancel or abandon came with: migd's
	 * end, its stop or its death; the peer hears that, not a cancel. */
	if (sig && !plain && !worker_abandoned()) {
		__atomic_store_n(&cancel_by_migd, 1, __ATOMIC_RELAXED);
		if (!past && worker_orphaned())
			log_warnx("migd is gone: before the switch, this worker "
				  "cancels the job");
	}
	__atomic_store_n(&cancel_taken, 1, __ATOMIC_RELAXED);
	if (!past)
		worker_abort_cancelled_locked(w);
	else
		pthread_cond_broadcast(&w->cmd_cond);
	pthread_mutex_unlock(&w->lock);
	return true;
}

/* A destination's Recover with a new address, come when the job is no
 * longer paused (the source came back first, or it ended): said in msg. */
static void late_recover_msg(struct worker *w, char *msg, size_t len)
{
	if (job_state_final(w->state))
		snprintf(msg, len, "the job is %s: nothing to recover",
			 job_state_name(w->state));
	else
		snprintf(msg, len, "the source came back on %.200s first: the "
			 "job is %s, and its address stays", w->listen,
			 job_state_name(w->state));
}

/* migd's commands, until the status link ends; a pause shuts the job's
 * sockets at once. */
static void worker_read_commands(struct worker *w)
{
	Tern__Rpc__Frame *f;
	Tern__Migd__RecoverRequest *rq;
	Tern__Migd__Params *tp;
	char msg[WORKER_ANSWER_MAX];
	enum worker_cmd cmd;
	bool late, cancel;

	for (;;) {
		f = NULL;
		cancel = false;
		if (stream_msg_recv(w->status_fd, &tern__rpc__frame__descriptor,
				    RPC_FRAME_MAX_DEFAULT, 0,
				    (ProtobufCMessage **)&f) < 0)
			return;         /* migd is gone */
		cmd = WORKER_CMD_NONE;
		rq = NULL;
		if (f->body_case == TERN__RPC__FRAME__BODY_EVENT && f->event->name) {
			if (!strcmp(f->event->name, "recover")) {
				rq = (Tern__Migd__RecoverRequest *)pbuf_unpack(
					&tern__migd__recover_request__descriptor,
					f->event->data.len, f->event->data.data);
				cmd = rq ? WORKER_CMD_RECOVER : WORKER_CMD_NONE;
			} else if (!strcmp(f->event->name, "pause")) {
				cmd = WORKER_CMD_PAUSE;
			} else if (!strcmp(f->event->name, "postcopy")) {
				worker_postcopy_asked(w); /* the rounds look */
			} else if (!strcmp(f->event->name, "tune")) {
				tp = (Tern__Migd__Params *)pbuf_unpack(
					&tern__migd__params__descriptor,
					f->event->data.len, f->event->data.data);
				if (tp) {
					worker_tune(w, tp);
					tern__migd__params__free_unpacked(tp, NULL);
				}
			} else if (!strcmp(f->event->name, "cancel")) {
				__atomic_store_n(&plain_cancel_at, now_ns() | 1,
						 __ATOMIC_SEQ_CST);
				cancel = true;
			} else if (!strcmp(f->event->name, "taken")) {
				/* migd has the final report (worker_end_taken). */
				pthread_mutex_lock(&w->lock);
				end_taken = true;
				pthread_cond_broadcast(&w->cmd_cond);
				pthread_mutex_unlock(&w->lock);
			} else if (!strcmp(f->event->name, "abandon")) {
				/* A cancel, told apart from migd's end. */
				__atomic_store_n(&abandon_requested, 1, __ATOMIC_SEQ_CST);
				__atomic_store_n(&cancel_signalled, SIGTERM,
						 __ATOMIC_SEQ_CST);
				cancel = true;
			}
		}
		/* Taken now, not at the reporter's next tick (up to
		 * MIGD_STATUS_INTERVAL_MS later), with the same rules. */
		if (cancel && worker_check_cancel(w))
			worker_report(w);
		if (cmd == WORKER_CMD_PAUSE && w->state == JOB_STATE_POSTCOPY_ACTIVE) {
			worker_fail(w, EINTR, PAUSED_ON_REQUEST);
			/* This side cuts the links: the peer's reset that
			 * follows is no news of it (peer_gone). */
			heard_once(w);
		}
		late = false;
		pthread_mutex_lock(&w->lock);
		if (cmd == WORKER_CMD_RECOVER && w->spec->role != JOB_ROLE_SOURCE &&
		    rq->listen[0] && w->state != JOB_STATE_POSTCOPY_PAUSED) {
			late = true;
			cmd = WORKER_CMD_NONE;
			late_recover_msg(w, msg, sizeof(msg));
		}
		if (cmd != WORKER_CMD_NONE) {
			w->cmd = cmd;
			snprintf(w->cmd_arg, sizeof(w->cmd_arg), "%s", !rq ? "" :
				 w->spec->role == JOB_ROLE_SOURCE ? rq->uri : rq->listen);
			pthread_cond_broadcast(&w->cmd_cond);
		}
		if (cmd == WORKER_CMD_PAUSE && w->abort_fn &&
		    w->state == JOB_STATE_POSTCOPY_ACTIVE) {
			log_info("pausing postcopy on request");
			w->abort_fn(w, w->abort_arg);
		}
		pthread_mutex_unlock(&w->lock);
		if (late)
			worker_answer(w, EALREADY, msg);
		if (rq)
			tern__migd__recover_request__free_unpacked(rq, NULL);
		tern__rpc__frame__free_unpacked(f, NULL);
	}
}

/* The status link ended: migd stopped or died.  Before the switch its
 * SIGTERM (or the kernel's, at its death) cancels the job; past a
 * postcopy switch the job goes on, and says so. */
static void worker_lost_migd(struct worker *w)
{
	__atomic_store_n(&migd_gone, 1, __ATOMIC_SEQ_CST);
	pthread_mutex_lock(&w->lock);
	if (worker_in_postcopy_locked(w))
		worker_note_orphan_locked(w);
	pthread_cond_broadcast(&w->cmd_cond);   /* worker_end_taken */
	pthread_mutex_unlock(&w->lock);
}

bool worker_end_taken(struct worker *w)
{
	uint64_t end = deadline_ms(WORKER_END_ACK_MS);
	bool taken, gone;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		taken = end_taken || !migd_acks;
		gone = __atomic_load_n(&migd_gone, __ATOMIC_SEQ_CST);
		if (taken || gone || now_ns() >= end)
			break;
		cond_wait_ms(&w->cmd_cond, &w->lock, ms_until(end));
	}
	pthread_mutex_unlock(&w->lock);
	if (taken)
		return true;
	if (gone) {
		log_warnx("migd's status link ended before it took the final "
			  "report: it goes to the next migd");
		return false;
	}
	/* Alive and silent: it reads the link when it reaps us. */
	log_warnx("migd did not say it took the final report within %u ms: "
		  "left on the status link", WORKER_END_ACK_MS);
	return true;
}

void worker_take_migd(struct worker *w, int fd, bool acks)
{
	int old;

	pthread_mutex_lock(&w->report_lock);
	old = w->status_fd;
	w->status_fd = fd;
	pthread_mutex_unlock(&w->report_lock);
	close(old);
	pthread_mutex_lock(&w->lock);
	__atomic_store_n(&adopted, 1, __ATOMIC_SEQ_CST);
	__atomic_store_n(&migd_gone, 0, __ATOMIC_SEQ_CST);
	orphan_noted = false;
	migd_acks = acks;
	pthread_mutex_unlock(&w->lock);
	worker_report(w);
}

/* migd's commands; when the link ends, the job's adoption by the next
 * migd (adopt.c), and its commands from then on. */
static void *command_thread(void *arg)
{
	struct worker *w = arg;

	for (;;) {
		worker_read_commands(w);
		worker_lost_migd(w);
		if (worker_adopt_wait(w) < 0)
			return NULL;    /* the job ended (worker_offer_end) */
	}
}

void worker_leave_pause(struct worker *w, enum job_state st)
{
	char msg[WORKER_ANSWER_MAX];
	bool late;

	pthread_mutex_lock(&w->lock);
	late = w->cmd == WORKER_CMD_RECOVER && w->cmd_arg[0];
	if (late)
		w->cmd = WORKER_CMD_NONE;
	state_change_locked(w, st);
	if (late)
		late_recover_msg(w, msg, sizeof(msg));
	pthread_mutex_unlock(&w->lock);
	worker_report(w);
	if (late)
		worker_answer(w, EALREADY, msg);
}

enum worker_cmd worker_wait_cmd(struct worker *w, unsigned int ms, char *arg,
				size_t len)
{
	enum worker_cmd cmd;

	pthread_mutex_lock(&w->lock);
	if (w->cmd == WORKER_CMD_NONE && !worker_cancelled())
		cond_wait_ms(&w->cmd_cond, &w->lock, ms);
	cmd = w->cmd;
	snprintf(arg, len, "%s", w->cmd_arg);
	w->cmd = WORKER_CMD_NONE;
	pthread_mutex_unlock(&w->lock);
	return cmd;
}

void worker_new_links(struct worker *w)
{
	worker_clear_failure(w);
	pthread_mutex_lock(&w->lock);
	w->peer_heard = false;
	pthread_mutex_unlock(&w->lock);
}

void worker_clear_failure(struct worker *w)
{
	pthread_mutex_lock(&w->lock);
	w->failed = false;
	w->error[0] = 0;
	w->error_is_note = false;
	w->peer_guessed = false;
	w->abort_done = false;
	pthread_mutex_unlock(&w->lock);
}

/* Every MIGD_STATUS_INTERVAL_MS while the job runs: throughputs, the
 * cancel and the timeout, a report.  (A test's fault point,
 * worker-no-report-tick, stops it before its first tick: the job then
 * reports only its changes of state, and nothing is looked at here.) */
static void *reporter_thread(void *arg)
{
	struct worker *w = arg;
	const uint64_t interval_ns = MIGD_STATUS_INTERVAL_MS * 1000000ULL;
	struct timespec ts = { 0, interval_ns };

	if (fault_active("worker-no-report-tick"))
		return NULL;
	for (;;) {
		nanosleep(&ts, NULL);
		pthread_mutex_lock(&w->lock);
		/* Once ended, the figures stay as the end left them, and
		 * the end reports them (worker_main). */
		if (job_state_final(w->state)) {
			pthread_mutex_unlock(&w->lock);
			return NULL;
		}
		worker_sample_rates_locked(w, now_ns());
		pthread_mutex_unlock(&w->lock);
		worker_check_cancel(w);
		worker_report(w);
	}
	return NULL;
}

/*
 * No capabilities, no way back to any: the worker only talks on sockets
 * it opens as the same uid and on the descriptors it was given.  Before
 * that, while migd's CAP_SYS_NICE is still ours, the worker takes its
 * nice value (which every thread it starts inherits: ahead of the
 * guests' vCPUs by default, so that a busy host does not stretch the
 * migration, and with it the guest's time under dirty logging), and a
 * source takes the real-time class for its page server (rtspawn.c): a
 * vCPU on the destination waits on each page it serves.
 */
static int worker_drop_privileges(const struct job_spec *spec)
{
	int ret;

	if (spec->nice && setpriority(PRIO_PROCESS, 0, spec->nice) < 0)
		log_debug("nice %d: %s", spec->nice, strerror(errno));
	if (spec->role == JOB_ROLE_SOURCE && spec->realtime) {
		ret = rtspawn_init(RTSPAWN_PRIORITY);
		if (ret < 0)
			log_debug("page server in the ordinary class: %s",
				  strerror(-ret));
	}
	ret = caps_drop(NULL, 0, (uid_t)-1, (gid_t)-1);
	if (ret < 0)
		log_warnc(ret, "dropping capabilities");
	return ret;
}

int worker_main(const struct job_spec *spec, int status_fd)
{
	struct sigaction sa = { .sa_sigaction = handle_term,
				.sa_flags = SA_SIGINFO };
	struct worker w = {
		.spec = spec,
		.state = spec->role == JOB_ROLE_DEST ? JOB_STATE_WAITING :
						      JOB_STATE_SETUP,
		.status_fd = status_fd,
		.place = { .uffd = -1 },
	};
	char tag[80], line[sizeof(w.error) + 32];
	pthread_t reporter;
	unsigned int i;
	int ret, reported;

	parent_pid = getppid();
	snprintf(tag, sizeof(tag), "%s/%s", spec->vm,
		 spec->role == JOB_ROLE_SOURCE ? "out" : "in");
	log_set_tag(tag);
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* (As migd's, which child_run set back to the default: a worker
	 * past its switch that a SIGHUP ended would lose the guest.) */
	signal(SIGHUP, SIG_IGN);
	pthread_mutex_init(&w.lock, NULL);
	pthread_mutex_init(&w.report_lock, NULL);
	pthread_cond_init(&w.cmd_cond, NULL);
	tern__migd__postcopy_stats__init(&w.pc);
	memcpy(w.id, spec->id, STREAM_ID_LEN);
	w.params = spec->params;
	w.chan_rate = spec->params.max_bandwidth / MAX(spec->params.channels, 1u);
	for (i = 0; i < STREAM_MAX_CHANNELS; i++)
		w.chan_wake[i] = -1;
	w.started_ns = now_ns();
	w.rate_prev_ns = w.started_ns;
	w.started_unix_ms = unix_ms();
	if (worker_drop_privileges(spec) < 0) {
		worker_fail(&w, EPERM, "cannot drop privileges");
		worker_set_state(&w, JOB_STATE_FAILED);
		return 1;
	}
	worker_report(&w);
	if (pthread_create(&reporter, NULL, reporter_thread, &w) == 0)
		pthread_detach(reporter);
	if (pthread_create(&reporter, NULL, command_thread, &w) == 0)
		pthread_detach(reporter);
	ret = spec->role == JOB_ROLE_SOURCE ? source_run(&w) : dest_run(&w);
	pthread_mutex_lock(&w.lock);
	worker_sample_rates_locked(&w, now_ns());
	if (ret < 0 && !w.error[0])
		snprintf(w.error, sizeof(w.error), "%s", strerror(-ret));
	/* A pause on request (here or there) that came as the job ended:
	 * not taken, and no failure of a job that completed. */
	if (ret == 0 && strstr(w.error, PAUSED_ON_REQUEST))
		snprintf(w.error, sizeof(w.error), "a pause on request (migctl "
			 "pause) came as the job completed: not needed");
	state_change_locked(&w, ret == 0 ? JOB_STATE_COMPLETED :
			    worker_cancelled() ? JOB_STATE_CANCELLED :
			    JOB_STATE_FAILED);
	pthread_mutex_unlock(&w.lock);
	reported = worker_report(&w);
	log_info("%s", job_state_text(w.state, w.error, line, sizeof(line)));
	worker_offer_end(&w, reported);
	return ret == 0 ? 0 : 1;
}
