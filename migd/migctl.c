// SPDX-License-Identifier: GPL-2.0-only
/*
 * migctl: drive migd through its control socket (RUNDIR/migd.sock):
 * incoming and outgoing live migrations, their status and progress,
 * cancel, the job list and migd's default parameters.  Every command is
 * one tern.migd.Migd RPC (see migctl(1), tern-rpc(7)); every argument is
 * checked before connecting, so usage errors exit 2 without touching migd.
 *
 * This file owns the command line: the global options, the command
 * table, each command's options and their checks, and main(), which runs
 * the command (migctl_cmd.c).  migctl.h lists the program's files.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/cli.h"
#include "common/rpc.h"
#include "common/stream.h"
#include "common/uri.h"
#include "common/util.h"
#include "migd/migctl.h"
#include "proto/migd.pb-c.h"

#define CTL_DEFAULT_RUNDIR "/run/tern"
#define CTL_MAX_CHANNELS 16
#define CTL_MAX_DOWNTIME_MS 600000
#define CTL_MAX_TIMEOUT_S (7 * 24 * 3600)


struct cli_globals migctl_opts = { CTL_DEFAULT_RUNDIR, false, 30000 };

/* ---- command lines ------------------------------------------------------- */

enum { O_LISTEN = 256, O_TOKEN, O_CHANNELS, O_MAXBW, O_DOWNTIME, O_AVAILBW,
       O_WAIT, O_DETACH, O_WATCH, O_COMPRESS, O_AUTOCONV, O_NOAUTOCONV,
       O_THR_INIT, O_THR_INC, O_THR_MAX, O_TIMEOUT, O_TIMEOUT_ACTION, O_VERIFY,
       O_NOVERIFY, O_POSTCOPY, O_FORCE, O_RESET, O_ID, O_TOKEN_FILE };

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
	{ "incoming", 1, "VM --listen ADDR [--token T|--token-file F]",
	  (const struct option[]){
		{ "listen", required_argument, NULL, O_LISTEN },
		{ "token", required_argument, NULL, O_TOKEN },
		{ "token-file", required_argument, NULL, O_TOKEN_FILE },
		{ NULL, 0, NULL, 0 } } },
	{ "migrate", 2, "VM URI --token T|--token-file F " TUNING_USAGE
	  " [--wait|--detach]",
	  (const struct option[]){
		{ "token", required_argument, NULL, O_TOKEN },
		{ "token-file", required_argument, NULL, O_TOKEN_FILE },
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

/* A word past the command's operands, named; after an option that takes
 * no value (--auto-converge on), said so. */
static int stray_word(const struct command *c, const char *word,
		      const char *after)
{
	const struct option *o;

	for (o = c->opts; o->name; o++)
		if (o->has_arg == no_argument && !strncmp(after, "--", 2) &&
		    !strcmp(after + 2, o->name)) {
			cli_errx("%s: unexpected argument '%s' (--%s takes no "
				 "value)", c->name, word, o->name);
			return -EINVAL;
		}
	/* A unit cut off its value: "250 ms" pasted from get unquoted. */
	if (after[0] >= '0' && after[0] <= '9' &&
	    strspn(word, "KMGTiBs/m%") == strlen(word)) {
		cli_errx("%s: unexpected argument '%s' (a value with a space in it "
			 "needs quotes, as in --downtime-limit '250 ms')", c->name,
			 word);
		return -EINVAL;
	}
	cli_errx("%s: unexpected argument '%s' (usage: migctl %s%s%s)", c->name,
		 word, c->name, c->usage[0] ? " " : "", c->usage);
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
	if (parse_rate(s, &v) < 0 || v == 0 || v == UINT64_MAX) {
		cli_errx("%s %s: expected bytes per second such as 500M, 1.5G "
			 "or '1.0 GiB/s', or %s", flag, s, word);
		return -EINVAL;
	}
	*ret = v;
	return 0;
}

/* A number within [min, max], with unit after it or not: "250", "250ms"
 * or "250 ms", as get prints it. */
static int parse_in_unit(const char *s, const char *unit, uint64_t min,
			 uint64_t max, uint64_t *ret)
{
	size_t n = strlen(s), u = strlen(unit);
	char buf[32];

	if (n > u && n < sizeof(buf) && !strcmp(s + n - u, unit)) {
		n -= u;
		if (s[n - 1] == ' ')
			n--;
		memcpy(buf, s, n);
		buf[n] = '\0';
		s = buf;
	}
	return parse_u64(s, min, max, ret);
}

static int parse_percent(const char *flag, const char *s, uint32_t *ret)
{
	uint64_t v;

	if (parse_in_unit(s, "%", 1, 99, &v) < 0) {
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
	case O_TOKEN_FILE: a->token_file = optarg; return 0;
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
		if (parse_in_unit(optarg, "ms", 1, CTL_MAX_DOWNTIME_MS, &v) < 0) {
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
		if (parse_in_unit(optarg, "s", 1, CTL_MAX_TIMEOUT_S, &v) < 0) {
			cli_errx("--timeout %s: expected seconds from 1 to %d, "
				 "or none (or 0)", optarg, CTL_MAX_TIMEOUT_S);
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

/*
 * --token-file F: the token from F's first line ("-": standard input), so
 * that it is not on the command line, which every user of the host can
 * read (ps).  Read a byte at a time up to the line's end, so that a pipe
 * or a terminal left open after it is not waited on; blanks around the
 * token are dropped; what follows the line is not read.  Into
 * a->token_buf.
 */
static int read_token_file(struct cmd_args *a)
{
	const char *f = a->token_file;
	size_t got = 0, start;
	bool failed = false, line = false;
	ssize_t n;
	char c;
	int fd = strcmp(f, "-") ? open(f, O_RDONLY | O_CLOEXEC | O_NOCTTY) : 0;

	if (fd < 0) {
		cli_errx("--token-file %s: %s", f, strerror(errno));
		return -EIO;
	}
	while (!line && got < sizeof(a->token_buf) - 1) {
		n = read(fd, &c, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			cli_errx("--token-file %s: %s", f, strerror(errno));
			failed = true;
		}
		if (n <= 0)
			break;
		line = c == '\n';
		if (!line)
			a->token_buf[got++] = c;
	}
	if (fd != 0)
		close(fd);
	if (failed)
		return -EIO;
	/* Past a token and some blanks, it is not a token file. */
	if (!line && got == sizeof(a->token_buf) - 1) {
		cli_errx("--token-file %s: expected the token on its first line",
			 f);
		return -EINVAL;
	}
	a->token_buf[got] = 0;
	while (got > 0 && strchr(" \t\r", a->token_buf[got - 1]))
		a->token_buf[--got] = 0;
	start = strspn(a->token_buf, " \t");
	a->token = a->token_buf + start;
	return 0;
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
	const char *after[3];
	int ch, r, npos = 0, most;

	optind = 0;
	opterr = 0;
	/* '-': operands come back in order as option 1, so that options may
	 * follow them even when POSIXLY_CORRECT is set. */
	while ((ch = getopt_long(argc, argv, "-:", c->opts, NULL)) != -1) {
		if (ch == 1) {
			if (npos < 3) {
				pos[npos] = optarg;
				after[npos] = optind >= 2 ? argv[optind - 2] : "";
			}
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
	for (; optind < argc; optind++, npos++) { /* after "--" */
		if (npos < 3) {
			pos[npos] = argv[optind];
			after[npos] = "--";
		}
	}
	/* recover VM [URI]: the source names the destination's address. */
	most = c->nargs + !strcmp(c->name, "recover");
	if (npos > most)
		return stray_word(c, pos[most], after[most]);
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
	if (a->token && a->token_file) {
		cli_errx("%s: --token and --token-file exclude each other",
			 c->name);
		return -EINVAL;
	}
	if (a->token_file && read_token_file(a) < 0)
		return -EINVAL;
	if (!strcmp(c->name, "migrate")) {
		if (!a->token) {
			cli_errx("migrate %s: --token (or --token-file) is "
				 "required: the one that 'migctl incoming' "
				 "printed on the destination host", a->vm);
			return -EINVAL;
		}
		if (a->wait && a->detach) {
			cli_errx("migrate: --wait and --detach exclude each other");
			return -EINVAL;
		}
	}
	if (a->token && stream_unhex(a->token, tok, sizeof(tok)) < 0) {
		/* (what a file holds is not shown: it may be a secret) */
		cli_errx("%s %s: expected %d hex digits%s (%s)",
			 a->token_file ? "--token-file" : "--token",
			 a->token_file ? a->token_file : a->token,
			 STREAM_TOKEN_HEX, a->token_file ? " on its first line" : "",
			 strcmp(c->name, "incoming") ?
			 "the token that 'migctl incoming' printed" :
			 "a token of your own, or none: migd then makes one");
		return -EINVAL;
	}
	/* (a destination's own choice, which no destination takes) */
	if (a->token && strspn(a->token, "0") == strlen(a->token)) {
		if (!strcmp(c->name, "incoming"))
			cli_errx("%s: a token of all zeros is no secret: give "
				 "another, or none (migd then makes a random one)",
				 a->token_file ? "--token-file" : "--token");
		else
			cli_errx("%s: a token of all zeros, which no destination "
				 "takes: give the one that 'migctl incoming' "
				 "printed there", a->token_file ? "--token-file" :
				 "--token");
		return -EINVAL;
	}
	if (a->id && (strlen(a->id) != 2 * STREAM_ID_LEN ||
		      stream_unhex(a->id, id, sizeof(id)) < 0)) {
		cli_errx("--id %s: expected the %d hex digits of a job's id (as "
			 "status and list show it)", a->id, 2 * STREAM_ID_LEN);
		return -EINVAL;
	}
	if (a->id && strspn(a->id, "0") == strlen(a->id)) {
		cli_errx("--id %s: an id of all zeros is no job's (status and "
			 "list show the ids)", a->id);
		return -EINVAL;
	}
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
"usage: migctl [--rundir DIR] [--json] [--timeout SEC] COMMAND [ARGS]\n"
"  incoming VM --listen ADDR [--token T|--token-file F]\n"
"                                           wait for VM from a source host\n"
"  migrate VM URI --token T|--token-file F [TUNING] [--wait|--detach]\n"
"                                           send VM live to URI\n"
"  status VM [--watch]                      the VM's current or last job\n"
"  cancel VM [--force] [--wait]             cancel the VM's running job\n"
"                                           (--force: one postcopy-paused or\n"
"                                           recovering)\n"
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
"migctl --version prints the version; see migctl(1)\n");
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
	progress.tty = isatty(STDOUT_FILENO) && !migctl_opts.json;
	/* Only while waiting on a job does Ctrl-C leave something behind
	 * that the user should know about. */
	if (a.wait || a.watch || (!strcmp(cmd->name, "migrate") && !a.detach)) {
		sigemptyset(&sa.sa_mask);
		sigaction(SIGINT, &sa, NULL);
	}
	cl = ctl_connect();
	if (!cl)
		return CLI_FAILED;
	cmd_label(cmd->name, a.vm);
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
	cmd = cli_parse_globals(argc, argv, &migctl_opts, usage);
	if (cmd < 0)
		return cmd == -1 ? CLI_OK : CLI_USAGE;
	return run(argc - cmd, argv + cmd);
}
