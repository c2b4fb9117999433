// SPDX-License-Identifier: GPL-2.0-only
/*
 * migctl: drive migd through its control socket (RUNDIR/migd.sock):
 * incoming and outgoing live migrations, their status and progress,
 * cancel, the job list and migd's default parameters.  Every command is
 * one tern.migd.Migd RPC (see migctl(1), tern-rpc(7)); every argument is
 * checked before connecting, so usage errors exit 2 without touching migd.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cli.h"
#include "common/json.h"
#include "common/pbuf.h"
#include "common/rpc.h"
#include "common/stream.h"
#include "common/uri.h"
#include "common/util.h"
#include "proto/migd.pb-c.h"

#define CTL_DEFAULT_RUNDIR "/run/tern"
#define CTL_MAX_FRAME (4u << 20)
#define CTL_MAX_CHANNELS 16
#define CTL_MAX_DOWNTIME_MS 600000
#define CTL_MAX_TIMEOUT_S (7 * 24 * 3600)
#define CTL_LINE_INTERVAL_NS 1000000000ULL  /* plain progress lines */
#define CTL_BAR_WIDTH 30


static struct cli_globals opts = { CTL_DEFAULT_RUNDIR, false, 30000 };

/* ---- formatting -------------------------------------------------------- */

static const char *state_name(Tern__Migd__JobState s)
{
	static const char *const names[] = {
		"none", "setup", "active", "device", "completed", "failed",
		"cancelling", "cancelled", "waiting", "postcopy-active",
		"postcopy-paused", "postcopy-recover",
	};

	return (unsigned int)s < ARRAY_SIZE(names) ? names[s] : "unknown";
}

static const char *role_name(Tern__Migd__JobRole r)
{
	return r == TERN__MIGD__JOB_ROLE__ROLE_SOURCE ? "source" :
	       r == TERN__MIGD__JOB_ROLE__ROLE_DEST ? "destination" : "unknown";
}

static bool state_final(Tern__Migd__JobState s)
{
	return s == TERN__MIGD__JOB_STATE__JOB_COMPLETED ||
	       s == TERN__MIGD__JOB_STATE__JOB_FAILED ||
	       s == TERN__MIGD__JOB_STATE__JOB_CANCELLED;
}

/*
 * s made safe for a terminal, in place: every control character but tab
 * (C0, DEL, and C1 as UTF-8 encodes it) becomes '?'.  For text that a
 * peer may have written (a job's error can carry the remote host's
 * refusal, its id and address come from the other end), in text output
 * only: JSON escapes them itself.
 */
static char *text_safe(char *s)
{
	unsigned char *p;

	for (p = (unsigned char *)s; *p; p++) {
		if ((*p < 0x20 && *p != '\t') || *p == 0x7f) {
			*p = '?';
		} else if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
			p[0] = p[1] = '?';
			p++;
		}
	}
	return s;
}

static const char *fmt_rate(uint64_t bytes_per_s, char *buf, size_t len)
{
	char s[32];

	snprintf(buf, len, "%s/s", fmt_size(bytes_per_s, s, sizeof(s)));
	return buf;
}

static const char *fmt_ms(uint64_t ms, char *buf, size_t len)
{
	if (ms < 10000)
		snprintf(buf, len, "%llu ms", (unsigned long long)ms);
	else
		snprintf(buf, len, "%.1f s", ms / 1000.0);
	return buf;
}

/* A pause: under a millisecond in microseconds, not "0 ms". */
static const char *fmt_us(uint64_t us, char *buf, size_t len)
{
	if (us < 1000)
		snprintf(buf, len, "%llu us", (unsigned long long)us);
	else if (us < 10000)
		snprintf(buf, len, "%.2f ms", us / 1000.0);
	else
		fmt_ms(us / 1000, buf, len);
	return buf;
}

static const char *fmt_time(uint64_t unix_ms, char *buf, size_t len)
{
	time_t t = unix_ms / 1000;
	struct tm tm;

	if (!unix_ms || !localtime_r(&t, &tm) ||
	    !strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm))
		snprintf(buf, len, "-");
	return buf;
}

/* A source in precopy: the round under way, or next (1 for the first);
 * else 0. */
static uint64_t job_round(const Tern__Migd__JobStatus *js)
{
	if (js->state != TERN__MIGD__JOB_STATE__JOB_ACTIVE ||
	    js->role != TERN__MIGD__JOB_ROLE__ROLE_SOURCE)
		return 0;
	return js->rounds + 1;
}

/*
 * How far the job is, 0..1, from its own counters.  In a precopy round,
 * how far that round is: the job's end depends on whether the guest's
 * dirtying lets it converge, which no share of the whole can tell (the
 * old whole-job ratio sat at 99% through every round of a precopy that
 * did not converge); the rounds and the expected downtime say how that
 * goes.  Otherwise transferred / (transferred + remaining), or against
 * guest RAM while nothing is known to remain (a destination before the
 * switch).  Only a completed job is at 100%.
 */
static double job_fraction(const Tern__Migd__JobStatus *js)
{
	uint64_t t = js->transferred_bytes, r = js->remaining_bytes;
	double f = 0;

	if (js->state == TERN__MIGD__JOB_STATE__JOB_COMPLETED)
		return 1.0;
	if (job_round(js))      /* between rounds: the next, at 0 */
		f = js->round_pages ? (double)js->round_sent /
				      (double)js->round_pages : 0;
	else if (r > 0)
		f = (double)t / (double)(t + r);
	else if (js->total_bytes)
		f = (double)t / (double)js->total_bytes;
	return MIN(f, 0.99);
}

static void print_params(const Tern__Migd__Params *p, const char *indent)
{
	bool postcopy_at_timeout = p->timeout_action ==
				   TERN__MIGD__TIMEOUT_ACTION__TIMEOUT_POSTCOPY;
	bool converge = p->auto_converge == TERN__MIGD__TOGGLE__TOGGLE_ON;
	char a[32], b[32];

	printf("%schannels                    %u\n", indent, p->channels);
	printf("%smax-bandwidth               %s\n", indent, p->max_bandwidth ?
	       fmt_rate(p->max_bandwidth, a, sizeof(a)) : "unlimited");
	printf("%savail-switchover-bandwidth  %s\n", indent,
	       p->avail_switchover_bandwidth ?
	       fmt_rate(p->avail_switchover_bandwidth, b, sizeof(b)) : "measured");
	printf("%sdowntime-limit              %u ms\n", indent, p->downtime_limit_ms);
	if (p->compress == TERN__MIGD__COMPRESS__COMPRESS_ZSTD)
		printf("%scompress                    zstd:%u\n", indent,
		       p->compress_level);
	else
		printf("%scompress                    none\n", indent);
	/* The throttle's figures show with auto-converge off too: a set
	 * --throttle-max must be seen to have taken. */
	printf("%sauto-converge               %s (%u%% + %u%% a round, up to "
	       "%u%%%s)\n", indent, converge ? "on" : "off",
	       p->throttle_initial, p->throttle_increment, p->throttle_max,
	       converge ? "" : ", when on");
	/* An action other than the default is shown with no timeout too:
	 * a timeout given later (migrate --timeout) takes it. */
	if (p->timeout_s)
		printf("%stimeout                     %u s, then %s\n", indent,
		       p->timeout_s, postcopy_at_timeout ? "postcopy" : "cancel");
	else if (postcopy_at_timeout)
		printf("%stimeout                     none (timeout-action postcopy)\n",
		       indent);
	else
		printf("%stimeout                     none\n", indent);
	printf("%sverify                      %s\n", indent,
	       p->verify == TERN__MIGD__TOGGLE__TOGGLE_ON ? "on" : "off");
	printf("%spostcopy                    %s\n", indent,
	       p->postcopy == TERN__MIGD__POSTCOPY_POLICY__POSTCOPY_AUTO ?
	       "auto (when precopy will not converge)" : "manual (migctl postcopy)");
}

