// SPDX-License-Identifier: GPL-2.0-only
/*
 * A worker whose migd ended (its status link reached EOF: migd stopped,
 * restarted or died) while its job is past a postcopy switch: the job
 * goes on without migd, a paused one waits for its recovery, and about
 * once a second the worker asks the migd on RUNDIR/migd.sock to adopt
 * it (Migd.Adopt, tern-rpc(7)), handing it one end of a fresh
 * socketpair, the job's new status link.  Called by the worker's
 * command thread (worker.c); a job before its switch is cancelled by
 * migd's end as always, and never asks.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/pbuf.h"
#include "common/rpc.h"
#include "common/util.h"
#include "migd/migd.h"

#define ADOPT_RETRY_MS 1000             /* between tries */
#define ADOPT_CALL_MS 5000              /* connect, and the call */

/* What the job is now (w->lock taken): past a postcopy switch, or over. */
static void adopt_look(struct worker *w, bool *ret_wanted, bool *ret_over)
{
	pthread_mutex_lock(&w->lock);
	*ret_wanted = worker_in_postcopy_locked(w);
	*ret_over = job_state_final(w->state);
	pthread_mutex_unlock(&w->lock);
}

/* The server on path is root's or ours: a worker hands its job to no
 * other user's process. */
static int adopt_check_peer(struct rpc_client *cl, char *err, size_t len)
{
	struct ucred cred;
	int r = rpc_client_peer_cred(cl, &cred);

	if (r < 0) {
		snprintf(err, len, "SO_PEERCRED: %s", strerror(-r));
		return r;
	}
	if (cred.uid != 0 && cred.uid != geteuid()) {
		snprintf(err, len, "the server (pid %d) runs as uid %u, neither "
			 "root nor ours", (int)cred.pid, (unsigned int)cred.uid);
		return -EPERM;
	}
	return 0;
}

/* One try: the new status link in *ret_fd, or -errno and why in err. */
static int adopt_try(struct worker *w, int *ret_fd, char *err, size_t len)
{
	const struct job_spec *s = w->spec;
	Tern__Migd__AdoptRequest req = TERN__MIGD__ADOPT_REQUEST__INIT;
	Tern__Migd__Params pp = TERN__MIGD__PARAMS__INIT;
	Tern__Migd__JobStatus *js = NULL;
	struct rpc_client *cl = NULL;
	struct rpc_result res = { 0 };
	char path[PATH_MAX + 16], idhex[2 * STREAM_ID_LEN + 1];
	char token[STREAM_TOKEN_HEX + 1];
	struct mig_params p;
	uint8_t *packed = NULL;
	size_t plen;
	int sv[2] = { -1, -1 }, r;

	r = worker_status_pack(w, &packed, &plen);
	if (r < 0) {
		snprintf(err, len, "status: %s", strerror(-r));
		goto out;
	}
	js = (Tern__Migd__JobStatus *)pbuf_unpack(&tern__migd__job_status__descriptor,
						    plen, packed);
	if (!js) {
		r = -ENOMEM;
		snprintf(err, len, "status: %s", strerror(-r));
		goto out;
	}
	snprintf(path, sizeof(path), "%s/migd.sock", s->rundir);
	r = rpc_client_connect_path(path, ADOPT_CALL_MS, &cl);
	if (r < 0) {
		snprintf(err, len, "%.300s: %s", path, strerror(-r));
		goto out;
	}
	r = adopt_check_peer(cl, err, len);
	if (r < 0)
		goto out;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		r = -errno;
		snprintf(err, len, "socketpair: %s", strerror(-r));
		goto out;
	}
	worker_params(w, &p);
	params_to_proto(&p, &pp);
	pthread_mutex_lock(&w->lock);
	stream_hex(w->id, STREAM_ID_LEN, idhex);
	pthread_mutex_unlock(&w->lock);
	stream_hex(s->token, STREAM_TOKEN_LEN, token);
	req.role = s->role == JOB_ROLE_SOURCE ? TERN__MIGD__JOB_ROLE__ROLE_SOURCE :
						TERN__MIGD__JOB_ROLE__ROLE_DEST;
	req.vm = (char *)s->vm;
	req.peer = (char *)s->peer;
	req.id = idhex;
	req.token = token;
	req.params = &pp;
	req.listen_dev = s->listen_dev;
	req.listen_ino = s->listen_ino;
	req.started_unix_ms = w->started_unix_ms;
	req.status = js;
	r = rpc_client_call(cl, &tern__migd__migd__descriptor, "Adopt", &req.base,
			    &sv[1], 1, NULL, &res, ADOPT_CALL_MS, NULL, NULL);
	rpc_result_close_fds(&res);
	if (r < 0) {
		snprintf(err, len, "Adopt: %.400s", res.message[0] ? res.message :
			 strerror(-r));
		goto out;
	}
	*ret_fd = sv[0];
	sv[0] = -1;
	log_info("adopted by migd %d: its status link is ours, the job goes on "
		 "with it", rpc_client_peer_pid(cl));
out:
	if (sv[0] >= 0)
		close(sv[0]);
	if (sv[1] >= 0)
		close(sv[1]);
	rpc_client_free(cl);
	if (js)
		protobuf_c_message_free_unpacked(&js->base, NULL);
	free(packed);
	return r;
}

int worker_adopt_wait(struct worker *w)
{
	struct timespec ts = { ADOPT_RETRY_MS / 1000,
			       (ADOPT_RETRY_MS % 1000) * 1000000L };
	bool wanted, over, told = false;
	char err[512];
	int fd = -1;

	for (;;) {
		adopt_look(w, &wanted, &over);
		if (over)
			return -1;
		/* Before the switch, migd's end cancels the job; a precopy
		 * past it (its device phase) ends on its own. */
		if (wanted && adopt_try(w, &fd, err, sizeof(err)) == 0)
			return fd;
		if (wanted && !told)
			log_warnx("no migd adopted the job yet (%s): trying again "
				  "every %u ms", err, ADOPT_RETRY_MS);
		told |= wanted;
		nanosleep(&ts, NULL);
	}
}
