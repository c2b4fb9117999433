// SPDX-License-Identifier: GPL-2.0-only
/*
 * The destination side of a migration (one worker process): its set-up,
 * the main connection, receiving in precopy, the switchover, and the
 * job's end.  worker_main (worker.c) calls dest_run.
 *
 * It first makes sure its vmm is waiting for an incoming guest, and
 * says so to the parent, which only then answers Incoming.  Then it
 * waits on the listening socket the parent bound.  Every connection
 * must start with a valid hello within MIGD_HELLO_TIMEOUT_MS; one that
 * does not (garbage, a wrong token, a stranger) is answered with an
 * error code and closed, noted in the job's status, and the job goes on
 * waiting.  The first valid main connection announces the source's RAM
 * layout, which must be exactly this vmm's; then its ram channels
 * connect.  Pages go straight into the incoming vmm's memfds.  After the
 * device state: load it, answer Ready, and resume the guest only on Go.
 * Any failure before the guest resumes makes the vmm drop what it
 * received (Discard), so it can take a new incoming migration.
 *
 * Accepting the connections, their hellos and the refusals of strangers
 * are dest_conn.c's.  A switch to postcopy (PostcopyDiscard where the
 * device state would come) goes on in dest_postcopy.c.  The three share
 * the job's struct dest; the steps one takes from another (from here:
 * the main connection, the source's layout checked, loading the state
 * and Go) are listed in migd.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "common/bitmap.h"
#include "common/log.h"
#include "common/pbuf.h"
#include "common/ramhash.h"
#include "common/util.h"
#include "migd/migd.h"
#include "proto/stream.pb-c.h"

static int dest_vmm(struct dest *d)
{
	Tern__Vmm__IncomingHold hold = TERN__VMM__INCOMING_HOLD__INIT;
	char by[256];                   /* the vmm keeps up to 255 */
	struct vmm_start st;
	unsigned int i;
	int r;

	r = vmm_link_open(&d->vmm, d->w->spec->rundir, d->w->spec->vm, d->err,
			  sizeof(d->err));
	/* Incoming's caller waits for these calls (dest_run): a vmm that
	 * does not answer is refused in MIGD_IO_TIMEOUT_MS, not 30 s a call. */
	d->vmm.until = deadline_ms(MIGD_IO_TIMEOUT_MS);
	if (r == 0)
		r = vmm_link_status(&d->vmm, &st, d->err, sizeof(d->err));
	if (r == -ETIMEDOUT)
		return worker_fail(d->w, r, "vmm %s did not answer within %d s",
				   d->w->spec->vm, MIGD_IO_TIMEOUT_MS / 1000);
	if (r < 0)
		return worker_fail(d->w, r, "%s", d->err);
	d->vcpus = st.vcpus;
	if (st.state != TERN__VMM__RUN_STATE__RUN_STATE_INCOMING)
		return worker_fail(d->w, EBUSY, "vmm %s is not waiting for an "
				   "incoming guest (start it with --incoming)",
				   d->w->spec->vm);
	/* While this link lasts nobody else loads or starts a guest there:
	 * the operator is told so at once, not the job when its state comes. */
	snprintf(by, sizeof(by), "migd's incoming job for %s (listening on "
		 "%.150s)", d->w->spec->vm, d->w->spec->peer);
	hold.by = by;
	r = vmm_link_call(&d->vmm, "HoldIncoming", &hold.base, NULL, 0, NULL,
			  NULL, d->err, sizeof(d->err));
	if (r < 0)
		return worker_fail(d->w, r, "%s", d->err);
	r = vmm_link_map_ram(&d->vmm, &d->ram, true, d->err,
			     sizeof(d->err));
	if (r < 0)
		return worker_fail(d->w, r, "%s", d->err);
	/* Huge pages are written in place (dest_present): UFFDIO_COPY
	 * would place a whole 2 MiB page at once. */
	r = d->ram.huge ? 0 : ram_place_open(&d->place, &d->ram);
	if (r < 0)
		log_info("first-time pages go by pwrite(): no userfaultfd "
			 "here: %s", strerror(-r));
	d->vmm.until = 0;
	d->layout.nregions = d->ram.n;
	for (i = 0; i < d->ram.n; i++)
		d->layout.size[i] = d->ram.r[i].size;
	pthread_mutex_lock(&d->w->lock);
	d->w->total_bytes = d->ram.pages * STREAM_PAGE;
	pthread_mutex_unlock(&d->w->lock);
	return 0;
}

/* A message on the main connection, whole (dest_abort may write too). */
static int dest_send_main(struct dest *d, Tern__Stream__StreamMsg *m)
{
	int r;

	pthread_mutex_lock(&d->main_tx);
	r = stream_msg_send(d->main_fd, &m->base, deadline_ms(MIGD_IO_TIMEOUT_MS));
	if (r < 0)
		d->refused = true;      /* maybe half a frame: no Refuse after it */
	pthread_mutex_unlock(&d->main_tx);
	return r;
}

/* Send rf on fd, once a connection (main_tx held). */
static void dest_send_refuse_locked(struct dest *d, int fd,
				    Tern__Stream__Refuse *rf, uint64_t deadline)
{
	Tern__Stream__StreamMsg m = TERN__STREAM__STREAM_MSG__INIT;

	m.body_case = TERN__STREAM__STREAM_MSG__BODY_REFUSE;
	m.refuse = rf;
	if (fd >= 0 && !d->refused) {
		stream_msg_send(fd, &m.base, deadline);
		d->refused = true;
	}
}

