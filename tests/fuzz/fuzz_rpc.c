// SPDX-License-Identifier: GPL-2.0-only
/*
 * libFuzzer target: the control RPC's framing as a peer can drive it.
 * The input is cut into writes (the first byte of each piece says how
 * long it is), some with descriptors attached, read back by
 * rpc_conn_recv() between writes, under a small frame cap.  Every return
 * must be one rpc.h documents; nothing may leak or crash (ASan, UBSan).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/rpc.h"
#include "proto/rpc.pb-c.h"

#define FUZZ_MAX_FRAME 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One write of len bytes, with nfds copies of /dev/null attached. */
static void send_piece(int fd, const uint8_t *p, size_t len, int nfds)
{
	char cbuf[CMSG_SPACE(4 * sizeof(int))] = { 0 };
	struct iovec iov = { (void *)p, len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	int fds[4], i;

	for (i = 0; i < nfds; i++)
		fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (nfds) {
		struct cmsghdr *c;

		mh.msg_control = cbuf;
		mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
		memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
	}
	(void)sendmsg(fd, &mh, MSG_NOSIGNAL);
	for (i = 0; i < nfds; i++)
		close(fds[i]);
}

/* Read every whole frame there is: 1 while the connection lives. */
static int drain(struct rpc_conn *c)
{
	Tern__Rpc__Frame *f;
	int fds[RPC_MAX_FDS], r;
	size_t nfds, i;

	for (;;) {
		f = NULL;
		nfds = 0;
		r = rpc_conn_recv(c, &f, fds, &nfds);
		if (r != 1)
			break;
		if (!f || nfds > RPC_MAX_FDS)
			abort();
		for (i = 0; i < nfds; i++)
			close(fds[i]);
		tern__rpc__frame__free_unpacked(f, NULL);
	}
	if (r == 0)
		return 1;
	if (r != -EPIPE && r != -EMSGSIZE && r != -EPROTO && r != -EBADMSG &&
	    r != -ECONNRESET)
		abort();                /* a return rpc.h does not document */
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rpc_conn *c;
	size_t at = 0;
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return 0;
	if (rpc_conn_new(sv[0], FUZZ_MAX_FRAME, &c) < 0) {
		close(sv[0]);
		close(sv[1]);
		return 0;
	}
	while (at < size) {
		uint8_t h = data[at++];
		size_t len = h & 0x3f;

		len = len < size - at ? len : size - at;
		send_piece(sv[1], data + at, len, (h >> 6) == 3 ? 2 : (h >> 6) == 2);
		at += len;
		if (!drain(c))
			goto out;
	}
	shutdown(sv[1], SHUT_WR);
	drain(c);
out:
	rpc_conn_free(c);
	close(sv[1]);
	return 0;
}
