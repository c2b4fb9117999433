// SPDX-License-Identifier: GPL-2.0-only
/* Unit tests for common/uri.c: parsing, printing, listen and connect. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/uri.h"
#include "common/util.h"

static const struct {
	const char *in;
	int kind;               /* -1: invalid */
	const char *host_or_path;
	int port;
	const char *out;        /* uri_format of the result */
} cases[] = {
	{ "tcp:10.0.0.1:4444", URI_TCP, "10.0.0.1", 4444, NULL },
	{ "tcp:host.example:1", URI_TCP, "host.example", 1, NULL },
	{ "tcp:[::1]:80", URI_TCP, "::1", 80, NULL },
	{ "tcp:[fe80::1%eth0]:0", URI_TCP, "fe80::1%eth0", 0, NULL },
	{ "tcp:0x7f:0x10", URI_TCP, "0x7f", 16, "tcp:0x7f:16" },
	{ "unix:/run/tern/vmm.sock", URI_UNIX, "/run/tern/vmm.sock", 0, NULL },
	{ "/tmp/a", URI_UNIX, "/tmp/a", 0, "unix:/tmp/a" },
	{ "file:/var/lib/vm.img", URI_FILE, "/var/lib/vm.img", 0, NULL },
	{ "unix:/tmp/\xc3\xa9t\xc3\xa9.sock", URI_UNIX, "/tmp/\xc3\xa9t\xc3\xa9.sock", 0, NULL },
	/* shown to people, sent in protobuf strings: text only (a newline
	 * passed, and the vmm refused the job's hold that named it) */
	{ "unix:/tmp/a\nb.sock", -1, NULL, 0, NULL },
	{ "unix:/tmp/\xff.sock", -1, NULL, 0, NULL },
	{ "unix:/tmp/\xc3.sock", -1, NULL, 0, NULL },
	{ "tcp:ho\tst:80", -1, NULL, 0, NULL },
	{ "file:/tmp/a\x7f", -1, NULL, 0, NULL },
	{ "tcp:::1:80", -1, NULL, 0, NULL },
	{ "tcp:[::1]80", -1, NULL, 0, NULL },
	{ "tcp:[::1", -1, NULL, 0, NULL },
	{ "tcp:host", -1, NULL, 0, NULL },
	{ "tcp:host:", -1, NULL, 0, NULL },
	{ "tcp::80", -1, NULL, 0, NULL },
	{ "tcp:host:65536", -1, NULL, 0, NULL },
	{ "tcp:host:-1", -1, NULL, 0, NULL },
	{ "tcp:host:80x", -1, NULL, 0, NULL },
	/* found by tests/fuzz/fuzz_text: "[" was a host, printed "tcp:[:80" */
	{ "tcp:[[]:80", -1, NULL, 0, NULL },
	{ "tcp:a]b:80", -1, NULL, 0, NULL },
	{ "tcp:[a[b]:80", -1, NULL, 0, NULL },
	{ "unix:", -1, NULL, 0, NULL },
	/* a daemon, not the caller, opens the path: relative is refused */
	{ "unix:rel.sock", -1, NULL, 0, NULL },
	{ "./x.sock", -1, NULL, 0, NULL },
	{ "http://dst:4444", -1, NULL, 0, NULL },
	{ "file:rel.img", -1, NULL, 0, NULL },
	{ "file:", -1, NULL, 0, NULL },
	{ "vm.sock", -1, NULL, 0, NULL },
	{ "udp:1.2.3.4:5", -1, NULL, 0, NULL },
	{ "", -1, NULL, 0, NULL },
};

static void test_parse_table(void **state)
{
	char buf[256];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		struct uri u;
		int r;

		memset(&u, 0xa5, sizeof(u));
		r = uri_parse(cases[i].in, &u);
		if (cases[i].kind < 0) {
			if (r != -EINVAL)
				fail_msg("\"%s\" parsed (%d)", cases[i].in, r);
			assert_int_equal(((unsigned char *)&u)[0], 0xa5);
			continue;
		}
		if (r != 0)
			fail_msg("\"%s\" rejected (%d)", cases[i].in, r);
		assert_int_equal(u.kind, cases[i].kind);
		assert_string_equal(u.kind == URI_TCP ? u.host : u.path,
				    cases[i].host_or_path);
		if (u.kind == URI_TCP)
			assert_int_equal(u.port, cases[i].port);
		assert_true(uri_format(&u, buf, sizeof(buf)) > 0);
		assert_string_equal(buf, cases[i].out ? cases[i].out
						     : cases[i].in);
	}
}

