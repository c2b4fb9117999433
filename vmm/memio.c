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
 * A waiting thread touches only its own struct memio and efd, which is
 * never closed: at exit a thread still blocked is left to the process's
 * end (memio_stop says so, and the RAM then stays mapped).
 */
#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/log.h"
#include "common/rpc.h"
#include "common/util.h"
#include "vmm/vmm.h"

#define MEMIO_MAX_WAITING 4
#define MEMIO_STOP_WAIT_MS 200

struct memio {
	struct memio *next;
	struct rpc_call *call;
	struct vm *vm;
	pthread_t thread;
	uint64_t gpa;
	uint32_t len;
	uint8_t *buf;
	int ret;
	bool done;                      /* atomic: the thread is done */
};

static struct {
	int efd;                        /* the threads' wake-up: never closed */
	struct event *ev;
	struct memio *jobs;             /* main thread */
	unsigned int n;
} mio = { .efd = -1 };

static void *memio_main(void *arg)
{
	struct memio *j = arg;
	int efd = mio.efd;

	j->ret = mem_read(j->vm, j->gpa, j->buf, j->len);
	__atomic_store_n(&j->done, true, __ATOMIC_RELEASE);
	eventfd_write(efd, 1);
	return NULL;
}

static void memio_free(struct memio *j)
{
	free(j->buf);
	free(j);
}

/* Reply to each read whose thread is done. */
static void memio_reap(bool reply)
{
	Tern__Vmm__MemData d = TERN__VMM__MEM_DATA__INIT;
	struct memio **pp = &mio.jobs, *j;
	int r;

	while ((j = *pp)) {
		if (!__atomic_load_n(&j->done, __ATOMIC_ACQUIRE)) {
			pp = &j->next;
			continue;
		}
		*pp = j->next;
		mio.n--;
		pthread_join(j->thread, NULL);
		if (reply) {
			r = j->ret < 0 ? rpc_call_errorf(j->call, EFAULT,
				"0x%llx+%u is not guest RAM",
				(unsigned long long)j->gpa, j->len) : 0;
			d.gpa = j->gpa;
			d.data = (ProtobufCBinaryData){ j->len, j->buf };
			if (r == 0)
				r = rpc_call_reply(j->call, &d.base, NULL, 0);
			rpc_call_finish(j->call, r);
		}
		memio_free(j);
	}
}

static void memio_done(evutil_socket_t fd, short what, void *arg)
{
	eventfd_t n;

	eventfd_read(fd, &n);           /* EAGAIN: read on an earlier wake-up */
	memio_reap(true);
}

int memio_start(struct event_base *base)
{
	mio.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (mio.efd < 0)
		return -errno;
	mio.ev = event_new(base, mio.efd, EV_READ | EV_PERSIST, memio_done, NULL);
	if (!mio.ev || event_add(mio.ev, NULL) < 0)
		return -ENOMEM;
	return 0;
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
	r = -pthread_create(&j->thread, NULL, memio_main, j);
	if (r < 0) {
		memio_free(j);
		return rpc_call_errorf(call, -r, "cannot start a thread to wait "
				       "for 0x%llx+%u: %s", (unsigned long long)gpa,
				       len, strerror(-r));
	}
	j->next = mio.jobs;
	mio.jobs = j;
	mio.n++;
	return RPC_DEFERRED;
}

unsigned int memio_waiting(void)
{
	return mio.n;
}

int memio_stop(void)
{
	uint64_t until = deadline_ms(MEMIO_STOP_WAIT_MS);

	if (mio.ev)
		event_free(mio.ev);
	mio.ev = NULL;
	while (mio.n && now_ns() < until) {
		memio_reap(false);
		if (mio.n)
			usleep(1000);
	}
	if (mio.n)
		log_warnx("%u read%s of guest RAM still wait%s for missing pages",
			  mio.n, mio.n == 1 ? "" : "s", mio.n == 1 ? "s" : "");
	return (int)mio.n;
}
