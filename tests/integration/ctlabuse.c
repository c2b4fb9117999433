// SPDX-License-Identifier: GPL-2.0-only
/*
 * A hostile local peer against a real vmm's control socket: garbage,
 * absurd lengths, frames that are not requests, descriptors nobody asked
 * for, connections dropped mid-frame or held half-sent, memory access at
 * the edges of RAM and the PCI hole, memfds shrunk behind the vmm's back,
 * a request that would grow a hundredfold in memory, replies never read,
 * reads of missing pages while a userfaultfd nobody serves is registered.
 * After each, the vmm must still answer.  Usage:
 *   itest_ctlabuse SOCKET running    (a running test guest)
 *   itest_ctlabuse SOCKET incoming   (an incoming vmm of 4100M)
 *   itest_ctlabuse SOCKET hold       (open connections until refused,
 *                                      print how many, hold them until
 *                                      stdin closes)
 *   itest_ctlabuse SOCKET stall      (a vmm that drops stalled peers
 *                                      after 2 s: TERN_FAULT
 *                                      control-stall-2s)
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/rpc.h"
#include "common/util.h"
#include "proto/vmm.pb-c.h"

#define CHECK(cond, ...) do { if (!(cond)) { printf("FAIL: " __VA_ARGS__); \
	printf("\n"); exit(1); } } while (0)
#define MIB (1ULL << 20)

static const char *sock_path;

static int raw_connect(void)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	CHECK(fd >= 0, "socket");
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", sock_path);
	CHECK(connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0,
	      "connect %s: %s", sock_path, strerror(errno));
	return fd;
}

static void raw_send(int fd, const void *buf, size_t len, const int *fds,
		     size_t nfds)
{
	union {
		char b[CMSG_SPACE(4 * sizeof(int))];
		struct cmsghdr align;
	} cbuf;
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *cm;

	if (nfds) {
		memset(&cbuf, 0, sizeof(cbuf));
		msg.msg_control = cbuf.b;
		msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(nfds * sizeof(int));
		memcpy(CMSG_DATA(cm), fds, nfds * sizeof(int));
	}
	/* The vmm may already have closed us: that is fine. */
	(void)sendmsg(fd, &msg, MSG_NOSIGNAL);
}

static size_t request(uint8_t *buf, size_t len, const char *method,
		      uint32_t nfds)
{
	Tern__Rpc__Frame f = TERN__RPC__FRAME__INIT;
	Tern__Rpc__Request req = TERN__RPC__REQUEST__INIT;
	int n;

	req.id = 1;
	req.method = (char *)method;
	f.nfds = nfds;
	f.body_case = TERN__RPC__FRAME__BODY_REQUEST;
	f.request = &req;
	n = rpc_frame_encode(&f, buf, len);
	CHECK(n > 0, "encode");
	return (size_t)n;
}

static struct rpc_client *client(void)
{
	struct rpc_client *cl;

	CHECK(rpc_client_connect_path(sock_path, 10000, &cl) == 0, "connect");
	rpc_client_set_max_frame(cl, 4 << 20);
	return cl;
}

/* A call on the connection cl (one that lasts), without descriptors. */
static int call_on(struct rpc_client *cl, const char *method,
		   const ProtobufCMessage *arg, struct rpc_result *res)
{

	return rpc_client_call(cl, &tern__vmm__vmm__descriptor, method,
			       arg, NULL, 0, NULL, res, 10000,
			       NULL, NULL);
}

/* A call on a connection of its own. */
static int call(const char *method, const ProtobufCMessage *arg,
		const int *fds, size_t nfds, ProtobufCMessage **ret,
		struct rpc_result *res)
{
	struct rpc_client *cl = client();
	struct rpc_result tmp;
	int r;

	r = rpc_client_call(cl, &tern__vmm__vmm__descriptor, method,
			    arg, fds, nfds, ret,
			    res ? res : &tmp, 10000, NULL, NULL);
	if (!res)
		rpc_result_close_fds(&tmp);
	rpc_client_free(cl);
	return r;
}

static void assert_answers(const char *after)
{
	ProtobufCMessage *st = NULL;

	CHECK(call("Status", NULL, NULL, 0, &st, NULL) == 0,
	      "no Status after %s", after);
	protobuf_c_message_free_unpacked(st, NULL);
}

