// SPDX-License-Identifier: GPL-2.0-only
/*
 * The vmm's control service (tern.vmm.Vmm in proto/vmm.proto) on
 * RUNDIR/vmm/NAME.sock: run control, state save/load, handing guest RAM
 * and the dirty bitmap to migd, and memory access for checkers.  Runs on
 * the main thread's event loop; only root and the vmm's own user may
 * connect (SO_PEERCRED).
 */
#include <errno.h>
#include <event2/event.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/fault.h"
#include "common/log.h"
#include "common/rpc.h"
#include "common/testguest.h"
#include "common/uri.h"
#include "common/util.h"
#include "vmm/vmm.h"

#define CONTROL_MAX_FRAME (4u << 20)
#define CONTROL_MAX_MEM_IO (1u << 20)
#define CONTROL_MAX_QUITTERS 16

/*
 * Where the guest's RAM came from.  A state (LoadState) holds none: an
 * incoming vmm's RAM is zeros until a guest's is brought, and a guest
 * started on zeros triple-faults at once.  Cont of a loaded state is
 * refused while nothing brought it.
 */
enum ram_from {
	RAM_FROM_NONE,          /* incoming: nothing brought the guest's RAM */
	RAM_FROM_BOOT,          /* this vmm booted its guest */
	RAM_FROM_ADOPTED,       /* AdoptRam: the guest's own memfds */
	RAM_FROM_HOLDER,        /* written by the migration or transfer that
				 * holds the vmm (HoldIncoming), which loaded
				 * the state after it */
	RAM_FROM_MAX
};

static const char *const ram_from_names[RAM_FROM_MAX] = {
	[RAM_FROM_NONE] = "none",
	[RAM_FROM_BOOT] = "booted here",
	[RAM_FROM_ADOPTED] = "adopted",
	[RAM_FROM_HOLDER] = "brought by the migration or transfer that holds this vmm",
};

static struct control {
	struct vm *vm;
	struct event_base *base;
	struct rpc_server *server;
	char path[PATH_MAX];
	bool state_loaded;              /* an incoming VM got its state */
	enum ram_from ram_from;
	char moved_to[256];             /* SetMoved: the guest runs there */
	bool moved_postcopy;            /* ... by a postcopy not complete */
	bool moved_lost;                /* ... whose destination lost the guest */
	bool quit_when_done;            /* a signal's quit, put off until the
					 * postcopy no longer needs this copy */
	int moved_pidfd;                /* and the pidfd of the vmm there, on
					 * this host, if the mover gave it; -1 */
	/* A migration's pause: the connection that turned dirty logging on,
	 * and, once that one stopped the VM, the hold that keeps everyone
	 * else from resuming it while the connection lasts (rpc_call_peer). */
	uint64_t dirty_peer, hold;
	/* HoldIncoming: the connection of the migration that waits to fill
	 * this incoming VM, and who that is, for the refusals. */
	uint64_t incoming_peer;
	char incoming_by[256];
	/* The vCPUs are paused as the operator wants them (a Stop that was
	 * not transient, or a migration that kept a paused guest paused),
	 * not only for a caller's own work: what Stop's `found` says.  A
	 * transient pause is its caller's while that stays connected; one
	 * left behind (a check killed mid-way) is the operator's, as the
	 * status shows it. */
	bool operator_paused;
	uint64_t transient_peer;
	/* Quit's callers: copies of their sockets, closed only when this vmm
	 * has let go of everything (control_release_quitters), so that the
	 * end of the connection tells them it is gone. */
	int quit_fds[CONTROL_MAX_QUITTERS];
	int nquit;
} ctl;

/* The VM is paused for a move that still runs (a migration's switch, or
 * a transfer that marked it), and the caller is not that move: it must
 * not resume the guest, nor clear or set a mark. */
static bool held_from(const struct rpc_call *call)
{
	return ctl.hold && ctl.hold != rpc_call_peer(call) &&
	       rpc_server_peer_open(ctl.server, ctl.hold);
}

/* Who holds the VM (held_from), for the refusals. */
static const char *held_msg(char *buf, size_t len)
{
	if (ctl.hold == ctl.dirty_peer && ctl.moved_lost)
		snprintf(buf, len, "its postcopy job, whose destination lost the "
			 "guest, still holds it: end the job first ('migctl "
			 "cancel %s --force'), then 'vmmctl cont %s --force' runs "
			 "this copy, the guest's only one", ctl.vm->name,
			 ctl.vm->name);
	else if (ctl.hold == ctl.dirty_peer)
		snprintf(buf, len, "a migration paused this VM for its switch, and "
			 "its job still runs (migctl status %s): the job decides "
			 "whether the guest runs here again", ctl.vm->name);
	else
		snprintf(buf, len, "the guest is being moved to %s, and that move "
			 "still runs: it decides whether the guest runs here again",
			 ctl.moved_to);
	return buf;
}

/* Dirty logging is on for another caller, still connected: a migration
 * is under way, which may yet move the guest. */
static bool migrating_from(const struct rpc_call *call)
{
	return ctl.dirty_peer && ctl.dirty_peer != rpc_call_peer(call) &&
	       rpc_server_peer_open(ctl.server, ctl.dirty_peer);
}

/* The VM waits for the guest of a migration that holds it (HoldIncoming)
 * and the caller is not that migration: it must not load, adopt, start
 * or discard another guest here.  Who holds it, or NULL. */
static const char *incoming_held_from(const struct rpc_call *call)
{
	if (!ctl.incoming_peer || ctl.incoming_peer == rpc_call_peer(call) ||
	    vm_state_now(ctl.vm) != VM_STATE_INCOMING ||
	    !rpc_server_peer_open(ctl.server, ctl.incoming_peer))
		return NULL;
	return ctl.incoming_by;
}

/* 0, or EBUSY when the VM is held from the caller, saying by whom and
 * what the caller could not do. */
static int check_incoming_hold(struct rpc_call *call, const char *doing)
{
	const char *by = incoming_held_from(call);

	if (!by)
		return 0;
	return rpc_call_errorf(call, EBUSY, "cannot %s: %s holds this vmm: only "
			       "that job fills it or starts its guest (end it "
			       "first: migctl cancel %s --wait)", doing, by, ctl.vm->name);
}

