/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What the command-line clients (vmmctl, migctl) share: one-line errors
 * prefixed with the program's name, and their global options
 * (--rundir DIR, --json, --timeout SEC, --help) in front of the command;
 * and, with the daemons' own parsers, the refusal of an option that takes
 * one value given twice.
 */
#ifndef TERN_CLI_H
#define TERN_CLI_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

enum cli_exit { CLI_OK = 0, CLI_FAILED = 1, CLI_USAGE = 2 };

struct cli_globals {
	const char *rundir;
	bool json;
	int timeout_ms;
};

/* The program's name for error lines, and its manual page ("migctl(1)")
 * for the usage of a command; also ignores SIGPIPE. */
void cli_init(const char *prog, const char *manual);
/* "PROG: message" on stderr, what it quotes (a name, a value, a daemon's
 * words) shown as str_shown does: a control character cannot colour or
 * clear the terminal, nor a byte that is not UTF-8 garble it. */
void cli_errx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cli_verrx(const char *fmt, va_list ap)
	__attribute__((format(printf, 1, 0)));
/*
 * Parse the global options.  Returns the index of the command word
 * (> 0), or -1 after --help printed usage (exit 0), or -2 after a usage
 * error was said in one line (exit 2).
 */
int cli_parse_globals(int argc, char **argv, struct cli_globals *g,
		      void (*usage)(FILE *f));
/*
 * After getopt_long() (optstring starting with ':', after any '+') with
 * the table longopts returned ch '?' or ':': say in one line, after
 * "where" (the command, or NULL), which option was unknown, ambiguous
 * (an abbreviation of several), given a value it does not take, or
 * lacking its value.
 */
struct option;
void cli_bad_option(char **argv, int ch, const char *where,
		    const struct option *longopts);
/*
 * getopt_long for a daemon's own command line (opts without the leading
 * ':', which this adds): an unknown option, or one lacking its value, is
 * said as the clients say it, in one line (cli_bad_option; cli_init
 * named the program), and the program exits with status 2.
 */
int cli_daemon_getopt(int argc, char **argv, const char *opts,
		      const struct option *longopts);
/*
 * The options given so far, by getopt_long's value (below CLI_SEEN_MAX),
 * so that one that takes a single value is refused the second time
 * instead of the last value silently winning.  Zero it before parsing.
 */
#define CLI_SEEN_MAX 512
struct cli_seen {
	unsigned long bits[CLI_SEEN_MAX / (8 * sizeof(unsigned long))];
};
/* The usage error for such an option, with its long name. */
#define CLI_REPEATED "option '--%s' given twice: it takes one value"
/*
 * Mark option ch of longopts as given.  If it takes a value and was given
 * before, returns its long name (to say with CLI_REPEATED, exit 2); else
 * NULL: a flag may be repeated, as it means the same each time.
 */
const char *cli_option_repeated(struct cli_seen *seen, int ch,
				const struct option *longopts);
/* The same for the clients: says it, after "where" (the command, or
 * NULL), and returns -EINVAL; 0 if ch may be taken. */
int cli_option_once(struct cli_seen *seen, int ch, const char *where,
		    const struct option *longopts);
/*
 * A program's commands: a table of n entries of size bytes, each
 * beginning with its name (a const char *) and holding, usage_off bytes
 * in, its usage line's arguments (a const char *); and the program's
 * usage summary.
 */
struct cli_commands {
	const void *table;
	size_t n, size, usage_off;
	void (*usage)(FILE *f);
};
/*
 * The entry of the command argv[0] names, or NULL with *code the exit
 * status once this is done: argv asked for help ("help [COMMAND]", or
 * --help or -h among a command's arguments before any "--"), printed
 * on stdout (0), or named no command, said (2).  *code is untouched
 * when an entry is returned.
 */
const void *cli_command(const struct cli_commands *c, int argc, char **argv,
			int *code);
/* Whether the n bytes at name are a global option's name (rundir...). */
bool cli_global_option(const char *name, size_t n);
/* Whether c is a global option's letter (-r, -j, -t). */
bool cli_global_letter(int c);
/*
 * What to add to a call's error r: the daemons' sockets are mode 0600
 * (connect fails, -EACCES), and they close a connection from a user that
 * is neither root nor their own (SO_PEERCRED), which the client sees
 * only as a closed or reset connection (-EPIPE, -ECONNRESET, as the
 * timing falls): to a user not root, say so (group: the socket admits
 * the daemon's group too, as a vmm's, mode 0660).  "" otherwise.
 */
const char *cli_refused_hint(int r, bool group);
/*
 * What is wrong with a --rundir, as the usage error says it ("--rundir
 * rel: give an absolute path ..."; a static buffer), or NULL: it must be
 * a non-empty absolute path, for a relative one would name another
 * directory from each program's working directory (a daemon's and its
 * clients').
 */
const char *cli_rundir_error(const char *dir);
/*
 * The same for a call that was made to the daemon of pid (SO_PEERCRED;
 * <= 0: not known): also, past the timeout (-ETIMEDOUT), that the request
 * went and may still take effect (a stopped or busy daemon acts on it
 * once it runs), which a bare "timed out" hides, and that the daemon is
 * stopped when it is (in a static buffer: one hint at a time).  Nothing
 * when remote: the daemon answered r itself, in its own words.
 */
const char *cli_call_hint(int r, bool remote, int pid, bool group);

#endif
