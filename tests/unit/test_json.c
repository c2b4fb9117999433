// SPDX-License-Identifier: GPL-2.0-only
/* Unit tests for common/json.c: strings come out as valid JSON whatever
 * bytes they held (peers and users choose URIs, names and errors). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/json.h"

static char *quoted(const char *s)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	json_string(f, s);
	assert_int_equal(fclose(f), 0);
	return buf;
}

static void expect(const char *in, const char *out)
{
	char *got = quoted(in);

	assert_string_equal(got, out);
	free(got);
}

static void test_escapes(void **state)
{
	(void)state;
	expect("", "\"\"");
	expect(NULL, "\"\"");
	expect("tcp:127.0.0.1:4444", "\"tcp:127.0.0.1:4444\"");
	expect("a\"b\\c", "\"a\\\"b\\\\c\"");
	expect("l1\nl2\tx", "\"l1\\nl2\\tx\"");
	expect("\x01\x1f\x7f", "\"\\u0001\\u001f\\u007f\"");
}

static void test_utf8_kept(void **state)
{
	(void)state;
	expect("\xc3\xa9", "\"\xc3\xa9\"");                     /* U+00E9 */
	expect("\xe2\x82\xac", "\"\xe2\x82\xac\"");             /* U+20AC */
	expect("\xed\x9f\xbf", "\"\xed\x9f\xbf\"");             /* U+D7FF */
	expect("\xee\x80\x80", "\"\xee\x80\x80\"");             /* U+E000 */
	expect("\xf0\x90\x80\x80", "\"\xf0\x90\x80\x80\"");     /* U+10000 */
	expect("\xf4\x8f\xbf\xbf", "\"\xf4\x8f\xbf\xbf\"");     /* U+10FFFF */
}

/* Every ill-formed byte becomes U+FFFD, and what follows is read anew. */
static void test_utf8_replaced(void **state)
{
	(void)state;
	expect("\x80", "\"\\ufffd\"");                          /* lone continuation */
	expect("\xc0\xaf", "\"\\ufffd\\ufffd\"");               /* overlong '/' */
	expect("\xc1\xbf", "\"\\ufffd\\ufffd\"");
	expect("\xe0\x80\xaf", "\"\\ufffd\\ufffd\\ufffd\"");    /* overlong */
	expect("\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\"");    /* surrogate */
	expect("\xf0\x80\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");
	expect("\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\""); /* > U+10FFFF */
	expect("\xf5\x80\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");
	expect("\xff\x80\x80", "\"\\ufffd\\ufffd\\ufffd\"");
	expect("\xe2\x82", "\"\\ufffd\\ufffd\"");               /* cut short */
	expect("\xe2\x82x", "\"\\ufffd\\ufffdx\"");
	expect("\xc3\"", "\"\\ufffd\\\"\"");                    /* a quote stays escaped */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escapes),
		cmocka_unit_test(test_utf8_kept),
		cmocka_unit_test(test_utf8_replaced),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
