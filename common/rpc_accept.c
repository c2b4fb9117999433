// SPDX-License-Identifier: GPL-2.0-only
/*
 * The control RPC server's door (see rpc.h): its listening sockets,
 * accepting in batches and pausing while out of descriptors, who may
 * connect (rpc_accept_root_or_self), and what is said of callers it
 * could not serve, a few per window and the rest counted: accept
 * failures and peers dropped for stalling (rpc_server.c drops them),
 * told to the program, refused connections, logged, and the counts held
 * back, told once due.  Called by the vmm, migd and faultd setting up
 * their control sockets, and by rpc_server.c: a peer gone, a peer
 * dropped, the server freed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <event2/event.h>

#include "common/log.h"
#include "common/ratelim.h"
#include "common/rpc.h"
#include "common/rpc_priv.h"
#include "common/util.h"

#define RPC_ACCEPT_RETRY_MS 100 /* out of descriptors: try accepting again */

/* rpc_accept_root_or_self's: one per process, as its control server is. */
static struct ratelim refusals_lim;

void rpc_server_resume_accept(struct rpc_server *s)
{
	struct rpc_listener *l;

	if (!s->ev_accept_retry || !evtimer_pending(s->ev_accept_retry, NULL))
		return;
	evtimer_del(s->ev_accept_retry);
	for (l = s->listeners; l; l = l->next)
		event_add(l->ev, NULL);
}

static void handle_accept_retry(evutil_socket_t fd, short what, void *arg)
{
	struct rpc_server *s = arg;
	struct rpc_listener *l;

	for (l = s->listeners; l; l = l->next)
		event_add(l->ev, NULL);
}

/*
 * Out of descriptors or memory: the pending connection stays queued and
 * the level-triggered listeners would fire again at once, spinning the
 * loop.  Stop watching them until a peer leaves or a little time passed.
 */
static void server_pause_accept(struct rpc_server *s)
{
	const struct timeval tv = { 0, RPC_ACCEPT_RETRY_MS * 1000 };
	struct rpc_listener *l;

	if (!s->ev_accept_retry) {
		s->ev_accept_retry = evtimer_new(s->base, handle_accept_retry, s);
		if (!s->ev_accept_retry)
			return;
	}
	for (l = s->listeners; l; l = l->next)
		event_del(l->ev);
	evtimer_add(s->ev_accept_retry, &tv);
}

/*
 * Tell the program (which logs it: nothing here does) that callers wait
 * because accept failed, at most once per RPC_OVERLOAD_TELL_NS however
 * often it fails: a caller that only hangs until its timeout cannot
 * know why, and the operator would find nothing in the log.
 */
