/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The control RPC of every tern process (wire format in tern-rpc(7) and
 * proto/rpc.proto): length-prefixed protobuf frames on stream sockets,
 * requests that name a method of a protobuf service, replies with an
 * errno-style status and a message, events streamed before a reply, and
 * SCM_RIGHTS descriptors on unix sockets.
 *
 * Three layers, each usable alone:
 *  - rpc_conn: one socket's framing (nonblocking receive and a send queue)
 *    with every length, count and descriptor checked;
 *  - rpc_server: a libevent listener that dispatches requests to handlers
 *    by the services' protobuf-c descriptors;
 *  - rpc_client: a blocking client with timeouts, for CLIs and tests.
 * A peer's mistake closes that peer; the server itself never exits.
 */
#ifndef TERN_RPC_H
#define TERN_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <protobuf-c/protobuf-c.h>

#include "proto/rpc.pb-c.h"

#define RPC_FRAME_MAX_DEFAULT (1u << 20)  /* 1 MiB */
#define RPC_FRAME_MAX_LIMIT (64u << 20)   /* no cap may exceed 64 MiB */
#define RPC_MAX_FDS 16                    /* descriptors per frame */
#define RPC_LEN_BYTES 4

struct event_base;

/* ---- framing ------------------------------------------------------- */

struct rpc_conn;

/* Takes ownership of fd (made nonblocking).  max_frame 0 = default. */
int rpc_conn_new(int fd, uint32_t max_frame, struct rpc_conn **ret);
/* Closes the fd, any queued descriptors and received ones not taken. */
void rpc_conn_free(struct rpc_conn *c);
int rpc_conn_fd(const struct rpc_conn *c);
/* Whether the peer closed its end (or the connection broke), without
 * waiting or reading what is still buffered. */
bool rpc_conn_hung_up(const struct rpc_conn *c);
bool rpc_conn_is_unix(const struct rpc_conn *c);

/*
 * Read what the socket has.  Returns 1 with *ret_frame (free it with
 * tern__rpc__frame__free_unpacked(f, NULL)) and its descriptors in
 * fds[0..*ret_nfds) (caller owns them) when a whole frame is there; 0
 * when more bytes are needed (EAGAIN); -EPIPE on orderly EOF between
 * frames; -EMSGSIZE for a length over the cap; -EPROTO for a frame that
 * does not decode, has no body, or whose nfds disagrees with the
 * descriptors received; -EBADMSG for EOF inside a frame; other -errno
 * from the socket.  After an error the connection is unusable.
 * fds must have room for RPC_MAX_FDS.
 */
int rpc_conn_recv(struct rpc_conn *c, Tern__Rpc__Frame **ret_frame,
		  int *fds, size_t *ret_nfds);

/*
 * Queue a frame (f->nfds is set from nfds).  The descriptors are dup'ed;
 * the caller keeps its own.  -EMSGSIZE if the encoding exceeds the cap,
 * -EINVAL for descriptors on a non-unix socket or nfds > RPC_MAX_FDS.
 */
int rpc_conn_send(struct rpc_conn *c, Tern__Rpc__Frame *f, const int *fds,
		  size_t nfds);
/* Write queued bytes: 1 when the queue is empty, 0 on EAGAIN, -errno. */
int rpc_conn_flush(struct rpc_conn *c);
bool rpc_conn_pending(const struct rpc_conn *c);

/* Encode a frame into buf (for tests and fuzzing): bytes written or -errno. */
int rpc_frame_encode(const Tern__Rpc__Frame *f, uint8_t *buf, size_t len);

/* ---- server ------------------------------------------------------- */

struct rpc_server;
struct rpc_call;

/*
 * A method handler.  arg is the decoded input (never NULL), valid until
 * the call is finished.  Return:
 *  - 0: reply with the result given to rpc_call_reply(), or with an empty
 *    output message if none was given;
 *  - -errno: reply with that error and the text set by rpc_call_errorf()
 *    (or strerror when none);
 *  - RPC_DEFERRED: the handler keeps the call and finishes it later with
 *    rpc_call_reply()/rpc_call_fail() followed by rpc_call_finish().
 */
#define RPC_DEFERRED 1
typedef int (*rpc_method_fn)(struct rpc_call *call, const ProtobufCMessage *arg);

/* Called for each new peer; return <0 to refuse it (e.g. SO_PEERCRED). */
typedef int (*rpc_accept_fn)(void *ctx, int fd);

int rpc_server_new(struct event_base *base, struct rpc_server **ret);
void rpc_server_free(struct rpc_server *s);
/* Serve on a listening socket (takes ownership). */
int rpc_server_listen_fd(struct rpc_server *s, int listen_fd);
/* Serve one already-connected socket (takes ownership). */
int rpc_server_add_peer(struct rpc_server *s, int fd);
/*
 * handlers[i] serves desc->methods[i]; NULL entries answer ENOSYS.
 * ctx is what rpc_call_ctx() gives the handler.
 */