static void read_mem(uint64_t gpa, uint32_t len, int want)
{
	Tern__Vmm__MemRange r = TERN__VMM__MEM_RANGE__INIT;
	ProtobufCMessage *d = NULL;
	int ret;

	r.gpa = gpa;
	r.len = len;
	ret = call("ReadMem", &r.base, NULL, 0, &d, NULL);
	CHECK(ret == want, "ReadMem 0x%llx+%u: %d, expected %d",
	      (unsigned long long)gpa, len, ret, want);
	if (d) {
		CHECK(((Tern__Vmm__MemData *)d)->data.len == len, "short read");
		protobuf_c_message_free_unpacked(d, NULL);
	}
}

static void abuse_framing(void)
{
	static const uint32_t lens[] = { 0, 0xffffffffu, 0x7fffffffu,
					 (4u << 20) + 1, 100 };
	uint8_t buf[512], junk[256];
	int fd, nul, fds[3], held[64];
	size_t i, n;

	for (i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)(i * 37 + 11);
	for (i = 0; i < 20; i++) {
		fd = raw_connect();
		raw_send(fd, junk + i, sizeof(junk) - i, NULL, 0);
		close(fd);
	}
	assert_answers("garbage");
	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		fd = raw_connect();
		memcpy(buf, &lens[i], 4);       /* little-endian host */
		raw_send(fd, buf, 5, NULL, 0);
		close(fd);
	}
	assert_answers("absurd lengths");

	/* Requests with descriptors they do not take, or miscounted. */
	nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
	CHECK(nul >= 0, "/dev/null");
	fds[0] = fds[1] = fds[2] = nul;
	for (i = 0; i < 4; i++) {
		fd = raw_connect();
		n = request(buf, sizeof(buf), i % 2 ? "tern.vmm.Vmm/GetRam" :
			    "tern.vmm.Vmm/Status", (uint32_t)(3 - i));
		raw_send(fd, buf, n, fds, i == 3 ? 0 : 3);
		close(fd);
	}
	close(nul);
	assert_answers("stray descriptors");

	/* Unknown methods, and connections held open mid-frame. */
	for (i = 0; i < 64; i++) {
		held[i] = raw_connect();
		n = request(buf, sizeof(buf), i % 3 ? "tern.vmm.Vmm/Nope" :
			    "tern.vmm.Vmm/Status", 0);
		raw_send(held[i], buf, i % (n + 1), NULL, 0);
	}
	assert_answers("64 connections held mid-frame");
	for (i = 0; i < 64; i++)
		close(held[i]);
	assert_answers("connections dropped mid-frame");
}

/* A memfd the vmm handed out cannot be shrunk under its mapping. */
static void assert_sealed(int fd, const char *what)
{
	CHECK(ftruncate(fd, 4096) < 0 && errno == EPERM,
	      "%s could be shrunk (%s)", what, strerror(errno));
}

/* SetMoved: only a paused guest, only printable text; clearing always. */
static void set_moved(void)
{
	Tern__Vmm__MovedNote n = TERN__VMM__MOVED_NOTE__INIT;
	struct rpc_result res;
	char big[300];
	int r;

	n.to = "tcp:192.0.2.1:4444 (job 1)";
	r = call("SetMoved", &n.base, NULL, 0, NULL, &res);
	CHECK(r == -EBUSY && strstr(res.message, "it is running here, not paused"),
	      "SetMoved of a running guest: %d %s", r, res.message);
	CHECK(call("Stop", NULL, NULL, 0, NULL, NULL) == 0, "Stop");
	n.to = "tcp:x \033[2J";
	r = call("SetMoved", &n.base, NULL, 0, NULL, &res);
	CHECK(r == -EINVAL && strstr(res.message, "control character"),
	      "SetMoved with an escape: %d %s", r, res.message);
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	n.to = big;
	r = call("SetMoved", &n.base, NULL, 0, NULL, &res);
	CHECK(r == -EINVAL && strstr(res.message, "longer than 255"),
	      "SetMoved of 299 bytes: %d %s", r, res.message);
	/* None of them marked it: it continues. */
	CHECK(call("Cont", NULL, NULL, 0, NULL, &res) == 0, "Cont: %s", res.message);
}

/* What a Stop on cl found (VmmStatus.found), as the operator has the
 * guest; -1 when the Stop failed. */
