// SPDX-License-Identifier: GPL-2.0-only
/*
 * The complete VM state, as tern.vmm.VmState (proto/vmm.proto): every
 * vCPU's registers, FPU/XSAVE, MSRs, LAPIC and pending events, and the
 * VM-wide PIC, IOAPIC, PIT, kvmclock and UART.  Called by control.c for
 * SaveState (the VM is paused: every vCPU thread is parked outside
 * KVM_RUN with its I/O completed) and LoadState (the vmm is --incoming,
 * its vCPUs created and parked).
 *
 * Loading checks the whole state against this host before the first
 * ioctl, so a truncated, corrupt or incompatible state is refused with
 * one sentence and changes nothing.  Should KVM itself refuse a value
 * past that point, the load stops part-way; every piece is written in
 * full on each attempt, so a later LoadState of a good state still wins.
 *
 * Debug hook for tests: TERN_STATE_DROP, set in the vmm's environment to
 * a comma-separated list among "xsave,lapic,tsc,events", makes state_load
 * skip restoring those pieces (with a warning), so that a test can show
 * that the guest's own checks notice a broken migration (the full test
 * guest: tests/integration/t_fullstate.sh).  What each costs a guest, as
 * measured on PVM: xsave its FPU/SSE/AVX registers; lapic its timer and
 * every interrupt (the LAPIC comes back software-disabled); events only
 * what was on its way at the stop, which is NMIs (pending interrupts wait
 * in the LAPIC's IRR); tsc nothing, as a PVM guest's TSC is the host's
 * whatever MSR_IA32_TSC is set to (see doc/pvm.md).
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "common/log.h"
#include "common/testguest.h"
#include "common/util.h"
#include "vmm/vmm.h"

#define STATE_NGPR 18
#define STATE_MSR_CHUNK 128             /* KVM takes < 256 MSRs per call */
#define STATE_MAX_MSRS 4096
#define STATE_TSC_PPM 250               /* KVM's own TSC tolerance */
#define MSR_IA32_TSC 0x10
#define MSR_IA32_TSC_DEADLINE 0x6e0

#define BLOB(x) ((ProtobufCBinaryData){ sizeof(x), (uint8_t *)&(x) })
#define REFUSE(...) \
	do { snprintf(err, errlen, __VA_ARGS__); return -EINVAL; } while (0)

_Static_assert(sizeof(struct kvm_regs) == STATE_NGPR * sizeof(uint64_t),
	       "struct kvm_regs is VcpuState.gpr, in the same order");

enum state_drop {
	STATE_DROP_XSAVE = 1 << 0,
	STATE_DROP_LAPIC = 1 << 1,
	STATE_DROP_TSC = 1 << 2,
	STATE_DROP_EVENTS = 1 << 3,
};
static const char *const state_drop_names[] = { "xsave", "lapic", "tsc", "events" };

/* What this host's KVM saves and restores. */
struct state_host {
	int xsave_size;
	bool xsave2;
	bool xcrs;
	struct kvm_msr_list *msrs;
};

/* One allocation per vCPU, VcpuState first: freeing it frees them all. */
struct state_vcpu_box {
	Tern__Vmm__VcpuState vs;
	uint64_t gpr[STATE_NGPR];
	Tern__Vmm__Segment seg[8];
	Tern__Vmm__DTable dt[2];
	Tern__Vmm__Msr xcr[KVM_MAX_XCRS];
	Tern__Vmm__Msr *pxcr[KVM_MAX_XCRS];
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	struct kvm_debugregs dbg;
	struct kvm_sregs sregs;         /* only while saving */
	struct kvm_mp_state mp;         /* likewise */
};

#define GET(req, f) { req, offsetof(struct state_vcpu_box, f), #req }
static const struct {
	unsigned long req;
	size_t off;
	const char *name;
} state_vcpu_gets[] = {
	GET(KVM_GET_REGS, gpr), GET(KVM_GET_SREGS, sregs),
	GET(KVM_GET_LAPIC, lapic), GET(KVM_GET_VCPU_EVENTS, events),
	GET(KVM_GET_DEBUGREGS, dbg), GET(KVM_GET_MP_STATE, mp),
};

/* Likewise for the VM. */
struct state_vm_box {
	Tern__Vmm__VmState st;
	Tern__Vmm__UartState uart;
	struct kvm_irqchip chip[3];
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock;
};

#define SEG(f) { offsetof(struct kvm_sregs, f), \
		 offsetof(Tern__Vmm__VcpuState, f), #f }
