// SPDX-License-Identifier: GPL-2.0-only
/*
 * A worker whose migd ended (its status link reached EOF: migd stopped,
 * restarted or died) while its job is past a postcopy switch: the job
 * goes on without migd, a paused one waits for its recovery, and about
 * once a second, and at once when a migd.sock appears in RUNDIR
 * (inotify), the worker asks the migd on RUNDIR/migd.sock to adopt it
 * (Migd.Adopt, tern-rpc(7)), handing it one end of a fresh socketpair,
 * the job's new status link.  Called by the worker's
 * command thread (worker.c); a job before its switch is cancelled by
 * migd's end as always, and never asks.  A postcopy job that ended
 * while no migd had it (it completed, or failed), or whose migd's link
 * ended before that migd said it took the final report, offers that
 * report the same way, without a link, once it let go of everything
 * else: the worker's main thread, as its last step.  So does a job
 * whose migd ended before it did, past its switch or in a postcopy
 * switch: the next migd would guess it stopped before its switch.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/fault.h"
#include "common/log.h"
#include "common/pbuf.h"
#include "common/rpc.h"
#include "common/util.h"
#include "migd/migd.h"

#define ADOPT_RETRY_MS 1000             /* between tries */
#define ADOPT_CALL_MS 5000              /* connect, and the call */

/* One try at a time, and none once the job ended: the command thread's
 * (a try, and the new link taken) or the end's (worker_offer_end). */
static pthread_mutex_t adopt_lock = PTHREAD_MUTEX_INITIALIZER;

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

/*
 * One try with the job's status packed: a running job's gives the new
 * status link in *ret_fd, and whether its migd says "taken" of a final
 * report in *ret_acks; an ended job's (ret_fd NULL) none, its end
 * taken.  0, or -errno and why in err.
 */
static int adopt_try(struct worker *w, const uint8_t *packed, size_t plen,
		     int *ret_fd, bool *ret_acks, char *err, size_t len)
{
	const struct job_spec *s = w->spec;
	Tern__Migd__AdoptRequest req = TERN__MIGD__ADOPT_REQUEST__INIT;
	Tern__Migd__Params pp = TERN__MIGD__PARAMS__INIT;
	Tern__Migd__JobStatus *js = NULL, *rep = NULL;
	struct rpc_client *cl = NULL;
	struct rpc_result res = { 0 };
	char path[PATH_MAX + 16], idhex[2 * STREAM_ID_LEN + 1];
	char token[STREAM_TOKEN_HEX + 1], peer[PATH_MAX];
	struct mig_params p;
	int sv[2] = { -1, -1 }, r;

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
	if (ret_fd && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		r = -errno;
		snprintf(err, len, "socketpair: %s", strerror(-r));
		goto out;
	}
	worker_params(w, &p);
	params_to_proto(&p, &pp);
	pthread_mutex_lock(&w->lock);
	stream_hex(w->id, STREAM_ID_LEN, idhex);
	str_copy(peer, w->peer[0] ? w->peer : s->peer, sizeof(peer));
	pthread_mutex_unlock(&w->lock);
	stream_hex(s->token, STREAM_TOKEN_LEN, token);
	req.role = s->role == JOB_ROLE_SOURCE ? TERN__MIGD__JOB_ROLE__ROLE_SOURCE :
						TERN__MIGD__JOB_ROLE__ROLE_DEST;
	req.vm = (char *)s->vm;
	req.peer = peer;
	req.id = idhex;
	req.token = token;
	req.params = &pp;
	req.listen_dev = s->listen_dev;
	req.listen_ino = s->listen_ino;
	req.started_unix_ms = w->started_unix_ms;
	req.status = js;
	r = rpc_client_call(cl, &tern__migd__migd__descriptor, "Adopt", &req.base,
			    &sv[1], ret_fd ? 1 : 0, (ProtobufCMessage **)&rep,
			    &res, ADOPT_CALL_MS, NULL, NULL);
	rpc_result_close_fds(&res);
	if (r < 0) {
		snprintf(err, len, "Adopt: %.400s", res.message[0] ? res.message :
			 strerror(-r));
		goto out;
	}
	if (!ret_fd) {
		log_info("migd %d learnt the job's end", rpc_client_peer_pid(cl));
		goto out;
	}
	*ret_fd = sv[0];
	sv[0] = -1;
	*ret_acks = rep->final_ack;
	log_info("adopted by migd %d: its status link is ours, the job goes on "
		 "with it", rpc_client_peer_pid(cl));
out:
	if (rep)
		protobuf_c_message_free_unpacked(&rep->base, NULL);
	if (sv[0] >= 0)
		close(sv[0]);
	if (sv[1] >= 0)
		close(sv[1]);
	rpc_client_free(cl);
	if (js)
		protobuf_c_message_free_unpacked(&js->base, NULL);
	return r;
}

