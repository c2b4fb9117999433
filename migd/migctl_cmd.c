// SPDX-License-Identifier: GPL-2.0-only
/*
 * migctl: the commands.  The connection to migd, one call with its
 * errors said (and the status events of a call that waits, shown as
 * progress), and each command's request and what it prints of the
 * answer.  main() (migctl.c) connects and runs one, its arguments
 * already checked.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cli.h"
#include "common/json.h"
#include "common/pbuf.h"
#include "common/rpc.h"
#include "common/stream.h"
#include "common/uri.h"
#include "common/util.h"
#include "migd/migctl.h"
#include "proto/migd.pb-c.h"

#define CTL_MAX_FRAME (4u << 20)

/* recover --wait and status --watch: a job postcopy-paused for good
 * (JobStatus.unrecoverable) never ends by itself, and no recover can
 * bring it back: waiting on would be for ever.  Said as the outcome, and
 * migctl exits 1. */
static bool stop_unrecoverable;

/*
 * A call that waits hears migd five times a second while the job runs
 * (its worker's reports, passed on).  Silence means migd or the worker
 * is stopped (SIGSTOP, a debugger) or stuck: said after SILENT_TELL_MS,
 * and the wait given up after --timeout of it, with who is stopped.
 */
#define SILENT_TELL_MS 5000

/* What the operator ran, "postcopy vm1", for the lines that say what
 * became of a call (cmd_label); the RPC's name when none was set. */
static char call_label[160];

void cmd_label(const char *cmd, const char *vm)
{
	snprintf(call_label, sizeof(call_label), "%s%s%.100s", cmd,
		 vm ? " " : "", vm ? vm : "");
	show_text_safe(call_label);
}

static const char *label_of(const char *method)
{
	return call_label[0] ? call_label : method;
}

static struct {
	int migd_pid;
	int worker_pid;         /* from the last report */
	bool heard;             /* a report came: migd has taken the request */
	bool told;              /* the silence was said */
	int state;              /* the last report's JobState */
} waiting;

/* Heard after the silence was said: an event, or the call's answer. */
static void speaks_again(void)
{
	if (!waiting.told)
		return;
	progress_end();
	fprintf(stderr, "migctl: migd speaks again\n");
	waiting.told = false;
}

/* A report of the job waited for (an event, or a status polled). */
static void take_status(Tern__Migd__JobStatus *js)
{
	char text[1024];

	waiting.worker_pid = (int)js->worker_pid;
	/* A recovery that failed leaves the job paused, to be recovered
	 * again: a wait goes on, and says why once. */
	if (waiting.state == TERN__MIGD__JOB_STATE__JOB_POSTCOPY_RECOVER &&
	    js->state == TERN__MIGD__JOB_STATE__JOB_POSTCOPY_PAUSED &&
	    !js->unrecoverable) {
		progress_end();
		fprintf(stderr, "migctl: %s: the recovery failed: %s; the job "
			"is postcopy-paused again ('migctl recover' tries "
			"again; this waits on)\n", show_text_safe(js->vm),
			js->error[0] ? show_text_safe(js->error) : "(no reason given)");
	}
	waiting.state = js->state;
	if (migctl_opts.json && !stop_unrecoverable)
		return;
	if (stop_unrecoverable && js->unrecoverable &&
	    js->state == TERN__MIGD__JOB_STATE__JOB_POSTCOPY_PAUSED) {
		progress_end();
		if (migctl_opts.json)
			json_print(&js->base);
		cli_errx("%s: %s", show_text_safe(js->vm), state_text(show_state_name(js->state),
			 show_text_safe(js->error), text, sizeof(text)));
		exit(CLI_FAILED);
	}
	if (!show_state_final(js->state) && !migctl_opts.json)
		progress_show(js);
}

static void handle_event(void *ctx, const char *name, const uint8_t *data,
			 size_t len)
{
	Tern__Migd__JobStatus *js;

	speaks_again();
	waiting.heard = true;
	if (strcmp(name, "status"))
		return;
	js = (Tern__Migd__JobStatus *)pbuf_unpack(&tern__migd__job_status__descriptor,
						    len, data);
	if (!js)
		return;
	take_status(js);
	tern__migd__job_status__free_unpacked(js, NULL);
}

void handle_interrupt(int sig)
{
	static const char msg[] = "\nmigctl: interrupted; the job goes on "
				  "(see 'migctl cancel')\n";

	if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0)
		_exit(130);
	_exit(130);
}

