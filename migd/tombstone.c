// SPDX-License-Identifier: GPL-2.0-only
/*
 * Tombstones, in the migd parent: the addresses of destination jobs that
 * ended for good past the postcopy switch: their vmm (and the guest with
 * it) gone, or cancelled there with --force.  Such a job's source is
 * often paused already (the link broke first), and learns nothing more
 * until it comes back to recover: with no one listening it would be
 * told "connection refused" at every try, and wait paused for a
 * recovery that cannot come.  So migd listens on the job's address
 * again, and answers a hello of that migration (its id and token) with
 * EOWNERDEAD (the vmm went) or ECANCELED (cancelled): the source then
 * marks its job as never recoverable and says why (source_conn.c).  Any
 * other hello gets what a worker would answer it, and every connection
 * is closed after its answer; strangers are logged a few per window.
 *
 * Bounded: at most TOMB_MAX at once (the oldest goes first), each for
 * TOMB_TTL_S; of TOMB_PENDING connections without their hello, the
 * oldest makes room for a new one.  A new Incoming, or a Recover
 * --listen, on the same address takes it back at once (control.c).
 * Kept in migd.state too (statefile.c): a restarted migd answers on
 * them again for the rest of their day.
 */
#include <endian.h>
#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/ratelim.h"
#include "common/uri.h"
#include "common/util.h"
#include "migd/migd.h"

#define TOMB_TTL_S (24 * 3600)
#define TOMB_PENDING 16
#define TOMB_RETRY_MS 100
#define TOMB_SAID 5                     /* refusals logged per window */
#define TOMB_SAID_WINDOW_NS (10 * 1000000000ull)

struct tomb;

/* A saved record that could not listen again, kept for the file. */
struct tomb_kept {
	char vm[65];
	char listen[PATH_MAX];
	char id[2 * STREAM_ID_LEN + 1];
	uint8_t token[STREAM_TOKEN_LEN];
	uint32_t err;
	uint64_t expires_unix_ms;
};

/* A connection whose hello has not all come. */
struct tomb_conn {
	struct tomb *t;
	int fd;
	uint64_t since;                 /* accepted then (now_ns) */
	size_t got;
	struct stream_hello h;
	struct event *ev;
};

struct tomb {
	struct tomb *next;
	struct migd *m;
	char vm[65];
	uint8_t id[STREAM_ID_LEN];
	uint8_t token[STREAM_TOKEN_LEN];
	int err;                        /* the answer to its source: EOWNERDEAD
					 * (the vmm went) or ECANCELED (cancel
					 * --force there) */
	uint64_t expires_unix_ms;
	struct uri addr;                /* as bound */
	char text[PATH_MAX];            /* ... as said */
	dev_t dev;                      /* unix: the socket file bound */
	ino_t ino;
	int fd;
	struct event *ev_accept;
	struct event *ev_retry;         /* accept short of a resource */
	struct event *ev_expire;
	struct ratelim refusals;
	struct tomb_conn conn[TOMB_PENDING];
};

static void conn_close(struct tomb_conn *c)
{
	if (c->ev)
		event_free(c->ev);
	if (c->fd >= 0)
		close(c->fd);
	c->ev = NULL;
	c->fd = -1;
	c->got = 0;
}

/* The 4-byte status of a hello, as a destination worker writes it: on a
 * fresh socket that has sent only its hello, it fits at once. */
static void conn_answer(struct tomb_conn *c, int err)
{
	uint32_t status = htole32((uint32_t)err);

	(void)!send(c->fd, &status, sizeof(status), MSG_DONTWAIT | MSG_NOSIGNAL);
	conn_close(c);
}

static int hello_answer(const struct tomb *t, struct stream_hello *h)
{
	const char *why;
	int r = stream_hello_check(h, t->token, &why);

	if (r < 0)
		return -r;
	/* The same token, another migration (a token chosen twice): no job
	 * listens here for it. */
	return memcmp(h->id, t->id, STREAM_ID_LEN) ? ECONNREFUSED : t->err;
}

/* Strangers, a few per window (anyone who reaches the port can make
 * them); how many more, with the next one said. */
