// SPDX-License-Identifier: GPL-2.0-only
/*
 * The source's connections to the destination (one worker process, its
 * main thread): dialling each one (the main connection, the ram
 * channels, the page link) with its hello and the destination's word on
 * it; the job's layout on the main connection, and the destination's
 * Accept (with whether postcopy can be: source_postcopy_possible) or
 * Refuse; and the main connection's messages both ways: one sent whole,
 * and the destination's next, checked against what was expected, also
 * awaited while the ram channels still deliver pages.  source_run
 * (source.c) calls source_connect at set-up; a postcopy recovery
 * (source_postcopy.c) dials again; the switchover, precopy's settle and
 * postcopy's steps take the main connection's messages.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <linux/sockios.h>

#include "common/log.h"
#include "common/uri.h"
#include "common/util.h"
#include "migd/migd.h"
#include "proto/stream.pb-c.h"

static uint64_t deadline(void)
{
	return deadline_ms(MIGD_IO_TIMEOUT_MS);
}

/* A message on the main connection (whole: source_abort may write too). */
int source_send(struct source *s, const ProtobufCMessage *m)
{
	int r;

	pthread_mutex_lock(&s->main_tx);
	r = stream_msg_send(s->main_fd, m, deadline());
	pthread_mutex_unlock(&s->main_tx);
	return r;
}

/* The same, failing the job with what could not be sent. */
int source_send_named(struct source *s, const ProtobufCMessage *m,
		      const char *what)
{
	int r = source_send(s, m);

	if (r < 0)
		return worker_fail(s->w, r, "sending %s: %s", what, strerror(-r));
	return 0;
}

static const char *conn_name(enum stream_role role)
{
	return role == STREAM_ROLE_MAIN ? "main connection" :
	       role == STREAM_ROLE_RAM ? "ram connection" : "page link";
}

/* The connection source_dial waits on (-1: none), under the job's lock:
 * a timeout's abort shuts it, as a peer that never answers the hello
 * would hold the job MIGD_IO_TIMEOUT_MS past its timeout.  Whether the
 * job was aborted before. */
static bool source_dialing(struct source *s, int fd)
{
	bool aborted;

	pthread_mutex_lock(&s->w->lock);
	s->dialing = fd;
	aborted = s->w->abort_done;
	pthread_mutex_unlock(&s->w->lock);
	return aborted;
}

