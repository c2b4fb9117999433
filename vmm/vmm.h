/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * vmm: a minimal KVM virtual machine monitor.  This header is the
 * program's table of contents: its state and its functions, by file.
 *
 * Threads: the main thread runs the libevent loop (control service,
 * signals, vCPU notifications); each vCPU has its own thread running
 * KVM_RUN.  vm->state changes under vm->lock: by the main thread
 * (vm_set_state), and by a vCPU thread that stops the guest (shutdown,
 * error), which then tells the main thread through vm->notify_fd.
 */
#ifndef VMM_H
#define VMM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <linux/kvm.h>

#include "proto/vmm.pb-c.h"

#define VMM_STATE_VERSION 1             /* VmState.version; bump on change */
#define VMM_PAGE 4096ULL
#define VMM_HOLE_START (3ULL << 30)      /* 32-bit PCI hole: [3 GiB, 4 GiB) */
#define VMM_HOLE_END (4ULL << 30)
#define VMM_MAX_REGIONS 2
#define VMM_MAX_MEMORY (1ULL << 40)
#define VMM_MAX_VCPUS 255               /* xAPIC ids; keeps VmState < 4 MiB */
#define VMM_DEFAULT_RUNDIR "/run/tern"

enum vm_state {
	VM_STATE_INCOMING,      /* waiting for RAM and state */
	VM_STATE_RUNNING,
	VM_STATE_PAUSED,
	VM_STATE_SHUTDOWN,      /* the guest stopped itself */
	VM_STATE_ERROR,         /* KVM failed to run the guest */
	VM_STATE_MAX
};

enum guest_kind {
	GUEST_KIND_NONE,
	GUEST_KIND_TEST,
	GUEST_KIND_IMAGE,
	GUEST_KIND_MAX
};

struct mem_region {
	uint64_t gpa;
	uint64_t size;
	int memfd;
	uint8_t *host;                  /* MAP_SHARED mapping of memfd */
	uint64_t first_page;            /* index of its first page across regions */
	uint32_t slot;
};

struct vcpu {
	struct vm *vm;
	int index;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool thread_started;
	bool parked;                    /* vm->lock */
	bool guest_halted;              /* own thread, then vm->lock: test device halt */
	bool io_pending;                /* own thread: an I/O exit awaits KVM_RUN */
	uint64_t exits;                 /* own thread; read racily for status */
};

struct serial {
	pthread_mutex_t lock;           /* all fields below */
	int out_fd;                     /* -1: discard */
	uint8_t ier, lcr, mcr, scr, dll, dlm, fcr;
	char line[256];
	size_t len;
	uint64_t dropped;               /* lock to add, atomic: bytes not written */
	bool poll;                      /* out_fd may block: poll it first */
	char *path;                     /* a regular file to keep bounded, or NULL */
	uint64_t max;                   /* ... at this size (serial_init) */
	uint64_t size;                  /* its size now */
};

/* --serial-max's default: a console file is renamed FILE.1 at this size. */
#define SERIAL_MAX_DEFAULT (64ULL << 20)

struct guest_config {
	enum guest_kind kind;
	int mode;                       /* TG_MODE_* for the test guest */
	uint64_t rate;                  /* test guest: pages/s in all, 0 = no cap */
	uint64_t passes;                /* test guest: 0 = forever */
	bool fast_first;                /* test guest: pass 1 not held to rate */
	uint64_t range;                 /* test guest: bytes of the test range, 0 = all */
	uint64_t heartbeat_ms;
	const char *image;              /* raw image path */
	uint64_t image_addr;
};

struct vm {
	const char *name;
	uint64_t memory;
	bool prealloc;                  /* --prealloc: every page allocated up front */
	bool hugepages;                 /* RAM in 2 MiB hugetlb pages: --hugepages,
					 * or such RAM adopted (cpr-transfer) */
	int nvcpus;
	struct guest_config guest;

	int kvm_fd;
	int vm_fd;
	int run_size;
	struct kvm_cpuid2 *cpuid;
	uint64_t tsc_khz;               /* the guest's TSC (a loaded state's) */
	uint64_t host_tsc_khz;          /* this host's, as KVM gives it */

	struct mem_region regions[VMM_MAX_REGIONS];
	int nregions;
	uint64_t npages;                /* guest pages across regions */

	struct vcpu *vcpus;
	struct serial serial;

	/* dirty logging (main thread) */
	bool dirty_on;
	int dirty_memfd;
	uint64_t *dirty_shared;         /* the bitmap shared with migd */
	uint64_t *dirty_scratch;        /* one slot's KVM log */
	uint64_t *dirty_vmm;            /* pages the vmm wrote itself (atomic) */

	/* run control */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	enum vm_state state;            /* main thread writes, under lock */
	bool pause_req;                 /* lock */
	bool quit_req;                  /* lock */
	int nparked;                    /* lock */
	char state_msg[256];            /* lock: why SHUTDOWN or ERROR */
	int notify_fd;                  /* eventfd: a vCPU stopped the VM */
	uint32_t throttle;              /* (atomic) percent of vCPU time taken */
	pthread_t throttle_thread;      /* kicks vCPUs while throttle > 0 */
	bool throttle_started;
	uint64_t state_change_ns;

	/* postcopy (main thread) */
	int uffd;                       /* our copy of the guest RAM's uffd, or -1 */
	uint64_t uffd_token;            /* its creator's name for it (0: none) */
};

/* kvm.c: the VM and its platform devices */
int kvm_vm_create(struct vm *vm);
void kvm_vm_destroy(struct vm *vm);
int kvm_max_vcpus(int kvm_fd);

