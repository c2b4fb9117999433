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
 */
#include <malloc.h>
#include <stdlib.h>

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

ProtobufCMessage *pbuf_unpack(const ProtobufCMessageDescriptor *desc,
			      size_t len, const uint8_t *data)
{
	struct pbuf_budget b = { PBUF_BUDGET(len) };
	ProtobufCAllocator a = { budget_alloc, budget_free, &b };

	return protobuf_c_message_unpack(desc, &a, len, data);
}
