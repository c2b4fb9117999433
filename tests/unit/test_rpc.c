// SPDX-License-Identifier: GPL-2.0-only
/*
 * Unit tests for common/rpc.c: framing over socketpairs (malformed,
 * oversize, truncated frames, descriptor passing and mismatches), then
 * the server with the real tern.vmm.Vmm service and test handlers, driven
 * by the blocking client in a thread while the main thread runs libevent.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <event2/event.h>
#include <cmocka.h>

#include "common/rpc.h"
#include "common/uri.h"
#include "common/util.h"
#include "proto/vmm.pb-c.h"

#define VMM (&tern__vmm__vmm__descriptor)

/* Fault injection: the server's accept4 fails with this errno while set
 * (for a bounded number of calls, so that a spinning loop ends). */
static int accept_fail_errno;
static int accept_calls;

int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
	accept_calls++;
	if (accept_fail_errno && accept_calls < 1000) {
		errno = accept_fail_errno;
		return -1;
	}
	return (int)syscall(SYS_accept4, fd, addr, len, flags);
}

/* ---- helpers ------------------------------------------------------- */

static void make_pair(int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0,
				    sv), 0);
}

static int memfd_with(const char *text)
{
	int fd = memfd_create("test", MFD_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	return fd;
}

static void assert_fd_reads(int fd, const char *text)
{
	char buf[64] = { 0 };

	assert_int_equal(pread(fd, buf, sizeof(buf) - 1, 0),
			 (ssize_t)strlen(text));
	assert_string_equal(buf, text);
}

/* A pipe read end sees EOF only when every copy of the write end is closed. */
static void assert_pipe_eof(int rfd)
{
	char c;

	assert_int_equal(read(rfd, &c, 1), 0);
}

static size_t encode_request(uint8_t *buf, size_t len, uint64_t id,
			     const char *method, const uint8_t *arg,
			     size_t arglen, uint32_t nfds)
{
	Tern__Rpc__Frame f = TERN__RPC__FRAME__INIT;
	Tern__Rpc__Request req = TERN__RPC__REQUEST__INIT;
	int n;

	req.id = id;
	req.method = (char *)method;
	req.arg.data = (uint8_t *)arg;
	req.arg.len = arglen;
	f.nfds = nfds;
	f.body_case = TERN__RPC__FRAME__BODY_REQUEST;
	f.request = &req;
	n = rpc_frame_encode(&f, buf, len);
	assert_true(n > RPC_LEN_BYTES);
	return (size_t)n;
}

static void send_with_fds(int sock, const void *buf, size_t len,
			  const int *fds, size_t nfds)
{
	union {
		char b[CMSG_SPACE(32 * sizeof(int))];
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
	assert_int_equal(sendmsg(sock, &msg, 0), (ssize_t)len);
}

struct conn_fixture {
	struct rpc_conn *c;
	int peer;               /* the raw other end */
};

static int conn_setup(void **state)
{
	struct conn_fixture *fx = calloc(1, sizeof(*fx));
	int sv[2];

	assert_non_null(fx);
	make_pair(sv);
	assert_int_equal(rpc_conn_new(sv[0], 0, &fx->c), 0);
	fx->peer = sv[1];
	*state = fx;
	return 0;
}

static int conn_teardown(void **state)
{
	struct conn_fixture *fx = *state;

	rpc_conn_free(fx->c);
	if (fx->peer >= 0)
		close(fx->peer);
	free(fx);
	return 0;
}

static int recv_frame(struct rpc_conn *c, Tern__Rpc__Frame **f, int *fds,
		      size_t *nfds)
{
	*f = NULL;
	*nfds = 0;
	return rpc_conn_recv(c, f, fds, nfds);
}

/* ---- framing ------------------------------------------------------- */

static void test_conn_basic(void **state)
{
	struct conn_fixture *fx = *state;
	uint8_t buf[256];
	int fds[RPC_MAX_FDS];
	Tern__Rpc__Frame *f;
	size_t n, nfds;

	assert_true(rpc_conn_is_unix(fx->c));
	assert_true(fcntl(rpc_conn_fd(fx->c), F_GETFL) & O_NONBLOCK);
	assert_int_equal(recv_frame(fx->c, &f, fds, &nfds), 0);
	n = encode_request(buf, sizeof(buf), 7, "tern.vmm.Vmm/Status",
			   NULL, 0, 0);
	assert_int_equal(buf[0] | buf[1] << 8 | buf[2] << 16 | buf[3] << 24,
			 n - RPC_LEN_BYTES);
	assert_int_equal(write(fx->peer, buf, n), (ssize_t)n);
	assert_int_equal(write(fx->peer, buf, n), (ssize_t)n);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(recv_frame(fx->c, &f, fds, &nfds), 1);
		assert_int_equal(f->body_case, TERN__RPC__FRAME__BODY_REQUEST);
		assert_int_equal(f->request->id, 7);
		assert_string_equal(f->request->method, "tern.vmm.Vmm/Status");
		assert_int_equal(nfds, 0);
		tern__rpc__frame__free_unpacked(f, NULL);
	}
	assert_int_equal(recv_frame(fx->c, &f, fds, &nfds), 0);
	close(fx->peer);
	fx->peer = -1;
	assert_int_equal(recv_frame(fx->c, &f, fds, &nfds), -EPIPE);
}

static void test_conn_byte_by_byte(void **state)
{
	struct conn_fixture *fx = *state;
	uint8_t buf[256];
	int fds[RPC_MAX_FDS];
	Tern__Rpc__Frame *f;
	size_t i, n, nfds;

	n = encode_request(buf, sizeof(buf), 1, "a/b", (const uint8_t *)"xy",
			   2, 0);
	for (i = 0; i + 1 < n; i++) {
		assert_int_equal(write(fx->peer, buf + i, 1), 1);
		assert_int_equal(recv_frame(fx->c, &f, fds, &nfds), 0);
	}
	assert_int_equal(write(fx->peer, buf + i, 1), 1);
	assert_int_equal(recv_frame(fx->c, &f, fds, &nfds), 1);
	assert_int_equal(f->request->arg.len, 2);
	tern__rpc__frame__free_unpacked(f, NULL);
}

static void test_conn_garbage(void **state)
{
	struct conn_fixture *fx = *state;
	static const uint8_t junk[] = { 5, 0, 0, 0, 0xff, 0xff, 0xff, 0xff,
					0xff };
	int fds[RPC_MAX_FDS];
	Tern__Rpc__Frame *f;
	size_t nfds;

	assert_int_equal(write(fx->peer, junk, sizeof(junk)), sizeof(junk));
	assert_int_equal(recv_frame(fx->c, &f, fds, &nfds), -EPROTO);
	assert_null(f);
	/* unusable from now on */
	assert_int_equal(recv_frame(fx->c, &f, fds, &nfds), -EPROTO);
}

static void test_conn_no_body(void **state)
{
	struct conn_fixture *fx = *state;
	Tern__Rpc__Frame empty = TERN__RPC__FRAME__INIT;
	uint8_t buf[16];
	int fds[RPC_MAX_FDS], n;
	Tern__Rpc__Frame *f;
	size_t nfds;

	empty.nfds = 0;
	n = rpc_frame_encode(&empty, buf, sizeof(buf));
	assert_int_equal(n, RPC_LEN_BYTES);     /* a zero-length frame */
	assert_int_equal(write(fx->peer, buf, n), n);
	assert_int_equal(recv_frame(fx->c, &f, fds, &nfds), -EPROTO);
}

static void test_conn_no_body_nonzero(void **state)
{
	struct conn_fixture *fx = *state;
	static const uint8_t frame[] = { 2, 0, 0, 0, 0x08, 0x00 }; /* nfds=0 */
	int fds[RPC_MAX_FDS];
	Tern__Rpc__Frame *f;
	size_t nfds;

	assert_int_equal(write(fx->peer, frame, sizeof(frame)), sizeof(frame));
	assert_int_equal(recv_frame(fx->c, &f, fds, &nfds), -EPROTO);
}

static void test_conn_oversize(void **state)
{
	struct conn_fixture *fx = *state;
	static const uint8_t huge[] = { 0xff, 0xff, 0xff, 0xff };
	int fds[RPC_MAX_FDS];
	Tern__Rpc__Frame *f;
	size_t nfds;

	/* Rejected on the prefix alone, before any body byte arrives. */
	assert_int_equal(write(fx->peer, huge, 4), 4);
	assert_int_equal(recv_frame(fx->c, &f, fds, &nfds), -EMSGSIZE);
}

static void test_conn_cap_boundary(void **state)
{
	static const uint8_t at_cap[] = { 64, 0, 0, 0 }, over[] = { 65, 0, 0, 0 };
	struct rpc_conn *c;
	int sv[2], fds[RPC_MAX_FDS];
	Tern__Rpc__Frame *f;
	size_t nfds;

	make_pair(sv);
	assert_int_equal(rpc_conn_new(sv[0], 64, &c), 0);
	assert_int_equal(write(sv[1], at_cap, 4), 4);
	assert_int_equal(recv_frame(c, &f, fds, &nfds), 0);    /* waits */
	rpc_conn_free(c);
	close(sv[1]);

	make_pair(sv);
	assert_int_equal(rpc_conn_new(sv[0], 64, &c), 0);
	assert_int_equal(write(sv[1], over, 4), 4);
	assert_int_equal(recv_frame(c, &f, fds, &nfds), -EMSGSIZE);
	rpc_conn_free(c);
	close(sv[1]);

	make_pair(sv);
	assert_int_equal(rpc_conn_new(sv[0], RPC_FRAME_MAX_LIMIT + 1, &c),
			 -EINVAL);
	assert_int_equal(fcntl(sv[0], F_GETFD), -1);   /* closed */
	close(sv[1]);
}

static void test_conn_truncated(void **state)
{
	struct conn_fixture *fx = *state;
	static const uint8_t part[] = { 10, 0, 0, 0, 0x08, 0x00, 0x12 };
	int fds[RPC_MAX_FDS];
	Tern__Rpc__Frame *f;
	size_t nfds;

	assert_int_equal(write(fx->peer, part, sizeof(part)), sizeof(part));
	assert_int_equal(recv_frame(fx->c, &f, fds, &nfds), 0);
	close(fx->peer);
	fx->peer = -1;
	assert_int_equal(recv_frame(fx->c, &f, fds, &nfds), -EBADMSG);
}

static void test_conn_truncated_prefix(void **state)
{
	struct conn_fixture *fx = *state;
	int fds[RPC_MAX_FDS];
	Tern__Rpc__Frame *f;
	size_t nfds;

	assert_int_equal(write(fx->peer, "\x05\x00", 2), 2);
	close(fx->peer);
	fx->peer = -1;
	assert_int_equal(recv_frame(fx->c, &f, fds, &nfds), -EBADMSG);
}

static void test_conn_fd_passing(void **state)
{
	Tern__Rpc__Frame out = TERN__RPC__FRAME__INIT, *f;
	Tern__Rpc__Event ev = TERN__RPC__EVENT__INIT;
	struct rpc_conn *a, *b;
	int sv[2], fds[RPC_MAX_FDS], mfd[2];
	size_t nfds;

	make_pair(sv);
	assert_int_equal(rpc_conn_new(sv[0], 0, &a), 0);
	assert_int_equal(rpc_conn_new(sv[1], 0, &b), 0);
	mfd[0] = memfd_with("hello");
	mfd[1] = memfd_with("world");
	ev.name = "fds";
	out.body_case = TERN__RPC__FRAME__BODY_EVENT;
	out.event = &ev;
	assert_int_equal(rpc_conn_send(a, &out, mfd, 2), 0);
	assert_int_equal(out.nfds, 2);
	assert_int_equal(rpc_conn_send(a, &out, NULL, 0), 0);
	assert_true(rpc_conn_pending(a));
	close(mfd[0]);          /* the queue holds its own copies */
	close(mfd[1]);
	assert_int_equal(rpc_conn_flush(a), 1);
	assert_false(rpc_conn_pending(a));

	assert_int_equal(recv_frame(b, &f, fds, &nfds), 1);
	assert_int_equal(nfds, 2);
	assert_fd_reads(fds[0], "hello");
	assert_fd_reads(fds[1], "world");
	assert_true(fcntl(fds[0], F_GETFD) & FD_CLOEXEC);
	close(fds[0]);
	close(fds[1]);
	tern__rpc__frame__free_unpacked(f, NULL);
	/* the next frame carries none */
	assert_int_equal(recv_frame(b, &f, fds, &nfds), 1);
	assert_int_equal(nfds, 0);
	tern__rpc__frame__free_unpacked(f, NULL);
	rpc_conn_free(a);
	rpc_conn_free(b);
}

/* The frame says one descriptor; none came. */
static void test_conn_nfds_missing(void **state)
{
	struct conn_fixture *fx = *state;
	uint8_t buf[128];
	int fds[RPC_MAX_FDS];
	Tern__Rpc__Frame *f;
	size_t n, nfds;

	n = encode_request(buf, sizeof(buf), 1, "a/b", NULL, 0, 1);
	assert_int_equal(write(fx->peer, buf, n), (ssize_t)n);
	assert_int_equal(recv_frame(fx->c, &f, fds, &nfds), -EPROTO);
}

/* A descriptor came that the frame does not announce: it is closed. */
static void test_conn_nfds_extra(void **state)
{
	struct conn_fixture *fx = *state;
	uint8_t buf[128];
	int fds[RPC_MAX_FDS], p[2];
	Tern__Rpc__Frame *f;
	size_t n, nfds;

	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	n = encode_request(buf, sizeof(buf), 1, "a/b", NULL, 0, 0);
	send_with_fds(fx->peer, buf, n, &p[1], 1);
	close(p[1]);
	assert_int_equal(recv_frame(fx->c, &f, fds, &nfds), -EPROTO);
	assert_pipe_eof(p[0]);
	close(p[0]);
}

/* More descriptors than RPC_MAX_FDS: truncated control data, all closed. */
static void test_conn_too_many_fds(void **state)
{
	struct conn_fixture *fx = *state;
	int many[RPC_MAX_FDS + 4], fds[RPC_MAX_FDS], p[2];
	Tern__Rpc__Frame *f;
	uint8_t buf[128];
	size_t i, n, nfds;

	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	for (i = 0; i < ARRAY_SIZE(many); i++)
		many[i] = p[1];
	n = encode_request(buf, sizeof(buf), 1, "a/b", NULL, 0,
			   ARRAY_SIZE(many));
	send_with_fds(fx->peer, buf, n, many, ARRAY_SIZE(many));
	close(p[1]);
	assert_int_equal(recv_frame(fx->c, &f, fds, &nfds), -EPROTO);
	assert_pipe_eof(p[0]);
	close(p[0]);
}

static void test_conn_send_checks(void **state)
{
	struct conn_fixture *fx = *state;
	Tern__Rpc__Frame f = TERN__RPC__FRAME__INIT;
	Tern__Rpc__Event ev = TERN__RPC__EVENT__INIT;
	int fds[RPC_MAX_FDS + 1] = { 0 };
	static uint8_t big[RPC_FRAME_MAX_DEFAULT];
	struct rpc_conn *tcp;
	int s;

	assert_int_equal(rpc_conn_send(fx->c, &f, NULL, 0), -EINVAL);
	ev.name = "x";
	f.body_case = TERN__RPC__FRAME__BODY_EVENT;
	f.event = &ev;
	assert_int_equal(rpc_conn_send(fx->c, &f, fds, RPC_MAX_FDS + 1),
			 -EINVAL);
	ev.data.data = big;
	ev.data.len = sizeof(big);
	assert_int_equal(rpc_conn_send(fx->c, &f, NULL, 0), -EMSGSIZE);
	assert_false(rpc_conn_pending(fx->c));
	ev.data.len = 0;

	s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(s >= 0);
	assert_int_equal(rpc_conn_new(s, 0, &tcp), 0);
	assert_false(rpc_conn_is_unix(tcp));
	assert_int_equal(rpc_conn_send(tcp, &f, fds, 1), -EINVAL);
	rpc_conn_free(tcp);
}

static void test_frame_encode_space(void **state)
{
	Tern__Rpc__Frame f = TERN__RPC__FRAME__INIT;
	Tern__Rpc__Event ev = TERN__RPC__EVENT__INIT;
	uint8_t buf[8];

	ev.name = "a-long-event-name";
	f.body_case = TERN__RPC__FRAME__BODY_EVENT;
	f.event = &ev;
	assert_int_equal(rpc_frame_encode(&f, buf, sizeof(buf)), -ENOSPC);
}

/* ---- server ------------------------------------------------------- */

struct srv {
	struct event_base *base;
	struct rpc_server *s;
	struct rpc_client *cl;  /* connected through a socketpair */
	int done[2];            /* client thread -> loop: call finished */
	struct event *done_ev;
	struct rpc_call *deferred;
	char adopted[32];
	bool refuse;
	bool server_freed;
};

static struct srv *g;           /* for handlers that need the fixture */

static int h_status(struct rpc_call *call, const ProtobufCMessage *arg)
{
	Tern__Vmm__VmmStatus st = TERN__VMM__VMM_STATUS__INIT;
	struct ucred cred;

	assert_ptr_equal(rpc_call_ctx(call), g);
	assert_string_equal(rpc_call_method(call), "tern.vmm.Vmm/Status");
	st.name = "test";
	st.vcpus = 2;
	if (rpc_call_peercred(call, &cred) == 0)
		st.pid = (uint32_t)cred.pid;
	return rpc_call_reply(call, &st.base, NULL, 0);
}

static int h_stop(struct rpc_call *call, const ProtobufCMessage *arg)
{
	return rpc_call_errorf(call, EBUSY, "vm %s is busy", "test");
}

static int h_cont(struct rpc_call *call, const ProtobufCMessage *arg)
{
	g->deferred = call;
	return RPC_DEFERRED;
}

static int h_dirty_start(struct rpc_call *call, const ProtobufCMessage *arg)
{
	return -EPERM;          /* no text: strerror */
}

static int h_get_ram(struct rpc_call *call, const ProtobufCMessage *arg)
{
	Tern__Vmm__RamLayout l = TERN__VMM__RAM_LAYOUT__INIT;
	int fd = memfd_with("ram!"), r;

	l.page_size = 4096;
	r = rpc_call_reply(call, &l.base, &fd, 1);
	close(fd);
	return r;
}

static int h_adopt_ram(struct rpc_call *call, const ProtobufCMessage *arg)
{
	const Tern__Vmm__RamLayout *l = (const Tern__Vmm__RamLayout *)arg;
	int fd;
	ssize_t n;

	if (rpc_call_nfds(call) != 1 || l->page_size != 4096)
		return -EINVAL;
	fd = rpc_call_take_fd(call, 0);
	assert_int_equal(rpc_call_take_fd(call, 0), -EBADF);
	assert_int_equal(rpc_call_take_fd(call, 1), -EINVAL);
	n = pread(fd, g->adopted, sizeof(g->adopted) - 1, 0);
	close(fd);
	return n > 0 ? 0 : -EIO;
}

static int h_dirty_sync(struct rpc_call *call, const ProtobufCMessage *arg)
{
	Tern__Vmm__DirtySyncResult res = TERN__VMM__DIRTY_SYNC_RESULT__INIT;
	uint64_t i;

	for (i = 1; i <= 3; i++) {
		res.dirty_pages = i;
		assert_int_equal(rpc_call_event(call, "progress", &res.base),
				 0);
	}
	res.dirty_pages = 100;
	return rpc_call_reply(call, &res.base, NULL, 0);
}

static int h_read_mem(struct rpc_call *call, const ProtobufCMessage *arg)
{
	const Tern__Vmm__MemRange *mr = (const Tern__Vmm__MemRange *)arg;
	Tern__Vmm__MemData md = TERN__VMM__MEM_DATA__INIT;
	int r;

	md.gpa = mr->gpa;
	md.data.len = mr->len;
	md.data.data = calloc(1, mr->len ? mr->len : 1);
	r = rpc_call_reply(call, &md.base, NULL, 0);
	free(md.data.data);
	if (r < 0)
		return rpc_call_errorf(call, r, "read of %u bytes: too large",
				       mr->len);
	return 0;
}

static const rpc_method_fn handlers[] = {
	h_status, h_stop, h_cont, NULL /* Quit */, NULL, NULL, h_get_ram,
	h_adopt_ram, h_dirty_start, h_dirty_sync, NULL, h_read_mem, NULL,
	NULL /* Discard */, NULL /* SetThrottle */, NULL /* UffdCreate */,
	NULL /* UffdShare */, NULL /* UffdRelease */, NULL /* SetMoved */,
	NULL /* HoldIncoming */,
};

static void handle_done(evutil_socket_t fd, short what, void *arg)
{
	char c;

	assert_int_equal(read(fd, &c, 1), 1);
	event_base_loopbreak(g->base);
}

static int accept_check(void *ctx, int fd)
{
	return g->refuse ? -EPERM : 0;
}

static int srv_setup(void **state)
{
	struct srv *x = calloc(1, sizeof(*x));
	int sv[2];

	assert_non_null(x);
	g = x;
	assert_int_equal(ARRAY_SIZE(handlers), VMM->n_methods);
	assert_string_equal(VMM->methods[12].name, "WriteMem");
	x->base = event_base_new();
	assert_non_null(x->base);
	assert_int_equal(rpc_server_new(x->base, &x->s), 0);
	assert_int_equal(rpc_server_add_service(x->s, VMM, handlers, x), 0);
	assert_int_equal(rpc_server_add_service(x->s, VMM, handlers, x),
			 -EEXIST);
	rpc_server_set_accept(x->s, accept_check, x);
	make_pair(sv);
	assert_int_equal(rpc_server_add_peer(x->s, sv[0]), 0);
	assert_int_equal(rpc_client_from_fd(sv[1], &x->cl), 0);
	assert_int_equal(pipe2(x->done, O_CLOEXEC), 0);
	x->done_ev = event_new(x->base, x->done[0], EV_READ | EV_PERSIST,
			       handle_done, NULL);
	event_add(x->done_ev, NULL);
	*state = x;
	return 0;
}

static int srv_teardown(void **state)
{
	struct srv *x = *state;

	rpc_client_free(x->cl);
	if (!x->server_freed)
		rpc_server_free(x->s);
	event_free(x->done_ev);
	close(x->done[0]);
	close(x->done[1]);
	event_base_free(x->base);
	free(x);
	g = NULL;
	return 0;
}

struct job {
	struct rpc_client *cl;
	const char *method;
	const ProtobufCMessage *arg;
	int fds[RPC_MAX_FDS];
	size_t nfds;
	int timeout_ms;
	bool events;
	ProtobufCMessage *out;
	struct rpc_result res;
	int r;
	int nevents;
	uint64_t event_pages[8];
};

static void on_event(void *ctx, const char *name, const uint8_t *data,
		     size_t len)
{
	struct job *j = ctx;
	Tern__Vmm__DirtySyncResult *r;

	assert_string_equal(name, "progress");
	r = tern__vmm__dirty_sync_result__unpack(NULL, len, data);
	assert_non_null(r);
	if (j->nevents < 8)
		j->event_pages[j->nevents] = r->dirty_pages;
	j->nevents++;
	tern__vmm__dirty_sync_result__free_unpacked(r, NULL);
}

static void *job_thread(void *arg)
{
	struct job *j = arg;

	j->r = rpc_client_call(j->cl, VMM, j->method, j->arg, j->fds,
			       j->nfds, &j->out, &j->res,
			       j->timeout_ms ? j->timeout_ms : 10000,
			       j->events ? on_event : NULL, j);
	assert_int_equal(write(g->done[1], "x", 1), 1);
	return NULL;
}

/* Run the call in a thread while the server loop runs here. */
static int run_call(struct job *j)
{
	pthread_t t;

	if (!j->cl)
		j->cl = g->cl;
	assert_int_equal(pthread_create(&t, NULL, job_thread, j), 0);
	event_base_dispatch(g->base);
	pthread_join(t, NULL);
	return j->r;
}

static void job_done(struct job *j)
{
	if (j->out)
		protobuf_c_message_free_unpacked(j->out, NULL);
	rpc_result_close_fds(&j->res);
}

static void step_until_npeers(size_t n)
{
	int i;

	for (i = 0; i < 1000 && rpc_server_npeers(g->s) != n; i++)
		event_base_loop(g->base, EVLOOP_ONCE);
	assert_int_equal(rpc_server_npeers(g->s), n);
}

/* A raw request from a raw connection; steps the loop until the reply. */
static Tern__Rpc__Reply *raw_call(int sock, const char *method,
				  const uint8_t *arg, size_t arglen,
				  Tern__Rpc__Frame **keep)
{
	struct pollfd pfd = { .fd = sock, .events = POLLIN };
	uint8_t buf[512];
	size_t n = encode_request(buf, sizeof(buf), 99, method, arg, arglen,
				  0);
	uint8_t in[1024];
	ssize_t got = 0, r;
	int i;

	assert_int_equal(write(sock, buf, n), (ssize_t)n);
	for (i = 0; i < 1000; i++) {
		event_base_loop(g->base, EVLOOP_NONBLOCK);
		if (poll(&pfd, 1, 10) <= 0)
			continue;
		r = read(sock, in + got, sizeof(in) - (size_t)got);
		assert_true(r > 0);
		got += r;
		if (got >= 4 && (size_t)got >= 4 + (size_t)(in[0] | in[1] << 8))
			break;
	}
	*keep = tern__rpc__frame__unpack(NULL, (size_t)got - 4, in + 4);
	assert_non_null(*keep);
	assert_int_equal((*keep)->body_case, TERN__RPC__FRAME__BODY_REPLY);
	assert_int_equal((*keep)->reply->id, 99);
	return (*keep)->reply;
}

/* What the server told its program about peers it dropped. */
static int drop_calls;
static char drop_msgs[2][512];

static void on_drop(void *ctx, const char *msg)
{
	(void)ctx;
	if (drop_calls < 2)
		snprintf(drop_msgs[drop_calls], sizeof(drop_msgs[0]), "%s", msg);
	drop_calls++;
}

/* A peer told its program as dropped, once: "dropped pid P (test_rpc,
 * uid U): it sent SENT". */
static void expect_told(const char *sent)
{
	char want[512];

	snprintf(want, sizeof(want), "dropped pid %d (test_rpc, uid %u): it sent %s",
		 (int)getpid(), (unsigned int)getuid(), sent);
	assert_int_equal(drop_calls, 1);
	assert_string_equal(drop_msgs[0], want);
}

static int raw_peer(void)
{
	int sv[2];

	make_pair(sv);
	assert_int_equal(rpc_server_add_peer(g->s, sv[0]), 0);
	return sv[1];
}

static void test_srv_status(void **state)
{
	struct job j = { .method = "Status" };
	Tern__Vmm__VmmStatus *st;

	assert_int_equal(run_call(&j), 0);
	st = (Tern__Vmm__VmmStatus *)j.out;
	assert_ptr_equal(st->base.descriptor, &tern__vmm__vmm_status__descriptor);
	assert_string_equal(st->name, "test");
	assert_int_equal(st->vcpus, 2);
	assert_int_equal(st->pid, getpid());
	assert_int_equal(j.res.nfds, 0);
	job_done(&j);
	assert_int_equal(rpc_server_npeers(g->s), 1);
}

static void test_srv_error_text(void **state)
{
	struct job j = { .method = "Stop" }, k = { .method = "DirtyStart" };

	assert_int_equal(run_call(&j), -EBUSY);
	assert_string_equal(j.res.message, "vm test is busy");
	assert_true(j.res.remote);
	assert_null(j.out);
	assert_int_equal(run_call(&k), -EPERM);
	assert_string_equal(k.res.message, strerror(EPERM));
}

static void test_srv_unimplemented(void **state)
{
	struct job j = { .method = "Quit" };

	assert_int_equal(run_call(&j), -ENOSYS);
	assert_non_null(strstr(j.res.message, "tern.vmm.Vmm/Quit"));
	assert_true(j.res.remote);      /* the server said so */
}

static void test_srv_client_unknown_method(void **state)
{
	struct job j = { .method = "Reboot" };

	assert_int_equal(run_call(&j), -ENOSYS);
	/* The caller names the method; the message, the service. */
	assert_string_equal(j.res.message, "no such method in tern.vmm.Vmm");
	assert_false(j.res.remote);     /* refused here, never sent */
}

static void test_srv_unknown_method(void **state)
{
	Tern__Rpc__Frame *f;
	Tern__Rpc__Reply *rep;
	int sock = raw_peer();

	rep = raw_call(sock, "tern.vmm.Vmm/Nope", NULL, 0, &f);
	assert_int_equal(rep->status, ENOSYS);
	assert_non_null(strstr(rep->message, "tern.vmm.Vmm/Nope"));
	tern__rpc__frame__free_unpacked(f, NULL);
	rep = raw_call(sock, "tern.migd.Migd/Status", NULL, 0, &f);
	assert_int_equal(rep->status, ENOSYS);
	assert_non_null(strstr(rep->message, "tern.migd.Migd/Status"));
	tern__rpc__frame__free_unpacked(f, NULL);
	rep = raw_call(sock, "Status\n\x01", NULL, 0, &f);
	assert_int_equal(rep->status, ENOSYS);
	assert_non_null(strstr(rep->message, "Status??"));
	tern__rpc__frame__free_unpacked(f, NULL);
	assert_int_equal(rpc_server_npeers(g->s), 2);   /* still served */
	close(sock);
}

static void test_srv_malformed_arg(void **state)
{
	static const uint8_t bad[] = { 0xff, 0xff, 0xff };
	Tern__Rpc__Frame *f;
	Tern__Rpc__Reply *rep;
	int sock = raw_peer();

	rep = raw_call(sock, "tern.vmm.Vmm/Status", bad, sizeof(bad), &f);
	assert_int_equal(rep->status, EINVAL);
	assert_string_equal(rep->message,
			    "malformed argument for tern.vmm.Vmm/Status");
	assert_int_equal(rep->result.len, 0);
	tern__rpc__frame__free_unpacked(f, NULL);
	close(sock);
}

/* A raw peer that sends n bytes is closed, and the server's program told
 * who it was and what it sent (before: closed without a word). */
static void closed_and_told(const void *bytes, size_t n, const char *sent)
{
	int sock = raw_peer();

	rpc_server_set_drop(g->s, on_drop, NULL);
	drop_calls = 0;
	assert_int_equal(rpc_server_npeers(g->s), 2);
	assert_int_equal(write(sock, bytes, n), (ssize_t)n);
	step_until_npeers(1);
	/* the server closed that peer */
	assert_int_equal(read(sock, (char[4]){ 0 }, 4), 0);
	close(sock);
	expect_told(sent);
}

static void test_srv_garbage_peer(void **state)
{
	struct job j = { .method = "Status" };

	closed_and_told("\x03\x00\x00\x00\xff\xff\xff", 7,
			"a frame of 3 B that is not a tern.rpc.Frame");
	assert_int_equal(run_call(&j), 0);
	job_done(&j);
}

static void test_srv_empty_frame_peer(void **state)
{
	closed_and_told("\x00\x00\x00\x00", 4, "a frame of length 0");
}

static void test_srv_cut_frame_peer(void **state)
{
	int sock = raw_peer(), len = raw_peer();
	char in_body[256], in_len[256];

	rpc_server_set_drop(g->s, on_drop, NULL);
	drop_calls = 0;
	assert_int_equal(write(sock, "\x0a\x00\x00\x00\x0a\x01\x00", 7), 7);
	close(sock);
	assert_int_equal(write(len, "\x0a\x00", 2), 2);
	close(len);
	step_until_npeers(1);
	assert_int_equal(drop_calls, 2);
	snprintf(in_body, sizeof(in_body), "dropped pid %d (test_rpc, uid %u): "
		 "it sent 3 B of a 10 B frame, then closed its socket",
		 (int)getpid(), (unsigned int)getuid());
	snprintf(in_len, sizeof(in_len), "dropped pid %d (test_rpc, uid %u): "
		 "it sent 2 bytes of a frame's length, then closed its socket",
		 (int)getpid(), (unsigned int)getuid());
	assert_true((!strcmp(drop_msgs[0], in_body) &&
		     !strcmp(drop_msgs[1], in_len)) ||
		    (!strcmp(drop_msgs[0], in_len) &&
		     !strcmp(drop_msgs[1], in_body)));
}

static void test_srv_reply_frame_from_client(void **state)
{
	Tern__Rpc__Frame f = TERN__RPC__FRAME__INIT;
	Tern__Rpc__Reply rep = TERN__RPC__REPLY__INIT;
	uint8_t buf[64];
	int n;

	f.body_case = TERN__RPC__FRAME__BODY_REPLY;
	f.reply = &rep;
	n = rpc_frame_encode(&f, buf, sizeof(buf));
	assert_true(n > 0);
	closed_and_told(buf, (size_t)n,
			"a reply or an event, where only requests may come");
}

static void test_srv_oversize_peer(void **state)
{
	closed_and_told("\xff\xff\xff\x7f", 4, "the length of a frame of 2.0 GiB, "
			"over the 1.0 MiB a frame may have");
}

static void test_srv_events(void **state)
{
	struct job j = { .method = "DirtySync", .events = true };
	struct job k = { .method = "DirtySync" };

	assert_int_equal(run_call(&j), 0);
	assert_int_equal(j.nevents, 3);
	assert_int_equal(j.event_pages[0], 1);
	assert_int_equal(j.event_pages[2], 3);
	assert_int_equal(((Tern__Vmm__DirtySyncResult *)j.out)->dirty_pages,
			 100);
	job_done(&j);
	assert_int_equal(run_call(&k), 0);       /* no events asked for */
	assert_int_equal(k.nevents, 0);
	job_done(&k);
}

static void finish_deferred(evutil_socket_t fd, short what, void *arg)
{
	Tern__Vmm__VmmStatus st = TERN__VMM__VMM_STATUS__INIT;

	st.state = TERN__VMM__RUN_STATE__RUN_STATE_RUNNING;
	assert_int_equal(rpc_call_reply(g->deferred, &st.base, NULL, 0), 0);
	assert_int_equal(rpc_call_reply(g->deferred, &st.base, NULL, 0),
			 -EALREADY);
	rpc_call_finish(g->deferred, 0);
	g->deferred = NULL;
}

static void handle_check_deferred(evutil_socket_t fd, short what, void *arg)
{
	struct timeval tv = { 0, 1000 };

	if (g->deferred)
		event_base_once(g->base, -1, EV_TIMEOUT, finish_deferred,
				NULL, &tv);
	else
		event_base_once(g->base, -1, EV_TIMEOUT,
				handle_check_deferred, NULL, &tv);
}

static void test_srv_deferred(void **state)
{
	struct job j = { .method = "Cont" };
	struct timeval tv = { 0, 1000 };

	event_base_once(g->base, -1, EV_TIMEOUT, handle_check_deferred, NULL,
			&tv);
	assert_int_equal(run_call(&j), 0);
	assert_int_equal(((Tern__Vmm__VmmStatus *)j.out)->state,
			 TERN__VMM__RUN_STATE__RUN_STATE_RUNNING);
	job_done(&j);
	assert_null(g->deferred);
}

static void step_until_deferred(void)
{
	int i;

	for (i = 0; i < 1000 && !g->deferred; i++)
		event_base_loop(g->base, EVLOOP_ONCE);
	assert_non_null(g->deferred);
}

/* The peer breaks the protocol while its call is pending. */
static void test_srv_deferred_peer_gone(void **state)
{
	Tern__Vmm__VmmStatus st = TERN__VMM__VMM_STATUS__INIT;
	uint8_t buf[128];
	int sock = raw_peer();
	size_t n;

	n = encode_request(buf, sizeof(buf), 5, "tern.vmm.Vmm/Cont", NULL, 0,
			   0);
	assert_int_equal(write(sock, buf, n), (ssize_t)n);
	step_until_deferred();
	assert_int_equal(write(sock, "\x01\x00\x00\x00\xff", 5), 5);
	step_until_npeers(1);
	close(sock);
	assert_int_equal(rpc_call_event(g->deferred, "x", NULL), 0);
	assert_int_equal(rpc_call_reply(g->deferred, &st.base, NULL, 0), 0);
	rpc_call_finish(g->deferred, 0);        /* silently dropped */
	g->deferred = NULL;
}

/* The client closes its socket while its call is pending: the server
 * lets go of the peer (its descriptor) at once, and the call says so. */
static void test_srv_deferred_peer_closed(void **state)
{
	uint8_t buf[128];
	int sock = raw_peer(), i;
	size_t n;

	n = encode_request(buf, sizeof(buf), 5, "tern.vmm.Vmm/Cont", NULL, 0,
			   0);
	assert_int_equal(write(sock, buf, n), (ssize_t)n);
	step_until_deferred();
	assert_false(rpc_call_gone(g->deferred));
	close(sock);
	/* Not step_until_npeers: a peer kept open would leave the loop
	 * nothing to wait for. */
	for (i = 0; i < 1000 && rpc_server_npeers(g->s) != 1; i++) {
		event_base_loop(g->base, EVLOOP_NONBLOCK);
		usleep(1000);
	}
	assert_int_equal(rpc_server_npeers(g->s), 1);
	assert_true(rpc_call_gone(g->deferred));
	rpc_call_finish(g->deferred, 0);        /* silently dropped */
	g->deferred = NULL;
}

/* Events for a caller that reads nothing stop piling up at a frame's
 * worth of output; the reply still goes out when it catches up. */
static void test_srv_events_backlog(void **state)
{
	Tern__Rpc__Frame f = TERN__RPC__FRAME__INIT;
	Tern__Rpc__Request req = TERN__RPC__REQUEST__INIT;
	Tern__Vmm__VmmStatus st = TERN__VMM__VMM_STATUS__INIT;
	uint8_t buf[128];
	int sock = raw_peer(), r = 0;
	unsigned long i;

	req.id = 3;
	req.method = "tern.vmm.Vmm/Cont";
	req.want_events = true;
	f.body_case = TERN__RPC__FRAME__BODY_REQUEST;
	f.request = &req;
	r = rpc_frame_encode(&f, buf, sizeof(buf));
	assert_true(r > 0);
	assert_int_equal(write(sock, buf, (size_t)r), r);
	step_until_deferred();
	st.name = "a status of some length, sent over and over";
	for (i = 0; i < 4000000 && (r = rpc_call_event(g->deferred, "status",
							&st.base)) == 0; i++)
		;
	assert_int_equal(r, -ENOBUFS);
	rpc_call_finish(g->deferred, 0);
	g->deferred = NULL;
	close(sock);
}

/* The whole server goes away while a call is pending. */
static void test_srv_deferred_server_freed(void **state)
{
	uint8_t buf[128];
	int sock = raw_peer(), fds[1];
	size_t n;

	n = encode_request(buf, sizeof(buf), 5, "tern.vmm.Vmm/Cont", NULL, 0,
			   0);
	assert_int_equal(write(sock, buf, n), (ssize_t)n);
	step_until_deferred();
	rpc_server_free(g->s);
	g->server_freed = true;
	assert_int_equal(read(sock, buf, sizeof(buf)), 0);      /* closed */
	close(sock);
	fds[0] = memfd_with("x");
	assert_int_equal(rpc_call_reply(g->deferred, NULL, fds, 1), 0);
	close(fds[0]);
	rpc_call_finish(g->deferred, -EIO);
	g->deferred = NULL;
}

/* A half-closed client still gets the reply it is owed. */
static void test_srv_half_close(void **state)
{
	Tern__Rpc__Frame *f;
	uint8_t buf[256];
	size_t n;
	ssize_t got = 0, r;
	int sock = raw_peer(), i;

	n = encode_request(buf, sizeof(buf), 9, "tern.vmm.Vmm/Status", NULL, 0,
			   0);
	assert_int_equal(write(sock, buf, n), (ssize_t)n);
	shutdown(sock, SHUT_WR);
	step_until_npeers(1);
	for (i = 0; i < 100; i++) {
		r = read(sock, buf + got, sizeof(buf) - (size_t)got);
		if (r <= 0)
			break;
		got += r;
	}
	assert_true(got > 4);
	f = tern__rpc__frame__unpack(NULL, (size_t)got - 4, buf + 4);
	assert_non_null(f);
	assert_int_equal(f->reply->id, 9);
	assert_int_equal(f->reply->status, 0);
	tern__rpc__frame__free_unpacked(f, NULL);
	close(sock);
}

/* The reply is written during dispatch: a loop that exits right after a
 * handler (vmm's Quit) still answers. */
static void test_srv_reply_written_at_once(void **state)
{
	struct pollfd pfd = { .events = POLLIN };
	uint8_t buf[128];
	size_t n;

	pfd.fd = raw_peer();
	n = encode_request(buf, sizeof(buf), 3, "tern.vmm.Vmm/Status", NULL, 0,
			   0);
	assert_int_equal(write(pfd.fd, buf, n), (ssize_t)n);
	event_base_loop(g->base, EVLOOP_ONCE);
	assert_int_equal(poll(&pfd, 1, 0), 1);
	close(pfd.fd);
}

static void test_srv_fds_both_ways(void **state)
{
	Tern__Vmm__RamLayout l = TERN__VMM__RAM_LAYOUT__INIT;
	struct job get = { .method = "GetRam" };
	struct job adopt = { .method = "AdoptRam", .arg = &l.base, .nfds = 1 };

	assert_int_equal(run_call(&get), 0);
	assert_int_equal(get.res.nfds, 1);
	assert_fd_reads(get.res.fds[0], "ram!");
	assert_true(fcntl(get.res.fds[0], F_GETFD) & FD_CLOEXEC);
	job_done(&get);

	l.page_size = 4096;
	adopt.fds[0] = memfd_with("adopt me");
	assert_int_equal(run_call(&adopt), 0);
	close(adopt.fds[0]);
	assert_string_equal(g->adopted, "adopt me");
	job_done(&adopt);
}

static void test_srv_reply_too_large(void **state)
{
	Tern__Vmm__MemRange mr = TERN__VMM__MEM_RANGE__INIT;
	struct job j = { .method = "ReadMem", .arg = &mr.base };

	mr.len = 2u << 20;
	assert_int_equal(run_call(&j), -EMSGSIZE);
	assert_string_equal(j.res.message,
			    "read of 2097152 bytes: too large");
	job_done(&j);
}

static void test_srv_large_frames(void **state)
{
	Tern__Vmm__MemRange mr = TERN__VMM__MEM_RANGE__INIT;
	struct job j = { .method = "ReadMem", .arg = &mr.base };
	int sv[2];

	rpc_server_set_max_frame(g->s, 4u << 20);
	make_pair(sv);
	assert_int_equal(rpc_server_add_peer(g->s, sv[0]), 0);
	assert_int_equal(rpc_client_from_fd(sv[1], &j.cl), 0);
	mr.len = 2u << 20;
	/* the client's own cap refuses the reply */
	assert_int_equal(run_call(&j), -EMSGSIZE);
	rpc_client_free(j.cl);
	step_until_npeers(1);

	make_pair(sv);
	assert_int_equal(rpc_server_add_peer(g->s, sv[0]), 0);
	assert_int_equal(rpc_client_from_fd(sv[1], &j.cl), 0);
	assert_int_equal(rpc_client_set_max_frame(j.cl, 4u << 20), 0);
	assert_int_equal(rpc_client_set_max_frame(j.cl, 128u << 20), -EINVAL);
	assert_int_equal(run_call(&j), 0);
	assert_int_equal(((Tern__Vmm__MemData *)j.out)->data.len, 2u << 20);
	job_done(&j);
	rpc_client_free(j.cl);
}

static void test_srv_wrong_arg_type(void **state)
{
	Tern__Vmm__Empty e = TERN__VMM__EMPTY__INIT;
	struct job j = { .method = "ReadMem", .arg = &e.base };

	assert_int_equal(run_call(&j), -EINVAL);
	assert_non_null(strstr(j.res.message, "tern.vmm.Empty"));
}

static void test_client_timeout(void **state)
{
	Tern__Vmm__Empty e = TERN__VMM__EMPTY__INIT;
	struct rpc_result res;
	struct rpc_client *cl;
	ProtobufCMessage *out = NULL;
	int sv[2];

	make_pair(sv);          /* nobody ever answers on sv[1] */
	assert_int_equal(rpc_client_from_fd(sv[0], &cl), 0);
	assert_int_equal(rpc_client_call(cl, VMM, "Status", &e.base, NULL, 0,
					 &out, &res, 50, NULL, NULL),
			 -ETIMEDOUT);
	assert_null(out);
	/* Only what went wrong: the caller names the method (vmmctl said
	 * "Quit: tern.vmm.Vmm/Quit: Connection timed out"). */
	assert_string_equal(res.message, strerror(ETIMEDOUT));
	assert_false(res.remote);
	close(sv[1]);
	assert_int_equal(rpc_client_call(cl, VMM, "Status", NULL, NULL, 0,
					 &out, &res, 1000, NULL, NULL),
			 -EPIPE);
	assert_string_equal(res.message, "connection closed");
	rpc_client_free(cl);
}

/* A server that answers with what no tern server sends: the caller is
 * told what came (before: "Protocol error", "Bad message"). */
static void test_client_garbage_reply(void **state)
{
	static const struct {
		const char *bytes;
		size_t len;
		int err;
		const char *said;
	} c[] = {
		{ "\x0a\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 14,
		  -EPROTO, "the server sent a frame of 10 B that is not a "
		  "tern.rpc.Frame (is it a tern daemon of this version?)" },
		{ "\xff\xff\xff\x7f", 4, -EMSGSIZE, "the server sent the length "
		  "of a frame of 2.0 GiB, over the 1.0 MiB a frame may have (is "
		  "it a tern daemon of this version?)" },
		{ "\x64\x00\x00\x00\x0a", 5, -EBADMSG, "the server sent 1 B of a "
		  "100 B frame, then closed its socket (did it exit?)" },
	};
	Tern__Vmm__Empty e = TERN__VMM__EMPTY__INIT;
	ProtobufCMessage *out = NULL;
	struct rpc_result res;
	struct rpc_client *cl;
	size_t i;
	int sv[2];

	for (i = 0; i < ARRAY_SIZE(c); i++) {
		make_pair(sv);
		assert_int_equal(rpc_client_from_fd(sv[0], &cl), 0);
		assert_int_equal(write(sv[1], c[i].bytes, c[i].len),
				 (ssize_t)c[i].len);
		/* (its reading side stays open: the request goes out) */
		assert_int_equal(shutdown(sv[1], SHUT_WR), 0);
		assert_int_equal(rpc_client_call(cl, VMM, "Status", &e.base,
						 NULL, 0, &out, &res, 1000,
						 NULL, NULL), c[i].err);
		assert_null(out);
		assert_string_equal(res.message, c[i].said);
		rpc_client_free(cl);
		close(sv[1]);
	}
}

/* A "status" event of the client's first call, encoded into buf: its
 * length. */
static size_t status_event_frame(uint8_t *buf, size_t len)
{
	Tern__Rpc__Frame f = TERN__RPC__FRAME__INIT;
	Tern__Rpc__Event ev = TERN__RPC__EVENT__INIT;
	int n;

	ev.id = 1;
	ev.name = "status";
	f.body_case = TERN__RPC__FRAME__BODY_EVENT;
	f.event = &ev;
	n = rpc_frame_encode(&f, buf, len);
	assert_true(n > 0);
	return (size_t)n;
}

/*
 * The idle hook, checked by what it decides, not by clocks: it gives
 * up once the silence it is told of reaches bound_ms (or at call
 * stop_at), sends an event at call writes_at, and may name its next
 * call (soon_ms, at its first).
 */
struct idle_seen {
	int calls;
	uint64_t bound_ms;      /* 0: none */
	int stop_at, writes_at, soon_ms;
	int fd;                 /* the server's end, for the event */
	uint8_t frame[64];
	size_t len;
};

static void count_event(void *ctx, const char *name, const uint8_t *data,
			size_t len)
{
	++*(int *)ctx;
}

static int idle_hook(void *ctx, uint64_t silent_ms)
{
	struct idle_seen *s = ctx;

	if (++s->calls == s->writes_at)
		assert_int_equal(write(s->fd, s->frame, s->len), (ssize_t)s->len);
	if ((s->bound_ms && silent_ms >= s->bound_ms) || s->calls == s->stop_at)
		return -ETIMEDOUT;
	return s->calls == 1 ? s->soon_ms : 0;
}

static void test_client_idle(void **state)
{
	Tern__Vmm__Empty em = TERN__VMM__EMPTY__INIT;
	struct idle_seen s = { .bound_ms = 1000, .writes_at = 1 };
	struct rpc_result res;
	struct rpc_client *cl;
	int sv[2], events = 0;

	(void)state;
	make_pair(sv);
	s.len = status_event_frame(s.frame, sizeof(s.frame));
	s.fd = sv[1];
	assert_int_equal(rpc_client_from_fd(sv[0], &cl), 0);
	/* Told each 400 ms of silence, the silence so far; the event sent
	 * at the first call starts it again.  So the hook gives up at its
	 * fourth call (silences 400, 400, 800, 1200), where silence
	 * counted from the call's start would end it at the third (400,
	 * 800, 1200), and one not summed never. */
	rpc_client_set_idle(cl, 400, idle_hook, &s);
	assert_int_equal(rpc_client_call(cl, VMM, "Status", &em.base, NULL, 0,
					 NULL, &res, 0, count_event, &events),
			 -ETIMEDOUT);
	assert_int_equal(events, 1);
	assert_int_equal(s.calls, 4);
	/* A hook may name when it is asked next: 20 ms after its first
	 * call (at 1 s), within the deadline, where idle_ms more would be
	 * past it (and the deadline alone would end the call, after one). */
	memset(&s, 0, sizeof(s));
	s.soon_ms = 20;
	s.stop_at = 2;
	rpc_client_set_idle(cl, 1000, idle_hook, &s);
	assert_int_equal(rpc_client_call(cl, VMM, "Status", &em.base, NULL, 0,
					 NULL, &res, 1900, NULL, NULL), -ETIMEDOUT);
	assert_int_equal(s.calls, 2);
	/* A deadline before idle_ms ends a call first; no hook: none is
	 * called. */
	memset(&s, 0, sizeof(s));
	rpc_client_set_idle(cl, 1000, idle_hook, &s);
	assert_int_equal(rpc_client_call(cl, VMM, "Status", &em.base, NULL, 0,
					 NULL, &res, 50, NULL, NULL), -ETIMEDOUT);
	rpc_client_set_idle(cl, 10, NULL, NULL);
	assert_int_equal(rpc_client_call(cl, VMM, "Status", &em.base, NULL, 0,
					 NULL, &res, 50, NULL, NULL), -ETIMEDOUT);
	assert_int_equal(s.calls, 0);
	rpc_client_free(cl);
	close(sv[1]);
}

#define ECHO_MAX 10000000ul

struct echo {
	int fd;                 /* the server's end */
	uint8_t frame[64];
	size_t len;
	unsigned long events;
};

/* Each event the client takes is answered with another, so one is
 * always buffered: without a deadline check between frames, only
 * ECHO_MAX would end the call. */
static void echo_event(void *ctx, const char *name, const uint8_t *data,
		       size_t len)
{
	struct echo *e = ctx;

	if (++e->events < ECHO_MAX)
		assert_int_equal(write(e->fd, e->frame, e->len), (ssize_t)e->len);
}

/* A server that never stops sending events must not hold a call past
 * its timeout. */
static void test_client_timeout_under_events(void **state)
{
	Tern__Vmm__Empty em = TERN__VMM__EMPTY__INIT;
	struct echo e = { 0 };
	struct rpc_result res;
	struct rpc_client *cl;
	ProtobufCMessage *out = NULL;
	int sv[2];

	make_pair(sv);
	e.len = status_event_frame(e.frame, sizeof(e.frame));
	e.fd = sv[1];
	assert_int_equal(write(e.fd, e.frame, e.len), (ssize_t)e.len);
	assert_int_equal(rpc_client_from_fd(sv[0], &cl), 0);
	assert_int_equal(rpc_client_call(cl, VMM, "Status", &em.base, NULL, 0,
					 &out, &res, 50, echo_event, &e),
			 -ETIMEDOUT);
	assert_true(e.events > 0);
	assert_true(e.events < ECHO_MAX);       /* ended by the deadline */
	assert_string_equal(res.message, strerror(ETIMEDOUT));
	rpc_client_free(cl);
	close(sv[1]);
}

/* Two events buffered before the deadline: the first holds the client
 * past it, and the second, which came in time, is taken all the same
 * (vmmctl transfer decides on such an event). */
static void slow_event(void *ctx, const char *name, const uint8_t *data,
		       size_t len)
{
	struct timespec ts = { 0, 60 * 1000000L };

	if (++*(int *)ctx == 1)
		nanosleep(&ts, NULL);
}

static void test_client_timeout_takes_buffered(void **state)
{
	Tern__Vmm__Empty em = TERN__VMM__EMPTY__INIT;
	Tern__Rpc__Frame f = TERN__RPC__FRAME__INIT;
	Tern__Rpc__Event ev = TERN__RPC__EVENT__INIT;
	uint8_t frame[64];
	struct rpc_result res;
	struct rpc_client *cl;
	ProtobufCMessage *out = NULL;
	int sv[2], n, events = 0;

	make_pair(sv);
	ev.id = 1;              /* the client's first call */
	ev.name = "starting";
	f.body_case = TERN__RPC__FRAME__BODY_EVENT;
	f.event = &ev;
	n = rpc_frame_encode(&f, frame, sizeof(frame));
	assert_true(n > 0);
	assert_int_equal(write(sv[1], frame, n), n);
	assert_int_equal(write(sv[1], frame, n), n);
	assert_int_equal(rpc_client_from_fd(sv[0], &cl), 0);
	assert_int_equal(rpc_client_call(cl, VMM, "Cont", &em.base, NULL, 0,
					 &out, &res, 20, slow_event, &events),
			 -ETIMEDOUT);
	assert_int_equal(events, 2);
	rpc_client_free(cl);
	close(sv[1]);
}

/* The server listens at ADDR, a socket in the new directory DIR (a
 * mkdtemp template); the caller unlinks it and removes DIR. */
static void srv_listen_tmp(char *dir, char *addr, size_t len, struct uri *u)
{
	int lfd;

	assert_non_null(mkdtemp(dir));
	snprintf(addr, len, "unix:%s/rpc.sock", dir);
	assert_int_equal(uri_parse(addr, u), 0);
	lfd = uri_listen(u, 8);
	assert_true(lfd >= 0);
	assert_int_equal(rpc_server_listen_fd(g->s, lfd), 0);
}

static void test_srv_listen_and_accept(void **state)
{
	char dir[] = "/tmp/tern-rpc-XXXXXX", addr[128];
	struct job j = { .method = "Status" };
	struct ucred cred;
	struct uri u;
	int r;

	srv_listen_tmp(dir, addr, sizeof(addr), &u);

	assert_int_equal(rpc_client_connect(addr, 1000, &j.cl), 0);
	assert_int_equal(run_call(&j), 0);
	assert_int_equal(((Tern__Vmm__VmmStatus *)j.out)->pid, getpid());
	/* The server's credentials, as a worker checks migd's (adopt.c). */
	assert_int_equal(rpc_client_peer_cred(j.cl, &cred), 0);
	assert_int_equal(cred.pid, getpid());
	assert_int_equal(cred.uid, geteuid());
	job_done(&j);
	rpc_client_free(j.cl);
	step_until_npeers(1);

	g->refuse = true;
	memset(&j, 0, sizeof(j));
	j.method = "Status";
	assert_int_equal(rpc_client_connect(addr, 1000, &j.cl), 0);
	/* Closed by the server: EPIPE if the request was not yet written,
	 * ECONNRESET if it was (and sat unread). */
	r = run_call(&j);
	assert_true(r == -EPIPE || r == -ECONNRESET);
	rpc_client_free(j.cl);
	assert_int_equal(rpc_client_connect("file:/x", 1000, &j.cl), -EINVAL);
	unlink(u.path);
	rmdir(dir);
}

/* Out of descriptors: the queued connection must not spin the loop
 * (the listener is level-triggered); accepting resumes when a peer
 * leaves, or after a short pause when none does. */
static void test_srv_accept_out_of_fds(void **state)
{
	char dir[] = "/tmp/tern-rpc-XXXXXX", addr[128];
	int c1, c2, rp, i, calls;
	struct uri u;

	srv_listen_tmp(dir, addr, sizeof(addr), &u);
	rp = raw_peer();
	assert_int_equal(rpc_server_npeers(g->s), 2);

	accept_fail_errno = EMFILE;
	accept_calls = 0;
	c1 = uri_connect(&u, 1000);
	assert_true(c1 >= 0);
	for (i = 0; i < 20; i++)
		event_base_loop(g->base, EVLOOP_NONBLOCK);
	assert_in_range(accept_calls, 1, 2);
	accept_fail_errno = 0;
	calls = accept_calls;
	close(rp);                      /* a peer leaves: accept again */
	for (i = 0; i < 1000 && accept_calls == calls; i++)
		event_base_loop(g->base, EVLOOP_ONCE);
	step_until_npeers(2);

	accept_fail_errno = ENFILE;     /* no peer leaves: retried later */
	calls = accept_calls;
	c2 = uri_connect(&u, 1000);
	assert_true(c2 >= 0);
	for (i = 0; i < 1000 && accept_calls == calls; i++)
		event_base_loop(g->base, EVLOOP_NONBLOCK);
	accept_fail_errno = 0;
	step_until_npeers(3);

	close(c1);
	close(c2);
	step_until_npeers(1);
	unlink(u.path);
	rmdir(dir);
}

/* What the server told its program about callers it could not accept. */
static int overload_calls, overload_err;
static char overload_msg[512];

static void on_overload(void *ctx, int err, const char *msg)
{
	(void)ctx;
	overload_calls++;
	overload_err = err;
	snprintf(overload_msg, sizeof(overload_msg), "%s", msg);
}

/* Out of descriptors, callers only hang: the program is told why (for
 * its log), once, however often accept fails in the next 10 s. */
static void test_srv_accept_overload_told(void **state)
{
	char dir[] = "/tmp/tern-rpc-XXXXXX", addr[128];
	int c1, c2, rp, i, calls;
	struct uri u;

	srv_listen_tmp(dir, addr, sizeof(addr), &u);
	rpc_server_set_overload(g->s, on_overload, NULL);
	rp = raw_peer();
	overload_calls = 0;

	accept_fail_errno = EMFILE;
	accept_calls = 0;
	c1 = uri_connect(&u, 1000);
	assert_true(c1 >= 0);
	for (i = 0; i < 20; i++)
		event_base_loop(g->base, EVLOOP_NONBLOCK);
	assert_int_equal(overload_calls, 1);
	assert_int_equal(overload_err, EMFILE);
	assert_non_null(strstr(overload_msg, strerror(EMFILE)));
	assert_non_null(strstr(overload_msg, "2 connected"));
	/* Failing again and again (a peer leaves, a retry): told no more. */
	close(rp);
	calls = accept_calls;
	for (i = 0; i < 1000 && accept_calls < calls + 3; i++)
		event_base_loop(g->base, EVLOOP_ONCE);
	assert_true(accept_calls >= calls + 3);
	assert_int_equal(overload_calls, 1);
	accept_fail_errno = 0;
	step_until_npeers(2);

	/* Accepting works again; a failure within the window is counted. */
	accept_fail_errno = ENFILE;
	calls = accept_calls;
	c2 = uri_connect(&u, 1000);
	assert_true(c2 >= 0);
	for (i = 0; i < 1000 && accept_calls == calls; i++)
		event_base_loop(g->base, EVLOOP_NONBLOCK);
	assert_int_equal(overload_calls, 1);
	accept_fail_errno = 0;
	step_until_npeers(3);

	close(c1);
	close(c2);
	step_until_npeers(1);
	unlink(u.path);
	rmdir(dir);
}

/* A peer whose socket takes 32 KiB at most from the server (16 KiB
 * asked, doubled by the kernel): one that reads a socketful at a time
 * is owed for many of them. */
static int raw_peer_small(void)
{
	int sv[2], sz = 16 << 10;

	make_pair(sv);
	assert_int_equal(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz,
				    sizeof(sz)), 0);
	assert_int_equal(rpc_server_add_peer(g->s, sv[0]), 0);
	return sv[1];
}

