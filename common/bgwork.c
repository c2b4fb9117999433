// SPDX-License-Identifier: GPL-2.0-only
/*
 * Blocking work in threads of its own, finished on the event loop
 * (bgwork.h).  A thread's last acts are to set its piece's done flag and
 * write the set's eventfd: the event loop may free the piece as soon as
 * it sees the flag, so the thread reads everything it needs first.
 */
#include <errno.h>
#include <event2/event.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/bgwork.h"
#include "common/util.h"

static void *bgwork_main(void *arg)
{
	struct bgwork *w = arg;
	int efd = w->set->efd;

	w->run(w);
	__atomic_store_n(&w->done, true, __ATOMIC_RELEASE);
	eventfd_write(efd, 1);
	return NULL;
}

/* Unlink and join every piece that is done; finish it, or hand it to
 * drop (if any) at the end. */
static void bgwork_reap(struct bgwork_set *s, bool finish, bgwork_fn drop)
{
	struct bgwork **pp = &s->list, *w;

	while ((w = *pp)) {
		if (!__atomic_load_n(&w->done, __ATOMIC_ACQUIRE)) {
			pp = &w->next;
			continue;
		}
		*pp = w->next;
		s->n--;
		pthread_join(w->thread, NULL);
		if (finish)
			w->finish(w);
		else if (drop)
			drop(w);
	}
}

static void bgwork_wake(evutil_socket_t fd, short what, void *arg)
{
	eventfd_t n;

	eventfd_read(fd, &n);           /* EAGAIN: read on an earlier wake-up */
	bgwork_reap(arg, true, NULL);
}

int bgwork_init(struct bgwork_set *s, struct event_base *base)
{
	*s = (struct bgwork_set){ .efd = -1 };
	s->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->efd < 0)
		return -errno;
	s->ev = event_new(base, s->efd, EV_READ | EV_PERSIST, bgwork_wake, s);
	if (!s->ev || event_add(s->ev, NULL) < 0)
		return -ENOMEM;
	return 0;
}

int bgwork_start(struct bgwork_set *s, struct bgwork *w, bgwork_fn run,
		 bgwork_fn finish)
{
	int r;

	if (!s->ev)
		return -ENOSYS;
	*w = (struct bgwork){ .set = s, .run = run, .finish = finish };
	r = -pthread_create(&w->thread, NULL, bgwork_main, w);
	if (r < 0)
		return r;
	w->next = s->list;
	s->list = w;
	s->n++;
	return 0;
}

unsigned int bgwork_stop(struct bgwork_set *s, int wait_ms, bgwork_fn drop)
{
	uint64_t until = deadline_ms(wait_ms);
	struct bgwork *w;

	if (s->ev)
		event_free(s->ev);
	s->ev = NULL;
	for (;;) {
		bgwork_reap(s, false, drop);
		if (!s->n || now_ns() >= until)
			break;
		usleep(1000);
	}
	for (w = s->list; w; w = w->next)
		pthread_detach(w->thread);
	s->list = NULL;
	return s->n;
}
