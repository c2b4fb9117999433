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
#include <stdint.h>

/* Whether point NAME is on. */
bool fault_active(const char *name);
/* A crash point: if NAME is on, log it and SIGKILL ourselves. */
void fault_point(const char *name);
/*
 * Hold points, which a test ends when it is done: fault_held() says
 * whether NAME is on and the file DIR/NAME exists.  A timed hold of MS
 * from SINCE_NS (now_ns()) lasts MS, then on while that file exists, a
 * minute at most from SINCE_NS: fault_hold_over() says whether it is
 * over (at once if NAME is off), for a caller that goes on meanwhile;
 * fault_hold() waits it out from now (signals do not end it).
 */
bool fault_held(const char *dir, const char *name);
bool fault_hold_over(const char *dir, const char *name, uint64_t since_ns,
		     unsigned int ms);
void fault_hold(const char *dir, const char *name, unsigned int ms);

#endif
