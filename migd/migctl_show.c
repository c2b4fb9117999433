// SPDX-License-Identifier: GPL-2.0-only
/*
 * migctl: how it shows a job.  The formatting of sizes, rates, times and
 * a job's state and progress; text from a peer made safe for a terminal;
 * a job's full status and its last line as text, and migd's parameters;
 * and the progress bar of a job being waited on.  The commands
 * (migctl_cmd.c) call it; JSON output is common/json.c's.
 */
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "migd/migctl.h"
#include "proto/migd.pb-c.h"

#define CTL_LINE_INTERVAL_NS 1000000000ULL  /* plain progress lines */
#define CTL_BAR_WIDTH 30

/* ---- formatting -------------------------------------------------------- */

const char *show_state_name(Tern__Migd__JobState s)
{
	static const char *const names[] = {
		"none", "setup", "active", "device", "completed", "failed",
		"cancelling", "cancelled", "waiting", "postcopy-active",
		"postcopy-paused", "postcopy-recover",
	};

	return (unsigned int)s < ARRAY_SIZE(names) ? names[s] : "unknown";
}

const char *show_role_name(Tern__Migd__JobRole r)
{
	return r == TERN__MIGD__JOB_ROLE__ROLE_SOURCE ? "source" :
	       r == TERN__MIGD__JOB_ROLE__ROLE_DEST ? "destination" : "unknown";
}

bool show_state_final(Tern__Migd__JobState s)
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
char *show_text_safe(char *s)
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

const char *fmt_ms(uint64_t ms, char *buf, size_t len)
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

const char *fmt_time(uint64_t unix_ms, char *buf, size_t len)
{
	time_t t = unix_ms / 1000;
	struct tm tm;

	if (!unix_ms || !localtime_r(&t, &tm) ||
	    !strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm))
		snprintf(buf, len, "-");
	return buf;
}

bool job_switching(const Tern__Migd__JobStatus *js)
{
	return js->state == TERN__MIGD__JOB_STATE__JOB_ACTIVE &&
	       js->postcopy_started;
}

bool show_worker_stopped(const Tern__Migd__JobStatus *js, const char *name,
			 char *buf, size_t len)
{
	return js->worker_pid && !show_state_final(js->state) &&
	       proc_stopped_say((int)js->worker_pid, name, buf, len);
}

/* A source in precopy: the round under way, or next (1 for the first);
 * else 0. */
uint64_t job_round(const Tern__Migd__JobStatus *js)
{
	if (js->state != TERN__MIGD__JOB_STATE__JOB_ACTIVE ||
	    js->role != TERN__MIGD__JOB_ROLE__ROLE_SOURCE || job_switching(js))
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
 * switch; not a postcopy, nor a stopped source, with nothing left: each
 * is near its end, not at transferred / RAM, which counts the zero
 * pages never sent).  Only a completed job is at 100%.
 */
double job_fraction(const Tern__Migd__JobStatus *js)
{
	uint64_t t = js->transferred_bytes, r = js->remaining_bytes;
	double f = 0;

	if (js->state == TERN__MIGD__JOB_STATE__JOB_COMPLETED)
		return 1.0;
	if (job_round(js))      /* between rounds: the next, at 0 */
		f = js->round_pages ? (double)js->round_sent /
				      (double)js->round_pages : 0;
	else if (r > 0 || (t && (js->postcopy_started ||
				 js->state == TERN__MIGD__JOB_STATE__JOB_DEVICE)))
		f = (double)t / (double)(t + r);   /* (0.99 below: not done) */
	else if (js->total_bytes)
		f = (double)t / (double)js->total_bytes;
	return MIN(f, 0.99);
}

/* A rate as status shows it, and its exact bytes when that shows it
 * rounded: what get prints, set takes back (parse_rate). */
static const char *param_rate(uint64_t v, char *buf, size_t len)
{
	uint64_t back;
	size_t n;

	fmt_rate(v, buf, len);
	n = strlen(buf);
	if ((parse_rate(buf, &back) < 0 || back != v) && n < len)
		snprintf(buf + n, len - n, " (exactly %llu)", (unsigned long long)v);
	return buf;
}