static int stop_found(struct rpc_client *cl, bool transient)
{
	Tern__Vmm__StopRequest rq = TERN__VMM__STOP_REQUEST__INIT;
	Tern__Vmm__VmmStatus *st = NULL;
	struct rpc_result res;
	int found;

	rq.transient = transient;
	if (rpc_client_call(cl, &tern__vmm__vmm__descriptor, "Stop", &rq.base,
			    NULL, 0, (ProtobufCMessage **)&st, &res, 10000, NULL,
			    NULL) < 0)
		return -1;
	found = st->found;
	protobuf_c_message_free_unpacked(&st->base, NULL);
	return found;
}

/* A pause for a caller's own work (a migration's switch, a transfer, a
 * check) leaves the guest running as its operator has it while that
 * caller is there: a second mover finds it so (two transfers raced, and
 * the winner kept the guest paused on its destination).  One left
 * behind is the operator's, as the status shows it. */
static void stop_intent(void)
{
	const int running = TERN__VMM__RUN_STATE__RUN_STATE_RUNNING,
		  paused = TERN__VMM__RUN_STATE__RUN_STATE_PAUSED;
	struct rpc_client *a = client(), *b = client();
	int f;

	f = stop_found(a, true);
	CHECK(f == running, "a transient Stop of a running guest found %d", f);
	f = stop_found(b, true);
	CHECK(f == running, "a transient Stop after another found %d", f);
	f = stop_found(b, false);
	CHECK(f == running, "the operator's Stop after a transient one found %d", f);
	f = stop_found(a, true);
	CHECK(f == paused, "a transient Stop after the operator's found %d", f);
	f = stop_found(b, false);
	CHECK(f == paused, "the operator's second Stop found %d", f);
	CHECK(call("Cont", NULL, NULL, 0, NULL, NULL) == 0, "Cont");
	f = stop_found(a, true);
	CHECK(f == running, "a transient Stop after Cont found %d", f);
	rpc_client_free(a);
	f = stop_found(b, true);
	CHECK(f == paused, "a transient Stop after the first's caller left found %d", f);
	CHECK(call("Cont", NULL, NULL, 0, NULL, NULL) == 0, "Cont");
	rpc_client_free(b);
}

/* One move at a time: a mark is its setter's claim while it stays
 * connected (a transfer), and a migration's dirty logging is one too. */
static void claims(void)
{
	Tern__Vmm__MovedNote n = TERN__VMM__MOVED_NOTE__INIT;
	Tern__Vmm__Throttle thr = TERN__VMM__THROTTLE__INIT;
	Tern__Vmm__MemData md = TERN__VMM__MEM_DATA__INIT;
	struct rpc_client *a = client(), *b = client();
	struct rpc_result res;
	int r;

	CHECK(call_on(a, "Stop", NULL, &res) == 0, "Stop: %s", res.message);
	n.to = "vmm t1 (transfer a)";
	CHECK(call_on(a, "SetMoved", &n.base, &res) == 0, "SetMoved a: %s",
	      res.message);
	n.to = "vmm t2 (transfer b)";
	r = call_on(b, "SetMoved", &n.base, &res);
	CHECK(r == -EBUSY && strstr(res.message, "being moved to vmm t1 (transfer a)"),
	      "a second mark while the first's setter is connected: %d %s", r,
	      res.message);
	r = call_on(b, "Cont", NULL, &res);
	CHECK(r == -EBUSY && strstr(res.message, "that move still runs"),
	      "Cont of a VM another caller marked: %d %s", r, res.message);
	thr.percent = 50;
	r = call_on(b, "SetThrottle", &thr.base, &res);
	CHECK(r == -EBUSY && strstr(res.message, "that move still runs"),
	      "a throttle on a VM another caller marked: %d %s", r, res.message);
	md.gpa = 0x1000;
	md.data.data = (uint8_t *)"x";
	md.data.len = 1;
	r = call_on(b, "WriteMem", &md.base, &res);
	CHECK(r == -EBUSY && strstr(res.message, "cannot write guest memory: the "
				   "guest is being moved to vmm t1"),
	      "a write into a VM another caller marked: %d %s", r, res.message);
	md.force = true;
	CHECK(call_on(b, "WriteMem", &md.base, &res) == 0,
	      "a forced write into a marked VM: %s", res.message);
	n.to = "";
	r = call_on(b, "SetMoved", &n.base, &res);
	CHECK(r == -EBUSY && strstr(res.message, "the mark stays"),
	      "another caller cleared a held mark: %d %s", r, res.message);
	CHECK(call_on(a, "SetMoved", &n.base, &res) == 0, "clear: %s", res.message);
	CHECK(call_on(a, "Cont", NULL, &res) == 0, "Cont a: %s", res.message);

	/* b migrates (dirty logging): a may not mark the guest as moved. */
	CHECK(call_on(b, "DirtyStart", NULL, &res) == 0, "DirtyStart: %s",
	      res.message);
	rpc_result_close_fds(&res);
	CHECK(call_on(a, "Stop", NULL, &res) == 0, "Stop: %s", res.message);
	n.to = "vmm t1 (transfer a)";
	r = call_on(a, "SetMoved", &n.base, &res);
	CHECK(r == -EBUSY && strstr(res.message, "a migration of it is under way"),
	      "a mark during a migration: %d %s", r, res.message);
	CHECK(call_on(b, "DirtyStop", NULL, &res) == 0, "DirtyStop: %s", res.message);

	/* A mark stands after its setter has gone: no one marks over it
	 * (the guest may run where it went); clearing it reopens. */
	n.to = "vmm t1 (transfer a)";
	CHECK(call_on(a, "SetMoved", &n.base, &res) == 0, "SetMoved a: %s",
	      res.message);
	rpc_client_free(a);
	n.to = "vmm t2 (transfer b)";
	r = call_on(b, "SetMoved", &n.base, &res);
	CHECK(r == -EALREADY && strstr(res.message, "already moved to vmm t1"),
	      "a mark over another's: %d %s", r, res.message);
	n.to = "";
	CHECK(call_on(b, "SetMoved", &n.base, &res) == 0, "clear: %s", res.message);
	CHECK(call_on(b, "Cont", NULL, &res) == 0, "Cont: %s", res.message);
	rpc_client_free(b);
}