/* ---- the connection ---------------------------------------------------- */

struct rpc_client *ctl_connect(void)
{
	struct rpc_client *cl = NULL;
	char path[PATH_MAX + 16];
	struct ucred cred;
	struct stat st;
	int r;

	snprintf(path, sizeof(path), "%s/migd.sock", migctl_opts.rundir);
	if (stat(path, &st) < 0 && errno == ENOENT) {
		cli_errx("migd is not running (no socket %s)", path);
		return NULL;
	}
	r = rpc_client_connect_path(path, migctl_opts.timeout_ms, &cl);
	if (r == -ECONNREFUSED) {
		cli_errx("migd is not running (nobody listens on %s)", path);
		return NULL;
	}
	if (r < 0) {
		cli_errx("cannot connect to migd at %s: %s%s", path, strerror(-r),
			 cli_refused_hint(r, false));
		return NULL;
	}
	/* What migctl sends may carry a job's token: only to a migd of
	 * root's or of this user's (a socket put there by whoever else can
	 * write the run directory is refused, as migd refuses its peers). */
	if (rpc_client_peer_cred(cl, &cred) == 0 && cred.uid != 0 &&
	    cred.uid != geteuid()) {
		cli_errx("%s is served by pid %d of uid %u, neither root nor "
			 "this user: refused, as a call may carry a job's token "
			 "(whoever can write %s may have put that socket there)",
			 path, (int)cred.pid, (unsigned int)cred.uid,
			 migctl_opts.rundir);
		rpc_client_free(cl);
		return NULL;
	}
	rpc_client_set_max_frame(cl, CTL_MAX_FRAME);
	return cl;
}

/*
 * A call that waited lost its connection: who answers on migd's socket
 * now says why.  The same migd dropped this caller, which read nothing
 * of what it was sent for a minute (a suspended migctl: tern-rpc(7),
 * CONNECTIONS), and runs on; another means migd restarted, and a job
 * past its postcopy switch goes on with it (adopted); none, migd
 * stopped or died, and nobody is left to say how the job ended.
 */
static void say_connection_lost(const struct rpc_client *lost,
				const char *method)
{
	Tern__Migd__Empty empty = TERN__MIGD__EMPTY__INIT;
	int was = rpc_client_peer_pid(lost), now = -ENOENT;
	char path[PATH_MAX + 16];
	struct rpc_client *cl;
	struct rpc_result res;
	unsigned int ms = MIN(migctl_opts.timeout_ms ? migctl_opts.timeout_ms : 5000, 5000);

	/* Who answers there now: an answer, not a connect, which the socket
	 * of a migd killed a moment ago still takes until its files close. */
	snprintf(path, sizeof(path), "%s/migd.sock", migctl_opts.rundir);
	if (rpc_client_connect_path(path, ms, &cl) == 0) {
		if (rpc_client_call(cl, &tern__migd__migd__descriptor, "GetParams",
				    &empty.base, NULL, 0, NULL, &res, ms, NULL,
				    NULL) == 0)
			now = rpc_client_peer_pid(cl);
		rpc_result_close_fds(&res);
		rpc_client_free(cl);
	}
	if (was > 0 && now == was)
		cli_errx("%s: migd (pid %d) dropped this connection while this "
			 "waited, and runs on: it drops a caller that reads "
			 "nothing of what it is sent for a minute (was this "
			 "command suspended?); the job goes on: 'migctl status' "
			 "shows it", method, now);
	else if (was > 0 && now > 0)
		cli_errx("%s: migd restarted while this waited (pid %d, now %d): "
			 "a job past its postcopy switch goes on, adopted by the "
			 "new migd ('migctl status' shows it); one before its "
			 "switch was cancelled", method, was, now);
	else
		cli_errx("%s: migd closed the connection while this waited (it "
			 "stopped or died): the job's end is not known here; "
			 "'vmmctl status' of the VM says where its guest is; a "
			 "job past its postcopy switch goes on, and the next "
			 "migd adopts it", method);
}

/* Who keeps a waiting call silent, as far as /proc tells. */
static const char *silent_who(char *buf, size_t len)
{
	if (!proc_stopped_say(waiting.migd_pid, "migd", buf, len) &&
	    !proc_stopped_say(waiting.worker_pid, "the job's worker", buf, len))
		snprintf(buf, len, "migd (pid %d) runs, but neither it nor the "
			 "job's worker%s sends the reports it should five "
			 "times a second: stuck, or starved of CPU", waiting.migd_pid,
			 waiting.worker_pid > 0 && !proc_state(waiting.worker_pid) ?
			 " (gone)" : "");
	return buf;
}

