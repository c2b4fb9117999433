// SPDX-License-Identifier: GPL-2.0-only
/*
 * itest_pagepeer: plays the destination migd worker and the source for a
 * real faultd and a real incoming vmm (tests/integration/t_faultd.sh).
 * It makes the page link (a socketpair) and the needed bitmap, calls
 * Attach, answers PageRequests with a pattern derived from each word's
 * gpa, and makes the vmm fault by reading guest memory (Vmm.ReadMem reads
 * through the registered mapping).  Usage (RUNDIR first):
 *   serve VM        the whole normal path; prints the figures
 *   abuse VM KIND   attach, then garbage|oversize|unexpected on the link,
 *                   or blocking: the uffd made blocking, then a Relink,
 *                   or minor: the vmm (fakeuffd minorreg) makes a minor
 *                   fault; wait until the session FAILED, print its error
 *   errors IN RUN   Attach refusals (IN incoming, RUN running)
 *   sockabuse       garbage and oversize frames on faultd.sock
 *   discard VM      Vmm.Discard (bounded)
 *   fakevmm VM [HOLD]  serve VM's socket as a vmm whose UffdCreate answers
 *                   a pipe (until killed); with HOLD, GetRam answers only
 *                   once the file HOLD exists (at most 60 s)
 *   fakeuffd VM KIND  serve VM's socket as a vmm whose UffdCreate answers
 *                   a real uffd with more than faultd serves: minor
 *                   (UFFD_FEATURE_MINOR_SHMEM), fork (UFFD_FEATURE_EVENT_FORK;
 *                   then it forks) or minorreg (registered for minor
 *                   faults); then it reads a page in the page cache
 *                   (until killed)
 *   fakedst VM MEMORY VCPUS  serve VM's socket as an incoming vmm that takes
 *                   the RAM and refuses the state; exits 0 once told to Quit
 *   fakesrc VM ram|dirty  serve VM's socket as a running source vmm of
 *                   4 MiB that hands migd an unsealed RAM memfd (ram) or
 *                   dirty bitmap (dirty) and truncates it at the first
 *                   DirtySync (until killed)
 *   notuffd VM [WORDS [PAGES]]  Attach to the fake vmm is refused, naming
 *                   the pipe (or saying WORDS); for 512 pages (or PAGES)
 *   list | detach VM [force]
 * Exits 0 when every check held; prints "FAIL: why" and exits 1 if not.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/bitmap.h"
#include "common/rpc.h"
#include "common/stream.h"
#include "common/uri.h"
#include "common/util.h"
#include "proto/faultd.pb-c.h"
#include "proto/stream.pb-c.h"
#include "proto/vmm.pb-c.h"

#define CHECK(cond, ...) do { if (!(cond)) { printf("FAIL: " __VA_ARGS__); \
	printf("\n"); exit(1); } } while (0)
#define TMO 10000
#define PAGE STREAM_PAGE
#define PREFETCH 4

static const char *rundir;
static const ProtobufCServiceDescriptor *fsvc = &tern__faultd__faultd__descriptor;
static const ProtobufCServiceDescriptor *vsvc = &tern__vmm__vmm__descriptor;

struct region { uint64_t gpa, size, host; };

struct peer {
	const char *vm;
	bool again;                     /* Attach with again (refused) */
	struct region r[STREAM_MAX_REGIONS];
	unsigned int n;
	uint64_t pages;
	int bitmap_fd, uffd;
	uint64_t *needed;
	int link;                       /* our end of the current page link */
	pthread_t th;
	/* set by main, taken by the server thread */
	int push_next, drop_next;
	/* the server thread's counts (atomic) */
	uint64_t requests, answered, pushed, dropped_seq;
};

static uint64_t pattern(uint64_t gpa)
{
	return (gpa * 0x9e3779b97f4a7c15ULL) ^ 0x5445524e50414745ULL;
}

static void fill(uint8_t *buf, uint64_t gpa, size_t len)
{
	size_t i;

	for (i = 0; i < len; i += 8) {
		uint64_t v = pattern(gpa + i);

		memcpy(buf + i, &v, 8);
	}
}

static struct rpc_client *connect_to(const char *what)
{
	struct rpc_client *cl;
	char path[PATH_MAX];
	int r;

	if (strcmp(what, "faultd") == 0)
		snprintf(path, sizeof(path), "%s/faultd.sock", rundir);
	else
		snprintf(path, sizeof(path), "%s/vmm/%s.sock", rundir, what);
	r = rpc_client_connect_path(path, TMO, &cl);
	CHECK(r == 0, "connect %s: %s", path, strerror(-r));
	rpc_client_set_max_frame(cl, 4u << 20);
	return cl;
}

/* A faultd call; returns -errno and leaves the message in res. */
static int fcall(const char *method, const ProtobufCMessage *arg, const int *fds,
		 size_t nfds, ProtobufCMessage **ret, struct rpc_result *res)
{
	struct rpc_client *cl = connect_to("faultd");
	int r = rpc_client_call(cl, fsvc, method, arg, fds, nfds, ret, res, TMO,
				NULL, NULL);

	rpc_client_free(cl);
	return r;
}

static int vcall(const char *vm, const char *method, const ProtobufCMessage *arg,
		 ProtobufCMessage **ret, struct rpc_result *res, int tmo)
{
	Tern__Vmm__Empty e = TERN__VMM__EMPTY__INIT;
	struct rpc_client *cl = connect_to(vm);
	int r = rpc_client_call(cl, vsvc, method, arg ? arg : &e.base, NULL, 0, ret,
				res, tmo, NULL, NULL);

	rpc_client_free(cl);
	return r;
}

static void read_mem(const char *vm, uint64_t gpa, uint8_t *buf, uint32_t len)
{
	Tern__Vmm__MemRange q = TERN__VMM__MEM_RANGE__INIT;
	Tern__Vmm__MemData *d = NULL;
	struct rpc_result res;
	int r;

	q.gpa = gpa;
	q.len = len;
	r = vcall(vm, "ReadMem", &q.base, (ProtobufCMessage **)&d, &res, TMO);
	CHECK(r == 0, "ReadMem 0x%llx: %s", (unsigned long long)gpa, res.message);
	CHECK(d->data.len == len, "ReadMem: %zu bytes", d->data.len);
	memcpy(buf, d->data.data, len);
	protobuf_c_message_free_unpacked(&d->base, NULL);
}

static void expect_mem(const char *vm, uint64_t gpa, uint32_t len, bool zero)
{
	uint8_t *got = malloc(len), *want = calloc(1, len);

	CHECK(got && want, "malloc");
	if (!zero)
		fill(want, gpa, len);
	read_mem(vm, gpa, got, len);
	CHECK(memcmp(got, want, len) == 0, "gpa 0x%llx+%u: not %s",
	      (unsigned long long)gpa, len, zero ? "zero" : "the source's pattern");
	free(got);
	free(want);
}

static Tern__Faultd__FaultStats *stats(const char *vm)
{
	Tern__Faultd__VmQuery q = TERN__FAULTD__VM_QUERY__INIT;
	Tern__Faultd__FaultStats *st = NULL;
	struct rpc_result res;
	int r;

	q.vm = (char *)vm;
	r = fcall("Stats", &q.base, NULL, 0, (ProtobufCMessage **)&st, &res);
	CHECK(r == 0, "Stats %s: %s", vm, res.message);
	return st;
}

static const char *state_name(int s)
{
	static const char *const n[] = { "none", "active", "paused", "done", "failed" };

	return s >= 0 && s < 5 ? n[s] : "?";
}