static void run_running(void)
{
	ProtobufCMessage *out = NULL;
	struct rpc_result res;
	size_t i;

	abuse_framing();
	read_mem(64 * MIB - 4096, 4096, 0);
	read_mem(64 * MIB - 4096, 4097, -EFAULT);
	read_mem(64 * MIB, 1, -EFAULT);
	read_mem(0, (1 << 20) + 1, -EINVAL);
	read_mem(~0ULL, 2, -EFAULT);

	CHECK(call("GetRam", NULL, NULL, 0, &out, &res) == 0 && res.nfds == 1,
	      "GetRam");
	protobuf_c_message_free_unpacked(out, NULL);
	for (i = 0; i < res.nfds; i++)
		assert_sealed(res.fds[i], "a guest RAM memfd from GetRam");
	rpc_result_close_fds(&res);
	CHECK(call("DirtyStart", NULL, NULL, 0, &out, &res) == 0 &&
	      res.nfds == 1, "DirtyStart");
	protobuf_c_message_free_unpacked(out, NULL);
	assert_sealed(res.fds[0], "the dirty bitmap memfd");
	rpc_result_close_fds(&res);
	CHECK(call("DirtySync", NULL, NULL, 0, NULL, NULL) == 0, "DirtySync");
	CHECK(call("DirtyStop", NULL, NULL, 0, NULL, NULL) == 0, "DirtyStop");
	assert_answers("memory access");
	set_moved();
	stop_intent();
	claims();
}


static int memfd_of(uint64_t size, bool seal)
{
	int fd = memfd_create("abuse", MFD_CLOEXEC |
			      (seal ? MFD_ALLOW_SEALING : 0));

	CHECK(fd >= 0 && ftruncate(fd, (off_t)size) == 0, "memfd");
	if (seal)
		CHECK(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) == 0, "seal");
	return fd;
}

static int adopt(uint64_t size0, uint64_t size1, bool seal, uint32_t page,
		 struct rpc_result *res)
{
	Tern__Vmm__RamLayout lay = TERN__VMM__RAM_LAYOUT__INIT;
	Tern__Vmm__RamRegion r[2], *pr[2] = { &r[0], &r[1] };
	int fds[2], ret;

