// SPDX-License-Identifier: GPL-2.0-only
/*
 * Unit tests for the migration stream codec: hellos, packet headers and
 * page offsets from a peer are refused unless exactly right; framed
 * messages survive a socketpair and refuse oversize, truncated and
 * undecodable input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <endian.h>
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/stream.h"
#include "common/util.h"
#include "proto/stream.pb-c.h"

static const uint8_t token[STREAM_TOKEN_LEN] = "0123456789abcdef";
static const uint8_t id[STREAM_ID_LEN] = "fedcba9876543210";
static const struct stream_layout layout = { 2, { 1u << 20, 8192 } };

static void test_hello_round_trip(void **state)
{
	struct stream_hello h;
	const char *why = NULL;

	stream_hello_init(&h, STREAM_ROLE_RAM, 3, id, token);
	assert_int_equal(stream_hello_check(&h, token, &why), 0);
	assert_int_equal(h.role, STREAM_ROLE_RAM);
	assert_int_equal(h.index, 3);
	assert_memory_equal(h.id, id, STREAM_ID_LEN);
}

static void test_hello_refusals(void **state)
{
	uint8_t other[STREAM_TOKEN_LEN];
	struct stream_hello h;
	const char *why;

	stream_hello_init(&h, STREAM_ROLE_MAIN, 0, id, token);
	h.magic[0] = 'X';
	assert_int_equal(stream_hello_check(&h, token, &why), -EPROTO);
	assert_string_equal(why, "not a tern migration stream");

	stream_hello_init(&h, STREAM_ROLE_MAIN, 0, id, token);
	h.version = htole32(STREAM_VERSION + 1);
	assert_int_equal(stream_hello_check(&h, token, &why), -EPROTO);

	memcpy(other, token, sizeof(other));
	other[15] ^= 1;
	stream_hello_init(&h, STREAM_ROLE_MAIN, 0, id, other);
	assert_int_equal(stream_hello_check(&h, token, &why), -EACCES);
	assert_string_equal(why, "token mismatch");

	stream_hello_init(&h, 7, 0, id, token);
	assert_int_equal(stream_hello_check(&h, token, &why), -EINVAL);

	/* Reserved and padding must be 0 (before: taken as they came). */
	stream_hello_init(&h, STREAM_ROLE_MAIN, 0, id, token);
	h.reserved = htole32(7);
	assert_int_equal(stream_hello_check(&h, token, &why), -EPROTO);
	assert_string_equal(why, "reserved bytes are not 0");
	stream_hello_init(&h, STREAM_ROLE_MAIN, 0, id, token);
	h.pad[15] = 1;
	assert_int_equal(stream_hello_check(&h, token, &why), -EPROTO);
	assert_string_equal(why, "reserved bytes are not 0");
}

static struct stream_pkt pkt(uint16_t flags, uint16_t region, uint32_t n,
			     uint32_t len, uint64_t seq)
{
	struct stream_pkt p = { STREAM_PKT_MAGIC, flags, region, n, len, seq, 0 };

	stream_pkt_to_wire(&p);
	return p;
}

/* The packet sum: the same bytes give the same sum, any flipped bit or
 * a swap of two pieces another; the header's own sum field is left out. */
