// SPDX-License-Identifier: GPL-2.0-only
/*
 * The destination's connections (one worker process, its main thread):
 * accepting on the listening socket, reading the hellos of new
 * connections side by side, taking the job's own (its main connection,
 * ram channels and page link) and turning every other away with an error
 * code, noted in the job's status and logged a few per window.
 * dest_run (dest.c) calls dest_accept at set-up, and at its end closes
 * the connections still pending and says the refusals not yet logged;
 * dest.c's wait for the main connection, and dest_postcopy.c's watch and
 * recovery, call dest_hellos, so that other sources are turned away
 * meanwhile.  The source's layout, the first message on its main
 * connection, is checked in dest.c (dest_check_hello).
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/ratelim.h"
#include "common/util.h"
#include "migd/migd.h"

/*
 * Anyone who can reach the port can be turned away, without the token,
 * as often as they like: the log takes the first few of each window, and
 * then how many more there were (said with the next refusal after it, or
 * once the window is over, at dest_hellos' next round, or at the job's
 * end).
 */
#define DEST_REFUSALS_LOGGED 5
#define DEST_REFUSALS_WINDOW_NS (10 * 1000000000ull)

static void dest_say_held(unsigned int n)
{
	if (n)
		log_warnx("refused %u more connection%s since the last one logged, "
			  "not logged one by one", n, n == 1 ? "" : "s");
}

void dest_refusals_flush(struct dest *d)
{
	dest_say_held(ratelim_flush(&d->refusals));
}

static void dest_log_refusal(struct dest *d, const char *why)
{
	unsigned int held;
	bool say = ratelim_take(&d->refusals, now_ns(), DEST_REFUSALS_WINDOW_NS,
				DEST_REFUSALS_LOGGED, &held);

	dest_say_held(held);
	if (say)
		log_warnx("refused a connection: %s%s", why,
			  d->refusals.said == DEST_REFUSALS_LOGGED ?
			  " (more refusals in the next 10 s are counted, "
			  "not logged)" : "");
}

/* While waiting, the status says why the last stranger was turned away;
 * once a source is in, refusals are only logged. */
static void dest_note_refusal(struct dest *d, const char *why)
{
	dest_log_refusal(d, why);
	if (d->main_fd >= 0 || d->recovering)
		return;         /* a paused job keeps the reason it paused */
	pthread_mutex_lock(&d->w->lock);
	snprintf(d->w->error, sizeof(d->w->error),
		 "refused a connection: %s (still waiting)", why);
	d->w->error_is_note = true;
	pthread_mutex_unlock(&d->w->lock);
	worker_report(d->w);
}

static void dest_answer(int fd, int err)
{
	uint32_t status = htole32((uint32_t)(err < 0 ? -err : err));

	stream_write_full(fd, &status, 4, deadline_ms(1000));
}

/* Refuse a connection: answer err, close it, note why. */
static void dest_turn_away(struct dest *d, int fd, int err, const char *why)
{
	dest_answer(fd, err);
	close(fd);
	dest_note_refusal(d, why);
}

/*
 * A connection whose hello came whole: check it.  Returns 1 when it was
 * taken (as main, a ram channel or the page link), 0 when it was refused
 * and closed (always, if busy: the job has every connection it takes).
 */
static int dest_take(struct dest *d, int fd, struct stream_hello h, bool busy)
{
	const char *why = NULL;
	int r;

	if ((r = stream_hello_check(&h, d->w->spec->token, &why)) < 0)
		;
	else if (busy)
		r = -EBUSY, why = h.role == STREAM_ROLE_MAIN ?
			"a second main connection" : "a connection while the job runs";
	else if (h.role == STREAM_ROLE_MAIN && d->main_fd >= 0)
		r = -EBUSY, why = "a second main connection";
	else if (h.role == STREAM_ROLE_MAIN && d->recovering &&
		 memcmp(h.id, d->w->id, STREAM_ID_LEN))
		r = -EBUSY, why = "a main connection of another migration";
	else if (h.role != STREAM_ROLE_MAIN && d->main_fd < 0)
		r = -EBUSY, why = h.role == STREAM_ROLE_PAGE ?
			"a page link before any main connection" :
			"a ram connection before any main connection";
	else if (h.role != STREAM_ROLE_MAIN &&
		 memcmp(h.id, d->w->id, STREAM_ID_LEN))
		r = -EBUSY, why = h.role == STREAM_ROLE_PAGE ?
			"a page link of another migration" :
			"a ram connection of another migration";
	else if (h.role == STREAM_ROLE_PAGE && d->page_fd >= 0)
		r = -EBUSY, why = "a second page link";
	else if (h.role == STREAM_ROLE_RAM && (h.index >= d->nchan ||
						d->chan[h.index].fd >= 0))
		r = -EINVAL, why = "a ram connection with a bad index";
	if (why) {
		dest_turn_away(d, fd, r < 0 ? r : -EPROTO, why);
		return 0;
	}
	dest_answer(fd, 0);
	if (h.role == STREAM_ROLE_MAIN) {
		d->main_fd = fd;
		d->hello_ns = now_ns();
		pthread_mutex_lock(&d->w->lock);
		memcpy(d->w->id, h.id, STREAM_ID_LEN);
		if (d->w->error_is_note)
			d->w->error[0] = 0;     /* earlier refusals were not this job */
		pthread_mutex_unlock(&d->w->lock);
		chan_tune_socket(fd, false);
	} else if (h.role == STREAM_ROLE_PAGE) {
		d->page_fd = fd;
		chan_tune_socket(fd, false);
	} else {
		d->chan[h.index].fd = fd;
		d->nconnected++;
		chan_tune_socket(fd, true);
	}
	return 1;
}

