// SPDX-License-Identifier: GPL-2.0-only
/*
 * The job table of the migd parent: one forked worker per job, its status
 * reports read from a socketpair in the event loop, the callers waiting
 * for its end (and the deferred replies to Incoming, a detached Migrate
 * and Recover), and the commands and signals sent to the worker.  Called
 * by control.c (new jobs, queries, commands) and jobadopt.c (the jobs an
 * earlier migd left, whose workers are not our children).  A job's end,
 * with the clean-up its worker could not do and the history of finished
 * jobs, is jobend.c's.
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/pbuf.h"
#include "common/util.h"
#include "migd/migd.h"

#define JOB_STATUS_MAX_FRAME (256u << 10)
#define JOB_READ_BATCH 16

const char *job_role_name(enum job_role role)
{
	return role == JOB_ROLE_SOURCE ? "source" :
	       role == JOB_ROLE_DEST ? "destination" : "unknown";
}

/* A destination learns its id from the source: all zeroes until then. */
bool job_id_unknown(const char *hex)
{
	return !hex || !hex[0] || strspn(hex, "0") == strlen(hex);
}

int job_id_parse(const char *hex, uint8_t *out)
{
	if (strlen(hex) != 2 * STREAM_ID_LEN || job_id_unknown(hex) ||
	    stream_unhex(hex, out, STREAM_ID_LEN) < 0)
		return -EINVAL;
	return 0;
}

void job_status(struct job *j, Tern__Migd__JobStatus *ret)
{
	Tern__Migd__JobStatus *js = ret;
	const struct job_spec *s = &j->spec;

	if (j->last) {
		*js = *j->last;
	} else {
		tern__migd__job_status__init(js);
		stream_hex(s->id, STREAM_ID_LEN, j->idhex);
		js->id = j->idhex;
		js->vm = j->spec.vm;
		js->role = s->role == JOB_ROLE_SOURCE ?
			   TERN__MIGD__JOB_ROLE__ROLE_SOURCE :
			   TERN__MIGD__JOB_ROLE__ROLE_DEST;
		js->peer = j->spec.peer;
		js->started_unix_ms = j->started_unix_ms;
	}
	/* A source's: the parent's copy, what the job started with and each
	 * Tune sent, already in the reply to the Tune (the worker reports
	 * it later).  A destination's: the source job's, once its worker
	 * has them (the stream hello). */
	if (s->role == JOB_ROLE_SOURCE || !js->params) {
		params_to_proto(&s->params, &j->params);
		js->params = &j->params;
	}
	if (job_id_unknown(js->id))
		js->id = "";
	if (s->role == JOB_ROLE_SOURCE)
		js->pause_fixed_learned_us = s->pause_fixed_us;
	if (s->role == JOB_ROLE_DEST && (!js->listen || !js->listen[0]))
		js->listen = j->spec.peer;
	js->state = (Tern__Migd__JobState)j->state;
	if (j->error[0])
		js->error = j->error;
	js->worker_pid = j->pid > 0 ? (uint32_t)j->pid :
			 j->orphan_pid > 0 ? (uint32_t)j->orphan_pid : js->worker_pid;
	if (j->finished) {
		js->finished_unix_ms = j->finished_unix_ms;
		if (js->started_unix_ms && js->finished_unix_ms > js->started_unix_ms &&
		    !js->total_ms)
			js->total_ms = js->finished_unix_ms - js->started_unix_ms;
	}
}

/*
 * The fixed part of a pause (stop, device state, destination ready, the
 * vCPUs' release there) hardly varies between this host's jobs, but
 * cannot be timed before the first one: the lower median of the last
 * PAUSE_FIXED_JOBS outgoing ones that measured it, precopy jobs that
 * completed without verify (in a postcopy job the figure is only the
 * estimate; with verify the pause also held the hashing), of a guest
 * that ran (a paused one's is only the estimate too: no vCPU was woken
 * at the switch, so no pause was measured).  Above
 * PAUSE_FIXED_MAX_US a worker's figure is not believed.  A sample older
 * than PAUSE_FIXED_MAX_AGE_NS, or from before a SetParams reset, no
 * longer counts: two slow switches (a destination host that once took
 * 2 s to resume) must not decide every later job's figure until 8
 * newer jobs complete, which, at a limit below that figure, none would
 * (source_fixed_us leaves such a figure out, too).
 */
