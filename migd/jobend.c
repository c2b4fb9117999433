// SPDX-License-Identifier: GPL-2.0-only
/*
 * The end of a job, in the migd parent.  Once its worker has ended
 * (jobs_reap on SIGCHLD; for an adopted worker, its pidfd, jobadopt.c),
 * job_finish reads its last reports and takes the job's verdict: a
 * worker that ended without a final report is judged here (job_died).
 * The clean-up the worker could not do then runs at its vmm (vmmlink.c)
 * in a thread of its own, so that a vmm that does not answer never
 * holds the event loop; once it is done the job shows its final state,
 * its callers are answered and it goes into the history (history.c),
 * whose bounds free the oldest.  Also migd's own end: every worker
 * signalled (jobs_signal_all, main.c) and every job freed
 * (jobs_free_all).  Jobs start, report and take commands in jobs.c.
 */
#include <errno.h>
#include <event2/event.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "common/uri.h"
#include "common/util.h"
#include "migd/migd.h"

static void job_append_error(struct job *j, const char *what)
{
	size_t n = strlen(j->error);

	if (!what || !what[0])
		return;
	snprintf(j->error + n, sizeof(j->error) - n, "%s%s", n ? "; " : "", what);
}

/* A source job's VM is resumed by migd only if the job paused it (the
 * worker reports that before its Stop) and it ran when the job stopped
 * it (the worker reports what its Stop found, at once when that differs
 * from whether it ran when the job began, which it reported before):
 * never one its operator paused, before the job or during it. */
static bool source_resumable(const struct job *j)
{
	return j->last && j->last->source_stopped && j->last->source_was_running;
}

static const char *source_kept(const struct job *j)
{
	return j->last && j->last->source_stopped ?
	       "as it was when the job stopped it" : "as the job had not paused it";
}

/* A source's clean-up, logging and throttle off: the VM is resumed only
 * if the job paused it, and it ran then (source_resumable), never one an
 * operator paused. */
static void tidy_source(struct job *j)
{
	j->tidy_kind = JOB_TIDY_SOURCE;
	j->tidy_resume = source_resumable(j);
	j->tidy_kept = source_kept(j);
}

/* Past the switch in postcopy, as the worker last said: the destination
 * has said that it runs the guest (Resumed), which waits there for the
 * pages still here. */
static bool job_dest_runs_postcopy(const Tern__Migd__JobStatus *js)
{
	return js->switched && js->postcopy_started &&
	       (js->state == TERN__MIGD__JOB_STATE__JOB_POSTCOPY_ACTIVE ||
		js->state == TERN__MIGD__JOB_STATE__JOB_POSTCOPY_PAUSED ||
		js->state == TERN__MIGD__JOB_STATE__JOB_POSTCOPY_RECOVER);
}

/* The worker ended without a final report: decide, and say what clean-up
 * the vmm needs.  As always, the job shows its final state once that is
 * done (job_tidy_done), so that a caller who sees it sees the clean-up. */
