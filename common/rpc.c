// SPDX-License-Identifier: GPL-2.0-only
/*
 * The control RPC's framing (see rpc.h, tern-rpc(7)): one stream socket,
 * nonblocking, 4-byte little-endian length then an encoded
 * tern.rpc.Frame.  The length is checked against the connection's cap
 * before anything is allocated; SCM_RIGHTS descriptors belong to the
 * frame whose first byte they came with.  Used by rpc_server.c,
 * rpc_client.c and directly by tests and fuzzers.
 */
#include <errno.h>
#include <poll.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/pbuf.h"
#include "common/rpc.h"
#include "common/rpc_priv.h"
#include "common/util.h"

union rpc_cmsg {
	char buf[CMSG_SPACE(RPC_MAX_FDS * sizeof(int))];
	struct cmsghdr align;
};

void rpc_fds_close(int *fds, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (fds[i] >= 0)
			close(fds[i]);
		fds[i] = -1;
	}
}

/* Duplicate n descriptors (CLOEXEC) into dst; all or nothing. */
int rpc_fds_dup(const int *src, size_t n, int *dst)
{
	size_t i;
	int r;

	for (i = 0; i < n; i++) {
		dst[i] = fcntl(src[i], F_DUPFD_CLOEXEC, 0);
		if (dst[i] < 0) {
			r = -errno;
			rpc_fds_close(dst, i);
			return r;
		}
	}
	return 0;
}

/* ---- framing ------------------------------------------------------- */

struct rpc_out {                /* one queued frame */
	struct rpc_out *next;
	size_t len, off;
	int fds[RPC_MAX_FDS];   /* go with the first byte; closed once sent */
	size_t nfds;
	uint8_t data[];
};

struct rpc_conn {
	int fd;
	bool is_unix;
	uint32_t max_frame;
	int err;                        /* sticky receive error */
	char why[128];                  /* what the peer sent, for -EPROTO & co. */
	uint8_t hdr[RPC_LEN_BYTES];
	size_t hdr_got;
	uint8_t *body;                  /* allocated once the length passed */
	uint32_t body_len;
	size_t body_got;
	int fds[RPC_MAX_FDS];           /* received for the frame being read */
	size_t nfds;
	struct rpc_out *out_head, **out_tail;
	size_t out_bytes;
	uint64_t in_total, out_total;   /* bytes taken from, given to the socket */
};

static int fd_prepare(int fd, bool *ret_unix)
{
	socklen_t len = sizeof(int);
	int domain, fl;

	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0)
		return -errno;
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
	    fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
		return -errno;
	*ret_unix = domain == AF_UNIX;
	return 0;
}

int rpc_conn_new(int fd, uint32_t max_frame, struct rpc_conn **ret)
{
	struct rpc_conn *c;
	bool is_unix = false;
	int r;

	if (fd < 0)
		return -EBADF;
	r = -EINVAL;
	if (max_frame > RPC_FRAME_MAX_LIMIT)
		goto fail;
	r = fd_prepare(fd, &is_unix);
	if (r < 0)
		goto fail;
	r = -ENOMEM;
	c = calloc(1, sizeof(*c));
	if (!c)
		goto fail;
	c->fd = fd;
	c->is_unix = is_unix;
	c->max_frame = max_frame ? max_frame : RPC_FRAME_MAX_DEFAULT;
	c->out_tail = &c->out_head;
	*ret = c;
	return 0;
fail:
	close(fd);
	return r;
}

static void conn_reset_input(struct rpc_conn *c)
{
	free(c->body);
	c->body = NULL;
	c->body_len = 0;
	c->body_got = 0;
	c->hdr_got = 0;
	rpc_fds_close(c->fds, c->nfds);
	c->nfds = 0;
}

void rpc_conn_free(struct rpc_conn *c)
{
	struct rpc_out *o;

	if (!c)
		return;
	while ((o = c->out_head)) {
		c->out_head = o->next;
		rpc_fds_close(o->fds, o->nfds);
		free(o);
	}
	conn_reset_input(c);
	close(c->fd);
	free(c);
}

