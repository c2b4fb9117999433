/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A lock file held for a daemon's whole life (flock), holding its pid, so
 * that a second instance is refused before it touches anything of the
 * first and can say which process holds the lock.  The file is left in
 * place when the holder exits: removing it would let two processes hold
 * locks on two different files of the same name.
 */
#ifndef TERN_PIDLOCK_H
#define TERN_PIDLOCK_H

#include <stddef.h>

/*
 * Returns the fd that holds the lock (keep it open), -EEXIST when another
 * process holds it (its pid as text in holder, or "unknown"), -ELOOP when
 * path is a symbolic link, -EMLINK when it is not a regular file of one
 * link (neither is written), or -errno.
 */
int pidlock_take(const char *path, char *holder, size_t len);
/*
 * A daemon's lock, DIR/NAME.lock, saying what went wrong in the log:
 * "BUSY (pid N)" when another process holds it, or the error and the
 * path.  The fd or -errno, as above.
 */
int pidlock_take_in(const char *dir, const char *name, const char *busy);

#endif
