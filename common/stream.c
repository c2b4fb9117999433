// SPDX-License-Identifier: GPL-2.0-only
/*
 * The migration stream's binary codec and blocking message framing (see
 * common/stream.h).  Used by migd's source and destination workers.
 */
#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/pbuf.h"
#include "common/ramhash.h"
#include "common/stream.h"
#include "common/util.h"

void stream_hello_init(struct stream_hello *h, enum stream_role role,
		       uint32_t index, const uint8_t *id, const uint8_t *token)
{
	memset(h, 0, sizeof(*h));
	memcpy(h->magic, STREAM_MAGIC, 8);
	h->version = htole32(STREAM_VERSION);
	h->role = htole32(role);
	h->index = htole32(index);
	memcpy(h->id, id, STREAM_ID_LEN);
	memcpy(h->token, token, STREAM_TOKEN_LEN);
}

int stream_hello_check(struct stream_hello *h, const uint8_t *token,
		       const char **why)
{
	uint8_t diff = 0, pad = 0;
	unsigned int i;

	if (memcmp(h->magic, STREAM_MAGIC, 8)) {
		*why = "not a tern migration stream";
		return -EPROTO;
	}
	h->version = le32toh(h->version);
	h->role = le32toh(h->role);
	h->index = le32toh(h->index);
	if (h->version != STREAM_VERSION) {
		*why = "unsupported migration stream version";
		return -EPROTO;
	}
	/* Reserved and padding: 0 in this version, so that a later one may
	 * give them a meaning that no reader of this one mistakes. */
	for (i = 0; i < sizeof(h->pad); i++)
		pad |= h->pad[i];
	if (h->reserved || pad) {
		*why = "reserved bytes are not 0";
		return -EPROTO;
	}
	for (i = 0; i < STREAM_TOKEN_LEN; i++)
		diff |= h->token[i] ^ token[i];
	if (diff) {
		*why = "token mismatch";
		return -EACCES;
	}
	if (h->role != STREAM_ROLE_MAIN && h->role != STREAM_ROLE_RAM &&
	    h->role != STREAM_ROLE_PAGE) {
		*why = "unknown connection role";
		return -EINVAL;
	}
	return 0;
}

void stream_pkt_to_wire(struct stream_pkt *p)
{
	p->magic = htole32(p->magic);
	p->flags = htole16(p->flags);
	p->region = htole16(p->region);
	p->npages = htole32(p->npages);
	p->data_len = htole32(p->data_len);
	p->seq = htole64(p->seq);
	p->sum = htole64(p->sum);
}

uint64_t stream_sum_start(const struct stream_pkt *wire_hdr)
{
	struct stream_pkt h = *wire_hdr;

	h.sum = 0;
	return stream_sum_add(0, &h, sizeof(h));
}

uint64_t stream_sum_add(uint64_t sum, const void *buf, size_t len)
{
	return ramhash_fold(sum, ramhash_buf(buf, len));
}

int stream_pkt_check(struct stream_pkt *p, const struct stream_layout *lay,
		     uint64_t expect_seq, const char **why)
{
	p->magic = le32toh(p->magic);
	p->flags = le16toh(p->flags);
	p->region = le16toh(p->region);
	p->npages = le32toh(p->npages);
	p->data_len = le32toh(p->data_len);
	p->seq = le64toh(p->seq);
	p->sum = le64toh(p->sum);
	*why = NULL;
	if (p->magic != STREAM_PKT_MAGIC)
		*why = "bad packet magic";
	else if (p->flags & ~STREAM_PKT_FLAGS_ALL)
		*why = "unknown packet flags";
	else if (p->seq != expect_seq)
		*why = "packet out of sequence";
	else if (p->flags & (STREAM_PKT_END | STREAM_PKT_POSTCOPY | STREAM_PKT_NOP)) {
		if (p->npages || p->data_len)
			*why = "marker packet with pages";
		else if (__builtin_popcount(p->flags) != 1)
			*why = "two markers in one packet";
	} else if (p->region >= lay->nregions)
		*why = "packet for an unknown RAM region";
	else if (p->npages == 0 || p->npages > STREAM_MAX_BATCH)
		*why = "bad page count in packet";
	else if ((p->flags & STREAM_PKT_ZERO) && (p->flags & STREAM_PKT_ZSTD))
		*why = "zero pages cannot be compressed";
	else if (p->flags & STREAM_PKT_ZSTD) {
		/* Compressed data is sent only when it is shorter. */
		if (p->data_len == 0 || p->data_len >= p->npages * STREAM_PAGE)
			*why = "compressed packet not shorter than its pages";
	} else if (p->data_len != ((p->flags & STREAM_PKT_ZERO) ? 0 :
				   p->npages * STREAM_PAGE))
		*why = "packet data length does not match its pages";
	return *why ? -EPROTO : 0;
}