/* Wait (bounded) until the session is in state want; returns its stats. */
static Tern__Faultd__FaultStats *wait_state(const char *vm, int want)
{
	Tern__Faultd__FaultStats *st;
	int i;

	for (i = 0; i < 200; i++) {
		st = stats(vm);
		if ((int)st->state == want)
			return st;
		if (i < 199)
			protobuf_c_message_free_unpacked(&st->base, NULL);
		usleep(50000);
	}
	CHECK(0, "%s: the session did not become %s (%s, %llu faults, %llu zero)",
	      vm, state_name(want), state_name(st->state),
	      (unsigned long long)st->faults, (unsigned long long)st->zero_faults);
	return NULL;
}

/* ---- the worker's part: layout, bitmap, Attach ---------------------------- */

static void layout(struct peer *p)
{
	Tern__Vmm__RamLayout *lay = NULL;
	struct rpc_result res;
	size_t i;
	int r;

	r = vcall(p->vm, "GetRam", NULL, (ProtobufCMessage **)&lay, &res, TMO);
	CHECK(r == 0, "GetRam: %s", res.message);
	rpc_result_close_fds(&res);
	p->n = lay->n_regions;
	p->pages = 0;
	for (i = 0; i < p->n; i++) {
		p->r[i].gpa = lay->regions[i]->gpa;
		p->r[i].size = lay->regions[i]->size;
		p->pages += p->r[i].size / PAGE;
	}
	protobuf_c_message_free_unpacked(&lay->base, NULL);
}

