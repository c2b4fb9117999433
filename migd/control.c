// SPDX-License-Identifier: GPL-2.0-only
/*
 * The migration daemon's control service, tern.migd.Migd
 * (proto/migd.proto), on RUNDIR/migd.sock: only root and migd's own uid
 * may connect (SO_PEERCRED).  Each handler checks its request in full,
 * then asks jobs.c for a new job or about an existing one.  Methods with
 * wait set are finished when the job ends (deferred calls) and stream
 * "status" events meanwhile to callers that ask.  See tern-rpc(7).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"
#include "common/rpc.h"
#include "common/uri.h"
#include "common/util.h"
#include "migd/migd.h"

#define CONTROL_LISTEN_BACKLOG 64

/*
 * A listen address on a host name: getaddrinfo may wait for seconds on
 * a slow or dead resolver, and this loop serves every caller and job.
 * The name is looked up and the socket bound in a thread; the VM counts
 * as busy meanwhile (check_not_busy), and the reply follows.
 */
struct lookup {
	struct bgwork work;
	struct lookup *next;            /* in m->lookups */
	struct migd *m;
	struct rpc_call *call;
	struct job_spec spec;
	struct uri u;
	char text[sizeof(((struct job_spec *)0)->peer)];
	int fd;                         /* bound, or -errno */
};

static struct migd *control_migd(struct rpc_call *call)
{
	return rpc_call_ctx(call);
}

/* A VM named NAME with a vmm on this host (RUNDIR/vmm/NAME.sock). */
static int check_vm(struct rpc_call *call, struct migd *m, const char *vm)
{
	char path[PATH_MAX + 80];
	struct stat st;
	int r;

	if (name_valid(vm) < 0)
		return rpc_call_errorf(call, EINVAL,
				       "'%.64s' is not a valid VM name (" NAME_RULE
				       ")", vm);
	snprintf(path, sizeof(path), "%s/vmm/%s.sock", m->rundir, vm);
	r = stat(path, &st) < 0 ? -errno : 0;
	if (r == -EACCES)
		return rpc_call_errorf(call, EACCES, "vmm %s: cannot reach %s: %s "
				       RPC_VMM_GROUP_HINT("migd"), vm, path,
				       strerror(EACCES));
	/* As vmm_link_open and vmmctl say it: the path tried, and why. */
	if (r < 0)
		return rpc_call_errorf(call, ENOENT, "no vmm named %s on this host "
				       "(%s: %s)", vm, path, strerror(-r));
	if (!S_ISSOCK(st.st_mode))
		return rpc_call_errorf(call, ENOENT, "no vmm named %s on this host "
				       "(%s: not a socket)", vm, path);
	if (m->quitting)
		return rpc_call_errorf(call, ESHUTDOWN, "migd is shutting down");
	return 0;
}

/* EAGAIN: vm's postcopy job that an earlier migd left (orphan) is not
 * back yet; what the caller asked for waits until it is. */
static int orphan_not_back(struct rpc_call *call, struct migd *m,
			   const char *vm, const struct job *orphan)
{
	char why[256];

	return rpc_call_errorf(call, EAGAIN, "%s: its postcopy job %s, which ran "
			       "when migd %u ended, is not back yet (%s); ask "
			       "again in a few seconds", vm, orphan->last->id,
			       m->orphans_pid,
			       migd_orphan_why(m, orphan, why, sizeof(why)));
}

/* vm has no running job here; for a new job (Incoming, Migrate), no
 * job that an earlier migd left and that may still come back either. */
static int check_not_busy(struct rpc_call *call, struct migd *m, const char *vm,
			  bool new_job)
{
	struct job *j = job_find(m, vm, true);
	struct job *orphan = new_job ? migd_state_orphan(m, vm, NULL) : NULL;
	Tern__Migd__JobStatus js;
	char hint[128];
	const char *ending;
	struct lookup *l;

	if (orphan)
		return orphan_not_back(call, m, vm, orphan);

	for (l = m->lookups; l; l = l->next)
		if (!strcmp(l->spec.vm, vm))
			return rpc_call_errorf(call, EBUSY, "%s already has an "
					       "incoming job being set up (looking "
					       "up %.200s)", vm, l->u.host);
	if (!j)
		return 0;
	job_status(j, &js);
	ending = job_ending(j);
	/* (a cancel's end is moments away: say how to wait for it) */
	if (!ending && j->state == JOB_STATE_CANCELLING) {
		snprintf(hint, sizeof(hint), "'migctl cancel %s --wait' waits "
			 "for its end", vm);
		ending = hint;
	}
	return rpc_call_errorf(call, EBUSY,
			       "%s already has a running migration job (%s%s, %s%s%s)",
			       vm, js.id[0] ? "id " : "no id yet",
			       js.id, job_state_name(j->state),
			       ending ? "; " : "", ending ? ending : "");
}

static int check_uri(struct rpc_call *call, const char *what, const char *s,
		     struct uri *ret)
{
	const char *why;
	char shown[256];

	if (uri_parse_why(s, ret, &why) == 0) {
		if (ret->kind == URI_TCP || ret->kind == URI_UNIX)
			return 0;
		why = "a file is not a migration peer";
	}
	return rpc_call_errorf(call, EINVAL, "%s '%s': %s (expected "
			       URI_FORMS ")", what, str_shown(s, shown,
			       sizeof(shown)), why);
}