int stream_offset_check(uint64_t *off, const struct stream_layout *lay,
			unsigned int region)
{
	*off = le64toh(*off);
	if (*off % STREAM_PAGE || *off >= lay->size[region])
		return -EPROTO;
	return 0;
}

uint32_t stream_run_end(const uint64_t *off, uint32_t i, uint32_t n)
{
	for (i++; i < n && off[i] == off[i - 1] + STREAM_PAGE; i++)
		;
	return i;
}

int stream_peer_errno(int32_t err)
{
	return err >= 1 && (uint32_t)err <= STREAM_MAX_ERRNO ? err : EPROTO;
}

int stream_token_new(uint8_t *token)
{
	ssize_t n = getrandom(token, STREAM_TOKEN_LEN, 0);

	return n == STREAM_TOKEN_LEN ? 0 : -EIO;
}

void stream_hex(const uint8_t *bin, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < len; i++) {
		out[2 * i] = digits[bin[i] >> 4];
		out[2 * i + 1] = digits[bin[i] & 15];
	}
	out[2 * len] = 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int stream_unhex(const char *hex, uint8_t *out, size_t len)
{
	size_t i;

	if (strlen(hex) != 2 * len)
		return -EINVAL;
	for (i = 0; i < len; i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -EINVAL;
		out[i] = hi << 4 | lo;
	}
	return 0;
}

static int wait_fd(int fd, short events, uint64_t deadline_ns)
{
	struct pollfd pfd = { .fd = fd, .events = events };
	int r = poll_until(&pfd, 1, deadline_ns);

	return r < 0 ? r : 0;
}

int stream_read_full(int fd, void *buf, size_t len, uint64_t deadline_ns)
{
	uint8_t *p = buf;
	size_t done = 0;
	ssize_t n;
	int r;

	while (done < len) {
		if (deadline_ns && (r = wait_fd(fd, POLLIN, deadline_ns)) < 0)
			return r;
		n = read(fd, p + done, len - done);
		if (n < 0 && errno == EAGAIN && !deadline_ns)
			return -ETIMEDOUT;      /* the socket's own timeout */
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return done ? -EBADMSG : -EPIPE;
		done += n;
	}
	return 0;
}

int stream_write_full(int fd, const void *buf, size_t len, uint64_t deadline_ns)
{
	const uint8_t *p = buf;
	size_t done = 0;
	ssize_t n;
	int r;

	while (done < len) {
		if (deadline_ns && (r = wait_fd(fd, POLLOUT, deadline_ns)) < 0)
			return r;
		/* With a deadline, never block in send(): POLLOUT means room
		 * for some bytes, not all, and a blocking socket would wait
		 * for the rest past the deadline (up to SO_SNDTIMEO). */
		n = send(fd, p + done, len - done,
			 MSG_NOSIGNAL | (deadline_ns ? MSG_DONTWAIT : 0));
		if (n < 0 && errno == EAGAIN && !deadline_ns)
			return -ETIMEDOUT;      /* the socket's own timeout */
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return -errno;
		done += n;
	}
	return 0;
}

int stream_msg_send(int fd, const ProtobufCMessage *m, uint64_t deadline_ns)
{
	size_t len = protobuf_c_message_get_packed_size(m);
	uint8_t *buf;
	uint32_t le;
	int r;

	if (len > STREAM_MSG_MAX)
		return -EMSGSIZE;
	buf = malloc(4 + len);
	if (!buf)
		return -ENOMEM;
	le = htole32(len);
	memcpy(buf, &le, 4);
	protobuf_c_message_pack(m, buf + 4);
	r = stream_write_full(fd, buf, 4 + len, deadline_ns);
	free(buf);
	return r;
}

int stream_msg_recv(int fd, const ProtobufCMessageDescriptor *desc,
		    uint32_t max, uint64_t deadline_ns, ProtobufCMessage **ret)
{
	ProtobufCMessage *m;
	uint8_t *buf;
	uint32_t len;
	int r;

	r = stream_read_full(fd, &len, 4, deadline_ns);
	if (r < 0)
		return r;
	len = le32toh(len);
	if (len > max || len > STREAM_MSG_MAX)
		return -EMSGSIZE;
	buf = malloc(len ? len : 1);
	if (!buf)
		return -ENOMEM;
	r = stream_read_full(fd, buf, len, deadline_ns);
	if (r == -EPIPE)
		r = -EBADMSG;
	if (r == 0) {
		m = pbuf_unpack(desc, len, buf);
		if (m)
			*ret = m;
		else
			r = -EPROTO;
	}
	free(buf);
	return r;
}
