// SPDX-License-Identifier: GPL-2.0-only
/*
 * bench_limits: this machine's own limits, measured in the same run as the
 * migrations of `make bench` (tests/bench/run.sh), so that each migration
 * figure can be shown as a share of what the machine can do at all:
 *
 *   - memcpy between large RAM buffers, 1 and 2 threads;
 *   - the zero-page scan of present RAM (migd's 64-bit OR loop, and AVX2);
 *   - loopback TCP with 1, 2 and 4 streams, each sender doing sendmsg() of
 *     128 x 4 KiB iovecs out of a large buffer and each receiver doing
 *     readv() of 128 x 4 KiB into a large RAM buffer, as migd's ram
 *     channels do (socket buffers left to the kernel's autotuning); once
 *     into RAM already present (the steady state) and once into a fresh
 *     memfd (a comparison, not a limit: migd places first-time pages by
 *     UFFDIO_COPY with a helper thread, not by readv());
 *   - the first write to every page of a fresh memfd (page faults);
 *   - the bare userfaultfd round trip on a memfd mapping: one thread
 *     touches missing pages one by one, another resolves each with
 *     UFFDIO_COPY, sleeping in poll() on another CPU (postcopy's floor:
 *     the guest's remote fault latency is compared with it), on the
 *     same CPU, wherever the scheduler wakes it, or spinning on read();
 *   - the loopback TCP round trip of a small request answered with one
 *     page (TCP_NODELAY, both ends blocked in read()): what postcopy's
 *     page link adds to that floor for every remote fault;
 *   - zstd level 1 on incompressible and on text-like 4 KiB pages;
 *   - the page size's share in placing pages: UFFDIO_COPY of 4 KiB pages
 *     into a fresh memfd registered with userfaultfd (migd's placement),
 *     and, when a pool of 2 MiB huge pages is there (run.sh reserves one
 *     for the run), the first write to a fresh hugetlb memfd and
 *     UFFDIO_COPY of 2 MiB pages into one (null without a pool).
 *
 * All RAM comes from memfds mapped shared, like guest RAM.  Each figure is
 * the median of a few repetitions; each repetition is bounded in time, the
 * whole run takes about 20 s.  Prints one JSON object on stdout (rates in
 * GB/s, 1 GB = 10^9 bytes), progress on stderr.
 * Usage: bench_limits [-d SECONDS_PER_TCP_RUN] [-q]
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <immintrin.h>
#include <linux/userfaultfd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#define PAGE 4096UL
#define MiB (1UL << 20)
#define GB 1e9
#define REPS 3
#define MAX_STREAMS 4
#define IOV_PAGES 128                   /* pages per sendmsg()/readv() */
#define COPY_BUF (64 * MiB)             /* per memcpy thread, each way */
#define SCAN_BUF (128 * MiB)
#define TCP_BUF (64 * MiB)              /* per stream, each side */
#define FRESH_BUF (512 * MiB)           /* per stream, fresh memfd */
#define FRESH_TOUCH (256 * MiB)
#define ZSTD_SET (16 * MiB)             /* distinct pages compressed */
#define UFFD_PAGES 2000                 /* faults per repetition */

static double tcp_seconds = 1.0;
static double zstd_seconds = 0.25;
static bool quiet;

