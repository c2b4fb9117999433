// SPDX-License-Identifier: GPL-2.0-only
/*
 * The vmm's control service as migd uses it: a blocking client on
 * RUNDIR/vmm/VM.sock, mapping the guest RAM memfds it hands over, and the
 * clean-ups the parent runs when a worker died (resume a paused source,
 * make an incoming destination drop what it received).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/bitmap.h"
#include "common/fault.h"
#include "common/ramhash.h"
#include "common/util.h"
#include "migd/migd.h"

#define VMM_CALL_TIMEOUT_MS 30000
#define VMM_MAX_FRAME (64u << 20)

/* ms a call may take: VMM_CALL_TIMEOUT_MS (a test's 3 s), or what is
 * left before l->until. */
static int link_ms(const struct vmm_link *l)
{
	int ms = fault_active("vmm-call-short") ? 3000 : VMM_CALL_TIMEOUT_MS;

	if (l->short_ms)
		ms = MIN(ms, (int)l->short_ms);
	return l->until ? MIN(ms_until(l->until), ms) : ms;
}

static int link_open(struct vmm_link *l, const char *rundir, const char *vm,
		     uint64_t until, char *err, size_t errlen)
{
	char path[PATH_MAX];
	int ret;

	l->cl = NULL;
	l->until = until;
	str_copy(l->vm, vm, sizeof(l->vm));
	if ((size_t)snprintf(path, sizeof(path), "%s/vmm/%s.sock", rundir, vm) >=
	    sizeof(path)) {
		snprintf(err, errlen, "vmm %s: socket path too long", vm);
		return -ENAMETOOLONG;
	}
	ret = rpc_client_connect_path(path, link_ms(l), &l->cl);
	if (ret == -EACCES)
		snprintf(err, errlen, "vmm %s: cannot reach %s: %s "
			 RPC_VMM_GROUP_HINT("migd"), vm, path, strerror(-ret));
	else if (ret < 0)
		snprintf(err, errlen, "no vmm named %s on this host (%s: %s)", vm,
			 path, strerror(-ret));
	if (ret < 0)
		return ret;
	rpc_client_set_max_frame(l->cl, VMM_MAX_FRAME);
	return 0;
}

int vmm_link_open(struct vmm_link *l, const char *rundir, const char *vm,
		  char *err, size_t errlen)
{
	return link_open(l, rundir, vm, 0, err, errlen);
}

/* A link for one of the parent's clean-ups: all of it within
 * VMM_CLEANUP_TIMEOUT_MS. */
static int cleanup_open(struct vmm_link *l, const char *rundir, const char *vm,
			char *err, size_t errlen)
{
	return link_open(l, rundir, vm, deadline_ms(VMM_CLEANUP_TIMEOUT_MS), err,
			 errlen);
}

bool vmm_link_gone(const struct vmm_link *l)
{
	return !l->cl || rpc_client_hung_up(l->cl);
}

void vmm_link_close(struct vmm_link *l)
{
	if (l->cl)
		rpc_client_free(l->cl);
	l->cl = NULL;
}

bool vmm_link_stopped(const struct vmm_link *l, char *why, size_t len)
{
	char name[sizeof(l->vm) + 8];

	snprintf(name, sizeof(name), "vmm %s", l->vm);
	return l->cl && proc_stopped_say(rpc_client_peer_pid(l->cl), name, why,
					 len);
}

int vmm_link_call(struct vmm_link *l, const char *method,
		  const ProtobufCMessage *arg, const int *fds, size_t nfds,
		  ProtobufCMessage **ret, struct rpc_result *res, char *err,
		  size_t errlen)
{
	struct rpc_result tmp;
	char who[sizeof(l->vm) + 128];
	int r;

	r = rpc_client_call(l->cl, &tern__vmm__vmm__descriptor, method,
			    arg, fds, nfds, ret, &tmp,
			    link_ms(l), NULL, NULL);
	l->deaf = r == -ETIMEDOUT;
	if (r == -ETIMEDOUT && err && vmm_link_stopped(l, who, sizeof(who)))
		snprintf(err, errlen, "vmm %s: %s: no answer in time: %s",
			 l->vm, method, who);
	else if (r < 0 && err)
		snprintf(err, errlen, "vmm %s: %s: %s", l->vm, method,
			 tmp.message[0] ? tmp.message : strerror(-r));
	if (res)
		*res = tmp;
	else
		rpc_result_close_fds(&tmp);
	return r;
}