/* Connect one connection and say hello; returns the fd or -errno. */
int source_dial(struct source *s, const struct uri *u, enum stream_role role,
		uint32_t index)
{
	struct stream_hello h;
	uint32_t status;
	int fd, r;

	/* Aborted meanwhile (a timeout in set-up): not one connection more. */
	if (worker_aborted(s->w))
		return -ECANCELED;
	fd = uri_connect(u, MIGD_IO_TIMEOUT_MS);
	if (fd < 0)
		return worker_fail(s->w, fd, "cannot connect to %s: %s",
				   s->peer, uri_strerror(u, fd));
	if (source_dialing(s, fd)) {
		source_dialing(s, -1);
		close(fd);
		return -ECANCELED;
	}
	chan_tune_socket(fd, role == STREAM_ROLE_RAM);
	stream_hello_init(&h, role, index, s->w->id, s->w->spec->token);
	r = stream_write_full(fd, &h, sizeof(h), deadline());
	if (r == 0)
		r = stream_read_full(fd, &status, 4, deadline());
	source_dialing(s, -1);
	if (r == 0 && le32toh(status)) {
		const unsigned char *b = (const unsigned char *)&status;
		bool text = true, resuming;
		char shown[40];
		int i;

		/* As they came, in hex, and as text when they are ("HTTP"). */
		for (i = 0; i < 4; i++)
			text = text && b[i] >= 0x20 && b[i] < 0x7f &&
			       b[i] != '"' && b[i] != '\'' && b[i] != '\\';
		i = snprintf(shown, sizeof(shown), "%02x %02x %02x %02x",
			     b[0], b[1], b[2], b[3]);
		if (text)
			snprintf(shown + i, sizeof(shown) - i, " ('%.4s')", b);
		status = le32toh(status);
		close(fd);
		/* The peer's word: an errno (1 to 4095), else it is no migd
		 * (an HTTP server) or the answer is damaged. */
		if (status > STREAM_MAX_ERRNO)
			return worker_fail(s->w, EPROTO, "%s answered the %s's "
					   "hello with the bytes %s, not a status: "
					   "no tern migd listens there, or the "
					   "answer was damaged", s->peer,
					   conn_name(role), shown);
		r = -(int)status;
		pthread_mutex_lock(&s->w->lock);
		resuming = s->w->state == JOB_STATE_POSTCOPY_RECOVER;
		pthread_mutex_unlock(&s->w->lock);
		/* A destination job that ended for good, its migd's word
		 * (tombstone.c): no later recovery can succeed. */
		if ((r == -EOWNERDEAD || r == -ECANCELED) && resuming) {
			char kept[320];

			worker_set_unrecoverable(s->w);
			/* (this worker's copy is no guest: what the
			 * destination lacked, since the switch) */
			if (vmm_link_gone(&s->vmm))
				snprintf(kept, sizeof(kept), "; vmm %s had quit "
					 "or died too: the guest is lost",
					 s->w->spec->vm);
			else
				snprintf(kept, sizeof(kept), ", and vmm %s keeps "
					 "the guest as it was at the switch "
					 "('vmmctl cont %s --force' runs it from "
					 "there)", s->w->spec->vm, s->w->spec->vm);
			return worker_fail(s->w, r, "the destination's migd says "
					   "its job ended: %s: " NEVER_RECOVER
					   ".  'migctl cancel %s --force' ends it%s",
					   r == -EOWNERDEAD ?
					   "its vmm quit or died, and the guest "
					   "with it" : "it was cancelled there with "
					   "--force, and the guest given up",
					   s->w->spec->vm, kept);
		}
		return worker_fail(s->w, r, "the destination refused the %s: %s",
				   conn_name(role), r == -EACCES && resuming ?
				   "token mismatch: the migration listening there "
				   "is not this job (recover to where its "
				   "destination job listens: its 'migctl status' "
				   "says)" : r == -EACCES ?
				   "token mismatch" : r == -EBUSY ?
				   "it is busy with another migration, or already "
				   "has this connection (its migd's log says which)" :
				   strerror(-r));
	}
	if (r == -EPIPE || r == -EBADMSG || r == -ECONNRESET) {
		close(fd);
		return worker_fail(s->w, r, "%s closed the connection before it "
				   "answered our hello (%s): no tern migd listens "
				   "there, or it dropped us (its log says why)",
				   s->peer, strerror(-r));
	}
	if (r < 0) {
		close(fd);
		return worker_fail(s->w, r, "%s: no answer to our hello: %s",
				   s->peer, strerror(-r));
	}
	return fd;
}

/*
 * Postcopy places pages 4 KiB at a time: not into RAM of huge pages
 * (vmm --hugepages), neither this host's (whose pages would be served
 * from it) nor the destination's (its Accept says so; dest_present).
 * Such a job stays in precopy: one that may switch by itself (postcopy
 * auto, a timeout's postcopy) fails here, before anything moved, rather
 * than run on without the way out it was given.
 */
static int source_postcopy_possible(struct source *s, const char *dest_why)
{
	struct mig_params p;
	char why[320];

	if (s->ram.huge)
		snprintf(why, sizeof(why), "vmm %s's guest RAM is in 2 MiB huge "
			 "pages (--hugepages)", s->w->spec->vm);
	else if (dest_why && dest_why[0])
		snprintf(why, sizeof(why), "at the destination, %.*s",
			 str_cut(dest_why, 280), dest_why);
	else
		return 0;
	worker_params(s->w, &p);
	if (p.postcopy == POSTCOPY_POLICY_AUTO ||
	    (p.timeout_s && p.timeout_action == TIMEOUT_ACTION_POSTCOPY))
		return worker_fail(s->w, EOPNOTSUPP, "postcopy cannot be: %s; "
				   "start the migration without %s", why,
				   p.postcopy == POSTCOPY_POLICY_AUTO ?
				   "--postcopy auto" : "--timeout-action postcopy");
	worker_no_postcopy(s->w, why);
	return 0;
}