static int new_bitmap(uint64_t bytes, uint64_t **ret_map)
{
	int fd = memfd_create("needed", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	CHECK(fd >= 0 && ftruncate(fd, bytes) == 0, "memfd");
	*ret_map = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(*ret_map != MAP_FAILED, "mmap bitmap");
	return fd;
}

static int attach(struct peer *p, uint32_t prefetch, int theirs,
		  struct rpc_result *res, uint64_t pages)
{
	Tern__Faultd__AttachRequest a = TERN__FAULTD__ATTACH_REQUEST__INIT;
	Tern__Faultd__AttachReply *rep = NULL;
	int fds[2] = { theirs, p->bitmap_fd }, r;
	unsigned int i;

	a.vm = (char *)p->vm;
	a.job = "0123456789abcdef";
	a.pages = pages;
	a.prefetch = prefetch;
	r = fcall("Attach", &a.base, fds, 2, (ProtobufCMessage **)&rep, res);
	if (r < 0)
		return r;
	CHECK(res->nfds == 1 && rep->n_regions == p->n, "Attach: %zu fds, %zu regions",
	      res->nfds, rep->n_regions);
	for (i = 0; i < p->n; i++) {
		CHECK(rep->regions[i]->gpa == p->r[i].gpa &&
		      rep->regions[i]->size == p->r[i].size && rep->regions[i]->host,
		      "Attach: region %u differs from GetRam", i);
		p->r[i].host = rep->regions[i]->host;
	}
	p->uffd = res->fds[0];
	protobuf_c_message_free_unpacked(&rep->base, NULL);
	return 0;
}

static void link_pair(int *ours, int *theirs)
{
	int sv[2];

	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
	*ours = sv[0];
	*theirs = sv[1];
}

/* ---- the source's part: answer requests ----------------------------------- */

static void push_page(struct peer *p, unsigned int region, uint64_t off)
{
	uint8_t buf[PAGE] __attribute__((aligned(PAGE)));
	struct uffdio_copy c = { .dst = p->r[region].host + off,
				 .src = (uintptr_t)buf, .len = PAGE };
	uint64_t page = off / PAGE;     /* region 0 in these tests */

	fill(buf, p->r[region].gpa + off, PAGE);
	CHECK(ioctl(p->uffd, UFFDIO_COPY, &c) == 0, "push UFFDIO_COPY: %s",
	      strerror(errno));
	/* As the worker must: place first, then clear the bit. */
	__atomic_fetch_and(&p->needed[page / 64], ~(1ULL << (page % 64)),
			   __ATOMIC_RELEASE);
	__atomic_fetch_add(&p->pushed, 1, __ATOMIC_RELAXED);
}

static void *server_main(void *arg)
{
	struct peer *p = arg;
	Tern__Stream__PageMsg *m, out = TERN__STREAM__PAGE_MSG__INIT;
	Tern__Stream__PageData d = TERN__STREAM__PAGE_DATA__INIT;
	static uint8_t buf[STREAM_PAGE_REQ_MAX * PAGE];
	const Tern__Stream__PageRequest *q;

	while (stream_msg_recv(p->link, &tern__stream__page_msg__descriptor,
			       STREAM_PAGE_MSG_MAX, 0, (ProtobufCMessage **)&m) == 0) {
		CHECK(m->body_case == TERN__STREAM__PAGE_MSG__BODY_REQUEST,
		      "faultd sent a PageMsg that is not a request");
		q = m->request;
		CHECK(q->region < p->n && q->pages >= 1 &&
		      q->pages <= PREFETCH + 1 && q->offset % PAGE == 0 &&
		      q->offset + q->pages * PAGE <= p->r[q->region].size,
		      "bad PageRequest: region %u offset 0x%llx pages %u", q->region,
		      (unsigned long long)q->offset, q->pages);
		__atomic_fetch_add(&p->requests, 1, __ATOMIC_RELAXED);
		if (__atomic_exchange_n(&p->drop_next, 0, __ATOMIC_ACQ_REL)) {
			__atomic_store_n(&p->dropped_seq, q->seq + 1, __ATOMIC_RELEASE);
			protobuf_c_message_free_unpacked(&m->base, NULL);
			close(p->link);
			return NULL;
		}
		if (__atomic_exchange_n(&p->push_next, 0, __ATOMIC_ACQ_REL))
			push_page(p, q->region, q->offset);
		fill(buf, p->r[q->region].gpa + q->offset, q->pages * PAGE);
		d.seq = q->seq;
		d.region = q->region;
		d.offset = q->offset;
		d.data.data = buf;
		d.data.len = q->pages * PAGE;
		out.body_case = TERN__STREAM__PAGE_MSG__BODY_DATA;
		out.data = &d;
		CHECK(stream_msg_send(p->link, &out.base, 0) == 0, "sending PageData");
		__atomic_fetch_add(&p->answered, q->pages, __ATOMIC_RELAXED);
		protobuf_c_message_free_unpacked(&m->base, NULL);
	}
	return NULL;
}

struct reader {
	const char *vm;
	uint64_t gpa;
	int done;
	pthread_t th;
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;

	expect_mem(r->vm, r->gpa, PAGE, false);
	__atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static bool needed_bit(struct peer *p, uint64_t page)
{
	return bitmap_test(p->needed, page);
}

static int cmd_serve(const char *vm)
{
	Tern__Faultd__FaultStats *st;
	Tern__Faultd__DetachRequest dq = TERN__FAULTD__DETACH_REQUEST__INIT;
	Tern__Vmm__UffdOwner any = TERN__VMM__UFFD_OWNER__INIT;
	struct rpc_result res;
	struct peer p = { .vm = vm };
	struct reader rd = { .vm = vm };
	uint64_t i, sum = 0, reqs_before;
	int theirs, r;

	layout(&p);
	p.bitmap_fd = new_bitmap(BITMAP_BYTES(p.pages), &p.needed);
	/* Needed: pages 16-31, 40-47, 64-127 (a 256 KiB read), 200, 300,
	 * and 4000-4009 that nobody touches (so Detach must be forced). */
	bitmap_set_range(p.needed, 16, 16);
	bitmap_set_range(p.needed, 40, 8);
	bitmap_set_range(p.needed, 64, 64);
	bitmap_set(p.needed, 200);
	bitmap_set(p.needed, 300);
	bitmap_set_range(p.needed, 4000, 10);
	link_pair(&p.link, &theirs);
	r = attach(&p, PREFETCH, theirs, &res, p.pages);
	CHECK(r == 0, "Attach %s: %s", vm, res.message);
	close(theirs);
	CHECK(fcntl(p.bitmap_fd, F_GET_SEALS) & F_SEAL_SHRINK,
	      "faultd left the needed bitmap unsealed");
	CHECK(pthread_create(&p.th, NULL, server_main, &p) == 0, "thread");

	/* A second Attach for the same VM is refused. */
	link_pair(&r, &theirs);
	{
		struct peer p2 = p;

		p2.bitmap_fd = new_bitmap(BITMAP_BYTES(p.pages), &p2.needed);
		CHECK(attach(&p2, 0, theirs, &res, p.pages) == -EBUSY,
		      "a second Attach for %s was not refused with EBUSY", vm);
		printf("second attach: %s\n", res.message);
		close(p2.bitmap_fd);
		munmap(p2.needed, BITMAP_BYTES(p.pages));
	}
	close(r);
	close(theirs);

	/* Remote pages: one fault fetches it and PREFETCH more. */
	expect_mem(vm, 16 * PAGE, PAGE, false);
	/* faultd clears the bits just after placing (and waking us). */
	for (i = 0; i < 500 && (needed_bit(&p, 16) || needed_bit(&p, 20)); i++)
		usleep(10000);
	CHECK(!needed_bit(&p, 16) && !needed_bit(&p, 20) && needed_bit(&p, 21),
	      "needed bits after the first fetch (prefetch %d)", PREFETCH);
	expect_mem(vm, 17 * PAGE, 4 * PAGE, false);     /* prefetched: no fault */
	expect_mem(vm, 21 * PAGE, 11 * PAGE, false);
	/* Zero pages: not needed, holes. */
	expect_mem(vm, 0, 16 * PAGE, true);
	expect_mem(vm, 1000 * PAGE, PAGE, true);
	/* The worker's push wins a race: faultd's copy finds the page there. */
	__atomic_store_n(&p.push_next, 1, __ATOMIC_RELEASE);
	expect_mem(vm, 40 * PAGE, 8 * PAGE, false);
	/* A large read: many faults, each with its prefetch. */
	expect_mem(vm, 64 * PAGE, 64 * PAGE, false);

	/* The page link dies with a request outstanding: PAUSED, the
	 * reader waits; Relink sends the request again and it is served. */
	__atomic_store_n(&p.drop_next, 1, __ATOMIC_RELEASE);
	rd.gpa = 200 * PAGE;
	CHECK(pthread_create(&rd.th, NULL, reader_main, &rd) == 0, "thread");
	st = wait_state(vm, TERN__FAULTD__SESSION_STATE__SESSION_PAUSED);
	printf("paused: %s\n", st->error);
	CHECK(strstr(st->error, "closed"), "PAUSED without a clear error: '%s'",
	      st->error);
	protobuf_c_message_free_unpacked(&st->base, NULL);
	pthread_join(p.th, NULL);
	CHECK(!__atomic_load_n(&rd.done, __ATOMIC_ACQUIRE),
	      "the read of a page never sent returned");
	CHECK(needed_bit(&p, 200), "page 200 placed without an answer");
	reqs_before = __atomic_load_n(&p.requests, __ATOMIC_RELAXED);
	link_pair(&p.link, &theirs);
	CHECK(pthread_create(&p.th, NULL, server_main, &p) == 0, "thread");
	{
		Tern__Faultd__RelinkRequest rq = TERN__FAULTD__RELINK_REQUEST__INIT;

		rq.vm = (char *)vm;
		r = fcall("Relink", &rq.base, &theirs, 1, (ProtobufCMessage **)&st, &res);
		CHECK(r == 0, "Relink: %s", res.message);
		CHECK(st->state == TERN__FAULTD__SESSION_STATE__SESSION_ACTIVE,
		      "after Relink: %s", state_name(st->state));
		protobuf_c_message_free_unpacked(&st->base, NULL);
	}
	close(theirs);
	pthread_join(rd.th, NULL);
	CHECK(__atomic_load_n(&p.requests, __ATOMIC_RELAXED) == reqs_before + 1,
	      "Relink sent %llu requests again, expected 1",
	      (unsigned long long)(__atomic_load_n(&p.requests, __ATOMIC_RELAXED) -
				   reqs_before));
	expect_mem(vm, 300 * PAGE, PAGE, false);

	/* The figures add up, once faultd's bookkeeping after the last
	 * placement (which woke our reader) is done. */
	for (r = 0; r < 500; r++) {
		st = stats(vm);
		for (sum = 0, i = 0; i < st->n_latency_hist; i++)
			sum += st->latency_hist[i];
		if (sum == st->remote_faults + st->merged_faults &&
		    st->needed_pages == 10 &&
		    st->pages_fetched + st->pages_exist ==
		    __atomic_load_n(&p.answered, __ATOMIC_ACQUIRE))
			break;
		protobuf_c_message_free_unpacked(&st->base, NULL);
		usleep(10000);
	}
	if (r == 500)
		st = stats(vm);         /* the checks below say what differs */
	printf("stats: state %s faults %llu remote %llu zero %llu merged %llu "
	       "requests %llu fetched %llu exist %llu needed %llu p50 %llu us "
	       "p99 %llu us max %llu us blocked %llu us\n", state_name(st->state),
	       (unsigned long long)st->faults, (unsigned long long)st->remote_faults,
	       (unsigned long long)st->zero_faults, (unsigned long long)st->merged_faults,
	       (unsigned long long)st->requests, (unsigned long long)st->pages_fetched,
	       (unsigned long long)st->pages_exist, (unsigned long long)st->needed_pages,
	       (unsigned long long)st->latency_p50_us,
	       (unsigned long long)st->latency_p99_us,
	       (unsigned long long)st->latency_max_us,
	       (unsigned long long)st->blocked_us);
	CHECK(st->n_latency_hist == 24, "%zu latency buckets", st->n_latency_hist);
	CHECK(st->faults == st->remote_faults + st->zero_faults + st->merged_faults,
	      "faults != remote + zero + merged");
	CHECK(sum == st->remote_faults + st->merged_faults,
	      "latency histogram holds %llu faults of %llu remote and merged",
	      (unsigned long long)sum,
	      (unsigned long long)(st->remote_faults + st->merged_faults));
	CHECK(st->zero_latency_p50_us > 0 &&
	      st->zero_latency_p50_us <= st->zero_latency_p99_us,
	      "local fault latency p50 %llu us, p99 %llu us",
	      (unsigned long long)st->zero_latency_p50_us,
	      (unsigned long long)st->zero_latency_p99_us);
	CHECK(st->zero_faults == 17, "zero faults %llu, expected 17",
	      (unsigned long long)st->zero_faults);
	CHECK(st->requests == __atomic_load_n(&p.requests, __ATOMIC_RELAXED),
	      "faultd counts %llu requests, the source got %llu",
	      (unsigned long long)st->requests,
	      (unsigned long long)__atomic_load_n(&p.requests, __ATOMIC_RELAXED));
	CHECK(st->pages_exist == 1 && p.pushed == 1, "pages_exist %llu, pushed %llu",
	      (unsigned long long)st->pages_exist, (unsigned long long)p.pushed);
	CHECK(st->pages_fetched + st->pages_exist == p.answered,
	      "fetched %llu + exist %llu != %llu answered",
	      (unsigned long long)st->pages_fetched,
	      (unsigned long long)st->pages_exist, (unsigned long long)p.answered);
	CHECK(st->needed_pages == 10 && bitmap_count(p.needed, p.pages) == 10,
	      "needed pages %llu, expected the 10 never touched",
	      (unsigned long long)st->needed_pages);
	CHECK(st->latency_p50_us <= st->latency_p99_us &&
	      st->latency_p99_us <= st->latency_max_us && st->latency_max_us > 0,
	      "percentiles out of order");
	protobuf_c_message_free_unpacked(&st->base, NULL);

	/* Detach: refused while pages are needed, then forced. */
	dq.vm = (char *)vm;
	r = fcall("Detach", &dq.base, NULL, 0, NULL, &res);
	CHECK(r == -EBUSY, "Detach with needed pages: %d %s", r, res.message);
	printf("detach refused: %s\n", res.message);
	dq.force = true;
	r = fcall("Detach", &dq.base, NULL, 0, (ProtobufCMessage **)&st, &res);
	CHECK(r == 0, "Detach force: %s", res.message);
	CHECK(st->needed_pages == 10, "final stats: %llu needed",
	      (unsigned long long)st->needed_pages);
	protobuf_c_message_free_unpacked(&st->base, NULL);
	shutdown(p.link, SHUT_RDWR);
	pthread_join(p.th, NULL);
	close(p.link);

	/* faultd is gone from this VM, but the vmm keeps its uffd: a missing
	 * page waits (it is not filled with zeros); the worker's own uffd
	 * still places it. */
	rd = (struct reader){ .vm = vm, .gpa = 4000 * PAGE };
	CHECK(pthread_create(&rd.th, NULL, reader_main, &rd) == 0, "thread");
	usleep(300000);
	CHECK(!__atomic_load_n(&rd.done, __ATOMIC_ACQUIRE),
	      "a missing page was served with nobody to serve it");
	push_page(&p, 0, 4000 * PAGE);
	pthread_join(rd.th, NULL);
	/* With the worker's uffd closed and the vmm's released, the
	 * registration is gone: the rest reads as zeros. */
	close(p.uffd);
	r = vcall(vm, "UffdRelease", &any.base, NULL, &res, TMO);
	CHECK(r == 0, "UffdRelease: %s", res.message);
	r = vcall(vm, "UffdRelease", &any.base, NULL, &res, TMO);
	CHECK(r == 0, "UffdRelease twice: %s", res.message);
	expect_mem(vm, 4001 * PAGE, PAGE, true);
	printf("ok: served %s\n", vm);
	return 0;
}

/* ---- abuse on the page link ------------------------------------------- */

static int cmd_abuse(const char *vm, const char *kind)
{
	Tern__Faultd__FaultStats *st;
	struct rpc_result res;
	struct peer p = { .vm = vm };
	const char *want;
	uint8_t buf[64];
	int theirs, r;

	layout(&p);
	p.bitmap_fd = new_bitmap(BITMAP_BYTES(p.pages), &p.needed);
	bitmap_set_range(p.needed, 0, 64);
	link_pair(&p.link, &theirs);
	r = attach(&p, 0, theirs, &res, p.pages);
	CHECK(r == 0, "Attach %s: %s", vm, res.message);
	close(theirs);
	if (strcmp(kind, "garbage") == 0) {
		uint32_t len = htole32(32);

		memcpy(buf, &len, 4);
		memset(buf + 4, 0xff, 32);
		CHECK(write(p.link, buf, 36) == 36, "write");
		want = "not a PageMsg";
	} else if (strcmp(kind, "blocking") == 0) {
		/* The vmm (here: a holder of the same file description)
		 * makes the uffd blocking; the next fault fails the session,
		 * for good: a Relink may not revive it, nothing reads its
		 * faults.  (Relink used to say ACTIVE.) */
		Tern__Faultd__RelinkRequest rq = TERN__FAULTD__RELINK_REQUEST__INIT;
		struct reader rd = { .vm = vm, .gpa = 10 * PAGE };
		int fl = fcntl(p.uffd, F_GETFL), ours;

		CHECK(fl >= 0 && fcntl(p.uffd, F_SETFL, fl & ~O_NONBLOCK) == 0,
		      "clearing O_NONBLOCK");
		CHECK(pthread_create(&rd.th, NULL, reader_main, &rd) == 0, "thread");
		st = wait_state(vm, TERN__FAULTD__SESSION_STATE__SESSION_FAILED);
		printf("failed: %s\n", st->error);
		CHECK(strstr(st->error, "made it blocking"), "error '%s'", st->error);
		protobuf_c_message_free_unpacked(&st->base, NULL);
		CHECK(fcntl(p.uffd, F_SETFL, fl) == 0, "restoring O_NONBLOCK");
		link_pair(&ours, &theirs);
		rq.vm = (char *)vm;
		r = fcall("Relink", &rq.base, &theirs, 1, NULL, &res);
		close(theirs);
		close(ours);
		printf("relink: %s\n", res.message);
		CHECK(r == -EIO && strstr(res.message, "no longer reads its page faults"),
		      "Relink of a session whose fault thread ended: %d %s", r,
		      res.message);
		st = stats(vm);
		CHECK(st->state == TERN__FAULTD__SESSION_STATE__SESSION_FAILED,
		      "after the refused Relink: %s", state_name(st->state));
		protobuf_c_message_free_unpacked(&st->base, NULL);
		push_page(&p, 0, 10 * PAGE);    /* the reader's page, by hand */
		pthread_join(rd.th, NULL);
		want = NULL;
	} else if (strcmp(kind, "minor") == 0) {
		/* The vmm (fakeuffd minorreg) registered its RAM for minor
		 * faults too and reads a page in the page cache: served as
		 * missing, UFFDIO_ZEROPAGE found it there and the same fault
		 * came back at once, for ever. */
		want = "UFFD_PAGEFAULT_FLAG_MINOR";
	} else if (strcmp(kind, "oversize") == 0) {
		uint32_t len = htole32(STREAM_PAGE_MSG_MAX + 1);

		CHECK(write(p.link, &len, 4) == 4, "write");
		want = "longer than";
	} else {
		Tern__Stream__PageMsg m = TERN__STREAM__PAGE_MSG__INIT;
		Tern__Stream__PageData d = TERN__STREAM__PAGE_DATA__INIT;
		static uint8_t page[PAGE];

		d.seq = 99;
		d.data.data = page;
		d.data.len = PAGE;
		m.body_case = TERN__STREAM__PAGE_MSG__BODY_DATA;
		m.data = &d;
		CHECK(stream_msg_send(p.link, &m.base, 0) == 0, "send");
		want = "no outstanding request";
	}
	if (want) {
		st = wait_state(vm, TERN__FAULTD__SESSION_STATE__SESSION_FAILED);
		printf("failed: %s\n", st->error);
		CHECK(strstr(st->error, want), "error '%s' lacks '%s'", st->error,
		      want);
		protobuf_c_message_free_unpacked(&st->base, NULL);
	}
	close(p.link);
	close(p.uffd);
	return 0;
}

/* ---- Attach refusals --------------------------------------------------- */

static void refused(struct peer *p, int link, uint64_t pages, uint32_t prefetch,
		    size_t nfds, const char *words)
{
	Tern__Faultd__AttachRequest a = TERN__FAULTD__ATTACH_REQUEST__INIT;
	struct rpc_result res;
	int fds[2] = { link, p->bitmap_fd }, r;

	a.vm = (char *)p->vm;
	a.pages = pages;
	a.prefetch = prefetch;
	a.again = p->again;
	r = fcall("Attach", &a.base, fds, nfds, NULL, &res);
	rpc_result_close_fds(&res);
	CHECK(r < 0, "Attach %s (%s) was accepted", p->vm, words);
	CHECK(strstr(res.message, words), "Attach %s: '%s' lacks '%s'", p->vm,
	      res.message, words);
	printf("refused: %s\n", res.message);
}

static int cmd_errors(const char *in, const char *run)
{
	struct peer p = { .vm = in }, q = { .vm = run }, x = { .vm = "nosuch" };
	struct peer ro = { .vm = in }, qa = { .vm = run, .again = true };
	int ours, theirs, pfd[2];
	char path[64], words[160];
	uint64_t *map;

	layout(&p);
	layout(&q);
	link_pair(&ours, &theirs);
	p.bitmap_fd = new_bitmap(BITMAP_BYTES(p.pages), &p.needed);
	q.bitmap_fd = new_bitmap(BITMAP_BYTES(q.pages), &q.needed);
	x.bitmap_fd = p.bitmap_fd;
	refused(&x, theirs, p.pages, 0, 2, "no vmm named nosuch");
	refused(&q, theirs, q.pages, 0, 2, "not incoming");
	/* Again, to a vmm that holds no uffd (not in a postcopy). */
	qa.bitmap_fd = q.bitmap_fd;
	qa.pages = q.pages;
	snprintf(words, sizeof(words), "vmm %s: no userfaultfd to share: this "
		 "vmm is not in a postcopy", run);
	refused(&qa, theirs, q.pages, 0, 2, words);
	refused(&p, theirs, p.pages, 0, 1, "two descriptors");
	refused(&p, theirs, p.pages, 0, 0, "two descriptors");
	refused(&p, theirs, p.pages, 64, 2, "prefetch 64");
	refused(&p, theirs, p.pages + 64, 0, 2, "needed bitmap is");
	CHECK(pipe2(pfd, O_CLOEXEC) == 0, "pipe");
	refused(&p, pfd[0], p.pages, 0, 2, "not a stream socket");
	close(pfd[0]);
	close(pfd[1]);
	/* The right size, but not sealable: a truncate would kill faultd. */
	ro.bitmap_fd = memfd_create("needed", MFD_CLOEXEC);
	CHECK(ro.bitmap_fd >= 0 &&
	      ftruncate(ro.bitmap_fd, (off_t)BITMAP_BYTES(p.pages)) == 0,
	      "memfd: %s", strerror(errno));
	refused(&ro, theirs, p.pages, 0, 2, "cannot be sealed against shrinking");
	close(ro.bitmap_fd);
	/* The right size and sealed, but faultd cannot map it for writing. */
	CHECK(fcntl(p.bitmap_fd, F_ADD_SEALS, F_SEAL_SHRINK) == 0, "seal: %s",
	      strerror(errno));
	snprintf(path, sizeof(path), "/proc/self/fd/%d", p.bitmap_fd);
	ro.bitmap_fd = open(path, O_RDONLY | O_CLOEXEC);
	CHECK(ro.bitmap_fd >= 0, "open %s: %s", path, strerror(errno));
	refused(&ro, theirs, p.pages, 0, 2, "cannot map the needed bitmap");
	close(ro.bitmap_fd);
	close(p.bitmap_fd);
	p.bitmap_fd = new_bitmap(BITMAP_BYTES(p.pages + 64), &map);
	refused(&p, theirs, p.pages + 64, 0, 2, "has");
	close(p.bitmap_fd);
	close(q.bitmap_fd);
	close(ours);
	close(theirs);
	return 0;
}

/* ---- faultd.sock abuse ------------------------------------------------- */

static int raw_connect(void)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/faultd.sock", rundir);
	CHECK(fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0,
	      "connect faultd.sock: %s", strerror(errno));
	return fd;
}

/* The peer must be closed by faultd within a bound. */
static void expect_closed(int fd, const char *what)
{
	struct pollfd p = { fd, POLLIN, 0 };
	char c;

	CHECK(poll(&p, 1, 5000) == 1, "%s: faultd kept the connection open", what);
	CHECK(read(fd, &c, 1) <= 0, "%s: faultd answered", what);
	close(fd);
	printf("closed after %s\n", what);
}

static int cmd_sockabuse(void)
{
	Tern__Faultd__Empty e = TERN__FAULTD__EMPTY__INIT;
	struct rpc_result res;
	uint8_t buf[64];
	uint32_t len;
	int fd, r, i;

	fd = raw_connect();
	len = htole32(0xfffffff0u);
	CHECK(write(fd, &len, 4) == 4, "write");
	expect_closed(fd, "an oversize length");

	fd = raw_connect();
	len = htole32(40);
	memcpy(buf, &len, 4);
	memset(buf + 4, 0xfe, 40);
	CHECK(write(fd, buf, 44) == 44, "write");
	expect_closed(fd, "garbage");

	fd = raw_connect();
	for (i = 0; i < 64; i++)
		buf[i] = (uint8_t)(i * 37 + 11);
	len = htole32(60);
	memcpy(buf, &len, 4);
	CHECK(write(fd, buf, 64) == 64, "write");
	expect_closed(fd, "noise");

	r = fcall("List", &e.base, NULL, 0, NULL, &res);
	CHECK(r == 0, "List after the abuse: %s", res.message);
	printf("ok: faultd still answers\n");
	return 0;
}

static int cmd_list(void)
{
	Tern__Faultd__Empty e = TERN__FAULTD__EMPTY__INIT;
	Tern__Faultd__SessionList *l = NULL;
	struct rpc_result res;
	size_t i;
	int r;

	r = fcall("List", &e.base, NULL, 0, (ProtobufCMessage **)&l, &res);
	CHECK(r == 0, "List: %s", res.message);
	for (i = 0; i < l->n_sessions; i++)
		printf("%s %s faults %llu needed %llu error '%s'\n", l->sessions[i]->vm,
		       state_name(l->sessions[i]->state),
		       (unsigned long long)l->sessions[i]->faults,
		       (unsigned long long)l->sessions[i]->needed_pages,
		       l->sessions[i]->error);
	protobuf_c_message_free_unpacked(&l->base, NULL);
	return 0;
}

static int cmd_detach(const char *vm, bool force)
{
	Tern__Faultd__DetachRequest dq = TERN__FAULTD__DETACH_REQUEST__INIT;
	struct rpc_result res;
	int r;

	dq.vm = (char *)vm;
	dq.force = force;
	r = fcall("Detach", &dq.base, NULL, 0, NULL, &res);
	if (r < 0) {
		printf("detach %s: %s\n", vm, res.message);
		return 1;
	}
	printf("detached %s\n", vm);
	return 0;
}

/* Vmm.Discard, as migd calls it after a failed migration (bounded). */
static int cmd_discard(const char *vm)
{
	struct rpc_result res;
	int r = vcall(vm, "Discard", NULL, NULL, &res, 20000);

	CHECK(r == 0, "Discard %s: %s", vm, res.message);
	printf("discarded %s\n", vm);
	return 0;
}

/* ---- a vmm whose UffdCreate answers a pipe ------------------------------ */

static void fake_reply(struct rpc_conn *c, uint64_t id, const ProtobufCMessage *m,
		       const int *fds, size_t nfds)
{
	Tern__Rpc__Frame f = TERN__RPC__FRAME__INIT;
	Tern__Rpc__Reply rep = TERN__RPC__REPLY__INIT;
	uint8_t buf[256];
	struct pollfd p = { rpc_conn_fd(c), POLLOUT, 0 };
	int i, r;

	rep.id = id;
	rep.result.len = protobuf_c_message_get_packed_size(m);
	CHECK(rep.result.len <= sizeof(buf), "fake vmm: reply too large");
	rep.result.data = buf;
	protobuf_c_message_pack(m, buf);
	f.body_case = TERN__RPC__FRAME__BODY_REPLY;
	f.reply = &rep;
	CHECK(rpc_conn_send(c, &f, fds, nfds) == 0, "fake vmm: send");
	for (i = 0; i < 100 && (r = rpc_conn_flush(c)) == 0; i++)
		poll(&p, 1, 100);
	CHECK(r == 1, "fake vmm: flush");
}

/* The next request on a fake vmm's connection fd: 1 (in *ret, with how
 * many descriptors came, closed here, in *nfds), 0 if none came within
 * wait_ms, -1 once the connection ended.  With keep, the first
 * descriptor is not closed but left there (-1: none came). */
static int fake_next_fd(struct rpc_conn *c, int fd, int wait_ms,
			Tern__Rpc__Frame **ret, size_t *nfds, int *keep)
{
	struct pollfd p = { fd, POLLIN, 0 };
	int fds[RPC_MAX_FDS], r;
	size_t i;

	r = rpc_conn_recv(c, ret, fds, nfds);
	if (r == 0) {
		poll(&p, 1, wait_ms);
		return 0;
	}
	if (r < 0)
		return -1;
	if (keep)
		*keep = *nfds ? fds[0] : -1;
	for (i = keep ? 1 : 0; i < *nfds; i++)
		close(fds[i]);
	CHECK((*ret)->body_case == TERN__RPC__FRAME__BODY_REQUEST,
	      "fake vmm: not a request");
	return 1;
}

static int fake_next(struct rpc_conn *c, int fd, int wait_ms,
		     Tern__Rpc__Frame **ret, size_t *nfds)
{
	return fake_next_fd(c, fd, wait_ms, ret, nfds, NULL);
}

/* Listen on VM's control socket as a fake vmm; say "WHAT VM ready". */
static int fake_listen(const char *vm, const char *what)
{
	struct uri u = { .kind = URI_UNIX };
	int lfd;

	snprintf(u.path, sizeof(u.path), "%s/vmm/%s.sock", rundir, vm);
	lfd = uri_listen(&u, 4);
	CHECK(lfd >= 0, "listen on %s: %s", u.path, strerror(-lfd));
	printf("%s %s ready\n", what, vm);
	return lfd;
}

/* The next caller of a fake vmm: its connection, and its fd in *ret_fd. */
static struct rpc_conn *fake_accept(int lfd, int *ret_fd)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	struct rpc_conn *c;

	CHECK(fd >= 0 && rpc_conn_new(fd, 0, &c) == 0, "accept");
	*ret_fd = fd;
	return c;
}

