// SPDX-License-Identifier: GPL-2.0-only
/*
 * Shared parts of the command-line clients (see common/cli.h).
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cli.h"
#include "common/util.h"

static const char *cli_prog = "tern";
static const char *cli_manual = "its manual page";

void cli_init(const char *prog, const char *manual)
{
	cli_prog = prog;
	cli_manual = manual;
	signal(SIGPIPE, SIG_IGN);
}

void cli_verrx(const char *fmt, va_list ap)
{
	char *msg = NULL, *shown = NULL;
	int r = vasprintf(&msg, fmt, ap);

	if (r >= 0)
		shown = str_shown_dup(msg);
	fprintf(stderr, "%s: %s\n", cli_prog, shown ? shown :
		r >= 0 ? msg : "(out of memory for the message)");
	free(shown);
	free(msg);
}

void cli_errx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cli_verrx(fmt, ap);
	va_end(ap);
}

/*
 * The long options of opts that the first n bytes of name can mean: the
 * one spelled so exactly (getopt_long prefers it), else every one it is
 * a prefix of.  Returns how many; the first in *ret_opt if any.
 */
static size_t cli_match_long(const struct option *opts, const char *name,
			     size_t n, const struct option **ret_opt)
{
	const struct option *o, *first = NULL;
	size_t count = 0;

	for (o = opts; o->name; o++) {
		if (strncmp(o->name, name, n))
			continue;
		if (strlen(o->name) == n) {
			*ret_opt = o;
			return 1;
		}
		if (!first)
			first = o;
		count++;
	}
	if (first)
		*ret_opt = first;
	return count;
}

/* "--a, --b, --c": the long options the first n bytes of name may mean. */
static void cli_list_matches(const struct option *opts, const char *name,
			     size_t n, char *buf, size_t size)
{
	const struct option *o;
	size_t len = 0;
	int w;

	buf[0] = 0;
	for (o = opts; o->name && len < size; o++) {
		if (strncmp(o->name, name, n))
			continue;
		w = snprintf(buf + len, size - len, "%s--%s", len ? ", " : "",
			     o->name);
		if (w < 0)
			break;
		len += w;
	}
}

/* --help or -h among a command's arguments, before any "--". */
static bool wants_help(int argc, char **argv)
{
	int i;

	for (i = 1; i < argc && strcmp(argv[i], "--"); i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
			return true;
	return false;
}

static const void *find_command(const struct cli_commands *c, const char *name)
{
	const char *entry = c->table;
	size_t i;

	for (i = 0; i < c->n; i++, entry += c->size)
		if (!strcmp(name, *(const char *const *)entry))
			return entry;
	cli_errx("unknown command '%s' (see %s --help)", name, cli_prog);
	return NULL;
}

/* The command's usage, on stdout: the global options, the command and
 * its arguments, and the manual page. */
static void command_usage(const struct cli_commands *c, const void *entry)
{
	const char *name = *(const char *const *)entry;
	const char *args = *(const char *const *)((const char *)entry +
						   c->usage_off);

	printf("usage: %s [--rundir DIR] [--json] [--timeout SEC] %s%s%s\n"
	       "see %s\n", cli_prog, name, args[0] ? " " : "", args, cli_manual);
}

const void *cli_command(const struct cli_commands *c, int argc, char **argv,
			int *code)
{
	bool help = !strcmp(argv[0], "help");
	const void *entry;

	if (help && argc > 2) {
		cli_errx("usage: %s help [COMMAND]", cli_prog);
		*code = CLI_USAGE;
		return NULL;
	}
	if (help && argc == 1) {
		c->usage(stdout);
		*code = CLI_OK;
		return NULL;
	}
	/* (help is no command of the table, but --help lists it; 'help
	 * --help' asks about it too) */
	if (help && (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") ||
		     !strcmp(argv[1], "-h"))) {
		printf("usage: %s help [COMMAND]\nsee %s\n", cli_prog, cli_manual);
		*code = CLI_OK;
		return NULL;
	}
	entry = find_command(c, argv[help ? 1 : 0]);
	if (entry && !help && !wants_help(argc, argv))
		return entry;       /* *code untouched */
	if (entry)
		command_usage(c, entry);
	*code = entry ? CLI_OK : CLI_USAGE;
	return NULL;
}

static const char *const globals[] = { "rundir", "json", "timeout" };

bool cli_global_letter(int c)
{
	return c > 0 && c < 256 && strchr("rjt", c);
}

bool cli_global_option(const char *name, size_t n)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(globals); i++)
		if (strlen(globals[i]) == n && !strncmp(name, globals[i], n))
			return true;
	return false;
}

