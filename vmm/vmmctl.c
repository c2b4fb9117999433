// SPDX-License-Identifier: GPL-2.0-only
/*
 * vmmctl: drive a vmm through its control socket (RUNDIR/vmm/NAME.sock):
 * status and run control, state files, the test guest's memory check,
 * moving a guest to a new vmm on this host, memory access, dirty rate.
 * Every command is one or a few tern.vmm.Vmm RPCs; see vmmctl(8).
 */
#include <errno.h>
#include <fcntl.h>
#include <endian.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/memcheck.h"
#include "common/pbuf.h"
#include "common/ramhash.h"
#include "common/testguest.h"
#include "common/cli.h"
#include "common/json.h"
#include "common/rpc.h"
#include "common/util.h"
#include "proto/vmm.pb-c.h"

#define CTL_MAX_FRAME (4u << 20)
/* A state file: the magic, the message's length and (since TERNVMS2)
 * its checksum, each 8 bytes little-endian, then the message.  A file
 * of TERNVMS1 (no checksum) is still read. */
#define STATE_FILE_MAGIC "TERNVMS2"
#define STATE_FILE_MAGIC_V1 "TERNVMS1"
#define STATE_FILE_HDR 24
#define STATE_FILE_HDR_V1 16
#define STATE_FILE_MAX (64u << 20)


static struct cli_globals opts = { "/run/tern", false, 30000 };

struct vmm_conn {
	const char *name;
	struct rpc_client *cl;
	int pid;                        /* conn_watch: the vmm's pid, or 0 */
	int pidfd;                      /* and its pidfd, or -1 */
};

static int conn_open(struct vmm_conn *c, const char *name)
{
	char path[PATH_MAX];
	struct stat st;
	int ret;

	c->name = name;
	c->cl = NULL;
	c->pid = 0;
	c->pidfd = -1;
	snprintf(path, sizeof(path), "%s/vmm/%s.sock", opts.rundir, name);
	if (stat(path, &st) < 0 && errno == ENOENT) {
		cli_errx("vmm %s is not running (no socket %s)", name, path);
		return -ENOENT;
	}
	ret = rpc_client_connect_path(path, opts.timeout_ms, &c->cl);
	if (ret == -ECONNREFUSED) {
		/* A socket file nobody listens on: its vmm ended without
		 * removing it (killed). */
		cli_errx("vmm %s is not running (nobody listens on %s)", name, path);
		return ret;
	}
	if (ret < 0) {
		cli_errx("vmm %s: cannot connect to %s: %s%s", name, path,
			 strerror(-ret), cli_refused_hint(ret));
		return ret;
	}
	rpc_client_set_max_frame(c->cl, CTL_MAX_FRAME);
	return 0;
}

static void conn_close(struct vmm_conn *c)
{
	if (c->cl)
		rpc_client_free(c->cl);
	c->cl = NULL;
	if (c->pidfd >= 0)
		close(c->pidfd);
	c->pidfd = -1;
}

/*
 * Take a pidfd of the vmm's process (SO_PEERCRED), so that conn_gone can
 * tell later whether it has exited.  A pid may be reused: the pidfd is
 * that vmm's only once the vmm answers, after it was taken, with that
 * pid (conn_watch_confirm); until then, or without one, nothing is
 * ever taken for gone.
 */
/* A pidfd of the process on the other end (SO_PEERCRED), its pid in
 * *ret_pid; -1 if there is none to have. */
static int conn_pidfd(const struct vmm_conn *c, int *ret_pid)
{
	int pid = rpc_client_peer_pid(c->cl);

	if (pid <= 0)
		return -1;
	*ret_pid = pid;
	return (int)syscall(SYS_pidfd_open, pid, 0);  /* CLOEXEC always */
}

static void conn_watch(struct vmm_conn *c)
{
	int pid;

	c->pidfd = conn_pidfd(c, &pid);
	if (c->pidfd >= 0)
		c->pid = pid;
}

/* The vmm answered s after conn_watch: keep the pidfd if it is its. */
static void conn_watch_confirm(struct vmm_conn *c, const Tern__Vmm__VmmStatus *s)
{
	if (c->pidfd >= 0 && s->pid == (uint32_t)c->pid)
		return;
	if (c->pidfd >= 0)
		close(c->pidfd);
	c->pidfd = -1;
	c->pid = 0;
}

/*
 * Whether the vmm's process has exited: then it runs no guest and holds
 * nothing it was sent.  Its connection closes as it exits, a moment
 * before its pidfd reads: once closed, it is given the timeout to end.
 * A vmm that is still connected, or that we cannot watch, is not gone.
 */
static bool conn_gone(struct vmm_conn *c)
{
	struct pollfd p = { c->pidfd, POLLIN, 0 };

	if (c->pidfd < 0)
		return false;
	if (!rpc_client_hung_up(c->cl))
		return poll(&p, 1, 0) == 1;
	return poll_until(&p, 1, opts.timeout_ms > 0 ?
			  deadline_ms(opts.timeout_ms) : 0) >= 0;
}

/* One call; prints the error (remote text included) and returns -errno.
 * on_event, when not NULL, takes the events of the call. */
static int call_ev(struct vmm_conn *c, const char *method,
		   const ProtobufCMessage *arg, const int *fds, size_t nfds,
		   ProtobufCMessage **ret_msg, struct rpc_result *ret_res,
		   rpc_event_fn on_event, void *ev_ctx)
{
	struct rpc_result res;
	int ret;

	ret = rpc_client_call(c->cl, &tern__vmm__vmm__descriptor, method,
			      arg, fds, nfds, ret_msg, &res,
			      opts.timeout_ms, on_event, ev_ctx);
	if (ret < 0)
		cli_errx("vmm %s: %s: %s%s", c->name, method,
			 res.message[0] ? res.message : strerror(-ret),
			 cli_call_hint(ret));
	if (ret_res)
		*ret_res = res;
	else
		rpc_result_close_fds(&res);
	return ret;
}

static int call(struct vmm_conn *c, const char *method, const ProtobufCMessage *arg,
		const int *fds, size_t nfds, ProtobufCMessage **ret_msg,
		struct rpc_result *ret_res)
{
	return call_ev(c, method, arg, fds, nfds, ret_msg, ret_res, NULL, NULL);
}

static const char *run_state_name(Tern__Vmm__RunState s)
{
	static const char *const names[] = {
		"none", "incoming", "running", "paused", "shutdown", "error",
	};

	return (unsigned int)s < ARRAY_SIZE(names) ? names[s] : "unknown";
}

static int get_status(struct vmm_conn *c, Tern__Vmm__VmmStatus **ret)
{
	return call(c, "Status", NULL, NULL, 0, (ProtobufCMessage **)ret, NULL);
}

