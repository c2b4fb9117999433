// SPDX-License-Identifier: GPL-2.0-only
/*
 * Shared parts of the command-line clients (see common/cli.h).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "common/cli.h"
#include "common/util.h"

static const char *cli_prog = "tern";

void cli_init(const char *prog)
{
	cli_prog = prog;
	signal(SIGPIPE, SIG_IGN);
}

void cli_errx(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", cli_prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void cli_bad_option(char **argv, int ch, const char *where)
{
	static const char *const globals[] = { "--rundir", "--json", "--timeout" };
	char shortopt[3] = { '-', (char)optopt, 0 };
	const char *word = argv[optind - 1], *opt;
	bool global = false;
	size_t i, n;

	/* A long option is its word; a short one may sit in a cluster, or
	 * getopt may not have moved past it yet: its letter. */
	opt = !strncmp(word, "--", 2) && (ch == ':' || !optopt) ? word : shortopt;
	n = strcspn(opt, "=");

	for (i = 0; where && i < sizeof(globals) / sizeof(globals[0]); i++)
		global |= strlen(globals[i]) == n && !strncmp(opt, globals[i], n);
	cli_errx("%s%s%s '%.*s'%s (see %s --help)", where ? where : "",
		 where ? ": " : "", ch == ':' ? "missing the value of option" :
		 "unknown option", (int)n, opt,
		 global ? ": global options go before the command" : "",
		 cli_prog);
}

int cli_parse_globals(int argc, char **argv, struct cli_globals *g,
		      void (*usage)(FILE *f))
{
	static const struct option longopts[] = {
		{ "rundir", required_argument, NULL, 'r' },
		{ "json", no_argument, NULL, 'j' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t t;
	int ch;

	opterr = 0;
	while ((ch = getopt_long(argc, argv, "+:r:jt:h", longopts, NULL)) != -1) {
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
		default:
			cli_bad_option(argv, ch, NULL);
			return -2;
		}
	}
	if (optind >= argc) {
		cli_errx("no command (see %s --help)", cli_prog);
		return -2;
	}
	return optind;
}

const char *cli_refused_hint(int r)
{
	return (r == -EPIPE || r == -ECONNRESET || r == -EACCES) &&
	       geteuid() != 0 ?
	       " (only root and the user the daemon runs as may use its socket)" : "";
}