/* ---- helpers ----------------------------------------------------------- */

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_s(double s)
{
	struct timespec ts = { (time_t)s, (long)((s - (time_t)s) * 1e9) };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
	va_list ap;

	if (quiet)
		return;
	va_start(ap, fmt);
	fputs("limits: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static void fail(const char *what, int err)
{
	fprintf(stderr, "bench_limits: %s: %s\n", what, strerror(err));
	exit(1);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* RAM as guests have it: a memfd mapped shared.  With touch, every page is
 * written (with a non-zero pattern unless zero), so it is present. */
static uint8_t *ram_alloc(size_t size, bool touch, bool zero)
{
	uint8_t *p;
	int fd;

	fd = memfd_create("bench", MFD_CLOEXEC);
	if (fd < 0)
		fail("memfd_create", errno);
	if (ftruncate(fd, size) < 0)
		fail("ftruncate", errno);
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		fail("mmap", errno);
	close(fd);
	if (touch)
		memset(p, zero ? 0 : 0x5a, size);
	return p;
}

/* ---- memcpy ------------------------------------------------------------ */

struct copy_thread {
	pthread_t tid;
	pthread_barrier_t *start, *end;
	uint8_t *src, *dst;
	int reps, rounds;
};

static void *copy_main(void *arg)
{
	struct copy_thread *t = arg;
	int r, i;

	for (r = 0; r < t->reps; r++) {
		pthread_barrier_wait(t->start);
		for (i = 0; i < t->rounds; i++)
			memcpy(t->dst, t->src, COPY_BUF);
		pthread_barrier_wait(t->end);
	}
	return NULL;
}

static double measure_memcpy(int nthreads)
{
	struct copy_thread t[2];
	pthread_barrier_t start, end;
	double v[5], t0;
	const int reps = 5, rounds = 8;
	int i, r;

	pthread_barrier_init(&start, NULL, nthreads + 1);
	pthread_barrier_init(&end, NULL, nthreads + 1);
	for (i = 0; i < nthreads; i++) {
		t[i] = (struct copy_thread){ .start = &start, .end = &end,
			.reps = reps, .rounds = rounds,
			.src = ram_alloc(COPY_BUF, true, false),
			.dst = ram_alloc(COPY_BUF, true, false) };
		memcpy(t[i].dst, t[i].src, COPY_BUF);  /* warm the mappings */
		pthread_create(&t[i].tid, NULL, copy_main, &t[i]);
	}
	for (r = 0; r < reps; r++) {
		pthread_barrier_wait(&start);
		t0 = now_s();
		pthread_barrier_wait(&end);
		v[r] = (double)nthreads * rounds * COPY_BUF / (now_s() - t0) / GB;
	}
	for (i = 0; i < nthreads; i++) {
		pthread_join(t[i].tid, NULL);
		munmap(t[i].src, COPY_BUF);
		munmap(t[i].dst, COPY_BUF);
	}
	pthread_barrier_destroy(&start);
	pthread_barrier_destroy(&end);
	return median(v, reps);
}

/* ---- zero-page scan ------------------------------------------------------ */

/* migd's test (migd/channel.c): a cache line of 64-bit words at a time. */
static bool zero_or64(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)p;
	unsigned int i;

	for (i = 0; i < PAGE / 8; i += 8)
		if (w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] |
		    w[i + 6] | w[i + 7])
			return false;
	return true;
}

__attribute__((target("avx2"))) static bool zero_avx2(const uint8_t *p)
{
	const __m256i *v = (const __m256i *)p;
	unsigned int i;

	for (i = 0; i < PAGE / 32; i += 4) {
		__m256i a = _mm256_or_si256(_mm256_load_si256(v + i),
					    _mm256_load_si256(v + i + 1));
		__m256i b = _mm256_or_si256(_mm256_load_si256(v + i + 2),
					    _mm256_load_si256(v + i + 3));

		a = _mm256_or_si256(a, b);
		if (!_mm256_testz_si256(a, a))
			return false;
	}
	return true;
}

/* Every page zero, so every byte is read: the scan's worst case. */
static double measure_zero_scan(const uint8_t *buf, bool (*is_zero)(const uint8_t *))
{
	volatile size_t sink = 0;
	double v[REPS], t0;
	size_t off, n;
	int r;

	for (r = 0; r < REPS; r++) {
		t0 = now_s();
		for (n = 0, off = 0; off < SCAN_BUF; off += PAGE)
			n += is_zero(buf + off);
		v[r] = SCAN_BUF / (now_s() - t0) / GB;
		sink += n;
	}
	(void)sink;
	return median(v, REPS);
}

/* ---- first touch of fresh RAM ------------------------------------------------ */

/* Writing every page of a new memfd: what receiving into an incoming
 * guest's RAM pays on top of the copy (a page allocated and zeroed per
 * fault).  In a nested VM this includes the outer host backing memory
 * that this one never used before, so it varies with the machine's past. */
static double measure_fresh_touch(void)
{
	double v[REPS], t0;
	uint8_t *p;
	int r;

	for (r = 0; r < REPS; r++) {
		p = ram_alloc(FRESH_TOUCH, false, false);
		t0 = now_s();
		memset(p, 0x5a, FRESH_TOUCH);
		v[r] = FRESH_TOUCH / (now_s() - t0) / GB;
		munmap(p, FRESH_TOUCH);
	}
	return median(v, REPS);
}

/* ---- userfaultfd round trip ------------------------------------------- */

struct uffd_bench {
	int uffd;
	uint8_t *area;                  /* registered, missing pages */
	bool spin;                      /* the handler spins on read() */
	int cpu;                        /* the handler's CPU, -1: any */
	bool stop;                      /* (atomic) */
};

/* Where the two threads of the round trip run. */
enum uffd_place {
	UFFD_CROSS,                     /* poll()ing handler on another CPU */
	UFFD_SAME,                      /* poll()ing handler on the toucher's CPU */
	UFFD_ANY,                       /* both wherever the scheduler puts them */
	UFFD_SPIN,                      /* spinning handler on another CPU */
	UFFD_PLACES
};

/* The first two CPUs this process may use (-1 if there are fewer). */
static void two_cpus(int cpu[2])
{
	cpu_set_t set;
	int i, n = 0;

	cpu[0] = cpu[1] = -1;
	if (sched_getaffinity(0, sizeof(set), &set) < 0)
		return;
	for (i = 0; i < CPU_SETSIZE && n < 2; i++)
		if (CPU_ISSET(i, &set))
			cpu[n++] = i;
}

static void pin_self(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static int uffd_open(void)
{
	int dev, fd;

	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		close(dev);
		if (fd >= 0)
			return fd;
	}
	/* Our own faults are user-mode ones: no privilege needed. */
	return syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
}

static void *uffd_handler(void *arg)
{
	struct uffd_bench *b = arg;
	static uint8_t src[PAGE] __attribute__((aligned(PAGE)));
	struct pollfd p = { b->uffd, POLLIN, 0 };
	struct uffd_msg m;

	memset(src, 0x5a, sizeof(src));
	if (b->cpu >= 0)
		pin_self(b->cpu);
	while (!__atomic_load_n(&b->stop, __ATOMIC_ACQUIRE)) {
		if (!b->spin && poll(&p, 1, 100) <= 0)
			continue;
		if (read(b->uffd, &m, sizeof(m)) != sizeof(m) ||
		    m.event != UFFD_EVENT_PAGEFAULT)
			continue;
		struct uffdio_copy c = {
			.dst = m.arg.pagefault.address & ~(PAGE - 1),
			.src = (uintptr_t)src, .len = PAGE,
		};
		if (ioctl(b->uffd, UFFDIO_COPY, &c) < 0 && errno != EEXIST)
			fail("UFFDIO_COPY", errno);
	}
	return NULL;
}

/* One repetition: the median microseconds of UFFD_PAGES round trips on a
 * fresh userfaultfd and area, or -1 if there is no userfaultfd. */
static double uffd_rep(struct uffd_bench *b)
{
	/* UFFDIO_API writes back every feature it has: a fresh one. */
	struct uffdio_api api = { .api = UFFD_API,
				  .features = UFFD_FEATURE_MISSING_SHMEM };
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MISSING };
	double lat[UFFD_PAGES], t0, ret = -1;
	pthread_t th;
	int i;

	b->uffd = uffd_open();
	if (b->uffd < 0)
		return -1;
	b->area = ram_alloc(UFFD_PAGES * PAGE, false, false);
	reg.range = (struct uffdio_range){ (uintptr_t)b->area, UFFD_PAGES * PAGE };
	if (ioctl(b->uffd, UFFDIO_API, &api) < 0 ||
	    ioctl(b->uffd, UFFDIO_REGISTER, &reg) < 0)
		goto out;
	b->stop = false;
	if (pthread_create(&th, NULL, uffd_handler, b) != 0)
		fail("pthread_create", EAGAIN);
	for (i = 0; i < UFFD_PAGES; i++) {
		t0 = now_s();
		(void)*(volatile uint8_t *)(b->area + (size_t)i * PAGE);
		lat[i] = (now_s() - t0) * 1e6;
	}
	__atomic_store_n(&b->stop, true, __ATOMIC_RELEASE);
	pthread_join(th, NULL);
	ret = median(lat, UFFD_PAGES);
out:
	munmap(b->area, UFFD_PAGES * PAGE);
	close(b->uffd);
	return ret;
}

