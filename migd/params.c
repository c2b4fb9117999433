// SPDX-License-Identifier: GPL-2.0-only
/*
 * Migration parameters: migd's built-in defaults, checking and merging
 * what a caller sets (tern.migd.Params, where zero and UNSET mean "keep",
 * with a list of names to set to 0: SetParams, Migrate and Tune alike),
 * which of them a running job takes (Tune), and turning them back into
 * the message for status and GetParams.
 * Used by the parent (control.c, jobs.c) and the workers (worker.c).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "migd/migd.h"

#define PARAM_MAX_DOWNTIME_MS 600000
#define PARAM_MAX_TIMEOUT_S (7 * 24 * 3600)
#define PARAM_MIN_CHANNEL_BPS (64u << 10)

void params_defaults(struct mig_params *p)
{
	memset(p, 0, sizeof(*p));
	p->channels = MIGD_DEFAULT_CHANNELS;
	p->downtime_limit_ms = MIGD_DEFAULT_DOWNTIME_MS;
	p->compress = COMPRESS_KIND_NONE;
	p->compress_level = 1;
	p->throttle_initial = 20;
	p->throttle_increment = 10;
	p->throttle_max = 99;
	p->timeout_action = TIMEOUT_ACTION_CANCEL;
}

static bool toggle(Tern__Migd__Toggle t, bool old)
{
	return t == TERN__MIGD__TOGGLE__TOGGLE_UNSET ? old :
	       t == TERN__MIGD__TOGGLE__TOGGLE_ON;
}

#define RANGE(field, lo, hi, what)						\
	do {									\
		if (p->field && (p->field < (lo) || p->field > (hi))) {		\
			snprintf(err, len, "%s %llu: expected %llu to %llu",	\
				 what, (unsigned long long)p->field,		\
				 (unsigned long long)(lo),			\
				 (unsigned long long)(hi));			\
			return -ERANGE;						\
		}								\
	} while (0)

int params_merge(const Tern__Migd__Params *p, struct mig_params *out,
		 char *err, size_t len)
{
	struct mig_params n = *out;

	if (!p)
		return 0;
	RANGE(channels, 1, STREAM_MAX_CHANNELS, "channels");
	RANGE(downtime_limit_ms, 1, PARAM_MAX_DOWNTIME_MS, "downtime limit (ms)");
	RANGE(compress_level, 1, 19, "zstd level");
	RANGE(throttle_initial, 1, 99, "initial throttle (%)");
	RANGE(throttle_increment, 1, 99, "throttle increment (%)");
	RANGE(throttle_max, 1, 99, "maximum throttle (%)");
	RANGE(timeout_s, 1, PARAM_MAX_TIMEOUT_S, "timeout (s)");
	if ((unsigned int)p->compress > TERN__MIGD__COMPRESS__COMPRESS_ZSTD ||
	    (unsigned int)p->auto_converge > TERN__MIGD__TOGGLE__TOGGLE_OFF ||
	    (unsigned int)p->verify > TERN__MIGD__TOGGLE__TOGGLE_OFF ||
	    (unsigned int)p->timeout_action > TERN__MIGD__TIMEOUT_ACTION__TIMEOUT_POSTCOPY) {
		snprintf(err, len, "unknown compression, switch or timeout action");
		return -EINVAL;
	}
	if ((unsigned int)p->postcopy > TERN__MIGD__POSTCOPY_POLICY__POSTCOPY_AUTO) {
		snprintf(err, len, "unknown postcopy policy");
		return -EINVAL;
	}
	if (p->channels)
		n.channels = p->channels;
	if (p->max_bandwidth)
		n.max_bandwidth = p->max_bandwidth;
	if (p->avail_switchover_bandwidth)
		n.avail_switchover_bandwidth = p->avail_switchover_bandwidth;
	if (p->downtime_limit_ms)
		n.downtime_limit_ms = p->downtime_limit_ms;
	if (p->compress)
		n.compress = p->compress == TERN__MIGD__COMPRESS__COMPRESS_ZSTD ?
			     COMPRESS_KIND_ZSTD : COMPRESS_KIND_NONE;
	if (p->compress_level)
		n.compress_level = p->compress_level;
	n.auto_converge = toggle(p->auto_converge, n.auto_converge);
	if (p->throttle_initial)
		n.throttle_initial = p->throttle_initial;
	if (p->throttle_increment)
		n.throttle_increment = p->throttle_increment;
	if (p->throttle_max)
		n.throttle_max = p->throttle_max;
	if (p->timeout_s)
		n.timeout_s = p->timeout_s;
	if (p->timeout_action)
		n.timeout_action = p->timeout_action ==
				   TERN__MIGD__TIMEOUT_ACTION__TIMEOUT_POSTCOPY ?
				   TIMEOUT_ACTION_POSTCOPY : TIMEOUT_ACTION_CANCEL;
	n.verify = toggle(p->verify, n.verify);
	if (p->postcopy)
		n.postcopy = p->postcopy == TERN__MIGD__POSTCOPY_POLICY__POSTCOPY_AUTO ?
			     POSTCOPY_POLICY_AUTO : POSTCOPY_POLICY_MANUAL;
	/* The floor keeps a paced channel's packets (PACE_BATCH_MIN pages
	 * at least, pace_batch_pages) within a second of each other, far
	 * inside the MIGD_STALL_TIMEOUT_MS after which a channel that
	 * moves nothing looks stalled (with 128-page packets, a slower
	 * channel could pass it while it paced one). */
	if (n.max_bandwidth && n.max_bandwidth / n.channels < PARAM_MIN_CHANNEL_BPS) {
		snprintf(err, len, "max bandwidth %llu bytes/s for %u channel%s: "
			 "at least %u bytes/s a channel",
			 (unsigned long long)n.max_bandwidth, n.channels,
			 n.channels == 1 ? "" : "s", PARAM_MIN_CHANNEL_BPS);
		return -ERANGE;
	}
	if (n.throttle_initial > n.throttle_max) {
		snprintf(err, len, "initial throttle %u%% is above the maximum %u%%",
			 n.throttle_initial, n.throttle_max);
		return -ERANGE;
	}
	*out = n;
	return 0;
}

