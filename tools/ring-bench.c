/* SPDX-License-Identifier: GPL-2.0 */
/*
 * ring-bench.c - how to arrange io_uring for cache-file I/O (cache/ring.c).
 *
 *   ring-bench [-d DIR] [-s SIZE_MIB] [-b BLOCK_KIB] [-t 1,2,4,8]
 *              [-r REPEATS] [-p PASSES] [-v]
 *
 * N worker threads each move SIZE_MIB (default 256) through a file of
 * their own in DIR (default /tmp; give a directory on the cache file
 * system), one request in flight per worker, in three arrangements:
 *
 *   a. ring    each worker owns an io_uring (depth 64) and submits and
 *              reaps its own requests, as cache/ring.c does;
 *   b. engine  one engine thread owns the only ring; workers queue their
 *              requests (mutex + condvar), the engine submits everything
 *              queued in one batch, reaps completions and wakes each
 *              waiting worker on its own condvar;
 *   c. fixed   as a, with the worker's buffer registered
 *              (io_uring_register_buffers, read_fixed / write_fixed).
 *
 * Two cases, each over a file that was written, fdatasynced and read once
 * before, so that its pages are in the page cache:
 *
 *   read   sequential BLOCK_KIB (default 128) reads;
 *   write  sequential 1 MiB buffered writes over the same bytes (no block
 *          allocation, no new pages); an untimed fdatasync after each run
 *          keeps write-back out of the next one.
 *
 * A run goes over each file PASSES times (-p, default 1): one pass of
 * 256 MiB of hot reads takes only some 20 ms here, short enough for one
 * preemption by another process to spoil it.
 *
 * For every thread count of -t, each case runs REPEATS (default 3) times
 * per arrangement; the arrangements alternate within a repeat and their
 * order rotates between repeats.  Printed per case: the median MB/s
 * (10^6 bytes/s of all workers together), the median CPU seconds per GiB
 * (getrusage(RUSAGE_SELF) user + sys over the timed window: every thread
 * of the process, io-wq workers included), the ratios b/a and c/a, the
 * spread of MB/s ((max - min) / median) and the most io-wq workers
 * ("iou-wrk" threads) alive at the end of a run, the sign that requests
 * were punted to them.  -v prints every run on stderr.  The load average
 * is printed before and after (the bench's own threads count in it).
 *
 * Page cache needed: 2 x SIZE_MIB per thread of the largest -t count.
 *
 * Every file it makes lives in a fresh DIR/ring-bench.XXXXXX, removed on
 * exit, on error, and on SIGINT, SIGTERM and SIGHUP.
 *
 * Example: build/tools/ring-bench -d /var/cache/stagefs -r 5 -p 8
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <liburing.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#define RING_DEPTH	64
#define MAX_THREADS	64
#define MAX_TCOUNTS	16
#define MAX_REPEATS	99
#define WRITE_SIZE	(1u << 20)
#define MIB		(1ull << 20)

enum { ARR_RING, ARR_ENGINE, ARR_FIXED, NARR };
enum { CASE_READ, CASE_WRITE, NCASE };

static const char *const arr_name[NARR] = { "ring", "engine", "fixed" };
static const char *const case_name[NCASE] = { "read", "write" };

/* ---- options ------------------------------------------------------- */

static const char *opt_dir = "/tmp";
static unsigned int opt_size_mib = 256;
static unsigned int opt_block_kib = 128;
static int opt_tcounts[MAX_TCOUNTS] = { 1, 2, 4, 8 };
static int opt_ntcounts = 4;
static int opt_repeats = 3;
static int opt_passes = 1;
static int opt_verbose;

/* ---- files, and their removal on every way out --------------------- */

static char tmp_dir[PATH_MAX];
static char tmp_files[2 * MAX_THREADS][PATH_MAX];
static volatile sig_atomic_t tmp_nfiles;
static volatile sig_atomic_t tmp_made;

/* Async-signal-safe: unlink and rmdir only. */
static void cleanup_files(void)
{
	int i;

	for (i = 0; i < tmp_nfiles; i++)
		unlink(tmp_files[i]);
	if (tmp_made)
		rmdir(tmp_dir);
	tmp_nfiles = 0;
	tmp_made = 0;
}