#define PAUSE_FIXED_JOBS 8
#define PAUSE_FIXED_MAX_US 10000000ULL
#define PAUSE_FIXED_MAX_AGE_NS (10 * 60 * 1000000000ULL)

uint64_t job_pause_fixed_us(const struct migd *m)
{
	uint64_t v[PAUSE_FIXED_JOBS], now = now_ns();
	const struct job *j;
	unsigned int n = 0;

	for (j = m->history; j && n < PAUSE_FIXED_JOBS; j = j->next) {
		if (j->finished_ns <= m->pause_fixed_forget_ns ||
		    now - j->finished_ns > PAUSE_FIXED_MAX_AGE_NS)
			continue;
		if (j->spec.role != JOB_ROLE_SOURCE || j->state != JOB_STATE_COMPLETED ||
		    !j->last || j->last->postcopy_started || j->spec.params.verify ||
		    j->last->guest_paused || !j->last->pause_fixed_us ||
		    j->last->pause_fixed_us > PAUSE_FIXED_MAX_US)
			continue;
		v[n++] = j->last->pause_fixed_us;
	}
	/* None: nothing learned (source_fixed_us takes the first guess),
	 * and the status says nothing of earlier jobs. */
	if (!n)
		return 0;
	/* The first-guess value counts as one more while fewer completed:
	 * so one slow pause (the first job's, on cold caches) never sets
	 * the estimate alone, and cannot keep every later job at a tight
	 * limit from converging (only completed jobs count). */
	if (n < PAUSE_FIXED_JOBS)
		v[n++] = PAUSE_FIXED_FIRST_US;
	return median_low(v, n);
}

struct job *job_find(struct migd *m, const char *vm, bool running_only)
{
	struct job *j;

	for (j = m->running; j; j = j->next)
		if (!strcmp(j->spec.vm, vm))
			return j;
	if (running_only)
		return NULL;
	for (j = m->history; j; j = j->next)
		if (!strcmp(j->spec.vm, vm))
			return j;
	return NULL;
}

/* A destination's id is learnt from the source's hello by its worker,
 * and known here from its reports only (spec.id stays zero): the id as
 * status gives it is the one to compare. */
struct job *job_find_id(struct migd *m, const char *vm, const char *id)
{
	struct job *lists[] = { m->running, m->history }, *j;
	Tern__Migd__JobStatus js;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(lists); i++)
		for (j = lists[i]; j; j = j->next) {
			if (strcmp(j->spec.vm, vm))
				continue;
			job_status(j, &js);
			if (!strcasecmp(js.id, id))
				return j;
		}
	return NULL;
}

/* Send the current status as a "status" event to every waiter that
 * asked; a waiter whose caller has gone is dropped.  So do the calls
 * whose answer the worker still owes (a Postcopy while the destination
 * says whether it can switch, which a low cap may hold up for seconds:
 * before, such a caller heard nothing and its client took the silence
 * for a stopped migd); job_deferred_tidy drops those gone. */
void job_notify(struct job *j)
{
	Tern__Migd__JobStatus js;
	size_t i = 0;

	job_status(j, &js);
	while (i < j->nwaiters) {
		struct job_waiter *w = &j->waiters[i];

		if (rpc_call_gone(w->call) || (w->events &&
		    rpc_call_event(w->call, "status", &js.base) == -ENOTCONN)) {
			rpc_call_finish(w->call, -ENOTCONN);
			j->waiters[i] = j->waiters[--j->nwaiters];
			continue;
		}
		i++;
	}
	for (i = 0; i < j->ndeferred; i++)
		if (rpc_call_wants_events(j->deferred[i].call) &&
		    !rpc_call_gone(j->deferred[i].call))
			rpc_call_event(j->deferred[i].call, "status", &js.base);
}