/* Send a Refuse on fd (once a connection). */
static void dest_send_refuse(struct dest *d, int fd, int err, const char *msg,
			     bool discarded)
{
	Tern__Stream__Refuse rf = TERN__STREAM__REFUSE__INIT;

	rf.err = err;
	rf.message = (char *)msg;
	rf.discarded = discarded;
	rf.unrecoverable = worker_unrecoverable(d->w);
	pthread_mutex_lock(&d->main_tx);
	dest_send_refuse_locked(d, fd, &rf, deadline_ms(1000));
	pthread_mutex_unlock(&d->main_tx);
}

static bool dest_refused(struct dest *d)
{
	bool r;

	pthread_mutex_lock(&d->main_tx);
	r = d->refused;
	pthread_mutex_unlock(&d->main_tx);
	return r;
}

int dest_refuse(struct dest *d, int err, const char *fmt, ...)
{
	char msg[sizeof(d->w->error)];
	va_list ap;
	int r;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* Recorded first: the source closes its connections once it has
	 * this, and a channel's thread that sees its end first would have
	 * the job's error say only that. */
	r = worker_fail(d->w, err, "%s", msg);
	dest_send_refuse(d, d->main_fd, err, msg, false);
	return r;
}

/* The job failed here (say, on a ram channel): tell the source why. */
static int dest_refuse_failed(struct dest *d, int err)
{
	char why[sizeof(d->w->error)];

	/* The source writes why it ended before it closes the channels:
	 * a channel closed under us may have been that. */
	worker_note_refuse(d->w, d->main_fd, 50, "the source");
	pthread_mutex_lock(&d->w->lock);
	str_copy(why, d->w->error[0] ? d->w->error : strerror(err), sizeof(why));
	pthread_mutex_unlock(&d->w->lock);
	return dest_refuse(d, err, "%s", why);
}

/*
 * The source job's parameters, from its hello: what the destination's
 * status shows from then on (it uses none of them).  Checked as a
 * caller's would be; a source that sends none, or some this migd does not
 * understand, leaves the destination showing its migd's defaults.
 */
static void dest_learn_params(struct dest *d, const ProtobufCBinaryData *b)
{
	Tern__Migd__Params *pp;
	struct mig_params p;
	char why[256];

	if (!b->len)
		return;
	pp = tern__migd__params__unpack(NULL, b->len, b->data);
	if (!pp) {
		log_info("the source's parameters could not be decoded");
		return;
	}
	if (params_whole(pp, &p, why, sizeof(why)) < 0) {
		log_info("the source's parameters are not understood here: %s", why);
	} else {
		pthread_mutex_lock(&d->w->lock);
		d->w->source_params = p;
		d->w->has_source_params = true;
		pthread_mutex_unlock(&d->w->lock);
	}
	tern__migd__params__free_unpacked(pp, NULL);
}

/* The layout's bound: 10000 regions or more do not fit, nor does a name
 * of 64 KiB (tern-migration(7)). */
#define DEST_HELLO_MAX (64 << 10)