static void on_signal(int sig)
{
	cleanup_files();
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Any thread, any error: report, remove our files, leave. */
static void __attribute__((noreturn)) fatal(const char *what, int err)
{
	fflush(stdout);
	fprintf(stderr, "ring-bench: %s: %s\n", what, strerror(err));
	if (err == ENOMEM && strstr(what, "register"))
		fprintf(stderr, "ring-bench: raise RLIMIT_MEMLOCK (ulimit -l)\n");
	cleanup_files();
	_exit(1);
}

static int make_file(const char *prefix, int idx)
{
	char *path = tmp_files[tmp_nfiles];
	int fd;

	if (snprintf(path, PATH_MAX, "%s/%s%d", tmp_dir, prefix, idx) >=
	    PATH_MAX)
		fatal(tmp_dir, ENAMETOOLONG);
	tmp_nfiles++;
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		fatal(path, errno);
	return fd;
}

/* ---- timing -------------------------------------------------------- */

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* io-wq workers of this process alive now (threads named iou-wrk-*). */
static int count_iowq(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *de;
	char path[64], comm[32];
	int n = 0;

	if (!d)
		return -1;
	while ((de = readdir(d))) {
		FILE *f;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%.20s/comm",
			 de->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		if (fgets(comm, sizeof(comm), f) && !strncmp(comm, "iou-wrk", 7))
			n++;
		fclose(f);
	}
	closedir(d);
	return n;
}

/* ---- b: the engine thread ------------------------------------------ */

struct req {
	struct req *next;
	int fd;
	int write;
	void *buf;
	unsigned int len;
	uint64_t off;
	int res;
	int done;
	pthread_cond_t cond;	/* signalled when done, under eng.lock */
};

struct engine {
	pthread_t tid;
	pthread_mutex_t lock;
	pthread_cond_t cond;	/* a request was queued, or stop */
	struct req *head;
	struct req **tail;
	int stop;
	struct io_uring ring;
};

static struct engine eng = { .lock = PTHREAD_MUTEX_INITIALIZER,
			     .cond = PTHREAD_COND_INITIALIZER };

/*
 * Take as many queued requests as the ring has room for.  Sleep only if
 * nothing is queued and nothing is in flight; a request queued while the
 * engine waits for a completion is taken at the next completion.
 */
static struct req *engine_take(unsigned int inflight, int *stop)
{
	struct req *first, *last = NULL, *r;
	unsigned int n = 0;

	pthread_mutex_lock(&eng.lock);
	while (!eng.head && !inflight && !eng.stop)
		pthread_cond_wait(&eng.cond, &eng.lock);
	first = eng.head;
	for (r = first; r && n < RING_DEPTH - inflight; r = r->next, n++)
		last = r;
	if (last) {
		eng.head = r;
		last->next = NULL;
		if (!r)
			eng.tail = &eng.head;
	}
	*stop = eng.stop && !eng.head;
	pthread_mutex_unlock(&eng.lock);
	return last ? first : NULL;
}

static unsigned int engine_prep(struct req *r)
{
	unsigned int n = 0;

	for (; r; r = r->next, n++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&eng.ring);

		if (r->write)
			io_uring_prep_write(sqe, r->fd, r->buf, r->len, r->off);
		else
			io_uring_prep_read(sqe, r->fd, r->buf, r->len, r->off);
		io_uring_sqe_set_data(sqe, r);
	}
	return n;
}

/* Reap every completion there is, wake their workers; returns how many. */
static unsigned int engine_reap(void)
{
	struct io_uring_cqe *cqe;
	unsigned int head, n = 0;

	pthread_mutex_lock(&eng.lock);
	io_uring_for_each_cqe(&eng.ring, head, cqe) {
		struct req *r = io_uring_cqe_get_data(cqe);

		r->res = cqe->res;
		r->done = 1;
		pthread_cond_signal(&r->cond);
		n++;
	}
	pthread_mutex_unlock(&eng.lock);
	io_uring_cq_advance(&eng.ring, n);
	return n;
}