static const struct {
	size_t kvm, pb;
	const char *name;
} state_segs[8] = {
	SEG(cs), SEG(ds), SEG(es), SEG(fs), SEG(gs), SEG(ss), SEG(tr), SEG(ldt)
};

#define CREG(f) { offsetof(struct kvm_sregs, f), \
			offsetof(Tern__Vmm__VcpuState, f) }
static const struct {
	size_t kvm, pb;
} state_cregs[7] = {
	CREG(cr0), CREG(cr2), CREG(cr3), CREG(cr4), CREG(cr8), CREG(efer),
	CREG(apic_base)
};

static Tern__Vmm__Segment **state_pb_seg(const Tern__Vmm__VcpuState *vs, int i)
{
	return (Tern__Vmm__Segment **)((char *)vs + state_segs[i].pb);
}

static struct kvm_segment *state_kvm_seg(const struct kvm_sregs *sr, int i)
{
	return (struct kvm_segment *)((char *)sr + state_segs[i].kvm);
}

/* ---- host capabilities ---------------------------------------------- */

static int state_msr_list(int kvm_fd, struct kvm_msr_list **ret)
{
	struct kvm_msr_list *l;
	uint32_t n = 256, need;
	int err;

	for (;;) {
		l = calloc(1, sizeof(*l) + n * sizeof(l->indices[0]));
		if (!l)
			return -ENOMEM;
		l->nmsrs = n;
		if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, l) == 0)
			break;
		err = errno;
		need = l->nmsrs;
		free(l);
		if (err != E2BIG || need > STATE_MAX_MSRS || need <= n)
			return -err;
		n = need;
	}
	*ret = l;
	return 0;
}

static int state_host_probe(struct vm *vm, struct state_host *h)
{
	int size = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);

	h->xsave2 = size > 0;
	h->xsave_size = MAX(size, (int)sizeof(struct kvm_xsave));
	h->xcrs = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XCRS) > 0;
	return state_msr_list(vm->kvm_fd, &h->msrs);
}

/* ---- save ------------------------------------------------------------- */

static void state_sregs_save(struct state_vcpu_box *b,
			     const struct kvm_sregs *sr)
{
	Tern__Vmm__VcpuState *vs = &b->vs;
	int i;

	for (i = 0; i < 8; i++) {
		const struct kvm_segment *s = state_kvm_seg(sr, i);
		Tern__Vmm__Segment *p = &b->seg[i];

		tern__vmm__segment__init(p);
		p->addr = s->base;
		p->limit = s->limit;
		p->selector = s->selector;
		p->attr = (s->type & 15) | s->s << 4 | (s->dpl & 3) << 5 |
			  s->present << 7 | s->avl << 8 | s->l << 9 |
			  s->db << 10 | s->g << 11 | s->unusable << 12;
		*state_pb_seg(vs, i) = p;
	}
	tern__vmm__dtable__init(&b->dt[0]);
	tern__vmm__dtable__init(&b->dt[1]);
	b->dt[0].addr = sr->gdt.base;
	b->dt[0].limit = sr->gdt.limit;
	b->dt[1].addr = sr->idt.base;
	b->dt[1].limit = sr->idt.limit;
	vs->gdt = &b->dt[0];
	vs->idt = &b->dt[1];
	for (i = 0; i < 7; i++)
		memcpy((char *)vs + state_cregs[i].pb,
		       (const char *)sr + state_cregs[i].kvm, sizeof(uint64_t));
}

/*
 * Every MSR of the list.  KVM_GET_MSRS stops at the first index it cannot
 * read and returns how many it did: skip that one and go on.
 */
static int state_msrs_save(struct vcpu *v, const struct kvm_msr_list *l,
			   Tern__Vmm__VcpuState *vs)
{
	uint32_t pos = 0, n = 0, want, i;
	struct kvm_msrs *m;
	Tern__Vmm__Msr *e;
	int r, ret = 0;

	m = calloc(1, sizeof(*m) + STATE_MSR_CHUNK * sizeof(m->entries[0]));
	vs->msrs = calloc(l->nmsrs + 1, sizeof(*vs->msrs) + sizeof(*e));
	if (!m || !vs->msrs) {
		ret = -ENOMEM;
		goto out;
	}
	e = (Tern__Vmm__Msr *)(vs->msrs + l->nmsrs + 1);
	while (pos < l->nmsrs) {
		want = MIN(l->nmsrs - pos, STATE_MSR_CHUNK);
		memset(m->entries, 0, want * sizeof(m->entries[0]));
		for (i = 0; i < want; i++)
			m->entries[i].index = l->indices[pos + i];
		m->nmsrs = want;
		r = ioctl(v->fd, KVM_GET_MSRS, m);
		if (r < 0) {
			ret = -errno;
			goto out;
		}
		for (i = 0; i < (uint32_t)r; i++, n++) {
			tern__vmm__msr__init(&e[n]);
			e[n].index = m->entries[i].index;
			e[n].value = m->entries[i].data;
			vs->msrs[n] = &e[n];
		}
		pos += r;
		if ((uint32_t)r < want)
			log_debug("vCPU %d: MSR 0x%x does not read; not saved",
				  v->index, l->indices[pos++]);
	}
	vs->n_msrs = n;
out:
	free(m);
	return ret;
}

