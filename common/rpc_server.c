// SPDX-License-Identifier: GPL-2.0-only
/*
 * The control RPC server (see rpc.h): libevent dispatch of requests to
 * protobuf-c service handlers by "package.Service/Method".  A peer that
 * misbehaves is closed and the server goes on; a closed peer stays
 * allocated, detached, while deferred calls still point at it.  Its
 * listening sockets, who may connect and what is said of callers it
 * could not serve are rpc_accept.c's.  Used by the vmm, migd and faultd
 * control sockets.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <event2/event.h>

#include "common/fault.h"
#include "common/log.h"
#include "common/pbuf.h"
#include "common/ratelim.h"
#include "common/rpc.h"
#include "common/rpc_priv.h"
#include "common/util.h"

#define RPC_METHOD_SHOW 128     /* longest method name echoed back */
#define RPC_DROPS_TOLD 3        /* peers dropped, told per 10 s */
#define RPC_STALL_MS_FAULT 2000 /* the stall bound under control-stall-2s */

struct rpc_service {
	struct rpc_service *next;
	const ProtobufCServiceDescriptor *desc;
	void *ctx;
	rpc_method_fn handlers[];       /* desc->n_methods entries */
};

/* OPEN -> DRAINING (EOF seen, replies still owed) -> CLOSED. */
enum rpc_peer_state {
	RPC_PEER_OPEN,
	RPC_PEER_DRAINING,
	RPC_PEER_CLOSED,
	RPC_PEER_STATE_MAX
};

static const char *const rpc_peer_state_names[RPC_PEER_STATE_MAX] = {
	[RPC_PEER_OPEN] = "open",
	[RPC_PEER_DRAINING] = "draining",
	[RPC_PEER_CLOSED] = "closed",
};

/* A closed peer lives on, detached, while calls still point at it. */
struct rpc_peer {
	struct rpc_server *s;           /* NULL once closed */
	enum rpc_peer_state state;
	struct rpc_conn *conn;          /* NULL once closed */
	struct event *ev_read, *ev_write;
	unsigned int refs;              /* the server's, calls', callbacks' */
	unsigned int ncalls;            /* calls not finished yet */
	bool has_cred;
	struct ucred cred;
	uint64_t id;                    /* the server's count: never reused */
	/* The connection's byte counts (rpc_conn_total_in, _out) when the
	 * stall bound on its reading or writing was last set. */
	uint64_t in_mark, out_mark;
	struct rpc_peer *prev, *next;
};

struct rpc_call {
	struct rpc_peer *peer;
	const ProtobufCMethodDescriptor *mdesc; /* NULL: method not found */
	rpc_method_fn fn;
	void *ctx;
	uint64_t id;
	bool want_events;
	char method[RPC_METHOD_SHOW + 4];       /* printable, for messages */
	ProtobufCMessage *arg;
	int fds[RPC_MAX_FDS];
	size_t nfds;
	bool replied;
	uint8_t *result;
	size_t result_len;
	int reply_fds[RPC_MAX_FDS];
	size_t reply_nfds;
	char *errmsg;
};

static void peer_ref(struct rpc_peer *p)
{
	p->refs++;
}

static void peer_unref(struct rpc_peer *p)
{
	if (--p->refs == 0)
		free(p);
}

static void peer_close(struct rpc_peer *p, int err)
{
	struct rpc_server *s = p->s;

	log_debug("rpc: peer fd %d %s, closing: %s", rpc_conn_fd(p->conn),
		  rpc_peer_state_names[p->state], strerror(-err));
	if (p->prev)
		p->prev->next = p->next;
	else
		s->peers = p->next;
	if (p->next)
		p->next->prev = p->prev;
	s->npeers--;
	event_free(p->ev_read);
	event_free(p->ev_write);
	rpc_conn_free(p->conn);
	p->conn = NULL;
	p->s = NULL;
	p->state = RPC_PEER_CLOSED;
	peer_unref(p);
	rpc_server_resume_accept(s);        /* a descriptor is free again */
}