int job_add_waiter(struct job *j, struct rpc_call *call)
{
	struct job_waiter *w;

	if (j->nwaiters >= MIGD_MAX_WAITERS)
		return rpc_call_errorf(call, EUSERS,
				       "too many callers wait for the job of %s "
				       "(%d)", j->spec.vm, MIGD_MAX_WAITERS);
	w = &j->waiters[j->nwaiters++];
	w->call = call;
	w->events = rpc_call_wants_events(call);
	if (w->events) {
		Tern__Migd__JobStatus js;

		/* The caller sees where the job stands at once. */
		job_status(j, &js);
		rpc_call_event(call, "status", &js.base);
	}
	return RPC_DEFERRED;
}

int job_wait_room(struct job *j, struct rpc_call *call, bool wait)
{
	if (!wait || j->finished || j->nwaiters < MIGD_MAX_WAITERS)
		return 0;
	return rpc_call_errorf(call, EUSERS, "too many callers wait for the job "
			       "of %s (%d): nothing was done; ask without "
			       "waiting, then follow the job with Status",
			       j->spec.vm, MIGD_MAX_WAITERS);
}

/* ---- Incoming's reply, and a detached Migrate's ------------------------ */

/*
 * Incoming replies once the destination's worker has found its vmm
 * waiting for an incoming guest (dest_run), so that a vmm that is gone
 * or cannot take a guest is refused to its caller, not to the source a
 * moment later.  A detached Migrate likewise waits for the source's
 * worker to have found its vmm fit to migrate (source_vmm), before it
 * dials: "started" must not be said of a job that fails on its own vmm
 * (a stale copy of a guest that moved away).  A refusal waits for the
 * job's end, so that the VM takes a new job as soon as its caller hears.
 */
int job_defer_start(struct job *j, struct rpc_call *call)
{
	j->starting = call;
	return RPC_DEFERRED;
}

void job_answer_start(struct job *j)
{
	Tern__Migd__IncomingReply rep = TERN__MIGD__INCOMING_REPLY__INIT;
	Tern__Migd__JobStatus js;
	struct rpc_call *call = j->starting;
	char token[STREAM_TOKEN_HEX + 1];
	int r, err;

	if (!call)
		return;
	j->starting = NULL;
	job_status(j, &js);
	if (j->answered && !j->answer_err && !j->finished &&
	    j->spec.role == JOB_ROLE_SOURCE) {
		r = rpc_call_reply(call, &js.base, NULL, 0);
	} else if (j->answered && !j->answer_err && !j->finished &&
		   j->spec.role == JOB_ROLE_DEST && !j->spec.token_given &&
		   rpc_call_gone(call)) {
		/* Its caller gave up (its timeout, a name slow to look up,
		 * a vmm slow to answer) and never heard the token, which
		 * migd made: no source can ever come, and the job would
		 * hold the vmm for good. */
		log_info("%s: the caller of Incoming left before its answer, "
			 "and nobody else has the job's token: cancelling it",
			 j->spec.vm);
		rpc_call_finish(call, -ENOTCONN);
		job_cancel(j, JOB_CANCEL_PLAIN);
		return;
	} else if (j->answered && !j->answer_err && !j->finished) {
		stream_hex(j->spec.token, STREAM_TOKEN_LEN, token);
		rep.token = token;
		rep.listen = j->spec.peer;
		rep.job = &js;
		log_info("%s: waiting for the source on %s", j->spec.vm,
			 j->spec.peer);
		r = rpc_call_reply(call, &rep.base, NULL, 0);
	} else {
		err = j->answer_err ? j->answer_err :
		      j->state == JOB_STATE_CANCELLED ? ECANCELED : EIO;
		j->refusal_heard = j->answer_err && !rpc_call_gone(call);
		r = rpc_call_errorf(call, err, "%s", js.error[0] ? js.error :
				    "the job ended");
	}
	rpc_call_finish(call, r);
}

/* ---- the replies a worker gives later --------------------------------- */

