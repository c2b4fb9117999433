// SPDX-License-Identifier: GPL-2.0-only
/*
 * faultd's control service, tern.faultd.Faultd (proto/faultd.proto), on
 * RUNDIR/faultd.sock: only root and faultd's own uid may connect
 * (SO_PEERCRED).  Attach checks the caller's descriptors, asks the vmm
 * for its RAM layout and a userfaultfd made with our /dev/userfaultfd
 * (Vmm.UffdCreate), and starts a session (session.c); the other methods
 * look a session up by its VM's name.  Runs on the main thread's event
 * loop.  The vmm calls run in a thread per Attach (struct attach), so a
 * vmm slow to answer (for up to FAULTD_VMM_TIMEOUT_MS in all) delays its
 * own Attach only, never another VM's calls; and its caller hears
 * faultd's own error, naming the call, before it gives up on faultd.
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/bitmap.h"
#include "common/fault.h"
#include "common/log.h"
#include "common/ramhash.h"
#include "common/rpc.h"
#include "common/uri.h"
#include "common/util.h"
#include "faultd/faultd.h"
#include "proto/vmm.pb-c.h"

#define CONTROL_LISTEN_BACKLOG 64
#define SWEEP_MS 1000

/*
 * An Attach at its vmm.  The event loop fills in the request's part and
 * starts the thread; the thread (attach_run) fills in the results; the
 * event loop (attach_finish) then starts the session and finishes the
 * call (attach_session).
 */
struct attach {
	struct bgwork work;
	struct faultd *d;
	struct rpc_call *call;          /* deferred */
	const Tern__Faultd__AttachRequest *a;   /* valid until it is finished */
	char vm[65];
	char rundir[PATH_MAX];          /* the thread uses no struct faultd */
	int devfd;
	uint64_t pages;
	uint64_t token;                 /* our name for the vmm's uffd */
	bool again;                     /* the vmm's uffd exists: shared, never
					 * released by us (AttachRequest.again) */
	int link, bitmap, vmm_pidfd;
	/* the thread's */
	int ret, uffd;
	unsigned int n;
	struct fault_region r[STREAM_MAX_REGIONS];
	char err[640];
};

static void session_unlink(struct faultd *d, struct session *s)
{
	struct session **pp;

	for (pp = &d->sessions; *pp != s; pp = &(*pp)->next)
		;
	*pp = s->next;
}

/* A session whose vmm exited (the guest gone with it): nothing to serve,
 * and no tool left to Detach it.  Dropped, its fault thread and uffd with
 * it; true if it was. */
static bool drop_if_gone(struct faultd *d, struct session *s)
{
	if (!session_vmm_gone(s))
		return false;
	log_info("%s: dropped the session (%s): its vmm has exited", s->vm,
		 session_state_name(s->state));
	session_unlink(d, s);
	session_free(s);
	return true;
}

/* Looked for every SWEEP_MS: before, such a session stayed, a thread and
 * a uffd held, until a new vmm of that name attached. */
static void sweep_gone(evutil_socket_t fd, short what, void *arg)
{
	struct faultd *d = arg;
	struct session *s, *next;

	for (s = d->sessions; s; s = next) {
		next = s->next;
		drop_if_gone(d, s);
	}
}

static struct session *session_find(struct faultd *d, const char *vm)
{
	struct session *s;

	for (s = d->sessions; s; s = s->next)
		if (strcmp(s->vm, vm) == 0)
			return s;
	return NULL;
}

static int lookup(struct rpc_call *call, const char *vm, struct session **ret)
{
	struct faultd *d = rpc_call_ctx(call);

	if (name_valid(vm) < 0)
		return rpc_call_errorf(call, EINVAL, "'%.64s' is not a valid VM name", vm);
	*ret = session_find(d, vm);
	if (!*ret)
		return rpc_call_errorf(call, ENOENT, "no session for VM %s", vm);
	return 0;
}

static int reply_stats(struct rpc_call *call, struct session *s)
{
	Tern__Faultd__FaultStats st = TERN__FAULTD__FAULT_STATS__INIT;
	struct stats_buf buf;

	session_stats(s, &st, &buf);
	return rpc_call_reply(call, &st.base, NULL, 0);
}