static int state_xsave_save(struct vcpu *v, const struct state_host *h,
			    struct state_vcpu_box *b)
{
	struct kvm_xcrs xcrs;
	uint32_t i;

	b->vs.xsave.data = calloc(1, h->xsave_size);
	if (!b->vs.xsave.data)
		return -ENOMEM;
	b->vs.xsave.len = h->xsave_size;
	if (ioctl(v->fd, h->xsave2 ? KVM_GET_XSAVE2 : KVM_GET_XSAVE,
		  b->vs.xsave.data) < 0)
		return -errno;
	if (!h->xcrs)
		return 0;
	if (ioctl(v->fd, KVM_GET_XCRS, &xcrs) < 0)
		return -errno;
	for (i = 0; i < xcrs.nr_xcrs && i < KVM_MAX_XCRS; i++) {
		tern__vmm__msr__init(&b->xcr[i]);
		b->xcr[i].index = xcrs.xcrs[i].xcr;
		b->xcr[i].value = xcrs.xcrs[i].value;
		b->pxcr[i] = &b->xcr[i];
	}
	b->vs.xcrs = b->pxcr;
	b->vs.n_xcrs = i;
	return 0;
}

static int state_save_vcpu(struct vcpu *v, const struct state_host *h,
			   Tern__Vmm__VcpuState **ret)
{
	struct state_vcpu_box *b = calloc(1, sizeof(*b));
	const char *what;
	size_t i;
	int err = 0;

	if (!b)
		return -ENOMEM;
	tern__vmm__vcpu_state__init(&b->vs);
	for (i = 0; i < sizeof(state_vcpu_gets) / sizeof(state_vcpu_gets[0]); i++) {
		what = state_vcpu_gets[i].name;
		if (ioctl(v->fd, state_vcpu_gets[i].req,
			  (char *)b + state_vcpu_gets[i].off) < 0)
			goto fail;
	}
	b->vs.id = v->index;
	b->vs.gpr = b->gpr;
	b->vs.n_gpr = STATE_NGPR;
	state_sregs_save(b, &b->sregs);
	b->vs.mp_state = b->mp.mp_state;
	b->vs.lapic = BLOB(b->lapic);
	b->vs.events = BLOB(b->events);
	b->vs.debugregs = BLOB(b->dbg);
	what = "XSAVE";
	if ((err = state_xsave_save(v, h, b)) < 0)
		goto fail;
	what = "MSRs";
	if ((err = state_msrs_save(v, h->msrs, &b->vs)) < 0)
		goto fail;
	*ret = &b->vs;
	return 0;
fail:
	if (err == 0)
		err = -errno;
	log_warnc(err, "vCPU %d: saving %s", v->index, what);
	free(b->vs.xsave.data);
	free(b->vs.msrs);
	free(b);
	return err;
}

static int state_save_vm(struct vm *vm, struct state_vm_box *b)
{
	Tern__Vmm__VmState *st = &b->st;
	const char *what = "KVM_GET_IRQCHIP";
	uint32_t i;

	for (i = 0; i < 3; i++) {
		b->chip[i].chip_id = i;
		if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &b->chip[i]) < 0)
			goto fail;
	}
	what = "KVM_GET_PIT2";
	if (ioctl(vm->vm_fd, KVM_GET_PIT2, &b->pit) < 0)
		goto fail;
	what = "KVM_GET_CLOCK";
	if (ioctl(vm->vm_fd, KVM_GET_CLOCK, &b->clock) < 0)
		goto fail;
	st->pic_master = BLOB(b->chip[0]);
	st->pic_slave = BLOB(b->chip[1]);
	st->ioapic = BLOB(b->chip[2]);
	st->pit = BLOB(b->pit);
	st->clock = BLOB(b->clock);
	tern__vmm__uart_state__init(&b->uart);
	serial_save(&vm->serial, &b->uart);
	st->uart = &b->uart;
	return 0;