int rpc_server_add_service(struct rpc_server *s,
			   const ProtobufCServiceDescriptor *desc,
			   const rpc_method_fn *handlers, void *ctx);
/* A handler by method name, for rpc_server_bind_service. */
struct rpc_method_binding {
	const char *name;               /* desc->methods[i].name */
	rpc_method_fn fn;
};
/*
 * Like rpc_server_add_service with the handlers matched to the
 * descriptor's methods by name.  Every method must have one: -ENOENT
 * otherwise, with *ret_missing naming the first without (a program bug).
 */
int rpc_server_bind_service(struct rpc_server *s,
			    const ProtobufCServiceDescriptor *desc,
			    const struct rpc_method_binding *b, size_t n,
			    void *ctx, const char **ret_missing);
void rpc_server_set_accept(struct rpc_server *s, rpc_accept_fn fn, void *ctx);
/* An accept check: unix peers running as root or as this process's
 * effective uid (SO_PEERCRED); everyone else is refused, with a warning
 * in the log that names them (3 per 10 s, then a count, said with the
 * next refusal or once the 10 s are over). */
int rpc_accept_root_or_self(void *ctx, int fd);
/*
 * Called when the server cannot accept a new connection for want of a
 * resource (EMFILE, ENFILE, ENOBUFS, ENOMEM: the connection stays queued
 * and is retried), at most once every 10 s however often it happens; msg
 * says what failed and how many peers are connected, for the log.  How
 * many more failures came is said with the next, or once the 10 s are
 * over (and when the server is freed), whichever is first.
 */
typedef void (*rpc_overload_fn)(void *ctx, int err, const char *msg);
void rpc_server_set_overload(struct rpc_server *s, rpc_overload_fn fn,
			     void *ctx);
/* The one the daemons' control services take: "control: MSG", a warning
 * in the log (ctx and err unused). */
void rpc_overload_warn(void *ctx, int err, const char *msg);
/*
 * A peer that stalls is dropped: one owed output (a reply, an event) of
 * which the socket has taken no byte for the stall bound, or one that
 * began a frame and has sent no byte more of it for that long.  Either
 * holds up to a frame's worth of memory here for as long as it stays.
 * An idle peer, owed nothing and in no frame, is kept however long.
 * The program is told (for its log) of at most 3 drops per 10 s, the
 * others counted and said with the next, or once the 10 s are over (and
 * when the server is freed); msg names the peer and why.
 */
#define RPC_STALL_MS_DEFAULT 60000
typedef void (*rpc_drop_fn)(void *ctx, const char *msg);
void rpc_server_set_drop(struct rpc_server *s, rpc_drop_fn fn, void *ctx);
/* The one the daemons' control services take: "control: MSG", a warning
 * in the log (ctx unused). */
void rpc_drop_warn(void *ctx, const char *msg);
/* The stall bound, for tests (0: the default).  The daemons take 2 s
 * with the TERN_FAULT point control-stall-2s (fault.h). */
void rpc_server_set_stall(struct rpc_server *s, unsigned int ms);
void rpc_server_set_max_frame(struct rpc_server *s, uint32_t max_frame);
/* Peers currently connected (for tests). */
size_t rpc_server_npeers(const struct rpc_server *s);

void *rpc_call_ctx(const struct rpc_call *call);
const char *rpc_call_method(const struct rpc_call *call); /* "pkg.Svc/Method" */
/* Descriptors that came with the request; the handler may take them
 * (rpc_call_take_fd sets the slot to -1); the rest are closed after. */
size_t rpc_call_nfds(const struct rpc_call *call);
int rpc_call_take_fd(struct rpc_call *call, size_t i);
bool rpc_call_wants_events(const struct rpc_call *call);
/* The credentials of a unix peer (-ENOTSUP on tcp). */
int rpc_call_peercred(const struct rpc_call *call, struct ucred *ret);

/* Set the reply's result and descriptors (dup'ed).  Once per call. */
int rpc_call_reply(struct rpc_call *call, const ProtobufCMessage *result,
		   const int *fds, size_t nfds);
