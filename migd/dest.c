// SPDX-License-Identifier: GPL-2.0-only
/*
 * The destination side of a precopy migration (one worker process).
 *
 * It waits on the listening socket the parent bound.  Every connection
 * must start with a valid hello within MIGD_HELLO_TIMEOUT_MS; one that
 * does not (garbage, a wrong token, a stranger) is answered with an
 * error code and closed, noted in the job's status, and the job goes on
 * waiting.  The first valid main connection announces the source's RAM
 * layout, which must be exactly this vmm's; then its ram channels
 * connect.  Pages go straight into the incoming vmm's memfds.  After the
 * device state: load it, answer Ready, and resume the guest only on Go.
 * Any failure before the guest resumes makes the vmm drop what it
 * received (Discard), so it can take a new incoming migration.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/bitmap.h"
#include "common/log.h"
#include "common/util.h"
#include "migd/migd.h"
#include "proto/stream.pb-c.h"

struct dest {
	struct worker *w;
	struct vmm_link vmm;
	struct ram_view ram;
	struct stream_layout layout;
	int main_fd;
	struct chan_rx chan[STREAM_MAX_CHANNELS];
	unsigned int nchan, nconnected;
	bool have_id;
	bool received;                  /* the vmm holds data of this job */
	uint64_t *received_map;         /* pages received, across regions */
	char err[256];
};

static uint64_t deadline_ms(unsigned int ms)
{
	return now_ns() + ms * 1000000ULL;
}

static int dest_vmm(struct dest *d)
{
	Tern__Vmm__RunState st;
	unsigned int i;
	int r;

	r = vmm_link_open(&d->vmm, d->w->spec->rundir, d->w->spec->vm, d->err,
			  sizeof(d->err));
	if (r == 0)
		r = vmm_link_state(&d->vmm, &st, d->err, sizeof(d->err));
	if (r < 0)
		return worker_fail(d->w, r, "%s", d->err);
	if (st != TERN__VMM__RUN_STATE__RUN_STATE_INCOMING)
		return worker_fail(d->w, EBUSY, "vmm %s is not waiting for an "
				   "incoming guest (start it with --incoming)",
				   d->w->spec->vm);
	r = vmm_link_map_ram(&d->vmm, &d->ram, true, d->err,
			     sizeof(d->err));
	if (r < 0)
		return worker_fail(d->w, r, "%s", d->err);
	d->layout.nregions = d->ram.n;
	for (i = 0; i < d->ram.n; i++)
		d->layout.size[i] = d->ram.r[i].size;
	pthread_mutex_lock(&d->w->lock);
	d->w->total_bytes = d->ram.pages * STREAM_PAGE;
	pthread_mutex_unlock(&d->w->lock);
	return 0;
}

/* While waiting, the status says why the last stranger was turned away;
 * once a source is in, refusals are only logged. */
