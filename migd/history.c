// SPDX-License-Identifier: GPL-2.0-only
/*
 * The order of migd's history of finished jobs, newest end first, and
 * its bounds: the last MIGD_HISTORY jobs, and at most MIGD_HISTORY_PER_VM
 * of one VM, so that a VM whose jobs come and go by the dozen (a
 * script's retries) does not push every other VM's last job, and the
 * error that said what to do, out of it.  An end learnt late (a worker
 * that ended while no migd ran, jobadopt.c) goes where its own time puts
 * it, behind a newer job of the same VM that ended meanwhile: Status
 * shows a VM's newest.  Called by jobend.c as a job ends; no I/O.
 */
#include <string.h>

#include "migd/migd.h"

struct job *history_add(struct migd *m, struct job *j, bool by_time)
{
	struct job **pp = &m->history, **oldest = NULL, *gone;
	unsigned int same = 0;

	while (by_time && *pp && (*pp)->finished_unix_ms > j->finished_unix_ms)
		pp = &(*pp)->next;
	j->next = *pp;
	*pp = j;
	m->nhistory++;
	/* The one dropped is the oldest of j's VM, or of all, but never j:
	 * its caller still answers with it. */
	for (pp = &m->history; *pp; pp = &(*pp)->next)
		if (!strcmp((*pp)->spec.vm, j->spec.vm) && ++same && *pp != j)
			oldest = pp;
	if (same <= MIGD_HISTORY_PER_VM)
		oldest = NULL;
	if (!oldest && m->nhistory > MIGD_HISTORY)
		for (pp = &m->history; *pp; pp = &(*pp)->next)
			if (*pp != j)
				oldest = pp;
	if (!oldest)
		return NULL;
	gone = *oldest;
	*oldest = gone->next;
	gone->next = NULL;
	m->nhistory--;
	return gone;
}