int params_whole(const Tern__Migd__Params *p, struct mig_params *out,
		 char *err, size_t len)
{
	struct mig_params n;
	int r;

	params_defaults(&n);
	r = params_merge(p, &n, err, len);
	if (r < 0)
		return r;
	/* 0 has a meaning in these (no cap, measured, none), not "keep". */
	if (p) {
		n.max_bandwidth = p->max_bandwidth;
		n.avail_switchover_bandwidth = p->avail_switchover_bandwidth;
		n.timeout_s = p->timeout_s;
	}
	*out = n;
	return 0;
}

void params_to_proto(const struct mig_params *p, Tern__Migd__Params *out)
{
	tern__migd__params__init(out);
	out->channels = p->channels;
	out->max_bandwidth = p->max_bandwidth;
	out->avail_switchover_bandwidth = p->avail_switchover_bandwidth;
	out->downtime_limit_ms = p->downtime_limit_ms;
	out->compress = p->compress == COMPRESS_KIND_ZSTD ?
			TERN__MIGD__COMPRESS__COMPRESS_ZSTD :
			TERN__MIGD__COMPRESS__COMPRESS_NONE;
	out->compress_level = p->compress_level;
	out->auto_converge = p->auto_converge ? TERN__MIGD__TOGGLE__TOGGLE_ON :
						TERN__MIGD__TOGGLE__TOGGLE_OFF;
	out->throttle_initial = p->throttle_initial;
	out->throttle_increment = p->throttle_increment;
	out->throttle_max = p->throttle_max;
	out->timeout_s = p->timeout_s;
	out->timeout_action = p->timeout_action == TIMEOUT_ACTION_POSTCOPY ?
			      TERN__MIGD__TIMEOUT_ACTION__TIMEOUT_POSTCOPY :
			      TERN__MIGD__TIMEOUT_ACTION__TIMEOUT_CANCEL;
	out->verify = p->verify ? TERN__MIGD__TOGGLE__TOGGLE_ON :
				  TERN__MIGD__TOGGLE__TOGGLE_OFF;
	out->postcopy = p->postcopy == POSTCOPY_POLICY_AUTO ?
			TERN__MIGD__POSTCOPY_POLICY__POSTCOPY_AUTO :
			TERN__MIGD__POSTCOPY_POLICY__POSTCOPY_MANUAL;
}

static int params_clear(const char *name, const Tern__Migd__Params *given,
		 struct mig_params *out)
{
	struct mig_params d;

	if (!strcmp(name, "max_bandwidth")) {
		if (given && given->max_bandwidth)
			return -EEXIST;
		out->max_bandwidth = 0;
	} else if (!strcmp(name, "avail_switchover_bandwidth")) {
		if (given && given->avail_switchover_bandwidth)
			return -EEXIST;
		out->avail_switchover_bandwidth = 0;
	} else if (!strcmp(name, "timeout_s")) {
		if (given && given->timeout_s)
			return -EEXIST;
		out->timeout_s = 0;
		/* The action goes with the timeout, back to its default: kept,
		 * it would take over a timeout set later without a word.  One
		 * named in the same call stays. */
		if (!given || !given->timeout_action) {
			params_defaults(&d);
			out->timeout_action = d.timeout_action;
		}
	} else {
		return -EINVAL;
	}
	return 0;
}