	tern__vmm__ram_region__init(&r[0]);
	tern__vmm__ram_region__init(&r[1]);
	r[0].gpa = 0;
	r[0].size = 3072 * MIB;
	r[1].gpa = 4096 * MIB;
	r[1].size = 4100 * MIB - 3072 * MIB;
	lay.page_size = page;
	lay.n_regions = 2;
	lay.regions = pr;
	fds[0] = memfd_of(size0, seal);
	fds[1] = memfd_of(size1, seal);
	ret = call("AdoptRam", &lay.base, fds, 2, NULL, res);
	close(fds[0]);
	close(fds[1]);
	return ret;
}

/* A field of the vmm's /proc/PID/status, in kB (its pid from the socket). */
static unsigned long vmm_status_kb(const char *field)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	char path[64], line[128];
	unsigned long kb = 0;
	int fd = raw_connect();
	FILE *f;

	CHECK(getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0,
	      "SO_PEERCRED");
	close(fd);
	snprintf(path, sizeof(path), "/proc/%d/status", (int)cred.pid);
	f = fopen(path, "r");
	CHECK(f, "open %s", path);
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, field, strlen(field)) &&
		    line[strlen(field)] == ':' &&
		    sscanf(line + strlen(field) + 1, "%lu kB", &kb) == 1)
			break;
	fclose(f);
	CHECK(kb, "no %s in %s", field, path);
	return kb;
}

/*
 * 32 requests for 1 MiB each, whose replies are never read: the vmm
 * stops reading them once it owes its cap (4 MiB), and holds no more
 * (it held all 32 MiB when it read a whole batch first).
 */
/* n requests on fd to read 1 MiB of guest memory, their replies left
 * for the caller to read (or not). */
static void send_reads(int fd, int n)
{
	Tern__Rpc__Frame f = TERN__RPC__FRAME__INIT;
	Tern__Rpc__Request req = TERN__RPC__REQUEST__INIT;
	Tern__Vmm__MemRange r = TERN__VMM__MEM_RANGE__INIT;
	uint8_t arg[32], buf[256];
	int i, len;

	r.len = 1 << 20;
	req.method = "tern.vmm.Vmm/ReadMem";
	req.arg = (ProtobufCBinaryData){ tern__vmm__mem_range__pack(&r, arg), arg };
	f.body_case = TERN__RPC__FRAME__BODY_REQUEST;
	f.request = &req;
	for (i = 0; i < n; i++) {
		req.id = (uint64_t)i + 1;
		len = rpc_frame_encode(&f, buf, sizeof(buf));
		CHECK(len > 0, "encode");
		raw_send(fd, buf, (size_t)len, NULL, 0);
	}
}

static void unread_replies(void)
{
	enum { N = 32 };
	unsigned long before = vmm_status_kb("RssAnon"), after;
	int fd = raw_connect();

	send_reads(fd, N);
	assert_answers("unread replies");       /* it has read what it will */
	after = vmm_status_kb("RssAnon");
	printf("32 unread 1 MiB replies: the vmm's RssAnon %lu -> %lu kB\n",
	       before, after);
	close(fd);
	/* Here: +3 MiB; +17 with ASan's quarantine; +35 when it read all. */
	CHECK(after < before + 24 * 1024, "the vmm's anonymous memory went from "
	      "%lu to %lu kB for %d unread 1 MiB replies", before, after, N);
	assert_answers("a peer that does not read its replies");
}

/*
 * A LoadState of nearly 4 MiB made of empty vCPU entries (2 bytes each,
 * some 350 in memory): refused as malformed while decoded, and the vmm
 * never holds more than a small multiple of the request (it held 710 MB
 * when each entry was decoded).
 */
static void tiny_elements(void)
{
	enum { N = 1900000 };
	Tern__Vmm__VmState st = TERN__VMM__VM_STATE__INIT;
	Tern__Vmm__VcpuState empty = TERN__VMM__VCPU_STATE__INIT;
	Tern__Vmm__VcpuState **vp = malloc(N * sizeof(*vp));
	unsigned long before = vmm_status_kb("VmHWM"), after;
	struct rpc_result res;
	size_t i;
	int ret;

	CHECK(vp, "malloc");
	for (i = 0; i < N; i++)
		vp[i] = &empty;
	st.n_vcpus = N;
	st.vcpus = vp;
	ret = call("LoadState", &st.base, NULL, 0, NULL, &res);
	CHECK(ret == -EINVAL && strstr(res.message, "malformed argument"),
	      "LoadState of %d empty vCPUs: %d %s", N, ret, res.message);
	free(vp);
	after = vmm_status_kb("VmHWM");
	CHECK(after < before + 128 * 1024, "the vmm's peak memory went from %lu "
	      "to %lu kB for a %zu-byte request", before, after,
	      tern__vmm__vm_state__get_packed_size(&st));
	assert_answers("a request of tiny elements");
}

