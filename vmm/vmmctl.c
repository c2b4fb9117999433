// SPDX-License-Identifier: GPL-2.0-only
/*
 * vmmctl: drive a vmm through its control socket (RUNDIR/vmm/NAME.sock):
 * status and run control, state files, the test guest's memory check,
 * moving a guest to a new vmm on this host, memory access, dirty rate.
 * Every command is one or a few tern.vmm.Vmm RPCs; see vmmctl(8).
 *
 * This file owns the command line: the global options, the command
 * table and each command's arguments, checked before connecting, and
 * main(), which connects (vmmctl_conn.c) and runs the command
 * (vmmctl_cmd.c, vmmctl_transfer.c).  vmmctl.h lists the program's files.
 */
#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cli.h"
#include "common/util.h"
#include "vmm/vmmctl.h"


struct cli_globals vmmctl_opts = { "/run/tern", false, 30000 };

/* ---- main ---------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
"usage: vmmctl [--rundir DIR] [--json] [--timeout SEC] COMMAND NAME [ARGS]\n"
"  status NAME              state of the vmm and its guest\n"
"  stop NAME                pause the guest's vCPUs\n"
"  cont NAME [--force]      resume them (or start a loaded incoming guest)\n"
"  quit NAME [--force]      end the vmm\n"
"  save NAME FILE           write the paused VM's CPU and device state (no RAM)\n"
"  load NAME FILE           load a state FILE into an incoming vmm\n"
"  check NAME               verify the test guest's memory (pauses it meanwhile)\n"
"  transfer SRC DST [--copy]  move the guest to the incoming vmm DST\n"
"  read NAME GPA LEN        print guest memory in hex\n"
"  write NAME GPA HEX [--force]  write bytes into guest memory (debugging)\n"
"  dirty-rate NAME [SEC]    measure how fast the guest dirties memory\n"
"  throttle NAME PERCENT    take PERCENT of the vCPUs' time (0 lifts it)\n"
"  help [COMMAND]           this, or one command's usage\n"
"vmmctl --version prints the version; see vmmctl(8)\n");
}

/* Parsed arguments of one command, all checked before connecting. */
struct cmd_args {
	uint64_t gpa, len, seconds;
	uint8_t *bytes;                 /* write */
	size_t nbytes;
	bool flag;                      /* the command's flag: transfer --copy,
					 * cont --force, quit --force,
					 * write --force */
};

/*
 * write's bytes, as many as Linux passes in one argument with 4 KiB
 * pages: MAX_ARG_STRLEN is 128 KiB with the NUL, 131070 hex digits.
 * Longer, exec fails there ("Argument list too long") before vmmctl
 * runs, so the usage line states the limit that holds; where pages
 * are larger, this keeps it the same.
 */
#define WRITE_MAX_BYTES 65535

static int parse_hex(const char *hex, struct cmd_args *a)
{
	size_t n = strlen(hex), i;
	static const char digits[] = "0123456789abcdefABCDEF";

	if (n == 0 || n % 2 || n / 2 > WRITE_MAX_BYTES ||
	    strspn(hex, digits) != n) {
		cli_errx("write: give 1 to %d bytes as an even number of hex "
			 "digits", WRITE_MAX_BYTES);
		return -EINVAL;
	}
	a->nbytes = n / 2;
	a->bytes = malloc(a->nbytes);
	if (!a->bytes)
		return -ENOMEM;
	for (i = 0; i < a->nbytes; i++) {
		unsigned int b;

		sscanf(hex + 2 * i, "%2x", &b);
		a->bytes[i] = b;
	}
	return 0;
}

static const struct command {
	const char *name;
	int min, max;                   /* arguments after the command */
	const char *usage;
	const char *flag;               /* what argument max may be instead */
} commands[] = {
	{ "status", 1, 1, "NAME", NULL },
	{ "stop", 1, 1, "NAME", NULL },
	{ "cont", 1, 2, "NAME [--force]", "--force" },
	{ "quit", 1, 2, "NAME [--force]", "--force" },
	{ "save", 2, 2, "NAME FILE", NULL },
	{ "load", 2, 2, "NAME FILE", NULL },
	{ "check", 1, 1, "NAME", NULL },
	{ "transfer", 2, 3, "SRC DST [--copy]", "--copy" },
	{ "read", 3, 3, "NAME GPA LEN", NULL },
	{ "write", 3, 4, "NAME GPA HEX [--force]", "--force" },
	{ "dirty-rate", 1, 2, "NAME [SEC]", NULL },
	{ "throttle", 2, 2, "NAME PERCENT", NULL },
};

static const struct cli_commands cli_commands = {
	commands, ARRAY_SIZE(commands), sizeof(commands[0]),
	offsetof(struct command, usage), usage
};

static int parse_cmd(const struct command *c, int argc, char **argv,
		     struct cmd_args *a)
{
	const char *name = c->name;
	int i;