/*
 * Watch ev (a peer's writing, or its reading in a frame) with the stall
 * bound, from when it begins to count or from the last byte that moved
 * that way (total, against *mark): a timer set per wake-up that moved
 * bytes, none for a request answered at once.
 */
static void peer_watch_stall(struct rpc_peer *p, struct event *ev,
			     uint64_t total, uint64_t *mark)
{
	if (total == *mark && event_pending(ev, EV_TIMEOUT, NULL))
		return;
	event_add(ev, &p->s->stall);
	*mark = total;
}

/*
 * After any change: write what the socket takes now (so a reply is out
 * even if the loop exits next), close a draining peer with nothing left
 * to say, otherwise watch for writing while output is queued and for
 * reading while open and not too far behind on replies (backpressure),
 * each with the stall bound while it is owed output or in a frame.
 */
static void peer_settle(struct rpc_peer *p)
{
	int r = rpc_conn_flush(p->conn);
	bool pending = r == 0, reading;
	uint32_t len;

	if (r < 0) {
		peer_close(p, r);
		return;
	}
	if (p->state == RPC_PEER_DRAINING && !pending && p->ncalls == 0) {
		peer_close(p, -EPIPE);
		return;
	}
	if (pending)
		peer_watch_stall(p, p->ev_write, rpc_conn_total_out(p->conn),
				 &p->out_mark);
	else
		event_del(p->ev_write);
	reading = p->state == RPC_PEER_OPEN &&
		  rpc_conn_out_bytes(p->conn) < rpc_conn_max_frame(p->conn);
	if (reading && rpc_conn_in_partial(p->conn, &len)) {
		peer_watch_stall(p, p->ev_read, rpc_conn_total_in(p->conn),
				 &p->in_mark);
		return;
	}
	/* Before event_del too: a persistent event keeps its timeout
	 * through it, and sets it again at its next wake-up. */
	event_remove_timer(p->ev_read);
	if (reading)
		event_add(p->ev_read, NULL);
	else
		event_del(p->ev_read);
}

static void call_free(struct rpc_call *call)
{
	struct rpc_peer *p = call->peer;

	rpc_fds_close(call->fds, call->nfds);
	rpc_fds_close(call->reply_fds, call->reply_nfds);
	if (call->arg)
		protobuf_c_message_free_unpacked(call->arg, NULL);
	free(call->result);
	free(call->errmsg);
	free(call);
	p->ncalls--;
	if (p->state != RPC_PEER_CLOSED)
		peer_settle(p);
	peer_unref(p);
}

/* Keep a printable copy of the method name for replies and logs. */
static void call_set_method(struct rpc_call *call, const char *m)
{
	size_t i;

	for (i = 0; m[i] && i < RPC_METHOD_SHOW; i++)
		call->method[i] = m[i] >= 0x20 && m[i] < 0x7f ? m[i] : '?';
	call->method[i] = '\0';
	if (m[i])
		strcat(call->method, "...");
}

static struct rpc_call *call_new(struct rpc_peer *p,
				 const Tern__Rpc__Request *req, int *fds,
				 size_t nfds)
{
	struct rpc_call *call = calloc(1, sizeof(*call));

	if (!call)
		return NULL;
	call->peer = p;
	call->id = req->id;
	call->want_events = req->want_events;
	call_set_method(call, req->method);
	memcpy(call->fds, fds, nfds * sizeof(int));
	call->nfds = nfds;
	peer_ref(p);
	p->ncalls++;
	return call;
}

static int call_lookup(struct rpc_call *call, const char *method)
{
	const char *slash = strrchr(method, '/');
	const struct rpc_service *svc;
	size_t i, n = slash ? (size_t)(slash - method) : 0;

	for (svc = call->peer->s->services; slash && svc; svc = svc->next) {
		if (strlen(svc->desc->name) != n ||
		    strncmp(svc->desc->name, method, n) != 0)
			continue;
		for (i = 0; i < svc->desc->n_methods; i++) {
			if (strcmp(svc->desc->methods[i].name, slash + 1))
				continue;
			call->mdesc = &svc->desc->methods[i];
			call->fn = svc->handlers[i];
			call->ctx = svc->ctx;
			if (!call->fn)
				break;
			return 0;
		}
		break;
	}
	return rpc_call_errorf(call, ENOSYS, "%s method %s",
			       call->mdesc ? "unimplemented" : "unknown",
			       call->method);
}