/* A try as the job runs: its status now, and, adopted, its new link. */
static int adopt_try_running(struct worker *w, char *err, size_t len)
{
	uint8_t *packed = NULL;
	size_t plen;
	bool acks = false;
	int fd = -1, r;

	r = worker_status_pack(w, &packed, &plen);
	if (r < 0)
		snprintf(err, len, "status: %s", strerror(-r));
	else
		r = adopt_try(w, packed, plen, &fd, &acks, err, len);
	free(packed);
	if (r == 0)
		worker_take_migd(w, fd, acks);
	return r;
}

/* The run directory, watched for a new migd.sock: -1 if it cannot be
 * (the pauses are then whole).  Opened before the first try, so that a
 * migd that comes up between a try and the pause is not missed. */
static int adopt_watch_open(const char *rundir)
{
	int fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);

	if (fd < 0)
		return -1;
	/* migd renames its socket into place once it listens (control.c);
	 * one that binds it there in place is seen as it is created. */
	if (inotify_add_watch(fd, rundir, IN_CREATE | IN_MOVED_TO) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Whether the events waiting on watch name migd.sock (all are read). */
static bool adopt_watch_saw_sock(int watch)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	const struct inotify_event *ev;
	bool seen = false;
	ssize_t n;
	char *p;

	while ((n = read(watch, buf, sizeof(buf))) > 0)
		for (p = buf; p + sizeof(*ev) <= buf + n;
		     p += sizeof(*ev) + ev->len) {
			ev = (const struct inotify_event *)p;
			if (ev->len && !strcmp(ev->name, "migd.sock"))
				seen = true;
		}
	return seen;
}

/* ADOPT_RETRY_MS between tries, cut short by a new migd.sock. */
static void adopt_pause(int watch)
{
	struct timespec ts = { ADOPT_RETRY_MS / 1000,
			       (ADOPT_RETRY_MS % 1000) * 1000000L };
	struct pollfd pfd = { .fd = watch, .events = POLLIN };
	uint64_t end = deadline_ms(ADOPT_RETRY_MS);

	if (watch < 0) {
		nanosleep(&ts, NULL);
		return;
	}
	while (poll_until(&pfd, 1, end) > 0)
		if (adopt_watch_saw_sock(watch))
			return;
}

int worker_adopt_wait(struct worker *w)
{
	bool wanted, over, told = false;
	int watch = adopt_watch_open(w->spec->rundir);
	char err[512];
	int r = -1;

	for (;;) {
		pthread_mutex_lock(&adopt_lock);
		adopt_look(w, &wanted, &over);
		/* Before the switch, migd's end cancels the job; a precopy
		 * past it (its device phase) ends on its own. */
		if (wanted && !over)
			r = adopt_try_running(w, err, sizeof(err));
		pthread_mutex_unlock(&adopt_lock);
		if (over || r == 0)
			break;
		if (wanted && !told)
			log_warnx("no migd adopted the job yet (%s): trying again "
				  "every %u ms, and when a migd comes up", err,
				  ADOPT_RETRY_MS);
		told |= wanted;
		adopt_pause(watch);
	}
	if (watch >= 0)
		close(watch);
	return over ? -1 : 0;
}