static int source_hello(struct source *s)
{
	Tern__Stream__StreamMsg m = TERN__STREAM__STREAM_MSG__INIT, *reply = NULL;
	Tern__Stream__Hello h = TERN__STREAM__HELLO__INIT;
	Tern__Stream__Region reg[STREAM_MAX_REGIONS], *preg[STREAM_MAX_REGIONS];
	Tern__Migd__Params pp;
	uint8_t ppbuf[256];
	uint64_t t0;
	unsigned int i;
	int r;

	for (i = 0; i < s->ram.n; i++) {
		tern__stream__region__init(&reg[i]);
		reg[i].gpa = s->ram.r[i].gpa;
		reg[i].size = s->ram.r[i].size;
		preg[i] = &reg[i];
	}
	h.vm = (char *)s->w->spec->vm;
	h.channels = s->nchan;
	h.memory = s->ram.pages * STREAM_PAGE;
	h.vcpus = s->vcpus;
	h.n_regions = s->ram.n;
	h.regions = preg;
	h.page_size = STREAM_PAGE;
	/* The job's parameters, so that the destination's status shows them. */
	params_to_proto(&s->w->spec->params, &pp);
	if (tern__migd__params__get_packed_size(&pp) <= sizeof(ppbuf)) {
		h.params.len = tern__migd__params__pack(&pp, ppbuf);
		h.params.data = ppbuf;
	}
	m.body_case = TERN__STREAM__STREAM_MSG__BODY_HELLO;
	m.hello = &h;
	t0 = now_ns();
	r = source_send(s, &m.base);
	if (r == 0)
		r = stream_msg_recv(s->main_fd, &tern__stream__stream_msg__descriptor,
				    4096, deadline(), (ProtobufCMessage **)&reply);
	s->hello_rtt_ns = now_ns() - t0;
	if (r < 0)
		return worker_fail_link(s->w, r, "%s: the destination did not "
					"answer our layout: %s", s->w->spec->peer,
					worker_peer_why(s->w, r, "the destination"));
	worker_heard(s->w, reply);
	if (reply->body_case == TERN__STREAM__STREAM_MSG__BODY_REFUSE &&
	    reply->refuse->cancelled)
		r = worker_fail_cancelled(s->w, "the destination",
					  reply->refuse->migd_ended);
	else if (reply->body_case == TERN__STREAM__STREAM_MSG__BODY_REFUSE)
		r = worker_fail(s->w, stream_peer_errno(reply->refuse->err),
				"the destination refused: %.*s",
				str_cut(reply->refuse->message, 400),
				reply->refuse->message);
	else if (reply->body_case != TERN__STREAM__STREAM_MSG__BODY_ACCEPT)
		r = worker_fail(s->w, EPROTO, "the destination answered our layout "
				"with message %d", reply->body_case);
	else {
		s->dest_answers_ask = reply->accept->answers_postcopy_ask;
		r = source_postcopy_possible(s, reply->accept->no_postcopy);
	}
	protobuf_c_message_free_unpacked(&reply->base, NULL);
	return r;
}

int source_connect(struct source *s)
{
	const struct job_spec *spec = s->w->spec;
	struct uri u;
	unsigned int i;
	int r;

	if (uri_parse(spec->peer, &u) < 0 || u.kind == URI_FILE)
		return worker_fail(s->w, EINVAL, "'%s' is not a tcp: or unix: address",
				   spec->peer);
	/* A test's slow dial (t_precopy_features): the job connects only
	 * once its timeout (or a cancel) has aborted it, a minute at most,
	 * whatever the load: the abort finds no connection to shut. */
	for (i = 0; i < 6000 && fault_active("source-slow-connect") &&
	     !worker_aborted(s->w); i++)
		usleep(10000);
	s->main_fd = source_dial(s, &u, STREAM_ROLE_MAIN, 0);
	if (s->main_fd < 0)
		return s->main_fd;
	r = source_hello(s);
	for (i = 0; r == 0 && i < s->nchan; i++) {
		struct chan_tx *c = &s->chan[i];

		c->w = s->w;
		c->index = i;
		c->ram = &s->ram;
		c->zstd_level = spec->params.compress == COMPRESS_KIND_ZSTD ?
				(int)spec->params.compress_level : 0;
		c->fd = source_dial(s, &u, STREAM_ROLE_RAM, i);
		if (c->fd < 0)
			return c->fd;
		r = chan_tx_start(c);
		if (r < 0)
			return worker_fail(s->w, r, "ram channel %u: cannot start "
					   "its thread: %s", i, strerror(-r));
	}
	/* Dialled now so that a switch to postcopy costs no connection set-up. */
	if (r == 0) {
		s->page_fd = source_dial(s, &u, STREAM_ROLE_PAGE, 0);
		if (s->page_fd < 0)
			return s->page_fd;
	}
	return r;
}