static void test_packet_sum(void **state)
{
	struct stream_pkt p = pkt(0, 0, 2, 2 * STREAM_PAGE, 3);
	static uint8_t page[2][STREAM_PAGE];
	uint64_t off[2] = { 0, STREAM_PAGE }, s1, s2;
	unsigned int bit;

	memset(page[0], 0xa5, STREAM_PAGE);
	s1 = stream_sum_add(stream_sum_add(stream_sum_add(stream_sum_start(&p),
			    off, sizeof(off)), page[0], STREAM_PAGE), page[1],
			    STREAM_PAGE);
	p.sum = 12345;
	s2 = stream_sum_add(stream_sum_add(stream_sum_add(stream_sum_start(&p),
			    off, sizeof(off)), page[0], STREAM_PAGE), page[1],
			    STREAM_PAGE);
	assert_true(s1 == s2);
	s2 = stream_sum_add(stream_sum_add(stream_sum_add(stream_sum_start(&p),
			    off, sizeof(off)), page[1], STREAM_PAGE), page[0],
			    STREAM_PAGE);
	assert_true(s1 != s2);
	for (bit = 0; bit < 8 * STREAM_PAGE; bit += 997) {
		page[1][bit / 8] ^= 1 << (bit % 8);
		s2 = stream_sum_add(stream_sum_add(stream_sum_add(
				stream_sum_start(&p), off, sizeof(off)), page[0],
				STREAM_PAGE), page[1], STREAM_PAGE);
		assert_true(s1 != s2);
		page[1][bit / 8] ^= 1 << (bit % 8);
	}
	p.seq ^= 1;
	assert_true(stream_sum_start(&p) != stream_sum_start(&(struct stream_pkt){
		.magic = p.magic, .flags = p.flags, .npages = p.npages,
		.data_len = p.data_len, .seq = p.seq ^ 1 }));
}

static void test_packet_checks(void **state)
{
	struct stream_pkt p;
	const char *why;

	p = pkt(0, 1, 2, 2 * STREAM_PAGE, 5);
	assert_int_equal(stream_pkt_check(&p, &layout, 5, &why), 0);
	assert_int_equal(p.npages, 2);
	p = pkt(STREAM_PKT_ZERO, 0, STREAM_MAX_BATCH, 0, 0);
	assert_int_equal(stream_pkt_check(&p, &layout, 0, &why), 0);
	p = pkt(STREAM_PKT_END, 0, 0, 0, 9);
	assert_int_equal(stream_pkt_check(&p, &layout, 9, &why), 0);

#define REFUSED(pk, seq, text) do { \
	p = (pk); \
	assert_int_equal(stream_pkt_check(&p, &layout, (seq), &why), -EPROTO); \
	assert_string_equal(why, (text)); } while (0)
	p = pkt(0, 0, 1, STREAM_PAGE, 0);
	p.magic ^= 1;
	assert_int_equal(stream_pkt_check(&p, &layout, 0, &why), -EPROTO);
	assert_string_equal(why, "bad packet magic");
	REFUSED(pkt(1 << 7, 0, 1, STREAM_PAGE, 0), 0, "unknown packet flags");
	REFUSED(pkt(1 << 5, 0, 1, STREAM_PAGE, 0), 0, "unknown packet flags");
	REFUSED(pkt(STREAM_PKT_POSTCOPY, 0, 1, STREAM_PAGE, 0), 0,
		"marker packet with pages");
	REFUSED(pkt(STREAM_PKT_POSTCOPY | STREAM_PKT_END, 0, 0, 0, 0), 0,
		"two markers in one packet");
	REFUSED(pkt(STREAM_PKT_NOP | STREAM_PKT_ZERO, 0, 0, 0, 0), 0,
		"two markers in one packet");
	REFUSED(pkt(STREAM_PKT_NOP, 0, 1, 0, 0), 0, "marker packet with pages");
	p = pkt(STREAM_PKT_NOP, 0, 0, 0, 0);
	assert_int_equal(stream_pkt_check(&p, &layout, 0, &why), 0);
	p = pkt(STREAM_PKT_POSTCOPY, 0, 0, 0, 0);
	assert_int_equal(stream_pkt_check(&p, &layout, 0, &why), 0);
	REFUSED(pkt(0, 0, 1, STREAM_PAGE, 4), 3, "packet out of sequence");
	REFUSED(pkt(STREAM_PKT_END, 0, 1, 0, 0), 0, "marker packet with pages");
	REFUSED(pkt(0, 2, 1, STREAM_PAGE, 0), 0, "packet for an unknown RAM region");
	REFUSED(pkt(0, 0, 0, 0, 0), 0, "bad page count in packet");
	REFUSED(pkt(0, 0, STREAM_MAX_BATCH + 1, (STREAM_MAX_BATCH + 1) * STREAM_PAGE, 0),
		0, "bad page count in packet");
	REFUSED(pkt(0, 0, 2, STREAM_PAGE, 0), 0,
		"packet data length does not match its pages");
	REFUSED(pkt(STREAM_PKT_ZERO, 0, 2, 8, 0), 0,
		"packet data length does not match its pages");
	p = pkt(STREAM_PKT_ZSTD, 0, 4, 100, 0);
	assert_int_equal(stream_pkt_check(&p, &layout, 0, &why), 0);
	REFUSED(pkt(STREAM_PKT_ZSTD, 0, 4, 4 * STREAM_PAGE, 0), 0,
		"compressed packet not shorter than its pages");
	REFUSED(pkt(STREAM_PKT_ZSTD, 0, 4, 0, 0), 0,
		"compressed packet not shorter than its pages");
	REFUSED(pkt(STREAM_PKT_ZSTD | STREAM_PKT_ZERO, 0, 4, 100, 0), 0,
		"zero pages cannot be compressed");
	/* npages * 4096 must not wrap into a matching length */
	REFUSED(pkt(0, 0, 1u << 20, 0, 0), 0, "bad page count in packet");
