// SPDX-License-Identifier: GPL-2.0-only
/*
 * vmmctl: the commands on one vmm.  Status and run control (stop, cont,
 * quit), state files (save, load), mapping the guest's RAM and the test
 * guest's memory check, memory access (read, write), the dirty rate and
 * the throttle.  main() (vmmctl.c) runs them; a transfer
 * (vmmctl_transfer.c) uses quit_vmm, the RAM mapping and pause_for_view.
 */
#include <errno.h>
#include <fcntl.h>
#include <endian.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cli.h"
#include "common/json.h"
#include "common/memcheck.h"
#include "common/pbuf.h"
#include "common/ramhash.h"
#include "common/rpc.h"
#include "common/testguest.h"
#include "common/util.h"
#include "proto/vmm.pb-c.h"
#include "vmm/vmmctl.h"

/* A state file: the magic, the message's length and (since TERNVMS2)
 * its checksum, each 8 bytes little-endian, then the message.  A file
 * of TERNVMS1 (no checksum) is still read. */
#define STATE_FILE_MAGIC "TERNVMS2"
#define STATE_FILE_MAGIC_V1 "TERNVMS1"
#define STATE_FILE_HDR 24
#define STATE_FILE_HDR_V1 16
#define STATE_FILE_MAX (64u << 20)