int source_expect(struct source *s, int body, const char *what,
		  Tern__Stream__StreamMsg **ret)
{
	Tern__Stream__StreamMsg *m = NULL;
	uint64_t more_ns = 0;
	int r;

	/* The largest answer is ResumeNeeded's bitmap.  Ready comes after
	 * the destination's verify, which may take far longer than I/O
	 * (and, with TERN_FAULT=source-channel-no-end, a minute later: a
	 * source that does not give up). */
	if (body == TERN__STREAM__STREAM_MSG__BODY_READY)
		more_ns = 2 * s->verify_ms * 1000000ULL +
			  (fault_active("source-channel-no-end") ? 60000000000ULL : 0);
	/* ResumeNeeded comes after the destination's faultd took the new
	 * page link (a Relink, then perhaps an Attach): a faultd that does
	 * not answer is the destination's to name, before this gives up
	 * and blames the network. */
	if (body == TERN__STREAM__STREAM_MSG__BODY_RESUME_NEEDED)
		more_ns = 2 * MIGD_FAULTD_TIMEOUT_MS * 1000000ULL;
	/* (and PostcopyAnswer after its probe of faultd) */
	if (body == TERN__STREAM__STREAM_MSG__BODY_POSTCOPY_ANSWER)
		more_ns = MIGD_FAULTD_PROBE_MS * 1000000ULL;
	r = stream_msg_recv(s->main_fd, &tern__stream__stream_msg__descriptor,
			    s->dirty_bytes + 4096, deadline() + more_ns,
			    (ProtobufCMessage **)&m);
	if (r == -ETIMEDOUT)
		return worker_fail(s->w, r, "the destination sent no %s%s in %llu "
				   "s (its job's status there says what it was "
				   "doing)", what, body ==
				   TERN__STREAM__STREAM_MSG__BODY_READY ? " (its "
				   "word that it loaded the guest's state)" : "",
				   (unsigned long long)
				   ((MIGD_IO_TIMEOUT_MS * 1000000ULL + more_ns) /
				    1000000000ULL));
	if (r < 0)
		return worker_fail_link(s->w, r, "waiting for the destination's "
					"%s: %s", what,
					worker_peer_why(s->w, r, "the destination"));
	worker_heard(s->w, m);
	if ((int)m->body_case == body) {
		if (ret)
			*ret = m;
		else
			protobuf_c_message_free_unpacked(&m->base, NULL);
		return 0;
	}
	if (m->body_case == TERN__STREAM__STREAM_MSG__BODY_REFUSE &&
	    m->refuse->discarded && body == TERN__STREAM__STREAM_MSG__BODY_RESUMED) {
		/* The one answer to Go that lets the guest run here again:
		 * the destination proved it can never run it.  The switch
		 * is undone (source_recover resumes the guest). */
		bool ran;

		pthread_mutex_lock(&s->w->lock);
		s->w->switched = false;
		ran = s->w->source_was_running;
		pthread_mutex_unlock(&s->w->lock);
		r = worker_fail(s->w, stream_peer_errno(m->refuse->err),
				"the destination failed: %.*s; %s",
				str_cut(m->refuse->message, 400), m->refuse->message,
				ran ? "the guest resumes here" : "the guest stays "
				"paused here, as it was when the job stopped it");
	} else if (m->body_case == TERN__STREAM__STREAM_MSG__BODY_REFUSE &&
		   m->refuse->cancelled && body != TERN__STREAM__STREAM_MSG__BODY_RESUMED) {
		r = worker_fail_cancelled(s->w, "the destination",
					  m->refuse->migd_ended);
	} else if (m->body_case == TERN__STREAM__STREAM_MSG__BODY_REFUSE) {
		const char *msg = m->refuse->message;
		/* A verify's words say "here" of the destination: said again
		 * from here, in the error and in verified alike. */
		const char *part = strncmp(msg, "verify", 6) ? NULL :
				   strstr(msg, VERIFY_DIFFERS);
		char said[512];
		bool paused;

		if (part) {
			part += strlen(VERIFY_DIFFERS);
			snprintf(said, sizeof(said), "verify failed: the "
				 "destination's guest RAM differs from the RAM "
				 "here: %.*s", str_cut(part, 300), part);
		} else {
			snprintf(said, sizeof(said), "%.*s", str_cut(msg, 400), msg);
		}
		/* Past the switch, a destination that may still recover has
		 * not failed: it paused, or refused a recovery. */
		pthread_mutex_lock(&s->w->lock);
		paused = s->w->switched && !m->refuse->unrecoverable;
		if (!strncmp(msg, "verify", 6))
			snprintf(s->w->verified, sizeof(s->w->verified), "%.*s",
				 str_cut(said, sizeof(s->w->verified) - 1), said);
		pthread_mutex_unlock(&s->w->lock);
		r = worker_fail_said(s->w, stream_peer_errno(m->refuse->err),
				     "the destination %s: %s", paused ? "said" : "failed",
				     said);
		/* A recovery refused for good: no later one can succeed. */
		if (m->refuse->unrecoverable)
			worker_set_unrecoverable(s->w);
	}
	else
		r = worker_fail(s->w, EPROTO, "the destination sent message %d "
				"instead of its %s", m->body_case, what);
	protobuf_c_message_free_unpacked(&m->base, NULL);
	return r;
}

