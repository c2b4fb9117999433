// SPDX-License-Identifier: GPL-2.0-only
/*
 * Lock files holding a daemon's pid (see common/pidlock.h).  Used by the
 * vmm (one per VM name) and migd (one per run directory).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/pidlock.h"
#include "common/util.h"

/*
 * The lock is written (truncated, then our pid), by root too, in a run
 * directory that someone else may be able to write (a vmm's own user
 * owns RUNDIR/vmm): never through a symbolic link (O_NOFOLLOW: -ELOOP),
 * and only to a regular file of one link (else -EMLINK), so that a link
 * placed there cannot aim that write at another file.
 */
int pidlock_take(const char *path, char *holder, size_t len)
{
	struct stat st;
	char pid[32];
	ssize_t n;
	int fd, ret;

	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY |
		  O_NONBLOCK, 0640);
	/* (a directory, a socket: no regular file either) */
	if (fd < 0)
		return errno == EISDIR || errno == ENXIO ? -EMLINK : -errno;
	if (fstat(fd, &st) < 0)
		ret = -errno;
	else if (!S_ISREG(st.st_mode) || st.st_nlink != 1)
		ret = -EMLINK;
	else
		ret = 0;
	if (ret < 0) {
		close(fd);
		return ret;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		ret = errno == EWOULDBLOCK ? -EEXIST : -errno;
		n = pread(fd, pid, sizeof(pid) - 1, 0);
		pid[n > 0 ? n : 0] = 0;
		pid[strcspn(pid, "\n")] = 0;
		snprintf(holder, len, "%s", pid[0] ? pid : "unknown");
		close(fd);
		return ret;
	}
	n = snprintf(pid, sizeof(pid), "%d\n", getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, n, 0) != n) {
		ret = -errno;
		close(fd);
		return ret ? ret : -EIO;
	}
	return fd;
}

/* A daemon's directory that another user may write: whoever can may put
 * sockets and files of their own there (a peer's check of who connects
 * is no help when the socket is not the daemon's).  Said, not refused:
 * an operator's test directory may be one. */
static void dir_warn_open(const char *dir)
{
	struct stat st;

	if (stat(dir, &st) < 0)
		return;
	if (st.st_mode & (S_IWGRP | S_IWOTH))
		log_warnx("%s is writable by %s (mode %04o): whoever can write it "
			  "may put sockets and files of their own there; give a "
			  "directory only this user can write", dir,
			  st.st_mode & S_IWOTH ? "every user" : "its group",
			  (unsigned int)(st.st_mode & 07777));
	else if (st.st_uid != geteuid() && st.st_uid != 0)
		log_warnx("%s belongs to uid %u, not to this user (uid %u): its "
			  "owner may put sockets and files of their own there",
			  dir, (unsigned int)st.st_uid, (unsigned int)geteuid());
}

int pidlock_take_in(const char *dir, const char *name, const char *busy)
{
	char path[PATH_MAX], holder[32];
	int fd;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s.lock", dir, name) >=
	    sizeof(path)) {
		log_warnx("%s/%s.lock: path too long", dir, name);
		return -ENAMETOOLONG;
	}
	fd = pidlock_take(path, holder, sizeof(holder));
	if (fd == -EEXIST)
		log_warnx("%s (pid %s)", busy, holder);
	else if (fd == -ELOOP)
		log_warnx("%s is a symbolic link: refused, as a lock file is "
			  "written (remove it; whoever can write %s may have "
			  "put it there)", path, dir);
	else if (fd == -EMLINK)
		log_warnx("%s is not a regular file of one link: refused, as a "
			  "lock file is written (remove it; whoever can write "
			  "%s may have put it there)", path, dir);
	else if (fd < 0)
		log_warnx("cannot create %s: %s%s", path, strerror(-fd),
			  rundir_hint(fd));
	else
		dir_warn_open(dir);
	return fd;
}