static void dest_note_refusal(struct dest *d, const char *why)
{
	log_warnx("refused a connection: %s", why);
	if (d->main_fd >= 0)
		return;
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

/*
 * One new connection: read and check its hello.  Returns 1 when it was
 * taken (as main or a ram channel), 0 when it was refused and closed.
 */
static int dest_take(struct dest *d, int fd)
{
	struct stream_hello h;
	const char *why = NULL;
	int r;

	r = stream_read_full(fd, &h, sizeof(h), deadline_ms(MIGD_HELLO_TIMEOUT_MS));
	if (r < 0)
		why = r == -ETIMEDOUT ? "no hello in time" : "connection closed "
		      "before its hello";
	else if ((r = stream_hello_check(&h, d->w->spec->token, &why)) < 0)
		;
	else if (h.role == STREAM_ROLE_MAIN && d->main_fd >= 0)
		r = -EBUSY, why = "a second main connection";
	else if (h.role == STREAM_ROLE_RAM && (d->main_fd < 0 ||
		 memcmp(h.id, d->w->id, STREAM_ID_LEN)))
		r = -EBUSY, why = "a ram connection of another migration";
	else if (h.role == STREAM_ROLE_RAM && (h.index >= d->nchan ||
						d->chan[h.index].fd >= 0))
		r = -EINVAL, why = "a ram connection with a bad index";
	if (why) {
		dest_answer(fd, r < 0 ? r : -EPROTO);
		close(fd);
		dest_note_refusal(d, why);
		return 0;
	}
	dest_answer(fd, 0);
	if (h.role == STREAM_ROLE_MAIN) {
		d->main_fd = fd;
		pthread_mutex_lock(&d->w->lock);
		memcpy(d->w->id, h.id, STREAM_ID_LEN);
		if (d->w->error_is_note)
			d->w->error[0] = 0;     /* earlier refusals were not this job */
		pthread_mutex_unlock(&d->w->lock);
		chan_tune_socket(fd, false);
	} else {
		d->chan[h.index].fd = fd;
		d->nconnected++;
		chan_tune_socket(fd, true);
	}
	return 1;
}

static int dest_refuse(struct dest *d, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int dest_refuse(struct dest *d, int err, const char *fmt, ...)
{
	Tern__Stream__StreamMsg m = TERN__STREAM__STREAM_MSG__INIT;
	Tern__Stream__Refuse rf = TERN__STREAM__REFUSE__INIT;
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	rf.err = err;
	rf.message = msg;
	m.body_case = TERN__STREAM__STREAM_MSG__BODY_REFUSE;
	m.refuse = &rf;
	if (d->main_fd >= 0)
		stream_msg_send(d->main_fd, &m.base, deadline_ms(1000));
	return worker_fail(d->w, err, "%s", msg);
}

/* The source's layout must be exactly this vmm's. */
static int dest_check_hello(struct dest *d)
{
	Tern__Stream__StreamMsg *m = NULL;
	Tern__Stream__StreamMsg ok = TERN__STREAM__STREAM_MSG__INIT;
	Tern__Stream__Accept acc = TERN__STREAM__ACCEPT__INIT;
	const Tern__Stream__Hello *h;
	unsigned int i;
	int r;

	r = stream_msg_recv(d->main_fd, &tern__stream__stream_msg__descriptor,
			    65536, deadline_ms(MIGD_IO_TIMEOUT_MS),
			    (ProtobufCMessage **)&m);
	if (r < 0)
		return worker_fail(d->w, r, "the source sent no layout: %s",
				   strerror(-r));
	if (m->body_case != TERN__STREAM__STREAM_MSG__BODY_HELLO) {
		r = dest_refuse(d, EPROTO, "expected the source's layout first");
		goto out;
	}
	h = m->hello;
	if (h->channels < 1 || h->channels > STREAM_MAX_CHANNELS) {
		r = dest_refuse(d, EINVAL, "%u ram channels (1 to %u allowed)",
				h->channels, STREAM_MAX_CHANNELS);
		goto out;
	}
	if (h->page_size != STREAM_PAGE || h->n_regions != d->ram.n ||
	    h->memory != d->ram.pages * STREAM_PAGE) {
		r = dest_refuse(d, EINVAL, "the source's guest has %llu bytes of "
				"RAM in %zu regions, vmm %s here has %llu in %u",
				(unsigned long long)h->memory, h->n_regions,
				d->w->spec->vm,
				(unsigned long long)(d->ram.pages * STREAM_PAGE),
				d->ram.n);
		goto out;
	}
	for (i = 0; i < d->ram.n; i++)
		if (h->regions[i]->gpa != d->ram.r[i].gpa ||
		    h->regions[i]->size != d->ram.r[i].size) {
			r = dest_refuse(d, EINVAL, "RAM region %u differs", i);
			goto out;
		}
	d->nchan = h->channels;
	d->w->nchannels = h->channels;
	ok.body_case = TERN__STREAM__STREAM_MSG__BODY_ACCEPT;
	ok.accept = &acc;
	r = stream_msg_send(d->main_fd, &ok.base, deadline_ms(MIGD_IO_TIMEOUT_MS));
	if (r < 0)
		worker_fail(d->w, r, "answering the source: %s", strerror(-r));
out:
	protobuf_c_message_free_unpacked(&m->base, NULL);
	return r;
}

/* Accept until the main connection and all its ram channels are there. */
static int dest_accept(struct dest *d)
{
	struct pollfd pfd = { .fd = d->w->spec->listen_fd, .events = POLLIN };
	uint64_t limit = 0;
	int fd, r;

	for (;;) {
		if (worker_cancelled())
			return -ECANCELED;
		if (d->main_fd >= 0 && d->nconnected == d->nchan)
			return 0;
		if (limit && now_ns() > limit)
			return worker_fail(d->w, ETIMEDOUT, "only %u of %u ram "
					   "channels connected", d->nconnected,
					   d->nchan);
		r = poll_until(&pfd, 1, deadline_ms(200));
		if (r == -ETIMEDOUT)
			continue;
		if (r < 0)
			return worker_fail(d->w, r, "listening: %s", strerror(-r));
		fd = accept4(pfd.fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		if (dest_take(d, fd) && d->main_fd == fd) {
			r = dest_check_hello(d);
			if (r < 0)
				return r;
			worker_set_state(d->w, JOB_STATE_SETUP);
			limit = deadline_ms(MIGD_IO_TIMEOUT_MS);
		}
	}
}

/* Wait for the main connection to have a message, watching for a cancel
 * or a failed ram channel meanwhile. */
static int dest_wait_main(struct dest *d)
{
	struct pollfd pfd = { .fd = d->main_fd, .events = POLLIN };
	int r;

	for (;;) {
		if (worker_cancelled())
			return -ECANCELED;
		if (worker_failed(d->w))
			return -EIO;
		r = poll_until(&pfd, 1, deadline_ms(200));
		if (r > 0)
			return 0;
		if (r != -ETIMEDOUT)
			return r;
	}
}

static int dest_recv(struct dest *d, int body, const char *what,
		     Tern__Stream__StreamMsg **ret)
{
	Tern__Stream__StreamMsg *m = NULL;
	int r;

	r = stream_msg_recv(d->main_fd, &tern__stream__stream_msg__descriptor,
			    STREAM_MSG_MAX, deadline_ms(MIGD_IO_TIMEOUT_MS),
			    (ProtobufCMessage **)&m);
	if (r < 0)
		return worker_fail(d->w, r, "waiting for the source's %s: %s", what,
				   r == -EPIPE ? "the source closed the connection" :
				   strerror(-r));
	if ((int)m->body_case != body) {
		r = worker_fail(d->w, EPROTO, "the source sent message %d instead "
				"of its %s", m->body_case, what);
		protobuf_c_message_free_unpacked(&m->base, NULL);
		return r;
	}
	*ret = m;
	return 0;
}

/* All ram channels ended, each with as many pages as the source sent. */
static int dest_join_channels(struct dest *d, const Tern__Stream__DeviceState *dev)
{
	unsigned int i;
	int r = 0;

	if (dev->n_channel_pages != d->nchan)
		return worker_fail(d->w, EPROTO, "the device state counts %zu "
				   "channels, not %u", dev->n_channel_pages, d->nchan);
	for (i = 0; i < d->nchan; i++) {
		struct chan_rx *c = &d->chan[i];
		int e = chan_rx_join(c);

		if (e < 0 && r == 0)
			r = e;
		else if (r == 0 && (!c->ended || c->pages_total != dev->channel_pages[i]))
			r = worker_fail(d->w, EPROTO, "ram channel %u carried %llu "
					"pages, the source sent %llu", i,
					(unsigned long long)c->pages_total,
					(unsigned long long)dev->channel_pages[i]);
	}
	return r;
}

/* With verify, the RAM here must hash exactly as the source's did. */
static int dest_verify(struct dest *d, const Tern__Stream__DeviceState *dev)
{
	uint64_t *mine = NULL, gpa = 0, first = 0;
	size_t n = 0, i, bad = 0;
	unsigned int k;
	int r;

	if (!dev->n_ram_hashes)
		return 0;
	r = ram_view_hash(&d->ram, &mine, &n);
	if (r < 0)
		return dest_refuse(d, -r, "verify: hashing the RAM here: %s",
				   strerror(-r));
	if (n != dev->n_ram_hashes) {
		free(mine);
		return dest_refuse(d, EPROTO, "verify: %zu RAM hashes from the "
				   "source, %zu here", dev->n_ram_hashes, n);
	}
	for (i = 0; i < n; i++)
		if (mine[i] != dev->ram_hashes[i] && !bad++)
			first = i;
	free(mine);
	pthread_mutex_lock(&d->w->lock);
	if (bad) {
		/* chunk index -> guest-physical address */
		for (k = 0, i = first; k < d->ram.n; k++) {
			uint64_t c = (d->ram.r[k].size + (2u << 20) - 1) / (2u << 20);

			if (i < c) {
				gpa = d->ram.r[k].gpa + i * (2u << 20);
				break;
			}
			i -= c;
		}
		snprintf(d->w->verified, sizeof(d->w->verified),
			 "%zu of %zu 2 MiB chunks differ, the first at gpa 0x%llx",
			 bad, n, (unsigned long long)gpa);
	} else {
		snprintf(d->w->verified, sizeof(d->w->verified), "ok");
	}
	pthread_mutex_unlock(&d->w->lock);
	if (bad)
		return dest_refuse(d, EIO, "verify failed: the guest RAM here "
				   "differs from the source's: %zu of %zu 2 MiB chunks, "
				   "the first at gpa 0x%llx", bad, n,
				   (unsigned long long)gpa);
	return 0;
}

static int dest_load(struct dest *d, const Tern__Stream__DeviceState *dev)
{
	Tern__Vmm__VmState *st;
	int r;

	st = tern__vmm__vm_state__unpack(NULL, dev->vm_state.len, dev->vm_state.data);
	if (!st)
		return dest_refuse(d, EPROTO, "the device state does not decode");
	r = vmm_link_call(&d->vmm, "LoadState", &st->base, NULL, 0, NULL, NULL,
			  d->err, sizeof(d->err));
	protobuf_c_message_free_unpacked(&st->base, NULL);
	if (r < 0)
		return dest_refuse(d, -r, "%s", d->err);
	return 0;
}

static int dest_send(struct dest *d, Tern__Stream__StreamMsg *m, const char *what)
{
	int r = stream_msg_send(d->main_fd, &m->base, deadline_ms(MIGD_IO_TIMEOUT_MS));

	if (r < 0)
		worker_fail(d->w, r, "sending %s to the source: %s", what,
			    strerror(-r));
	return r;
}

static int dest_receive(struct dest *d)
{
	Tern__Stream__StreamMsg *dev = NULL, *go = NULL;
	Tern__Stream__StreamMsg m = TERN__STREAM__STREAM_MSG__INIT;
	Tern__Stream__Ready ready = TERN__STREAM__READY__INIT;
	Tern__Stream__Resumed res = TERN__STREAM__RESUMED__INIT;
	unsigned int i;
	uint64_t t0;
	int r = 0;

	d->received_map = calloc(1, BITMAP_BYTES(d->ram.pages));
	if (!d->received_map)
		return worker_fail(d->w, ENOMEM, "no memory for the received-pages map");
	for (i = 0; r == 0 && i < d->nchan; i++) {
		d->chan[i].w = d->w;
		d->chan[i].index = i;
		d->chan[i].ram = &d->ram;
		d->chan[i].layout = d->layout;
		d->chan[i].received = d->received_map;
		r = chan_rx_start(&d->chan[i]);
	}
	d->received = true;
	worker_set_state(d->w, JOB_STATE_ACTIVE);
	if (r == 0)
		r = dest_wait_main(d);
	if (r == 0)
		r = dest_recv(d, TERN__STREAM__STREAM_MSG__BODY_DEVICE, "device state",
			      &dev);
	if (r < 0)
		return r;
	worker_set_state(d->w, JOB_STATE_DEVICE);
	r = dest_join_channels(d, dev->device);
	if (r == 0)
		r = dest_verify(d, dev->device);
	if (r == 0)
		r = dest_load(d, dev->device);
	protobuf_c_message_free_unpacked(&dev->base, NULL);
	m.body_case = TERN__STREAM__STREAM_MSG__BODY_READY;
	m.ready = &ready;
	if (r == 0)
		r = dest_send(d, &m, "Ready");
	if (r == 0)
		r = dest_recv(d, TERN__STREAM__STREAM_MSG__BODY_GO, "Go", &go);
	if (r < 0)
		return r;
	protobuf_c_message_free_unpacked(&go->base, NULL);

	t0 = now_ns();
	r = vmm_link_call(&d->vmm, "Cont", NULL, NULL, 0, NULL, NULL, d->err,
			  sizeof(d->err));
	if (r < 0)
		return dest_refuse(d, -r, "%s", d->err);
	d->received = false;            /* the guest runs here now: keep it */
	res.resume_ns = now_ns() - t0;
	pthread_mutex_lock(&d->w->lock);
	d->w->resume_ms = res.resume_ns / 1000000;
	pthread_mutex_unlock(&d->w->lock);
	m.body_case = TERN__STREAM__STREAM_MSG__BODY_RESUMED;
	m.resumed = &res;
	if (dest_send(d, &m, "Resumed") < 0)
		log_warnx("the guest runs here, but the source was not told so");
	return 0;
}

static void dest_abort(struct worker *w, void *arg)
{
	struct dest *d = arg;
	unsigned int i;

	chan_abort_fd(d->main_fd);
	for (i = 0; i < STREAM_MAX_CHANNELS; i++)
		chan_abort_fd(d->chan[i].fd);
}

int dest_run(struct worker *w)
{
	struct dest d = { .w = w, .main_fd = -1 };
	char msg[256];
	unsigned int i;
	int r;

	for (i = 0; i < STREAM_MAX_CHANNELS; i++)
		d.chan[i].fd = -1;
	worker_set_abort(w, dest_abort, &d);
	r = dest_vmm(&d);
	if (r == 0)
		r = dest_accept(&d);
	pthread_mutex_lock(&w->lock);
	w->setup_ms = (now_ns() - w->started_ns) / 1000000;
	pthread_mutex_unlock(&w->lock);
	if (r == 0)
		r = dest_receive(&d);
	if (r < 0 && worker_cancelled())
		worker_fail(w, ECANCELED, "cancelled");
	if (r < 0)
		dest_abort(w, &d);
	worker_set_abort(w, NULL, NULL);
	for (i = 0; i < STREAM_MAX_CHANNELS; i++) {
		chan_rx_join(&d.chan[i]);
		if (d.chan[i].fd >= 0)
			close(d.chan[i].fd);
	}
	if (d.main_fd >= 0)
		close(d.main_fd);
	free(d.received_map);
	ram_view_unmap(&d.ram);
	vmm_link_close(&d.vmm);
	if (r < 0 && d.received) {
		if (vmm_link_discard_dest(w->spec->rundir, w->spec->vm, msg,
					  sizeof(msg)) < 0)
			log_warnx("%s", msg);
		worker_note(w, "%s", msg);
	}
	return r;
}