static int call_decode(struct rpc_call *call, const ProtobufCBinaryData *arg)
{
	call->arg = pbuf_unpack(call->mdesc->input, arg->len, arg->data);
	if (!call->arg)
		return rpc_call_errorf(call, EINVAL,
				       "malformed argument for %s",
				       call->method);
	return 0;
}

/* Run one request; the call owns fds from here on.  -ENOMEM only. */
static int peer_dispatch(struct rpc_peer *p, const Tern__Rpc__Request *req,
			 int *fds, size_t nfds)
{
	struct rpc_call *call;
	int r;

	call = call_new(p, req, fds, nfds);
	if (!call) {
		rpc_fds_close(fds, nfds);
		return -ENOMEM;
	}
	r = call_lookup(call, req->method);
	if (r == 0)
		r = call_decode(call, &req->arg);
	if (r == 0)
		r = call->fn(call, call->arg);
	if (r != RPC_DEFERRED)
		rpc_call_finish(call, r > 0 ? 0 : r);
	return 0;
}

static void peer_refuse(struct rpc_peer *p, int err, const char *sent);

static int peer_read_one(struct rpc_peer *p)
{
	Tern__Rpc__Frame *f;
	int fds[RPC_MAX_FDS];
	size_t nfds;
	int r;

	r = rpc_conn_recv(p->conn, &f, fds, &nfds);
	if (r <= 0)
		return r;
	if (f->body_case == TERN__RPC__FRAME__BODY_REQUEST) {
		r = peer_dispatch(p, f->request, fds, nfds);
	} else {
		rpc_fds_close(fds, nfds);
		r = -EPROTO;
		peer_refuse(p, r, "a reply or an event, where only requests "
			    "may come");
	}
	tern__rpc__frame__free_unpacked(f, NULL);
	return r < 0 ? r : 1;
}

/*
 * At EOF: did the peer close its socket, or only its writing side (to
 * wait for the replies it is owed)?  A unix socket tells the two apart
 * (POLLHUP once both sides are shut); a TCP peer's close looks like a
 * half-close until a write fails.
 */
static bool peer_hung_up(struct rpc_peer *p)
{
	struct pollfd pfd = { .fd = rpc_conn_fd(p->conn) };

	return poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLHUP);
}

/* Why a peer is dropped (peer_drop). */
enum rpc_stall {
	RPC_STALL_OUTPUT,               /* owed output, none of it taken */
	RPC_STALL_INPUT,                /* in a frame, no byte more of it */
	RPC_STALL_MAX
};

/* "pid 1234 (vmmctl, uid 0)": who a peer is, as far as it is known. */
static void peer_name(const struct rpc_peer *p, char *buf, size_t len)
{
	char shown[64];

	if (!p->has_cred) {
		snprintf(buf, len, "the peer on descriptor %d",
			 rpc_conn_fd(p->conn));
		return;
	}
	/* The peer names itself (prctl): shown, never written raw. */
	proc_comm_shown((int)p->cred.pid, shown, sizeof(shown));
	snprintf(buf, len, "pid %d (%s%suid %u)", (int)p->cred.pid, shown,
		 shown[0] ? ", " : "", (unsigned int)p->cred.uid);
}

/*
 * Tell the program that a peer goes, who and why (WHAT): RPC_DROPS_TOLD
 * per window, whatever the reason, the others counted and said with the
 * next one told.
 */
