// SPDX-License-Identifier: GPL-2.0-only
/*
 * The destination side of a migration past a postcopy switch (one worker
 * process): dest_receive (dest.c) calls dest_postcopy when the source
 * sends PostcopyDiscard where the device state would come.
 *
 *  switch:  the needed-pages bitmap goes into a memfd for faultd; once
 *           every ram channel reached its marker, the pages that arrived
 *           and are stale are dropped (again for each PostcopyStale), and
 *           faultd attaches to the guest's uffd (with verify, what is
 *           held here is hashed first); then the device state and the
 *           last pages (Postcopy): load it, answer Ready, resume the guest
 *           on Go (dest.c's steps).
 *  active:  the channels place the pushed pages and faultd the faulted
 *           ones, until none is missing; with verify, what was placed is
 *           compared with the source's hashes; then PostcopyDone, and
 *           faultd and the vmm let go of the uffd.
 *  paused:  a link failed after the guest resumed here: it keeps running
 *           and waits on its missing pages while the job waits for the
 *           source to come back (Resume), on the listening socket or on
 *           one that Recover names.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/bitmap.h"
#include "common/log.h"
#include "common/ramhash.h"
#include "common/uri.h"
#include "common/util.h"
#include "migd/migd.h"
#include "proto/stream.pb-c.h"

/*
 * faultd's session of the guest is gone (fault_link_gone): the guest's
 * page faults wait (the vmm keeps the uffd) until a recovery attaches
 * this job to a faultd again (fault_link_again).
 */
#define DEST_FAULTD_GONE "faultd closed its connection: it stopped or " \
	"restarted, and the page faults of vm %s wait until one runs here " \
	"again; then recover the job (migctl recover, on the source host)"

/* In postcopy: the job verifies (PostcopyDiscard said so). */
static bool verifies(const struct dest *d)
{
	return d->pc.hashes != NULL;
}

/* ---- postcopy ------------------------------------------------------------- */