fail:
	log_warn("saving the VM: %s", what);
	return -errno;
}

void state_free(Tern__Vmm__VmState *st)
{
	size_t i;

	if (!st)
		return;
	for (i = 0; i < st->n_vcpus; i++) {
		free(st->vcpus[i]->xsave.data);
		free(st->vcpus[i]->msrs);
		free(st->vcpus[i]);     /* its state_vcpu_box */
	}
	free(st->vcpus);
	free(st);                       /* its state_vm_box */
}

int state_save(struct vm *vm, Tern__Vmm__VmState **ret)
{
	struct state_host h = { 0 };
	struct state_vm_box *b;
	Tern__Vmm__VmState *st;
	int i, err;

	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	st = &b->st;
	tern__vmm__vm_state__init(st);
	st->version = VMM_STATE_VERSION;
	st->producer = (char *)"tern-vmm " TERN_VERSION;
	st->memory = vm->memory;
	st->vcpus_count = vm->nvcpus;
	st->guest = (Tern__Vmm__GuestKind)vm->guest.kind;
	if (vm->guest.kind == GUEST_KIND_TEST)
		st->guest_mode = (char *)tg_mode_name(vm->guest.mode);
	st->tsc_khz = vm->tsc_khz;
	if ((err = state_host_probe(vm, &h)) < 0) {
		log_warnc(err, "KVM_GET_MSR_INDEX_LIST");
		goto out;
	}
	if ((err = state_save_vm(vm, b)) < 0)
		goto out;
	st->vcpus = calloc(vm->nvcpus, sizeof(*st->vcpus));
	if (!st->vcpus) {
		err = -ENOMEM;
		goto out;
	}
	for (i = 0; i < vm->nvcpus; i++, st->n_vcpus++)
		if ((err = state_save_vcpu(&vm->vcpus[i], &h, &st->vcpus[i])) < 0)
			goto out;
	log_debug("state saved: %d vCPUs, %zu MSRs each, %d-byte XSAVE",
		  vm->nvcpus, st->vcpus[0]->n_msrs, h.xsave_size);
	*ret = st;
	st = NULL;
out:
	free(h.msrs);
	state_free(st);
	return err;
}

/* ---- checks ---------------------------------------------------------- */

static bool state_msr_known(const struct kvm_msr_list *l, uint32_t index)
{
	uint32_t i;

	for (i = 0; i < l->nmsrs; i++)
		if (l->indices[i] == index)
			return true;
	return false;
}

static int state_check_vcpu_blobs(const Tern__Vmm__VcpuState *vs, size_t i,
				  const struct state_host *h, char *err,
				  size_t errlen)
{
	const struct {
		const ProtobufCBinaryData *d;
		size_t size;
		const char *name;
	} blobs[] = {
		{ &vs->xsave, h->xsave_size, "XSAVE area" },
		{ &vs->lapic, sizeof(struct kvm_lapic_state), "LAPIC state" },
		{ &vs->events, sizeof(struct kvm_vcpu_events), "event state" },
		{ &vs->debugregs, sizeof(struct kvm_debugregs), "debug registers" },
	};
	const uint32_t ok_events = KVM_VCPUEVENT_VALID_NMI_PENDING |
		KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_SMM;
	const struct kvm_vcpu_events *ev;
	size_t j;

	for (j = 0; j < sizeof(blobs) / sizeof(blobs[0]); j++)
		if (blobs[j].d->len != blobs[j].size)
			REFUSE("vCPU %zu's %s is %zu bytes, this host's KVM uses %zu",
			       i, blobs[j].name, blobs[j].d->len, blobs[j].size);
	ev = (const struct kvm_vcpu_events *)vs->events.data;
	if (ev->flags & ~ok_events)
		REFUSE("vCPU %zu has pending events that need KVM features this vmm does not enable (flags 0x%x)",
		       i, ev->flags);
	if (((const struct kvm_debugregs *)vs->debugregs.data)->flags)
		REFUSE("vCPU %zu's debug registers carry unknown flags", i);
	return 0;
}