/* Bytes the ram channels' sockets still hold: not yet taken by the peer. */
static uint64_t source_in_flight(const struct source *s)
{
	uint64_t sum = 0;
	unsigned int i;
	int n;

	for (i = 0; i < s->nchan; i++)
		if (ioctl(s->chan[i].fd, SIOCOUTQ, &n) == 0 && n > 0)
			sum += n;
	return sum;
}

/*
 * Wait for an answer that the destination gives only once its ram
 * channels have delivered what is on its way: a slow link may take
 * longer than MIGD_IO_TIMEOUT_MS, so the wait lasts while those bytes
 * still move.  Once they stopped moving, the destination has
 * MIGD_SWITCH_STALL_MS of its own (it refuses when no page arrives that
 * long; a relay may have taken bytes it did not deliver yet) and
 * MIGD_IO_TIMEOUT_MS more to say so; with verify, also twice what
 * hashing the RAM on both hosts is expected to take (the destination
 * hashes what it holds before it answers).
 */
int source_await(struct source *s, const char *what)
{
	struct pollfd pfd = { .fd = s->main_fd, .events = POLLIN };
	uint64_t quiet, limit, held, seen = UINT64_MAX;
	int r;

	source_verify_estimate(s);      /* verify_ms for the data held now */
	quiet = (MIGD_SWITCH_STALL_MS + MIGD_IO_TIMEOUT_MS +
		 (s->w->spec->params.verify ? 2 * s->verify_ms : 0)) * 1000000ULL;
	limit = now_ns() + quiet;

	for (;;) {
		r = poll_until(&pfd, 1, now_ns() + 200000000ULL);
		if (r > 0)
			return 0;
		if (r != -ETIMEDOUT)
			return worker_fail(s->w, r, "waiting for the destination's "
					   "%s: %s", what, strerror(-r));
		if (worker_cancelled())
			return -ECANCELED;
		held = source_in_flight(s);
		if (held != seen) {
			seen = held;
			limit = now_ns() + quiet;
		} else if (now_ns() > limit) {
			return worker_fail(s->w, ETIMEDOUT, "waiting for the "
					   "destination's %s: no answer, and the "
					   "ram channels moved nothing for %u s",
					   what, (unsigned int)(quiet / 1000000000ULL));
		}
	}
}