static bool hung_up(int fd)
{
	struct pollfd pfd = { .fd = fd, .events = POLLRDHUP };

	return poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLRDHUP | POLLHUP));
}

/* Frames read whole from c, as far as its socket has them now. */
static int frames_taken(struct rpc_conn *c)
{
	Tern__Rpc__Frame *f;
	int fds[RPC_MAX_FDS], n = 0;
	size_t nfds;

	while (rpc_conn_recv(c, &f, fds, &nfds) == 1) {
		assert_int_equal(f->body_case, TERN__RPC__FRAME__BODY_REPLY);
		assert_int_equal(f->reply->status, 0);
		tern__rpc__frame__free_unpacked(f, NULL);
		n++;
	}
	return n;
}

/*
 * Stalled peers go, the others stay, with a bound of 200 ms: a peer that
 * asked for 1 MiB and reads none of it, and one that sent 8 bytes of a
 * frame and no more, are dropped (and the program told who and why); an
 * idle one, one that reads its 1 MiB a socketful per 20 ms, and one that
 * sends its request a byte per 20 ms, all for longer than the bound, are
 * kept and served.
 */
static void test_srv_stall_dropped(void **state)
{
	Tern__Vmm__MemRange mr = TERN__VMM__MEM_RANGE__INIT;
	int idle = raw_peer(), unread = raw_peer(), half = raw_peer();
	int slow = raw_peer_small(), trickle = raw_peer(), i, got = 0;
	int got_at_drop = -1, answered = 0;
	uint8_t arg[32], big[128], small[128];
	size_t nbig, nsmall, sent = 0;
	struct rpc_conn *slow_c, *trickle_c;
	Tern__Rpc__Frame *keep;
	char pid[32];

	rpc_server_set_stall(g->s, 200);
	rpc_server_set_drop(g->s, on_drop, NULL);
	drop_calls = 0;
	mr.len = 512 << 10;
	nbig = encode_request(big, sizeof(big), 1, "tern.vmm.Vmm/ReadMem", arg,
			      tern__vmm__mem_range__pack(&mr, arg), 0);
	nsmall = encode_request(small, sizeof(small), 2, "tern.vmm.Vmm/Status",
				NULL, 0, 0);
	for (i = 0; i < 2; i++) {
		assert_int_equal(write(unread, big, nbig), (ssize_t)nbig);
		assert_int_equal(write(slow, big, nbig), (ssize_t)nbig);
	}
	assert_int_equal(write(half, small, 8), 8);
	assert_int_equal(rpc_conn_new(slow, 0, &slow_c), 0);
	assert_int_equal(rpc_conn_new(trickle, 0, &trickle_c), 0);
	assert_int_equal(rpc_server_npeers(g->s), 6);

	/* A step reads (or sends) before the loop runs: a slow peer always
	 * has moved when the server looks. */
	for (i = 0; i < 500 && (got < 2 || !answered ||
				rpc_server_npeers(g->s) > 4); i++) {
		got += frames_taken(slow_c);
		answered += frames_taken(trickle_c);
		if (sent < nsmall) {
			assert_int_equal(write(trickle, small + sent, 1), 1);
			sent++;
		}
		event_base_loop(g->base, EVLOOP_NONBLOCK);
		if (got_at_drop < 0 && rpc_server_npeers(g->s) == 4)
			got_at_drop = got;
		usleep(20000);
	}
	assert_int_equal(rpc_server_npeers(g->s), 4);
	/* 1 MiB at 32 KiB a step takes 20 ms x 30 steps at the least: it
	 * was still owed when the others were dropped (200 ms in). */
	assert_true(got_at_drop >= 0 && got_at_drop < 2);
	assert_int_equal(got, 2);
	assert_int_equal(answered, 1);
	assert_true(hung_up(unread));
	assert_true(hung_up(half));
	assert_false(hung_up(idle));
	assert_false(hung_up(slow));

	assert_int_equal(drop_calls, 2);
	snprintf(pid, sizeof(pid), "dropped pid %d (test_rpc, uid %u)",
		 (int)getpid(), (unsigned int)getuid());
	for (i = 0; i < 2; i++)
		assert_non_null(strstr(drop_msgs[i], pid));
	i = strstr(drop_msgs[0], "read nothing") ? 0 : 1;
	assert_non_null(strstr(drop_msgs[i], ": it read nothing of the "));
	assert_non_null(strstr(drop_msgs[i], "owed to it for 0.2 s"));
	assert_non_null(strstr(drop_msgs[1 - i], ": it sent 4 B of a 25 B "
			       "frame, then nothing more for 0.2 s"));

	assert_int_equal(raw_call(idle, "tern.vmm.Vmm/Status", NULL, 0,
				  &keep)->status, 0);
	tern__rpc__frame__free_unpacked(keep, NULL);
	rpc_conn_free(slow_c);
	rpc_conn_free(trickle_c);
	close(idle);
	close(unread);
	close(half);
	step_until_npeers(1);
}