/* A slow vmm: wait (bounded) until the file hold exists. */
static void fake_hold(const char *hold)
{
	int i;

	printf("fake vmm: holding GetRam\n");
	for (i = 0; i < 600 && access(hold, F_OK) < 0; i++)
		usleep(100000);
	CHECK(i < 600, "fake vmm: %s never came", hold);
}

/*
 * Serve VM's control socket as a vmm would for faultd's Attach (GetRam:
 * one 2 MiB region; UffdRelease), except that UffdCreate answers the
 * read end of a pipe.  Until killed.  With hold, GetRam waits for it.
 */
static int cmd_fakevmm(const char *vm, const char *hold)
{
	Tern__Vmm__RamRegion reg = TERN__VMM__RAM_REGION__INIT, *regs[1] = { &reg };
	Tern__Vmm__RamLayout lay = TERN__VMM__RAM_LAYOUT__INIT;
	Tern__Vmm__UffdInfo info = TERN__VMM__UFFD_INFO__INIT;
	Tern__Vmm__Empty e = TERN__VMM__EMPTY__INIT;
	uint64_t host = 0x7f0000000000ull;
	int lfd, fd, pfd[2];
	Tern__Rpc__Frame *f;
	struct rpc_conn *c;
	size_t nfds;
	int r;

	reg.size = 2u << 20;
	lay.page_size = 4096;
	lay.n_regions = 1;
	lay.regions = regs;
	info.n_host = 1;
	info.host = &host;
	CHECK(pipe2(pfd, O_CLOEXEC) == 0, "pipe");
	lfd = fake_listen(vm, "fake vmm");
	for (;;) {
		c = fake_accept(lfd, &fd);
		while ((r = fake_next(c, fd, 1000, &f, &nfds)) >= 0) {
			if (r == 0)
				continue;
			if (strstr(f->request->method, "/GetRam") && hold)
				fake_hold(hold);
			if (strstr(f->request->method, "/GetRam"))
				fake_reply(c, f->request->id, &lay.base, NULL, 0);
			else if (strstr(f->request->method, "/UffdCreate"))
				fake_reply(c, f->request->id, &info.base, pfd, 1);
			else
				fake_reply(c, f->request->id, &e.base, NULL, 0);
			printf("fake vmm: %s\n", f->request->method);
			tern__rpc__frame__free_unpacked(f, NULL);
		}
		rpc_conn_free(c);
	}
}