/* Told of each stretch of silence: said once, then asked again at the
 * bound (its ms from now), where the wait ends. */
static int waiting_silent(void *ctx, uint64_t silent_ms)
{
	const uint64_t bound = (uint64_t)migctl_opts.timeout_ms;
	const char *method = ctx;
	char who[256];

	progress_end();
	if (silent_ms >= bound) {
		/* Before any report, migd may not have read the request:
		 * it is then carried out whenever migd gets to it. */
		cli_errx("%s: nothing from migd for %llu s while this waited: "
			 "%s; giving up the wait (--timeout %d): %s ('migctl "
			 "status' asks again)", method,
			 (unsigned long long)silent_ms / 1000,
			 silent_who(who, sizeof(who)), (int)(bound / 1000),
			 waiting.heard ? "the job's end is not known here, and "
			 "the job is left as it is" : "migd has not answered "
			 "the request, and may still carry it out once it gets "
			 "to it");
		return -ETIMEDOUT;
	}
	if (!waiting.told)
		fprintf(stderr, "migctl: nothing from migd for %llu s: %s; "
			"waiting up to %d s of silence (--timeout)\n",
			(unsigned long long)silent_ms / 1000,
			silent_who(who, sizeof(who)), (int)(bound / 1000));
	waiting.told = true;
	return (int)(bound - silent_ms);
}

/*
 * A Status wait that migd had no room for (EUSERS: MIGD_MAX_WAITERS
 * callers wait on the job already): the same, by asking five times a
 * second; each answer but the last goes where a report would
 * (take_status).  0 with the final JobStatus in *ret, or -errno with res
 * as the failed call's.
 */
static int poll_status(struct rpc_client *cl, const ProtobufCMessage *arg,
		       ProtobufCMessage **ret, struct rpc_result *res)
{
	const struct timespec pause = { 0, 200 * 1000 * 1000 };
	Tern__Migd__JobQuery q = *(const Tern__Migd__JobQuery *)arg;
	Tern__Migd__JobStatus *js;
	int r;

	fprintf(stderr, "migctl: %s: %s; asking five times a second instead\n",
		label_of("Status"), show_text_safe(res->message));
	q.wait = false;
	for (;;) {
		js = NULL;
		r = rpc_client_call(cl, &tern__migd__migd__descriptor, "Status",
				    &q.base, NULL, 0, (ProtobufCMessage **)&js, res,
				    migctl_opts.timeout_ms, NULL, NULL);
		rpc_result_close_fds(res);
		if (r < 0)
			return r;
		if (show_state_final(js->state)) {
			*ret = &js->base;
			return 0;
		}
		take_status(js);
		protobuf_c_message_free_unpacked(&js->base, NULL);
		nanosleep(&pause, NULL);
	}
}

/* One call; prints the error (migd's text) and returns -errno.  A call
 * that waits for a job's end has no deadline, only a bound on migd's
 * silence (waiting_silent), and a dead migd closes the connection. */
/* How long a call that waits (--wait, --watch) waits through migd's
 * EAGAIN: a job that an earlier migd left is not back yet (migd(8) gives
 * its worker 6 s). */
#define CALL_AGAIN_MS 15000

