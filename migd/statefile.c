// SPDX-License-Identifier: GPL-2.0-only
/*
 * RUNDIR/migd.state: what migd keeps across its own restarts, so that an
 * upgrade or a crash (systemd restarts it) loses neither the defaults an
 * operator set (a bandwidth cap that protects the network must not lapse
 * unseen) nor the outcome of the jobs an agent has yet to ask about.
 * The file holds a tern.migd.SavedState: the defaults, the history and
 * the running jobs, newest first, each job as Status gives it.  It is
 * written whole, under a new name renamed over the old one, whenever one
 * of them changes (a job starts, learns its id, passes its switch or
 * ends; SetParams): a few KB on the run directory, a tmpfs as a rule,
 * so it is lost with the host's reboot, as are the VMs it describes.
 * A job that was running when the migd that saved it ended is told as
 * what became of it (state_job), unless it is past its postcopy switch:
 * that one comes back by itself (Adopt) within moments, so it waits
 * among the orphans, and only one that has not come back
 * MIGD_ADOPT_GRACE_MS after start-up, and whose worker no longer runs,
 * goes into the history, as of unknown outcome.  A later adoption
 * forgets it there (job_forget_lost): a worker whose pid an older file
 * did not keep.
 *
 * Read back at start-up, before the service is up, as untrusted input:
 * a file that is not ours (a link, another owner, writable by others),
 * too large or undecodable is set aside as migd.state.bad with a warning,
 * and migd starts as a fresh one does; a job whose record does not check
 * is left out, counted in the warning.  Called from main.c, jobs.c,
 * jobend.c and control.c (event loop only).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/fault.h"
#include "common/log.h"
#include "common/pbuf.h"
#include "common/util.h"
#include "migd/migd.h"

#define STATE_NAME "migd.state"
#define STATE_VERSION 1
#define STATE_MAX (1u << 20)            /* MIGD_HISTORY jobs need < 300 KB */

static void state_path(const struct migd *m, const char *suffix, char *buf,
		       size_t len)
{
	snprintf(buf, len, "%s/" STATE_NAME "%s", m->rundir, suffix);
}

/* "at 2026-12-06 17:45:01 UTC", for the log. */
static const char *state_when(uint64_t unix_ms, char *buf, size_t len)
{
	time_t t = (time_t)(unix_ms / 1000);
	struct tm tm;

	if (!unix_ms || !gmtime_r(&t, &tm) ||
	    !strftime(buf, len, "at %Y-%m-%d %H:%M:%S UTC", &tm))
		snprintf(buf, len, "at an unknown time");
	return buf;
}

/* The file's bytes, if it is one that only we could have written. */
static int state_read(const char *path, uint8_t **ret, size_t *ret_len,
		      char *why, size_t len)
{
	struct stat st;
	uint8_t *buf = NULL;
	ssize_t n;
	int fd, r = -EINVAL;

	fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		snprintf(why, len, "%s", errno == ELOOP ? "a symbolic link" :
			 strerror(errno));
		return r;
	}
	if (fstat(fd, &st) < 0) {
		r = -errno;
		snprintf(why, len, "%s", strerror(errno));
	} else if (!S_ISREG(st.st_mode)) {
		snprintf(why, len, "not a regular file");
	} else if (st.st_uid != geteuid() || (st.st_mode & 022)) {
		snprintf(why, len, "owned by uid %u, mode %04o: only this "
			 "migd's user may write it", (unsigned int)st.st_uid,
			 (unsigned int)(st.st_mode & 07777));
	} else if (st.st_size > STATE_MAX) {
		snprintf(why, len, "%lld bytes, at most %u",
			 (long long)st.st_size, STATE_MAX);
	} else if (!(buf = malloc(st.st_size ? (size_t)st.st_size : 1))) {
		r = -ENOMEM;
		snprintf(why, len, "%s", strerror(ENOMEM));
	} else if ((n = pread(fd, buf, (size_t)st.st_size, 0)) != st.st_size) {
		snprintf(why, len, "%s", n < 0 ? strerror(errno) : "cut short");
	} else {
		*ret = buf;
		*ret_len = (size_t)st.st_size;
		buf = NULL;
		r = 0;
	}
	free(buf);
	close(fd);
	return r;
}

