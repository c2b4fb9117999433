// SPDX-License-Identifier: GPL-2.0-only
/*
 * An 8250/16550 UART at I/O port 0x3f8, output only: what the guest writes
 * goes to the --serial destination a line at a time; reads see an empty
 * receiver and an always-ready transmitter.  Called from vCPU threads
 * (serial_io, and serial_write for the test device), from state save/load
 * with the VM paused, and from the control service (serial_dropped).
 *
 * Nothing here waits for the destination: a line it cannot take at once
 * is dropped and counted, so that a console nobody reads stalls neither
 * the guest nor, through the lock, a pause or a state save.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "vmm/vmm.h"

#define UART_BASE 0x3f8
enum {
	UART_RBR_THR = 0, UART_IER = 1, UART_IIR_FCR = 2, UART_LCR = 3,
	UART_MCR = 4, UART_LSR = 5, UART_MSR = 6, UART_SCR = 7,
};
#define LCR_DLAB 0x80
#define LSR_THRE 0x20
#define LSR_TEMT 0x40

/*
 * The console's own description of standard output.  O_NONBLOCK on a dup
 * would reach whoever shares it (the terminal of the shell that started
 * us), so a pipe, FIFO or terminal is opened anew through /proc, which
 * gives a description of our own; a regular file keeps the dup, for the
 * offset it shares, and so does anything that cannot be reopened (a
 * socket): the poll in serial_flush is all that guards those.
 */
static int serial_open_stdout(void)
{
	struct stat st;
	int fd;

	if (fstat(STDOUT_FILENO, &st) < 0)
		return -1;
	if (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode)) {
		fd = open("/proc/self/fd/1",
			  O_WRONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
		if (fd >= 0)
			return fd;
	}
	return fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 0);
}

/* Whether a write to fd could wait: a blocking description of anything
 * but a regular file (a socket, or what could not be reopened). */
static bool serial_may_block(int fd)
{
	struct stat st;
	int fl = fcntl(fd, F_GETFL);

	return fl >= 0 && !(fl & O_NONBLOCK) &&
	       (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode));
}

/*
 * A console FILE, appended to: never through a symbolic link, as the vmm
 * may run as root and a link planted at the name (which rotation renames)
 * would have it write wherever the link points; and only a regular file,
 * a character device (a terminal, /dev/null) or a FIFO, never a block
 * device or a socket.  fd or -errno: -ELOOP for a link, -EINVAL for a
 * file of another type.
 */
static int serial_open_file(const char *path, int flags)
{
	struct stat st;
	int fd, ret;

	fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_NOCTTY |
		  O_CLOEXEC | flags, 0640);
	if (fd < 0)
		return -errno;
	ret = fstat(fd, &st) < 0 ? -errno : 0;
	if (ret == 0 && !S_ISREG(st.st_mode) && !S_ISCHR(st.st_mode) &&
	    !S_ISFIFO(st.st_mode))
		ret = -EINVAL;
	if (ret < 0) {
		close(fd);
		return ret;
	}
	return fd;
}

/* Says what is wrong with it (a line on standard error), -errno. */
int serial_init(struct serial *s, const char *spec, uint64_t max)
{
	struct stat st;
	int fd, fl;

	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	s->out_fd = -1;
	if (spec && !strcmp(spec, "none"))
		return 0;
	if (!spec || !strcmp(spec, "stdio")) {
		fd = serial_open_stdout();
		if (fd < 0) {
			fd = -errno;
			log_warnc(fd, "--serial stdio: standard output");
			return fd;
		}
		s->out_fd = fd;
		s->poll = serial_may_block(fd);
		return 0;
	}
	/* Non-blocking only once open: a FIFO waits for its reader. */
	fd = serial_open_file(spec, 0);
	if (fd == -ELOOP)
		log_warnx("--serial %s: a symbolic link, not followed (name the "
			  "file itself, or stdio for the vmm's standard output)",
			  spec);
	else if (fd == -EINVAL || fd == -EISDIR)   /* (a directory's open) */
		log_warnx("--serial %s: neither a regular file, a character "
			  "device nor a FIFO", spec);
	else if (fd < 0)
		log_warnc(fd, "--serial %s", spec);
	if (fd < 0)
		return fd;
	if ((fl = fcntl(fd, F_GETFL)) >= 0)
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	/* A file on disk is kept bounded (serial_rotate): a guest must not
	 * fill the host's disk by printing. */
	if (max && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
		s->path = strdup(spec);
		s->max = max;
		s->size = (uint64_t)st.st_size;
	}
	s->out_fd = fd;
	s->poll = serial_may_block(fd);
	return 0;
}

/*
 * The console file reached its bound: it becomes FILE.1 (an older FILE.1
 * goes) and a new FILE begins, so that the newest output is kept and
 * the two hold at most about twice the bound.  Once per bound's worth of
 * output, under the lock.  Where the rename or the new file fails, the
 * file is emptied instead: the bound holds, the older output is lost.
 */
