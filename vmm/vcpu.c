// SPDX-License-Identifier: GPL-2.0-only
/*
 * vCPUs: one thread each running KVM_RUN, the exits we handle (port I/O
 * for the UART and fast A20; everything else the in-kernel irqchip and PIT
 * handle), and the pause protocol the control service uses to stop and
 * resume the guest.
 *
 * Pausing: under vm->lock the main thread sets pause_req and every
 * run->immediate_exit, then kicks each thread with SIGUSR1.  A thread
 * checks pause_req under the lock before each KVM_RUN and clears
 * immediate_exit only while pause_req is false, so a kick can never be
 * lost between the check and the ioctl.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "vmm/vmm.h"

#define VCPU_KICK_SIG SIGUSR1
#define PAUSE_TIMEOUT_MS 5000
#define THROTTLE_RUN_NS 10000000ULL     /* run this long between throttle sleeps */

static const char *const vm_state_names[VM_STATE_MAX] = {
	[VM_STATE_INCOMING] = "incoming",
	[VM_STATE_RUNNING] = "running",
	[VM_STATE_PAUSED] = "paused",
	[VM_STATE_SHUTDOWN] = "shutdown",
	[VM_STATE_ERROR] = "error",
};

const char *vm_state_name(enum vm_state state)
{
	return state < VM_STATE_MAX ? vm_state_names[state] : "?";
}

/* With vm->lock held. */
static void vm_set_state_locked(struct vm *vm, enum vm_state state,
				const char *msg)
{
	if (vm->state != state)
		log_debug("state %s -> %s", vm_state_name(vm->state),
			  vm_state_name(state));
	vm->state = state;
	str_copy(vm->state_msg, msg ? msg : "", sizeof(vm->state_msg));
	vm->state_change_ns = now_ns();
	pthread_cond_broadcast(&vm->cond);
}

enum vm_state vm_state_now(struct vm *vm)
{
	enum vm_state st;

	pthread_mutex_lock(&vm->lock);
	st = vm->state;
	pthread_mutex_unlock(&vm->lock);
	return st;
}

void vm_set_state(struct vm *vm, enum vm_state state, const char *msg)
{
	pthread_mutex_lock(&vm->lock);
	vm_set_state_locked(vm, state, msg);
	pthread_mutex_unlock(&vm->lock);
}

/* vm->cond times out against the monotonic clock (vm_pause). */
void vm_cond_init(pthread_cond_t *cond)
{
	pthread_condattr_t attr;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(cond, &attr);
	pthread_condattr_destroy(&attr);
}

static void vcpu_kick_handler(int sig)
{
	(void)sig;
}

/* With vm->lock held: make every vCPU leave KVM_RUN soon. */
static void vm_kick_all_locked(struct vm *vm)
{
	int i;

	for (i = 0; i < vm->nvcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];

		if (v->run)     /* NULL if vcpu_create_all failed early */
			__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
		if (v->thread_started)
			pthread_kill(v->thread, VCPU_KICK_SIG);
	}
}

/* A vCPU hit something that ends the guest's run: stop all vCPUs. */
static void vcpu_stop_vm(struct vcpu *v, enum vm_state state, const char *fmt, ...)
{
	struct vm *vm = v->vm;
	char msg[256];
	va_list ap;

	struct kvm_regs regs;
	struct kvm_sregs sregs;
	bool changed;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n >= 0 && (size_t)n < sizeof(msg) &&
	    ioctl(v->fd, KVM_GET_REGS, &regs) == 0 &&
	    ioctl(v->fd, KVM_GET_SREGS, &sregs) == 0)
		snprintf(msg + n, sizeof(msg) - n, " at cs:rip %x:%llx",
			 sregs.cs.selector, (unsigned long long)regs.rip);
	pthread_mutex_lock(&vm->lock);
	changed = vm->state == VM_STATE_RUNNING;
	if (changed) {
		vm_set_state_locked(vm, state, msg);
		vm_kick_all_locked(vm);
	}
	pthread_mutex_unlock(&vm->lock);
	/* The first vCPU to stop it tells the main thread (which logs why);
	 * the others found it stopped already. */
	if (changed && write(vm->notify_fd, &(uint64_t){ 1 }, 8) < 0)
		log_debug("notify: %s", strerror(errno));
}