static int state_check_vcpu(const Tern__Vmm__VcpuState *vs, size_t i,
			    const struct state_host *h, char *err,
			    size_t errlen)
{
	const Tern__Vmm__Segment *s;
	size_t j;

	if (vs->id != i)
		REFUSE("vCPU %zu of the state has id %u: ids must run 0..n-1 in order",
		       i, vs->id);
	if (vs->n_gpr != STATE_NGPR)
		REFUSE("vCPU %zu has %zu general registers, not %d", i,
		       vs->n_gpr, STATE_NGPR);
	for (j = 0; j < 8; j++) {
		if (!(s = *state_pb_seg(vs, j)))
			REFUSE("vCPU %zu has no %s segment", i, state_segs[j].name);
		if (s->attr >> 13 || s->selector > 0xffff)
			REFUSE("vCPU %zu's %s segment is corrupt (selector 0x%x, attributes 0x%x)",
			       i, state_segs[j].name, s->selector, s->attr);
	}
	if (!vs->gdt || !vs->idt)
		REFUSE("vCPU %zu has no %s", i, vs->gdt ? "IDT" : "GDT");
	if (vs->mp_state > KVM_MP_STATE_SIPI_RECEIVED &&
	    vs->mp_state != KVM_MP_STATE_AP_RESET_HOLD)    /* x86's states */
		REFUSE("vCPU %zu has an unknown run state %u", i, vs->mp_state);
	if (vs->n_xcrs && !h->xcrs)
		REFUSE("vCPU %zu has extended control registers but this host's KVM cannot set them", i);
	if (vs->n_xcrs > 1 || (vs->n_xcrs == 1 && vs->xcrs[0]->index != 0))
		REFUSE("vCPU %zu has extended control registers other than XCR0", i);
	if (vs->n_msrs > h->msrs->nmsrs)
		REFUSE("vCPU %zu has %zu MSRs, more than the %u this host's KVM saves",
		       i, vs->n_msrs, h->msrs->nmsrs);
	for (j = 0; j < vs->n_msrs; j++)
		if (!state_msr_known(h->msrs, vs->msrs[j]->index))
			REFUSE("vCPU %zu has MSR 0x%x, which this host's KVM does not restore",
			       i, vs->msrs[j]->index);
	return state_check_vcpu_blobs(vs, i, h, err, errlen);
}

static int state_check_devices(const Tern__Vmm__VmState *st, char *err,
			       size_t errlen)
{
	const struct {
		const ProtobufCBinaryData *d;
		size_t size;
		int chip;
		const char *name;
	} blobs[] = {
		{ &st->pic_master, sizeof(struct kvm_irqchip), KVM_IRQCHIP_PIC_MASTER, "master PIC" },
		{ &st->pic_slave, sizeof(struct kvm_irqchip), KVM_IRQCHIP_PIC_SLAVE, "slave PIC" },
		{ &st->ioapic, sizeof(struct kvm_irqchip), KVM_IRQCHIP_IOAPIC, "IOAPIC" },
		{ &st->pit, sizeof(struct kvm_pit_state2), -1, "PIT" },
		{ &st->clock, sizeof(struct kvm_clock_data), -1, "clock" },
	};
	size_t j;

	for (j = 0; j < sizeof(blobs) / sizeof(blobs[0]); j++) {
		if (blobs[j].d->len != blobs[j].size)
			REFUSE("the %s state is %zu bytes, this host's KVM uses %zu",
			       blobs[j].name, blobs[j].d->len, blobs[j].size);
		if (blobs[j].chip >= 0 &&
		    ((const struct kvm_irqchip *)blobs[j].d->data)->chip_id != (uint32_t)blobs[j].chip)
			REFUSE("the %s state is that of another interrupt controller",
			       blobs[j].name);
	}
	if (!st->uart)
		REFUSE("the state has no UART state");
	return 0;
}

/* 1: set the guest's TSC frequency with KVM_SET_TSC_KHZ (where KVM can
 * scale it, always), 0: it runs at the host's. */
static int state_check_tsc(struct vm *vm, const Tern__Vmm__VmState *st,
			   char *err, size_t errlen)
{
	uint64_t a = st->tsc_khz, b = vm->host_tsc_khz;
	uint64_t diff = a > b ? a - b : b - a;

	if (a == 0)
		REFUSE("the state does not say at what frequency the guest's TSC runs");
	/* KVM_SET_TSC_KHZ takes 32 bits: more would be cut, not refused. */
	if (a > UINT32_MAX)
		REFUSE("the guest's TSC runs at %llu kHz, more than KVM can set",
		       (unsigned long long)a);
	/* Set even when equal: a load that failed after setting it left the
	 * vCPUs at another frequency than vm->tsc_khz says.  Compared with
	 * the host's own, never a state loaded (and discarded) before. */
	if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_CONTROL) > 0)
		return 1;
	if (diff == 0)
		return 0;
	/* As close as KVM asks of hosts.  diff comes from the state and may
	 * be anything: diff * 1e6 wrapped past 2^64 / 1e6 kHz and let an
	 * absurd frequency pass; b (this host's) times the ppm cannot. */
	if (diff <= b * STATE_TSC_PPM / 1000000)
		return 0;
	REFUSE("the guest's TSC runs at %llu kHz, this host's at %llu kHz, and this host's KVM cannot scale it",
	       (unsigned long long)a, (unsigned long long)b);
}

