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
/*
 * Hold points, which a test ends when it is done: fault_held() says
 * whether NAME is on and the file DIR/NAME exists; fault_hold(), if NAME
 * is on, waits MS, then on while that file exists, a minute at most
 * (signals do not end it).
 */
bool fault_held(const char *dir, const char *name);
void fault_hold(const char *dir, const char *name, unsigned int ms);

#endif