static void print_postcopy(const Tern__Migd__JobStatus *js)
{
	const Tern__Migd__PostcopyStats *pc = js->postcopy_stats;
	bool source = js->role == TERN__MIGD__JOB_ROLE__ROLE_SOURCE;
	char a[32];
	size_t i;

	printf("  postcopy      ");
	if (source)
		printf("pause %s; ", fmt_us(pc->pause_us, a, sizeof(a)));
	printf("pages: %llu pushed, %llu on demand, %llu still %s\n",
	       (unsigned long long)pc->pages_pushed,
	       (unsigned long long)pc->pages_on_demand,
	       (unsigned long long)pc->needed_pages, source ? "to push" : "needed");
	if (source) {
		printf("                %llu page requests served\n",
		       (unsigned long long)pc->requests_served);
		/* Paused, the source cannot know what did not arrive. */
		if (js->state == TERN__MIGD__JOB_STATE__JOB_POSTCOPY_PAUSED)
			printf("                the destination says which pages it "
			       "still needs; they are here only: keep this vmm\n");
		return;
	}
	printf("  faults        %llu (%llu from the source), vCPUs blocked %.1f ms "
	       "in all\n", (unsigned long long)pc->faults,
	       (unsigned long long)pc->remote_faults, pc->blocked_us / 1000.0);
	printf("  latency       p50 %llu us, p99 %llu us, max %llu us\n",
	       (unsigned long long)pc->latency_p50_us,
	       (unsigned long long)pc->latency_p99_us,
	       (unsigned long long)pc->latency_max_us);
	if (pc->zero_faults)
		printf("  local faults  %llu (known zero pages): p50 %llu us, p99 %llu us\n",
		       (unsigned long long)pc->zero_faults,
		       (unsigned long long)pc->zero_latency_p50_us,
		       (unsigned long long)pc->zero_latency_p99_us);
	/* Bucket i ends at 2^(i+1) us: past i = 62 that is no 64-bit
	 * number (nor a wait anyone lives through); the count is migd's. */
	for (i = 0; i < pc->n_latency_hist && i < 63; i++)
		if (pc->latency_hist[i])
			printf("    %7llu us  %llu\n", 1ULL << (i + 1),
			       (unsigned long long)pc->latency_hist[i]);
}

/*
 * The full, multi-line status of one job (its peer's text made safe).
 * A destination knows what it received, not what the source has left
 * (but for the pages a postcopy still needs) nor its rounds, rates,
 * holes or downtime: those lines are the source's only.
 */
static void print_status(Tern__Migd__JobStatus *js)
{
	bool source = js->role == TERN__MIGD__JOB_ROLE__ROLE_SOURCE;
	char a[32], b[32], c[32], d[32];
	size_t i;

	printf("%s: %s, %s", js->vm, role_name(js->role), state_name(js->state));
	if (js->id[0])
		printf(" (job %s)", text_safe(js->id));
	printf("\n");
	text_safe(js->peer);
	text_safe(js->listen);
	printf("  peer          %s\n", js->peer[0] ? js->peer : "-");
	if (js->listen[0] && strcmp(js->listen, js->peer))
		printf("  listening on  %s\n", js->listen);
	printf("  progress      ");
	if (job_round(js))
		printf("round %llu ", (unsigned long long)job_round(js));
	printf("%.0f%%: %s transferred", job_fraction(js) * 100,
	       fmt_size(js->transferred_bytes, a, sizeof(a)));
	if (source || js->postcopy_stats)
		printf(", %s remaining", fmt_size(js->remaining_bytes, b, sizeof(b)));
	/* (not known before the job has mapped the vmm's RAM) */
	printf(", RAM %s\n", js->total_bytes ?
	       fmt_size(js->total_bytes, c, sizeof(c)) : "-");
	if (source) {
		printf("  pages         %llu sent, %llu zero, %llu skipped (holes at "
		       "round 1)\n", (unsigned long long)js->pages_sent,
		       (unsigned long long)js->zero_pages,
		       (unsigned long long)js->skipped_pages);
		printf("  rounds        %llu\n", (unsigned long long)js->rounds);
		printf("  dirty rate    %llu pages/s\n",
		       (unsigned long long)js->dirty_rate);
		printf("  bandwidth     %s\n", fmt_rate(js->bandwidth, a, sizeof(a)));
	} else {
		printf("  pages         %llu received, %llu zero\n",
		       (unsigned long long)js->pages_sent,
		       (unsigned long long)js->zero_pages);
	}
	printf("  channels      %zu\n", js->n_channels);
	for (i = 0; i < js->n_channels; i++) {
		const Tern__Migd__ChannelStats *ch = js->channels[i];

		printf("    %-3u         %s in %llu pages (%llu zero), %s\n", ch->index,
		       fmt_size(ch->bytes, a, sizeof(a)), (unsigned long long)ch->pages,
		       (unsigned long long)ch->zero_pages,
		       fmt_rate(ch->throughput, b, sizeof(b)));
	}
	if (source && js->guest_paused) {
		/* No pause of a guest that was not running: not a figure
		 * anyone should read as one. */
		printf("  downtime      none: the guest was paused when the job "
		       "stopped it\n");
	} else if (source) {
		printf("  downtime      expected %s, final %s",
		       fmt_ms(js->expected_downtime_ms, a, sizeof(a)),
		       js->downtime_us ? fmt_us(js->downtime_us, b, sizeof(b)) : "-");
		if (js->params)
			printf(" (limit %u ms)", js->params->downtime_limit_ms);
		if (js->pause_fixed_us)
			printf("; %.1f ms of it not for pages",
			       js->pause_fixed_us / 1000.0);
		printf("\n");
	}
	/* What migd learned from earlier jobs, which an operator cannot
	 * see elsewhere; and whether this job counts it. */
	if (source && js->pause_fixed_learned_us && js->params)
		printf("  learned       %.1f ms of a pause not for pages, from "
		       "earlier jobs here%s\n", js->pause_fixed_learned_us / 1000.0,
		       js->pause_fixed_learned_us >=
		       (uint64_t)js->params->downtime_limit_ms * 1000 ?
		       ": at or above the limit, not counted" : "");
	if (js->resume_ms)
		printf("  resume        %s\n", fmt_ms(js->resume_ms, a, sizeof(a)));
	if (js->compressed_pages)
		printf("  compressed    %llu pages, %s of page data\n",
		       (unsigned long long)js->compressed_pages,
		       fmt_size(js->raw_bytes, a, sizeof(a)));
	if (js->throttle)
		printf("  throttle      vCPUs throttled %u%%\n", js->throttle);
	if (js->verified[0])
		printf("  verified      %s\n", text_safe(js->verified));
	if (js->postcopy_stats)
		print_postcopy(js);
	printf("  time          setup %s, total %s\n",
	       fmt_ms(js->setup_ms, a, sizeof(a)), fmt_ms(js->total_ms, b, sizeof(b)));
	printf("  started       %s\n", fmt_time(js->started_unix_ms, c, sizeof(c)));
	if (js->finished_unix_ms)
		printf("  finished      %s\n", fmt_time(js->finished_unix_ms, d, sizeof(d)));
	if (js->worker_pid)
		printf("  worker        pid %u\n", js->worker_pid);
	if (source)
		printf("  switched      %s\n", !js->switched ? "no" :
		       js->guest_paused ? "yes (the destination was told to take "
		       "the guest, paused)" : "yes (the destination was told to "
		       "resume)");
	if (js->guest_paused)
		printf("  guest         %s\n", source ? "kept paused on the "
		       "destination at the switch, as it was here when the job "
		       "stopped it" : "kept paused here at the switch, as it was "
		       "on the source (vmmctl cont starts it)");
	if (js->params) {
		printf("  parameters\n");
		print_params(js->params, "    ");
	}
	if (js->error[0])
		printf("  error         %s\n", text_safe(js->error));
}

