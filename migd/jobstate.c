// SPDX-License-Identifier: GPL-2.0-only
/*
 * A job's states, their names, and which may follow which.  The worker
 * owns its job's state and changes it only where worker.c asks
 * job_state_may_change; the parent shows what the worker reports, and
 * "cancelling" while a cancel it sent is pending, or sets the final
 * state of a worker that died.
 */
#include "common/util.h"
#include "migd/migd.h"

static const char *const state_names[JOB_STATE_MAX] = {
	[JOB_STATE_NONE] = "none",
	[JOB_STATE_SETUP] = "setup",
	[JOB_STATE_ACTIVE] = "active",
	[JOB_STATE_DEVICE] = "device",
	[JOB_STATE_COMPLETED] = "completed",
	[JOB_STATE_FAILED] = "failed",
	[JOB_STATE_CANCELLING] = "cancelling",
	[JOB_STATE_CANCELLED] = "cancelled",
	[JOB_STATE_WAITING] = "waiting",
	[JOB_STATE_POSTCOPY_ACTIVE] = "postcopy-active",
	[JOB_STATE_POSTCOPY_PAUSED] = "postcopy-paused",
	[JOB_STATE_POSTCOPY_RECOVER] = "postcopy-recover",
};

#define BIT(st) (1u << (st))

/*
 * The states each state may go on to, besides itself.  Any state not
 * final may fail, or be cancelled (a worker whose migd died cancels
 * even in postcopy, once paused).  A cancel asked for before the switch may still
 * lose the race and complete.
 */
static const unsigned int next_states[JOB_STATE_MAX] = {
	[JOB_STATE_NONE] = BIT(JOB_STATE_WAITING) | BIT(JOB_STATE_SETUP) |
			   BIT(JOB_STATE_ACTIVE) | BIT(JOB_STATE_CANCELLING),
	[JOB_STATE_WAITING] = BIT(JOB_STATE_SETUP) | BIT(JOB_STATE_CANCELLING),
	[JOB_STATE_SETUP] = BIT(JOB_STATE_ACTIVE) | BIT(JOB_STATE_CANCELLING),
	[JOB_STATE_ACTIVE] = BIT(JOB_STATE_DEVICE) | BIT(JOB_STATE_CANCELLING),
	/* (postcopy paused: a source's link lost between its Go and the
	 * destination's Resumed, the guest maybe running there) */
	[JOB_STATE_DEVICE] = BIT(JOB_STATE_COMPLETED) |
			     BIT(JOB_STATE_POSTCOPY_ACTIVE) |
			     BIT(JOB_STATE_POSTCOPY_PAUSED) |
			     BIT(JOB_STATE_CANCELLING),
	[JOB_STATE_POSTCOPY_ACTIVE] = BIT(JOB_STATE_COMPLETED) |
				      BIT(JOB_STATE_POSTCOPY_PAUSED),
	[JOB_STATE_POSTCOPY_PAUSED] = BIT(JOB_STATE_POSTCOPY_RECOVER),
	[JOB_STATE_POSTCOPY_RECOVER] = BIT(JOB_STATE_POSTCOPY_ACTIVE) |
				       BIT(JOB_STATE_POSTCOPY_PAUSED),
	[JOB_STATE_CANCELLING] = BIT(JOB_STATE_COMPLETED),
};

const char *job_state_name(enum job_state st)
{
	return st < JOB_STATE_MAX ? state_names[st] : "unknown";
}

/* The state and the error for a log line, the state named once
 * (state_text). */
const char *job_state_text(enum job_state st, const char *error, char *buf,
			   size_t len)
{
	return state_text(job_state_name(st), error, buf, len);
}

bool job_state_final(enum job_state st)
{
	return st == JOB_STATE_COMPLETED || st == JOB_STATE_FAILED ||
	       st == JOB_STATE_CANCELLED;
}

bool job_state_may_change(enum job_state from, enum job_state to)
{
	if (from >= JOB_STATE_MAX || to >= JOB_STATE_MAX || job_state_final(from))
		return false;
	if (from == to || to == JOB_STATE_FAILED || to == JOB_STATE_CANCELLED)
		return true;
	return next_states[from] & BIT(to);
}
