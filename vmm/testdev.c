// SPDX-License-Identifier: GPL-2.0-only
/*
 * The test device: an MMIO doorbell through which the built-in test
 * guest's ring-3 code prints console lines and halts vCPUs without
 * entering ring 0 (see common/testguest.h).  Called from vCPU threads on
 * MMIO exits; any guest may use it, and a bad request is ignored.
 */
#include <string.h>

#include "common/testguest.h"
#include "vmm/vmm.h"

/* Returns true when the access was the test device's. */
bool testdev_mmio(struct vcpu *v, uint64_t addr, uint8_t *data, uint32_t len,
		  bool is_write)
{
	uint8_t line[TG_LINE_MAX];
	uint64_t gpa, n;

	if (addr < TG_DOORBELL_GPA || addr >= TG_DOORBELL_GPA + 16)
		return false;
	if (!is_write) {
		memset(data, 0, len);
		return true;
	}
	switch (addr - TG_DOORBELL_GPA) {
	case TG_DB_PRINT:
		if (len != 8)
			break;
		memcpy(&gpa, data, 8);
		if (mem_read(v->vm, gpa, &n, 8) < 0 || n > TG_LINE_MAX ||
		    mem_read(v->vm, gpa + 8, line, n) < 0)
			break;
		serial_write(&v->vm->serial, line, n);
		break;
	case TG_DB_HALT:
		v->guest_halted = true;
		break;
	}
	return true;
}