/*
 * A source job's last line.  After a switch to postcopy the rounds are
 * the precopy ones before it (none when it came in round 1) and the
 * downtime is the pause at the switch.  A guest that was paused when
 * the job stopped it had none: the line says where it stays paused.
 */
static void print_completed(const Tern__Migd__JobStatus *js)
{
	char a[32], b[32], c[32], how[64];
	unsigned long long n = js->rounds;

	if (!js->postcopy_started)
		snprintf(how, sizeof(how), "%llu round%s", n, n == 1 ? "" : "s");
	else if (!n)
		snprintf(how, sizeof(how), "postcopy from round 1");
	else
		snprintf(how, sizeof(how), "postcopy after %llu precopy round%s",
			 n, n == 1 ? "" : "s");
	printf("%s: completed in %s: %s transferred, %s", js->vm,
	       fmt_ms(js->total_ms, a, sizeof(a)),
	       fmt_size(js->transferred_bytes, b, sizeof(b)), how);
	if (js->guest_paused)
		printf("; the guest was kept paused on the destination, as it was "
		       "on the source (no downtime)\n");
	else
		printf(", %s %s\n", js->postcopy_started ? "pause" : "downtime",
		       js->downtime_us ? fmt_us(js->downtime_us, c, sizeof(c)) : "-");
}

/* ---- progress: a bar that never runs backwards ------------------------- */

static struct progress {
	bool tty;                       /* redraw one line in place */
	bool drawn;                     /* a bar line is on screen */
	uint64_t job_started;           /* the job the maximum belongs to */
	uint64_t round;                 /* ... and its round (job_round) */
	double max;                     /* largest fraction shown for it */
	uint64_t last_line_ns;
	Tern__Migd__JobState last_state;
} prog;

static int term_width(void)
{
	struct winsize ws;

	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
		return ws.ws_col;
	return 80;
}

static void progress_show(const Tern__Migd__JobStatus *js)
{
	char line[512], bar[CTL_BAR_WIDTH + 1], a[32], b[32], c[32], d[32];
	bool active = js->state == TERN__MIGD__JOB_STATE__JOB_ACTIVE;
	double frac = job_fraction(js);
	uint64_t now = now_ns(), round = job_round(js);
	int i, fill, n, width;

	/* A round starts a bar of its own, as does the end of precopy. */
	if (js->started_unix_ms != prog.job_started || round != prog.round) {
		prog.job_started = js->started_unix_ms;
		prog.round = round;
		prog.max = 0;
	}
	if (frac > prog.max)
		prog.max = frac;
	if (prog.max > 1)
		prog.max = 1;
	fill = (int)(prog.max * CTL_BAR_WIDTH);
	for (i = 0; i < CTL_BAR_WIDTH; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[CTL_BAR_WIDTH] = 0;
	/* In precopy, the round under way; the rates and the estimate
	 * only once a round ended and measured them. */
	if (round)
		n = snprintf(line, sizeof(line), "%s [%s] %3.0f%% of round %llu  "
			     "sent %s, %s left", js->vm, bar, prog.max * 100,
			     (unsigned long long)round,
			     fmt_size(js->transferred_bytes, a, sizeof(a)),
			     fmt_size(js->remaining_bytes, b, sizeof(b)));
	else
		n = snprintf(line, sizeof(line), "%s [%s] %3.0f%% %-10s sent %s, "
			     "%s left", js->vm, bar, prog.max * 100,
			     state_name(js->state),
			     fmt_size(js->transferred_bytes, a, sizeof(a)),
			     fmt_size(js->remaining_bytes, b, sizeof(b)));
	/* A destination counts no rounds, nor does a job that ended in
	 * its first: no "round 0". */
	if (!round && js->role == TERN__MIGD__JOB_ROLE__ROLE_SOURCE &&
	    js->rounds + (active ? 1 : 0) && n < (int)sizeof(line))
		n += snprintf(line + n, sizeof(line) - n, "  round %llu",
			      (unsigned long long)js->rounds + (active ? 1 : 0));
	if (js->rounds && n < (int)sizeof(line))
		n += snprintf(line + n, sizeof(line) - n,
			      "  %s  dirty %llu p/s  downtime ~%s",
			      fmt_rate(js->bandwidth, c, sizeof(c)),
			      (unsigned long long)js->dirty_rate,
			      fmt_ms(js->expected_downtime_ms, d, sizeof(d)));
	if (prog.tty) {
		width = term_width() - 1;
		if (n > width)
			line[width] = 0;
		printf("\r\033[K%s", line);
		prog.drawn = true;
	} else {
		if (js->state == prog.last_state && prog.last_line_ns &&
		    now - prog.last_line_ns < CTL_LINE_INTERVAL_NS)
			return;
		printf("%s\n", line);
		prog.last_line_ns = now;
	}
	prog.last_state = js->state;
	fflush(stdout);
}

static void progress_end(void)
{
	if (prog.drawn)
		fputc('\n', stdout);
	prog.drawn = false;
	fflush(stdout);
}

/* recover --wait and status --watch: a job postcopy-paused for good
 * (JobStatus.unrecoverable) never ends by itself, and no recover can
 * bring it back: waiting on would be for ever.  Said as the outcome, and
 * migctl exits 1. */
static bool stop_unrecoverable;

static void handle_event(void *ctx, const char *name, const uint8_t *data,
			 size_t len)
{
	Tern__Migd__JobStatus *js;
	char text[1024];

	if (strcmp(name, "status") || (opts.json && !stop_unrecoverable))
		return;
	js = (Tern__Migd__JobStatus *)pbuf_unpack(&tern__migd__job_status__descriptor,
						    len, data);
	if (!js)
		return;
	if (stop_unrecoverable && js->unrecoverable &&
	    js->state == TERN__MIGD__JOB_STATE__JOB_POSTCOPY_PAUSED) {
		progress_end();
		if (opts.json)
			json_print(&js->base);
		cli_errx("%s: %s", text_safe(js->vm), state_text(state_name(js->state),
			 text_safe(js->error), text, sizeof(text)));
		exit(CLI_FAILED);
	}
	if (!state_final(js->state) && !opts.json)
		progress_show(js);
	tern__migd__job_status__free_unpacked(js, NULL);
}

static void handle_interrupt(int sig)
{
	static const char msg[] = "\nmigctl: interrupted; the job goes on "
				  "(see 'migctl cancel')\n";

	if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0)
		_exit(130);
	_exit(130);
}

/* ---- the connection ---------------------------------------------------- */

static struct rpc_client *ctl_connect(void)
{
	struct rpc_client *cl = NULL;
	char path[PATH_MAX + 16];
	struct stat st;
	int r;

	snprintf(path, sizeof(path), "%s/migd.sock", opts.rundir);
	if (stat(path, &st) < 0 && errno == ENOENT) {
		cli_errx("migd is not running (no socket %s)", path);
		return NULL;
	}
	r = rpc_client_connect_path(path, opts.timeout_ms, &cl);
	if (r == -ECONNREFUSED) {
		cli_errx("migd is not running (nobody listens on %s)", path);
		return NULL;
	}
	if (r < 0) {
		cli_errx("cannot connect to migd at %s: %s%s", path, strerror(-r),
			 cli_refused_hint(r));
		return NULL;
	}
	rpc_client_set_max_frame(cl, CTL_MAX_FRAME);
	return cl;
}

/*
 * A call that waited lost its connection: who answers on migd's socket
 * now says why.  The same migd dropped this caller, which read nothing
 * of what it was sent for a minute (a suspended migctl: tern-rpc(7),
 * CONNECTIONS), and runs on; another means migd restarted, and a job
 * past its postcopy switch goes on with it (adopted); none, migd
 * stopped or died, and nobody is left to say how the job ended.
 */
