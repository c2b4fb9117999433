/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Private to common/rpc*.c: helpers the framing, server and client share,
 * and the server's state, which rpc_server.c and rpc_accept.c share.  Not
 * part of the shared API.  Grouped by file.
 */
#ifndef TERN_RPC_PRIV_H
#define TERN_RPC_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>

#include "common/ratelim.h"
#include "common/rpc.h"

/* rpc.c: the framing */
/* Close n descriptors (those >= 0) and set them to -1. */
void rpc_fds_close(int *fds, size_t n);
/* Duplicate n descriptors (CLOEXEC) into dst; all or nothing. */
int rpc_fds_dup(const int *src, size_t n, int *dst);
/* Pack msg into a new buffer (NULL msg: empty, *ret_buf NULL). */
int rpc_msg_pack(const ProtobufCMessage *msg, uint8_t **ret_buf,
		 size_t *ret_len);

/* Bytes queued and not yet written. */
size_t rpc_conn_out_bytes(const struct rpc_conn *c);
/* Bytes taken from the socket, and given to it, since the connection began. */
uint64_t rpc_conn_total_in(const struct rpc_conn *c);
uint64_t rpc_conn_total_out(const struct rpc_conn *c);
/* What the peer sent that made receiving fail (-EMSGSIZE, -EBADMSG,
 * -EPROTO), as the object of "it sent"; "" otherwise. */
const char *rpc_conn_why(const struct rpc_conn *c);
/* Bytes of a frame begun and not yet whole (prefix included; 0 between
 * frames), and in *ret_len its length once the prefix is in (else 0). */
size_t rpc_conn_in_partial(const struct rpc_conn *c, uint32_t *ret_len);
uint32_t rpc_conn_max_frame(const struct rpc_conn *c);
/* max_frame must be 1..RPC_FRAME_MAX_LIMIT. */
void rpc_conn_set_max_frame(struct rpc_conn *c, uint32_t max_frame);

/* rpc_server.c and rpc_accept.c: the server's state */
#define RPC_READ_BATCH 32       /* frames read per wake-up, for fairness */
#define RPC_OVERLOAD_TELL_NS (10 * 1000000000ull) /* told at most this often */

struct event;
struct rpc_peer;                /* rpc_server.c's own */
struct rpc_service;             /* rpc_server.c's own */

struct rpc_listener {
	struct rpc_listener *next;
	struct rpc_server *s;
	int fd;
	struct event *ev;
};

struct rpc_server {
	struct event_base *base;
	struct rpc_service *services;
	struct rpc_listener *listeners;
	struct rpc_peer *peers;
	size_t npeers;
	uint64_t peer_ids;              /* the last id given */
	uint32_t max_frame;
	rpc_accept_fn accept_fn;
	void *accept_ctx;
	struct event *ev_accept_retry;  /* listeners paused while pending */
	rpc_overload_fn overload_fn;
	void *overload_ctx;
	struct ratelim overload_lim;    /* told at most once per RPC_OVERLOAD_TELL_NS */
	int overload_err;               /* the last failure's, for its count */
	struct timeval stall;           /* the stall bound */
	rpc_drop_fn drop_fn;
	void *drop_ctx;
	struct ratelim drop_lim;        /* RPC_DROPS_TOLD per 10 s */
	struct event *ev_held;          /* the counts held back, told when due */
};

/* rpc_server.c: peers, their frames and calls */
/* Serve the connection on fd (taken: closed on failure). */
int rpc_peer_new(struct rpc_server *s, int fd);

/* rpc_accept.c: the listening sockets, who may connect, the notes */
/* A descriptor is free again: accept again if it was paused. */
void rpc_server_resume_accept(struct rpc_server *s);
/* Set the timer for the first count held back that falls due. */
void rpc_server_watch_held(struct rpc_server *s);
/* Tell the counts held back that are due (all: every one, at the end). */
void rpc_server_tell_held(struct rpc_server *s, bool all);

#endif