/* The PC's ways to reset: the keyboard controller's pulse command, the
 * reset control register's CPU reset bit, port 0x92's fast reset bit. */
static bool is_reset(uint16_t port, uint8_t val)
{
	return (port == 0x64 && val == 0xfe) || (port == 0xcf9 && (val & 0x04)) ||
	       (port == 0x92 && (val & 0x01));
}

static void vcpu_handle_io(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	bool is_write = run->io.direction == KVM_EXIT_IO_OUT;
	uint32_t i, j;

	for (i = 0; i < run->io.count; i++, data += run->io.size) {
		uint16_t port = run->io.port;

		if (port >= 0x3f8 && port <= 0x3ff && run->io.size == 1) {
			serial_io(&v->vm->serial, port, is_write, data);
		} else if (is_write && is_reset(port, data[0])) {
			vcpu_stop_vm(v, VM_STATE_SHUTDOWN, "vcpu %d: guest reset "
				     "(0x%02x to port 0x%x)", v->index, data[0], port);
			return;
		} else if (port == 0x92 && !is_write) {
			data[0] = 0x02;         /* fast A20: always on */
			for (j = 1; j < run->io.size; j++)
				data[j] = 0xff; /* ports 0x93.. as any other */
		} else if (!is_write) {
			for (j = 0; j < run->io.size; j++)
				data[j] = 0xff; /* nothing there */
		}
	}
}

/* An exit that ends the guest's run stops the VM (vcpu_stop_vm); the
 * vCPU then parks in vcpu_wait_runnable. */
static void vcpu_handle_exit(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	char data[4 * 20] = "";
	uint32_t i;
	int n = 0;

	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		v->io_pending = true;
		vcpu_handle_io(v);
		break;
	case KVM_EXIT_MMIO:
		v->io_pending = true;
		if (run->mmio.len > sizeof(run->mmio.data))
			run->mmio.len = sizeof(run->mmio.data);
		if (!testdev_mmio(v, run->mmio.phys_addr, run->mmio.data,
				  run->mmio.len, run->mmio.is_write) &&
		    !run->mmio.is_write)
			memset(run->mmio.data, 0xff, run->mmio.len);
		break;
	case KVM_EXIT_INTR:
		break;
	case KVM_EXIT_HLT:
		vcpu_stop_vm(v, VM_STATE_SHUTDOWN, "vcpu %d halted", v->index);
		break;
	case KVM_EXIT_SHUTDOWN:
		vcpu_stop_vm(v, VM_STATE_SHUTDOWN,
			     "vcpu %d: guest shut down (triple fault)", v->index);
		break;
	case KVM_EXIT_SYSTEM_EVENT:
		vcpu_stop_vm(v, VM_STATE_SHUTDOWN, "vcpu %d: guest %s", v->index,
			     run->system_event.type == KVM_SYSTEM_EVENT_RESET ?
			     "reset" : "shut down");
		break;
	case KVM_EXIT_INTERNAL_ERROR:
		/* KVM's own words on it (for an emulation failure: the
		 * instruction's bytes, among others), the first four. */
		for (i = 0; i < run->internal.ndata && i < 4 && n >= 0 &&
		     (size_t)n < sizeof(data); i++)
			n += snprintf(data + n, sizeof(data) - n, " 0x%llx",
				      (unsigned long long)run->internal.data[i]);
		vcpu_stop_vm(v, VM_STATE_ERROR,
			     "vcpu %d: KVM internal error, suberror %u%s%s%s",
			     v->index, run->internal.suberror,
			     run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION ?
			     " (emulation failure)" : "", data[0] ? ", data" : "",
			     data);
		break;
	case KVM_EXIT_FAIL_ENTRY:
		vcpu_stop_vm(v, VM_STATE_ERROR,
			     "vcpu %d: VM entry failed, reason 0x%llx", v->index,
			     (unsigned long long)
			     run->fail_entry.hardware_entry_failure_reason);
		break;
	default:
		vcpu_stop_vm(v, VM_STATE_ERROR, "vcpu %d: unexpected exit %u",
			     v->index, run->exit_reason);
		break;
	}
}