/* A text from a caller, for logs and other callers' errors: no control
 * characters, so that it cannot forge lines on a terminal. */
static int check_note(struct rpc_call *call, const char *what, const char *s)
{
	if (!str_is_text(s))
		return rpc_call_errorf(call, EINVAL, "%s holds a control "
				       "character or bytes that are not UTF-8",
				       what);
	return 0;
}

/* The vmm on this host that the guest moved to (SetMoved's pidfd) has
 * exited: this copy may be the guest's only one. */
static bool moved_gone(void)
{
	struct pollfd p = { ctl.moved_pidfd, POLLIN, 0 };

	return ctl.moved_to[0] && ctl.moved_pidfd >= 0 && poll(&p, 1, 0) == 1;
}

static void moved_forget_pidfd(void)
{
	if (ctl.moved_pidfd >= 0)
		close(ctl.moved_pidfd);
	ctl.moved_pidfd = -1;
}

static const Tern__Vmm__RunState run_states[VM_STATE_MAX] = {
	[VM_STATE_INCOMING] = TERN__VMM__RUN_STATE__RUN_STATE_INCOMING,
	[VM_STATE_RUNNING] = TERN__VMM__RUN_STATE__RUN_STATE_RUNNING,
	[VM_STATE_PAUSED] = TERN__VMM__RUN_STATE__RUN_STATE_PAUSED,
	[VM_STATE_SHUTDOWN] = TERN__VMM__RUN_STATE__RUN_STATE_SHUTDOWN,
	[VM_STATE_ERROR] = TERN__VMM__RUN_STATE__RUN_STATE_ERROR,
};

/* A state is loaded, and nothing brought its RAM: Cont would start the
 * guest on zeros. */
static bool ram_missing(void)
{
	return vm_state_now(ctl.vm) == VM_STATE_INCOMING && ctl.state_loaded &&
	       ctl.ram_from == RAM_FROM_NONE;
}

/* The status; `found`: what a Stop found (NONE for any other call). */
static int reply_status(struct rpc_call *call, Tern__Vmm__RunState found)
{
	Tern__Vmm__VmmStatus st = TERN__VMM__VMM_STATUS__INIT;
	struct vm *vm = ctl.vm;
	char msg[256];
	int i;

	pthread_mutex_lock(&vm->lock);
	st.state = run_states[vm->state];
	st.state_since_ns = vm->state_change_ns;
	str_copy(msg, vm->state_msg, sizeof(msg));
	pthread_mutex_unlock(&vm->lock);
	st.name = (char *)vm->name;
	st.vcpus = vm->nvcpus;
	st.memory = vm->memory;
	st.hugepages = vm->hugepages;
	st.guest = (Tern__Vmm__GuestKind)vm->guest.kind;
	st.guest_mode = vm->guest.kind == GUEST_KIND_TEST ?
			(char *)tg_mode_name(vm->guest.mode) : "";
	st.pid = getpid();
	st.dirty_logging = vm->dirty_on;
	st.message = msg;
	st.throttle = __atomic_load_n(&vm->throttle, __ATOMIC_RELAXED);
	for (i = 0; i < vm->nvcpus; i++)
		st.exits += __atomic_load_n(&vm->vcpus[i].exits, __ATOMIC_RELAXED);
	st.console_dropped = serial_dropped(&vm->serial);
	st.moved_to = ctl.moved_to;
	st.moved_gone = moved_gone();
	st.moved_postcopy = ctl.moved_to[0] && ctl.moved_postcopy;
	st.moved_lost = st.moved_postcopy && ctl.moved_lost;
	st.uffd = vm->uffd >= 0;
	st.ram_missing = ram_missing();
	st.found = found;
	return rpc_call_reply(call, &st.base, NULL, 0);
}

static int method_status(struct rpc_call *call, const ProtobufCMessage *arg)
{
	return reply_status(call, TERN__VMM__RUN_STATE__RUN_STATE_NONE);
}

/*
 * The reply says what the Stop found (VmmStatus.found): a migration
 * tells by it whether the guest ran when it stopped it, or its operator
 * had paused it.  An INCOMING VM whose guest is loaded, RAM and state,
 * becomes PAUSED without having run: a migration of a paused guest
 * leaves it so (only the migration that holds the vmm may, as it may
 * start it).
 */
static int method_stop(struct rpc_call *call, const ProtobufCMessage *arg)
{
	const Tern__Vmm__StopRequest *rq = (const Tern__Vmm__StopRequest *)arg;
	enum vm_state st = vm_state_now(ctl.vm);
	Tern__Vmm__RunState found = run_states[st];
	int ret;

	if (st == VM_STATE_INCOMING) {
		ret = check_incoming_hold(call, "stop");
		if (ret < 0)
			return ret;
		if (!ctl.state_loaded || ram_missing())
			return rpc_call_errorf(call, EINVAL, "cannot stop: the VM "
					       "is incoming, with %s: there is no "
					       "guest to pause", !ctl.state_loaded ?
					       "no state loaded yet" :
					       "a state loaded but no RAM brought");
	} else if (st != VM_STATE_RUNNING && st != VM_STATE_PAUSED) {
		return rpc_call_errorf(call, EINVAL, "cannot stop: the VM is in state %s",
				       vm_state_name(st));
	}
	ret = vm_pause(ctl.vm);
	if (ret < 0)
		return rpc_call_errorf(call, -ret, "vCPUs did not stop: %s",
				       strerror(-ret));
	if (st == VM_STATE_INCOMING)
		vm_set_state(ctl.vm, VM_STATE_PAUSED, NULL);
	if (ctl.dirty_peer && rpc_call_peer(call) == ctl.dirty_peer)
		ctl.hold = ctl.dirty_peer;
	/* Paused by a transient Stop only, whose caller is still there:
	 * running, as the operator has it (two transfers racing, a check). */
	if (st == VM_STATE_PAUSED && !ctl.operator_paused &&
	    (!ctl.transient_peer ||
	     !rpc_server_peer_open(ctl.server, ctl.transient_peer)))
		ctl.operator_paused = true;
	if (st == VM_STATE_PAUSED && !ctl.operator_paused)
		found = TERN__VMM__RUN_STATE__RUN_STATE_RUNNING;
	if (st == VM_STATE_RUNNING && rq->transient)
		ctl.transient_peer = rpc_call_peer(call);
	if (!rq->transient || st == VM_STATE_INCOMING)
		ctl.operator_paused = true;
	log_info(st == VM_STATE_INCOMING ? "paused: the guest loaded here has "
		 "not run (Cont starts it)" : rq->transient ? "paused (for the "
		 "caller's own work)" : "paused");
	return reply_status(call, found);
}