static void write_mem(uint64_t gpa, uint32_t len, int want)
{
	Tern__Vmm__MemData d = TERN__VMM__MEM_DATA__INIT;
	struct rpc_result res;
	uint8_t buf[8192];
	int ret;

	memset(buf, 0xa5, sizeof(buf));
	d.gpa = gpa;
	d.data = (ProtobufCBinaryData){ len, buf };
	ret = call("WriteMem", &d.base, NULL, 0, NULL, &res);
	CHECK(ret == want, "WriteMem 0x%llx+%u: %d, expected %d (%s)",
	      (unsigned long long)gpa, len, ret, want, res.message);
	CHECK(want != -EAGAIN || strstr(res.message, "has not arrived yet"),
	      "WriteMem of a missing page: %s", res.message);
}

/* A ReadMem of 0..8 KiB in a thread of its own, as it may wait. */
struct waiting_read {
	pthread_t th;
	int ret;
	char msg[512];
	uint8_t data[8192];
	bool done;                      /* atomic */
};

static void *waiting_read_main(void *arg)
{
	struct waiting_read *w = arg;
	Tern__Vmm__MemRange r = TERN__VMM__MEM_RANGE__INIT;
	Tern__Vmm__MemData *d = NULL;
	struct rpc_result res;

	r.len = sizeof(w->data);
	w->ret = call("ReadMem", &r.base, NULL, 0, (ProtobufCMessage **)&d, &res);
	snprintf(w->msg, sizeof(w->msg), "%s", res.message);
	if (w->ret == 0 && d->data.len == sizeof(w->data))
		memcpy(w->data, d->data.data, sizeof(w->data));
	else if (w->ret == 0)
		w->ret = -EMSGSIZE;
	if (d)
		protobuf_c_message_free_unpacked(&d->base, NULL);
	__atomic_store_n(&w->done, true, __ATOMIC_RELEASE);
	return NULL;
}

/*
 * With a userfaultfd registered and nobody serving it (as when faultd or
 * its link died in postcopy), a read of a missing page waits as a vCPU
 * would, but in a thread of the vmm's own: the vmm still answers, and
 * releases the uffd, which ends the wait (the page reads as zeros).  At
 * most 4 reads wait; WriteMem of a missing page is refused.  (The vmm
 * used to touch the page on its one thread, and answered nothing more.)
 */