/*
 * Auto-converge.  While vm->throttle is p > 0, a throttle thread kicks
 * every vCPU out of KVM_RUN once a period of THROTTLE_RUN_NS * 100 /
 * (100 - p), and a kicked vCPU then sleeps p% of that period
 * (THROTTLE_RUN_NS * p / (100 - p)) and runs THROTTLE_RUN_NS until the
 * next kick: the guest gets (100 - p)% of the time and dirties memory
 * that much more slowly.  (Kicks every THROTTLE_RUN_NS fell inside
 * sleeps longer than that and were lost, so a vCPU ran only to the next
 * tick: 25% of the time at p = 60.)  A run slice this long keeps the
 * kick's own latency (tens of microseconds under PVM) from blurring it.
 */
static void vcpu_throttle_sleep(struct vm *vm)
{
	unsigned int p = __atomic_load_n(&vm->throttle, __ATOMIC_RELAXED);
	struct timespec until;
	uint64_t ns;

	if (!p)
		return;
	clock_gettime(CLOCK_MONOTONIC, &until);
	ns = until.tv_nsec + THROTTLE_RUN_NS * p / (100 - p);
	until.tv_sec += ns / 1000000000ULL;
	until.tv_nsec = ns % 1000000000ULL;
	/* On the VM's condvar, to an absolute time: kicks do not cut the
	 * sleep short, but a pause, a quit or a lifted throttle does. */
	pthread_mutex_lock(&vm->lock);
	while (!vm->pause_req && !vm->quit_req &&
	       __atomic_load_n(&vm->throttle, __ATOMIC_RELAXED) &&
	       pthread_cond_timedwait(&vm->cond, &vm->lock, &until) != ETIMEDOUT)
		;
	pthread_mutex_unlock(&vm->lock);
}

static void *throttle_thread(void *arg)
{
	struct vm *vm = arg;
	unsigned int p;
	uint64_t ns;

	pthread_mutex_lock(&vm->lock);
	while (!vm->quit_req) {
		p = __atomic_load_n(&vm->throttle, __ATOMIC_RELAXED);
		if (!p) {
			pthread_cond_wait(&vm->cond, &vm->lock);
			continue;
		}
		pthread_mutex_unlock(&vm->lock);
		ns = THROTTLE_RUN_NS * 100 / (100 - p);
		nanosleep(&(struct timespec){ ns / 1000000000ULL,
					      ns % 1000000000ULL }, NULL);
		pthread_mutex_lock(&vm->lock);
		if (vm->state == VM_STATE_RUNNING && !vm->pause_req)
			vm_kick_all_locked(vm);
	}
	pthread_mutex_unlock(&vm->lock);
	return NULL;
}

int vm_set_throttle(struct vm *vm, unsigned int percent)
{
	int ret = 0;

	if (percent > 99)
		return -EINVAL;
	pthread_mutex_lock(&vm->lock);
	if (percent && !vm->throttle_started) {
		ret = -pthread_create(&vm->throttle_thread, NULL, throttle_thread, vm);
		vm->throttle_started = ret == 0;
	}
	if (ret == 0)
		__atomic_store_n(&vm->throttle, percent, __ATOMIC_RELAXED);
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	return ret;
}

/*
 * KVM finishes an I/O or MMIO instruction only on the next KVM_RUN; its
 * state is not visible before.  Before a vCPU parks (so that its state
 * may be saved) it enters once with immediate_exit set, which completes
 * the instruction and returns at once.
 */
static void vcpu_complete_io(struct vcpu *v)
{
	v->run->immediate_exit = 1;
	v->io_pending = false;
	if (ioctl(v->fd, KVM_RUN, 0) == 0) {
		/* The instruction went on to a further exit: the second
		 * part of an access split across a page or device boundary,
		 * more of a rep string.  Served here, it sets io_pending
		 * again and the caller completes once more; dropped, its
		 * read would return stale data when the guest resumes. */
		__atomic_fetch_add(&v->exits, 1, __ATOMIC_RELAXED);
		vcpu_handle_exit(v);
	} else if (errno != EINTR && errno != EAGAIN) {
		log_debug("vcpu %d: completing I/O: %s", v->index, strerror(errno));
	}
}