static int method_cont(struct rpc_call *call, const ProtobufCMessage *arg)
{
	Tern__Vmm__Empty empty = TERN__VMM__EMPTY__INIT;
	enum vm_state st = vm_state_now(ctl.vm);
	char why[512];
	int ret;

	ret = check_incoming_hold(call, "continue");
	if (ret < 0)
		return ret;
	if (st == VM_STATE_INCOMING && !ctl.state_loaded)
		return rpc_call_errorf(call, EINVAL,
				       "cannot continue: no state loaded yet");
	if (ram_missing())
		return rpc_call_errorf(call, EINVAL,
				       "cannot continue: the state loaded holds no RAM, "
				       "and nothing brought the guest's (it would start "
				       "on zeroed memory and fail at once): a guest's "
				       "RAM comes with it by 'vmmctl transfer' or a "
				       "migration into a vmm that waits --incoming, or "
				       "by AdoptRam before the state; quit %s",
				       ctl.vm->name);
	if (held_from(call))
		return rpc_call_errorf(call, EBUSY, "cannot continue: %s",
				       held_msg(why, sizeof(why)));
	if (moved_gone())
		return rpc_call_errorf(call, EBUSY,
				       "cannot continue: the guest moved to %s, and that "
				       "vmm has exited since: if it never ran the guest, "
				       "this copy is the guest, and 'vmmctl cont %s "
				       "--force' runs it; if it did, this copy is from "
				       "before the move", ctl.moved_to, ctl.vm->name);
	if (ctl.moved_to[0] && ctl.moved_postcopy && ctl.moved_lost)
		return rpc_call_errorf(call, EBUSY,
				       "cannot continue: the guest moved to %s by a "
				       "postcopy whose destination lost it (its migd "
				       "said so): this copy, as it was at the switch, "
				       "is the guest's only one, and 'vmmctl cont %s "
				       "--force' runs it once its job has ended ('migctl "
				       "cancel %s --force')", ctl.moved_to, ctl.vm->name,
				       ctl.vm->name);
	if (ctl.moved_to[0] && ctl.moved_postcopy)
		return rpc_call_errorf(call, EBUSY,
				       "cannot continue: the guest moved to %s by a "
				       "postcopy not known to have completed: it runs "
				       "there, and this copy holds the pages it may still "
				       "lack, so do not quit this vmm.  Only if that "
				       "migration can neither complete nor recover "
				       "(migctl status %s on both hosts): quit the "
				       "destination's vmm first, then 'vmmctl cont %s "
				       "--force' runs the guest here as it was at the "
				       "switch", ctl.moved_to, ctl.vm->name, ctl.vm->name);
	if (ctl.moved_to[0])
		return rpc_call_errorf(call, EBUSY,
				       "cannot continue: the guest moved to %s, and this copy is "
				       "stale: quit this vmm (only if the guest was lost there, "
				       "clear the mark first: vmmctl cont %s --force)", ctl.moved_to,
				       ctl.vm->name);
	fault_point("vmm-die-cont");
	/* A caller that asks for events (a transfer) is told before the
	 * vCPUs start: if this vmm dies with no word of it, it never ran
	 * the guest, and the source may run it again (vmm.proto, Cont). */
	if (rpc_call_wants_events(call)) {
		ret = rpc_call_event_now(call, "starting", &empty.base);
		if (ret < 0)
			return rpc_call_errorf(call, -ret, "cannot continue: the "
					       "caller was not told first that the "
					       "guest starts: %s", strerror(-ret));
	}
	ret = vm_resume(ctl.vm);
	if (ret < 0)
		return rpc_call_errorf(call, -ret, "cannot continue: the VM is in state %s",
				       vm_state_name(st));
	ctl.hold = 0;
	ctl.operator_paused = false;
	ctl.transient_peer = 0;
	log_info("running");
	fault_point("vmm-die-running");
	return reply_status(call, TERN__VMM__RUN_STATE__RUN_STATE_NONE);
}

static void handle_quit(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopexit(ctl.base, NULL);
}

/* The guest moved away by a postcopy not known to have completed: this
 * copy holds pages the destination may lack, and must not go. */
static bool needed_by_postcopy(void)
{
	return ctl.moved_to[0] && ctl.moved_postcopy;
}

bool control_may_quit(int sig)
{
	if (!needed_by_postcopy() || ctl.quit_when_done) {
		log_info("signal %d: quitting%s", sig, needed_by_postcopy() ?
			 " now (a second signal): the pages the postcopy's "
			 "destination still lacks go with this copy" : "");
		return true;
	}
	ctl.quit_when_done = true;
	log_warnx("signal %d: the guest moved to %s by a postcopy not known to "
		  "have completed, and this copy holds the pages it may still "
		  "lack: quitting once that migration completes (another "
		  "SIGTERM or SIGINT quits now, and loses them)", sig, ctl.moved_to);
	return false;
}

/* A quit put off by a signal (control_may_quit) is due once this copy
 * is no longer needed. */
static void quit_if_due(void)
{
	if (!ctl.quit_when_done || needed_by_postcopy())
		return;
	log_info("the postcopy completed: quitting, as a signal asked");
	event_base_once(ctl.base, -1, EV_TIMEOUT, handle_quit, NULL, NULL);
}