static int call(struct rpc_client *cl, const char *method,
		const ProtobufCMessage *arg, ProtobufCMessage **ret, bool wait)
{
	Tern__Migd__Empty empty = TERN__MIGD__EMPTY__INIT;
	const struct timespec pause = { 0, 250 * 1000 * 1000 };
	uint64_t until = now_ns() + CALL_AGAIN_MS * 1000000ULL;
	struct rpc_result res;
	bool told = false;
	int r;

	if (wait) {
		waiting.migd_pid = rpc_client_peer_pid(cl);
		waiting.heard = false;
		waiting.state = 0;
		rpc_client_set_idle(cl, MIN(SILENT_TELL_MS, migctl_opts.timeout_ms),
				    waiting_silent, (void *)label_of(method));
	}
	for (;;) {
		r = rpc_client_call(cl, &tern__migd__migd__descriptor, method,
				    arg ? arg : &empty.base, NULL, 0, ret, &res,
				    wait ? 0 : migctl_opts.timeout_ms,
				    wait ? handle_event : NULL, NULL);
		rpc_result_close_fds(&res);
		if (r == -ETIMEDOUT && wait && !res.remote)
			return r;       /* said by waiting_silent */
		if (r != -EPIPE)
			speaks_again();
		if (!wait || r != -EAGAIN || !res.remote || now_ns() >= until)
			break;
		if (!told)
			fprintf(stderr, "migctl: asking again for up to %d s: "
				"%s\n", CALL_AGAIN_MS / 1000,
				show_text_safe(res.message));
		told = true;
		nanosleep(&pause, NULL);
	}
	if (r == -EUSERS && wait && res.remote && !strcmp(method, "Status"))
		r = poll_status(cl, arg, ret, &res);
	/* (Postcopy and Recover may be answered late: once the destination
	 * said yes, or bound its new address.) */
	if (r == -EPIPE && (wait || !strcmp(method, "Postcopy") ||
			    !strcmp(method, "Recover"))) {
		progress_end();
		say_connection_lost(cl, label_of(method));
	} else if (r < 0) {
		/* migd's own words name what failed; ours, the call. */
		progress_end();
		cli_errx("%s%s%s%s", res.remote ? "" : label_of(method),
			 res.remote ? "" : ": ", res.message[0] ?
			 show_text_safe(res.message) : strerror(-r),
			 cli_call_hint(r, res.remote, rpc_client_peer_pid(cl),
				       false));
	}
	return r;
}

/* ---- commands ------------------------------------------------------------ */

/*
 * Zero means "not given" in Params: the values to set to 0 (unlimited,
 * measured, none; marked all ones by the parser) go by name, in the
 * same call, as SetParams, Migrate and Tune take them.  Their count.
 */
static size_t take_clears(struct cmd_args *a)
{
	size_t n = 0;

	if (a->params.max_bandwidth == UINT64_MAX) {
		a->params.max_bandwidth = 0;
		a->clear[n++] = "max_bandwidth";
	}
	if (a->params.avail_switchover_bandwidth == UINT64_MAX) {
		a->params.avail_switchover_bandwidth = 0;
		a->clear[n++] = "avail_switchover_bandwidth";
	}
	if (a->params.timeout_s == UINT32_MAX) {
		a->params.timeout_s = 0;
		a->clear[n++] = "timeout_s";
	}
	return n;
}

/* "STATE" or "STATE: ERROR", the state named once (state_text), made
 * safe for a terminal. */
static const char *outcome_text(Tern__Migd__JobStatus *js, char *buf, size_t len)
{
	return state_text(show_state_name(js->state), show_text_safe(js->error), buf, len);
}

/* A finished (or, without wait, current) job: print it; the exit code. */
static int job_outcome(Tern__Migd__JobStatus *js, bool waited,
		       Tern__Migd__JobState want)
{
	char a[32], b[32], text[1024];

	/* A bar on screen ends at 100% with a completed job. */
	if (progress.drawn && js->state == TERN__MIGD__JOB_STATE__JOB_COMPLETED)
		progress_show(js);
	progress_end();
	if (migctl_opts.json)
		json_print(&js->base);
	if (!waited) {
		if (!migctl_opts.json)
			print_status(js);
		return CLI_OK;
	}
	/* Verify after a postcopy switch can only find a difference once
	 * the guest runs on the destination: the job completed, but the
	 * proof failed, and a caller must see that. */
	if (js->state == want && !strncmp(js->verified, "failed", 6)) {
		cli_errx("%s: migration completed, but verify %s", js->vm,
			 show_text_safe(js->verified));
		return CLI_FAILED;
	}
	if (js->state == want) {
		/* The source sent rounds and paused the guest; the destination
		 * received what came over its channels and runs the guest. */
		if (!migctl_opts.json && want == TERN__MIGD__JOB_STATE__JOB_COMPLETED &&
		    js->role == TERN__MIGD__JOB_ROLE__ROLE_DEST)
			printf("%s: completed in %s: %s received over %zu channel%s%s\n",
			       js->vm, fmt_ms(js->total_ms, a, sizeof(a)),
			       fmt_size(js->transferred_bytes, b, sizeof(b)),
			       js->n_channels, js->n_channels == 1 ? "" : "s",
			       !js->switched ? "" : js->guest_paused ?
			       "; the guest was kept paused here, as it was on "
			       "the source" : "; the guest runs here");
		else if (!migctl_opts.json && want == TERN__MIGD__JOB_STATE__JOB_COMPLETED)
			print_completed(js);
		else if (!migctl_opts.json)
			printf("%s: %s\n", js->vm, outcome_text(js, text, sizeof(text)));
		return CLI_OK;
	}
	/* A cancel that came as the job ended: nothing was cancelled. */
	if (want == TERN__MIGD__JOB_STATE__JOB_CANCELLED &&
	    js->state == TERN__MIGD__JOB_STATE__JOB_COMPLETED) {
		cli_errx("%s: not cancelled: the migration completed first "
			 "(job %s)", js->vm, show_text_safe(js->id));
		return CLI_FAILED;
	}
	cli_errx("%s: migration %s", js->vm, outcome_text(js, text, sizeof(text)));
	return CLI_FAILED;
}