/*
 * Wait under vm->lock until this vCPU may run; false when it must quit.
 * A vCPU the guest halted through the test device stays parked until the
 * next pause: after a resume it re-executes its halt loop and halts again.
 */
static bool vcpu_wait_runnable(struct vcpu *v)
{
	struct vm *vm = v->vm;
	bool run;

	pthread_mutex_lock(&vm->lock);
	for (;;) {
		if (vm->quit_req)
			break;
		if (v->guest_halted && vm->pause_req)
			v->guest_halted = false;
		if (!vm->pause_req && vm->state == VM_STATE_RUNNING &&
		    !v->guest_halted)
			break;
		if (v->io_pending) {
			pthread_mutex_unlock(&vm->lock);
			vcpu_complete_io(v);
			pthread_mutex_lock(&vm->lock);
			continue;
		}
		if (!v->parked) {
			v->parked = true;
			vm->nparked++;
			pthread_cond_broadcast(&vm->cond);
		}
		pthread_cond_wait(&vm->cond, &vm->lock);
	}
	if (v->parked) {
		v->parked = false;
		vm->nparked--;
	}
	run = !vm->quit_req;
	if (run)
		v->run->immediate_exit = 0;
	pthread_mutex_unlock(&vm->lock);
	return run;
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	char name[16];
	sigset_t set;

	/* "vcpuN" in ps -L, top -H and /proc/PID/task/TID/comm: what an
	 * operator (or a test) looks for to watch or hold one vCPU. */
	snprintf(name, sizeof(name), "vcpu%d", v->index);
	pthread_setname_np(pthread_self(), name);
	sigemptyset(&set);
	sigaddset(&set, VCPU_KICK_SIG);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);

	while (vcpu_wait_runnable(v)) {
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				v->io_pending = false;
				vcpu_throttle_sleep(v->vm);
				continue;
			}
			vcpu_stop_vm(v, VM_STATE_ERROR, "vcpu %d: KVM_RUN: %s",
				     v->index, strerror(errno));
			continue;
		}
		v->io_pending = false;
		__atomic_fetch_add(&v->exits, 1, __ATOMIC_RELAXED);
		vcpu_handle_exit(v);
	}
	return NULL;
}

static int vcpu_set_cpuid(struct vcpu *v)
{
	struct kvm_cpuid2 *c = v->vm->cpuid;
	uint32_t i;

	for (i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		if (e->function == 1)
			e->ebx = (e->ebx & 0x00ffffff) | ((uint32_t)v->index << 24);
		if (e->function == 0xb || e->function == 0x1f)
			e->edx = v->index;
	}
	if (ioctl(v->fd, KVM_SET_CPUID2, c) < 0)
		return -errno;
	return 0;
}

int vcpu_create_all(struct vm *vm)
{
	struct sigaction sa = { .sa_handler = vcpu_kick_handler };
	sigset_t set;
	int i, ret;

	/* The kick signal interrupts KVM_RUN; only vCPU threads take it. */
	sigemptyset(&sa.sa_mask);
	if (sigaction(VCPU_KICK_SIG, &sa, NULL) < 0)
		return -errno;
	sigemptyset(&set);
	sigaddset(&set, VCPU_KICK_SIG);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	vm->vcpus = calloc(vm->nvcpus, sizeof(*vm->vcpus));
	if (!vm->vcpus)
		return -ENOMEM;
	for (i = 0; i < vm->nvcpus; i++)
		vm->vcpus[i].fd = -1;
	for (i = 0; i < vm->nvcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];

		v->vm = vm;
		v->index = i;
		v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, i);
		if (v->fd < 0)
			return -errno;
		v->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE,
			      MAP_SHARED, v->fd, 0);
		if (v->run == MAP_FAILED) {
			v->run = NULL;
			return -errno;
		}
		ret = vcpu_set_cpuid(v);
		if (ret < 0)
			return ret;
	}
	vm->host_tsc_khz = ioctl(vm->vcpus[0].fd, KVM_GET_TSC_KHZ, 0);
	if ((int64_t)vm->host_tsc_khz <= 0)
		return -errno ? -errno : -EINVAL;
	vm->tsc_khz = vm->host_tsc_khz;
	return 0;
}