static void print_status(const Tern__Vmm__VmmStatus *s)
{
	char mem[32];

	if (vmmctl_opts.json) {
		json_print(&s->base);
		return;
	}
	fmt_size(s->memory, mem, sizeof(mem));
	printf("%s: %s, %u vCPU%s, %s%s, pid %u", s->name,
	       run_state_name(s->state), s->vcpus, s->vcpus == 1 ? "" : "s", mem,
	       s->hugepages ? " in 2 MiB huge pages" : "", s->pid);
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
	else if (s->moved_to[0] && s->moved_lost)
		printf(", moved to %s by a postcopy whose destination lost the "
		       "guest (this copy, as it was at the switch, is its only "
		       "one: 'vmmctl cont %s --force' runs it once its job has "
		       "ended, 'migctl cancel %s --force')", s->moved_to,
		       s->name, s->name);
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
int cmd_simple(struct vmm_conn *c, const char *method)
{
	Tern__Vmm__VmmStatus *s = NULL;
	int ret;

	ret = conn_call(c, method, NULL, NULL, 0, (ProtobufCMessage **)&s, NULL);
	if (ret < 0)
		return CLI_FAILED;
	print_status(s);
	protobuf_c_message_free_unpacked(&s->base, NULL);
	return CLI_OK;
}

/* cont --force: a copy marked as moved away runs after all (vmm.proto,
 * SetMoved), as when its destination lost the guest. */
int cmd_cont_force(struct vmm_conn *c)
{
	Tern__Vmm__MovedNote clear = TERN__VMM__MOVED_NOTE__INIT;

	if (conn_call(c, "SetMoved", &clear.base, NULL, 0, NULL, NULL) < 0)
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
int quit_vmm(struct vmm_conn *c, bool force)
{
	Tern__Vmm__QuitRequest q = TERN__VMM__QUIT_REQUEST__INIT;
	int pid, pidfd = conn_pidfd(c, &pid), ret;
	struct pollfd p;

	q.force = force;
	ret = conn_call(c, "Quit", &q.base, NULL, 0, NULL, NULL);
	if (ret < 0)
		goto out;
	if (pidfd >= 0) {
		p = (struct pollfd){ pidfd, POLLIN, 0 };
		ret = poll_until(&p, 1, vmmctl_opts.timeout_ms > 0 ?
				 deadline_ms(vmmctl_opts.timeout_ms) : 0);
		ret = ret < 0 ? ret : 0;
	} else {
		ret = rpc_client_wait_hangup(c->cl, vmmctl_opts.timeout_ms);
	}
	if (ret == -ETIMEDOUT)
		cli_errx("vmm %s answered Quit, but has not exited within %d s "
			 "(its name stays taken until it does)", c->name,
			 vmmctl_opts.timeout_ms / 1000);
	else if (ret < 0)
		cli_errx("vmm %s answered Quit; waiting for its exit: %s",
			 c->name, strerror(-ret));
out:
	if (pidfd >= 0)
		close(pidfd);
	return ret;
}

int cmd_quit(struct vmm_conn *c, bool force)
{
	return quit_vmm(c, force) < 0 ? CLI_FAILED : CLI_OK;
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

/*
 * The file takes FILE's name by rename: whatever had it before is gone.
 * Fine for an older state file, or an empty file; not for any other
 * file, nor a device, a FIFO, a socket or a link: as root, 'save vm
 * /dev/null' would leave the host a regular file there, and a slip of
 * the path would lose a file.  Those are refused, before the VM is asked.
 */
static const char *save_target_kind(const char *path)
{
	char head[7];           /* "TERNVMS", of any version */
	bool state = false;
	struct stat st;
	int fd;

	if (lstat(path, &st) < 0 || (S_ISREG(st.st_mode) && st.st_size == 0))
		return NULL;    /* (a missing directory: said at the write) */
	if (S_ISREG(st.st_mode)) {
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd >= 0) {
			state = read(fd, head, sizeof(head)) == (ssize_t)sizeof(head) &&
				!memcmp(head, STATE_FILE_MAGIC, sizeof(head));
			close(fd);
		}
		return state ? NULL : "a file that is no state file (it does "
		       "not begin with TERNVMS)";
	}
	return S_ISLNK(st.st_mode) ? "a symbolic link (give the path it "
				     "points to)" :
	       S_ISDIR(st.st_mode) ? "a directory" :
	       S_ISCHR(st.st_mode) ? "a character device" :
	       S_ISBLK(st.st_mode) ? "a block device" :
	       S_ISFIFO(st.st_mode) ? "a FIFO" :
	       S_ISSOCK(st.st_mode) ? "a socket" : "not a regular file";
}

int cmd_save(struct vmm_conn *c, const char *path)
{
	Tern__Vmm__VmState *st = NULL;
	const char *kind = save_target_kind(path);
	int ret;

	if (kind) {
		cli_errx("%s is %s: save writes a new file, or replaces a state "
			 "file, nothing else", path, kind);
		return CLI_FAILED;
	}
	if (conn_call(c, "SaveState", NULL, NULL, 0, (ProtobufCMessage **)&st, NULL) < 0)
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

int cmd_load(struct vmm_conn *c, const char *path)
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
	ret = conn_call(c, "LoadState", &st->base, NULL, 0, NULL, NULL);
	protobuf_c_message_free_unpacked(&st->base, NULL);
	if (ret < 0)
		return CLI_FAILED;
	/* A state file holds no RAM: unless something brought the guest's
	 * (AdoptRam before), there is nothing to start. */
	if (conn_get_status(c, &s) < 0) {
		/* The load is done all the same: say so, and exit 0. */
		fprintf(vmmctl_opts.json ? stderr : stdout, "loaded %s into %s (whether "
			"it has its RAM is unknown: 'vmmctl status %s')\n", path,
			c->name, c->name);
		return CLI_OK;
	}
	ram_missing = s->ram_missing;
	if (vmmctl_opts.json)
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

void ram_unmap(struct ram_map *m)
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
int ram_map(struct vmm_conn *c, struct ram_map *m, bool rw,
	    Tern__Vmm__RamLayout **ret_layout)
{
	Tern__Vmm__RamLayout *lay = NULL;
	struct rpc_result res;
	size_t i;
	int ret;

	memset(m, 0, sizeof(*m));
	ret = conn_call(c, "GetRam", NULL, NULL, 0, (ProtobufCMessage **)&lay, &res);
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
	ret = conn_call(c, "Stop", &rq.base, NULL, 0, (ProtobufCMessage **)&s, NULL);
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
int pause_for_view(struct vmm_conn *c, bool intent, bool *was_running)
{
	Tern__Vmm__RunState found = TERN__VMM__RUN_STATE__RUN_STATE_NONE;
	Tern__Vmm__VmmStatus *s = NULL;
	int ret = conn_get_status(c, &s);

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

	if (vmmctl_opts.json) {
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
		fprintf(vmmctl_opts.json ? stderr : stdout, "  %s\n", r->reports[i]);
}

/*
 * The guest the check paused runs again.  One that a migration took in
 * the meantime (Cont's EBUSY: paused for its switch, or moved away) is
 * the migration's now: said, and the check's result stands.
 */
static int check_resume(struct vmm_conn *c, int code)
{
	struct rpc_result res;
	bool taken;
	int r;

	r = rpc_client_call(c->cl, &tern__vmm__vmm__descriptor, "Cont", NULL,
			    NULL, 0, NULL, &res, vmmctl_opts.timeout_ms, NULL,
			    NULL);
	taken = r == -EBUSY && res.remote;
	if (taken)
		fprintf(stderr, "vmmctl: vmm %s: not resumed after the check: "
			"%s\n", c->name, res.message);
	else if (r < 0)
		cli_errx("vmm %s: Cont: %s%s", c->name, res.message[0] ?
			 res.message : strerror(-r),
			 cli_call_hint(r, res.remote, rpc_client_peer_pid(c->cl),
				       true));
	rpc_result_close_fds(&res);
	return r < 0 && !taken ? CLI_FAILED : code;
}

int cmd_check(struct vmm_conn *c)
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
	return was_running ? check_resume(c, code) : code;
}

/* ---- memory access ---------------------------------------------------- */

int cmd_read(struct vmm_conn *c, uint64_t gpa, uint64_t len)
{
	Tern__Vmm__MemRange r = TERN__VMM__MEM_RANGE__INIT;
	Tern__Vmm__MemData *d = NULL;
	uint64_t done = 0;
	size_t i;

	while (done < len) {
		r.gpa = gpa + done;
		r.len = MIN(len - done, 1u << 20);
		if (conn_call(c, "ReadMem", &r.base, NULL, 0, (ProtobufCMessage **)&d, NULL) < 0)
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

int cmd_write(struct vmm_conn *c, uint64_t gpa, uint8_t *buf, size_t len,
	      bool force)
{
	Tern__Vmm__MemData d = TERN__VMM__MEM_DATA__INIT;

	d.force = force;
	d.gpa = gpa;
	d.data.data = buf;
	d.data.len = len;
	return conn_call(c, "WriteMem", &d.base, NULL, 0, NULL, NULL) < 0 ?
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

int cmd_dirty_rate(struct vmm_conn *c, unsigned int seconds)
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
	if (conn_call(c, "DirtyStart", NULL, NULL, 0, (ProtobufCMessage **)&info, &res) < 0)
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
		if (conn_call(c, "DirtySync", NULL, NULL, 0, (ProtobufCMessage **)&sync, NULL) < 0)
			goto stop;
		total += sync->dirty_pages;
		memset(map, 0, info->bitmap_bytes);
		protobuf_c_message_free_unpacked(&sync->base, NULL);
	}
	t1 = now_ns();
	if (vmmctl_opts.json)
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
	if (conn_call(c, "DirtyStop", NULL, NULL, 0, NULL, NULL) < 0)
		code = CLI_FAILED;
	return code;
}

int cmd_throttle(struct vmm_conn *c, uint64_t percent)
{
	Tern__Vmm__Throttle t = TERN__VMM__THROTTLE__INIT;

	t.percent = percent;
	if (conn_call(c, "SetThrottle", &t.base, NULL, 0, NULL, NULL) < 0)
		return CLI_FAILED;
	if (vmmctl_opts.json)
		printf("{\"name\":\"%s\",\"throttle\":%u}\n", c->name, t.percent);
	else
		printf("%s: vCPUs throttled %u%%\n", c->name, t.percent);
	return CLI_OK;
}
