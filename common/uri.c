// SPDX-License-Identifier: GPL-2.0-only
/*
 * Endpoint addresses: parsing and printing "tcp:HOST:PORT", "unix:PATH",
 * "file:PATH", and opening listening or connected sockets for them.
 * Used by every program that serves or calls the control RPC and by the
 * migration channels.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "common/uri.h"
#include "common/util.h"

static const char *const uri_kind_names[URI_KIND_MAX] = {
	[URI_TCP] = "tcp",
	[URI_UNIX] = "unix",
	[URI_FILE] = "file",
};

const char *uri_kind_name(enum uri_kind kind)
{
	return kind < URI_KIND_MAX ? uri_kind_names[kind] : "unknown";
}

/* "HOST:PORT" or "[V6]:PORT" into u->host and u->port; *why says what
 * is wrong with it. */
static int uri_parse_hostport(const char *s, struct uri *u, const char **why)
{
	const char *colon, *host = s;
	size_t hlen;
	uint64_t port;

	if (s[0] == '[') {
		colon = strchr(s, ']');
		if (!colon || colon[1] != ':') {
			*why = "expected tcp:[V6]:PORT";
			return -EINVAL;
		}
		host = s + 1;
		hlen = (size_t)(colon - host);
		colon++;
	} else {
		colon = strchr(s, ':');
		if (!colon) {
			*why = "no :PORT";
			return -EINVAL;
		}
		if (strchr(colon + 1, ':')) {
			*why = "an IPv6 address goes in brackets: tcp:[V6]:PORT";
			return -EINVAL;
		}
		hlen = (size_t)(colon - s);
	}
	/* Brackets only around the host: "tcp:[[]:80" would name "[", which
	 * no resolver knows and which would print back as "tcp:[:80". */
	if (hlen == 0 || hlen >= sizeof(u->host) || memchr(host, '/', hlen) ||
	    memchr(host, '[', hlen) || memchr(host, ']', hlen)) {
		*why = hlen == 0 ? "no host" : hlen >= sizeof(u->host) ?
		       "the host name is too long" :
		       "the host holds '/', '[' or ']'";
		return -EINVAL;
	}
	if (parse_u64(colon + 1, 0, 65535, &port) < 0) {
		*why = "the port is not a number from 0 to 65535";
		return -EINVAL;
	}
	memcpy(u->host, host, hlen);
	u->host[hlen] = '\0';
	u->port = (uint16_t)port;
	return 0;
}

/* Paths are absolute: a daemon, not the caller, opens them, from its
 * own working directory. */
static int uri_parse_path(const char *s, enum uri_kind kind, struct uri *u,
			  const char **why)
{
	size_t max = sizeof(u->path);

	if (kind == URI_UNIX)
		max = sizeof(((struct sockaddr_un *)0)->sun_path);
	if (s[0] != '/') {
		*why = s[0] ? "the path is not absolute" : "no path";
		return -EINVAL;
	}
	if (str_copy(u->path, s, max) < 0) {
		*why = kind == URI_UNIX ? "the path is longer than the 107 "
		       "bytes a unix socket address holds" : "the path is too long";
		return -ENAMETOOLONG;
	}
	u->kind = kind;
	return 0;
}

int uri_parse_why(const char *s, struct uri *ret, const char **why)
{
	struct uri u = { 0 };
	const char *dummy;
	int r;

	if (!why)
		why = &dummy;
	*why = s && s[0] ? "neither tcp: nor unix:" : "empty";
	if (!s)
		return -EINVAL;
	/* It is shown to people and sent in protobuf strings. */
	if (!str_is_text(s)) {
		*why = "it holds a control character or bytes that are not UTF-8";
		return -EINVAL;
	}
	if (strncmp(s, "tcp:", 4) == 0) {
		u.kind = URI_TCP;
		r = uri_parse_hostport(s + 4, &u, why);
	} else if (strncmp(s, "unix:", 5) == 0) {
		r = uri_parse_path(s + 5, URI_UNIX, &u, why);
	} else if (strncmp(s, "file:", 5) == 0) {
		r = uri_parse_path(s + 5, URI_FILE, &u, why);
	} else if (s[0] == '/') {
		r = uri_parse_path(s, URI_UNIX, &u, why);
	} else {
		r = -EINVAL;
	}
	if (r < 0)
		return r;
	*ret = u;
	return 0;
}

int uri_parse(const char *s, struct uri *ret)
{
	return uri_parse_why(s, ret, NULL);
}

int uri_format(const struct uri *u, char *buf, size_t len)
{
	int n;

	switch (u->kind) {
	case URI_TCP:
		if (strchr(u->host, ':'))
			n = snprintf(buf, len, "tcp:[%s]:%u", u->host, u->port);
		else
			n = snprintf(buf, len, "tcp:%s:%u", u->host, u->port);
		break;
	case URI_UNIX:
	case URI_FILE:
		n = snprintf(buf, len, "%s:%s", uri_kind_name(u->kind),
			     u->path);
		break;
	default:
		return -EINVAL;
	}
	if (n < 0)
		return -EINVAL;
	return (size_t)n < len ? n : -ENAMETOOLONG;
}