int rpc_conn_fd(const struct rpc_conn *c)
{
	return c->fd;
}

bool rpc_conn_hung_up(const struct rpc_conn *c)
{
	struct pollfd p = { c->fd, POLLRDHUP, 0 };

	return poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

bool rpc_conn_is_unix(const struct rpc_conn *c)
{
	return c->is_unix;
}

/* Keep the descriptors of a received message; -EPROTO if they overflow. */
static int conn_take_cmsg(struct rpc_conn *c, struct msghdr *msg)
{
	struct cmsghdr *cm;
	size_t i, n;
	int fd, r = 0;

	for (cm = CMSG_FIRSTHDR(msg); cm; cm = CMSG_NXTHDR(msg, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (i = 0; i < n; i++) {
			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(fd));
			if (c->nfds < RPC_MAX_FDS) {
				c->fds[c->nfds++] = fd;
			} else {
				close(fd);
				snprintf(c->why, sizeof(c->why), "more than %d "
					 "descriptors with a frame", RPC_MAX_FDS);
				r = -EPROTO;
			}
		}
	}
	if (msg->msg_flags & MSG_CTRUNC) {
		snprintf(c->why, sizeof(c->why), "descriptors that came cut "
			 "short (MSG_CTRUNC: more than %d, or this process at "
			 "its limit of open files)", RPC_MAX_FDS);
		r = -EPROTO;
	}
	return r;
}

/* One recvmsg of at most n bytes: bytes read, 0 on EOF, or -errno. */
static int conn_recvmsg(struct rpc_conn *c, void *buf, size_t n)
{
	union rpc_cmsg cbuf;
	struct iovec iov = { .iov_base = buf, .iov_len = n };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t got;
	int r;

	if (c->is_unix) {
		msg.msg_control = cbuf.buf;
		msg.msg_controllen = sizeof(cbuf.buf);
	}
	do {
		got = recvmsg(c->fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	} while (got < 0 && errno == EINTR);
	if (got < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	r = conn_take_cmsg(c, &msg);
	return r < 0 ? r : (int)got;
}

static uint32_t le32_get(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static void le32_put(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

/* The length prefix is complete: check it, then allocate the body. */
static int conn_start_body(struct rpc_conn *c)
{
	uint32_t len = le32_get(c->hdr);
	char a[32], b[32];

	if (len > c->max_frame) {
		snprintf(c->why, sizeof(c->why), "the length of a frame of %s, "
			 "over the %s a frame may have", fmt_size(len, a, sizeof(a)),
			 fmt_size(c->max_frame, b, sizeof(b)));
		return -EMSGSIZE;
	}
	if (len == 0) {
		snprintf(c->why, sizeof(c->why), "a frame of length 0");
		return -EPROTO;
	}
	c->body = malloc(len);
	if (!c->body)
		return -ENOMEM;
	c->body_len = len;
	return 0;
}

/* The socket closed: between frames (-EPIPE) or in one (-EBADMSG). */
static int conn_eof(struct rpc_conn *c)
{
	char a[32], b[32];

	if (c->hdr_got == 0)
		return -EPIPE;
	if (c->hdr_got < RPC_LEN_BYTES)
		snprintf(c->why, sizeof(c->why), "%zu bytes of a frame's length, "
			 "then closed its socket", c->hdr_got);
	else
		snprintf(c->why, sizeof(c->why), "%s of a %s frame, then closed "
			 "its socket", fmt_size(c->body_got, a, sizeof(a)),
			 fmt_size(c->body_len, b, sizeof(b)));
	return -EBADMSG;
}

/*
 * Read up to the end of the current frame, never beyond it, so that the
 * descriptors of the next frame cannot be taken for this one's.
 * 1 when the frame is complete, 0 on EAGAIN, -errno.
 */
static int conn_fill(struct rpc_conn *c)
{
	uint8_t *p;
	size_t want;
	int n;

	for (;;) {
		if (c->hdr_got < RPC_LEN_BYTES) {
			p = c->hdr + c->hdr_got;
			want = RPC_LEN_BYTES - c->hdr_got;
		} else if (c->body_got < c->body_len) {
			p = c->body + c->body_got;
			want = c->body_len - c->body_got;
		} else {
			return 1;
		}
		n = conn_recvmsg(c, p, want);
		if (n == -EAGAIN)
			return 0;
		if (n < 0)
			return n;
		if (n == 0)
			return conn_eof(c);
		c->in_total += (size_t)n;
		if (c->hdr_got < RPC_LEN_BYTES) {
			c->hdr_got += (size_t)n;
			if (c->hdr_got == RPC_LEN_BYTES &&
			    (n = conn_start_body(c)) < 0)
				return n;
		} else {
			c->body_got += (size_t)n;
		}
	}
}

static int conn_decode(struct rpc_conn *c, Tern__Rpc__Frame **ret_frame,
		       int *fds, size_t *ret_nfds)
{
	Tern__Rpc__Frame *f;
	char a[32];

	f = (Tern__Rpc__Frame *)pbuf_unpack(&tern__rpc__frame__descriptor,
						c->body_len, c->body);
	if (!f) {
		snprintf(c->why, sizeof(c->why), "a frame of %s that is not a "
			 "tern.rpc.Frame", fmt_size(c->body_len, a, sizeof(a)));
		return -EPROTO;
	}
	if (f->body_case == TERN__RPC__FRAME__BODY__NOT_SET ||
	    f->nfds != c->nfds) {
		if (f->body_case == TERN__RPC__FRAME__BODY__NOT_SET)
			snprintf(c->why, sizeof(c->why), "a tern.rpc.Frame with "
				 "neither a request nor a reply");
		else
			snprintf(c->why, sizeof(c->why), "%zu descriptors with a "
				 "frame that says %u", c->nfds, f->nfds);
		tern__rpc__frame__free_unpacked(f, NULL);
		return -EPROTO;
	}
	memcpy(fds, c->fds, c->nfds * sizeof(int));
	*ret_nfds = c->nfds;
	c->nfds = 0;
	conn_reset_input(c);
	*ret_frame = f;
	return 1;
}

int rpc_conn_recv(struct rpc_conn *c, Tern__Rpc__Frame **ret_frame,
		  int *fds, size_t *ret_nfds)
{
	int r;

	if (c->err)
		return c->err;
	r = conn_fill(c);
	if (r == 1)
		r = conn_decode(c, ret_frame, fds, ret_nfds);
	if (r < 0) {
		c->err = r;
		conn_reset_input(c);
	}
	return r;
}

/* Encoded size of f with its prefix, checked against max (0 allowed). */
static int frame_size(const Tern__Rpc__Frame *f, uint32_t max, size_t *ret)
{
	size_t n = tern__rpc__frame__get_packed_size(f);

	if (n > max)
		return -EMSGSIZE;
	*ret = n + RPC_LEN_BYTES;
	return 0;
}

static void frame_write(const Tern__Rpc__Frame *f, size_t size, uint8_t *buf)
{
	le32_put(buf, (uint32_t)(size - RPC_LEN_BYTES));
	tern__rpc__frame__pack(f, buf + RPC_LEN_BYTES);
}

int rpc_frame_encode(const Tern__Rpc__Frame *f, uint8_t *buf, size_t len)
{
	size_t n;
	int r;

	r = frame_size(f, RPC_FRAME_MAX_LIMIT, &n);
	if (r < 0)
		return r;
	if (n > len)
		return -ENOSPC;
	frame_write(f, n, buf);
	return (int)n;
}

int rpc_conn_send(struct rpc_conn *c, Tern__Rpc__Frame *f, const int *fds,
		  size_t nfds)
{
	struct rpc_out *o;
	size_t n;
	int r;

	if (nfds > RPC_MAX_FDS || (nfds && !c->is_unix) ||
	    f->body_case == TERN__RPC__FRAME__BODY__NOT_SET)
		return -EINVAL;
	f->nfds = (uint32_t)nfds;
	r = frame_size(f, c->max_frame, &n);
	if (r < 0)
		return r;
	o = malloc(sizeof(*o) + n);
	if (!o)
		return -ENOMEM;
	r = rpc_fds_dup(fds, nfds, o->fds);
	if (r < 0) {
		free(o);
		return r;
	}
	o->next = NULL;
	o->len = n;
	o->off = 0;
	o->nfds = nfds;
	frame_write(f, n, o->data);
	*c->out_tail = o;
	c->out_tail = &o->next;
	c->out_bytes += n;
	return 0;
}

/* Send what is left of o: bytes sent or -errno (-EAGAIN when full). */
static ssize_t conn_sendmsg(struct rpc_conn *c, struct rpc_out *o)
{
	union rpc_cmsg cbuf;
	struct iovec iov = { .iov_base = o->data + o->off,
			     .iov_len = o->len - o->off };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *cm;
	ssize_t n;

	if (o->nfds) {
		memset(&cbuf, 0, sizeof(cbuf));
		msg.msg_control = cbuf.buf;
		msg.msg_controllen = CMSG_SPACE(o->nfds * sizeof(int));
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(o->nfds * sizeof(int));
		memcpy(CMSG_DATA(cm), o->fds, o->nfds * sizeof(int));
	}
	do {
		n = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return n;
}

int rpc_conn_flush(struct rpc_conn *c)
{
	struct rpc_out *o;
	ssize_t n;

	while ((o = c->out_head)) {
		n = conn_sendmsg(c, o);
		if (n == -EAGAIN)
			return 0;
		if (n < 0)
			return (int)n;
		rpc_fds_close(o->fds, o->nfds);     /* the kernel has them now */
		o->nfds = 0;
		o->off += (size_t)n;
		c->out_bytes -= (size_t)n;
		c->out_total += (size_t)n;
		if (o->off < o->len)
			continue;
		c->out_head = o->next;
		if (!c->out_head)
			c->out_tail = &c->out_head;
		free(o);
	}
	return 1;
}

bool rpc_conn_pending(const struct rpc_conn *c)
{
	return c->out_head != NULL;
}

/* Pack msg into a new buffer (NULL msg: empty). */
int rpc_msg_pack(const ProtobufCMessage *msg, uint8_t **ret_buf,
		    size_t *ret_len)
{
	size_t n = msg ? protobuf_c_message_get_packed_size(msg) : 0;
	uint8_t *buf = NULL;

	if (n) {
		buf = malloc(n);
		if (!buf)
			return -ENOMEM;
		protobuf_c_message_pack(msg, buf);
	}
	*ret_buf = buf;
	*ret_len = n;
	return 0;
}

size_t rpc_conn_out_bytes(const struct rpc_conn *c)
{
	return c->out_bytes;
}

uint32_t rpc_conn_max_frame(const struct rpc_conn *c)
{
	return c->max_frame;
}

uint64_t rpc_conn_total_in(const struct rpc_conn *c)
{
	return c->in_total;
}

uint64_t rpc_conn_total_out(const struct rpc_conn *c)
{
	return c->out_total;
}

const char *rpc_conn_why(const struct rpc_conn *c)
{
	return c->why;
}

size_t rpc_conn_in_partial(const struct rpc_conn *c, uint32_t *ret_len)
{
	*ret_len = c->hdr_got == RPC_LEN_BYTES ? c->body_len : 0;
	return c->hdr_got + c->body_got;
}

void rpc_conn_set_max_frame(struct rpc_conn *c, uint32_t max_frame)
{
	c->max_frame = max_frame;
}
