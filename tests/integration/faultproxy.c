// SPDX-License-Identifier: GPL-2.0-only
/*
 * A fault-injection TCP proxy for the integration tests: it forwards every
 * connection it accepts to one target (one upstream connection each, both
 * directions) and, on command, stalls, cuts or corrupts them.  One thread,
 * one poll() loop, non-blocking sockets; nothing spins: a stalled
 * connection is left out of the poll set altogether.
 *
 *   itest_faultproxy --listen [tcp:]HOST:PORT --target [tcp:]HOST:PORT
 *                    --control PATH [--port-file FILE]
 *       serve; the port it got (PORT 0 = any) goes to stdout as one line,
 *       and to FILE (written whole, then renamed into place) if asked.
 *   itest_faultproxy --send PATH COMMAND [ARGS...]
 *       one command on the control socket PATH; prints the answer and
 *       exits 0 when it begins with "ok", 1 otherwise.
 *
 * The control socket takes one command per line and answers one line,
 * "ok ..." or "error ...".  N is a connection's index (0, 1, ... in the
 * order accepted, never reused); DIR is "up" (from the accepted client to
 * the target) or "down".
 *   list                   "ok COUNT" then "I:STATE:up=B:down=B" per
 *                          connection (bytes forwarded each way)
 *   stall N|all            stop forwarding, keep the sockets open: the
 *                          peers see a silent connection (TCP still ACKs
 *                          what fits in the buffers)
 *   resume N|all           forward again
 *   cut N|all              close both sides with RST (SO_LINGER 0)
 *   corrupt N DIR OFFSET   flip every bit of the byte at stream OFFSET
 *                          (from the connection's first byte), once
 *   cutafter N DIR BYTES   cut once BYTES bytes were forwarded that way
 *                          (the RST may drop some still in the kernel's
 *                          send queue)
 *                          corrupt and cutafter may name a connection
 *                          not accepted yet: they wait for it ("armed")
 *   rate N|all DIR BYTES   forward at most BYTES bytes/s that way (0: no
 *                          limit again), in reads of at most 1/20 s worth:
 *                          the sender sees a slow but moving link
 *   quit                   cut everything and exit
 * A connection the target refuses, or that does not connect within
 * CONNECT_TIMEOUT_MS, is cut.  Events go to stderr.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/util.h"

#define PROXY_MAX_CONNS 128             /* over the proxy's life */
#define PROXY_MAX_OPEN 64               /* forwarding at once */
#define PROXY_BUF (64u << 10)           /* per direction */
#define CTL_MAX_CLIENTS 4
#define CTL_LINE 256
#define CTL_IDLE_MS 30000               /* a silent control client is dropped */
#define CTL_ANSWER_MAX 8192
#define CONNECT_TIMEOUT_MS 5000
#define SEND_TIMEOUT_S 5                /* --send: the whole exchange */

enum dir {
	DIR_UP,                         /* client -> target */
	DIR_DOWN,                       /* target -> client */
	DIR_MAX
};
static const char *const dir_name[DIR_MAX] = { "up", "down" };

enum side {
	SIDE_CLIENT,                    /* the connection we accepted */
	SIDE_TARGET,                    /* ours, to the target */
	SIDE_MAX
};

enum conn_state {
	CONN_CONNECTING,                /* to the target; the client waits */
	CONN_OPEN,
	CONN_STALLED,
	CONN_CLOSED,                    /* both sides ended normally */
	CONN_CUT,                       /* by command, or on an error */
	CONN_STATE_MAX
};
static const char *const conn_state_name[CONN_STATE_MAX] = {
	"connecting", "open", "stalled", "closed", "cut"
};

/* One direction of a connection: from one side's socket to the other's. */
struct flow {
	uint8_t *buf;                   /* PROXY_BUF bytes */
	size_t off, len;                /* buf[off, len) is still to write */
	uint64_t in;                    /* bytes read from the sender */
	uint64_t out;                   /* bytes written to the receiver */
	bool eof;                       /* the sender shut its side */
	bool shut;                      /* we passed the EOF on */
	int64_t corrupt_at;             /* stream offset to flip, or -1 */
	int64_t cut_after;              /* cut when out reaches it, or -1 */
	uint64_t rate;                  /* bytes/s, 0 = no limit */
	uint64_t next_read;             /* ns: under a rate, not before this */
};