static void peer_tell(struct rpc_peer *p, const char *what)
{
	struct rpc_server *s = p->s;
	char who[128], again[96] = "", msg[480];
	unsigned int held;

	if (!s->drop_fn)
		return;
	if (!ratelim_take(&s->drop_lim, now_ns(), RPC_OVERLOAD_TELL_NS,
			  RPC_DROPS_TOLD, &held)) {
		rpc_server_watch_held(s);
		return;
	}
	peer_name(p, who, sizeof(who));
	if (held)
		snprintf(again, sizeof(again), " (%u more dropped since the last "
			 "one said, not said one by one)", held);
	snprintf(msg, sizeof(msg), "dropped %s: %s%s", who, what, again);
	s->drop_fn(s->drop_ctx, msg);
}

/* Close a peer that stalled, saying so. */
static void peer_drop(struct rpc_peer *p, enum rpc_stall why)
{
	struct rpc_server *s = p->s;
	char size[32], part[32], what[200];
	double secs = s->stall.tv_sec + s->stall.tv_usec / 1e6;
	uint32_t len;
	size_t got = rpc_conn_in_partial(p->conn, &len);

	if (why == RPC_STALL_OUTPUT)
		snprintf(what, sizeof(what), "it read nothing of the %s owed "
			 "to it for %g s",
			 fmt_size(rpc_conn_out_bytes(p->conn), size, sizeof(size)),
			 secs);
	else if (len)
		snprintf(what, sizeof(what), "it sent %s of a %s frame, then "
			 "nothing more for %g s",
			 fmt_size(got - RPC_LEN_BYTES, part, sizeof(part)),
			 fmt_size(len, size, sizeof(size)), secs);
	else
		snprintf(what, sizeof(what), "it sent %zu bytes of a frame's "
			 "length, then nothing more for %g s", got, secs);
	peer_tell(p, what);
	peer_close(p, -ETIMEDOUT);
}

/*
 * Close a peer that broke the framing (rpc_conn_recv's -EMSGSIZE,
 * -EBADMSG, -EPROTO, or a reply where requests come), saying what it
 * sent: whoever wrote that client learns it from this log alone, for
 * its socket just closes.
 */
static void peer_refuse(struct rpc_peer *p, int err, const char *sent)
{
	char what[200];

	snprintf(what, sizeof(what), "it sent %s", sent[0] ? sent : strerror(-err));
	peer_tell(p, what);
	peer_close(p, err);
}

static void handle_peer_read(evutil_socket_t fd, short what, void *arg)
{
	struct rpc_peer *p = arg;
	uint32_t len;
	int i, r = 0;

	peer_ref(p);
	/* Up to the output cap, as peer_settle: past it, requests wait. */
	for (i = 0; i < RPC_READ_BATCH && p->state == RPC_PEER_OPEN &&
	     rpc_conn_out_bytes(p->conn) < rpc_conn_max_frame(p->conn); i++) {
		r = peer_read_one(p);
		if (r <= 0)
			break;
	}
	if (p->state == RPC_PEER_OPEN && r == -EPIPE && !peer_hung_up(p))
		p->state = RPC_PEER_DRAINING;
	else if (p->state == RPC_PEER_OPEN &&
		 (r == -EMSGSIZE || r == -EBADMSG || r == -EPROTO))
		peer_refuse(p, r, rpc_conn_why(p->conn));
	else if (p->state == RPC_PEER_OPEN && r < 0)
		peer_close(p, r);
	/* The bound ran out (the loop above took what came meanwhile). */
	if (p->state == RPC_PEER_OPEN && (what & EV_TIMEOUT) &&
	    rpc_conn_total_in(p->conn) == p->in_mark &&
	    rpc_conn_in_partial(p->conn, &len))
		peer_drop(p, RPC_STALL_INPUT);
	if (p->state != RPC_PEER_CLOSED)
		peer_settle(p);
	peer_unref(p);
}