static void missing_pages(void)
{
	enum { N = 5, WAITERS = 4 };
	Tern__Vmm__UffdOwner owner = TERN__VMM__UFFD_OWNER__INIT;
	struct waiting_read w[N];
	struct rpc_result res;
	int dev, ret, i, done = 0, again = 0, tries;
	uint8_t want[8192];

	write_mem(0, 4096, 0);                  /* page 0 arrives */
	/* A descriptor that is not /dev/userfaultfd, as a faultd whose node
	 * was /dev/null would lend (faultd now refuses such a node at start:
	 * t_faultd_device), is refused by the vmm too. */
	dev = open("/dev/null", O_RDWR | O_CLOEXEC);
	CHECK(dev >= 0, "/dev/null: %s", strerror(errno));
	owner.token = 6;
	ret = call("UffdCreate", &owner.base, &dev, 1, NULL, &res);
	close(dev);
	CHECK(ret < 0 && strstr(res.message, "not /dev/userfaultfd"),
	      "UffdCreate with /dev/null: %d %s", ret, res.message);
	rpc_result_close_fds(&res);
	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev < 0) {
		printf("no /dev/userfaultfd (%s): missing pages not tried\n",
		       strerror(errno));
		return;
	}
	/* A call read after its caller's deadline is not done: the next
	 * one finds no uffd there. */
	owner.token = 7;
	owner.deadline_ns = now_ns() - 1;
	ret = call("UffdCreate", &owner.base, &dev, 1, NULL, &res);
	CHECK(ret == -ETIMEDOUT && strstr(res.message, "after its caller's deadline"),
	      "a late UffdCreate: %d %s", ret, res.message);
	owner.deadline_ns = now_ns() + 10000000000ULL;
	ret = call("UffdCreate", &owner.base, &dev, 1, NULL, &res);
	close(dev);
	CHECK(ret == 0, "UffdCreate: %d %s", ret, res.message);
	rpc_result_close_fds(&res);             /* no one serves it */
	read_mem(0, 4096, 0);                   /* there: read at once */

	memset(w, 0, sizeof(w));
	for (i = 0; i < N; i++)
		CHECK(pthread_create(&w[i].th, NULL, waiting_read_main, &w[i]) == 0,
		      "thread");
	/* One of the five is refused at once; four wait (bounded: 10 s). */
	for (tries = 0; tries < 1000 && !done; tries++) {
		for (i = 0; i < N; i++)
			done += __atomic_load_n(&w[i].done, __ATOMIC_ACQUIRE);
		if (!done)
			usleep(10000);
	}
	CHECK(done == 1, "%d of %d reads of a missing page ended while it is "
	      "missing", done, N);
	for (i = 0; i < N; i++)
		if (__atomic_load_n(&w[i].done, __ATOMIC_ACQUIRE))
			CHECK(w[i].ret == -EAGAIN &&
			      strstr(w[i].msg, "4 reads already wait"),
			      "the fifth waiting read: %d %s", w[i].ret, w[i].msg);
	assert_answers("reads of a missing page");
	write_mem(4096, 16, -EAGAIN);
	write_mem(0, 4096, 0);
	/* Another caller's release leaves this uffd: the reads wait on. */
	owner.token = 8;
	CHECK(call("UffdRelease", &owner.base, NULL, 0, NULL, NULL) == 0,
	      "UffdRelease of another's uffd");
	write_mem(4096, 16, -EAGAIN);
	usleep(100000);
	for (i = 0, done = 0; i < N; i++)
		done += __atomic_load_n(&w[i].done, __ATOMIC_ACQUIRE);
	CHECK(done == 1, "%d reads ended after another caller's UffdRelease", done);
	owner.token = 7;
	CHECK(call("UffdRelease", &owner.base, NULL, 0, NULL, NULL) == 0, "UffdRelease");
	memset(want, 0xa5, 4096);
	memset(want + 4096, 0, 4096);
	for (i = 0; i < N; i++) {
		pthread_join(w[i].th, NULL);
		if (w[i].ret == -EAGAIN) {
			again++;
			continue;
		}
		CHECK(w[i].ret == 0, "a waiting read, once the uffd is released: "
		      "%d %s", w[i].ret, w[i].msg);
		CHECK(memcmp(w[i].data, want, sizeof(want)) == 0,
		      "a waiting read did not see page 0's data then zeros");
	}
	CHECK(again == N - WAITERS, "%d reads refused", again);
	CHECK(call("Discard", NULL, NULL, 0, NULL, NULL) == 0, "Discard");
}

static void run_incoming(void)
{
	const uint64_t lo = 3072 * MIB, hi = 4100 * MIB - 3072 * MIB;
	struct rpc_result res;
	int ret;

	abuse_framing();
	tiny_elements();
	unread_replies();
	ret = adopt(lo, hi, true, 2 << 20, &res);
	CHECK(ret == -EINVAL && strstr(res.message, "page size 2097152"),
	      "AdoptRam with 2 MiB pages: %d %s", ret, res.message);
	ret = adopt(lo, hi - 4096, true, 4096, &res);
	CHECK(ret == -EINVAL, "AdoptRam of a short memfd: %d", ret);
	ret = adopt(lo, hi, false, 4096, &res);
	CHECK(ret == -EPERM && strstr(res.message, "sealed"),
	      "AdoptRam of unsealed memfds: %d %s", ret, res.message);
	ret = adopt(lo, hi, true, 4096, &res);
	CHECK(ret == 0, "AdoptRam of sealed memfds: %d %s", ret, res.message);
	assert_answers("AdoptRam");

	read_mem(lo - 4096, 4096, 0);
	read_mem(lo - 1, 2, -EFAULT);           /* into the PCI hole */
	read_mem(lo, 1, -EFAULT);
	read_mem(4096 * MIB - 1, 2, -EFAULT);   /* out of it */
	read_mem(4096 * MIB, 4096, 0);
	read_mem(4096 * MIB + hi - 4096, 4096, 0);
	read_mem(4096 * MIB + hi - 4096, 4097, -EFAULT);
	assert_answers("memory access around the PCI hole");
	missing_pages();
}

