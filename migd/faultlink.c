// SPDX-License-Identifier: GPL-2.0-only
/*
 * The destination worker's link to faultd (faultd(8)): Attach hands it
 * the page link and the needed-pages bitmap and gets back a duplicate of
 * the userfaultfd (to place pushed pages) with the regions' addresses in
 * the vmm; Stats feeds the job's postcopy figures; Detach ends it.  A
 * faultd that stopped or restarted past the switch is attached again at
 * the next recovery (fault_link_again): the vmm kept the uffd, and the
 * bitmap is ours.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "migd/migd.h"
#include "proto/faultd.pb-c.h"

int fault_link_open(struct fault_link *f, const char *rundir, char *err,
		    size_t len)
{
	char path[PATH_MAX + 16];
	int r;

	snprintf(path, sizeof(path), "%s/faultd.sock", rundir);
	r = rpc_client_connect_path(path, MIGD_FAULTD_TIMEOUT_MS, &f->cl);
	if (r < 0)
		snprintf(err, len, "cannot reach faultd at %s/faultd.sock (is it "
			 "running?): %s", rundir, strerror(-r));
	return r;
}

void fault_link_close(struct fault_link *f)
{
	if (f->cl)
		rpc_client_free(f->cl);
	f->cl = NULL;
}

static int fault_call(struct fault_link *f, const char *method,
		      const ProtobufCMessage *arg, const int *fds, size_t nfds,
		      ProtobufCMessage **ret, struct rpc_result *res, char *err,
		      size_t len)
{
	struct rpc_result own;
	char who[160];
	int ms, r;

	if (!f->cl) {
		snprintf(err, len, "faultd: %s: not connected", method);
		return -ENOTCONN;
	}
	if (!res)
		res = &own;
	ms = f->timeout_ms ? f->timeout_ms : MIGD_FAULTD_TIMEOUT_MS;
	r = rpc_client_call(f->cl, &tern__faultd__faultd__descriptor, method, arg,
			    fds, nfds, ret, res, ms, NULL, NULL);
	if (r == -ETIMEDOUT && proc_stopped_say(rpc_client_peer_pid(f->cl),
						"faultd", who, sizeof(who)))
		snprintf(err, len, "faultd: %s: no answer in %d s: %s", method,
			 ms / 1000, who);
	else if (r < 0)
		snprintf(err, len, "faultd: %s: %.*s", method,
			 str_cut(res->message, 160), res->message);
	if (res == &own)
		rpc_result_close_fds(res);
	return r;
}

int fault_link_probe(const char *rundir, bool call, char *why, size_t len)
{
	Tern__Faultd__Empty q = TERN__FAULTD__EMPTY__INIT;
	Tern__Faultd__SessionList *l = NULL;
	struct fault_link f = { .timeout_ms = MIGD_FAULTD_PROBE_MS };
	char err[PATH_MAX + 96];
	int r;

	r = fault_link_open(&f, rundir, err, sizeof(err));
	if (r < 0)
		snprintf(why, len, "no faultd runs there (%s/faultd.sock: %s; "
			 "start faultd(8) there first)", rundir, strerror(-r));
	/* One stopped by a signal is said at once, not after the call's
	 * wait: the source waits for this answer, and sends nothing
	 * meanwhile. */
	else if (call && proc_stopped_say(rpc_client_peer_pid(f.cl), "faultd",
					  err, sizeof(err))) {
		snprintf(why, len, "%s", err);
		r = -EAGAIN;
	} else if (call && (r = fault_call(&f, "List", &q.base, NULL, 0,
					   (ProtobufCMessage **)&l, NULL, err,
					   sizeof(err))) < 0)
		snprintf(why, len, "%s", err);
	if (l)
		protobuf_c_message_free_unpacked(&l->base, NULL);
	fault_link_close(&f);
	return r;
}

bool fault_link_gone(const struct fault_link *f)
{
	return f->cl && rpc_client_hung_up(f->cl);
}