void cli_bad_option(char **argv, int ch, const char *where,
		    const struct option *longopts)
{
	const struct option *opt = NULL;
	const char *word = argv[optind - 1], *name = word + 2;
	const char *sep = where ? ": " : "";
	char what[64], list[256];
	bool global = false, islong;
	size_t n = 0, nmatch = 0;

	if (!where)
		where = "";

	/*
	 * A long option is the word getopt just passed.  A short one may
	 * sit in a cluster getopt has not moved past yet, so that the word
	 * before is an earlier one: then optopt, its letter, is not the
	 * val of the long option that word names (an unknown or ambiguous
	 * long option leaves optopt 0).
	 */
	islong = !strncmp(word, "--", 2);
	if (islong) {
		n = strcspn(name, "=");
		nmatch = cli_match_long(longopts, name, n, &opt);
		islong = !optopt || (nmatch == 1 && opt->val == optopt);
	}
	if (!islong) {
		snprintf(what, sizeof(what), isprint(optopt) ? "'-%c'" :
			 "'-\\x%02x'", optopt & 0xff);
		/* -r, -j, -t after the command: the globals' letters */
		global = where[0] && ch != ':' && cli_global_letter(optopt);
		cli_errx("%s%s%s %s%s (see %s --help)", where, sep, ch == ':' ?
			 "missing the value of option" : "unknown option", what,
			 global ? ": global options go before the command" : "",
			 cli_prog);
		return;
	}
	if (nmatch == 1)
		snprintf(what, sizeof(what), "'--%s'", opt->name);
	else
		snprintf(what, sizeof(what), "'--%.*s'", (int)MIN(n, 40), name);
	if (ch == ':') {
		cli_errx("%s%smissing the value of option %s (see %s --help)",
			 where, sep, what, cli_prog);
	} else if (nmatch > 1) {
		cli_list_matches(longopts, name, n, list, sizeof(list));
		cli_errx("%s%soption %s is ambiguous: %s (see %s --help)",
			 where, sep, what, list, cli_prog);
	} else if (nmatch == 1 && name[n] == '=' &&
		   opt->has_arg == no_argument) {
		cli_errx("%s%soption %s takes no value (see %s --help)",
			 where, sep, what, cli_prog);
	} else {
		global = where[0] && cli_global_option(name, n);
		cli_errx("%s%sunknown option %s%s (see %s --help)", where, sep,
			 what, global ? ": global options go before the command" : "",
			 cli_prog);
	}
}

int cli_daemon_getopt(int argc, char **argv, const char *opts,
		      const struct option *longopts)
{
	char colon[64];
	int c;

	snprintf(colon, sizeof(colon), ":%s", opts);
	opterr = 0;
	c = getopt_long(argc, argv, colon, longopts, NULL);
	if (c == '?' || c == ':') {
		cli_bad_option(argv, c, NULL, longopts);
		exit(CLI_USAGE);
	}
	return c;
}

const char *cli_option_repeated(struct cli_seen *seen, int ch,
				const struct option *longopts)
{
	const size_t w = 8 * sizeof(seen->bits[0]);
	const struct option *o;
	unsigned long bit;

	for (o = longopts; o->name && o->val != ch; o++)
		;
	if (!o->name || o->has_arg == no_argument || ch < 0 || ch >= CLI_SEEN_MAX)
		return NULL;
	bit = 1UL << (ch % w);
	if (seen->bits[ch / w] & bit)
		return o->name;
	seen->bits[ch / w] |= bit;
	return NULL;
}

int cli_option_once(struct cli_seen *seen, int ch, const char *where,
		    const struct option *longopts)
{
	const char *name = cli_option_repeated(seen, ch, longopts);

	if (!name)
		return 0;
	cli_errx("%s%s" CLI_REPEATED " (see %s --help)", where ? where : "",
		 where ? ": " : "", name, cli_prog);
	return -EINVAL;
}

int cli_parse_globals(int argc, char **argv, struct cli_globals *g,
		      void (*usage)(FILE *f))
{
	static const struct option longopts[] = {
		{ "rundir", required_argument, NULL, 'r' },
		{ "json", no_argument, NULL, 'j' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct cli_seen seen = { { 0 } };
	const char *why;
	uint64_t t;
	int ch;

	opterr = 0;
	while ((ch = getopt_long(argc, argv, "+:r:jt:h", longopts, NULL)) != -1) {
		if (cli_option_once(&seen, ch, NULL, longopts) < 0)
			return -2;
		switch (ch) {
		case 'r': g->rundir = optarg; break;
		case 'j': g->json = true; break;
		case 't':
			if (parse_u64(optarg, 1, 3600, &t) < 0) {
				cli_errx("--timeout %s: expected seconds from 1 to 3600",
					 optarg);
				return -2;
			}
			g->timeout_ms = t * 1000;
			break;
		case 'h':
			usage(stdout);
			return -1;
		case 'V':
			printf("%s (tern) %s\n", cli_prog, TERN_VERSION);
			return -1;
		default:
			cli_bad_option(argv, ch, NULL, longopts);
			return -2;
		}
	}
	if (g->rundir && (why = cli_rundir_error(g->rundir))) {
		cli_errx("%s", why);
		return -2;
	}
	if (optind >= argc) {
		cli_errx("no command (see %s --help)", cli_prog);
		return -2;
	}
	return optind;
}

const char *cli_rundir_error(const char *dir)
{
	static char msg[PATH_MAX + 160];

	if (!dir[0])
		return "--rundir: give a directory";
	if (dir[0] == '/')
		return NULL;
	snprintf(msg, sizeof(msg), "--rundir %s: give an absolute path (a "
		 "relative one names another directory from each program's "
		 "working directory)", dir);
	return msg;
}

const char *cli_refused_hint(int r, bool group)
{
	if ((r != -EPIPE && r != -ECONNRESET && r != -EACCES) || geteuid() == 0)
		return "";
	return group ? " (only root, the user the daemon runs as and its group "
		       "may use its socket)" :
		       " (only root and the user the daemon runs as may use its "
		       "socket)";
}

const char *cli_call_hint(int r, bool remote, int pid, bool group)
{
	static char hint[240];
	char who[160];

	/* The daemon's own answer: its words say it all (a worker's
	 * timeout on a vmm is not this caller's --timeout). */
	if (remote)
		return "";

	if (r == -ETIMEDOUT && proc_stopped_say(pid, "the daemon", who,
						sizeof(who))) {
		snprintf(hint, sizeof(hint), " (%s, and the request may take "
			 "effect then)", who);
		return hint;
	}
	if (r == -ETIMEDOUT)
		return " (no answer within --timeout: the request may still "
		       "take effect once the daemon gets to it; its status "
		       "will tell)";
	return cli_refused_hint(r, group);
}