/*
 * One saved job, checked as a peer's report is (control.c's Adopt), into
 * the history.  lost: one that ran when the migd that saved it (pid)
 * ended: what became of it, as far as can be said.  A postcopy comes
 * back by itself, through Adopt, and is not guessed at yet: it goes
 * among the orphans (state_orphans_due).  STATE_JOB_KEPT if it went in
 * as it was, STATE_JOB_GUESSED as such a guess, STATE_JOB_ORPHAN.
 */
enum { STATE_JOB_KEPT, STATE_JOB_GUESSED, STATE_JOB_ORPHAN };

static int state_job(struct migd *m, const Tern__Migd__JobStatus *js,
		     bool lost, const Tern__Migd__SavedState *s, char *why,
		     size_t len)
{
	struct job_spec spec = { 0 };
	enum job_state state = (enum job_state)js->state;
	char err[160], guess[sizeof(((struct job *)0)->error)] = "";
	bool orphan = false;
	uint32_t pid = s->pid;
	struct job *j;

	if (js->role != TERN__MIGD__JOB_ROLE__ROLE_SOURCE &&
	    js->role != TERN__MIGD__JOB_ROLE__ROLE_DEST)
		return snprintf(why, len, "a role neither source nor destination"), -EINVAL;
	if (name_valid(js->vm) < 0)
		return snprintf(why, len, "not a VM name"), -EINVAL;
	if (js->id[0] && job_id_parse(js->id, spec.id) < 0)
		return snprintf(why, len, "%s: not a job id", js->vm), -EINVAL;
	if ((unsigned int)js->state >= JOB_STATE_MAX ||
	    (!lost && !job_state_final((enum job_state)js->state)))
		return snprintf(why, len, "%s: not a finished job", js->vm), -EINVAL;
	/* Running, its end known (migd was cleaning up at its vmm): that. */
	if (lost && job_state_final((enum job_state)js->state))
		lost = false;
	if (lost && js->postcopy_started) {
		orphan = true;
	} else if (lost && js->switched) {
		state = JOB_STATE_FAILED;
		snprintf(guess, sizeof(guess), "outcome unknown: migd (pid %u) "
			 "ended while this job was past its switch: it went on "
			 "without migd, and the guest runs on the destination if "
			 "it completed there (vmmctl status on both hosts tells)",
			 pid);
	} else if (lost && state == JOB_STATE_WAITING) {
		state = JOB_STATE_CANCELLED;
		snprintf(guess, sizeof(guess), "cancelled: migd (pid %u) ended "
			 "while this job waited for its source, so its worker "
			 "cancelled it (migd(8), SIGNALS)", pid);
	} else if (lost) {
		state = JOB_STATE_CANCELLED;
		snprintf(guess, sizeof(guess), "cancelled: migd (pid %u) ended "
			 "while this job ran, before its switch when last "
			 "reported, so its worker cancelled it (migd(8), SIGNALS); "
			 "should the switch have come in between, the guest runs "
			 "on the destination (vmmctl status on both hosts tells)",
			 pid);
	}
	if (js->n_channels > STREAM_MAX_CHANNELS)
		return snprintf(why, len, "%s: %zu channels", js->vm,
				js->n_channels), -EINVAL;
	/* (An error that is not text, an older migd's, is shown as text
	 * below: the record is kept.) */
	if (strlen(js->error) >= sizeof(j->error) ||
	    !str_is_text(js->peer) || strlen(js->peer) >= sizeof(spec.peer))
		return snprintf(why, len, "%s: its error or peer is not of a "
				"length it can have, or its peer not text",
				js->vm), -EINVAL;
	spec.role = js->role == TERN__MIGD__JOB_ROLE__ROLE_SOURCE ?
		    JOB_ROLE_SOURCE : JOB_ROLE_DEST;
	spec.listen_fd = -1;
	if (params_whole(js->params, &spec.params, err, sizeof(err)) < 0)
		return snprintf(why, len, "%s: its parameters: %s", js->vm, err),
		       -EINVAL;
	str_copy(spec.vm, js->vm, sizeof(spec.vm));
	str_copy(spec.peer, js->peer, sizeof(spec.peer));
	str_copy(spec.rundir, m->rundir, sizeof(spec.rundir));
	spec.pause_fixed_us = js->pause_fixed_learned_us;
	/* (A file that names a job twice is not ours: a second never shows.) */
	if (js->id[0] && (job_find_migration(m->history, &spec) ||
			  job_find_migration(m->orphans, &spec)))
		return snprintf(why, len, "%s: job %s twice", js->vm, js->id), -EINVAL;

	j = job_from_status(m, &spec, js);
	if (!j)
		return snprintf(why, len, "%s", strerror(ENOMEM)), -ENOMEM;
	j->started_unix_ms = js->started_unix_ms;
	j->last->worker_pid = 0;
	if (orphan) {
		/* Running, as far as anyone here knows, until it is back
		 * or given up on. */
		j->lost = true;
		j->orphan_pid = js->worker_pid <= INT_MAX ? (pid_t)js->worker_pid : 0;
		j->next = m->orphans;
		m->orphans = j;
		return STATE_JOB_ORPHAN;
	}
	j->finished = true;
	j->lost = lost;
	j->state = state;
	if (lost)
		str_copy(j->error, guess, sizeof(j->error));
	else
		str_shown(js->error, j->error, sizeof(j->error));
	/* (A lost job's end is not known: its worker ended with the migd
	 * that saved the file, which saves every 2 s while jobs report:
	 * then, give or take that.  Before, the time of this start.) */
	j->finished_unix_ms = !lost ? js->finished_unix_ms :
			      MAX(s->saved_unix_ms, js->started_unix_ms);
	/* finished_ns stays 0: an earlier migd's pauses teach this one
	 * nothing (job_pause_fixed_us).  The worker (its pid zeroed above)
	 * is long gone, and its pid may be another process's by now. */
	job_history_add(m, j, false);
	return lost ? STATE_JOB_GUESSED : STATE_JOB_KEPT;
}