int fault_link_attach(struct fault_link *f, const char *vm, const char *job,
		      uint64_t pages, int page_fd, int needed_fd,
		      const struct ram_view *ram, struct pc_place *pc, bool again,
		      char *err, size_t len)
{
	Tern__Faultd__AttachRequest req = TERN__FAULTD__ATTACH_REQUEST__INIT;
	Tern__Faultd__AttachReply *rep = NULL;
	struct rpc_result res;
	int fds[2] = { page_fd, needed_fd };
	unsigned int i;
	bool first;
	int r;

	req.vm = (char *)vm;
	req.job = (char *)job;
	req.pages = pages;
	req.prefetch = 0;
	req.hashes = pc->hashes != NULL;
	req.again = again;
	r = fault_call(f, "Attach", &req.base, fds, 2, (ProtobufCMessage **)&rep,
		       &res, err, len);
	if (r < 0)
		return r;
	r = -EPROTO;
	if (res.nfds != 1 || rep->n_regions != ram->n) {
		snprintf(err, len, "faultd: Attach: %zu descriptors and %zu regions "
			 "in its answer", res.nfds, rep->n_regions);
		goto out;
	}
	/* Again, the channels place pages at the addresses of the first
	 * Attach, with its uffd, which stays; unless that one's answer
	 * never came (its faultd died in the call): then this uffd, the
	 * one the vmm kept, is ours too. */
	first = !again || pc->uffd < 0;
	for (i = 0; i < ram->n; i++) {
		const Tern__Faultd__Region *g = rep->regions[i];

		if (g->gpa != ram->r[i].gpa || g->size != ram->r[i].size ||
		    g->host % STREAM_PAGE || (!first && g->host != pc->host[i])) {
			snprintf(err, len, "faultd: Attach: region %u differs from "
				 "the vmm's RAM", i);
			goto out;
		}
		if (first)
			pc->host[i] = g->host;
	}
	if (first) {
		pc->uffd = res.fds[0];
		res.fds[0] = -1;
	}
	r = 0;
out:
	rpc_result_close_fds(&res);
	protobuf_c_message_free_unpacked(&rep->base, NULL);
	return r;
}

/* The upper end of the histogram's bucket that holds percentile pct. */
static uint64_t hist_percentile(const uint64_t *hist, unsigned int pct)
{
	uint64_t n = 0, want, seen = 0;
	unsigned int i;

	for (i = 0; i < PC_HIST_BUCKETS; i++)
		n += hist[i];
	want = (n * pct + 99) / 100;
	for (i = 0; i < PC_HIST_BUCKETS; i++)
		if ((seen += hist[i]) >= want)
			break;
	return 2ULL << MIN(i, PC_HIST_BUCKETS - 1);
}

/*
 * Copy faultd's figures into the job's (the caller holds w->lock), on top
 * of those of the sessions before it (w->pc_before: faultd restarted).
 * Counts add up.  The percentiles of remote faults come from faultd's
 * finer buckets while one session has them all; past a restart, from the
 * sum of the power-of-two histograms (a bucket's upper end, at most the
 * maximum).  Those of zero-page faults are the session's with the most.
 */
static void fault_stats_take(struct worker *w, const Tern__Faultd__FaultStats *st)
{
	const Tern__Migd__PostcopyStats *b = &w->pc_before;
	uint64_t seen = w->pc_link_seen;
	size_t i;

	/* What faultd received on the page link is the job's too. */
	__atomic_add_fetch(&w->transferred_bytes, st->link_bytes -
			   (st->link_bytes >= seen ? seen : 0), __ATOMIC_RELAXED);
	w->pc_link_seen = st->link_bytes;

	w->pc.faults = b->faults + st->faults;
	w->pc.remote_faults = b->remote_faults + st->remote_faults;
	w->pc.pages_on_demand = b->pages_on_demand + st->pages_fetched;
	w->pc.latency_max_us = MAX(b->latency_max_us, st->latency_max_us);
	w->pc.blocked_us = b->blocked_us + st->blocked_us;
	w->pc.zero_faults = b->zero_faults + st->zero_faults;
	for (i = 0; i < PC_HIST_BUCKETS; i++)
		w->pc_hist[i] = w->pc_hist_before[i] +
			(i < st->n_latency_hist ? st->latency_hist[i] : 0);
	if (!b->remote_faults) {
		w->pc.latency_p50_us = st->latency_p50_us;
		w->pc.latency_p99_us = st->latency_p99_us;
	} else if (st->remote_faults) {
		/* (at most the maximum, as faultd's own) */
		w->pc.latency_p50_us = MIN(hist_percentile(w->pc_hist, 50),
					   w->pc.latency_max_us);
		w->pc.latency_p99_us = MIN(hist_percentile(w->pc_hist, 99),
					   w->pc.latency_max_us);
	}
	if (st->zero_faults >= b->zero_faults) {
		w->pc.zero_latency_p50_us = st->zero_latency_p50_us;
		w->pc.zero_latency_p99_us = st->zero_latency_p99_us;
	}
}

