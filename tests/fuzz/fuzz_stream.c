// SPDX-License-Identifier: GPL-2.0-only
/*
 * libFuzzer target: what a migration peer sends before any page lands.
 * The first byte picks the part: a ram channel's hello, a packet header
 * with its offsets (checked against a two-region layout: whatever
 * passes must describe pages inside it), or a framed StreamMsg or
 * PageMsg read by stream_msg_recv() from a socket.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/stream.h"
#include "proto/stream.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct stream_layout layout = { 2, { 64 << 20, 3 * STREAM_PAGE } };

static void fuzz_hello(const uint8_t *data, size_t size)
{
	static const uint8_t token[STREAM_TOKEN_LEN] = { 1, 2, 3 };
	struct stream_hello h = { { 0 } };
	const char *why = NULL;
	int r;

	memcpy(&h, data, size < sizeof(h) ? size : sizeof(h));
	r = stream_hello_check(&h, token, &why);
	if (r == 0 && (h.role == 0 || h.role >= STREAM_ROLE_MAX))
		abort();
	if (r == -EPROTO && !why)
		abort();                /* a refusal names its reason */
}

static void fuzz_packet(const uint8_t *data, size_t size)
{
	struct stream_pkt p = { 0 };
	uint64_t off[STREAM_MAX_BATCH] = { 0 };
	const char *why = NULL;
	uint32_t i;

	memcpy(&p, data, size < sizeof(p) ? size : sizeof(p));
	if (size > sizeof(p))
		memcpy(off, data + sizeof(p),
		       size - sizeof(p) < sizeof(off) ? size - sizeof(p) : sizeof(off));
	if (stream_pkt_check(&p, &layout, 0, &why) < 0) {
		if (!why)
			abort();
		return;
	}
	if (p.npages > STREAM_MAX_BATCH || p.data_len > p.npages * STREAM_PAGE)
		abort();
	if (p.npages && p.region >= layout.nregions)
		abort();
	for (i = 0; i < p.npages; i++)
		if (stream_offset_check(&off[i], &layout, p.region) == 0 &&
		    (off[i] % STREAM_PAGE ||
		     off[i] + STREAM_PAGE > layout.size[p.region]))
			abort();        /* a page that passed lies outside */
}

static void fuzz_msg(const uint8_t *data, size_t size, bool page_link)
{
	const ProtobufCMessageDescriptor *d = page_link ?
		&tern__stream__page_msg__descriptor :
		&tern__stream__stream_msg__descriptor;
	ProtobufCMessage *m = NULL;
	int sv[2], r;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return;
	if (write(sv[1], data, size) == (ssize_t)size) {
		shutdown(sv[1], SHUT_WR);
		while ((r = stream_msg_recv(sv[0], d, page_link ?
					    STREAM_PAGE_MSG_MAX : 1 << 20, 0,
					    &m)) == 0) {
			protobuf_c_message_free_unpacked(m, NULL);
			m = NULL;
		}
		if (r != -EPIPE && r != -EBADMSG && r != -EMSGSIZE && r != -EPROTO)
			abort();
	}
	close(sv[0]);
	close(sv[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 65536)
		return 0;
	switch (data[0] % 4) {
	case 0: fuzz_hello(data + 1, size - 1); break;
	case 1: fuzz_packet(data + 1, size - 1); break;
	case 2: fuzz_msg(data + 1, size - 1, false); break;
	case 3: fuzz_msg(data + 1, size - 1, true); break;
	}
	return 0;
}