/*
 * Recover on a destination given a new address: its worker binds it
 * (dest_relisten) and answers once it listens there, after the report
 * that shows it; the reply is the job with its new listen address, or
 * why the worker could not (the job waits on where it was).  Postcopy
 * on a source in precopy: its worker asks the destination first
 * (PostcopyAsk), and answers with what it said: the job, switching, or
 * why not (the job goes on in precopy).  With wait, the caller then
 * waits for the end.
 */
int job_defer_answer(struct job *j, struct rpc_call *call, bool wait)
{
	if (j->ndeferred >= MIGD_MAX_DEFERRED)
		return rpc_call_errorf(call, EBUSY, "%s: %d callers wait for the "
				       "worker's answer already", j->spec.vm,
				       MIGD_MAX_DEFERRED);
	j->deferred[j->ndeferred].call = call;
	j->deferred[j->ndeferred].wait = wait;
	j->ndeferred++;
	return RPC_DEFERRED;
}

void job_deferred_tidy(struct job *j)
{
	unsigned int i, n = 0;

	for (i = 0; i < j->ndeferred; i++) {
		if (rpc_call_gone(j->deferred[i].call))
			rpc_call_finish(j->deferred[i].call, -ENOTCONN);
		else
			j->deferred[n++] = j->deferred[i];
	}
	j->ndeferred = n;
}

static void answer_one(struct job *j, struct rpc_call *call, bool wait,
		       int err, const char *msg)
{
	Tern__Migd__JobStatus js;
	int r;

	if (!err && !j->finished && wait) {
		r = job_add_waiter(j, call);
		if (r != RPC_DEFERRED)
			rpc_call_finish(call, r);
		return;
	}
	job_status(j, &js);
	if (!err && !j->finished)
		r = rpc_call_reply(call, &js.base, NULL, 0);
	else if (!msg && j->spec.role == JOB_ROLE_SOURCE)
		r = rpc_call_errorf(call, EALREADY, "%s: the job ended (%s) before "
				    "it switched to postcopy%s%s", j->spec.vm,
				    job_state_name(j->state), js.error[0] ? ": " : "",
				    js.error);
	else
		r = rpc_call_errorf(call, err ? err : EIO, "%s", msg && msg[0] ? msg :
				    js.error[0] ? js.error : "the job ended");
	rpc_call_finish(call, r);
}

void job_answer_deferred(struct job *j, int err, const char *msg)
{
	unsigned int i, n = j->ndeferred;

	j->ndeferred = 0;
	for (i = 0; i < n; i++)
		answer_one(j, j->deferred[i].call, j->deferred[i].wait, err, msg);
}

/* The worker's answers (worker_answer): the first for Incoming or
 * Migrate, later ones for the call deferred (job_defer_answer). */
static int job_take_answer(struct job *j, const Tern__Rpc__Reply *rep)
{
	if (rep->status < 0 || rep->status > 4095)
		return -EPROTO;
	if (j->answered) {
		job_answer_deferred(j, rep->status, rep->message);
		return 0;
	}
	j->answered = true;
	j->answer_err = rep->status;
	if (!rep->status)
		job_answer_start(j);
	return 0;
}