/*
 * The worker an orphan's record names still runs: a live process of
 * that pid named as this one is (a fork of migd keeps the name, across
 * an upgrade of the binary too), started by the time its job did, and
 * no worker of this migd.  Stopped, it cannot come back; given up on,
 * it would later (operator round 21: a job said failed, a final state,
 * came back as postcopy-active).
 */
#define ORPHAN_START_SLACK_MS 2000

static bool orphan_runs(const struct migd *m, const struct job *orphan)
{
	char mine[PROC_COMM_LEN], its[PROC_COMM_LEN], st;
	const struct job *j;
	uint64_t started;

	if (orphan->orphan_pid <= 0 || orphan->orphan_pid == getpid())
		return false;
	for (j = m->running; j; j = j->next)
		if (j->pid == orphan->orphan_pid)
			return false;
	st = proc_state(orphan->orphan_pid);
	if (!st || st == 'Z' || st == 'X')
		return false;
	/* Its pid taken again by a later process (operator round 24: a
	 * migd of another run directory): that is no worker of the job.
	 * (Slack: the boot time is to a second, the fork a moment late.) */
	started = proc_start_unix_ms(orphan->orphan_pid);
	if (started && orphan->started_unix_ms &&
	    started > orphan->started_unix_ms + ORPHAN_START_SLACK_MS)
		return false;
	proc_comm(getpid(), mine);
	proc_comm(orphan->orphan_pid, its);
	return its[0] && !strcmp(mine, its);
}