/*
 * New connections.  Their hellos are read side by side, so a connection
 * that says nothing (a port scanner, a stranger without the token) delays
 * no other: the job's own connections say hello at once.  When the table
 * of those still to come is full, the oldest is turned away to make room.
 */
static void pending_drop(struct dest *d, unsigned int i)
{
	d->pend[i] = d->pend[--d->npend];
}

void dest_pending_close_all(struct dest *d)
{
	while (d->npend)
		close(d->pend[--d->npend].fd);
}

/* Read what pending connection i has sent of its hello, without waiting:
 * 1 when it is whole, 0 for more to come, -1 when the connection failed
 * (then it is turned away and dropped from the table). */
static int pending_read(struct dest *d, unsigned int i)
{
	struct dest_pending *p = &d->pend[i];
	ssize_t got;

	got = recv(p->fd, (uint8_t *)&p->h + p->got, sizeof(p->h) - p->got,
		   MSG_DONTWAIT);
	if (got < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (got <= 0) {
		dest_turn_away(d, p->fd, EPROTO, "connection closed before its hello");
		pending_drop(d, i);
		return -1;
	}
	p->got += (size_t)got;
	return p->got == sizeof(p->h);
}

/*
 * accept failed for want of a resource (EMFILE, ENFILE, ENOBUFS, ENOMEM;
 * or any error but EAGAIN, EINTR, ECONNABORTED, which go at once): the
 * connection stays queued and the listening socket readable, so a
 * poll on it would return at once, round after round, with the worker
 * spinning on a core until a descriptor came free.  It is left out of the
 * poll for DEST_ACCEPT_RETRY_MS instead; pending hellos still time out
 * meanwhile, which frees descriptors.  Said once per window, in the log
 * and, while waiting, in the job's status: the source cannot get in.
 */
#define DEST_ACCEPT_RETRY_MS 100

static void dest_accept_failed(struct dest *d, int err)
{
	uint64_t now = now_ns();
	unsigned int held;

	d->accept_paused_until = now + DEST_ACCEPT_RETRY_MS * 1000000ull;
	if (!ratelim_take(&d->accept_fails, now, DEST_REFUSALS_WINDOW_NS, 1, &held))
		return;
	log_warnx("cannot accept connections: %s (%u waiting for their "
		  "hello); trying again every %d ms", strerror(err), d->npend,
		  DEST_ACCEPT_RETRY_MS);
	if (d->main_fd >= 0 || d->recovering)
		return;
	pthread_mutex_lock(&d->w->lock);
	snprintf(d->w->error, sizeof(d->w->error), "cannot accept connections: "
		 "%s (still waiting)", strerror(err));
	d->w->error_is_note = true;
	pthread_mutex_unlock(&d->w->lock);
	worker_report(d->w);
}

/*
 * One round until wake: accept what comes, read the hellos, take the
 * connections whose hello is whole and good, turn away the others and
 * those silent for MIGD_HELLO_TIMEOUT_MS.  1 when a main connection was
 * taken, 0 otherwise, -errno when the listening socket failed.  With a
 * descriptor to watch (busy >= 0: a running job's main connection), every
 * connection is turned away (EBUSY), and the round ends with 2 as soon as
 * busy has something to read.
 */
int dest_hellos(struct dest *d, uint64_t wake, int busy)
{
	struct pollfd pfd[2 + DEST_PENDING_MAX];
	struct stream_hello h;
	bool took_main = false;
	unsigned int i;
	int fd, r;

	dest_say_held(ratelim_due(&d->refusals, now_ns(),
				  DEST_REFUSALS_WINDOW_NS));
	/* A negative fd is left out of the poll (dest_accept_failed). */
	pfd[0] = (struct pollfd){ .fd = d->listen_fd, .events = POLLIN };
	if (now_ns() < d->accept_paused_until) {
		pfd[0].fd = -1;
		wake = MIN(wake, d->accept_paused_until);
	}
	pfd[1] = (struct pollfd){ .fd = busy, .events = POLLIN };
	for (i = 0; i < d->npend; i++) {
		pfd[2 + i] = (struct pollfd){ .fd = d->pend[i].fd, .events = POLLIN };
		wake = MIN(wake, d->pend[i].deadline);
	}
	r = poll_until(pfd, 2 + d->npend, wake);
	if (r < 0 && r != -ETIMEDOUT)
		return r;
	/* From the last: dropping entry i moves the last one into its
	 * place, which was visited already. */
	for (i = d->npend; i-- > 0; ) {
		if (r > 0 && pfd[2 + i].revents) {
			if (pending_read(d, i) <= 0)
				continue;
			fd = d->pend[i].fd;
			h = d->pend[i].h;
			pending_drop(d, i);
			if (dest_take(d, fd, h, busy >= 0) && d->main_fd == fd)
				took_main = true;
		} else if (now_ns() > d->pend[i].deadline) {
			dest_turn_away(d, d->pend[i].fd, ETIMEDOUT, "no hello in time");
			pending_drop(d, i);
		}
	}
	fd = r > 0 && (pfd[0].revents & POLLIN) ?
		accept4(d->listen_fd, NULL, NULL, SOCK_CLOEXEC) : -1;
	if (fd < 0 && r > 0 && (pfd[0].revents & POLLIN) && errno != EAGAIN &&
	    errno != EINTR && errno != ECONNABORTED)
		dest_accept_failed(d, errno);
	if (fd >= 0) {
		if (d->npend == DEST_PENDING_MAX) {
			dest_turn_away(d, d->pend[0].fd, ETIMEDOUT, "no hello yet, "
				       "and newer connections waiting");
			pending_drop(d, 0);
		}
		d->pend[d->npend++] = (struct dest_pending){ .fd = fd,
			.deadline = deadline_ms(MIGD_HELLO_TIMEOUT_MS) };
	}
	if (r > 0 && busy >= 0 && pfd[1].revents)
		return 2;
	return took_main;
}

/*
 * A source that failed after its hello (a refusal of its own: its job
 * may switch to postcopy, which this RAM cannot take) says why and
 * closes: its channels will not come, and what it said ends the wait
 * now, not after MIGD_IO_TIMEOUT_MS.  Only its close is watched:
 * anything it sends before is read in order, once the channels are in.
 */
static int dest_source_left(struct dest *d)
{
	struct pollfd p = { .fd = d->main_fd, .events = POLLRDHUP };
	Tern__Stream__StreamMsg *m = NULL;
	int r;

	if (poll(&p, 1, 0) <= 0 || !(p.revents & (POLLRDHUP | POLLHUP | POLLERR)))
		return 0;
	r = dest_recv(d, BODY_PRECOPY_NEXT, "ram channels", &m);
	if (r < 0)
		return r;
	protobuf_c_message_free_unpacked(&m->base, NULL);
	return worker_fail(d->w, EPIPE, "the source closed the connection "
			   "before its ram channels came");
}

/* Accept until the main connection, all its ram channels and the page
 * link are there. */
int dest_accept(struct dest *d)
{
	uint64_t limit = d->main_fd >= 0 ? deadline_ms(MIGD_IO_TIMEOUT_MS) : 0;
	int r;

	for (;;) {
		if (worker_cancelled())
			return -ECANCELED;
		if (d->main_fd >= 0 && d->nconnected == d->nchan && d->page_fd >= 0)
			break;
		if (vmm_link_gone(&d->vmm))
			return worker_fail(d->w, EPIPE, DEST_VMM_GONE, d->w->spec->vm);
		if (limit && now_ns() > limit)
			return worker_fail(d->w, ETIMEDOUT, "only %u of %u ram "
					   "channels%s connected", d->nconnected,
					   d->nchan, d->page_fd < 0 ?
					   " and no page link" : "");
		r = dest_hellos(d, deadline_ms(200), -1);
		if (r < 0)
			return worker_fail(d->w, r, "listening: %s", strerror(-r));
		if (r == 0 && d->main_fd >= 0 && !d->recovering &&
		    (r = dest_source_left(d)) < 0)
			return r;
		if (r == 1 && !d->recovering) {
			r = dest_check_hello(d);
			if (r < 0)
				return r;
			worker_set_state(d->w, JOB_STATE_SETUP);
			limit = deadline_ms(MIGD_IO_TIMEOUT_MS);
		}
	}
	/* All the job's connections are in: the rest are not its. */
	dest_pending_close_all(d);
	return 0;
}