	/* An option among the arguments is named, not counted: a long
	 * one, or a letter alone (-t, as the globals have it). */
	for (i = 1; i < argc; i++) {
		bool letter = argv[i][0] == '-' && isalpha((unsigned char)argv[i][1]) &&
			      !argv[i][2];

		if (!letter && (strncmp(argv[i], "--", 2) || !argv[i][2] ||
		    (c->flag && i == c->max && !strcmp(argv[i], c->flag))))
			continue;
		cli_errx("%s: unknown option '%s'%s (see vmmctl --help)", name,
			 argv[i], (letter ? cli_global_letter(argv[i][1]) :
			 cli_global_option(argv[i] + 2, strcspn(argv[i] + 2, "="))) ?
			 ": global options go before the command" : "");
		return -EINVAL;
	}
	if (argc - 1 < c->min || argc - 1 > c->max) {
		cli_errx("usage: vmmctl %s %s", name, c->usage);
		return -EINVAL;
	}
	if (c->flag && argc - 1 == c->max) {
		if (strcmp(argv[c->max], c->flag)) {
			cli_errx("usage: vmmctl %s %s", name, c->usage);
			return -EINVAL;
		}
		a->flag = true;
	}
	if ((!strcmp(name, "read") || !strcmp(name, "write")) &&
	    parse_u64(argv[2], 0, UINT64_MAX, &a->gpa) < 0) {
		cli_errx("%s: '%s' is not a guest physical address", name, argv[2]);
		return -EINVAL;
	}
	/* (a number, or a size as vmm --memory takes it: 2M) */
	if (!strcmp(name, "read") && parse_u64(argv[3], 1, 1ULL << 32, &a->len) < 0 &&
	    (parse_size(argv[3], &a->len) < 0 || !a->len || a->len > 1ULL << 32)) {
		cli_errx("read: '%s' is not a length from 1 to 4 GiB (bytes, or "
			 "with K, M or G)", argv[3]);
		return -EINVAL;
	}
	if (!strcmp(name, "write"))
		return parse_hex(argv[3], a);
	if (!strcmp(name, "throttle") && parse_u64(argv[2], 0, 99, &a->len) < 0) {
		cli_errx("throttle: '%s' is not a percentage from 0 to 99", argv[2]);
		return -EINVAL;
	}
	a->seconds = 3;
	if (!strcmp(name, "dirty-rate") && argc == 3 &&
	    parse_u64(argv[2], 1, 3600, &a->seconds) < 0) {
		cli_errx("dirty-rate: '%s' is not a number of seconds from 1 to 3600",
		      argv[2]);
		return -EINVAL;
	}
	return 0;
}

static int run_cmd(const char *name, struct vmm_conn *c, char **argv,
		   struct cmd_args *a)
{
	if (!strcmp(name, "status"))
		return cmd_simple(c, "Status");
	if (!strcmp(name, "stop"))
		return cmd_simple(c, "Stop");
	if (!strcmp(name, "cont"))
		return a->flag ? cmd_cont_force(c) : cmd_simple(c, "Cont");
	if (!strcmp(name, "quit"))
		return cmd_quit(c, a->flag);
	if (!strcmp(name, "save"))
		return cmd_save(c, argv[2]);
	if (!strcmp(name, "load"))
		return cmd_load(c, argv[2]);
	if (!strcmp(name, "check"))
		return cmd_check(c);
	if (!strcmp(name, "read"))
		return cmd_read(c, a->gpa, a->len);
	if (!strcmp(name, "write"))
		return cmd_write(c, a->gpa, a->bytes, a->nbytes, a->flag);
	if (!strcmp(name, "throttle"))
		return cmd_throttle(c, a->len);
	return cmd_dirty_rate(c, a->seconds);
}

static int run(int argc, char **argv)
{
	const struct command *cmd = NULL;
	struct vmm_conn c = { 0 }, d = { 0 };
	struct cmd_args a = { 0 };
	int code = CLI_FAILED;
	size_t i;

	cmd = cli_command(&cli_commands, argc, argv, &code);
	if (!cmd)
		return code;
	if (parse_cmd(cmd, argc, argv, &a) < 0)
		return CLI_USAGE;
	/* A wrong value on the command line, as vmmctl(8) says: exit 2
	 * (conn_open takes names checked here). */
	for (i = 1; i <= (!strcmp(cmd->name, "transfer") ? 2u : 1u); i++)
		if (name_valid(argv[i]) < 0) {
			cli_errx("'%s' is not a valid VM name (" NAME_RULE ")",
				 argv[i]);
			return CLI_USAGE;
		}
	if (conn_open(&c, argv[1]) < 0)
		goto out;
	if (!strcmp(cmd->name, "transfer")) {
		if (conn_open(&d, argv[2]) == 0)
			code = cmd_transfer(&c, &d, a.flag);
	} else {
		code = run_cmd(cmd->name, &c, argv, &a);
	}
out:
	conn_close(&c);
	conn_close(&d);
	free(a.bytes);
	return code;
}

int main(int argc, char **argv)
{
	int cmd;

	cli_init("vmmctl", "vmmctl(8)");
	cmd = cli_parse_globals(argc, argv, &vmmctl_opts, usage);
	if (cmd < 0)
		return cmd == -1 ? CLI_OK : CLI_USAGE;
	return run(argc - cmd, argv + cmd);
}
