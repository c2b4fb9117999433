/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * migd: the migration daemon.  This header is the program's table of
 * contents, by file.
 *
 * The parent process (main.c, control.c, jobs.c, jobend.c, jobadopt.c,
 * jobstate.c, history.c, statefile.c, params.c) serves the
 * tern.migd.Migd service on RUNDIR/migd.sock, keeps the job table and
 * history, and forks one worker process per job so that a crash in one
 * job harms no other.
 * A worker (worker.c, worker_status.c, source.c, source_conn.c,
 * source_precopy.c, source_postcopy.c, dest.c, dest_conn.c,
 * dest_postcopy.c, channel.c, pace.c, place.c, pageserve.c, faultlink.c,
 * vmmlink.c, adopt.c) runs one migration end to end with blocking I/O
 * and threads, and reports its JobStatus to the parent over a socketpair
 * as tern.rpc.Frame events named "status" (the last one carries the
 * final state).  The parent cancels a worker with SIGTERM.  A worker
 * exits 0 when its job completed, 1 when it failed or was cancelled
 * (after restoring what it must).
 *
 * migctl (migctl.c, migctl_cmd.c, migctl_show.c; its header migctl.h) is
 * a separate program: the command-line client.
 */
#ifndef MIGD_H
#define MIGD_H

#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/bgwork.h"
#include "common/fault.h"
#include "common/ratelim.h"
#include "common/rpc.h"
#include "common/stream.h"
#include "proto/faultd.pb-c.h"
#include "proto/migd.pb-c.h"
#include "proto/stream.pb-c.h"
#include "proto/vmm.pb-c.h"

/* migd's fault points (TERN_FAULT, common/fault.h) are listed in migd(8),
 * under ENVIRONMENT: crash points in a worker, and changed behaviours. */

#define MIGD_DEFAULT_RUNDIR "/run/tern"
#define MIGD_DEFAULT_CHANNELS 4
#define MIGD_DEFAULT_DOWNTIME_MS 300
/* A worker's nice value unless --worker-nice: its threads ahead of the
 * guests' vCPUs, which otherwise take half of each shared CPU. */
#define MIGD_WORKER_NICE (-10)
#define MIGD_IO_TIMEOUT_MS 10000        /* a peer silent this long has failed */
#define SETTLE_WAIT_MS 2000             /* a Settle's longest wait (dest_settle) */
#define MIGD_STALL_TIMEOUT_MS 20000     /* a connection that moves no bytes this
					 * long (sent or acknowledged) has failed */
/* The destination's wait for pages at a postcopy switch: longer than a
 * channel's own stall limit, so that a silent connection fails first,
 * naming itself; this one catches a channel that moves bytes, no pages. */
#define MIGD_SWITCH_STALL_MS (MIGD_STALL_TIMEOUT_MS + 5000)
/* A faultd call's longest wait: a faultd that does not answer by then
 * has failed (and is named: stopped by a signal, or hung). */
#define MIGD_FAULTD_TIMEOUT_MS 10000
#define MIGD_HELLO_TIMEOUT_MS 5000      /* a new connection must say hello by then */
#define MIGD_STATUS_INTERVAL_MS 200     /* worker status reports while busy */
#define MIGD_HISTORY 64                 /* finished jobs kept for status/list */
#define MIGD_HISTORY_PER_VM 16          /* ... of them, at most this many a VM */
/* migd.state is saved this often while jobs report, for a migd that
 * dies: its successor records their figures this recent. */
#define STATE_SAVE_RUNNING_NS (2 * 1000000000ULL)

enum job_role {
	JOB_ROLE_SOURCE = 1,
	JOB_ROLE_DEST = 2,
	JOB_ROLE_MAX
};

/* Mirrors tern.migd.JobState; names for logs and migctl. */
enum job_state {
	JOB_STATE_NONE,
	JOB_STATE_SETUP,
	JOB_STATE_ACTIVE,
	JOB_STATE_DEVICE,
	JOB_STATE_COMPLETED,
	JOB_STATE_FAILED,
	JOB_STATE_CANCELLING,
	JOB_STATE_CANCELLED,
	JOB_STATE_WAITING,
	JOB_STATE_POSTCOPY_ACTIVE,
	JOB_STATE_POSTCOPY_PAUSED,
	JOB_STATE_POSTCOPY_RECOVER,
	JOB_STATE_MAX
};

enum compress_kind {
	COMPRESS_KIND_NONE,
	COMPRESS_KIND_ZSTD,
	COMPRESS_KIND_MAX
};

enum timeout_action {
	TIMEOUT_ACTION_CANCEL,
	TIMEOUT_ACTION_POSTCOPY,
	TIMEOUT_ACTION_MAX
};

enum postcopy_policy {
	POSTCOPY_POLICY_MANUAL,         /* only when asked (Migd.Postcopy) */
	POSTCOPY_POLICY_AUTO,           /* also when precopy will not converge */
	POSTCOPY_POLICY_MAX
};

struct mig_params {
	uint32_t channels;
	uint64_t max_bandwidth;                 /* bytes/s, 0 = unlimited */
	uint64_t avail_switchover_bandwidth;    /* bytes/s, 0 = measured */
	uint32_t downtime_limit_ms;
	enum compress_kind compress;
	uint32_t compress_level;
	bool auto_converge;
	uint32_t throttle_initial;              /* percent */
	uint32_t throttle_increment;
	uint32_t throttle_max;
	uint32_t timeout_s;                     /* 0 = none */
	enum timeout_action timeout_action;
	bool verify;
	enum postcopy_policy postcopy;
};

/* params.c: defaults, checking and merging, the message form */
void params_defaults(struct mig_params *p);
/* Check p and apply its set fields to out; -errno with err on refusal
 * (out untouched). */
int params_merge(const Tern__Migd__Params *p, struct mig_params *out,
		 char *err, size_t len);
/* A whole set of parameters, as params_to_proto gave it (a job's own, a
 * saved set of defaults): the built-in defaults merged with p, whose 0
 * in max_bandwidth, avail_switchover_bandwidth and timeout_s is taken as
 * it is; -errno with err on refusal (out untouched). */
int params_whole(const Tern__Migd__Params *p, struct mig_params *out,
		 char *err, size_t len);
void params_to_proto(const struct mig_params *p, Tern__Migd__Params *out);
/* The fields named in clear (by their proto names) set to 0, where 0
 * has a meaning (unlimited, measured, none; timeout_s also puts
 * timeout_action back to its default unless p names one), then
 * params_merge of p; -errno with err on refusal (out untouched). */
int params_update(const Tern__Migd__Params *p, char *const *clear,
		  size_t n_clear, struct mig_params *out, char *err, size_t len);
/* p and clear name something, and only what a running job can change
 * (Tune), past its postcopy switch the cap only; -EINVAL with err if
 * not. */
int params_check_live(const Tern__Migd__Params *p, char *const *clear,
		      size_t n_clear, bool postcopy, char *err, size_t len);
/* The log line of a tune (vm: migd's, NULL: a worker's), the limits
 * named as migctl's options. */
void params_log_tuned(const char *vm, uint64_t max_bw, uint64_t avail_bw,
		      uint32_t limit_ms);

/* Everything a worker needs; filled by the parent before fork. */
struct job_spec {
	enum job_role role;
	char vm[65];
	char peer[PATH_MAX];            /* source: destination URI; dest: listen URI */
	uint8_t id[STREAM_ID_LEN];      /* source: fresh; dest: learnt from the hello */
	uint8_t token[STREAM_TOKEN_LEN];
	bool token_given;               /* dest: Incoming's caller chose it */
	struct mig_params params;
	char rundir[PATH_MAX];
	int listen_fd;                  /* dest: bound by the parent; else -1 */
	dev_t listen_dev;               /* dest on unix: the socket file bound, */
	ino_t listen_ino;               /* the only one its end unlinks */
	bool realtime;                  /* the page server in SCHED_FIFO (rtspawn) */
	int nice;                       /* the worker's nice value */
	uint64_t pause_fixed_us;        /* source: the fixed part of the recent
					 * pauses here (job_pause_fixed_us) */
};

/* ---- parent ------------------------------------------------------------ */

#define MIGD_MAX_WAITERS 64         /* deferred calls per job */
#define MIGD_MAX_DEFERRED 8         /* callers of one worker's answer */
#define MIGD_SHUTDOWN_MS 10000      /* workers get this long to end on SIGTERM */

struct event;
struct event_base;
struct lookup;
struct tomb;
struct uri;

/* A caller waiting for a job's end (Migrate/Status/Cancel with wait). */
struct job_waiter {
	struct rpc_call *call;
	bool events;                    /* forward "status" events to it */
};

/* What the parent does at a job's vmm once the worker has ended. */
enum job_tidy {
	JOB_TIDY_NONE,
	JOB_TIDY_SOURCE,                /* logging, throttle off; resume? */
	JOB_TIDY_DEST,                  /* discard what was received */
};

/* How a job is cancelled (job_cancel): its worker tells them apart. */
enum job_cancel {
	JOB_CANCEL_PLAIN,               /* migctl cancel: never past the switch */
	JOB_CANCEL_ABANDON,             /* cancel --force of a paused postcopy */
	JOB_CANCEL_SHUTDOWN,            /* migd's end: SIGTERM */
};