int vmm_link_status(struct vmm_link *l, struct vmm_start *ret, char *err,
		    size_t errlen)
{
	Tern__Vmm__VmmStatus *st = NULL;
	int r;

	r = vmm_link_call(l, "Status", NULL, NULL, 0, (ProtobufCMessage **)&st,
			  NULL, err, errlen);
	if (r < 0)
		return r;
	*ret = (struct vmm_start){ .state = st->state, .vcpus = st->vcpus,
				   .throttle = st->throttle, .uffd = st->uffd };
	snprintf(ret->moved_to, sizeof(ret->moved_to), "%s",
		 st->moved_to ? st->moved_to : "");
	protobuf_c_message_free_unpacked(&st->base, NULL);
	return 0;
}

int vmm_link_state(struct vmm_link *l, Tern__Vmm__RunState *ret, char *err,
		   size_t errlen)
{
	struct vmm_start st;
	int r = vmm_link_status(l, &st, err, errlen);

	if (r == 0)
		*ret = st.state;
	return r;
}

int vmm_link_recover_source(const char *rundir, const char *vm, bool resume,
			    const char *kept, const char *moved,
			    bool moved_postcopy, uint32_t throttle, char *msg,
			    size_t len)
{
	Tern__Vmm__MovedNote n = TERN__VMM__MOVED_NOTE__INIT;
	Tern__Vmm__RunState st;
	struct vmm_link l;
	bool unmarked = false;
	size_t end;
	int r, rm;

	r = cleanup_open(&l, rundir, vm, msg, len);
	if (r == 0 && moved && moved[0]) {
		n.to = (char *)moved;
		n.postcopy = moved_postcopy;
		/* Already marked (by the worker, before it died) is marked. */
		rm = vmm_link_call(&l, "SetMoved", &n.base, NULL, 0, NULL, NULL,
				   NULL, 0);
		unmarked = rm < 0 && rm != -EALREADY;
	}
	/* A dead worker left dirty logging on (nobody reads it any more, and
	 * it would refuse the next migration) and maybe a vCPU throttle:
	 * logging off ("not on" is fine), the throttle as before the job. */
	if (r == 0) {
		Tern__Vmm__Throttle t = TERN__VMM__THROTTLE__INIT;

		t.percent = throttle;
		vmm_link_call(&l, "DirtyStop", NULL, NULL, 0, NULL, NULL, NULL, 0);
		vmm_link_call(&l, "SetThrottle", &t.base, NULL, 0, NULL, NULL, NULL, 0);
		r = vmm_link_state(&l, &st, msg, len);
	}
	if (r == 0 && st == TERN__VMM__RUN_STATE__RUN_STATE_PAUSED && resume) {
		r = vmm_link_call(&l, "Cont", NULL, NULL, 0, NULL, NULL, msg, len);
		if (r == 0) {
			snprintf(msg, len, "the source VM was resumed");
			r = 1;
		}
	} else if (r == 0 && st == TERN__VMM__RUN_STATE__RUN_STATE_PAUSED) {
		snprintf(msg, len, "the source VM stays paused%s%s", kept ? ", " : "",
			 kept ? kept : "");
	} else if (r == 0) {
		snprintf(msg, len, st == TERN__VMM__RUN_STATE__RUN_STATE_RUNNING ?
			 "the source VM is running" : "the source VM was not "
			 "resumed (it is neither running nor paused)");
	}
	end = strlen(msg);
	if (r >= 0 && unmarked && end < len)
		snprintf(msg + end, len - end, " (not marked as moved: a Cont "
			 "there would run the guest twice)");
	vmm_link_close(&l);
	return r;
}

int vmm_link_discard_dest(const char *rundir, const char *vm, char *msg,
			  size_t len)
{
	struct vmm_link l;
	int r;

	r = cleanup_open(&l, rundir, vm, msg, len);
	if (r == 0)
		r = vmm_link_call(&l, "Discard", NULL, NULL, 0, NULL, NULL, msg, len);
	if (r == 0)
		snprintf(msg, len, "the destination vmm dropped what it received");
	vmm_link_close(&l);
	return r;
}