static void *engine_main(void *arg)
{
	unsigned int inflight = 0;
	int rc, stop;

	for (;;) {
		struct req *batch = engine_take(inflight, &stop);

		if (stop && !inflight && !batch)
			break;
		inflight += engine_prep(batch);
		if (!inflight)
			continue;
		rc = io_uring_submit_and_wait(&eng.ring, 1);
		if (rc < 0 && rc != -EINTR)
			fatal("engine: io_uring_submit_and_wait", -rc);
		inflight -= engine_reap();
	}
	return NULL;
}

static void engine_start(void)
{
	int rc = io_uring_queue_init(RING_DEPTH, &eng.ring, 0);

	if (rc < 0)
		fatal("engine: io_uring_queue_init", -rc);
	eng.head = NULL;
	eng.tail = &eng.head;
	eng.stop = 0;
	rc = pthread_create(&eng.tid, NULL, engine_main, NULL);
	if (rc)
		fatal("pthread_create", rc);
}

static void engine_stop(void)
{
	pthread_mutex_lock(&eng.lock);
	eng.stop = 1;
	pthread_cond_signal(&eng.cond);
	pthread_mutex_unlock(&eng.lock);
	pthread_join(eng.tid, NULL);
	io_uring_queue_exit(&eng.ring);
}

/* A worker's side: queue r, wait until the engine completed it. */
static int engine_io(struct req *r)
{
	pthread_mutex_lock(&eng.lock);
	r->next = NULL;
	r->done = 0;
	*eng.tail = r;
	eng.tail = &r->next;
	pthread_cond_signal(&eng.cond);
	while (!r->done)
		pthread_cond_wait(&r->cond, &eng.lock);
	pthread_mutex_unlock(&eng.lock);
	return r->res;
}

/* ---- workers ------------------------------------------------------- */

struct worker {
	pthread_t tid;
	int arr;
	int write;
	int fd;
	char *buf;
	unsigned int len;	/* bytes per request */
	uint64_t size;		/* bytes per pass */
	int passes;
	struct io_uring ring;	/* a and c */
	struct req req;		/* b */
};

static pthread_barrier_t bar;

/* a and c: one request on the worker's own ring, as cache/ring.c does. */
static int ring_io(struct worker *w, uint64_t off)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
	struct io_uring_cqe *cqe;
	int rc;

	if (w->arr == ARR_FIXED && w->write)
		io_uring_prep_write_fixed(sqe, w->fd, w->buf, w->len, off, 0);
	else if (w->arr == ARR_FIXED)
		io_uring_prep_read_fixed(sqe, w->fd, w->buf, w->len, off, 0);
	else if (w->write)
		io_uring_prep_write(sqe, w->fd, w->buf, w->len, off);
	else
		io_uring_prep_read(sqe, w->fd, w->buf, w->len, off);
	rc = io_uring_submit(&w->ring);
	if (rc < 0)
		return rc;
	do {
		rc = io_uring_wait_cqe(&w->ring, &cqe);
	} while (rc == -EINTR);
	if (rc < 0)
		return rc;
	rc = cqe->res;
	io_uring_cqe_seen(&w->ring, cqe);
	return rc;
}

static int one_io(struct worker *w, uint64_t off)
{
	if (w->arr != ARR_ENGINE)
		return ring_io(w, off);
	w->req.fd = w->fd;
	w->req.write = w->write;
	w->req.buf = w->buf;
	w->req.len = w->len;
	w->req.off = off;
	return engine_io(&w->req);
}

static void worker_setup(struct worker *w)
{
	struct iovec iov = { .iov_base = w->buf, .iov_len = w->len };
	int rc;

	if (w->arr == ARR_ENGINE)
		return;
	rc = io_uring_queue_init(RING_DEPTH, &w->ring, 0);
	if (rc < 0)
		fatal("io_uring_queue_init", -rc);
	if (w->arr != ARR_FIXED)
		return;
	rc = io_uring_register_buffers(&w->ring, &iov, 1);
	if (rc < 0)
		fatal("io_uring_register_buffers", -rc);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	uint64_t off;
	int p, rc;

	worker_setup(w);
	pthread_barrier_wait(&bar);		/* ready */
	pthread_barrier_wait(&bar);		/* go */
	for (p = 0; p < w->passes; p++) {
		for (off = 0; off < w->size; off += w->len) {
			rc = one_io(w, off);
			if (rc < 0)
				fatal(w->write ? "write" : "read", -rc);
			if ((unsigned int)rc != w->len)
				fatal(w->write ? "short write" : "short read",
				      EIO);
		}
	}
	pthread_barrier_wait(&bar);		/* done */
	pthread_barrier_wait(&bar);		/* counted */
	if (w->arr != ARR_ENGINE)
		io_uring_queue_exit(&w->ring);
	return NULL;
}

