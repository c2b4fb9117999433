/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * vmmctl: the vmm's command-line client, a separate program from the vmm
 * (it links none of the vmm's objects, only common/).  This header is
 * the program's table of contents, by file.
 *
 * main() (vmmctl.c) checks every argument before connecting, opens a
 * connection to the vmm (vmmctl_conn.c), or two for a transfer, and
 * runs the command: on one vmm (vmmctl_cmd.c), or a transfer from one
 * to another (vmmctl_transfer.c).
 */
#ifndef VMMCTL_H
#define VMMCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cli.h"
#include "common/memcheck.h"
#include "common/rpc.h"
#include "proto/vmm.pb-c.h"

/* vmmctl.c: the command line, main */
extern struct cli_globals vmmctl_opts;

/* vmmctl_conn.c: a connection to one vmm, its calls, its status */
struct vmm_conn {
	const char *name;
	struct rpc_client *cl;
	int pid;                        /* conn_watch: the vmm's pid, or 0 */
	int pidfd;                      /* and its pidfd, or -1 */
};
int conn_open(struct vmm_conn *c, const char *name);
void conn_close(struct vmm_conn *c);
int conn_pidfd(const struct vmm_conn *c, int *ret_pid);
void conn_watch(struct vmm_conn *c);
void conn_watch_confirm(struct vmm_conn *c, const Tern__Vmm__VmmStatus *s);
bool conn_gone(struct vmm_conn *c);
int conn_call_ev(struct vmm_conn *c, const char *method,
		 const ProtobufCMessage *arg, const int *fds, size_t nfds,
		 ProtobufCMessage **ret_msg, struct rpc_result *ret_res,
		 rpc_event_fn on_event, void *ev_ctx);
int conn_call(struct vmm_conn *c, const char *method, const ProtobufCMessage *arg,
	      const int *fds, size_t nfds, ProtobufCMessage **ret_msg,
	      struct rpc_result *ret_res);
const char *run_state_name(Tern__Vmm__RunState s);
int conn_get_status(struct vmm_conn *c, Tern__Vmm__VmmStatus **ret);

/* vmmctl_cmd.c: the commands on one vmm; what a transfer shares of them */
int cmd_simple(struct vmm_conn *c, const char *method);
int cmd_cont_force(struct vmm_conn *c);
int quit_vmm(struct vmm_conn *c, bool force);
int cmd_quit(struct vmm_conn *c, bool force);
int cmd_save(struct vmm_conn *c, const char *path);
int cmd_load(struct vmm_conn *c, const char *path);
struct ram_map {
	struct memcheck_view view;
	int fds[MEMCHECK_MAX_REGIONS];
};
void ram_unmap(struct ram_map *m);
int ram_map(struct vmm_conn *c, struct ram_map *m, bool rw,
	    Tern__Vmm__RamLayout **ret_layout);
int pause_for_view(struct vmm_conn *c, bool intent, bool *was_running);
int cmd_check(struct vmm_conn *c);
int cmd_read(struct vmm_conn *c, uint64_t gpa, uint64_t len);
int cmd_write(struct vmm_conn *c, uint64_t gpa, uint8_t *buf, size_t len,
	      bool force);
int cmd_dirty_rate(struct vmm_conn *c, unsigned int seconds);
int cmd_throttle(struct vmm_conn *c, uint64_t percent);

/* vmmctl_transfer.c: move a guest to an incoming vmm on this host */
int cmd_transfer(struct vmm_conn *src, struct vmm_conn *dst, bool copy);

#endif