/* A connected stream socket: the page link (descriptor i of the call). */
static int take_link(struct rpc_call *call, size_t i, int *ret)
{
	int fd = rpc_call_take_fd(call, i), type = 0;
	socklen_t len = sizeof(type);

	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 ||
	    type != SOCK_STREAM) {
		close(fd);
		return rpc_call_errorf(call, EINVAL,
				       "descriptor %zu (the page link) is not a stream socket", i);
	}
	*ret = fd;
	return 0;
}

/*
 * The needed bitmap: a regular file (memfd) of exactly the right size,
 * sealed against shrinking (we add the seal when the memfd allows it).
 * Unsealed, whoever holds it could truncate it under our mapping, and
 * faultd, serving every VM of the host, would die of SIGBUS.
 */
static int take_bitmap(struct rpc_call *call, size_t i, uint64_t pages,
		       bool hashes, int *ret)
{
	int fd = rpc_call_take_fd(call, i), r;
	uint64_t size = BITMAP_BYTES(pages), has = 0;

	if (hashes)
		size = ramhash_shared_size(size, pages);
	r = fd_check_sealed(fd, true, &has);
	if (r == -EPERM) {
		close(fd);
		return rpc_call_errorf(call, EPERM,
				       "the needed bitmap cannot be sealed against "
				       "shrinking: make it a memfd with MFD_ALLOW_SEALING, "
				       "open for writing");
	}
	if (r < 0) {
		close(fd);
		return rpc_call_errorf(call, EINVAL,
				       "descriptor %zu (the needed bitmap) is not a memfd", i);
	}
	if (has != size) {
		close(fd);
		return rpc_call_errorf(call, EINVAL,
				       "the needed bitmap is %llu bytes; %llu pages need %llu%s",
				       (unsigned long long)has,
				       (unsigned long long)pages,
				       (unsigned long long)size,
				       hashes ? " with their hashes" : "");
	}
	*ret = fd;
	return 0;
}

/*
 * What UffdCreate (or UffdShare) answered must be a userfaultfd (faultd
 * reads and ioctls it) with the features faultd serves (uffdcheck.c),
 * and faultd's reads must not block: the vmm made it and shares its file
 * description (a vmm that clears O_NONBLOCK later makes the kernel answer
 * faultd's poll with an error: the session fails).
 */
static int check_uffd(int fd, const char *vm, const char *method, char *err,
		      size_t len)
{
	char path[64], what[64], why[400];
	ssize_t n;
	int fl, e;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, what, sizeof(what) - 1);
	if (n < 0) {
		e = errno;
		snprintf(err, len, "vmm %s: cannot tell what %s answered "
			 "(%s: %s)", vm, method, path, strerror(e));
		return -e;
	}
	what[n] = 0;
	if (strcmp(what, "anon_inode:[userfaultfd]")) {
		snprintf(err, len, "vmm %s: %s answered a descriptor that "
			 "is not a userfaultfd (%s)", vm, method, what);
		return -EPROTO;
	}
	e = uffd_check_fd(fd, why, sizeof(why));
	if (e < 0) {
		snprintf(err, len, "vmm %s: %s", vm, why);
		return e;
	}
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		e = errno;
		snprintf(err, len, "vmm %s: the userfaultfd: %s", vm, strerror(e));
		return -e;
	}
	return 0;
}

/* The vmm's uffd, if it is still the one we named token; within ms. */
static void vmm_release(const char *rundir, const char *vm, uint64_t token,
			unsigned int ms)
{
	Tern__Vmm__UffdOwner owner = TERN__VMM__UFFD_OWNER__INIT;
	uint64_t until = deadline_ms(ms);
	struct rpc_client *cl;
	char path[PATH_MAX + 80];

	owner.token = token;
	snprintf(path, sizeof(path), "%s/vmm/%s.sock", rundir, vm);
	if (rpc_client_connect_path(path, ms_until(until), &cl) < 0)
		return;
	rpc_client_call(cl, &tern__vmm__vmm__descriptor, "UffdRelease",
			&owner.base, NULL, 0, NULL, NULL, ms_until(until),
			NULL, NULL);
	rpc_client_free(cl);
}

/*
 * The vmm's side of Attach: its layout (GetRam, memfds closed at once)
 * and a uffd registered on its RAM (UffdCreate with our /dev/userfaultfd),
 * named by token.  On success the vmm holds a uffd: the caller undoes it
 * on a later error.  On failure it holds none of ours: a UffdCreate that
 * got no answer carried a deadline, past which the vmm refuses it, and
 * once past it we release what it may have made in time.
 * Again (AttachRequest.again), the uffd the vmm kept (UffdShare): never
 * released here, as the guest runs with pages missing.
 */
