// SPDX-License-Identifier: GPL-2.0-only
/*
 * libFuzzer target: what users type, as the CLIs and the control service
 * take it.  URIs must survive a round trip (parse, format, parse gives
 * the same address); sizes and numbers must agree with a plain reference
 * parse of the same text, and rates with sizes; names are checked
 * without crashing.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/uri.h"
#include "common/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_uri(const char *s)
{
	static struct uri a, b;
	static char text[PATH_MAX + 300];

	if (uri_parse(s, &a) < 0)
		return;
	if (a.kind >= URI_KIND_MAX)
		abort();
	if (uri_format(&a, text, sizeof(text)) < 0)
		abort();                /* every parsed URI has a text form */
	if (uri_parse(text, &b) < 0 || a.kind != b.kind || a.port != b.port ||
	    strcmp(a.host, b.host) || strcmp(a.path, b.path))
		abort();                /* and it means the same address */
}

/* Decimal digits only, at most 19 of them: what strtoull agrees on. */
static void check_numbers(const char *s)
{
	uint64_t v, size;
	size_t n = strlen(s);

	if (parse_u64(s, 0, UINT64_MAX, &v) == 0 && n && n <= 19 &&
	    strspn(s, "0123456789") == n && v != strtoull(s, NULL, 10))
		abort();
	if (parse_size(s, &size) == 0 && n && n <= 19 &&
	    strspn(s, "0123456789") == n && size != strtoull(s, NULL, 10))
		abort();
	(void)name_valid(s);
}

/* A rate: every size parse_size takes means the same, and what status
 * prints of a rate reads back within its rounding (0.05 of a unit). */
static void check_rate(const char *s)
{
	uint64_t size, rate, again;
	char text[64];

	if (parse_size(s, &size) == 0 &&
	    (parse_rate(s, &rate) != 0 || rate != size))
		abort();
	if (parse_rate(s, &rate) != 0 || rate < 1024 || rate >= (1ULL << 50))
		return;
	fmt_rate(rate, text, sizeof(text));
	if (parse_rate(text, &again) != 0 ||
	    (again > rate ? again - rate : rate - again) > rate / 20)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = 0;
	check_uri(s);
	check_numbers(s);
	check_rate(s);
	free(s);
	return 0;
}
