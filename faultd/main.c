// SPDX-License-Identifier: GPL-2.0-only
/*
 * faultd: parse the command line, take RUNDIR/faultd.lock, open
 * /dev/userfaultfd (and check that it makes a userfaultfd), drop every
 * capability (and set NoNewPrivs), open the control socket
 * RUNDIR/faultd.sock, then serve (control.c) from one event
 * loop until SIGTERM or SIGINT.  Quitting stops every session; faults on
 * pages still missing then wait in the vmms, which keep their uffds.
 * faultd stays in the foreground, and tells systemd (Type=notify) it is
 * ready once the socket listens.
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <getopt.h>
#include <linux/userfaultfd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common/caps.h"
#include "common/cli.h"
#include "common/log.h"
#include "common/notify.h"
#include "common/pidlock.h"
#include "common/rtspawn.h"
#include "common/util.h"
#include "faultd/faultd.h"

#define FAULTD_DEVICE "/dev/userfaultfd"

struct options {
	const char *rundir;
	enum log_level level;
	bool realtime;
};

static void usage(FILE *f)
{
	fprintf(f,
"usage: faultd [--rundir DIR] [--log-level warn|info|debug] [--debug]\n"
"              [--no-realtime] [--foreground]\n"
"       faultd --help | --version\n"
"serves RUNDIR/faultd.sock (default %s); see faultd(8)\n",
		FAULTD_DEFAULT_RUNDIR);
}

static void die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die_usage(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "faultd: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	exit(2);
}

static void parse_args(int argc, char **argv, struct options *o)
{
	enum { O_VERSION = 256, O_LEVEL, O_NO_RT };
	static const struct option longopts[] = {
		{ "rundir", required_argument, NULL, 'r' },
		{ "log-level", required_argument, NULL, O_LEVEL },
		{ "debug", no_argument, NULL, 'd' },
		{ "no-realtime", no_argument, NULL, O_NO_RT },
		{ "foreground", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, O_VERSION },
		{ NULL, 0, NULL, 0 },
	};
	struct cli_seen seen = { { 0 } };
	bool debug = false, level = false;
	const char *rep, *why;
	int c;

	o->rundir = FAULTD_DEFAULT_RUNDIR;
	o->level = LOG_LEVEL_INFO;
	o->realtime = true;
	cli_init("faultd", "faultd(8)");     /* (cli_daemon_getopt's words) */
	while ((c = cli_daemon_getopt(argc, argv, "r:dfh", longopts)) != -1) {
		if ((rep = cli_option_repeated(&seen, c, longopts)))
			die_usage(CLI_REPEATED, rep);
		/* The same option twice, in other words: the last would win. */
		debug |= c == 'd';
		level |= c == O_LEVEL;
		if (debug && level)
			die_usage("--debug and --log-level given together: --debug "
				  "is --log-level debug (give one)");
		switch (c) {
		case 'r': o->rundir = optarg; break;
		case 'd': o->level = LOG_LEVEL_DEBUG; break;
		case 'f': break;        /* always: faultd never daemonizes */
		case 'h': usage(stdout); exit(0);
		case O_NO_RT: o->realtime = false; break;
		case O_VERSION: printf("faultd (tern) %s\n", TERN_VERSION); exit(0);
		case O_LEVEL:
			if (strcmp(optarg, "warn") == 0)
				o->level = LOG_LEVEL_WARN;
			else if (strcmp(optarg, "info") == 0)
				o->level = LOG_LEVEL_INFO;
			else if (strcmp(optarg, "debug") == 0)
				o->level = LOG_LEVEL_DEBUG;
			else
				die_usage("--log-level %s: warn, info or debug", optarg);
			break;
		default: usage(stderr); exit(2);
		}
	}
	if (optind < argc)
		die_usage("unexpected argument '%s'", argv[optind]);
	if ((why = cli_rundir_error(o->rundir)))
		die_usage("%s", why);
	/* Room for "/faultd.sock" in a sun_path, as migd. */
	if (strlen(o->rundir) > RUNDIR_MAX)
		die_usage("--rundir %s: at most %d characters", o->rundir,
			  RUNDIR_MAX);
}

/* RUNDIR/faultd.lock, held for faultd's life: one faultd per run directory. */
static int take_lock(const char *rundir)
{
	char busy[PATH_MAX + 64];

	snprintf(busy, sizeof(busy), "a faultd is already running on %s", rundir);
	return pidlock_take_in(rundir, "faultd", busy);
}

/*
 * The privileged step: the one thing faultd has that the vmms do not.
 * A node that opens is not enough (a bind mount of /dev/null over it
 * opens, and every postcopy would fail at its switch): it must make a
 * userfaultfd that handles missing pages of shared memory, as each vmm
 * does with it (vmm/uffd.c).  Tried once here, on faultd's own memory,
 * so that a host that cannot serve postcopy says so at start.  There is
 * no fallback: the userfaultfd(2) system call makes a uffd for its
 * caller's memory only, and a vmm, unprivileged, may not catch KVM's
 * kernel-mode faults with one of its own (vm.unprivileged_userfaultfd).
 * The descriptor, or -errno, said in the log.
 */