/*
 * Median microseconds from touching a missing page to reading it, with
 * the threads placed as asked.  Left to the scheduler, a poll()ing
 * handler is mostly woken on the toucher's CPU (the toucher sleeps in
 * the fault): the cheap case, a few microseconds; a vCPU's fault is
 * handled on another CPU when the vCPU's own stays busy.  -1 if the
 * machine cannot (no userfaultfd, or one CPU for a placement that needs
 * two).
 */
static double measure_uffd(enum uffd_place place)
{
	struct uffd_bench b = { .spin = place == UFFD_SPIN, .cpu = -1 };
	double v[REPS], ret = -1;
	cpu_set_t saved;
	int r, cpu[2];

	two_cpus(cpu);
	if (place != UFFD_ANY && cpu[place == UFFD_SAME ? 0 : 1] < 0)
		return -1;
	if (sched_getaffinity(0, sizeof(saved), &saved) < 0)
		return -1;
	if (place != UFFD_ANY) {
		pin_self(cpu[0]);
		b.cpu = place == UFFD_SAME ? cpu[0] : cpu[1];
	}
	for (r = 0; r < REPS; r++)
		if ((v[r] = uffd_rep(&b)) < 0)
			goto out;
	ret = median(v, REPS);
out:
	sched_setaffinity(0, sizeof(saved), &saved);
	return ret;
}