/*
 * One job, seen from the parent: created running (a worker exists), it
 * becomes finished once the worker is reaped and its vmm tidied, and then
 * moves to the history.  Only the event loop touches it, but for the
 * clean-up thread's own fields below.
 */
struct job {
	struct job *next;               /* in migd.running or migd.history */
	struct job_spec spec;
	pid_t pid;                      /* the worker; 0 once reaped */
	int pidfd;                      /* an adopted worker's (no child of
					 * ours: no SIGCHLD), else -1 */
	struct event *ev_pid;           /* ... readable once it ended */
	bool adopted;                   /* an earlier migd started the job */
	bool left;                      /* migd quits and leaves the job (past
					 * its postcopy switch) to the next */
	bool lost;                      /* restored from a job running when
					 * an earlier migd ended (statefile.c) */
	pid_t orphan_pid;               /* an orphan's worker, as the file
					 * saved it (0: not known) */
	bool orphan_alive;              /* ... which ran on past the grace */
	struct rpc_conn *conn;          /* the status socketpair; NULL at EOF */
	struct event *ev;               /* reads conn */
	Tern__Migd__JobStatus *last;    /* the worker's latest report, or NULL */
	enum job_state state;           /* what callers see */
	bool cancel_requested;          /* Cancel (or shutdown) was sent */
	enum job_cancel cancel_how;     /* ... this way */
	bool finished;
	char error[768];                /* the parent's own verdict, if any */
	uint64_t started_unix_ms;
	uint64_t finished_unix_ms;
	uint64_t finished_ns;           /* now_ns() then: the pause samples' age */
	struct job_waiter waiters[MIGD_MAX_WAITERS];
	size_t nwaiters;
	struct rpc_call *starting;      /* Incoming's or a detached Migrate's
					 * call, until answered */
	struct {
		struct rpc_call *call;  /* a call its worker answers later: a
					 * destination's Recover with a new
					 * address (once it listens there), a
					 * source's Postcopy (once the
					 * destination said yes or no: each
					 * Postcopy meanwhile hears that) */
		bool wait;              /* ... then it waits for the end */
	} deferred[MIGD_MAX_DEFERRED];
	unsigned int ndeferred;
	bool answered;                  /* the worker looked at its vmm ... */
	int answer_err;                 /* ... and found it fit (incoming, or
					 * not a stale copy: 0), or
					 * not (a positive errno) */
	bool refusal_heard;             /* ... not, and its caller was told:
					 * no job to remember (jobend.c) */
	/* storage for the status built by job_status() */
	char idhex[2 * STREAM_ID_LEN + 1];
	Tern__Migd__Params params;
	/* The clean-up at the vmm once the worker has ended, in a thread
	 * of its own (jobend.c); the job stays running until it is done. */
	struct bgwork tidy;
	struct migd *m;
	enum job_tidy tidy_kind;
	bool tidy_died;                 /* the worker ended without a verdict */
	enum job_state tidy_state;      /* the job's, once tidied */
	bool tidy_resume;               /* the source VM may be resumed */
	bool tidy_quiet;                /* the verdict is already in error */
	const char *tidy_kept;          /* why a paused source stays so */
	char tidy_moved[256];           /* the switch stood: where the guest
					 * may run (the vmm is marked) */
	bool tidy_moved_postcopy;       /* ... by a postcopy: not stale */
	uint32_t tidy_throttle;         /* the source's, before the job */
	int tidy_r;                     /* the thread's: its result ... */
	char tidy_msg[512];             /* ... and what it did */
};

struct migd {
	struct event_base *base;
	struct rpc_server *server;
	char rundir[PATH_MAX];
	bool realtime;                  /* not --no-realtime */
	int worker_nice;                /* --worker-nice */
	struct mig_params defaults;     /* SetParams/GetParams */
	struct job *running;            /* newest first */
	struct job *history;            /* newest first, at most MIGD_HISTORY */
	size_t nhistory;
	uint64_t pause_fixed_forget_ns; /* SetParams reset: jobs finished before
					 * this teach no pause (now_ns() time) */
	bool quitting;                  /* SIGTERM: no new jobs */
	bool state_unsaved;             /* the last migd_state_save failed */
	uint64_t state_saved_ns;        /* when migd_state_save last wrote */
	struct job *orphans;            /* postcopy jobs that ran when an
					 * earlier migd ended, not back yet */
	uint32_t orphans_pid;           /* ... that migd's pid */
	struct event *ev_orphans;       /* ... given up on MIGD_ADOPT_GRACE_MS
					 * after start-up (statefile.c) */
	uint64_t started_ns;            /* now_ns() at start-up */
	bool state_lost;                /* migd.state did not read: what an
					 * earlier migd left is not known */
	struct event *ev_shutdown;      /* the bound on waiting for workers */
	struct bgwork_set tidying;      /* jobs' clean-ups at their vmms */
	struct bgwork_set lookups_work; /* Incoming's host names (control.c) */
	struct lookup *lookups;         /* ... under way */
	struct tomb *tombs;             /* ended jobs' addresses, answered
					 * (tombstone.c), newest first */
	unsigned int ntombs;
	struct tomb_kept *tombs_kept;   /* saved ones that could not listen
					 * again: kept in the file */
	unsigned int ntombs_kept;
};

/* main.c: start-up, signals, shutdown */
void migd_check_quit(struct migd *m);
/* Within MIGD_ADOPT_GRACE_MS of start-up, with migd.state unread: a
 * worker an earlier migd left may not have asked us to adopt it yet
 * (adopt.c tries once a second, and at once when migd.sock appears;
 * its call takes up to 5 s).  (One the file names is an orphan.) */
#define MIGD_ADOPT_GRACE_MS 6000
bool migd_just_started(const struct migd *m);

/* tombstone.c: a destination job that can never recover goes on
 * answering its source on listen (its migration idhex, its token) with
 * err: EOWNERDEAD, its vmm went; ECANCELED, cancelled with --force */
int tombstone_add(struct migd *m, const char *vm, const char *listen,
		  const char *idhex, const uint8_t *token, int err,
		  uint64_t expires_unix_ms);
/* ... and stops once its address (its port, its path) is wanted again */
void tombstone_release(struct migd *m, const struct uri *u);
void tombstones_free_all(struct migd *m);
/* For migd.state: up to max of them into out (their ids' text in ids),
 * newest first; their number.  Valid while they are. */
size_t tombstones_save(const struct migd *m, Tern__Migd__SavedTombstone *out,
		       char (*ids)[2 * STREAM_ID_LEN + 1], size_t max);
/* Those a state file kept, each while its day lasts. */
void tombstones_restore(struct migd *m, Tern__Migd__SavedTombstone **saved,
			size_t n);
#define TOMB_MAX 16

/* jobstate.c: states, and the changes each may make */
const char *job_state_name(enum job_state st);
const char *job_state_text(enum job_state st, const char *error, char *buf,
			   size_t len);
bool job_state_final(enum job_state st);
bool job_state_may_change(enum job_state from, enum job_state to);

/* history.c: finished jobs, newest end first.  Adds j (by_time: where
 * its finished_unix_ms puts it, else first) and returns the job it
 * pushed out of the bounds, for the caller to free, or NULL. */
struct job *history_add(struct migd *m, struct job *j, bool by_time);

/* jobs.c: the job table, workers, their reports and commands */
const char *job_role_name(enum job_role role);
/* Fork a worker for spec (its listen_fd is closed in the parent). */
int job_start(struct migd *m, const struct job_spec *spec, struct job **ret);
/* The part of recent completed outgoing pauses that did not depend on
 * pages, in us (their lower median, with the first guess): a new source
 * job counts it, unless it is at or above the job's limit. */
uint64_t job_pause_fixed_us(const struct migd *m);
/* Before any job measured it (source_precopy.c, jobs.c). */
#define PAUSE_FIXED_FIRST_US 5000
/* The VM's running job, else its latest finished one, else NULL. */
struct job *job_find(struct migd *m, const char *vm, bool running_only);
/* The VM's job of migration id (hex, either case), running or finished,
 * or NULL. */
struct job *job_find_id(struct migd *m, const char *vm, const char *id);
/* A shallow status (points into job) for replies and events. */
void job_status(struct job *j, Tern__Migd__JobStatus *ret);
/* Reply to call when the job ends; forward events meanwhile if asked.
 * EUSERS when MIGD_MAX_WAITERS wait already. */
int job_add_waiter(struct job *j, struct rpc_call *call);
/* Before a method acts on j for a caller who would wait for its end: 0,
 * or EUSERS said to call (nothing done) when no waiter could be added. */
int job_wait_room(struct job *j, struct rpc_call *call, bool wait);
/* Reply to Incoming (or a detached Migrate) once the worker found its
 * vmm incoming (or fit to migrate), or with the job's error once it
 * ended without; returns RPC_DEFERRED. */