/* ---- one run ------------------------------------------------------- */

struct sample {
	double mbps;
	double cpu_gib;		/* CPU s per GiB */
	int iowq;
};

static struct worker workers[MAX_THREADS];
static char *bufs[MAX_THREADS];
static int rfds[MAX_THREADS], wfds[MAX_THREADS];

static void sync_writes(int n)
{
	int i;

	for (i = 0; i < n; i++)
		if (fdatasync(wfds[i]) < 0)
			fatal("fdatasync", errno);
}

static void start_workers(int n, int arr, int write)
{
	int i, rc;

	for (i = 0; i < n; i++) {
		struct worker *w = &workers[i];

		memset(w, 0, sizeof(*w));
		w->arr = arr;
		w->write = write;
		w->fd = write ? wfds[i] : rfds[i];
		w->buf = bufs[i];
		w->len = write ? WRITE_SIZE : opt_block_kib * 1024u;
		w->size = opt_size_mib * MIB;
		w->passes = opt_passes;
		pthread_cond_init(&w->req.cond, NULL);
		rc = pthread_create(&w->tid, NULL, worker_main, w);
		if (rc)
			fatal("pthread_create", rc);
	}
}

static void join_workers(int n)
{
	int i;

	for (i = 0; i < n; i++) {
		pthread_join(workers[i].tid, NULL);
		pthread_cond_destroy(&workers[i].req.cond);
	}
}

static struct sample run_one(int n, int arr, int write)
{
	struct sample s;
	double t0, c0, t1, c1;
	double bytes = (double)n * opt_size_mib * MIB * opt_passes;
	int rc;

	rc = pthread_barrier_init(&bar, NULL, (unsigned int)n + 1);
	if (rc)
		fatal("pthread_barrier_init", rc);
	if (arr == ARR_ENGINE)
		engine_start();
	start_workers(n, arr, write);
	pthread_barrier_wait(&bar);		/* ready */
	t0 = now_s();
	c0 = cpu_s();
	pthread_barrier_wait(&bar);		/* go */
	pthread_barrier_wait(&bar);		/* done */
	t1 = now_s();
	c1 = cpu_s();
	s.iowq = count_iowq();
	pthread_barrier_wait(&bar);		/* counted */
	join_workers(n);
	if (arr == ARR_ENGINE)
		engine_stop();
	pthread_barrier_destroy(&bar);
	if (write)
		sync_writes(n);
	s.mbps = bytes / (t1 - t0) / 1e6;
	s.cpu_gib = (c1 - c0) / (bytes / (double)(1ull << 30));
	if (opt_verbose)
		fprintf(stderr, "%-5s t=%-2d %-6s %8.0f MB/s %7.3f CPU-s/GiB"
			"  %5.2f s  io-wq %d\n", case_name[write], n,
			arr_name[arr], s.mbps, s.cpu_gib, t1 - t0, s.iowq);
	return s;
}

/* ---- setup --------------------------------------------------------- */

/* A file for worker i: written, on disk, read once; returns its fd. */
static int make_hot_file(const char *prefix, int i)
{
	uint64_t off, size = opt_size_mib * MIB;
	int fd = make_file(prefix, i);
	ssize_t n;

	for (off = 0; off < size; off += MIB) {
		memcpy(bufs[i], &off, sizeof(off));
		n = pwrite(fd, bufs[i], MIB, (off_t)off);
		if (n != (ssize_t)MIB)
			fatal("pwrite", n < 0 ? errno : EIO);
	}
	if (fdatasync(fd) < 0)
		fatal("fdatasync", errno);
	for (off = 0; off < size; off += MIB) {
		n = pread(fd, bufs[i], MIB, (off_t)off);
		if (n != (ssize_t)MIB)
			fatal("pread", n < 0 ? errno : EIO);
	}
	return fd;
}

