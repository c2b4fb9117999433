/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Small helpers every program uses: parsing numbers and sizes from the
 * command line with full checking, string copies that never overflow.
 */
#ifndef TERN_UTIL_H
#define TERN_UTIL_H

#include <stddef.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/* The release of every tern program (their --version, a saved state's
 * producer). */
#define TERN_VERSION "0.1"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define ALIGN_UP(x, a) (((x) + (a) - 1) & ~((__typeof__(x))(a) - 1))
#define ALIGN_DOWN(x, a) ((x) & ~((__typeof__(x))(a) - 1))
/* The struct of type t whose member m is at p. */
#define container_of(p, t, m) ((t *)(void *)((char *)(p) - offsetof(t, m)))
#define DIV_ROUND_UP(n, d) (((n) + (d) - 1) / (d))
/* The longest --rundir vmm, migd and faultd take: room left for a
 * socket's name (migd.sock, vmm/NAME.sock) in a unix socket address,
 * whose sun_path holds 107 characters and the NUL. */
#define RUNDIR_MAX 80

/*
 * "4096", "512K", "64M", "4G", "1T" (binary units, optional "iB"/"B"
 * suffix) -> bytes.  -EINVAL on anything else, -ERANGE on overflow.
 */
int parse_size(const char *s, uint64_t *ret);
/* A rate or size as options take it (parse_size) or as status prints
 * it (fmt_rate): "500M", "1.5G", "1.0 GiB/s", "851.6 MiB/s"; a fraction
 * needs a unit and is rounded to the byte.  -EINVAL, -ERANGE. */
int parse_rate(const char *s, uint64_t *ret);
/* A decimal or 0x-hex unsigned number within [min, max]. */
int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *ret);
/* "4.0 GiB" style, into buf; returns buf. */
const char *fmt_size(uint64_t bytes, char *buf, size_t len);
/* A rate as status shows it: "1.5 MiB/s". */
const char *fmt_rate(uint64_t bytes_per_s, char *buf, size_t len);
/* The same size as an option takes it (parse_size), exactly: "4G",
 * "96M", "12K" or bytes, into buf; returns buf. */
const char *fmt_size_arg(uint64_t bytes, char *buf, size_t len);

/* The length of the well-formed UTF-8 sequence at p (1-4), or 0: an
 * overlong form, a surrogate, past U+10FFFF, or cut short (a NUL is no
 * continuation byte, so the scan never passes the end). */
int utf8_seq_len(const unsigned char *p);
/* s is UTF-8 text without control characters: safe on a terminal and in
 * a protobuf string, and the same after a round trip through JSON. */
bool str_is_text(const char *s);
/* s as text (str_is_text), each control character or byte that is not
 * UTF-8 written as \xNN, cut to fit len; returns buf.  For errors that
 * quote what a caller gave. */
const char *str_shown(const char *s, char *buf, size_t len);
/* The length of s cut to at most max bytes at the end of a UTF-8
 * sequence (for "%.*s": a peer's words cut short stay whole
 * characters); a byte that is not UTF-8 counts alone. */
int str_cut(const char *s, int max);
/* A copy of s as str_shown writes it, whole (malloc; NULL when out of
 * memory): for text that goes to a terminal or a protobuf string. */
char *str_shown_dup(const char *s);
/* All of buf to fd (a file: retried on EINTR and short writes), or -errno. */
int write_all(int fd, const void *buf, size_t len);
/* The name process pid gives itself (/proc/PID/comm, which it sets as
 * it likes), shown as str_shown does; "" when it is gone or hidden.
 * Returns buf. */
const char *proc_comm_shown(int pid, char *buf, size_t len);
/* The same as the kernel keeps it (15 bytes and a NUL, not shown: for
 * str_shown later), with async-signal-safe calls only and errno kept, so
 * that a signal handler can name its sender before the sender is gone. */
#define PROC_COMM_LEN 32
void proc_comm(int pid, char comm[PROC_COMM_LEN]);
/* Process pid's state letter from /proc/PID/stat ('R', 'S', 'T' for
 * stopped, 't' for stopped by a tracer, 'Z'...), or 0 when it is gone or
 * hidden. */
char proc_state(int pid);
/* When process pid started, in ms since the epoch (to a second: the
 * boot time is), or 0 when it is gone or hidden. */
uint64_t proc_start_unix_ms(int pid);
/* If process pid is stopped (by a signal, or a tracer): "NAME, pid N, is
 * stopped by a signal or a debugger: 'kill -CONT N' resumes it" into buf,
 * and true.  False, buf untouched, when it runs or is gone. */
bool proc_stopped_say(int pid, const char *name, char *buf, size_t len);
/* Copies like strlcpy; -ENAMETOOLONG when src does not fit (dst untouched). */
int str_copy(char *dst, const char *src, size_t len);
/* A state and the error that ended in it, the state named once: the
 * error alone when it only repeats the state (a cancelled job's is
 * "cancelled") or begins with it ("cancelled (worker killed by signal
 * 15)", "cancelled: migd is stopping"), else "STATE: ERROR", or the state alone.  Into buf; returns buf. */