/* ---- a vmm whose uffd has more than faultd serves ------------------------ */

#define FAKEUFFD_BYTES (2u << 20)
#define FAKEUFFD_TOUCH (100 * PAGE)     /* a page not needed: a zero page */
#define FAKEUFFD_FORKS 8

struct fakeuffd {
	const char *kind;
	uint8_t *mem;
	int uffd;
	pthread_t th;
	bool th_running;
};

/* After UffdCreate's answer: fault (a read of a page that is in the page
 * cache, and so minor for a minor registration), or fork. */
static void *fakeuffd_main(void *arg)
{
	struct fakeuffd *u = arg;
	volatile uint8_t v;
	pid_t pid;
	int i;

	if (strcmp(u->kind, "fork") != 0) {
		v = u->mem[FAKEUFFD_TOUCH];
		printf("fake vmm: read 0x%02x\n", v);
		return NULL;
	}
	/* Each fork waits until its event is read, or the uffd is gone. */
	for (i = 0; i < FAKEUFFD_FORKS; i++) {
		pid = fork();
		if (pid == 0)
			_exit(0);
		CHECK(pid > 0 && waitpid(pid, NULL, 0) == pid, "fork");
	}
	printf("fake vmm: forked %d times\n", FAKEUFFD_FORKS);
	return NULL;
}