static void setup_files(int nmax)
{
	size_t buflen = opt_block_kib * 1024u;
	int i;

	if (buflen < WRITE_SIZE)
		buflen = WRITE_SIZE;
	if (snprintf(tmp_dir, sizeof(tmp_dir), "%s/ring-bench.XXXXXX",
		     opt_dir) >= (int)sizeof(tmp_dir))
		fatal(opt_dir, ENAMETOOLONG);
	if (!mkdtemp(tmp_dir))
		fatal(tmp_dir, errno);
	tmp_made = 1;
	for (i = 0; i < nmax; i++) {
		if (posix_memalign((void **)&bufs[i], 4096, buflen))
			fatal("posix_memalign", ENOMEM);
		memset(bufs[i], 'a' + i % 26, buflen);
		rfds[i] = make_hot_file("r", i);
		wfds[i] = make_hot_file("w", i);
	}
}

static void close_files(int nmax)
{
	int i;

	for (i = 0; i < nmax; i++) {
		close(rfds[i]);
		close(wfds[i]);
		free(bufs[i]);
	}
}

/* ---- report -------------------------------------------------------- */

static struct sample results[NCASE][MAX_TCOUNTS][NARR][MAX_REPEATS];

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Median of a field of samples; *spread gets (max - min) / median. */
static double median_of(const struct sample *s, int n, int cpu,
			double *spread)
{
	double v[MAX_REPEATS], m;
	int i;

	for (i = 0; i < n; i++)
		v[i] = cpu ? s[i].cpu_gib : s[i].mbps;
	qsort(v, (size_t)n, sizeof(v[0]), cmp_double);
	m = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
	if (spread)
		*spread = m > 0 ? (v[n - 1] - v[0]) / m : 0;
	return m;
}

static int max_iowq(const struct sample *s, int n)
{
	int i, m = 0;

	for (i = 0; i < n; i++)
		if (s[i].iowq > m)
			m = s[i].iowq;
	return m;
}

static void print_row(int c, int ti)
{
	double mb[NARR], cpu[NARR], spr[NARR];
	int a, n = opt_repeats;

	for (a = 0; a < NARR; a++) {
		mb[a] = median_of(results[c][ti][a], n, 0, &spr[a]);
		cpu[a] = median_of(results[c][ti][a], n, 1, NULL);
	}
	printf("%7d  %7.0f %7.0f %7.0f %5.2f %5.2f   %6.3f %6.3f %6.3f"
	       " %5.2f %5.2f   %3.0f %3.0f %3.0f   %2d %2d %2d\n",
	       opt_tcounts[ti], mb[0], mb[1], mb[2], mb[1] / mb[0],
	       mb[2] / mb[0], cpu[0], cpu[1], cpu[2], cpu[1] / cpu[0],
	       cpu[2] / cpu[0], spr[0] * 100, spr[1] * 100, spr[2] * 100,
	       max_iowq(results[c][ti][0], n), max_iowq(results[c][ti][1], n),
	       max_iowq(results[c][ti][2], n));
}

static void print_table(int c)
{
	int ti;

	if (c == CASE_READ)
		printf("\n== read: %u KiB reads, page cache hot, %u MiB per "
		       "thread x %d pass%s, median of %d\n", opt_block_kib,
		       opt_size_mib, opt_passes, opt_passes > 1 ? "es" : "",
		       opt_repeats);
	else
		printf("\n== write: 1 MiB buffered writes over a hot file, "
		       "%u MiB per thread x %d pass%s, median of %d\n",
		       opt_size_mib, opt_passes, opt_passes > 1 ? "es" : "",
		       opt_repeats);
	printf("         ------------ MB/s ------------   "
	       "--------- CPU s/GiB ----------   spread %%    io-wq\n");
	printf("threads     ring  engine   fixed   b/a   c/a     ring "
	       "engine  fixed   b/a   c/a     a   b   c    a  b  c\n");
	for (ti = 0; ti < opt_ntcounts; ti++)
		print_row(c, ti);
}