static void test_unix_path_limit(void **state)
{
	char s[200];
	struct uri u;

	memset(s, 'a', sizeof(s));
	memcpy(s, "unix:/", 6);
	s[5 + 107] = '\0';              /* 107 chars + NUL = sun_path */
	assert_int_equal(uri_parse(s, &u), 0);
	s[5 + 107] = 'a';
	s[5 + 108] = '\0';
	assert_int_equal(uri_parse(s, &u), -ENAMETOOLONG);
	memcpy(s, "file:", 5);          /* file paths may be longer */
	assert_int_equal(uri_parse(s, &u), 0);
}

/* What a user is told, by cause. */
static void test_parse_why(void **state)
{
	static const struct {
		const char *in, *why;
	} w[] = {
		{ "", "empty" },
		{ "http://dst:4444", "neither tcp: nor unix:" },
		{ "tcp:host", "no :PORT" },
		{ "tcp:::1:80", "an IPv6 address goes in brackets: tcp:[V6]:PORT" },
		{ "tcp:[::1]80", "expected tcp:[V6]:PORT" },
		{ "tcp::80", "no host" },
		{ "tcp:host:65536", "the port is not a number from 0 to 65535" },
		{ "unix:", "no path" },
		{ "unix:run/x.sock", "the path is not absolute" },
		{ "unix:/tmp/a\x1b[2J", "it holds a control character or bytes "
		  "that are not UTF-8" },
	};
	const char *why;
	struct uri u;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(w); i++) {
		why = NULL;
		assert_int_equal(uri_parse_why(w[i].in, &u, &why), -EINVAL);
		assert_non_null(why);
		assert_string_equal(why, w[i].why);
	}
	assert_int_equal(uri_parse_why("tcp:h:1", &u, &why), 0);
}

/*
 * What a peer is told to dial, as migctl incoming prints it: a wildcard
 * host (where migd listens on every address) is no address to dial and
 * becomes the placeholder; any other address is printed as it is.
 */
static void test_format_peer(void **state)
{
	static const struct {
		const char *in;
		bool wildcard;
		const char *out;
	} w[] = {
		{ "tcp:0.0.0.0:4444", true, "tcp:THIS-HOST:4444" },
		{ "tcp:[::]:4444", true, "tcp:THIS-HOST:4444" },
		{ "tcp:[::0]:1", true, "tcp:THIS-HOST:1" },
		{ "tcp:[0:0:0:0:0:0:0:0]:2", true, "tcp:THIS-HOST:2" },
		{ "tcp:[::%lo]:3", true, "tcp:THIS-HOST:3" },
		{ "tcp:0:5", true, "tcp:THIS-HOST:5" },         /* getaddrinfo: 0.0.0.0 */
		{ "tcp:127.0.0.1:4444", false, "tcp:127.0.0.1:4444" },
		{ "tcp:[::1]:4444", false, "tcp:[::1]:4444" },
		{ "tcp:0.0.0.1:6", false, "tcp:0.0.0.1:6" },
		{ "tcp:[::ffff:0.0.0.0]:7", false, "tcp:[::ffff:0.0.0.0]:7" },
		{ "tcp:dst.example:8", false, "tcp:dst.example:8" },
		{ "tcp:00:9", true, "tcp:THIS-HOST:9" },
		{ "unix:/run/tern/in.sock", false, "unix:/run/tern/in.sock" },
	};
	char buf[64], host[300];
	struct uri u;
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_SIZE(w); i++) {
		assert_int_equal(uri_parse(w[i].in, &u), 0);
		if (uri_is_wildcard(&u) != w[i].wildcard)
			fail_msg("%s: wildcard %d", w[i].in, !w[i].wildcard);
		assert_true(uri_format_peer(&u, "THIS-HOST", buf, sizeof(buf)) > 0);
		assert_string_equal(buf, w[i].out);
	}
	/* A placeholder too long for a host, a buffer too short: said. */
	assert_int_equal(uri_parse("tcp:0.0.0.0:4444", &u), 0);
	memset(host, 'h', sizeof(host) - 1);
	host[sizeof(host) - 1] = 0;
	assert_int_equal(uri_format_peer(&u, host, buf, sizeof(buf)),
			 -ENAMETOOLONG);
	assert_int_equal(uri_format_peer(&u, "THIS-HOST", buf, 8), -ENAMETOOLONG);
}