/* UffdCreate as the vmm does it (vmm/uffd.c), with the kind's features
 * and registration: minor (MINOR_SHMEM asked for, registered for missing
 * and minor faults), fork (EVENT_FORK asked for), or minorreg (only what
 * the vmm asks for, but registered for minor faults too). */
static int fakeuffd_create(struct fakeuffd *u, int devfd)
{
	struct uffdio_api api = { .api = UFFD_API,
				  .features = UFFD_FEATURE_MISSING_SHMEM };
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MISSING };

	if (strcmp(u->kind, "minor") == 0)
		api.features |= UFFD_FEATURE_MINOR_SHMEM;
	if (strcmp(u->kind, "fork") == 0)
		api.features |= UFFD_FEATURE_EVENT_FORK;
	if (strcmp(u->kind, "fork") != 0)
		reg.mode |= UFFDIO_REGISTER_MODE_MINOR;
	CHECK(devfd >= 0, "fake vmm: UffdCreate without a descriptor");
	u->uffd = ioctl(devfd, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
	close(devfd);
	CHECK(u->uffd >= 0, "USERFAULTFD_IOC_NEW: %s", strerror(errno));
	CHECK(ioctl(u->uffd, UFFDIO_API, &api) == 0, "UFFDIO_API 0x%llx: %s",
	      (unsigned long long)api.features, strerror(errno));
	reg.range.start = (uintptr_t)u->mem;
	reg.range.len = FAKEUFFD_BYTES;
	CHECK(ioctl(u->uffd, UFFDIO_REGISTER, &reg) == 0, "UFFDIO_REGISTER: %s",
	      strerror(errno));
	return u->uffd;
}