static void print_loadavg(const char *when)
{
	char buf[128] = "?";
	FILE *f = fopen("/proc/loadavg", "r");

	if (f) {
		if (!fgets(buf, sizeof(buf), f))
			strcpy(buf, "?\n");
		fclose(f);
	}
	printf("load average %s: %s", when, buf);
}

static const char *fs_name(long type)
{
	switch (type) {
	case 0xEF53:		return "ext2/3/4";
	case 0x01021994:	return "tmpfs";
	case 0x58465342:	return "xfs";
	case 0x9123683E:	return "btrfs";
	case 0x65735546:	return "fuse";
	default:		return "other";
	}
}

static void print_header(void)
{
	struct utsname u;
	struct statfs sf;
	long type = statfs(opt_dir, &sf) == 0 ? (long)sf.f_type : 0;

	uname(&u);
	printf("ring-bench: kernel %s, %ld CPUs online, %s (%s, 0x%lx)\n",
	       u.release, sysconf(_SC_NPROCESSORS_ONLN), opt_dir,
	       fs_name(type), type);
	printf("a = ring: a ring per thread; b = engine: one engine thread;"
	       " c = fixed: a ring per thread, registered buffer\n");
	print_loadavg("at start");
}

/* ---- main ---------------------------------------------------------- */

static void usage(void)
{
	fprintf(stderr, "usage: ring-bench [-d DIR] [-s SIZE_MIB] "
		"[-b BLOCK_KIB] [-t 1,2,4,8] [-r REPEATS] [-p PASSES] "
		"[-v]\n");
	exit(2);
}

static long parse_num(const char *s, long lo, long hi)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi) {
		fprintf(stderr, "ring-bench: bad number '%s' (%ld to %ld)\n",
			s, lo, hi);
		usage();
	}
	return v;
}

static void parse_tcounts(char *s)
{
	char *tok, *save = NULL;

	opt_ntcounts = 0;
	for (tok = strtok_r(s, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		if (opt_ntcounts == MAX_TCOUNTS)
			usage();
		opt_tcounts[opt_ntcounts++] =
			(int)parse_num(tok, 1, MAX_THREADS);
	}
	if (!opt_ntcounts)
		usage();
}

static void parse_args(int argc, char **argv)
{
	int c;

	while ((c = getopt(argc, argv, "d:s:b:t:r:p:vh")) != -1) {
		switch (c) {
		case 'd':
			opt_dir = optarg;
			break;
		case 's':
			opt_size_mib = (unsigned int)parse_num(optarg, 1, 1 << 20);
			break;
		case 'b':
			opt_block_kib = (unsigned int)parse_num(optarg, 4, 1 << 20);
			break;
		case 't':
			parse_tcounts(optarg);
			break;
		case 'r':
			opt_repeats = (int)parse_num(optarg, 1, MAX_REPEATS);
			break;
		case 'p':
			opt_passes = (int)parse_num(optarg, 1, 1000);
			break;
		case 'v':
			opt_verbose = 1;
			break;
		default:
			usage();
		}
	}
	if (optind != argc || (opt_size_mib * 1024ull) % opt_block_kib)
		usage();
}

static void run_all(void)
{
	int ti, c, r, k;

	for (ti = 0; ti < opt_ntcounts; ti++)
		for (c = 0; c < NCASE; c++)
			for (r = 0; r < opt_repeats; r++)
				for (k = 0; k < NARR; k++) {
					int a = (r + k) % NARR;

					results[c][ti][a][r] =
						run_one(opt_tcounts[ti], a, c);
				}
}

int main(int argc, char **argv)
{
	int i, nmax = 0;

	parse_args(argc, argv);
	for (i = 0; i < opt_ntcounts; i++)
		if (opt_tcounts[i] > nmax)
			nmax = opt_tcounts[i];
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGHUP, on_signal);
	print_header();
	fflush(stdout);
	setup_files(nmax);
	run_all();
	close_files(nmax);
	cleanup_files();
	print_table(CASE_READ);
	print_table(CASE_WRITE);
	print_loadavg("at end");
	return 0;
}
