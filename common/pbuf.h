/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Decoding a protobuf message that came from a socket or a file, with a
 * bound on the memory the decoding may hold (see pbuf.c for why).
 */
#ifndef TERN_PBUF_H
#define TERN_PBUF_H

#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

/* The most a message of len bytes may hold in memory while decoded. */
#define PBUF_BUDGET(len) (4 * (uint64_t)(len) + (1u << 20))

/*
 * len bytes as a message of desc: NULL if they do not decode, would
 * take more than PBUF_BUDGET(len), or hold a string with a NUL in it.
 * Free the result as any unpacked message
 * (protobuf_c_message_free_unpacked with no allocator, or the generated
 * __free_unpacked(m, NULL)).
 */
ProtobufCMessage *pbuf_unpack(const ProtobufCMessageDescriptor *desc,
			      size_t len, const uint8_t *data);

#endif