static void print_status(const Tern__Vmm__VmmStatus *s)
{
	char mem[32];

	if (opts.json) {
		json_print(&s->base);
		return;
	}
	fmt_size(s->memory, mem, sizeof(mem));
	printf("%s: %s, %u vCPU%s, %s, pid %u", s->name, run_state_name(s->state),
	       s->vcpus, s->vcpus == 1 ? "" : "s", mem, s->pid);
	if (s->guest == TERN__VMM__GUEST_KIND__GUEST_TEST)
		printf(", test guest (%s)", s->guest_mode);
	else if (s->guest == TERN__VMM__GUEST_KIND__GUEST_IMAGE)
		printf(", image");
	if (s->dirty_logging)
		printf(", dirty logging");
	if (s->throttle)
		printf(", vCPUs throttled %u%%", s->throttle);
	if (s->console_dropped)
		printf(", console dropped %llu byte%s",
		       (unsigned long long)s->console_dropped,
		       s->console_dropped == 1 ? "" : "s");
	if (s->moved_to[0] && s->moved_gone)
		printf(", moved to %s, which has exited since (this copy may be "
		       "the guest's only one)", s->moved_to);
	else if (s->moved_to[0] && s->moved_postcopy)
		printf(", moved to %s by a postcopy not known to have completed "
		       "(this copy holds the pages the destination may still "
		       "lack: do not quit it)", s->moved_to);
	else if (s->moved_to[0])
		printf(", moved to %s (this copy is stale)", s->moved_to);
	if (s->ram_missing)
		printf(", state loaded without RAM (cont refused)");
	/* A vCPU that touches a page not here yet waits for faultd to bring
	 * it; with no postcopy job serving it (its status, migctl(1)), it
	 * waits for ever while this line says running. */
	if (s->uffd)
		printf(", postcopy pages still missing (a vCPU that needs one waits for it)");
	if (s->message[0])
		printf(": %s", s->message);
	printf("\n");
}

/* status, stop, cont: the reply is a status. */
static int cmd_simple(struct vmm_conn *c, const char *method)
{
	Tern__Vmm__VmmStatus *s = NULL;
	int ret;

	ret = call(c, method, NULL, NULL, 0, (ProtobufCMessage **)&s, NULL);
	if (ret < 0)
		return CLI_FAILED;
	print_status(s);
	protobuf_c_message_free_unpacked(&s->base, NULL);
	return CLI_OK;
}

/* cont --force: a copy marked as moved away runs after all (vmm.proto,
 * SetMoved), as when its destination lost the guest. */
static int cmd_cont_force(struct vmm_conn *c)
{
	Tern__Vmm__MovedNote clear = TERN__VMM__MOVED_NOTE__INIT;

	if (call(c, "SetMoved", &clear.base, NULL, 0, NULL, NULL) < 0)
		return CLI_FAILED;
	return cmd_simple(c, "Cont");
}

/*
 * Quit, and wait for the vmm's process to have ended: it has let go of
 * everything then, its name lock included, so that a vmm of the same
 * name may start the moment this returns.  The pidfd is taken before
 * Quit: the vmm's answer proves that its pid was still its own then.
 * Without one (a vmm in another pid namespace, an old kernel), the wait
 * is for the end of the connection, which the vmm closes after its name
 * lock, a moment before it exits.  -errno, said.
 */
static int quit_vmm(struct vmm_conn *c)
{
	int pid, pidfd = conn_pidfd(c, &pid), ret;
	struct pollfd p;

	ret = call(c, "Quit", NULL, NULL, 0, NULL, NULL);
	if (ret < 0)
		goto out;
	if (pidfd >= 0) {
		p = (struct pollfd){ pidfd, POLLIN, 0 };
		ret = poll_until(&p, 1, opts.timeout_ms > 0 ?
				 deadline_ms(opts.timeout_ms) : 0);
		ret = ret < 0 ? ret : 0;
	} else {
		ret = rpc_client_wait_hangup(c->cl, opts.timeout_ms);
	}
	if (ret == -ETIMEDOUT)
		cli_errx("vmm %s answered Quit, but has not exited within %d s "
			 "(its name stays taken until it does)", c->name,
			 opts.timeout_ms / 1000);
	else if (ret < 0)
		cli_errx("vmm %s answered Quit; waiting for its exit: %s",
			 c->name, strerror(-ret));
out:
	if (pidfd >= 0)
		close(pidfd);
	return ret;
}

static int cmd_quit(struct vmm_conn *c)
{
	return quit_vmm(c) < 0 ? CLI_FAILED : CLI_OK;
}

/* ---- state files: "TERNVMS1", 8-byte little-endian length, VmState ---- */

static int state_file_write(const char *path, const Tern__Vmm__VmState *st)
{
	size_t len = tern__vmm__vm_state__get_packed_size(st);
	char tmp[PATH_MAX];
	uint8_t *buf;
	uint64_t le = htole64(len), sum;
	int fd, ret;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path) >= sizeof(tmp))
		return -ENAMETOOLONG;
	buf = malloc(len ? len : 1);
	if (!buf)
		return -ENOMEM;
	tern__vmm__vm_state__pack(st, buf);
	sum = htole64(ramhash_buf(buf, len));
	/* A new file of a name nobody can guess (mode 0600): a fixed name
	 * in a directory others can write would let them plant a link there
	 * that this process, root as a rule, writes through. */
	fd = mkostemp(tmp, O_CLOEXEC);
	ret = fd < 0 ? -errno : 0;
	if (ret == 0)
		ret = write_all(fd, STATE_FILE_MAGIC, 8);
	if (ret == 0)
		ret = write_all(fd, &le, 8);
	if (ret == 0)
		ret = write_all(fd, &sum, 8);
	if (ret == 0)
		ret = write_all(fd, buf, len);
	if (ret == 0 && fsync(fd) < 0)
		ret = -errno;
	if (fd >= 0)
		close(fd);
	/* Only a complete file takes the name: nothing half-written is left. */
	if (ret == 0 && rename(tmp, path) < 0)
		ret = -errno;
	if (ret < 0 && fd >= 0)
		unlink(tmp);
	free(buf);
	return ret;
}