/* The needed-pages bitmap in a memfd, for faultd; filled from the source's. */
static int dest_needed(struct dest *d, const Tern__Stream__PostcopyDiscard *pc)
{
	uint64_t pages = d->ram.pages;

	if (pc->pages != pages || pc->needed.len != BITMAP_BYTES(pages) ||
	    pc->n_channel_pages != d->nchan)
		return dest_refuse(d, EPROTO, "the postcopy switch describes %llu "
				   "pages in a %zu-byte bitmap and %zu channels; "
				   "this guest has %llu pages and %u channels",
				   (unsigned long long)pc->pages, pc->needed.len,
				   pc->n_channel_pages, (unsigned long long)pages,
				   d->nchan);
	d->needed_bytes = BITMAP_BYTES(pages);
	d->needed_map = pc->verify ? ramhash_shared_size(d->needed_bytes, pages) :
		        d->needed_bytes;
	d->needed_fd = memfd_create("tern-needed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (d->needed_fd < 0 || ftruncate(d->needed_fd, d->needed_map) < 0)
		return worker_fail(d->w, errno, "the needed-pages bitmap: %s",
				   strerror(errno));
	d->needed = mmap(NULL, d->needed_map, PROT_READ | PROT_WRITE, MAP_SHARED,
			 d->needed_fd, 0);
	if (d->needed == MAP_FAILED) {
		d->needed = NULL;
		return worker_fail(d->w, errno, "the needed-pages bitmap: %s",
				   strerror(errno));
	}
	memcpy(d->needed, pc->needed.data, d->needed_bytes);
	if (pages % 64)
		d->needed[pages / 64] &= (1ULL << (pages % 64)) - 1;
	d->pc.needed = d->needed;
	if (pc->verify) {
		d->pc.hashes = (uint64_t *)((uint8_t *)d->needed +
					    ramhash_table_offset(d->needed_bytes));
		pthread_mutex_lock(&d->w->lock);
		snprintf(d->w->verified, sizeof(d->w->verified), "not checked "
			 "yet: the job switched to postcopy, checked when it "
			 "completes");
		pthread_mutex_unlock(&d->w->lock);
	}
	return 0;
}

/* Bits of needed word i: atomic, and only words that change (channels
 * may place pages since dest_attach: a source should send none before
 * Go, but may). */
static void needed_or(struct dest *d, uint64_t i, uint64_t w)
{
	uint64_t pages = d->ram.pages;

	if (i + 1 == BITMAP_WORDS(pages) && pages % 64)
		w &= (1ULL << (pages % 64)) - 1;
	if (w)
		__atomic_fetch_or(&d->needed[i], w, __ATOMIC_RELAXED);
}

/*
 * The pages dirtied on the source since the last discard: a bitmap, or
 * its non-zero words as (index, word) pairs, all checked before any is
 * used.
 */
static int dest_needed_more(struct dest *d, const ProtobufCBinaryData *more,
			    const uint64_t *words, size_t n_words)
{
	uint64_t n = BITMAP_WORDS(d->ram.pages), i;
	size_t k;

	if (more->len) {
		if (more->len != d->needed_bytes || n_words)
			return dest_refuse(d, EPROTO, "the postcopy switch has a "
					   "%zu-byte bitmap%s, not %zu bytes", more->len,
					   n_words ? " and words" : "", d->needed_bytes);
		for (i = 0; i < n; i++)
			needed_or(d, i, ((const uint64_t *)more->data)[i]);
		return 0;
	}
	if (n_words % 2)
		return dest_refuse(d, EPROTO, "the postcopy switch has %zu bitmap "
				   "words, not (index, word) pairs", n_words);
	for (k = 0; k < n_words; k += 2)
		if (words[k] >= n || (k && words[k] <= words[k - 2]))
			return dest_refuse(d, EPROTO, "the postcopy switch has "
					   "bitmap word %llu after %lld, of %llu",
					   (unsigned long long)words[k],
					   k ? (long long)words[k - 2] : -1LL,
					   (unsigned long long)n);
	for (k = 0; k < n_words; k += 2)
		needed_or(d, words[k], words[k + 1]);
	return 0;
}

/*
 * Pages the channels carried so far (published per packet), or -EPROTO
 * with *over set when one carried more than the source says it sent
 * before its marker.
 */
static int64_t dest_carried(const struct dest *d,
			    const Tern__Stream__PostcopyDiscard *pc,
			    unsigned int *over)
{
	uint64_t sum = 0, n;
	unsigned int i;

	for (i = 0; i < d->nchan; i++) {
		n = __atomic_load_n(&d->chan[i].pages_total, __ATOMIC_ACQUIRE);
		if (n > pc->channel_pages[i]) {
			*over = i;
			return -EPROTO;
		}
		sum += n;
	}
	return (int64_t)sum;
}

/*
 * Every channel delivered its precopy pages up to its marker.  What the
 * sockets held when the source queued the markers may take long over a
 * slow link, so the wait has no fixed end: it fails when no page came
 * for MIGD_SWITCH_STALL_MS (a channel whose connection moves nothing
 * fails on its own before, naming itself), and at once when a channel
 * carries more than the source counted.
 */
static int dest_wait_markers(struct dest *d, const Tern__Stream__PostcopyDiscard *pc)
{
	/* (dest-short-switch-stall: a test of this refusal need not wait
	 * the real 25 s) */
	unsigned int stall_ms = fault_active("dest-short-switch-stall") ?
				3000 : MIGD_SWITCH_STALL_MS;
	uint64_t limit = deadline_ms(stall_ms);
	int64_t seen = -1, now_pages;
	unsigned int i, over = 0;
	int r = 0;

	pthread_mutex_lock(&d->pc.lock);
	while (d->pc.markers < d->nchan && r == 0) {
		cond_wait_ms(&d->pc.cond, &d->pc.lock, 100);
		if (d->pc.markers == d->nchan)
			break;
		/* Not under pc.lock: a failure takes w->lock, then
		 * pc.lock (dest_abort). */
		pthread_mutex_unlock(&d->pc.lock);
		if (worker_failed(d->w) || worker_cancelled())
			r = -EIO;
		else if ((now_pages = dest_carried(d, pc, &over)) < 0)
			r = -EPROTO;
		else if (now_pages != seen) {
			seen = now_pages;
			limit = deadline_ms(stall_ms);
		} else if (now_ns() > limit)
			r = -ETIMEDOUT;
		pthread_mutex_lock(&d->pc.lock);
	}
	pthread_mutex_unlock(&d->pc.lock);
	if (r == -ETIMEDOUT)
		return dest_refuse(d, ETIMEDOUT, "only %u of %u ram channels "
				   "reached the postcopy switch, and no page came "
				   "for %u s", d->pc.markers, d->nchan,
				   stall_ms / 1000);
	if (r == -EPROTO)
		return dest_refuse(d, EPROTO, "ram channel %u carried more pages "
				   "before the switch than the %llu the source sent",
				   over, (unsigned long long)pc->channel_pages[over]);
	for (i = 0; r == 0 && i < d->nchan; i++)
		if (d->chan[i].marker_pages != pc->channel_pages[i])
			r = dest_refuse(d, EPROTO, "ram channel %u carried %llu pages "
					"before the switch, the source sent %llu", i,
					(unsigned long long)d->chan[i].marker_pages,
					(unsigned long long)pc->channel_pages[i]);
	return r;
}

/*
 * A needed page that arrived in precopy is stale: drop it, so that the
 * guest's first touch faults and gets the current one.  Runs of pages
 * become one fallocate each.
 */
static bool stale(const struct dest *d, uint64_t p)
{
	return bitmap_test(d->needed, p) && bitmap_test(d->received_map, p);
}

/* The first stale page at or after p (a word at a time), or pages. */
static uint64_t next_stale(const struct dest *d, uint64_t p)
{
	uint64_t w;

	while (p < d->ram.pages) {
		w = d->needed[p / 64] & d->received_map[p / 64] & (~0ULL << (p % 64));
		if (w)
			return MIN(p / 64 * 64 + __builtin_ctzll(w), d->ram.pages);
		p = (p / 64 + 1) * 64;
	}
	return d->ram.pages;
}

static int dest_punch_stale(struct dest *d)
{
	uint64_t p = 0, start, n;
	unsigned int reg;

	for (;;) {
		p = next_stale(d, p);
		if (p >= d->ram.pages)
			return 0;
		reg = 0;
		while (reg + 1 < d->ram.n && p >= d->ram.first_page[reg + 1])
			reg++;
		start = p;
		while (p < d->ram.pages && stale(d, p) &&
		       (reg + 1 >= d->ram.n || p < d->ram.first_page[reg + 1]))
			p++;
		n = p - start;
		if (fallocate(d->ram.r[reg].fd, FALLOC_FL_PUNCH_HOLE |
			      FALLOC_FL_KEEP_SIZE,
			      (start - d->ram.first_page[reg]) * STREAM_PAGE,
			      n * STREAM_PAGE) < 0)
			return worker_fail(d->w, errno, "dropping stale pages: %s",
					   strerror(errno));
		/* Channel threads set bits of these words meanwhile. */
		bitmap_clear_range_atomic(d->received_map, start, n);
	}
}

/*
 * faultd takes the job.  Its socket may be gone for a moment since the
 * source's ask (a restart: systemctl restart faultd), or faultd may go
 * in the middle of the Attach (a crash, a restart just then): the guest
 * still runs on the source, and the switch waits for a new one up to
 * DEST_FAULTD_BACK_MS rather than fail the migration.  A vmm that made
 * its uffd for the faultd that went answers a new UffdCreate EBUSY:
 * the new faultd then takes that uffd, as after a restart in postcopy
 * (Attach again; no vCPU has faulted on it, the guest not running here
 * yet).
 */
#define DEST_FAULTD_BACK_MS 5000

static int dest_attach(struct dest *d)
{
	static const char lost_why[] = "faultd closed its connection during Attach";
	char job[2 * STREAM_ID_LEN + 1];
	bool said = false, lost = false, again = false;
	uint64_t until;
	int r;

	/* (a test's hold point: faultd restarted between the ask and this) */
	if (fault_held(d->w->spec->rundir, "dest-attach-held")) {
		log_info("TERN_FAULT: holding before Attach");
		fault_hold(d->w->spec->rundir, "dest-attach-held", 0);
	}
	stream_hex(d->w->id, STREAM_ID_LEN, job);
	until = deadline_ms(DEST_FAULTD_BACK_MS);
	for (;;) {
		r = fault_link_open(&d->fl, d->w->spec->rundir, d->err,
				    sizeof(d->err));
		if (r == 0)
			r = fault_link_attach(&d->fl, d->w->spec->vm, job,
					      d->ram.pages, d->page_fd,
					      d->needed_fd, &d->ram, &d->pc,
					      again, d->err, sizeof(d->err));
		if (r == 0 || now_ns() > until || worker_failed(d->w) ||
		    worker_cancelled())
			break;
		if (r == -EBUSY && lost && !again) {
			/* The uffd the one that went had the vmm make. */
			log_info("the vmm kept the userfaultfd it made for the "
				 "faultd that went: the new one takes it");
			again = true;
		} else if (r == -ENOENT || r == -ECONNREFUSED ||
			   fault_link_gone(&d->fl)) {
			lost = lost || fault_link_gone(&d->fl);
			if (!said)
				log_warnx("%s; waiting up to %d s for one (a restart)",
					  fault_link_gone(&d->fl) ? lost_why : d->err,
					  DEST_FAULTD_BACK_MS / 1000);
			said = true;
			usleep(100000);
		} else {
			break;
		}
		fault_link_close(&d->fl);
	}
	if (r < 0 && said)
		return dest_refuse(d, -r, "%s (after %s; waited %d s for a new "
				   "one)", d->err, lost ? lost_why : "faultd went "
				   "away since it said yes", DEST_FAULTD_BACK_MS / 1000);
	if (r < 0)
		return dest_refuse(d, -r, "%s", d->err);
	d->attached = true;
	/* faultd holds the page link now: ours would keep it open after
	 * faultd closed it, and the source would never notice. */
	close(d->page_fd);
	d->page_fd = -1;
	pthread_mutex_lock(&d->pc.lock);
	d->pc.go = true;
	pthread_cond_broadcast(&d->pc.cond);
	pthread_mutex_unlock(&d->pc.lock);
	return 0;
}

/*
 * A link failed after the guest resumed here: it keeps running, and its
 * vCPUs wait on the pages still missing (the vmm and faultd hold the
 * uffd).  Record why; the caller pauses.
 */
static int dest_link_failed(struct dest *d, const char *why)
{
	worker_fail(d->w, EPIPE, "%s", why);
	return -EPIPE;
}

/* ---- postcopy recovery ------------------------------------------------ */

void dest_close_listen(struct dest *d)
{
	struct uri u;

	close(d->listen_fd);
	if (uri_parse(d->listen, &u) == 0 && u.kind == URI_UNIX)
		unlink(u.path);
	d->own_listen = false;
}

/* Listen on a new address (recover --listen); the old socket goes.  A
 * failure is the Recover's, said in msg: the job waits where it was. */
static int dest_relisten(struct dest *d, const char *addr, char *msg,
			 size_t len)
{
	char want[sizeof(d->listen)];
	struct uri u;
	int fd;

	if (uri_parse(addr, &u) < 0 || (u.kind != URI_TCP && u.kind != URI_UNIX)) {
		snprintf(msg, len, "recover: '%.200s' is not a tcp: or unix: "
			 "address", addr);
		return -EINVAL;
	}
	/* The address it listens on already: binding it again would fail
	 * on its own socket. */
	if (uri_format(&u, want, sizeof(want)) >= 0 && !strcmp(want, d->listen)) {
		log_info("recover: already listening on %s", d->listen);
		return 0;
	}
	fd = uri_listen_bound(&u, 64);
	if (fd < 0) {
		snprintf(msg, len, "cannot listen on %.200s: %s", addr,
			 strerror(-fd));
		log_warnx("recover: %s; the job waits where it was", msg);
		return fd;
	}
	if (d->own_listen)
		dest_close_listen(d);
	else
		close(d->listen_fd);    /* the parent's: it unlinks its path */
	d->listen_fd = fd;
	d->own_listen = true;
	uri_format(&u, d->listen, sizeof(d->listen));
	pthread_mutex_lock(&d->w->lock);
	snprintf(d->w->listen, sizeof(d->w->listen), "%s", d->listen);
	pthread_mutex_unlock(&d->w->lock);
	log_info("waiting for the source to recover on %s", d->listen);
	return 0;
}

/* faultd takes the new page link: the session's faultd, or, if it is
 * gone (or a recovery found none), the one that runs now, attached
 * again. */
static int dest_fault_link(struct dest *d)
{
	char job[STREAM_ID_LEN * 2 + 1];

	if (d->fl.cl && !fault_link_gone(&d->fl))
		return fault_link_relink(&d->fl, d->w->spec->vm, d->page_fd,
					 d->err, sizeof(d->err));
	stream_hex(d->w->id, STREAM_ID_LEN, job);
	d->session_gone = false;
	return fault_link_again(&d->fl, d->w, job, d->page_fd, d->needed_fd,
				&d->ram, &d->pc, d->err, sizeof(d->err));
}

/* The source came back (on the main connection dest_hellos took): its
 * Resume, its channels, then the handshake.  0 when the job is active
 * again. */
static int dest_resume(struct dest *d)
{
	Tern__Stream__StreamMsg *rm = NULL, *ack = NULL;
	Tern__Stream__StreamMsg m = TERN__STREAM__STREAM_MSG__INIT;
	Tern__Stream__ResumeNeeded rn = TERN__STREAM__RESUME_NEEDED__INIT;
	unsigned int i;
	int r;

	worker_new_links(d->w);
	d->err[0] = 0;                  /* the pause's reason is told */
	pthread_mutex_lock(&d->main_tx);
	d->refused = false;             /* a new main connection */
	pthread_mutex_unlock(&d->main_tx);
	worker_leave_pause(d->w, JOB_STATE_POSTCOPY_RECOVER);
	r = dest_recv(d, TERN__STREAM__STREAM_MSG__BODY_RESUME, "Resume", &rm);
	if (r < 0)
		return r;
	/* The channels were set up for the job's count (dest_receive):
	 * a recovery reopens those, no more. */
	if (rm->resume->channels != d->nchan)
		r = dest_refuse(d, EINVAL, "Resume with %u ram channels; the job "
				"has %u", rm->resume->channels, d->nchan);
	protobuf_c_message_free_unpacked(&rm->base, NULL);
	if (r == 0)
		r = dest_accept(d);
	pthread_mutex_lock(&d->pc.lock);
	d->pc.ended = 0;
	pthread_mutex_unlock(&d->pc.lock);
	for (i = 0; r == 0 && i < d->nchan; i++) {
		struct chan_rx *c = &d->chan[i];

		c->err = 0;
		c->ended = false;
		c->pages_total = 0;
		c->postcopy = true;     /* no marker on a recovered channel */
		r = chan_rx_start(c);
		if (r < 0)
			snprintf(d->err, sizeof(d->err), "ram channel %u: cannot "
				 "start its thread: %s", i, strerror(-r));
	}
	/* (A faultd that answers later does not bring the job back by
	 * itself: the recovery needs it.) */
	if (r == 0 && (r = dest_fault_link(d)) < 0)
		return dest_refuse(d, -r, "%s%s", d->err, r == -ETIMEDOUT ?
				   ", then recover again (migctl recover, on the "
				   "source host)" : "");
	if (r < 0)
		return worker_fail(d->w, r, "%s", d->err[0] ? d->err : strerror(-r));
	close(d->page_fd);              /* faultd's now, as after Attach */
	d->page_fd = -1;
	rn.pages = d->ram.pages;
	rn.needed.data = (uint8_t *)d->needed;
	rn.needed.len = d->needed_bytes;
	m.body_case = TERN__STREAM__STREAM_MSG__BODY_RESUME_NEEDED;
	m.resume_needed = &rn;
	r = dest_send(d, &m, "ResumeNeeded");
	if (r == 0)
		r = dest_recv(d, TERN__STREAM__STREAM_MSG__BODY_RESUME_ACK, "ResumeAck",
			      &ack);
	if (r < 0)
		return r;
	protobuf_c_message_free_unpacked(&ack->base, NULL);
	return 0;
}

/* The job's error says so, once: the reason it paused led to this. */
static void dest_note_session_gone(struct dest *d)
{
	/* (A guest gone with its vmm says more: no recovery can come.) */
	if (d->session_gone || !fault_link_gone(&d->fl) ||
	    worker_unrecoverable(d->w))
		return;
	d->session_gone = true;
	worker_clear_failure(d->w);
	worker_fail(d->w, EPIPE, DEST_FAULTD_GONE, d->w->spec->vm);
	worker_report(d->w);
}

/* The source hears why the job paused here, while the main connection
 * is there (a link cut is not; faultd's end, a Stats timeout are):
 * otherwise it would see only a closed connection. */
static void dest_tell_pause(struct dest *d)
{
	char why[sizeof(d->w->error)];

	pthread_mutex_lock(&d->w->lock);
	str_copy(why, d->w->error, sizeof(why));
	pthread_mutex_unlock(&d->w->lock);
	if (why[0])
		dest_refuse(d, EPIPE, "%s", why);
}

/*
 * postcopy-paused: everything is kept and nothing spins; wait for the
 * source to come back (on the listening socket, or on a new one that
 * Recover names), or for the end of migd.  0 once recovered.
 */
static int dest_postcopy_paused(struct dest *d)
{
	char arg[PATH_MAX], msg[WORKER_ANSWER_MAX];
	uint64_t paused_at;
	int r;

	/* The guest went with the vmm: the source hears it while its main
	 * connection is there, with what is left to do; else it would wait
	 * paused for a recovery that cannot come. */
	if (vmm_link_gone(&d->vmm)) {
		worker_set_unrecoverable(d->w);
		dest_refuse(d, EPIPE, DEST_VMM_GONE ", and the guest with it: "
			    NEVER_RECOVER ".  On the source host, "
			    "cancel the job with --force: its vmm keeps the guest "
			    "as it was at the switch ('vmmctl cont --force' runs "
			    "it from there)", d->w->spec->vm);
	}
	dest_note_session_gone(d);
	dest_tell_pause(d);
	pthread_mutex_lock(&d->w->lock);
	log_warnx("postcopy paused: %s", d->w->error);
	pthread_mutex_unlock(&d->w->lock);
	for (;;) {
		worker_set_state(d->w, JOB_STATE_POSTCOPY_PAUSED);
		dest_drop_links(d);
		d->recovering = true;     /* only this job may come back */
		/* (a test's hold point: Recover looked at 5 s late, or
		 * later while the test holds it, a minute at most) */
		paused_at = now_ns();
		for (r = -EAGAIN; r == -EAGAIN; ) {
			/* No guest left to recover for: that, not why the
			 * job paused (nor a cancel: migd's end says nothing
			 * of a guest), is its end. */
			if (vmm_link_gone(&d->vmm)) {
				worker_clear_failure(d->w);
				worker_set_unrecoverable(d->w);
				return worker_fail(d->w, EPIPE, DEST_VMM_GONE
						   ", and the guest with it: "
						   "nothing to recover",
						   d->w->spec->vm);
			}
			if (worker_cancelled()) {
				bool paused;

				pthread_mutex_lock(&d->w->lock);
				paused = d->w->guest_paused;
				pthread_mutex_unlock(&d->w->lock);
				worker_note(d->w, !worker_abandoned() ?
					    (paused ?
					     "postcopy paused; the guest is here, "
					     "paused as it was on the source, and "
					     "waits for its missing pages" :
					     "postcopy paused; the guest runs here "
					     "and waits for its missing pages") :
					    "cancelled while postcopy was paused: "
					    "the guest here will never get its "
					    "missing pages, and a vCPU that "
					    "touches one waits for good: quit "
					    "this vmm");
				return -ECANCELED;
			}
			dest_note_session_gone(d);
			if (fault_hold_over(d->w->spec->rundir, "dest-slow-recover",
					    paused_at, 5000) &&
			    worker_wait_cmd(d->w, 0, arg, sizeof(arg)) ==
			    WORKER_CMD_RECOVER && arg[0]) {
				r = dest_relisten(d, arg, msg, sizeof(msg));
				/* Recover's reply shows the address bound. */
				worker_report(d->w);
				worker_answer(d->w, r, r < 0 ? msg : NULL);
			}
			/* (a failing poll is retried: the guest here
			 * depends on this job) */
			r = dest_hellos(d, deadline_ms(200), -1);
			/* A cancel taken meanwhile ends the job, above. */
			r = r == 1 && !worker_cancelled() ? dest_resume(d) : -EAGAIN;
		}
		if (r == 0)
			break;
		pthread_mutex_lock(&d->w->lock);
		log_warnx("recovery failed: %s", d->w->error);
		pthread_mutex_unlock(&d->w->lock);
	}
	pthread_mutex_lock(&d->w->lock);
	d->w->pc.recoveries++;
	pthread_mutex_unlock(&d->w->lock);
	worker_set_state(d->w, JOB_STATE_POSTCOPY_ACTIVE);
	log_info("postcopy recovered");
	return 0;
}

/*
 * Verify, step one: every page held here hashed before the guest runs
 * here (the needed ones are holes now; placing them rewrites their
 * hashes).  Outside the pause: the guest still runs on the source.
 */
static int dest_hash_held(struct dest *d)
{
	uint64_t t0 = now_ns();
	int r;

	r = ram_view_hash_pages(&d->ram, d->pc.hashes);
	if (r < 0)
		return dest_refuse(d, -r, "verify: hashing the RAM here: %s",
				   strerror(-r));
	log_info("verify: the RAM held at the switch hashed in %llu ms",
		 (unsigned long long)((now_ns() - t0) / 1000000));
	return 0;
}

/*
 * Verify, the end: the hashes of what was held at the switch and of each
 * page placed since, folded into chunks, against the stopped source's.
 * The guest has run here all along, so a difference cannot undo the
 * move: it is reported (job status and PostcopyDone) as a failure.
 */
static void dest_postcopy_verify(struct dest *d, char *out, size_t len)
{
	const Tern__Stream__PostcopyHashes *src = d->hashes_msg->postcopy_hashes;
	uint64_t *mine = NULL, gpa;
	size_t n = 0, bad;
	int r;

	/* the channels are joined and faultd detached: every placer's
	 * hashes are written */
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	r = ram_view_fold(&d->ram, d->pc.hashes, &mine, &n);
	if (r < 0)
		snprintf(out, len, "not checked: %s", strerror(-r));
	else if (n != src->n_ram_hashes)
		snprintf(out, len, "failed after the postcopy switch: %zu RAM "
			 "hashes from the source, %zu here", src->n_ram_hashes, n);
	else if ((bad = dest_compare(d, mine, src->ram_hashes, n, &gpa)))
		snprintf(out, len, "failed after the postcopy switch: %zu of %zu "
			 "2 MiB chunks differ, the first at gpa 0x%llx (the guest "
			 "runs on the destination)", bad, n, (unsigned long long)gpa);
	else
		snprintf(out, len, "ok");
	free(mine);
	pthread_mutex_lock(&d->w->lock);
	snprintf(d->w->verified, sizeof(d->w->verified), "%s", out);
	pthread_mutex_unlock(&d->w->lock);
	if (strcmp(out, "ok"))
		log_warnx("verify %s", out);
}

/*
 * In postcopy the source says nothing on the main connection but
 * PostcopyHashes (with verify; kept until compared, the latest after a
 * recovery): 0 when nothing else came within wait_ms, else -EPIPE with
 * d->err saying what did (the connection's end, most often).
 */
static int dest_main_watch(struct dest *d, int wait_ms)
{
	Tern__Stream__StreamMsg *m = NULL;
	int r;

	/* (a failing poll is retried: the guest here depends on this job) */
	if (dest_hellos(d, deadline_ms(wait_ms), d->main_fd) != 2)
		return 0;
	r = stream_msg_recv(d->main_fd, &tern__stream__stream_msg__descriptor,
			    STREAM_MSG_MAX, deadline_ms(MIGD_IO_TIMEOUT_MS),
			    (ProtobufCMessage **)&m);
	if (r == -EPIPE)
		snprintf(d->err, sizeof(d->err), "the source closed the main "
			 "connection");
	else if (r == -ECONNRESET || r == -ECONNABORTED)
		/* (a cut's words on the source are the same) */
		snprintf(d->err, sizeof(d->err), "the main connection was reset "
			 "(%s): the source's worker died, or the network between "
			 "cut it", strerror(-r));
	else if (r < 0)
		snprintf(d->err, sizeof(d->err), "the main connection from the "
			 "source: %s", strerror(-r));
	if (r < 0)
		return -EPIPE;
	if (m->body_case == TERN__STREAM__STREAM_MSG__BODY_POSTCOPY_HASHES) {
		if (d->hashes_msg)
			protobuf_c_message_free_unpacked(&d->hashes_msg->base, NULL);
		d->hashes_msg = m;
		return 0;
	}
	/* A pause on request there, said before its links close: the job's
	 * error (not what broke here as they did), and nothing said back. */
	worker_heard(d->w, m);
	if (m->body_case == TERN__STREAM__STREAM_MSG__BODY_REFUSE) {
		snprintf(d->err, sizeof(d->err), "the source said: %.*s",
			 str_cut(m->refuse->message, 400), m->refuse->message);
		worker_fail_said(d->w, EPIPE, "%s", d->err);
		pthread_mutex_lock(&d->main_tx);
		d->refused = true;
		pthread_mutex_unlock(&d->main_tx);
	} else {
		snprintf(d->err, sizeof(d->err), "the source sent message %d "
			 "during postcopy", m->body_case);
	}
	protobuf_c_message_free_unpacked(&m->base, NULL);
	return -EPIPE;
}

/* Until every needed page is placed and every channel ended. */
static int dest_postcopy_run(struct dest *d)
{
	Tern__Faultd__SessionState st;
	uint64_t left;
	unsigned int ended;
	int r;

	for (;;) {
		r = fault_link_stats(&d->fl, d->w, false, &st, d->err,
				     sizeof(d->err));
		/* A faultd that answers again (resumed, or no longer
		 * busy) does not resume the job: the pause needs it. */
		if (r == -ETIMEDOUT)
			return worker_fail(d->w, EPIPE, "%s, then recover the "
					   "job (migctl recover, on the source "
					   "host)", d->err);
		if (r < 0)
			return dest_link_failed(d, d->err);
		if (st != TERN__FAULTD__SESSION_STATE__SESSION_ACTIVE &&
		    st != TERN__FAULTD__SESSION_STATE__SESSION_DONE)
			return dest_link_failed(d, d->err[0] ? d->err :
						"faultd stopped serving faults");
		if (vmm_link_gone(&d->vmm))
			return dest_link_failed(d, "the vmm closed its connection");
		left = bitmap_count(d->needed, d->ram.pages);
		pthread_mutex_lock(&d->pc.lock);
		ended = d->pc.ended;
		pthread_mutex_unlock(&d->pc.lock);
		pthread_mutex_lock(&d->w->lock);
		d->w->pc.pages_pushed = __atomic_load_n(&d->pc.pushed, __ATOMIC_RELAXED);
		d->w->pc.needed_pages = left;
		d->w->remaining_bytes = left * STREAM_PAGE;
		pthread_mutex_unlock(&d->w->lock);
		if (worker_failed(d->w)) {
			pthread_mutex_lock(&d->w->lock);
			snprintf(d->err, sizeof(d->err), "%s", d->w->error);
			pthread_mutex_unlock(&d->w->lock);
			return dest_link_failed(d, d->err);
		}
		if (!left && ended == d->nchan && (!verifies(d) || d->hashes_msg))
			return 0;
		if (dest_main_watch(d, 100) < 0)
			return dest_link_failed(d, d->err);
	}
}

/* Postcopy is complete: faultd (final stats) and the vmm drop the uffd
 * (whichever it is: this job's faultd made it). */
static void dest_let_go(struct dest *d)
{
	Tern__Vmm__UffdOwner any = TERN__VMM__UFFD_OWNER__INIT;

	if (fault_link_stats(&d->fl, d->w, true, NULL, d->err, sizeof(d->err)) < 0)
		log_warnx("%s", d->err);
	d->attached = false;
	if (vmm_link_call(&d->vmm, "UffdRelease", &any.base, NULL, 0, NULL, NULL,
			  d->err, sizeof(d->err)) < 0)
		log_warnx("%s", d->err);
}

int dest_postcopy(struct dest *d, const Tern__Stream__PostcopyDiscard *pd)
{
	Tern__Stream__StreamMsg m = TERN__STREAM__STREAM_MSG__INIT, *pc = NULL;
	Tern__Stream__PostcopyDone done = TERN__STREAM__POSTCOPY_DONE__INIT;
	Tern__Stream__PostcopyDiscarded ack = TERN__STREAM__POSTCOPY_DISCARDED__INIT;
	char verified[sizeof(d->w->verified)] = "";
	unsigned int i;
	bool late;
	int r;

	pthread_mutex_lock(&d->w->lock);
	d->w->postcopy = true;
	pthread_mutex_unlock(&d->w->lock);
	/* Step one, the guest still running on the source. */
	r = dest_needed(d, pd);
	if (r == 0)
		r = dest_wait_markers(d, pd);
	if (r == 0)
		r = dest_punch_stale(d);
	if (r == 0 && verifies(d))
		r = dest_hash_held(d);
	if (r == 0)
		r = dest_attach(d);
	if (r == 0 && fault_active("dest-slow-discard"))
		usleep(300000);
	m.body_case = TERN__STREAM__STREAM_MSG__BODY_POSTCOPY_DISCARDED;
	m.postcopy_discarded = &ack;
	if (r == 0)
		r = dest_send(d, &m, "PostcopyDiscarded");
	/* The pages dirtied since, as long as the source sends them with
	 * the guest still running there; then step two, the pause. */
	while (r == 0) {
		r = dest_recv(d, BODY_SWITCH_NEXT, "postcopy switch", &pc);
		if (r < 0 || pc->body_case == TERN__STREAM__STREAM_MSG__BODY_POSTCOPY)
			break;
		r = dest_needed_more(d, &pc->postcopy_stale->needed,
				     pc->postcopy_stale->needed_words,
				     pc->postcopy_stale->n_needed_words);
		if (r == 0)
			r = dest_punch_stale(d);
		protobuf_c_message_free_unpacked(&pc->base, NULL);
		pc = NULL;
		/* Late here too, but less: the guest dirties a few hundred
		 * pages meanwhile, left for the pause even on a loaded host. */
		if (r == 0 && fault_active("dest-slow-discard"))
			usleep(20000);
		if (r == 0)
			r = dest_send(d, &m, "PostcopyDiscarded");
	}
	if (r < 0)
		return r;
	worker_set_state(d->w, JOB_STATE_DEVICE);
	r = dest_needed_more(d, &pc->postcopy->needed, pc->postcopy->needed_words,
			     pc->postcopy->n_needed_words);
	if (r == 0)
		r = dest_punch_stale(d);
	if (r == 0)
		r = dest_load(d, &pc->postcopy->vm_state);
	protobuf_c_message_free_unpacked(&pc->base, NULL);
	if (r == 0)
		r = dest_go(d);
	if (r < 0)
		return r;
	worker_set_state(d->w, JOB_STATE_POSTCOPY_ACTIVE);
	while ((r = dest_postcopy_run(d)) == -EPIPE) {
		r = dest_postcopy_paused(d);
		if (r < 0)
			return r;
	}
	if (r < 0)
		return r;
	for (i = 0; i < d->nchan; i++)
		chan_rx_join(&d->chan[i]);
	/* The source first (it then drops the page link), then faultd and
	 * the vmm let go of the uffd: no page is missing any more.  With
	 * verify the other way round: faultd's Detach joins its threads, so
	 * the hashes it wrote are all there (a channel that found a page
	 * faultd had just placed may have cleared its needed bit before
	 * faultd wrote its hash).  With TERN_FAULT=dest-done-late the other
	 * way round too, and PostcopyDone 300 ms later, as when its segment
	 * is lost on the way. */
	late = fault_active("dest-done-late");
	if (late || verifies(d))
		dest_let_go(d);
	if (late)
		usleep(300000);
	done.pages_pushed = __atomic_load_n(&d->pc.pushed, __ATOMIC_RELAXED);
	pthread_mutex_lock(&d->w->lock);
	done.pages_fetched = d->w->pc.pages_on_demand;
	pthread_mutex_unlock(&d->w->lock);
	if (verifies(d))
		dest_postcopy_verify(d, verified, sizeof(verified));
	done.verified = verified;
	m.body_case = TERN__STREAM__STREAM_MSG__BODY_POSTCOPY_DONE;
	m.postcopy_done = &done;
	if (dest_send(d, &m, "PostcopyDone") < 0)
		log_warnx("the guest is complete here, but the source was not told");
	if (!late && !verifies(d))
		dest_let_go(d);
	log_info("postcopy completed: %llu pages pushed, %llu on demand",
		 (unsigned long long)done.pages_pushed,
		 (unsigned long long)done.pages_fetched);
	return 0;
}
