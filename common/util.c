// SPDX-License-Identifier: GPL-2.0-only
/*
 * Small helpers shared by every program: checked number and size parsing
 * for command lines and config, size formatting for status output, safe
 * string copies, VM name checks, the monotonic clock, mkdir -p, and what
 * a descriptor holds (data extents, seals).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <limits.h>
#include <linux/magic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"

static int digit_value(char c, unsigned int base)
{
	int v;

	if (c >= '0' && c <= '9')
		v = c - '0';
	else if (c >= 'a' && c <= 'f')
		v = c - 'a' + 10;
	else if (c >= 'A' && c <= 'F')
		v = c - 'A' + 10;
	else
		return -1;
	return v < (int)base ? v : -1;
}

/* Digits of base at s into *ret; *end after the last.  No sign, no space. */
static int parse_digits(const char *s, unsigned int base, uint64_t *ret,
			const char **end)
{
	uint64_t v = 0;
	const char *p = s;
	int d;

	for (; (d = digit_value(*p, base)) >= 0; p++) {
		if (v > (UINT64_MAX - (uint64_t)d) / base)
			return -ERANGE;
		v = v * base + (uint64_t)d;
	}
	if (p == s)
		return -EINVAL;
	*ret = v;
	*end = p;
	return 0;
}

int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *ret)
{
	unsigned int base = 10;
	const char *end;
	uint64_t v;
	int r;

	if (!s)
		return -EINVAL;
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
	}
	r = parse_digits(s, base, &v, &end);
	if (r < 0)
		return r;
	if (*end)
		return -EINVAL;
	if (v < min || v > max)
		return -ERANGE;
	*ret = v;
	return 0;
}

static int size_shift(char unit)
{
	switch (unit) {
	case 'K': case 'k': return 10;
	case 'M': case 'm': return 20;
	case 'G': case 'g': return 30;
	case 'T': case 't': return 40;
	default: return -1;
	}
}

/* Up to 9 decimals after the point, as fmt_size prints one. */
#define RATE_MAX_DECIMALS 9

int parse_rate(const char *s, uint64_t *ret)
{
	uint64_t whole, frac = 0, scale = 1;
	unsigned __int128 v;
	const char *p;
	int shift = 0;
	int r;

	if (!s)
		return -EINVAL;
	r = parse_digits(s, 10, &whole, &p);
	if (r < 0)
		return r;
	if (*p == '.') {
		const char *q = ++p;

		for (; *p >= '0' && *p <= '9'; p++) {
			if (p - q == RATE_MAX_DECIMALS)
				return -EINVAL;
			frac = frac * 10 + (uint64_t)(*p - '0');
			scale *= 10;
		}
		if (p == q)
			return -EINVAL;
	}
	if (*p == ' ' && (size_shift(p[1]) >= 0 || p[1] == 'B'))
		p++;	/* a space only before a unit: "1.0 GiB/s" */
	if (*p && size_shift(*p) >= 0) {
		shift = size_shift(*p++);
		if (!strncmp(p, "iB", 2))
			p++;
	}
	if (*p == 'B')
		p++;
	if (!strcmp(p, "/s"))
		p += 2;
	if (*p || (scale > 1 && !shift))	/* "1.5" bytes is no rate */
		return -EINVAL;
	v = ((unsigned __int128)whole << shift) +
	    (((unsigned __int128)frac << shift) + scale / 2) / scale;
	if (v > UINT64_MAX)
		return -ERANGE;
	*ret = (uint64_t)v;
	return 0;
}

/* A rate's forms without its fraction, space or "/s": "64M", "4GiB". */
int parse_size(const char *s, uint64_t *ret)
{
	if (!s || strpbrk(s, ". /"))
		return -EINVAL;
	return parse_rate(s, ret);
}

const char *fmt_size(uint64_t bytes, char *buf, size_t len)
{
	static const char *const units[] = { "KiB", "MiB", "GiB", "TiB",
					     "PiB", "EiB" };
	double v = (double)bytes;
	size_t i = 0;

	if (!buf || len == 0)
		return buf;
	if (bytes < 1024) {
		snprintf(buf, len, "%u B", (unsigned int)bytes);
		return buf;
	}
	v /= 1024;
	while (v >= 1024 && i + 1 < ARRAY_SIZE(units)) {
		v /= 1024;
		i++;
	}
	snprintf(buf, len, "%.1f %s", v, units[i]);
	return buf;
}

