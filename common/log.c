// SPDX-License-Identifier: GPL-2.0-only
/*
 * Logging for every tern process: one line per message on stderr, tagged
 * "proc[tag]: ", with the error text appended by log_warn/log_warnc.
 * Called from everywhere; common/ code uses log_debug only.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"

#define MIN_LEN(a, b) ((a) < (b) ? (a) : (b))
#define LOG_LINE_MAX 2048

static char log_proc[32] = "tern";
static char log_tag[96];             /* a VM name (64) and a suffix */
static enum log_level log_level = LOG_LEVEL_INFO;

static void log_copy(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src ? src : "");
}

void log_init(const char *proc, const char *tag, enum log_level level)
{
	log_copy(log_proc, sizeof(log_proc), proc);
	log_set_tag(tag);
	log_set_level(level);
}

void log_set_tag(const char *tag)
{
	log_copy(log_tag, sizeof(log_tag), tag);
}

void log_set_level(enum log_level level)
{
	log_level = level < LOG_LEVEL_MAX ? level : LOG_LEVEL_DEBUG;
}

enum log_level log_get_level(void)
{
	return log_level;
}

static void log_compose(char *buf, size_t len, enum log_level level, int err,
			const char *fmt, va_list ap)
{
	char ebuf[128];
	size_t n = 0;
	int r;

	(void)level;
	if (log_tag[0])
		r = snprintf(buf, len, "%s[%s]: ", log_proc, log_tag);
	else
		r = snprintf(buf, len, "%s: ", log_proc);
	n = r < 0 ? 0 : MIN_LEN((size_t)r, len - 1);
	r = vsnprintf(buf + n, len - n, fmt, ap);
	n = r < 0 ? n : MIN_LEN(n + (size_t)r, len - 1);
	if (err) {
		const char *e = strerror_r(err < 0 ? -err : err, ebuf,
					   sizeof(ebuf));

		r = snprintf(buf + n, len - n, ": %s", e);
		n = r < 0 ? n : MIN_LEN(n + (size_t)r, len - 1);
	}
}

/*
 * A line is one line of text: a control character or a byte that is not
 * UTF-8 in it (from a peer's error, a file name) is shown as \xNN, so
 * that nobody can forge a second line or drive the reader's terminal.
 */
int log_format(char *buf, size_t len, enum log_level level, int err,
	       const char *fmt, va_list ap)
{
	char raw[LOG_LINE_MAX];

	if (!buf || len == 0)
		return -EINVAL;
	log_compose(raw, sizeof(raw), level, err, fmt, ap);
	str_shown(raw, buf, len);
	return (int)strlen(buf);
}

static void log_emit(enum log_level level, int err, const char *fmt,
		     va_list ap)
{
	char line[LOG_LINE_MAX];
	int saved = errno;

	if (level > log_level) {
		errno = saved;
		return;
	}
	log_format(line, sizeof(line), level, err, fmt, ap);
	fprintf(stderr, "%s\n", line);
	errno = saved;
}

void log_warn(const char *fmt, ...)
{
	int err = errno;
	va_list ap;

	va_start(ap, fmt);
	log_emit(LOG_LEVEL_WARN, err, fmt, ap);
	va_end(ap);
}

void log_warnc(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_emit(LOG_LEVEL_WARN, err, fmt, ap);
	va_end(ap);
}

void log_warnx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_emit(LOG_LEVEL_WARN, 0, fmt, ap);
	va_end(ap);
}

void log_info(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_emit(LOG_LEVEL_INFO, 0, fmt, ap);
	va_end(ap);
}

void log_debug(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_emit(LOG_LEVEL_DEBUG, 0, fmt, ap);
	va_end(ap);
}

void fatal(const char *fmt, ...)
{
	int err = errno;
	va_list ap;

	va_start(ap, fmt);
	log_emit(LOG_LEVEL_WARN, err, fmt, ap);
	va_end(ap);
	exit(1);
}

void fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_emit(LOG_LEVEL_WARN, 0, fmt, ap);
	va_end(ap);
	exit(1);
}
