// SPDX-License-Identifier: GPL-2.0-only
/*
 * itest_threadstop TID MS: hold one thread of another process stopped
 * for MS milliseconds while its other threads run on, as a host that
 * starves one vCPU thread does (or a vCPU blocked on a page that postcopy
 * has still to bring while the link is down).  SIGSTOP would stop the
 * whole process; a ptrace interrupt stops just the thread.  Exits 0 once
 * the thread runs again, 77 when ptrace is not allowed here.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>

int main(int argc, char **argv)
{
	struct timespec ts;
	char *end;
	long tid, ms;
	int status;

	if (argc != 3) {
		fprintf(stderr, "usage: %s TID MS\n", argv[0]);
		return 2;
	}
	tid = strtol(argv[1], &end, 10);
	if (*end || tid <= 0)
		return 2;
	ms = strtol(argv[2], &end, 10);
	if (*end || ms < 0)
		return 2;
	if (ptrace(PTRACE_SEIZE, (pid_t)tid, NULL, NULL) < 0) {
		fprintf(stderr, "ptrace seize %ld: %s\n", tid, strerror(errno));
		return errno == EPERM ? 77 : 1;
	}
	if (ptrace(PTRACE_INTERRUPT, (pid_t)tid, NULL, NULL) < 0 ||
	    waitpid((pid_t)tid, &status, __WALL) < 0) {
		fprintf(stderr, "stopping %ld: %s\n", tid, strerror(errno));
		return 1;
	}
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = ms % 1000 * 1000000L;
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
	if (ptrace(PTRACE_DETACH, (pid_t)tid, NULL, NULL) < 0) {
		fprintf(stderr, "detaching %ld: %s\n", tid, strerror(errno));
		return 1;
	}
	return 0;
}