/*
 * The address a destination bound (incoming, recover --listen), then,
 * on a terminal, the command for the source host: migrate with the
 * token, or recover.  A wildcard address (tcp:0.0.0.0:P, tcp:[::]:P) is
 * no address a source could dial: the command names a placeholder for
 * this host instead.
 */
static void print_bound(const char *vm, const char *listen, const char *cmd,
			const char *token)
{
	char peer[PATH_MAX + 16], tail[STREAM_TOKEN_HEX + 16] = "";
	struct uri u;

	printf("listen %s\n", listen);
	if (!isatty(STDOUT_FILENO))
		return;
	if (token)
		snprintf(tail, sizeof(tail), " --token %s", token);
	if (uri_parse(listen, &u) == 0 && uri_is_wildcard(&u) &&
	    uri_format_peer(&u, "THIS-HOST", peer, sizeof(peer)) >= 0)
		printf("%s waits on every address of this host; on the source host "
		       "run,\nwith THIS-HOST a name or address of this host that "
		       "the source can reach\n(and the guest's name there, if not "
		       "%s):\n  migctl %s %s %s%s\n", vm, vm, cmd, vm, peer, tail);
	else
		printf("%s waits; on the source host run (with the guest's name "
		       "there, if not %s):\n  migctl %s %s %s%s\n", vm, vm, cmd,
		       vm, listen, tail);
}

int cmd_incoming(struct rpc_client *cl, struct cmd_args *a)
{
	Tern__Migd__IncomingRequest req = TERN__MIGD__INCOMING_REQUEST__INIT;
	Tern__Migd__IncomingReply *rep = NULL;

	req.vm = (char *)a->vm;
	req.listen = (char *)a->listen;
	req.token = (char *)(a->token ? a->token : "");
	if (call(cl, "Incoming", &req.base, (ProtobufCMessage **)&rep, false) < 0)
		return CLI_FAILED;
	if (migctl_opts.json) {
		json_print(&rep->base);
	} else {
		printf("token %s\n", rep->token);
		print_bound(a->vm, rep->listen, "migrate", rep->token);
	}
	protobuf_c_message_free_unpacked(&rep->base, NULL);
	return CLI_OK;
}

int cmd_migrate(struct rpc_client *cl, struct cmd_args *a)
{
	Tern__Migd__MigrateRequest req = TERN__MIGD__MIGRATE_REQUEST__INIT;
	Tern__Migd__JobStatus *js = NULL;
	int code;

	req.vm = (char *)a->vm;
	req.uri = (char *)a->uri;
	req.token = (char *)a->token;
	req.n_clear = take_clears(a);
	req.clear = a->clear;
	req.params = &a->params;
	req.wait = !a->detach;
	if (call(cl, "Migrate", &req.base, (ProtobufCMessage **)&js, req.wait) < 0)
		return CLI_FAILED;
	if (a->detach) {
		if (migctl_opts.json)
			json_print(&js->base);
		else
			printf("%s: migration to %s started (job %s, worker pid %u); "
			       "'migctl status %s --watch' follows it\n", js->vm,
			       show_text_safe(js->peer), show_text_safe(js->id),
			       js->worker_pid, js->vm);
		code = CLI_OK;
	} else {
		code = job_outcome(js, true, TERN__MIGD__JOB_STATE__JOB_COMPLETED);
	}
	protobuf_c_message_free_unpacked(&js->base, NULL);
	return code;
}

/* Status of q's job, with q->wait its end: the exit code. */
static int status_call(struct rpc_client *cl, Tern__Migd__JobQuery *q)
{
	Tern__Migd__JobStatus *js = NULL;
	int code;

	if (call(cl, "Status", &q->base, (ProtobufCMessage **)&js, q->wait) < 0)
		return CLI_FAILED;
	code = job_outcome(js, q->wait, TERN__MIGD__JOB_STATE__JOB_COMPLETED);
	protobuf_c_message_free_unpacked(&js->base, NULL);
	return code;
}