static int method_quit(struct rpc_call *call, const ProtobufCMessage *arg)
{
	const Tern__Vmm__QuitRequest *q = (const Tern__Vmm__QuitRequest *)arg;
	int fd;

	if (needed_by_postcopy() && ctl.moved_lost && !q->force)
		return rpc_call_errorf(call, EBUSY, "cannot quit: the guest moved "
				       "to %s by a postcopy whose destination lost "
				       "it: this copy, as it was at the switch, is "
				       "the guest's only one, and quitting would "
				       "lose it ('vmmctl cont %s --force' runs it once "
				       "its job has ended: 'migctl cancel %s --force'; "
				       "'vmmctl quit %s --force' quits all the same)",
				       ctl.moved_to, ctl.vm->name, ctl.vm->name,
				       ctl.vm->name);
	if (needed_by_postcopy() && !q->force)
		return rpc_call_errorf(call, EBUSY, "cannot quit: the guest moved "
				       "to %s by a postcopy not known to have "
				       "completed, and this copy holds the pages it "
				       "may still lack: quitting would lose the guest "
				       "there.  Wait for the migration to complete "
				       "(migctl status %s); only if it can neither "
				       "complete nor recover, 'vmmctl quit %s --force'",
				       ctl.moved_to, ctl.vm->name, ctl.vm->name);
	if (needed_by_postcopy())
		log_warnx("quit requested with --force: the guest moved to %s by "
			  "a postcopy not known to have completed, and the pages "
			  "it still lacks go with this copy", ctl.moved_to);
	else
		log_info("quit requested");
	/* More callers than that, or no copy: theirs ends with the server,
	 * a moment early (before the name lock is free). */
	fd = ctl.nquit < CONTROL_MAX_QUITTERS ? rpc_call_dup_socket(call) : -EMFILE;
	if (fd >= 0)
		ctl.quit_fds[ctl.nquit++] = fd;
	else
		log_warnc(fd, "Quit: its caller may see the end before the exit");
	/* Leave the loop on its next turn, after this reply is written. */
	event_base_once(ctl.base, -1, EV_TIMEOUT, handle_quit, NULL, NULL);
	return 0;
}

static int method_save_state(struct rpc_call *call, const ProtobufCMessage *arg)
{
	Tern__Vmm__VmState *st = NULL;
	struct vm *vm = ctl.vm;
	enum vm_state vst;
	char why[256];
	int ret;

	pthread_mutex_lock(&vm->lock);
	vst = vm->state;
	str_copy(why, vm->state_msg, sizeof(why));
	pthread_mutex_unlock(&vm->lock);
	/* Only a paused guest: every vCPU parked, and one that would run
	 * where it is loaded.  A guest that stopped itself would run again
	 * there (the state has no such thing as "shut down"), and its vCPUs
	 * are not known to have parked. */
	if (vst == VM_STATE_RUNNING)
		return rpc_call_errorf(call, EBUSY, "cannot save state: the VM is "
				       "running (stop it first)");
	if (vst != VM_STATE_PAUSED)
		return rpc_call_errorf(call, EINVAL, "cannot save state: the VM "
				       "is in state %s%s%s", vm_state_name(vst),
				       why[0] ? ": " : "", why);
	ret = state_save(ctl.vm, &st);
	if (ret < 0)
		return rpc_call_errorf(call, -ret, "saving state: %s", strerror(-ret));
	ret = rpc_call_reply(call, &st->base, NULL, 0);
	state_free(st);
	return ret;
}

/* An incoming vmm that has taken no guest's state yet. */
static bool incoming_free(void)
{
	return vm_state_now(ctl.vm) == VM_STATE_INCOMING && !ctl.state_loaded;
}

static const char *incoming_why_not(void)
{
	if (vm_state_now(ctl.vm) == VM_STATE_INCOMING)
		return "a guest's state is loaded here already (to load another, "
		       "quit this vmm and start a new one with --incoming)";
	return "this vmm is not waiting for an incoming guest";
}

static int method_load_state(struct rpc_call *call, const ProtobufCMessage *arg)
{
	const Tern__Vmm__VmState *st = (const Tern__Vmm__VmState *)arg;
	char err[256] = "";
	int ret;

	ret = check_incoming_hold(call, "load state");
	if (ret < 0)
		return ret;
	if (!incoming_free())
		return rpc_call_errorf(call, EBUSY, "cannot load state: %s",
				       incoming_why_not());
	ret = state_load(ctl.vm, st, err, sizeof(err));
	if (ret < 0)
		return rpc_call_errorf(call, -ret, "state refused: %s",
				       err[0] ? err : strerror(-ret));
	ctl.state_loaded = true;
	/* A migration or transfer holds the vmm to fill it: it wrote the
	 * RAM (or, in postcopy, will place it) before it loads the state. */
	if (ctl.ram_from == RAM_FROM_NONE && ctl.incoming_peer &&
	    ctl.incoming_peer == rpc_call_peer(call))
		ctl.ram_from = RAM_FROM_HOLDER;
	if (ctl.ram_from == RAM_FROM_NONE)
		log_warnx("state loaded, without RAM: nothing brought the guest's, "
			  "and Cont is refused");
	else
		log_info("state loaded (RAM: %s)", ram_from_names[ctl.ram_from]);
	fault_point("vmm-die-load");
	return 0;
}

static int method_get_ram(struct rpc_call *call, const ProtobufCMessage *arg)
{
	Tern__Vmm__RamLayout lay = TERN__VMM__RAM_LAYOUT__INIT;
	Tern__Vmm__RamRegion regs[VMM_MAX_REGIONS], *pregs[VMM_MAX_REGIONS];
	int fds[VMM_MAX_REGIONS], i;
	struct vm *vm = ctl.vm;

	for (i = 0; i < vm->nregions; i++) {
		tern__vmm__ram_region__init(&regs[i]);
		regs[i].gpa = vm->regions[i].gpa;
		regs[i].size = vm->regions[i].size;
		pregs[i] = &regs[i];
		fds[i] = vm->regions[i].memfd;
	}
	lay.page_size = VMM_PAGE;
	lay.n_regions = vm->nregions;
	lay.regions = pregs;
	return rpc_call_reply(call, &lay.base, fds, vm->nregions);
}