/* own: Incoming's, the destination's choice; else the one it printed. */
static int check_token(struct rpc_call *call, const char *s, bool own,
		       uint8_t *ret)
{
	if (stream_unhex(s, ret, STREAM_TOKEN_LEN) < 0)
		return rpc_call_errorf(call, EINVAL, "the token must be %d hex "
				       "digits (%s)", STREAM_TOKEN_HEX, own ?
				       "a token of your own, or none: migd then "
				       "makes one" : "as Incoming printed it");
	return 0;
}

/* The fields named in clear go to 0; nonzero fields of p must be in
 * range, and then replace those of out (params_update). */
static int params_apply(struct rpc_call *call, const Tern__Migd__Params *p,
			char *const *clear, size_t n_clear, struct mig_params *out)
{
	char err[256];
	int r = params_update(p, clear, n_clear, out, err, sizeof(err));

	return r < 0 ? rpc_call_errorf(call, -r, "%s", err) : 0;
}

static int reply_job(struct rpc_call *call, struct job *j)
{
	Tern__Migd__JobStatus js;

	job_status(j, &js);
	return rpc_call_reply(call, &js.base, NULL, 0);
}

/* An adopted job's Adopt reply: we say "taken" of its final report
 * (jobs.c job_take_report), which its worker then waits for. */
static int reply_adopted(struct rpc_call *call, struct job *j)
{
	Tern__Migd__JobStatus js;

	job_status(j, &js);
	js.final_ack = true;
	return rpc_call_reply(call, &js.base, NULL, 0);
}

static int job_spec_init(struct migd *m, struct job_spec *spec,
			 enum job_role role, const char *vm)
{
	memset(spec, 0, sizeof(*spec));
	spec->role = role;
	spec->listen_fd = -1;
	spec->params = m->defaults;
	spec->realtime = m->realtime;
	spec->nice = m->worker_nice;
	if (role == JOB_ROLE_SOURCE)
		spec->pause_fixed_us = job_pause_fixed_us(m);
	str_copy(spec->vm, vm, sizeof(spec->vm));
	return str_copy(spec->rundir, m->rundir, sizeof(spec->rundir));
}

/*
 * The rest of an Incoming, once its socket is bound (fd) or could not be
 * (-errno): text is the address as the caller gave it.
 */
static int incoming_listening(struct rpc_call *call, struct migd *m,
			      struct job_spec *spec, struct uri *u, int fd,
			      const char *text)
{
	char bound[sizeof(spec->peer)];
	struct stat st;
	struct job *j;
	int r;

	if (fd < 0)
		return rpc_call_errorf(call, -fd, "cannot listen on %s: %s", text,
				       uri_strerror(u, fd));
	if (uri_format(u, bound, sizeof(bound)) < 0 ||
	    str_copy(spec->peer, bound, sizeof(spec->peer)) < 0) {
		close(fd);
		return rpc_call_errorf(call, ENAMETOOLONG, "listen address too long");
	}
	if (u->kind == URI_UNIX && stat(u->path, &st) == 0) {
		spec->listen_dev = st.st_dev;
		spec->listen_ino = st.st_ino;
	}
	spec->listen_fd = fd;
	r = job_start(m, spec, &j);     /* closes fd in any case */
	if (r < 0)
		return rpc_call_errorf(call, -r, "cannot start a worker: %s",
				       strerror(-r));
	/* The reply waits for the worker's look at the vmm: the parent
	 * makes no call to a vmm on its loop. */
	return job_defer_start(j, call);
}

static void lookup_run(struct bgwork *w)
{
	struct lookup *l = container_of(w, struct lookup, work);

	l->fd = uri_listen_bound(&l->u, CONTROL_LISTEN_BACKLOG);
}

static void lookup_unlink(struct lookup *l)
{
	struct lookup **pp;

	for (pp = &l->m->lookups; *pp; pp = &(*pp)->next)
		if (*pp == l) {
			*pp = l->next;
			break;
		}
}

static void lookup_finish(struct bgwork *w)
{
	struct lookup *l = container_of(w, struct lookup, work);
	struct migd *m = l->m;
	int r;

	lookup_unlink(l);
	if (m->quitting) {
		if (l->fd >= 0)
			close(l->fd);
		r = rpc_call_errorf(l->call, ESHUTDOWN, "migd is shutting down");
	} else {
		r = incoming_listening(l->call, m, &l->spec, &l->u, l->fd,
				       l->text);
	}
	if (r != RPC_DEFERRED)
		rpc_call_finish(l->call, r);
	free(l);
	migd_check_quit(m);
}

static int lookup_start(struct rpc_call *call, struct migd *m,
			const struct job_spec *spec, const struct uri *u,
			const char *text)
{
	struct lookup *l = calloc(1, sizeof(*l));
	int r;

	if (!l)
		return rpc_call_errorf(call, ENOMEM, "out of memory");
	l->m = m;
	l->call = call;
	l->spec = *spec;
	l->u = *u;
	l->fd = -EIO;
	str_copy(l->text, text, sizeof(l->text));
	r = bgwork_start(&m->lookups_work, &l->work, lookup_run, lookup_finish);
	if (r < 0) {
		free(l);
		return rpc_call_errorf(call, -r, "cannot look up %s: no thread: %s",
				       u->host, strerror(-r));
	}
	l->next = m->lookups;
	m->lookups = l;
	return RPC_DEFERRED;
}