/* ---- placing pages, by page size -------------------------------------- */

#define HUGE_PAGE (2 * MiB)

/*
 * GB/s of placing FRESH_TOUCH bytes by UFFDIO_COPY of page-sized copies
 * into a fresh memfd (hugetlb: 2 MiB pages) registered with userfaultfd,
 * as a postcopy destination places pages; with touch, of writing every
 * page through a plain mapping instead.  -1 when it cannot (no
 * userfaultfd, no huge page pool).
 */
static double place_rep(size_t page, bool touch)
{
	struct uffdio_api api = { .api = UFFD_API,
				  .features = page == PAGE ? UFFD_FEATURE_MISSING_SHMEM :
					      UFFD_FEATURE_MISSING_HUGETLBFS };
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MISSING };
	struct uffdio_copy cp = { .len = page };
	double t0, ret = -1;
	uint8_t *area, *src;
	size_t off;
	int fd, uffd = -1;

	fd = memfd_create("bench", MFD_CLOEXEC | (page == PAGE ? 0 : MFD_HUGETLB));
	if (fd < 0)
		return -1;
	area = ftruncate(fd, FRESH_TOUCH) == 0 ?
	       mmap(NULL, FRESH_TOUCH, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) :
	       MAP_FAILED;
	close(fd);
	if (area == MAP_FAILED)
		return -1;              /* (hugetlb: no pool to reserve from) */
	src = aligned_alloc(PAGE, page);
	if (!src)
		fail("aligned_alloc", ENOMEM);
	memset(src, 0x5a, page);
	if (!touch) {
		uffd = uffd_open();
		reg.range = (struct uffdio_range){ (uintptr_t)area, FRESH_TOUCH };
		if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api) < 0 ||
		    ioctl(uffd, UFFDIO_REGISTER, &reg) < 0)
			goto out;
	}
	t0 = now_s();
	for (off = 0; off < FRESH_TOUCH; off += page) {
		if (touch) {
			memcpy(area + off, src, page);
			continue;
		}
		cp.dst = (uintptr_t)area + off;
		cp.src = (uintptr_t)src;
		if (ioctl(uffd, UFFDIO_COPY, &cp) < 0)
			goto out;
	}
	ret = FRESH_TOUCH / (now_s() - t0) / GB;
out:
	if (uffd >= 0)
		close(uffd);
	free(src);
	munmap(area, FRESH_TOUCH);
	return ret;
}

/* The median of place_rep's; the first repetition of a new huge page
 * pool also pays for the host backing it, the later ones reuse it. */
static double measure_place(size_t page, bool touch)
{
	double v[REPS];
	int r;

	for (r = 0; r < REPS; r++)
		if ((v[r] = place_rep(page, touch)) < 0)
			return -1;
	return median(v, REPS);
}

/* ---- loopback TCP ---------------------------------------------------------- */

struct stream {
	pthread_t sender, receiver;
	int sfd, rfd;
	uint8_t *sbuf, *rbuf;
	uint8_t *present;               /* rbuf unless fresh: touched RAM */
	size_t rsize;                   /* rbuf's size */
	bool fresh;                     /* rbuf is untouched: stop when full */
	bool full;                      /* receiver: rbuf filled (fresh) */
	uint64_t received;              /* receiver, read by main (atomic) */
	const bool *stop;               /* main */
	pthread_barrier_t *start;
};