static int method_adopt_ram(struct rpc_call *call, const ProtobufCMessage *arg)
{
	const Tern__Vmm__RamLayout *lay = (const Tern__Vmm__RamLayout *)arg;
	uint64_t gpas[VMM_MAX_REGIONS], sizes[VMM_MAX_REGIONS];
	int fds[VMM_MAX_REGIONS];
	size_t i, n = lay->n_regions;
	char err[256];
	int ret;

	ret = check_incoming_hold(call, "adopt RAM");
	if (ret < 0)
		return ret;
	if (!incoming_free())
		return rpc_call_errorf(call, EBUSY, "cannot adopt RAM: %s",
				       incoming_why_not());
	if (ctl.vm->uffd >= 0)
		return rpc_call_errorf(call, EBUSY,
				       "cannot adopt RAM: a userfaultfd is registered on the current RAM (UffdRelease first)");
	if (memio_waiting())
		return rpc_call_errorf(call, EBUSY,
				       "cannot adopt RAM: reads of the current RAM still wait for missing pages");
	if (lay->page_size != VMM_PAGE)
		return rpc_call_errorf(call, EINVAL, "AdoptRam: page size %u, "
				       "this vmm's is %u", lay->page_size,
				       (unsigned int)VMM_PAGE);
	if (n == 0 || n > VMM_MAX_REGIONS || rpc_call_nfds(call) != n)
		return rpc_call_errorf(call, EINVAL,
				       "AdoptRam needs one memfd per region (got %zu regions, %zu fds)",
				       n, rpc_call_nfds(call));
	for (i = 0; i < n; i++) {
		gpas[i] = lay->regions[i]->gpa;
		sizes[i] = lay->regions[i]->size;
		fds[i] = rpc_call_take_fd(call, i);
	}
	ret = mem_adopt(ctl.vm, fds, gpas, sizes, n, err, sizeof(err)); /* takes the fds */
	if (ret < 0)
		return rpc_call_errorf(call, -ret, "%s", err);
	ctl.ram_from = RAM_FROM_ADOPTED;
	log_info("adopted guest RAM from the caller");
	fault_point("vmm-die-adopt");
	return 0;
}

static int method_dirty_start(struct rpc_call *call, const ProtobufCMessage *arg)
{
	Tern__Vmm__DirtyInfo info = TERN__VMM__DIRTY_INFO__INIT;
	int fd, ret;

	if (ctl.moved_to[0])
		return rpc_call_errorf(call, EBUSY,
				       "the guest moved to %s: this stale copy is not "
				       "migrated", ctl.moved_to);
	/* Pages still on a postcopy's source read as zeros from here: the
	 * guest would move with holes in it. */
	if (ctl.vm->uffd >= 0)
		return rpc_call_errorf(call, EBUSY,
				       "vmm %s still waits for pages of a postcopy "
				       "migration: its memory is not all here yet, and "
				       "is not migrated (migctl status %s)",
				       ctl.vm->name, ctl.vm->name);
	ret = dirty_start(ctl.vm, &fd);
	if (ret == -EALREADY)
		return rpc_call_errorf(call, EALREADY, "dirty logging is already on");
	if (ret < 0)
		return rpc_call_errorf(call, -ret, "cannot start dirty logging: %s",
				       strerror(-ret));
	info.pages = ctl.vm->npages;
	info.bitmap_bytes = (ctl.vm->npages + 63) / 64 * 8;
	ret = rpc_call_reply(call, &info.base, &fd, 1);
	if (ret < 0)
		dirty_stop(ctl.vm);     /* refused: logging stays as it was */
	else
		ctl.dirty_peer = rpc_call_peer(call);
	return ret;
}

static int method_dirty_sync(struct rpc_call *call, const ProtobufCMessage *arg)
{
	Tern__Vmm__DirtySyncResult res = TERN__VMM__DIRTY_SYNC_RESULT__INIT;
	int ret;

	ret = dirty_sync(ctl.vm, &res.dirty_pages);
	if (ret == -EINVAL)
		return rpc_call_errorf(call, EINVAL, "dirty logging is not on");
	if (ret < 0)
		return rpc_call_errorf(call, -ret, "dirty log sync: %s", strerror(-ret));
	return rpc_call_reply(call, &res.base, NULL, 0);
}

static int method_dirty_stop(struct rpc_call *call, const ProtobufCMessage *arg)
{
	int ret = dirty_stop(ctl.vm);

	if (ret == -EINVAL)
		return rpc_call_errorf(call, EINVAL, "dirty logging is not on");
	ctl.dirty_peer = 0;
	return ret;
}

static int method_read_mem(struct rpc_call *call, const ProtobufCMessage *arg)
{
	const Tern__Vmm__MemRange *r = (const Tern__Vmm__MemRange *)arg;
	Tern__Vmm__MemData d = TERN__VMM__MEM_DATA__INIT;
	uint8_t *buf;
	int ret;

	if (r->len > CONTROL_MAX_MEM_IO)
		return rpc_call_errorf(call, EINVAL, "at most %u bytes at a time",
				       CONTROL_MAX_MEM_IO);
	/* In postcopy a page not yet placed blocks whoever touches it until
	 * it comes: not this thread, which serves every request. */
	if (!mem_arrived(ctl.vm, r->gpa, r->len))
		return memio_read_later(call, ctl.vm, r->gpa, r->len);
	buf = malloc(r->len ? r->len : 1);
	if (!buf)
		return -ENOMEM;
	ret = mem_read(ctl.vm, r->gpa, buf, r->len);
	if (ret < 0) {
		free(buf);
		return rpc_call_errorf(call, EFAULT,
				       "0x%llx+%u is not guest RAM",
				       (unsigned long long)r->gpa, r->len);
	}
	d.gpa = r->gpa;
	d.data.data = buf;
	d.data.len = r->len;
	ret = rpc_call_reply(call, &d.base, NULL, 0);
	free(buf);
	return ret;
}