static void say_connection_lost(const struct rpc_client *lost,
				const char *method)
{
	Tern__Migd__Empty empty = TERN__MIGD__EMPTY__INIT;
	int was = rpc_client_peer_pid(lost), now = -ENOENT;
	char path[PATH_MAX + 16];
	struct rpc_client *cl;
	struct rpc_result res;
	unsigned int ms = MIN(opts.timeout_ms ? opts.timeout_ms : 5000, 5000);

	/* Who answers there now: an answer, not a connect, which the socket
	 * of a migd killed a moment ago still takes until its files close. */
	snprintf(path, sizeof(path), "%s/migd.sock", opts.rundir);
	if (rpc_client_connect_path(path, ms, &cl) == 0) {
		if (rpc_client_call(cl, &tern__migd__migd__descriptor, "GetParams",
				    &empty.base, NULL, 0, NULL, &res, ms, NULL,
				    NULL) == 0)
			now = rpc_client_peer_pid(cl);
		rpc_result_close_fds(&res);
		rpc_client_free(cl);
	}
	if (was > 0 && now == was)
		cli_errx("%s: migd (pid %d) dropped this connection while this "
			 "waited, and runs on: it drops a caller that reads "
			 "nothing of what it is sent for a minute (was this "
			 "command suspended?); the job goes on: 'migctl status' "
			 "shows it", method, now);
	else if (was > 0 && now > 0)
		cli_errx("%s: migd restarted while this waited (pid %d, now %d): "
			 "a job past its postcopy switch goes on, adopted by the "
			 "new migd ('migctl status' shows it); one before its "
			 "switch was cancelled", method, was, now);
	else
		cli_errx("%s: migd closed the connection while this waited (it "
			 "stopped or died): the job's end is not known here; "
			 "'vmmctl status' of the VM says where its guest is; a "
			 "job past its postcopy switch goes on, and the next "
			 "migd adopts it", method);
}

/* One call; prints the error (migd's text) and returns -errno.  A call
 * that waits for a job's end has no deadline: migd reports every 200 ms
 * and a dead migd closes the connection. */
/* How long a call that waits (--wait, --watch) waits through migd's
 * EAGAIN: a job that an earlier migd left is not back yet (migd(8) gives
 * its worker 6 s). */
#define CALL_AGAIN_MS 15000

static int call(struct rpc_client *cl, const char *method,
		const ProtobufCMessage *arg, ProtobufCMessage **ret, bool wait)
{
	Tern__Migd__Empty empty = TERN__MIGD__EMPTY__INIT;
	const struct timespec pause = { 0, 250 * 1000 * 1000 };
	uint64_t until = now_ns() + CALL_AGAIN_MS * 1000000ULL;
	struct rpc_result res;
	bool told = false;
	int r;

	for (;;) {
		r = rpc_client_call(cl, &tern__migd__migd__descriptor, method,
				    arg ? arg : &empty.base, NULL, 0, ret, &res,
				    wait ? 0 : opts.timeout_ms,
				    wait ? handle_event : NULL, NULL);
		rpc_result_close_fds(&res);
		if (!wait || r != -EAGAIN || !res.remote || now_ns() >= until)
			break;
		if (!told)
			fprintf(stderr, "migctl: asking again for up to %d s: "
				"%s\n", CALL_AGAIN_MS / 1000,
				text_safe(res.message));
		told = true;
		nanosleep(&pause, NULL);
	}
	if (r == -EPIPE && wait) {
		progress_end();
		say_connection_lost(cl, method);
	} else if (r < 0) {
		/* migd's own words name what failed; ours, the call. */
		progress_end();
		cli_errx("%s%s%s%s", res.remote ? "" : method,
			 res.remote ? "" : ": ", res.message[0] ?
			 text_safe(res.message) : strerror(-r), cli_call_hint(r));
	}
	return r;
}

/* ---- commands ------------------------------------------------------------ */

/* Arguments of every command, all checked before connecting. */
struct cmd_args {
	const char *vm, *uri, *listen, *token, *id;
	Tern__Migd__Params params;
	char *clear[3];                 /* take_clears() */
	bool wait, detach, watch, force, reset;
};

/*
 * Zero means "not given" in Params: the values to set to 0 (unlimited,
 * measured, none; marked all ones by the parser) go by name, in the
 * same call, as SetParams, Migrate and Tune take them.  Their count.
 */
static size_t take_clears(struct cmd_args *a)
{
	size_t n = 0;

	if (a->params.max_bandwidth == UINT64_MAX) {
		a->params.max_bandwidth = 0;
		a->clear[n++] = "max_bandwidth";
	}
	if (a->params.avail_switchover_bandwidth == UINT64_MAX) {
		a->params.avail_switchover_bandwidth = 0;
		a->clear[n++] = "avail_switchover_bandwidth";
	}
	if (a->params.timeout_s == UINT32_MAX) {
		a->params.timeout_s = 0;
		a->clear[n++] = "timeout_s";
	}
	return n;
}

/* "STATE" or "STATE: ERROR", the state named once (state_text), made
 * safe for a terminal. */
static const char *outcome_text(Tern__Migd__JobStatus *js, char *buf, size_t len)
{
	return state_text(state_name(js->state), text_safe(js->error), buf, len);
}

/* A finished (or, without wait, current) job: print it; the exit code. */
static int job_outcome(Tern__Migd__JobStatus *js, bool waited,
		       Tern__Migd__JobState want)
{
	char a[32], b[32], text[1024];

	/* A bar on screen ends at 100% with a completed job. */
	if (prog.drawn && js->state == TERN__MIGD__JOB_STATE__JOB_COMPLETED)
		progress_show(js);
	progress_end();
	if (opts.json)
		json_print(&js->base);
	if (!waited) {
		if (!opts.json)
			print_status(js);
		return CLI_OK;
	}
	/* Verify after a postcopy switch can only find a difference once
	 * the guest runs on the destination: the job completed, but the
	 * proof failed, and a caller must see that. */
	if (js->state == want && !strncmp(js->verified, "failed", 6)) {
		cli_errx("%s: migration completed, but verify %s", js->vm,
			 text_safe(js->verified));
		return CLI_FAILED;
	}
	if (js->state == want) {
		/* The source sent rounds and paused the guest; the destination
		 * received what came over its channels and runs the guest. */
		if (!opts.json && want == TERN__MIGD__JOB_STATE__JOB_COMPLETED &&
		    js->role == TERN__MIGD__JOB_ROLE__ROLE_DEST)
			printf("%s: completed in %s: %s received over %zu channel%s%s\n",
			       js->vm, fmt_ms(js->total_ms, a, sizeof(a)),
			       fmt_size(js->transferred_bytes, b, sizeof(b)),
			       js->n_channels, js->n_channels == 1 ? "" : "s",
			       !js->switched ? "" : js->guest_paused ?
			       "; the guest was kept paused here, as it was on "
			       "the source" : "; the guest runs here");
		else if (!opts.json && want == TERN__MIGD__JOB_STATE__JOB_COMPLETED)
			print_completed(js);
		else if (!opts.json)
			printf("%s: %s\n", js->vm, outcome_text(js, text, sizeof(text)));
		return CLI_OK;
	}
	cli_errx("%s: migration %s", js->vm, outcome_text(js, text, sizeof(text)));
	return CLI_FAILED;
}

/*
 * The address a destination bound (incoming, recover --listen), then,
 * on a terminal, the command for the source host: migrate with the
 * token, or recover.  A wildcard address (tcp:0.0.0.0:P, tcp:[::]:P) is
 * no address a source could dial: the command names a placeholder for
 * this host instead.
 */
static void print_bound(const char *vm, const char *listen, const char *cmd,
			const char *token)
{
	char peer[PATH_MAX + 16], tail[STREAM_TOKEN_HEX + 16] = "";
	struct uri u;

	printf("listen %s\n", listen);
	if (!isatty(STDOUT_FILENO))
		return;
	if (token)
		snprintf(tail, sizeof(tail), " --token %s", token);
	if (uri_parse(listen, &u) == 0 && uri_is_wildcard(&u) &&
	    uri_format_peer(&u, "THIS-HOST", peer, sizeof(peer)) >= 0)
		printf("%s waits on every address of this host; on the source host "
		       "run,\nwith THIS-HOST a name or address of this host that "
		       "the source can reach:\n  migctl %s VM %s%s\n",
		       vm, cmd, peer, tail);
	else
		printf("%s waits; on the source host run:\n  migctl %s "
		       "VM %s%s\n", vm, cmd, listen, tail);
}