static void handle_peer_write(evutil_socket_t fd, short what, void *arg)
{
	struct rpc_peer *p = arg;

	/* The bound ran out: one more try, then the peer goes. */
	if ((what & EV_TIMEOUT) && rpc_conn_flush(p->conn) == 0 &&
	    rpc_conn_total_out(p->conn) == p->out_mark) {
		peer_drop(p, RPC_STALL_OUTPUT);
		return;
	}
	peer_settle(p);
}

static void peer_get_cred(struct rpc_peer *p)
{
	socklen_t len = sizeof(p->cred);

	if (rpc_conn_is_unix(p->conn) &&
	    getsockopt(rpc_conn_fd(p->conn), SOL_SOCKET, SO_PEERCRED,
		       &p->cred, &len) == 0)
		p->has_cred = true;
}

int rpc_peer_new(struct rpc_server *s, int fd)
{
	struct rpc_peer *p = calloc(1, sizeof(*p));
	int r;

	if (!p) {
		close(fd);
		return -ENOMEM;
	}
	r = rpc_conn_new(fd, s->max_frame, &p->conn);
	if (r < 0)
		goto fail_peer;
	r = -ENOMEM;
	p->ev_read = event_new(s->base, fd, EV_READ | EV_PERSIST,
			       handle_peer_read, p);
	p->ev_write = event_new(s->base, fd, EV_WRITE | EV_PERSIST,
				handle_peer_write, p);
	if (!p->ev_read || !p->ev_write || event_add(p->ev_read, NULL) < 0)
		goto fail_conn;
	peer_get_cred(p);
	p->s = s;
	p->id = ++s->peer_ids;
	p->refs = 1;
	p->next = s->peers;
	if (s->peers)
		s->peers->prev = p;
	s->peers = p;
	s->npeers++;
	return 0;
fail_conn:
	if (p->ev_write)
		event_free(p->ev_write);
	if (p->ev_read)
		event_free(p->ev_read);
	rpc_conn_free(p->conn);
fail_peer:
	free(p);
	return r;
}

int rpc_server_new(struct event_base *base, struct rpc_server **ret)
{
	struct rpc_server *s;

	if (!base)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->base = base;
	s->max_frame = RPC_FRAME_MAX_DEFAULT;
	rpc_server_set_stall(s, fault_active("control-stall-2s") ?
			     RPC_STALL_MS_FAULT : 0);
	*ret = s;
	return 0;
}

void rpc_server_free(struct rpc_server *s)
{
	struct rpc_listener *l;
	struct rpc_service *svc;

	if (!s)
		return;
	rpc_server_tell_held(s, true);
	if (s->ev_held)
		event_free(s->ev_held);
	if (s->ev_accept_retry)
		event_free(s->ev_accept_retry);
	s->ev_accept_retry = NULL;
	while ((l = s->listeners)) {
		s->listeners = l->next;
		event_free(l->ev);
		close(l->fd);
		free(l);
	}
	while (s->peers)
		peer_close(s->peers, -ESHUTDOWN);
	while ((svc = s->services)) {
		s->services = svc->next;
		free(svc);
	}
	free(s);
}

int rpc_server_add_peer(struct rpc_server *s, int fd)
{
	return rpc_peer_new(s, fd);
}

int rpc_server_add_service(struct rpc_server *s,
			   const ProtobufCServiceDescriptor *desc,
			   const rpc_method_fn *handlers, void *ctx)
{
	struct rpc_service *svc;
	size_t n = desc->n_methods;

	for (svc = s->services; svc; svc = svc->next)
		if (strcmp(svc->desc->name, desc->name) == 0)
			return -EEXIST;
	svc = calloc(1, sizeof(*svc) + n * sizeof(svc->handlers[0]));
	if (!svc)
		return -ENOMEM;
	svc->desc = desc;
	svc->ctx = ctx;
	if (handlers)
		memcpy(svc->handlers, handlers, n * sizeof(handlers[0]));
	svc->next = s->services;
	s->services = svc;
	return 0;
}

