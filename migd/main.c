// SPDX-License-Identifier: GPL-2.0-only
/*
 * migd: parse the command line, take RUNDIR/migd.lock, serve the control
 * socket RUNDIR/migd.sock (control.c) and the job table (jobs.c) from one
 * event loop until SIGTERM or SIGINT, which cancel the running jobs and
 * wait a bounded time for their workers; a job past its postcopy switch
 * is left running, for the next migd to adopt (jobadopt.c).  migd stays
 * in the foreground and tells systemd (Type=notify) it is ready once the
 * socket listens; it never daemonizes.
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/caps.h"
#include "common/cli.h"
#include "common/fault.h"
#include "common/log.h"
#include "common/notify.h"
#include "common/pidlock.h"
#include "common/util.h"
#include "migd/migd.h"

struct options {
	const char *rundir;
	bool debug;
	bool no_realtime;
	int worker_nice;
};

static void usage(FILE *f)
{
	fprintf(f,
"usage: migd [--rundir DIR] [--debug] [--worker-nice N] [--no-realtime]\n"
"            [--foreground]\n"
"       migd --help | --version\n"
"serves RUNDIR/migd.sock (default %s); see migd(8)\n", MIGD_DEFAULT_RUNDIR);
}

static void die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die_usage(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "migd: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	exit(2);
}

static void parse_args(int argc, char **argv, struct options *o)
{
	enum { O_VERSION = 256, O_NO_RT, O_NICE };
	static const struct option longopts[] = {
		{ "rundir", required_argument, NULL, 'r' },
		{ "debug", no_argument, NULL, 'd' },
		{ "no-realtime", no_argument, NULL, O_NO_RT },
		{ "worker-nice", required_argument, NULL, O_NICE },
		{ "foreground", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, O_VERSION },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t v;
	bool neg;
	struct cli_seen seen = { { 0 } };
	const char *why;
	const char *rep;
	int c;

	o->rundir = MIGD_DEFAULT_RUNDIR;
	o->worker_nice = MIGD_WORKER_NICE;
	cli_init("migd", "migd(8)");     /* (cli_daemon_getopt's words) */
	while ((c = cli_daemon_getopt(argc, argv, "r:dfh", longopts)) != -1) {
		if ((rep = cli_option_repeated(&seen, c, longopts)))
			die_usage(CLI_REPEATED, rep);
		switch (c) {
		case 'r': o->rundir = optarg; break;
		case 'd': o->debug = true; break;
		case 'f': break;        /* always: migd never daemonizes */
		case 'h': usage(stdout); exit(0);
		case O_NO_RT: o->no_realtime = true; break;
		case O_NICE:
			neg = optarg[0] == '-';
			if (parse_u64(optarg + neg, 0, neg ? 20 : 19, &v) < 0)
				die_usage("--worker-nice %s: expected a nice value "
					  "from -20 to 19", optarg);
			o->worker_nice = neg ? -(int)v : (int)v;
			break;
		case O_VERSION: printf("migd (tern) %s\n", TERN_VERSION); exit(0);
		default: usage(stderr); exit(2);
		}
	}
	if (optind < argc)
		die_usage("unexpected argument '%s'", argv[optind]);
	if ((why = cli_rundir_error(o->rundir)))
		die_usage("%s", why);
	/* Room for "/migd.sock" and the vmm sockets in a sun_path. */
	if (strlen(o->rundir) > RUNDIR_MAX)
		die_usage("--rundir %s: at most %d characters", o->rundir,
			  RUNDIR_MAX);
}

/* RUNDIR/migd.lock, held for migd's life: one migd per run directory. */
static int take_lock(const char *rundir)
{
	char busy[PATH_MAX + 64];

	snprintf(busy, sizeof(busy), "a migd is already running on %s", rundir);
	return pidlock_take_in(rundir, "migd", busy);
}

static void handle_shutdown_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct migd *m = arg;
	static bool killed;
	struct timeval tv = { 2, 0 };

	if (!killed) {
		killed = true;
		jobs_signal_all(m, true);
		/* SIGKILL is final: their reaping follows at once. */
		evtimer_add(m->ev_shutdown, &tv);
		return;
	}
	log_warnx("workers still not reaped; exiting anyway");
	event_base_loopexit(m->base, NULL);
}

bool migd_just_started(const struct migd *m)
{
	return m->state_lost &&
	       now_ns() - m->started_ns < MIGD_ADOPT_GRACE_MS * 1000000ULL;
}

/* Quitting: once every job has ended but those past their postcopy
 * switch, which go on without migd for the next one to adopt. */
void migd_check_quit(struct migd *m)
{
	if (m->quitting && !jobs_hold_quit(m))
		event_base_loopexit(m->base, NULL);
}

