// SPDX-License-Identifier: GPL-2.0-only
/*
 * The test guest's memory checker (see common/memcheck.h for the rules).
 * Called by vmmctl on a paused VM's RAM; pure computation.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "common/memcheck.h"
#include "common/testguest.h"

enum page_kind {
	PAGE_EXACT,             /* a whole page of generation gen */
	PAGE_PARTIAL,           /* caught while gen - 1 was being overwritten by gen */
	PAGE_BAD,
	PAGE_KIND_MAX
};

struct page_class {
	enum page_kind kind;
	uint64_t gen;
	unsigned int word;      /* PAGE_BAD: the first word that does not fit */
};

/* Walking one slice: pages of gen hi, at most one partial, then hi - 1. */
struct slice_walk {
	bool started;
	bool lower;             /* past the boundary: expecting hi - 1 */
	uint64_t hi;
};

const uint8_t *memcheck_ptr(const struct memcheck_view *v, uint64_t gpa,
			    uint64_t len)
{
	int i;

	for (i = 0; i < v->nregions; i++)
		if (gpa >= v->r[i].gpa && len <= v->r[i].size &&
		    gpa - v->r[i].gpa <= v->r[i].size - len)
			return v->r[i].host + (gpa - v->r[i].gpa);
	return NULL;
}