bool uri_is_wildcard(const struct uri *u)
{
	char host[sizeof(u->host)];
	struct in6_addr a6;
	struct in_addr a4;

	if (u->kind != URI_TCP)
		return false;
	/* inet_aton: every spelling getaddrinfo takes ("0", "0.0.0.0",
	 * "0x0"), but it also stops at white space, which is no host. */
	if (!u->host[strcspn(u->host, " \t\n")] && inet_aton(u->host, &a4))
		return a4.s_addr == htonl(INADDR_ANY);
	/* "::", "::0", "0:0:0:0:0:0:0:0", with a scope or without. */
	str_copy(host, u->host, sizeof(host));
	host[strcspn(host, "%")] = 0;
	return inet_pton(AF_INET6, host, &a6) == 1 && IN6_IS_ADDR_UNSPECIFIED(&a6);
}

const char *uri_strerror(const struct uri *u, int err)
{
	if (uri_needs_lookup(u) && err == -ENXIO)
		return "the host name is not known";
	if (uri_needs_lookup(u) && err == -EAGAIN)
		return "no name server answered (give an address, or try again)";
	return strerror(-err);
}

bool uri_needs_lookup(const struct uri *u)
{
	struct addrinfo hints = {
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV,
	};
	struct addrinfo *ai = NULL;
	int r;

	if (u->kind != URI_TCP)
		return false;
	r = getaddrinfo(u->host, "0", &hints, &ai);
	if (ai)
		freeaddrinfo(ai);
	return r == EAI_NONAME;
}

int uri_format_peer(const struct uri *u, const char *host, char *buf,
		    size_t len)
{
	struct uri peer;

	if (!uri_is_wildcard(u))
		return uri_format(u, buf, len);
	peer = *u;
	if (str_copy(peer.host, host, sizeof(peer.host)) < 0)
		return -ENAMETOOLONG;
	return uri_format(&peer, buf, len);
}

static int gai_errno(int e)
{
	switch (e) {
	case EAI_SYSTEM:
		return errno ? -errno : -EIO;
	case EAI_MEMORY:
		return -ENOMEM;
	case EAI_AGAIN:
		return -EAGAIN;
	case EAI_NONAME:
#ifdef EAI_NODATA
	case EAI_NODATA:
#endif
#ifdef EAI_ADDRFAMILY
	case EAI_ADDRFAMILY:
#endif
		return -ENXIO;          /* no such name, or it has no address */
	default:
		return -EADDRNOTAVAIL;
	}
}

static int uri_resolve(const struct uri *u, bool passive,
		       struct addrinfo **ret)
{
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0),
	};
	char port[8];
	int r;

	snprintf(port, sizeof(port), "%u", u->port);
	r = getaddrinfo(u->host, port, &hints, ret);
	return r ? gai_errno(r) : 0;
}

/* u->path may come from elsewhere than uri_parse: check it fits. */
static int uri_unix_addr(const struct uri *u, struct sockaddr_un *sun)
{
	size_t n = strnlen(u->path, sizeof(u->path));

	if (n == 0)
		return -EINVAL;
	if (n >= sizeof(sun->sun_path))
		return -ENAMETOOLONG;
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	memcpy(sun->sun_path, u->path, n);
	return 0;
}

static int tcp_listen_one(const struct addrinfo *ai, int backlog)
{
	int fd, one = 1, r;

	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
		    ai->ai_protocol);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 ||
	    listen(fd, backlog) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

static int tcp_listen(const struct uri *u, int backlog)
{
	struct addrinfo *res, *ai;
	int r;

	r = uri_resolve(u, true, &res);
	if (r < 0)
		return r;
	r = -EADDRNOTAVAIL;
	for (ai = res; ai; ai = ai->ai_next) {
		r = tcp_listen_one(ai, backlog);
		if (r >= 0)
			break;
	}
	freeaddrinfo(res);
	return r;
}