const char *migd_orphan_why(const struct migd *m, const struct job *orphan,
			    char *buf, size_t len)
{
	char stopped[160];
	pid_t pid = orphan->orphan_pid;

	if (!orphan->orphan_alive)
		snprintf(buf, len, "this migd started %llu ms ago, and waits %d "
			 "s for its worker",
			 (unsigned long long)((now_ns() - m->started_ns) / 1000000),
			 MIGD_ADOPT_GRACE_MS / 1000);
	else if (proc_stopped_say(pid, "its worker", stopped, sizeof(stopped)))
		snprintf(buf, len, "%s, and comes back once it runs; this migd "
			 "waits for it", stopped);
	else
		snprintf(buf, len, "its worker, pid %d, still runs but has not "
			 "asked this migd to adopt it; this migd waits for it, "
			 "as long as it runs", pid);
	return buf;
}

/* MIGD_ADOPT_GRACE_MS after start-up: the postcopy jobs an earlier migd
 * left that have not come back go into the history as of unknown
 * outcome (a later adoption forgets the record: job_forget_lost), but
 * for those whose worker still runs: those are waited for, and looked at
 * again every ORPHAN_RECHECK_MS. */
#define ORPHAN_RECHECK_MS 1000

static void state_orphans_due(evutil_socket_t fd, short what, void *arg)
{
	struct migd *m = arg;
	struct timeval again = { 0, 100000 };
	struct timeval recheck = { ORPHAN_RECHECK_MS / 1000,
				   ORPHAN_RECHECK_MS % 1000 * 1000 };
	struct job *j, **pj = &m->orphans;
	char why[256];
	bool src, ended = false;

	(void)fd;
	(void)what;
	/* TERN_FAULT=migd-orphans-hold: the wait lasts while a test's file
	 * DIR/migd-orphans-hold exists (a minute at most), so that it sees
	 * the wait whatever the load. */
	if (m->ev_orphans && !fault_hold_over(m->rundir, "migd-orphans-hold",
					      m->started_ns, MIGD_ADOPT_GRACE_MS) &&
	    evtimer_add(m->ev_orphans, &again) == 0)
		return;
	while ((j = *pj)) {
		bool switching;

		if (orphan_runs(m, j)) {
			if (!j->orphan_alive) {
				j->orphan_alive = true;
				log_warnx("%s: %s job %s is not back: %s", j->spec.vm,
					  job_role_name(j->spec.role), j->last->id,
					  migd_orphan_why(m, j, why, sizeof(why)));
			}
			pj = &j->next;
			continue;
		}
		*pj = j->next;
		ended = true;
		src = j->spec.role == JOB_ROLE_SOURCE;
		j->finished = true;
		j->state = JOB_STATE_FAILED;
		j->finished_unix_ms = unix_ms();
		/* Still switching when last reported (before Go): its
		 * worker may have cancelled the switch when migd went. */
		switching = !j->last || !j->last->switched;
		snprintf(j->error, sizeof(j->error), "outcome unknown: migd "
			 "(pid %u) ended while this job was %s, and "
			 "its worker has not come back to this migd: it ended "
			 "too (its log says how the job ended), or it asks "
			 "another run directory's migd.  %s%s (vmmctl status on "
			 "both hosts tells)", m->orphans_pid,
			 switching ? "switching to postcopy" : "in postcopy",
			 switching ? "It may have cancelled the switch, and "
			 "the guest then runs on the source; if not, and it "
			 "died before the job's end, " : "Should it have died "
			 "before the job's end, ", src ?
			 "the destination runs the guest, and the pages it "
			 "still lacks are only in this vmm: do not quit it" :
			 "the guest here waits for good on the pages it still "
			 "lacks");
		log_warnx("%s: %s job %s", j->spec.vm, job_role_name(j->spec.role),
			  j->error);
		job_history_add(m, j, false);
	}
	if (ended)
		migd_state_save(m);
	if (m->orphans && m->ev_orphans && evtimer_add(m->ev_orphans, &recheck) < 0)
		log_warnx("cannot look at the workers not back again: they are "
			  "waited for until they come back");
}

struct job *migd_state_orphan(struct migd *m, const char *vm, const char *id)
{
	struct job *j;

	for (j = m->orphans; j; j = j->next)
		if (!strcmp(j->spec.vm, vm) &&
		    (!id || !id[0] || !strcasecmp(j->last->id, id)))
			return j;
	return NULL;
}