int rpc_server_bind_service(struct rpc_server *s,
			    const ProtobufCServiceDescriptor *desc,
			    const struct rpc_method_binding *b, size_t n,
			    void *ctx, const char **ret_missing)
{
	rpc_method_fn *fns;
	unsigned int i;
	size_t j;
	int r;

	fns = calloc(desc->n_methods ? desc->n_methods : 1, sizeof(*fns));
	if (!fns)
		return -ENOMEM;
	for (i = 0; i < desc->n_methods; i++) {
		for (j = 0; j < n; j++)
			if (strcmp(desc->methods[i].name, b[j].name) == 0)
				fns[i] = b[j].fn;
		if (!fns[i]) {
			if (ret_missing)
				*ret_missing = desc->methods[i].name;
			free(fns);
			return -ENOENT;
		}
	}
	r = rpc_server_add_service(s, desc, fns, ctx);
	free(fns);
	return r;
}

void rpc_server_set_stall(struct rpc_server *s, unsigned int ms)
{
	if (ms == 0)
		ms = RPC_STALL_MS_DEFAULT;
	s->stall.tv_sec = ms / 1000;
	s->stall.tv_usec = (ms % 1000) * 1000;
}

void rpc_server_set_max_frame(struct rpc_server *s, uint32_t max_frame)
{
	if (max_frame == 0)
		max_frame = RPC_FRAME_MAX_DEFAULT;
	s->max_frame = MIN(max_frame, RPC_FRAME_MAX_LIMIT);
}

size_t rpc_server_npeers(const struct rpc_server *s)
{
	return s->npeers;
}

void *rpc_call_ctx(const struct rpc_call *call)
{
	return call->ctx;
}

const char *rpc_call_method(const struct rpc_call *call)
{
	return call->method;
}

size_t rpc_call_nfds(const struct rpc_call *call)
{
	return call->nfds;
}

int rpc_call_take_fd(struct rpc_call *call, size_t i)
{
	int fd;

	if (i >= call->nfds)
		return -EINVAL;
	fd = call->fds[i];
	call->fds[i] = -1;
	return fd >= 0 ? fd : -EBADF;
}

bool rpc_call_wants_events(const struct rpc_call *call)
{
	return call->want_events;
}

int rpc_call_peercred(const struct rpc_call *call, struct ucred *ret)
{
	if (!call->peer->has_cred)
		return -ENOTSUP;
	*ret = call->peer->cred;
	return 0;
}

int rpc_call_reply(struct rpc_call *call, const ProtobufCMessage *result,
		   const int *fds, size_t nfds)
{
	struct rpc_conn *c = call->peer->conn;
	int r;

	if (call->replied)
		return -EALREADY;
	if (nfds > RPC_MAX_FDS || (nfds && c && !rpc_conn_is_unix(c)) ||
	    (result && result->descriptor != call->mdesc->output))
		return -EINVAL;
	r = rpc_msg_pack(result, &call->result, &call->result_len);
	if (r < 0)
		return r;
	r = -EMSGSIZE;
	if (c && call->result_len >= rpc_conn_max_frame(c))
		goto fail;
	r = rpc_fds_dup(fds, nfds, call->reply_fds);
	if (r < 0)
		goto fail;
	call->reply_nfds = nfds;
	call->replied = true;
	return 0;
fail:
	free(call->result);
	call->result = NULL;
	call->result_len = 0;
	return r;
}

/*
 * The text goes into a protobuf string, which must be UTF-8 (a strict
 * decoder, Go's or Python's, refuses the whole reply otherwise), and to
 * a terminal: what it quotes of a caller or a peer (a name, a peer's
 * message) shows as str_shown does, \xNN for a control character or a
 * byte that is not UTF-8.
 */
int rpc_call_errorf(struct rpc_call *call, int err, const char *fmt, ...)
{
	char *msg = NULL, *shown = NULL;
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (r >= 0) {
		shown = str_shown_dup(msg);
		free(msg);
		msg = shown;
	}
	if (msg) {
		free(call->errmsg);
		call->errmsg = msg;
	}
	return err > 0 ? -err : err;
}

bool rpc_call_gone(const struct rpc_call *call)
{
	return call->peer->state == RPC_PEER_CLOSED;
}

