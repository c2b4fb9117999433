/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * migctl: migd's command-line client, a separate program from migd (it
 * links none of migd's objects, only common/).  This header is the
 * program's table of contents, by file.
 *
 * main() (migctl.c) parses the command line and checks every argument
 * before connecting; the command (migctl_cmd.c) makes its call to migd
 * and prints the answer, as text (migctl_show.c) or JSON.
 */
#ifndef MIGCTL_H
#define MIGCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cli.h"
#include "proto/migd.pb-c.h"

struct rpc_client;

/* migctl.c: the command line, main */
extern struct cli_globals migctl_opts;

/* migctl_show.c: a job shown as text, and its progress bar */
const char *show_state_name(Tern__Migd__JobState s);
const char *show_role_name(Tern__Migd__JobRole r);
bool show_state_final(Tern__Migd__JobState s);
char *show_text_safe(char *s);
const char *fmt_ms(uint64_t ms, char *buf, size_t len);
const char *fmt_time(uint64_t unix_ms, char *buf, size_t len);
uint64_t job_round(const Tern__Migd__JobStatus *js);
/* The job's worker is stopped (a signal, a debugger): proc_stopped_say's
 * words of it, as NAME, into buf. */
bool show_worker_stopped(const Tern__Migd__JobStatus *js, const char *name,
			 char *buf, size_t len);
/* A source switching to postcopy: still active, but past its rounds. */
bool job_switching(const Tern__Migd__JobStatus *js);
double job_fraction(const Tern__Migd__JobStatus *js);
void print_params(const Tern__Migd__Params *p, const char *indent);
void print_status(Tern__Migd__JobStatus *js);
void print_completed(const Tern__Migd__JobStatus *js);
struct progress {
	bool tty;                       /* redraw one line in place */
	bool drawn;                     /* a bar line is on screen */
	uint64_t job_started;           /* the job the maximum belongs to */
	uint64_t round;                 /* ... and its round (job_round) */
	double max;                     /* largest fraction shown for it */
	uint64_t last_line_ns;
	Tern__Migd__JobState last_state;
};
extern struct progress progress;
void progress_show(const Tern__Migd__JobStatus *js);
void progress_end(void);

/* migctl_cmd.c: the connection to migd, and the commands */
/* Arguments of every command, all checked before connecting. */
struct cmd_args {
	const char *vm, *uri, *listen, *token, *token_file, *id;
	char token_buf[80];             /* --token-file's line */
	Tern__Migd__Params params;
	char *clear[3];                 /* take_clears() */
	bool wait, detach, watch, force, reset;
};
void handle_interrupt(int sig);
/* The command and its VM (or NULL), as error lines about a call name it. */
void cmd_label(const char *cmd, const char *vm);
struct rpc_client *ctl_connect(void);
int cmd_incoming(struct rpc_client *cl, struct cmd_args *a);
int cmd_migrate(struct rpc_client *cl, struct cmd_args *a);
int cmd_status(struct rpc_client *cl, struct cmd_args *a);
int cmd_cancel(struct rpc_client *cl, struct cmd_args *a);
int cmd_postcopy(struct rpc_client *cl, struct cmd_args *a);
int cmd_recover(struct rpc_client *cl, struct cmd_args *a);
int cmd_pause(struct rpc_client *cl, struct cmd_args *a);
int cmd_tune(struct rpc_client *cl, struct cmd_args *a);
int cmd_list(struct rpc_client *cl, struct cmd_args *a);
int cmd_params(struct rpc_client *cl, struct cmd_args *a, bool set);

#endif