/* A socket file at path that nobody answers on may be removed. */
static int unix_remove_stale(const struct sockaddr_un *sun)
{
	struct stat st;
	int fd, r;

	if (lstat(sun->sun_path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EADDRINUSE;
	/* Non-blocking: a listener with a full backlog (a stopped process)
	 * answers EAGAIN at once instead of holding the caller; it is alive. */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	r = connect(fd, (const struct sockaddr *)sun, sizeof(*sun));
	if (r == 0 || errno == EAGAIN)
		r = -EADDRINUSE;
	else if (errno == ECONNREFUSED)
		r = unlink(sun->sun_path) < 0 && errno != ENOENT ? -errno : 0;
	else
		r = errno == ENOENT ? 0 : -errno;
	close(fd);
	return r;
}

static int unix_listen(const struct uri *u, int backlog)
{
	struct sockaddr_un sun;
	int fd, r;

	r = uri_unix_addr(u, &sun);
	if (r < 0)
		return r;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	r = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	if (r < 0 && errno == EADDRINUSE) {
		r = unix_remove_stale(&sun);
		if (r == 0)
			r = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
		else
			errno = -r;
	}
	if (r < 0 || listen(fd, backlog) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

int uri_listen(const struct uri *u, int backlog)
{
	switch (u->kind) {
	case URI_TCP:
		return tcp_listen(u, backlog);
	case URI_UNIX:
		return unix_listen(u, backlog);
	default:
		return -EINVAL;
	}
}

static int set_nonblock(int fd, bool on)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0)
		return -errno;
	fl = on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK;
	return fcntl(fd, F_SETFL, fl) < 0 ? -errno : 0;
}

/* Wait for a nonblocking connect until deadline_ns (0 = forever). */
static int connect_wait(int fd, uint64_t deadline_ns)
{
	struct pollfd pfd = { .fd = fd, .events = POLLOUT };
	socklen_t len = sizeof(int);
	int err = 0, r;

	r = poll_until(&pfd, 1, deadline_ns);
	if (r < 0)
		return r;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		return -errno;
	return -err;
}

/* SO_SNDTIMEO until deadline_ns (0: none, which also clears it). */
static int set_send_timeout(int fd, uint64_t deadline_ns)
{
	struct timeval tv = { 0 };
	uint64_t now, left;

	if (deadline_ns) {
		now = now_ns();
		left = deadline_ns > now ? deadline_ns - now : 0;
		tv.tv_sec = (time_t)(left / 1000000000);
		tv.tv_usec = (suseconds_t)(left % 1000000000 / 1000);
		if (tv.tv_sec == 0 && tv.tv_usec == 0)
			tv.tv_usec = 1;
	}
	return setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0 ?
	       -errno : 0;
}

/*
 * A unix connect is never in progress: while the listener's backlog is
 * full a nonblocking one fails with EAGAIN at once.  So connect blocking,
 * bounded by SO_SNDTIMEO, and clear the timeout afterwards.
 */
static int unix_connect(int fd, const struct sockaddr *sa, socklen_t len,
			uint64_t deadline_ns)
{
	int r;

	do {
		r = set_send_timeout(fd, deadline_ns);
		if (r == 0)
			r = connect(fd, sa, len) < 0 ? -errno : 0;
	} while (r == -EINTR);
	if (r == -EAGAIN)
		r = -ETIMEDOUT;
	if (r == 0)
		r = set_send_timeout(fd, 0);
	return r;
}

static int connect_one(int family, const struct sockaddr *sa, socklen_t len,
		       uint64_t deadline_ns)
{
	int fd, r;

	if (family == AF_UNIX) {
		fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -errno;
		r = unix_connect(fd, sa, len, deadline_ns);
		goto out;
	}
	fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	r = connect(fd, sa, len) < 0 ? -errno : 0;
	if (r == -EINPROGRESS)
		r = connect_wait(fd, deadline_ns);
	if (r == 0)
		r = set_nonblock(fd, false);
out:
	if (r < 0) {
		close(fd);
		return r;
	}
	return fd;
}

int uri_connect(const struct uri *u, int timeout_ms)
{
	uint64_t deadline = 0;
	struct addrinfo *res, *ai;
	struct sockaddr_un sun;
	int r;

	if (timeout_ms > 0)
		deadline = deadline_ms((unsigned int)timeout_ms);
	if (u->kind == URI_UNIX) {
		r = uri_unix_addr(u, &sun);
		if (r < 0)
			return r;
		return connect_one(AF_UNIX, (struct sockaddr *)&sun,
				   sizeof(sun), deadline);
	}
	if (u->kind != URI_TCP)
		return -EINVAL;
	r = uri_resolve(u, false, &res);
	if (r < 0)
		return r;
	r = -EADDRNOTAVAIL;
	for (ai = res; ai; ai = ai->ai_next) {
		r = connect_one(ai->ai_family, ai->ai_addr, ai->ai_addrlen,
				deadline);
		if (r >= 0 || r == -ETIMEDOUT)
			break;
	}
	freeaddrinfo(res);
	return r;
}

int uri_listen_bound(struct uri *u, int backlog)
{
	int fd = uri_listen(u, backlog), port;

	if (fd < 0 || u->kind != URI_TCP)
		return fd;
	port = uri_bound_port(fd);
	if (port < 0) {
		close(fd);
		return port;
	}
	u->port = port;
	return fd;
}

int uri_bound_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return -errno;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return -EAFNOSUPPORT;
}