int params_update(const Tern__Migd__Params *p, char *const *clear,
		  size_t n_clear, struct mig_params *out, char *err, size_t len)
{
	struct mig_params n = *out;
	size_t i;
	int r;

	/* The clears first: the merge's checks then see the values kept. */
	for (i = 0; i < n_clear; i++) {
		r = params_clear(clear[i], p, &n);
		if (r < 0) {
			snprintf(err, len, "cannot clear '%.64s': %s", clear[i],
				 r == -EINVAL ? "only max_bandwidth, avail_switchover_"
				 "bandwidth and timeout_s can be 0" :
				 "it is given a value too");
			return r;
		}
	}
	r = params_merge(p, &n, err, len);
	if (r < 0)
		return r;
	*out = n;
	return 0;
}

/* What a running job takes (Tune): the rest shaped it at set-up.  Past
 * the postcopy switch only the cap means anything (the push's). */
static bool params_live(const char *name, bool postcopy)
{
	return !strcmp(name, "max_bandwidth") ||
	       (!postcopy && (!strcmp(name, "avail_switchover_bandwidth") ||
			      !strcmp(name, "downtime_limit_ms")));
}

/* Params holds only numbers and enums: set is nonzero. */
static bool field_set(const Tern__Migd__Params *p, const ProtobufCFieldDescriptor *f)
{
	const void *v = (const char *)p + f->offset;

	if (f->type == PROTOBUF_C_TYPE_UINT64)
		return *(const uint64_t *)v != 0;
	return *(const uint32_t *)v != 0;
}

void params_log_tuned(const char *vm, uint64_t max_bw, uint64_t avail_bw,
		      uint32_t limit_ms)
{
	char a[40], b[40];

	log_info("%s%stuned: max-bandwidth %s, avail-switchover-bandwidth %s, "
		 "downtime-limit %u ms", vm ? vm : "", vm ? ": " : "",
		 max_bw ? fmt_rate(max_bw, a, sizeof(a)) : "unlimited",
		 avail_bw ? fmt_rate(avail_bw, b, sizeof(b)) : "measured", limit_ms);
}

/* A field as an operator typed it and as an agent sent it: migctl's
 * option, then the field ("--downtime-limit (downtime_limit_ms)"). */
static const char *param_said(const char *field, char *buf, size_t len)
{
	size_t n, i;

	n = strlen(field);
	if (n > 3 && !strcmp(field + n - 3, "_ms"))
		n -= 3;
	else if (n > 2 && !strcmp(field + n - 2, "_s"))
		n -= 2;
	else if (!strcmp(field, "compress_level"))
		n = strlen("compress");
	n = MIN(n, 64);
	snprintf(buf, len, "--%.*s (%.64s)", (int)n, field, field);
	for (i = 2; i < n + 2 && buf[i]; i++)
		if (buf[i] == '_')
			buf[i] = '-';
	return buf;
}

int params_check_live(const Tern__Migd__Params *p, char *const *clear,
		      size_t n_clear, bool postcopy, char *err, size_t len)
{
	const ProtobufCMessageDescriptor *d = &tern__migd__params__descriptor;
	const char *bad = NULL;
	bool any = n_clear > 0;
	char said[160];
	unsigned int i;

	for (i = 0; p && i < d->n_fields; i++) {
		if (!field_set(p, &d->fields[i]))
			continue;
		any = true;
		if (!params_live(d->fields[i].name, postcopy))
			bad = d->fields[i].name;
	}
	for (i = 0; i < n_clear; i++)
		if (!params_live(clear[i], postcopy))
			bad = clear[i];
	if (bad && postcopy && params_live(bad, false)) {
		snprintf(err, len, "%s means nothing past the postcopy switch: "
			 "only --max-bandwidth (max_bandwidth, the push's cap) "
			 "can change", param_said(bad, said, sizeof(said)));
		return -EINVAL;
	}
	if (bad) {
		snprintf(err, len, "%s cannot change during a job: only "
			 "--max-bandwidth, --avail-switchover-bandwidth and "
			 "--downtime-limit (max_bandwidth, "
			 "avail_switchover_bandwidth and downtime_limit_ms) can",
			 param_said(bad, said, sizeof(said)));
		return -EINVAL;
	}
	if (!any) {
		snprintf(err, len, "nothing to change: give --max-bandwidth, "
			 "--avail-switchover-bandwidth or --downtime-limit "
			 "(max_bandwidth, avail_switchover_bandwidth or "
			 "downtime_limit_ms)");
		return -EINVAL;
	}
	return 0;
}
