// SPDX-License-Identifier: GPL-2.0-only
/*
 * The sd_notify(3) protocol's one message tern needs: READY=1, a datagram
 * to the unix socket named by $NOTIFY_SOCKET.  Called by the daemons'
 * main() right after their control socket listens (vmm, migd, faultd).
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/notify.h"

int notify_ready(void)
{
	static const char msg[] = "READY=1";
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *path = getenv("NOTIFY_SOCKET");
	size_t n;
	int fd, ret = 0;

	if (!path || !*path)
		return 0;
	n = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || n >= sizeof(sa.sun_path))
		return -EINVAL;
	memcpy(sa.sun_path, path, n);
	if (path[0] == '@')
		sa.sun_path[0] = '\0';          /* abstract: no NUL at the end */
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (sendto(fd, msg, sizeof(msg) - 1, MSG_NOSIGNAL, (struct sockaddr *)&sa,
		   (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)) < 0)
		ret = -errno;
	close(fd);
	return ret;
}