/* A new faultd session: what the job counted so far is its base. */
static void fault_stats_fold(struct worker *w)
{
	pthread_mutex_lock(&w->lock);
	w->pc_before = w->pc;
	memcpy(w->pc_hist_before, w->pc_hist, sizeof(w->pc_hist_before));
	w->pc_link_seen = 0;
	pthread_mutex_unlock(&w->lock);
}

int fault_link_stats(struct fault_link *f, struct worker *w, bool detach,
		     Tern__Faultd__SessionState *ret_state, char *err, size_t len)
{
	Tern__Faultd__VmQuery q = TERN__FAULTD__VM_QUERY__INIT;
	Tern__Faultd__DetachRequest d = TERN__FAULTD__DETACH_REQUEST__INIT;
	Tern__Faultd__FaultStats *st = NULL;
	int r;

	q.vm = d.vm = (char *)w->spec->vm;
	r = fault_call(f, detach ? "Detach" : "Stats", detach ? &d.base : &q.base,
		       NULL, 0, (ProtobufCMessage **)&st, NULL, err, len);
	if (r < 0)
		return r;
	pthread_mutex_lock(&w->lock);
	fault_stats_take(w, st);
	pthread_mutex_unlock(&w->lock);
	if (ret_state)
		*ret_state = st->state;
	if (st->error[0])
		snprintf(err, len, "faultd: %s", st->error);
	protobuf_c_message_free_unpacked(&st->base, NULL);
	return 0;
}

int fault_link_relink(struct fault_link *f, const char *vm, int page_fd,
		      char *err, size_t len)
{
	Tern__Faultd__RelinkRequest q = TERN__FAULTD__RELINK_REQUEST__INIT;

	q.vm = (char *)vm;
	return fault_call(f, "Relink", &q.base, &page_fd, 1, NULL, NULL, err, len);
}

int fault_link_detach_force(struct fault_link *f, const char *vm)
{
	Tern__Faultd__DetachRequest d = TERN__FAULTD__DETACH_REQUEST__INIT;
	char err[256];

	d.vm = (char *)vm;
	d.force = true;
	return fault_call(f, "Detach", &d.base, NULL, 0, NULL, NULL, err,
			  sizeof(err));
}

int fault_link_again(struct fault_link *f, struct worker *w, const char *job,
		     int page_fd, int needed_fd, const struct ram_view *ram,
		     struct pc_place *pc, char *err, size_t len)
{
	const char *vm = w->spec->vm;
	int r;

	fault_link_close(f);
	r = fault_link_open(f, w->spec->rundir, err, len);
	if (r < 0) {
		snprintf(err, len, "no faultd runs here to serve the guest's page "
			 "faults again (%s/faultd.sock: %s): start faultd(8), then "
			 "recover again", w->spec->rundir, strerror(-r));
		return r;
	}
	/* Only our connection may have gone, its session still there. */
	r = fault_link_relink(f, vm, page_fd, err, len);
	if (r != -ENOENT)
		return r;
	r = fault_link_attach(f, vm, job, ram->pages, page_fd, needed_fd, ram, pc,
			      true, err, len);
	if (r == 0) {
		fault_stats_fold(w);
		log_info("attached again to faultd (pid %d): a former faultd "
			 "served this postcopy", rpc_client_peer_pid(f->cl));
	}
	return r;
}