const char *fmt_rate(uint64_t bytes_per_s, char *buf, size_t len)
{
	char s[32];

	snprintf(buf, len, "%s/s", fmt_size(bytes_per_s, s, sizeof(s)));
	return buf;
}

const char *fmt_size_arg(uint64_t bytes, char *buf, size_t len)
{
	static const char units[] = "KMGT";    /* what parse_size takes */
	unsigned int i = 0;

	if (!buf || len == 0)
		return buf;
	if (bytes == 0 || bytes % 1024) {
		snprintf(buf, len, "%llu", (unsigned long long)bytes);
		return buf;
	}
	bytes /= 1024;
	while (bytes % 1024 == 0 && i + 1 < sizeof(units) - 1) {
		bytes /= 1024;
		i++;
	}
	snprintf(buf, len, "%llu%c", (unsigned long long)bytes, units[i]);
	return buf;
}

int utf8_seq_len(const unsigned char *p)
{
	unsigned char c = p[0], lo = 0x80, hi = 0xbf;
	int n, i;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else
		return 0;
	if (c == 0xe0)
		lo = 0xa0;              /* overlong below U+0800 */
	else if (c == 0xed)
		hi = 0x9f;              /* surrogates U+D800-DFFF */
	else if (c == 0xf0)
		lo = 0x90;              /* overlong below U+10000 */
	else if (c == 0xf4)
		hi = 0x8f;              /* past U+10FFFF */
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (i = 2; i < n; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	return n;
}

bool str_is_text(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	int n;

	for (; *p; p += n) {
		n = utf8_seq_len(p);
		if (!n || *p < 0x20 || *p == 0x7f ||
		    (p[0] == 0xc2 && p[1] < 0xa0))      /* C1: U+0080-009F */
			return false;
	}
	return true;
}

const char *str_shown(const char *s, char *buf, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t o = 0;
	int n;

	if (!len)
		return buf;
	for (; *p; p += n) {
		n = utf8_seq_len(p);
		if (n == 2 && p[0] == 0xc2 && p[1] < 0xa0) {
			/* C1 (a terminal's CSI among them): both bytes shown */
			if (o + 8 >= len)
				break;
			snprintf(buf + o, len - o, "\\x%02x\\x%02x", p[0], p[1]);
			o += 8;
			continue;
		}
		if (!n || *p < 0x20 || *p == 0x7f) {
			if (o + 4 >= len)
				break;
			snprintf(buf + o, len - o, "\\x%02x", *p);
			o += 4;
			n = 1;
		} else {
			if (o + (size_t)n >= len)
				break;
			memcpy(buf + o, p, (size_t)n);
			o += (size_t)n;
		}
	}
	buf[o] = '\0';
	return buf;
}

int str_cut(const char *s, int max)
{
	const unsigned char *p = (const unsigned char *)s;
	int n = 0, k;

	while (n < max && p[n]) {
		k = utf8_seq_len(p + n);
		if (!k)
			k = 1;
		if (n + k > max)
			break;
		n += k;
	}
	return n;
}

char *str_shown_dup(const char *s)
{
	size_t len;
	char *d;

	if (str_is_text(s))
		return strdup(s);
	len = 4 * strlen(s) + 1;        /* a byte is at most \xNN */
	d = malloc(len);
	if (d)
		str_shown(s, d, len);
	return d;
}

void proc_comm(int pid, char comm[PROC_COMM_LEN])
{
	char path[32] = "/proc/", digits[12];
	size_t i = sizeof("/proc/") - 1, k = 0;
	unsigned int v = pid < 0 ? 0 : (unsigned int)pid;
	ssize_t n = -1;
	int fd = -1, saved = errno;

	/* No snprintf: this runs in signal handlers. */
	do
		digits[k++] = (char)('0' + v % 10);
	while ((v /= 10) > 0);
	while (k)
		path[i++] = digits[--k];
	memcpy(path + i, "/comm", sizeof("/comm"));
	if (pid > 0)
		fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		n = read(fd, comm, PROC_COMM_LEN - 1);
		close(fd);
	}
	if (n > 0 && comm[n - 1] == '\n')
		n--;
	comm[n > 0 ? n : 0] = '\0';
	errno = saved;
}

const char *proc_comm_shown(int pid, char *buf, size_t len)
{
	char comm[PROC_COMM_LEN];

	proc_comm(pid, comm);
	return str_shown(comm, buf, len);
}

/* /proc/PID/stat into buf: its last ')', after which its fields follow
 * ("PID (COMM) S ...": the name may hold ") "), or NULL when it is gone
 * or hidden. */
