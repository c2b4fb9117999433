/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Logging, tagged with the process and the object it works for:
 * "vmm[vm1]: message".  Lines go to stderr (journald picks them up under
 * systemd).  log_warn appends the text of errno, log_warnc that of an
 * explicit error code; the x variants append nothing.  Library code logs
 * at debug level at most; fatal() is for start-up and broken invariants.
 */
#ifndef TERN_LOG_H
#define TERN_LOG_H

#include <stdarg.h>

enum log_level {
	LOG_LEVEL_WARN,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
	LOG_LEVEL_MAX
};

/* proc: program name ("vmm"); tag: object ("vm1") or NULL. */
void log_init(const char *proc, const char *tag, enum log_level level);
void log_set_tag(const char *tag);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);

void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnc(int err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fatal(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));

/* For tests: format one line as it would be logged, without the newline. */
int log_format(char *buf, size_t len, enum log_level level, int err,
	       const char *fmt, va_list ap);

#endif
