/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * faultd: the postcopy fault daemon.  This header is the program's table
 * of contents: its state and its functions, by file.
 *
 * faultd opens /dev/userfaultfd, drops every capability and serves the
 * tern.faultd.Faultd service (proto/faultd.proto) on RUNDIR/faultd.sock
 * from one event loop (main.c, control.c).  Each destination VM in
 * postcopy is a session (session.c): the uffd its vmm created with our
 * /dev/userfaultfd, the needed-pages bitmap shared with the migd worker,
 * and a page link to the source worker.  A session has two threads: the
 * fault thread reads the uffd's events and sends PageRequests (session.c),
 * the link thread reads PageMsg frames and places the pages (link.c).
 * Whatever a peer does, it ends (PAUSED, FAILED) that session only.
 */
#ifndef FAULTD_H
#define FAULTD_H

#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/bgwork.h"
#include "common/stream.h"
#include "proto/faultd.pb-c.h"
#include "proto/stream.pb-c.h"

#define FAULTD_DEFAULT_RUNDIR "/run/tern"
#define FAULTD_VMM_TIMEOUT_MS 5000      /* all of an Attach's calls to its vmm,
					 * well within migd's wait for Attach
					 * (FAULTD_TIMEOUT_MS in migd/faultlink.c,
					 * 10 s); and a release's */