int cmd_status(struct rpc_client *cl, struct cmd_args *a)
{
	Tern__Migd__JobQuery q = TERN__MIGD__JOB_QUERY__INIT;

	q.vm = (char *)a->vm;
	q.id = (char *)(a->id ? a->id : "");
	q.wait = a->watch;
	stop_unrecoverable = a->watch;
	return status_call(cl, &q);
}

/* What was asked of a job whose worker is stopped (SIGSTOP, a debugger)
 * waits for it: migd took it, the worker has not. */
static void note_worker_stopped(const Tern__Migd__JobStatus *js)
{
	char why[160];

	if (show_worker_stopped(js, "its worker", why, sizeof(why)))
		fprintf(stderr, "migctl: %s: %s; the job does nothing until "
			"then\n", js->vm, why);
}

/*
 * A method on one job that answers its JobStatus: with wait, the job's
 * end (success when it reaches want); else a line saying what is being
 * done (doing, or the job's state when NULL), or the JSON.  With bound,
 * the address the job listens on follows the line (print_bound).
 */
static int job_call(struct rpc_client *cl, const char *method,
		    const ProtobufCMessage *arg, bool wait,
		    Tern__Migd__JobState want, const char *doing, bool bound)
{
	Tern__Migd__JobStatus *js = NULL;
	int code = CLI_OK;

	if (call(cl, method, arg, (ProtobufCMessage **)&js, wait) < 0)
		return CLI_FAILED;
	/* (a retry: what it asked for is so; its state says it) */
	if (js->state == want)
		doing = NULL;
	if (wait) {
		code = job_outcome(js, true, want);
	} else if (migctl_opts.json) {
		json_print(&js->base);
	} else {
		printf("%s: %s (job %s)\n", js->vm, doing ? doing : show_state_name(js->state),
		       js->id[0] ? show_text_safe(js->id) : "without an id yet");
		if (bound)
			print_bound(js->vm, js->listen, "recover", NULL);
	}
	if (!wait)
		note_worker_stopped(js);
	protobuf_c_message_free_unpacked(&js->base, NULL);
	return code;
}

int cmd_cancel(struct rpc_client *cl, struct cmd_args *a)
{
	Tern__Migd__JobQuery q = TERN__MIGD__JOB_QUERY__INIT;

	q.vm = (char *)a->vm;
	q.id = (char *)(a->id ? a->id : "");
	q.wait = a->wait;
	q.force = a->force;
	return job_call(cl, "Cancel", &q.base, a->wait,
			TERN__MIGD__JOB_STATE__JOB_CANCELLED, NULL, false);
}

/* In postcopy: active, paused or recovering. */
static bool past_switch(const Tern__Migd__JobStatus *js)
{
	return js->state == TERN__MIGD__JOB_STATE__JOB_POSTCOPY_ACTIVE ||
	       js->state == TERN__MIGD__JOB_STATE__JOB_POSTCOPY_PAUSED ||
	       js->state == TERN__MIGD__JOB_STATE__JOB_POSTCOPY_RECOVER;
}

/* A job past its switch answers Postcopy yes at once, as it did when it
 * switched: a look first tells the line "already" from "switching" (its
 * errors are the Postcopy call's to say). */
static const char *postcopy_doing(struct rpc_client *cl,
				  const Tern__Migd__JobQuery *q, char *buf,
				  size_t len)
{
	Tern__Migd__JobStatus *js = NULL;
	struct rpc_result res;

	snprintf(buf, len, "switching to postcopy");
	/* (a look: a second at most, the call after it has --timeout) */
	if (rpc_client_call(cl, &tern__migd__migd__descriptor, "Status", &q->base,
			    NULL, 0, (ProtobufCMessage **)&js, &res,
			    MIN(migctl_opts.timeout_ms, 1000), NULL, NULL) == 0 && js &&
	    past_switch(js))
		snprintf(buf, len, "already in postcopy");
	rpc_result_close_fds(&res);
	if (js)
		protobuf_c_message_free_unpacked(&js->base, NULL);
	return buf;
}

/*
 * In precopy migd answers once the destination said whether it takes
 * the switch: a plain call, bounded by --timeout.  With wait, then the
 * job's end is waited for as 'status --watch' does (a wait from the start
 * would hear no report while the destination is asked, and take that
 * silence for migd's).
 */