/* The source's layout must be exactly this vmm's. */
int dest_check_hello(struct dest *d)
{
	Tern__Stream__StreamMsg *m = NULL;
	Tern__Stream__StreamMsg ok = TERN__STREAM__STREAM_MSG__INIT;
	Tern__Stream__Accept acc = TERN__STREAM__ACCEPT__INIT;
	const Tern__Stream__Hello *h;
	char no_faultd[PATH_MAX + 160];
	unsigned int i;
	int r;

	r = stream_msg_recv(d->main_fd, &tern__stream__stream_msg__descriptor,
			    DEST_HELLO_MAX, deadline_ms(MIGD_IO_TIMEOUT_MS),
			    (ProtobufCMessage **)&m);
	if (r == -EMSGSIZE)
		return worker_fail(d->w, r, "the source's layout, its first "
				   "message, is over the %d KiB it may have",
				   DEST_HELLO_MAX >> 10);
	if (r == -ETIMEDOUT)
		return worker_fail(d->w, r, "the source sent no layout within "
				   "%d s", MIGD_IO_TIMEOUT_MS / 1000);
	if (r < 0)
		return worker_fail(d->w, r, "the source sent no layout: %s",
				   strerror(-r));
	if (m->body_case == TERN__STREAM__STREAM_MSG__BODY__NOT_SET) {
		r = dest_refuse(d, EPROTO, "the source's first message was "
				"empty, or of a kind this version does not know: "
				"expected its layout");
		goto out;
	}
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
	if (h->page_size != STREAM_PAGE) {
		r = dest_refuse(d, EINVAL, "the source's pages are of %u bytes, "
				"this host's of %u", h->page_size, STREAM_PAGE);
		goto out;
	}
	if (h->n_regions != d->ram.n || h->memory != d->ram.pages * STREAM_PAGE) {
		char smem[32], dmem[32], arg[32], hint[64] = "";

		/* The size is what an operator sets; regions follow from it. */
		if (h->memory != d->ram.pages * STREAM_PAGE)
			snprintf(hint, sizeof(hint), " (start the destination vmm "
				 "with --memory %s)",
				 fmt_size_arg(h->memory, arg, sizeof(arg)));
		r = dest_refuse(d, EINVAL, "the source's guest has %s of RAM in "
				"%zu region%s, vmm %s here has %s in %u%s",
				fmt_size(h->memory, smem, sizeof(smem)),
				h->n_regions, h->n_regions == 1 ? "" : "s",
				d->w->spec->vm,
				fmt_size(d->ram.pages * STREAM_PAGE, dmem,
					 sizeof(dmem)), d->ram.n, hint);
		goto out;
	}
	for (i = 0; i < d->ram.n; i++)
		if (h->regions[i]->gpa != d->ram.r[i].gpa ||
		    h->regions[i]->size != d->ram.r[i].size) {
			r = dest_refuse(d, EINVAL, "RAM region %u differs", i);
			goto out;
		}
	/* Here, not at LoadState: that comes after every page and with the
	 * source guest paused.  0 is a source that does not say. */
	if (h->vcpus && h->vcpus != d->vcpus) {
		r = dest_refuse(d, EINVAL, "the source's guest has %u vCPU%s, "
				"vmm %s here has %u (start the destination "
				"vmm with --vcpus %u)",
				h->vcpus, h->vcpus == 1 ? "" : "s",
				d->w->spec->vm, d->vcpus, h->vcpus);
		goto out;
	}
	d->nchan = h->channels;
	__atomic_store_n(&d->w->nchannels, h->channels, __ATOMIC_RELAXED);
	dest_learn_params(d, &h->params);
	/* What would fail a switch is said now, before a page moved: the
	 * source then fails a job that may switch by itself, and refuses a
	 * request while precopy goes on. */
	if (d->ram.huge)
		acc.no_postcopy = "its guest RAM is in 2 MiB huge pages "
				  "(vmm --hugepages)";
	else if (fault_link_probe(d->w->spec->rundir, false, no_faultd,
				  sizeof(no_faultd)) < 0)
		acc.no_postcopy = no_faultd;
	acc.answers_postcopy_ask = true;
	ok.body_case = TERN__STREAM__STREAM_MSG__BODY_ACCEPT;
	ok.accept = &acc;
	r = dest_send_main(d, &ok);
	if (r < 0)
		worker_fail(d->w, r, "answering the source: %s", strerror(-r));
out:
	protobuf_c_message_free_unpacked(&m->base, NULL);
	return r;
}

/* Wait for the main connection to have a message, watching for a cancel
 * or a failed ram channel meanwhile, and turning other sources away. */
static int dest_wait_main(struct dest *d)
{
	uint64_t limit = 0;
	unsigned int i, ended;
	int r;

	for (;;) {
		if (worker_cancelled())
			return -ECANCELED;
		if (worker_failed(d->w))
			return dest_refuse_failed(d, EIO);
		if (vmm_link_gone(&d->vmm))
			return dest_refuse(d, EPIPE, DEST_VMM_GONE, d->w->spec->vm);
		/* Once every channel ended, the device state follows at once. */
		for (i = 0, ended = 0; i < d->nchan; i++)
			ended += __atomic_load_n(&d->chan[i].ended, __ATOMIC_ACQUIRE);
		if (ended == d->nchan && !limit)
			limit = deadline_ms(MIGD_IO_TIMEOUT_MS);
		if (limit && now_ns() > limit)
			return dest_refuse(d, ETIMEDOUT, "every ram channel ended, but "
					   "no device state came (timed out)");
		r = dest_hellos(d, deadline_ms(200), d->main_fd);
		if (r == 2)
			return 0;
		if (r < 0)
			return r;
	}
}

/*
 * The source asks before a postcopy switch whether this host can take it
 * now: its faultd, there at the hello, may have stopped since, and once
 * the source sent its markers the switch cannot be undone (a failed
 * Attach then failed the whole job).  A refusal leaves the job in
 * precopy; the source may ask again.
 */
static int dest_postcopy_answer(struct dest *d)
{
	Tern__Stream__StreamMsg m = TERN__STREAM__STREAM_MSG__INIT;
	Tern__Stream__PostcopyAnswer a = TERN__STREAM__POSTCOPY_ANSWER__INIT;
	char why[PATH_MAX + 160] = "";

	if (fault_link_probe(d->w->spec->rundir, true, why, sizeof(why)) < 0)
		log_warnx("postcopy refused: %s; the job goes on in precopy", why);
	a.refused = why;
	m.body_case = TERN__STREAM__STREAM_MSG__BODY_POSTCOPY_ANSWER;
	m.postcopy_answer = &a;
	return dest_send(d, &m, "PostcopyAnswer");
}

/* Whether a message with body got answers a wait for body. */
static bool body_fits(int body, int got)
{
	switch (body) {
	case BODY_PRECOPY_NEXT:
		return got == TERN__STREAM__STREAM_MSG__BODY_DEVICE ||
		       got == TERN__STREAM__STREAM_MSG__BODY_POSTCOPY_DISCARD ||
		       got == TERN__STREAM__STREAM_MSG__BODY_SETTLE ||
		       got == TERN__STREAM__STREAM_MSG__BODY_POSTCOPY_ASK;
	case BODY_SWITCH_NEXT:
		return got == TERN__STREAM__STREAM_MSG__BODY_POSTCOPY_STALE ||
		       got == TERN__STREAM__STREAM_MSG__BODY_POSTCOPY;
	default:
		return got == body;
	}
}

