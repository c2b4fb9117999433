// SPDX-License-Identifier: GPL-2.0-only
/*
 * The blocking control RPC client (see rpc.h): one call at a time, poll()
 * for timeouts, events delivered to a callback until the reply.  Used by
 * migctl, vmmctl, migd calling the vmm and faultd, and tests.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/pbuf.h"
#include "common/rpc.h"
#include "common/rpc_priv.h"
#include "common/uri.h"
#include "common/util.h"

struct rpc_client {
	struct rpc_conn *conn;
	uint64_t next_id;
	int err;                /* sticky protocol error */
	unsigned int idle_ms;   /* rpc_client_set_idle */
	rpc_idle_fn idle_fn;
	void *idle_ctx;
};

int rpc_client_from_fd(int fd, struct rpc_client **ret)
{
	struct rpc_client *cl = calloc(1, sizeof(*cl));
	int r;

	if (!cl) {
		close(fd);
		return -ENOMEM;
	}
	r = rpc_conn_new(fd, 0, &cl->conn);
	if (r < 0) {
		free(cl);
		return r;
	}
	*ret = cl;
	return 0;
}

static int client_connect(const struct uri *u, int timeout_ms,
			  struct rpc_client **ret)
{
	int fd = uri_connect(u, timeout_ms);

	if (fd < 0)
		return fd;
	return rpc_client_from_fd(fd, ret);
}

int rpc_client_connect(const char *addr, int timeout_ms,
		       struct rpc_client **ret)
{
	struct uri u;
	int r;

	r = uri_parse(addr, &u);
	if (r < 0)
		return r;
	if (u.kind != URI_TCP && u.kind != URI_UNIX)
		return -EINVAL;
	return client_connect(&u, timeout_ms, ret);
}

int rpc_client_connect_path(const char *path, int timeout_ms,
			    struct rpc_client **ret)
{
	struct uri u = { .kind = URI_UNIX };

	if (str_copy(u.path, path, sizeof(u.path)) < 0)
		return -ENAMETOOLONG;
	return client_connect(&u, timeout_ms, ret);
}

bool rpc_client_hung_up(const struct rpc_client *cl)
{
	return rpc_conn_hung_up(cl->conn);
}

int rpc_client_peer_cred(const struct rpc_client *cl, struct ucred *ret)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(rpc_conn_fd(cl->conn), SOL_SOCKET, SO_PEERCRED, &cred,
		       &len) < 0)
		return -errno;
	*ret = cred;
	return 0;
}

int rpc_client_peer_pid(const struct rpc_client *cl)
{
	struct ucred cred;
	int r = rpc_client_peer_cred(cl, &cred);

	if (r < 0)
		return r;
	return cred.pid > 0 ? cred.pid : -ESRCH;
}

int rpc_client_wait_hangup(struct rpc_client *cl, int timeout_ms)
{
	struct pollfd p = { rpc_conn_fd(cl->conn), POLLRDHUP, 0 };
	uint64_t deadline = timeout_ms > 0 ? deadline_ms(timeout_ms) : 0;
	int r;

	/* Unread bytes do not wake this (no POLLIN): only the end does. */
	r = poll_until(&p, 1, deadline);
	return r < 0 ? r : 0;
}

int rpc_client_set_max_frame(struct rpc_client *cl, uint32_t max_frame)
{
	if (max_frame > RPC_FRAME_MAX_LIMIT)
		return -EINVAL;
	rpc_conn_set_max_frame(cl->conn,
			       max_frame ? max_frame : RPC_FRAME_MAX_DEFAULT);
	return 0;
}

void rpc_client_free(struct rpc_client *cl)
{
	if (!cl)
		return;
	rpc_conn_free(cl->conn);
	free(cl);
}

void rpc_result_close_fds(struct rpc_result *res)
{
	rpc_fds_close(res->fds, res->nfds);
	res->nfds = 0;
}