#define CONN_TEST(fn) cmocka_unit_test_setup_teardown(fn, conn_setup, \
						      conn_teardown)
#define SRV_TEST(fn) cmocka_unit_test_setup_teardown(fn, srv_setup, \
						     srv_teardown)

/* Binding by name: every method of the service needs a handler. */
static void test_bind_service_by_name(void **state)
{
	struct event_base *base = event_base_new();
	struct rpc_server *srv = NULL;
	const char *missing = NULL;
	struct rpc_method_binding b[] = {
		{ "Status", h_status }, { "Stop", h_stop }, { "Cont", h_cont },
	};
	int sv[2];

	assert_non_null(base);
	assert_int_equal(rpc_server_new(base, &srv), 0);
	assert_int_equal(rpc_server_bind_service(srv, VMM, b, ARRAY_SIZE(b), NULL,
						 &missing), -ENOENT);
	assert_non_null(missing);
	assert_string_equal(missing, "Quit");   /* the first without a handler */
	rpc_server_free(srv);
	event_base_free(base);

	/* A socketpair peer is this process: root or self, so accepted. */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(rpc_accept_root_or_self(NULL, sv[0]), 0);
	close(sv[0]);
	close(sv[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bind_service_by_name),
		CONN_TEST(test_conn_basic),
		CONN_TEST(test_conn_byte_by_byte),
		CONN_TEST(test_conn_garbage),
		CONN_TEST(test_conn_no_body),
		CONN_TEST(test_conn_no_body_nonzero),
		CONN_TEST(test_conn_oversize),
		cmocka_unit_test(test_conn_cap_boundary),
		CONN_TEST(test_conn_truncated),
		CONN_TEST(test_conn_truncated_prefix),
		cmocka_unit_test(test_conn_fd_passing),
		CONN_TEST(test_conn_nfds_missing),
		CONN_TEST(test_conn_nfds_extra),
		CONN_TEST(test_conn_too_many_fds),
		CONN_TEST(test_conn_send_checks),
		cmocka_unit_test(test_frame_encode_space),
		SRV_TEST(test_srv_status),
		SRV_TEST(test_srv_error_text),
		SRV_TEST(test_srv_unimplemented),
		SRV_TEST(test_srv_client_unknown_method),
		SRV_TEST(test_srv_unknown_method),
		SRV_TEST(test_srv_malformed_arg),
		SRV_TEST(test_srv_garbage_peer),
		SRV_TEST(test_srv_empty_frame_peer),
		SRV_TEST(test_srv_cut_frame_peer),
		SRV_TEST(test_srv_reply_frame_from_client),
		SRV_TEST(test_srv_oversize_peer),
		SRV_TEST(test_srv_events),
		SRV_TEST(test_srv_deferred),
		SRV_TEST(test_srv_deferred_peer_gone),
		SRV_TEST(test_srv_deferred_peer_closed),
		SRV_TEST(test_srv_events_backlog),
		SRV_TEST(test_srv_deferred_server_freed),
		SRV_TEST(test_srv_half_close),
		SRV_TEST(test_srv_reply_written_at_once),
		SRV_TEST(test_srv_fds_both_ways),
		SRV_TEST(test_srv_reply_too_large),
		SRV_TEST(test_srv_large_frames),
		SRV_TEST(test_srv_wrong_arg_type),
		cmocka_unit_test(test_client_timeout),
		cmocka_unit_test(test_client_garbage_reply),
		cmocka_unit_test(test_client_idle),
		cmocka_unit_test(test_client_timeout_under_events),
		cmocka_unit_test(test_client_timeout_takes_buffered),
		SRV_TEST(test_srv_listen_and_accept),
		SRV_TEST(test_srv_accept_out_of_fds),
		SRV_TEST(test_srv_accept_overload_told),
		SRV_TEST(test_srv_stall_dropped),
	};

	/* Bounds every read, join and wait below: a hang fails the test
	 * (SIGALRM) instead of holding the run until TEST_TIMEOUT. */
	alarm(60);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