static void test_format_too_long(void **state)
{
	struct uri u;
	char buf[8];

	assert_int_equal(uri_parse("tcp:[::1]:4444", &u), 0);
	assert_int_equal(uri_format(&u, buf, sizeof(buf)), -ENAMETOOLONG);
	assert_string_equal(uri_kind_name(URI_FILE), "file");
	assert_string_equal(uri_kind_name(URI_KIND_MAX), "unknown");
}

static void assert_cloexec(int fd)
{
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
}

static void test_tcp_listen_connect(void **state)
{
	struct uri u;
	int lfd, cfd, afd, port;
	char buf[4];

	assert_int_equal(uri_parse("tcp:127.0.0.1:0", &u), 0);
	lfd = uri_listen(&u, 4);
	assert_true(lfd >= 0);
	assert_cloexec(lfd);
	port = uri_bound_port(lfd);
	assert_true(port > 0);
	u.port = (uint16_t)port;
	cfd = uri_connect(&u, 2000);
	assert_true(cfd >= 0);
	assert_cloexec(cfd);
	assert_false(fcntl(cfd, F_GETFL) & O_NONBLOCK);
	afd = accept(lfd, NULL, NULL);
	assert_true(afd >= 0);
	assert_int_equal(write(cfd, "hi", 2), 2);
	assert_int_equal(read(afd, buf, sizeof(buf)), 2);
	close(afd);
	close(cfd);
	close(lfd);
	assert_int_equal(uri_connect(&u, 2000), -ECONNREFUSED);
}

/* Port 0 becomes the port bound; a port taken leaves the uri as it was. */
static void test_tcp_listen_bound(void **state)
{
	struct uri u, again;
	int lfd;

	assert_int_equal(uri_parse("tcp:127.0.0.1:0", &u), 0);
	lfd = uri_listen_bound(&u, 4);
	assert_true(lfd >= 0);
	assert_true(u.port > 0);
	assert_int_equal(u.port, uri_bound_port(lfd));
	again = u;
	assert_int_equal(uri_listen_bound(&again, 4), -EADDRINUSE);
	assert_memory_equal(&again, &u, sizeof(u));
	close(lfd);
}

/* A listener whose accept queue is full drops SYNs: connect must time out. */
static void test_tcp_connect_timeout(void **state)
{
	int lfd, fds[8], n = 0, r = 0, port;
	struct uri u;

	assert_int_equal(uri_parse("tcp:127.0.0.1:0", &u), 0);
	lfd = uri_listen(&u, 0);
	assert_true(lfd >= 0);
	port = uri_bound_port(lfd);
	u.port = (uint16_t)port;
	while (n < 8) {
		r = uri_connect(&u, 200);
		if (r < 0)
			break;
		fds[n++] = r;
	}
	assert_int_equal(r, -ETIMEDOUT);
	while (n)
		close(fds[--n]);
	close(lfd);
}