static int device_open(void)
{
	struct uffdio_api api = { .api = UFFD_API,
				  .features = UFFD_FEATURE_MISSING_SHMEM };
	struct stat st;
	int fd, uffd, ret;

	fd = open(FAULTD_DEVICE, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		log_warnc(ret, "cannot open %s, which postcopy needs (%s)",
			  FAULTD_DEVICE, ret == -ENOENT ?
			  "Linux 6.1 or later has it, as a node of /dev" :
			  ret == -EACCES || ret == -EPERM ? "run faultd as root, "
			  "and let its unit open the device (DeviceAllow=)" :
			  "see faultd(8)");
		return ret;
	}
	if (fstat(fd, &st) < 0 || !S_ISCHR(st.st_mode)) {
		ret = -ENODEV;
		log_warnx("%s is not a character device: not the userfaultfd "
			  "device, which postcopy needs", FAULTD_DEVICE);
		goto fail;
	}
	uffd = ioctl(fd, USERFAULTFD_IOC_NEW, O_CLOEXEC);
	if (uffd < 0) {
		ret = -errno;
		log_warnc(ret, "%s (character device %u:%u) is not the userfaultfd "
			  "device, which postcopy needs: USERFAULTFD_IOC_NEW",
			  FAULTD_DEVICE, major(st.st_rdev), minor(st.st_rdev));
		goto fail;
	}
	ret = ioctl(uffd, UFFDIO_API, &api) < 0 ? -errno : 0;
	close(uffd);
	if (ret < 0) {
		log_warnc(ret, "%s: this kernel's userfaultfd cannot handle missing "
			  "pages of shared memory, which postcopy needs: UFFDIO_API",
			  FAULTD_DEVICE);
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return ret;
}

static void handle_term(evutil_socket_t sig, short what, void *arg)
{
	log_info("signal %d: stopping every session and quitting", (int)sig);
	event_base_loopexit(arg, NULL);
}

static void handle_nudge(int sig)
{
	(void)sig;
}

int main(int argc, char **argv)
{
	struct sigaction nudge = { .sa_handler = handle_nudge };
	struct options o = { 0 };
	struct faultd d = { .devfd = -1 };
	struct event *ev_term = NULL, *ev_int = NULL;
	int lock_fd, rt, ret = 1, nice_now = FAULTD_NICE;

	parse_args(argc, argv, &o);
	log_init("faultd", NULL, o.level);
	signal(SIGPIPE, SIG_IGN);
	/* A hang-up of the terminal it was started from, or a "reload"
	 * habit (pkill -HUP, systemctl kill -s HUP), must not end it:
	 * there is nothing to reload. */
	signal(SIGHUP, SIG_IGN);
	/* No SA_RESTART: a read() it interrupts returns EINTR (session_stop). */
	sigemptyset(&nudge.sa_mask);
	sigaction(FAULTD_NUDGE, &nudge, NULL);
	if ((ret = str_copy(d.rundir, o.rundir, sizeof(d.rundir))) < 0 ||
	    (ret = mkdir_p(o.rundir, RUNDIR_MODE)) < 0) {
		log_warnx("cannot create the run directory %s: %s%s", o.rundir,
			  strerror(-ret), rundir_hint(ret));
		return 1;
	}
	lock_fd = take_lock(o.rundir);
	if (lock_fd < 0)
		return 1;
	ret = 1;
	d.devfd = device_open();
	if (d.devfd < 0)
		goto out;
	d.base = event_base_new();
	if (!d.base)
		fatalx("event loop set-up");
	ev_term = evsignal_new(d.base, SIGTERM, handle_term, d.base);
	ev_int = evsignal_new(d.base, SIGINT, handle_term, d.base);
	if (!ev_term || !ev_int || event_add(ev_term, NULL) || event_add(ev_int, NULL))
		fatalx("event set-up");
	/*
	 * A vCPU waits while its fault goes round faultd's threads: run
	 * them ahead of bulk work, in the real-time class where root's
	 * CAP_SYS_NICE allows it (rtspawn.c), else at a raised priority.
	 */
	if (setpriority(PRIO_PROCESS, 0, FAULTD_NICE) < 0) {
		log_warn("cannot raise faultd's priority (nice %d)", FAULTD_NICE);
		nice_now = getpriority(PRIO_PROCESS, 0);
	}
	rt = o.realtime ? rtspawn_init(RTSPAWN_PRIORITY) : -ECANCELED;
	if (rt < 0 && rt != -ECANCELED)
		log_warnc(rt, "fault threads stay in the ordinary class at nice %d "
			  "(SCHED_FIFO needs CAP_SYS_NICE at start)", nice_now);
	/*
	 * No capability is kept: the open /dev/userfaultfd is all faultd
	 * needs (USERFAULTFD_IOC_NEW, in the vmm, and the uffd ioctls check
	 * none); the vmms' sockets admit our uid by SO_PEERCRED.
	 */
	ret = caps_drop(NULL, 0, (uid_t)-1, (gid_t)-1);
	if (ret < 0) {
		log_warnc(ret, "dropping capabilities");
		ret = 1;
		goto out;
	}
	ret = 1;
	/*
	 * The socket appears only now, so whoever finds it finds faultd
	 * unprivileged (root's uid still owns RUNDIR).
	 */
	if (control_start(&d) < 0)
		goto out;
	log_info("serving %s (no capabilities; fault threads in %s)", d.sock_path,
		 rt == 0 ? "SCHED_FIFO" : "the ordinary class");
	if ((ret = notify_ready()) < 0)
		log_warnc(ret, "cannot tell systemd that faultd is ready (NOTIFY_SOCKET)");
	event_base_dispatch(d.base);
	ret = 0;
out:
	control_stop(&d);
	if (ev_term)
		event_free(ev_term);
	if (ev_int)
		event_free(ev_int);
	if (d.base)
		event_base_free(d.base);
	if (d.devfd >= 0)
		close(d.devfd);
	close(lock_fd);
	return ret;
}
