// SPDX-License-Identifier: GPL-2.0-only
/*
 * protobuf-c allocates a struct for each element of a repeated message
 * field and keeps each unknown field, so a message made of many tiny
 * elements grows a lot in memory while the bytes of real messages
 * (blobs, packed arrays) grow little.  Measured: a 4 MiB LoadState of
 * empty vCPU entries (2 bytes each) made a vmm hold 710 MB; a 64 MiB
 * StreamMsg of empty regions, 2.9 GB.  A peer could so make a daemon
 * the OOM killer's choice, or have it pick a guest instead.
 *
 * So every message from outside is decoded here, through an allocator
 * that counts what it holds at a time (glibc's malloc_usable_size both
 * ways, so frees give back what allocations took) and refuses past
 * PBUF_BUDGET: the decoding then fails as for a malformed message.  The
 * memory is malloc()'s, so the message is freed as any other.
 *
 * protobuf-c hands a string field to C as NUL-terminated, so one that
 * holds a NUL would be read cut there: a name "a\0b" checked, looked up
 * and acted on as "a", while whoever sent it meant another.  Such a
 * message is refused too, from its wire bytes, where the length is.
 */
#include <malloc.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/pbuf.h"

struct pbuf_budget {
	uint64_t left;
};

static void *budget_alloc(void *data, size_t size)
{
	struct pbuf_budget *b = data;
	void *p;

	if (size > b->left)
		return NULL;
	p = malloc(size);
	if (!p)
		return NULL;
	size = malloc_usable_size(p);
	if (size > b->left) {
		free(p);
		return NULL;
	}
	b->left -= size;
	return p;
}

static void budget_free(void *data, void *p)
{
	struct pbuf_budget *b = data;

	if (p)
		b->left += malloc_usable_size(p);
	free(p);
}

/* A varint at *p (before end): false if cut short or over 10 bytes. */
static bool wire_varint(const uint8_t **p, const uint8_t *end, uint64_t *ret)
{
	uint64_t v = 0;
	unsigned int shift;

	for (shift = 0; shift < 70 && *p < end; shift += 7) {
		v |= (uint64_t)(**p & 0x7f) << shift;
		if (!(*(*p)++ & 0x80)) {
			*ret = v;
			return true;
		}
	}
	return false;
}

#define PBUF_MAX_DEPTH 32       /* protobuf-c's own is deeper; ours, 4 */

/*
 * The encoded message of desc at data (which protobuf-c decoded): false
 * if a string field, at any depth, holds a NUL.  Fields it does not know
 * are skipped, as the decoding skips them.
 */
static bool strings_whole(const ProtobufCMessageDescriptor *desc,
			  const uint8_t *p, size_t len, unsigned int depth)
{
	const ProtobufCFieldDescriptor *f;
	const uint8_t *end = p + len;
	uint64_t key, n;

	while (p < end) {
		if (!wire_varint(&p, end, &key))
			return false;
		switch (key & 7) {
		case 0:                 /* varint */
			if (!wire_varint(&p, end, &n))
				return false;
			break;
		case 1:                 /* 64-bit */
		case 5:                 /* 32-bit */
			n = (key & 7) == 1 ? 8 : 4;
			if ((uint64_t)(end - p) < n)
				return false;
			p += n;
			break;
		case 2:                 /* length-delimited */
			if (!wire_varint(&p, end, &n) || (uint64_t)(end - p) < n)
				return false;
			f = key >> 3 <= UINT32_MAX ?
			    protobuf_c_message_descriptor_get_field(desc,
								    (unsigned)(key >> 3)) :
			    NULL;
			if (f && f->type == PROTOBUF_C_TYPE_STRING &&
			    memchr(p, 0, n))
				return false;
			if (f && f->type == PROTOBUF_C_TYPE_MESSAGE &&
			    (depth >= PBUF_MAX_DEPTH ||
			     !strings_whole(f->descriptor, p, n, depth + 1)))
				return false;
			p += n;
			break;
		default:                /* groups: protobuf-c refuses them */
			return false;
		}
	}
	return true;
}

ProtobufCMessage *pbuf_unpack(const ProtobufCMessageDescriptor *desc,
			      size_t len, const uint8_t *data)
{
	struct pbuf_budget b = { PBUF_BUDGET(len) };
	ProtobufCAllocator a = { budget_alloc, budget_free, &b };
	ProtobufCMessage *m = protobuf_c_message_unpack(desc, &a, len, data);

	if (m && !strings_whole(desc, data, len, 0)) {
		protobuf_c_message_free_unpacked(m, &a);
		return NULL;
	}
	return m;
}