uint64_t rpc_call_peer(const struct rpc_call *call)
{
	return call->peer->id;
}

int rpc_call_dup_socket(const struct rpc_call *call)
{
	int fd;

	if (!call->peer->conn)
		return -ENOTCONN;
	fd = fcntl(rpc_conn_fd(call->peer->conn), F_DUPFD_CLOEXEC, 0);
	return fd < 0 ? -errno : fd;
}

bool rpc_server_peer_open(const struct rpc_server *s, uint64_t id)
{
	const struct rpc_peer *p;

	for (p = s->peers; p; p = p->next)
		if (p->id == id)        /* closed, perhaps not yet read here */
			return p->state == RPC_PEER_OPEN &&
			       !rpc_conn_hung_up(p->conn);
	return false;
}

int rpc_call_event(struct rpc_call *call, const char *name,
		   const ProtobufCMessage *data)
{
	Tern__Rpc__Frame f = TERN__RPC__FRAME__INIT;
	Tern__Rpc__Event ev = TERN__RPC__EVENT__INIT;
	struct rpc_peer *p = call->peer;
	int r;

	if (!call->want_events)
		return 0;
	if (p->state == RPC_PEER_CLOSED)
		return -ENOTCONN;
	if (rpc_conn_out_bytes(p->conn) >= rpc_conn_max_frame(p->conn))
		return -ENOBUFS;        /* a peer this far behind skips events */
	r = rpc_msg_pack(data, &ev.data.data, &ev.data.len);
	if (r < 0)
		return r;
	ev.id = call->id;
	ev.name = (char *)(name ? name : "");
	f.body_case = TERN__RPC__FRAME__BODY_EVENT;
	f.event = &ev;
	r = rpc_conn_send(p->conn, &f, NULL, 0);
	free(ev.data.data);
	if (r == 0)
		peer_settle(p);
	return r;
}

int rpc_call_event_now(struct rpc_call *call, const char *name,
		       const ProtobufCMessage *data)
{
	int r;

	if (!call->want_events)
		return -EINVAL;
	r = rpc_call_event(call, name, data);
	if (r == -ENOBUFS)
		return -EAGAIN;
	if (r < 0)
		return r;
	/* rpc_call_event wrote what the socket took (peer_settle). */
	if (call->peer->state == RPC_PEER_CLOSED)
		return -ENOTCONN;
	return rpc_conn_pending(call->peer->conn) ? -EAGAIN : 0;
}

/* Queue the reply frame; on failure of a result reply, an error one. */
static void call_send_reply(struct rpc_call *call, int err)
{
	Tern__Rpc__Frame f = TERN__RPC__FRAME__INIT;
	Tern__Rpc__Reply rep = TERN__RPC__REPLY__INIT;
	struct rpc_conn *c = call->peer->conn;
	char text[RPC_METHOD_SHOW + 64];
	int r = 0;

	rep.id = call->id;
	f.body_case = TERN__RPC__FRAME__BODY_REPLY;
	f.reply = &rep;
	if (err == 0) {
		rep.result.data = call->result;
		rep.result.len = call->result_len;
		r = rpc_conn_send(c, &f, call->reply_fds, call->reply_nfds);
		if (r == 0)
			return;
		snprintf(text, sizeof(text), "reply of %s: %s", call->method,
			 strerror(-r));
		rep.result.data = NULL;
		rep.result.len = 0;
	}
	if (err > 0)
		err = -err;
	if (err < -4095)
		err = -EIO;
	err = err ? err : r;
	rep.status = -err;
	rep.message = r ? text : call->errmsg ? call->errmsg : strerror(-err);
	if (rpc_conn_send(c, &f, NULL, 0) < 0)
		peer_close(call->peer, -ENOMEM);
}

void rpc_call_finish(struct rpc_call *call, int err)
{
	if (call->peer->state != RPC_PEER_CLOSED)
		call_send_reply(call, err);
	call_free(call);
}
