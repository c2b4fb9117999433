// SPDX-License-Identifier: GPL-2.0-only
/*
 * Jobs that outlive their migd: those past their postcopy switch, which
 * a stopping migd leaves running (main.c asks jobs_hold_quit), and whose
 * workers ask the next migd to adopt them (adopt.c, Migd.Adopt checked
 * in control.c).  An adopted worker is no child of ours, so no SIGCHLD
 * tells its end: its pidfd does, readable in the event loop, and the job
 * then ends as any other does (jobend.c job_finish), without a wait
 * status.  One that ended while no migd ran gives its final report,
 * and the job ends at once, into the history.
 */
#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"
#include "common/pbuf.h"
#include "common/util.h"
#include "migd/migd.h"

/* Past its postcopy switch, as the worker last said: it goes on without
 * migd, and the next migd adopts it. */
bool job_outlives_migd(const struct job *j)
{
	const Tern__Migd__JobStatus *js = j->last;

	return !j->finished && j->pid > 0 && js &&
	       !job_state_final((enum job_state)js->state) &&
	       ((js->switched && js->postcopy_started) ||
		js->state == TERN__MIGD__JOB_STATE__JOB_POSTCOPY_ACTIVE ||
		js->state == TERN__MIGD__JOB_STATE__JOB_POSTCOPY_PAUSED ||
		js->state == TERN__MIGD__JOB_STATE__JOB_POSTCOPY_RECOVER);
}

bool jobs_hold_quit(struct migd *m)
{
	Tern__Migd__JobStatus js;
	struct job *j;
	bool hold = false;

	for (j = m->running; j; j = j->next) {
		/* Left, it is the next migd's, even once it ended. */
		if (j->left)
			continue;
		if (!job_outlives_migd(j)) {
			hold = true;
			continue;
		}
		j->left = true;
		job_status(j, &js);
		log_info("%s: postcopy job %s (worker %d, %s) goes on without "
			 "migd; the next migd on %s/migd.sock will adopt it",
			 j->spec.vm, js.id, (int)j->pid, job_state_name(j->state),
			 m->rundir);
	}
	return hold;
}

/* The adopted worker has ended: its last reports are in its link. */
static void handle_adopted_end(evutil_socket_t fd, short what, void *arg)
{
	struct job *j = arg;

	job_finish(j->m, j, NULL);
}

Tern__Migd__JobStatus *job_status_copy(const Tern__Migd__JobStatus *js)
{
	Tern__Migd__JobStatus shown = *js, *c = NULL;
	struct status_text text;
	uint8_t *buf;
	size_t len;

	/* (one an older migd saved, or an older worker reported, may not be
	 * text) */
	status_text_shown(&shown, &text);
	len = tern__migd__job_status__get_packed_size(&shown);
	buf = malloc(len ? len : 1);
	if (!buf)
		return NULL;
	tern__migd__job_status__pack(&shown, buf);
	c = (Tern__Migd__JobStatus *)pbuf_unpack(&tern__migd__job_status__descriptor,
						   len, buf);
	free(buf);
	return c;
}

int job_adopt(struct migd *m, const struct job_spec *spec, pid_t pid, int fd,
	      const Tern__Migd__JobStatus *js, uint64_t started_unix_ms,
	      struct job **ret)
{
	struct job *j;
	int r;