static int state_check(struct vm *vm, const Tern__Vmm__VmState *st,
		       const struct state_host *h, char *err, size_t errlen)
{
	char smem[32], vmem[32], arg[32];
	size_t i;
	int ret;

	if (st->version != VMM_STATE_VERSION)
		REFUSE("state version %u, this vmm loads version %u",
		       st->version, VMM_STATE_VERSION);
	if (st->memory != vm->memory)
		REFUSE("the state is of a guest with %s of RAM, this vmm has %s "
		       "(start it with --memory %s)",
		       fmt_size(st->memory, smem, sizeof(smem)),
		       fmt_size(vm->memory, vmem, sizeof(vmem)),
		       fmt_size_arg(st->memory, arg, sizeof(arg)));
	if (st->vcpus_count != (uint32_t)vm->nvcpus)
		REFUSE("the state is of a guest with %u vCPU%s, this vmm has %d "
		       "(start it with --vcpus %u)", st->vcpus_count,
		       st->vcpus_count == 1 ? "" : "s", vm->nvcpus,
		       st->vcpus_count);
	if (st->n_vcpus != st->vcpus_count)
		REFUSE("the state is truncated: it announces %u vCPUs but holds %zu",
		       st->vcpus_count, st->n_vcpus);
	if (st->guest == TERN__VMM__GUEST_KIND__GUEST_TEST &&
	    boot_test_guest_parse_mode(st->guest_mode) < 0)
		REFUSE("unknown test guest mode \"%.32s\"", st->guest_mode);
	if (st->guest != TERN__VMM__GUEST_KIND__GUEST_NONE &&
	    st->guest != TERN__VMM__GUEST_KIND__GUEST_TEST &&
	    st->guest != TERN__VMM__GUEST_KIND__GUEST_IMAGE)
		REFUSE("unknown guest kind %d", (int)st->guest);
	if ((ret = state_check_devices(st, err, errlen)) < 0)
		return ret;
	for (i = 0; i < st->n_vcpus; i++)
		if ((ret = state_check_vcpu(st->vcpus[i], i, h, err, errlen)) < 0)
			return ret;
	return state_check_tsc(vm, st, err, errlen);
}

/* ---- load ------------------------------------------------------------ */

static unsigned int state_drop_parse(void)
{
	const char *p = getenv("TERN_STATE_DROP");
	unsigned int drop = 0, i;
	size_t len;

	for (; p && *p; p += len + (p[len] == ',')) {
		len = strcspn(p, ",");
		for (i = 0; i < 4; i++)
			if (len == strlen(state_drop_names[i]) &&
			    !strncmp(p, state_drop_names[i], len))
				break;
		if (i < 4) {
			drop |= 1u << i;
			log_warnx("TERN_STATE_DROP: not restoring %s",
				  state_drop_names[i]);
		} else if (len) {
			log_warnx("TERN_STATE_DROP: unknown piece \"%.*s\"",
				  (int)len, p);
		}
	}
	return drop;
}

static void state_sregs_load(struct kvm_sregs *sr, const Tern__Vmm__VcpuState *vs)
{
	int i;

	memset(sr, 0, sizeof(*sr));     /* no interrupt_bitmap: events has it */
	for (i = 0; i < 8; i++) {
		const Tern__Vmm__Segment *p = *state_pb_seg(vs, i);
		struct kvm_segment *s = state_kvm_seg(sr, i);

		s->base = p->addr;
		s->limit = p->limit;
		s->selector = p->selector;
		s->type = p->attr & 15;
		s->s = p->attr >> 4 & 1;
		s->dpl = p->attr >> 5 & 3;
		s->present = p->attr >> 7 & 1;
		s->avl = p->attr >> 8 & 1;
		s->l = p->attr >> 9 & 1;
		s->db = p->attr >> 10 & 1;
		s->g = p->attr >> 11 & 1;
		s->unusable = p->attr >> 12 & 1;
	}
	sr->gdt.base = vs->gdt->addr;
	sr->gdt.limit = vs->gdt->limit;
	sr->idt.base = vs->idt->addr;
	sr->idt.limit = vs->idt->limit;
	for (i = 0; i < 7; i++)
		memcpy((char *)sr + state_cregs[i].kvm,
		       (const char *)vs + state_cregs[i].pb, sizeof(uint64_t));
}