static void *sender_main(void *arg)
{
	struct stream *s = arg;
	struct iovec iov[IOV_PAGES];
	struct msghdr mh = { 0 };
	size_t off = 0, left;
	ssize_t n;
	int i, k;

	pthread_barrier_wait(s->start);
	while (!__atomic_load_n(s->stop, __ATOMIC_RELAXED)) {
		for (i = 0; i < IOV_PAGES; i++) {
			iov[i] = (struct iovec){ s->sbuf + off, PAGE };
			off = (off + PAGE) % TCP_BUF;
		}
		k = 0;
		left = IOV_PAGES * PAGE;
		while (left) {
			mh.msg_iov = iov + k;
			mh.msg_iovlen = IOV_PAGES - k;
			n = sendmsg(s->sfd, &mh, MSG_NOSIGNAL);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				goto out;       /* main shut the socket down */
			left -= n;
			while (k < IOV_PAGES && (size_t)n >= iov[k].iov_len)
				n -= iov[k++].iov_len;
			if (k < IOV_PAGES) {
				iov[k].iov_base = (uint8_t *)iov[k].iov_base + n;
				iov[k].iov_len -= n;
			}
		}
	}
out:
	shutdown(s->sfd, SHUT_WR);
	return NULL;
}

static void *receiver_main(void *arg)
{
	struct stream *s = arg;
	struct iovec iov[IOV_PAGES];
	size_t off = 0, end, len;
	ssize_t n;
	int k;

	pthread_barrier_wait(s->start);
	for (;;) {
		if (off == s->rsize) {
			if (!s->fresh) {
				off = 0;
				continue;
			}
			__atomic_store_n(&s->full, true, __ATOMIC_RELEASE);
			while (!__atomic_load_n(s->stop, __ATOMIC_RELAXED))
				sleep_s(0.001);
			break;
		}
		end = off + IOV_PAGES * PAGE;
		if (end > s->rsize)
			end = s->rsize;
		for (k = 0; off + k * PAGE < end; k++) {
			len = end - (off + k * PAGE);
			iov[k] = (struct iovec){ s->rbuf + off + k * PAGE,
						 len < PAGE ? len : PAGE };
		}
		n = readv(s->rfd, iov, k);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		__atomic_add_fetch(&s->received, n, __ATOMIC_RELAXED);
		off += n;
	}
	return NULL;
}

/* A connected loopback TCP pair: ret_s (sender) and ret_r (receiver). */
static void tcp_pair(int *ret_s, int *ret_r)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int l, s, r;

	l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    listen(l, 1) < 0 || getsockname(l, (struct sockaddr *)&a, &len) < 0)
		fail("listen on 127.0.0.1", errno);
	s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a)) < 0)
		fail("connect to 127.0.0.1", errno);
	r = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	if (r < 0)
		fail("accept", errno);
	close(l);
	*ret_s = s;
	*ret_r = r;
}

static uint64_t tcp_received(struct stream *s, int n)
{
	uint64_t sum = 0;
	int i;

	for (i = 0; i < n; i++)
		sum += __atomic_load_n(&s[i].received, __ATOMIC_RELAXED);
	return sum;
}

static bool tcp_any_full(struct stream *s, int n)
{
	int i;

	for (i = 0; i < n; i++)
		if (__atomic_load_n(&s[i].full, __ATOMIC_ACQUIRE))
			return true;
	return false;
}

/* One run of n streams for tcp_seconds (fresh: half that, or until a
 * buffer is full):
 * GB/s received in that window, counted from after the start barrier. */
static double tcp_run(struct stream *s, int n, bool fresh)
{
	pthread_barrier_t start;
	bool stop = false;
	uint64_t b0, b1;
	double t0, t1, limit = fresh ? tcp_seconds / 2 : tcp_seconds;
	int i;

	pthread_barrier_init(&start, NULL, 2 * n + 1);
	for (i = 0; i < n; i++) {
		tcp_pair(&s[i].sfd, &s[i].rfd);
		s[i].start = &start;
		s[i].stop = &stop;
		s[i].received = 0;
		s[i].full = false;
		s[i].fresh = fresh;
		s[i].rsize = fresh ? FRESH_BUF : TCP_BUF;
		s[i].rbuf = fresh ? ram_alloc(FRESH_BUF, false, false) :
				    s[i].present;
		pthread_create(&s[i].receiver, NULL, receiver_main, &s[i]);
		pthread_create(&s[i].sender, NULL, sender_main, &s[i]);
	}
	pthread_barrier_wait(&start);
	t0 = now_s();
	b0 = tcp_received(s, n);
	do {
		sleep_s(0.002);
		t1 = now_s();
	} while (t1 - t0 < limit && !(fresh && tcp_any_full(s, n)));
	b1 = tcp_received(s, n);
	__atomic_store_n(&stop, true, __ATOMIC_RELAXED);
	for (i = 0; i < n; i++) {
		shutdown(s[i].sfd, SHUT_RDWR);
		shutdown(s[i].rfd, SHUT_RDWR);
	}
	for (i = 0; i < n; i++) {
		pthread_join(s[i].sender, NULL);
		pthread_join(s[i].receiver, NULL);
		close(s[i].sfd);
		close(s[i].rfd);
		if (fresh)
			munmap(s[i].rbuf, FRESH_BUF);
	}
	pthread_barrier_destroy(&start);
	return (b1 - b0) / (t1 - t0) / GB;
}