int vcpu_start_all(struct vm *vm)
{
	int i, ret;

	for (i = 0; i < vm->nvcpus; i++) {
		ret = pthread_create(&vm->vcpus[i].thread, NULL, vcpu_thread,
				     &vm->vcpus[i]);
		if (ret)
			return -ret;
		vm->vcpus[i].thread_started = true;
	}
	return 0;
}

/*
 * Tell every vCPU to leave for good, without waiting: none enters the
 * guest again.  One waiting inside KVM_RUN for a missing postcopy page
 * returns once that wait ends (uffd_release) with the kick pending, so
 * it does not run the guest on a hole that reads as zeros.
 */
void vcpu_quit_all(struct vm *vm)
{
	if (!vm->vcpus)
		return;
	pthread_mutex_lock(&vm->lock);
	vm->quit_req = true;
	vm_kick_all_locked(vm);
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
}

void vcpu_destroy_all(struct vm *vm)
{
	int i;

	if (!vm->vcpus)
		return;
	vcpu_quit_all(vm);
	if (vm->throttle_started)
		pthread_join(vm->throttle_thread, NULL);
	for (i = 0; i < vm->nvcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];

		if (v->thread_started)
			pthread_join(v->thread, NULL);
		if (v->run)
			munmap(v->run, vm->run_size);
		if (v->fd >= 0)
			close(v->fd);
	}
	free(vm->vcpus);
	vm->vcpus = NULL;
}

/*
 * Stop every vCPU and wait until all are parked outside KVM_RUN.  A
 * RUNNING VM becomes PAUSED; other states are kept (their vCPUs are
 * parked already).  -ETIMEDOUT if a vCPU does not come out in time.
 */
int vm_pause(struct vm *vm)
{
	struct timespec deadline;
	int ret = 0;

	pthread_mutex_lock(&vm->lock);
	vm->pause_req = true;
	pthread_cond_broadcast(&vm->cond);      /* throttled vCPUs wake up */
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += PAUSE_TIMEOUT_MS / 1000;
	while (vm->nparked < vm->nvcpus) {
		struct timespec tick;

		vm_kick_all_locked(vm);
		tick = timespec_after_ms(CLOCK_MONOTONIC, 50);
		pthread_cond_timedwait(&vm->cond, &vm->lock, &tick);
		if (vm->nparked < vm->nvcpus &&
		    (tick.tv_sec > deadline.tv_sec ||
		     (tick.tv_sec == deadline.tv_sec &&
		      tick.tv_nsec >= deadline.tv_nsec))) {
			ret = -ETIMEDOUT;
			break;
		}
	}
	if (ret == 0 && vm->state == VM_STATE_RUNNING)
		vm_set_state_locked(vm, VM_STATE_PAUSED, NULL);
	if (ret < 0) {
		/* Give up: let the vCPUs that did stop run again. */
		vm->pause_req = false;
		pthread_cond_broadcast(&vm->cond);
	}
	pthread_mutex_unlock(&vm->lock);
	return ret;
}

/* Let a PAUSED or freshly loaded (INCOMING) VM run. */
int vm_resume(struct vm *vm)
{
	int ret = 0;

	pthread_mutex_lock(&vm->lock);
	if (vm->state == VM_STATE_PAUSED || vm->state == VM_STATE_INCOMING ||
	    vm->state == VM_STATE_RUNNING) {
		vm->pause_req = false;
		vm_set_state_locked(vm, VM_STATE_RUNNING, NULL);
	} else {
		ret = -EINVAL;
	}
	pthread_mutex_unlock(&vm->lock);
	return ret;
}
