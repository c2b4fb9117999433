// SPDX-License-Identifier: GPL-2.0-only
/*
 * Dirty logging against a real vmm running an idle guest (which writes
 * nothing once halted): pages written through WriteMem, below and above
 * the PCI hole, must show up in the shared bitmap exactly, once; a second
 * sync must add nothing; start/stop misuse gets clear errors.
 * Usage: itest_dirtylog SOCKET
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/bitmap.h"
#include "common/rpc.h"
#include "proto/vmm.pb-c.h"

static struct rpc_client *cl;

#define CHECK(cond, ...) do { if (!(cond)) { printf("FAIL: " __VA_ARGS__); \
	printf("\n"); exit(1); } } while (0)

static int call(const char *method, const ProtobufCMessage *arg,
		ProtobufCMessage **ret, struct rpc_result *res)
{
	Tern__Vmm__Empty e = TERN__VMM__EMPTY__INIT;
	struct rpc_result tmp;
	int r = rpc_client_call(cl, &tern__vmm__vmm__descriptor, method,
				arg ? arg : &e.base, NULL, 0, ret,
				res ? res : &tmp, 10000, NULL, NULL);

	if (!res)
		rpc_result_close_fds(&tmp);
	return r;
}

static uint64_t page_index(const Tern__Vmm__RamLayout *lay, uint64_t gpa)
{
	uint64_t first = 0;
	size_t i;

	for (i = 0; i < lay->n_regions; i++) {
		const Tern__Vmm__RamRegion *r = lay->regions[i];

		if (gpa >= r->gpa && gpa < r->gpa + r->size)
			return first + (gpa - r->gpa) / 4096;
		first += r->size / 4096;
	}
	CHECK(0, "gpa 0x%llx is not in the layout", (unsigned long long)gpa);
	return 0;
}

int main(int argc, char **argv)
{
	Tern__Vmm__RamLayout *lay = NULL;
	Tern__Vmm__DirtyInfo *info = NULL;
	Tern__Vmm__DirtySyncResult *sync = NULL;
	Tern__Vmm__MemData w = TERN__VMM__MEM_DATA__INIT;
	struct rpc_result res;
	uint64_t gpas[3] = { 0x250010, 0x1ff000, 0 }, *map;
	uint8_t byte = 0x77;
	size_t ngpas = 2, i;
	int r;

	CHECK(argc == 2, "usage: itest_dirtylog SOCKET");
	CHECK(rpc_client_connect_path(argv[1], 5000, &cl) == 0, "connect %s", argv[1]);
	CHECK(call("GetRam", NULL, (ProtobufCMessage **)&lay, &res) == 0, "GetRam");
	rpc_result_close_fds(&res);
	/* t_dirtylog's vmm has 4200M: RAM above the PCI hole too. */
	CHECK(lay->n_regions == 2, "%zu RAM regions, expected 2", lay->n_regions);
	gpas[ngpas++] = lay->regions[1]->gpa + 0x3000;

	r = call("DirtySync", NULL, (ProtobufCMessage **)&sync, &res);
	CHECK(r == -EINVAL && strstr(res.message, "not on"),
	      "sync before start: %d %s", r, res.message);

	CHECK(call("DirtyStart", NULL, (ProtobufCMessage **)&info, &res) == 0 &&
	      res.nfds == 1, "DirtyStart: %s", res.message);
	CHECK(info->bitmap_bytes == BITMAP_BYTES(info->pages), "bitmap size");
	map = mmap(NULL, info->bitmap_bytes, PROT_READ | PROT_WRITE, MAP_SHARED,
		   res.fds[0], 0);
	CHECK(map != MAP_FAILED, "map the bitmap");
	rpc_result_close_fds(&res);
	r = call("DirtyStart", NULL, NULL, &res);
	CHECK(r == -EALREADY, "second DirtyStart: %d %s", r, res.message);

	/* Whatever the guest did before it halted: take it and forget it. */
	CHECK(call("DirtySync", NULL, NULL, NULL) == 0, "first sync");
	memset(map, 0, info->bitmap_bytes);

	for (i = 0; i < ngpas; i++) {
		w.gpa = gpas[i];
		w.data.data = &byte;
		w.data.len = 1;
		CHECK(call("WriteMem", &w.base, NULL, NULL) == 0, "WriteMem");
	}
	CHECK(call("DirtySync", NULL, (ProtobufCMessage **)&sync, NULL) == 0, "sync");
	CHECK(sync->dirty_pages == ngpas, "sync reported %llu pages, expected %zu",
	      (unsigned long long)sync->dirty_pages, ngpas);
	CHECK(bitmap_count(map, info->pages) == ngpas, "%llu bits set, expected %zu",
	      (unsigned long long)bitmap_count(map, info->pages), ngpas);
	for (i = 0; i < ngpas; i++)
		CHECK(bitmap_test(map, page_index(lay, gpas[i])),
		      "page 0x%llx not marked", (unsigned long long)gpas[i]);
	protobuf_c_message_free_unpacked(&sync->base, NULL);

	memset(map, 0, info->bitmap_bytes);
	CHECK(call("DirtySync", NULL, (ProtobufCMessage **)&sync, NULL) == 0, "sync");
	CHECK(sync->dirty_pages == 0 && bitmap_count(map, info->pages) == 0,
	      "an idle guest dirtied %llu pages", (unsigned long long)sync->dirty_pages);

	CHECK(call("DirtyStop", NULL, NULL, NULL) == 0, "DirtyStop");
	r = call("DirtyStop", NULL, NULL, &res);
	CHECK(r == -EINVAL && strstr(res.message, "not on"), "second DirtyStop");
	printf("PASS: %zu pages written by the vmm were logged exactly\n", ngpas);
	munmap(map, info->bitmap_bytes);
	protobuf_c_message_free_unpacked(&sync->base, NULL);
	protobuf_c_message_free_unpacked(&info->base, NULL);
	protobuf_c_message_free_unpacked(&lay->base, NULL);
	rpc_client_free(cl);
	return 0;
}