static int cmd_incoming(struct rpc_client *cl, struct cmd_args *a)
{
	Tern__Migd__IncomingRequest req = TERN__MIGD__INCOMING_REQUEST__INIT;
	Tern__Migd__IncomingReply *rep = NULL;

	req.vm = (char *)a->vm;
	req.listen = (char *)a->listen;
	req.token = (char *)(a->token ? a->token : "");
	if (call(cl, "Incoming", &req.base, (ProtobufCMessage **)&rep, false) < 0)
		return CLI_FAILED;
	if (opts.json) {
		json_print(&rep->base);
	} else {
		printf("token %s\n", rep->token);
		print_bound(a->vm, rep->listen, "migrate", rep->token);
	}
	protobuf_c_message_free_unpacked(&rep->base, NULL);
	return CLI_OK;
}

static int cmd_migrate(struct rpc_client *cl, struct cmd_args *a)
{
	Tern__Migd__MigrateRequest req = TERN__MIGD__MIGRATE_REQUEST__INIT;
	Tern__Migd__JobStatus *js = NULL;
	int code;

	req.vm = (char *)a->vm;
	req.uri = (char *)a->uri;
	req.token = (char *)a->token;
	req.n_clear = take_clears(a);
	req.clear = a->clear;
	req.params = &a->params;
	req.wait = !a->detach;
	if (call(cl, "Migrate", &req.base, (ProtobufCMessage **)&js, req.wait) < 0)
		return CLI_FAILED;
	if (a->detach) {
		if (opts.json)
			json_print(&js->base);
		else
			printf("%s: migration to %s started (job %s, worker pid %u); "
			       "'migctl status %s --watch' follows it\n", js->vm,
			       text_safe(js->peer), text_safe(js->id),
			       js->worker_pid, js->vm);
		code = CLI_OK;
	} else {
		code = job_outcome(js, true, TERN__MIGD__JOB_STATE__JOB_COMPLETED);
	}
	protobuf_c_message_free_unpacked(&js->base, NULL);
	return code;
}

static int cmd_status(struct rpc_client *cl, struct cmd_args *a)
{
	Tern__Migd__JobQuery q = TERN__MIGD__JOB_QUERY__INIT;
	Tern__Migd__JobStatus *js = NULL;
	int code;

	q.vm = (char *)a->vm;
	q.id = (char *)(a->id ? a->id : "");
	q.wait = a->watch;
	stop_unrecoverable = a->watch;
	if (call(cl, "Status", &q.base, (ProtobufCMessage **)&js, a->watch) < 0)
		return CLI_FAILED;
	code = job_outcome(js, a->watch, TERN__MIGD__JOB_STATE__JOB_COMPLETED);
	protobuf_c_message_free_unpacked(&js->base, NULL);
	return code;
}

/*
 * A method on one job that answers its JobStatus: with wait, the job's
 * end (success when it reaches want); else a line saying what is being
 * done (doing, or the job's state when NULL), or the JSON.  With bound,
 * the address the job listens on follows the line (print_bound).
 */
static int job_call(struct rpc_client *cl, const char *method,
		    const ProtobufCMessage *arg, bool wait,
		    Tern__Migd__JobState want, const char *doing, bool bound)
{
	Tern__Migd__JobStatus *js = NULL;
	int code = CLI_OK;

	if (call(cl, method, arg, (ProtobufCMessage **)&js, wait) < 0)
		return CLI_FAILED;
	if (wait) {
		code = job_outcome(js, true, want);
	} else if (opts.json) {
		json_print(&js->base);
	} else {
		printf("%s: %s (job %s)\n", js->vm, doing ? doing : state_name(js->state),
		       js->id[0] ? text_safe(js->id) : "without an id yet");
		if (bound)
			print_bound(js->vm, js->listen, "recover", NULL);
	}
	protobuf_c_message_free_unpacked(&js->base, NULL);
	return code;
}

static int cmd_cancel(struct rpc_client *cl, struct cmd_args *a)
{
	Tern__Migd__JobQuery q = TERN__MIGD__JOB_QUERY__INIT;

	q.vm = (char *)a->vm;
	q.id = (char *)(a->id ? a->id : "");
	q.wait = a->wait;
	q.force = a->force;
	return job_call(cl, "Cancel", &q.base, a->wait,
			TERN__MIGD__JOB_STATE__JOB_CANCELLED, NULL, false);
}

static int cmd_postcopy(struct rpc_client *cl, struct cmd_args *a)
{
	Tern__Migd__JobQuery q = TERN__MIGD__JOB_QUERY__INIT;

	q.vm = (char *)a->vm;
	q.id = (char *)(a->id ? a->id : "");
	q.wait = a->wait;
	return job_call(cl, "Postcopy", &q.base, a->wait,
			TERN__MIGD__JOB_STATE__JOB_COMPLETED, "switching to postcopy",
			false);
}

/* Recover a postcopy-paused job: the source names the destination's
 * address, the destination may name a new one to listen on, and is told
 * the address bound first, as incoming is (then, with wait, the end). */
static int cmd_recover(struct rpc_client *cl, struct cmd_args *a)
{
	Tern__Migd__RecoverRequest q = TERN__MIGD__RECOVER_REQUEST__INIT;
	Tern__Migd__JobQuery sq = TERN__MIGD__JOB_QUERY__INIT;
	int code;

	q.vm = (char *)a->vm;
	q.id = (char *)(a->id ? a->id : "");
	q.uri = (char *)(a->uri ? a->uri : "");
	q.listen = (char *)(a->listen ? a->listen : "");
	q.wait = a->wait;
	stop_unrecoverable = a->wait;
	/* (JSON is one object: with wait, the end's; migd waits.) */
	if (!a->listen || (a->wait && opts.json))
		return job_call(cl, "Recover", &q.base, a->wait,
				TERN__MIGD__JOB_STATE__JOB_COMPLETED, "recovering",
				false);
	q.wait = false;
	code = job_call(cl, "Recover", &q.base, false,
			TERN__MIGD__JOB_STATE__JOB_COMPLETED, "recovering", true);
	if (code != CLI_OK || !a->wait)
		return code;
	fflush(stdout);
	sq.vm = (char *)a->vm;
	sq.id = q.id;
	sq.wait = true;
	return job_call(cl, "Status", &sq.base, true,
			TERN__MIGD__JOB_STATE__JOB_COMPLETED, NULL, false);
}

static int cmd_pause(struct rpc_client *cl, struct cmd_args *a)
{
	Tern__Migd__JobQuery q = TERN__MIGD__JOB_QUERY__INIT;

	q.vm = (char *)a->vm;
	q.id = (char *)(a->id ? a->id : "");
	return job_call(cl, "Pause", &q.base, false,
			TERN__MIGD__JOB_STATE__JOB_COMPLETED, "pausing postcopy", false);
}

