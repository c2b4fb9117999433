// SPDX-License-Identifier: GPL-2.0-only
/*
 * How much memory this process may still take, for --prealloc: the host's
 * MemAvailable, and the room left under the memory limits of its cgroup
 * and the cgroup's ancestors (cgroup v2's memory.max, or v1's
 * memory.limit_in_bytes).  Taking more than that does not fail cleanly:
 * the OOM killer ends some process, possibly this one, halfway through.
 * And for --hugepages, what the host's pool of huge pages has left, for
 * the message of a start it cannot hold.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"
#include "vmm/vmm.h"

#define CGROUP_ROOT "/sys/fs/cgroup"

/* The number after "key:" in /proc/meminfo (kB for sizes), or
 * UINT64_MAX if unknown. */
static uint64_t meminfo(const char *key)
{
	char line[128];
	unsigned long long v;
	uint64_t ret = UINT64_MAX;
	size_t klen = strlen(key);
	FILE *f = fopen("/proc/meminfo", "re");

	if (!f)
		return ret;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, klen) && line[klen] == ':' &&
		    sscanf(line + klen + 1, "%llu", &v) == 1) {
			ret = v;
			break;
		}
	fclose(f);
	return ret;
}

/* MemAvailable in bytes, or UINT64_MAX if unknown. */
static uint64_t host_available(void)
{
	uint64_t kib = meminfo("MemAvailable");

	return kib == UINT64_MAX ? kib : kib << 10;
}

long long mem_huge_room(void)
{
	uint64_t free_pages = meminfo("HugePages_Free");
	uint64_t rsvd = meminfo("HugePages_Rsvd");

	if (free_pages == UINT64_MAX || rsvd == UINT64_MAX || rsvd > free_pages)
		return -1;
	return (long long)(free_pages - rsvd);
}

/* The number in file dir/name ("max" and absent files: UINT64_MAX). */
static uint64_t read_u64(const char *dir, const char *name)
{
	char path[PATH_MAX + 64], buf[32];
	uint64_t v = UINT64_MAX;
	FILE *f;

	if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
		return v;
	f = fopen(path, "re");
	if (!f)
		return v;
	if (fgets(buf, sizeof(buf), f) && sscanf(buf, "%" SCNu64, &v) != 1)
		v = UINT64_MAX;
	fclose(f);
	return v;
}

/*
 * The room under the limits of the cgroup at base + path and of each of
 * its ancestors (limit minus what each holds); the tightest one's
 * directory goes to where.
 */
static uint64_t cgroup_room(const char *base, const char *path,
			    const char *limit_file, const char *usage_file,
			    char *where, size_t len)
{
	char dir[PATH_MAX];
	uint64_t room = UINT64_MAX, limit, usage;
	char *slash;

	if (snprintf(dir, sizeof(dir), "%s%s", base, path) >= (int)sizeof(dir))
		return room;
	for (;;) {
		limit = read_u64(dir, limit_file);
		usage = read_u64(dir, usage_file);
		/* v1 says "no limit" with a huge number, not "max" */
		if (limit < (1ULL << 62) && usage != UINT64_MAX) {
			limit = limit > usage ? limit - usage : 0;
			if (limit < room) {
				room = limit;
				snprintf(where, len, "%s", dir);
			}
		}
		slash = strrchr(dir, '/');
		if (!slash || (size_t)(slash - dir) < strlen(base))
			break;
		*slash = '\0';
	}
	return room;
}

/* The room left by this process's memory cgroup, v2 or v1. */
static uint64_t self_cgroup_room(char *where, size_t len)
{
	char line[PATH_MAX + 64], *ctl, *path;
	uint64_t room = UINT64_MAX, r;
	FILE *f = fopen("/proc/self/cgroup", "re");

	if (!f)
		return room;
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		ctl = strchr(line, ':');
		path = ctl ? strchr(ctl + 1, ':') : NULL;
		if (!path)
			continue;
		*path++ = '\0';
		ctl++;
		if (!strcmp(line, "0") && !*ctl)       /* v2: "0::/path" */
			r = cgroup_room(CGROUP_ROOT, path, "memory.max",
					"memory.current", where, len);
		else if (!strcmp(ctl, "memory") || strstr(ctl, "memory,") == ctl ||
			 strstr(ctl, ",memory"))
			r = cgroup_room(CGROUP_ROOT "/memory", path,
					"memory.limit_in_bytes",
					"memory.usage_in_bytes", where, len);
		else
			continue;
		room = MIN(room, r);
	}
	fclose(f);
	return room;
}

int mem_room(uint64_t want, char *why, size_t len)
{
	char where[PATH_MAX];
	uint64_t avail = host_available(), room;

	if (want > avail) {
		snprintf(why, len, "the host has only %" PRIu64 " MiB available "
			 "(MemAvailable)", avail >> 20);
		return -ENOMEM;
	}
	where[0] = '\0';
	room = self_cgroup_room(where, sizeof(where));
	if (want > room) {
		snprintf(why, len, "its memory cgroup allows only %" PRIu64 " MiB "
			 "more (%s)", room >> 20, where);
		return -ENOMEM;
	}
	return 0;
}