int dest_recv(struct dest *d, int body, const char *what,
	      Tern__Stream__StreamMsg **ret)
{
	Tern__Stream__StreamMsg *m = NULL;
	int r;

	r = stream_msg_recv(d->main_fd, &tern__stream__stream_msg__descriptor,
			    STREAM_MSG_MAX, deadline_ms(MIGD_IO_TIMEOUT_MS),
			    (ProtobufCMessage **)&m);
	if (r < 0)
		return worker_fail_link(d->w, r, "waiting for the source's %s: %s",
					what, worker_peer_why(d->w, r, "the source"));
	worker_heard(d->w, m);
	if (m->body_case == TERN__STREAM__STREAM_MSG__BODY_REFUSE &&
	    m->refuse->cancelled) {
		r = worker_fail_cancelled(d->w, "the source",
					  m->refuse->migd_ended);
		protobuf_c_message_free_unpacked(&m->base, NULL);
		return r;
	}
	if (m->body_case == TERN__STREAM__STREAM_MSG__BODY_REFUSE) {
		/* A channel may have failed first, as the source closed it. */
		if (worker_failed(d->w))
			worker_note(d->w, "the source said: %.*s",
				    str_cut(m->refuse->message, 400),
				    m->refuse->message);
		r = worker_fail(d->w, stream_peer_errno(m->refuse->err), "the "
				"source ended the migration: %.*s",
				str_cut(m->refuse->message, 400), m->refuse->message);
		protobuf_c_message_free_unpacked(&m->base, NULL);
		return r;
	}
	if (!body_fits(body, (int)m->body_case)) {
		r = worker_fail(d->w, EPROTO, "the source sent message %d instead "
				"of its %s", m->body_case, what);
		protobuf_c_message_free_unpacked(&m->base, NULL);
		return r;
	}
	*ret = m;
	return 0;
}

/* Pages the ram channels received so far. */
static uint64_t dest_pages_in(const struct dest *d)
{
	uint64_t n = 0;
	unsigned int i;

	for (i = 0; i < d->nchan; i++)
		n += __atomic_load_n(&d->chan[i].pages_total, __ATOMIC_ACQUIRE);
	return n;
}

/*
 * Wait until channel i's thread ends.  The source sends the device state
 * after each channel's last pages and end, so the wait lasts only while
 * pages still arrive (a slow link): a channel that neither ends nor
 * brings a page for MIGD_IO_TIMEOUT_MS, as long as a source waits for
 * Ready, is shut, with every other.  NOPs alone would keep it open for
 * ever, and the job and its vmm with it.
 */