static void job_died(struct job *j, const int *wstatus)
{
	char msg[512], why[64];

	/* An adopted worker is no child of ours: how it ended is its
	 * parent's to know, not ours. */
	if (!wstatus)
		snprintf(why, sizeof(why), "no wait status");
	else if (WIFSIGNALED(*wstatus))
		snprintf(why, sizeof(why), "killed by signal %d", WTERMSIG(*wstatus));
	else
		snprintf(why, sizeof(why), "exited with %d", WEXITSTATUS(*wstatus));
	if (j->cancel_requested && wstatus && WIFSIGNALED(*wstatus) &&
	    WTERMSIG(*wstatus) == SIGTERM) {
		j->tidy_state = JOB_STATE_CANCELLED;
		snprintf(msg, sizeof(msg), "cancelled (worker %s)", why);
	} else if (!wstatus) {
		j->tidy_state = JOB_STATE_FAILED;
		snprintf(msg, sizeof(msg), "worker ended without a final report");
	} else {
		j->tidy_state = JOB_STATE_FAILED;
		snprintf(msg, sizeof(msg), "worker died: %s", why);
	}
	if (j->error[0]) {
		char prev[sizeof(j->error)];

		str_copy(prev, j->error, sizeof(prev));
		snprintf(j->error, sizeof(j->error), "%s", msg);
		job_append_error(j, prev);
	} else {
		snprintf(j->error, sizeof(j->error), "%s", msg);
	}
	if (j->spec.role == JOB_ROLE_SOURCE && j->last && j->last->switched) {
		/* Logging and throttle off; the VM stays paused, marked as
		 * moved (the worker may have died before it said so). */
		j->tidy_kind = JOB_TIDY_SOURCE;
		j->tidy_quiet = true;
		snprintf(j->tidy_moved, sizeof(j->tidy_moved), "%.160s (job %.12s, "
			 "not confirmed: its worker died)", j->spec.peer, j->last->id);
		/* (if the worker marked it, its mark and postcopy stay) */
		j->tidy_moved_postcopy = j->last->postcopy_started;
		if (job_dest_runs_postcopy(j->last)) {
			char note[768];

			snprintf(note, sizeof(note), "the job was in postcopy: the "
				 "destination runs the guest, and the pages it "
				 "still lacks are only in vmm %s here.  Do not quit "
				 "that vmm: it holds the guest's only full copy.  The "
				 "destination can never get those pages (a recovery "
				 "needs this job's worker): on the destination host "
				 "cancel its job with --force and quit its vmm; then "
				 "'vmmctl cont %s --force' runs the guest here again, "
				 "as it was at the switch", j->spec.vm, j->spec.vm);
			job_append_error(j, note);
		} else {
			job_append_error(j, "outcome unknown: the destination may "
					 "run the guest; the source stays paused");
		}
	} else if (j->spec.role == JOB_ROLE_SOURCE) {
		tidy_source(j);
	} else if (j->last && j->last->switched && j->last->postcopy_started) {
		/* The pages still on the source can only come through this
		 * job's worker (its page link and channels; a recovery
		 * needs it too): the guest here waits for them for good.
		 * Said as the source's worker death says it, so that the
		 * operator does not take "runs here" for a guest that is
		 * fine, and knows the way out. */
		char note[768];

		snprintf(note, sizeof(note), "the job was in postcopy: %s, but the "
			 "pages it still lacks can never come (they are only on "
			 "the source, and a recovery needs this job's worker): a "
			 "vCPU that touches one waits for good.  Quit vmm %s; "
			 "then, on the source host, cancel the job with --force: "
			 "its vmm keeps the guest as it was at the switch "
			 "('vmmctl cont --force' runs it from there)",
			 j->last->guest_paused ? "the guest is here, paused as it "
			 "was on the source" : "the guest runs here",
			 j->spec.vm);
		job_append_error(j, note);
	} else if (j->last && j->last->switched) {
		/* Go came: the vmm holds the guest's state, loaded, which a
		 * Discard would drop; the source's copy is paused. */
		char note[512];

		snprintf(note, sizeof(note), "the source had told it to resume "
			 "the guest: vmm %s holds the guest, loaded and not "
			 "started ('vmmctl cont %s' starts it here, if 'vmmctl "
			 "status' says it is not running yet); the source keeps "
			 "its copy paused, marked as moved", j->spec.vm, j->spec.vm);
		job_append_error(j, note);
	} else {
		j->tidy_kind = JOB_TIDY_DEST;
	}
}

/*
 * A source job that failed short of its switch: its worker resumed the
 * VM and turned logging and throttle off, unless a call to the vmm
 * failed or timed out (and then perhaps took effect late: a Stop the
 * worker never saw succeed).  A second look, as for a dead worker,
 * reported only if it had something to do.
 */