int cmd_postcopy(struct rpc_client *cl, struct cmd_args *a)
{
	Tern__Migd__JobQuery q = TERN__MIGD__JOB_QUERY__INIT;
	Tern__Migd__JobStatus *js = NULL;
	char id[80], doing[80];

	q.vm = (char *)a->vm;
	q.id = (char *)(a->id ? a->id : "");
	if (!a->wait)
		return job_call(cl, "Postcopy", &q.base, false,
				TERN__MIGD__JOB_STATE__JOB_COMPLETED,
				migctl_opts.json ? NULL :
				postcopy_doing(cl, &q, doing, sizeof(doing)), false);
	/* As a wait (silence bounds it, not --timeout): the answer waits
	 * for the destination's, which what a low cap has queued may hold
	 * up for seconds, and migd tells the job meanwhile. */
	if (call(cl, "Postcopy", &q.base, (ProtobufCMessage **)&js, true) < 0)
		return CLI_FAILED;
	snprintf(id, sizeof(id), "%.64s", js->id);
	protobuf_c_message_free_unpacked(&js->base, NULL);
	q.id = id;
	q.wait = true;
	return status_call(cl, &q);
}

/* Recover a postcopy-paused job: the source names the destination's
 * address, the destination may name a new one to listen on, and is told
 * the address bound first, as incoming is (then, with wait, the end). */
int cmd_recover(struct rpc_client *cl, struct cmd_args *a)
{
	Tern__Migd__RecoverRequest q = TERN__MIGD__RECOVER_REQUEST__INIT;
	Tern__Migd__JobQuery sq = TERN__MIGD__JOB_QUERY__INIT;
	int code;

	q.vm = (char *)a->vm;
	q.id = (char *)(a->id ? a->id : "");
	q.uri = (char *)(a->uri ? a->uri : "");
	q.listen = (char *)(a->listen ? a->listen : "");
	q.wait = a->wait;
	stop_unrecoverable = a->wait;
	/* (JSON is one object: with wait, the end's; migd waits.) */
	if (!a->listen || (a->wait && migctl_opts.json))
		return job_call(cl, "Recover", &q.base, a->wait,
				TERN__MIGD__JOB_STATE__JOB_COMPLETED, "recovering",
				false);
	q.wait = false;
	code = job_call(cl, "Recover", &q.base, false,
			TERN__MIGD__JOB_STATE__JOB_COMPLETED, "recovering", true);
	if (code != CLI_OK || !a->wait)
		return code;
	fflush(stdout);
	sq.vm = (char *)a->vm;
	sq.id = q.id;
	sq.wait = true;
	return job_call(cl, "Status", &sq.base, true,
			TERN__MIGD__JOB_STATE__JOB_COMPLETED, NULL, false);
}

int cmd_pause(struct rpc_client *cl, struct cmd_args *a)
{
	Tern__Migd__JobQuery q = TERN__MIGD__JOB_QUERY__INIT;

	q.vm = (char *)a->vm;
	q.id = (char *)(a->id ? a->id : "");
	return job_call(cl, "Pause", &q.base, false,
			TERN__MIGD__JOB_STATE__JOB_POSTCOPY_PAUSED,
			"pausing postcopy", false);
}

/* A running outgoing job's cap and limits; what it has now.  Past the
 * postcopy switch a tune sets the push's cap, nothing else. */
int cmd_tune(struct rpc_client *cl, struct cmd_args *a)
{
	Tern__Migd__TuneRequest req = TERN__MIGD__TUNE_REQUEST__INIT;
	Tern__Migd__JobStatus *js = NULL;
	const Tern__Migd__Params *p;
	char bw[32], sw[32];

	req.vm = (char *)a->vm;
	req.id = (char *)(a->id ? a->id : "");
	req.n_clear = take_clears(a);
	req.clear = a->clear;
	req.params = &a->params;
	if (call(cl, "Tune", &req.base, (ProtobufCMessage **)&js, false) < 0)
		return CLI_FAILED;
	p = js->params;
	if (migctl_opts.json)
		json_print(&js->base);
	else if (p && past_switch(js))
		printf("%s: max-bandwidth %s for the postcopy push from now on "
		       "(job %s)\n", js->vm, p->max_bandwidth ?
		       fmt_rate(p->max_bandwidth, bw, sizeof(bw)) : "unlimited",
		       show_text_safe(js->id));
	else if (p)
		printf("%s: max-bandwidth %s, avail-switchover-bandwidth %s, "
		       "downtime-limit %u ms from now on (job %s)\n", js->vm,
		       p->max_bandwidth ? fmt_rate(p->max_bandwidth, bw, sizeof(bw)) :
		       "unlimited", p->avail_switchover_bandwidth ?
		       fmt_rate(p->avail_switchover_bandwidth, sw, sizeof(sw)) :
		       "measured", p->downtime_limit_ms, show_text_safe(js->id));
	note_worker_stopped(js);
	protobuf_c_message_free_unpacked(&js->base, NULL);
	return CLI_OK;
}