static int state_file_read(const char *path, Tern__Vmm__VmState **ret, char *why,
			   size_t whylen)
{
	uint8_t hdr[STATE_FILE_HDR], *buf = NULL;
	uint64_t len, sum = 0;
	struct stat st;
	int fd, r = 0, hlen = STATE_FILE_HDR;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		r = -errno;
		snprintf(why, whylen, "%s", strerror(-r));
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		snprintf(why, whylen, "is a directory, not a state file");
		r = -EISDIR;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(why, whylen, "not a regular file, so not a state file");
		r = -EINVAL;
		goto out;
	}
	/* The magic decides what the file is; only then is it short. */
	if (st.st_size < 8 || pread(fd, hdr, 8, 0) != 8 ||
	    (memcmp(hdr, STATE_FILE_MAGIC, 8) && memcmp(hdr, STATE_FILE_MAGIC_V1, 8))) {
		snprintf(why, whylen, "not a tern VM state file");
		r = -EINVAL;
		goto out;
	}
	if (!memcmp(hdr, STATE_FILE_MAGIC_V1, 8))
		hlen = STATE_FILE_HDR_V1;
	if (st.st_size < hlen || pread(fd, hdr, hlen, 0) != hlen) {
		snprintf(why, whylen, "truncated: a state file's header is %d "
			 "bytes, this file has %llu", hlen,
			 (unsigned long long)st.st_size);
		r = -EINVAL;
		goto out;
	}
	memcpy(&len, hdr + 8, 8);
	len = le64toh(len);
	if (hlen == STATE_FILE_HDR) {
		memcpy(&sum, hdr + 16, 8);
		sum = le64toh(sum);
	}
	if (len > STATE_FILE_MAX || (uint64_t)st.st_size != hlen + len) {
		snprintf(why, whylen, "%s: its header says %llu bytes, the "
			 "file has %llu", (uint64_t)st.st_size < hlen + len ?
			 "truncated or damaged" : "damaged: longer than its header says",
			 (unsigned long long)len,
			 (unsigned long long)(st.st_size - hlen));
		r = -EINVAL;
		goto out;
	}
	buf = malloc(len ? len : 1);
	if (!buf || pread(fd, buf, len, hlen) != (ssize_t)len) {
		snprintf(why, whylen, "cannot read it");
		r = -EIO;
		goto out;
	}
	/* A byte changed since the save decodes all the same, often: the
	 * checksum finds it (a TERNVMS1 file has none). */
	if (hlen == STATE_FILE_HDR && ramhash_buf(buf, len) != sum) {
		snprintf(why, whylen, "damaged: its checksum does not match its "
			 "contents (it changed after it was saved)");
		r = -EINVAL;
		goto out;
	}
	*ret = (Tern__Vmm__VmState *)pbuf_unpack(&tern__vmm__vm_state__descriptor,
						   len, buf);
	if (!*ret) {
		snprintf(why, whylen, "damaged: the state does not decode");
		r = -EINVAL;
	}
out:
	free(buf);
	if (fd >= 0)
		close(fd);
	return r;
}

static int cmd_save(struct vmm_conn *c, const char *path)
{
	Tern__Vmm__VmState *st = NULL;
	int ret;

	if (call(c, "SaveState", NULL, NULL, 0, (ProtobufCMessage **)&st, NULL) < 0)
		return CLI_FAILED;
	ret = state_file_write(path, st);
	if (ret < 0)
		cli_errx("%s: %s", path, strerror(-ret));
	else
		/* Not a snapshot: operators took it for one. */
		printf("saved the CPU and device state of %s (%u vCPU%s) to %s; "
		       "it holds no RAM, so it is no snapshot: it is for a vmm "
		       "that gets %s's RAM by other means (vmmctl(8))\n",
		       c->name, st->vcpus_count, st->vcpus_count == 1 ? "" : "s", path,
		       c->name);
	protobuf_c_message_free_unpacked(&st->base, NULL);
	return ret < 0 ? CLI_FAILED : CLI_OK;
}

static int cmd_load(struct vmm_conn *c, const char *path)
{
	Tern__Vmm__VmState *st = NULL;
	Tern__Vmm__VmmStatus *s = NULL;
	bool ram_missing;
	char why[256];
	int ret;

	if (state_file_read(path, &st, why, sizeof(why)) < 0) {
		cli_errx("%s: %s", path, why);
		return CLI_FAILED;
	}
	ret = call(c, "LoadState", &st->base, NULL, 0, NULL, NULL);
	protobuf_c_message_free_unpacked(&st->base, NULL);
	if (ret < 0)
		return CLI_FAILED;
	/* A state file holds no RAM: unless something brought the guest's
	 * (AdoptRam before), there is nothing to start. */
	if (get_status(c, &s) < 0) {
		/* The load is done all the same: say so, and exit 0. */
		fprintf(opts.json ? stderr : stdout, "loaded %s into %s (whether "
			"it has its RAM is unknown: 'vmmctl status %s')\n", path,
			c->name, c->name);
		return CLI_OK;
	}
	ram_missing = s->ram_missing;
	if (opts.json)
		print_status(s);        /* its ram_missing says it */
	else if (ram_missing)
		printf("loaded %s into %s, without RAM\n", path, c->name);
	else
		printf("loaded %s into %s; 'vmmctl cont %s' starts it\n", path,
		       c->name, c->name);
	protobuf_c_message_free_unpacked(&s->base, NULL);
	if (!ram_missing)
		return CLI_OK;
	cli_errx("note: %s holds no RAM, and nothing brought the guest's to %s: "
		 "'vmmctl cont %s' is refused (a guest moves with its RAM by "
		 "'vmmctl transfer' or a migration, see vmmctl(8))", path, c->name,
		 c->name);
	return CLI_OK;
}

/* ---- guest RAM ------------------------------------------------------ */

struct ram_map {
	struct memcheck_view view;
	int fds[MEMCHECK_MAX_REGIONS];
};

static void ram_unmap(struct ram_map *m)
{
	int i;

	for (i = 0; i < m->view.nregions; i++) {
		munmap((void *)m->view.r[i].host, m->view.r[i].size);
		close(m->fds[i]);
	}
	m->view.nregions = 0;
}

/*
 * Reading a hole of a memfd through a mapping allocates a page there
 * (shmem has no shared zero page), so a check of a guest that touched a
 * quarter of its RAM used to give it all of it.  Cover the holes of a
 * read-only map with anonymous memory, which reads as zeros and
 * allocates nothing.  The callers pause the VM first (or read only data
 * extents), so no hole fills behind the cover.
 */