#undef REFUSED
}

static void test_offsets(void **state)
{
	uint64_t off;

	off = htole64(8192 - STREAM_PAGE);
	assert_int_equal(stream_offset_check(&off, &layout, 1), 0);
	off = htole64(8192);
	assert_int_equal(stream_offset_check(&off, &layout, 1), -EPROTO);
	off = htole64(100);
	assert_int_equal(stream_offset_check(&off, &layout, 0), -EPROTO);
	off = htole64(UINT64_MAX & ~4095ULL);
	assert_int_equal(stream_offset_check(&off, &layout, 0), -EPROTO);
}

static void test_tokens_and_hex(void **state)
{
	uint8_t a[STREAM_TOKEN_LEN], b[STREAM_TOKEN_LEN];
	char hex[STREAM_TOKEN_HEX + 1];

	assert_int_equal(stream_token_new(a), 0);
	stream_hex(a, sizeof(a), hex);
	assert_int_equal(strlen(hex), STREAM_TOKEN_HEX);
	assert_int_equal(stream_unhex(hex, b, sizeof(b)), 0);
	assert_memory_equal(a, b, sizeof(a));
	assert_int_equal(stream_unhex("abc", b, sizeof(b)), -EINVAL);
	hex[5] = 'g';
	assert_int_equal(stream_unhex(hex, b, sizeof(b)), -EINVAL);
}

/* A Refuse's code is the peer's: only an errno is taken as one. */
static void test_peer_errno(void **state)
{
	assert_int_equal(stream_peer_errno(EACCES), EACCES);
	assert_int_equal(stream_peer_errno(STREAM_MAX_ERRNO), STREAM_MAX_ERRNO);
	assert_int_equal(stream_peer_errno(0), EPROTO);
	assert_int_equal(stream_peer_errno(-EIO), EPROTO);
	assert_int_equal(stream_peer_errno(STREAM_MAX_ERRNO + 1), EPROTO);
	assert_int_equal(stream_peer_errno(INT32_MIN), EPROTO);
	assert_int_equal(stream_peer_errno(INT32_MAX), EPROTO);
}

static void test_run_end(void **state)
{
	const uint64_t off[] = { 0, 4096, 8192, 16384, 20480, 4096, 0, 0 };

	(void)state;
	assert_int_equal(stream_run_end(off, 0, 8), 3);
	assert_int_equal(stream_run_end(off, 1, 8), 3);
	assert_int_equal(stream_run_end(off, 3, 8), 5);
	assert_int_equal(stream_run_end(off, 4, 8), 5);
	assert_int_equal(stream_run_end(off, 5, 8), 6);	/* backwards */
	assert_int_equal(stream_run_end(off, 6, 8), 7);	/* repeated */
	assert_int_equal(stream_run_end(off, 7, 8), 8);
	assert_int_equal(stream_run_end(off, 0, 2), 2);	/* stops at n */
}

