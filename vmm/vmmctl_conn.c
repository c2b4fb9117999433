// SPDX-License-Identifier: GPL-2.0-only
/*
 * vmmctl: the connection to one vmm.  Opening it (what is wrong, said),
 * watching the vmm's process through a pidfd so that a transfer can tell
 * whether it has exited, one call with its error said, and the vmm's
 * status.  main() (vmmctl.c) opens and closes connections; the commands
 * (vmmctl_cmd.c, vmmctl_transfer.c) call through them.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/cli.h"
#include "common/rpc.h"
#include "common/util.h"
#include "proto/vmm.pb-c.h"
#include "vmm/vmmctl.h"

#define CTL_MAX_FRAME (4u << 20)

int conn_open(struct vmm_conn *c, const char *name)
{
	char path[PATH_MAX];
	struct stat st;
	int ret;

	c->name = name;
	c->cl = NULL;
	c->pid = 0;
	c->pidfd = -1;
	snprintf(path, sizeof(path), "%s/vmm/%s.sock", vmmctl_opts.rundir, name);
	if (stat(path, &st) < 0 && errno == ENOENT) {
		cli_errx("vmm %s is not running (no socket %s)", name, path);
		return -ENOENT;
	}
	ret = rpc_client_connect_path(path, vmmctl_opts.timeout_ms, &c->cl);
	if (ret == -ECONNREFUSED) {
		/* A socket file nobody listens on: its vmm ended without
		 * removing it (killed). */
		cli_errx("vmm %s is not running (nobody listens on %s)", name, path);
		return ret;
	}
	if (ret < 0) {
		cli_errx("vmm %s: cannot connect to %s: %s%s", name, path,
			 strerror(-ret), cli_refused_hint(ret, true));
		return ret;
	}
	rpc_client_set_max_frame(c->cl, CTL_MAX_FRAME);
	return 0;
}

void conn_close(struct vmm_conn *c)
{
	if (c->cl)
		rpc_client_free(c->cl);
	c->cl = NULL;
	if (c->pidfd >= 0)
		close(c->pidfd);
	c->pidfd = -1;
}

/*
 * Take a pidfd of the vmm's process (SO_PEERCRED), so that conn_gone can
 * tell later whether it has exited.  A pid may be reused: the pidfd is
 * that vmm's only once the vmm answers, after it was taken, with that
 * pid (conn_watch_confirm); until then, or without one, nothing is
 * ever taken for gone.
 */
/* A pidfd of the process on the other end (SO_PEERCRED), its pid in
 * *ret_pid; -1 if there is none to have. */
int conn_pidfd(const struct vmm_conn *c, int *ret_pid)
{
	int pid = rpc_client_peer_pid(c->cl);

	if (pid <= 0)
		return -1;
	*ret_pid = pid;
	return (int)syscall(SYS_pidfd_open, pid, 0);  /* CLOEXEC always */
}

void conn_watch(struct vmm_conn *c)
{
	int pid;

	c->pidfd = conn_pidfd(c, &pid);
	if (c->pidfd >= 0)
		c->pid = pid;
}

/* The vmm answered s after conn_watch: keep the pidfd if it is its. */
void conn_watch_confirm(struct vmm_conn *c, const Tern__Vmm__VmmStatus *s)
{
	if (c->pidfd >= 0 && s->pid == (uint32_t)c->pid)
		return;
	if (c->pidfd >= 0)
		close(c->pidfd);
	c->pidfd = -1;
	c->pid = 0;
}

/*
 * Whether the vmm's process has exited: then it runs no guest and holds
 * nothing it was sent.  Its connection closes as it exits, a moment
 * before its pidfd reads: once closed, it is given the timeout to end.
 * A vmm that is still connected, or that we cannot watch, is not gone.
 */
bool conn_gone(struct vmm_conn *c)
{
	struct pollfd p = { c->pidfd, POLLIN, 0 };

	if (c->pidfd < 0)
		return false;
	if (!rpc_client_hung_up(c->cl))
		return poll(&p, 1, 0) == 1;
	return poll_until(&p, 1, vmmctl_opts.timeout_ms > 0 ?
			  deadline_ms(vmmctl_opts.timeout_ms) : 0) >= 0;
}

/* One call; prints the error (remote text included) and returns -errno.
 * on_event, when not NULL, takes the events of the call. */
int conn_call_ev(struct vmm_conn *c, const char *method,
		 const ProtobufCMessage *arg, const int *fds, size_t nfds,
		 ProtobufCMessage **ret_msg, struct rpc_result *ret_res,
		 rpc_event_fn on_event, void *ev_ctx)
{
	struct rpc_result res;
	int ret;

	ret = rpc_client_call(c->cl, &tern__vmm__vmm__descriptor, method,
			      arg, fds, nfds, ret_msg, &res,
			      vmmctl_opts.timeout_ms, on_event, ev_ctx);
	if (ret < 0)
		cli_errx("vmm %s: %s: %s%s", c->name, method,
			 res.message[0] ? res.message : strerror(-ret),
			 cli_call_hint(ret, res.remote, rpc_client_peer_pid(c->cl),
				       true));
	if (ret_res)
		*ret_res = res;
	else
		rpc_result_close_fds(&res);
	return ret;
}

int conn_call(struct vmm_conn *c, const char *method, const ProtobufCMessage *arg,
	      const int *fds, size_t nfds, ProtobufCMessage **ret_msg,
	      struct rpc_result *ret_res)
{
	return conn_call_ev(c, method, arg, fds, nfds, ret_msg, ret_res, NULL, NULL);
}

const char *run_state_name(Tern__Vmm__RunState s)
{
	static const char *const names[] = {
		"none", "incoming", "running", "paused", "shutdown", "error",
	};

	return (unsigned int)s < ARRAY_SIZE(names) ? names[s] : "unknown";
}

int conn_get_status(struct vmm_conn *c, Tern__Vmm__VmmStatus **ret)
{
	return conn_call(c, "Status", NULL, NULL, 0, (ProtobufCMessage **)ret, NULL);
}