static void tomb_say_refusal(struct tomb *t, const char *why)
{
	unsigned int held;

	if (!ratelim_take(&t->refusals, now_ns(), TOMB_SAID_WINDOW_NS, TOMB_SAID,
			  &held))
		return;
	if (held)
		log_warnx("%s: turned away %u more connections on %s, not "
			  "logged one by one", t->vm, held, t->text);
	log_warnx("%s: turned away a connection on %s: %s (for its ended "
		  "job)", t->vm, t->text, why);
}

static void conn_read(evutil_socket_t fd, short what, void *arg)
{
	struct tomb_conn *c = arg;
	struct tomb *t = c->t;
	ssize_t got;
	int err;

	if (what & EV_TIMEOUT) {
		conn_close(c);
		return;
	}
	got = recv(fd, (uint8_t *)&c->h + c->got, sizeof(c->h) - c->got,
		   MSG_DONTWAIT);
	if (got < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (got <= 0) {
		conn_close(c);
		return;
	}
	c->got += (size_t)got;
	if (c->got < sizeof(c->h))
		return;
	err = hello_answer(t, &c->h);
	if (err == t->err)
		log_info("%s: told its source on %s that the job can never "
			 "recover", t->vm, t->text);
	else
		tomb_say_refusal(t, strerror(err));
	conn_answer(c, err);
}

static void tomb_accept(evutil_socket_t fd, short what, void *arg)
{
	struct timeval tv = { MIGD_HELLO_TIMEOUT_MS / 1000,
			      (MIGD_HELLO_TIMEOUT_MS % 1000) * 1000 };
	struct tomb *t = arg;
	struct tomb_conn *c = NULL;
	unsigned int i;
	int cfd;

	(void)what;
	cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (cfd < 0 && (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED))
		return;
	if (cfd < 0) {
		/* Out of descriptors or memory: the connection stays queued,
		 * and the socket readable; not looked at again for a while,
		 * or the loop would spin on it. */
		struct timeval later = { 0, TOMB_RETRY_MS * 1000 };

		event_del(t->ev_accept);
		evtimer_add(t->ev_retry, &later);
		return;
	}
	/* A free slot, else the oldest silent one's: a source says hello
	 * at once, and strangers holding every slot must not keep it out. */
	for (i = 0; i < TOMB_PENDING; i++) {
		if (t->conn[i].fd < 0) {
			c = &t->conn[i];
			break;
		}
		if (!c || t->conn[i].since < c->since)
			c = &t->conn[i];
	}
	if (c->fd >= 0) {
		tomb_say_refusal(t, "the oldest of its connections without a "
				 "hello, for a new one");
		conn_close(c);
	}
	c->fd = cfd;
	c->since = now_ns();
	c->ev = event_new(t->m->base, cfd, EV_READ | EV_PERSIST, conn_read, c);
	if (!c->ev || event_add(c->ev, &tv) < 0)
		conn_close(c);
}

static void tomb_retry(evutil_socket_t fd, short what, void *arg)
{
	struct tomb *t = arg;

	(void)fd;
	(void)what;
	event_add(t->ev_accept, NULL);
}

static void tomb_free(struct tomb *t)
{
	struct stat st;
	unsigned int i;

	for (i = 0; i < TOMB_PENDING; i++)
		conn_close(&t->conn[i]);
	if (t->ev_accept)
		event_free(t->ev_accept);
	if (t->ev_retry)
		event_free(t->ev_retry);
	if (t->ev_expire)
		event_free(t->ev_expire);
	if (t->fd >= 0)
		close(t->fd);
	/* Only the file this bound: another may have taken the path since. */
	if (t->addr.kind == URI_UNIX && lstat(t->addr.path, &st) == 0 &&
	    st.st_dev == t->dev && st.st_ino == t->ino)
		unlink(t->addr.path);
	free(t);
}

static void tomb_unlink(struct migd *m, struct tomb *t)
{
	struct tomb **pp;

	for (pp = &m->tombs; *pp; pp = &(*pp)->next)
		if (*pp == t) {
			*pp = t->next;
			m->ntombs--;
			return;
		}
}

static void tomb_expire(evutil_socket_t fd, short what, void *arg)
{
	struct tomb *t = arg;

	(void)fd;
	(void)what;
	log_info("%s: no longer answers on %s for its ended job", t->vm, t->text);
	tomb_unlink(t->m, t);
	tomb_free(t);
}

static bool tomb_same_place(const struct uri *a, const struct uri *b)
{
	if (a->kind != b->kind)
		return false;
	/* One port, whatever the host: a wildcard bind meets any. */
	return a->kind == URI_TCP ? a->port == b->port : !strcmp(a->path, b->path);
}

void tombstone_release(struct migd *m, const struct uri *u)
{
	struct tomb **pp = &m->tombs, *t;
	bool released = false;
	struct uri ku;
	unsigned int i;

	/* A saved one waiting for its address (tomb_keep) lets it go too. */
	for (i = 0; i < m->ntombs_kept;) {
		if (uri_parse(m->tombs_kept[i].listen, &ku) < 0 ||
		    !tomb_same_place(&ku, u)) {
			i++;
			continue;
		}
		log_info("%s: %s is taken again: its saved record is dropped",
			 m->tombs_kept[i].vm, m->tombs_kept[i].listen);
		m->tombs_kept[i] = m->tombs_kept[--m->ntombs_kept];
		released = true;
	}

	while ((t = *pp)) {
		if (!tomb_same_place(&t->addr, u)) {
			pp = &t->next;
			continue;
		}
		*pp = t->next;
		m->ntombs--;
		log_info("%s: %s is taken again: no longer answers there for "
			 "its ended job", t->vm, t->text);
		tomb_free(t);
		released = true;
	}
	if (released)           /* (not again after a restart) */
		migd_state_save(m);
}

static void tomb_drop_oldest(struct migd *m)
{
	struct tomb *t = m->tombs;

	while (t && t->next)
		t = t->next;
	if (t) {
		tomb_unlink(m, t);
		tomb_free(t);
	}
}

int tombstone_add(struct migd *m, const char *vm, const char *listen,
		  const char *idhex, const uint8_t *token, int err,
		  uint64_t expires_unix_ms)
{
	uint64_t now = unix_ms(), ms;
	struct timeval ttl;
	struct tomb *t;
	struct stat st;
	unsigned int i;
	int r;

	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->m = m;
	t->fd = -1;
	for (i = 0; i < TOMB_PENDING; i++)
		t->conn[i] = (struct tomb_conn){ .t = t, .fd = -1 };
	str_copy(t->vm, vm, sizeof(t->vm));
	memcpy(t->token, token, STREAM_TOKEN_LEN);
	t->err = err;
	if (!expires_unix_ms)
		expires_unix_ms = now + TOMB_TTL_S * 1000ULL;
	t->expires_unix_ms = expires_unix_ms;
	ms = expires_unix_ms > now ? MIN(expires_unix_ms - now,
					 TOMB_TTL_S * 1000ULL) : 0;
	ttl.tv_sec = (time_t)(ms / 1000);
	ttl.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	if (job_id_parse(idhex, t->id) < 0 || uri_parse(listen, &t->addr) < 0 ||
	    (t->addr.kind != URI_TCP && t->addr.kind != URI_UNIX) ||
	    str_copy(t->text, listen, sizeof(t->text)) < 0) {
		r = -EINVAL;
		goto fail;
	}
	/* The job's own address, free since its worker ended. */
	t->fd = uri_listen(&t->addr, 16);
	if (t->fd < 0) {
		r = t->fd;
		goto fail;
	}
	if (t->addr.kind == URI_UNIX && stat(t->addr.path, &st) == 0) {
		t->dev = st.st_dev;
		t->ino = st.st_ino;
	}
	t->ev_accept = event_new(m->base, t->fd, EV_READ | EV_PERSIST,
				 tomb_accept, t);
	t->ev_retry = evtimer_new(m->base, tomb_retry, t);
	t->ev_expire = evtimer_new(m->base, tomb_expire, t);
	if (!t->ev_accept || !t->ev_retry || !t->ev_expire ||
	    event_add(t->ev_accept, NULL) < 0 || event_add(t->ev_expire, &ttl) < 0) {
		r = -ENOMEM;
		goto fail;
	}
	if (m->ntombs >= TOMB_MAX)
		tomb_drop_oldest(m);
	t->next = m->tombs;
	m->tombs = t;
	m->ntombs++;
	return 0;
fail:
	tomb_free(t);
	return r;
}

void tombstones_free_all(struct migd *m)
{
	struct tomb *t;

	while ((t = m->tombs)) {
		m->tombs = t->next;
		log_info("%s: no longer answers on %s for its ended job until "
			 "migd runs again (migd stops)", t->vm, t->text);
		tomb_free(t);
	}
	m->ntombs = 0;
	free(m->tombs_kept);
	m->tombs_kept = NULL;
	m->ntombs_kept = 0;
}

/* (s checked: a VM's name, text, a token's length) */
static int tomb_keep(struct migd *m, const Tern__Migd__SavedTombstone *s)
{
	struct tomb_kept *k;

	if (!m->tombs_kept)
		m->tombs_kept = calloc(TOMB_MAX, sizeof(*m->tombs_kept));
	if (!m->tombs_kept || str_copy(m->tombs_kept[m->ntombs_kept].listen,
				       s->listen, sizeof(k->listen)) < 0 ||
	    strlen(s->id) >= sizeof(k->id))
		return -ENOMEM;
	k = &m->tombs_kept[m->ntombs_kept++];
	str_copy(k->vm, s->vm, sizeof(k->vm));
	str_copy(k->id, s->id, sizeof(k->id));
	memcpy(k->token, s->token.data, STREAM_TOKEN_LEN);
	k->err = s->err;
	k->expires_unix_ms = s->expires_unix_ms;
	return 0;
}

/* A SavedTombstone that points into the strings given. */
static void saved_tomb(Tern__Migd__SavedTombstone *out, const char *vm,
		       const char *listen, const char *idhex,
		       const uint8_t *token, uint32_t err, uint64_t expires)
{
	tern__migd__saved_tombstone__init(out);
	out->vm = (char *)vm;
	out->listen = (char *)listen;
	out->id = (char *)idhex;
	out->token.data = (uint8_t *)token;
	out->token.len = STREAM_TOKEN_LEN;
	out->err = err;
	out->expires_unix_ms = expires;
}

size_t tombstones_save(const struct migd *m, Tern__Migd__SavedTombstone *out,
		       char (*ids)[2 * STREAM_ID_LEN + 1], size_t max)
{
	const struct tomb_kept *k;
	const struct tomb *t;
	unsigned int i;
	size_t n = 0;

	for (i = 0; i < m->ntombs_kept && n < max; i++) {
		k = &m->tombs_kept[i];
		if (k->expires_unix_ms > unix_ms())
			saved_tomb(&out[n++], k->vm, k->listen, k->id, k->token,
				   k->err, k->expires_unix_ms);
	}
	for (t = m->tombs; t && n < max; t = t->next, n++) {
		stream_hex(t->id, STREAM_ID_LEN, ids[n]);
		saved_tomb(&out[n], t->vm, t->text, ids[n], t->token,
			   (uint32_t)t->err, t->expires_unix_ms);
	}
	return n;
}

void tombstones_restore(struct migd *m, Tern__Migd__SavedTombstone **saved,
			size_t n)
{
	const Tern__Migd__SavedTombstone *s;
	char vm[80], addr[256];
	size_t i;
	int r;

	/* Oldest first: the list keeps the newest first. */
	for (i = MIN(n, TOMB_MAX); i-- > 0;) {
		s = saved[i];
		if (s->expires_unix_ms <= unix_ms())
			continue;
		if (name_valid(s->vm) < 0 || !str_is_text(s->listen) ||
		    s->token.len != STREAM_TOKEN_LEN ||
		    (s->err != EOWNERDEAD && s->err != ECANCELED))
			r = -EINVAL;
		else
			r = tombstone_add(m, s->vm, s->listen, s->id, s->token.data,
					  (int)s->err, s->expires_unix_ms);
		/* An address taken meanwhile (by another program) may be
		 * free at the next start: the record stays in the file. */
		if (r < 0 && r != -EINVAL && m->ntombs_kept < TOMB_MAX &&
		    tomb_keep(m, s) == 0)
			log_warnx("%s: cannot answer its source on %s again "
				  "that its ended job can never recover: %s (the "
				  "next start of migd tries again)", s->vm,
				  s->listen, strerror(-r));
		else if (r < 0)
			log_warnx("%s: cannot answer its source on %s again "
				  "that its ended job can never recover: %s",
				  str_shown(s->vm, vm, sizeof(vm)),
				  str_shown(s->listen, addr, sizeof(addr)),
				  r == -EINVAL ? "the saved record does not check" :
				  strerror(-r));
		else
			log_info("%s: answers its source on %s again that the "
				 "job can never recover (restored)", s->vm,
				 s->listen);
	}
}
