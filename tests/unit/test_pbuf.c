// SPDX-License-Identifier: GPL-2.0-only
/*
 * Unit tests for the budgeted decoder: real messages, the largest a vmm
 * takes included, decode as before; messages of tiny elements that
 * would grow far past their size in memory are refused (each of them
 * decodes without the budget, so the refusal is the budget's).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/pbuf.h"
#include "proto/stream.pb-c.h"
#include "proto/vmm.pb-c.h"

#define NVCPUS 255
#define NMSRS 120

/* A VmState as large as a vmm makes one: 255 vCPUs, each with an XSAVE
 * area, a LAPIC and many small MSRs (the one repeated message field). */
static void test_real_state(void **state)
{
	static Tern__Vmm__VcpuState vs[NVCPUS];
	static Tern__Vmm__VcpuState *vp[NVCPUS];
	static Tern__Vmm__Msr msr[NMSRS];
	static Tern__Vmm__Msr *mp[NMSRS];
	static uint8_t xsave[4096], lapic[1024];
	static uint64_t gpr[18];
	Tern__Vmm__VmState st = TERN__VMM__VM_STATE__INIT, *got;
	uint8_t *buf;
	size_t len, i;

	for (i = 0; i < NMSRS; i++) {
		tern__vmm__msr__init(&msr[i]);
		msr[i].index = (uint32_t)i;     /* small values: the most growth */
		mp[i] = &msr[i];
	}
	memset(xsave, 0x5a, sizeof(xsave));
	for (i = 0; i < NVCPUS; i++) {
		tern__vmm__vcpu_state__init(&vs[i]);
		vs[i].id = (uint32_t)i;
		vs[i].n_gpr = 18;
		vs[i].gpr = gpr;
		vs[i].xsave = (ProtobufCBinaryData){ sizeof(xsave), xsave };
		vs[i].lapic = (ProtobufCBinaryData){ sizeof(lapic), lapic };
		vs[i].n_msrs = NMSRS;
		vs[i].msrs = mp;
		vp[i] = &vs[i];
	}
	st.version = 1;
	st.n_vcpus = NVCPUS;
	st.vcpus = vp;
	len = tern__vmm__vm_state__get_packed_size(&st);
	buf = malloc(len);
	assert_non_null(buf);
	tern__vmm__vm_state__pack(&st, buf);
	got = (Tern__Vmm__VmState *)pbuf_unpack(&tern__vmm__vm_state__descriptor,
						len, buf);
	assert_non_null(got);
	assert_int_equal(got->n_vcpus, NVCPUS);
	assert_int_equal(got->vcpus[NVCPUS - 1]->n_msrs, NMSRS);
	assert_int_equal(got->vcpus[NVCPUS - 1]->msrs[NMSRS - 1]->index, NMSRS - 1);
	assert_memory_equal(got->vcpus[7]->xsave.data, xsave, sizeof(xsave));
	tern__vmm__vm_state__free_unpacked(got, NULL);  /* malloc()'s memory */
	free(buf);
}

/* len bytes of a repeated pattern. */
static uint8_t *flood(const uint8_t *pat, size_t plen, size_t len)
{
	uint8_t *buf = malloc(len);
	size_t i;

	assert_non_null(buf);
	for (i = 0; i + plen <= len; i += plen)
		memcpy(buf + i, pat, plen);
	assert_int_equal(i, len);
	return buf;
}

static void refused(const ProtobufCMessageDescriptor *desc, const uint8_t *pat,
		    size_t plen, size_t len)
{
	uint8_t *buf = flood(pat, plen, len);
	ProtobufCMessage *m;

	m = protobuf_c_message_unpack(desc, NULL, len, buf);
	assert_non_null(m);             /* valid, only large */
	protobuf_c_message_free_unpacked(m, NULL);
	assert_null(pbuf_unpack(desc, len, buf));
	free(buf);
}

/* 4 MiB of empty vCPU entries (field 5, length 0): 710 MB in a vmm. */
static void test_empty_vcpus(void **state)
{
	static const uint8_t empty_vcpu[] = { 0x2a, 0x00 };

	refused(&tern__vmm__vm_state__descriptor, empty_vcpu, sizeof(empty_vcpu),
		4 << 20);
}

/* Unknown varint fields (number 1000, value 0), as a peer may send. */
static void test_unknown_fields(void **state)
{
	static const uint8_t unknown[] = { 0xc0, 0x3e, 0x00 };

	refused(&tern__stream__stream_msg__descriptor, unknown, sizeof(unknown),
		3 << 20);
}

/*
 * A string with a NUL in it (which C would read cut there) is refused,
 * at the top and inside a message field; the same bytes in a bytes
 * field, and the string without its NUL, decode.  Before, Incoming for
 * "fd\0st" went ahead for fd.
 */
static void test_string_with_nul(void **state)
{
	Tern__Stream__StreamMsg m = TERN__STREAM__STREAM_MSG__INIT;
	Tern__Stream__Hello h = TERN__STREAM__HELLO__INIT;
	Tern__Vmm__VmmStatus st = TERN__VMM__VMM_STATUS__INIT;
	static uint8_t zeros[8];
	ProtobufCMessage *got;
	uint8_t buf[256], *x;
	size_t len;

	st.name = "fdXst";
	st.message = "fine";
	len = tern__vmm__vmm_status__pack(&st, buf);
	got = pbuf_unpack(&tern__vmm__vmm_status__descriptor, len, buf);
	assert_non_null(got);
	protobuf_c_message_free_unpacked(got, NULL);
	x = memchr(buf, 'X', len);
	*x = 0;
	assert_null(pbuf_unpack(&tern__vmm__vmm_status__descriptor, len, buf));

	h.vm = "aXb";
	h.params.data = zeros;          /* NULs in bytes are bytes */
	h.params.len = sizeof(zeros);
	m.body_case = TERN__STREAM__STREAM_MSG__BODY_HELLO;
	m.hello = &h;
	len = tern__stream__stream_msg__pack(&m, buf);
	got = pbuf_unpack(&tern__stream__stream_msg__descriptor, len, buf);
	assert_non_null(got);
	assert_string_equal(((Tern__Stream__StreamMsg *)got)->hello->vm, "aXb");
	protobuf_c_message_free_unpacked(got, NULL);
	x = memchr(buf, 'X', len);
	*x = 0;
	assert_null(pbuf_unpack(&tern__stream__stream_msg__descriptor, len, buf));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_real_state),
		cmocka_unit_test(test_empty_vcpus),
		cmocka_unit_test(test_unknown_fields),
		cmocka_unit_test(test_string_with_nul),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
