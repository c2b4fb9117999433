/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Fault injection for tests: TERN_FAULT=NAME[,NAME...] in a program's
 * environment turns on the fault points of those names.  Each program's
 * points are listed in its man page, under ENVIRONMENT; an unknown name
 * does nothing.
 */
#ifndef TERN_FAULT_H
#define TERN_FAULT_H

#include <stdbool.h>

/* Whether point NAME is on. */
bool fault_active(const char *name);
/* A crash point: if NAME is on, log it and SIGKILL ourselves. */
void fault_point(const char *name);

#endif
