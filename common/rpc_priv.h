/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Private to common/rpc*.c: helpers the framing, server and client share.
 * Not part of the shared API.
 */
#ifndef TERN_RPC_PRIV_H
#define TERN_RPC_PRIV_H

#include <stddef.h>
#include <stdint.h>

#include "common/rpc.h"

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
/* Bytes of a frame begun and not yet whole (prefix included; 0 between
 * frames), and in *ret_len its length once the prefix is in (else 0). */
size_t rpc_conn_in_partial(const struct rpc_conn *c, uint32_t *ret_len);
uint32_t rpc_conn_max_frame(const struct rpc_conn *c);
/* max_frame must be 1..RPC_FRAME_MAX_LIMIT. */
void rpc_conn_set_max_frame(struct rpc_conn *c, uint32_t max_frame);

#endif