static void test_unix_listen(void **state)
{
	char dir[] = "/tmp/tern-uri-XXXXXX", s[256];
	struct uri u;
	int lfd, lfd2, cfd, fd;

	assert_non_null(mkdtemp(dir));
	snprintf(s, sizeof(s), "unix:%s/s.sock", dir);
	assert_int_equal(uri_parse(s, &u), 0);
	assert_int_equal(uri_connect(&u, 1000), -ENOENT);
	lfd = uri_listen(&u, 4);
	assert_true(lfd >= 0);
	assert_cloexec(lfd);
	assert_int_equal(uri_bound_port(lfd), -EAFNOSUPPORT);
	/* someone answers: refuse */
	assert_int_equal(uri_listen(&u, 4), -EADDRINUSE);
	cfd = uri_connect(&u, 1000);
	assert_true(cfd >= 0);
	assert_cloexec(cfd);
	close(cfd);
	/* alive with a full backlog (a stopped process): refused at once
	 * (the check used to block in connect; alarm() bounds this) */
	{
		struct sockaddr_un sun = { .sun_family = AF_UNIX };
		int q[64], nq = 0, qfd;

		snprintf(sun.sun_path, sizeof(sun.sun_path), "%.100s", u.path);
		assert_int_equal(listen(lfd, 0), 0);
		while (nq < 64) {
			qfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
			assert_true(qfd >= 0);
			if (connect(qfd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
				assert_int_equal(errno, EAGAIN);
				close(qfd);
				break;
			}
			q[nq++] = qfd;
		}
		assert_true(nq < 64);
		alarm(10);
		assert_int_equal(uri_listen(&u, 4), -EADDRINUSE);
		alarm(0);
		while (nq)
			close(q[--nq]);
	}
	/* stale socket file: taken over */
	close(lfd);
	lfd2 = uri_listen(&u, 4);
	assert_true(lfd2 >= 0);
	close(lfd2);
	/* not a socket: never removed */
	unlink(u.path);
	fd = open(u.path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(uri_listen(&u, 4), -EADDRINUSE);
	assert_int_equal(access(u.path, F_OK), 0);
	unlink(u.path);
	rmdir(dir);
}

/* A struct uri not made by uri_parse: a path too long for sun_path is
 * refused, never copied past it (nor bound at a truncated name). */
static void test_unix_path_unchecked(void **state)
{
	char dir[] = "/tmp/tern-uri-XXXXXX";
	struct uri u = { .kind = URI_UNIX };
	size_t n;

	assert_non_null(mkdtemp(dir));
	n = (size_t)snprintf(u.path, sizeof(u.path), "%s/", dir);
	memset(u.path + n, 'a', 150);
	assert_int_equal(uri_listen(&u, 1), -ENAMETOOLONG);
	assert_int_equal(uri_connect(&u, 100), -ENAMETOOLONG);
	u.path[0] = '\0';
	assert_int_equal(uri_listen(&u, 1), -EINVAL);
	assert_int_equal(rmdir(dir), 0);        /* nothing was bound in it */
}

/* A unix listener whose backlog is full: connect waits for its timeout
 * (a nonblocking unix connect would fail with EAGAIN at once). */
static void test_unix_connect_backlog_full(void **state)
{
	char dir[] = "/tmp/tern-uri-XXXXXX", s[256];
	int lfd, fds[8], n = 0, r = 0, afd;
	struct uri u;

	assert_non_null(mkdtemp(dir));
	snprintf(s, sizeof(s), "unix:%s/s.sock", dir);
	assert_int_equal(uri_parse(s, &u), 0);
	lfd = uri_listen(&u, 0);
	assert_true(lfd >= 0);
	while (n < 8) {
		r = uri_connect(&u, 100);
		if (r < 0)
			break;
		assert_false(fcntl(r, F_GETFL) & O_NONBLOCK);
		fds[n++] = r;
	}
	assert_int_equal(r, -ETIMEDOUT);
	afd = accept(lfd, NULL, NULL);          /* room for one more */
	assert_true(afd >= 0);
	r = uri_connect(&u, 1000);
	assert_true(r >= 0);
	close(r);
	close(afd);
	while (n)
		close(fds[--n]);
	close(lfd);
	unlink(u.path);
	rmdir(dir);
}

static void test_file_not_a_socket(void **state)
{
	struct uri u;

	assert_int_equal(uri_parse("file:/tmp/x", &u), 0);
	assert_int_equal(uri_listen(&u, 1), -EINVAL);
	assert_int_equal(uri_connect(&u, 1), -EINVAL);
}

/* Only a host name goes to a resolver (off migd's loop, control.c). */
static void test_needs_lookup(void **state)
{
	static const struct {
		const char *uri;
		bool lookup;
	} lookups[] = {
		{ "tcp:127.0.0.1:4444", false },
		{ "tcp:0.0.0.0:0", false },
		{ "tcp:0:4444", false },
		{ "tcp:[::1]:4444", false },
		{ "tcp:[::]:4444", false },
		{ "unix:/run/tern/x.sock", false },
		{ "tcp:localhost:4444", true },
		{ "tcp:dst.example.invalid:4444", true },
	};
	struct uri u;
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_SIZE(lookups); i++) {
		assert_int_equal(uri_parse(lookups[i].uri, &u), 0);
		if (uri_needs_lookup(&u) != lookups[i].lookup)
			fail_msg("%s: lookup %d", lookups[i].uri, !lookups[i].lookup);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_table),
		cmocka_unit_test(test_unix_path_limit),
		cmocka_unit_test(test_parse_why),
		cmocka_unit_test(test_format_peer),
		cmocka_unit_test(test_format_too_long),
		cmocka_unit_test(test_needs_lookup),
		cmocka_unit_test(test_tcp_listen_connect),
		cmocka_unit_test(test_tcp_listen_bound),
		cmocka_unit_test(test_tcp_connect_timeout),
		cmocka_unit_test(test_unix_listen),
		cmocka_unit_test(test_file_not_a_socket),
		cmocka_unit_test(test_unix_path_unchecked),
		cmocka_unit_test(test_unix_connect_backlog_full),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