/* Check a report against the job before taking it. */
static int job_take_report(struct job *j, const Tern__Rpc__Frame *f)
{
	Tern__Migd__JobStatus *js;
	const Tern__Rpc__Event *ev = f->event;
	enum job_role role;
	bool save;

	if (f->body_case != TERN__RPC__FRAME__BODY_EVENT || !ev->name ||
	    strcmp(ev->name, "status"))
		return -EPROTO;
	js = (Tern__Migd__JobStatus *)pbuf_unpack(&tern__migd__job_status__descriptor,
						    ev->data.len, ev->data.data);
	if (!js)
		return -EPROTO;
	role = js->role == TERN__MIGD__JOB_ROLE__ROLE_SOURCE ? JOB_ROLE_SOURCE :
	       js->role == TERN__MIGD__JOB_ROLE__ROLE_DEST ? JOB_ROLE_DEST :
	       JOB_ROLE_MAX;
	if (strcmp(js->vm, j->spec.vm) || role != j->spec.role ||
	    (unsigned int)js->state >= JOB_STATE_MAX ||
	    js->n_channels > STREAM_MAX_CHANNELS ||
	    strlen(js->id) != 2 * STREAM_ID_LEN) {
		tern__migd__job_status__free_unpacked(js, NULL);
		return -EPROTO;
	}
	/* Saved when the job learns its id (a destination, from the source),
	 * changes state (a destination's source came) and passes its
	 * switch: what migd.state tells the next migd of a job this one did
	 * not see end (statefile.c). */
	save = (!j->last || strcmp(j->last->id, js->id) ||
		j->last->state != js->state ||
		j->last->switched != js->switched ||
		j->last->postcopy_started != js->postcopy_started) &&
	       !job_state_final((enum job_state)js->state);
	/* And every STATE_SAVE_RUNNING_NS while jobs run: a migd killed
	 * (SIGKILL, the OOM killer) left only the job's figures at its
	 * start ("0% 0 B") for the next one to record. */
	save |= now_ns() - j->m->state_saved_ns >= STATE_SAVE_RUNNING_NS &&
		!job_state_final((enum job_state)js->state);
	if (j->last)
		tern__migd__job_status__free_unpacked(j->last, NULL);
	j->last = js;
	/* migd's end cancelled it: said, where the worker knows only that
	 * it was cancelled (the memory is malloc()'s, pbuf.c). */
	if (j->cancel_how == JOB_CANCEL_SHUTDOWN &&
	    !strncmp(js->error, "cancelled", 9) &&
	    (!js->error[9] || js->error[9] == ';')) {
		char *e = NULL;

		if (asprintf(&e, "cancelled: migd is stopping%s",
			     js->error + 9) >= 0) {
			free(js->error);
			js->error = e;
		}
	}
	/* A cancel that crossed the switch: the worker drops it, unless its
	 * postcopy is paused (cancel --force), or a recovery is under way
	 * (taken if that fails). */
	if (js->switched && (j->cancel_how == JOB_CANCEL_PLAIN ||
			     (js->state != TERN__MIGD__JOB_STATE__JOB_POSTCOPY_PAUSED &&
			      js->state != TERN__MIGD__JOB_STATE__JOB_POSTCOPY_RECOVER)))
		j->cancel_requested = false;
	/* A final state shows once the job is over (job_tidy_done): until
	 * the worker is reaped and its vmm tidied, the VM takes no new job,
	 * and a caller who sees "failed" may start the next one.  The
	 * worker hears that we have its end (worker_end_taken), unless we
	 * are quitting and left the job to the next migd: the worker then
	 * gives its end to that one (jobadopt.c). */
	if (job_state_final((enum job_state)js->state)) {
		if (!j->left)
			job_command(j, "taken", NULL);
		return 0;
	}
	j->state = j->cancel_requested ? JOB_STATE_CANCELLING :
		   (enum job_state)js->state;
	/* (with the state just taken: job_status shows j->state) */
	if (save)
		migd_state_save(j->m);
	/* A Postcopy that came as the worker had already begun a switch of
	 * its own (postcopy auto, the timeout's) has it. */
	if (j->spec.role == JOB_ROLE_SOURCE && js->postcopy_started)
		job_answer_deferred(j, 0, NULL);
	return 0;
}

void job_close_conn(struct job *j)
{
	if (j->ev) {
		event_free(j->ev);
		j->ev = NULL;
	}
	if (j->conn) {
		rpc_conn_free(j->conn);
		j->conn = NULL;
	}
}

/* Read up to max of the worker's reports: 0 to keep reading, <0 at EOF
 * or error. */
int job_read(struct job *j, unsigned int max)
{
	Tern__Rpc__Frame *f;
	int fds[RPC_MAX_FDS];
	size_t nfds, i;
	unsigned int n;
	int r = 0;

	for (n = 0; n < max; n++) {
		r = rpc_conn_recv(j->conn, &f, fds, &nfds);
		if (r <= 0)
			break;
		for (i = 0; i < nfds; i++)
			close(fds[i]);
		r = nfds ? -EPROTO :
		    f->body_case == TERN__RPC__FRAME__BODY_REPLY ?
		    job_take_answer(j, f->reply) : job_take_report(j, f);
		tern__rpc__frame__free_unpacked(f, NULL);
		if (r < 0)
			break;
		job_notify(j);
	}
	return r;
}

