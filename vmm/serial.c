// SPDX-License-Identifier: GPL-2.0-only
/*
 * An 8250/16550 UART at I/O port 0x3f8, output only: what the guest writes
 * goes to the --serial destination a line at a time; reads see an empty
 * receiver and an always-ready transmitter.  Called from vCPU threads
 * (serial_io) and from state save/load with the VM paused.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
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

int serial_init(struct serial *s, const char *spec)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	s->out_fd = -1;
	if (!spec || !strcmp(spec, "stdio")) {
		s->out_fd = dup(STDOUT_FILENO);
	} else if (!strcmp(spec, "none")) {
		return 0;
	} else {
		s->out_fd = open(spec, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
				 0640);
	}
	return s->out_fd < 0 ? -errno : 0;
}

static void serial_flush(struct serial *s)
{
	size_t off = 0;

	while (s->out_fd >= 0 && off < s->len) {
		ssize_t n = write(s->out_fd, s->line + off, s->len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;          /* console gone: drop, never block the guest */
		off += n;
	}
	s->len = 0;
}

void serial_destroy(struct serial *s)
{
	pthread_mutex_lock(&s->lock);
	serial_flush(s);
	pthread_mutex_unlock(&s->lock);
	if (s->out_fd >= 0)
		close(s->out_fd);
	s->out_fd = -1;
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