#define FAULTD_RELEASE_MS 1000          /* UffdRelease after a bad answer or
					 * none: within the worker's wait */

static int vmm_setup(const char *rundir, int devfd, const char *vm, uint64_t pages,
		     uint64_t token, bool again, struct fault_region *r,
		     unsigned int *ret_n, int *ret_uffd, int *ret_pidfd, char *err,
		     size_t len)
{
	const char *method = again ? "UffdShare" : "UffdCreate";
	uint64_t until = deadline_ms(FAULTD_VMM_TIMEOUT_MS), now;
	Tern__Vmm__RamLayout *lay = NULL;
	Tern__Vmm__UffdInfo *info = NULL;
	Tern__Vmm__Empty empty = TERN__VMM__EMPTY__INIT;
	Tern__Vmm__UffdOwner owner = TERN__VMM__UFFD_OWNER__INIT;
	const ProtobufCServiceDescriptor *svc = &tern__vmm__vmm__descriptor;
	struct rpc_client *cl = NULL;
	struct rpc_result res;
	char path[PATH_MAX + 80];
	uint64_t total = 0;
	size_t i;
	int ret, pid;

	snprintf(path, sizeof(path), "%s/vmm/%s.sock", rundir, vm);
	ret = rpc_client_connect_path(path, ms_until(until), &cl);
	if (ret == -EACCES) {
		snprintf(err, len, "vmm %s: cannot reach %.300s: %s "
			 RPC_VMM_GROUP_HINT("faultd"), vm, path, strerror(-ret));
		return ret;
	}
	if (ret < 0) {
		snprintf(err, len, "no vmm named %s on this host (%.300s: %s)", vm, path,
			 strerror(-ret));
		return -ENOENT;
	}
	ret = rpc_client_call(cl, svc, "GetRam", &empty.base, NULL, 0,
			      (ProtobufCMessage **)&lay, &res, ms_until(until),
			      NULL, NULL);
	rpc_result_close_fds(&res);
	if (ret < 0) {
		snprintf(err, len, "vmm %s: GetRam: %.400s", vm, res.message);
		goto out;
	}
	ret = -EPROTO;
	if (lay->page_size != STREAM_PAGE || !lay->n_regions ||
	    lay->n_regions > STREAM_MAX_REGIONS) {
		snprintf(err, len, "vmm %s: unusable RAM layout (%zu regions, page "
			 "size %u)", vm, lay->n_regions, lay->page_size);
		goto out;
	}
	for (i = 0; i < lay->n_regions; i++) {
		uint64_t size = lay->regions[i]->size;

		if (!size || size % STREAM_PAGE || total + size / STREAM_PAGE < total) {
			snprintf(err, len, "vmm %s: region %zu has %llu bytes", vm, i,
				 (unsigned long long)size);
			goto out;
		}
		r[i] = (struct fault_region){ .gpa = lay->regions[i]->gpa,
					      .size = size, .first_page = total };
		total += size / STREAM_PAGE;
	}
	if (total != pages) {
		ret = -EINVAL;
		snprintf(err, len, "Attach says %llu pages; vmm %s has %llu",
			 (unsigned long long)pages, vm, (unsigned long long)total);
		goto out;
	}
	owner.token = token;
	owner.deadline_ns = until;
	ret = rpc_client_call(cl, svc, method, again ? &empty.base : &owner.base,
			      again ? NULL : &devfd, !again, (ProtobufCMessage **)&info,
			      &res, ms_until(until), NULL, NULL);
	if (ret < 0) {
		rpc_result_close_fds(&res);
		/* The vmm's own words name the call; ours do not. */
		snprintf(err, len, "vmm %s: %s%s%.400s", vm,
			 res.remote ? "" : method, res.remote ? "" : ": ",
			 res.message);
		if (!res.remote && !again) {
			/* The vmm may still read it: in time, it made a uffd
			 * that our release, sent past the deadline, undoes;
			 * too late, it refuses it. */
			while ((now = now_ns()) < until)
				usleep((useconds_t)MIN((until - now) / 1000 + 1, 100000));
			vmm_release(rundir, vm, token, FAULTD_RELEASE_MS);
		}
		goto out;
	}
	ret = -EPROTO;
	if (res.nfds != 1 || info->n_host != lay->n_regions)
		snprintf(err, len, "vmm %s: %s answered %zu descriptors and "
			 "%zu addresses for %zu regions", vm, method, res.nfds,
			 info->n_host, lay->n_regions);
	else
		ret = check_uffd(res.fds[0], vm, method, err, len);
	if (ret < 0) {
		rpc_result_close_fds(&res);
		if (!again)
			rpc_client_call(cl, svc, "UffdRelease", &owner.base, NULL, 0,
					NULL, NULL, FAULTD_RELEASE_MS, NULL, NULL);
		goto out;
	}
	for (i = 0; i < lay->n_regions; i++)
		r[i].host = info->host[i];
	*ret_n = lay->n_regions;
	*ret_uffd = res.fds[0];
	/* To tell later whether this vmm still lives (method_attach):
	 * without it (no pidfd here), its session is only dropped by Detach. */
	pid = rpc_client_peer_pid(cl);
	*ret_pidfd = pid > 0 ? (int)syscall(SYS_pidfd_open, pid, 0) : -1;
	ret = 0;
out:
	if (info)
		protobuf_c_message_free_unpacked(&info->base, NULL);
	if (lay)
		protobuf_c_message_free_unpacked(&lay->base, NULL);
	rpc_client_free(cl);
	return ret;
}