static void serial_rotate(struct serial *s)
{
	char old[PATH_MAX];
	int fd = -1;

	if ((size_t)snprintf(old, sizeof(old), "%s.1", s->path) < sizeof(old) &&
	    rename(s->path, old) == 0) {
		/* FILE was renamed away: one there now is not ours. */
		fd = serial_open_file(s->path, O_EXCL | O_NONBLOCK);
		/* No new file: the old one becomes FILE again, so that the
		 * emptying below empties FILE, not the output just kept. */
		if (fd < 0 && rename(old, s->path) < 0)
			log_warn("console: %s is now %s", s->path, old);
	}
	if (fd >= 0) {
		close(s->out_fd);
		s->out_fd = fd;
		log_info("console: %s reached %llu bytes; it is now %s", s->path,
			 (unsigned long long)s->size, old);
	} else if (ftruncate(s->out_fd, 0) == 0) {
		log_warn("console: %s reached %llu bytes and could not be renamed; "
			 "emptied", s->path, (unsigned long long)s->size);
	}
	s->size = 0;
}

/*
 * One write of the line; what is not written is dropped.  Most
 * destinations are non-blocking (serial_open_stdout), and a regular file
 * always takes a line.  For the rest (s->poll: a socket, or a dup that
 * could not be reopened) a poll first is the guard: a line (at most 256
 * bytes, below PIPE_BUF) fits in a pipe or FIFO that polls writable, and
 * in a stream socket with a quarter of its buffer free.
 */
static void serial_flush(struct serial *s)
{
	struct pollfd pfd = { .fd = s->out_fd, .events = POLLOUT };
	ssize_t n = 0;

	if (s->out_fd < 0 || !s->len)
		goto out;
	if (!s->poll || (poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLOUT)))
		n = write(s->out_fd, s->line, s->len);
	if (n < 0)
		n = 0;
	if ((size_t)n < s->len)
		__atomic_fetch_add(&s->dropped, s->len - n, __ATOMIC_RELAXED);
	s->size += (uint64_t)n;
	if (s->path && s->size >= s->max)
		serial_rotate(s);
out:
	s->len = 0;
}

/* Bytes of console output dropped since start; any thread. */
uint64_t serial_dropped(struct serial *s)
{
	return __atomic_load_n(&s->dropped, __ATOMIC_RELAXED);
}

void serial_destroy(struct serial *s)
{
	pthread_mutex_lock(&s->lock);
	serial_flush(s);
	pthread_mutex_unlock(&s->lock);
	if (s->dropped)
		log_info("console: %llu bytes of output dropped",
			 (unsigned long long)s->dropped);
	if (s->out_fd >= 0)
		close(s->out_fd);
	s->out_fd = -1;
	free(s->path);
	s->path = NULL;
}

static void serial_putc(struct serial *s, uint8_t c)
{
	s->line[s->len++] = c;
	if (c == '\n' || s->len == sizeof(s->line))
		serial_flush(s);
}

/* Console output that bypasses the UART registers (the test device). */
void serial_write(struct serial *s, const uint8_t *buf, size_t len)
{
	size_t i;

	pthread_mutex_lock(&s->lock);
	for (i = 0; i < len; i++)
		serial_putc(s, buf[i]);
	pthread_mutex_unlock(&s->lock);
}

void serial_io(struct serial *s, uint16_t port, bool is_write, uint8_t *data)
{
	unsigned int reg = port - UART_BASE;
	bool dlab;

	pthread_mutex_lock(&s->lock);
	dlab = s->lcr & LCR_DLAB;
	if (is_write) {
		switch (reg) {
		case UART_RBR_THR:
			if (dlab)
				s->dll = *data;
			else
				serial_putc(s, *data);
			break;
		case UART_IER:
			if (dlab)
				s->dlm = *data;
			else
				s->ier = *data & 0x0f;
			break;
		case UART_IIR_FCR: s->fcr = *data; break;
		case UART_LCR: s->lcr = *data; break;
		case UART_MCR: s->mcr = *data & 0x1f; break;
		case UART_SCR: s->scr = *data; break;
		default: break;
		}
	} else {
		switch (reg) {
		case UART_RBR_THR: *data = dlab ? s->dll : 0; break;
		case UART_IER: *data = dlab ? s->dlm : s->ier; break;
		case UART_IIR_FCR: *data = (s->fcr & 1) ? 0xc1 : 0x01; break;
		case UART_LCR: *data = s->lcr; break;
		case UART_MCR: *data = s->mcr; break;
		case UART_LSR: *data = LSR_THRE | LSR_TEMT; break;
		case UART_MSR: *data = 0xb0; break;    /* DCD, DSR, CTS */
		case UART_SCR: *data = s->scr; break;
		default: *data = 0xff; break;
		}
	}
	pthread_mutex_unlock(&s->lock);
}

void serial_save(struct serial *s, Tern__Vmm__UartState *ret)
{
	pthread_mutex_lock(&s->lock);
	serial_flush(s);
	ret->ier = s->ier;
	ret->lcr = s->lcr;
	ret->mcr = s->mcr;
	ret->scr = s->scr;
	ret->dll = s->dll;
	ret->dlm = s->dlm;
	ret->fcr = s->fcr;
	pthread_mutex_unlock(&s->lock);
}

void serial_load(struct serial *s, const Tern__Vmm__UartState *st)
{
	pthread_mutex_lock(&s->lock);
	s->ier = st->ier & 0x0f;
	s->lcr = st->lcr & 0xff;
	s->mcr = st->mcr & 0x1f;
	s->scr = st->scr & 0xff;
	s->dll = st->dll & 0xff;
	s->dlm = st->dlm & 0xff;
	s->fcr = st->fcr & 0xff;
	pthread_mutex_unlock(&s->lock);
}