static double measure_tcp(struct stream *s, int n, bool fresh)
{
	double v[REPS];
	int r;

	for (r = 0; r < REPS; r++)
		v[r] = tcp_run(s, n, fresh);
	return median(v, REPS);
}

/* ---- loopback TCP round trip, one page answered -------------------------- */

#define RTT_REQ 32                      /* bytes: a page request's size */
#define RTT_N 2000                      /* round trips per repetition */

static bool io_full(int fd, void *buf, size_t len, bool out)
{
	ssize_t n;

	while (len) {
		n = out ? send(fd, buf, len, MSG_NOSIGNAL) : read(fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		buf = (uint8_t *)buf + n;
		len -= n;
	}
	return true;
}

/* The answering end: a page for every request, until EOF. */
static void *rtt_server(void *arg)
{
	static uint8_t page[PAGE];
	uint8_t req[RTT_REQ];
	int fd = *(int *)arg;

	memset(page, 0x5a, sizeof(page));
	while (io_full(fd, req, sizeof(req), false) &&
	       io_full(fd, page, sizeof(page), true))
		;
	return NULL;
}

/* Median microseconds from sending a request to holding its page. */
static double measure_tcp_rtt(void)
{
	static uint8_t page[PAGE];
	uint8_t req[RTT_REQ] = { 0 };
	double v[REPS], lat[RTT_N], t0;
	int one = 1, c, srv, r, i;
	pthread_t th;

	for (r = 0; r < REPS; r++) {
		tcp_pair(&c, &srv);
		setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		setsockopt(srv, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (pthread_create(&th, NULL, rtt_server, &srv) != 0)
			fail("pthread_create", EAGAIN);
		for (i = 0; i < RTT_N; i++) {
			t0 = now_s();
			if (!io_full(c, req, sizeof(req), true) ||
			    !io_full(c, page, sizeof(page), false))
				fail("loopback round trip", errno ? errno : EPIPE);
			lat[i] = (now_s() - t0) * 1e6;
		}
		shutdown(c, SHUT_WR);
		pthread_join(th, NULL);
		close(c);
		close(srv);
		v[r] = median(lat, RTT_N);
	}
	return median(v, REPS);
}

/* ---- zstd level 1 on 4 KiB pages ------------------------------------------ */

static void fill_random(uint8_t *p, size_t n, uint64_t seed)
{
	uint64_t w;
	size_t i;

	for (i = 0; i + 8 <= n; i += 8) {
		w = xorshift(&seed);
		memcpy(p + i, &w, 8);
	}
}

/* Words, spaces, punctuation, numbers and line breaks: like logs or
 * source text, which zstd level 1 shrinks to about a third. */
static void fill_text(uint8_t *p, size_t n, uint64_t seed)
{
	static const char *const words[] = {
		"the", "migration", "of", "a", "running", "guest", "page",
		"memory", "dirty", "bitmap", "channel", "round", "downtime",
		"and", "to", "in", "is", "that", "for", "with", "vcpu", "error",
		"connection", "established", "request", "completed", "info",
		"warning", "kernel", "process", "user", "file", "open", "read",
		"write", "socket", "state", "device", "network", "bytes",
	};
	const size_t nw = sizeof(words) / sizeof(words[0]);
	size_t i = 0, col = 0, len;
	char tmp[32];
	uint64_t r;

	while (i < n) {
		r = xorshift(&seed);
		if (r % 11 == 0)
			len = snprintf(tmp, sizeof(tmp), "%llu",
				       (unsigned long long)(r >> 40));
		else
			len = snprintf(tmp, sizeof(tmp), "%s", words[(r >> 8) % nw]);
		if (col + len > 72) {
			tmp[len++] = '\n';
			col = 0;
		} else {
			tmp[len++] = (r >> 20) % 13 ? ' ' : ',';
			col += len;
		}
		if (len > n - i)
			len = n - i;
		memcpy(p + i, tmp, len);
		i += len;
	}
}

struct zstd_result {
	double gbps, ratio, unz_gbps;
};

/* Compress page after page (each on its own, as a ram channel would) for
 * zstd_seconds, REPS times; then decompress for as long. */
static struct zstd_result measure_zstd(const uint8_t *set)
{
	const size_t bound = ZSTD_compressBound(PAGE), npages = ZSTD_SET / PAGE;
	ZSTD_CCtx *cc = ZSTD_createCCtx();
	ZSTD_DCtx *dc = ZSTD_createDCtx();
	struct zstd_result res = { 0 };
	uint8_t *out = malloc(npages * bound), back[PAGE];
	size_t *clen = calloc(npages, sizeof(*clen)), i, n, in_total = 0, c_total = 0;
	double v[REPS], u[REPS], t0, t;
	int r;

	if (!cc || !dc || !out || !clen)
		fail("zstd set-up", ENOMEM);
	for (r = 0; r < REPS; r++) {
		t0 = now_s();
		n = 0;
		do {
			for (i = 0; i < 64; i++, n++) {
				size_t k = n % npages, c;

				c = ZSTD_compressCCtx(cc, out + k * bound, bound,
						      set + k * PAGE, PAGE, 1);
				if (ZSTD_isError(c))
					fail("ZSTD_compressCCtx", EINVAL);
				clen[k] = c;
			}
		} while ((t = now_s() - t0) < zstd_seconds);
		v[r] = (double)n * PAGE / t / GB;
	}
	for (i = 0; i < npages; i++) {
		if (!clen[i])
			clen[i] = ZSTD_compressCCtx(cc, out + i * bound, bound,
						    set + i * PAGE, PAGE, 1);
		in_total += PAGE;
		c_total += clen[i];
	}
	for (r = 0; r < REPS; r++) {
		t0 = now_s();
		n = 0;
		do {
			for (i = 0; i < 64; i++, n++) {
				size_t k = n % npages;

				if (ZSTD_isError(ZSTD_decompressDCtx(dc, back, PAGE,
								     out + k * bound, clen[k])))
					fail("ZSTD_decompressDCtx", EINVAL);
			}
		} while ((t = now_s() - t0) < zstd_seconds);
		u[r] = (double)n * PAGE / t / GB;
	}
	res.gbps = median(v, REPS);
	res.unz_gbps = median(u, REPS);
	res.ratio = (double)c_total / in_total;
	ZSTD_freeCCtx(cc);
	ZSTD_freeDCtx(dc);
	free(out);
	free(clen);
	return res;
}

/* ---- main ---------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f, "usage: bench_limits [-d SECONDS_PER_TCP_RUN] [-q]\n");
}

/* A figure in microseconds, or null where it could not be measured. */
static void print_us(const char *name, double us)
{
	if (us < 0)
		printf(",\"%s\":null", name);
	else
		printf(",\"%s\":%.1f", name, us);
}

/* A rate, or null for one the machine could not measure. */
static void print_gbps(const char *name, double gbps)
{
	if (gbps < 0)
		printf(",\"%s\":null", name);
	else
		printf(",\"%s\":%.3f", name, gbps);
}

int main(int argc, char **argv)
{
	static const int streams[] = { 1, 2, 4 };
	struct stream s[MAX_STREAMS] = { 0 };
	double t_start = now_s(), cp1, cp2, z64, zavx = -1;
	double tcp[3], fresh[2], touch, uffd[UFFD_PLACES], rtt;
	double place4k, place2m, touch2m;
	struct zstd_result zr, zt;
	uint8_t *buf;
	bool avx2;
	int c, i;

	while ((c = getopt(argc, argv, "d:qh")) != -1) {
		switch (c) {
		case 'd':
			tcp_seconds = strtod(optarg, NULL);
			if (!(tcp_seconds >= 0.05 && tcp_seconds <= 5)) {
				fprintf(stderr, "bench_limits: -d: 0.05 to 5 seconds\n");
				return 2;
			}
			break;
		case 'q':
			quiet = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}

	note("memcpy, 1 and 2 threads");
	cp1 = measure_memcpy(1);
	cp2 = measure_memcpy(2);

	note("zero-page scan");
	buf = ram_alloc(SCAN_BUF, true, true);
	z64 = measure_zero_scan(buf, zero_or64);
	__builtin_cpu_init();
	avx2 = __builtin_cpu_supports("avx2");
	if (avx2)
		zavx = measure_zero_scan(buf, zero_avx2);
	munmap(buf, SCAN_BUF);

	note("first touch of a fresh memfd");
	touch = measure_fresh_touch();

	note("placing pages: UFFDIO_COPY of 4 KiB and 2 MiB pages, first "
	     "write to 2 MiB pages");
	place4k = measure_place(PAGE, false);
	place2m = measure_place(HUGE_PAGE, false);
	touch2m = measure_place(HUGE_PAGE, true);

	note("userfaultfd round trip: handler in poll() on another CPU, on "
	     "the same CPU, anywhere; spinning");
	for (i = 0; i < UFFD_PLACES; i++)
		uffd[i] = measure_uffd(i);

	note("loopback TCP round trip, one page answered");
	rtt = measure_tcp_rtt();

	for (i = 0; i < MAX_STREAMS; i++) {
		s[i].sbuf = ram_alloc(TCP_BUF, true, false);
		s[i].present = ram_alloc(TCP_BUF, true, false);
	}
	for (i = 0; i < 3; i++) {
		note("loopback TCP, %d stream(s), into present RAM", streams[i]);
		tcp[i] = measure_tcp(s, streams[i], false);
	}
	for (i = 0; i < 2; i++) {
		note("loopback TCP, %d stream(s), into a fresh memfd", streams[i]);
		fresh[i] = measure_tcp(s, streams[i], true);
	}
	for (i = 0; i < MAX_STREAMS; i++) {
		munmap(s[i].sbuf, TCP_BUF);
		munmap(s[i].present, TCP_BUF);
	}

	note("zstd level 1");
	buf = ram_alloc(ZSTD_SET, false, false);
	fill_random(buf, ZSTD_SET, 0x9e3779b97f4a7c15ULL);
	zr = measure_zstd(buf);
	fill_text(buf, ZSTD_SET, 0x2545f4914f6cdd1dULL);
	zt = measure_zstd(buf);
	munmap(buf, ZSTD_SET);

	printf("{\"memcpy_gbps_1t\":%.2f,\"memcpy_gbps_2t\":%.2f,"
	       "\"zero_scan_gbps_or64\":%.2f,\"zero_scan_gbps_avx2\":",
	       cp1, cp2, z64);
	if (avx2)
		printf("%.2f", zavx);
	else
		printf("null");
	printf(",\"fresh_touch_gbps\":%.3f", touch);
	/* uffd_rtt_us, the figure postcopy's fault latency is held to: the
	 * issue's "bare local uffd round trip ... with a poll()ing handler",
	 * which the vCPU's fault meets when its handler runs on another CPU. */
	print_us("uffd_rtt_us", uffd[UFFD_CROSS]);
	print_us("uffd_rtt_same_cpu_us", uffd[UFFD_SAME]);
	print_us("uffd_rtt_any_cpu_us", uffd[UFFD_ANY]);
	print_us("uffd_rtt_spin_us", uffd[UFFD_SPIN]);
	printf(",\"tcp_rtt_page_us\":%.1f", rtt);
	print_gbps("uffd_copy_4k_gbps", place4k);
	print_gbps("uffd_copy_2m_gbps", place2m);
	print_gbps("fresh_touch_2m_gbps", touch2m);
	printf(",\"tcp_gbps_1s\":%.3f,\"tcp_gbps_2s\":%.3f,\"tcp_gbps_4s\":%.3f,"
	       "\"tcp_fresh_gbps_1s\":%.3f,\"tcp_fresh_gbps_2s\":%.3f,"
	       "\"zstd1_gbps_random\":%.3f,\"zstd1_ratio_random\":%.3f,"
	       "\"unzstd_gbps_random\":%.3f,"
	       "\"zstd1_gbps_text\":%.3f,\"zstd1_ratio_text\":%.3f,"
	       "\"unzstd_gbps_text\":%.3f,"
	       "\"tcp_seconds\":%.2f,\"elapsed_s\":%.1f}\n",
	       tcp[0], tcp[1], tcp[2], fresh[0], fresh[1],
	       zr.gbps, zr.ratio, zr.unz_gbps, zt.gbps, zt.ratio, zt.unz_gbps,
	       tcp_seconds, now_s() - t_start);
	return 0;
}
