/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Readiness for a service manager: the sd_notify(3) datagram, without
 * libsystemd.  vmm, migd and faultd send it once their control socket
 * listens, so that under their Type=notify units "systemctl start"
 * returns only when a vmmctl or migctl that follows finds the socket.
 */
#ifndef TERN_NOTIFY_H
#define TERN_NOTIFY_H

/*
 * Send "READY=1" to $NOTIFY_SOCKET (a path, or "@NAME" for an abstract
 * socket).  0 when it was sent or when there is no NOTIFY_SOCKET (not
 * started by systemd, or by a unit that does not wait); -EINVAL for an
 * address that is neither, or -errno.  Never logs.
 */
int notify_ready(void);

#endif