/*
 * All MSRs, after the LAPIC, the TSC deadline last: it takes only in
 * TSC-deadline mode and counts in ticks of the TSC set just before.
 */
static int state_msrs_load(struct vcpu *v, const Tern__Vmm__VcpuState *vs,
			   unsigned int drop, char *err, size_t errlen)
{
	struct kvm_msr_entry *e;
	struct kvm_msrs *m;
	uint32_t n = 0, done = 0, want, idx;
	size_t j, pass;
	int r, ret = 0;

	e = calloc(vs->n_msrs + 1, sizeof(*e));
	m = calloc(1, sizeof(*m) + STATE_MSR_CHUNK * sizeof(m->entries[0]));
	if (!e || !m) {
		ret = -ENOMEM;
		goto out;
	}
	for (pass = 0; pass < 2; pass++) {
		for (j = 0; j < vs->n_msrs; j++) {
			idx = vs->msrs[j]->index;
			if ((idx == MSR_IA32_TSC_DEADLINE) != (pass == 1) ||
			    (idx == MSR_IA32_TSC && (drop & STATE_DROP_TSC)))
				continue;
			e[n].index = idx;
			e[n++].data = vs->msrs[j]->value;
		}
	}
	for (; done < n; done += want) {
		want = MIN(n - done, STATE_MSR_CHUNK);
		m->nmsrs = want;
		memcpy(m->entries, e + done, want * sizeof(*e));
		r = ioctl(v->fd, KVM_SET_MSRS, m);
		if (r < 0 || (uint32_t)r < want) {
			ret = r < 0 ? -errno : -EINVAL;
			snprintf(err, errlen, "KVM refused vCPU %d's MSR 0x%x%s%s",
				 v->index, m->entries[r < 0 ? 0 : r].index,
				 r < 0 ? ": " : "", r < 0 ? strerror(-ret) : "");
			goto out;
		}
	}
out:
	free(m);
	free(e);
	return ret;
}

/* XCR0 before the XSAVE area, whose components XCR0 must allow. */
static int state_xsave_load(struct vcpu *v, const Tern__Vmm__VcpuState *vs,
			    unsigned int drop)
{
	struct kvm_xcrs xcrs = { .nr_xcrs = vs->n_xcrs };
	size_t i;

	for (i = 0; i < vs->n_xcrs; i++) {
		xcrs.xcrs[i].xcr = vs->xcrs[i]->index;
		xcrs.xcrs[i].value = vs->xcrs[i]->value;
	}
	if (vs->n_xcrs && ioctl(v->fd, KVM_SET_XCRS, &xcrs) < 0)
		return -errno;
	/* KVM reads as many bytes as it uses: state_check made sure of them. */
	if (!(drop & STATE_DROP_XSAVE) &&
	    ioctl(v->fd, KVM_SET_XSAVE, vs->xsave.data) < 0)
		return -errno;
	return 0;
}

/*
 * One vCPU, in the order KVM needs: sregs (modes, APIC base) before regs;
 * XCR0 and XSAVE after CR4; the LAPIC after its base and before the MSRs
 * (TSC deadline); pending events after all that; the run state last.
 */
static int state_load_vcpu(struct vcpu *v, const Tern__Vmm__VcpuState *vs,
			   unsigned int drop, char *err, size_t errlen)
{
	struct kvm_mp_state mp = { .mp_state = vs->mp_state };
	struct kvm_vcpu_events ev;
	struct kvm_sregs sregs;
	const char *what;
	int ret;

	state_sregs_load(&sregs, vs);
	memcpy(&ev, vs->events.data, sizeof(ev));
	ev.flags |= KVM_VCPUEVENT_VALID_NMI_PENDING;
	what = "KVM_SET_SREGS";
	if (ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0)
		goto fail;
	what = "KVM_SET_REGS";
	if (ioctl(v->fd, KVM_SET_REGS, (const struct kvm_regs *)vs->gpr) < 0)
		goto fail;
	what = "KVM_SET_XCRS or KVM_SET_XSAVE";
	if ((ret = state_xsave_load(v, vs, drop)) < 0) {
		errno = -ret;
		goto fail;
	}
	what = "KVM_SET_LAPIC";
	if (!(drop & STATE_DROP_LAPIC) &&
	    ioctl(v->fd, KVM_SET_LAPIC, vs->lapic.data) < 0)
		goto fail;
	if ((ret = state_msrs_load(v, vs, drop, err, errlen)) < 0)
		return ret;
	what = "KVM_SET_DEBUGREGS";
	if (ioctl(v->fd, KVM_SET_DEBUGREGS, vs->debugregs.data) < 0)
		goto fail;
	what = "KVM_SET_VCPU_EVENTS";
	if (!(drop & STATE_DROP_EVENTS) &&
	    ioctl(v->fd, KVM_SET_VCPU_EVENTS, &ev) < 0)
		goto fail;
	what = "KVM_SET_MP_STATE";
	if (ioctl(v->fd, KVM_SET_MP_STATE, &mp) < 0)
		goto fail;
	return 0;
fail:
	ret = -errno;
	snprintf(err, errlen, "KVM refused vCPU %d's state (%s: %s)",
		 v->index, what, strerror(-ret));
	return ret;
}