int job_signal(struct job *j, int sig)
{
	if (j->pid <= 0)
		return -ESRCH;
	/* An adopted worker is no child of ours: its pid could be another
	 * process's once it ended, its pidfd never. */
	if (j->pidfd >= 0)
		return syscall(SYS_pidfd_send_signal, j->pidfd, sig, NULL, 0) < 0 ?
		       -errno : 0;
	return kill(j->pid, sig) < 0 ? -errno : 0;
}

static void handle_worker_report(evutil_socket_t fd, short what, void *arg)
{
	struct job *j = arg;
	int r = job_read(j, JOB_READ_BATCH);

	/* migd stopping waits for no job past its postcopy switch: this
	 * report may show one that crossed it. */
	if (j->m->quitting)
		migd_check_quit(j->m);
	if (r >= 0)
		return;
	/* ECONNRESET: the worker exited with our last words unread (the
	 * "taken" after its final report, which only a postcopy job's
	 * waits for); all it sent was read before. */
	if (r != -EPIPE && r != -ECONNRESET) {
		/* A worker that speaks garbage is not trusted to finish. */
		log_warnx("%s: worker %d sent a malformed status report (%s); "
			  "killing it", j->spec.vm, (int)j->pid, strerror(-r));
		snprintf(j->error, sizeof(j->error),
			 "worker sent a malformed status report");
		job_signal(j, SIGKILL);
	}
	job_close_conn(j);
}

/* ---- starting a worker ----------------------------------------------- */

static void child_close_fds(int keep1, int keep2)
{
	int lo = MIN(keep1, keep2), hi = MAX(keep1, keep2);

	if (lo < 3)
		lo = hi;
	if (lo > 3)
		close_range(3, lo - 1, 0);
	if (hi > lo + 1)
		close_range(lo + 1, hi - 1, 0);
	close_range(hi + 1, ~0U, 0);
}

/* In the child: nothing of the parent's but the two descriptors. */
static void __attribute__((noreturn)) child_run(struct job_spec *spec, int fd,
						pid_t parent)
{
	struct sigaction sa = { .sa_handler = SIG_DFL };
	sigset_t all;
	int sig;

	child_close_fds(fd, spec->listen_fd >= 0 ? spec->listen_fd : fd);
	sigemptyset(&sa.sa_mask);
	for (sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			sigaction(sig, &sa, NULL);
	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	/* If migd dies, the job is cancelled (the worker restores the VM),
	 * or, past its switch, goes on until it completes or pauses. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != parent)
		raise(SIGTERM);
	_exit(worker_main(spec, fd));
}

int job_start(struct migd *m, const struct job_spec *spec, struct job **ret)
{
	struct job *j;
	sigset_t all, old;
	int sv[2], r;
	pid_t pid, parent = getpid();

	j = calloc(1, sizeof(*j));
	if (!j) {
		r = -ENOMEM;
		goto fail;
	}
	j->spec = *spec;
	j->m = m;
	j->pidfd = -1;
	j->state = spec->role == JOB_ROLE_DEST ? JOB_STATE_WAITING :
						JOB_STATE_SETUP;
	j->started_unix_ms = unix_ms();
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		r = -errno;
		goto fail_job;
	}
	/*
	 * No signal may reach the child before child_run resets migd's
	 * handlers: libevent's would tell the parent, through the socket
	 * they share, that migd itself got it (a Cancel right after a
	 * Migrate shut migd down).  Blocked, it waits for SIG_DFL.
	 */
	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, &old);
	pid = fork();
	if (pid == 0) {
		close(sv[0]);
		child_run(&j->spec, sv[1], parent);
	}
	r = pid < 0 ? -errno : 0;
	sigprocmask(SIG_SETMASK, &old, NULL);
	if (pid < 0) {
		close(sv[0]);
		close(sv[1]);
		goto fail_job;
	}
	close(sv[1]);
	j->pid = pid;
	r = job_watch_link(m, j, sv[0]);
	if (r < 0)
		goto fail_kill;
	if (spec->listen_fd >= 0)
		close(spec->listen_fd);
	j->spec.listen_fd = -1;
	j->next = m->running;
	m->running = j;
	migd_state_save(m);
	log_info("%s: %s job started, worker %d", spec->vm,
		 job_role_name(spec->role), (int)pid);
	*ret = j;
	return 0;
fail_kill:
	/* Reaped by jobs_reap like any other child; it has no job. */
	kill(pid, SIGKILL);
	job_close_conn(j);
fail_job:
	free(j);
fail:
	if (spec->listen_fd >= 0)
		close(spec->listen_fd);
	return r;
}