/* UffdRelease: unregister (which wakes a faulting reader) and close. */
static void fakeuffd_release(struct fakeuffd *u)
{
	struct uffdio_range r = { (uintptr_t)u->mem, FAKEUFFD_BYTES };

	if (u->uffd >= 0) {
		ioctl(u->uffd, UFFDIO_UNREGISTER, &r);
		close(u->uffd);
	}
	u->uffd = -1;
	if (u->th_running)
		pthread_join(u->th, NULL);
	u->th_running = false;
}

/*
 * Serve VM's socket as a vmm whose UffdCreate makes a real uffd with
 * our /dev/userfaultfd, of the given kind (fakeuffd_create), over a 2 MiB
 * memfd whose pages are all in the page cache; after its answer it
 * reads a page (fork: forks FAKEUFFD_FORKS times).  Until killed.
 */
static int cmd_fakeuffd(const char *vm, const char *kind)
{
	Tern__Vmm__RamRegion reg = TERN__VMM__RAM_REGION__INIT, *regs[1] = { &reg };
	Tern__Vmm__RamLayout lay = TERN__VMM__RAM_LAYOUT__INIT;
	Tern__Vmm__UffdInfo info = TERN__VMM__UFFD_INFO__INIT;
	Tern__Vmm__Empty e = TERN__VMM__EMPTY__INIT;
	struct fakeuffd u = { .kind = kind, .uffd = -1 };
	int lfd, fd, memfd, devfd, uffd, r;
	Tern__Rpc__Frame *f;
	struct rpc_conn *c;
	uint64_t host;
	uint8_t *fill_map;
	size_t nfds;

	CHECK(!strcmp(kind, "minor") || !strcmp(kind, "fork") ||
	      !strcmp(kind, "minorreg"), "fakeuffd: minor, fork or minorreg");
	memfd = memfd_create("fakeuffd", MFD_CLOEXEC);
	CHECK(memfd >= 0 && ftruncate(memfd, FAKEUFFD_BYTES) == 0, "memfd");
	/* In the page cache, through another mapping: a fault on u.mem
	 * finds the page there (a minor fault, for a minor registration). */
	fill_map = mmap(NULL, FAKEUFFD_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED,
			memfd, 0);
	CHECK(fill_map != MAP_FAILED, "mmap");
	memset(fill_map, 0x5a, FAKEUFFD_BYTES);
	munmap(fill_map, FAKEUFFD_BYTES);
	u.mem = mmap(NULL, FAKEUFFD_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED,
		     memfd, 0);
	CHECK(u.mem != MAP_FAILED, "mmap");
	host = (uintptr_t)u.mem;
	reg.size = FAKEUFFD_BYTES;
	lay.page_size = PAGE;
	lay.n_regions = 1;
	lay.regions = regs;
	info.n_host = 1;
	info.host = &host;
	lfd = fake_listen(vm, "fake vmm");
	for (;;) {
		c = fake_accept(lfd, &fd);
		while ((r = fake_next_fd(c, fd, 1000, &f, &nfds, &devfd)) >= 0) {
			if (r == 0)
				continue;
			if (strstr(f->request->method, "/UffdCreate")) {
				fakeuffd_release(&u);
				uffd = fakeuffd_create(&u, devfd);
				fake_reply(c, f->request->id, &info.base, &uffd, 1);
				/* A fork copies our descriptors: a copy of the
				 * uffd in its half-made child would keep the
				 * uffd open, and the fork would wait for ever
				 * for faultd to read its event.  Only faultd's
				 * copy then: its close ends the wait. */
				if (!strcmp(kind, "fork")) {
					close(u.uffd);
					u.uffd = -1;
				}
				CHECK(pthread_create(&u.th, NULL, fakeuffd_main, &u) == 0,
				      "thread");
				u.th_running = true;
			} else {
				if (devfd >= 0)
					close(devfd);
				if (strstr(f->request->method, "/UffdRelease"))
					fakeuffd_release(&u);
				if (strstr(f->request->method, "/GetRam"))
					fake_reply(c, f->request->id, &lay.base, NULL, 0);
				else
					fake_reply(c, f->request->id, &e.base, NULL, 0);
			}
			printf("fake vmm: %s\n", f->request->method);
			tern__rpc__frame__free_unpacked(f, NULL);
		}
		rpc_conn_free(c);
	}
}

static void fake_error(struct rpc_conn *c, uint64_t id, int err, const char *msg)
{
	Tern__Rpc__Frame f = TERN__RPC__FRAME__INIT;
	Tern__Rpc__Reply rep = TERN__RPC__REPLY__INIT;
	struct pollfd p = { rpc_conn_fd(c), POLLOUT, 0 };
	int i, r;

	rep.id = id;
	rep.status = err;
	rep.message = (char *)msg;
	f.body_case = TERN__RPC__FRAME__BODY_REPLY;
	f.reply = &rep;
	CHECK(rpc_conn_send(c, &f, NULL, 0) == 0, "fake vmm: send");
	for (i = 0; i < 100 && (r = rpc_conn_flush(c)) == 0; i++)
		poll(&p, 1, 100);
	CHECK(r == 1, "fake vmm: flush");
}

/*
 * Serve VM's socket as an incoming vmm of the given size that takes the
 * RAM (AdoptRam) and then refuses the state: the failure of a transfer
 * after the handover.  Exits 0 when told to Quit; 1 if its first
 * connection ends without (at most 60 s).
 */
static int cmd_fakedst(const char *vm, const char *memory, const char *vcpus)
{
	Tern__Vmm__VmmStatus st = TERN__VMM__VMM_STATUS__INIT;
	Tern__Vmm__Empty e = TERN__VMM__EMPTY__INIT;
	int lfd, fd, i;
	Tern__Rpc__Frame *f;
	struct rpc_conn *c;
	const char *m;
	size_t nfds;
	int r;

	st.name = (char *)vm;
	st.state = TERN__VMM__RUN_STATE__RUN_STATE_INCOMING;
	st.memory = strtoull(memory, NULL, 0);
	st.vcpus = (uint32_t)strtoul(vcpus, NULL, 0);
	st.pid = (uint32_t)getpid();
	st.message = "";
	st.guest_mode = "";
	lfd = fake_listen(vm, "fake destination");
	for (i = 0; i < 600; i++) {
		struct pollfd p = { lfd, POLLIN, 0 };

		if (poll(&p, 1, 100) != 1)
			continue;
		c = fake_accept(lfd, &fd);
		while (i < 600 && (r = fake_next(c, fd, 100, &f, &nfds)) >= 0) {
			if (r == 0) {
				i++;
				continue;
			}
			m = strrchr(f->request->method, '/');
			m = m ? m + 1 : f->request->method;
			printf("fake destination: %s%s\n", m,
			       nfds ? " (with descriptors)" : "");
			if (!strcmp(m, "Status"))
				fake_reply(c, f->request->id, &st.base, NULL, 0);
			else if (!strcmp(m, "LoadState"))
				fake_error(c, f->request->id, EINVAL,
					   "state refused: a fake destination");
			else
				fake_reply(c, f->request->id, &e.base, NULL, 0);
			if (!strcmp(m, "Quit")) {
				tern__rpc__frame__free_unpacked(f, NULL);
				rpc_conn_free(c);
				return 0;
			}
			tern__rpc__frame__free_unpacked(f, NULL);
		}
		rpc_conn_free(c);
	}
	printf("FAIL: fake destination %s was not told to quit\n", vm);
	return 1;
}