/* The TSC frequency first, the in-kernel PIC, IOAPIC and PIT next. */
static int state_load_vm(struct vm *vm, const Tern__Vmm__VmState *st,
			 bool scale_tsc, char *err, size_t errlen)
{
	const ProtobufCBinaryData *chips[3] = {
		&st->pic_master, &st->pic_slave, &st->ioapic
	};
	struct kvm_irqchip chip;
	int ret;
	struct kvm_pit_state2 pit;
	const char *what = "KVM_SET_TSC_KHZ";
	int i;

	for (i = 0; scale_tsc && i < vm->nvcpus; i++)
		if (ioctl(vm->vcpus[i].fd, KVM_SET_TSC_KHZ,
			  (unsigned long)st->tsc_khz) < 0)
			goto fail;
	if (scale_tsc && st->tsc_khz != vm->tsc_khz)
		log_info("guest TSC scaled to %llu kHz (host: %llu kHz)",
			 (unsigned long long)st->tsc_khz,
			 (unsigned long long)vm->tsc_khz);
	what = "KVM_SET_IRQCHIP";
	for (i = 0; i < 3; i++) {
		memcpy(&chip, chips[i]->data, sizeof(chip));
		if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &chip) < 0)
			goto fail;
	}
	memcpy(&pit, st->pit.data, sizeof(pit));
	what = "KVM_SET_PIT2";
	if (ioctl(vm->vm_fd, KVM_SET_PIT2, &pit) < 0)
		goto fail;
	return 0;
fail:
	ret = -errno;
	snprintf(err, errlen, "KVM refused the VM's state (%s: %s)", what,
		 strerror(-ret));
	return ret;
}

/*
 * kvmclock last, once every vCPU's TSC is in place.  Only the value
 * travels: older kernels refuse any flag, and KVM_CLOCK_REALTIME would
 * move the guest's clock on by the downtime.
 */
static int state_load_clock(struct vm *vm, const Tern__Vmm__VmState *st,
			    char *err, size_t errlen)
{
	struct kvm_clock_data clock = {
		.clock = ((const struct kvm_clock_data *)st->clock.data)->clock,
	};

	if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &clock) < 0) {
		int ret = -errno;

		snprintf(err, errlen, "KVM refused the guest clock: %s",
			 strerror(-ret));
		return ret;
	}
	return 0;
}

int state_load(struct vm *vm, const Tern__Vmm__VmState *st, char *err,
	       size_t errlen)
{
	struct state_host h = { 0 };
	unsigned int drop;
	int i, ret, scale;

	err[0] = 0;
	if ((ret = state_host_probe(vm, &h)) < 0) {
		snprintf(err, errlen, "cannot list the MSRs this host's KVM saves: %s",
			 strerror(-ret));
		goto out;
	}
	if ((ret = scale = state_check(vm, st, &h, err, errlen)) < 0)
		goto out;
	log_debug("loading the state of a %.64s: %zu vCPUs", st->producer,
		  st->n_vcpus);
	drop = state_drop_parse();
	ret = state_load_vm(vm, st, scale, err, errlen);
	for (i = 0; ret == 0 && i < vm->nvcpus; i++)
		ret = state_load_vcpu(&vm->vcpus[i], st->vcpus[i], drop, err,
				      errlen);
	if (ret == 0)
		ret = state_load_clock(vm, st, err, errlen);
	if (ret < 0)
		goto out;
	serial_load(&vm->serial, st->uart);
	vm->guest.kind = (enum guest_kind)st->guest;
	if (st->guest == TERN__VMM__GUEST_KIND__GUEST_TEST)
		vm->guest.mode = boot_test_guest_parse_mode(st->guest_mode);
	vm->tsc_khz = st->tsc_khz;
out:
	if (ret < 0)
		log_warnx("state refused: %s", err);
	free(h.msrs);
	return ret < 0 ? ret : 0;
}