static int method_incoming(struct rpc_call *call, const ProtobufCMessage *arg)
{
	const Tern__Migd__IncomingRequest *req = (const void *)arg;
	struct migd *m = control_migd(call);
	struct job_spec spec;
	struct uri u;
	int r;

	r = check_vm(call, m, req->vm);
	if (r == 0)
		r = check_not_busy(call, m, req->vm, true);
	if (r == 0)
		r = check_uri(call, "listen address", req->listen, &u);
	if (r < 0)
		return r;
	job_spec_init(m, &spec, JOB_ROLE_DEST, req->vm);
	if (req->token[0]) {
		r = check_token(call, req->token, true, spec.token);
		if (r < 0)
			return r;
		if (strspn(req->token, "0") == strlen(req->token))
			return rpc_call_errorf(call, EINVAL, "a token of all "
					       "zeros is no secret: give another, "
					       "or none (migd then makes a "
					       "random one)");
		spec.token_given = true;
	} else if ((r = stream_token_new(spec.token)) < 0) {
		return rpc_call_errorf(call, -r, "cannot make a token: %s",
				       strerror(-r));
	}
	/* (A tombstone's address is matched by port or path: a name
	 * need not be looked up first.) */
	tombstone_release(m, &u);
	if (uri_needs_lookup(&u))
		return lookup_start(call, m, &spec, &u, req->listen);
	return incoming_listening(call, m, &spec, &u,
				  uri_listen_bound(&u, CONTROL_LISTEN_BACKLOG),
				  req->listen);
}

static int method_migrate(struct rpc_call *call, const ProtobufCMessage *arg)
{
	const Tern__Migd__MigrateRequest *req = (const void *)arg;
	struct migd *m = control_migd(call);
	struct job_spec spec;
	struct job *j;
	struct uri u;
	int r;

	r = check_vm(call, m, req->vm);
	if (r == 0)
		r = check_not_busy(call, m, req->vm, true);
	if (r == 0)
		r = check_uri(call, "destination", req->uri, &u);
	if (r < 0)
		return r;
	job_spec_init(m, &spec, JOB_ROLE_SOURCE, req->vm);
	r = check_token(call, req->token, false, spec.token);
	if (r == 0)
		r = params_apply(call, req->params, req->clear, req->n_clear,
				 &spec.params);
	if (r < 0)
		return r;
	if (uri_format(&u, spec.peer, sizeof(spec.peer)) < 0)
		return rpc_call_errorf(call, ENAMETOOLONG, "destination too long");
	r = stream_token_new(spec.id);
	if (r < 0)
		return rpc_call_errorf(call, -r, "cannot make a migration id: %s",
				       strerror(-r));
	r = job_start(m, &spec, &j);
	if (r < 0)
		return rpc_call_errorf(call, -r, "cannot start a worker: %s",
				       strerror(-r));
	log_info("%s: migrating to %s, %u channel%s", req->vm, spec.peer,
		 spec.params.channels, spec.params.channels == 1 ? "" : "s");
	if (req->wait)
		return job_add_waiter(j, call);
	/* Detached: the reply says "started" only of a job whose worker
	 * found its vmm fit to migrate (job_defer_start). */
	return job_defer_start(j, call);
}

/* The end of a method that acted on a running job: why it could not,
 * or the job now (or at its end, with wait). */
static int job_acted(struct rpc_call *call, struct job *j, int r, bool wait)
{
	if (r < 0)
		return rpc_call_errorf(call, -r, "cannot reach worker %d: %s",
				       (int)j->pid, strerror(-r));
	if (wait)
		return job_add_waiter(j, call);
	return reply_job(call, j);
}

/* The VM's job (with id: that migration's) for Status, Cancel,
 * Postcopy, Pause, Recover and Tune, or an error that says why not. */
static int query_job(struct rpc_call *call, struct migd *m, const char *vm,
		     const char *id, struct job **ret)
{
	uint8_t bin[STREAM_ID_LEN];
	char late[160] = "";
	struct job *orphan;

	if (name_valid(vm) < 0)
		return rpc_call_errorf(call, EINVAL, "'%.64s' is not a valid VM name",
				       vm);
	if (id && id[0] && job_id_parse(id, bin) < 0)
		return rpc_call_errorf(call, EINVAL, "job id '%.40s': %d hex "
				       "digits expected, not all zero", id,
				       2 * STREAM_ID_LEN);
	*ret = id && id[0] ? job_find_id(m, vm, id) : job_find(m, vm, false);
	orphan = migd_state_orphan(m, vm, id);
	/* Not the VM's job before it, nor none: the one coming back. */
	if (orphan && (!*ret || (*ret)->finished))
		return orphan_not_back(call, m, vm, orphan);
	if (*ret)
		return 0;
	if (migd_just_started(m))
		snprintf(late, sizeof(late), " (migd started %llu ms ago: a job "
			 "past its postcopy switch that an earlier migd left "
			 "may not be back yet; ask again in a few seconds)",
			 (unsigned long long)((now_ns() - m->started_ns) / 1000000));
	if (id && id[0])
		return rpc_call_errorf(call, ENOENT, "no job %s of %s here (its "
				       "running job, or one of the last %d it "
				       "finished)%s", id, vm, MIGD_HISTORY_PER_VM,
				       late);
	return rpc_call_errorf(call, ENOENT, "no migration job for %s%s", vm,
			       late);
}

static int method_status(struct rpc_call *call, const ProtobufCMessage *arg)
{
	const Tern__Migd__JobQuery *q = (const void *)arg;
	struct job *j;
	int r = query_job(call, control_migd(call), q->vm, q->id, &j);

	if (r < 0)
		return r;
	if (q->wait && !j->finished)
		return job_add_waiter(j, call);
	return reply_job(call, j);
}