/* A memfd of bytes for a fake source, sealed against shrinking or not. */
static int fake_memfd(uint64_t bytes, bool sealed)
{
	int fd = memfd_create("fake", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	CHECK(fd >= 0 && ftruncate(fd, (off_t)bytes) == 0, "memfd: %s",
	      strerror(errno));
	CHECK(!sealed || fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) == 0, "seal: %s",
	      strerror(errno));
	return fd;
}

/*
 * Serve VM's socket as a running source vmm of FAKESRC_BYTES (one region)
 * whose memfds migd must refuse: with mode "ram" GetRam answers an
 * unsealed RAM memfd, with "dirty" DirtyStart an unsealed bitmap; the
 * other one is sealed.  At the first DirtySync it does what such a vmm
 * may: marks every page dirty and truncates the unsealed memfd to 0, then
 * answers (a worker that mapped it then dies of SIGBUS: on the bitmap at
 * once, on the RAM when it reads the dirty pages).  Every other call
 * gets an empty answer.  Until killed.
 */
#define FAKESRC_BYTES (4u << 20)

static int cmd_fakesrc(const char *vm, const char *mode)
{
	Tern__Vmm__VmmStatus st = TERN__VMM__VMM_STATUS__INIT;
	Tern__Vmm__RamRegion reg = TERN__VMM__RAM_REGION__INIT, *regs[1] = { &reg };
	Tern__Vmm__RamLayout lay = TERN__VMM__RAM_LAYOUT__INIT;
	Tern__Vmm__DirtyInfo di = TERN__VMM__DIRTY_INFO__INIT;
	Tern__Vmm__DirtySyncResult ds = TERN__VMM__DIRTY_SYNC_RESULT__INIT;
	Tern__Vmm__Empty e = TERN__VMM__EMPTY__INIT;
	uint64_t pages = FAKESRC_BYTES / PAGE, *dirty;
	bool bad_ram = strcmp(mode, "ram") == 0;
	int lfd, fd, ram, bitmap, r;
	Tern__Rpc__Frame *f;
	struct rpc_conn *c;
	uint8_t *mem;
	const char *m;
	size_t nfds;

	CHECK(bad_ram || strcmp(mode, "dirty") == 0, "fakesrc: mode ram or dirty");
	st.name = (char *)vm;
	st.state = TERN__VMM__RUN_STATE__RUN_STATE_RUNNING;
	st.vcpus = 1;
	st.memory = FAKESRC_BYTES;
	st.pid = (uint32_t)getpid();
	st.message = "";
	st.guest_mode = "";
	reg.size = FAKESRC_BYTES;
	lay.page_size = PAGE;
	lay.n_regions = 1;
	lay.regions = regs;
	di.pages = pages;
	di.bitmap_bytes = BITMAP_BYTES(pages);
	ds.dirty_pages = pages;
	/* Data in every page: round 1 sends them all. */
	ram = fake_memfd(FAKESRC_BYTES, !bad_ram);
	mem = mmap(NULL, FAKESRC_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, ram, 0);
	CHECK(mem != MAP_FAILED, "mmap the RAM");
	fill(mem, 0, FAKESRC_BYTES);
	munmap(mem, FAKESRC_BYTES);
	bitmap = fake_memfd(di.bitmap_bytes, bad_ram);
	dirty = mmap(NULL, di.bitmap_bytes, PROT_READ | PROT_WRITE, MAP_SHARED,
		     bitmap, 0);
	CHECK(dirty != MAP_FAILED, "mmap the bitmap");
	lfd = fake_listen(vm, "fake source");
	for (;;) {
		c = fake_accept(lfd, &fd);
		while ((r = fake_next(c, fd, 1000, &f, &nfds)) >= 0) {
			if (r == 0)
				continue;
			m = strrchr(f->request->method, '/');
			m = m ? m + 1 : f->request->method;
			printf("fake source: %s\n", m);
			if (!strcmp(m, "Status")) {
				fake_reply(c, f->request->id, &st.base, NULL, 0);
			} else if (!strcmp(m, "GetRam")) {
				fake_reply(c, f->request->id, &lay.base, &ram, 1);
			} else if (!strcmp(m, "DirtyStart")) {
				fake_reply(c, f->request->id, &di.base, &bitmap, 1);
			} else if (!strcmp(m, "DirtySync")) {
				memset(dirty, 0xff, di.bitmap_bytes);
				if (ftruncate(bad_ram ? ram : bitmap, 0) == 0)
					printf("fake source: truncated the %s\n",
					       bad_ram ? "RAM" : "dirty bitmap");
				fake_reply(c, f->request->id, &ds.base, NULL, 0);
			} else {
				fake_reply(c, f->request->id, &e.base, NULL, 0);
			}
			tern__rpc__frame__free_unpacked(f, NULL);
		}
		rpc_conn_free(c);
	}
}

/* Attach to the fake vmm must be refused, naming what it lent (or
 * saying words). */
static int cmd_notuffd(const char *vm, const char *words, const char *pages)
{
	struct peer p = { .vm = vm };
	int ours, theirs;

	p.pages = pages ? strtoull(pages, NULL, 0) : 512;
	link_pair(&ours, &theirs);
	p.bitmap_fd = new_bitmap(BITMAP_BYTES(p.pages), &p.needed);
	refused(&p, theirs, p.pages, 0, 2, words ? words : "is not a userfaultfd (pipe:");
	close(ours);
	close(theirs);
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 3)
		goto usage;
	rundir = argv[1];
	if (strcmp(argv[2], "serve") == 0 && argc == 4)
		return cmd_serve(argv[3]);
	if (strcmp(argv[2], "abuse") == 0 && argc == 5)
		return cmd_abuse(argv[3], argv[4]);
	if (strcmp(argv[2], "errors") == 0 && argc == 5)
		return cmd_errors(argv[3], argv[4]);
	if (strcmp(argv[2], "discard") == 0 && argc == 4)
		return cmd_discard(argv[3]);
	if (strcmp(argv[2], "fakevmm") == 0 && (argc == 4 || argc == 5))
		return cmd_fakevmm(argv[3], argc == 5 ? argv[4] : NULL);
	if (strcmp(argv[2], "fakedst") == 0 && argc == 6)
		return cmd_fakedst(argv[3], argv[4], argv[5]);
	if (strcmp(argv[2], "fakeuffd") == 0 && argc == 5)
		return cmd_fakeuffd(argv[3], argv[4]);
	if (strcmp(argv[2], "fakesrc") == 0 && argc == 5)
		return cmd_fakesrc(argv[3], argv[4]);
	if (strcmp(argv[2], "notuffd") == 0 && argc >= 4 && argc <= 6)
		return cmd_notuffd(argv[3], argc >= 5 ? argv[4] : NULL,
				   argc == 6 ? argv[5] : NULL);
	if (strcmp(argv[2], "sockabuse") == 0)
		return cmd_sockabuse();
	if (strcmp(argv[2], "list") == 0)
		return cmd_list();
	if (strcmp(argv[2], "detach") == 0 && argc >= 4)
		return cmd_detach(argv[3], argc > 4 && strcmp(argv[4], "force") == 0);
usage:
	fprintf(stderr, "usage: itest_pagepeer RUNDIR serve VM | abuse VM KIND | "
		"errors IN RUN | sockabuse | discard VM | fakevmm VM [HOLD] | "
		"fakeuffd VM minor|fork|minorreg | fakedst VM MEMORY VCPUS | "
		"fakesrc VM ram|dirty | "
		"notuffd VM [WORDS [PAGES]] | "
		"list | detach VM [force]\n");
	return 2;
}