static int method_write_mem(struct rpc_call *call, const ProtobufCMessage *arg)
{
	const Tern__Vmm__MemData *d = (const Tern__Vmm__MemData *)arg;
	char why[512];
	int ret;

	/* A write under a move or into a migration's destination would be
	 * lost, or would change the guest the migration brings: only on
	 * purpose (a test of verify). */
	ret = d->force ? 0 : check_incoming_hold(call, "write guest memory");
	if (ret < 0)
		return ret;
	if (!d->force && held_from(call))
		return rpc_call_errorf(call, EBUSY, "cannot write guest memory: %s",
				       held_msg(why, sizeof(why)));
	/* The guest as it was at the move: what 'cont --force' runs again
	 * should the guest be lost where it went. */
	if (!d->force && ctl.moved_to[0])
		return rpc_call_errorf(call, EBUSY, "cannot write guest memory: "
				       "the guest moved to %s, and this copy is "
				       "kept as it was then (--force writes all "
				       "the same)", ctl.moved_to);
	if (d->data.len > CONTROL_MAX_MEM_IO)
		return rpc_call_errorf(call, EINVAL, "at most %u bytes at a time",
				       CONTROL_MAX_MEM_IO);
	if (!mem_arrived(ctl.vm, d->gpa, d->data.len))
		return rpc_call_errorf(call, EAGAIN, "0x%llx+%zu has not arrived "
				       "yet: postcopy has still to bring some of "
				       "its pages", (unsigned long long)d->gpa,
				       d->data.len);
	if (mem_write(ctl.vm, d->gpa, d->data.data, d->data.len) < 0)
		return rpc_call_errorf(call, EFAULT,
				       "0x%llx+%zu is not guest RAM",
				       (unsigned long long)d->gpa, d->data.len);
	log_info("WriteMem: %zu bytes at 0x%llx", d->data.len,
		 (unsigned long long)d->gpa);
	return 0;
}

/* Forget a migration that failed on its way in: RAM back to holes, no
 * state loaded; the vmm waits for a new incoming guest. */
static int method_discard(struct rpc_call *call, const ProtobufCMessage *arg)
{
	int ret;

	ret = check_incoming_hold(call, "discard");
	if (ret < 0)
		return ret;
	if (vm_state_now(ctl.vm) != VM_STATE_INCOMING)
		return rpc_call_errorf(call, EBUSY,
				       "cannot discard: the guest has already run here");
	/* First: RAM still registered would make a preallocating discard
	 * wait forever on its own holes. */
	if (uffd_release(ctl.vm) > 0)
		log_info("released the userfaultfd");
	/* The guest goes first: with part of its RAM gone (a failure
	 * below), there is nothing left to run, only a new guest to take. */
	ctl.state_loaded = false;
	ctl.ram_from = RAM_FROM_NONE;
	ctl.vm->guest.kind = GUEST_KIND_NONE;
	ctl.vm->tsc_khz = ctl.vm->host_tsc_khz;
	ret = mem_discard(ctl.vm);
	if (ret < 0)
		return rpc_call_errorf(call, -ret, "discarding guest RAM: %s",
				       strerror(-ret));
	/* --prealloc: allocated anew.  If that fails, pages are allocated
	 * as they come, as without --prealloc (mem_populate logs why). */
	if (ctl.vm->prealloc && (ret = mem_populate(ctl.vm)) < 0)
		return rpc_call_errorf(call, -ret, "discarded the incoming guest, "
				       "but its RAM cannot be preallocated again "
				       "(see the vmm's log): %s", strerror(-ret));
	log_info("discarded the incoming guest's RAM and state");
	return 0;
}

/* The uffd's addresses: each region's in this process. */
static void uffd_info_fill(const struct vm *vm, Tern__Vmm__UffdInfo *info,
			   uint64_t *host)
{
	int i;

	for (i = 0; i < vm->nregions; i++)
		host[i] = (uintptr_t)vm->regions[i].host;
	info->n_host = vm->nregions;
	info->host = host;
}

/*
 * Postcopy: create a userfaultfd with the caller's /dev/userfaultfd and
 * register all guest RAM on it; the uffd goes back with the reply, and a
 * copy stays here until UffdRelease or Discard.  From now on a missing
 * page makes whoever touches it wait (vCPUs, and our own ReadMem).
 */
static int method_uffd_create(struct rpc_call *call, const ProtobufCMessage *arg)
{
	const Tern__Vmm__UffdOwner *o = (const Tern__Vmm__UffdOwner *)arg;
	Tern__Vmm__UffdInfo info = TERN__VMM__UFFD_INFO__INIT;
	uint64_t host[VMM_MAX_REGIONS];
	enum vm_state st = vm_state_now(ctl.vm);
	struct vm *vm = ctl.vm;
	char err[256];
	int devfd, uffd, ret;

	if (st != VM_STATE_INCOMING)
		return rpc_call_errorf(call, EBUSY,
				       "cannot create a userfaultfd: the VM is %s, not incoming",
				       vm_state_name(st));
	if (rpc_call_nfds(call) != 1)
		return rpc_call_errorf(call, EINVAL,
				       "UffdCreate needs one descriptor, an open /dev/userfaultfd (got %zu)",
				       rpc_call_nfds(call));
	/* TERN_FAULT: as if this vmm had stalled before it read the call. */
	if (fault_active("vmm-late-uffd-create"))
		sleep(6);
	/* Its caller gave up (and may have sent its release already, which
	 * must not be overtaken by this uffd). */
	if (o->deadline_ns && now_ns() >= o->deadline_ns) {
		snprintf(err, sizeof(err), "UffdCreate read %llu ms after its "
			 "caller's deadline: not done",
			 (unsigned long long)((now_ns() - o->deadline_ns) / 1000000));
		log_warnx("%s", err);
		return rpc_call_errorf(call, ETIMEDOUT, "%s", err);
	}
	devfd = rpc_call_take_fd(call, 0);
	ret = uffd_create(vm, devfd, &uffd, err, sizeof(err));
	close(devfd);           /* lent, not given: faultd keeps its own */
	if (ret < 0)
		return rpc_call_errorf(call, -ret, "UffdCreate: %s", err);
	uffd_info_fill(vm, &info, host);
	ret = rpc_call_reply(call, &info.base, &uffd, 1);
	if (ret < 0) {
		uffd_release(vm);
		return ret;
	}
	vm->uffd_token = o->token;
	log_info("userfaultfd created: %d region%s registered for missing pages",
		 vm->nregions, vm->nregions == 1 ? "" : "s");
	return 0;
}

