// SPDX-License-Identifier: GPL-2.0-only
/* placeholder, replaced below */
#include <errno.h>
#include "vmm/vmm.h"
int state_save(struct vm *vm, Tern__Vmm__VmState **ret) { return -ENOSYS; }
void state_free(Tern__Vmm__VmState *st) { }
int state_load(struct vm *vm, const Tern__Vmm__VmState *st, char *err, size_t errlen) { return -ENOSYS; }