void worker_keep_ram(struct worker *w, struct ram_view *v,
		     struct ram_place *place)
{
	w->ram = *v;
	v->n = 0;
	if (place) {
		w->place = *place;
		place->n = 0;
		place->uffd = -1;
	}
}

/* The dead status link becomes /dev/null, not a closed number that the
 * command thread, should it not have seen the link's end yet, could
 * read on another socket's behalf. */
static void adopt_drop_link(struct worker *w)
{
	int fd = open("/dev/null", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return;
	pthread_mutex_lock(&w->report_lock);
	dup3(fd, w->status_fd, O_CLOEXEC);
	pthread_mutex_unlock(&w->report_lock);
	close(fd);
}

/*
 * The job ended while no migd had it; its worker is done but for this:
 * nothing of the guest's stays held (its RAM's mappings and memfds, a
 * destination's uffd; the job's links and its vmm's are closed by then,
 * source_run, dest_run), and the final report, packed once, is offered
 * as it is about once a second, until a migd takes it or the time is up.
 */
static void adopt_offer_end(struct worker *w)
{
	unsigned int wait_s = fault_active("worker-end-wait-short") ?
			      WORKER_END_WAIT_SHORT_S : WORKER_END_WAIT_S;
	uint64_t end = now_ns() + wait_s * 1000000000ULL;
	int watch = adopt_watch_open(w->spec->rundir);
	uint8_t *packed = NULL;
	bool told = false;
	char err[512];
	size_t plen;
	int r;

	ram_place_close(&w->place, &w->ram);
	ram_view_unmap(&w->ram);
	adopt_drop_link(w);
	r = worker_status_pack(w, &packed, &plen);
	if (r < 0) {
		log_warnx("the job ended while no migd ran, and its final report "
			  "cannot be kept (%s): its end is in this log only",
			  strerror(-r));
		goto out;
	}
	for (;;) {
		r = adopt_try(w, packed, plen, NULL, NULL, err, sizeof(err));
		if (r == 0 || now_ns() >= end)
			break;
		if (!told)
			log_warnx("the job ended while no migd ran: its final report "
				  "waits up to %u s for a migd on %s/migd.sock to "
				  "take it (%s)", wait_s, w->spec->rundir, err);
		told = true;
		adopt_pause(watch);
	}
	if (r < 0)
		log_warnx("no migd took the job's final report within %u s (%s): "
			  "its end is in this log only", wait_s, err);
out:
	free(packed);
	if (watch >= 0)
		close(watch);
}

void worker_offer_end(struct worker *w, int reported)
{
	bool offer;

	/* Past a postcopy switch; or, with migd gone before the end, one
	 * that the next migd, which guesses that migd's end stopped the job
	 * before its switch, would get wrong: a precopy past its switch (it
	 * completed as migd went, say), or a postcopy switch begun, whose
	 * end it waits for. */
	pthread_mutex_lock(&w->lock);
	offer = worker_was_postcopy_locked(w) ||
		(worker_orphaned() &&
		 (w->postcopy || worker_past_switch_locked(w) ||
		  w->state == JOB_STATE_COMPLETED));
	pthread_mutex_unlock(&w->lock);
	if (!offer)
		return;
	/* A migd that adopted the job as it ended has the report too: its
	 * link's first one (worker_take_migd).  Held from here on, the
	 * lock keeps the command thread from trying again. */
	pthread_mutex_lock(&adopt_lock);
	if (!worker_orphaned() && (reported == 0 || worker_report(w) == 0) &&
	    worker_end_taken(w))
		return;
	adopt_offer_end(w);
}
