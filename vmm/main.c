// SPDX-License-Identifier: GPL-2.0-only
/*
 * vmm: parse the command line, create the VM, boot or wait for an
 * incoming guest, serve the control socket until told to quit.
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/cli.h"
#include "common/fault.h"
#include "common/log.h"
#include "common/notify.h"
#include "common/pidlock.h"
#include "common/testguest.h"
#include "common/util.h"
#include "vmm/vmm.h"

struct options {
	const char *name;
	const char *rundir;
	const char *serial;
	uint64_t serial_max;
	const char *memory;
	const char *vcpus;
	const char *test_mode;
	bool incoming;
	bool debug;
};

static void usage(FILE *f)
{
	fprintf(f,
"usage: vmm --name NAME --memory SIZE [--prealloc] [--hugepages] [--vcpus N]\n"
"           [--rundir DIR] [--serial FILE|stdio|none] [--serial-max SIZE] [--debug]\n"
"           (--test-guest dirty|fill|full|idle [--guest-rate PAGES] [--guest-passes N]\n"
"                 [--guest-fast-first-pass] [--guest-range SIZE] [--heartbeat MS]\n"
"            | --image FILE [--image-addr ADDR] | --incoming)\n"
"       vmm --help | --version\n"
"see vmm(8)\n");
}

static void die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die_usage(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cli_verrx(fmt, ap);
	va_end(ap);
	exit(2);
}

static uint64_t opt_u64(const char *flag, const char *s, uint64_t min, uint64_t max)
{
	uint64_t v;

	if (parse_u64(s, min, max, &v) < 0)
		die_usage("%s %s: expected a number from %llu to %llu", flag, s,
			  (unsigned long long)min, (unsigned long long)max);
	return v;
}

static uint64_t opt_size(const char *flag, const char *s)
{
	uint64_t v;

	if (parse_size(s, &v) < 0)
		die_usage("%s %s: expected a size such as 512M or 4G", flag, s);
	return v;
}

static void parse_args(int argc, char **argv, struct options *o, struct vm *vm)
{
	enum { O_RATE = 256, O_PASSES, O_FAST_FIRST, O_RANGE, O_HEARTBEAT, O_IMAGE_ADDR,
	       O_INCOMING, O_TEST, O_IMAGE, O_VERSION, O_PREALLOC, O_SERIAL_MAX,
	       O_HUGEPAGES };
	static const struct option longopts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "memory", required_argument, NULL, 'm' },
		{ "vcpus", required_argument, NULL, 'c' },
		{ "rundir", required_argument, NULL, 'r' },
		{ "serial", required_argument, NULL, 's' },
		{ "serial-max", required_argument, NULL, O_SERIAL_MAX },
		{ "debug", no_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, O_VERSION },
		{ "test-guest", required_argument, NULL, O_TEST },
		{ "guest-rate", required_argument, NULL, O_RATE },
		{ "guest-passes", required_argument, NULL, O_PASSES },
		{ "guest-fast-first-pass", no_argument, NULL, O_FAST_FIRST },
		{ "guest-range", required_argument, NULL, O_RANGE },
		{ "heartbeat", required_argument, NULL, O_HEARTBEAT },
		{ "image", required_argument, NULL, O_IMAGE },
		{ "image-addr", required_argument, NULL, O_IMAGE_ADDR },
		{ "incoming", no_argument, NULL, O_INCOMING },
		{ "prealloc", no_argument, NULL, O_PREALLOC },
		{ "hugepages", no_argument, NULL, O_HUGEPAGES },
		{ NULL, 0, NULL, 0 },
	};
	struct sockaddr_un sun;
	struct cli_seen seen = { { 0 } };
	const char *why;
	const char *rep, *tg_opt = NULL;        /* a test-guest option given */
	bool image_addr_given = false;
	int c, n, kinds = 0;

	vm->guest.heartbeat_ms = 1000;
	vm->guest.image_addr = 0x7c00;
	cli_init("vmm", "vmm(8)");     /* (cli_daemon_getopt's words) */
	while ((c = cli_daemon_getopt(argc, argv, "n:m:c:r:s:dh", longopts)) != -1) {
		if ((rep = cli_option_repeated(&seen, c, longopts)))
			die_usage(CLI_REPEATED, rep);
		switch (c) {
		case 'n': o->name = optarg; break;
		case 'm': o->memory = optarg; break;
		case 'c': o->vcpus = optarg; break;
		case 'r': o->rundir = optarg; break;
		case 's': o->serial = optarg; break;
		case 'd': o->debug = true; break;
		case 'h': usage(stdout); exit(0);
		case O_VERSION: printf("vmm (tern) %s\n", TERN_VERSION); exit(0);
		case O_TEST: o->test_mode = optarg; kinds++; break;
		case O_IMAGE: vm->guest.image = optarg; kinds++; break;
		case O_INCOMING: o->incoming = true; kinds++; break;
		case O_PREALLOC: vm->prealloc = true; break;
		case O_HUGEPAGES: vm->hugepages = true; break;
		case O_SERIAL_MAX:
			o->serial_max = opt_size("--serial-max", optarg);
			if (o->serial_max && o->serial_max < 4096)
				die_usage("--serial-max %s: 0 (no bound) or at "
					  "least 4K", optarg);
			break;
		case O_RATE:
			vm->guest.rate = opt_u64("--guest-rate", optarg, 0, 1ULL << 40);
			tg_opt = "--guest-rate";
			break;
		case O_PASSES:
			vm->guest.passes = opt_u64("--guest-passes", optarg, 0, 1ULL << 40);
			tg_opt = "--guest-passes";
			break;
		case O_FAST_FIRST:
			vm->guest.fast_first = true;
			tg_opt = "--guest-fast-first-pass";
			break;
		case O_RANGE:
			vm->guest.range = opt_size("--guest-range", optarg);
			tg_opt = "--guest-range";
			break;
		case O_HEARTBEAT:
			vm->guest.heartbeat_ms = opt_u64("--heartbeat", optarg, 0, 3600000);
			tg_opt = "--heartbeat";
			break;
		case O_IMAGE_ADDR:
			image_addr_given = true;
			vm->guest.image_addr = opt_u64("--image-addr", optarg, 0,
						       (1ULL << 20) - 1);
			break;
		default: usage(stderr); exit(2);
		}
	}
	if (optind < argc)
		die_usage("unexpected argument '%s'", argv[optind]);
	if (!o->name)
		die_usage("--name is required");
	if (name_valid(o->name) < 0)
		die_usage("--name %s: use " NAME_RULE, o->name);
	if (!o->memory)
		die_usage("--memory is required");
	vm->memory = opt_size("--memory", o->memory);
	if (vm->memory < TG_MIN_MEMORY || vm->memory > VMM_MAX_MEMORY ||
	    vm->memory % (2u << 20))
		die_usage("--memory %s: must be a multiple of 2 MiB from 4 MiB to 1 TiB",
			  o->memory);
	if (kinds != 1)
		die_usage("choose exactly one of --test-guest MODE, --image FILE, --incoming");
	/* Not taken silently where nothing reads them: an incoming guest
	 * comes with its own (its state says them). */
	if (tg_opt && !o->test_mode)
		die_usage("%s is an option of --test-guest, not of %s", tg_opt,
			  o->incoming ? "--incoming (the guest that comes "
			  "brings its own)" : "--image");
	if (image_addr_given && !vm->guest.image)
		die_usage("--image-addr is an option of --image, not of %s",
			  o->incoming ? "--incoming" : "--test-guest");
	/* xAPIC ids are 8 bits and we do not enable x2APIC. */
	vm->nvcpus = o->vcpus ? (int)opt_u64("--vcpus", o->vcpus, 1, VMM_MAX_VCPUS) : 1;
	if (o->test_mode) {
		vm->guest.kind = GUEST_KIND_TEST;
		vm->guest.mode = boot_test_guest_parse_mode(o->test_mode);
		if (vm->guest.mode < 0)
			die_usage("--test-guest %s: unknown mode (dirty, fill, full, idle)",
				  o->test_mode);
		if (vm->nvcpus > TG_MAX_VCPUS)
			die_usage("--vcpus %d: the test guest supports at most %d",
				  vm->nvcpus, TG_MAX_VCPUS);
		if (vm->guest.range > vm->memory - TG_RANGE_GPA)
			die_usage("--guest-range %llu: the test range of %llu "
				  "bytes of RAM is %llu bytes",
				  (unsigned long long)vm->guest.range,
				  (unsigned long long)vm->memory,
				  (unsigned long long)(vm->memory - TG_RANGE_GPA));
		/* Each vCPU writes its own slice: none may be empty. */
		if (vm->guest.range && vm->guest.range / TG_PAGE < (uint64_t)vm->nvcpus)
			die_usage("--guest-range %llu: at least one page (%u bytes) "
				  "for each of the %d vCPU%s",
				  (unsigned long long)vm->guest.range, TG_PAGE,
				  vm->nvcpus, vm->nvcpus > 1 ? "s" : "");
	} else if (vm->guest.image) {
		vm->guest.kind = GUEST_KIND_IMAGE;
	}
	if (!o->rundir)
		o->rundir = VMM_DEFAULT_RUNDIR;
	if ((why = cli_rundir_error(o->rundir)))
		die_usage("%s", why);
	/* Checked before anything is created in it: the control socket,
	 * DIR/vmm/NAME.sock, must fit a sun_path, as migd's and faultd's. */
	if (strlen(o->rundir) > RUNDIR_MAX)
		die_usage("--rundir %s: at most %d characters", o->rundir,
			  RUNDIR_MAX);
	n = snprintf(NULL, 0, "%s/vmm/%s.sock", o->rundir, o->name);
	if (n < 0 || (size_t)n >= sizeof(sun.sun_path))
		die_usage("--name %s: its control socket %s/vmm/%s.sock would "
			  "be %d characters, a unix socket address holds at most "
			  "%zu (shorten --rundir or --name)", o->name, o->rundir,
			  o->name, n, sizeof(sun.sun_path) - 1);
	vm->name = o->name;
}