static void report(struct memcheck_result *res, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void report(struct memcheck_result *res, const char *fmt, ...)
{
	va_list ap;

	if (res->nreports >= MEMCHECK_MAX_REPORTS)
		return;
	va_start(ap, fmt);
	vsnprintf(res->reports[res->nreports++], sizeof(res->reports[0]), fmt, ap);
	va_end(ap);
}

static uint64_t header0(uint64_t mode, uint64_t gpa, uint64_t gen)
{
	if (gen == 0)
		return 0;
	return gpa ^ (mode == TG_MODE_FILL ? TG_MAGIC_FILL : TG_MAGIC_DIRTY);
}

static uint64_t data_word(uint64_t mode, uint64_t gpa, uint64_t gen,
			  unsigned int i)
{
	if (gen == 0 || mode != TG_MODE_FILL)
		return 0;
	return tg_fill_word(gpa, gen, i);
}

/* Index of the first data word (from 2) that is not of generation gen. */
static unsigned int data_match(const uint64_t *w, uint64_t mode, uint64_t gpa,
			       uint64_t gen, unsigned int from)
{
	unsigned int i;

	for (i = from; i < TG_WORDS; i++)
		if (w[i] != data_word(mode, gpa, gen, i))
			break;
	return i;
}

/*
 * What a page holds.  The guest writes a fill page's data words in order,
 * then word 1 (its generation), then word 0; a dirty page word 1 then
 * word 0.  So besides whole pages, a page may show: header of g and data
 * of g+1 up to some word (fill), or word 1 = 1 with word 0 still 0.
 */
static struct page_class classify(const uint64_t *w, uint64_t mode, uint64_t gpa)
{
	struct page_class c = { .kind = PAGE_BAD };
	uint64_t g = w[1];
	unsigned int n;

	if (w[0] == header0(mode, gpa, g) || (w[0] == 0 && g == 1)) {
		n = data_match(w, mode, gpa, g, 2);
		if (n == TG_WORDS) {
			c.kind = w[0] == header0(mode, gpa, g) ? PAGE_EXACT : PAGE_PARTIAL;
			c.gen = g;
			return c;
		}
		c.word = n;
		if (mode == TG_MODE_FILL && w[0] == header0(mode, gpa, g) &&
		    g != UINT64_MAX) {
			n = data_match(w, mode, gpa, g + 1, 2);
			if (n > 2 && data_match(w, mode, gpa, g, n) == TG_WORDS) {
				c.kind = PAGE_PARTIAL;
				c.gen = g + 1;
			}
		}
	}
	return c;
}

/* Feed one page of a slice to the walk; false when it breaks the order. */
static bool walk_page(struct slice_walk *sw, struct page_class c)
{
	if (c.kind == PAGE_BAD)
		return false;
	if (!sw->started) {
		sw->started = true;
		sw->hi = c.gen;
		sw->lower = c.kind == PAGE_PARTIAL;
		return true;
	}
	if (!sw->lower) {
		if (c.kind == PAGE_EXACT && c.gen == sw->hi)
			return true;
		if ((c.kind == PAGE_PARTIAL && c.gen == sw->hi) ||
		    (c.kind == PAGE_EXACT && sw->hi > 0 && c.gen == sw->hi - 1)) {
			sw->lower = true;
			return true;
		}
		return false;
	}
	return c.kind == PAGE_EXACT && sw->hi > 0 && c.gen == sw->hi - 1;
}

static uint64_t next_gpa(const struct tg_params *p, uint64_t gpa)
{
	gpa += TG_PAGE;
	return p->hole_start && gpa == p->hole_start ? p->hole_end : gpa;
}

static void count_gen(struct memcheck_result *res, uint64_t gen)
{
	if (res->pages == 0 || gen < res->gen_min)
		res->gen_min = gen;
	if (res->pages == 0 || gen > res->gen_max)
		res->gen_max = gen;
}

static int check_slice(const struct memcheck_view *v, const struct tg_params *p,
		       const struct tg_vcpu_status *st, unsigned int cpu,
		       struct memcheck_result *res)
{
	const struct tg_slice *s = &p->slices[cpu];
	struct slice_walk sw = { 0 };
	uint64_t gpa = s->start, i, pass = st->pass;
	const uint64_t *w;

	for (i = 0; i < s->pages; i++, gpa = next_gpa(p, gpa)) {
		struct page_class c;

		w = (const uint64_t *)memcheck_ptr(v, gpa, TG_PAGE);
		if (!w)
			return -EINVAL;
		c = classify(w, p->mode, gpa);
		if (c.kind != PAGE_BAD)
			count_gen(res, c.gen);
		res->pages++;
		if (walk_page(&sw, c))
			continue;
		res->bad++;
		if (c.kind == PAGE_BAD)
			report(res, "page 0x%llx (vcpu %u): not a test page of any "
			       "generation (word %u is wrong)",
			       (unsigned long long)gpa, cpu, c.word);
		else
			report(res, "page 0x%llx (vcpu %u): generation %llu%s out of "
			       "write order (expected %llu%s)",
			       (unsigned long long)gpa, cpu,
			       (unsigned long long)c.gen,
			       c.kind == PAGE_PARTIAL ? " half-written" : "",
			       (unsigned long long)(sw.lower ? sw.hi - 1 : sw.hi),
			       sw.lower ? "" : " or one less");
	}
	/* The slice's newest generation must be the vCPU's pass or the one before. */
	if (sw.started && sw.hi != pass && !(pass > 0 && sw.hi == pass - 1)) {
		res->bad++;
		report(res, "vcpu %u: memory holds generation %llu but the vCPU is "
		       "in pass %llu", cpu, (unsigned long long)sw.hi,
		       (unsigned long long)pass);
	}
	if (st->errors) {
		res->guest_errors += st->errors;
		report(res, "vcpu %u: the guest found %llu bad pages itself, the "
		       "first at 0x%llx", cpu, (unsigned long long)st->errors,
		       (unsigned long long)st->first_bad);
	}
	return 0;
}

/* Pages of the test range beyond the last slice were never written. */
static int check_untouched(const struct memcheck_view *v, const struct tg_params *p,
			   uint64_t gpa, struct memcheck_result *res)
{
	const uint64_t *w;
	unsigned int i;

	for (;; gpa = next_gpa(p, gpa)) {
		w = (const uint64_t *)memcheck_ptr(v, gpa, TG_PAGE);
		if (!w)
			return 0;
		res->pages++;
		for (i = 0; i < TG_WORDS && w[i] == 0; i++)
			;
		if (i < TG_WORDS) {
			res->bad++;
			report(res, "page 0x%llx: outside the test range but not "
			       "zero (word %u)", (unsigned long long)gpa, i);
		}
	}
}

static int check_params(const struct memcheck_view *v, const struct tg_params *p)
{
	uint64_t i, expect = TG_RANGE_GPA;

	if (p->mode >= TG_MODE_MAX || p->nvcpus == 0 || p->nvcpus > TG_MAX_VCPUS)
		return -EINVAL;
	if (p->hole_start && (p->hole_start % TG_PAGE || p->hole_end <= p->hole_start))
		return -EINVAL;
	for (i = 0; i < p->nvcpus; i++) {
		const struct tg_slice *s = &p->slices[i];

		/* Slices are consecutive from TG_RANGE_GPA. */
		if (s->pages && s->start != expect)
			return -EINVAL;
		if (s->pages > (1ULL << 40) / TG_PAGE)
			return -EINVAL;
		expect = s->start + s->pages * TG_PAGE;
		if (p->hole_start && s->start < p->hole_start && expect > p->hole_start)
			expect += p->hole_end - p->hole_start;
	}
	if (!memcheck_ptr(v, TG_STATUS_GPA, TG_MAX_VCPUS * TGS_SIZE))
		return -EINVAL;
	return 0;
}

int memcheck_run(const struct memcheck_view *v, struct memcheck_result *res)
{
	const struct tg_params *p;
	const struct tg_vcpu_status *st;
	uint64_t i, end = TG_RANGE_GPA;
	int ret;

	memset(res, 0, sizeof(*res));
	p = (const struct tg_params *)memcheck_ptr(v, TG_PARAMS_GPA, sizeof(*p));
	if (!p || p->magic != TG_PARAMS_MAGIC)
		return -ENOENT;
	ret = check_params(v, p);
	if (ret < 0)
		return ret;
	res->mode = p->mode;
	res->nvcpus = p->nvcpus;
	st = (const struct tg_vcpu_status *)memcheck_ptr(v, TG_STATUS_GPA,
							  TG_MAX_VCPUS * TGS_SIZE);
	for (i = 0; i < p->nvcpus; i++) {
		ret = check_slice(v, p, &st[i], i, res);
		if (ret < 0)
			return ret;
		if (p->slices[i].pages) {
			end = p->slices[i].start;
			for (uint64_t k = 0; k < p->slices[i].pages; k++)
				end = next_gpa(p, end);
		}
	}
	return check_untouched(v, p, end, res);
}