/* A vmm's release in a thread of its own: the event loop never waits on a
 * vmm.  Best effort (a vmm that is gone has released everything). */
struct release {
	char rundir[PATH_MAX];
	char vm[65];
	uint64_t token;
};

static void *release_main(void *arg)
{
	struct release *rl = arg;

	vmm_release(rl->rundir, rl->vm, rl->token, FAULTD_VMM_TIMEOUT_MS);
	free(rl);
	return NULL;
}

static void vmm_release_async(struct faultd *d, const char *vm, uint64_t token)
{
	struct release *rl = calloc(1, sizeof(*rl));
	pthread_attr_t at;
	pthread_t th;

	if (!rl)
		return;
	str_copy(rl->rundir, d->rundir, sizeof(rl->rundir));
	str_copy(rl->vm, vm, sizeof(rl->vm));
	rl->token = token;
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&th, &at, release_main, rl) != 0) {
		log_warnx("%s: no thread to release the vmm's uffd", vm);
		free(rl);
	}
	pthread_attr_destroy(&at);
}

static void attach_run(struct bgwork *w)
{
	struct attach *t = container_of(w, struct attach, work);

	t->ret = vmm_setup(t->rundir, t->devfd, t->vm, t->pages, t->token,
			   t->again, t->r, &t->n, &t->uffd, &t->vmm_pidfd, t->err,
			   sizeof(t->err));
}

/* An Attach that fails after its vmm made a uffd for it undoes that; not
 * one again: the guest runs with pages missing on the uffd it shared. */
static void attach_undo(struct attach *t)
{
	if (!t->again)
		vmm_release_async(t->d, t->vm, t->token);
}

/* The vmm answered (or not): start the session and reply.  0 or -errno
 * for the call's reply. */