/* RUNDIR/vmm/NAME.lock, held for the vmm's life: a second vmm of the same
 * name is refused before it touches anything of the first. */
static int take_name_lock(const char *rundir, const char *name)
{
	char dir[PATH_MAX], busy[128];
	int ret;

	/* The run directory as migd, faultd and systemd make it, searchable
	 * by the vmms of other users; only our own directory is closed. */
	snprintf(dir, sizeof(dir), "%s/vmm", rundir);
	ret = mkdir_p(rundir, RUNDIR_MODE);
	if (ret < 0) {
		log_warnx("cannot create the run directory %s: %s%s", rundir,
			  strerror(-ret), rundir_hint(ret));
		return ret;
	}
	ret = mkdir_p(dir, 0750);
	if (ret < 0) {
		log_warnx("cannot create %s in the run directory: %s%s", dir,
			  strerror(-ret), rundir_hint(ret));
		return ret;
	}
	snprintf(busy, sizeof(busy), "a vmm named %s is already running", name);
	return pidlock_take_in(dir, name, busy);
}

static void handle_signal(evutil_socket_t sig, short what, void *arg)
{
	if (control_may_quit((int)sig))
		event_base_loopexit(arg, NULL);
}

static void handle_vcpu_notify(evutil_socket_t fd, short what, void *arg)
{
	struct vm *vm = arg;
	uint64_t n;
	char msg[256];
	enum vm_state st;

	if (read(fd, &n, sizeof(n)) < 0)
		return;
	pthread_mutex_lock(&vm->lock);
	st = vm->state;
	str_copy(msg, vm->state_msg, sizeof(msg));
	pthread_mutex_unlock(&vm->lock);
	log_warnx("guest stopped: %s (%s)", msg, vm_state_name(st));
}