static int method_cancel(struct rpc_call *call, const ProtobufCMessage *arg)
{
	const Tern__Migd__JobQuery *q = (const void *)arg;
	const char *ending;
	char which[96];
	struct job *j;
	bool paused;
	int r = query_job(call, control_migd(call), q->vm, q->id, &j);

	if (r < 0)
		return r;
	if (q->id[0])   /* (found by query_job: a job's id) */
		snprintf(which, sizeof(which), "job %.64s", q->id);
	else
		snprintf(which, sizeof(which), "the last migration job");
	/* Asked again (a retry): what was asked for is so; the answer is
	 * the job, as a first cancel's --wait gives it (operator round 21:
	 * an agent's retry failed on its own success). */
	if (j->finished && j->state == JOB_STATE_CANCELLED)
		return reply_job(call, j);
	if (j->finished)
		return rpc_call_errorf(call, EINVAL,
				       "nothing to cancel: %s of %s already "
				       "ended (%s)", which, q->vm,
				       job_state_name(j->state));
	if ((ending = job_ending(j)))
		return rpc_call_errorf(call, EINVAL,
				       "nothing to cancel: %s of %s is ending "
				       "(%s)", which, q->vm, ending);
	/* Past the switch only a paused job, and only when told that the
	 * other side is lost for good: the guest is lost with it. */
	paused = j->state == JOB_STATE_POSTCOPY_PAUSED ||
		 (j->state == JOB_STATE_CANCELLING && j->cancel_requested);
	if (job_in_postcopy(j) && paused && !q->force && j->last &&
	    j->last->unrecoverable)
		return rpc_call_errorf(call, EBUSY,
				       "%s can never recover (its error says why): "
				       "cancel it with --force", q->vm);
	if (job_in_postcopy(j) && paused && !q->force)
		return rpc_call_errorf(call, EBUSY,
				       "%s is postcopy-paused: the guest runs on the "
				       "destination and part of its memory is only on "
				       "the source, so cancelling would lose it; recover "
				       "the job (migctl recover), or, if the other host "
				       "has lost its side for good, cancel with --force",
				       q->vm);
	/* A recovery under way: the worker takes a forced cancel if it
	 * fails, and drops it (logged) if it succeeds. */
	if (j->state == JOB_STATE_POSTCOPY_RECOVER && !q->force)
		return rpc_call_errorf(call, EBUSY,
				       "%s is recovering its postcopy: the guest runs "
				       "on the destination and part of its memory is "
				       "only on the source; if the other host has "
				       "lost its side for good, cancel with --force, "
				       "which is taken if the recovery fails", q->vm);
	/* Told to resume on the destination (Go): the job ends as that
	 * goes, and a cancel would be dropped. */
	if (!job_in_postcopy(j) && j->last && j->last->switched)
		return rpc_call_errorf(call, EBUSY,
				       "%s has switched: the destination was told to "
				       "resume the guest, and the job ends as that "
				       "goes; nothing to cancel", q->vm);
	if (job_in_postcopy(j) && !paused && j->state != JOB_STATE_POSTCOPY_RECOVER)
		return rpc_call_errorf(call, EBUSY,
				       "%s is in postcopy: the guest runs on the "
				       "destination and part of its memory is only on "
				       "the source, so cancelling would lose it; wait "
				       "for the job to complete%s", q->vm, q->force ?
				       " (--force takes only a postcopy-paused job)" : "");
	r = job_wait_room(j, call, q->wait);
	if (r < 0)
		return r;
	r = job_cancel(j, job_in_postcopy(j) ? JOB_CANCEL_ABANDON : JOB_CANCEL_PLAIN);
	return job_acted(call, j, r, q->wait);
}

/* 0 if j is a running source job, or the error, ending with tail. */
static int outgoing_job(struct rpc_call *call, const struct job *j,
			const char *tail)
{
	if (!j->finished && j->spec.role == JOB_ROLE_SOURCE)
		return 0;
	return rpc_call_errorf(call, EINVAL, "%s has no outgoing migration "
			       "running (its last job: %s, %s)%s", j->spec.vm,
			       job_role_name(j->spec.role),
			       job_state_name(j->state), tail);
}

/* Switch a source job from precopy to postcopy now. */
static int method_postcopy(struct rpc_call *call, const ProtobufCMessage *arg)
{
	const Tern__Migd__JobQuery *q = (const void *)arg;
	struct job *j;
	int r = query_job(call, control_migd(call), q->vm, q->id, &j);

	if (r < 0)
		return r;
	r = outgoing_job(call, j, "");
	if (r < 0)
		return r;
	/* Switching already (the destination said yes: a switch asked
	 * before, or an automatic or timeout one, maybe in its pause): the
	 * answer is that yes. */
	if (!job_in_postcopy(j) && j->last && j->last->postcopy_started &&
	    !j->ndeferred)
		return job_acted(call, j, 0, q->wait);
	if (j->state != JOB_STATE_SETUP && j->state != JOB_STATE_ACTIVE &&
	    !job_in_postcopy(j))
		return rpc_call_errorf(call, EINVAL, "%s is %s: only a migration in "
				       "precopy can switch to postcopy", q->vm,
				       job_state_name(j->state));
	if (j->last && j->last->no_postcopy && j->last->no_postcopy[0])
		return rpc_call_errorf(call, EOPNOTSUPP, "%s: postcopy cannot be: "
				       "%s; the migration goes on in precopy",
				       q->vm, j->last->no_postcopy);
	/* In precopy the worker answers once the destination said whether
	 * it can take the switch now (a refusal leaves the job in precopy);
	 * asked again in postcopy, at once.  A request while one waits for
	 * that answer hears it too; one whose caller left (its --timeout)
	 * gives way. */
	r = job_wait_room(j, call, q->wait);
	if (r < 0)
		return r;
	job_deferred_tidy(j);
	if (!job_in_postcopy(j) && j->ndeferred)
		return job_defer_answer(j, call, q->wait);
	r = job_command(j, "postcopy", NULL);
	if (r == 0)
		log_info("%s: switching to postcopy (worker %d)", q->vm, (int)j->pid);
	if (r == 0 && !job_in_postcopy(j))
		return job_defer_answer(j, call, q->wait);
	return job_acted(call, j, r, q->wait);
}