int job_defer_start(struct job *j, struct rpc_call *call);
/* Reply to a call once the worker answers it (j->deferred: a
 * destination's Recover with a new address, a source's Postcopy), or
 * with why not; with wait, at the job's end.  Returns RPC_DEFERRED, or
 * EBUSY said to call when MIGD_MAX_DEFERRED wait already. */
int job_defer_answer(struct job *j, struct rpc_call *call, bool wait);
/* Drop the deferred calls whose callers left (their --timeout). */
void job_deferred_tidy(struct job *j);
/* An id in hex that names no migration yet (empty or all zeroes: a
 * destination learns its id from the source). */
bool job_id_unknown(const char *hex);
/* hex as a migration id (2 * STREAM_ID_LEN hex digits, not all zero)
 * into out, or -EINVAL. */
int job_id_parse(const char *hex, uint8_t *out);
/* Read the worker's reports from fd (taken) in the event loop. */
int job_watch_link(struct migd *m, struct job *j, int fd);
/* Signal the worker (by its pidfd if adopted): 0 or -errno. */
int job_signal(struct job *j, int sig);
/* Cancel the job, told how; it ends when the worker reports or dies. */
int job_cancel(struct job *j, enum job_cancel how);
/* The guest runs on the destination while pages remain on the source. */
bool job_in_postcopy(const struct job *j);
/* A job whose outcome is known but which is not over (its worker ending,
 * or migd cleaning up at its vmm): what is left, in words; else NULL. */
const char *job_ending(const struct job *j);
/* Send the worker a command (worker.c reads it): "recover", "pause",
 * "postcopy", "tune". */
int job_command(struct job *j, const char *name, const ProtobufCMessage *arg);
/* The steps of a job's end (jobend.c) taken from here: its callers
 * told where it stands (job_notify), Incoming's or Migrate's reply and
 * Recover's given, the worker's last reports read (job_read: up to max,
 * 0 to keep reading, <0 at EOF or error), its status link closed. */
void job_notify(struct job *j);
void job_answer_start(struct job *j);
void job_answer_deferred(struct job *j, int err, const char *msg);
int job_read(struct job *j, unsigned int max);
void job_close_conn(struct job *j);

/* jobend.c: a job's end (its verdict, the clean-up at its vmm, into the
 * history), and migd's */
/* The worker has ended (wstatus NULL: adopted, no wait status): its
 * last reports, the verdict, the clean-up at its vmm. */
void job_finish(struct migd *m, struct job *j, const int *wstatus);
/* SIGCHLD: reap workers and finish their jobs. */
void jobs_reap(struct migd *m);
/* Shutdown: SIGTERM (or SIGKILL when force) every running worker but
 * those whose job outlives migd. */
void jobs_signal_all(struct migd *m, bool force);
void jobs_free_all(struct migd *m);
/* A finished job (out of running, if there) into the history: at its
 * front, or by_time by its end's time (history.c); the history then
 * drops what its bounds do not keep. */
void job_history_add(struct migd *m, struct job *j, bool by_time);
/* A job of spec's VM and role has come back (adopted, or its end
 * learnt): the history forgets what a lost record guessed of it (one of
 * the same id, or of none known then). */
void job_forget_lost(struct migd *m, const struct job_spec *spec);

/* jobadopt.c: jobs that outlive their migd, and those an earlier migd
 * left (Migd.Adopt) */
/* Past its postcopy switch, as the worker last said: the job goes on
 * without migd (its stop leaves it), and the next migd adopts it. */
bool job_outlives_migd(const struct job *j);
/* Shutdown: whether a running job still holds migd; a job that
 * outlives it is said to go on, once. */
bool jobs_hold_quit(struct migd *m);
/* A running job for spec, of worker pid (not our child), its status
 * link fd (taken in any case) and its last status js (copied). */
int job_adopt(struct migd *m, const struct job_spec *spec, pid_t pid, int fd,
	      const Tern__Migd__JobStatus *js, uint64_t started_unix_ms,
	      struct job **ret);
/* A copy of js that a job owns (j->last is freed as unpacked), or NULL. */
Tern__Migd__JobStatus *job_status_copy(const Tern__Migd__JobStatus *js);
/* A job known by its status alone (a worker no child of ours, or gone):
 * spec's, with a copy of js as its last report, in js's state, in no
 * list; NULL without memory. */
struct job *job_from_status(struct migd *m, const struct job_spec *spec,
			    const Tern__Migd__JobStatus *js);
/* The job of spec's migration (id) and role in list (running or
 * history), or NULL. */
struct job *job_find_migration(struct job *list, const struct job_spec *spec);
/* This migd only guessed at the end of spec's job (its migd ended while
 * it ran: a lost record, in the history or among the orphans), or took
 * it from its worker already. */
bool job_end_awaited(struct migd *m, const struct job_spec *spec);
/* A job for spec that ended while no migd ran, as its worker pid says in
 * js (final, copied): into the history, as if migd had seen its end,
 * once; -EBUSY if another worker runs that job here. */
int job_adopt_ended(struct migd *m, const struct job_spec *spec, pid_t pid,
		    const Tern__Migd__JobStatus *js, uint64_t started_unix_ms,
		    struct job **ret);

/* statefile.c: RUNDIR/migd.state, the defaults, the history and the
 * running jobs across migd's restarts.  Load before the service starts (a file that does not
 * check is set aside, said in the log); save after each change (a
 * failure is logged, once until a save works again). */
void migd_state_load(struct migd *m);
/* A postcopy job of vm (of that id, if one is given) that ran when an
 * earlier migd ended and has not come back to this one yet, or NULL. */
struct job *migd_state_orphan(struct migd *m, const char *vm, const char *id);
/* Why orphan is not back yet, for Status and List: in its first seconds
 * it may be on its way; after them, its worker still runs (stopped?). */
const char *migd_orphan_why(const struct migd *m, const struct job *orphan,
			    char *buf, size_t len);
void migd_state_save(struct migd *m);

/* control.c: the tern.migd.Migd service */
int control_start(struct migd *m);
void control_stop(struct migd *m);

/* ---- worker --------------------------------------------------------------- */

#define PC_HIST_BUCKETS 24              /* fault latency: [2^i, 2^(i+1)) us */

/* pace.c, too: a channel's throughput over the last second, from
 * samples of its byte count (the reporter thread's, one per
 * MIGD_STATUS_INTERVAL_MS, and one at the job's end), so that a paced channel's bursts average
 * out as they do on the wire. */
#define RATE_WINDOW_NS 1000000000ULL
#define RATE_SAMPLES (RATE_WINDOW_NS / (MIGD_STATUS_INTERVAL_MS * 1000000ULL) + 3)
struct rate_window {
	uint64_t t[RATE_SAMPLES];       /* ns */
	uint64_t bytes[RATE_SAMPLES];   /* the count at t */
	unsigned int head;              /* where the next sample goes */
	unsigned int n;                 /* samples kept */
};
/* The first sample: bytes (usually 0) at now. */
void rate_start(struct rate_window *rw, uint64_t now, uint64_t bytes);
/* Add a sample; bytes/s from the newest sample at least RATE_WINDOW_NS
 * before now (from the oldest kept while there is none) to this one. */
uint64_t rate_sample(struct rate_window *rw, uint64_t now, uint64_t bytes);

/* Counters the channel threads update with relaxed atomics. */
struct chan_stats {
	uint64_t bytes;
	uint64_t pages;
	uint64_t zero_pages;
	uint64_t zstd_pages;            /* sent (received) compressed */
	uint64_t raw_bytes;             /* page bytes before compression */
	uint64_t throughput;            /* bytes/s over the last second,
					 * written with the worker's lock
					 * (worker_sample_rates_locked) */
};

/* Commands from the parent to a worker, on the status socketpair
 * (tern.rpc.Frame events "recover" with a RecoverRequest, "pause", and
 * "postcopy", which only sets worker_postcopy_requested, "abandon",
 * a cancel that worker_abandoned tells from migd's end, and "tune" with
 * the job's Params in full, checked: the worker takes max_bandwidth,
 * avail_switchover_bandwidth and downtime_limit_ms from it as they are,
 * 0 included). */
enum worker_cmd {
	WORKER_CMD_NONE,
	WORKER_CMD_RECOVER,             /* cmd_arg: the address (source: dial,
					 * destination: listen; "" = keep) */
	WORKER_CMD_PAUSE,
	WORKER_CMD_MAX
};

/* Guest RAM as the worker sees it: the vmm's memfds, mapped shared. */
#define RAM_HUGE_PAGE (2u << 20)        /* vmm --hugepages */

struct ram_view {
	unsigned int n;
	struct {
		uint64_t gpa;
		uint64_t size;
		uint8_t *host;
		int fd;
	} r[STREAM_MAX_REGIONS];
	uint64_t pages;                 /* across regions */
	uint64_t first_page[STREAM_MAX_REGIONS];
	bool huge;                      /* hugetlb memfds (vmm --hugepages):
					 * all data, no 4 KiB punch or
					 * placement, no postcopy */
};

/*
 * First-time pages on the destination (place.c): UFFDIO_COPY into a
 * second mapping of each memfd that nothing touches, or pwrite() where
 * userfaultfd cannot be had (uffd < 0).
 */