struct conn {
	unsigned int index;
	enum conn_state state;
	int fd[SIDE_MAX];
	uint64_t connect_deadline;      /* while CONN_CONNECTING */
	struct flow flow[DIR_MAX];
};

struct ctl_client {
	int fd;
	char line[CTL_LINE];
	size_t len;
	uint64_t deadline;
};

/* corrupt/cutafter for a connection not accepted yet (-1: none) */
struct armed {
	int64_t corrupt_at[DIR_MAX];
	int64_t cut_after[DIR_MAX];
};

struct proxy {
	int listen_fd;
	int ctl_fd;
	struct sockaddr_in target;
	struct conn *conn[PROXY_MAX_CONNS];
	struct armed armed[PROXY_MAX_CONNS];
	unsigned int nconn;             /* indices handed out */
	unsigned int nopen;             /* connecting, open or stalled */
	struct ctl_client ctl[CTL_MAX_CLIENTS];
	bool quit;
};

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "faultproxy: ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* "[tcp:]A.B.C.D:PORT" */
static int parse_addr(const char *s, struct sockaddr_in *ret)
{
	char host[64];
	const char *colon;
	char *end;
	long port;

	if (!strncmp(s, "tcp:", 4))
		s += 4;
	colon = strrchr(s, ':');
	if (!colon || (size_t)(colon - s) >= sizeof(host))
		return -EINVAL;
	memcpy(host, s, colon - s);
	host[colon - s] = 0;
	port = strtol(colon + 1, &end, 10);
	if (*end || end == colon + 1 || port < 0 || port > 65535)
		return -EINVAL;
	memset(ret, 0, sizeof(*ret));
	ret->sin_family = AF_INET;
	ret->sin_port = htons((uint16_t)port);
	return inet_pton(AF_INET, host, &ret->sin_addr) == 1 ? 0 : -EINVAL;
}

/* ---- connections ----------------------------------------------------------- */

static void conn_settle(struct proxy *p, struct conn *c);

static bool conn_live(const struct conn *c)
{
	return c->state == CONN_CONNECTING || c->state == CONN_OPEN ||
	       c->state == CONN_STALLED;
}

static void conn_release(struct proxy *p, struct conn *c, enum conn_state st)
{
	unsigned int i;

	for (i = 0; i < SIDE_MAX; i++)
		if (c->fd[i] >= 0)
			close(c->fd[i]);
	for (i = 0; i < DIR_MAX; i++) {
		free(c->flow[i].buf);
		c->flow[i].buf = NULL;
	}
	c->fd[SIDE_CLIENT] = c->fd[SIDE_TARGET] = -1;
	c->state = st;
	p->nopen--;
}

/* Close both sides with RST: SO_LINGER with a zero timeout. */
static void conn_cut(struct proxy *p, struct conn *c, const char *why)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	unsigned int i;

	if (!conn_live(c))
		return;
	for (i = 0; i < SIDE_MAX; i++)
		if (c->fd[i] >= 0)
			setsockopt(c->fd[i], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	say("conn %u: cut (%s) after up=%llu down=%llu", c->index, why,
	    (unsigned long long)c->flow[DIR_UP].out,
	    (unsigned long long)c->flow[DIR_DOWN].out);
	conn_release(p, c, CONN_CUT);
}