static void job_source_tidy(struct job *j)
{
	if (j->spec.role == JOB_ROLE_SOURCE && j->tidy_state != JOB_STATE_COMPLETED &&
	    !j->last->switched)
		tidy_source(j);
}

/* In a thread of its own: the calls to the vmm (each bounded, vmmlink.c). */
static void job_tidy_run(struct bgwork *w)
{
	struct job *j = container_of(w, struct job, tidy);
	const char *rundir = j->m->rundir, *vm = j->spec.vm;

	j->tidy_msg[0] = 0;
	if (j->tidy_kind == JOB_TIDY_SOURCE)
		j->tidy_r = vmm_link_recover_source(rundir, vm, j->tidy_resume,
						    j->tidy_kept, j->tidy_moved,
						    j->tidy_moved_postcopy,
						    j->tidy_throttle,
						    j->tidy_msg,
						    sizeof(j->tidy_msg));
	else
		j->tidy_r = vmm_link_discard_dest(rundir, vm, j->tidy_msg,
						  sizeof(j->tidy_msg));
}

/* What the clean-up did, into the job's error. */
static void job_tidy_done(struct job *j)
{
	bool died = j->tidy_died;
	int r = j->tidy_r;

	j->state = j->tidy_state;
	if (j->tidy_kind == JOB_TIDY_NONE || j->tidy_quiet) {
		/* nothing to say */
	} else if (died) {
		if (r < 0 && !j->tidy_msg[0])
			snprintf(j->tidy_msg, sizeof(j->tidy_msg), "%s: %s",
				 j->tidy_kind == JOB_TIDY_SOURCE ?
				 "could not recover the source VM" :
				 "could not clean up the destination vmm",
				 strerror(-r));
		job_append_error(j, j->tidy_msg);
	} else if (r > 0) {
		/* The second look had to act: say so, after the worker's words. */
		if (!j->error[0] && j->last->error)
			str_copy(j->error, j->last->error, sizeof(j->error));
		job_append_error(j, j->tidy_msg);
		log_warnx("%s: %s", j->spec.vm, j->tidy_msg);
	}
	if (died)
		log_warnx("%s: %s", j->spec.vm, j->error);
}

static void job_unlink_listen(const struct job *j)
{
	struct uri u;
	struct stat st;

	if (j->spec.role != JOB_ROLE_DEST || uri_parse(j->spec.peer, &u) < 0 ||
	    u.kind != URI_UNIX)
		return;
	/* Only the file bound for this job: after a recovery elsewhere
	 * (recover --listen) another job may have bound this path since. */
	if (lstat(u.path, &st) == 0 && S_ISSOCK(st.st_mode) &&
	    st.st_dev == j->spec.listen_dev && st.st_ino == j->spec.listen_ino)
		unlink(u.path);
}

static void job_close_pidfd(struct job *j)
{
	if (j->ev_pid) {
		event_free(j->ev_pid);
		j->ev_pid = NULL;
	}
	if (j->pidfd >= 0) {
		close(j->pidfd);
		j->pidfd = -1;
	}
}

static void job_free(struct job *j)
{
	size_t i;

	for (i = 0; i < j->nwaiters; i++)
		rpc_call_finish(j->waiters[i].call, -ESHUTDOWN);
	if (j->starting)
		rpc_call_finish(j->starting, -ESHUTDOWN);
	for (i = 0; i < j->ndeferred; i++)
		rpc_call_finish(j->deferred[i].call, -ESHUTDOWN);
	j->ndeferred = 0;
	job_close_conn(j);
	job_close_pidfd(j);
	if (j->last)
		tern__migd__job_status__free_unpacked(j->last, NULL);
	free(j);
}

static void job_unlink_running(struct migd *m, struct job *j)
{
	struct job **pp;

	for (pp = &m->running; *pp; pp = &(*pp)->next)
		if (*pp == j) {
			*pp = j->next;
			break;
		}
}