struct ram_place {
	int uffd;
	unsigned int n;
	uint8_t *at[STREAM_MAX_REGIONS];
};

/* One job in its worker process.  lock guards the fields marked (L);
 * (A) fields are atomics; (M) belong to the job's main thread. */
struct worker {
	const struct job_spec *spec;
	pthread_mutex_t lock;
	enum job_state state;           /* (L) */
	char error[768];                /* (L) the first failure wins (the
					 * parent's is as long) */
	bool error_is_note;             /* (L) error only notes a refusal: any
					 * failure replaces it */
	bool peer_heard;                /* (L) the peer's end of the job was
					 * read (worker_note_refuse) */
	bool peer_guessed;              /* (L) error guesses at a close that
					 * came without a word (peer_gone) */
	uint64_t total_bytes;           /* (L) */
	struct mig_params source_params; /* (L) destination: the source job's,
					  * from its hello, for the status */
	bool has_source_params;         /* (L) they came */
	uint64_t remaining_bytes;       /* (L) after the last sync */
	uint64_t round_pages;           /* (L) pages the current round sends,
					 * and those a mid-round sync found */
	uint64_t round_base;            /* (L) pages sent before it began */
	uint64_t rounds;                /* (L) */
	uint64_t dirty_rate;            /* (L) */
	uint64_t bandwidth;             /* (L) */
	uint64_t expected_downtime_ms;  /* (L) */
	uint64_t pause_fixed_us;        /* (L) source: counted in it, then measured */
	uint64_t downtime_us;           /* (L) final, stop to resumed */
	uint64_t resume_ms;             /* (L) */
	uint64_t setup_ms;              /* (L) */
	const char *setup_step;         /* (L) what set-up does now, for the
					 * words of a timeout in it */
	bool switched;                  /* (L) */
	bool go_taken;                  /* (L) destination: Go came and the
					 * guest resumes here: a cancel is
					 * dropped from then on, as after the
					 * switch */
	bool source_was_running;        /* (L) the VM ran when the job began;
					 * from the job's Stop on, when the
					 * job stopped it (source_stop) */
	bool guest_paused;              /* (L) the guest was paused when the
					 * job stopped it (source), or Go said
					 * so (destination): it stays paused
					 * on the destination */
	bool source_stopped;            /* (L) the job asked its vmm to Stop */
	bool unrecoverable;             /* (L) postcopy can never recover
					 * (worker_set_unrecoverable) */
	char listen[PATH_MAX];          /* (L) */
	char peer[PATH_MAX];            /* (L) source: the address a recovery
					 * dialled last; empty: the spec's */
	uint8_t id[STREAM_ID_LEN];      /* (L) */
	unsigned int nchannels;         /* (A) set once at set-up; the
					 * reporter thread reads it */
	struct chan_stats chan[STREAM_MAX_CHANNELS]; /* (A) */
	struct rate_window rate[STREAM_MAX_CHANNELS]; /* (L) samples of each
					 * channel's bytes, for its throughput */
	unsigned int rate_seen;         /* (L) channels sampled so far */
	uint64_t rate_prev_ns;          /* (L) the last sample's time */
	uint64_t seen_bytes[STREAM_MAX_CHANNELS]; /* (L) each channel's
					 * bytes, as last sampled, ... */
	uint64_t moved_ns[STREAM_MAX_CHANNELS]; /* (L) ... and when they last
					 * grew */
	uint64_t transferred_bytes;     /* (A) */
	uint64_t skipped_pages;         /* (A) */
	uint64_t started_ns;            /* (M) */
	uint64_t started_unix_ms;       /* (M) */
	int status_fd;                  /* reporter; the socketpair to the parent */
	void (*abort_fn)(struct worker *, void *); /* (L) on cancel, once */
	void *abort_arg;                /* (L) */
	bool abort_done;                /* (L) */
	bool failed;                    /* (L) worker_fail was called */
	uint32_t throttle;              /* (L) percent asked of the vmm now */
	uint32_t throttle_before;       /* (L) the vmm's when the job began */
	char verified[160];             /* (L) "ok", or what differed */
	char no_postcopy[320];          /* (L) source: why postcopy cannot be
					 * (worker_no_postcopy) */
	bool postcopy;                  /* (L) switching or switched to postcopy */
	Tern__Migd__PostcopyStats pc;   /* (L) its figures (pc_hist holds the
					 * histogram; pc.latency_hist unused) */
	uint64_t pc_hist[PC_HIST_BUCKETS]; /* (L) */
	Tern__Migd__PostcopyStats pc_before;   /* (L) destination: pc as the
						* sessions of faultds that
						* stopped left it (faultlink.c) */
	uint64_t pc_hist_before[PC_HIST_BUCKETS]; /* (L) */
	/* Source in postcopy: the pages the push still has to send, for
	 * the status (worker_fill).  source_pc_base sets the base: pages
	 * left when the push had sent pc_base_pushed pages and the page
	 * server had taken pc_base_taken off the push's bitmap; each page
	 * sent or taken since is one fewer.  (A page taken by either is
	 * taken once: the bitmap's bits are cleared atomically.) */
	bool pc_counting;               /* (L) the base is set */
	uint64_t pc_base_left;          /* (L) */
	uint64_t pc_base_pushed;        /* (L) */
	uint64_t pc_base_taken;         /* (L) */
	uint64_t pc_requests;           /* (A) source: page requests answered */
	uint64_t pc_served;             /* (A) pages sent on the page link */
	uint64_t pc_taken;              /* (A) ... that the push had still to send
					 * (or had queued, and the channels then
					 * dropped: worker_count_dropped) */
	uint64_t pc_pushed;             /* (A) pages the push sent */
	uint64_t pc_link_seen;          /* (L) destination: faultd's page link
					 * bytes, as last added to
					 * transferred_bytes */
	enum worker_cmd cmd;            /* (L) the parent's latest command */
	char cmd_arg[PATH_MAX];         /* (L) its address, if any */
	pthread_cond_t cmd_cond;        /* signalled with lock when cmd changes */
	pthread_mutex_t report_lock;    /* one report at a time on status_fd */
	struct mig_params params;       /* (L) the job's: spec->params, then
					 * each "tune" (worker_params) */
	uint64_t chan_rate;             /* (A) bytes/s a ram channel may send,
					 * 0 = no cap: params.max_bandwidth
					 * over the channels; read per packet */
	int chan_wake[STREAM_MAX_CHANNELS]; /* (L) each running ram channel's
					 * wake_fd, -1 for none: a tune writes
					 * them (worker_set_chan_wake) */
	struct ram_view ram;            /* (M) the guest's RAM, mapped, and a */
	struct ram_place place;         /* (M) destination's second mapping and
					 * uffd, once the job ended
					 * (worker_keep_ram) */
};

/* worker.c: runs in the forked child; never returns to the parent's loop */
int worker_main(const struct job_spec *spec, int status_fd);
bool worker_cancelled(void);
bool worker_abandoned(void);
/* No recovery of this postcopy can ever succeed (faultd's session is gone
 * on the destination, or the destination said so): the status says so,
 * and recover --wait ends on it.  For good. */
void worker_set_unrecoverable(struct worker *w);
bool worker_unrecoverable(struct worker *w);
/* The job has no migd now: its status link ended (or the migd that
 * forked it died), and no migd has adopted it since (adopt.c). */
bool worker_orphaned(void);
/* Past a postcopy switch (postcopy-active, -paused or -recover): the job
 * outlives its migd, and the next one adopts it. */
bool worker_in_postcopy_locked(const struct worker *w);
/* The cancel taken was migd's end (its stop or death), no operator's. */
bool worker_migd_ended(void);
bool worker_past_switch_locked(const struct worker *w);
/* Migd.Postcopy (the parent's "postcopy" command) or the timeout asked
 * to switch to postcopy. */
bool worker_postcopy_requested(void);
/* The source's job cannot switch to postcopy, for the reason why (once
 * known: its own or the destination's RAM in huge pages).  A request
 * that came before is dropped; later ones are refused by migd (the
 * status's no_postcopy) or dropped with a warning. */
void worker_no_postcopy(struct worker *w, const char *why);
/* The destination refused a switch to postcopy, for the reason why: the
 * request is dropped and the job goes on in precopy, saying so (a note
 * in its error, which a later switch or worker_clear_note drops); past
 * a timeout whose action was the switch, the job fails instead.  0, or
 * that failure. */
int worker_postcopy_refused(struct worker *w, const char *why);
/* Migd's Postcopy call, if it waits (a request made in precopy), has its
 * answer: err 0 as the switch begins, else err and msg (why not). */