static int vm_setup(struct vm *vm, bool incoming)
{
	int ret, max;

	ret = kvm_vm_create(vm);
	if (ret < 0)
		return ret;
	max = kvm_max_vcpus(vm->kvm_fd);
	if (vm->nvcpus > max) {
		log_warnx("--vcpus %d: this host's KVM supports at most %d",
			  vm->nvcpus, max);
		return -EINVAL;
	}
	ret = mem_create(vm);
	if (ret < 0) {
		log_warnc(ret, "guest RAM (%llu bytes)", (unsigned long long)vm->memory);
		return ret;
	}
	if (vm->prealloc) {
		ret = mem_populate(vm);
		if (ret < 0)
			return ret;
	}
	ret = mem_register(vm, false);
	if (ret < 0) {
		log_warnc(ret, "KVM_SET_USER_MEMORY_REGION");
		return ret;
	}
	ret = vcpu_create_all(vm);
	if (ret < 0) {
		log_warnc(ret, "creating %d vCPUs", vm->nvcpus);
		return ret;
	}
	if (incoming)
		return 0;
	/* The boot functions say what went wrong themselves. */
	return vm->guest.kind == GUEST_KIND_TEST ? boot_test_guest(vm) : boot_image(vm);
}

int main(int argc, char **argv)
{
	struct options o = { .serial_max = SERIAL_MAX_DEFAULT };
	struct vm vm = { .kvm_fd = -1, .vm_fd = -1, .dirty_memfd = -1,
			 .notify_fd = -1, .uffd = -1 };
	struct event *ev_term = NULL, *ev_int = NULL, *ev_notify = NULL;
	struct event_base *base = NULL;
	int lock_fd = -1, ret = 1;

	parse_args(argc, argv, &o, &vm);
	log_init("vmm", o.name, o.debug ? LOG_LEVEL_DEBUG : LOG_LEVEL_INFO);
	signal(SIGPIPE, SIG_IGN);
	/* A hang-up of the terminal it was started from, or a "reload"
	 * habit (pkill -HUP, systemctl kill -s HUP), must not end it (and its guest):
	 * there is nothing to reload. */
	signal(SIGHUP, SIG_IGN);
	pthread_mutex_init(&vm.lock, NULL);
	vm_cond_init(&vm.cond);
	vm.state = VM_STATE_INCOMING;

	lock_fd = take_name_lock(o.rundir, o.name);
	if (lock_fd < 0)
		return 1;
	if (serial_init(&vm.serial, o.serial, o.serial_max) < 0)
		goto out;
	vm.notify_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	base = event_base_new();
	if (vm.notify_fd < 0 || !base)
		fatal("event loop set-up");
	if (vm_setup(&vm, o.incoming) < 0)
		goto out;
	ev_term = evsignal_new(base, SIGTERM, handle_signal, base);
	ev_int = evsignal_new(base, SIGINT, handle_signal, base);
	ev_notify = event_new(base, vm.notify_fd, EV_READ | EV_PERSIST,
			      handle_vcpu_notify, &vm);
	if (!ev_term || !ev_int || !ev_notify || event_add(ev_term, NULL) ||
	    event_add(ev_int, NULL) || event_add(ev_notify, NULL))
		fatalx("event set-up");
	if (vcpu_start_all(&vm) < 0)
		fatalx("cannot start vCPU threads");
	if (!o.incoming)
		vm_resume(&vm);
	if (memio_start(base) < 0)
		fatalx("event set-up");
	if (control_start(&vm, base, o.rundir) < 0)
		goto out;
	log_info("%s: %llu MiB, %d vCPU%s, %s", vm_state_name(vm_state_now(&vm)),
		 (unsigned long long)(vm.memory >> 20), vm.nvcpus,
		 vm.nvcpus > 1 ? "s" : "",
		 o.incoming ? "waiting for an incoming guest" :
		 o.test_mode ? o.test_mode : vm.guest.image);
	if ((ret = notify_ready()) < 0)
		log_warnc(ret, "cannot tell systemd that the vmm is ready (NOTIFY_SOCKET)");
	event_base_dispatch(base);
	ret = 0;
out:
	control_stop();
	/* The vCPUs are told to quit before the uffd goes: its release
	 * ends their waits for missing pages, and a vCPU let go first ran
	 * the guest on holes (a FAIL on the console of a vmm quitting in
	 * postcopy).  Then the release, so that a vCPU or ReadMem waiting
	 * on a missing page comes out; then the join. */
	vcpu_quit_all(&vm);
	uffd_release(&vm);
	/* TERN_FAULT: a main thread slow between the release and the join
	 * (scheduled out, under load), which let such a vCPU run on. */
	if (fault_active("vmm-slow-quit"))
		usleep(300000);
	vcpu_destroy_all(&vm);
	if (vm.dirty_on)
		dirty_stop(&vm);
	if (memio_stop() == 0)  /* else a thread may still touch it */
		mem_destroy(&vm);
	kvm_vm_destroy(&vm);
	serial_destroy(&vm.serial);
	if (ev_term)
		event_free(ev_term);
	if (ev_int)
		event_free(ev_int);
	if (ev_notify)
		event_free(ev_notify);
	if (base)
		event_base_free(base);
	if (vm.notify_fd >= 0)
		close(vm.notify_fd);
	/* The lock file stays: unlinking it would let a vmm that opened the
	 * old file and one that creates a new one both hold "the" lock. */
	close(lock_fd);
	/* After everything: vmmctl quit returns when its connection ends,
	 * and a vmm of this name may start the moment it does. */
	control_release_quitters();
	return ret;
}