/* Set the error text; returns -err so handlers can `return rpc_call_errorf(...)`. */
int rpc_call_errorf(struct rpc_call *call, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Stream an event to the caller (only if it asked for events).  Events
 * are snapshots: a caller with a frame's worth of output still unread
 * misses them (-ENOBUFS) until it catches up.  -ENOTCONN: it is gone. */
int rpc_call_event(struct rpc_call *call, const char *name,
		   const ProtobufCMessage *data);
/* An event the handler must know is out before it goes on (the caller
 * asked for events, -EINVAL otherwise): 0 once it is in the socket, where
 * the caller reads it even if this process dies the next moment;
 * -EAGAIN when the caller is behind on its output (the event stays
 * queued), -ENOTCONN when it is gone. */
int rpc_call_event_now(struct rpc_call *call, const char *name,
		       const ProtobufCMessage *data);
/* The caller of a deferred call went away (closed, or broke the
 * protocol): its reply would go nowhere. */
bool rpc_call_gone(const struct rpc_call *call);
/* The caller's connection, as a number that no later connection to this
 * server gets; and whether that connection is still open. */
uint64_t rpc_call_peer(const struct rpc_call *call);
bool rpc_server_peer_open(const struct rpc_server *s, uint64_t id);
/* A copy of the caller's socket (CLOEXEC), or -errno: the caller sees its
 * end of the connection close only once this copy is closed too, even
 * after the server closed its own (a Quit answered at once, its caller
 * told of the exit by the end of the connection). */
int rpc_call_dup_socket(const struct rpc_call *call);
/* Deferred calls: send the reply (or err) and free the call.  A call whose
 * peer went away is finished silently. */
void rpc_call_finish(struct rpc_call *call, int err);

/* ---- client ------------------------------------------------------- */

struct rpc_client;

/* addr: "unix:/PATH", "tcp:HOST:PORT" or an absolute path.  */
int rpc_client_connect(const char *addr, int timeout_ms,
		       struct rpc_client **ret);
/* A unix socket's path as it is (relative to the working directory, or
 * absolute; -ENAMETOOLONG past sun_path). */
int rpc_client_connect_path(const char *path, int timeout_ms,
			    struct rpc_client **ret);
/* What a daemon (WHO, a string literal) refused by a vmm's socket mode
 * (EACCES) is told: the vmm runs as another user (vmm(8)). */
#define RPC_VMM_GROUP_HINT(who) "(a vmm of another user lets in the " \
	"members of its group: give " who " that group, vmm(8))"
/* Wrap an already connected socket (takes ownership). */
int rpc_client_from_fd(int fd, struct rpc_client **ret);
void rpc_client_free(struct rpc_client *cl);
/* The cap on frames this client receives (0 = default; -EINVAL above
 * RPC_FRAME_MAX_LIMIT), for methods with large results. */
int rpc_client_set_max_frame(struct rpc_client *cl, uint32_t max_frame);
/* Whether the server has closed its end (or the connection broke),
 * without waiting or reading: a peer that is gone, between calls. */
bool rpc_client_hung_up(const struct rpc_client *cl);
/* The server's pid (SO_PEERCRED, unix sockets), or -errno. */
int rpc_client_peer_pid(const struct rpc_client *cl);
/* The server's credentials (SO_PEERCRED, unix sockets), or -errno. */
int rpc_client_peer_cred(const struct rpc_client *cl, struct ucred *ret);
/* Wait until the server has closed its end (or the connection broke), at
 * most timeout_ms (<= 0: for ever): 0, -ETIMEDOUT or -errno.  Nothing is
 * read: anything it sends meanwhile is left unread. */
int rpc_client_wait_hangup(struct rpc_client *cl, int timeout_ms);

typedef void (*rpc_event_fn)(void *ctx, const char *name,
			     const uint8_t *data, size_t len);
/*
 * A call's silence: nothing (no event, no reply) has come for silent_ms.
 * 0 keeps waiting, asked again after idle_ms more; N > 0, again after N
 * ms; -errno ends the call with that error.
 */
typedef int (*rpc_idle_fn)(void *ctx, uint64_t silent_ms);
/* Call fn when a call hears nothing for idle_ms (0: never, the default);
 * for a call that waits without a deadline on a server that speaks
 * regularly (migctl's waits on migd's reports). */
void rpc_client_set_idle(struct rpc_client *cl, unsigned int idle_ms,
			 rpc_idle_fn fn, void *ctx);

struct rpc_result {
	int fds[RPC_MAX_FDS];   /* received descriptors; caller closes them */
	size_t nfds;
	char message[512];      /* the remote error text, or a local one
				 * (which does not name the method: the
				 * caller does, in its own words) */
	bool remote;            /* the service answered with an error */
};

/*
 * Call svc's method `method` (its short name, "Status").  On success
 * returns 0 and, when ret_msg is not NULL, the decoded output (free with
 * protobuf_c_message_free_unpacked).  A remote error returns -status
 * with res->message set; a local or transport error returns -errno with
 * res->message describing it.  timeout_ms <= 0 waits forever.  on_event
 * may be NULL; when set, events are requested and delivered to it.
 */
int rpc_client_call(struct rpc_client *cl,
		    const ProtobufCServiceDescriptor *svc, const char *method,
		    const ProtobufCMessage *arg, const int *fds, size_t nfds,
		    ProtobufCMessage **ret_msg, struct rpc_result *res,
		    int timeout_ms, rpc_event_fn on_event, void *ev_ctx);

void rpc_result_close_fds(struct rpc_result *res);

#endif