static void handle_accept(struct proxy *p)
{
	struct conn *c;
	unsigned int i;
	int fd, tfd, r;

	fd = accept4(p->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0)
		return;
	if (p->nconn == PROXY_MAX_CONNS || p->nopen == PROXY_MAX_OPEN) {
		say("refused a connection: %u made, %u open", p->nconn, p->nopen);
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	tfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (c) {
		c->flow[DIR_UP].buf = malloc(PROXY_BUF);
		c->flow[DIR_DOWN].buf = malloc(PROXY_BUF);
	}
	if (!c || tfd < 0 || !c->flow[DIR_UP].buf || !c->flow[DIR_DOWN].buf) {
		say("refused a connection: %s", tfd < 0 ? strerror(errno) : "no memory");
		if (c) {
			free(c->flow[DIR_UP].buf);
			free(c->flow[DIR_DOWN].buf);
		}
		free(c);
		if (tfd >= 0)
			close(tfd);
		close(fd);
		return;
	}
	c->index = p->nconn;
	p->conn[p->nconn++] = c;
	p->nopen++;
	c->fd[SIDE_CLIENT] = fd;
	c->fd[SIDE_TARGET] = tfd;
	for (i = 0; i < DIR_MAX; i++) {
		c->flow[i].corrupt_at = p->armed[c->index].corrupt_at[i];
		c->flow[i].cut_after = p->armed[c->index].cut_after[i];
	}
	c->state = CONN_CONNECTING;
	c->connect_deadline = now_ns() + CONNECT_TIMEOUT_MS * 1000000ULL;
	r = connect(tfd, (struct sockaddr *)&p->target, sizeof(p->target));
	if (r < 0 && errno != EINPROGRESS) {
		say("conn %u: connect: %s", c->index, strerror(errno));
		conn_cut(p, c, "the target refused");
		return;
	}
	say("conn %u: accepted", c->index);
}

/* The target answered the connect (POLLOUT) or the time ran out. */
static void handle_connected(struct proxy *p, struct conn *c)
{
	socklen_t len = sizeof(int);
	int err = 0;

	if (getsockopt(c->fd[SIDE_TARGET], SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err) {
		say("conn %u: connect: %s", c->index, strerror(err));
		conn_cut(p, c, "the target refused");
		return;
	}
	c->state = CONN_OPEN;
	conn_settle(p, c);              /* an armed "cutafter N DIR 0" */
}

static int flow_from(enum dir d)
{
	return d == DIR_UP ? SIDE_CLIENT : SIDE_TARGET;
}

static int flow_to(enum dir d)
{
	return d == DIR_UP ? SIDE_TARGET : SIDE_CLIENT;
}

/* How much the flow may read now (0: nothing wanted). */
static size_t flow_room(const struct flow *f, uint64_t now)
{
	size_t room;

	if (f->eof || f->len > f->off)
		return 0;               /* write what we have first */
	room = PROXY_BUF;
	if (f->rate) {
		if (now < f->next_read)
			return 0;
		room = MIN(room, MAX(f->rate / 20, 1));
	}
	if (f->cut_after >= 0 && (uint64_t)f->cut_after - f->in < room)
		room = (uint64_t)f->cut_after - f->in;
	return room;
}

static void flow_read(struct proxy *p, struct conn *c, enum dir d)
{
	struct flow *f = &c->flow[d];
	uint64_t now = now_ns();
	size_t room = flow_room(f, now);
	ssize_t n;

	if (!room)
		return;
	n = read(c->fd[flow_from(d)], f->buf, room);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n < 0) {
		say("conn %u: %s: read: %s", c->index, dir_name[d], strerror(errno));
		conn_cut(p, c, "a side failed");
		return;
	}
	if (n == 0) {
		f->eof = true;
		return;
	}
	if (f->corrupt_at >= 0 && (uint64_t)f->corrupt_at < f->in + n) {
		f->buf[f->corrupt_at - f->in] ^= 0xff;
		say("conn %u: %s: flipped the byte at %lld", c->index, dir_name[d],
		    (long long)f->corrupt_at);
		f->corrupt_at = -1;
	}
	f->off = 0;
	f->len = n;
	f->in += n;
	if (f->rate)
		f->next_read = MAX(f->next_read, now) + n * 1000000000ULL / f->rate;
}

static void flow_write(struct proxy *p, struct conn *c, enum dir d)
{
	struct flow *f = &c->flow[d];
	ssize_t n;

	if (f->len == f->off)
		return;
	n = send(c->fd[flow_to(d)], f->buf + f->off, f->len - f->off,
		 MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n < 0) {
		say("conn %u: %s: send: %s", c->index, dir_name[d], strerror(errno));
		conn_cut(p, c, "a side failed");
		return;
	}
	f->off += n;
	f->out += n;
	if (f->off == f->len)
		f->off = f->len = 0;
}

/* After I/O: pass EOFs on, and end what is finished. */
static void conn_settle(struct proxy *p, struct conn *c)
{
	unsigned int d;

	if (c->state != CONN_OPEN)
		return;
	for (d = 0; d < DIR_MAX; d++) {
		struct flow *f = &c->flow[d];

		if (f->cut_after >= 0 && f->out >= (uint64_t)f->cut_after) {
			conn_cut(p, c, "cutafter");
			return;
		}
		if (f->eof && f->len == f->off && !f->shut) {
			shutdown(c->fd[flow_to(d)], SHUT_WR);
			f->shut = true;
		}
	}
	if (c->flow[DIR_UP].shut && c->flow[DIR_DOWN].shut) {
		say("conn %u: closed after up=%llu down=%llu", c->index,
		    (unsigned long long)c->flow[DIR_UP].out,
		    (unsigned long long)c->flow[DIR_DOWN].out);
		conn_release(p, c, CONN_CLOSED);
	}
}

/* poll() events wanted on one side of an open connection. */
static short conn_events(const struct conn *c, enum side s, uint64_t now)
{
	short ev = 0;
	unsigned int d;

	if (c->state == CONN_CONNECTING)
		return s == SIDE_TARGET ? POLLOUT : 0;
	if (c->state != CONN_OPEN)
		return 0;               /* stalled: not even POLLHUP */
	for (d = 0; d < DIR_MAX; d++) {
		const struct flow *f = &c->flow[d];

		if (flow_from(d) == (int)s && flow_room(f, now))
			ev |= POLLIN;
		if (flow_to(d) == (int)s && f->len > f->off)
			ev |= POLLOUT;
	}
	return ev;
}

static void handle_conn(struct proxy *p, struct conn *c, enum side s, short rev)
{
	unsigned int d;

	if (c->state == CONN_CONNECTING) {
		handle_connected(p, c);
		return;
	}
	for (d = 0; d < DIR_MAX && c->state == CONN_OPEN; d++) {
		if (flow_from(d) == (int)s && (rev & (POLLIN | POLLHUP | POLLERR)))
			flow_read(p, c, d);
		/* What was just read goes out at once if it can. */
		if (c->state == CONN_OPEN)
			flow_write(p, c, d);
	}
	conn_settle(p, c);
}

/* ---- the control socket ------------------------------------------------------ */

/* "all", or the index of a live connection; else -errno and the answer. */
static int pick(struct proxy *p, const char *arg, bool *all, struct conn **ret,
		char *ans, size_t len)
{
	unsigned long n;
	char *end;

	*all = arg && !strcmp(arg, "all");
	if (*all)
		return 0;
	if (!arg || !*arg) {
		snprintf(ans, len, "error a connection index or 'all' is needed");
		return -EINVAL;
	}
	n = strtoul(arg, &end, 10);
	if (*end || n >= p->nconn) {
		snprintf(ans, len, "error no connection %s (%u so far)", arg,
			 p->nconn);
		return -ENOENT;
	}
	if (!conn_live(p->conn[n])) {
		snprintf(ans, len, "error connection %lu is %s", n,
			 conn_state_name[p->conn[n]->state]);
		return -ESRCH;
	}
	*ret = p->conn[n];
	return 0;
}

static void cmd_list(struct proxy *p, char *ans, size_t len)
{
	size_t n = snprintf(ans, len, "ok %u", p->nconn);
	unsigned int i;

	for (i = 0; i < p->nconn && n < len; i++) {
		const struct conn *c = p->conn[i];

		n += snprintf(ans + n, len - n, " %u:%s:up=%llu:down=%llu", c->index,
			      conn_state_name[c->state],
			      (unsigned long long)c->flow[DIR_UP].out,
			      (unsigned long long)c->flow[DIR_DOWN].out);
	}
	if (n >= len)
		snprintf(ans, len, "error the list does not fit in one answer");
}

/* stall, resume, cut: on one connection or all live ones. */
static void cmd_each(struct proxy *p, const char *verb, const char *arg,
		     char *ans, size_t len)
{
	struct conn *one = NULL;
	unsigned int i, done = 0;
	bool all;

	if (pick(p, arg, &all, &one, ans, len) < 0)
		return;
	for (i = 0; i < (all ? p->nconn : 1); i++) {
		struct conn *c = all ? p->conn[i] : one;

		if (!conn_live(c))
			continue;
		if (!strcmp(verb, "cut")) {
			conn_cut(p, c, "by command");
		} else if (c->state == CONN_CONNECTING) {
			continue;       /* not forwarding yet: nothing to change */
		} else {
			c->state = !strcmp(verb, "stall") ? CONN_STALLED : CONN_OPEN;
			say("conn %u: %s", c->index, conn_state_name[c->state]);
			if (c->state == CONN_OPEN)
				conn_settle(p, c);      /* a due cutafter */
		}
		done++;
	}
	if (!all && !done)
		snprintf(ans, len, "error connection %u is still connecting",
			 one->index);
	else
		snprintf(ans, len, "ok %s %u", verb, done);
}

static int parse_dir(const char *s, enum dir *ret)
{
	if (!strcmp(s, "up"))
		*ret = DIR_UP;
	else if (!strcmp(s, "down"))
		*ret = DIR_DOWN;
	else
		return -EINVAL;
	return 0;
}

/*
 * corrupt N DIR OFFSET: the byte at OFFSET must not have been read yet.
 * cutafter N DIR BYTES: at least BYTES may not have been forwarded yet;
 * what was read past it is dropped, never forwarded.  A connection not
 * accepted yet gets them when it comes.
 */
static void cmd_at(struct proxy *p, bool corrupt, char **argv, int argc,
		   char *ans, size_t len)
{
	unsigned long long at;
	unsigned long n;
	struct conn *c;
	struct flow *f;
	enum dir d;
	char *end;

	if (argc != 4) {
		snprintf(ans, len, "error usage: %s", corrupt ?
			 "corrupt N up|down OFFSET" : "cutafter N up|down BYTES");
		return;
	}
	n = strtoul(argv[1], &end, 10);
	if (*end || end == argv[1] || n >= PROXY_MAX_CONNS) {
		snprintf(ans, len, "error '%s' is not a connection index (0 to %u)",
			 argv[1], PROXY_MAX_CONNS - 1);
		return;
	}
	errno = 0;
	at = strtoull(argv[3], &end, 0);
	if (parse_dir(argv[2], &d) < 0) {
		snprintf(ans, len, "error direction '%s' is not up or down", argv[2]);
		return;
	}
	if (*end || end == argv[3] || errno || at > INT64_MAX) {
		snprintf(ans, len, "error '%s' is not a byte offset", argv[3]);
		return;
	}
	if (n >= p->nconn) {
		if (corrupt)
			p->armed[n].corrupt_at[d] = (int64_t)at;
		else
			p->armed[n].cut_after[d] = (int64_t)at;
		snprintf(ans, len, "ok %s %lu %s %llu armed", argv[0], n,
			 dir_name[d], at);
		return;
	}
	c = p->conn[n];
	f = &c->flow[d];
	if (!conn_live(c)) {
		snprintf(ans, len, "error connection %lu is %s", n,
			 conn_state_name[c->state]);
	} else if (at < (corrupt ? f->in : f->out)) {
		snprintf(ans, len, "error connection %lu has %s %llu bytes %s already",
			 n, corrupt ? "read" : "forwarded",
			 (unsigned long long)(corrupt ? f->in : f->out), dir_name[d]);
	} else {
		if (corrupt) {
			f->corrupt_at = (int64_t)at;
		} else {
			if (at < f->in) {
				f->len = f->off + (at - f->out);
				f->in = at;
			}
			f->cut_after = (int64_t)at;
			conn_settle(p, c);
		}
		snprintf(ans, len, "ok %s %lu %s %llu", argv[0], n, dir_name[d], at);
	}
}

/* rate N|all DIR BYTES: from now on, at most BYTES bytes/s that way. */
static void cmd_rate(struct proxy *p, char **argv, int argc, char *ans,
		     size_t len)
{
	struct conn *one = NULL;
	unsigned long long rate;
	unsigned int i, done = 0;
	enum dir d;
	char *end;
	bool all;

	if (argc != 4) {
		snprintf(ans, len, "error usage: rate N|all up|down BYTES");
		return;
	}
	if (parse_dir(argv[2], &d) < 0) {
		snprintf(ans, len, "error direction '%s' is not up or down", argv[2]);
		return;
	}
	errno = 0;
	rate = strtoull(argv[3], &end, 0);
	if (*end || end == argv[3] || errno || rate > (1ULL << 40)) {
		snprintf(ans, len, "error '%s' is not a rate in bytes/s", argv[3]);
		return;
	}
	if (pick(p, argv[1], &all, &one, ans, len) < 0)
		return;
	for (i = 0; i < (all ? p->nconn : 1); i++) {
		struct conn *c = all ? p->conn[i] : one;

		if (!conn_live(c))
			continue;
		c->flow[d].rate = rate;
		c->flow[d].next_read = 0;
		done++;
	}
	snprintf(ans, len, "ok rate %u %s %llu", done, dir_name[d], rate);
}

static void ctl_command(struct proxy *p, char *line, char *ans, size_t len)
{
	char *argv[8], *save = NULL, *tok;
	int argc = 0;

	for (tok = strtok_r(line, " \t\r", &save); tok && argc < 8;
	     tok = strtok_r(NULL, " \t\r", &save))
		argv[argc++] = tok;
	if (argc == 0)
		snprintf(ans, len, "error empty command");
	else if (!strcmp(argv[0], "list") && argc == 1)
		cmd_list(p, ans, len);
	else if ((!strcmp(argv[0], "stall") || !strcmp(argv[0], "resume") ||
		  !strcmp(argv[0], "cut")) && argc <= 2)
		cmd_each(p, argv[0], argc == 2 ? argv[1] : NULL, ans, len);
	else if (!strcmp(argv[0], "corrupt") || !strcmp(argv[0], "cutafter"))
		cmd_at(p, !strcmp(argv[0], "corrupt"), argv, argc, ans, len);
	else if (!strcmp(argv[0], "rate"))
		cmd_rate(p, argv, argc, ans, len);
	else if (!strcmp(argv[0], "quit") && argc == 1) {
		p->quit = true;
		snprintf(ans, len, "ok quit");
	} else
		snprintf(ans, len, "error unknown command '%s' (list, stall, "
			 "resume, cut, corrupt, cutafter, rate, quit)", argv[0]);
}

static void ctl_drop(struct ctl_client *cc)
{
	close(cc->fd);
	cc->fd = -1;
	cc->len = 0;
}

static void handle_ctl_accept(struct proxy *p)
{
	int fd = accept4(p->ctl_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	unsigned int i;

	if (fd < 0)
		return;
	for (i = 0; i < CTL_MAX_CLIENTS; i++)
		if (p->ctl[i].fd < 0) {
			p->ctl[i].fd = fd;
			p->ctl[i].len = 0;
			p->ctl[i].deadline = now_ns() + CTL_IDLE_MS * 1000000ULL;
			return;
		}
	close(fd);                      /* too many at once */
}

static void handle_ctl(struct proxy *p, struct ctl_client *cc)
{
	static char ans[CTL_ANSWER_MAX];
	char *nl;
	ssize_t n;

	n = read(cc->fd, cc->line + cc->len, sizeof(cc->line) - 1 - cc->len);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		ctl_drop(cc);
		return;
	}
	cc->len += n;
	cc->line[cc->len] = 0;
	while ((nl = strchr(cc->line, '\n'))) {
		*nl = 0;
		ctl_command(p, cc->line, ans, sizeof(ans) - 1);
		strcat(ans, "\n");
		/* A small answer to a client that waits for it: if it does not
		 * fit in the socket now, the client is not listening. */
		if (send(cc->fd, ans, strlen(ans), MSG_NOSIGNAL | MSG_DONTWAIT) !=
		    (ssize_t)strlen(ans)) {
			ctl_drop(cc);
			return;
		}
		cc->len -= nl + 1 - cc->line;
		memmove(cc->line, nl + 1, cc->len + 1);
		cc->deadline = now_ns() + CTL_IDLE_MS * 1000000ULL;
	}
	if (cc->len == sizeof(cc->line) - 1) {
		dprintf(cc->fd, "error a command is at most %d bytes\n", CTL_LINE - 2);
		ctl_drop(cc);
	}
}

/* ---- the loop ------------------------------------------------------------- */

#define NPOLL (2 + CTL_MAX_CLIENTS + 2 * PROXY_MAX_CONNS)

static void proxy_run(struct proxy *p)
{
	struct pollfd pfd[NPOLL];
	struct conn *who[NPOLL];
	uint64_t now, next;
	unsigned int i, n, k;
	int timeout, r;

	while (!p->quit) {
		n = 0;
		pfd[n++] = (struct pollfd){ .fd = p->listen_fd, .events = POLLIN };
		pfd[n++] = (struct pollfd){ .fd = p->ctl_fd, .events = POLLIN };
		next = UINT64_MAX;
		for (i = 0; i < CTL_MAX_CLIENTS; i++) {
			pfd[n++] = (struct pollfd){ .fd = p->ctl[i].fd, .events = POLLIN };
			if (p->ctl[i].fd >= 0)
				next = MIN(next, p->ctl[i].deadline);
		}
		now = now_ns();
		for (i = 0; i < p->nconn; i++) {
			struct conn *c = p->conn[i];

			if (!conn_live(c))
				continue;
			if (c->state == CONN_CONNECTING)
				next = MIN(next, c->connect_deadline);
			for (k = 0; k < DIR_MAX; k++)
				if (c->state == CONN_OPEN && c->flow[k].rate &&
				    c->flow[k].next_read > now)
					next = MIN(next, c->flow[k].next_read);
			for (k = 0; k < SIDE_MAX; k++) {
				short ev = conn_events(c, k, now);

				/* Nothing wanted: left out, so no POLLHUP wakes us. */
				pfd[n] = (struct pollfd){ .fd = ev ? c->fd[k] : -1,
							  .events = ev };
				who[n++] = c;
			}
		}
		timeout = next == UINT64_MAX ? -1 :
			  next <= now ? 0 : (int)MIN((next - now) / 1000000 + 1,
						     (uint64_t)INT32_MAX);
		r = poll(pfd, n, timeout);
		if (r < 0 && errno != EINTR) {
			say("poll: %s", strerror(errno));
			return;
		}
		now = now_ns();
		for (i = 0; i < CTL_MAX_CLIENTS; i++) {
			struct ctl_client *cc = &p->ctl[i];

			if (cc->fd >= 0 && pfd[2 + i].revents)
				handle_ctl(p, cc);
			if (cc->fd >= 0 && now > cc->deadline)
				ctl_drop(cc);
		}
		for (i = 2 + CTL_MAX_CLIENTS; i < n; i++) {
			struct conn *c = who[i];

			if (pfd[i].fd >= 0 && pfd[i].revents && conn_live(c))
				handle_conn(p, c, (i - 2 - CTL_MAX_CLIENTS) % 2,
					    pfd[i].revents);
			if (c->state == CONN_CONNECTING && now > c->connect_deadline)
				conn_cut(p, c, "the target did not answer");
		}
		/* New connections last: who[] must not change under the loop. */
		if (pfd[0].revents)
			handle_accept(p);
		if (pfd[1].revents)
			handle_ctl_accept(p);
	}
	for (i = 0; i < p->nconn; i++)
		conn_cut(p, p->conn[i], "quit");
}

/* ---- start-up ------------------------------------------------------------- */

static int ctl_listen(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	strcpy(sun.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
	    listen(fd, CTL_MAX_CLIENTS) < 0) {
		int e = -errno;

		close(fd);
		return e;
	}
	return fd;
}

static int tcp_listen(const struct sockaddr_in *a, int *ret_port)
{
	struct sockaddr_in got;
	socklen_t len = sizeof(got);
	int fd, one = 1;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)a, sizeof(*a)) < 0 ||
	    listen(fd, PROXY_MAX_OPEN) < 0 ||
	    getsockname(fd, (struct sockaddr *)&got, &len) < 0) {
		int e = -errno;

		close(fd);
		return e;
	}
	*ret_port = ntohs(got.sin_port);
	return fd;
}