const char *state_text(const char *state, const char *error, char *buf,
		       size_t len);

/* Valid VM name: 1-64 of [A-Za-z0-9._-], not starting with '.' or '-'.
 * Returns 0 when valid, -EINVAL otherwise. */
int name_valid(const char *name);
/* The rule, for the errors that refuse a name. */
#define NAME_RULE "1-64 letters, digits, '.', '_' or '-', the first " \
		  "neither '.' nor '-'"

/* Monotonic clock in nanoseconds. */
uint64_t now_ns(void);
/* now_ns() ms from now. */
uint64_t deadline_ms(unsigned int ms);
/* ms from now until deadline (now_ns() time), at least 1. */
int ms_until(uint64_t deadline);
/*
 * a * b / c with the product in 128 bits: a rate or a time from byte
 * counts (bytes * 1e9 overflows 64 bits past 17 GiB).  UINT64_MAX when
 * c is 0 or the quotient does not fit.
 */
uint64_t mul_div(uint64_t a, uint64_t b, uint64_t c);
/* The lower median of v[0..n) (sorted in place); 0 when n is 0. */
uint64_t median_low(uint64_t *v, unsigned int n);
/* CPUs this thread may run on: its affinity, which a cpuset or systemd's
 * CPUAffinity= narrows (at least 1). */
unsigned int cpus_usable(void);
/*
 * The next data extent of file fd at or after off, below size (holes
 * skipped, as a memfd's untouched pages): [*start, *end), or *start =
 * *end = size when no data is left.  0, or -errno from SEEK_DATA
 * (ENXIO, no data past off, is not an error).
 */
int fd_next_data(int fd, uint64_t off, uint64_t size, uint64_t *start,
		 uint64_t *end);
/*
 * Whether every page of [0, size) of fd is allocated, told by fstat()
 * without a walk: shmem (a memfd) counts its pages in st_blocks, where
 * SEEK_HOLE walks each page (20 ms for 2 GiB here).  False for other
 * file systems (theirs may count metadata), on error, or when in doubt;
 * callers walk then.  A page fallocate()d and never written counts as
 * allocated here and as a hole to SEEK_DATA: it reads as zeros either way.
 */
bool fd_all_data(int fd, uint64_t size);
/*
 * Whether fd is a file of hugetlbfs (a memfd made with MFD_HUGETLB: guest
 * RAM of vmm --hugepages), whose pages are 2 MiB or more: it cannot be
 * punched or placed (UFFDIO_COPY) a 4 KiB page at a time, and SEEK_DATA
 * calls all of it data.  1, 0, or -errno from fstatfs().
 */
int fd_hugetlb(int fd);
/*
 * Whether fd, handed over by another process, may stay mapped: a regular
 * file (a memfd) sealed against shrinking (F_SEAL_SHRINK; with add_seal,
 * the seal is added when missing and the file allows it).  Past the end
 * of a file, a shared mapping of it raises SIGBUS: without the seal its
 * owner could truncate it under us and kill us.  0 and the file's size,
 * read after the seal was seen (so it can only grow from then on), in
 * *ret_size; -EINVAL if fd is not a regular file, -EPERM if it is not
 * sealed against shrinking, or another -errno.
 */
int fd_check_sealed(int fd, bool add_seal, uint64_t *ret_size);
/* The wall clock in ms since 1970, for people (never for a wait). */
uint64_t unix_ms(void);
/* ms from now on clock clk, as the absolute time pthread's timed waits
 * take. */
struct timespec timespec_after_ms(clockid_t clk, unsigned int ms);
/* Wait on cond for at most ms: 0 or ETIMEDOUT (positive).  Timed on
 * CLOCK_MONOTONIC, as thread_join_ms: a step of the wall clock (NTP,
 * an operator) neither stretches nor cuts the wait. */
int cond_wait_ms(pthread_cond_t *cond, pthread_mutex_t *mutex, unsigned int ms);
/* Join t within ms: 0, or ETIMEDOUT (t still runs). */
int thread_join_ms(pthread_t t, unsigned int ms);

struct pollfd;
/*
 * poll() until something is ready or the monotonic deadline_ns passes (0:
 * no deadline), retrying EINTR.  Returns > 0 when ready, -ETIMEDOUT, or
 * -errno.
 */
int poll_until(struct pollfd *fds, unsigned int nfds, uint64_t deadline_ns);

/* mkdir -p with mode for missing components. */
int mkdir_p(const char *path, unsigned int mode);
/* What mkdir_p's error err (-errno) on a run directory leaves an
 * operator to do: "" or " (run it as root, or give --rundir ...)". */
const char *rundir_hint(int err);

/*
 * The mode of a run directory (--rundir) that migd, faultd or a vmm
 * creates: as systemd's RuntimeDirectory= makes it (the units say it
 * too).  Searchable by all: a vmm of its own user must reach DIR/vmm,
 * which is that vmm's, 0750; the sockets in DIR are 0600.
 */
#define RUNDIR_MODE 0755

#endif