static void job_drop(struct migd *m, struct job *j)
{
	job_unlink_running(m, j);
	job_free(j);
}

/* From the running jobs, if there, into the history (history.c);
 * by_time: an end learnt late, placed by its own time. */
void job_history_add(struct migd *m, struct job *j, bool by_time)
{
	struct job *gone;

	job_unlink_running(m, j);
	gone = history_add(m, j, by_time);
	if (gone)
		job_free(gone);
}

/* Of the list at pp, the lost records of spec's job (job_forget_lost):
 * how many went. */
static size_t job_forget_lost_in(struct job **pp, const struct job_spec *spec)
{
	static const uint8_t none[STREAM_ID_LEN];
	struct job *j;
	size_t n = 0;

	while ((j = *pp)) {
		if (j->lost && j->spec.role == spec->role &&
		    !strcmp(j->spec.vm, spec->vm) &&
		    (!memcmp(j->spec.id, spec->id, STREAM_ID_LEN) ||
		     !memcmp(j->spec.id, none, STREAM_ID_LEN))) {
			*pp = j->next;
			job_free(j);
			n++;
			continue;
		}
		pp = &j->next;
	}
	return n;
}

void job_forget_lost(struct migd *m, const struct job_spec *spec)
{
	m->nhistory -= job_forget_lost_in(&m->history, spec);
	job_forget_lost_in(&m->orphans, spec);
}

/* A destination that can never recover (its guest went with its vmm,
 * or it was cancelled with --force past the switch): its source may come
 * back to recover and must hear it (tombstone.c). */
static void job_leave_tombstone(struct migd *m, struct job *j,
				const Tern__Migd__JobStatus *js)
{
	char note[PATH_MAX + 128];
	/* (cancel_how alone: cancel_requested is dropped once the worker
	 * reports its end) */
	bool abandoned = j->cancel_how == JOB_CANCEL_ABANDON &&
			 js->state == TERN__MIGD__JOB_STATE__JOB_CANCELLED &&
			 js->switched;
	int r;

	if (j->spec.role != JOB_ROLE_DEST || !(js->unrecoverable || abandoned) ||
	    m->quitting || !js->listen || !js->listen[0] || job_id_unknown(js->id))
		return;
	r = tombstone_add(m, j->spec.vm, js->listen, js->id, j->spec.token,
			  js->unrecoverable ? EOWNERDEAD : ECANCELED, 0);
	if (r < 0) {
		log_warnx("%s: cannot listen on %s again to tell its source that "
			  "the job can never recover: %s (the source learns it "
			  "only from this host's status)", j->spec.vm, js->listen,
			  strerror(-r));
		return;
	}
	snprintf(note, sizeof(note), "migd answers its source on %s that the "
		 "job can never recover, for a day (across its restarts) or "
		 "until the address is taken again", js->listen);
	log_info("%s: %s", j->spec.vm, note);
	/* (the status says it too: the worker's words, then this) */
	if (!j->error[0])
		str_copy(j->error, js->error, sizeof(j->error));
	job_append_error(j, note);
}

/* The job is over, its vmm tidied: answer its waiters, into the history. */
static void job_ended(struct migd *m, struct job *j)
{
	Tern__Migd__JobStatus js;
	char line[sizeof(j->error) + 32];
	bool late = j->finished_unix_ms != 0;
	size_t i;
	int r;

	j->finished = true;
	/* (An end learnt later keeps its own time, jobadopt.c.) */
	if (!late)
		j->finished_unix_ms = unix_ms();
	j->finished_ns = now_ns();
	job_unlink_listen(j);
	job_status(j, &js);
	log_info("%s: %s job %s", j->spec.vm, job_role_name(j->spec.role),
		 job_state_text(j->state, js.error, line, sizeof(line)));
	job_answer_start(j);
	job_answer_deferred(j, 0, NULL);
	job_notify(j);
	job_status(j, &js);
	for (i = 0; i < j->nwaiters; i++) {
		r = rpc_call_reply(j->waiters[i].call, &js.base, NULL, 0);
		rpc_call_finish(j->waiters[i].call, r);
	}
	j->nwaiters = 0;
	job_leave_tombstone(m, j, &js);
	/* Refused at its start (its vmm unfit), and its caller heard why:
	 * no job began, as for the refusals migd makes itself, and the VM's
	 * last job stays the one before. */
	if (j->refusal_heard)
		job_drop(m, j);
	else
		job_history_add(m, j, late);
	migd_state_save(m);
	migd_check_quit(m);
}

