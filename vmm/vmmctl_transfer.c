// SPDX-License-Identifier: GPL-2.0-only
/*
 * vmmctl transfer: move a guest to an incoming vmm on this host, its RAM
 * handed over (the memfds) or copied, its state loaded there, without
 * ever losing it: until the destination runs it, a failure resumes the
 * source.  main() (vmmctl.c) calls cmd_transfer with both connections
 * open.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/cli.h"
#include "common/memcheck.h"
#include "common/rpc.h"
#include "common/util.h"
#include "proto/vmm.pb-c.h"
#include "vmm/vmmctl.h"

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
	ret = conn_call(dst, "AdoptRam", &lay->base, sm.fds, sm.view.nregions, NULL, &res);
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

	if (conn_get_status(dst, &ds) < 0 || conn_get_status(src, &ss) < 0)
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
	return conn_call(dst, "HoldIncoming", &hold.base, NULL, 0, NULL, NULL);
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
	ret = conn_call(src, "SetMoved", &mark.base, &dst->pidfd,
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

	ret = conn_call_ev(dst, "Cont", NULL, NULL, 0, NULL, &res, handle_start_event,
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
	if (conn_get_status(dst, &ds) < 0) {
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

	if (conn_get_status(src, &ss) < 0)
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
int cmd_transfer(struct vmm_conn *src, struct vmm_conn *dst, bool copy)
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
		ret = conn_call(src, "SaveState", NULL, NULL, 0, (ProtobufCMessage **)&st,
				NULL);
	if (ret == 0)
		ret = transfer_ram(src, dst, copy, &handed);
	if (ret == 0) {
		/* Unless DST refused it, it may hold the guest now. */
		ret = conn_call(dst, "LoadState", &st->base, NULL, 0, NULL, &res);
		rpc_result_close_fds(&res);
		loaded = ret == 0 || !res.remote;
	}
	if (st)
		protobuf_c_message_free_unpacked(&st->base, NULL);
	if (ret == 0 && thr.percent)
		ret = conn_call(dst, "SetThrottle", &thr.base, NULL, 0, NULL, NULL);
	/* A guest its operator had paused stays paused (Stop takes the
	 * loaded DST to paused, no vCPU run): a failure, even of a lost
	 * answer, leaves nothing that ran, and DST is made to quit. */
	if (ret == 0 && was_running)
		ret = transfer_start(src, dst, copy, &started);
	else if (ret == 0) {
		ret = conn_call(dst, "Stop", NULL, NULL, 0, NULL, &res);
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
		if ((handed || loaded) && !gone && quit_vmm(dst, false) < 0) {
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
		if (was_running && conn_call(src, "Cont", NULL, NULL, 0, NULL, NULL) == 0)
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
	if (quit_vmm(src, false) < 0)
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