/* A running outgoing job's cap and limits; what it has now. */
static int cmd_tune(struct rpc_client *cl, struct cmd_args *a)
{
	Tern__Migd__TuneRequest req = TERN__MIGD__TUNE_REQUEST__INIT;
	Tern__Migd__JobStatus *js = NULL;
	const Tern__Migd__Params *p;
	char bw[32], sw[32];

	req.vm = (char *)a->vm;
	req.id = (char *)(a->id ? a->id : "");
	req.n_clear = take_clears(a);
	req.clear = a->clear;
	req.params = &a->params;
	if (call(cl, "Tune", &req.base, (ProtobufCMessage **)&js, false) < 0)
		return CLI_FAILED;
	p = js->params;
	if (opts.json)
		json_print(&js->base);
	else if (p)
		printf("%s: max-bandwidth %s, avail-switchover-bandwidth %s, "
		       "downtime-limit %u ms from now on (job %s)\n", js->vm,
		       p->max_bandwidth ? fmt_rate(p->max_bandwidth, bw, sizeof(bw)) :
		       "unlimited", p->avail_switchover_bandwidth ?
		       fmt_rate(p->avail_switchover_bandwidth, sw, sizeof(sw)) :
		       "measured", p->downtime_limit_ms, text_safe(js->id));
	protobuf_c_message_free_unpacked(&js->base, NULL);
	return CLI_OK;
}

static int cmd_list(struct rpc_client *cl, struct cmd_args *a)
{
	Tern__Migd__JobList *l = NULL;
	char t[32], s[32], st[48];
	size_t i;

	if (call(cl, "List", NULL, (ProtobufCMessage **)&l, false) < 0)
		return CLI_FAILED;
	if (opts.json) {
		json_print(&l->base);
	} else if (l->n_jobs == 0) {
		printf("no migration jobs\n");
	} else {
		printf("%-16s %-11s %-10s %4s %11s %-19s %s\n", "VM", "ROLE", "STATE",
		       "DONE", "TRANSFERRED", "STARTED", "ID");
		for (i = 0; i < l->n_jobs; i++) {
			Tern__Migd__JobStatus *js = l->jobs[i];

			/* DONE is the round's, in precopy: say which */
			if (job_round(js))
				snprintf(st, sizeof(st), "%s r%llu",
					 state_name(js->state),
					 (unsigned long long)job_round(js));
			else
				snprintf(st, sizeof(st), "%s", state_name(js->state));
			printf("%-16s %-11s %-10s %3.0f%% %11s %-19s %s\n", js->vm,
			       role_name(js->role), st, job_fraction(js) * 100,
			       fmt_size(js->transferred_bytes, t, sizeof(t)),
			       fmt_time(js->started_unix_ms, s, sizeof(s)),
			       js->id[0] ? text_safe(js->id) : "-");
			if (js->error[0])
				printf("  %s\n", text_safe(js->error));
		}
	}
	protobuf_c_message_free_unpacked(&l->base, NULL);
	return CLI_OK;
}

static int cmd_params(struct rpc_client *cl, struct cmd_args *a, bool set)
{
	Tern__Migd__SetParamsRequest req = TERN__MIGD__SET_PARAMS_REQUEST__INIT;
	Tern__Migd__Params *p = NULL;

	req.n_clear = take_clears(a);
	req.clear = a->clear;
	req.reset = a->reset;
	req.params = &a->params;
	if (call(cl, set ? "SetParams" : "GetParams", set ? &req.base : NULL,
		 (ProtobufCMessage **)&p, false) < 0)
		return CLI_FAILED;
	if (opts.json)
		json_print(&p->base);
	else
		print_params(p, "");
	protobuf_c_message_free_unpacked(&p->base, NULL);
	return CLI_OK;
}

/* ---- command lines ------------------------------------------------------- */

enum { O_LISTEN = 256, O_TOKEN, O_CHANNELS, O_MAXBW, O_DOWNTIME, O_AVAILBW,
       O_WAIT, O_DETACH, O_WATCH, O_COMPRESS, O_AUTOCONV, O_NOAUTOCONV,
       O_THR_INIT, O_THR_INC, O_THR_MAX, O_TIMEOUT, O_TIMEOUT_ACTION, O_VERIFY,
       O_NOVERIFY, O_POSTCOPY, O_FORCE, O_RESET, O_ID };

/* The tuning flags migrate and set share. */
#define TUNING_USAGE "[--channels N] [--max-bandwidth B] [--downtime-limit MS] " \
	"[--avail-switchover-bandwidth B] [--compress none|zstd[:LEVEL]] " \
	"[--[no-]auto-converge] [--throttle-initial P] [--throttle-increment P] " \
	"[--throttle-max P] [--timeout SEC] [--timeout-action cancel|postcopy] " \
	"[--[no-]verify] [--postcopy manual|auto]"
#define TUNING_OPTS \
	{ "channels", required_argument, NULL, O_CHANNELS }, \
	{ "max-bandwidth", required_argument, NULL, O_MAXBW }, \
	{ "downtime-limit", required_argument, NULL, O_DOWNTIME }, \
	{ "avail-switchover-bandwidth", required_argument, NULL, O_AVAILBW }, \
	{ "compress", required_argument, NULL, O_COMPRESS }, \
	{ "auto-converge", no_argument, NULL, O_AUTOCONV }, \
	{ "no-auto-converge", no_argument, NULL, O_NOAUTOCONV }, \
	{ "throttle-initial", required_argument, NULL, O_THR_INIT }, \
	{ "throttle-increment", required_argument, NULL, O_THR_INC }, \
	{ "throttle-max", required_argument, NULL, O_THR_MAX }, \
	{ "timeout", required_argument, NULL, O_TIMEOUT }, \
	{ "timeout-action", required_argument, NULL, O_TIMEOUT_ACTION }, \
	{ "verify", no_argument, NULL, O_VERIFY }, \
	{ "no-verify", no_argument, NULL, O_NOVERIFY }, \
	{ "postcopy", required_argument, NULL, O_POSTCOPY }

/* What tune changes in a running job. */
#define TUNE_USAGE "[--max-bandwidth B|unlimited] [--downtime-limit MS] " \
	"[--avail-switchover-bandwidth B|measured]"

static const struct command {
	const char *name;
	int nargs;                      /* positional arguments */
	const char *usage;
	const struct option *opts;
} commands[] = {
	{ "incoming", 1, "VM --listen ADDR [--token T]",
	  (const struct option[]){
		{ "listen", required_argument, NULL, O_LISTEN },
		{ "token", required_argument, NULL, O_TOKEN },
		{ NULL, 0, NULL, 0 } } },
	{ "migrate", 2, "VM URI --token T " TUNING_USAGE " [--wait|--detach]",
	  (const struct option[]){
		{ "token", required_argument, NULL, O_TOKEN },
		TUNING_OPTS,
		{ "wait", no_argument, NULL, O_WAIT },
		{ "detach", no_argument, NULL, O_DETACH },
		{ NULL, 0, NULL, 0 } } },
	{ "status", 1, "VM [--id ID] [--watch]",
	  (const struct option[]){
		{ "id", required_argument, NULL, O_ID },
		{ "watch", no_argument, NULL, O_WATCH },
		{ NULL, 0, NULL, 0 } } },
	{ "cancel", 1, "VM [--id ID] [--force] [--wait]",
	  (const struct option[]){
		{ "id", required_argument, NULL, O_ID },
		{ "force", no_argument, NULL, O_FORCE },
		{ "wait", no_argument, NULL, O_WAIT },
		{ NULL, 0, NULL, 0 } } },
	{ "postcopy", 1, "VM [--id ID] [--wait]",
	  (const struct option[]){
		{ "id", required_argument, NULL, O_ID },
		{ "wait", no_argument, NULL, O_WAIT },
		{ NULL, 0, NULL, 0 } } },
	{ "recover", 1, "VM URI|--listen ADDR [--id ID] [--wait]",
	  (const struct option[]){
		{ "id", required_argument, NULL, O_ID },
		{ "listen", required_argument, NULL, O_LISTEN },
		{ "wait", no_argument, NULL, O_WAIT },
		{ NULL, 0, NULL, 0 } } },
	{ "pause", 1, "VM [--id ID]",
	  (const struct option[]){
		{ "id", required_argument, NULL, O_ID },
		{ NULL, 0, NULL, 0 } } },
	{ "tune", 1, "VM [--id ID] " TUNE_USAGE,
	  (const struct option[]){
		{ "id", required_argument, NULL, O_ID },
		{ "max-bandwidth", required_argument, NULL, O_MAXBW },
		{ "downtime-limit", required_argument, NULL, O_DOWNTIME },
		{ "avail-switchover-bandwidth", required_argument, NULL, O_AVAILBW },
		{ NULL, 0, NULL, 0 } } },
	{ "list", 0, "", (const struct option[]){ { NULL, 0, NULL, 0 } } },
	{ "set", 0, "[--reset] " TUNING_USAGE,
	  (const struct option[]){
		{ "reset", no_argument, NULL, O_RESET },
		TUNING_OPTS,
		{ NULL, 0, NULL, 0 } } },
	{ "get", 0, "", (const struct option[]){ { NULL, 0, NULL, 0 } } },
};