/* A postcopy job back from postcopy-paused (each side is told apart). */
static int method_recover(struct rpc_call *call, const ProtobufCMessage *arg)
{
	const Tern__Migd__RecoverRequest *q = (const void *)arg;
	struct uri u;
	struct job *j;
	int r = query_job(call, control_migd(call), q->vm, q->id, &j);

	if (r < 0)
		return r;
	if (j->finished || j->state != JOB_STATE_POSTCOPY_PAUSED)
		return rpc_call_errorf(call, EINVAL, "%s is %s: only a job in "
				       "postcopy-paused can recover", q->vm,
				       job_state_name(j->state));
	/* A try would only hide why behind its own failure. */
	if (j->last && j->last->unrecoverable)
		return rpc_call_errorf(call, EINVAL, "%s cannot recover: %.400s",
				       q->vm, j->last->error);
	/* An address for the other side is a mistake, not a default. */
	if (j->spec.role == JOB_ROLE_SOURCE && q->listen[0])
		return rpc_call_errorf(call, EINVAL, "%s is a source job: it takes "
				       "the destination's address, not a listen "
				       "address", q->vm);
	if (j->spec.role != JOB_ROLE_SOURCE && q->uri[0])
		return rpc_call_errorf(call, EINVAL, "%s is a destination job: it "
				       "takes a listen address (--listen), not the "
				       "source's", q->vm);
	if (j->spec.role == JOB_ROLE_SOURCE)
		r = check_uri(call, "destination", q->uri, &u);
	else if (q->listen[0])
		r = check_uri(call, "listen address", q->listen, &u);
	if (r < 0)
		return r;
	if (j->ndeferred)
		return rpc_call_errorf(call, EBUSY, "%s: another recover --listen is "
				       "being set up", q->vm);
	r = job_wait_room(j, call, q->wait);
	if (r < 0)
		return r;
	if (j->spec.role != JOB_ROLE_SOURCE && q->listen[0])
		tombstone_release(control_migd(call), &u);
	r = job_command(j, "recover", &q->base);
	if (r == 0)
		log_info("%s: recovering%s%s", q->vm, q->uri[0] || q->listen[0] ? " via " : "",
		 j->spec.role == JOB_ROLE_SOURCE ? q->uri : q->listen);
	/* A new address is bound by the worker: the reply says which (port
	 * 0 is a free port), or why none. */
	if (r == 0 && j->spec.role != JOB_ROLE_SOURCE && q->listen[0])
		return job_defer_answer(j, call, q->wait);
	return job_acted(call, j, r, q->wait);
}

static int method_pause(struct rpc_call *call, const ProtobufCMessage *arg)
{
	const Tern__Migd__JobQuery *q = (const void *)arg;
	struct job *j;
	int r = query_job(call, control_migd(call), q->vm, q->id, &j);

	if (r < 0)
		return r;
	/* Paused already (a retry, or a fault first): so be it. */
	if (!j->finished && j->state == JOB_STATE_POSTCOPY_PAUSED)
		return job_acted(call, j, 0, q->wait);
	if (j->finished || j->state != JOB_STATE_POSTCOPY_ACTIVE)
		return rpc_call_errorf(call, EINVAL, "%s is %s: only a job in "
				       "postcopy-active can be paused", q->vm,
				       job_state_name(j->state));
	r = job_command(j, "pause", NULL);
	return job_acted(call, j, r, q->wait);
}

/* A source job's cap and limits, changed while it is in precopy; past
 * its postcopy switch, the push's cap. */
static int method_tune(struct rpc_call *call, const ProtobufCMessage *arg)
{
	const Tern__Migd__TuneRequest *req = (const void *)arg;
	Tern__Migd__Params msg;
	struct mig_params p;
	char err[256];
	struct job *j;
	bool pc;
	int r = query_job(call, control_migd(call), req->vm, req->id, &j);

	if (r < 0)
		return r;
	r = outgoing_job(call, j, ": only the source host's running job can be "
			 "tuned");
	if (r < 0)
		return r;
	pc = j->state == JOB_STATE_POSTCOPY_ACTIVE ||
	     j->state == JOB_STATE_POSTCOPY_PAUSED ||
	     j->state == JOB_STATE_POSTCOPY_RECOVER;
	if (!pc && j->last && j->last->postcopy_started)
		return rpc_call_errorf(call, EBUSY, "%s is switching to postcopy: "
				       "tune it once it is past the switch "
				       "(postcopy-active), where the push's cap "
				       "can change", req->vm);
	if (!pc && j->state != JOB_STATE_SETUP && j->state != JOB_STATE_ACTIVE)
		return rpc_call_errorf(call, EINVAL, "%s is %s: only a migration "
				       "in precopy (setup or active) or past its "
				       "postcopy switch can be tuned", req->vm,
				       job_state_name(j->state));
	r = params_check_live(req->params, req->clear, req->n_clear, pc, err,
			      sizeof(err));
	if (r < 0)
		return rpc_call_errorf(call, -r, "%s", err);
	p = j->spec.params;
	r = params_apply(call, req->params, req->clear, req->n_clear, &p);
	if (r < 0)
		return r;
	params_to_proto(&p, &msg);
	r = job_command(j, "tune", &msg.base);
	if (r == 0) {
		j->spec.params = p;
		params_log_tuned(req->vm, p.max_bandwidth,
				 p.avail_switchover_bandwidth, p.downtime_limit_ms);
	}
	return job_acted(call, j, r, false);
}

