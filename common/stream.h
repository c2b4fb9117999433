/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The migration stream's binary parts (tern-migration(7)), shared by the
 * source and destination migd workers.  All integers little-endian.
 *
 * Every connection to a destination starts with a struct stream_hello
 * (72 bytes) from the source; the destination answers with a 4-byte
 * status (0 or a positive errno) and closes the connection on anything
 * but 0.  Nothing else is read before a valid hello.
 *
 * The main connection then carries length-prefixed tern.stream.StreamMsg
 * messages (stream_msg_send/recv).  A ram connection carries packets: a
 * struct stream_pkt, npages 8-byte page offsets within the region, then
 * data_len bytes of page data (none for zero pages; with STREAM_PKT_ZSTD
 * one zstd frame that decodes to exactly the pages).  The last packet on
 * a ram connection has STREAM_PKT_END set and carries no pages.
 */
#ifndef TERN_STREAM_H
#define TERN_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

#define STREAM_MAGIC "TERNMIG1"
#define STREAM_VERSION 3               /* 2: packets carry a checksum;
					 * 3: Settle before the stop */
#define STREAM_ID_LEN 16
#define STREAM_TOKEN_LEN 16
#define STREAM_TOKEN_HEX (2 * STREAM_TOKEN_LEN)
#define STREAM_PAGE 4096u
#define STREAM_MAX_BATCH 128u           /* pages per packet */
#define STREAM_MAX_CHANNELS 16u
#define STREAM_MAX_REGIONS 4u
#define STREAM_MSG_MAX (64u << 20)
#define STREAM_PKT_MAGIC 0x504d5254u    /* "TRMP" */
#define STREAM_PAGE_REQ_MAX 64u         /* pages per PageRequest */
#define STREAM_PAGE_MSG_MAX (STREAM_PAGE_REQ_MAX * STREAM_PAGE + 4096u)
#define STREAM_MAX_ERRNO 4095u         /* a hello's answer: 0 or an errno */

enum stream_role {
	STREAM_ROLE_MAIN = 1,
	STREAM_ROLE_RAM = 2,
	STREAM_ROLE_PAGE = 3,           /* postcopy page link (PageMsg frames) */
	STREAM_ROLE_MAX
};

struct stream_hello {
	uint8_t magic[8];
	uint32_t version;
	uint32_t role;
	uint32_t index;                 /* ram channel number, from 0 */
	uint32_t reserved;
	uint8_t id[STREAM_ID_LEN];      /* migration id, chosen by the source */
	uint8_t token[STREAM_TOKEN_LEN];
	uint8_t pad[16];
};

enum stream_pkt_flags {
	STREAM_PKT_ZERO = 1 << 0,       /* pages are zero: offsets only */
	STREAM_PKT_END = 1 << 1,        /* last packet on this channel */
	STREAM_PKT_ZSTD = 1 << 2,       /* data is one zstd frame of the pages,
					 * shorter than the pages themselves */
	STREAM_PKT_POSTCOPY = 1 << 3,   /* marker, no pages: everything after
					 * it on this channel is pushed in
					 * postcopy (placed with UFFDIO_COPY) */
	STREAM_PKT_NOP = 1 << 4,        /* keepalive of an idle channel: no
					 * pages, nothing to do */
	STREAM_PKT_FLAGS_ALL = (1 << 5) - 1,
};

struct stream_pkt {
	uint32_t magic;
	uint16_t flags;
	uint16_t region;
	uint32_t npages;
	uint32_t data_len;
	uint64_t seq;                   /* packets before this one on the channel */
	uint64_t sum;                   /* stream_pkt_sum of the packet */
};

_Static_assert(sizeof(struct stream_hello) == 72, "hello is 72 bytes");
_Static_assert(sizeof(struct stream_pkt) == 32, "packet header is 32 bytes");

/* What a destination accepts: sizes of the announced regions. */
struct stream_layout {
	unsigned int nregions;
	uint64_t size[STREAM_MAX_REGIONS];
};

void stream_hello_init(struct stream_hello *h, enum stream_role role,
		       uint32_t index, const uint8_t *id, const uint8_t *token);
/*
 * Check a received hello against the expected token (constant time).
 * 0, or -EPROTO (not our protocol, with why), -EACCES (token mismatch),
 * -EINVAL (unknown role).  Converts the fields to host order in place.
 */
int stream_hello_check(struct stream_hello *h, const uint8_t *token,
		       const char **why);

/* Convert a header to wire order (in place) for sending. */
void stream_pkt_to_wire(struct stream_pkt *p);
/*
 * Convert a received header to host order and check it against the
 * layout: magic, flags, region, npages <= STREAM_MAX_BATCH, data_len
 * exactly npages pages (0 for zero and end packets), seq as expected.
 * 0 or -EPROTO with *why set.
 */
int stream_pkt_check(struct stream_pkt *p, const struct stream_layout *lay,
		     uint64_t expect_seq, const char **why);
/*
 * A packet's checksum covers its header (in wire order, with sum = 0:
 * stream_sum_start) and its page offsets (stream_sum_add), so that a
 * damaged packet can neither put a page at another address nor be taken
 * for another packet.  The page data is not covered: it is sent from
 * live guest memory, which may change between a sum and the send; the
 * job's verify parameter checks it end to end.  A 64-bit hash, not a
 * cryptographic one: it finds damage, not an attacker.
 */
uint64_t stream_sum_start(const struct stream_pkt *wire_hdr);
uint64_t stream_sum_add(uint64_t sum, const void *buf, size_t len);

/* Check one page offset of a packet (host order after the call). */
int stream_offset_check(uint64_t *off, const struct stream_layout *lay,
			unsigned int region);

/* The end of the run of adjacent page offsets that starts at off[i]
 * (i < n): the first j > i with off[j] != off[j - 1] + STREAM_PAGE, or n. */
uint32_t stream_run_end(const uint64_t *off, uint32_t i, uint32_t n);

/* A peer's error code (Refuse.err): itself when it is an errno, else
 * EPROTO (0, negative, or past STREAM_MAX_ERRNO). */
int stream_peer_errno(int32_t err);

/* Tokens: 16 random bytes, shown as 32 lowercase hex digits. */
int stream_token_new(uint8_t *token);
void stream_hex(const uint8_t *bin, size_t len, char *out);
int stream_unhex(const char *hex, uint8_t *out, size_t len);

/*
 * Blocking, length-prefixed protobuf messages on a stream socket with a
 * deadline (monotonic ns, 0 = none).  recv refuses lengths over max
 * before allocating (-EMSGSIZE), undecodable bodies (-EPROTO), EOF
 * (-EPIPE between messages, -EBADMSG inside one), -ETIMEDOUT.
 */
int stream_msg_send(int fd, const ProtobufCMessage *m, uint64_t deadline_ns);
int stream_msg_recv(int fd, const ProtobufCMessageDescriptor *desc,
		    uint32_t max, uint64_t deadline_ns, ProtobufCMessage **ret);

/* Exactly len bytes, or -errno (-EPIPE on EOF at the start, -EBADMSG
 * on EOF after some bytes), honouring a deadline as above; without one,
 * a socket timeout (SO_RCVTIMEO, SO_SNDTIMEO) gives -ETIMEDOUT. */
int stream_read_full(int fd, void *buf, size_t len, uint64_t deadline_ns);
int stream_write_full(int fd, const void *buf, size_t len, uint64_t deadline_ns);

#endif