void worker_postcopy_answer(struct worker *w, int err, const char *msg);
void worker_clear_note(struct worker *w);
void worker_set_state(struct worker *w, enum job_state st);
/* The job's parameters now (a "tune" changes some during the job). */
void worker_params(struct worker *w, struct mig_params *ret);
/* Record the job's failure (the first one wins); returns -err. */
int worker_fail(struct worker *w, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The same, for a link that the peer closed or reset (err EPIPE,
 * ECONNRESET or EBADMSG): the peer's word that may come after it, of a
 * pause on request there, takes its place (worker_fail_said). */
int worker_fail_link(struct worker *w, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The peer's word on why it ended: the job's error if it has none, or
 * has only a link's close (worker_fail_link). */
int worker_fail_said(struct worker *w, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
bool worker_failed(struct worker *w);
bool worker_aborted(struct worker *w);
/* The peer's Refuse said that its job was cancelled (Refuse.cancelled):
 * that is the cause, whatever failed here first (the connections it
 * closed), and the job's error becomes "WHO cancelled the migration"
 * (migd_ended, Refuse.migd_ended: "WHO's migd stopped or died, ...").
 * Returns -ECANCELED. */
int worker_fail_cancelled(struct worker *w, const char *who, bool migd_ended);
/* After a failure: if the peer's next message on fd, within ms, is a
 * Refuse, "WHO said: why" is added to the job's error (or, if it says
 * the peer's job was cancelled, worker_fail_cancelled); if the peer
 * closed or reset the connection instead, that is added, and what it
 * means (its worker died, as a rule). */
void worker_note_refuse(struct worker *w, int fd, unsigned int ms, const char *who);
/* m, read from the peer on the main connection, is marked if it is a
 * Refuse: the peer's word on the job's end. */
void worker_heard(struct worker *w, const Tern__Stream__StreamMsg *m);
/* Why reading WHO's next message on the main connection failed with r:
 * what a close (-EPIPE) or reset (-ECONNRESET) before any word of its
 * means (its worker died, as a rule), said once; else strerror. */
const char *worker_peer_why(struct worker *w, int r, const char *who);
/* Drop what follows the first `upto` in the error text (advice a later
 * step made moot); the text stays as it is without one. */
void worker_error_cut(struct worker *w, const char *upto);
/* A note in the error text of a job that goes on (what a failure then
 * replaces), logged and reported, unless the job failed already. */
void worker_set_note(struct worker *w, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Append "; what" to the error text (what the clean-up did). */
void worker_note(struct worker *w, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* What cancelling must do to unblock the job (shut its sockets down);
 * run once, under w->lock, by the thread that takes the cancel (the
 * command thread for migd's commands, the reporter for SIGTERM or the
 * timeout), or by this if a cancel was taken before there was one. */
void worker_set_abort(struct worker *w, void (*fn)(struct worker *, void *),
		      void *arg);
/* Ram channel chan's eventfd, which each tune writes (-1: none now). */
void worker_set_chan_wake(struct worker *w, unsigned int chan, int fd);
/* A destination leaves postcopy-paused for st; a Recover that came
 * meanwhile is answered, not kept for a later pause. */
void worker_leave_pause(struct worker *w, enum job_state st);
/* Postcopy-paused: wait up to ms for a command from the parent (or a
 * cancel); the command taken, or WORKER_CMD_NONE. */
enum worker_cmd worker_wait_cmd(struct worker *w, unsigned int ms, char *arg,
				size_t len);
/* Recovered: the job's failure is history (its text stays in the log). */
void worker_clear_failure(struct worker *w);
/* A recovery's new links: that, and nothing heard of the peer on them
 * yet (a close without a word is news again, peer_gone). */
void worker_new_links(struct worker *w);

/* The role's mappings of the guest's RAM (place: a destination's, or
 * NULL), as its job ends: the worker's exit unmaps them, after the
 * final report (worker_offer_end first, if it waits). */
void worker_keep_ram(struct worker *w, struct ram_view *v,
		     struct ram_place *place);
/* A migd adopted the job: fd is its new status link; acks: that migd
 * says "taken" of a final report (its Adopt reply's final_ack). */
void worker_take_migd(struct worker *w, int fd, bool acks);
/* After the final report, on a job past a postcopy switch: whether the
 * migd has it.  Waits (up to WORKER_END_ACK_MS) for its "taken", or for
 * the status link's end, which says no; a migd that never says "taken"
 * (an older one) is trusted to read it when it reaps the worker. */
#define WORKER_END_ACK_MS 10000
bool worker_end_taken(struct worker *w);
/* The job was past its postcopy switch (w->lock held). */
bool worker_was_postcopy_locked(const struct worker *w);

/* worker_status.c: the job's figures and its reports to migd.  The
 * counters the ram channels and the page server add to: */
void worker_count(struct worker *w, unsigned int chan, uint64_t bytes,
		  uint64_t pages, uint64_t zero_pages);
/* Pages the first nchan ram channels have counted so far. */
uint64_t worker_pages_counted(struct worker *w, unsigned int nchan);
void worker_count_zstd(struct worker *w, unsigned int chan, uint64_t pages,
		       uint64_t raw_bytes);
/* The page server answered a request: pages sent, taken of them off the
 * push's bitmap, bytes on the wire. */
/* A ram channel dropped pages of the postcopy push that the page server
 * had sent meanwhile. */
void worker_count_dropped(struct worker *w, uint64_t pages);
void worker_count_served(struct worker *w, uint64_t pages, uint64_t taken,
			 uint64_t bytes);
/* Each channel's throughput over the last second, from a sample of its
 * bytes at now (w->lock held): the reporter's, and the job's last. */
void worker_sample_rates_locked(struct worker *w, uint64_t now);
/* The job's status as a packed JobStatus (free *ret). */
/* The strings of a JobStatus that may quote a peer, each as text (its
 * \xNN form in these buffers when it is not): the worker's reports and
 * every status migd keeps (worker_status.c). */
struct status_text {
	char error[4 * sizeof(((struct worker *)0)->error)];
	char verified[4 * sizeof(((struct worker *)0)->verified)];
	char no_postcopy[4 * sizeof(((struct worker *)0)->no_postcopy)];
};
void status_text_shown(Tern__Migd__JobStatus *js, struct status_text *t);
int worker_status_pack(struct worker *w, uint8_t **ret, size_t *ret_len);
/* Send the job's status to migd: 0, or -errno when no migd took it. */
int worker_report(struct worker *w);
/* A destination's word for a deferred reply (jobs.c): first on its vmm,
 * for Incoming: 0, it can take the guest, or -errno (the reason in the
 * job's error, msg NULL); then after each recover --listen: 0, it
 * listens there (reported first), or -errno and why in msg. */
#define WORKER_ANSWER_MAX 512           /* bytes of msg told */
void worker_answer(struct worker *w, int err, const char *msg);

/* adopt.c: a worker whose migd ended, in its command thread: once the
 * job is past a postcopy switch, asks the migd on RUNDIR/migd.sock
 * about once a second to adopt it (Migd.Adopt), and takes the new
 * status link (worker_take_migd): 0; or -1 once the job has ended. */
int worker_adopt_wait(struct worker *w);
/* The worker's last step, in its main thread, once the final report was
 * sent (reported: worker_report's return): a postcopy job that ended
 * while no migd had it, or whose migd's link ended before it took the
 * report (worker_end_taken), lets go of all it holds, then offers its
 * final report to the next migd (Migd.Adopt) for up to
 * WORKER_END_WAIT_S (a test's fault point, worker-end-wait-short:
 * WORKER_END_WAIT_SHORT_S). */
#define WORKER_END_WAIT_S 300
#define WORKER_END_WAIT_SHORT_S 3
void worker_offer_end(struct worker *w, int reported);

/* 0, or -errno and a place that falls back to pwrite(). */
int ram_place_open(struct ram_place *p, const struct ram_view *v);
void ram_place_close(struct ram_place *p, const struct ram_view *v);
/* Page i of src to off[i] of region: 0 or -errno. */
int ram_place_pages(const struct ram_place *p, const struct ram_view *v,
		    unsigned int region, const uint64_t *off, const uint8_t *src,
		    uint32_t n);

/*
 * A second thread that places pieces of a ram channel's packets beside
 * it (place.c), for jobs with fewer channels than CPUs.
 */
struct place_helper {
	pthread_t thread;
	bool started;
	pthread_mutex_t lock;
	pthread_cond_t work;            /* a packet to share, or stop */
	pthread_cond_t idle;            /* the helper's piece is done */
	bool stop;
	/* the packet being placed (under lock) */
	const struct ram_place *p;
	const struct ram_view *v;
	unsigned int region;
	const uint64_t *off;
	const uint8_t *src;
	uint32_t n, next;               /* pages; the next page not taken */
	unsigned int busy;              /* pieces being placed */
	int err;                        /* the first piece that failed */
	uint64_t helped;                /* pages the helper placed (for tests) */
};

int place_helper_start(struct place_helper *h);
void place_helper_stop(struct place_helper *h);
/* ram_place_pages, shared with h (not started: alone). */
int place_helper_pages(struct place_helper *h, const struct ram_place *p,
		       const struct ram_view *v, unsigned int region,
		       const uint64_t *off, const uint8_t *src, uint32_t n);

/* Pages of one region for one packet: what the source queues to a channel. */
struct batch {
	uint16_t region;
	bool end;                       /* send the channel's end packet */
	bool marker;                    /* send the postcopy marker packet */
	bool nop;                       /* (the thread's own) keepalive */
	uint32_t npages;
	uint64_t off[STREAM_MAX_BATCH]; /* byte offsets in the region */
};

/* pace.c: a channel's share of max-bandwidth, with bounded credit. */
#define PACE_CREDIT_NS 100000000ULL     /* idle time banked: at most 100 ms */
struct pace {
	uint64_t rate;                  /* bytes/s, 0 = no cap */
	uint64_t due;                   /* ns: when what was sent is paid for */
};
void pace_start(struct pace *p, uint64_t rate, uint64_t now);
/* A new cap (0 = none) at now: what is still owed, and the next bytes
 * counted, are paid at it. */
void pace_set_rate(struct pace *p, uint64_t rate, uint64_t now);
/* Count bytes just sent at now; returns the ns to wait before the next
 * (with 0 bytes: what is left of the wait). */
uint64_t pace_sent(struct pace *p, uint64_t now, uint64_t bytes);
/* Pages in one packet under a channel's cap rate (0 = none): at most
 * PACE_BURST_NS of the cap, at least PACE_BATCH_MIN, at most
 * STREAM_MAX_BATCH. */
#define PACE_BURST_NS 100000000ULL      /* 100 ms */
#define PACE_BATCH_MIN 8u               /* 32 KiB: packets' overhead */
unsigned int pace_batch_pages(uint64_t rate);
/* Wait ns, or less: -EPIPE as soon as socket fd is shut down (the job's
 * abort, chan_abort_fd) or fails; 1 as soon as eventfd wake_fd (-1:
 * none) is written (a tune: the cap changed), which it reads back; 0
 * when the time is up. */
int pace_wait(int fd, int wake_fd, uint64_t ns);

/* Pages of one chunk go to one channel, always the same one: a page sent
 * again must not overtake its older copy on another connection. */
#define CHUNK_PAGES 64
#define CHAN_QUEUE 64                   /* batches queued per channel */
#define CHAN_QUEUE_MS 250               /* under max-bandwidth: this much */

/* channel.c, sending side: one thread per ram connection. */
struct chan_tx {
	struct worker *w;
	unsigned int index;
	int fd;
	const struct ram_view *ram;
	int zstd_level;                 /* 0: do not compress */
	void *zctx;                     /* own thread: ZSTD_CCtx */
	uint8_t *zbuf;                  /* own thread: one compressed packet */
	pthread_t thread;
	bool started;
	int wake_fd;                    /* eventfd, while started: a tune
					 * ends the thread's wait for the cap
					 * (pace_wait) */
	pthread_mutex_t lock;           /* the fields below */
	pthread_cond_t cond;
	struct batch *q;                /* ring of CHAN_QUEUE batches */
	unsigned int head, len;
	bool busy;                      /* a batch is being sent */
	bool stop;
	int err;                        /* first error; the channel is dead */
	bool ended;                     /* its end packet went (own thread) */
	uint64_t pages_total;           /* pages carried, for the device state */
	bool past_marker;               /* own thread: its postcopy marker went */
	int nice;                       /* (A) for the thread: the postcopy push
					 * yields to the page link */
	const uint64_t *served;         /* (A) postcopy: pages the page server
					 * sent, which a batch drops (NULL:
					 * precopy sends all) */
};

/*
 * The destination's postcopy placement, shared by its ram channels: each
 * channel stops at its marker packet until `go` (the uffd is there), then
 * places every page with UFFDIO_COPY/ZEROPAGE, only if it is still needed.
 */
struct pc_place {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned int markers;           /* channels that reached their marker */
	unsigned int ended;             /* channels that ended after it */
	bool go;                        /* uffd, host and needed are set */
	bool abort;                     /* give up: the job failed */
	int uffd;
	uint64_t host[STREAM_MAX_REGIONS];  /* the vmm's addresses of the regions */
	uint64_t *needed;               /* shared with faultd; cleared atomically */
	uint64_t *hashes;               /* with verify: a page-hash table
					 * (ramhash.h), shared with faultd:
					 * what the placer placed */
	uint64_t pushed;                /* (A) pages placed from the channels */
};

/* channel.c, receiving side. */
struct chan_rx {
	struct worker *w;
	unsigned int index;
	int fd;
	const struct ram_view *ram;
	const struct ram_place *place;  /* first-time pages go through it */
	struct stream_layout layout;
	void *zctx;                     /* own thread: ZSTD_DCtx, made on need */
	uint8_t *zbuf;                  /* own thread: one compressed packet */
	uint8_t *stage;                 /* own thread: pages arriving first time */
	uint64_t *received;             /* the job's received-pages bitmap (atomic) */
	bool keep_alloc;                /* preallocated RAM: zero pages are written */
	pthread_t thread;
	bool started;
	int err;                        /* own thread, read after join */
	bool ended;                     /* own thread: the end packet came */
	uint64_t pages_total;           /* own thread; read by dest_settle */
	struct pc_place *pc;            /* the job's postcopy placement */
	bool share;                     /* place first-time pages with a helper */
	struct place_helper helper;     /* started with the thread if share */
	bool postcopy;                  /* own thread: past the marker */
	uint64_t marker_pages;          /* pages before the marker (under pc->lock) */
};

/*
 * Nice values of the bulk threads in postcopy: faults come first.  The
 * source's push threads share their host with nothing of the guest.  The
 * destination's, which place the pushed pages, share it with the vCPUs
 * that wait for faults: there they take a CPU only when no vCPU wants
 * it (make bench p-faults, 4 runs each: the guest's p99 fault wait
 * 1.1-1.6 ms at 5, 0.54-0.75 ms at 19, the p50 and the postcopy's total
 * time alike).
 */
#define PC_BULK_NICE 5
#define PC_DEST_BULK_NICE 19

int chan_tx_start(struct chan_tx *c);
/* Queue a batch (copied); blocks while the queue is full.  -errno once the
 * channel has failed or the job is cancelled. */
int chan_tx_push(struct chan_tx *c, const struct batch *b);
/* Wait until everything queued is on the wire; the channel's error. */
int chan_tx_drain(struct chan_tx *c);
void chan_tx_stop(struct chan_tx *c);
int chan_rx_start(struct chan_rx *c);
int chan_rx_join(struct chan_rx *c);
/* As chan_rx_join, or 1 if the thread still runs after ms. */
int chan_rx_join_ms(struct chan_rx *c, unsigned int ms);
/* Make a blocked channel thread give up (shutdown of its socket). */
void chan_abort_fd(int fd);
/* Socket options every migration connection gets (keepalive, timeouts). */
void chan_tune_socket(int fd, bool bulk);

/* Hash the mapped RAM for verify (common/ramhash.h): *ret_n hashes in
 * *ret (free it), or -errno. */
int ram_view_hash(const struct ram_view *v, uint64_t **ret, size_t *ret_n);
/* Postcopy verify: the mapped RAM's page-hash table (ramhash.h) into a
 * zeroed pages; and the chunk hashes a table folds into, as ram_view_hash
 * would give them for RAM that held those pages. */
int ram_view_hash_pages(const struct ram_view *v, uint64_t *pages);
int ram_view_fold(const struct ram_view *v, const uint64_t *pages,
		  uint64_t **ret, size_t *ret_n);
/* How fast verify's hashing goes now, bytes/s (ramhash_rate). */
int ram_view_hash_rate(const struct ram_view *v, uint64_t *rate);
/* The bytes the RAM memfds hold: what verify reads (ramhash_data). */
uint64_t ram_view_data_bytes(const struct ram_view *v);
/* The pages of region i that hold data (the memfd's extents), each also
 * set in map (pages across regions). */
uint64_t ram_view_mark_data(const struct ram_view *v, unsigned int i,
			    uint64_t *map);

/* vmmlink.c: mapping the vmm's RAM, for the worker's life (its exit
 * unmaps); err says what was wrong */
int ram_view_map(struct ram_view *v, const Tern__Vmm__RamLayout *lay,
		 int *fds, size_t nfds, bool writable, char *err, size_t errlen);
void ram_view_unmap(struct ram_view *v);
/*
 * A descriptor of the vmm's that the worker maps for its life (its RAM,
 * the dirty bitmap) must be a memfd sealed against shrinking, as the vmm
 * makes them (vmm/mem.c, vmm/dirty.c): else the vmm, the less privileged
 * side, could truncate it after its reply, and the worker would die of
 * SIGBUS at its next access.  0 and its size; or -errno, with why in err
 * (what names the descriptor: "its dirty bitmap").
 */
int vmm_memfd_check(int fd, const char *what, uint64_t *ret_size, char *err,
		    size_t errlen);

/* vmmlink.c: the vmm's control service (workers, and the parent's clean-up) */
struct vmm_link {
	struct rpc_client *cl;
	char vm[65];
	uint64_t until;                 /* 0 (each call 30 s), or a deadline
					 * for all of them (now_ns) */
	bool deaf;                      /* the last call timed out */
	unsigned int short_ms;          /* each call's bound if not 0: a job's
					 * end asks a deaf vmm without waiting
					 * (the calls queue for when it runs) */
};
#define VMM_ASK_MS 300                  /* short_ms: long enough to send */
int vmm_link_open(struct vmm_link *l, const char *rundir, const char *vm,
		  char *err, size_t errlen);
void vmm_link_close(struct vmm_link *l);
/* Whether the vmm closed its end (it is gone, or quit), without a call. */
bool vmm_link_gone(const struct vmm_link *l);
/* Whether the link's vmm is stopped (by a signal or a debugger): then
 * why says so, with the kill -CONT that resumes it. */
bool vmm_link_stopped(const struct vmm_link *l, char *why, size_t len);
/* One call; on failure err holds "vmm VM: Method: reason". */
int vmm_link_call(struct vmm_link *l, const char *method,
		  const ProtobufCMessage *arg, const int *fds, size_t nfds,
		  ProtobufCMessage **ret, struct rpc_result *res, char *err,
		  size_t errlen);
/* The vmm's run state, or -errno. */
int vmm_link_state(struct vmm_link *l, Tern__Vmm__RunState *ret, char *err,
		   size_t errlen);
/* What a job starts from: the run state, the vCPU count (the stream's
 * Hello carries it) and the vCPU throttle in force (an operator's). */
struct vmm_start {
	Tern__Vmm__RunState state;
	uint32_t vcpus;
	uint32_t throttle;
	char moved_to[256];             /* SetMoved's mark: a stale copy */
	bool uffd;                      /* a postcopy's pages still missing */
};
int vmm_link_status(struct vmm_link *l, struct vmm_start *ret, char *err,
		    size_t errlen);
/* GetRam, then map it (ram_view_map below); err says what failed. */
struct ram_view;
int vmm_link_map_ram(struct vmm_link *l, struct ram_view *v, bool writable,
		     char *err, size_t errlen);
/*
 * After a failed or crashed source job: turn dirty logging off, set the
 * vCPU throttle back to what it was before the job, and, when
 * resume is set (the job paused the VM, which ran when it began, and the
 * destination was never told to run the guest), continue the VM if it is
 * paused; a paused VM not resumed is said to stay so, "kept" saying why.
 * With moved set (the switch stood), the vmm is marked as holding a
 * stale copy of a guest that may run there (SetMoved).
 * After a failed destination job: drop what the incoming vmm received.
 * Both are idempotent and say what they did in msg; recover_source
 * returns 1 when it continued the VM, else 0 or -errno.
 * Each ends within VMM_CLEANUP_TIMEOUT_MS, connect and every call: the
 * parent runs them in a thread, but the job's VM stays busy meanwhile.
 */
#define VMM_CLEANUP_TIMEOUT_MS 3000
int vmm_link_recover_source(const char *rundir, const char *vm, bool resume,
			    const char *kept, const char *moved,
			    bool moved_postcopy, uint32_t throttle, char *msg,
			    size_t len);
int vmm_link_discard_dest(const char *rundir, const char *vm, char *msg,
			  size_t len);

/* pageserve.c: the source's end of the postcopy page link, one thread */
struct page_server {
	int fd;
	const struct ram_view *ram;
	uint64_t *tosend;               /* the push's bitmap; pages sent here
					 * are cleared (atomically) */
	uint64_t *served;               /* pages sent here, set (atomically) */
	uint64_t hint;                  /* (A) the page after the last request */
	struct worker *w;               /* counts what it serves in the job's
					 * figures (worker_count_served) */
	int err;                        /* (A) why the thread ended, 0 while it runs */
	char why[200];                  /* its words, valid once err is set */
	pthread_t thread;
	bool started;
};
int page_server_start(struct page_server *ps);
int page_server_error(const struct page_server *ps);
void page_server_stop(struct page_server *ps);

/* faultlink.c: the destination worker's faultd client (postcopy) */
struct fault_link {
	struct rpc_client *cl;
	int timeout_ms;                 /* a call's; 0: MIGD_FAULTD_TIMEOUT_MS */
};
int fault_link_open(struct fault_link *f, const char *rundir, char *err,
		    size_t len);
void fault_link_close(struct fault_link *f);
/* Whether faultd answers on rundir's socket: 0, or -errno with why
 * postcopy cannot be, for the source (Accept.no_postcopy, PostcopyAnswer).
 * With call, it must also answer a call (List) within
 * MIGD_FAULTD_PROBE_MS; else a connection is enough. */
#define MIGD_FAULTD_PROBE_MS 3000
int fault_link_probe(const char *rundir, bool call, char *why, size_t len);
/* faultd closed the connection: it stopped or restarted (it closes no
 * other client that keeps to the protocol), and its sessions are gone
 * with it: the guest's faults wait until a faultd attaches again. */
bool fault_link_gone(const struct fault_link *f);
/* Attach: pc->uffd and pc->host are set on success; again
 * (AttachRequest.again), they are checked to be what they were. */
int fault_link_attach(struct fault_link *f, const char *vm, const char *job,
		      uint64_t pages, int page_fd, int needed_fd,
		      const struct ram_view *ram, struct pc_place *pc, bool again,
		      char *err, size_t len);
/* Recovery once faultd's connection is gone: connect again, and Relink
 * if that faultd still has the session, else Attach again (the job's
 * figures go on from where they were). */
int fault_link_again(struct fault_link *f, struct worker *w, const char *job,
		     int page_fd, int needed_fd, const struct ram_view *ram,
		     struct pc_place *pc, char *err, size_t len);
/* Stats (or Detach) into w->pc; *ret_state is the session's state; err
 * holds the session's error text, if any. */
int fault_link_stats(struct fault_link *f, struct worker *w, bool detach,
		     Tern__Faultd__SessionState *ret_state, char *err, size_t len);
int fault_link_detach_force(struct fault_link *f, const char *vm);
/* Postcopy recovery: faultd takes the new page link. */
int fault_link_relink(struct fault_link *f, const char *vm, int page_fd,
		      char *err, size_t len);

/* source.c: the source side of one job, its main thread's: set-up, the
 * switchover, the job's end; source_conn.c connects to the destination
 * and carries the main connection's messages, source_precopy.c sends the
 * pages before the switch, source_postcopy.c goes on past a postcopy
 * switch.  The job's state, the four files': */
struct source {
	struct worker *w;
	bool learned_left_out;          /* (L) the learned fixed part is at or
					 * above the limit (source_fixed_us) */
	bool precopy;                   /* in precopy rounds (not the final one) */
	bool dest_answers_ask;          /* the destination answers PostcopyAsk */
	uint64_t pc_refused_ns;         /* when it last refused a switch */
	uint64_t pc_ask_again_ns;       /* postcopy auto: asks again after */
	uint64_t check_ns;              /* auto-converge: the last look */
	uint64_t check_bytes;           /* bytes sent by then */
	uint64_t round_taken;           /* pages the round took from the bitmap */
	uint64_t round_bytes;           /* bytes sent in precopy rounds ... */
	uint64_t round_ns;              /* ... over this long: the bandwidth */
	uint64_t settle_ns;             /* waiting in source_settle */
	uint64_t hash_rate;             /* verify: bytes/s, timed at the start */
	uint64_t verify_ms;             /* verify's expected share of the pause */
	uint64_t vmm_rtt_ns;            /* the quickest DirtySync: a call to the vmm */
	uint64_t vmm_seen_ns;           /* source_vmm_alive's last look */
	uint64_t hello_rtt_ns;          /* Hello to Accept: the link both ways and a
					 * call to the other vmm */
	struct vmm_link vmm;
	struct ram_view ram;
	uint32_t vcpus;                 /* the guest's, for the Hello */
	int dialing;                    /* (w->lock) the connection source_dial
					 * waits on, for source_abort to shut */
	uint32_t base_throttle;         /* an operator's, found at the start:
					 * never lowered, given back at the end */
	int main_fd;
	pthread_mutex_t main_tx;        /* one writer at a time on main_fd */
	struct chan_tx chan[STREAM_MAX_CHANNELS];
	unsigned int nchan;
	uint64_t *dirty;                /* the bitmap shared with the vmm */
	uint64_t dirty_bytes;
	bool dirty_on;
	uint64_t synced_ns;             /* the last DirtySync (or DirtyStart) */
	uint64_t sync_gap_ns;           /* ... and the time it covered */
	bool state_known;               /* its vmm said how the guest ran */
	bool stopped;                   /* we paused the VM (or asked to) */
	uint64_t stop_ns;               /* ... then (now_ns) */
	bool throttled;                 /* a throttle was asked for, maybe
					 * applied though its answer was lost */
	struct batch pending[STREAM_MAX_CHANNELS][STREAM_MAX_REGIONS];
	unsigned int batch_pages;       /* pages a batch holds under the cap
					 * now; 0: to be looked at again */
	char err[768];
	/* postcopy */
	int page_fd;                    /* the page link (faultd dials nothing:
					 * we connect it at set-up) */
	uint64_t *tosend;               /* pages the destination still needs */
	uint64_t *served;               /* pages the page server sent since the
					 * switch or the last recovery */
	struct page_server ps;
	uint64_t *pc_hashes;            /* verify: the stopped RAM's, once hashed */
	size_t n_pc_hashes;
	char peer[PATH_MAX];            /* the address dialled: the job's, or
					 * the one a recovery names */
	bool fault_extra_done;          /* source-resume-extra-channel, once */
	bool vmm_gone_said;             /* postcopy: the vmm's end is said in
					 * the error now (the active note, or
					 * the pause's) */
};
/* The job: 0 when it completed. */
int source_run(struct worker *w);
/* The switch's steps, precopy's and postcopy's: the state, Stop, the
 * point of no return, Go and what Resumed said, the mark of a moved guest. */
int source_save_state(struct source *s, ProtobufCBinaryData *out);
void source_stopping(struct source *s);
int source_stop(struct source *s);
int source_cross(struct source *s);
int source_go(struct source *s, uint64_t *t_go,
	      Tern__Stream__StreamMsg **resumed);
uint64_t source_pause_ns(uint64_t t_stop, uint64_t t_go, uint64_t t_ack,
			 const Tern__Stream__Resumed *r);
void source_check_kept(struct source *s, const Tern__Stream__Resumed *r);
bool source_guest_paused(struct source *s);
bool source_switched(struct source *s);
/* How the copy left here stands (source_moved). */
enum source_copy {
	SOURCE_COPY_STALE,              /* the destination has the guest */
	SOURCE_COPY_POSTCOPY,           /* ... and lacks pages only here */
	SOURCE_COPY_ONLY,               /* ... lost it: this is the only one */
};
int source_moved(struct source *s, bool confirmed, enum source_copy copy);
/* Every connection to the destination dropped (the job's end, a pause). */
void source_drop_links(struct source *s);
/* ns in whole us, for the logs */
#define US(ns) ((unsigned long long)(ns) / 1000)

/* source_conn.c: the connections to the destination (source_run's
 * set-up: the main connection with the job's layout and its answer, the
 * ram channels, the page link), and the main connection's messages. */
int source_connect(struct source *s);
/* The main connection: a message (named in the error), a connection
 * dialled, the destination's next message, an answer after the pages. */
int source_send(struct source *s, const ProtobufCMessage *m);
int source_send_named(struct source *s, const ProtobufCMessage *m,
		      const char *what);
int source_dial(struct source *s, const struct uri *u, enum stream_role role,
		uint32_t index);
int source_expect(struct source *s, int body, const char *what,
		  Tern__Stream__StreamMsg **ret);
int source_await(struct source *s, const char *what);

/* source_precopy.c: the source's rounds of pages and their convergence
 * (source_run, after set-up): 0 when the rest fits the downtime limit,
 * SOURCE_PC_SWITCH when precopy stopped to switch to postcopy. */
#define SOURCE_PC_SWITCH 1              /* a round stopped to switch to postcopy */
int source_precopy(struct source *s);
/* Pages: a dirty-log sync, a round of what it found (the switchover's
 * last), queued to their channels, the channels' counts. */
int source_sync(struct source *s, uint64_t *ret_dirty);
int source_dirty_round(struct source *s, uint64_t *ret_pages);
unsigned int source_page_region(const struct ram_view *v, uint64_t page);
int source_queue(struct source *s, unsigned int region, uint64_t off);
int source_flush(struct source *s);
uint64_t source_channel_pages(const struct source *s, uint64_t *counts);
/* Verify's share of the pause for the data held now, into verify_ms
 * (source_await); auto-converge's throttle, 0 lifting it (the job's end). */
uint64_t source_verify_estimate(struct source *s);
int source_throttle(struct source *s, uint32_t percent);

/* source_postcopy.c: the source past a postcopy switch (source_run, when
 * precopy stopped to switch): 0 when the job completed. */
int source_postcopy(struct source *s);

/* dest.c: the destination side of one job, its main thread's: set-up,
 * precopy, the switchover, the job's end; dest_conn.c accepts its
 * connections, dest_postcopy.c goes on past a postcopy switch.  The job's
 * state, the three files': */
/* A connection accepted whose hello has not come whole yet (dest_hellos). */
struct dest_pending {
	int fd;
	size_t got;
	uint64_t deadline;
	struct stream_hello h;
};

#define DEST_PENDING_MAX 16

struct dest {
	struct worker *w;
	struct vmm_link vmm;
	struct ram_view ram;
	uint32_t vcpus;                 /* the vmm's: the source's must match */
	struct ram_place place;         /* first-time pages go through it */
	struct stream_layout layout;
	int main_fd;
	uint64_t hello_ns;              /* when the source's main hello came */
	pthread_mutex_t main_tx;        /* one message at a time on main_fd:
					 * dest_abort writes there too */
	struct chan_rx chan[STREAM_MAX_CHANNELS];
	unsigned int nchan, nconnected;
	bool have_id;
	bool received;                  /* the vmm holds data of this job */
	bool refused;                   /* the source was sent a Refuse
					 * (under main_tx) */
	bool cont_failed;               /* Go came, the vmm did not resume */
	bool keep_paused;               /* ... nor keep it paused, as Go asked */
	uint64_t *received_map;         /* pages present here, across regions */
	char err[768];
	/* postcopy */
	int page_fd;                    /* the page link, until faultd takes it */
	struct pc_place pc;
	int needed_fd;                  /* the needed-pages bitmap, shared with faultd */
	uint64_t *needed;
	size_t needed_bytes;
	size_t needed_map;              /* mapped: the bitmap and, with verify,
					 * the page hashes (pc.hashes) */
	Tern__Stream__StreamMsg *hashes_msg;  /* PostcopyHashes, once it came */
	struct fault_link fl;
	bool attached;                  /* faultd serves this VM's faults */
	/* postcopy recovery */
	int listen_fd;                  /* the parent's, or one bound for recovery */
	bool own_listen;                /* listen_fd was bound here */
	char listen[PATH_MAX];          /* ... on this address */
	bool recovering;                /* a main connection must be this job's */
	bool session_gone;              /* faultd's session is: no recovery */
	struct dest_pending pend[DEST_PENDING_MAX];
	unsigned int npend;
	struct ratelim refusals;        /* logged a few per window, then counted */
	/* accept failed (out of descriptors): the listening socket is not
	 * polled until then; logged once per window */
	uint64_t accept_paused_until;
	struct ratelim accept_fails;
};
/* The job: 0 when it completed. */
int dest_run(struct worker *w);
/* The source's layout, the main connection's first message: it must be
 * exactly this vmm's (dest_accept, once the main connection is in). */
int dest_check_hello(struct dest *d);
/*
 * The vmm closed its end: it quit or died, and can take no guest (or,
 * recovering, the guest is gone with it).  Looked at while waiting and
 * receiving, so that the job ends then, not after all of RAM was sent.
 */
#define DEST_VMM_GONE "vmm %s closed its connection: it quit or died"
/* A postcopy job that can never recover says so in these words, then
 * what to do: a cancel of it keeps the words and drops that advice
 * (worker_error_cut). */
#define NEVER_RECOVER "this job can never recover"
/* A destination's verify failure: "verify failed: the guest RAM here "
 * VERIFY_DIFFERS "B of N 2 MiB chunks, ..."; its source says it from its
 * own side, with what follows (source_conn.c). */
#define VERIFY_DIFFERS "differs from the source's: "
/* A pause on request's words, in the job's error on both sides (the
 * peer's: "the source said: " and these). */
#define PAUSED_ON_REQUEST "paused on request (migctl pause)"
/* A source with pages left, one of whose channels sent nothing this
 * long, is said to be stalled (JobStatus.stalled_ms): an idle channel
 * sends a NOP every 2 s, a paced one a packet within a second. */
#define WORKER_STALL_SHOWN_NS 5000000000ULL
/* In precopy, and at the postcopy switch, what may come next on the
 * main connection. */
#define BODY_PRECOPY_NEXT (-1)
#define BODY_SWITCH_NEXT (-2)
/* The main connection: the source's next message (body, or one of those
 * above), a message (named in the error), a Refuse that fails the job. */
int dest_recv(struct dest *d, int body, const char *what,
	      Tern__Stream__StreamMsg **ret);
int dest_send(struct dest *d, Tern__Stream__StreamMsg *m, const char *what);
int dest_refuse(struct dest *d, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The switch's steps, precopy's and postcopy's: the device state loaded;
 * Ready, Go, Resumed; verify's comparison of chunk hashes. */
int dest_load(struct dest *d, const ProtobufCBinaryData *vm_state);
int dest_go(struct dest *d);
size_t dest_compare(const struct dest *d, const uint64_t *mine,
		    const uint64_t *theirs, size_t n, uint64_t *gpa);
/* Every connection dropped (the job's end, a pause). */
void dest_drop_links(struct dest *d);

/* dest_conn.c: the job's connections (dest_run's set-up, and every wait
 * on the main connection): a round of accepting and hellos, all of the
 * job's; at the job's end, the connections whose hello is still to come
 * closed, and the refusals not logged yet counted in the log. */
int dest_hellos(struct dest *d, uint64_t wake, int busy);
int dest_accept(struct dest *d);
void dest_pending_close_all(struct dest *d);
void dest_refusals_flush(struct dest *d);

/* dest_postcopy.c: the destination past a postcopy switch (dest_run's
 * receiving, when PostcopyDiscard came): 0 when the job completed; and
 * the listening socket a recovery bound, closed at the job's end. */
int dest_postcopy(struct dest *d, const Tern__Stream__PostcopyDiscard *pd);
void dest_close_listen(struct dest *d);

#endif