static const char *proc_stat_after_name(int pid, char *buf, size_t len)
{
	char path[32];
	ssize_t n;
	int fd;

	if (pid <= 0)
		return NULL;
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n <= 0)
		return NULL;
	buf[n] = '\0';
	return strrchr(buf, ')');
}

char proc_state(int pid)
{
	char buf[512];
	const char *p = proc_stat_after_name(pid, buf, sizeof(buf));

	return p && p[1] == ' ' && p[2] ? p[2] : 0;
}

/* /proc/stat's btime: the boot, in seconds since the epoch; 0 unknown. */
static uint64_t boot_unix_s(void)
{
	char line[256];
	unsigned long long bt = 0;
	FILE *f = fopen("/proc/stat", "re");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "btime %llu", &bt) == 1)
			break;
	fclose(f);
	return bt;
}

uint64_t proc_start_unix_ms(int pid)
{
	char buf[1024];
	const char *p = proc_stat_after_name(pid, buf, sizeof(buf));
	unsigned long long ticks;
	long hz = sysconf(_SC_CLK_TCK);
	uint64_t boot;
	int i;

	/* The state (field 3) ... starttime (22). */
	for (i = 3; p && i <= 22; i++)
		p = strchr(p + 1, ' ');
	if (!p || hz <= 0 || sscanf(p + 1, "%llu", &ticks) != 1)
		return 0;
	boot = boot_unix_s();
	return boot ? boot * 1000 + ticks * 1000 / (unsigned long long)hz : 0;
}

bool proc_stopped_say(int pid, const char *name, char *buf, size_t len)
{
	char st = proc_state(pid);

	if (st != 'T' && st != 't')
		return false;
	snprintf(buf, len, "%s, pid %d, is stopped by a signal or a debugger: "
		 "'kill -CONT %d' resumes it", name, pid, pid);
	return true;
}

int str_copy(char *dst, const char *src, size_t len)
{
	size_t n = strlen(src);

	if (n >= len)
		return -ENAMETOOLONG;
	memcpy(dst, src, n + 1);
	return 0;
}

const char *state_text(const char *state, const char *error, char *buf,
		       size_t len)
{
	size_t n = strlen(state);

	if (!error || !error[0])
		snprintf(buf, len, "%s", state);
	else if (!strncmp(error, state, n) &&
		 (!error[n] || error[n] == ' ' || error[n] == ';' || error[n] == ':'))
		snprintf(buf, len, "%s", error);
	else
		snprintf(buf, len, "%s: %s", state, error);
	return buf;
}

static bool name_char_ok(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

int name_valid(const char *name)
{
	size_t i;

	if (!name || !name[0] || name[0] == '.' || name[0] == '-')
		return -EINVAL;
	for (i = 0; name[i]; i++)
		if (i >= 64 || !name_char_ok(name[i]))
			return -EINVAL;
	return 0;
}

uint64_t mul_div(uint64_t a, uint64_t b, uint64_t c)
{
	unsigned __int128 q;

	if (!c)
		return UINT64_MAX;
	q = (unsigned __int128)a * b / c;
	return q > UINT64_MAX ? UINT64_MAX : (uint64_t)q;
}

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t median_low(uint64_t *v, unsigned int n)
{
	unsigned int i, j;
	uint64_t x;

	if (!n)
		return 0;
	for (i = 1; i < n; i++) {       /* insertion sort: n is small */
		x = v[i];
		for (j = i; j > 0 && v[j - 1] > x; j--)
			v[j] = v[j - 1];
		v[j] = x;
	}
	return v[(n - 1) / 2];
}

unsigned int cpus_usable(void)
{
	cpu_set_t set;
	long n;

	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
		return (unsigned int)CPU_COUNT(&set);
	n = sysconf(_SC_NPROCESSORS_ONLN);     /* more CPUs than cpu_set_t holds */
	return n > 0 ? (unsigned int)n : 1;
}

int fd_next_data(int fd, uint64_t off, uint64_t size, uint64_t *start,
		 uint64_t *end)
{
	off_t d, h;

	*start = *end = size;
	if (off >= size)
		return 0;
	d = lseek(fd, (off_t)off, SEEK_DATA);
	if (d < 0)
		return errno == ENXIO ? 0 : -errno;
	if ((uint64_t)d >= size)
		return 0;
	h = lseek(fd, d, SEEK_HOLE);
	*start = (uint64_t)d;
	*end = h < 0 || (uint64_t)h > size ? size : (uint64_t)h;
	return 0;
}

bool fd_all_data(int fd, uint64_t size)
{
	struct statfs fs;
	struct stat st;

	if (fstatfs(fd, &fs) < 0 || fs.f_type != TMPFS_MAGIC || fstat(fd, &st) < 0)
		return false;
	return (uint64_t)st.st_size >= size &&
	       (uint64_t)st.st_blocks * 512 >= (uint64_t)st.st_size;
}

int fd_hugetlb(int fd)
{
	struct statfs fs;

	if (fstatfs(fd, &fs) < 0)
		return -errno;
	return fs.f_type == HUGETLBFS_MAGIC;
}

int fd_check_sealed(int fd, bool add_seal, uint64_t *ret_size)
{
	struct stat st;
	int seals;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	/* A file that cannot be sealed at all (not a memfd, or one made
	 * without MFD_ALLOW_SEALING) is unsealed too. */
	seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0 || (!(seals & F_SEAL_SHRINK) &&
			  (!add_seal || fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) < 0)))
		return -EPERM;
	/* Only now: a size read before the seal could have shrunk since. */
	if (fstat(fd, &st) < 0)
		return -errno;
	*ret_size = (uint64_t)st.st_size;
	return 0;
}