/* The uffd we keep, for a faultd that started again in postcopy: the
 * vCPUs' waiting faults are its to serve now (vmm.proto). */
static int method_uffd_share(struct rpc_call *call, const ProtobufCMessage *arg)
{
	Tern__Vmm__UffdInfo info = TERN__VMM__UFFD_INFO__INIT;
	uint64_t host[VMM_MAX_REGIONS];
	struct vm *vm = ctl.vm;
	int ret;

	(void)arg;
	if (vm->uffd < 0)
		return rpc_call_errorf(call, ENOENT, "no userfaultfd to share: "
				       "this vmm is not in a postcopy");
	uffd_info_fill(vm, &info, host);
	ret = rpc_call_reply(call, &info.base, &vm->uffd, 1);
	if (ret == 0)
		log_info("userfaultfd shared again (a faultd started since it "
			 "was created)");
	return ret;
}

/* Only the uffd the caller named, if it named one (vmm.proto). */
static int method_uffd_release(struct rpc_call *call, const ProtobufCMessage *arg)
{
	const Tern__Vmm__UffdOwner *o = (const Tern__Vmm__UffdOwner *)arg;

	if (o->token && ctl.vm->uffd >= 0 && o->token != ctl.vm->uffd_token) {
		log_info("UffdRelease of another caller's userfaultfd: kept");
		return 0;
	}
	if (uffd_release(ctl.vm) > 0)
		log_info("released the userfaultfd");
	return 0;
}

static int method_set_throttle(struct rpc_call *call, const ProtobufCMessage *arg)
{
	const Tern__Vmm__Throttle *t = (const Tern__Vmm__Throttle *)arg;
	Tern__Vmm__Throttle now = TERN__VMM__THROTTLE__INIT;
	char why[512];
	int ret;

	/* The move (or the migration's switch) decides what runs where,
	 * and a transfer carries the throttle it read once it held the VM. */
	if (held_from(call))
		return rpc_call_errorf(call, EBUSY, "throttle: %s",
				       held_msg(why, sizeof(why)));
	if (t->percent > 99)
		return rpc_call_errorf(call, EINVAL, "throttle %u%%: at most 99%%",
				       t->percent);
	ret = vm_set_throttle(ctl.vm, t->percent);
	if (ret < 0)
		return rpc_call_errorf(call, -ret, "throttle: %s", strerror(-ret));
	log_info("vCPU throttle %u%%", t->percent);
	now.percent = t->percent;
	return rpc_call_reply(call, &now.base, NULL, 0);
}

/* A migration moved the guest away (vmm.proto): or, with no `to`, the
 * operator says the copy here is the guest after all. */
static int method_set_moved(struct rpc_call *call, const ProtobufCMessage *arg)
{
	const Tern__Vmm__MovedNote *n = (const Tern__Vmm__MovedNote *)arg;
	enum vm_state st = vm_state_now(ctl.vm);
	char why[512];
	int ret, pidfd;

	ret = check_note(call, "SetMoved: 'to'", n->to);
	if (ret < 0)
		return ret;
	if (!n->to[0] && held_from(call))
		return rpc_call_errorf(call, EBUSY, "the mark stays: %s",
				       held_msg(why, sizeof(why)));
	if (!n->to[0]) {
		if (ctl.moved_to[0])
			log_info("the mark 'moved to %s' is cleared: this copy may run",
				 ctl.moved_to);
		ctl.moved_to[0] = 0;
		ctl.moved_postcopy = false;
		ctl.moved_lost = false;
		moved_forget_pidfd();
		/* This copy is the guest now (cont --force): a quit put off
		 * would end it, which is not what the signal asked. */
		if (ctl.quit_when_done)
			log_warnx("the quit a signal asked for is dropped: this "
				  "copy is the guest now (send it again to quit)");
		ctl.quit_when_done = false;
		return 0;
	}
	if (st != VM_STATE_PAUSED)
		return rpc_call_errorf(call, EBUSY, "cannot mark the guest as moved: "
				       "it is %s here, not paused", vm_state_name(st));
	/* One move at a time: a mark is the claim of whoever sets it, while
	 * connected (two transfers, or a transfer and a migration, would
	 * each start the guest somewhere). */
	if (held_from(call))
		return rpc_call_errorf(call, EBUSY, "cannot mark the guest as moved: "
				       "%s", held_msg(why, sizeof(why)));
	if (migrating_from(call))
		return rpc_call_errorf(call, EBUSY, "cannot mark the guest as moved: "
				       "a migration of it is under way (migctl status "
				       "%s)", ctl.vm->name);
	/* A mark stands until cleared: a later mover would start a copy
	 * of the guest its holder may have started already. */
	if (ctl.moved_to[0] && ctl.hold != rpc_call_peer(call))
		return rpc_call_errorf(call, EALREADY, "cannot mark the guest as "
				       "moved: it already moved to %s", ctl.moved_to);
	if (strlen(n->to) >= sizeof(ctl.moved_to))
		return rpc_call_errorf(call, EINVAL, "SetMoved: 'to' is longer than "
				       "%zu characters", sizeof(ctl.moved_to) - 1);
	if (rpc_call_nfds(call) > 1)
		return rpc_call_errorf(call, EINVAL, "SetMoved takes at most one "
				       "descriptor, the destination vmm's pidfd "
				       "(got %zu)", rpc_call_nfds(call));
	pidfd = rpc_call_nfds(call) == 1 ? rpc_call_take_fd(call, 0) : -1;
	/* A signal 0 through a pidfd is sent (or refused for want of
	 * permission) to its process, alive or not; anything else is no
	 * pidfd. */
	if (pidfd >= 0 && syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0) < 0 &&
	    errno != EPERM && errno != ESRCH) {
		close(pidfd);
		return rpc_call_errorf(call, EINVAL, "SetMoved: the descriptor "
				       "is not a pidfd");
	}
	moved_forget_pidfd();
	ctl.moved_pidfd = pidfd;
	str_copy(ctl.moved_to, n->to, sizeof(ctl.moved_to));
	ctl.moved_postcopy = n->postcopy;
	ctl.moved_lost = n->postcopy && n->lost;
	ctl.hold = rpc_call_peer(call);
	if (ctl.moved_lost)
		log_warnx("the guest moved to %s by postcopy, and its destination "
			  "lost it: this copy, as it was at the switch, is the "
			  "guest's only one", ctl.moved_to);
	else if (n->postcopy)
		log_info("the guest moved to %s by postcopy: this copy holds the "
			 "pages the destination lacks until it completes, and will "
			 "not run or migrate again", ctl.moved_to);
	else
		log_info("the guest moved to %s: this copy is stale, and will not "
			 "run or migrate again", ctl.moved_to);
	quit_if_due();
	return 0;
}