static int usage_of(const struct command *c)
{
	cli_errx("usage: migctl %s%s%s", c->name, c->usage[0] ? " " : "", c->usage);
	return -EINVAL;
}

/* A bandwidth: a size per second (500M), or 0 or the flag's own word
 * for none (unlimited, or measured), returned as UINT64_MAX ("set to
 * zero", take_clears). */
static int parse_bandwidth(const char *flag, const char *s, uint64_t *ret)
{
	const char *word = strstr(flag, "switchover") ? "measured" : "unlimited";
	uint64_t v;

	if (!strcmp(s, "0") || !strcmp(s, word)) {
		*ret = UINT64_MAX;
		return 0;
	}
	if (parse_size(s, &v) < 0 || v == 0 || v == UINT64_MAX) {
		cli_errx("%s %s: expected bytes per second such as 500M or 1G, "
			 "or %s", flag, s, word);
		return -EINVAL;
	}
	*ret = v;
	return 0;
}

static int parse_percent(const char *flag, const char *s, uint32_t *ret)
{
	uint64_t v;

	if (parse_u64(s, 1, 99, &v) < 0) {
		cli_errx("%s %s: expected a percentage from 1 to 99", flag, s);
		return -EINVAL;
	}
	*ret = v;
	return 0;
}

/* none, zstd or zstd:LEVEL (1..19). */
static int parse_compress(const char *s, Tern__Migd__Params *p)
{
	uint64_t level = 0;

	if (!strcmp(s, "none")) {
		p->compress = TERN__MIGD__COMPRESS__COMPRESS_NONE;
		return 0;
	}
	if (!strncmp(s, "zstd", 4) && (s[4] == 0 ||
	    (s[4] == ':' && parse_u64(s + 5, 1, 19, &level) == 0))) {
		p->compress = TERN__MIGD__COMPRESS__COMPRESS_ZSTD;
		p->compress_level = level;
		return 0;
	}
	cli_errx("--compress %s: expected none, zstd or zstd:LEVEL (1 to 19)", s);
	return -EINVAL;
}

/* --NAME or --no-NAME into *field: given both ways, neither is taken
 * (which one counted would be the command line's order, by chance). */
static int parse_toggle(const struct command *c, const char *name, bool on,
			Tern__Migd__Toggle *field)
{
	Tern__Migd__Toggle v = on ? TERN__MIGD__TOGGLE__TOGGLE_ON :
				    TERN__MIGD__TOGGLE__TOGGLE_OFF;

	if (*field != TERN__MIGD__TOGGLE__TOGGLE_UNSET && *field != v) {
		cli_errx("%s: --%s and --no-%s exclude each other", c->name,
			 name, name);
		return -EINVAL;
	}
	*field = v;
	return 0;
}

static int parse_opt(const struct command *c, int ch, struct cmd_args *a)
{
	uint64_t v;

	switch (ch) {
	case O_LISTEN: a->listen = optarg; return 0;
	case O_TOKEN: a->token = optarg; return 0;
	case O_ID: a->id = optarg; return 0;
	case O_WAIT: a->wait = true; return 0;
	case O_FORCE: a->force = true; return 0;
	case O_RESET: a->reset = true; return 0;
	case O_DETACH: a->detach = true; return 0;
	case O_WATCH: a->watch = true; return 0;
	case O_CHANNELS:
		if (parse_u64(optarg, 1, CTL_MAX_CHANNELS, &v) < 0) {
			cli_errx("--channels %s: expected a number from 1 to %d", optarg,
			      CTL_MAX_CHANNELS);
			return -EINVAL;
		}
		a->params.channels = v;
		return 0;
	case O_DOWNTIME:
		if (parse_u64(optarg, 1, CTL_MAX_DOWNTIME_MS, &v) < 0) {
			cli_errx("--downtime-limit %s: expected milliseconds from 1 to %d",
			      optarg, CTL_MAX_DOWNTIME_MS);
			return -EINVAL;
		}
		a->params.downtime_limit_ms = v;
		return 0;
	case O_MAXBW:
		return parse_bandwidth("--max-bandwidth", optarg,
				       &a->params.max_bandwidth);
	case O_AVAILBW:
		return parse_bandwidth("--avail-switchover-bandwidth", optarg,
				       &a->params.avail_switchover_bandwidth);
	case O_COMPRESS:
		return parse_compress(optarg, &a->params);
	case O_AUTOCONV:
	case O_NOAUTOCONV:
		return parse_toggle(c, "auto-converge", ch == O_AUTOCONV,
				    &a->params.auto_converge);
	case O_VERIFY:
	case O_NOVERIFY:
		return parse_toggle(c, "verify", ch == O_VERIFY, &a->params.verify);
	case O_THR_INIT:
		return parse_percent("--throttle-initial", optarg,
				     &a->params.throttle_initial);
	case O_THR_INC:
		return parse_percent("--throttle-increment", optarg,
				     &a->params.throttle_increment);
	case O_THR_MAX:
		return parse_percent("--throttle-max", optarg, &a->params.throttle_max);
	case O_TIMEOUT:
		if (!strcmp(optarg, "0") || !strcmp(optarg, "none")) {
			a->params.timeout_s = UINT32_MAX;       /* take_clears */
			return 0;
		}
		if (parse_u64(optarg, 1, CTL_MAX_TIMEOUT_S, &v) < 0) {
			cli_errx("--timeout %s: expected seconds from 1 to %d, or none",
				 optarg, CTL_MAX_TIMEOUT_S);
			return -EINVAL;
		}
		a->params.timeout_s = v;
		return 0;
	case O_TIMEOUT_ACTION:
		if (strcmp(optarg, "cancel") && strcmp(optarg, "postcopy")) {
			cli_errx("--timeout-action %s: expected cancel or postcopy",
				 optarg);
			return -EINVAL;
		}
		a->params.timeout_action = !strcmp(optarg, "cancel") ?
			TERN__MIGD__TIMEOUT_ACTION__TIMEOUT_CANCEL :
			TERN__MIGD__TIMEOUT_ACTION__TIMEOUT_POSTCOPY;
		return 0;
	case O_POSTCOPY:
		if (strcmp(optarg, "manual") && strcmp(optarg, "auto")) {
			cli_errx("--postcopy %s: expected manual or auto", optarg);
			return -EINVAL;
		}
		a->params.postcopy = !strcmp(optarg, "auto") ?
			TERN__MIGD__POSTCOPY_POLICY__POSTCOPY_AUTO :
			TERN__MIGD__POSTCOPY_POLICY__POSTCOPY_MANUAL;
		return 0;
	default:
		return usage_of(c);
	}
}

/* A peer's or a listening address, as migd takes it; what is wrong
 * with it, by name. */
static int check_uri(const char *what, const char *s, bool listen)
{
	const char *why;
	char shown[4200];
	struct uri u;

	if (uri_parse_why(s, &u, &why) == 0) {
		why = u.kind == URI_FILE ? "a file is not a migration peer" :
		      u.kind == URI_TCP && u.port == 0 && !listen ?
		      "port 0 is for --listen only" : NULL;
		if (!why)
			return 0;
	}
	cli_errx("%s%s: %s (expected " URI_FORMS ")", what,
		 str_shown(s, shown, sizeof(shown)), why);
	return -EINVAL;
}