static int dest_join_channel(struct dest *d, unsigned int i)
{
	uint64_t seen = dest_pages_in(d), until, now, n;
	unsigned int k;
	int e;

	until = deadline_ms(MIGD_IO_TIMEOUT_MS);
	while ((e = chan_rx_join_ms(&d->chan[i], 200)) == 1) {
		now = now_ns();
		n = dest_pages_in(d);
		if (n != seen) {
			seen = n;
			until = now + MIGD_IO_TIMEOUT_MS * 1000000ULL;
		} else if (now >= until) {
			e = worker_fail(d->w, ETIMEDOUT, "ram channel %u: no end "
					"and no page for %d s after the device state",
					i, MIGD_IO_TIMEOUT_MS / 1000);
			for (k = 0; k < d->nchan; k++)
				chan_abort_fd(d->chan[k].fd);
			chan_rx_join(&d->chan[i]);
			break;
		}
	}
	return e;
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
		int e = dest_join_channel(d, i);

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

/*
 * The device state rules out a switch to postcopy: a channel that takes
 * a postcopy marker waits for one and no longer reads.  Wake it, and any
 * marker still to come, then join the channels.  The device state may be
 * read here before a channel reads the marker the source sent before it,
 * so only once every channel has stopped is the count of markers known:
 * any at all, and the source's mix is refused by name.
 */
static int dest_end_channels(struct dest *d, const Tern__Stream__DeviceState *dev)
{
	unsigned int markers;
	int r;

	pthread_mutex_lock(&d->pc.lock);
	d->pc.abort = true;
	pthread_cond_broadcast(&d->pc.cond);
	pthread_mutex_unlock(&d->pc.lock);
	r = dest_join_channels(d, dev);
	pthread_mutex_lock(&d->pc.lock);
	markers = d->pc.markers;
	pthread_mutex_unlock(&d->pc.lock);
	if (markers)
		return dest_refuse(d, EPROTO, "the source sent the device state "
				   "after a postcopy marker on %u ram channel%s",
				   markers, markers > 1 ? "s" : "");
	return r;
}

/* Chunk hashes here against the source's (as many): how many differ, and
 * at *gpa the guest-physical address of the first. */
size_t dest_compare(const struct dest *d, const uint64_t *mine,
		    const uint64_t *theirs, size_t n, uint64_t *gpa)
{
	size_t i, bad = 0, first = 0;
	unsigned int k;
	uint64_t c;

	for (i = 0; i < n; i++)
		if (mine[i] != theirs[i] && !bad++)
			first = i;
	for (k = 0, i = first, *gpa = 0; bad && k < d->ram.n; k++) {
		c = ramhash_chunks(d->ram.r[k].size);
		if (i < c) {
			*gpa = d->ram.r[k].gpa + i * RAMHASH_CHUNK;
			break;
		}
		i -= c;
	}
	return bad;
}

/* With verify, the RAM here must hash exactly as the source's did. */
static int dest_verify(struct dest *d, const Tern__Stream__DeviceState *dev)
{
	uint64_t *mine = NULL, gpa;
	size_t n = 0, bad;
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
	bad = dest_compare(d, mine, dev->ram_hashes, n, &gpa);
	free(mine);
	pthread_mutex_lock(&d->w->lock);
	if (bad)
		snprintf(d->w->verified, sizeof(d->w->verified),
			 "%zu of %zu 2 MiB chunks differ, the first at gpa 0x%llx",
			 bad, n, (unsigned long long)gpa);
	else
		snprintf(d->w->verified, sizeof(d->w->verified), "ok");
	pthread_mutex_unlock(&d->w->lock);
	if (bad)
		return dest_refuse(d, EIO, "verify failed: the guest RAM here "
				   VERIFY_DIFFERS "%zu of %zu 2 MiB chunks, "
				   "the first at gpa 0x%llx", bad, n,
				   (unsigned long long)gpa);
	return 0;
}

int dest_load(struct dest *d, const ProtobufCBinaryData *vm_state)
{
	Tern__Vmm__VmState *st;
	int r;

	st = (Tern__Vmm__VmState *)pbuf_unpack(&tern__vmm__vm_state__descriptor,
						 vm_state->len, vm_state->data);
	if (!st)
		return dest_refuse(d, EPROTO, "the device state does not decode");
	r = vmm_link_call(&d->vmm, "LoadState", &st->base, NULL, 0, NULL, NULL,
			  d->err, sizeof(d->err));
	protobuf_c_message_free_unpacked(&st->base, NULL);
	if (r < 0)
		return dest_refuse(d, -r, "%s", d->err);
	return 0;
}

int dest_send(struct dest *d, Tern__Stream__StreamMsg *m, const char *what)
{
	int r = dest_send_main(d, m);

	if (r < 0)
		worker_fail(d->w, r, "sending %s to the source: %s", what,
			    strerror(-r));
	return r;
}

/*
 * The source may stop the guest soon: answer once every page its ram
 * channels carried so far is in place here (what its channels had sent
 * can still sit in the sockets' buffers, megabytes a channel).
 */
static int dest_settle(struct dest *d, const Tern__Stream__Settle *f)
{
	Tern__Stream__StreamMsg m = TERN__STREAM__STREAM_MSG__INIT;
	Tern__Stream__Settled ok = TERN__STREAM__SETTLED__INIT;
	const struct timespec nap = { 0, 100000 };
	uint64_t t0 = now_ns(), have, limit = deadline_ms(
		fault_active("dest-settle-at-once") ? 0 : SETTLE_WAIT_MS);
	unsigned int i;

	if (f->n_channel_pages != d->nchan)
		return dest_refuse(d, EPROTO, "Settle counts %zu ram channels, "
				   "not %u", f->n_channel_pages, d->nchan);
	/* A slow link may hold more than SETTLE_WAIT_MS of data: then the
	 * answer says how much is still on its way. */
	for (i = 0; i < d->nchan; i++) {
		while ((have = __atomic_load_n(&d->chan[i].pages_total,
					       __ATOMIC_ACQUIRE)) < f->channel_pages[i] &&
		       now_ns() < limit) {
			if (worker_cancelled())
				return -ECANCELED;
			if (worker_failed(d->w))
				return dest_wait_main(d);  /* refuses, saying why */
			if (__atomic_load_n(&d->chan[i].ended, __ATOMIC_ACQUIRE))
				return dest_refuse(d, EPROTO, "ram channel %u ended "
						   "after %llu pages, before the %llu "
						   "of Settle", i, (unsigned long long)have,
						   (unsigned long long)f->channel_pages[i]);
			nanosleep(&nap, NULL);
		}
		if (have < f->channel_pages[i])
			ok.pending_pages += f->channel_pages[i] - have;
	}
	ok.wait_ns = now_ns() - t0;
	m.body_case = TERN__STREAM__STREAM_MSG__BODY_SETTLED;
	m.settled = &ok;
	return dest_send(d, &m, "Settled");
}

/*
 * Ready, then resume on Go, then Resumed: from Go on the guest is here
 * and this side never discards it.  Go says whether the guest ran on
 * the source when its job stopped it: if its operator had paused it,
 * the vmm keeps it paused (Stop, which turns the loaded guest from
 * incoming to paused without running it) instead of resuming it.
 */
int dest_go(struct dest *d)
{
	Tern__Stream__StreamMsg m = TERN__STREAM__STREAM_MSG__INIT, *go = NULL;
	Tern__Stream__Ready ready = TERN__STREAM__READY__INIT;
	Tern__Stream__Resumed res = TERN__STREAM__RESUMED__INIT;
	Tern__Vmm__VmmStatus *st = NULL;
	uint64_t t_go, since;
	bool aborted, paused;
	int guest, r;

	/* A ram channel or faultd may have failed since the last look. */
	if (worker_failed(d->w))
		return dest_refuse_failed(d, EIO);
	m.body_case = TERN__STREAM__STREAM_MSG__BODY_READY;
	m.ready = &ready;
	r = dest_send(d, &m, "Ready");
	if (r == 0)
		r = dest_recv(d, TERN__STREAM__STREAM_MSG__BODY_GO, "Go", &go);
	if (r < 0)
		return r;
	/* Hold and release count from here: whatever this side does
	 * before its Cont is the guest's pause, not the network's (the
	 * source halves what is not in hold_ns as the link's two ways). */
	t_go = now_ns();
	guest = go->go->guest;
	protobuf_c_message_free_unpacked(&go->base, NULL);
	paused = guest == TERN__STREAM__GUEST_STATE__GUEST_PAUSED;
	/* The point of no return: a cancel taken before it (its Refuse may
	 * have gone) keeps the guest from resuming; one after is dropped.
	 * So is a Go this side cannot follow: the guest is not started, and
	 * the source hears that it is discarded here. */
	pthread_mutex_lock(&d->w->lock);
	aborted = d->w->abort_done;
	d->w->go_taken = !aborted;
	pthread_mutex_unlock(&d->w->lock);
	/* migd hears it before the Cont, as from the source before its Go:
	 * a cancel is refused from now on, and a death here keeps the
	 * guest's state (jobend.c). */
	if (!aborted)
		worker_report(d->w);
	if (aborted) {
		d->cont_failed = true;
		snprintf(d->err, sizeof(d->err), "the job was cancelled as Go came");
		return worker_fail(d->w, ECANCELED, "cancelled as Go came: the vmm "
				   "did not resume the guest");
	}
	if (!paused && guest != TERN__STREAM__GUEST_STATE__GUEST_RUNNING) {
		d->cont_failed = true;
		snprintf(d->err, sizeof(d->err), "Go asked for guest state %d, "
			 "which this destination does not know", guest);
		return worker_fail(d->w, EPROTO, "%s: the vmm did not resume "
				   "the guest", d->err);
	}

	if (fault_active("dest-slow-cont")) {
		log_info("TERN_FAULT: Go came; Cont in 2 s or more");
		fault_hold(d->w->spec->rundir, "dest-slow-cont", 2000);
	}
	if (fault_active("dest-cont-fails")) {
		r = -EIO;
		snprintf(d->err, sizeof(d->err), "%s not sent (TERN_FAULT=dest-cont-fails)",
			 paused ? "Stop" : "Cont");
	} else {
		r = vmm_link_call(&d->vmm, paused ? "Stop" : "Cont", NULL, NULL, 0,
				  (ProtobufCMessage **)&st, NULL, d->err,
				  sizeof(d->err));
	}
	if (r < 0) {
		/* dest_run answers, once nothing places pages any more
		 * and the vmm has discarded the guest (if it will).  A vmm
		 * older than Stop of a loaded incoming guest refuses it. */
		d->cont_failed = true;
		d->keep_paused = paused;
		return worker_fail(d->w, r, "the vmm did not %s the guest: %s%s",
				   paused ? "keep (paused)" : "resume", d->err,
				   paused && r == -EINVAL ? " (a vmm older than this "
				   "migd cannot keep a migrated guest paused)" : "");
	}
	d->received = false;            /* the guest is here now: keep it */
	res.resume_ns = now_ns() - t_go;
	/* The vmm shares this host's monotonic clock. */
	since = st->state_since_ns;
	protobuf_c_message_free_unpacked(&st->base, NULL);
	res.release_ns = since >= t_go && since - t_go <= res.resume_ns ?
			 since - t_go : res.resume_ns;
	pthread_mutex_lock(&d->w->lock);
	d->w->resume_ms = res.resume_ns / 1000000;
	d->w->switched = true;
	d->w->guest_paused = paused;
	pthread_mutex_unlock(&d->w->lock);
	if (paused)
		log_info("the guest stays paused here, as it was on the source "
			 "(vmmctl cont starts it)");
	res.guest = paused ? TERN__STREAM__GUEST_STATE__GUEST_PAUSED :
			     TERN__STREAM__GUEST_STATE__GUEST_RUNNING;
	m.body_case = TERN__STREAM__STREAM_MSG__BODY_RESUMED;
	m.resumed = &res;
	res.hold_ns = now_ns() - t_go;
	if (dest_send(d, &m, "Resumed") < 0)
		log_warnx("the guest is here, but the source was not told so");
	return 0;
}

/* ---- the job ------------------------------------------------------------- */

/*
 * The pages the RAM holds before anything arrives: none for an ordinary
 * incoming vmm, all of them with vmm --prealloc.  Present pages are
 * received straight into place (a first-time page goes through
 * UFFDIO_COPY, which needs a hole), and at a postcopy switch the needed
 * ones among them are dropped like any stale page.  RAM that is all
 * there was preallocated on purpose, and is kept so: true then.  RAM of
 * huge pages (vmm --hugepages) is all data to SEEK_DATA, and is written
 * in place too: a first write allocates its whole 2 MiB page, and a
 * zero page is written, not punched.
 */
static bool dest_present(struct dest *d)
{
	uint64_t all = 0;
	unsigned int i;

	for (i = 0; i < d->ram.n; i++)
		all += ram_view_mark_data(&d->ram, i, d->received_map);
	if (d->ram.huge)
		log_info("RAM in 2 MiB huge pages: received in place");
	else if (all)
		log_info("%llu of %llu pages already allocated here%s",
			 (unsigned long long)all, (unsigned long long)d->ram.pages,
			 all == d->ram.pages ? " (preallocated): received in place" : "");
	return all == d->ram.pages;
}

static int dest_receive(struct dest *d)
{
	Tern__Stream__StreamMsg *dev = NULL;
	uint64_t t[3];
	unsigned int i;
	bool keep_alloc;
	int r = 0;

	d->received_map = calloc(1, BITMAP_BYTES(d->ram.pages));
	if (!d->received_map)
		return worker_fail(d->w, ENOMEM, "no memory for the received-pages map");
	keep_alloc = dest_present(d);
	for (i = 0; r == 0 && i < d->nchan; i++) {
		d->chan[i].w = d->w;
		d->chan[i].index = i;
		d->chan[i].ram = &d->ram;
		d->chan[i].place = &d->place;
		d->chan[i].layout = d->layout;
		d->chan[i].received = d->received_map;
		d->chan[i].keep_alloc = keep_alloc;
		/* A CPU no channel's thread would use places new pages too;
		 * not by pwrite() (without a uffd), which takes the memfd's
		 * lock: two writers would only wait longer. */
		d->chan[i].share = !keep_alloc && d->place.uffd >= 0 &&
				   i + d->nchan < cpus_usable();
		d->chan[i].pc = &d->pc;
		r = chan_rx_start(&d->chan[i]);
		if (r < 0)
			r = worker_fail(d->w, r, "ram channel %u: cannot start its "
					"thread: %s", i, strerror(-r));
	}
	d->received = true;
	worker_set_state(d->w, JOB_STATE_ACTIVE);
	while (r == 0) {
		r = dest_wait_main(d);
		if (r == 0)
			r = dest_recv(d, BODY_PRECOPY_NEXT, "device state", &dev);
		if (r < 0)
			break;
		if (dev->body_case == TERN__STREAM__STREAM_MSG__BODY_SETTLE)
			r = dest_settle(d, dev->settle);
		else if (dev->body_case == TERN__STREAM__STREAM_MSG__BODY_POSTCOPY_ASK)
			r = dest_postcopy_answer(d);
		else
			break;
		protobuf_c_message_free_unpacked(&dev->base, NULL);
		dev = NULL;
	}
	if (r < 0)
		return r;
	if (dev->body_case == TERN__STREAM__STREAM_MSG__BODY_POSTCOPY_DISCARD) {
		r = dest_postcopy(d, dev->postcopy_discard);
		protobuf_c_message_free_unpacked(&dev->base, NULL);
		return r;
	}
	worker_set_state(d->w, JOB_STATE_DEVICE);
	t[0] = now_ns();
	r = dest_end_channels(d, dev->device);
	t[1] = now_ns();
	if (r == 0)
		r = dest_verify(d, dev->device);
	t[2] = now_ns();
	if (r == 0)
		r = dest_load(d, &dev->device->vm_state);
	protobuf_c_message_free_unpacked(&dev->base, NULL);
	if (r == 0)
		log_info("device state here: the last pages took %llu us more, "
			 "verify %llu us, loading the state %llu us",
			 (unsigned long long)(t[1] - t[0]) / 1000,
			 (unsigned long long)(t[2] - t[1]) / 1000,
			 (unsigned long long)(now_ns() - t[2]) / 1000);
	return r < 0 ? r : dest_go(d);
}

/*
 * Cancelled before the switch (w->lock held): tell the source so before
 * the connections close, unless the main connection is in the middle of
 * a message, so that it says the destination cancelled, not that a
 * connection broke.  After the switch a cancel is not taken (worker.c).
 */
static void dest_tell_cancel(struct dest *d, struct worker *w)
{
	Tern__Stream__Refuse rf = TERN__STREAM__REFUSE__INIT;

	if (!worker_cancelled() || worker_past_switch_locked(w) ||
	    pthread_mutex_trylock(&d->main_tx))
		return;
	rf.err = ECANCELED;
	rf.migd_ended = worker_migd_ended();
	rf.message = rf.migd_ended ? "migd stopped or died" : "cancelled";
	rf.cancelled = true;
	dest_send_refuse_locked(d, d->main_fd, &rf, deadline_ms(200));
	pthread_mutex_unlock(&d->main_tx);
}

/*
 * Paused on request here (w->lock held): the source hears why before
 * the connections close, which it would otherwise take for this
 * worker's death.
 */
static void dest_tell_pause_locked(struct dest *d, struct worker *w)
{
	Tern__Stream__Refuse rf = TERN__STREAM__REFUSE__INIT;

	if (w->cmd != WORKER_CMD_PAUSE || pthread_mutex_trylock(&d->main_tx))
		return;
	rf.err = EINTR;
	rf.message = w->error;
	dest_send_refuse_locked(d, d->main_fd, &rf, deadline_ms(200));
	pthread_mutex_unlock(&d->main_tx);
}

static void dest_abort(struct worker *w, void *arg)
{
	struct dest *d = arg;
	unsigned int i;

	dest_tell_cancel(d, w);
	dest_tell_pause_locked(d, w);
	chan_abort_fd(d->main_fd);
	chan_abort_fd(d->page_fd);
	for (i = 0; i < STREAM_MAX_CHANNELS; i++)
		chan_abort_fd(d->chan[i].fd);
	pthread_mutex_lock(&d->pc.lock);
	d->pc.abort = true;             /* channels waiting at their marker */
	pthread_cond_broadcast(&d->pc.cond);
	pthread_mutex_unlock(&d->pc.lock);
}

/* Drop the broken connections; their channel threads end. */
void dest_drop_links(struct dest *d)
{
	unsigned int i;

	chan_abort_fd(d->main_fd);
	for (i = 0; i < STREAM_MAX_CHANNELS; i++)
		chan_abort_fd(d->chan[i].fd);
	for (i = 0; i < STREAM_MAX_CHANNELS; i++) {
		chan_rx_join(&d->chan[i]);
		if (d->chan[i].fd >= 0)
			close(d->chan[i].fd);
		d->chan[i].fd = -1;
	}
	if (d->main_fd >= 0)
		close(d->main_fd);
	if (d->page_fd >= 0)
		close(d->page_fd);
	d->main_fd = d->page_fd = -1;
	d->nconnected = 0;
}

int dest_run(struct worker *w)
{
	struct dest d = { .w = w, .main_fd = -1, .page_fd = -1, .needed_fd = -1,
			  .listen_fd = w->spec->listen_fd };
	int answer_fd = -1;
	bool discarded = false;
	char msg[256], answer[320];
	uint64_t ready;
	unsigned int i;
	int r;

	for (i = 0; i < STREAM_MAX_CHANNELS; i++)
		d.chan[i].fd = -1;
	pthread_mutex_init(&d.main_tx, NULL);
	pthread_mutex_init(&d.pc.lock, NULL);
	pthread_cond_init(&d.pc.cond, NULL);
	d.pc.uffd = -1;
	d.place.uffd = -1;
	/* Where the parent listens for it (a Recover may move it). */
	str_copy(d.listen, w->spec->peer, sizeof(d.listen));
	pthread_mutex_lock(&w->lock);
	str_copy(w->listen, d.listen, sizeof(w->listen));
	pthread_mutex_unlock(&w->lock);
	worker_set_abort(w, dest_abort, &d);
	r = dest_vmm(&d);
	ready = now_ns();
	/* Incoming replies now: its vmm can take the guest, or why not. */
	worker_answer(w, r, NULL);
	if (r == 0)
		r = dest_accept(&d);
	/* Not the wait for a source, which may be hours: the vmm's set-up,
	 * and from the source's hello to its last connection. */
	pthread_mutex_lock(&w->lock);
	w->setup_ms = (ready - w->started_ns +
		       (d.hello_ns ? now_ns() - d.hello_ns : 0)) / 1000000;
	pthread_mutex_unlock(&w->lock);
	if (r == 0)
		r = dest_receive(&d);
	if (r < 0 && worker_cancelled())
		worker_fail(w, ECANCELED, "cancelled");
	/* Whatever failed, the source hears why rather than a bare close
	 * (and this side what the source said, if it said anything). */
	if (r < 0 && !dest_refused(&d) && !d.cont_failed)
		dest_refuse_failed(&d, -r);
	/* A Cont that failed after Go is answered last, on this. */
	if (d.cont_failed) {
		answer_fd = d.main_fd;
		d.main_fd = -1;
	}
	if (r < 0)
		dest_abort(w, &d);
	worker_set_abort(w, NULL, NULL);
	dest_drop_links(&d);
	/* Failed before the guest resumed: faultd lets go of it (the vmm's
	 * Discard below drops its own uffd).  After, faultd keeps serving. */
	if (d.attached && !w->switched &&
	    fault_link_detach_force(&d.fl, w->spec->vm) < 0)
		log_warnx("faultd did not let go of %s", w->spec->vm);
	fault_link_close(&d.fl);
	if (d.pc.uffd >= 0)
		close(d.pc.uffd);
	if (d.needed)
		munmap(d.needed, d.needed_map);
	if (d.hashes_msg)
		protobuf_c_message_free_unpacked(&d.hashes_msg->base, NULL);
	if (d.needed_fd >= 0)
		close(d.needed_fd);
	dest_pending_close_all(&d);
	dest_refusals_flush(&d);
	if (d.own_listen)
		dest_close_listen(&d);
	else if (d.listen_fd >= 0)
		close(d.listen_fd);     /* the parent's: it unlinks its path */
	free(d.received_map);
	/* The RAM's two mappings stay, the worker's, as at the source
	 * (source_run): the exit unmaps them after the final report (50 ms
	 * for 2 GiB here). */
	worker_keep_ram(w, &d.ram, &d.place);
	vmm_link_close(&d.vmm);
	if (r < 0 && d.received) {
		discarded = vmm_link_discard_dest(w->spec->rundir, w->spec->vm,
						  msg, sizeof(msg)) == 0;
		if (!discarded)
			log_warnx("%s", msg);
		worker_note(w, "%s", msg);
	}
	if (answer_fd >= 0) {
		/* Only a discard proves the guest will never run here. */
		snprintf(answer, sizeof(answer), "the vmm did not %s the "
			 "guest (%.200s); %s", d.keep_paused ? "keep (paused)" :
			 "resume", d.err, discarded ?
			 "it is discarded here" : "it could not be discarded, "
			 "and may yet run here");
		dest_send_refuse(&d, answer_fd, EIO, answer, discarded);
		close(answer_fd);
	}
	return r;
}