/* A migration waits to fill this incoming VM (vmm.proto): until the
 * caller's connection closes, no other loads, adopts, starts or discards
 * a guest here. */
static int method_hold_incoming(struct rpc_call *call, const ProtobufCMessage *arg)
{
	const Tern__Vmm__IncomingHold *h = (const Tern__Vmm__IncomingHold *)arg;
	const char *by = incoming_held_from(call);
	enum vm_state st = vm_state_now(ctl.vm);
	int ret;

	ret = check_note(call, "HoldIncoming: 'by'", h->by);
	if (ret < 0)
		return ret;
	if (!h->by[0])
		return rpc_call_errorf(call, EINVAL, "HoldIncoming: 'by' is empty: "
				       "say who holds the vmm");
	if (by)
		return rpc_call_errorf(call, EBUSY, "cannot hold: %s holds vmm %s "
				       "already", by, ctl.vm->name);
	if (st != VM_STATE_INCOMING)
		return rpc_call_errorf(call, EBUSY, "cannot hold: vmm %s is %s: it "
				       "waits for no migration", ctl.vm->name,
				       vm_state_name(st));
	if (ctl.state_loaded)
		return rpc_call_errorf(call, EBUSY, "cannot hold: vmm %s has a state "
				       "loaded: it waits for no migration", ctl.vm->name);
	if (str_copy(ctl.incoming_by, h->by, sizeof(ctl.incoming_by)) < 0)
		return rpc_call_errorf(call, EINVAL, "HoldIncoming: 'by' is longer "
				       "than %zu characters", sizeof(ctl.incoming_by) - 1);
	ctl.incoming_peer = rpc_call_peer(call);
	log_info("held for %s", ctl.incoming_by);
	return 0;
}

/* Handlers by method name, matched to the descriptor's order at start. */
static const struct rpc_method_binding control_methods[] = {
	{ "Status", method_status },
	{ "Stop", method_stop },
	{ "Cont", method_cont },
	{ "Quit", method_quit },
	{ "SaveState", method_save_state },
	{ "LoadState", method_load_state },
	{ "GetRam", method_get_ram },
	{ "AdoptRam", method_adopt_ram },
	{ "DirtyStart", method_dirty_start },
	{ "DirtySync", method_dirty_sync },
	{ "DirtyStop", method_dirty_stop },
	{ "ReadMem", method_read_mem },
	{ "WriteMem", method_write_mem },
	{ "Discard", method_discard },
	{ "SetThrottle", method_set_throttle },
	{ "UffdCreate", method_uffd_create },
	{ "UffdShare", method_uffd_share },
	{ "UffdRelease", method_uffd_release },
	{ "SetMoved", method_set_moved },
	{ "HoldIncoming", method_hold_incoming },
};

int control_start(struct vm *vm, struct event_base *base, const char *rundir)
{
	const ProtobufCServiceDescriptor *d = &tern__vmm__vmm__descriptor;
	struct uri u = { .kind = URI_UNIX };
	const char *missing = NULL;
	mode_t mask;
	int fd, ret;

	ctl.vm = vm;
	ctl.base = base;
	ctl.moved_pidfd = -1;
	ctl.ram_from = vm_state_now(vm) == VM_STATE_INCOMING ? RAM_FROM_NONE :
		       RAM_FROM_BOOT;
	if ((size_t)snprintf(ctl.path, sizeof(ctl.path), "%s/vmm/%s.sock", rundir,
			     vm->name) >= sizeof(u.path)) {
		log_warnx("control socket path %s/vmm/%s.sock is too long", rundir,
			  vm->name);
		return -ENAMETOOLONG;
	}
	str_copy(u.path, ctl.path, sizeof(u.path));
	/* We hold the name lock, so any socket file left here is stale. */
	unlink(ctl.path);
	/* Born 0660, in a directory of mode 0750: root, our own uid and our
	 * group get through the file system, so that a vmm of its own user
	 * lets in migd's workers and faultd, which run as root without
	 * capabilities and with our group among theirs; the peer check
	 * (SO_PEERCRED) then admits only root and our own uid. */
	mask = umask(0117);
	fd = uri_listen(&u, 16);
	umask(mask);
	if (fd < 0) {
		log_warnc(fd, "control socket %s", ctl.path);
		return fd;
	}
	ret = rpc_server_new(base, &ctl.server);
	if (ret == 0)
		ret = rpc_server_listen_fd(ctl.server, fd);
	else
		close(fd);
	if (ret == 0)
		ret = rpc_server_bind_service(ctl.server, d, control_methods,
					      ARRAY_SIZE(control_methods), vm,
					      &missing);
	if (ret == -ENOENT)
		fatalx("control: no handler for %s", missing);
	if (ret < 0) {
		log_warnc(ret, "control service");
		return ret;
	}
	rpc_server_set_accept(ctl.server, rpc_accept_root_or_self, vm);
	rpc_server_set_overload(ctl.server, rpc_overload_warn, vm);
	rpc_server_set_drop(ctl.server, rpc_drop_warn, vm);
	rpc_server_set_max_frame(ctl.server, CONTROL_MAX_FRAME);
	return 0;
}

void control_stop(void)
{
	if (ctl.server) {
		rpc_server_free(ctl.server);
		ctl.server = NULL;
		unlink(ctl.path);
	}
}

void control_release_quitters(void)
{
	while (ctl.nquit > 0)
		close(ctl.quit_fds[--ctl.nquit]);
}