static void handle_term(evutil_socket_t sig, short what, void *arg)
{
	struct migd *m = arg;
	struct timeval tv = { MIGD_SHUTDOWN_MS / 1000,
			      (MIGD_SHUTDOWN_MS % 1000) * 1000 };

	if (m->quitting)
		return;
	/* (A test's hold point: the event loop stands still while the file
	 * RUNDIR/migd-quit-deaf exists, a minute at most, then migd exits
	 * reading nothing more, its workers' last reports unread.) */
	if (fault_active("migd-quit-deaf")) {
		log_info("TERN_FAULT: quitting, deaf to the workers");
		fault_hold(m->rundir, "migd-quit-deaf", 0);
		m->quitting = true;
		event_base_loopbreak(m->base);
		return;
	}
	log_info("signal %d: cancelling running jobs and quitting", (int)sig);
	m->quitting = true;
	jobs_signal_all(m, false);
	evtimer_add(m->ev_shutdown, &tv);
	migd_check_quit(m);
}

/* How the workers will be scheduled (worker.c), for the start-up line. */
static const char *sched_note(const struct migd *m, char *buf, size_t len)
{
	uint64_t eff;
	bool nice_cap;

	nice_cap = caps_effective_mask(&eff) == 0 && (eff & (1ULL << CAP_SYS_NICE));
	snprintf(buf, len, "workers at nice %d%s, postcopy page servers in %s",
		 m->worker_nice < 0 && !nice_cap ? 0 : m->worker_nice,
		 m->worker_nice < 0 && !nice_cap ? " (no CAP_SYS_NICE)" : "",
		 !m->realtime ? "the ordinary class (--no-realtime)" :
		 !nice_cap ? "the ordinary class (no CAP_SYS_NICE)" : "SCHED_FIFO");
	return buf;
}

static void handle_chld(evutil_socket_t sig, short what, void *arg)
{
	jobs_reap(arg);
}

int main(int argc, char **argv)
{
	struct options o = { 0 };
	struct migd m = { 0 };
	struct event *ev_term = NULL, *ev_int = NULL, *ev_chld = NULL;
	char note[160];
	int lock_fd, ret = 1;

	params_defaults(&m.defaults);
	parse_args(argc, argv, &o);
	log_init("migd", NULL, o.debug ? LOG_LEVEL_DEBUG : LOG_LEVEL_INFO);
	signal(SIGPIPE, SIG_IGN);
	/* A hang-up of the terminal it was started from, or a "reload"
	 * habit (pkill -HUP, systemctl kill -s HUP), must not end it:
	 * there is nothing to reload. */
	signal(SIGHUP, SIG_IGN);
	m.realtime = !o.no_realtime;
	m.worker_nice = o.worker_nice;
	if ((ret = str_copy(m.rundir, o.rundir, sizeof(m.rundir))) < 0 ||
	    (ret = mkdir_p(o.rundir, RUNDIR_MODE)) < 0) {
		log_warnx("cannot create the run directory %s: %s%s", o.rundir,
			  strerror(-ret), rundir_hint(ret));
		return 1;
	}
	lock_fd = take_lock(o.rundir);
	if (lock_fd < 0)
		return 1;
	ret = 1;
	m.base = event_base_new();
	if (!m.base)
		fatalx("event loop set-up");
	ev_term = evsignal_new(m.base, SIGTERM, handle_term, &m);
	ev_int = evsignal_new(m.base, SIGINT, handle_term, &m);
	ev_chld = evsignal_new(m.base, SIGCHLD, handle_chld, &m);
	m.ev_shutdown = evtimer_new(m.base, handle_shutdown_timeout, &m);
	if (!ev_term || !ev_int || !ev_chld || !m.ev_shutdown ||
	    event_add(ev_term, NULL) || event_add(ev_int, NULL) ||
	    event_add(ev_chld, NULL))
		fatalx("event set-up");
	if (bgwork_init(&m.tidying, m.base) < 0)
		fatalx("cannot watch the clean-up threads");
	m.started_ns = now_ns();
	migd_state_load(&m);
	if (control_start(&m) < 0)
		goto out;
	log_info("serving %s/migd.sock (%s)", o.rundir,
		 sched_note(&m, note, sizeof(note)));
	if ((ret = notify_ready()) < 0)
		log_warnc(ret, "cannot tell systemd that migd is ready (NOTIFY_SOCKET)");
	event_base_dispatch(m.base);
	ret = 0;
out:
	control_stop(&m);
	/* A clean-up still at its vmm (its calls end within
	 * VMM_CLEANUP_TIMEOUT_MS) uses its job: wait for it, or leave the jobs. */
	if (bgwork_stop(&m.tidying, VMM_CLEANUP_TIMEOUT_MS + 1000, NULL) == 0)
		jobs_free_all(&m);
	else
		log_warnx("a clean-up at a vmm did not end; exiting anyway");
	tombstones_free_all(&m);
	event_free(ev_term);
	event_free(ev_int);
	event_free(ev_chld);
	event_free(m.ev_shutdown);
	if (m.ev_orphans)
		event_free(m.ev_orphans);
	event_base_free(m.base);
	/* The lock file stays (see vmm/main.c for why). */
	close(lock_fd);
	return ret;
}