/* The defaults and jobs of a decoded file; why says what did not check. */
static int state_apply(struct migd *m, const Tern__Migd__SavedState *s,
		       size_t *skipped, size_t *lost, size_t *orphans,
		       char *why, size_t len)
{
	struct mig_params p;
	char err[160], first[256] = "", later[256];
	size_t i;
	int r;

	if (s->version != STATE_VERSION)
		return snprintf(why, len, "version %u, where this migd reads %u",
				s->version, STATE_VERSION), -EINVAL;
	if (params_whole(s->defaults, &p, err, sizeof(err)) < 0)
		return snprintf(why, len, "its defaults: %s", err), -EINVAL;
	m->defaults = p;
	/* Oldest first, each to the front: the history's order is the
	 * file's, and its bounds (job_history_add) drop the oldest. */
	for (i = s->n_history; i-- > 0;)
		if (state_job(m, s->history[i], false, s,
			      first[0] ? later : first, sizeof(first)) < 0)
			(*skipped)++;
	/* Then those that ran when it ended: newer than any that ended. */
	for (i = s->n_running; i-- > 0;) {
		r = state_job(m, s->running[i], true, s,
			      first[0] ? later : first, sizeof(first));
		if (r < 0)
			(*skipped)++;
		else if (r == STATE_JOB_GUESSED)
			(*lost)++;
		else if (r == STATE_JOB_ORPHAN)
			(*orphans)++;
	}
	m->orphans_pid = s->pid;
	tombstones_restore(m, s->tombstones, s->n_tombstones);
	snprintf(why, len, "%s", first);
	return 0;
}

void migd_state_load(struct migd *m)
{
	Tern__Migd__SavedState *s = NULL;
	char path[PATH_MAX + 16], bad[PATH_MAX + 16], why[256] = "", when[32];
	uint8_t *buf = NULL;
	size_t len = 0, skipped = 0, lost = 0, orphans = 0;
	struct timeval due;
	uint64_t ms;
	int r;

	state_path(m, "", path, sizeof(path));
	r = state_read(path, &buf, &len, why, sizeof(why));
	if (r == -ENOENT)
		return;                 /* a first start */
	if (r == 0 && len == 0) {
		snprintf(why, sizeof(why), "it is empty");
		r = -EINVAL;
	}
	if (r == 0) {
		s = (Tern__Migd__SavedState *)pbuf_unpack(
			&tern__migd__saved_state__descriptor, len, buf);
		if (!s) {
			snprintf(why, sizeof(why), "it does not decode");
			r = -EINVAL;
		}
	}
	if (r == 0)
		r = state_apply(m, s, &skipped, &lost, &orphans, why,
				sizeof(why));
	if (r < 0) {
		m->state_lost = true;
		state_path(m, ".bad", bad, sizeof(bad));
		log_warnx("%s: %s; kept as %s, and this migd starts with the "
			  "built-in defaults and no history", path, why,
			  rename(path, bad) == 0 ? bad : "it is (it cannot be renamed)");
	} else {
		log_info("restored from %s, saved %s: the defaults and %zu "
			 "finished job%s", path, state_when(s->saved_unix_ms, when,
							    sizeof(when)),
			 m->nhistory, m->nhistory == 1 ? "" : "s");
		if (skipped)
			log_warnx("%s: %zu saved jobs left out, which did not "
				  "check (the first: %s)", path, skipped, why);
		if (lost)
			log_warnx("%zu jobs ran when migd %u ended, and no word of "
				  "their end came: recorded as cancelled (before "
				  "their switch) or of unknown outcome (past it)",
				  lost, s->pid);
		if (orphans)
			log_info("%zu postcopy jobs ran when migd %u ended: "
				 "their workers have %d s to come back", orphans,
				 s->pid, MIGD_ADOPT_GRACE_MS / 1000);
	}
	if (m->orphans) {
		ms = (now_ns() - m->started_ns) / 1000000;
		ms = ms < MIGD_ADOPT_GRACE_MS ? MIGD_ADOPT_GRACE_MS - ms : 0;
		due.tv_sec = (time_t)(ms / 1000);
		due.tv_usec = (suseconds_t)(ms % 1000) * 1000;
		m->ev_orphans = evtimer_new(m->base, state_orphans_due, m);
		if (!m->ev_orphans || evtimer_add(m->ev_orphans, &due) < 0)
			state_orphans_due(-1, 0, m);    /* now, then */
	}
	if (s)
		tern__migd__saved_state__free_unpacked(s, NULL);
	free(buf);
}