static int method_list(struct rpc_call *call, const ProtobufCMessage *arg)
{
	Tern__Migd__JobList list = TERN__MIGD__JOB_LIST__INIT;
	struct migd *m = control_migd(call);
	Tern__Migd__JobStatus *all, **ptrs;
	char (*why)[256];
	struct job *j;
	size_t n = 0, norphans = 0, k;
	int r;

	for (j = m->running; j; j = j->next)
		n++;
	for (j = m->orphans; j; j = j->next)
		norphans++;
	n += norphans + m->nhistory;
	all = calloc(n ? n : 1, sizeof(*all));
	ptrs = calloc(n ? n : 1, sizeof(*ptrs));
	why = calloc(norphans ? norphans : 1, sizeof(*why));
	if (!all || !ptrs || !why) {
		free(all);
		free(ptrs);
		free(why);
		return -ENOMEM;
	}
	n = 0;
	for (j = m->running; j; j = j->next, n++)
		job_status(j, &all[n]);
	/* Running as far as this migd knows, and said to be not back yet
	 * (as status says): not left out until they are. */
	for (j = m->orphans, k = 0; j; j = j->next, n++, k++) {
		char text[sizeof(why[k])];

		job_status(j, &all[n]);
		snprintf(why[k], sizeof(why[k]), "not back yet: %s",
			 migd_orphan_why(m, j, text, sizeof(text)));
		all[n].error = why[k];
	}
	for (j = m->history; j; j = j->next, n++)
		job_status(j, &all[n]);
	for (r = 0; (size_t)r < n; r++)
		ptrs[r] = &all[r];
	list.n_jobs = n;
	list.jobs = ptrs;
	r = rpc_call_reply(call, &list.base, NULL, 0);
	free(all);
	free(ptrs);
	free(why);
	return r;
}

static int reply_params(struct rpc_call *call, const struct mig_params *p)
{
	Tern__Migd__Params out;

	params_to_proto(p, &out);
	return rpc_call_reply(call, &out.base, NULL, 0);
}

static int method_set_params(struct rpc_call *call, const ProtobufCMessage *arg)
{
	const Tern__Migd__SetParamsRequest *req = (const void *)arg;
	struct migd *m = control_migd(call);
	struct mig_params p = m->defaults;
	int r;

	if (req->reset)
		params_defaults(&p);
	r = params_apply(call, req->params, req->clear, req->n_clear, &p);
	if (r < 0)
		return r;
	m->defaults = p;
	migd_state_save(m);
	/* Back to a fresh migd's state: what earlier jobs taught about the
	 * pause goes too, should it have come from a bad patch. */
	if (req->reset) {
		m->pause_fixed_forget_ns = now_ns();
		log_info("reset: the part of the pause not for pages learned "
			 "from earlier jobs is forgotten");
	}
	log_info("defaults: %u channels, max bandwidth %llu B/s, switchover "
		 "bandwidth %llu B/s, downtime limit %u ms", p.channels,
		 (unsigned long long)p.max_bandwidth,
		 (unsigned long long)p.avail_switchover_bandwidth,
		 p.downtime_limit_ms);
	return reply_params(call, &p);
}

static int method_get_params(struct rpc_call *call, const ProtobufCMessage *arg)
{
	return reply_params(call, &control_migd(call)->defaults);
}

/* ---- Adopt: a worker an earlier migd left -------------------------- */

/* The job's status as the worker says it: its own, of a job past its
 * postcopy switch (ended: one that ended there). */
static int adopt_check_status(struct rpc_call *call,
			      const Tern__Migd__AdoptRequest *req, bool ended)
{
	const Tern__Migd__JobStatus *js = req->status;

	if (!js)
		return rpc_call_errorf(call, EINVAL, "Adopt: no status");
	if (strcmp(js->vm, req->vm) || js->role != req->role ||
	    strcmp(js->id, req->id))
		return rpc_call_errorf(call, EINVAL, "Adopt: the status is of "
				       "another job (vm, role or id differ)");
	if (!ended && js->state != TERN__MIGD__JOB_STATE__JOB_POSTCOPY_ACTIVE &&
	    js->state != TERN__MIGD__JOB_STATE__JOB_POSTCOPY_PAUSED &&
	    js->state != TERN__MIGD__JOB_STATE__JOB_POSTCOPY_RECOVER)
		return rpc_call_errorf(call, EINVAL, "Adopt: only a job past its "
				       "postcopy switch is adopted (postcopy-"
				       "active, -paused or -recover), not one in "
				       "state %d", (int)js->state);
	if (js->n_channels > STREAM_MAX_CHANNELS)
		return rpc_call_errorf(call, EINVAL, "Adopt: %zu channels in the "
				       "status, at most %d", js->n_channels,
				       STREAM_MAX_CHANNELS);
	return 0;
}