void ram_view_unmap(struct ram_view *v)
{
	unsigned int i;

	for (i = 0; i < v->n; i++) {
		munmap(v->r[i].host, v->r[i].size);
		close(v->r[i].fd);
	}
	v->n = 0;
}

int vmm_memfd_check(int fd, const char *what, uint64_t *ret_size, char *err,
		    size_t errlen)
{
	int r = fd_check_sealed(fd, false, ret_size);

	if (r == -EPERM)
		snprintf(err, errlen, "%s is not sealed against shrinking "
			 "(F_SEAL_SHRINK): truncated under this worker's mapping, "
			 "it would kill the worker", what);
	else if (r == -EINVAL)
		snprintf(err, errlen, "%s is not a memfd", what);
	else if (r < 0)
		snprintf(err, errlen, "%s: %s", what, strerror(-r));
	return r;
}

int ram_view_map(struct ram_view *v, const Tern__Vmm__RamLayout *lay,
		 int *fds, size_t nfds, bool writable, char *err, size_t errlen)
{
	uint64_t pages = 0, has;
	char what[64];
	size_t i;
	int r, huge;

	memset(v, 0, sizeof(*v));
	if (lay->page_size != STREAM_PAGE || lay->n_regions == 0 ||
	    lay->n_regions > STREAM_MAX_REGIONS || nfds != lay->n_regions) {
		snprintf(err, errlen, "unusable layout (%zu regions, %zu memfds, "
			 "page size %u)", lay->n_regions, nfds, lay->page_size);
		return -EPROTO;
	}
	for (i = 0; i < lay->n_regions; i++) {
		uint64_t size = lay->regions[i]->size;
		void *p;

		snprintf(what, sizeof(what), "its memfd of region %zu", i);
		r = vmm_memfd_check(fds[i], what, &has, err, errlen);
		if (r == 0 && (size == 0 || size % STREAM_PAGE || has != size)) {
			snprintf(err, errlen, "region %zu has %llu bytes, its memfd "
				 "%llu", i, (unsigned long long)size,
				 (unsigned long long)has);
			r = -EPROTO;
		}
		huge = r == 0 ? fd_hugetlb(fds[i]) : 0;
		if (huge < 0) {
			r = huge;
			snprintf(err, errlen, "%s: %s", what, strerror(-r));
		} else if (r == 0 && i && v->huge != (huge == 1)) {
			snprintf(err, errlen, "region %zu's memfd is %s huge "
				 "pages, region 0's %s", i, huge ? "of" : "not of",
				 huge ? "is not" : "is");
			r = -EPROTO;
		} else if (r == 0 && huge && size % RAM_HUGE_PAGE) {
			snprintf(err, errlen, "region %zu: %llu bytes of huge pages, "
				 "not a multiple of 2 MiB", i, (unsigned long long)size);
			r = -EPROTO;
		}
		v->huge = huge == 1;
		if (r < 0) {
			ram_view_unmap(v);
			return r;
		}
		p = mmap(NULL, size, PROT_READ | (writable ? PROT_WRITE : 0),
			 MAP_SHARED, fds[i], 0);
		if (p == MAP_FAILED) {
			r = -errno;
			snprintf(err, errlen, "region %zu: %s", i, strerror(-r));
			ram_view_unmap(v);
			return r;
		}
		/* What this mapping touches says nothing of the guest's
		 * working set: kept out of the LRU's recency, the pages it
		 * mapped are not each marked accessed when it goes (munmap
		 * of 2 GiB read through it: 145 ms here, 51 ms with this). */
		madvise(p, size, MADV_RANDOM);
		v->r[i].gpa = lay->regions[i]->gpa;
		v->r[i].size = size;
		v->r[i].host = p;
		v->r[i].fd = fds[i];
		fds[i] = -1;
		v->first_page[i] = pages;
		pages += size / STREAM_PAGE;
		v->n = i + 1;
	}
	v->pages = pages;
	return 0;
}