/* buf under path, or nothing: a new file renamed over the old one. */
static int state_write(const struct migd *m, const uint8_t *buf, size_t len)
{
	char path[PATH_MAX + 16], tmp[PATH_MAX + 16];
	int fd, r;

	state_path(m, "", path, sizeof(path));
	state_path(m, ".new", tmp, sizeof(tmp));
	/* O_NOFOLLOW: a link planted under the fixed name is not written
	 * through; O_TRUNC: a file left by a migd that died mid-write. */
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	r = write_all(fd, buf, len);
	if (close(fd) < 0 && r == 0)
		r = -errno;
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0)
		unlink(tmp);
	return r;
}

void migd_state_save(struct migd *m)
{
	Tern__Migd__SavedState s = TERN__MIGD__SAVED_STATE__INIT;
	Tern__Migd__SavedTombstone tombs[TOMB_MAX], *ptombs[TOMB_MAX];
	char tomb_ids[TOMB_MAX][2 * STREAM_ID_LEN + 1];
	Tern__Migd__Params defaults;
	Tern__Migd__JobStatus *js, **list;
	struct job *j;
	uint8_t *buf = NULL;
	size_t i = 0, n = m->nhistory, len;
	int r = -ENOMEM;

	for (j = m->running; j; j = j->next)
		n++;
	for (j = m->orphans; j; j = j->next)
		n++;
	js = calloc(n + 1, sizeof(*js));
	list = calloc(n + 1, sizeof(*list));
	if (!js || !list)
		goto out;
	/* The running ones first (a job that ended is in the history only),
	 * then the history, both newest first. */
	for (j = m->running; j && i < n; j = j->next) {
		if (j->finished)
			continue;
		job_status(j, &js[i]);
		list[i] = &js[i];
		i++;
	}
	/* Not back yet: still running for the next migd, if this one dies
	 * before they are. */
	for (j = m->orphans; j && i < n; j = j->next) {
		job_status(j, &js[i]);
		list[i] = &js[i];
		i++;
	}
	s.n_running = i;
	s.running = list;
	for (j = m->history; j && i < n; j = j->next) {
		job_status(j, &js[i]);
		list[i] = &js[i];
		i++;
	}
	params_to_proto(&m->defaults, &defaults);
	s.version = STATE_VERSION;
	s.pid = (uint32_t)getpid();
	s.saved_unix_ms = unix_ms();
	s.defaults = &defaults;
	s.n_history = i - s.n_running;
	s.history = list + s.n_running;
	s.n_tombstones = tombstones_save(m, tombs, tomb_ids, TOMB_MAX);
	for (i = 0; i < s.n_tombstones; i++)
		ptombs[i] = &tombs[i];
	s.tombstones = ptombs;
	len = tern__migd__saved_state__get_packed_size(&s);
	buf = malloc(len ? len : 1);
	if (!buf)
		goto out;
	tern__migd__saved_state__pack(&s, buf);
	r = state_write(m, buf, len);
	m->state_saved_ns = now_ns();
out:
	/* Said once a failure, and once it is over: a full run directory
	 * must not fill the log at every job's end. */
	if (r < 0 && !m->state_unsaved)
		log_warnc(r, "cannot save %s/" STATE_NAME " (the defaults and the "
			  "history, for a restarted migd)", m->rundir);
	else if (r == 0 && m->state_unsaved)
		log_info("%s/" STATE_NAME " saved again", m->rundir);
	m->state_unsaved = r < 0;
	free(buf);
	free(list);
	free(js);
}