/* The request in full, into spec (as Incoming and Migrate check theirs);
 * a running job's VM and id must be free here. */
static int adopt_check(struct rpc_call *call, struct migd *m,
		       const Tern__Migd__AdoptRequest *req, bool ended,
		       struct job_spec *spec)
{
	enum job_role role;
	struct job *j;
	struct uri u;
	char err[256];
	int r;

	if (req->role != TERN__MIGD__JOB_ROLE__ROLE_SOURCE &&
	    req->role != TERN__MIGD__JOB_ROLE__ROLE_DEST)
		return rpc_call_errorf(call, EINVAL, "Adopt: the role must be "
				       "source or destination");
	role = req->role == TERN__MIGD__JOB_ROLE__ROLE_SOURCE ? JOB_ROLE_SOURCE :
								JOB_ROLE_DEST;
	if (name_valid(req->vm) < 0)
		return rpc_call_errorf(call, EINVAL, "Adopt: '%.64s' is not a "
				       "valid VM name (" NAME_RULE ")", req->vm);
	job_spec_init(m, spec, role, req->vm);
	if (job_id_parse(req->id, spec->id) < 0)
		return rpc_call_errorf(call, EINVAL, "Adopt: the id must be %d hex "
				       "digits, not all zero", 2 * STREAM_ID_LEN);
	r = check_token(call, req->token, false, spec->token);
	if (r == 0)
		r = check_uri(call, role == JOB_ROLE_SOURCE ? "Adopt: destination" :
			      "Adopt: listen address", req->peer, &u);
	if (r < 0)
		return r;
	if (uri_format(&u, spec->peer, sizeof(spec->peer)) < 0)
		return rpc_call_errorf(call, ENAMETOOLONG, "Adopt: peer too long");
	if (!req->params)
		return rpc_call_errorf(call, EINVAL, "Adopt: no params");
	r = params_whole(req->params, &spec->params, err, sizeof(err));
	if (r < 0)
		return rpc_call_errorf(call, -r, "Adopt: %s", err);
	spec->listen_dev = (dev_t)req->listen_dev;
	spec->listen_ino = (ino_t)req->listen_ino;
	r = adopt_check_status(call, req, ended);
	if (r == 0 && !ended)
		r = check_not_busy(call, m, req->vm, false);
	if (r < 0 || ended)
		return r;
	j = job_find_migration(m->running, spec);
	if (j)
		return rpc_call_errorf(call, EBUSY, "Adopt: job %s already "
				       "runs here (vm %s)", req->id, j->spec.vm);
	return 0;
}

/* A unix stream socket, as a status link is. */
static int adopt_check_link(int fd)
{
	int v;
	socklen_t len = sizeof(v);

	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &v, &len) < 0 || v != AF_UNIX)
		return -EINVAL;
	len = sizeof(v);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &len) < 0 || v != SOCK_STREAM)
		return -EINVAL;
	return 0;
}

/* A postcopy job that ended while no migd ran: its end, into the
 * history (jobadopt.c). */
static int adopt_ended(struct rpc_call *call, struct migd *m,
		       const Tern__Migd__AdoptRequest *req, pid_t pid)
{
	struct job_spec spec;
	struct job *j;
	int r = adopt_check(call, m, req, true, &spec);

	if (r < 0)
		return r;
	/* Before the switch, only an end this migd guessed at (its migd
	 * ended while it ran) or took already (a reply lost). */
	if ((!req->status->switched || !req->status->postcopy_started) &&
	    !job_end_awaited(m, &spec))
		return rpc_call_errorf(call, EINVAL, "Adopt: a job that ended "
				       "before its postcopy switch is taken "
				       "ended only if its migd ended while it "
				       "ran, which job %s's did not", req->id);
	r = job_adopt_ended(m, &spec, pid, req->status, req->started_unix_ms, &j);
	if (r == -EBUSY)
		return rpc_call_errorf(call, EBUSY, "Adopt: job %s runs here, "
				       "another worker's", req->id);
	if (r < 0)
		return rpc_call_errorf(call, -r, "Adopt: %s", strerror(-r));
	return reply_job(call, j);
}

/*
 * A worker past its postcopy switch, whose migd ended, gives us its job
 * (adopt.c), or, ended meanwhile, its end.  Only a local caller of
 * root's or our uid gets here (rpc_accept_root_or_self); the worker is
 * the caller itself: its pid is the connection's (SO_PEERCRED), never
 * the message's word.
 */
