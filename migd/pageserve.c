// SPDX-License-Identifier: GPL-2.0-only
/*
 * The source's end of the postcopy page link: faultd on the destination
 * asks for pages by region and offset (PageRequest); this thread answers
 * each with the pages' data from the stopped VM's RAM (PageData), on its
 * own connection so that an urgent page never waits behind the push on
 * the ram channels.  Pages sent here are taken off the push's bitmap, and
 * the push moves on to where the last request was (faults cluster).
 * Every request is checked against the layout; a bad one drops the link
 * with a Refuse that says why.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "common/bitmap.h"
#include "common/log.h"
#include "common/rtspawn.h"
#include "common/util.h"
#include "migd/migd.h"
#include "proto/stream.pb-c.h"

static int serve_refuse(struct page_server *ps, const char *why)
{
	Tern__Stream__PageMsg m = TERN__STREAM__PAGE_MSG__INIT;
	Tern__Stream__Refuse rf = TERN__STREAM__REFUSE__INIT;

	rf.err = EPROTO;
	rf.message = (char *)why;
	m.body_case = TERN__STREAM__PAGE_MSG__BODY_REFUSE;
	m.refuse = &rf;
	stream_msg_send(ps->fd, &m.base, deadline_ms(1000));
	snprintf(ps->why, sizeof(ps->why), "page link: %s", why);
	return -EPROTO;
}

static int serve_one(struct page_server *ps, const Tern__Stream__PageRequest *q)
{
	Tern__Stream__PageMsg m = TERN__STREAM__PAGE_MSG__INIT;
	Tern__Stream__PageData d = TERN__STREAM__PAGE_DATA__INIT;
	const struct ram_view *v = ps->ram;
	uint64_t first, i, taken = 0;
	int r;

	if (q->region >= v->n || q->offset % STREAM_PAGE ||
	    q->pages < 1 || q->pages > STREAM_PAGE_REQ_MAX ||
	    q->offset >= v->r[q->region].size ||
	    v->r[q->region].size - q->offset < (uint64_t)q->pages * STREAM_PAGE)
		return serve_refuse(ps, "a request outside the guest's RAM");
	d.seq = q->seq;
	d.region = q->region;
	d.offset = q->offset;
	d.data.data = v->r[q->region].host + q->offset;
	d.data.len = (size_t)q->pages * STREAM_PAGE;
	m.body_case = TERN__STREAM__PAGE_MSG__BODY_DATA;
	m.data = &d;
	r = stream_msg_send(ps->fd, &m.base, now_ns() +
			    MIGD_IO_TIMEOUT_MS * 1000000ULL);
	if (r < 0) {
		snprintf(ps->why, sizeof(ps->why), "page link: send: %s",
			 strerror(-r));
		return r;
	}
	first = v->first_page[q->region] + q->offset / STREAM_PAGE;
	for (i = first; i < first + q->pages; i++) {
		/* A batch of the push that holds it drops it. */
		bitmap_set_atomic(ps->served, i);
		if (bitmap_test_and_clear_atomic(ps->tosend, i))
			taken++;        /* the push will not send it now */
	}
	__atomic_store_n(&ps->hint, first + q->pages, __ATOMIC_RELAXED);
	/* + 4: stream_msg_send's framing */
	worker_count_served(ps->w, q->pages, taken,
			    4 + protobuf_c_message_get_packed_size(&m.base));
	return 0;
}

static void *page_server_thread(void *arg)
{
	struct page_server *ps = arg;
	Tern__Stream__PageMsg *m;
	int r = 0;

	while (r == 0) {
		m = NULL;
		r = stream_msg_recv(ps->fd, &tern__stream__page_msg__descriptor,
				    STREAM_PAGE_MSG_MAX, 0, (ProtobufCMessage **)&m);
		if (r < 0) {
			snprintf(ps->why, sizeof(ps->why), "page link: %s",
				 r == -EPIPE ? "closed by the destination" :
				 r == -EMSGSIZE ? "an oversize message" :
				 r == -EPROTO ? "a message that does not decode" :
				 strerror(-r));
			break;
		}
		if (m->body_case == TERN__STREAM__PAGE_MSG__BODY_REQUEST)
			r = serve_one(ps, m->request);
		else if (m->body_case == TERN__STREAM__PAGE_MSG__BODY_REFUSE) {
			snprintf(ps->why, sizeof(ps->why), "page link: the "
				 "destination dropped it: %.*s",
				 str_cut(m->refuse->message, 160), m->refuse->message);
			r = -ECONNABORTED;
		} else
			r = serve_refuse(ps, "a message that is not a page request");
		protobuf_c_message_free_unpacked(&m->base, NULL);
	}
	__atomic_store_n(&ps->err, r, __ATOMIC_RELEASE);
	return NULL;
}

int page_server_start(struct page_server *ps)
{
	int r = rtspawn_create(&ps->thread, page_server_thread, ps);

	if (r < 0)
		return r;
	ps->started = true;
	return 0;
}

int page_server_error(const struct page_server *ps)
{
	return __atomic_load_n(&ps->err, __ATOMIC_ACQUIRE);
}

void page_server_stop(struct page_server *ps)
{
	if (!ps->started)
		return;
	chan_abort_fd(ps->fd);
	pthread_join(ps->thread, NULL);
	ps->started = false;
}