static int parse_cmd(const struct command *c, int argc, char **argv,
		     struct cmd_args *a)
{
	struct cli_seen seen = { { 0 } };
	uint8_t tok[STREAM_TOKEN_LEN], id[STREAM_ID_LEN];
	char *pos[3];
	int ch, r, npos = 0;

	optind = 0;
	opterr = 0;
	/* '-': operands come back in order as option 1, so that options may
	 * follow them even when POSIXLY_CORRECT is set. */
	while ((ch = getopt_long(argc, argv, "-:", c->opts, NULL)) != -1) {
		if (ch == 1) {
			if (npos < 3)
				pos[npos] = optarg;
			npos++;
			continue;
		}
		if (ch == '?' || ch == ':') {
			cli_bad_option(argv, ch, c->name, c->opts);
			return -EINVAL;
		}
		r = cli_option_once(&seen, ch, c->name, c->opts);
		if (r == 0)
			r = parse_opt(c, ch, a);
		if (r < 0)
			return r;
	}
	for (; optind < argc; optind++, npos++)  /* after "--" */
		if (npos < 3)
			pos[npos] = argv[optind];
	/* recover VM [URI]: the source names the destination's address. */
	if (!strcmp(c->name, "recover") && npos == 2)
		a->uri = pos[1];
	else if (npos != c->nargs)
		return usage_of(c);
	if (c->nargs > 0) {
		a->vm = pos[0];
		if (name_valid(a->vm) < 0) {
			cli_errx("'%s' is not a valid VM name (" NAME_RULE ")",
				 a->vm);
			return -EINVAL;
		}
	}
	if (!strcmp(c->name, "incoming") && !a->listen)
		return usage_of(c);
	/* With neither, a source has nowhere to dial and a destination
	 * nothing to change: say which one each side takes. */
	if (!strcmp(c->name, "recover") && !a->uri && !a->listen) {
		cli_errx("recover %s: give the destination's URI (on the source "
			 "host) or --listen ADDR (on the destination host)", a->vm);
		return -EINVAL;
	}
	if (!strcmp(c->name, "tune") && !a->params.max_bandwidth &&
	    !a->params.downtime_limit_ms && !a->params.avail_switchover_bandwidth) {
		cli_errx("tune %s: nothing to change: give --max-bandwidth, "
			 "--downtime-limit or --avail-switchover-bandwidth", a->vm);
		return -EINVAL;
	}
	/* What is wrong with an address first: without a token too. */
	if (!strcmp(c->name, "migrate"))
		a->uri = pos[1];
	if (a->listen && check_uri("--listen ", a->listen, true) < 0)
		return -EINVAL;
	if (a->uri && check_uri("", a->uri, false) < 0)
		return -EINVAL;
	if (!strcmp(c->name, "migrate")) {
		if (!a->token)
			return usage_of(c);
		if (a->wait && a->detach) {
			cli_errx("migrate: --wait and --detach exclude each other");
			return -EINVAL;
		}
	}
	if (a->token && stream_unhex(a->token, tok, sizeof(tok)) < 0) {
		cli_errx("--token %s: expected the %d hex digits that 'migctl incoming' "
		      "printed", a->token, STREAM_TOKEN_HEX);
		return -EINVAL;
	}
	if (a->id && (strlen(a->id) != 2 * STREAM_ID_LEN ||
		      stream_unhex(a->id, id, sizeof(id)) < 0 ||
		      strspn(a->id, "0") == strlen(a->id))) {
		cli_errx("--id %s: expected the %d hex digits of a job's id (as "
			 "status and list show it)", a->id, 2 * STREAM_ID_LEN);
		return -EINVAL;
	}
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
"usage: migctl [--rundir DIR] [--json] [--timeout SEC] COMMAND [ARGS]\n"
"  incoming VM --listen ADDR [--token T]   wait for VM from a source host\n"
"  migrate VM URI --token T [TUNING] [--wait|--detach]\n"
"                                           send VM live to URI\n"
"  status VM [--watch]                      the VM's current or last job\n"
"  cancel VM [--force] [--wait]             cancel the VM's running job\n"
"                                           (--force: one postcopy-paused)\n"
"  postcopy VM [--wait]                     switch VM's migration to postcopy\n"
"  pause VM                                 force postcopy-paused (move networks)\n"
"  tune VM [--max-bandwidth B|unlimited] [--downtime-limit MS]\n"
"       [--avail-switchover-bandwidth B|measured]\n"
"                                           change VM's running migration\n"
"  recover VM URI|--listen ADDR [--wait]\n"
"                                           resume a postcopy-paused job\n"
"  list                                     running jobs, then history\n"
"  set [--reset] [TUNING]                   migd's defaults for new jobs\n"
"  get                                      show those defaults\n"
"  help [COMMAND]                           this, or one command's usage\n"
"--id ID (status, cancel, postcopy, pause, tune, recover): the VM's job of\n"
"                                           that id (running or finished), not\n"
"                                           its latest\n"
"TUNING: [--channels N] [--max-bandwidth B] [--downtime-limit MS]\n"
"  [--avail-switchover-bandwidth B] [--compress none|zstd[:LEVEL]]\n"
"  [--[no-]auto-converge] [--throttle-initial P] [--throttle-increment P]\n"
"  [--throttle-max P] [--timeout SEC] [--timeout-action cancel|postcopy]\n"
"  [--[no-]verify] [--postcopy manual|auto]\n"
"see migctl(1)\n");
}

static const struct cli_commands cli_commands = {
	commands, ARRAY_SIZE(commands), sizeof(commands[0]),
	offsetof(struct command, usage), usage
};

static int run(int argc, char **argv)
{
	const struct command *cmd = NULL;
	struct cmd_args a = { 0 };
	struct rpc_client *cl;
	struct sigaction sa = { .sa_handler = handle_interrupt };
	int code;

	tern__migd__params__init(&a.params);
	cmd = cli_command(&cli_commands, argc, argv, &code);
	if (!cmd)
		return code;
	if (parse_cmd(cmd, argc, argv, &a) < 0)
		return CLI_USAGE;
	prog.tty = isatty(STDOUT_FILENO) && !opts.json;
	/* Only while waiting on a job does Ctrl-C leave something behind
	 * that the user should know about. */
	if (a.wait || a.watch || (!strcmp(cmd->name, "migrate") && !a.detach)) {
		sigemptyset(&sa.sa_mask);
		sigaction(SIGINT, &sa, NULL);
	}
	cl = ctl_connect();
	if (!cl)
		return CLI_FAILED;
	if (!strcmp(cmd->name, "incoming"))
		code = cmd_incoming(cl, &a);
	else if (!strcmp(cmd->name, "migrate"))
		code = cmd_migrate(cl, &a);
	else if (!strcmp(cmd->name, "status"))
		code = cmd_status(cl, &a);
	else if (!strcmp(cmd->name, "cancel"))
		code = cmd_cancel(cl, &a);
	else if (!strcmp(cmd->name, "postcopy"))
		code = cmd_postcopy(cl, &a);
	else if (!strcmp(cmd->name, "recover"))
		code = cmd_recover(cl, &a);
	else if (!strcmp(cmd->name, "pause"))
		code = cmd_pause(cl, &a);
	else if (!strcmp(cmd->name, "tune"))
		code = cmd_tune(cl, &a);
	else if (!strcmp(cmd->name, "list"))
		code = cmd_list(cl, &a);
	else
		code = cmd_params(cl, &a, !strcmp(cmd->name, "set"));
	rpc_client_free(cl);
	return code;
}

int main(int argc, char **argv)
{
	int cmd;

	cli_init("migctl", "migctl(1)");
	cmd = cli_parse_globals(argc, argv, &opts, usage);
	if (cmd < 0)
		return cmd == -1 ? CLI_OK : CLI_USAGE;
	return run(argc - cmd, argv + cmd);
}