int job_watch_link(struct migd *m, struct job *j, int fd)
{
	int r = rpc_conn_new(fd, JOB_STATUS_MAX_FRAME, &j->conn);

	if (r < 0)
		return r;
	j->ev = event_new(m->base, fd, EV_READ | EV_PERSIST,
			  handle_worker_report, j);
	if (!j->ev || event_add(j->ev, NULL) < 0)
		return -ENOMEM;
	return 0;
}

int job_cancel(struct job *j, enum job_cancel how)
{
	int r;

	if (j->finished || j->pid <= 0)
		return -EINVAL;
	/* An operator's cancel is said on the status socketpair: SIGTERM
	 * alone is migd's end (jobs_signal_all), which a paused postcopy
	 * takes, and a plain cancel that crossed the switch must not. */
	r = how == JOB_CANCEL_ABANDON ? job_command(j, "abandon", NULL) :
	    how == JOB_CANCEL_PLAIN ? job_command(j, "cancel", NULL) :
	    job_signal(j, SIGTERM);
	/* A plain cancel queued (the worker reads it when it can) is
	 * sent; a worker without its status link cannot read one, but
	 * before its switch SIGTERM is the same cancel. */
	if (how == JOB_CANCEL_PLAIN && r == -EAGAIN)
		r = 0;
	else if (how == JOB_CANCEL_PLAIN && r < 0)
		r = job_signal(j, SIGTERM);
	if (r < 0)
		return r;
	j->cancel_how = how;
	if (!j->cancel_requested)
		log_info("%s: cancelling (worker %d)", j->spec.vm, (int)j->pid);
	j->cancel_requested = true;
	if (!job_state_final(j->state))
		j->state = JOB_STATE_CANCELLING;
	job_notify(j);
	return 0;
}

/*
 * A command to the worker on the status socketpair (tiny frames: the
 * socket takes them at once; a worker that does not read them has
 * failed anyway).
 */
int job_command(struct job *j, const char *name, const ProtobufCMessage *arg)
{
	Tern__Rpc__Event ev = TERN__RPC__EVENT__INIT;
	Tern__Rpc__Frame f = TERN__RPC__FRAME__INIT;
	uint8_t buf[PATH_MAX + 1024];
	int r, i;

	if (j->finished || !j->conn)
		return -EINVAL;
	ev.name = (char *)name;
	if (arg) {
		if (protobuf_c_message_get_packed_size(arg) > sizeof(buf))
			return -EMSGSIZE;
		ev.data.len = protobuf_c_message_pack(arg, buf);
		ev.data.data = buf;
	}
	f.body_case = TERN__RPC__FRAME__BODY_EVENT;
	f.event = &ev;
	r = rpc_conn_send(j->conn, &f, NULL, 0);
	for (i = 0; r == 0 && i < 100; i++) {
		r = rpc_conn_flush(j->conn);
		if (r == 0) {
			usleep(1000);
			continue;
		}
	}
	return r < 0 ? r : r == 1 ? 0 : -EAGAIN;
}

const char *job_ending(const struct job *j)
{
	if (j->finished)
		return NULL;
	if (j->pid <= 0)
		return "migd is cleaning up at its vmm";
	if (j->last && job_state_final((enum job_state)j->last->state))
		return "its worker is ending";
	return NULL;
}

bool job_in_postcopy(const struct job *j)
{
	return !j->finished && j->last && j->last->postcopy_started && j->last->switched;
}