/* List's error of a job an earlier migd left that is not back yet. */
#define NOT_BACK "not back yet: "

int cmd_list(struct rpc_client *cl, struct cmd_args *a)
{
	Tern__Migd__JobList *l = NULL;
	char t[32], s[32], st[48], done[8], why[160];
	int w = 16;
	size_t i;

	if (call(cl, "List", NULL, (ProtobufCMessage **)&l, false) < 0)
		return CLI_FAILED;
	if (migctl_opts.json) {
		json_print(&l->base);
	} else if (l->n_jobs == 0) {
		printf("no migration jobs\n");
	} else {
		/* VM as wide as the longest name (64 at most), the columns
		 * after it in line; STATE holds the longest,
		 * "postcopy-recover" */
		for (i = 0; i < l->n_jobs; i++)
			w = MAX(w, (int)MIN(strlen(l->jobs[i]->vm), 64));
		printf("%-*s %-11s %-16s %4s %11s %-19s %s\n", w, "VM", "ROLE",
		       "STATE", "DONE", "TRANSFERRED", "STARTED", "ID");
		for (i = 0; i < l->n_jobs; i++) {
			Tern__Migd__JobStatus *js = l->jobs[i];

			/* DONE is the round's, in precopy: say which */
			if (job_round(js))
				snprintf(st, sizeof(st), "%s r%llu",
					 show_state_name(js->state),
					 (unsigned long long)job_round(js));
			else if (job_switching(js))
				snprintf(st, sizeof(st), "switching");
			else
				snprintf(st, sizeof(st), "%s", show_state_name(js->state));
			/* A job that failed or was cancelled is not some
			 * way done: '-', not the 99% it had reached. */
			if (js->state == TERN__MIGD__JOB_STATE__JOB_FAILED ||
			    js->state == TERN__MIGD__JOB_STATE__JOB_CANCELLED)
				snprintf(done, sizeof(done), "   -");
			else
				snprintf(done, sizeof(done), "%3.0f%%",
					 job_fraction(js) * 100);
			printf("%-*s %-11s %-16s %4s %11s %-19s %s\n", w, js->vm,
			       show_role_name(js->role), st, done,
			       fmt_size(js->transferred_bytes, t, sizeof(t)),
			       fmt_time(js->started_unix_ms, s, sizeof(s)),
			       js->id[0] ? show_text_safe(js->id) : "-");
			if (js->error[0])
				printf("  %s\n", show_text_safe(js->error));
			if (js->stalled_ms)
				printf("  stalled: nothing sent for %llu s\n",
				       (unsigned long long)(js->stalled_ms / 1000));
			/* (a job not back yet says it in its error, as
			 * tern-rpc(7) List says) */
			if (strncmp(js->error, NOT_BACK, sizeof(NOT_BACK) - 1) &&
			    show_worker_stopped(js, "its worker", why, sizeof(why)))
				printf("  %s\n", why);
		}
	}
	protobuf_c_message_free_unpacked(&l->base, NULL);
	return CLI_OK;
}

int cmd_params(struct rpc_client *cl, struct cmd_args *a, bool set)
{
	Tern__Migd__SetParamsRequest req = TERN__MIGD__SET_PARAMS_REQUEST__INIT;
	Tern__Migd__Params *p = NULL;

	req.n_clear = take_clears(a);
	req.clear = a->clear;
	req.reset = a->reset;
	req.params = &a->params;
	if (call(cl, set ? "SetParams" : "GetParams", set ? &req.base : NULL,
		 (ProtobufCMessage **)&p, false) < 0)
		return CLI_FAILED;
	if (migctl_opts.json)
		json_print(&p->base);
	else
		print_params(p, "");
	protobuf_c_message_free_unpacked(&p->base, NULL);
	return CLI_OK;
}