static int result_fail(struct rpc_result *res, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int result_fail(struct rpc_result *res, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(res->message, sizeof(res->message), fmt, ap);
	va_end(ap);
	return err;
}

static const ProtobufCMethodDescriptor *
client_method(const ProtobufCServiceDescriptor *svc, const char *method)
{
	unsigned int i;

	for (i = 0; i < svc->n_methods; i++)
		if (strcmp(svc->methods[i].name, method) == 0)
			return &svc->methods[i];
	return NULL;
}

static int client_send(struct rpc_client *cl, const char *full,
		       const ProtobufCMessage *arg, const int *fds,
		       size_t nfds, bool want_events)
{
	Tern__Rpc__Frame f = TERN__RPC__FRAME__INIT;
	Tern__Rpc__Request req = TERN__RPC__REQUEST__INIT;
	int r;

	r = rpc_msg_pack(arg, &req.arg.data, &req.arg.len);
	if (r < 0)
		return r;
	req.id = ++cl->next_id;
	req.method = (char *)full;
	req.want_events = want_events;
	f.body_case = TERN__RPC__FRAME__BODY_REQUEST;
	f.request = &req;
	r = rpc_conn_send(cl->conn, &f, fds, nfds);
	free(req.arg.data);
	return r;
}

/* Wait until the socket can make progress, or the deadline (0: never). */
static int client_poll(struct rpc_client *cl, uint64_t deadline)
{
	struct pollfd pfd = { .fd = rpc_conn_fd(cl->conn), .events = POLLIN };
	int r;

	if (rpc_conn_pending(cl->conn))
		pfd.events |= POLLOUT;
	r = poll_until(&pfd, 1, deadline);
	return r < 0 ? r : 0;
}

struct client_wait {
	uint64_t id;
	const ProtobufCMethodDescriptor *md;
	ProtobufCMessage **ret_msg;
	struct rpc_result *res;
	rpc_event_fn on_event;
	void *ev_ctx;
};

/* Our reply: 1 on success, -status or -EPROTO otherwise. */
static int client_take_reply(const struct client_wait *w,
			     const Tern__Rpc__Reply *rep, int *fds,
			     size_t nfds)
{
	ProtobufCMessage *msg;

	if (rep->status != 0) {
		rpc_fds_close(fds, nfds);
		if (rep->status < 0 || rep->status > 4095)
			return result_fail(w->res, -EPROTO, "bad status %d",
					   rep->status);
		w->res->remote = true;
		return result_fail(w->res, -rep->status, "%s",
				   rep->message && rep->message[0] ?
				   rep->message : strerror(rep->status));
	}
	msg = pbuf_unpack(w->md->output, rep->result.len, rep->result.data);
	if (!msg) {
		rpc_fds_close(fds, nfds);
		return result_fail(w->res, -EPROTO, "malformed result");
	}
	if (w->ret_msg)
		*w->ret_msg = msg;
	else
		protobuf_c_message_free_unpacked(msg, NULL);
	memcpy(w->res->fds, fds, nfds * sizeof(int));
	w->res->nfds = nfds;
	return 1;
}

/* 0: keep waiting; 1: done; <0: failed. */
static int client_handle_frame(struct rpc_client *cl,
			       const struct client_wait *w,
			       const Tern__Rpc__Frame *f, int *fds,
			       size_t nfds)
{
	const Tern__Rpc__Event *ev = f->event;

	if (f->body_case == TERN__RPC__FRAME__BODY_REPLY &&
	    f->reply->id == w->id)
		return client_take_reply(w, f->reply, fds, nfds);
	rpc_fds_close(fds, nfds);
	if (f->body_case == TERN__RPC__FRAME__BODY_EVENT) {
		if (ev->id == w->id && w->on_event)
			w->on_event(w->ev_ctx, ev->name, ev->data.data,
				    ev->data.len);
		return 0;
	}
	if (f->body_case == TERN__RPC__FRAME__BODY_REPLY)
		return 0;       /* the late reply of a call that timed out */
	cl->err = -EPROTO;
	return result_fail(w->res, -EPROTO, "server sent a request");
}

void rpc_client_set_idle(struct rpc_client *cl, unsigned int idle_ms,
			 rpc_idle_fn fn, void *ctx)
{
	cl->idle_ms = fn ? idle_ms : 0;
	cl->idle_fn = fn;
	cl->idle_ctx = ctx;
}

/* Poll until the deadline or, with an idle hook, the next moment of
 * silence to tell it of (*next: idle_ms after the last frame, then as
 * the hook asks). */
static int client_poll_idle(struct rpc_client *cl, uint64_t deadline,
			    uint64_t last, uint64_t *next)
{
	struct pollfd pfd = { .events = POLLIN };
	uint64_t until = deadline, now;
	int r;

	if (cl->idle_ms && (!deadline || *next < deadline))
		until = *next;
	r = client_poll(cl, until);
	if (r != -ETIMEDOUT || until == deadline)
		return r;
	/* What came while this process was stopped is no silence. */
	pfd.fd = rpc_conn_fd(cl->conn);
	if (poll(&pfd, 1, 0) > 0)
		return 0;
	now = now_ns();
	r = cl->idle_fn(cl->idle_ctx, (now - last) / 1000000);
	*next = now + (r > 0 ? (uint64_t)r : cl->idle_ms) * 1000000ULL;
	return r > 0 ? 0 : r;
}

#define CLIENT_LATE_FRAMES 64

static int client_wait(struct rpc_client *cl, const struct client_wait *w,
		       uint64_t deadline)
{
	Tern__Rpc__Frame *f;
	int fds[RPC_MAX_FDS];
	size_t nfds;
	unsigned int late = 0;
	uint64_t last = now_ns(), next = last + cl->idle_ms * 1000000ULL;
	int r;

	for (;;) {
		/* Past the deadline, the frames that came in time are still
		 * taken (a caller may decide on an event: vmmctl transfer's
		 * "starting"), but only CLIENT_LATE_FRAMES of them, here and
		 * not only in poll: a peer that always has another event (or
		 * stale reply) buffered would keep us forever. */
		if (deadline && now_ns() >= deadline &&
		    late++ >= CLIENT_LATE_FRAMES)
			return result_fail(w->res, -ETIMEDOUT, "%s",
					   strerror(ETIMEDOUT));
		r = rpc_conn_flush(cl->conn);
		if (r >= 0)
			r = rpc_conn_recv(cl->conn, &f, fds, &nfds);
		if (r == 1) {
			last = now_ns();
			next = last + cl->idle_ms * 1000000ULL;
			r = client_handle_frame(cl, w, f, fds, nfds);
			tern__rpc__frame__free_unpacked(f, NULL);
			if (r != 0)
				return r > 0 ? 0 : r;
			continue;
		}
		if (r == 0)
			r = client_poll_idle(cl, deadline, last, &next);
		if ((r == -EMSGSIZE || r == -EBADMSG || r == -EPROTO) &&
		    rpc_conn_why(cl->conn)[0])
			return result_fail(w->res, r, "the server sent %s (%s)",
					   rpc_conn_why(cl->conn),
					   r == -EBADMSG ? "did it exit?" :
					   "is it a tern daemon of this version?");
		if (r < 0)
			return result_fail(w->res, r, "%s",
					   r == -EPIPE ? "connection closed" :
					   strerror(-r));
	}
}

int rpc_client_call(struct rpc_client *cl,
		    const ProtobufCServiceDescriptor *svc, const char *method,
		    const ProtobufCMessage *arg, const int *fds, size_t nfds,
		    ProtobufCMessage **ret_msg, struct rpc_result *res,
		    int timeout_ms, rpc_event_fn on_event, void *ev_ctx)
{
	struct rpc_result local;
	char full[256];
	struct client_wait w = { .ret_msg = ret_msg,
				 .on_event = on_event, .ev_ctx = ev_ctx };
	uint64_t deadline = 0;
	int r;

	w.res = res ? res : &local;
	memset(w.res, 0, sizeof(*w.res));
	snprintf(full, sizeof(full), "%s/%s", svc->name, method);
	if (timeout_ms > 0)
		deadline = deadline_ms((unsigned int)timeout_ms);
	w.md = client_method(svc, method);
	if (!w.md)
		return result_fail(w.res, -ENOSYS, "no such method in %s",
				   svc->name);
	if (arg && arg->descriptor != w.md->input)
		return result_fail(w.res, -EINVAL, "wrong argument type %s",
				   arg->descriptor->name);
	if (cl->err)
		return result_fail(w.res, cl->err, "connection unusable");
	r = client_send(cl, full, arg, fds, nfds, on_event != NULL);
	if (r < 0)
		return result_fail(w.res, r, "%s", strerror(-r));
	w.id = cl->next_id;
	r = client_wait(cl, &w, deadline);
	if (w.res == &local)
		rpc_result_close_fds(&local);
	return r;
}