	j = calloc(1, sizeof(*j));
	if (!j) {
		r = -ENOMEM;
		goto fail;
	}
	j->spec = *spec;
	j->spec.listen_fd = -1;
	j->m = m;
	j->adopted = true;
	j->pid = pid;
	/* Its Incoming or Migrate was answered by the earlier migd: a
	 * destination's later answers are its recoveries'. */
	j->answered = true;
	j->started_unix_ms = started_unix_ms;
	j->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);        /* CLOEXEC */
	if (j->pidfd < 0) {
		r = -errno;
		goto fail_job;
	}
	j->last = job_status_copy(js);
	if (!j->last) {
		r = -ENOMEM;
		goto fail_pidfd;
	}
	j->state = (enum job_state)js->state;
	r = job_watch_link(m, j, fd);
	fd = -1;
	if (r < 0)
		goto fail_link;
	j->ev_pid = event_new(m->base, j->pidfd, EV_READ, handle_adopted_end, j);
	if (!j->ev_pid || event_add(j->ev_pid, NULL) < 0) {
		r = -ENOMEM;
		goto fail_link;
	}
	j->next = m->running;
	m->running = j;
	log_info("%s: adopted postcopy job %s (worker %d) left by an earlier migd",
		 spec->vm, js->id, (int)pid);
	job_forget_lost(m, spec);
	migd_state_save(m);
	*ret = j;
	return 0;
fail_link:
	if (j->ev_pid)
		event_free(j->ev_pid);
	if (j->ev)
		event_free(j->ev);
	if (j->conn)
		rpc_conn_free(j->conn);
	tern__migd__job_status__free_unpacked(j->last, NULL);
fail_pidfd:
	close(j->pidfd);
fail_job:
	free(j);
fail:
	if (fd >= 0)
		close(fd);
	return r;
}

struct job *job_find_migration(struct job *list, const struct job_spec *spec)
{
	struct job *j;

	for (j = list; j; j = j->next)
		if (!memcmp(j->spec.id, spec->id, STREAM_ID_LEN) &&
		    j->spec.role == spec->role)
			return j;
	return NULL;
}

struct job *job_from_status(struct migd *m, const struct job_spec *spec,
			    const Tern__Migd__JobStatus *js)
{
	struct job *j = calloc(1, sizeof(*j));

	if (!j || !(j->last = job_status_copy(js))) {
		free(j);
		return NULL;
	}
	j->spec = *spec;
	j->spec.listen_fd = -1;
	j->m = m;
	j->pidfd = -1;
	j->answered = true;
	j->state = (enum job_state)js->state;
	return j;
}

bool job_end_awaited(struct migd *m, const struct job_spec *spec)
{
	struct job *j = job_find_migration(m->history, spec);

	if (!j)
		j = job_find_migration(m->orphans, spec);
	return j && (j->lost || j->adopted);
}

int job_adopt_ended(struct migd *m, const struct job_spec *spec, pid_t pid,
		    const Tern__Migd__JobStatus *js, uint64_t started_unix_ms,
		    struct job **ret)
{
	Tern__Migd__JobStatus *c;
	struct job *j;
	uint64_t now = unix_ms();

	job_forget_lost(m, spec);
	j = job_find_migration(m->history, spec);
	/* Known already: the reply to an earlier offer was lost. */
	if (j) {
		*ret = j;
		return 0;
	}
	/* Adopted running, whose link broke as it ended: the report it
	 * could not give there.  Its end (pidfd) then finishes it. */
	j = job_find_migration(m->running, spec);
	if (j && (!j->adopted || j->pid != pid))
		return -EBUSY;
	if (j) {
		c = job_status_copy(js);
		if (!c)
			return -ENOMEM;
		tern__migd__job_status__free_unpacked(j->last, NULL);
		j->last = c;
		*ret = j;
		return 0;
	}
	j = job_from_status(m, spec, js);
	if (!j)
		return -ENOMEM;
	j->adopted = true;
	j->started_unix_ms = started_unix_ms;
	/* Its own time of end, if it can be; else now. */
	if (js->finished_unix_ms >= started_unix_ms && js->finished_unix_ms <= now)
		j->finished_unix_ms = js->finished_unix_ms;
	log_info("%s: learnt the outcome of %s job %s from its worker %d: it "
		 "ended while no migd ran", spec->vm, job_role_name(spec->role),
		 js->id, (int)pid);
	job_finish(m, j, NULL);
	*ret = j;
	return 0;
}
