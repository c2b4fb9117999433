/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Endpoint addresses as users write them: "tcp:HOST:PORT" (HOST a name,
 * an IPv4 address or a bracketed IPv6 address), "unix:PATH", "file:PATH".
 * Paths are absolute; a bare one is taken as unix:PATH.
 */
#ifndef TERN_URI_H
#define TERN_URI_H

#include <stdbool.h>
#include <stdint.h>
#include <limits.h>

enum uri_kind {
	URI_TCP,
	URI_UNIX,
	URI_FILE,
	URI_KIND_MAX
};

struct uri {
	enum uri_kind kind;
	char host[256];         /* tcp: without brackets */
	uint16_t port;          /* tcp: 0 allowed for listen (any port) */
	char path[PATH_MAX];    /* unix, file; unix paths must fit sun_path */
};

const char *uri_kind_name(enum uri_kind kind);
/* -EINVAL (malformed) or -ENAMETOOLONG (the path), with nothing written
 * to *ret; *why (if not NULL) then says what is
 * wrong, in words for a user. */
int uri_parse_why(const char *s, struct uri *ret, const char **why);
int uri_parse(const char *s, struct uri *ret);
/* The forms a peer or listening address takes, for error messages. */
#define URI_FORMS "tcp:HOST:PORT, tcp:[V6]:PORT or unix:/PATH"
/* Back to text; -ENAMETOOLONG when it does not fit. */
int uri_format(const struct uri *u, char *buf, size_t len);
/* Whether u is tcp: on a wildcard host (0.0.0.0 or ::, in any spelling
 * getaddrinfo takes): bound there, a socket listens on every address of
 * this host, and the text names none that a peer could dial. */
bool uri_is_wildcard(const struct uri *u);
/* Whether u is tcp: on a host name, which getaddrinfo must look up
 * (a resolver may take seconds), not an address in any form it reads
 * without one. */
bool uri_needs_lookup(const struct uri *u);
/* What -err from uri_listen or uri_connect of u means, in words: a
 * failed name lookup (-ENXIO, -EAGAIN) said as one, else strerror. */
const char *uri_strerror(const struct uri *u, int err);
/* As uri_format, but the address a peer dials: a wildcard host is
 * printed as host (a placeholder such as "THIS-HOST") instead. */
int uri_format_peer(const struct uri *u, const char *host, char *buf,
		    size_t len);

/*
 * Sockets for tcp: and unix: URIs, SOCK_CLOEXEC, blocking.  uri_listen
 * binds and listens (unix: removes a stale socket file first only when
 * nobody answers on it, -EADDRINUSE otherwise).  uri_connect gives up
 * after timeout_ms (-ETIMEDOUT).  Both return the fd or -errno; a host
 * name is looked up first, and one that is not known gives -ENXIO, a
 * name server that did not answer -EAGAIN.
 */
int uri_listen(const struct uri *u, int backlog);
int uri_connect(const struct uri *u, int timeout_ms);
/* The port a listening tcp socket got (for port 0), or -errno. */
int uri_bound_port(int fd);
/* uri_listen, then a tcp u's port becomes the one bound (port 0 picks
 * one): u then names the address listened on.  The fd or -errno (u is
 * unchanged then). */
int uri_listen_bound(struct uri *u, int backlog);

#endif