static int attach_session(struct attach *t)
{
	const Tern__Faultd__AttachRequest *a = t->a;
	struct faultd *d = t->d;
	Tern__Faultd__AttachReply rep = TERN__FAULTD__ATTACH_REPLY__INIT;
	Tern__Faultd__Region regs[STREAM_MAX_REGIONS], *pregs[STREAM_MAX_REGIONS];
	struct session_attach sa;
	struct session *s = NULL;
	char err[640];
	unsigned int i;
	int ret;

	if (t->ret < 0)
		return rpc_call_errorf(t->call, -t->ret, "%s", t->err);
	/* TERN_FAULT=faultd-attach-exit: faultd dies here, as a crash in
	 * the middle of an Attach would leave things: the vmm made its
	 * uffd, the caller has no answer. */
	if (fault_active("faultd-attach-exit") && !t->again) {
		log_warnx("TERN_FAULT: exiting in the middle of an Attach");
		_exit(70);
	}
	if (rpc_call_gone(t->call)) {
		/* Nobody would learn of the session: no session. */
		close(t->uffd);
		attach_undo(t);
		return -ECONNRESET;
	}
	sa = (struct session_attach){ .vm = a->vm, .job = a->job, .pages = a->pages,
				      .prefetch = a->prefetch, .hashes = a->hashes,
				      .again = t->again, .link_fd = t->link,
				      .needed_fd = t->bitmap, .uffd = t->uffd,
				      .vmm_pidfd = t->vmm_pidfd,
				      .nregions = t->n, .r = t->r };
	t->link = t->bitmap = t->vmm_pidfd = -1;
	ret = session_start(&sa, &s, err, sizeof(err));
	if (ret < 0) {
		attach_undo(t);
		return rpc_call_errorf(t->call, -ret, "%s", err);
	}
	for (i = 0; i < t->n; i++) {
		tern__faultd__region__init(&regs[i]);
		regs[i].gpa = t->r[i].gpa;
		regs[i].size = t->r[i].size;
		regs[i].host = t->r[i].host;
		pregs[i] = &regs[i];
	}
	rep.n_regions = t->n;
	rep.regions = pregs;
	ret = rpc_call_reply(t->call, &rep.base, &s->uffd, 1);
	if (ret < 0) {
		session_free(s);
		attach_undo(t);
		return ret;
	}
	s->next = d->sessions;
	d->sessions = s;
	log_info("%s: attached%s (job %s, %llu pages, %u region%s, prefetch %u)",
		 s->vm, t->again ? " again, to the vmm's userfaultfd (a former "
		 "faultd served it)" : "", s->job[0] ? s->job : "-",
		 (unsigned long long)s->pages, t->n, t->n == 1 ? "" : "s",
		 s->prefetch);
	return 0;
}

static void attach_free(struct bgwork *w)
{
	struct attach *t = container_of(w, struct attach, work);

	if (t->link >= 0)
		close(t->link);
	if (t->bitmap >= 0)
		close(t->bitmap);
	if (t->vmm_pidfd >= 0)
		close(t->vmm_pidfd);
	free(t);
}

/* The vmm's part is done: start the session, finish the call. */
static void attach_finish(struct bgwork *w)
{
	struct attach *t = container_of(w, struct attach, work);

	rpc_call_finish(t->call, attach_session(t));
	attach_free(w);
}

/* A name for the uffd of one Attach: nonzero, and no other's. */
static uint64_t uffd_token(void)
{
	uint64_t t = 0;

	if (getrandom(&t, sizeof(t), 0) != sizeof(t))
		t = now_ns() ^ ((uint64_t)getpid() << 40);
	return t ? t : 1;
}

static struct attach *attach_find(struct faultd *d, const char *vm)
{
	struct bgwork *w;

	for (w = d->attaching.list; w; w = w->next)
		if (strcmp(container_of(w, struct attach, work)->vm, vm) == 0)
			return container_of(w, struct attach, work);
	return NULL;
}

static int method_attach(struct rpc_call *call, const ProtobufCMessage *arg)
{
	const Tern__Faultd__AttachRequest *a = (const Tern__Faultd__AttachRequest *)arg;
	struct faultd *d = rpc_call_ctx(call);
	struct session *s;
	struct attach *t;
	int ret;

	if (name_valid(a->vm) < 0)
		return rpc_call_errorf(call, EINVAL, "'%.64s' is not a valid VM name",
				       a->vm);
	if (strlen(a->job) > 64)
		return rpc_call_errorf(call, EINVAL, "job id: at most 64 characters");
	if (a->prefetch > FAULTD_MAX_PREFETCH)
		return rpc_call_errorf(call, EINVAL, "prefetch %u: at most %u",
				       a->prefetch, FAULTD_MAX_PREFETCH);
	if (!a->pages || a->pages > (1ULL << 40) / STREAM_PAGE)
		return rpc_call_errorf(call, EINVAL, "pages %llu: 1 to %llu",
				       (unsigned long long)a->pages,
				       (1ULL << 40) / STREAM_PAGE);
	if (rpc_call_nfds(call) != 2)
		return rpc_call_errorf(call, EINVAL,
				       "Attach needs two descriptors, the page link and the "
				       "needed bitmap (got %zu)", rpc_call_nfds(call));
	s = session_find(d, a->vm);
	/* (A new vmm of that name may come before the sweep.) */
	if (s && drop_if_gone(d, s))
		s = NULL;
	if (s)
		return rpc_call_errorf(call, EBUSY, "VM %s already has a session (%s); "
				       "Detach it first", a->vm,
				       session_state_name(s->state));
	if (attach_find(d, a->vm))
		return rpc_call_errorf(call, EBUSY, "VM %s is being attached",
				       a->vm);
	t = calloc(1, sizeof(*t));
	if (!t)
		return rpc_call_errorf(call, ENOMEM, "out of memory");
	*t = (struct attach){ .d = d, .call = call, .a = a, .pages = a->pages,
			      .devfd = d->devfd, .token = uffd_token(),
			      .again = a->again,
			      .link = -1, .bitmap = -1, .uffd = -1,
			      .vmm_pidfd = -1 };
	str_copy(t->vm, a->vm, sizeof(t->vm));
	str_copy(t->rundir, d->rundir, sizeof(t->rundir));
	ret = take_link(call, 0, &t->link);
	if (ret == 0)
		ret = take_bitmap(call, 1, a->pages, a->hashes, &t->bitmap);
	if (ret == 0 && (ret = bgwork_start(&d->attaching, &t->work, attach_run,
					    attach_finish)) < 0)
		rpc_call_errorf(call, -ret, "cannot start a thread: %s",
				strerror(-ret));
	if (ret < 0) {
		attach_free(&t->work);
		return ret;
	}
	return RPC_DEFERRED;
}

