// SPDX-License-Identifier: GPL-2.0-only
/*
 * The KVM VM itself: /dev/kvm, the VM fd, the in-kernel irqchip (PIC,
 * IOAPIC, LAPICs) and PIT, and the CPUID every vCPU gets.  Called once
 * from main() before memory and vCPUs are set up.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "common/log.h"
#include "vmm/vmm.h"

#define KVM_TSS_ADDR 0xfffbd000
#define KVM_IDMAP_ADDR 0xfffbc000

int kvm_max_vcpus(int kvm_fd)
{
	int n = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);

	if (n <= 0)
		n = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	return n > 0 ? n : 1;
}

static int kvm_get_cpuid(struct vm *vm)
{
	struct kvm_cpuid2 *c = NULL;
	int nent = 64;

	for (;;) {
		c = calloc(1, sizeof(*c) + nent * sizeof(c->entries[0]));
		if (!c)
			return -ENOMEM;
		c->nent = nent;
		if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0)
			break;
		free(c);
		if (errno != E2BIG || nent >= 4096)
			return -errno;
		nent *= 2;
	}
	vm->cpuid = c;
	return 0;
}

static const struct {
	int cap;
	const char *name;
} kvm_required_caps[] = {
	{ KVM_CAP_IRQCHIP, "in-kernel irqchip" },
	{ KVM_CAP_USER_MEMORY, "user memory regions" },
	{ KVM_CAP_IMMEDIATE_EXIT, "immediate exit" },
	{ KVM_CAP_PIT2, "in-kernel PIT" },
	{ KVM_CAP_EXT_CPUID, "KVM_GET_SUPPORTED_CPUID" },
};

int kvm_vm_create(struct vm *vm)
{
	struct kvm_pit_config pit = { .flags = 0 };
	size_t i;
	int ret;

	vm->vm_fd = -1;
	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		ret = -errno;
		if (ret == -EACCES)
			log_warnx("/dev/kvm: %s (a vmm needs read and write access: "
				  "run it as root, or as a user in /dev/kvm's group, "
				  "often 'kvm')", strerror(-ret));
		else if (ret == -ENOENT || ret == -ENODEV || ret == -ENXIO)
			log_warnx("/dev/kvm: %s: this host offers no KVM, and a "
				  "vmm cannot run here (no KVM module for its CPU "
				  "is loaded, such as kvm_intel or kvm_amd, or it "
				  "is a virtual machine without nested "
				  "virtualization)", strerror(-ret));
		else
			log_warn("/dev/kvm");
		return ret;
	}
	if (ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		log_warnx("/dev/kvm: unsupported KVM API version");
		return -ENOTSUP;
	}
	for (i = 0; i < sizeof(kvm_required_caps) / sizeof(kvm_required_caps[0]); i++) {
		if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION,
			  kvm_required_caps[i].cap) <= 0) {
			log_warnx("KVM lacks %s", kvm_required_caps[i].name);
			return -ENOTSUP;
		}
	}
	vm->run_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vm->run_size < (int)sizeof(struct kvm_run)) {
		log_warnx("KVM_GET_VCPU_MMAP_SIZE: bad size");
		return -EINVAL;
	}
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		ret = -errno;
		log_warn("KVM_CREATE_VM");
		return ret;
	}
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, KVM_TSS_ADDR) < 0 ||
	    ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR,
		  &(uint64_t){ KVM_IDMAP_ADDR }) < 0 ||
	    ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0 ||
	    ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
		ret = -errno;
		log_warn("KVM platform set-up");
		return ret;
	}
	ret = kvm_get_cpuid(vm);
	if (ret < 0) {
		log_warnc(ret, "KVM_GET_SUPPORTED_CPUID");
		return ret;
	}
	return 0;
}

void kvm_vm_destroy(struct vm *vm)
{
	free(vm->cpuid);
	vm->cpuid = NULL;
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	vm->vm_fd = vm->kvm_fd = -1;
}