/* mem.c: guest RAM in memfds */
int mem_create(struct vm *vm);
int mem_adopt(struct vm *vm, const int *fds, const uint64_t *gpas,
	      const uint64_t *sizes, int n, char *err, size_t errlen);
void mem_destroy(struct vm *vm);
int mem_register(struct vm *vm, bool log_dirty);
/* Every page dropped: the memfds become holes again (--prealloc: the
 * caller allocates them anew, mem_populate; huge pages are taken back at
 * once, zeroed). */
int mem_discard(struct vm *vm);
/* --prealloc: allocate every page of guest RAM now (logs its failure). */
int mem_populate(struct vm *vm);
/* memroom.c: 0 if this process may take want more bytes of memory (the
 * host's MemAvailable, its memory cgroups' limits); else -ENOMEM, and
 * why ("the host has only ..." or "its memory cgroup allows only ..."). */
int mem_room(uint64_t want, char *why, size_t len);
/* The host pool's huge pages neither in use nor reserved (HugePages_Free
 * less HugePages_Rsvd), or -1 if unknown. */
long long mem_huge_room(void);
void *mem_gpa_to_host(struct vm *vm, uint64_t gpa, uint64_t len);
/* Whether every page of [gpa, gpa + len) is in RAM, or no userfaultfd is
 * registered: else touching one would block until postcopy places it,
 * or for ever once faultd or its link is gone. */
bool mem_arrived(struct vm *vm, uint64_t gpa, uint64_t len);
int mem_write(struct vm *vm, uint64_t gpa, const void *buf, uint64_t len);
int mem_read(struct vm *vm, uint64_t gpa, void *buf, uint64_t len);
uint64_t mem_end(const struct vm *vm);  /* highest gpa + 1 */

/* vcpu.c: threads, the run loop, pausing */
int vcpu_create_all(struct vm *vm);
void vcpu_quit_all(struct vm *vm);
void vcpu_destroy_all(struct vm *vm);
int vcpu_start_all(struct vm *vm);
void vm_cond_init(pthread_cond_t *cond);
/* Auto-converge: vCPUs sleep percent of their time (0 lifts it). */
int vm_set_throttle(struct vm *vm, unsigned int percent);
int vm_pause(struct vm *vm);
int vm_resume(struct vm *vm);
void vm_set_state(struct vm *vm, enum vm_state state, const char *msg);
/* vm->state, read under its lock (a vCPU may change it at any time). */
enum vm_state vm_state_now(struct vm *vm);
const char *vm_state_name(enum vm_state state);

/* serial.c: an 8250 UART at 0x3f8 */
/* max: a regular FILE's bound (0: none). */
int serial_init(struct serial *s, const char *spec, uint64_t max);
void serial_destroy(struct serial *s);
void serial_io(struct serial *s, uint16_t port, bool is_write, uint8_t *data);
void serial_write(struct serial *s, const uint8_t *buf, size_t len);
uint64_t serial_dropped(struct serial *s);
void serial_save(struct serial *s, Tern__Vmm__UartState *ret);
void serial_load(struct serial *s, const Tern__Vmm__UartState *st);

/* testdev.c: the test guest's MMIO doorbell */
bool testdev_mmio(struct vcpu *v, uint64_t addr, uint8_t *data, uint32_t len,
		  bool is_write);

/* boot.c: initial CPU and memory set-up for each kind of guest */
int boot_test_guest(struct vm *vm);
int boot_image(struct vm *vm);
int boot_test_guest_parse_mode(const char *s);

/* dirty.c: dirty logging into a bitmap shared with migd */
int dirty_start(struct vm *vm, int *ret_memfd);
int dirty_sync(struct vm *vm, uint64_t *ret_newly);
int dirty_stop(struct vm *vm);
void dirty_mark_vmm(struct vm *vm, uint64_t gpa, uint64_t len);

/* state.c: complete VM state save and load */
int state_save(struct vm *vm, Tern__Vmm__VmState **ret);
void state_free(Tern__Vmm__VmState *st);
int state_load(struct vm *vm, const Tern__Vmm__VmState *st, char *err,
	       size_t errlen);

/* uffd.c: postcopy's userfaultfd, created with faultd's /dev/userfaultfd */
/* Create and register it on every region; *ret_uffd stays ours (vm->uffd).
 * -EBUSY if one exists; err says what was wrong. */
int uffd_create(struct vm *vm, int devfd, int *ret_uffd, char *err, size_t len);
/* Close our copy: 1 if there was one, 0 if not. */
int uffd_release(struct vm *vm);

/* control.c: the control service on RUNDIR/vmm/NAME.sock */
struct event_base;
int control_start(struct vm *vm, struct event_base *base, const char *rundir);
/* SIGTERM or SIGINT came: true to quit now.  While a postcopy not known
 * to have completed needs this copy, the first is put off until it
 * completes (said in the log); a second quits all the same. */
bool control_may_quit(int sig);
/* Close the socket and every connection, but Quit's callers' (below). */
void control_stop(void);
/* Last of all, once the name lock is let go: Quit's callers see the end
 * of their connections, and know that the name is free. */
void control_release_quitters(void);

/* memio.c: ReadMem of missing pages, each in a thread of its own */
struct rpc_call;
int memio_start(struct event_base *base);
/* RPC_DEFERRED, or -errno with the call's error set (EAGAIN: too many
 * reads wait already). */
int memio_read_later(struct rpc_call *call, struct vm *vm, uint64_t gpa,
		     uint32_t len);
/* Reads waiting now (main thread). */
unsigned int memio_waiting(void);
/* No more replies; wait a moment for waiting reads (a released uffd
 * wakes them).  How many still wait: then the RAM must stay mapped. */
int memio_stop(void);

#endif