static int method_relink(struct rpc_call *call, const ProtobufCMessage *arg)
{
	const Tern__Faultd__RelinkRequest *q = (const Tern__Faultd__RelinkRequest *)arg;
	struct session *s;
	char why[256];
	int link, ret;

	ret = lookup(call, q->vm, &s);
	if (ret < 0)
		return ret;
	if (!session_relinkable(s, why, sizeof(why)))
		return rpc_call_errorf(call, EIO, "cannot relink %s: the session "
				       "no longer reads its page faults (%s)",
				       q->vm, why);
	if (rpc_call_nfds(call) != 1)
		return rpc_call_errorf(call, EINVAL,
				       "Relink needs one descriptor, the new page link (got %zu)",
				       rpc_call_nfds(call));
	ret = take_link(call, 0, &link);
	if (ret < 0)
		return ret;
	ret = session_relink(s, link);
	if (ret < 0)
		return rpc_call_errorf(call, -ret, "relink: %s", strerror(-ret));
	return reply_stats(call, s);
}

static int method_stats(struct rpc_call *call, const ProtobufCMessage *arg)
{
	const Tern__Faultd__VmQuery *q = (const Tern__Faultd__VmQuery *)arg;
	struct session *s;
	int ret = lookup(call, q->vm, &s);

	return ret < 0 ? ret : reply_stats(call, s);
}

static int method_detach(struct rpc_call *call, const ProtobufCMessage *arg)
{
	const Tern__Faultd__DetachRequest *q = (const Tern__Faultd__DetachRequest *)arg;
	struct faultd *d = rpc_call_ctx(call);
	Tern__Faultd__FaultStats st = TERN__FAULTD__FAULT_STATS__INIT;
	struct stats_buf buf;
	struct session *s;
	uint64_t needed;
	int ret;

	ret = lookup(call, q->vm, &s);
	if (ret < 0)
		return ret;
	needed = session_needed(s);
	if (needed && !q->force)
		return rpc_call_errorf(call, EBUSY,
				       "VM %s still needs %llu pages from the source "
				       "(force to detach anyway)", s->vm,
				       (unsigned long long)needed);
	session_unlink(d, s);
	session_stop(s);
	session_stats(s, &st, &buf);
	ret = rpc_call_reply(call, &st.base, NULL, 0);
	log_info("%s: detached%s (%llu faults, %llu pages fetched, %llu needed left)",
		 s->vm, needed ? " by force" : "", (unsigned long long)st.faults,
		 (unsigned long long)st.pages_fetched, (unsigned long long)needed);
	session_free(s);
	return ret;
}

