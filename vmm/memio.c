// SPDX-License-Identifier: GPL-2.0-only
/*
 * ReadMem of pages that postcopy has still to bring.
 *
 * While a userfaultfd is registered on guest RAM, touching a missing page
 * blocks until faultd (or the worker's push) places it, and for ever if
 * nobody serves the uffd any more (faultd or its link died: the job is
 * postcopy-paused).  The control service runs on the main thread, which
 * must go on serving Status, UffdRelease and Quit, so a read of such a
 * range is done by a thread of its own: it waits as a vCPU would, and the
 * main loop replies once it is done.  At most MEMIO_MAX_WAITING reads
 * wait at a time; more are refused with EAGAIN, as is WriteMem of a
 * missing page (control.c).
 *
 * A waiting thread touches only its own struct memio (bgwork.h): at exit
 * a thread still blocked is left to the process's end (memio_stop says
 * so, and the RAM then stays mapped).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/bgwork.h"
#include "common/log.h"
#include "common/rpc.h"
#include "common/util.h"
#include "vmm/vmm.h"

#define MEMIO_MAX_WAITING 4
#define MEMIO_STOP_WAIT_MS 200

struct memio {
	struct bgwork work;
	struct rpc_call *call;
	struct vm *vm;
	uint64_t gpa;
	uint32_t len;
	uint8_t *buf;
	int ret;
};

static struct bgwork_set mio;

static void memio_run(struct bgwork *w)
{
	struct memio *j = container_of(w, struct memio, work);

	j->ret = mem_read(j->vm, j->gpa, j->buf, j->len);
}

static void memio_free(struct bgwork *w)
{
	struct memio *j = container_of(w, struct memio, work);

	free(j->buf);
	free(j);
}

/* The read is done: reply. */
static void memio_finish(struct bgwork *w)
{
	struct memio *j = container_of(w, struct memio, work);
	Tern__Vmm__MemData d = TERN__VMM__MEM_DATA__INIT;
	int r;

	r = j->ret < 0 ? rpc_call_errorf(j->call, EFAULT, "0x%llx+%u is not guest RAM",
					 (unsigned long long)j->gpa, j->len) : 0;
	d.gpa = j->gpa;
	d.data = (ProtobufCBinaryData){ j->len, j->buf };
	if (r == 0)
		r = rpc_call_reply(j->call, &d.base, NULL, 0);
	rpc_call_finish(j->call, r);
	memio_free(w);
}

int memio_start(struct event_base *base)
{
	return bgwork_init(&mio, base);
}

int memio_read_later(struct rpc_call *call, struct vm *vm, uint64_t gpa,
		     uint32_t len)
{
	struct memio *j;
	int r;

	if (!mio.ev)
		return -ENOSYS;
	if (mio.n >= MEMIO_MAX_WAITING)
		return rpc_call_errorf(call, EAGAIN, "0x%llx+%u has not arrived "
				       "yet, and %u reads already wait for pages "
				       "postcopy has still to bring",
				       (unsigned long long)gpa, len, mio.n);
	j = calloc(1, sizeof(*j));
	if (j)
		j->buf = malloc(len ? len : 1);
	if (!j || !j->buf) {
		free(j);
		return -ENOMEM;
	}
	*j = (struct memio){ .call = call, .vm = vm, .gpa = gpa, .len = len,
			     .buf = j->buf };
	r = bgwork_start(&mio, &j->work, memio_run, memio_finish);
	if (r < 0) {
		memio_free(&j->work);
		return rpc_call_errorf(call, -r, "cannot start a thread to wait "
				       "for 0x%llx+%u: %s", (unsigned long long)gpa,
				       len, strerror(-r));
	}
	return RPC_DEFERRED;
}

unsigned int memio_waiting(void)
{
	return mio.n;
}

int memio_stop(void)
{
	unsigned int n = bgwork_stop(&mio, MEMIO_STOP_WAIT_MS, memio_free);

	if (n)
		log_warnx("%u read%s of guest RAM still wait%s for missing pages",
			  n, n == 1 ? "" : "s", n == 1 ? "s" : "");
	return (int)n;
}