static void server_tell_overload(struct rpc_server *s, int err)
{
	struct rlimit rl;
	char lim[64] = "", again[64] = "";
	char msg[320];
	unsigned int held;

	if (!s->overload_fn)
		return;
	s->overload_err = err;
	if (!ratelim_take(&s->overload_lim, now_ns(), RPC_OVERLOAD_TELL_NS, 1,
			  &held)) {
		rpc_server_watch_held(s);
		return;
	}
	if ((err == EMFILE || err == ENFILE) &&
	    getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		snprintf(lim, sizeof(lim), "; this process may have %llu "
			 "descriptors open",
			 (unsigned long long)rl.rlim_cur);
	if (held)
		snprintf(again, sizeof(again), " (%u more failures since this "
			 "was last said)", held);
	snprintf(msg, sizeof(msg), "cannot accept new callers: %s (%zu "
		 "connected%s); they wait, and are served once some leave%s",
		 strerror(err), s->npeers, lim, again);
	s->overload_fn(s->overload_ctx, err, msg);
}

static void refusals_say(unsigned int n);

/*
 * What was held back (peers dropped, accept failures, refusals) is told
 * once its window has ended, if no later note has told it by then: a
 * burst followed by silence would otherwise never be counted.  With
 * all, what is held in a window still under way too (at the end).
 */
void rpc_server_tell_held(struct rpc_server *s, bool all)
{
	uint64_t now = now_ns();
	char msg[200];
	unsigned int n;

	n = all ? ratelim_flush(&s->drop_lim) :
		  ratelim_due(&s->drop_lim, now, RPC_OVERLOAD_TELL_NS);
	if (n && s->drop_fn) {
		snprintf(msg, sizeof(msg), "dropped %u more peer%s "
			 "since the last one said, not said one by one", n,
			 n == 1 ? "" : "s");
		s->drop_fn(s->drop_ctx, msg);
	}
	n = all ? ratelim_flush(&s->overload_lim) :
		  ratelim_due(&s->overload_lim, now, RPC_OVERLOAD_TELL_NS);
	if (n && s->overload_fn) {
		snprintf(msg, sizeof(msg), "cannot accept new callers: %u more "
			 "failure%s since this was last said (the last: %s)", n,
			 n == 1 ? "" : "s", strerror(s->overload_err));
		s->overload_fn(s->overload_ctx, s->overload_err, msg);
	}
	refusals_say(all ? ratelim_flush(&refusals_lim) :
		     ratelim_due(&refusals_lim, now, RPC_OVERLOAD_TELL_NS));
}

static void handle_held(evutil_socket_t fd, short what, void *arg)
{
	struct rpc_server *s = arg;

	rpc_server_tell_held(s, false);
	rpc_server_watch_held(s);
}

/* Something was held back: the timer is set for the first count due. */
void rpc_server_watch_held(struct rpc_server *s)
{
	const uint64_t w = RPC_OVERLOAD_TELL_NS, now = now_ns();
	uint64_t drops = ratelim_due_in(&s->drop_lim, now, w);
	uint64_t fails = ratelim_due_in(&s->overload_lim, now, w);
	uint64_t refused = ratelim_due_in(&refusals_lim, now, w);
	uint64_t in = MIN(MIN(drops, fails), refused);
	struct timeval tv;

	if (in == UINT64_MAX)
		return;
	if (!s->ev_held) {
		s->ev_held = evtimer_new(s->base, handle_held, s);
		if (!s->ev_held)
			return;
	}
	in = (in + 999) / 1000;         /* us, never early */
	tv.tv_sec = (time_t)(in / 1000000);
	tv.tv_usec = (suseconds_t)(in % 1000000);
	evtimer_add(s->ev_held, &tv);
}

static void handle_accept(evutil_socket_t lfd, short what, void *arg)
{
	struct rpc_listener *l = arg;
	struct rpc_server *s = l->s;
	int fd, i, r;

	for (i = 0; i < RPC_READ_BATCH; i++) {
		fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
		r = fd < 0 ? errno : 0;
		if (r == EINTR || r == ECONNABORTED)
			continue;
		if (r) {
			if (r == EMFILE || r == ENFILE || r == ENOBUFS ||
			    r == ENOMEM) {
				server_pause_accept(s);
				server_tell_overload(s, r);
			}
			if (r != EAGAIN)
				log_debug("rpc: accept: %s", strerror(r));
			return;
		}
		if (s->accept_fn && s->accept_fn(s->accept_ctx, fd) < 0) {
			close(fd);
			rpc_server_watch_held(s);   /* refusals it counted */
			continue;
		}
		r = rpc_peer_new(s, fd);
		if (r < 0)
			log_debug("rpc: new peer: %s", strerror(-r));
	}
}

int rpc_server_listen_fd(struct rpc_server *s, int listen_fd)
{
	struct rpc_listener *l;
	int fl, r = -ENOMEM;

	fl = fcntl(listen_fd, F_GETFL);
	if (fl < 0 || fcntl(listen_fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
	    fcntl(listen_fd, F_SETFD, FD_CLOEXEC) < 0) {
		r = -errno;
		goto fail;
	}
	l = calloc(1, sizeof(*l));
	if (!l)
		goto fail;
	l->ev = event_new(s->base, listen_fd, EV_READ | EV_PERSIST,
			  handle_accept, l);
	if (!l->ev || event_add(l->ev, NULL) < 0)
		goto fail_listener;
	l->s = s;
	l->fd = listen_fd;
	l->next = s->listeners;
	s->listeners = l;
	return 0;
fail_listener:
	if (l->ev)
		event_free(l->ev);
	free(l);
fail:
	close(listen_fd);
	return r;
}

void rpc_overload_warn(void *ctx, int err, const char *msg)
{
	(void)ctx;
	(void)err;
	log_warnx("control: %s", msg);
}

/* Only members of the socket's group reach this far, but they may
 * knock as often as they like: a few lines per window, then a count. */
#define RPC_REFUSALS_LOGGED 3

static void refusals_say(unsigned int n)
{
	if (n)
		log_warnx("control: refused %u more connection%s of other users "
			  "since the last one logged, not logged one by one",
			  n, n == 1 ? "" : "s");
}

int rpc_accept_root_or_self(void *ctx, int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	unsigned int held;
	bool say;

	(void)ctx;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return -errno;
	if (cred.uid == 0 || cred.uid == geteuid())
		return 0;
	say = ratelim_take(&refusals_lim, now_ns(), RPC_OVERLOAD_TELL_NS,
			   RPC_REFUSALS_LOGGED, &held);
	refusals_say(held);
	if (say)
		log_warnx("control: refused a connection from uid %u (pid %d)%s",
			  (unsigned int)cred.uid, (int)cred.pid,
			  refusals_lim.said == RPC_REFUSALS_LOGGED ? " (more in "
			  "the next 10 s are counted, not logged)" : "");
	return -EPERM;
}

void rpc_server_set_accept(struct rpc_server *s, rpc_accept_fn fn, void *ctx)
{
	s->accept_fn = fn;
	s->accept_ctx = ctx;
}

void rpc_server_set_overload(struct rpc_server *s, rpc_overload_fn fn,
			     void *ctx)
{
	s->overload_fn = fn;
	s->overload_ctx = ctx;
}

void rpc_server_set_drop(struct rpc_server *s, rpc_drop_fn fn, void *ctx)
{
	s->drop_fn = fn;
	s->drop_ctx = ctx;
}

void rpc_drop_warn(void *ctx, const char *msg)
{
	(void)ctx;
	log_warnx("control: %s", msg);
}