/* On the event loop: the clean-up's thread is done. */
static void job_tidy_finish(struct bgwork *w)
{
	struct job *j = container_of(w, struct job, tidy);

	job_tidy_done(j);
	job_ended(j->m, j);
}

/*
 * The worker has ended: its last reports, the job's verdict, then the
 * clean-up at the vmm.  That runs in a thread, so that a vmm which does
 * not answer holds neither the control service nor other jobs; the job
 * stays running (its VM busy) until it is done.
 */
void job_finish(struct migd *m, struct job *j, const int *wstatus)
{
	/* Whatever the worker wrote before it ended is in the socket, all of
	 * it: the last report (its final state) may be behind a backlog of
	 * others if this loop was held up, and it ends at EOF. */
	if (j->conn)
		job_read(j, UINT_MAX);
	job_close_conn(j);
	job_close_pidfd(j);
	j->pid = 0;
	if (j->last)
		j->last->worker_pid = 0;
	j->m = m;
	j->tidy_died = !(j->last && job_state_final((enum job_state)j->last->state) &&
			 !j->error[0]);
	if (!j->tidy_died) {
		j->tidy_state = (enum job_state)j->last->state;
		job_source_tidy(j);
	} else {
		job_died(j, wstatus);
	}
	if (j->tidy_kind == JOB_TIDY_NONE) {
		job_tidy_done(j);
		job_ended(m, j);
		return;
	}
	j->tidy_throttle = j->last ? j->last->throttle_before : 0;
	if (bgwork_start(&m->tidying, &j->tidy, job_tidy_run, job_tidy_finish) < 0) {
		log_warnx("%s: no thread for the clean-up; doing it here", j->spec.vm);
		job_tidy_run(&j->tidy);
		job_tidy_finish(&j->tidy);
	}
}

void jobs_reap(struct migd *m)
{
	struct job *j;
	int wstatus;
	pid_t pid;

	while ((pid = waitpid(-1, &wstatus, WNOHANG)) > 0) {
		for (j = m->running; j; j = j->next)
			if (j->pid == pid)
				break;
		if (j)
			job_finish(m, j, &wstatus);
		else
			log_debug("reaped process %d", (int)pid);
	}
}

void jobs_signal_all(struct migd *m, bool force)
{
	struct job *j;

	for (j = m->running; j; j = j->next) {
		/* Past its postcopy switch a job cannot be undone, and
		 * needs no migd to go on: it is left to the next one
		 * (jobs_hold_quit says so). */
		if (j->pid <= 0 || j->left || job_outlives_migd(j))
			continue;
		if (force) {
			log_warnx("%s: worker %d did not end; killing it",
				  j->spec.vm, (int)j->pid);
			job_signal(j, SIGKILL);
		} else {
			job_cancel(j, JOB_CANCEL_SHUTDOWN);
		}
	}
}

void jobs_free_all(struct migd *m)
{
	struct job *j;

	while ((j = m->running)) {
		m->running = j->next;
		job_free(j);
	}
	while ((j = m->history)) {
		m->history = j->next;
		job_free(j);
	}
	m->nhistory = 0;
	while ((j = m->orphans)) {
		m->orphans = j->next;
		job_free(j);
	}
}