static void test_messages_over_a_socket(void **state)
{
	Tern__Stream__StreamMsg m = TERN__STREAM__STREAM_MSG__INIT, *got = NULL;
	Tern__Stream__Refuse rf = TERN__STREAM__REFUSE__INIT;
	const ProtobufCMessageDescriptor *d = &tern__stream__stream_msg__descriptor;
	uint64_t dl = now_ns() + 2000000000ULL;
	uint8_t junk[8] = { 4, 0, 0, 0, 0xff, 0xff, 0xff, 0xff };
	uint32_t huge = htole32(STREAM_MSG_MAX + 1);
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	rf.err = EINVAL;
	rf.message = "layout differs";
	m.body_case = TERN__STREAM__STREAM_MSG__BODY_REFUSE;
	m.refuse = &rf;
	assert_int_equal(stream_msg_send(sv[0], &m.base, dl), 0);
	assert_int_equal(stream_msg_recv(sv[1], d, 4096, dl, (ProtobufCMessage **)&got), 0);
	assert_int_equal(got->body_case, TERN__STREAM__STREAM_MSG__BODY_REFUSE);
	assert_string_equal(got->refuse->message, "layout differs");
	protobuf_c_message_free_unpacked(&got->base, NULL);

	/* a length over the caller's cap, refused before reading the body */
	assert_int_equal(stream_msg_send(sv[0], &m.base, dl), 0);
	assert_int_equal(stream_msg_recv(sv[1], d, 4, dl, (ProtobufCMessage **)&got),
			 -EMSGSIZE);
	close(sv[0]);
	close(sv[1]);

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(write(sv[0], &huge, 4), 4);
	assert_int_equal(stream_msg_recv(sv[1], d, STREAM_MSG_MAX * 2, dl,
					 (ProtobufCMessage **)&got), -EMSGSIZE);
	close(sv[0]);
	close(sv[1]);

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(write(sv[0], junk, sizeof(junk)), (ssize_t)sizeof(junk));
	assert_int_equal(stream_msg_recv(sv[1], d, 4096, dl, (ProtobufCMessage **)&got),
			 -EPROTO);
	assert_int_equal(write(sv[0], junk, 6), 6);     /* length 4, 2 bytes, EOF */
	close(sv[0]);
	assert_int_equal(stream_msg_recv(sv[1], d, 4096, dl, (ProtobufCMessage **)&got),
			 -EBADMSG);
	assert_int_equal(stream_msg_recv(sv[1], d, 4096, dl, (ProtobufCMessage **)&got),
			 -EPIPE);
	close(sv[1]);
}

static void test_read_deadline(void **state)
{
	uint8_t b[4];
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(stream_read_full(sv[1], b, 4, now_ns() + 50000000ULL),
			 -ETIMEDOUT);
	close(sv[0]);
	close(sv[1]);
}

/* A peer that reads nothing: a large write ends at its deadline, not
 * when a blocking send() gives up (here never: no SO_SNDTIMEO, and
 * alarm() bounds the old behaviour). */
static void test_write_deadline(void **state)
{
	size_t len = 4 << 20;
	uint8_t *buf = calloc(1, len);
	int sv[2], small = 4096;

	assert_non_null(buf);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	alarm(20);
	assert_int_equal(stream_write_full(sv[0], buf, len, now_ns() + 50000000ULL),
			 -ETIMEDOUT);
	alarm(0);
	close(sv[0]);
	close(sv[1]);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hello_round_trip),
		cmocka_unit_test(test_hello_refusals),
		cmocka_unit_test(test_packet_checks),
		cmocka_unit_test(test_packet_sum),
		cmocka_unit_test(test_offsets),
		cmocka_unit_test(test_tokens_and_hex),
		cmocka_unit_test(test_peer_errno),
		cmocka_unit_test(test_run_end),
		cmocka_unit_test(test_messages_over_a_socket),
		cmocka_unit_test(test_read_deadline),
		cmocka_unit_test(test_write_deadline),
	};

	return cmocka_run_group_tests_name("stream", tests, NULL, NULL);
}