static unsigned int ram_view_regions(const struct ram_view *v,
				     struct ramhash_region *r)
{
	unsigned int i;

	for (i = 0; i < v->n; i++)
		r[i] = (struct ramhash_region){ v->r[i].host, v->r[i].size, v->r[i].fd };
	return v->n;
}

/* Verify's sample: enough data to time, little enough to be cheap. */
#define HASH_SAMPLE (32u << 20)

int ram_view_hash_rate(const struct ram_view *v, uint64_t *rate)
{
	struct ramhash_region r[STREAM_MAX_REGIONS];

	return ramhash_rate(r, ram_view_regions(v, r), cpus_usable(),
			    HASH_SAMPLE, rate);
}

uint64_t ram_view_mark_data(const struct ram_view *v, unsigned int i,
			    uint64_t *map)
{
	uint64_t off = 0, start, end, n = 0;

	if (fd_all_data(v->r[i].fd, v->r[i].size)) {
		n = v->r[i].size / STREAM_PAGE;
		bitmap_set_range(map, v->first_page[i], n);
		return n;
	}
	while (off < v->r[i].size &&
	       fd_next_data(v->r[i].fd, off, v->r[i].size, &start, &end) == 0) {
		bitmap_set_range(map, v->first_page[i] + start / STREAM_PAGE,
				 (end - start) / STREAM_PAGE);
		n += (end - start) / STREAM_PAGE;
		off = end;
	}
	return n;
}

uint64_t ram_view_data_bytes(const struct ram_view *v)
{
	struct ramhash_region r[STREAM_MAX_REGIONS];

	return ramhash_data(r, ram_view_regions(v, r));
}

/*
 * Chunk hashes of the RAM into *ret (*ret_n of them): folded from the
 * page-hash table `from` if given, else read from the mapped RAM, the
 * table entries of the pages holding data also into `pages` if given.
 */
static int view_chunks(const struct ram_view *v, const uint64_t *from,
		       uint64_t *pages, uint64_t **ret, size_t *ret_n)
{
	struct ramhash_region r[STREAM_MAX_REGIONS];
	uint64_t n = 0, *out, sizes[STREAM_MAX_REGIONS];
	unsigned int i;
	int e = 0;

	ram_view_regions(v, r);
	for (i = 0; i < v->n; i++) {
		n += ramhash_chunks(v->r[i].size);
		sizes[i] = v->r[i].size;
	}
	out = calloc(n ? n : 1, sizeof(*out));
	if (!out)
		return -ENOMEM;
	if (from)
		ramhash_fold_pages(from, sizes, v->n, out);
	else
		e = ramhash_compute_pages(r, v->n, cpus_usable(), out, pages);
	if (e < 0 || !ret) {
		free(out);
		return e;
	}
	*ret = out;
	*ret_n = n;
	return 0;
}

int ram_view_hash(const struct ram_view *v, uint64_t **ret, size_t *ret_n)
{
	return view_chunks(v, NULL, NULL, ret, ret_n);
}

int ram_view_hash_pages(const struct ram_view *v, uint64_t *pages)
{
	return view_chunks(v, NULL, pages, NULL, NULL);
}

int ram_view_fold(const struct ram_view *v, const uint64_t *pages,
		  uint64_t **ret, size_t *ret_n)
{
	return view_chunks(v, pages, NULL, ret, ret_n);
}

int vmm_link_map_ram(struct vmm_link *l, struct ram_view *v, bool writable,
		     char *err, size_t errlen)
{
	Tern__Vmm__RamLayout *lay = NULL;
	struct rpc_result res;
	char why[256];
	int r;

	r = vmm_link_call(l, "GetRam", NULL, NULL, 0, (ProtobufCMessage **)&lay,
			  &res, err, errlen);
	if (r < 0)
		return r;
	r = ram_view_map(v, lay, res.fds, res.nfds, writable, why, sizeof(why));
	rpc_result_close_fds(&res);
	protobuf_c_message_free_unpacked(&lay->base, NULL);
	if (r < 0)
		snprintf(err, errlen, "cannot map the guest RAM of vmm %s: %s", l->vm,
			 why);
	return r;
}