void print_params(const Tern__Migd__Params *p, const char *indent)
{
	bool postcopy_at_timeout = p->timeout_action ==
				   TERN__MIGD__TIMEOUT_ACTION__TIMEOUT_POSTCOPY;
	bool converge = p->auto_converge == TERN__MIGD__TOGGLE__TOGGLE_ON;
	char a[64], b[64];

	printf("%schannels                    %u\n", indent, p->channels);
	printf("%smax-bandwidth               %s\n", indent, p->max_bandwidth ?
	       param_rate(p->max_bandwidth, a, sizeof(a)) : "unlimited");
	printf("%savail-switchover-bandwidth  %s\n", indent,
	       p->avail_switchover_bandwidth ?
	       param_rate(p->avail_switchover_bandwidth, b, sizeof(b)) : "measured");
	printf("%sdowntime-limit              %u ms\n", indent, p->downtime_limit_ms);
	if (p->compress == TERN__MIGD__COMPRESS__COMPRESS_ZSTD)
		printf("%scompress                    zstd:%u\n", indent,
		       p->compress_level);
	else
		printf("%scompress                    none\n", indent);
	/* The throttle's figures show with auto-converge off too: a set
	 * --throttle-max must be seen to have taken. */
	printf("%sauto-converge               %s (%u%% + %u%% a step, up to "
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
		/* Paused, the source cannot know what did not arrive (and
		 * a job that can never recover needs nothing kept). */
		if (js->state == TERN__MIGD__JOB_STATE__JOB_POSTCOPY_PAUSED &&
		    !js->unrecoverable)
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
void print_status(Tern__Migd__JobStatus *js)
{
	bool source = js->role == TERN__MIGD__JOB_ROLE__ROLE_SOURCE;
	char a[32], b[32], c[32], d[32], stopped[128], *vm;
	const char *when;
	size_t i;

	printf("%s: %s, %s%s", js->vm, show_role_name(js->role),
	       show_state_name(js->state), job_switching(js) ?
	       ", switching to postcopy" : "");
	if (js->id[0])
		printf(" (job %s)", show_text_safe(js->id));
	printf("\n");
	show_text_safe(js->peer);
	show_text_safe(js->listen);
	/* A destination's peer is where it first listened (tern-rpc(7)):
	 * the address it answers on now is what it has to say. */
	if (source)
		printf("  peer          %s\n", js->peer[0] ? js->peer : "-");
	else
		printf("  %s  %s\n", show_state_final(js->state) ?
		       "listened on " : "listening on", js->listen[0] ?
		       js->listen : js->peer[0] ? js->peer : "-");
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
	/* (20 s: MIGD_STALL_TIMEOUT_MS, counted by the kernel from when
	 * the window closed, a little before the source's last byte) */
	if (js->stalled_ms)
		printf("  stalled       nothing sent for %llu s: the destination "
		       "takes nothing (its worker may be stopped, or the link "
		       "blocked: 'migctl status' there says more); a link that "
		       "takes nothing for about 20 s fails the job\n",
		       (unsigned long long)(js->stalled_ms / 1000));
	if (source) {
		printf("  pages         %llu sent, %llu zero, %llu skipped (holes at "
		       "round 1)\n", (unsigned long long)js->pages_sent,
		       (unsigned long long)js->zero_pages,
		       (unsigned long long)js->skipped_pages);
		/* Rounds completed: the one under way (the bar's, list's
		 * "r1") is not counted yet. */
		printf("  rounds        %llu", (unsigned long long)js->rounds);
		if (job_round(js))
			printf(" completed, round %llu under way",
			       (unsigned long long)job_round(js));
		else if (js->postcopy_started)
			printf(" completed before the postcopy switch");
		printf("\n");
		/* Measured as a round ends: none before the first did. */
		if (js->rounds) {
			printf("  dirty rate    %llu pages/s\n",
			       (unsigned long long)js->dirty_rate);
			printf("  bandwidth     %s\n",
			       fmt_rate(js->bandwidth, a, sizeof(a)));
		} else {
			printf("  dirty rate    - (measured as a round ends)\n");
			printf("  bandwidth     - (measured as a round ends)\n");
		}
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
		/* The part not for pages: the expected pause's, or once a
		 * precopy without verify completed, the final one's, as
		 * measured (tern-rpc(7)); beside the pause it is part of. */
		bool measured = js->state == TERN__MIGD__JOB_STATE__JOB_COMPLETED &&
				!js->postcopy_started &&
				!(js->params &&
				  js->params->verify == TERN__MIGD__TOGGLE__TOGGLE_ON);

		/* (none before a round's end: not "0 ms", which reads as
		 * good news) */
		printf("  downtime      expected %s", !js->rounds &&
		       !js->expected_downtime_ms ? "-" :
		       fmt_ms(js->expected_downtime_ms, a, sizeof(a)));
		if (js->pause_fixed_us && !measured)
			printf(" (%.1f ms of it not for pages)",
			       js->pause_fixed_us / 1000.0);
		printf(", final %s",
		       js->downtime_us ? fmt_us(js->downtime_us, b, sizeof(b)) : "-");
		if (js->pause_fixed_us && measured)
			printf(" (%.1f ms of it not for pages)",
			       js->pause_fixed_us / 1000.0);
		if (js->params)
			printf(" (limit %u ms)", js->params->downtime_limit_ms);
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
		printf("  verified      %s\n", show_text_safe(js->verified));
	/* Once the job ended, only if it would have switched by itself:
	 * else it is no news for a precopy that completed. */
	if (js->no_postcopy[0] && (!show_state_final(js->state) ||
				   (js->params && (js->params->postcopy ==
				    TERN__MIGD__POSTCOPY_POLICY__POSTCOPY_AUTO ||
				    js->params->timeout_action ==
				    TERN__MIGD__TIMEOUT_ACTION__TIMEOUT_POSTCOPY))))
		printf("  postcopy      cannot be: %s\n",
		       show_text_safe(js->no_postcopy));
	if (js->postcopy_stats)
		print_postcopy(js);
	printf("  time          setup %s, total %s\n",
	       fmt_ms(js->setup_ms, a, sizeof(a)), fmt_ms(js->total_ms, b, sizeof(b)));
	printf("  started       %s\n", fmt_time(js->started_unix_ms, c, sizeof(c)));
	if (js->finished_unix_ms)
		printf("  finished      %s\n", fmt_time(js->finished_unix_ms, d, sizeof(d)));
	if (show_worker_stopped(js, "the worker", stopped, sizeof(stopped)))
		/* Its figures are those of its last report, before the stop */
		printf("  worker        %s; the figures above are its last "
		       "report's\n", stopped);
	else if (js->worker_pid)
		printf("  worker        pid %u\n", js->worker_pid);
	if (source)
		printf("  switched      %s\n", !js->switched ? "no" :
		       js->guest_paused ? "yes (the destination was told to take "
		       "the guest, paused)" : "yes (the destination was told to "
		       "resume)");
	if (js->guest_paused)
		printf("  guest         %s\n", !source ? "kept paused here at "
		       "the switch, as it was on the source (vmmctl cont starts "
		       "it)" : js->switched ? "kept paused on the destination at "
		       "the switch, as it was here when the job stopped it" :
		       "paused here when the job stopped it, as it stays");
	if (js->params) {
		printf("  parameters\n");
		print_params(js->params, "    ");
	}
	if (js->error[0])
		printf("  error         %s\n", show_text_safe(js->error));
	/* What brings a paused job back (the error says what paused it). */
	if (js->state != TERN__MIGD__JOB_STATE__JOB_POSTCOPY_PAUSED ||
	    js->unrecoverable)
		return;
	vm = show_text_safe(js->vm);
	/* (a pause asked for has no cause to wait out) */
	when = strstr(js->error, "paused on request") ? "when wanted" :
	       "once the cause is gone";
	if (source)
		printf("  next          %s, 'migctl recover %s ADDR' here, ADDR "
		       "where the destination job listens\n", when, vm);
	else
		printf("  next          %s, 'migctl recover' of the source's job "
		       "on its host, to this job's address (or to a new one that "
		       "'migctl recover %s --listen' here prints)\n", when, vm);
}

/*
 * A source job's last line.  After a switch to postcopy the rounds are
 * the precopy ones before it (none when it came in round 1) and the
 * downtime is the pause at the switch.  A guest that was paused when
 * the job stopped it had none: the line says where it stays paused.
 */
void print_completed(const Tern__Migd__JobStatus *js)
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

struct progress progress;

static int term_width(void)
{
	struct winsize ws;

	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
		return ws.ws_col;
	return 80;
}

void progress_show(const Tern__Migd__JobStatus *js)
{
	char line[512], bar[CTL_BAR_WIDTH + 1], a[32], b[32], c[32], d[32];
	bool switching = job_switching(js);
	bool active = js->state == TERN__MIGD__JOB_STATE__JOB_ACTIVE && !switching;
	bool source = js->role == TERN__MIGD__JOB_ROLE__ROLE_SOURCE;
	double frac = job_fraction(js);
	uint64_t now = now_ns(), round = job_round(js);
	int i, fill, n, width;

	/* A round starts a bar of its own, as does the end of precopy. */
	if (js->started_unix_ms != progress.job_started || round != progress.round) {
		progress.job_started = js->started_unix_ms;
		progress.round = round;
		progress.max = 0;
	}
	if (frac > progress.max)
		progress.max = frac;
	if (progress.max > 1)
		progress.max = 1;
	fill = (int)(progress.max * CTL_BAR_WIDTH);
	for (i = 0; i < CTL_BAR_WIDTH; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[CTL_BAR_WIDTH] = 0;
	/* In precopy, the round under way; the rates and the estimate
	 * only once a round ended and measured them. */
	if (round)
		n = snprintf(line, sizeof(line), "%s [%s] %3.0f%% of round %llu  "
			     "sent %s, %s left", js->vm, bar, progress.max * 100,
			     (unsigned long long)round,
			     fmt_size(js->transferred_bytes, a, sizeof(a)),
			     fmt_size(js->remaining_bytes, b, sizeof(b)));
	else
		n = snprintf(line, sizeof(line), "%s [%s] %3.0f%% %-10s %s %s",
			     js->vm, bar, progress.max * 100, switching ? "switching" :
			     show_state_name(js->state), source ? "sent" : "received",
			     fmt_size(js->transferred_bytes, a, sizeof(a)));
	/* (a destination in precopy: what is left is the source's to know) */
	if (!round && (source || js->postcopy_stats) && n < (int)sizeof(line))
		n += snprintf(line + n, sizeof(line) - n, ", %s left",
			      fmt_size(js->remaining_bytes, b, sizeof(b)));
	/* A destination counts no rounds, nor does a job that ended in
	 * its first: no "round 0". */
	if (!round && source && !switching && js->rounds + (active ? 1 : 0) &&
	    n < (int)sizeof(line))
		n += snprintf(line + n, sizeof(line) - n, "  round %llu",
			      (unsigned long long)js->rounds + (active ? 1 : 0));
	/* (precopy's: in postcopy no page is dirtied, and the pause is
	 * over) */
	if (js->rounds && !js->postcopy_stats && n < (int)sizeof(line))
		n += snprintf(line + n, sizeof(line) - n,
			      "  %s  dirty %llu p/s  downtime ~%s",
			      fmt_rate(js->bandwidth, c, sizeof(c)),
			      (unsigned long long)js->dirty_rate,
			      fmt_ms(js->expected_downtime_ms, d, sizeof(d)));
	if (js->stalled_ms && n < (int)sizeof(line))
		n += snprintf(line + n, sizeof(line) - n, "  stalled %llu s",
			      (unsigned long long)(js->stalled_ms / 1000));
	if (progress.tty) {
		width = term_width() - 1;
		if (n > width)
			line[width] = 0;
		printf("\r\033[K%s", line);
		progress.drawn = true;
	} else {
		if (js->state == progress.last_state && progress.last_line_ns &&
		    now - progress.last_line_ns < CTL_LINE_INTERVAL_NS)
			return;
		printf("%s\n", line);
		progress.last_line_ns = now;
	}
	progress.last_state = js->state;
	fflush(stdout);
}

void progress_end(void)
{
	if (progress.drawn)
		fputc('\n', stdout);
	progress.drawn = false;
	fflush(stdout);
}