static int method_adopt(struct rpc_call *call, const ProtobufCMessage *arg)
{
	const Tern__Migd__AdoptRequest *req = (const void *)arg;
	struct migd *m = control_migd(call);
	struct job_spec spec;
	struct ucred cred;
	struct job *j;
	size_t nfds = rpc_call_nfds(call);
	bool ended = req->status &&
		     job_state_final((enum job_state)req->status->state);
	int r, fd;

	if (m->quitting)
		return rpc_call_errorf(call, ESHUTDOWN, "migd is shutting down: "
				       "the next migd takes the job");
	if (ended && nfds)
		return rpc_call_errorf(call, EINVAL, "Adopt of an ended job takes "
				       "no descriptor (nothing can reach the "
				       "job), not %zu", nfds);
	if (!ended && nfds != 1)
		return rpc_call_errorf(call, EINVAL, "Adopt takes one descriptor "
				       "(the job's new status link), not %zu", nfds);
	if (rpc_call_peercred(call, &cred) < 0 || cred.pid <= 0)
		return rpc_call_errorf(call, EPERM, "Adopt: only a worker on this "
				       "host may call it (no SO_PEERCRED)");
	if (ended)
		return adopt_ended(call, m, req, cred.pid);
	fd = rpc_call_take_fd(call, 0);
	if (fd < 0 || adopt_check_link(fd) < 0) {
		if (fd >= 0)
			close(fd);
		return rpc_call_errorf(call, EINVAL, "Adopt: the descriptor is "
				       "not a unix stream socket");
	}
	/* Our worker already, whose link is gone: its call timed out
	 * after we took it, and it dropped that link.  This one is new. */
	j = job_find(m, req->vm, true);
	if (j && j->adopted && j->pid == cred.pid && !j->conn) {
		r = job_watch_link(m, j, fd);
		if (r < 0)
			return rpc_call_errorf(call, -r, "Adopt: %s", strerror(-r));
		log_info("%s: worker %d gave a new status link", req->vm,
			 (int)cred.pid);
		return reply_adopted(call, j);
	}
	r = adopt_check(call, m, req, false, &spec);
	for (j = m->running; r == 0 && j; j = j->next)
		if (j->pid == cred.pid)
			r = rpc_call_errorf(call, EBUSY, "Adopt: process %d "
					    "already runs the job of %s",
					    (int)cred.pid, j->spec.vm);
	if (r < 0) {
		close(fd);
		return r;
	}
	r = job_adopt(m, &spec, cred.pid, fd, req->status, req->started_unix_ms,
		      &j);    /* takes fd */
	if (r < 0)
		return rpc_call_errorf(call, -r, "Adopt: cannot watch process %d: "
				       "%s", (int)cred.pid, strerror(-r));
	return reply_adopted(call, j);
}

/* Handlers by method name, matched to the descriptor's order at start. */
static const struct rpc_method_binding control_methods[] = {
	{ "Incoming", method_incoming },
	{ "Migrate", method_migrate },
	{ "Status", method_status },
	{ "Cancel", method_cancel },
	{ "Postcopy", method_postcopy },
	{ "Recover", method_recover },
	{ "Pause", method_pause },
	{ "Tune", method_tune },
	{ "List", method_list },
	{ "SetParams", method_set_params },
	{ "GetParams", method_get_params },
	{ "Adopt", method_adopt },
};

int control_start(struct migd *m)
{
	const ProtobufCServiceDescriptor *d = &tern__migd__migd__descriptor;
	struct uri u = { .kind = URI_UNIX };
	char path[PATH_MAX + 16];
	const char *missing = NULL;
	mode_t mask;
	int fd, ret;

	/* Bound as migd.sock.new, and renamed into place once it listens:
	 * a worker that waits for a migd (adopt.c) sees it appear (inotify)
	 * only when a connect can succeed. */
	if ((size_t)snprintf(u.path, sizeof(u.path), "%s/migd.sock.new",
			     m->rundir) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		log_warnx("control socket path %s/migd.sock is too long", m->rundir);
		return -ENAMETOOLONG;
	}
	snprintf(path, sizeof(path), "%s/migd.sock", m->rundir);
	/* We hold migd.lock, so a socket file left here is stale. */
	unlink(path);
	unlink(u.path);
	/* Born 0600: only root and our own uid may connect (SO_PEERCRED too). */
	mask = umask(0177);
	fd = uri_listen(&u, CONTROL_LISTEN_BACKLOG);
	umask(mask);
	if (fd >= 0 && rename(u.path, path) < 0) {
		ret = -errno;
		unlink(u.path);
		close(fd);
		fd = ret;
	}
	if (fd < 0) {
		log_warnc(fd, "control socket %s", path);
		return fd;
	}
	ret = rpc_server_new(m->base, &m->server);
	if (ret == 0)
		ret = rpc_server_listen_fd(m->server, fd);
	else
		close(fd);
	if (ret == 0)
		ret = rpc_server_bind_service(m->server, d, control_methods,
					      ARRAY_SIZE(control_methods), m,
					      &missing);
	if (ret == -ENOENT)
		fatalx("control: no handler for %s", missing);
	if (ret < 0) {
		log_warnc(ret, "control service");
		return ret;
	}
	rpc_server_set_accept(m->server, rpc_accept_root_or_self, m);
	rpc_server_set_overload(m->server, rpc_overload_warn, m);
	rpc_server_set_drop(m->server, rpc_drop_warn, m);
	ret = bgwork_init(&m->lookups_work, m->base);
	if (ret < 0)
		log_warnc(ret, "control: host name look-ups");
	return ret;
}

/* At the end: a look-up that came back has its socket closed; one still
 * at the resolver is left to its thread (bgwork.h). */
static void lookup_drop(struct bgwork *w)
{
	struct lookup *l = container_of(w, struct lookup, work);

	if (l->fd >= 0)
		close(l->fd);
	free(l);
}

void control_stop(struct migd *m)
{
	char path[PATH_MAX + 80];

	struct lookup *l;

	if (!m->server)
		return;
	for (l = m->lookups; l; l = l->next)
		rpc_call_finish(l->call, -ESHUTDOWN);
	m->lookups = NULL;
	bgwork_stop(&m->lookups_work, 0, lookup_drop);
	rpc_server_free(m->server);
	m->server = NULL;
	snprintf(path, sizeof(path), "%s/migd.sock", m->rundir);
	unlink(path);
}