#define FAULTD_LINK_IO_MS 10000         /* a frame begun must end, a request go out */
#define FAULTD_LINK_STALL_MS 20000      /* a request sent and not answered this long:
					   the link stalls (as migd's channels) */
#define FAULTD_MAX_PREFETCH (STREAM_PAGE_REQ_MAX - 1)
#define FAULTD_NICE (-10)               /* set at start, while root */
#define FAULTD_NUDGE SIGUSR1            /* interrupts a fault thread's read */
#define FAULTD_HIST_BUCKETS 24         /* the reported histogram: 2^i us */
#define FAULTD_FINE_BUCKETS 192         /* for percentiles: 8 per octave */
#define FAULTD_MAX_WAITING 65536        /* faults awaiting a page, for latency */

/* Mirrors tern.faultd.SessionState. */
enum session_state {
	SESSION_STATE_NONE,
	SESSION_STATE_ACTIVE,           /* faults are served over the page link */
	SESSION_STATE_PAUSED,           /* the link failed: faults wait */
	SESSION_STATE_DONE,             /* no needed page left */
	SESSION_STATE_FAILED,           /* protocol violation or local error */
	SESSION_STATE_MAX
};

struct fault_region {
	uint64_t gpa;
	uint64_t size;
	uint64_t host;                  /* the vmm's address: the uffd's */
	uint64_t first_page;            /* across regions, layout order */
};

/* A PageRequest sent (or to send again) and not yet answered. */
struct page_req {
	uint64_t seq;
	uint64_t gen;                   /* the link it last went out on (0: none) */
	uint64_t sent_ns;               /* when it went out on that link */
	uint32_t region;
	uint32_t pages;
	uint64_t offset;
};

/* A fault whose page is on its way: its latency ends when it is placed. */
struct waiting_fault {
	uint64_t page;
	uint64_t t_ns;
};

struct fault_stats {
	uint64_t faults, remote, zero, merged, requests, fetched, exist;
	uint64_t link_bytes;            /* PageData frames received, framed */
	/* Latencies of remote faults (FINE_REMOTE: a page fetched from the
	 * source, also merged ones) and of local ones (FINE_ZERO: a known
	 * zero page placed at once), in log-linear buckets. */
	uint64_t fine[2][FAULTD_FINE_BUCKETS];
	uint64_t max_us, blocked_us;
};

struct session {
	struct session *next;           /* event loop: faultd.sessions */
	char vm[65];
	char job[65];

	/* Fixed from Attach to Detach. */
	int uffd;
	int vmm_pidfd;                  /* readable once the vmm exited; or -1 */
	struct fault_region r[STREAM_MAX_REGIONS];
	unsigned int nregions;
	uint64_t pages;
	uint64_t *needed;               /* the shared bitmap: atomic access only */
	size_t needed_bytes;            /* ... and with the hashes, mapped */
	uint64_t *hashes;               /* verify: a page-hash table (ramhash.h),
					 * written by each page's placer
					 * (link.c), or NULL */
	uint32_t prefetch;
	bool unserved;                  /* TERN_FAULT=faults-unserved (faultd(8)) */
	int wake_fd;                    /* eventfd: ends the fault thread */
	pthread_t fault_thread;
	pthread_t link_thread;          /* event loop starts and joins it */
	bool link_running;              /* event loop */
	pthread_t resend_thread;        /* after Relink: requests sent again */
	bool resend_running;            /* event loop */
	uint64_t *resend;               /* their seqs, for resend_thread */
	size_t nresend;
	bool stopped;                   /* event loop: threads joined */

	pthread_mutex_t send_lock;      /* held around writes to the link; taken before lock */
	int link_fd;                    /* written under send_lock and lock */

	pthread_mutex_t lock;           /* everything below */
	enum session_state state;
	char error[384];                /* why PAUSED or FAILED */
	bool link_stopping;             /* Relink or Detach ends the link thread */
	bool fault_ended;               /* the fault thread returned: nothing
					 * reads the uffd any more */
	uint64_t *requested;            /* exact: asked, not yet answered */
	struct page_req *reqs;          /* by increasing seq */
	size_t nreqs, reqs_cap;
	uint64_t next_seq;
	uint64_t link_gen;              /* counts links: Attach's is 1 */
	struct waiting_fault *wait;
	size_t nwait, wait_cap;
	struct fault_stats st;
};

struct faultd {
	struct event_base *base;
	struct rpc_server *server;
	char rundir[PATH_MAX];
	char sock_path[PATH_MAX];
	int devfd;                      /* /dev/userfaultfd, lent to vmms */
	struct session *sessions;       /* event loop */
	struct bgwork_set attaching;    /* Attaches at their vmm (control.c) */
	struct event *sweep;            /* drops sessions whose vmm exited */
};

/* main.c: start-up, privilege drop, signals */

/* control.c: the tern.faultd.Faultd service on RUNDIR/faultd.sock */
int control_start(struct faultd *d);
void control_stop(struct faultd *d);

/* session.c: one VM's session, its fault thread and statistics */
struct session_attach {
	const char *vm, *job;
	uint64_t pages;
	uint32_t prefetch;
	bool hashes;                    /* the needed memfd holds page hashes */
	bool again;                     /* a former faultd served this uffd:
					 * wake its waiting faults */
	int link_fd, needed_fd, uffd;   /* taken by session_start, even on failure */
	int vmm_pidfd;                  /* the vmm's pidfd, or -1; taken too */
	unsigned int nregions;
	const struct fault_region *r;
};
int session_start(const struct session_attach *a, struct session **ret,
		  char *err, size_t len);
/* Stop both threads (the uffd's faults then wait); idempotent. */
void session_stop(struct session *s);
/* Stop, close everything, free s. */
void session_free(struct session *s);
/* Whether the session's vmm has exited (its guest is gone with it). */
bool session_vmm_gone(const struct session *s);
int session_relink(struct session *s, int link_fd);
/* Whether a Relink could revive s: not once its fault thread has ended
 * (then *why says how it ended). */
bool session_relinkable(struct session *s, char *why, size_t len);
uint64_t session_needed(struct session *s);
/* A snapshot into out, whose strings and arrays point into buf. */
struct stats_buf {
	uint64_t hist[FAULTD_HIST_BUCKETS];
	char error[384];
};
enum { FINE_REMOTE, FINE_ZERO };
void session_stats(struct session *s, Tern__Faultd__FaultStats *out,
		   struct stats_buf *buf);
const char *session_state_name(enum session_state st);
/* Under s->lock: the one place states change. */
void session_set_state_locked(struct session *s, enum session_state to,
			      const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Under s->lock: a fault on page served at now_ns. */
void session_record_latency(struct session *s, uint64_t t_ns, uint64_t now,
			    int kind);
/* Under lock: the index of outstanding request seq, or -1. */
long session_req_find_locked(struct session *s, uint64_t seq);
/* Send outstanding request seq on the link unless it went out there
 * already (takes send_lock, then lock). */
int session_send_request(struct session *s, uint64_t seq);
/* Under lock: faults waiting on pages [page, page + n) are served. */
void session_serve_waiting_locked(struct session *s, uint64_t page, uint64_t n,
				  uint64_t now);

/* uffdcheck.c: what faultd takes from a vmm's userfaultfd */
/* The features in the text of /proc/self/fdinfo/FD of a uffd: 0, or
 * -EPROTO if it has no API line of UFFD_API. */
int uffd_parse_fdinfo(const char *text, uint64_t *ret_features);
/* Whether a uffd of those features may be served: 0, or -EPROTO with
 * why ("its userfaultfd has features ...": the caller names the vmm). */
int uffd_check_features(uint64_t features, char *why, size_t len);
/* The same for uffd fd, its features read from /proc/self/fdinfo (a uffd
 * whose features cannot be read is refused). */
int uffd_check_fd(int fd, char *why, size_t len);
/* Whether message m is a page fault to serve: 0; or -EPROTO with why
 * (may be NULL, len 0), for a session to fail on.  A fork's new uffd is
 * closed either way. */
struct uffd_msg;
int uffd_check_msg(const struct uffd_msg *m, char *why, size_t len);

/* link.c: the page link thread and page placement */
void *link_main(void *arg);
int link_start(struct session *s);
/* Ask the link thread to end (shutdown of the link) and join it. */
void link_stop(struct session *s);

#endif