/* Whether the vmm closed its end of fd (nothing read from it). */
static bool closed_by_vmm(int fd)
{
	struct pollfd pfd = { .fd = fd, .events = POLLRDHUP };

	return poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLRDHUP | POLLHUP));
}

/*
 * Peers that stall are dropped (vmm(8), TERN_FAULT control-stall-2s),
 * and what they held is given back: one that asked for 8 MiB of guest
 * memory and reads none of it, and one that sent 1 MiB of a 4 MiB frame
 * and no more.  An idle one stays, and is served.  The vmm names them
 * in its log (t_limits looks): this process's pid.
 */
static void run_stall(void)
{
	unsigned long before = vmm_status_kb("RssAnon"), during, after;
	int unread = raw_connect(), half = raw_connect(), idle = raw_connect();
	uint32_t len = 4 << 20;
	struct rpc_client *cl;
	struct rpc_result res;
	uint8_t *body;
	int i;

	send_reads(unread, 8);
	body = calloc(1, MIB + 4);
	CHECK(body, "calloc");
	memcpy(body, &len, 4);                  /* little-endian host */
	raw_send(half, body, MIB + 4, NULL, 0);
	free(body);
	assert_answers("a peer that reads nothing, one stopped in a frame");
	during = vmm_status_kb("RssAnon");
	for (i = 0; i < 200 && !(closed_by_vmm(unread) &&
				 closed_by_vmm(half)); i++)
		usleep(100000);
	CHECK(closed_by_vmm(unread), "the vmm kept a peer that read none of "
	      "the 8 MiB it asked for, 20 s on");
	CHECK(closed_by_vmm(half), "the vmm kept a peer that sent 1 MiB of a "
	      "4 MiB frame and then nothing, 20 s on");
	CHECK(!closed_by_vmm(idle), "the vmm dropped an idle peer");
	CHECK(rpc_client_from_fd(idle, &cl) == 0, "client");
	CHECK(call_on(cl, "Status", NULL, &res) == 0, "Status on the idle "
	      "connection: %s", res.message);
	rpc_client_free(cl);
	after = vmm_status_kb("RssAnon");
	printf("pid %d: stalled peers held by the vmm, then dropped: its "
	       "RssAnon %lu -> %lu -> %lu kB\n", (int)getpid(), before,
	       during, after);
	close(unread);
	close(half);
	/* They held some 5 MiB of replies and 1 MiB of a frame; malloc may
	 * keep a little of it for later (here 164 -> 9392 -> 2352 kB). */
	CHECK(during > before + 4 * 1024, "the stalled peers held only %lu kB",
	      during - before);
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
	printf("NOT TRIED: the vmm's memory given back (a sanitizer keeps "
	       "what is freed)\n");
#else
	CHECK(after + 4 * 1024 < during, "the vmm's anonymous memory went "
	      "from %lu to %lu kB, and %lu kB once the stalled peers were "
	      "dropped", before, during, after);
#endif
}

static void run_hold(void)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int n = 0, refused = 0, fd;
	char c;

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", sock_path);
	/* Until the backlog stays full for a second (EAGAIN): the vmm then
	 * accepts no more, rather than not having run for a moment. */
	while (n < 200 && refused < 100) {
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
			    0);
		CHECK(fd >= 0, "socket");
		if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
			close(fd);
			refused++;
			usleep(10000);
			continue;
		}
		n++;
		refused = 0;
		usleep(2000);           /* let the vmm accept what it can */
	}
	printf("held %d\n", n);
	fflush(stdout);
	while (read(0, &c, 1) > 0)
		;
	exit(0);
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: itest_ctlabuse SOCKET "
			"running|incoming|hold|stall\n");
		return 2;
	}
	sock_path = argv[1];
	if (!strcmp(argv[2], "running"))
		run_running();
	else if (!strcmp(argv[2], "hold"))
		run_hold();
	else if (!strcmp(argv[2], "stall"))
		run_stall();
	else
		run_incoming();
	printf("vmm survived: %s\n", argv[2]);
	return 0;
}