static int ram_cover_holes(int fd, uint8_t *p, uint64_t size)
{
	uint64_t off = 0, start, end;
	int r;

	while (off < size) {
		r = fd_next_data(fd, off, size, &start, &end);
		if (r < 0)
			return r;
		if (start > off &&
		    mmap(p + off, start - off, PROT_READ,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED)
			return -errno;
		off = end;
	}
	return 0;
}

/* Map the vmm's RAM memfds (writable when rw, for --copy). */
static int ram_map(struct vmm_conn *c, struct ram_map *m, bool rw,
		   Tern__Vmm__RamLayout **ret_layout)
{
	Tern__Vmm__RamLayout *lay = NULL;
	struct rpc_result res;
	size_t i;
	int ret;

	memset(m, 0, sizeof(*m));
	ret = call(c, "GetRam", NULL, NULL, 0, (ProtobufCMessage **)&lay, &res);
	if (ret < 0)
		return ret;
	if (lay->n_regions == 0 || lay->n_regions > MEMCHECK_MAX_REGIONS ||
	    res.nfds != lay->n_regions) {
		cli_errx("vmm %s: GetRam: %zu regions with %zu descriptors", c->name,
		      lay->n_regions, res.nfds);
		ret = -EPROTO;
		goto out;
	}
	for (i = 0; i < lay->n_regions; i++) {
		void *p = mmap(NULL, lay->regions[i]->size,
			       PROT_READ | (rw ? PROT_WRITE : 0), MAP_SHARED,
			       res.fds[i], 0);

		if (p == MAP_FAILED) {
			ret = -errno;
			cli_errx("vmm %s: cannot map guest RAM: %s", c->name,
			      strerror(errno));
			goto out;
		}
		ret = rw ? 0 : ram_cover_holes(res.fds[i], p, lay->regions[i]->size);
		if (ret < 0) {
			munmap(p, lay->regions[i]->size);
			cli_errx("vmm %s: cannot map guest RAM's holes: %s", c->name,
			      strerror(-ret));
			goto out;
		}
		m->view.r[i].gpa = lay->regions[i]->gpa;
		m->view.r[i].size = lay->regions[i]->size;
		m->view.r[i].host = p;
		m->fds[i] = res.fds[i];
		res.fds[i] = -1;
		m->view.nregions = i + 1;
	}
out:
	rpc_result_close_fds(&res);
	if (ret < 0)
		ram_unmap(m);
	if (ret == 0 && ret_layout)
		*ret_layout = lay;
	else
		protobuf_c_message_free_unpacked(&lay->base, NULL);
	return ret;
}

/* A transient Stop (vmm.proto): *found, what it found as the operator
 * has it (NONE from an older vmm). */
static int stop_transient(struct vmm_conn *c, Tern__Vmm__RunState *found)
{
	Tern__Vmm__StopRequest rq = TERN__VMM__STOP_REQUEST__INIT;
	Tern__Vmm__VmmStatus *s = NULL;
	int ret;

	rq.transient = true;
	ret = call(c, "Stop", &rq.base, NULL, 0, (ProtobufCMessage **)&s, NULL);
	if (ret < 0)
		return ret;
	*found = s->found;
	protobuf_c_message_free_unpacked(&s->base, NULL);
	return 0;
}

/*
 * Pause the VM for a consistent view; *was_running says whether to
 * resume.  With `intent` (a transfer: the guest keeps on DST what it
 * has here), a paused VM is asked too: paused only by another caller's
 * own work (a transfer that lost the race to this one), it counts as
 * running.
 */
static int pause_for_view(struct vmm_conn *c, bool intent, bool *was_running)
{
	Tern__Vmm__RunState found = TERN__VMM__RUN_STATE__RUN_STATE_NONE;
	Tern__Vmm__VmmStatus *s = NULL;
	int ret = get_status(c, &s);

	if (ret < 0)
		return ret;
	if (s->state == TERN__VMM__RUN_STATE__RUN_STATE_INCOMING) {
		/* Its RAM may be half of a migration: not a guest's yet. */
		cli_errx("vmm %s is waiting for an incoming guest: its memory is not "
		      "a guest's yet", c->name);
		protobuf_c_message_free_unpacked(&s->base, NULL);
		return -EBUSY;
	}
	if (s->uffd) {
		/* Read through the memfds, a page still on the source reads
		 * as zeros: neither checked nor moved. */
		cli_errx("vmm %s still waits for pages of a postcopy migration: its "
			 "memory is not all here yet (migctl status %s)", c->name,
			 c->name);
		protobuf_c_message_free_unpacked(&s->base, NULL);
		return -EBUSY;
	}
	*was_running = s->state == TERN__VMM__RUN_STATE__RUN_STATE_RUNNING;
	protobuf_c_message_free_unpacked(&s->base, NULL);
	if (!*was_running && !intent)
		return 0;
	/* What the Stop found decides (an operator's stop may have come
	 * since the status): NONE from an older vmm. */
	ret = stop_transient(c, &found);
	if (ret == 0 && found != TERN__VMM__RUN_STATE__RUN_STATE_NONE)
		*was_running = found == TERN__VMM__RUN_STATE__RUN_STATE_RUNNING;
	return ret;
}

static void print_check(const char *name, const struct memcheck_result *r)
{
	bool ok = r->bad == 0 && r->guest_errors == 0;
	int i;

	if (opts.json) {
		printf("{\"name\":\"%s\",\"intact\":%s,\"pages\":%llu,\"bad_pages\":%llu,"
		       "\"guest_errors\":%llu,\"generation_min\":%llu,"
		       "\"generation_max\":%llu,\"vcpus\":%llu,\"mode\":\"%s\"}\n",
		       name, ok ? "true" : "false", (unsigned long long)r->pages,
		       (unsigned long long)r->bad,
		       (unsigned long long)r->guest_errors,
		       (unsigned long long)r->gen_min, (unsigned long long)r->gen_max,
		       (unsigned long long)r->nvcpus, tg_mode_name(r->mode));
	} else if (ok) {
		printf("%s: memory check passed: %llu pages intact, generations "
		       "%llu-%llu, %llu vCPU%s, mode %s\n", name,
		       (unsigned long long)r->pages, (unsigned long long)r->gen_min,
		       (unsigned long long)r->gen_max, (unsigned long long)r->nvcpus,
		       r->nvcpus == 1 ? "" : "s", tg_mode_name(r->mode));
	} else {
		printf("%s: memory check FAILED: %llu of %llu pages bad, %llu "
		       "reported by the guest\n", name, (unsigned long long)r->bad,
		       (unsigned long long)r->pages,
		       (unsigned long long)r->guest_errors);
	}
	for (i = 0; i < r->nreports; i++)
		fprintf(opts.json ? stderr : stdout, "  %s\n", r->reports[i]);
}

static int cmd_check(struct vmm_conn *c)
{
	struct memcheck_result r;
	struct ram_map m;
	bool was_running = false;
	int ret, code = CLI_FAILED;

	if (pause_for_view(c, false, &was_running) < 0)
		return CLI_FAILED;
	if (ram_map(c, &m, false, NULL) < 0)
		goto resume;
	ret = memcheck_run(&m.view, &r);
	ram_unmap(&m);
	if (ret == -ENOENT)
		cli_errx("vmm %s: no test guest in its memory", c->name);
	else if (ret < 0)
		cli_errx("vmm %s: the test guest's parameters do not fit its RAM", c->name);
	else {
		print_check(c->name, &r);
		code = r.bad || r.guest_errors ? CLI_FAILED : CLI_OK;
	}
resume:
	if (was_running && call(c, "Cont", NULL, NULL, 0, NULL, NULL) < 0)
		code = CLI_FAILED;
	return code;
}

/* ---- transfer: move a guest to an incoming vmm on this host ---------- */

/* Copy the data extents of each source region (holes stay holes). */
static int ram_copy(const struct ram_map *src, const struct ram_map *dst)
{
	int i;

	if (src->view.nregions != dst->view.nregions)
		return -EINVAL;
	for (i = 0; i < src->view.nregions; i++) {
		uint64_t size = src->view.r[i].size, off = 0, start, end;

		if (dst->view.r[i].size != size || dst->view.r[i].gpa != src->view.r[i].gpa)
			return -EINVAL;
		while (off < size &&
		       fd_next_data(src->fds[i], off, size, &start, &end) == 0) {
			memcpy((uint8_t *)dst->view.r[i].host + start,
			       src->view.r[i].host + start, end - start);
			off = end;
		}
	}
	return 0;
}

/* *handed: DST was sent SRC's memfds (it may hold them now). */
static int transfer_ram(struct vmm_conn *src, struct vmm_conn *dst, bool copy,
			bool *handed)
{
	Tern__Vmm__RamLayout *lay = NULL;
	struct rpc_result res;
	struct ram_map sm, dm;
	int ret;

	if (copy) {
		ret = ram_map(src, &sm, false, NULL);
		if (ret < 0)
			return ret;
		ret = ram_map(dst, &dm, true, NULL);
		if (ret == 0) {
			ret = ram_copy(&sm, &dm);
			if (ret < 0)
				cli_errx("%s and %s have different RAM layouts", src->name,
				      dst->name);
			ram_unmap(&dm);
		}
		ram_unmap(&sm);
		return ret;
	}
	ret = ram_map(src, &sm, false, &lay);
	if (ret < 0)
		return ret;
	ret = call(dst, "AdoptRam", &lay->base, sm.fds, sm.view.nregions, NULL, &res);
	/* A refusal leaves DST none of the memfds (vmm.proto); anything else
	 * (no answer) may not. */
	*handed = ret == 0 || !res.remote;
	rpc_result_close_fds(&res);
	protobuf_c_message_free_unpacked(&lay->base, NULL);
	ram_unmap(&sm);
	return ret;
}

/*
 * DST must be incoming, and of SRC's size: checked before SRC stops, as
 * DST would refuse the RAM only after.
 */
static int transfer_check(struct vmm_conn *src, struct vmm_conn *dst)
{
	Tern__Vmm__VmmStatus *ss = NULL, *ds = NULL;
	char smem[32], dmem[32];
	int ret = -EINVAL;

	if (get_status(dst, &ds) < 0 || get_status(src, &ss) < 0)
		goto out;
	conn_watch_confirm(dst, ds);
	fmt_size(ss->memory, smem, sizeof(smem));
	fmt_size(ds->memory, dmem, sizeof(dmem));
	if (ds->state != TERN__VMM__RUN_STATE__RUN_STATE_INCOMING)
		cli_errx("vmm %s is not waiting for an incoming guest (start it with "
			 "--incoming)", dst->name);
	else if (ss->moved_to[0])
		cli_errx("the guest of %s moved to %s: the copy in %s is stale, and "
			 "is not moved again", src->name, ss->moved_to, src->name);
	else if (ss->state == TERN__VMM__RUN_STATE__RUN_STATE_SHUTDOWN ||
		 ss->state == TERN__VMM__RUN_STATE__RUN_STATE_ERROR)
		cli_errx("vmm %s: cannot save state: the VM is in state %s%s%s",
			 src->name, run_state_name(ss->state),
			 ss->message[0] ? ": " : "", ss->message);
	else if (ss->dirty_logging)
		cli_errx("vmm %s is being migrated (dirty logging is on): wait for "
			 "that job, or cancel it (migctl status %s)", src->name,
			 src->name);
	else if (ss->memory != ds->memory || ss->vcpus != ds->vcpus)
		cli_errx("vmm %s has %s and %u vCPU%s, %s has %s and %u: start %s "
			 "with the same --memory and --vcpus", dst->name, dmem,
			 ds->vcpus, ds->vcpus == 1 ? "" : "s", src->name, smem,
			 ss->vcpus, dst->name);
	else
		ret = 0;
out:
	if (ss)
		protobuf_c_message_free_unpacked(&ss->base, NULL);
	if (ds)
		protobuf_c_message_free_unpacked(&ds->base, NULL);
	return ret;
}

/*
 * One move at a time, each held by this connection until it closes:
 * DST for this transfer (no migration or other transfer fills it), then
 * SRC, once paused and before it is saved, marked as moved to DST (no
 * migration or other transfer takes its guest, and nobody else resumes
 * it).  A refusal says who holds which.
 */
static int transfer_hold(struct vmm_conn *src, struct vmm_conn *dst)
{
	Tern__Vmm__IncomingHold hold = TERN__VMM__INCOMING_HOLD__INIT;
	char by[256];

	snprintf(by, sizeof(by), "vmmctl transfer from %s (pid %d)", src->name,
		 (int)getpid());
	hold.by = by;
	return call(dst, "HoldIncoming", &hold.base, NULL, 0, NULL, NULL);
}

/* Set (or clear) SRC's mark; *maybe: the vmm may hold it even though
 * the call failed (no answer came), so it is cleared on failure. */
static int transfer_mark(struct vmm_conn *src, struct vmm_conn *dst, bool set,
			 bool *maybe)
{
	Tern__Vmm__MovedNote mark = TERN__VMM__MOVED_NOTE__INIT;
	struct rpc_result res;
	char to[256];
	int ret;

	to[0] = 0;
	if (set)
		snprintf(to, sizeof(to), "vmm %s on this host (vmmctl transfer, "
			 "pid %d)", dst->name, (int)getpid());
	mark.to = to;
	/* With DST's pidfd, SRC can tell later whether DST is gone. */
	ret = call(src, "SetMoved", &mark.base, &dst->pidfd,
		   set && dst->pidfd >= 0 ? 1 : 0, NULL, &res);
	rpc_result_close_fds(&res);
	if (maybe)
		*maybe = ret == 0 || !res.remote;
	return ret;
}

static void handle_start_event(void *ctx, const char *name, const uint8_t *data,
			       size_t len)
{
	if (!strcmp(name, "starting"))
		*(bool *)ctx = true;
}

/*
 * Start the guest on DST: 0 when it runs there, -errno otherwise, said.
 * *started: DST said its vCPUs start (vmm.proto, Cont), so it may have
 * run the guest even though no answer came; without that word, a DST
 * that is gone never ran it.  An answer that DST refused stands: it did
 * not start.
 */
static int transfer_start(struct vmm_conn *src, struct vmm_conn *dst,
			  bool copy, bool *started)
{
	Tern__Vmm__VmmStatus *ds = NULL;
	struct rpc_result res;
	bool gone;
	int ret;

	ret = call_ev(dst, "Cont", NULL, NULL, 0, NULL, &res, handle_start_event,
		      started);
	rpc_result_close_fds(&res);
	if (ret == 0 || res.remote) {
		*started = ret == 0;
		return ret;
	}
	gone = conn_gone(dst);
	if (gone && !*started)
		return ret;
	if (gone && copy) {
		cli_errx("%s (pid %d) exited after it started the guest, which is "
			 "lost there; %s stays paused, marked as moved, as it was "
			 "before the transfer: 'vmmctl cont %s --force' runs it "
			 "from there", dst->name, dst->pid, src->name, src->name);
		return -EOWNERDEAD;
	}
	if (gone) {
		cli_errx("%s (pid %d) exited after it started the guest, which is "
			 "lost there; %s stays paused, marked as moved: the guest "
			 "ran on in its RAM (handed over), not in its vCPUs, and "
			 "may fail if run ('vmmctl cont %s --force')", dst->name,
			 dst->pid, src->name, src->name);
		return -EOWNERDEAD;
	}
	/* A lost answer is not a refusal: DST may run already.  Only what
	 * DST says now decides whether SRC may run again. */
	if (get_status(dst, &ds) < 0) {
		cli_errx("cannot tell whether %s runs the guest: %s stays paused, "
			 "marked as moved; check %s: if it does not run the "
			 "guest, quit it, then 'vmmctl cont %s --force'; if it "
			 "does, quit %s", dst->name, src->name, dst->name,
			 src->name, src->name);
		return -EOWNERDEAD;
	}
	ret = ds->state == TERN__VMM__RUN_STATE__RUN_STATE_RUNNING ? 0 : -EIO;
	/* One that said it started may have run the guest since: whatever
	 * it is now, SRC must not run beside what it did. */
	if (ret < 0 && *started) {
		cli_errx("%s started the guest, and is %s now: %s stays paused, "
			 "marked as moved; check %s: if the guest is lost there, "
			 "quit it, then 'vmmctl cont %s --force' runs %s as it "
			 "was at the transfer", dst->name, run_state_name(ds->state),
			 src->name, dst->name, src->name, src->name);
		ret = -EOWNERDEAD;
	}
	protobuf_c_message_free_unpacked(&ds->base, NULL);
	return ret;
}

/* SRC's throttle, an operator's (no migration runs on SRC: checked
 * first), as it is once SRC is paused and marked: the guest keeps it on
 * DST, which is SRC's successor on this host. */
static int transfer_throttle(struct vmm_conn *src, uint32_t *percent)
{
	Tern__Vmm__VmmStatus *ss = NULL;

	if (get_status(src, &ss) < 0)
		return -EIO;
	*percent = ss->throttle;
	protobuf_c_message_free_unpacked(&ss->base, NULL);
	return 0;
}

/*
 * Stop SRC, give its RAM (the memfds themselves, or a copy) and state to
 * the incoming DST, start DST and quit SRC.  Until DST runs, any failure
 * resumes SRC: the guest is never lost.  SRC is claimed (marked) before
 * it is saved, so that nobody runs it between its state and its RAM.
 */
static int cmd_transfer(struct vmm_conn *src, struct vmm_conn *dst, bool copy)
{
	Tern__Vmm__VmState *st = NULL;
	struct rpc_result res;
	bool was_running = false, handed = false, marked = false, loaded = false;
	Tern__Vmm__Throttle thr = TERN__VMM__THROTTLE__INIT;
	bool started = false, gone;
	int ret;

	conn_watch(dst);
	if (transfer_check(src, dst) < 0 || transfer_hold(src, dst) < 0)
		return CLI_FAILED;
	if (pause_for_view(src, true, &was_running) < 0)
		return CLI_FAILED;
	ret = transfer_mark(src, dst, true, &marked);
	if (ret == 0)
		ret = transfer_throttle(src, &thr.percent);
	if (ret == 0)
		ret = call(src, "SaveState", NULL, NULL, 0, (ProtobufCMessage **)&st,
			   NULL);
	if (ret == 0)
		ret = transfer_ram(src, dst, copy, &handed);
	if (ret == 0) {
		/* Unless DST refused it, it may hold the guest now. */
		ret = call(dst, "LoadState", &st->base, NULL, 0, NULL, &res);
		rpc_result_close_fds(&res);
		loaded = ret == 0 || !res.remote;
	}
	if (st)
		protobuf_c_message_free_unpacked(&st->base, NULL);
	if (ret == 0 && thr.percent)
		ret = call(dst, "SetThrottle", &thr.base, NULL, 0, NULL, NULL);
	/* A guest its operator had paused stays paused (Stop takes the
	 * loaded DST to paused, no vCPU run): a failure, even of a lost
	 * answer, leaves nothing that ran, and DST is made to quit. */
	if (ret == 0 && was_running)
		ret = transfer_start(src, dst, copy, &started);
	else if (ret == 0) {
		ret = call(dst, "Stop", NULL, NULL, 0, NULL, &res);
		rpc_result_close_fds(&res);
		if (ret == -EINVAL && res.remote)
			cli_errx("note: a vmm older than this vmmctl cannot keep a "
				 "moved guest paused");
	}
	if (ret == -EOWNERDEAD)
		return CLI_FAILED;      /* said: SRC stays paused and marked */
	if (ret < 0) {
		/* A destination that was sent the source's memfds, or its
		 * state (with a copy of its RAM), must never run beside it:
		 * end it before the source resumes, unless it has exited
		 * without starting the guest.  One that was not sent them
		 * stays as it was, waiting. */
		gone = (handed || loaded) && !started && conn_gone(dst);
		if ((handed || loaded) && !gone && quit_vmm(dst) < 0) {
			/* Its end may be why Quit failed. */
			gone = !started && conn_gone(dst);
			if (!gone) {
				cli_errx("transfer failed and %s may hold %s's guest: "
					 "%s stays paused%s; quit %s, then 'vmmctl "
					 "cont %s%s'", dst->name, src->name, src->name,
					 marked ? ", marked as moved" : "", dst->name,
					 src->name, marked ? " --force" : "");
				return CLI_FAILED;
			}
		}
		if (gone)
			cli_errx("transfer failed; %s (pid %d) has exited without "
				 "starting the guest: it holds nothing of it",
				 dst->name, dst->pid);
		else if (handed || loaded)
			cli_errx("transfer failed; %s, which was sent %s's %s, was "
				 "made to quit", dst->name, src->name,
				 handed ? "RAM" : "state");
		if (marked && transfer_mark(src, dst, false, NULL) < 0) {
			cli_errx("transfer failed; %s stays paused, marked as moved "
				 "to %s: 'vmmctl cont %s --force' runs it", src->name,
				 dst->name, src->name);
			return CLI_FAILED;
		}
		if (was_running && call(src, "Cont", NULL, NULL, 0, NULL, NULL) == 0)
			cli_errx("transfer failed; %s is running again", src->name);
		return CLI_FAILED;
	}
	/* DST has the guest (runs it, or holds it paused): SRC's copy is
	 * stale for good, whatever DST becomes later (the pidfd in its
	 * mark would say, once DST exits, that SRC may be the only copy). */
	if (dst->pidfd >= 0) {
		close(dst->pidfd);
		dst->pidfd = -1;
		transfer_mark(src, dst, true, NULL);
	}
	if (quit_vmm(src) < 0)
		cli_errx("%s %s the guest now, but %s did not quit: stop it by hand",
			 dst->name, was_running ? "runs" : "holds", src->name);
	printf("%s now %s on %s (%s", src->name, was_running ? "runs" : "is",
	       dst->name, copy ? "RAM copied" : "RAM handed over");
	if (thr.percent)
		printf("; vCPUs throttled %u%%, as on %s", thr.percent, src->name);
	if (!was_running)
		printf("; paused, as it was on %s: 'vmmctl cont %s' runs it",
		       src->name, dst->name);
	printf(")\n");
	return CLI_OK;
}

/* ---- memory access ---------------------------------------------------- */

static int cmd_read(struct vmm_conn *c, uint64_t gpa, uint64_t len)
{
	Tern__Vmm__MemRange r = TERN__VMM__MEM_RANGE__INIT;
	Tern__Vmm__MemData *d = NULL;
	uint64_t done = 0;
	size_t i;

	while (done < len) {
		r.gpa = gpa + done;
		r.len = MIN(len - done, 1u << 20);
		if (call(c, "ReadMem", &r.base, NULL, 0, (ProtobufCMessage **)&d, NULL) < 0)
			return CLI_FAILED;
		if (d->data.len == 0 || d->data.len > r.len) {
			cli_errx("vmm %s: ReadMem answered %zu bytes for %u", c->name,
			      d->data.len, r.len);
			protobuf_c_message_free_unpacked(&d->base, NULL);
			return CLI_FAILED;
		}
		for (i = 0; i < d->data.len; i++)
			printf("%s%02x", i % 16 == 0 ? (i ? "\n" : "") : " ",
			       d->data.data[i]);
		if (i % 16 || i)
			printf("\n");
		done += d->data.len;
		protobuf_c_message_free_unpacked(&d->base, NULL);
	}
	return CLI_OK;
}

static int cmd_write(struct vmm_conn *c, uint64_t gpa, uint8_t *buf, size_t len,
		     bool force)
{
	Tern__Vmm__MemData d = TERN__VMM__MEM_DATA__INIT;

	d.force = force;
	d.gpa = gpa;
	d.data.data = buf;
	d.data.len = len;
	return call(c, "WriteMem", &d.base, NULL, 0, NULL, NULL) < 0 ?
	       CLI_FAILED : CLI_OK;
}

/* ---- dirty rate -------------------------------------------------------- */

static volatile sig_atomic_t interrupted;

static void handle_interrupt(int sig)
{
	interrupted = sig;
}

/* Sleep, but return early (false) when interrupted. */
static bool sleep_ms(unsigned int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		if (interrupted)
			return false;
	return !interrupted;
}

static int cmd_dirty_rate(struct vmm_conn *c, unsigned int seconds)
{
	Tern__Vmm__DirtyInfo *info = NULL;
	Tern__Vmm__DirtySyncResult *sync = NULL;
	struct rpc_result res;
	uint64_t *map = MAP_FAILED, total = 0;
	uint64_t t0, t1;
	unsigned int i;
	int code = CLI_FAILED;

	struct sigaction sa = { .sa_handler = handle_interrupt };

	/* An interrupted measurement must still turn dirty logging off. */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if (call(c, "DirtyStart", NULL, NULL, 0, (ProtobufCMessage **)&info, &res) < 0)
		return CLI_FAILED;
	if (res.nfds == 1 && info->bitmap_bytes)
		map = mmap(NULL, info->bitmap_bytes, PROT_READ | PROT_WRITE,
			   MAP_SHARED, res.fds[0], 0);
	rpc_result_close_fds(&res);
	if (map == MAP_FAILED) {
		cli_errx("vmm %s: DirtyStart gave no usable bitmap", c->name);
		goto stop;
	}
	t0 = now_ns();
	for (i = 0; i < seconds; i++) {
		if (!sleep_ms(1000)) {
			cli_errx("interrupted; dirty logging turned off");
			goto stop;
		}
		if (call(c, "DirtySync", NULL, NULL, 0, (ProtobufCMessage **)&sync, NULL) < 0)
			goto stop;
		total += sync->dirty_pages;
		memset(map, 0, info->bitmap_bytes);
		protobuf_c_message_free_unpacked(&sync->base, NULL);
	}
	t1 = now_ns();
	if (opts.json)
		printf("{\"name\":\"%s\",\"dirty_pages\":%llu,\"seconds\":%.3f,"
		       "\"pages_per_second\":%.0f}\n", c->name,
		       (unsigned long long)total, (t1 - t0) / 1e9,
		       total / ((t1 - t0) / 1e9));
	else
		printf("%s: %llu pages dirtied in %.1f s: %.0f pages/s (%.1f MiB/s)\n",
		       c->name, (unsigned long long)total, (t1 - t0) / 1e9,
		       total / ((t1 - t0) / 1e9),
		       total * 4096.0 / (1 << 20) / ((t1 - t0) / 1e9));
	code = CLI_OK;
stop:
	if (map != MAP_FAILED)
		munmap(map, info->bitmap_bytes);
	if (info)
		protobuf_c_message_free_unpacked(&info->base, NULL);
	if (call(c, "DirtyStop", NULL, NULL, 0, NULL, NULL) < 0)
		code = CLI_FAILED;
	return code;
}

static int cmd_throttle(struct vmm_conn *c, uint64_t percent)
{
	Tern__Vmm__Throttle t = TERN__VMM__THROTTLE__INIT;

	t.percent = percent;
	if (call(c, "SetThrottle", &t.base, NULL, 0, NULL, NULL) < 0)
		return CLI_FAILED;
	if (opts.json)
		printf("{\"name\":\"%s\",\"throttle\":%u}\n", c->name, t.percent);
	else
		printf("%s: vCPUs throttled %u%%\n", c->name, t.percent);
	return CLI_OK;
}

/* ---- main ---------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
"usage: vmmctl [--rundir DIR] [--json] [--timeout SEC] COMMAND NAME [ARGS]\n"
"  status NAME              state of the vmm and its guest\n"
"  stop NAME                pause the guest's vCPUs\n"
"  cont NAME [--force]      resume them (or start a loaded incoming guest)\n"
"  quit NAME                end the vmm\n"
"  save NAME FILE           write the paused VM's CPU and device state (no RAM)\n"
"  load NAME FILE           load a state FILE into an incoming vmm\n"
"  check NAME               verify the test guest's memory (pauses it meanwhile)\n"
"  transfer SRC DST [--copy]  move the guest to the incoming vmm DST\n"
"  read NAME GPA LEN        print guest memory in hex\n"
"  write NAME GPA HEX [--force]  write bytes into guest memory (debugging)\n"
"  dirty-rate NAME [SEC]    measure how fast the guest dirties memory\n"
"  throttle NAME PERCENT    take PERCENT of the vCPUs' time (0 lifts it)\n"
"  help [COMMAND]           this, or one command's usage\n"
"see vmmctl(8)\n");
}

/* Parsed arguments of one command, all checked before connecting. */
struct cmd_args {
	uint64_t gpa, len, seconds;
	uint8_t *bytes;                 /* write */
	size_t nbytes;
	bool flag;                      /* the command's flag: transfer --copy,
					 * cont --force, write --force */
};

/*
 * write's bytes, as many as Linux passes in one argument with 4 KiB
 * pages: MAX_ARG_STRLEN is 128 KiB with the NUL, 131070 hex digits.
 * Longer, exec fails there ("Argument list too long") before vmmctl
 * runs, so the usage line states the limit that holds; where pages
 * are larger, this keeps it the same.
 */
#define WRITE_MAX_BYTES 65535

static int parse_hex(const char *hex, struct cmd_args *a)
{
	size_t n = strlen(hex), i;
	static const char digits[] = "0123456789abcdefABCDEF";

	if (n == 0 || n % 2 || n / 2 > WRITE_MAX_BYTES ||
	    strspn(hex, digits) != n) {
		cli_errx("write: give 1 to %d bytes as an even number of hex "
			 "digits", WRITE_MAX_BYTES);
		return -EINVAL;
	}
	a->nbytes = n / 2;
	a->bytes = malloc(a->nbytes);
	if (!a->bytes)
		return -ENOMEM;
	for (i = 0; i < a->nbytes; i++) {
		unsigned int b;

		sscanf(hex + 2 * i, "%2x", &b);
		a->bytes[i] = b;
	}
	return 0;
}

static const struct command {
	const char *name;
	int min, max;                   /* arguments after the command */
	const char *usage;
	const char *flag;               /* what argument max may be instead */
} commands[] = {
	{ "status", 1, 1, "NAME", NULL },
	{ "stop", 1, 1, "NAME", NULL },
	{ "cont", 1, 2, "NAME [--force]", "--force" },
	{ "quit", 1, 1, "NAME", NULL },
	{ "save", 2, 2, "NAME FILE", NULL },
	{ "load", 2, 2, "NAME FILE", NULL },
	{ "check", 1, 1, "NAME", NULL },
	{ "transfer", 2, 3, "SRC DST [--copy]", "--copy" },
	{ "read", 3, 3, "NAME GPA LEN", NULL },
	{ "write", 3, 4, "NAME GPA HEX [--force]", "--force" },
	{ "dirty-rate", 1, 2, "NAME [SEC]", NULL },
	{ "throttle", 2, 2, "NAME PERCENT", NULL },
};

static const struct cli_commands cli_commands = {
	commands, ARRAY_SIZE(commands), sizeof(commands[0]),
	offsetof(struct command, usage), usage
};

static int parse_cmd(const struct command *c, int argc, char **argv,
		     struct cmd_args *a)
{
	const char *name = c->name;
	int i;

	/* An option among the arguments is named, not counted. */
	for (i = 1; i < argc; i++) {
		if (strncmp(argv[i], "--", 2) || !argv[i][2] ||
		    (c->flag && i == c->max && !strcmp(argv[i], c->flag)))
			continue;
		cli_errx("%s: unknown option '%s'%s (see vmmctl --help)", name,
			 argv[i], cli_global_option(argv[i] + 2,
			 strcspn(argv[i] + 2, "=")) ?
			 ": global options go before the command" : "");
		return -EINVAL;
	}
	if (argc - 1 < c->min || argc - 1 > c->max) {
		cli_errx("usage: vmmctl %s %s", name, c->usage);
		return -EINVAL;
	}
	if (c->flag && argc - 1 == c->max) {
		if (strcmp(argv[c->max], c->flag)) {
			cli_errx("usage: vmmctl %s %s", name, c->usage);
			return -EINVAL;
		}
		a->flag = true;
	}
	if ((!strcmp(name, "read") || !strcmp(name, "write")) &&
	    parse_u64(argv[2], 0, UINT64_MAX, &a->gpa) < 0) {
		cli_errx("%s: '%s' is not a guest physical address", name, argv[2]);
		return -EINVAL;
	}
	if (!strcmp(name, "read") && parse_u64(argv[3], 1, 1ULL << 32, &a->len) < 0) {
		cli_errx("read: '%s' is not a length from 1 to 4 GiB", argv[3]);
		return -EINVAL;
	}
	if (!strcmp(name, "write"))
		return parse_hex(argv[3], a);
	if (!strcmp(name, "throttle") && parse_u64(argv[2], 0, 99, &a->len) < 0) {
		cli_errx("throttle: '%s' is not a percentage from 0 to 99", argv[2]);
		return -EINVAL;
	}
	a->seconds = 3;
	if (!strcmp(name, "dirty-rate") && argc == 3 &&
	    parse_u64(argv[2], 1, 3600, &a->seconds) < 0) {
		cli_errx("dirty-rate: '%s' is not a number of seconds from 1 to 3600",
		      argv[2]);
		return -EINVAL;
	}
	return 0;
}

static int run_cmd(const char *name, struct vmm_conn *c, char **argv,
		   struct cmd_args *a)
{
	if (!strcmp(name, "status"))
		return cmd_simple(c, "Status");
	if (!strcmp(name, "stop"))
		return cmd_simple(c, "Stop");
	if (!strcmp(name, "cont"))
		return a->flag ? cmd_cont_force(c) : cmd_simple(c, "Cont");
	if (!strcmp(name, "quit"))
		return cmd_quit(c);
	if (!strcmp(name, "save"))
		return cmd_save(c, argv[2]);
	if (!strcmp(name, "load"))
		return cmd_load(c, argv[2]);
	if (!strcmp(name, "check"))
		return cmd_check(c);
	if (!strcmp(name, "read"))
		return cmd_read(c, a->gpa, a->len);
	if (!strcmp(name, "write"))
		return cmd_write(c, a->gpa, a->bytes, a->nbytes, a->flag);
	if (!strcmp(name, "throttle"))
		return cmd_throttle(c, a->len);
	return cmd_dirty_rate(c, a->seconds);
}

static int run(int argc, char **argv)
{
	const struct command *cmd = NULL;
	struct vmm_conn c = { 0 }, d = { 0 };
	struct cmd_args a = { 0 };
	int code = CLI_FAILED;
	size_t i;

	cmd = cli_command(&cli_commands, argc, argv, &code);
	if (!cmd)
		return code;
	if (parse_cmd(cmd, argc, argv, &a) < 0)
		return CLI_USAGE;
	/* A wrong value on the command line, as vmmctl(8) says: exit 2
	 * (conn_open takes names checked here). */
	for (i = 1; i <= (!strcmp(cmd->name, "transfer") ? 2u : 1u); i++)
		if (name_valid(argv[i]) < 0) {
			cli_errx("'%s' is not a valid VM name (" NAME_RULE ")",
				 argv[i]);
			return CLI_USAGE;
		}
	if (conn_open(&c, argv[1]) < 0)
		goto out;
	if (!strcmp(cmd->name, "transfer")) {
		if (conn_open(&d, argv[2]) == 0)
			code = cmd_transfer(&c, &d, a.flag);
	} else {
		code = run_cmd(cmd->name, &c, argv, &a);
	}
out:
	conn_close(&c);
	conn_close(&d);
	free(a.bytes);
	return code;
}

int main(int argc, char **argv)
{
	int cmd;

	cli_init("vmmctl", "vmmctl(8)");
	cmd = cli_parse_globals(argc, argv, &opts, usage);
	if (cmd < 0)
		return cmd == -1 ? CLI_OK : CLI_USAGE;
	return run(argc - cmd, argv + cmd);
}