/* FILE.tmp, then rename: a reader never sees half a number. */
static int write_port_file(const char *path, int port)
{
	char tmp[4096];
	FILE *f;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	f = fopen(tmp, "we");
	if (!f)
		return -errno;
	fprintf(f, "%d\n", port);
	if (fclose(f) != 0 || rename(tmp, path) < 0)
		return -errno;
	return 0;
}

/* --send PATH WORDS...: one command, one answer. */
static int send_command(const char *path, int argc, char **argv)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = SEND_TIMEOUT_S };
	char line[CTL_LINE], ans[CTL_ANSWER_MAX];
	size_t n = 0, got = 0;
	ssize_t r;
	int fd, i;

	for (i = 0; i < argc; i++) {
		r = snprintf(line + n, sizeof(line) - n, "%s%s", i ? " " : "", argv[i]);
		if (r < 0 || (size_t)r >= sizeof(line) - n - 1) {
			fprintf(stderr, "faultproxy: the command is too long\n");
			return 1;
		}
		n += r;
	}
	line[n++] = '\n';
	if (strlen(path) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "faultproxy: %s: the path is too long\n", path);
		return 1;
	}
	strcpy(sun.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		fprintf(stderr, "faultproxy: socket: %s\n", strerror(errno));
		return 1;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
	    send(fd, line, n, MSG_NOSIGNAL) != (ssize_t)n) {
		fprintf(stderr, "faultproxy: %s: %s\n", path, strerror(errno));
		close(fd);
		return 1;
	}
	while (got < sizeof(ans) - 1 && !memchr(ans, '\n', got)) {
		r = read(fd, ans + got, sizeof(ans) - 1 - got);
		if (r <= 0) {
			fprintf(stderr, "faultproxy: %s: %s\n", path,
				r < 0 ? strerror(errno) : "no answer");
			close(fd);
			return 1;
		}
		got += r;
	}
	close(fd);
	ans[got] = 0;
	fputs(ans, stdout);
	return strncmp(ans, "ok", 2) ? 1 : 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: itest_faultproxy --listen HOST:PORT --target HOST:PORT "
		"--control PATH [--port-file FILE]\n"
		"       itest_faultproxy --send PATH COMMAND [ARGS...]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *listen_at = NULL, *target = NULL, *ctl = NULL, *port_file = NULL;
	struct sockaddr_in la;
	struct proxy p = { .listen_fd = -1, .ctl_fd = -1 };
	int i, port = 0, r;

	if (argc >= 3 && !strcmp(argv[1], "--send"))
		return send_command(argv[2], argc - 3, argv + 3);
	for (i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--listen"))
			listen_at = argv[i + 1];
		else if (!strcmp(argv[i], "--target"))
			target = argv[i + 1];
		else if (!strcmp(argv[i], "--control"))
			ctl = argv[i + 1];
		else if (!strcmp(argv[i], "--port-file"))
			port_file = argv[i + 1];
		else
			usage();
	}
	if (i != argc || !listen_at || !target || !ctl)
		usage();
	if (parse_addr(listen_at, &la) < 0 || parse_addr(target, &p.target) < 0) {
		fprintf(stderr, "faultproxy: addresses are [tcp:]A.B.C.D:PORT\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	for (i = 0; i < CTL_MAX_CLIENTS; i++)
		p.ctl[i].fd = -1;
	memset(p.armed, 0xff, sizeof(p.armed));         /* all -1: nothing armed */
	p.listen_fd = tcp_listen(&la, &port);
	if (p.listen_fd < 0) {
		fprintf(stderr, "faultproxy: listen on %s: %s\n", listen_at,
			strerror(-p.listen_fd));
		return 1;
	}
	p.ctl_fd = ctl_listen(ctl);
	if (p.ctl_fd < 0) {
		fprintf(stderr, "faultproxy: %s: %s\n", ctl, strerror(-p.ctl_fd));
		return 1;
	}
	/* The port last: whoever waits for it may send commands at once. */
	if (port_file && (r = write_port_file(port_file, port)) < 0) {
		fprintf(stderr, "faultproxy: %s: %s\n", port_file, strerror(-r));
		return 1;
	}
	printf("%d\n", port);
	fflush(stdout);
	say("listening on port %d, forwarding to %s", port, target);
	proxy_run(&p);
	for (i = 0; i < (int)p.nconn; i++)
		free(p.conn[i]);
	close(p.listen_fd);
	close(p.ctl_fd);
	unlink(ctl);
	return 0;
}