int poll_until(struct pollfd *fds, unsigned int nfds, uint64_t deadline_ns)
{
	uint64_t now;
	int ms = -1, r;

	for (;;) {
		if (deadline_ns) {
			now = now_ns();
			if (now >= deadline_ns)
				return -ETIMEDOUT;
			ms = (int)MIN((deadline_ns - now + 999999) / 1000000,
				      (uint64_t)INT32_MAX);
		}
		r = poll(fds, nfds, ms);
		if (r > 0)
			return r;
		if (r == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

/* mkdir one component; an existing directory is fine. */
static int mkdir_one(const char *path, unsigned int mode)
{
	struct stat st;

	if (mkdir(path, mode) == 0)
		return 0;
	if (errno != EEXIST)
		return -errno;
	if (stat(path, &st) < 0)
		return -errno;
	return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

int mkdir_p(const char *path, unsigned int mode)
{
	char buf[PATH_MAX];
	char *p;
	int r;

	if (!path || !path[0])
		return -EINVAL;
	r = str_copy(buf, path, sizeof(buf));
	if (r < 0)
		return r;
	for (p = buf + 1; *p; p++) {
		if (*p != '/' || p[-1] == '/')
			continue;
		*p = '\0';
		r = mkdir_one(buf, mode);
		*p = '/';
		if (r < 0)
			return r;
	}
	return mkdir_one(buf, mode);
}

const char *rundir_hint(int err)
{
	return err == -EACCES || err == -EPERM || err == -EROFS ?
	       " (run it as root, as its unit does, or give --rundir a "
	       "directory this user may create or write)" : "";
}

uint64_t deadline_ms(unsigned int ms)
{
	return now_ns() + ms * 1000000ULL;
}

int ms_until(uint64_t deadline)
{
	uint64_t now = now_ns();

	return now + 1000000 < deadline ?
	       (int)MIN((deadline - now) / 1000000, (uint64_t)INT_MAX) : 1;
}

uint64_t unix_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct timespec timespec_after_ms(clockid_t clk, unsigned int ms)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	return ts;
}

int cond_wait_ms(pthread_cond_t *cond, pthread_mutex_t *mutex, unsigned int ms)
{
	struct timespec ts = timespec_after_ms(CLOCK_MONOTONIC, ms);

	return pthread_cond_clockwait(cond, mutex, CLOCK_MONOTONIC, &ts) ==
	       ETIMEDOUT ? ETIMEDOUT : 0;
}

int thread_join_ms(pthread_t t, unsigned int ms)
{
#ifdef __SANITIZE_THREAD__
	/* GCC 12's ThreadSanitizer does not know pthread_clockjoin_np: the
	 * join would be unseen, and every later use of what the thread
	 * wrote a race.  Its builds alone take the wall clock's join. */
	struct timespec ts = timespec_after_ms(CLOCK_REALTIME, ms);

	return pthread_timedjoin_np(t, NULL, &ts) == ETIMEDOUT ? ETIMEDOUT : 0;
#else
	struct timespec ts = timespec_after_ms(CLOCK_MONOTONIC, ms);

	return pthread_clockjoin_np(t, NULL, CLOCK_MONOTONIC, &ts) == ETIMEDOUT ?
	       ETIMEDOUT : 0;
#endif
}

int write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}