static int method_list(struct rpc_call *call, const ProtobufCMessage *arg)
{
	struct faultd *d = rpc_call_ctx(call);
	Tern__Faultd__SessionList list = TERN__FAULTD__SESSION_LIST__INIT;
	Tern__Faultd__FaultStats *st = NULL, **pst = NULL;
	struct stats_buf *buf = NULL;
	struct session *s;
	size_t n = 0, i = 0;
	int ret;

	for (s = d->sessions; s; s = s->next)
		n++;
	if (n) {
		st = calloc(n, sizeof(*st));
		pst = calloc(n, sizeof(*pst));
		buf = calloc(n, sizeof(*buf));
		if (!st || !pst || !buf) {
			ret = -ENOMEM;
			goto out;
		}
	}
	for (s = d->sessions; s; s = s->next, i++) {
		tern__faultd__fault_stats__init(&st[i]);
		session_stats(s, &st[i], &buf[i]);
		pst[i] = &st[i];
	}
	list.n_sessions = n;
	list.sessions = pst;
	ret = rpc_call_reply(call, &list.base, NULL, 0);
out:
	free(st);
	free(pst);
	free(buf);
	return ret;
}

static const struct rpc_method_binding control_methods[] = {
	{ "Attach", method_attach },
	{ "Relink", method_relink },
	{ "Stats", method_stats },
	{ "Detach", method_detach },
	{ "List", method_list },
};

int control_start(struct faultd *d)
{
	struct uri u = { .kind = URI_UNIX };
	const char *missing = NULL;
	mode_t mask;
	int lfd, ret;

	if ((size_t)snprintf(d->sock_path, sizeof(d->sock_path), "%s/faultd.sock",
			     d->rundir) >= sizeof(u.path)) {
		log_warnx("control socket path %s/faultd.sock is too long", d->rundir);
		return -ENAMETOOLONG;
	}
	str_copy(u.path, d->sock_path, sizeof(u.path));
	/* We hold RUNDIR/faultd.lock: a socket file here is stale. */
	unlink(d->sock_path);
	mask = umask(0177);
	lfd = uri_listen(&u, CONTROL_LISTEN_BACKLOG);
	umask(mask);
	if (lfd == -EACCES || lfd == -EPERM) {
		/* Root, but without CAP_DAC_OVERRIDE by now (faultd(8)). */
		log_warnc(lfd, "control socket %s (faultd holds no capability by "
			  "now: %s must let its own uid write there, as a run "
			  "directory owned by that uid does)", d->sock_path, d->rundir);
		return lfd;
	}
	if (lfd < 0) {
		log_warnc(lfd, "control socket %s", d->sock_path);
		return lfd;
	}
	ret = rpc_server_new(d->base, &d->server);
	if (ret == 0)
		ret = rpc_server_listen_fd(d->server, lfd);
	else
		close(lfd);
	if (ret == 0)
		ret = rpc_server_bind_service(d->server, &tern__faultd__faultd__descriptor,
					      control_methods, ARRAY_SIZE(control_methods),
					      d, &missing);
	if (ret == -ENOENT)
		fatalx("control: no handler for %s", missing);
	if (ret < 0) {
		log_warnc(ret, "control service");
		return ret;
	}
	rpc_server_set_accept(d->server, rpc_accept_root_or_self, d);
	rpc_server_set_overload(d->server, rpc_overload_warn, d);
	rpc_server_set_drop(d->server, rpc_drop_warn, d);
	ret = bgwork_init(&d->attaching, d->base);
	if (ret < 0) {
		log_warnc(ret, "cannot watch the attach threads");
		return ret;
	}
	d->sweep = event_new(d->base, -1, EV_PERSIST, sweep_gone, d);
	if (!d->sweep || event_add(d->sweep, &(struct timeval){
			.tv_sec = SWEEP_MS / 1000, .tv_usec = SWEEP_MS % 1000 * 1000 })) {
		log_warnx("cannot start the sweep of sessions whose vmm exited");
		return -ENOMEM;
	}
	return 0;
}

void control_stop(struct faultd *d)
{
	struct session *s;

	/* Attaches still at their vmm: their threads end by themselves
	 * (FAULTD_VMM_TIMEOUT_MS a call) and write into their struct,
	 * which is left to them; quitting need not wait. */
	bgwork_stop(&d->attaching, 0, attach_free);
	if (d->sweep)
		event_free(d->sweep);
	d->sweep = NULL;
	if (d->server) {
		rpc_server_free(d->server);
		d->server = NULL;
		unlink(d->sock_path);
	}
	while ((s = d->sessions)) {
		d->sessions = s->next;
		session_free(s);
	}
}
