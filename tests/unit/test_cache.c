/* SPDX-License-Identifier: GPL-2.0 */
/*
 * test_cache.c - unit tests of the staging cache (cache/) over the
 * in-memory backend of mem_backend.c.
 *
 * The fixture makes a cache dir under /tmp and a backend; a test opens
 * the cache with fx_open() after adjusting X.cfg.  Files and nodes a test
 * gets through the fx_ helpers are put back by the fixture, which also
 * lifts every injected fault before it closes the cache (cache_close
 * flushes, and gives up only after a minute without progress), so the
 * suite is safe with CK_FORK=no.
 *
 * chunk_size is 256K, the smallest the options allow, so a block
 * (chunk_size / CACHE_BLOCKS) is 4K.
 *
 * Tests named bug_* are in the "known_bugs" case: each documents a bug
 * of cache/ named in its comment; it failed until that was fixed.
 * STAGEFS_TEST=<part of a name> runs only the matching tests;
 * STAGEFS_TEST_LOG=1 shows the cache's log down to debug.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cache_int.h"
#include "fd_count.h"
#include "mem_backend.h"

#define CS ((uint64_t)256 << 10)
#define BS (CS / CACHE_BLOCKS)
#define EVICT_BATCH (16 * CS)	/* evict.c's EVICT_BATCH_CHUNKS chunks */
#define SPEC "mem://unit"
#define MAX_TRACK 16

static struct {
	char dir[128];
	struct cache_config cfg;
	struct be *be;
	struct be *bes[1];
	struct cache *c;
	char err[512];
	struct cache_file *files[MAX_TRACK];
	int nfiles;
	struct be_node *nodes[MAX_TRACK];
	int nnodes;
} X;

/*
 * A gate on unlinkat(2), the cache's way of removing files: while it is
 * closed, every call waits at it (a cache fs whose journal is busy, made
 * as slow as a test needs).  This definition takes the place of libc's
 * for the whole test program, the cache's code included.
 */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool closed;
	int held;		/* calls waiting at the gate now */
	char last[256];		/* the path of the last call held */
} ugate = { .lock = PTHREAD_MUTEX_INITIALIZER,
	     .cond = PTHREAD_COND_INITIALIZER };

int unlinkat(int dirfd, const char *path, int flags)
{
	pthread_mutex_lock(&ugate.lock);
	if (ugate.closed) {
		ugate.held++;
		snprintf(ugate.last, sizeof(ugate.last), "%s", path);
		while (ugate.closed)
			pthread_cond_wait(&ugate.cond, &ugate.lock);
		ugate.held--;
	}
	pthread_mutex_unlock(&ugate.lock);
	return (int)syscall(SYS_unlinkat, dirfd, path, flags);
}

static void ugate_set(bool closed)
{
	pthread_mutex_lock(&ugate.lock);
	ugate.closed = closed;
	pthread_cond_broadcast(&ugate.cond);
	pthread_mutex_unlock(&ugate.lock);
}

/* Is a call held at the gate for a path that contains arg (NULL: any)? */
static bool ugate_holds(void *arg)
{
	bool yes;

	pthread_mutex_lock(&ugate.lock);
	yes = ugate.held > 0 && (!arg || strstr(ugate.last, arg));
	pthread_mutex_unlock(&ugate.lock);
	return yes;
}

/* ---- fixture ----------------------------------------------------------- */

/*
 * Each test's directory is made in base_dir, which main() makes and
 * removes: with CK_FORK (the default) a failed assertion _exit()s the
 * test's process before its teardown runs.
 */
static char base_dir[64];

static int rm_one(const char *path, const struct stat *sb, int type,
		  struct FTW *ftw)
{
	remove(path);
	return 0;
}

static void fx_setup(void)
{
	memset(&X, 0, sizeof(X));
	snprintf(X.dir, sizeof(X.dir), "%s/t-XXXXXX", base_dir);
	ck_assert_ptr_nonnull(mkdtemp(X.dir));
	X.cfg = (struct cache_config){
		.dir = X.dir,
		.size = 1ULL << 30,
		.min_free = 0,
		.chunk_size = CS,
		.readahead = 0,
		.dirty_max = 64ULL << 20,
		.flushers = 2,
		.writeback = 1,
		.close_mode = CACHE_CLOSE_SYNC,
		.fsync_mode = CACHE_FSYNC_BACKEND,
		.verify = 1,
	};
	X.be = mem_be_new(SPEC);
	ck_assert_ptr_nonnull(X.be);
	X.bes[0] = X.be;
}

static void fx_open(void)
{
	int rc = cache_open(&X.cfg, X.bes, 1, &X.c, X.err, sizeof(X.err));

	ck_assert_msg(rc == 0, "cache_open: %d (%s)", rc, X.err);
}

static void fx_heal(void)
{
	int op;

	for (op = 0; op < MEM_OP_COUNT; op++) {
		mem_be_fail(X.be, (enum mem_op)op, 0, 0);
		mem_be_set_delay(X.be, (enum mem_op)op, 0);
		mem_be_gate(X.be, (enum mem_op)op, 0);
	}
}

/* Put the files we hold and close the cache. */
static int fx_close(void)
{
	int rc = 0;

	while (X.nfiles)
		cache_file_put(X.files[--X.nfiles]);
	if (X.c)
		rc = cache_close(X.c);
	X.c = NULL;
	return rc;
}

static void fx_teardown(void)
{
	ugate_set(false);
	if (X.be)
		fx_heal();
	fx_close();
	while (X.nnodes)
		be_node_put(X.be, X.nodes[--X.nnodes]);
	be_close(X.be);
	X.be = NULL;
	nftw(X.dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	X.dir[0] = '\0';
}

static void track_file(struct cache_file *f)
{
	ck_assert_int_lt(X.nfiles, MAX_TRACK);
	X.files[X.nfiles++] = f;
}

/* A backend file with these contents, and its cache_file. */
static struct cache_file *fx_file(const char *name, const void *data,
				  size_t len, struct be_node **nodep)
{
	struct be_node *n;
	struct be_attr a;
	struct cache_file *f;

	ck_assert_int_eq(mem_be_put_file(X.be, name, data, len, &n, &a), 0);
	ck_assert_int_lt(X.nnodes, MAX_TRACK);
	X.nodes[X.nnodes++] = n;
	ck_assert_int_ge(cache_file_get(X.c, 0, n, &a, &f), 0);
	track_file(f);
	if (nodep)
		*nodep = n;
	return f;
}

/* The cache_file for n with the backend's current attributes (an open). */
static struct cache_file *fx_reopen(struct be_node *n)
{
	struct be_attr a;
	struct cache_file *f;

	ck_assert_int_eq(X.be->ops->getattr(X.be, NULL, n, &a), 0);
	ck_assert_int_ge(cache_file_get(X.c, 0, n, &a, &f), 0);
	track_file(f);
	return f;
}

/* A backend file made before the cache is open, kept by the fixture. */
static struct be_node *fx_backend_file(const char *name, const void *data,
				       size_t len)
{
	struct be_node *n;

	ck_assert_int_eq(mem_be_put_file(X.be, name, data, len, &n, NULL), 0);
	ck_assert_int_lt(X.nnodes, MAX_TRACK);
	X.nodes[X.nnodes++] = n;
	return n;
}

/* In a test's crashing child: the cache_file of n in c, as an open gets
 * it (no fixture, no tracking); NULL if that fails. */
static struct cache_file *child_file(struct cache *c, struct be_node *n)
{
	struct cache_file *f;
	struct be_attr a;

	if (X.be->ops->getattr(X.be, NULL, n, &a) ||
	    cache_file_get(c, 0, n, &a, &f) < 0)
		return NULL;
	return f;
}

/* ---- helpers ----------------------------------------------------------- */

/* Bytes that depend on their offset and a seed: misplacement shows. */
static void pattern(unsigned char *buf, size_t len, uint64_t off,
		    unsigned int seed)
{
	size_t i;

	for (i = 0; i < len; i++) {
		uint64_t x = (off + i) / 8 + ((uint64_t)seed << 40);

		x ^= x >> 31;
		x *= 0x9e3779b97f4a7c15ULL;
		x ^= x >> 29;
		buf[i] = (unsigned char)(x >> (8 * ((off + i) % 8)));
	}
}

/*
 * Write len bytes of pattern seed at off through f, and put the same bytes
 * at off in model (what the file must read back).
 */
static void write_model(struct cache_file *f, unsigned char *model,
			size_t len, uint64_t off, unsigned int seed)
{
	unsigned char *p = malloc(len);

	ck_assert_ptr_nonnull(p);
	pattern(p, len, off, seed);
	ck_assert_int_eq(cache_write(f, NULL, p, len, off), (ssize_t)len);
	memcpy(model + off, p, len);
	free(p);
}

static unsigned char *pattern_new(size_t len, unsigned int seed)
{
	unsigned char *p = malloc(len ? len : 1);

	ck_assert_ptr_nonnull(p);
	pattern(p, len, 0, seed);
	return p;
}

static void assert_same(const void *got, const void *want, size_t len,
			const char *what)
{
	const unsigned char *g = got, *w = want;
	size_t i;

	for (i = 0; i < len; i++)
		if (g[i] != w[i])
			break;
	ck_assert_msg(i == len,
		      "%s: first difference at byte %zu of %zu (got 0x%02x, want 0x%02x)",
		      what, i, len, i < len ? g[i] : 0, i < len ? w[i] : 0);
}

/* Read [off, off+len) in pieces of piece bytes; returns the total. */
static size_t read_all(struct cache_file *f, struct cache_stream *s,
		       void *buf, size_t len, uint64_t off, size_t piece)
{
	size_t done = 0;

	while (done < len) {
		size_t want = len - done < piece ? len - done : piece;
		ssize_t n = cache_read(f, s, (char *)buf + done, want,
				       off + done);

		ck_assert_msg(n >= 0, "cache_read at %llu: %zd",
			      (unsigned long long)(off + done), n);
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return done;
}

static void write_all(struct cache_file *f, const void *buf, size_t len,
		      uint64_t off, size_t piece)
{
	size_t done = 0;

	while (done < len) {
		size_t n = len - done < piece ? len - done : piece;

		ck_assert_int_eq(cache_write(f, NULL, (const char *)buf + done, n,
					     off + done),
				 (ssize_t)n);
		done += n;
	}
}

/* The file's contents through the cache must be want[0..len). */
static void assert_cache_has(struct cache_file *f, const void *want,
			     size_t len, const char *what)
{
	unsigned char *got = malloc(len + 4096);

	ck_assert_ptr_nonnull(got);
	ck_assert_uint_eq(cache_file_size(f), len);
	ck_assert_uint_eq(read_all(f, NULL, got, len + 4096, 0, 100000), len);
	assert_same(got, want, len, what);
	free(got);
}

/* The backend's copy must be exactly want[0..len). */
static void assert_backend_has(struct be_node *n, const void *want,
			       size_t len, const char *what)
{
	size_t blen;
	void *b = mem_be_get_data(X.be, n, &blen);

	ck_assert_msg(blen == len, "%s: backend has %zu bytes, want %zu", what,
		      blen, len);
	assert_same(b, want, len, what);
	free(b);
}

static struct cache_stats stats(void)
{
	struct cache_stats st;

	cache_get_stats(X.c, &st);
	return st;
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void sleep_ms(unsigned int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000,
			       .tv_nsec = (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

/* Poll pred(arg) every 10 ms for up to ms; returns its last answer. */
static bool wait_for(bool (*pred)(void *), void *arg, unsigned int ms)
{
	double end = now_ms() + ms;

	while (!pred(arg)) {
		if (now_ms() > end)
			return pred(arg);
		sleep_ms(10);
	}
	return true;
}

static bool no_dirty(void *arg)
{
	return stats().dirty_bytes == 0;
}

static bool some_flush_error(void *arg)
{
	return stats().flush_errors > 0;
}

static bool some_prefetch(void *arg)
{
	return stats().prefetch_chunks > 0;
}

static bool writes_waiting(void *arg)
{
	return mem_be_waiting(X.be, MEM_OP_WRITE) >= *(unsigned long *)arg;
}

static bool writes_completed(void *arg)
{
	return mem_be_completed(X.be, MEM_OP_WRITE) >= *(unsigned long *)arg;
}

static bool file_idle(void *arg)
{
	struct cache_file *f = arg;
	bool idle;

	pthread_mutex_lock(&f->lock);
	idle = f->inflight == 0;
	pthread_mutex_unlock(&f->lock);
	return idle;
}

/* The only file in cache_dir/data, for corrupting it. */
static int open_data_file(void)
{
	char path[512];
	struct dirent *e;
	DIR *d;
	int fd = -1, n = 0;

	snprintf(path, sizeof(path), "%s/data", X.dir);
	d = opendir(path);
	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		n++;
		snprintf(path, sizeof(path), "%s/data/%s", X.dir, e->d_name);
		if (fd < 0)
			fd = open(path, O_RDWR);
	}
	closedir(d);
	ck_assert_int_eq(n, 1);
	ck_assert_int_ge(fd, 0);
	return fd;
}

/* Invert len bytes of the cache data file at off. */
static void corrupt(uint64_t off, size_t len)
{
	unsigned char buf[64];
	int fd = open_data_file();
	size_t i;

	ck_assert_uint_le(len, sizeof(buf));
	ck_assert_int_eq(pread(fd, buf, len, (off_t)off), (ssize_t)len);
	for (i = 0; i < len; i++)
		buf[i] = (unsigned char)~buf[i];
	ck_assert_int_eq(pwrite(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

/* cache_file_flush() on a thread, to notice one that never returns. */
struct flush_job {
	struct cache_file *f;
	int rc;
	atomic_int done;
	pthread_t tid;
};

static void *flush_main(void *arg)
{
	struct flush_job *j = arg;

	j->rc = cache_file_flush(j->f);
	atomic_store(&j->done, 1);
	return NULL;
}

static bool job_done(void *arg)
{
	return atomic_load(&((struct flush_job *)arg)->done) != 0;
}

/* ---- basic data path --------------------------------------------------- */

START_TEST(test_write_read_back)
{
	size_t len = 3 * CS + 12345;
	unsigned char *want = pattern_new(len, 1), *got = malloc(len);
	struct cache_file *f;
	struct cache_stats st;

	fx_open();
	f = fx_file("a", NULL, 0, NULL);
	write_all(f, want, len, 0, 100003);
	ck_assert_uint_eq(cache_file_size(f), len);
	assert_cache_has(f, want, len, "read back in 100000-byte pieces");

	/* Odd pieces, across blocks and chunks. */
	ck_assert_uint_eq(read_all(f, NULL, got, len, 0, 65537), len);
	assert_same(got, want, len, "read back in 65537-byte pieces");
	ck_assert_int_eq(cache_read(f, NULL, got, 5000, CS - 1000), 5000);
	assert_same(got, want + CS - 1000, 5000, "read across a chunk edge");
	ck_assert_int_eq(cache_read(f, NULL, got, 1, 2 * CS + 7), 1);
	ck_assert_int_eq(got[0], want[2 * CS + 7]);

	/* Overwrite in the middle: the rest stays. */
	pattern(want + 70000, 300000, 70000, 2);
	ck_assert_int_eq(cache_write(f, NULL, want + 70000, 300000, 70000), 300000);
	assert_cache_has(f, want, len, "after an overwrite");

	st = stats();
	ck_assert_uint_ge(st.bytes_written, len + 300000);
	free(want);
	free(got);
}
END_TEST

START_TEST(test_flush_uploads)
{
	size_t len = 2 * CS + 777;
	unsigned char *want = pattern_new(len, 3);
	struct cache_file *f;
	struct be_node *n;
	struct cache_stats st;
	unsigned long reads;

	fx_open();
	f = fx_file("a", NULL, 0, &n);
	write_all(f, want, len, 0, len);
	ck_assert_int_eq(cache_file_flush(f), 0);
	assert_backend_has(n, want, len, "backend after cache_file_flush");
	st = stats();
	ck_assert_uint_eq(st.dirty_bytes, 0);
	ck_assert_uint_ge(st.bytes_flushed, len);
	ck_assert_uint_ge(mem_be_calls(X.be, MEM_OP_COMMIT), 1);

	/* Flushed data stays cached: no backend read to serve it. */
	reads = mem_be_calls(X.be, MEM_OP_READ);
	assert_cache_has(f, want, len, "after flush");
	ck_assert_uint_eq(mem_be_calls(X.be, MEM_OP_READ), reads);
	free(want);
}
END_TEST

START_TEST(test_writeback_off)
{
	size_t len = 10000;
	unsigned char *want = pattern_new(len, 4);
	struct cache_file *f;
	struct be_node *n;

	X.cfg.writeback = 0;
	fx_open();
	f = fx_file("a", NULL, 0, &n);
	ck_assert_int_eq(cache_write(f, NULL, want, len, 0), (ssize_t)len);
	/* Write-through: on the backend when the write returns. */
	assert_backend_has(n, want, len, "backend right after the write");
	ck_assert_uint_eq(stats().dirty_bytes, 0);
	free(want);
}
END_TEST

START_TEST(test_partial_block_merge)
{
	size_t blen = 3 * BS + 1000, mlen = 13500;
	unsigned char *orig = pattern_new(blen, 5);
	unsigned char *model = calloc(1, mlen);
	struct cache_file *f;
	struct be_node *n;

	fx_open();
	/* On the backend, nothing of it in the cache. */
	f = fx_file("b", orig, blen, &n);
	memcpy(model, orig, blen);

	write_model(f, model, 100, 5000, 6);	/* inside block 1 */
	write_model(f, model, 200, 4000, 7);	/* across blocks 0 and 1 */
	write_model(f, model, 500, 13000, 8);	/* block 3, past the old end */
	/* A partial write fetches nothing: only a read merges. */
	ck_assert_uint_eq(mem_be_calls(X.be, MEM_OP_READ), 0);
	/* The write across blocks 0 and 1 left a gap in block 1's range:
	 * the first range went out before it. */
	ck_assert_uint_eq(stats().flushes_before_write, 1);

	assert_cache_has(f, model, mlen, "partial writes merged");
	ck_assert_int_eq(cache_file_flush(f), 0);
	assert_backend_has(n, model, mlen, "backend after partial writes");
	free(orig);
	free(model);
}
END_TEST

/*
 * Dirty byte ranges (issue 11): another node writes parts of a file this
 * node has cached whole; this node writes other parts, touching and not.
 * The upload carries exactly this node's bytes: every byte of the other
 * node survives on the backend, and this node reads the merged file once
 * it reopens it.
 */
START_TEST(test_range_upload_only_written)
{
	size_t len = CS;
	unsigned char *orig = pattern_new(len, 61), *other, *want;
	struct cache_file *f;
	struct be_node *n;

	fx_open();
	f = fx_file("rg", orig, len, &n);
	assert_cache_has(f, orig, len, "cached whole");
	/* Another node: bytes in blocks 0 and 1, between this node's. */
	other = malloc(len);
	memcpy(other, orig, len);
	pattern(other + 1000, 1000, 1000, 62);
	pattern(other + BS + 10, 10, BS + 10, 63);
	ck_assert_int_eq(mem_be_set_data(X.be, n, other, len), 0);
	want = malloc(len);
	memcpy(want, other, len);
	/* This node: [3000, 3100) and, touching it, [3100, 3300); [BS + 100,
	 * BS + 200) in block 1; all of block 2. */
	write_model(f, want, 100, 3000, 64);
	write_model(f, want, 200, 3100, 65);
	write_model(f, want, 100, BS + 100, 66);
	write_model(f, want, BS, 2 * BS, 67);
	ck_assert_uint_eq(stats().dirty_bytes, 300 + 100 + BS);
	ck_assert_uint_eq(stats().flushes_before_write, 0);
	ck_assert_int_eq(cache_file_flush(f), 0);
	assert_backend_has(n, want, len, "backend: both nodes' bytes");
	ck_assert_uint_eq(stats().bytes_flushed, 300 + 100 + BS);
	/* Close-to-open: the stale copy of the other node's bytes is gone. */
	assert_cache_has(fx_reopen(n), want, len, "this node after reopen");
	free(orig);
	free(other);
	free(want);
}
END_TEST

/*
 * A write that leaves a gap in its block's dirty range uploads that range
 * first (as the NFS client flushes a page before a write that does not
 * touch its dirty part); writes that touch or overlap merge.  The second
 * range's upload must not carry the gap's bytes, which here are stale.
 */
START_TEST(test_range_flush_before_disjoint_write)
{
	size_t len = 2 * BS;
	unsigned char *orig = pattern_new(len, 71), *want = malloc(len);
	unsigned long writes;
	struct cache_file *f;
	struct be_node *n;

	fx_open();
	f = fx_file("fd", orig, len, &n);
	memcpy(want, orig, len);
	write_model(f, want, 100, 100, 72);
	write_model(f, want, 150, 150, 73);	/* overlaps: merged */
	ck_assert_uint_eq(stats().flushes_before_write, 0);
	ck_assert_uint_eq(stats().dirty_bytes, 200);
	writes = mem_be_calls(X.be, MEM_OP_WRITE);
	write_model(f, want, 50, 1000, 74);	/* a gap from 300 to 1000 */
	ck_assert_uint_eq(stats().flushes_before_write, 1);
	ck_assert_uint_eq(mem_be_calls(X.be, MEM_OP_WRITE), writes + 1);
	ck_assert_uint_eq(stats().dirty_bytes, 50);
	/* The first range is on the backend already, alone. */
	memcpy(orig + 100, want + 100, 200);
	assert_backend_has(n, orig, len, "after the write before the gap");
	/* Another node writes into the gap; this node's next upload must
	 * leave it alone. */
	pattern(orig + 500, 100, 500, 75);
	memcpy(want + 500, orig + 500, 100);
	ck_assert_int_eq(mem_be_set_data(X.be, n, orig, len), 0);
	ck_assert_int_eq(cache_file_flush(f), 0);
	assert_backend_has(n, want, len, "backend after both uploads");
	free(orig);
	free(want);
}
END_TEST

/*
 * A truncate cuts a dirty range where the file now ends (split: the part
 * past the end is gone, the rest still goes out), and a range wholly past
 * it is dropped.
 */
START_TEST(test_range_truncate_cuts)
{
	size_t len = 3 * BS;
	unsigned char *orig = pattern_new(len, 91), *want = malloc(len);
	unsigned char piece[5000];
	struct be_attr a;
	struct cache_file *f;
	struct be_node *n;

	fx_open();
	f = fx_file("tc", orig, len, &n);
	memcpy(want, orig, len);
	write_model(f, want, 3800, BS + 100, 92);
	pattern(piece, 10, 2 * BS + 7, 93);
	ck_assert_int_eq(cache_write(f, NULL, piece, 10, 2 * BS + 7), 10);
	ck_assert_uint_eq(stats().dirty_bytes, 3810);
	mem_be_gate(X.be, MEM_OP_WRITE, 1);
	ck_assert_int_eq(cache_file_truncate(f, NULL, BS + 3000, &a), 0);
	ck_assert_uint_eq(stats().dirty_bytes, 2900);
	mem_be_gate(X.be, MEM_OP_WRITE, 0);
	ck_assert_int_eq(cache_file_flush(f), 0);
	assert_backend_has(n, want, BS + 3000, "backend after the cut");
	ck_assert_uint_eq(stats().bytes_flushed, 2900);
	free(orig);
	free(want);
}
END_TEST

START_TEST(test_partial_block_merge_across_chunks)
{
	size_t len = 2 * CS;
	unsigned char *model = pattern_new(len, 9);
	struct cache_file *f;
	struct be_node *n;

	fx_open();
	f = fx_file("b", model, len, &n);
	write_model(f, model, 10, CS - 5, 10);
	write_model(f, model, 33, 2 * CS - 33, 11);	/* the file's last bytes */

	assert_cache_has(f, model, len, "merge across a chunk edge");
	ck_assert_int_eq(cache_file_flush(f), 0);
	assert_backend_has(n, model, len, "backend");
	free(model);
}
END_TEST

START_TEST(test_holes_and_eof)
{
	size_t blen = 300000, len = 800010;
	uint64_t far = (1 << 20) + 7, size = far + 10;
	unsigned char *model = calloc(1, size), *got = malloc(size + 4096);
	struct cache_file *f;
	struct be_node *n;

	fx_open();
	/* A new file with one write far from its start. */
	f = fx_file("new", NULL, 0, &n);
	write_model(f, model, 10, far, 12);
	assert_cache_has(f, model, size, "hole before the data");
	/* At and past the end. */
	ck_assert_int_eq(cache_read(f, NULL, got, 100, size), 0);
	ck_assert_int_eq(cache_read(f, NULL, got, 100, size + 12345), 0);
	ck_assert_int_eq(cache_read(f, NULL, got, 100, size - 5), 5);
	assert_same(got, model + far + 5, 5, "short read at the end");
	ck_assert_int_eq(cache_file_flush(f), 0);
	assert_backend_has(n, model, size, "backend: hole, then the data");

	/* A backend file, written past its end with a gap. */
	memset(model, 0, size);
	pattern(model, blen, 0, 13);
	f = fx_file("old", model, blen, &n);
	write_model(f, model, 10, len - 10, 14);
	assert_cache_has(f, model, len, "backend data, gap, new data");
	ck_assert_int_eq(cache_read(f, NULL, got, 4096, len), 0);
	ck_assert_int_eq(cache_file_flush(f), 0);
	assert_backend_has(n, model, len, "backend after a write past its end");

	/* A file only on the backend: reads stop at its end. */
	f = fx_file("ro", model, blen, NULL);
	ck_assert_int_eq(cache_read(f, NULL, got, 4096, blen), 0);
	ck_assert_int_eq(cache_read(f, NULL, got, 4096, blen + CS), 0);
	ck_assert_int_eq(cache_read(f, NULL, got, 4096, blen - 100), 100);
	assert_same(got, model + blen - 100, 100,
		    "short read of a backend file");
	free(model);
	free(got);
}
END_TEST

START_TEST(test_truncate_dirty)
{
	size_t len1 = 600000, len2 = 300000, len3 = 700000;
	unsigned char *model = calloc(1, len3);
	struct cache_file *f;
	struct be_node *n;
	struct be_attr a;

	fx_open();
	f = fx_file("t", NULL, 0, &n);
	/* Keep the data dirty while we cut it. */
	mem_be_fail(X.be, MEM_OP_WRITE, -EIO, -1);
	pattern(model, len1, 0, 15);
	write_all(f, model, len1, 0, len1);
	ck_assert_uint_gt(stats().dirty_bytes, 0);

	ck_assert_int_eq(cache_file_truncate(f, NULL, len2, &a), 0);
	ck_assert_uint_eq(a.size, len2);
	memset(model + len2, 0, len3 - len2);
	ck_assert_uint_eq(cache_file_size(f), len2);
	assert_cache_has(f, model, len2, "after truncate down");

	ck_assert_int_eq(cache_file_truncate(f, NULL, len3, &a), 0);
	ck_assert_uint_eq(a.size, len3);
	assert_cache_has(f, model, len3, "after truncate up");

	write_model(f, model, 10, 650000, 16);
	assert_cache_has(f, model, len3, "after a write into the new part");

	mem_be_fail(X.be, MEM_OP_WRITE, 0, 0);
	ck_assert_int_eq(cache_file_flush(f), 0);
	assert_backend_has(n, model, len3, "backend after truncates and flush");
	ck_assert_uint_eq(stats().dirty_bytes, 0);
	free(model);
}
END_TEST

START_TEST(test_truncate_clean)
{
	size_t len = 2 * CS + 5000;
	unsigned char *model = pattern_new(len, 17);
	struct cache_file *f;
	struct be_node *n;
	struct be_attr a;

	fx_open();
	f = fx_file("t", model, len, &n);
	assert_cache_has(f, model, len, "before");
	ck_assert_int_eq(cache_file_truncate(f, NULL, CS + 123, &a), 0);
	ck_assert_int_eq(cache_file_truncate(f, NULL, len, &a), 0);
	memset(model + CS + 123, 0, len - CS - 123);
	assert_cache_has(f, model, len, "truncated down and up");
	assert_backend_has(n, model, len, "backend");
	free(model);
}
END_TEST

/* ---- consistency and integrity ---------------------------------------- */

START_TEST(test_close_to_open)
{
	size_t len = 2 * CS;
	unsigned char *a = pattern_new(len, 18), *b = pattern_new(len, 19);
	struct cache_file *f;
	struct be_node *n;
	unsigned long reads;

	fx_open();
	f = fx_file("c", a, len, &n);
	assert_cache_has(f, a, len, "first open");

	/* Unchanged on the backend: served from the cache. */
	reads = mem_be_calls(X.be, MEM_OP_READ);
	f = fx_reopen(n);
	assert_cache_has(f, a, len, "second open");
	ck_assert_uint_eq(mem_be_calls(X.be, MEM_OP_READ), reads);

	/* Another node rewrites it (same size); the next open sees it. */
	ck_assert_int_eq(mem_be_set_data(X.be, n, b, len), 0);
	f = fx_reopen(n);
	assert_cache_has(f, b, len, "open after a change on the backend");
	ck_assert_uint_gt(mem_be_calls(X.be, MEM_OP_READ), reads);

	/* ... also when the size changes. */
	ck_assert_int_eq(mem_be_set_data(X.be, n, a, CS + 10), 0);
	f = fx_reopen(n);
	assert_cache_has(f, a, CS + 10, "open after a shrink on the backend");
	free(a);
	free(b);
}
END_TEST

START_TEST(test_checksum_clean_block_refetched)
{
	size_t len = 2 * CS;
	unsigned char *want = pattern_new(len, 20), *got = malloc(len);
	struct cache_file *f;
	unsigned long reads;

	fx_open();
	f = fx_file("k", want, len, NULL);
	assert_cache_has(f, want, len, "before");
	ck_assert_uint_eq(stats().checksum_errors, 0);
	/* reads right after the fetch come from its buffer, not the disk */
	pthread_mutex_lock(&f->lock);
	file_drop_kept(f);
	pthread_mutex_unlock(&f->lock);

	corrupt(CS + 5000, 16);
	reads = mem_be_calls(X.be, MEM_OP_READ);
	ck_assert_int_eq(cache_read(f, NULL, got, BS, CS + BS), (ssize_t)BS);
	assert_same(got, want + CS + BS, BS, "corrupt clean block");
	ck_assert_uint_eq(stats().checksum_errors, 1);
	ck_assert_uint_eq(mem_be_calls(X.be, MEM_OP_READ), reads + 1);
	/* Repaired: the whole file reads right without more errors. */
	assert_cache_has(f, want, len, "after the repair");
	ck_assert_uint_eq(stats().checksum_errors, 1);
	free(want);
	free(got);
}
END_TEST

START_TEST(test_checksum_dirty_block_eio)
{
	size_t len = 3 * BS;
	unsigned char *want = pattern_new(len, 21), *got = malloc(len);
	struct cache_file *f;
	struct be_node *n;

	fx_open();
	f = fx_file("d", NULL, 0, &n);
	mem_be_fail(X.be, MEM_OP_WRITE, -EIO, -1);
	ck_assert_int_eq(cache_write(f, NULL, want, len, 0), (ssize_t)len);
	corrupt(BS + 10, 1);

	ck_assert_int_eq(cache_read(f, NULL, got, BS, BS), -EIO);
	ck_assert_int_eq(cache_read(f, NULL, got, len, 0), -EIO);
	ck_assert_uint_ge(stats().checksum_errors, 1);
	/* The good block next to it still reads. */
	ck_assert_int_eq(cache_read(f, NULL, got, BS, 0), (ssize_t)BS);
	assert_same(got, want, BS, "intact dirty block");

	/* Wrong bytes never reach the backend; a rewrite heals it. */
	pattern(want + BS, BS, BS, 22);
	ck_assert_int_eq(cache_write(f, NULL, want + BS, BS, BS), (ssize_t)BS);
	assert_cache_has(f, want, len, "after the rewrite");
	mem_be_fail(X.be, MEM_OP_WRITE, 0, 0);
	ck_assert_int_eq(cache_file_flush(f), 0);
	assert_backend_has(n, want, len, "backend");
	free(want);
	free(got);
}
END_TEST

/* ---- scrub ------------------------------------------------------------- */

static struct cache_scrub scrub(struct cache_file *f)
{
	struct cache_scrub sc = { 0 };

	ck_assert_int_eq(cache_file_scrub(f, &sc), 0);
	return sc;
}

/*
 * A byte flipped in a clean block of the data file: the scrub finds it
 * without any read, counts it, and fetches that block again into the data
 * file itself (where a passthrough reader reads it), and nothing else.
 */
START_TEST(test_scrub_clean_block_refetched)
{
	size_t len = 2 * CS + 1000;	/* ends inside a block */
	unsigned char *want = pattern_new(len, 60), got[64];
	struct cache_file *f;
	struct cache_scrub sc;
	unsigned long reads;
	int fd;

	fx_open();
	f = fx_file("s", want, len, NULL);
	assert_cache_has(f, want, len, "before");
	sc = scrub(f);
	ck_assert_uint_eq(sc.checked, 2 * CACHE_BLOCKS + 1);
	ck_assert_uint_eq(sc.bytes, len);
	ck_assert_uint_eq(sc.bad, 0);
	ck_assert_uint_eq(stats().bytes_scrubbed, len);

	corrupt(CS + BS + 100, 1);
	reads = mem_be_calls(X.be, MEM_OP_READ);
	sc = scrub(f);
	ck_assert_uint_eq(sc.checked, 2 * CACHE_BLOCKS + 1);
	ck_assert_uint_eq(sc.bad, 1);
	ck_assert_uint_eq(sc.refetched, 1);
	ck_assert_uint_eq(sc.skipped, 0);
	ck_assert_uint_eq(stats().checksum_errors, 1);
	ck_assert_uint_eq(mem_be_calls(X.be, MEM_OP_READ), reads + 1);
	/* Repaired in place, in the data file. */
	fd = open_data_file();
	ck_assert_int_eq(pread(fd, got, sizeof(got), (off_t)(CS + BS + 80)),
			 (ssize_t)sizeof(got));
	close(fd);
	assert_same(got, want + CS + BS + 80, sizeof(got), "data file after the scrub");
	reads = mem_be_calls(X.be, MEM_OP_READ);
	assert_cache_has(f, want, len, "after the scrub");
	ck_assert_uint_eq(mem_be_calls(X.be, MEM_OP_READ), reads);
	ck_assert_uint_eq(stats().checksum_errors, 1);
	/* The tail block (zero padded past the end) fails too. */
	corrupt(2 * CS + 999, 1);
	sc = scrub(f);
	ck_assert_uint_eq(sc.bad, 1);
	ck_assert_uint_eq(sc.refetched, 1);
	assert_cache_has(f, want, len, "after the tail's scrub");
	ck_assert_uint_eq(scrub(f).bad, 0);
	ck_assert_uint_eq(stats().checksum_errors, 2);
	free(want);
}
END_TEST

/* A bad dirty block is counted and left: reads of it keep EIO, it is
 * never uploaded, and a rewrite heals it. */
START_TEST(test_scrub_dirty_block_left)
{
	size_t len = 3 * BS;
	unsigned char *want = pattern_new(len, 61), *got = malloc(len);
	struct cache_file *f;
	struct cache_scrub sc;
	struct be_node *n;

	fx_open();
	f = fx_file("d", NULL, 0, &n);
	mem_be_fail(X.be, MEM_OP_WRITE, -EIO, -1);
	ck_assert_int_eq(cache_write(f, NULL, want, len, 0), (ssize_t)len);
	corrupt(BS + 10, 1);

	sc = scrub(f);
	ck_assert_uint_eq(sc.checked, 3);
	ck_assert_uint_eq(sc.bad, 1);
	ck_assert_uint_eq(sc.refetched, 0);
	ck_assert_uint_eq(stats().checksum_errors, 1);
	ck_assert_uint_gt(stats().dirty_bytes, 0);
	ck_assert_int_eq(cache_read(f, NULL, got, BS, BS), -EIO);
	ck_assert_int_eq(cache_read(f, NULL, got, BS, 0), (ssize_t)BS);
	assert_same(got, want, BS, "intact dirty block");

	pattern(want + BS, BS, BS, 62);
	ck_assert_int_eq(cache_write(f, NULL, want + BS, BS, BS), (ssize_t)BS);
	ck_assert_uint_eq(scrub(f).bad, 0);
	mem_be_fail(X.be, MEM_OP_WRITE, 0, 0);
	ck_assert_int_eq(cache_file_flush(f), 0);
	assert_backend_has(n, want, len, "backend");
	free(want);
	free(got);
}
END_TEST

/*
 * What a passthrough writer puts in the data file is not in the sums
 * before the rehash at its end: the scrub skips such a file rather than
 * take the kernel's writes for corruption (and drop them), and checks it
 * after the writer's release.
 */
START_TEST(test_scrub_skips_passthrough_writer)
{
	unsigned char *a = pattern_new(3 * BS, 63), *b = pattern_new(BS, 64);
	struct cache_file *f;
	struct cache_scrub sc;
	struct be_node *n;
	int fd;

	fx_open();
	f = fx_file("pt", NULL, 0, &n);
	ck_assert_int_eq(cache_file_pt_can(f, true), 1);
	ck_assert_int_eq(cache_file_pt_begin(f, NULL, true, false, &fd), 0);
	ck_assert_int_eq(pwrite(fd, a, 3 * BS, 0), (ssize_t)(3 * BS));
	ck_assert_int_eq(cache_file_pt_sync(f), 0);	/* a FLUSH */
	/* The kernel writes on; no rehash has seen this yet. */
	ck_assert_int_eq(pwrite(fd, b, BS, BS), (ssize_t)BS);
	sc = scrub(f);
	ck_assert_uint_eq(sc.checked, 0);
	ck_assert_uint_eq(sc.skipped, 3);
	ck_assert_uint_eq(sc.bad, 0);
	cache_file_pt_end(f, true);
	sc = scrub(f);
	ck_assert_uint_eq(sc.checked, 3);
	ck_assert_uint_eq(sc.skipped, 0);
	ck_assert_uint_eq(sc.bad, 0);
	ck_assert_uint_eq(stats().checksum_errors, 0);
	memcpy(a + BS, b, BS);
	ck_assert_int_eq(cache_file_flush(f), 0);
	assert_backend_has(n, a, 3 * BS, "backend");
	free(a);
	free(b);
}
END_TEST

/*
 * A passthrough writer that only makes the file longer with zeros (glibc's
 * posix_fallocate fallback writes a zero byte per block): the upload
 * carries the last byte, so the backend gets the size, and the block it
 * forces out gets its own sum (it once kept a stale one and the flusher
 * called it corrupt for ever).
 */
START_TEST(test_pt_zero_growth_gives_size)
{
	unsigned char *zero = calloc(1, 5 * BS + 100);
	struct cache_file *f;
	struct be_node *n;
	int fd;

	fx_open();
	f = fx_file("grow", NULL, 0, &n);
	ck_assert_int_eq(cache_file_pt_begin(f, NULL, true, false, &fd), 0);
	ck_assert_int_eq(pwrite(fd, "", 1, 5 * BS + 99), 1);
	cache_file_pt_end(f, true);
	ck_assert_int_eq(cache_file_flush(f), 0);
	ck_assert_uint_eq(stats().checksum_errors, 0);
	assert_backend_has(n, zero, 5 * BS + 100, "backend after zero growth");
	free(zero);
}
END_TEST

/*
 * A passthrough writer of a new file leaves zero runs of ZSKIP_MIN bytes
 * or more out of the upload (another node may have written there), and
 * sends shorter ones.  The runs here sit at the edges of the word-at-a-time
 * look (zero_words()): ZSKIP_MIN bytes at an odd offset, which covers the
 * fewest whole words, and ZSKIP_MIN - 1 bytes on word boundaries.
 */
START_TEST(test_pt_zero_runs_left_out)
{
	unsigned char *mine = malloc(2 * BS), *other = malloc(2 * BS);
	unsigned char *want = malloc(2 * BS);
	struct cache_file *f;
	struct be_node *n;
	int fd;

	memset(mine, 0xaa, 2 * BS);
	/* block 0: the one run left out is the one at an odd offset */
	memset(mine + 103, 0, ZSKIP_MIN);
	memset(mine + 1000, 0, ZSKIP_MIN - 1);
	/* block 1: word-aligned runs, one long enough and one not */
	memset(mine + BS + 64, 0, ZSKIP_MIN - 1);
	memset(mine + BS + 2048, 0, ZSKIP_MIN);
	memset(other, 0x55, 2 * BS);
	memcpy(want, mine, 2 * BS);
	memset(want + 103, 0x55, ZSKIP_MIN);
	memset(want + BS + 2048, 0x55, ZSKIP_MIN);

	fx_open();
	f = fx_file("zr", NULL, 0, &n);
	ck_assert_int_eq(cache_file_pt_begin(f, NULL, true, false, &fd), 0);
	ck_assert_int_eq(pwrite(fd, mine, 2 * BS, 0), (ssize_t)(2 * BS));
	cache_file_pt_end(f, true);
	/* another node's bytes under the runs this node did not write */
	ck_assert_int_eq(mem_be_set_data(X.be, n, other, 2 * BS), 0);
	ck_assert_int_eq(cache_file_flush(f), 0);
	assert_backend_has(n, want, 2 * BS, "backend after zero runs");
	free(mine);
	free(other);
	free(want);
}
END_TEST

/*
 * Close-to-open through a passthrough writer's block: another node wrote
 * the bytes between this node's, and an open here must show them.  The
 * block is dirty over a span that covers the block, but only its runs
 * (or, written onto zeros, its bytes outside the zero runs) are this
 * node's; the refresh at the open kept the whole block and the kernel
 * read this node's stale bytes between (two-mount difftest seed
 * 3534391242: zeros, then another node's older bytes).  Once written onto
 * zeros (zskip), once as runs against the bytes sent before.  After the
 * refresh the other node writes its range again, and this node's upload
 * must not put back the bytes it fetched.
 */
START_TEST(bug_pt_refresh_keeps_other_nodes_gap)
{
	unsigned char *mine = malloc(BS), *other = malloc(BS);
	unsigned char *want = malloc(BS), *got = malloc(BS);
	struct cache_file *f;
	struct be_node *n;
	int fd;

	memset(mine, 0xaa, BS);
	memset(mine + 1000, 0, 95);	/* the other node's range */
	fx_open();
	f = fx_file("gap", NULL, 0, &n);
	ck_assert_int_eq(cache_file_pt_begin(f, NULL, true, false, &fd), 0);
	ck_assert_int_eq(pwrite(fd, mine, BS, 0), (ssize_t)BS);
	ck_assert_int_eq(cache_file_pt_sync(f), 0);	/* an fsync */

	/* 1: written onto zeros.  The other node writes its range. */
	memset(other, 0, BS);
	memset(other + 1000, 0x55, 95);
	ck_assert_int_eq(mem_be_set_data(X.be, n, other, BS), 0);
	fx_reopen(n);
	memcpy(want, mine, BS);
	memset(want + 1000, 0x55, 95);
	ck_assert_int_eq(pread(fd, got, BS, 0), (ssize_t)BS);
	ck_assert_msg(!memcmp(got, want, BS),
		      "zskip block: the other node's bytes are not seen");
	/* The other node writes its range again: this node's upload must
	 * not put back the bytes it fetched, now in its block. */
	memset(other + 1000, 0x77, 95);
	ck_assert_int_eq(mem_be_set_data(X.be, n, other, BS), 0);
	memset(want + 1000, 0x77, 95);
	ck_assert_int_eq(cache_file_flush(f), 0);
	assert_backend_has(n, want, BS, "backend after the zskip block");

	/* 2: two runs of this node's against what it sent; the other node
	 * writes between them. */
	memset(mine, 0xbb, 100);
	memset(mine + 2000, 0xcc, BS - 2000);
	ck_assert_int_eq(pwrite(fd, mine, 100, 0), 100);
	ck_assert_int_eq(pwrite(fd, mine + 2000, BS - 2000, 2000),
			 (ssize_t)(BS - 2000));
	ck_assert_int_eq(cache_file_pt_sync(f), 0);
	memset(want + 1000, 0x66, 95);
	ck_assert_int_eq(mem_be_set_data(X.be, n, want, BS), 0);
	fx_reopen(n);
	memcpy(want, mine, 100);
	memcpy(want + 2000, mine + 2000, BS - 2000);
	ck_assert_int_eq(pread(fd, got, BS, 0), (ssize_t)BS);
	ck_assert_msg(!memcmp(got, want, BS),
		      "runs block: the other node's bytes are not seen");
	memset(want + 1000, 0x88, 95);
	ck_assert_int_eq(mem_be_set_data(X.be, n, want, BS), 0);
	memcpy(want, mine, 100);
	memcpy(want + 2000, mine + 2000, BS - 2000);
	cache_file_pt_end(f, true);
	ck_assert_int_eq(cache_file_flush(f), 0);
	assert_backend_has(n, want, BS, "backend after the runs block");
	ck_assert_uint_eq(stats().checksum_errors, 0);
	free(mine);
	free(other);
	free(want);
	free(got);
}
END_TEST

/* Another node's write of v2 over the test's file (mem_be_on_getattr). */
struct other_write {
	struct be_node *n;
	const unsigned char *data;
	size_t len;
	bool done;
};

static void other_write_main(void *arg)
{
	struct other_write *o = arg;

	ck_assert_int_eq(mem_be_set_data(X.be, o->n, o->data, o->len), 0);
	o->done = true;
}

/* f's generation is the one its last upload made (flusher done). */
static void wait_settled(struct cache_file *f)
{
	bool settled = false;
	int i;

	for (i = 0; i < 500 && !settled; i++) {
		pthread_mutex_lock(&f->lock);
		settled = !f->dirty_chunks && !f->inflight &&
			  f->gen_upload_seq == f->upload_seq;
		pthread_mutex_unlock(&f->lock);
		if (!settled)
			sleep_ms(10);
	}
	ck_assert_msg(settled, "the generation after the upload was not settled");
}

/*
 * Another node's change that lands after this node's upload but before
 * the flusher asked for the generation it made: a GETATTR then gave the
 * other node's generation, taken for this node's own, and the blocks
 * this node had written whole were served over the other node's bytes.
 * The attributes the COMMIT's reply carried are the file before that
 * change.
 */
START_TEST(bug_refresh_takes_change_after_commit)
{
	size_t len1 = 2 * BS, len2 = BS + 100;
	unsigned char *v1 = pattern_new(len1, 91), *v2 = pattern_new(len2, 92);
	struct other_write o;
	struct cache_file *f;
	struct be_node *n;

	fx_open();
	mem_be_committed_attr(X.be, true);
	f = fx_file("late", NULL, 0, &n);
	o = (struct other_write){ .n = n, .data = v2, .len = len2 };
	mem_be_on_getattr(X.be, other_write_main, &o);
	write_all(f, v1, len1, 0, len1);
	ck_assert_int_eq(cache_file_flush(f), 0);
	wait_settled(f);
	mem_be_on_getattr(X.be, NULL, NULL);
	if (!o.done)
		other_write_main(&o);
	assert_cache_has(fx_reopen(n), v2, len2, "an open after the other node's write");
	free(v1);
	free(v2);
}
END_TEST

/*
 * A passthrough writer's close: its FLUSH waits for the uploads, its
 * RELEASE comes later.  Another node that rewrote the file in between
 * had its generation taken for this node's own uploads, and the next
 * open here served this node's older bytes under the new size (CI,
 * passthrough.sh case 7 under ASan: "content differs").
 */
START_TEST(bug_pt_release_takes_other_nodes_change)
{
	size_t len1 = CS + 1000, len2 = CS / 2;
	unsigned char *v1 = pattern_new(len1, 81), *v2 = pattern_new(len2, 82);
	struct cache_file *f;
	struct be_node *n;
	bool asked = false;
	int fd, i;

	fx_open();
	f = fx_file("handover", NULL, 0, &n);
	ck_assert_int_eq(cache_file_pt_begin(f, NULL, true, false, &fd), 0);
	ck_assert_int_eq(pwrite(fd, v1, len1, 0), (ssize_t)len1);
	/* close(2): FLUSH hashes and uploads */
	ck_assert_int_eq(cache_file_pt_flush(f, false), 0);
	ck_assert_int_eq(cache_file_close(f), 0);
	assert_backend_has(n, v1, len1, "backend after the close");
	/* the flusher asks for the generation its last upload made */
	for (i = 0; i < 500 && !asked; i++) {
		pthread_mutex_lock(&f->lock);
		asked = f->snap_set && f->snap_upload_seq == f->upload_seq;
		pthread_mutex_unlock(&f->lock);
		if (!asked)
			sleep_ms(10);
	}
	ck_assert_msg(asked, "no generation taken after the uploads");
	/* another node opens, truncates and writes, before the RELEASE */
	ck_assert_int_eq(mem_be_set_data(X.be, n, v2, len2), 0);
	cache_file_pt_end(f, true);
	assert_cache_has(fx_reopen(n), v2, len2,
			 "an open after the other node's close");
	free(v1);
	free(v2);
}
END_TEST

/*
 * Blocks dropped as stale while a passthrough reader holds the file are
 * not punched (the kernel reads the data file): their old bytes stay.  A
 * rehash took them for a writer's (not present: compared with zeros) and
 * uploaded them whole over what another node had written since
 * (two-mount difftest nfs2+pt, seed 3191474603: node A's write of 120,081
 * bytes put back to the layout's bytes by node B).
 */
START_TEST(bug_rehash_uploads_leftover_blocks)
{
	unsigned char *old = pattern_new(2 * BS, 71), *other = malloc(2 * BS);
	struct cache_file *f;
	struct be_node *n;
	int fd;

	fx_open();
	f = fx_file("left", old, 2 * BS, &n);
	ck_assert_int_eq(cache_file_prefetch(f, NULL), 0);
	ck_assert_int_eq(cache_file_pt_begin(f, NULL, false, false, &fd), 0);
	/* another node writes block 1; this node learns the new generation
	 * after an upload of its own (settle_gen()), and drops block 1 */
	memcpy(other, old, 2 * BS);
	memset(other + BS, 0x77, BS);
	ck_assert_int_eq(mem_be_set_data(X.be, n, other, 2 * BS), 0);
	file_refresh_gen(f);
	/* a rehash (the flusher's, a scan's) finds nothing to upload */
	ck_assert_int_eq(cache_file_pt_sync(f), 0);
	ck_assert_int_eq(cache_file_flush(f), 0);
	assert_backend_has(n, other, 2 * BS, "backend after a rehash");
	cache_file_pt_end(f, false);
	free(old);
	free(other);
}
END_TEST

/*
 * A crash keeps what a passthrough writer's upload leaves out.  A file
 * created here is written with a gap of zeros in a block, where another
 * node writes; the upload leaves the zero run out (zskip).  That mark was
 * not kept in the index: the replay after a kill -9 sent the block's whole
 * range, zeros and all, over the other node's bytes.  Twice: a writer that
 * ended before the crash (its last rehash done), and one still writing at
 * the crash, whose last bytes the replay's rehash finds (not acknowledged,
 * but uploaded as they would have been).  A third writer's block goes out
 * as two runs (its first bytes were rehashed before the rest came, so the
 * rest is diffed against them): the runs lived in memory only, and the
 * replay sent the span between them too.
 */
START_TEST(bug_pt_crash_replay_sends_zero_runs)
{
	unsigned char mine[BS], other[BS], want[BS];
	struct be_node *n[3];
	int i, status;
	pid_t pid;

	memset(mine, 0xaa, BS);
	memset(mine + 1000, 0, 1000);	/* the other node's record */
	memset(other, 0, BS);
	memset(other + 1000, 0x55, 1000);
	memcpy(want, mine, BS);
	memset(want + 1000, 0x55, 1000);
	memset(want, 0xbb, 100);
	n[0] = fx_backend_file("zc-ended", NULL, 0);
	n[1] = fx_backend_file("zc-open", NULL, 0);
	n[2] = fx_backend_file("zc-runs", NULL, 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct cache *c;
		char err[512];

		mem_be_fail(X.be, MEM_OP_WRITE, -EIO, -1);
		if (cache_open(&X.cfg, X.bes, 1, &c, err, sizeof(err)))
			_exit(2);
		for (i = 0; i < 3; i++) {
			struct cache_file *f = child_file(c, n[i]);
			size_t first = i == 2 ? 500 : BS;
			int fd;

			if (!f || cache_file_pt_begin(f, NULL, true, false, &fd))
				_exit(3);
			if (pwrite(fd, mine, first, 0) != (ssize_t)first ||
			    cache_file_pt_sync(f))
				_exit(4);
			if (i == 2 && pwrite(fd, mine + first, BS - first,
					     (off_t)first) !=
					      (ssize_t)(BS - first))
				_exit(4);
			/* the open one writes on */
			if (i == 1 && pwrite(fd, want, 100, 0) != 100)
				_exit(5);
			if (i != 1)
				cache_file_pt_end(f, true);
		}
		kill(getpid(), SIGKILL);
		_exit(6);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
		      "crashing child: status 0x%x", status);
	/* The other node's record lands while this one is down. */
	for (i = 0; i < 3; i++)
		ck_assert_int_eq(mem_be_set_data(X.be, n[i], other, BS), 0);
	fx_open();
	ck_assert_int_eq(cache_flush_all(X.c), 0);
	assert_backend_has(n[1], want, BS, "writer open at the crash");
	memset(want, 0xaa, 100);
	assert_backend_has(n[0], want, BS, "writer ended before the crash");
	assert_backend_has(n[2], want, BS, "block sent as runs");
}
END_TEST

/*
 * The runs of a block that was clean before the rehash found them: the
 * chunk's slot, and with it its RUNS record, is stored before its DIRTY
 * record, and the replay dropped a RUNS record of a chunk it did not
 * know dirty yet: the whole range went, over another node's bytes
 * between the runs.
 */
START_TEST(bug_pt_crash_runs_before_dirty)
{
	unsigned char blk[BS], want[BS];
	struct be_node *n;
	int status;
	pid_t pid;

	n = fx_backend_file("rbd", NULL, 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct cache_file *f;
		struct cache *c;
		char err[512];
		int fd;

		if (cache_open(&X.cfg, X.bes, 1, &c, err, sizeof(err)) ||
		    !(f = child_file(c, n)) ||
		    cache_file_pt_begin(f, NULL, true, false, &fd))
			_exit(2);
		memset(blk, 0xaa, BS);
		if (pwrite(fd, blk, BS, 0) != (ssize_t)BS ||
		    cache_file_pt_sync(f) || cache_file_flush(f))
			_exit(3);
		/* clean now; two pieces change, the rest stays */
		mem_be_fail(X.be, MEM_OP_WRITE, -EIO, -1);
		memset(blk, 0xbb, BS);
		if (pwrite(fd, blk, 100, 0) != 100 ||
		    pwrite(fd, blk, 100, 3000) != 100 || cache_file_pt_sync(f))
			_exit(4);
		cache_file_pt_end(f, true);
		kill(getpid(), SIGKILL);
		_exit(5);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
		      "crashing child: status 0x%x", status);
	/* the backend as the upload left it, and another node's record */
	memset(want, 0xaa, BS);
	memset(want + 1000, 0x55, 1000);
	ck_assert_int_eq(mem_be_set_data(X.be, n, want, BS), 0);
	fx_open();
	ck_assert_int_eq(cache_flush_all(X.c), 0);
	memset(want, 0xbb, 100);
	memset(want + 3000, 0xbb, 100);
	assert_backend_has(n, want, BS, "runs of a block clean before");
}
END_TEST

/*
 * A truncate while a passthrough writer holds the file: the block holding
 * the new end took its sum from the data file, writer's bytes and all, and
 * those bytes never went out (difftest seed 3675706986).
 */
START_TEST(test_pt_truncate_keeps_writer_bytes)
{
	unsigned char *a = pattern_new(2 * BS, 65);
	struct cache_file *f;
	struct be_node *n;
	struct be_attr attr;
	int fd;

	fx_open();
	f = fx_file("trunc", NULL, 0, &n);
	ck_assert_int_eq(cache_file_pt_begin(f, NULL, true, false, &fd), 0);
	ck_assert_int_eq(pwrite(fd, a, 2 * BS, 0), (ssize_t)(2 * BS));
	ck_assert_int_eq(cache_file_truncate(f, NULL, BS + 77, &attr), 0);
	ck_assert_int_eq(ftruncate(fd, BS + 77), 0);
	cache_file_pt_end(f, true);
	ck_assert_int_eq(cache_file_flush(f), 0);
	assert_backend_has(n, a, BS + 77, "backend after a truncate mid-write");
	free(a);
}
END_TEST

struct scrubber {
	struct cache_file *f;
	atomic_int stop;
	unsigned long rounds, bad, checked;
	pthread_t tid;
};

static void *scrub_main(void *arg)
{
	struct scrubber *h = arg;

	while (!atomic_load(&h->stop)) {
		struct cache_scrub sc = { 0 };

		if (cache_file_scrub(h->f, &sc) == 0) {
			h->bad += sc.bad;
			h->checked += sc.checked;
		}
		h->rounds++;
	}
	return NULL;
}

/*
 * rounds writes through f of 3 blocks (bs each) less 100 bytes, at offsets
 * that move over 17 blocks, of pattern seed0 + round, kept in want too; a
 * flush every flush_every rounds and an evict (fetch again) every
 * evict_every.
 */
static void write_rounds(struct cache_file *f, unsigned char *want,
			 uint64_t bs, int rounds, unsigned int seed0,
			 int flush_every, int evict_every)
{
	int i;

	for (i = 0; i < rounds; i++) {
		uint64_t off = (uint64_t)(i % 8) * 2 * bs + (uint64_t)(i % 3) * 50;

		pattern(want + off, 3 * bs - 100, off, seed0 + (unsigned int)i);
		write_all(f, want + off, 3 * bs - 100, off, 3 * bs - 100);
		if (i % flush_every == 0)
			ck_assert_int_eq(cache_file_flush(f), 0);
		if (i % evict_every == 0)
			ck_assert_int_eq(cache_file_evict(f), 0);
	}
}

/* Writes, uploads and fetches racing with scrubs: no false alarm. */
START_TEST(test_scrub_during_writes)
{
	size_t len = 2 * CS;
	unsigned char *want = pattern_new(len, 65);
	struct scrubber h = { 0 };
	struct cache_file *f;
	struct be_node *n;

	fx_open();
	f = fx_file("rw", want, len, &n);
	h.f = f;
	ck_assert_int_eq(pthread_create(&h.tid, NULL, scrub_main, &h), 0);
	write_rounds(f, want, BS, 3000, 66, 500, 1000);
	atomic_store(&h.stop, 1);
	pthread_join(h.tid, NULL);
	ck_assert_msg(h.bad == 0 && stats().checksum_errors == 0,
		      "%lu bad blocks in %lu scrubs (%lu blocks checked) racing with writes; nothing was corrupt",
		      h.bad, h.rounds, h.checked);
	ck_assert_uint_gt(h.rounds, 0);
	ck_assert_int_eq(cache_file_flush(f), 0);
	assert_cache_has(f, want, len, "after the race");
	assert_backend_has(n, want, len, "backend");
	free(want);
}
END_TEST

/* A flusher's rehash of a chunk that had rested, from a passthrough
 * writer since gone, over and over. */
static void *rehash_main(void *arg)
{
	struct scrubber *h = arg;

	while (!atomic_load(&h->stop)) {
		int rc = cache_file_pt_sync(h->f);

		/* -EBUSY: the writes kept coming; the upload rests again */
		h->bad += rc != 0 && rc != -EBUSY;
		h->rounds++;
	}
	return NULL;
}

/*
 * The flusher rehashes a chunk that rested while a passthrough writer held
 * the file; by then the writer may be gone and the daemon writing the file
 * itself.  The rehash took the data file's size once, at its start: a
 * daemon write that made the file longer meanwhile, into a block the old
 * end cut, left that block hashed with zeros past the old end, and the
 * sum stored over the write's own.  The flusher then found "a dirty block
 * fails its checksum" on every round and the close returned EIO.  A rehash
 * that read a block between two daemon writes of it and stored its sum
 * after the second would do the same.  Failed 10 runs of 10 without the fix.
 */
START_TEST(bug_rehash_during_daemon_writes)
{
	/* 64 KiB blocks, written in part: the data file ends inside one */
	const uint64_t cs = 4ULL << 20, bs = cs / CACHE_BLOCKS;
	size_t len = 2 * cs;
	unsigned char *want = pattern_new(len, 71);
	struct scrubber h = { 0 };
	struct cache_file *f;
	struct be_node *n;

	X.cfg.chunk_size = cs;
	fx_open();
	f = fx_file("rw", want, len, &n);
	h.f = f;
	ck_assert_int_eq(pthread_create(&h.tid, NULL, rehash_main, &h), 0);
	/* a flush every 10 writes checks every dirty block's sum */
	write_rounds(f, want, bs, 2000, 72, 10, 500);
	atomic_store(&h.stop, 1);
	pthread_join(h.tid, NULL);
	ck_assert_uint_gt(h.rounds, 0);
	ck_assert_uint_eq(h.bad, 0);
	ck_assert_msg(stats().checksum_errors == 0,
		      "%llu checksum errors in %lu rehashes racing with writes",
		      (unsigned long long)stats().checksum_errors, h.rounds);
	ck_assert_int_eq(cache_file_flush(f), 0);
	assert_cache_has(f, want, len, "after the race");
	assert_backend_has(n, want, len, "backend");
	free(want);
}
END_TEST

/* ---- eviction ---------------------------------------------------------- */

/* Read chunk idx; returns how many backend reads it took. */
static unsigned long read_chunk(struct cache_file *f, uint64_t idx,
				const unsigned char *want)
{
	unsigned long before = mem_be_calls(X.be, MEM_OP_READ);
	unsigned char *got = malloc(CS);
	struct cache_stats st;

	ck_assert_int_eq(cache_read(f, NULL, got, CS, idx * CS), (ssize_t)CS);
	assert_same(got, want + idx * CS, CS, "chunk contents");
	free(got);
	st = stats();
	ck_assert_msg(st.cache_used_bytes <= X.cfg.size + EVICT_BATCH,
		      "cache_used_bytes %llu > cache_size %llu + one batch",
		      (unsigned long long)st.cache_used_bytes,
		      (unsigned long long)X.cfg.size);
	return mem_be_calls(X.be, MEM_OP_READ) - before;
}

START_TEST(test_evict_lru_order)
{
	size_t len = 26 * CS;
	unsigned char *want = pattern_new(len, 23);
	struct cache_file *f;
	uint64_t i;

	X.cfg.size = 24 * CS;
	fx_open();
	f = fx_file("big", want, len, NULL);
	for (i = 0; i < 24; i++)
		ck_assert_uint_eq(read_chunk(f, i, want), 1);
	ck_assert_uint_eq(stats().chunks_evicted, 0);
	ck_assert_uint_eq(stats().cache_used_bytes, 24 * CS);
	/* Chunk 0 becomes the most recently used. */
	ck_assert_uint_eq(read_chunk(f, 0, want), 0);
	/* Over the limit by one: one chunk plus one batch goes, oldest first. */
	ck_assert_uint_eq(read_chunk(f, 24, want), 1);
	ck_assert_uint_eq(stats().chunks_evicted, 17);
	ck_assert_uint_eq(stats().cache_used_bytes, 8 * CS);
	ck_assert_uint_eq(read_chunk(f, 0, want), 0);
	for (i = 18; i <= 24; i++)
		ck_assert_msg(read_chunk(f, i, want) == 0,
			      "recently used chunk %llu was evicted",
			      (unsigned long long)i);
	ck_assert_uint_eq(read_chunk(f, 1, want), 1);
	ck_assert_uint_eq(read_chunk(f, 17, want), 1);
	free(want);
}
END_TEST

START_TEST(test_evict_never_dirty)
{
	size_t dlen = 2 * CS, clen = 8 * CS;
	unsigned char *dirty = pattern_new(dlen, 24);
	unsigned char *clean = pattern_new(clen, 25);
	struct cache_file *fd, *fc;
	struct be_node *nd;
	uint64_t i;

	X.cfg.size = 2 * CS;
	fx_open();
	fd = fx_file("dirty", NULL, 0, &nd);
	fc = fx_file("clean", clean, clen, NULL);
	mem_be_fail(X.be, MEM_OP_WRITE, -EIO, -1);
	write_all(fd, dirty, dlen, 0, 100000);
	for (i = 0; i < 8; i++)
		read_chunk(fc, i, clean);
	for (i = 0; i < 8; i++)
		read_chunk(fc, i, clean);
	ck_assert_uint_gt(stats().chunks_evicted, 0);
	ck_assert_uint_eq(stats().dirty_bytes, dlen);
	/* The only copy of these bytes is the cache's. */
	assert_cache_has(fd, dirty, dlen, "dirty data under eviction");
	mem_be_fail(X.be, MEM_OP_WRITE, 0, 0);
	ck_assert_int_eq(cache_file_flush(fd), 0);
	assert_backend_has(nd, dirty, dlen, "backend");
	free(dirty);
	free(clean);
}
END_TEST

/* ---- flushing under failures ------------------------------------------ */

struct healer {
	unsigned int after_ms;
	atomic_int healed;
};

static void *heal_main(void *arg)
{
	struct healer *h = arg;

	sleep_ms(h->after_ms);
	atomic_store(&h->healed, 1);	/* before any write can succeed */
	mem_be_fail(X.be, MEM_OP_WRITE, 0, 0);
	return NULL;
}

START_TEST(test_backpressure)
{
	size_t len = 4 * CS;
	unsigned char *want = pattern_new(len, 26);
	struct healer h = { .after_ms = 500 };
	struct cache_file *f;
	struct be_node *n;
	pthread_t tid;
	double t0;
	int i;

	X.cfg.dirty_max = CS;
	fx_open();
	f = fx_file("bp", NULL, 0, &n);
	mem_be_fail(X.be, MEM_OP_WRITE, -EIO, -1);
	t0 = now_ms();
	ck_assert_int_eq(pthread_create(&tid, NULL, heal_main, &h), 0);
	for (i = 0; i < 4; i++) {
		ssize_t rc = cache_write(f, NULL, want + i * CS, CS, i * CS);

		ck_assert_msg(rc == (ssize_t)CS, "write %d: %zd", i, rc);
		if (i == 2)
			ck_assert_msg(atomic_load(&h.healed),
				      "write %d went past dirty_max while nothing could be flushed",
				      i);
	}
	pthread_join(tid, NULL);
	ck_assert_double_ge(now_ms() - t0, 450);
	ck_assert_int_eq(cache_file_flush(f), 0);
	assert_backend_has(n, want, len, "backend after backpressure");
	ck_assert_uint_gt(stats().flush_retries, 0);
	free(want);
}
END_TEST

START_TEST(test_flush_retries_counted)
{
	size_t len = 100000;
	unsigned char *want = pattern_new(len, 27);
	struct cache_file *f;
	struct be_node *n;
	struct cache_stats st;

	fx_open();
	f = fx_file("r", NULL, 0, &n);
	mem_be_fail(X.be, MEM_OP_WRITE, -EIO, 2);
	ck_assert_int_eq(cache_write(f, NULL, want, len, 0), (ssize_t)len);
	/* A transient error is retried, not reported. */
	ck_assert_int_eq(cache_file_flush(f), 0);
	assert_backend_has(n, want, len, "backend after transient errors");
	st = stats();
	ck_assert_uint_eq(mem_be_failures(X.be, MEM_OP_WRITE), 2);
	ck_assert_uint_eq(st.flush_retries, 2);
	ck_assert_uint_eq(st.dirty_bytes, 0);
	free(want);
}
END_TEST

START_TEST(test_flush_permanent_error_reported)
{
	size_t len = 5000;
	unsigned char *want = pattern_new(len, 28);
	struct cache_file *f;
	struct be_node *n;

	fx_open();
	f = fx_file("p", NULL, 0, &n);
	mem_be_fail(X.be, MEM_OP_WRITE, -ENOSPC, -1);
	ck_assert_int_eq(cache_write(f, NULL, want, len, 0), (ssize_t)len);
	ck_assert_int_eq(cache_file_flush(f), -ENOSPC);
	ck_assert(wait_for(some_flush_error, NULL, 2000));
	/* dirty_bytes counts the bytes written, not whole blocks. */
	ck_assert_uint_eq(stats().dirty_bytes, len);
	/* Space again: the flusher keeps trying, and it goes out. */
	mem_be_fail(X.be, MEM_OP_WRITE, 0, 0);
	ck_assert(wait_for(no_dirty, NULL, 5000));
	ck_assert_int_eq(cache_file_flush(f), 0);
	assert_backend_has(n, want, len, "backend after ENOSPC went away");
	free(want);
}
END_TEST

/*
 * A COMMIT answering -EAGAIN (the NFS server restarted and lost unstable
 * writes: its write verifier changed) is no error: the chunks are written
 * again at once, counted in flush_rewrites, without backoff.
 */
START_TEST(test_commit_lost_writes_rewritten)
{
	size_t len = 8 * CS;
	unsigned char *want = pattern_new(len, 29);
	struct cache_file *f;
	struct be_node *n;
	struct cache_stats st;
	unsigned long writes;
	double t0;

	fx_open();
	f = fx_file("v", NULL, 0, &n);
	write_all(f, want, len, 0, len);
	ck_assert_int_eq(cache_file_flush(f), 0);
	writes = mem_be_calls(X.be, MEM_OP_WRITE);
	/* Written again, then the server "restarts" before the COMMIT. */
	memset(want, 0x5a, CS);
	mem_be_fail(X.be, MEM_OP_COMMIT, -EAGAIN, 2);
	t0 = now_ms();
	write_all(f, want, CS, 0, len);
	ck_assert_int_eq(cache_file_flush(f), 0);
	ck_assert_double_lt(now_ms() - t0, 1000);
	assert_backend_has(n, want, len, "backend after lost unstable writes");
	st = stats();
	ck_assert_uint_eq(mem_be_failures(X.be, MEM_OP_COMMIT), 2);
	ck_assert_uint_eq(st.flush_rewrites, 2);
	ck_assert_uint_eq(st.flush_errors, 0);
	ck_assert_uint_eq(st.flush_retries, 0);
	/* Sent three times: once, and once after each lost COMMIT. */
	ck_assert_uint_eq(mem_be_calls(X.be, MEM_OP_WRITE) - writes, 3);
	free(want);
}
END_TEST

static bool commits_failed(void *arg)
{
	return mem_be_failures(X.be, MEM_OP_COMMIT) >= *(unsigned long *)arg;
}

/*
 * A batch of 16 chunks whose COMMIT failed slept one growing backoff per
 * chunk, in a row (100 ms, 200 ms, ... 10 s each): the last chunk went
 * back to the queue more than a minute and a half later, and fsync
 * waited for it.  One pause per batch now.
 */
START_TEST(bug_batch_backoff_per_chunk)
{
	size_t len = 17 * CS;
	unsigned char *want = pattern_new(len, 30);
	struct cache_file *f;
	struct be_node *n;
	unsigned long one = 1;
	double t0;

	X.cfg.flushers = 1;
	fx_open();
	f = fx_file("b", NULL, 0, &n);
	/* The flusher holds chunk 0 at the gate; 16 more queue up. */
	mem_be_gate(X.be, MEM_OP_WRITE, 1);
	write_all(f, want, len, 0, len);
	mem_be_fail(X.be, MEM_OP_COMMIT, -EIO, 2);
	t0 = now_ms();
	mem_be_gate(X.be, MEM_OP_WRITE, 0);
	ck_assert(wait_for(commits_failed, &one, 5000));
	ck_assert_int_eq(cache_file_flush(f), 0);
	ck_assert_msg(now_ms() - t0 < 5000,
		      "two failed COMMITs delayed the upload by %.0f ms",
		      now_ms() - t0);
	assert_backend_has(n, want, len, "backend after failed COMMITs");
	ck_assert_uint_gt(stats().flush_retries, 0);
	free(want);
}
END_TEST

/*
 * Unmount (cache_drain) and `stagefsctl flush` waited 60 s for a dirty
 * block that fails its checksum, which no wait can upload.  They give up
 * once nothing has gone out for a few seconds and every dirty file's last
 * upload failed that way; the block stays dirty and is never sent, and
 * the good dirty blocks of its chunk are not held back with it.
 */
START_TEST(bug_flush_all_waits_for_corrupt_block)
{
	size_t len = 3 * BS;
	unsigned char *want = pattern_new(len, 31);
	struct cache_file *f;
	struct be_node *n;
	size_t blen;
	unsigned char *b;
	double t0;
	int rc;

	fx_open();
	f = fx_file("c", NULL, 0, &n);
	mem_be_fail(X.be, MEM_OP_WRITE, -EIO, -1);
	ck_assert_int_eq(cache_write(f, NULL, want, len, 0), (ssize_t)len);
	corrupt(BS + 10, 1);
	mem_be_fail(X.be, MEM_OP_WRITE, 0, 0);
	t0 = now_ms();
	rc = cache_flush_all(X.c);
	ck_assert_int_eq(rc, -EIO);
	ck_assert_msg(now_ms() - t0 < 30000,
		      "flush of a corrupt dirty block waited %.0f ms",
		      now_ms() - t0);
	/* Only the bad block stays dirty; its neighbours went out. */
	ck_assert_uint_eq(stats().dirty_bytes, BS);
	b = mem_be_get_data(X.be, n, &blen);
	ck_assert_uint_eq(blen, len);
	assert_same(b, want, BS, "the block before the bad one");
	assert_same(b + 2 * BS, want + 2 * BS, BS, "the block after it");
	ck_assert_msg(b[BS + 10] == 0, "the corrupted byte reached the backend");
	free(b);

	/*
	 * A clean stop, and a start on the same cache dir: the block still
	 * fails its sum, and after a clean stop that is corruption, not a
	 * crash's cut between bytes and sums: it stays dirty, unsent.
	 */
	ck_assert_int_eq(fx_close(), -EIO);
	fx_open();
	ck_assert_uint_ge(stats().checksum_errors, 1);
	ck_assert_uint_eq(stats().dirty_bytes, BS);
	ck_assert_int_eq(cache_flush_all(X.c), -EIO);
	b = mem_be_get_data(X.be, n, &blen);
	ck_assert_msg(b[BS + 10] == 0,
		      "the corrupted byte reached the backend after a restart");
	free(b);

	/* A rewrite heals it, and the next flush of everything succeeds. */
	f = fx_reopen(n);
	ck_assert_int_eq(cache_write(f, NULL, want + BS, BS, BS), (ssize_t)BS);
	ck_assert_int_eq(cache_flush_all(X.c), 0);
	assert_backend_has(n, want, len, "backend after the rewrite");
	free(want);
}
END_TEST

static void unlink_on_backend(const char *name)
{
	struct be_node *root;

	ck_assert_int_eq(X.be->ops->root(X.be, NULL, &root, NULL), 0);
	ck_assert_int_eq(X.be->ops->unlink(X.be, NULL, root, name), 0);
	be_node_put(X.be, root);
}

static bool write_failed_once(void *arg)
{
	return mem_be_failures(X.be, MEM_OP_WRITE) >= 1;
}

/*
 * Dirty data of f (named name on the backend) whose upload has been
 * tried once -- so the flusher has looked at the backend's attributes --
 * when another node removes the file; the next upload gets ESTALE.
 */
static void remove_under_dirty(struct cache_file *f, const char *name,
			       const void *buf, size_t len)
{
	mem_be_fail(X.be, MEM_OP_WRITE, -EIO, -1);
	ck_assert_int_eq(cache_write(f, NULL, buf, len, 0), (ssize_t)len);
	ck_assert(wait_for(write_failed_once, NULL, 5000));
	unlink_on_backend(name);
	mem_be_fail(X.be, MEM_OP_WRITE, 0, 0);
}

START_TEST(test_estale_drops_dirty)
{
	size_t len = 3000;
	unsigned char *orig = pattern_new(CS, 29), *want = pattern_new(len, 30);
	struct cache_file *f;
	unsigned long calls;

	fx_open();
	f = fx_file("e", orig, CS, NULL);
	remove_under_dirty(f, "e", want, len);
	ck_assert_int_eq(cache_file_flush(f), 0);
	ck_assert_uint_eq(stats().dirty_bytes, 0);

	/* Nothing comes back after a restart either. */
	ck_assert_int_eq(fx_close(), 0);
	calls = mem_be_calls(X.be, MEM_OP_WRITE);
	fx_open();
	ck_assert_uint_eq(stats().dirty_bytes, 0);
	sleep_ms(200);
	ck_assert_uint_eq(mem_be_calls(X.be, MEM_OP_WRITE), calls);
	free(orig);
	free(want);
}
END_TEST

/* ---- restart ----------------------------------------------------------- */

START_TEST(test_lock_busy)
{
	struct cache *c2 = NULL;
	char err[512], pid[32];
	int rc;

	fx_open();
	rc = cache_open(&X.cfg, X.bes, 1, &c2, err, sizeof(err));
	ck_assert_int_eq(rc, -EBUSY);
	snprintf(pid, sizeof(pid), "pid %d", (int)getpid());
	ck_assert_msg(strstr(err, pid), "'%s' does not name '%s'", err, pid);
	ck_assert_msg(strstr(err, X.dir), "'%s' does not name the dir", err);

	/* Free again once the first one is closed. */
	ck_assert_int_eq(fx_close(), 0);
	fx_open();
}
END_TEST

/*
 * The node id is made once, kept in the cache dir (0600, 16 hex digits
 * and a newline) and the same at the next start; another cache dir gets
 * another; a damaged file is replaced.
 */
START_TEST(test_node_id_kept)
{
	char path[300], buf[64], dir2[200];
	struct cache *c2 = NULL;
	uint64_t id, id2;
	struct stat st;
	FILE *fp;
	size_t n;

	fx_open();
	id = cache_node_id(X.c);
	snprintf(path, sizeof(path), "%s/node-id", X.dir);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 07777, 0600);
	fp = fopen(path, "r");
	ck_assert_ptr_nonnull(fp);
	n = fread(buf, 1, sizeof(buf) - 1, fp);
	fclose(fp);
	buf[n] = '\0';
	ck_assert_uint_eq(n, 17);
	ck_assert_uint_eq(strtoull(buf, NULL, 16), id);

	ck_assert_int_eq(fx_close(), 0);
	fx_open();
	ck_assert_uint_eq(cache_node_id(X.c), id);
	ck_assert_int_eq(fx_close(), 0);

	/* Another cache dir is another node. */
	snprintf(dir2, sizeof(dir2), "%s/t2-XXXXXX", base_dir);
	ck_assert_ptr_nonnull(mkdtemp(dir2));
	X.cfg.dir = dir2;
	ck_assert_int_eq(cache_open(&X.cfg, X.bes, 1, &c2, X.err,
				    sizeof(X.err)), 0);
	id2 = cache_node_id(c2);
	ck_assert_uint_ne(id2, id);
	ck_assert_int_eq(cache_close(c2), 0);
	X.cfg.dir = X.dir;
	nftw(dir2, rm_one, 16, FTW_DEPTH | FTW_PHYS);

	/* Damaged: a new one, saved. */
	fp = fopen(path, "w");
	ck_assert_ptr_nonnull(fp);
	fputs("not an id\n", fp);
	fclose(fp);
	fx_open();
	id2 = cache_node_id(X.c);
	ck_assert_uint_ne(id2, id);
	ck_assert_int_eq(fx_close(), 0);
	fx_open();
	ck_assert_uint_eq(cache_node_id(X.c), id2);
}
END_TEST

START_TEST(test_restart_keeps_clean)
{
	size_t len = 2 * CS + 100;
	unsigned char *a = pattern_new(len, 31), *b = pattern_new(len, 32);
	struct cache_file *f;
	struct be_node *na, *nb;
	unsigned long reads;

	fx_open();
	f = fx_file("ra", a, len, &na);
	assert_cache_has(f, a, len, "read");
	f = fx_file("rb", NULL, 0, &nb);
	write_all(f, b, len, 0, len);
	ck_assert_int_eq(cache_file_flush(f), 0);
	ck_assert_int_eq(fx_close(), 0);
	/* The cache dropped its references to the nodes. */
	ck_assert_int_eq(mem_be_node_refs(na), 1);
	ck_assert_int_eq(mem_be_node_refs(nb), 1);

	fx_open();
	reads = mem_be_calls(X.be, MEM_OP_READ);
	assert_cache_has(fx_reopen(na), a, len, "read file after restart");
	assert_cache_has(fx_reopen(nb), b, len, "written file after restart");
	ck_assert_uint_eq(mem_be_calls(X.be, MEM_OP_READ), reads);
	free(a);
	free(b);
}
END_TEST

/* One write of a crashing child. */
struct crash_write {
	const void *buf;
	size_t len;
	uint64_t off;
};

/*
 * A daemon that dies with dirty data: a child process opens the cache,
 * reads the first read_first bytes of the file (so they are cached), does
 * the n writes while every upload fails, and is killed with SIGKILL.
 * Its copy of the backend is thrown away with it; ours never saw a byte.
 */
static void crash_after_writes(struct be_node *node, size_t read_first,
			       const struct crash_write *w,
			       const struct be_cred *const *creds, int n)
{
	int status, i;
	pid_t pid;

	ck_assert_ptr_null(X.c);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct cache *c;
		struct cache_file *f;
		char err[512];
		void *tmp = malloc(read_first + 1);

		mem_be_fail(X.be, MEM_OP_WRITE, -EIO, -1);
		if (cache_open(&X.cfg, X.bes, 1, &c, err, sizeof(err)))
			_exit(2);
		if (!(f = child_file(c, node)))
			_exit(3);
		if (read_first && cache_read(f, NULL, tmp, read_first, 0) !=
					  (ssize_t)read_first)
			_exit(6);
		for (i = 0; i < n; i++)
			if (cache_write(f, creds ? creds[i] : NULL, w[i].buf,
					w[i].len, w[i].off) != (ssize_t)w[i].len)
				_exit(4);
		kill(getpid(), SIGKILL);	/* no cleanup of any kind */
		_exit(5);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
		      "crashing child: status 0x%x", status);
}

static void crash_after_write(struct be_node *n, const void *buf, size_t len,
			      uint64_t off)
{
	struct crash_write w = { buf, len, off };

	crash_after_writes(n, 0, &w, NULL, 1);
}

START_TEST(test_crash_recovery_overwrite)
{
	size_t len = 2 * CS, plen = 300000;
	unsigned char *orig = pattern_new(len, 33), *model = malloc(len);
	unsigned char *piece = malloc(plen);
	struct be_node *n;
	int rc;

	n = fx_backend_file("co", orig, len);
	pattern(piece, plen, 100000, 34);
	crash_after_write(n, piece, plen, 100000);
	memcpy(model, orig, len);
	memcpy(model + 100000, piece, plen);
	assert_backend_has(n, orig, len, "backend before the restart");

	/* The restart queues the dirty data; the backend works again. */
	fx_open();
	rc = cache_flush_all(X.c);
	ck_assert_int_eq(rc, 0);
	assert_backend_has(n, model, len, "backend after crash recovery");
	assert_cache_has(fx_reopen(n), model, len, "cache after crash recovery");
	ck_assert_uint_eq(stats().dirty_bytes, 0);
	free(orig);
	free(model);
	free(piece);
}
END_TEST

/*
 * A crash can fall between a write's bytes and its sums: the block then
 * fails its stored sum at the restart, and it holds every acknowledged
 * byte, so the replay uploads it as it is (unlike after a clean stop:
 * bug_flush_all_waits_for_corrupt_block).
 */
START_TEST(test_crash_stale_sum_uploaded_as_is)
{
	size_t len = CS, plen = 3 * BS;
	unsigned char *orig = pattern_new(len, 35), *model = malloc(len);
	unsigned char *piece = pattern_new(plen, 36);
	struct be_node *n;

	n = fx_backend_file("cs", orig, len);
	crash_after_write(n, piece, plen, 0);
	corrupt(BS + 10, 1);	/* bytes newer than their sum */
	memcpy(model, orig, len);
	memcpy(model, piece, plen);
	model[BS + 10] = (unsigned char)~model[BS + 10];

	fx_open();
	ck_assert_int_eq(cache_flush_all(X.c), 0);
	assert_backend_has(n, model, len, "backend after the replay");
	ck_assert_uint_eq(stats().checksum_errors, 0);
	free(orig);
	free(model);
	free(piece);
}
END_TEST

/* ---- the table's size (mem_files) ------------------------------------ */

#define TRIM_FILES 50

struct trim_fx {
	struct be_node *n[TRIM_FILES];
	unsigned char *data[TRIM_FILES];
};

/* File i: one block written through the cache, uploaded, and let go. */
static void trim_make(struct trim_fx *t, int i)
{
	char name[16];
	struct be_attr a;
	struct cache_file *f;

	snprintf(name, sizeof(name), "t%02d", i);
	t->data[i] = pattern_new(BS, 40 + i);
	ck_assert_int_eq(mem_be_put_file(X.be, name, NULL, 0, &t->n[i], &a),
			 0);
	ck_assert_int_ge(cache_file_get(X.c, 0, t->n[i], &a, &f), 0);
	ck_assert_int_eq(cache_write(f, NULL, t->data[i], BS, 0),
			 (ssize_t)BS);
	ck_assert_int_eq(cache_file_flush(f), 0);
	cache_file_put(f);
}

static bool table_within(void *arg)
{
	return stats().files <= *(uint64_t *)arg;
}

/* The first file from i on that is not in the table. */
static int trim_unloaded(struct trim_fx *t, int i)
{
	struct cache_file *f;

	for (; i < TRIM_FILES; i++) {
		if (cache_file_lookup(X.c, 0, t->n[i]->fileid, &f) < 0)
			return i;
		cache_file_put(f);
	}
	ck_abort_msg("every file is still in the table");
	return -1;
}

/*
 * Each file in the table holds about 2 KiB of memory, and a workflow
 * writes millions: past mem_files, files nobody holds and with nothing
 * dirty leave it for the cold list (the scanner thread does it), their
 * data still cached and counted once in cache_used_bytes.  An open loads
 * one again from its index and reads its data from the cache, also an
 * open while the backend does not answer (offline=serve); let go, it can
 * leave again (its cold entry is used again).
 */
START_TEST(test_table_trim_unused_files)
{
	struct trim_fx t = { 0 };
	uint64_t max = 8, bread;
	int k;
	unsigned char *got = malloc(BS);
	struct cache_file *f;
	struct be_attr a;
	int i;

	X.cfg.mem_files = (unsigned int)max;
	fx_open();
	for (i = 0; i < 40; i++)
		trim_make(&t, i);
	ck_assert_msg(wait_for(table_within, &max, 5000),
		      "the table still holds %llu files (mem_files %llu)",
		      (unsigned long long)stats().files,
		      (unsigned long long)max);
	ck_assert_uint_ge(stats().files_unloaded, 40 - max);
	ck_assert_uint_eq(stats().cold_files + stats().files, 40);
	ck_assert_uint_eq(stats().cache_used_bytes, 40 * BS);

	/* An unloaded file opens from its index; its data is cached. */
	bread = stats().bytes_read_backend;
	k = trim_unloaded(&t, 0);
	ck_assert_int_eq(X.be->ops->getattr(X.be, NULL, t.n[k], &a), 0);
	ck_assert_int_ge(cache_file_get(X.c, 0, t.n[k], &a, &f), 0);
	ck_assert_int_eq(cache_read(f, NULL, got, BS, 0), (ssize_t)BS);
	assert_same(got, t.data[k], BS, "an unloaded file read again");
	ck_assert_uint_eq(stats().bytes_read_backend, bread);
	cache_file_put(f);
	/* ... and so does one while the backend does not answer. */
	k = trim_unloaded(&t, k + 1);
	ck_assert_int_eq(cache_file_get_offline(X.c, 0, t.n[k], &f), 0);
	ck_assert_int_eq(cache_read(f, NULL, got, BS, 0), (ssize_t)BS);
	assert_same(got, t.data[k], BS, "an unloaded file opened offline");
	cache_file_put(f);

	/* More files: the table stays small, every byte counted once. */
	for (i = 40; i < TRIM_FILES; i++)
		trim_make(&t, i);
	ck_assert(wait_for(table_within, &max, 5000));
	ck_assert_uint_eq(stats().cold_files + stats().files, TRIM_FILES);
	ck_assert_uint_eq(stats().cache_used_bytes, TRIM_FILES * BS);
	for (i = 0; i < TRIM_FILES; i++) {
		ck_assert_int_eq(X.be->ops->getattr(X.be, NULL, t.n[i], &a), 0);
		ck_assert_int_ge(cache_file_get(X.c, 0, t.n[i], &a, &f), 0);
		ck_assert_int_eq(cache_read(f, NULL, got, BS, 0), (ssize_t)BS);
		assert_same(got, t.data[i], BS, "every file, after the trims");
		cache_file_put(f);
		be_node_put(X.be, t.n[i]);
		free(t.data[i]);
	}
	ck_assert_uint_eq(stats().bytes_read_backend, bread);
	free(got);
}
END_TEST

/* Two journal states say the same: files, chunks, writers, runs, pt. */
static void assert_jstate_eq(const struct jstate *a, const struct jstate *b)
{
	const struct jfile *x, *y;
	const struct jchunk *xc, *yc;
	size_t i, j, live = 0;

	ck_assert_uint_eq(a->unknown, b->unknown);
	for (x = a->files; x; x = x->next) {
		if (!x->nchunks && !x->pt)
			continue;
		live++;
		for (y = b->files; y; y = y->next)
			if (y->fileid == x->fileid &&
			    y->handle_len == x->handle_len &&
			    !memcmp(y->handle, x->handle, x->handle_len))
				break;
		ck_assert_msg(y, "file %llx lost", (unsigned long long)x->fileid);
		ck_assert_int_eq(y->pt, x->pt);
		ck_assert_uint_eq(y->nchunks, x->nchunks);
		for (i = 0; i < x->nchunks; i++) {
			for (j = 0; j < y->nchunks; j++)
				if (y->chunks[j].idx == x->chunks[i].idx)
					break;
			ck_assert_uint_lt(j, y->nchunks);
			xc = &x->chunks[i];
			yc = &y->chunks[j];
			ck_assert_int_eq(yc->cred.set, xc->cred.set);
			if (xc->cred.set)
				ck_assert_uint_eq(yc->cred.cred.uid,
						  xc->cred.cred.uid);
			ck_assert_uint_eq(yc->runs_len, xc->runs_len);
			if (xc->runs_len)
				ck_assert(!memcmp(yc->runs, xc->runs,
						  xc->runs_len));
		}
	}
	for (y = b->files; y; y = y->next)
		if (y->nchunks || y->pt)
			live--;
	ck_assert_uint_eq(live, 0);
}

/*
 * The running daemon's compaction writes back what the journal says
 * (jstate.c): replayed, the rewritten journal says the same, with the
 * records of a backend not mounted kept, a fileid reused by another file,
 * a dropped file and a clean chunk gone, and runs records of dirty chunks.
 */
START_TEST(test_jstate_rewrite_same)
{
	struct be_cred alice = { .uid = 1001, .gid = 1001 };
	unsigned char w[BE_HANDLE_MAX], runs[100];
	struct jstate *a, *b;
	struct journal *j;
	char path[PATH_MAX + 16], err[256];
	const struct jfile *f1;
	size_t wl, i;

	fx_open();
	snprintf(path, sizeof(path), "%s/jtest", X.dir);
	ck_assert_int_eq(journal_open(path, &j, err, sizeof(err)), 0);
	memset(runs, 7, sizeof(runs));
	wl = cache_cred_encode(&alice, w, sizeof(w));
	ck_assert_uint_gt(wl, 0);
	/* file 1: chunks 0..2 dirty, 1 clean again, runs for 2 */
	ck_assert_int_eq(journal_append(j, JREC_FILE, SPEC, 1, 0, "h1", 2), 0);
	ck_assert_int_eq(journal_append(j, JREC_DIRTY, SPEC, 1, 0, w, wl), 0);
	ck_assert_int_eq(journal_append(j, JREC_DIRTY, SPEC, 1, 1, NULL, 0), 0);
	ck_assert_int_eq(journal_append(j, JREC_DIRTY, SPEC, 1, 2, NULL, 0), 0);
	ck_assert_int_eq(journal_append(j, JREC_RUNS, SPEC, 1, 2, runs, 40), 0);
	ck_assert_int_eq(journal_append(j, JREC_RUNS, SPEC, 1, 2, runs, 60), 0);
	ck_assert_int_eq(journal_append(j, JREC_CLEAN, SPEC, 1, 1, NULL, 0), 0);
	/* file 2: dropped; then its fileid is another file's */
	ck_assert_int_eq(journal_append(j, JREC_FILE, SPEC, 2, 0, "h2", 2), 0);
	ck_assert_int_eq(journal_append(j, JREC_DIRTY, SPEC, 2, 5, NULL, 0), 0);
	ck_assert_int_eq(journal_append(j, JREC_DROP, SPEC, 2, 0, "h2", 2), 0);
	ck_assert_int_eq(journal_append(j, JREC_FILE, SPEC, 2, 0, "h2b", 3), 0);
	ck_assert_int_eq(journal_append(j, JREC_PTOPEN, SPEC, 2, 1, w, wl), 0);
	ck_assert_int_eq(journal_append(j, JREC_DIRTY, SPEC, 2, 3, NULL, 0), 0);
	/* a backend not mounted now */
	ck_assert_int_eq(journal_append(j, JREC_FILE, "mem://gone", 9, 0, "h9",
					2), 0);
	ck_assert_int_eq(journal_append(j, JREC_DIRTY, "mem://gone", 9, 4,
					NULL, 0), 0);
	/* file 4: a RUNS record before its chunk's DIRTY record */
	ck_assert_int_eq(journal_append(j, JREC_FILE, SPEC, 4, 0, "h4", 2), 0);
	ck_assert_int_eq(journal_append(j, JREC_RUNS, SPEC, 4, 7, runs, 40), 0);
	ck_assert_int_eq(journal_append(j, JREC_DIRTY, SPEC, 4, 7, w, wl), 0);
	/* file 3: all clean, and a passthrough writer that ended */
	ck_assert_int_eq(journal_append(j, JREC_FILE, SPEC, 3, 0, "h3", 2), 0);
	ck_assert_int_eq(journal_append(j, JREC_PTOPEN, SPEC, 3, 0, NULL, 0), 0);
	ck_assert_int_eq(journal_append(j, JREC_DIRTY, SPEC, 3, 0, NULL, 0), 0);
	ck_assert_int_eq(journal_append(j, JREC_CLEAN, SPEC, 3, 0, NULL, 0), 0);
	ck_assert_int_eq(journal_append(j, JREC_PTCLOSE, SPEC, 3, 0, NULL, 0),
			 0);

	a = jstate_new(X.c);
	ck_assert_int_eq(journal_replay(j, jstate_rec, a, err, sizeof(err)), 0);
	ck_assert_uint_eq(a->unknown, 2);
	ck_assert_int_eq(journal_rewrite(j, jstate_emit, a), 0);
	b = jstate_new(X.c);
	ck_assert_int_eq(journal_replay(j, jstate_rec, b, err, sizeof(err)), 0);
	assert_jstate_eq(a, b);
	assert_jstate_eq(b, a);
	/* file 1 kept chunks 0 and 2, the newer runs; file 3 is gone */
	ck_assert(jstate_names(b, 1) && jstate_names(b, 2) &&
		  !jstate_names(b, 3));
	for (f1 = b->files; f1 && f1->fileid != 1; f1 = f1->next)
		;
	ck_assert_ptr_nonnull(f1);
	ck_assert_uint_eq(f1->nchunks, 2);
	for (i = 0; i < 2; i++)
		ck_assert_uint_eq(f1->chunks[i].runs_len,
				  f1->chunks[i].idx == 2 ? 60 : 0);
	for (f1 = b->files; f1 && f1->fileid != 4; f1 = f1->next)
		;
	ck_assert_ptr_nonnull(f1);
	ck_assert_uint_eq(f1->nchunks, 1);
	ck_assert_uint_eq(f1->chunks[0].runs_len, 40);
	ck_assert(f1->chunks[0].cred.set);
	jstate_free(a);
	jstate_free(b);
	journal_close(j);
}
END_TEST

/*
 * A daemon that runs long writes far more journal records than are live:
 * every small file leaves a FILE, a DIRTY and a CLEAN record.  The running
 * daemon compacts its journal (journal_compact), and the compacted journal
 * still brings back what was dirty at a crash.  Before, the journal only
 * shrank at start and at a clean stop, and a start refused one over 1 GiB.
 */
#define JC_CLEAN 1200
#define JC_DIRTY 12
START_TEST(test_journal_compacted_while_running)
{
	struct be_node *n[JC_CLEAN + JC_DIRTY];
	char name[32], body[64], err[512], path[PATH_MAX + 16];
	struct stat st;
	int i, status;
	pid_t pid;

	X.cfg.journal_compact = 64 << 10;
	for (i = 0; i < JC_CLEAN + JC_DIRTY; i++) {
		snprintf(name, sizeof(name), "jc%d", i);
		ck_assert_int_eq(mem_be_put_file(X.be, name, NULL, 0, &n[i],
						 NULL), 0);
	}
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct cache_stats cs;
		struct cache *c;

		if (cache_open(&X.cfg, X.bes, 1, &c, err, sizeof(err)))
			_exit(2);
		for (i = 0; i < JC_CLEAN + JC_DIRTY; i++) {
			struct cache_file *f;
			int len = snprintf(body, sizeof(body), "file %d\n", i);

			if (i == JC_CLEAN)	/* the rest stays dirty */
				mem_be_fail(X.be, MEM_OP_WRITE, -EIO, -1);
			if (!(f = child_file(c, n[i])) ||
			    cache_write(f, NULL, body, (size_t)len, 0) != len)
				_exit(3);
			if (i < JC_CLEAN && cache_file_flush(f))
				_exit(4);
			cache_file_put(f);
		}
		cache_get_stats(c, &cs);
		if (cs.journal_compactions < 2)
			_exit(5);
		if (cs.journal_bytes > X.cfg.journal_compact)
			_exit(6);
		kill(getpid(), SIGKILL);	/* no cleanup of any kind */
		_exit(7);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
		      "the crashing run: status 0x%x (5: no compaction, 6: journal over the bound)",
		      status);
	snprintf(path, sizeof(path), "%s/journal", X.dir);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_le(st.st_size, 64 << 10);

	/* The restart finds the dirty files in the compacted journal. */
	fx_open();
	ck_assert_int_eq(cache_flush_all(X.c), 0);
	for (i = JC_CLEAN; i < JC_CLEAN + JC_DIRTY; i++) {
		int len = snprintf(body, sizeof(body), "file %d\n", i);

		assert_backend_has(n[i], body, (size_t)len, "after the restart");
	}
	ck_assert_uint_eq(stats().dirty_bytes, 0);
	for (i = 0; i < JC_CLEAN + JC_DIRTY; i++)
		be_node_put(X.be, n[i]);
}
END_TEST

/* The data files of the cache dir, opened read-only (as the kernel holds
 * a passthrough descriptor's backing file), by their first byte. */
static int data_file_starting(unsigned char first)
{
	char path[PATH_MAX + 256], dpath[PATH_MAX];
	struct dirent *de;
	DIR *d;
	int fd = -1;

	snprintf(dpath, sizeof(dpath), "%s/data", X.dir);
	d = opendir(dpath);
	ck_assert_ptr_nonnull(d);
	while (fd < 0 && (de = readdir(d))) {
		unsigned char c;
		int t;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dpath, de->d_name);
		t = open(path, O_RDONLY | O_CLOEXEC);
		if (t >= 0 && pread(t, &c, 1, 0) == 1 && c == first)
			fd = t;
		else if (t >= 0)
			close(t);
	}
	closedir(d);
	return fd;
}

/*
 * Passthrough descriptors outlive their daemon (the kernel holds their
 * backing files): a child with a passthrough reader on a clean file and
 * on a dirty one is killed, the old data files stay open here, and the
 * restart must leave them alone: the clean file leaves the cache, the
 * dirty one gets a fresh data file with the same bytes (ptmark.c).
 */
START_TEST(test_pt_crash_fresh_data_files)
{
	size_t len = 2 * BS;
	unsigned char *a = pattern_new(len, 91), *b = pattern_new(len, 92);
	unsigned char *got = malloc(len);
	struct be_node *nc, *nd;
	struct stat old, now;
	int status, oc, od, fd;
	pid_t pid;

	a[0] = 'A';
	b[0] = 'B';
	nc = fx_backend_file("ptclean", a, len);
	nd = fx_backend_file("ptdirty", a, len);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct cache_file *f;
		struct be_attr at;
		int pfd;

		mem_be_fail(X.be, MEM_OP_WRITE, -EIO, -1);
		if (cache_open(&X.cfg, X.bes, 1, &X.c, X.err, sizeof(X.err)))
			_exit(2);
		if (X.be->ops->getattr(X.be, NULL, nc, &at) ||
		    cache_file_get(X.c, 0, nc, &at, &f) < 0 ||
		    cache_read(f, NULL, got, len, 0) != (ssize_t)len ||
		    cache_file_pt_begin(f, NULL, false, true, &pfd))
			_exit(3);
		if (X.be->ops->getattr(X.be, NULL, nd, &at) ||
		    cache_file_get(X.c, 0, nd, &at, &f) < 0 ||
		    cache_write(f, NULL, b, len, 0) != (ssize_t)len ||
		    cache_file_pt_begin(f, NULL, false, true, &pfd))
			_exit(4);
		kill(getpid(), SIGKILL);
		_exit(5);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
		      "child: status 0x%x", status);
	oc = data_file_starting('A');
	od = data_file_starting('B');
	ck_assert_int_ge(oc, 0);
	ck_assert_int_ge(od, 0);
	ck_assert_int_eq(fstat(od, &old), 0);

	/* No upload yet: one drops the uploaded blocks from the new file. */
	mem_be_gate(X.be, MEM_OP_WRITE, 1);
	fx_open();
	/* The clean file's data file is gone, the dirty one's is new. */
	ck_assert_int_lt(data_file_starting('A'), 0);
	fd = data_file_starting('B');
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fstat(fd, &now), 0);
	ck_assert_uint_ne(now.st_ino, old.st_ino);
	ck_assert_int_eq(pread(fd, got, len, 0), (ssize_t)len);
	assert_same(got, b, len, "the fresh data file");
	close(fd);
	/* A write of the new daemon does not reach an old descriptor. */
	write_all(fx_reopen(nd), a, 100, 0, 100);
	ck_assert_int_eq(pread(od, got, len, 0), (ssize_t)len);
	assert_same(got, b, len, "the old dirty file's descriptor");
	ck_assert_int_eq(pread(oc, got, len, 0), (ssize_t)len);
	assert_same(got, a, len, "the old clean file's descriptor");
	close(oc);
	close(od);
	fx_heal();
	ck_assert_int_eq(cache_flush_all(X.c), 0);
	memcpy(b, a, 100);
	assert_backend_has(nd, b, len, "the dirty file after the restart");
	assert_cache_has(fx_reopen(nc), a, len, "the clean file, fetched again");
	free(a);
	free(b);
	free(got);
}
END_TEST

/*
 * The ranges survive a crash: dirty ranges of a chunk go out after a
 * restart as they were, no more bytes (the bytes around them in the
 * cache file are stale here).
 */
START_TEST(test_range_replay)
{
	size_t len = CS;
	unsigned char *orig = pattern_new(len, 81), *want = malloc(len);
	unsigned char p1[500], p2[30];
	struct crash_write w[2] = { { p1, 500, 7000 },
				    { p2, 30, 3 * BS + 5 } };
	struct be_node *n;

	n = fx_backend_file("rp", orig, len);
	memcpy(want, orig, len);
	pattern(p1, 500, 7000, 82);
	memcpy(want + 7000, p1, 500);
	pattern(p2, 30, 3 * BS + 5, 83);
	memcpy(want + 3 * BS + 5, p2, 30);
	/* The file cached whole, two ranges written, then a crash. */
	crash_after_writes(n, len, w, NULL, 2);
	/* Another node writes around this node's first range meanwhile. */
	pattern(orig + 6000, 900, 6000, 84);
	memcpy(want + 6000, orig + 6000, 900);
	pattern(orig + 7600, 100, 7600, 85);
	memcpy(want + 7600, orig + 7600, 100);
	ck_assert_int_eq(mem_be_set_data(X.be, n, orig, len), 0);
	fx_open();
	ck_assert_int_eq(cache_flush_all(X.c), 0);
	assert_backend_has(n, want, len, "backend after the replay");
	ck_assert_uint_eq(stats().bytes_flushed, 530);
	assert_cache_has(fx_reopen(n), want, len, "cache after the replay");
	free(orig);
	free(want);
}
END_TEST

/*
 * BUG (cache/chunk.c write_in_chunk() and cache/index.c index_open(),
 * with cache/cache.c replay_file()): a write that extends a file updates
 * f->size in memory and stores the chunk's index slot, but never the
 * index header, which keeps the size of the last index_store_header()
 * (0 for a new file).  After a crash, index_open() restores that stale
 * size, and flush_chunk() (cache/flush.c, "Upload no further than the
 * file's end": off < size) uploads nothing of the dirty blocks past it,
 * then marks them clean: the data written before the crash is silently
 * lost, and the file reads back short.
 */
START_TEST(bug_crash_recovery_extending_write_lost)
{
	size_t len = 300000;
	unsigned char *model = pattern_new(len, 35);
	struct be_node *n;
	int rc;

	n = fx_backend_file("cx", NULL, 0);
	crash_after_write(n, model, len, 0);

	fx_open();
	rc = cache_flush_all(X.c);
	ck_assert_int_eq(rc, 0);
	assert_backend_has(n, model, len, "backend after crash recovery");
	assert_cache_has(fx_reopen(n), model, len, "cache after crash recovery");
	free(model);
}
END_TEST

/* ---- prefetch ---------------------------------------------------------- */

START_TEST(test_prefetch_sequential)
{
	size_t len = 16 * CS;
	unsigned char *want = pattern_new(len, 36), *got = malloc(2 * CS);
	struct cache_stream s = { 0 };
	struct cache_file *f;

	X.cfg.readahead = 4 * CS;
	fx_open();
	f = fx_file("seq", want, len, NULL);
	ck_assert_uint_eq(read_all(f, &s, got, 2 * CS, 0, 65536), 2 * CS);
	assert_same(got, want, 2 * CS, "sequential read");
	ck_assert_msg(wait_for(some_prefetch, NULL, 3000),
		      "no prefetch after a sequential read");
	free(want);
	free(got);
}
END_TEST

START_TEST(test_prefetch_not_random)
{
	static const unsigned int order[] = { 9, 3, 12, 6, 1, 14, 4, 11 };
	size_t len = 16 * CS;
	unsigned char *want = pattern_new(len, 37), *got = malloc(65536);
	struct cache_stream s = { 0 };
	struct cache_file *f;
	size_t i;

	X.cfg.readahead = 4 * CS;
	fx_open();
	f = fx_file("rnd", want, len, NULL);
	for (i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		uint64_t off = order[i] * CS + 4096 * i;

		ck_assert_int_eq(cache_read(f, &s, got, 65536, off), 65536);
		assert_same(got, want + off, 65536, "random read");
	}
	sleep_ms(300);
	ck_assert_uint_eq(stats().prefetch_chunks, 0);
	free(want);
	free(got);
}
END_TEST

/* ---- known bugs -------------------------------------------------------- */

/*
 * cache_file_flush(f) on a thread, given 3 s.  If it does not return,
 * the file is truncated to 0, which drops its dirty blocks and lets the
 * flush return, so the test can clean up.  Returns whether it returned.
 */
static bool flush_returns(struct cache_file *f, int *rc)
{
	struct flush_job job = { .f = f };
	struct be_attr a;
	bool done;

	ck_assert_int_eq(pthread_create(&job.tid, NULL, flush_main, &job), 0);
	done = wait_for(job_done, &job, 3000);
	if (!done)
		cache_file_truncate(f, NULL, 0, &a);
	pthread_join(job.tid, NULL);
	if (rc)
		*rc = job.rc;
	return done;
}

/*
 * BUG (cache/flush.c, flush_upload(): the first upload of a dirty
 * episode calls getattr to look for a conflict, and "if (rc < 0) return
 * rc;" hands ESTALE/ENOENT to after_round(), which retries it with
 * backoff for ever; only flush_finish() knows that ESTALE means "gone"):
 * when another node removes a file before this node's first upload of
 * new dirty data, the upload is retried every 10 s for ever, the dirty
 * data is never dropped, cache_file_flush() (close, fsync) never
 * returns, and cache_close() gives up only after a minute.
 */
START_TEST(bug_estale_on_conflict_check_retried_forever)
{
	unsigned char *want = pattern_new(BS, 40);
	struct cache_file *f;
	int rc = 0;

	fx_open();
	f = fx_file("e", want, 3000, NULL);
	unlink_on_backend("e");
	/* A whole block: nothing to merge from the backend. */
	ck_assert_int_eq(cache_write(f, NULL, want, BS, 0), (ssize_t)BS);
	ck_assert_msg(flush_returns(f, &rc),
		      "cache_file_flush() of a file removed on the backend did not return in 3 s (%llu flush retries so far)",
		      (unsigned long long)stats().flush_retries);
	ck_assert_int_eq(rc, 0);
	free(want);
}
END_TEST

/*
 * BUG (cache/flush.c, flush_finish(): after a successful upload,
 * "if (!ch->dirty) { f->dirty_chunks--; ..." also runs when file_gone()
 * -- called meanwhile by another flusher that got ESTALE for the same
 * file -- has already cleared ch->dirty and set f->dirty_chunks to 0):
 * f->dirty_chunks wraps around to 2^64 - k.  From then on
 * cache_file_flush() (and so close and fsync) on that file loops
 * forever, cache_fixup_attr() keeps reporting the local size, and
 * cache_file_get() never drops its stale data.
 */
START_TEST(bug_estale_race_dirty_chunks_underflow)
{
	unsigned char *want = pattern_new(4 * CS, 38);
	struct cache_file *f;
	uint64_t dirty_chunks;
	unsigned long i, n;

	X.cfg.flushers = 4;
	fx_open();
	f = fx_file("race", NULL, 0, NULL);
	/*
	 * Four uploads of the file in flight at once: one chunk at a time,
	 * so that each flusher takes one (they batch what is queued).
	 */
	mem_be_gate(X.be, MEM_OP_WRITE, 1);
	for (i = 0; i < 4; i++) {
		ck_assert_int_eq(cache_write(f, NULL, want + i * CS, CS, i * CS),
				 (ssize_t)CS);
		n = i + 1;
		ck_assert_msg(wait_for(writes_waiting, &n, 5000),
			      "upload %lu did not start", n);
	}
	/* One is answered ESTALE at once, three succeed a bit later. */
	mem_be_set_delay(X.be, MEM_OP_WRITE, 200);
	mem_be_fail(X.be, MEM_OP_WRITE, -ESTALE, 1);
	mem_be_gate(X.be, MEM_OP_WRITE, 0);
	n = 4;
	ck_assert(wait_for(writes_completed, &n, 5000));
	ck_assert(wait_for(file_idle, f, 5000));
	ck_assert_uint_eq(stats().dirty_bytes, 0);

	pthread_mutex_lock(&f->lock);
	dirty_chunks = f->dirty_chunks;
	pthread_mutex_unlock(&f->lock);
	ck_assert_msg(dirty_chunks == 0,
		      "f->dirty_chunks is %llu after the file went away; cache_file_flush() would never return",
		      (unsigned long long)dirty_chunks);
	free(want);
}
END_TEST

/*
 * BUG (cache/flush.c, flush_upload(): "if (!ch || !ch->dirty ||
 * ch->flushing || f->gone) { ...; return 0; }"): once a file was found
 * gone (ESTALE: another client removed it) and its dirty data dropped,
 * data written to it afterwards through a handle still open on this node
 * stays dirty for ever: the flusher skips it
 * without cleaning it, so cache_file_flush() (close, fsync) never
 * returns, dirty_bytes never goes down (writers of every file eventually
 * block on dirty_max), and cache_close() waits for ever because no
 * flush_retries are counted.
 */
START_TEST(bug_write_after_gone_hangs_flush)
{
	unsigned char *want = pattern_new(2000, 39);
	struct cache_file *f;

	fx_open();
	f = fx_file("gone", want, 2000, NULL);
	remove_under_dirty(f, "gone", want, 1000);
	ck_assert_int_eq(cache_file_flush(f), 0);
	ck_assert_uint_eq(stats().dirty_bytes, 0);

	ck_assert_int_eq(cache_write(f, NULL, want + 1000, 1000, 1000), 1000);
	ck_assert_msg(flush_returns(f, NULL),
		      "cache_file_flush() of a file written after it went away did not return in 3 s");
	free(want);
}
END_TEST

static bool reads_waiting(void *arg)
{
	return mem_be_waiting(X.be, MEM_OP_READ) >= 1;
}

static bool upload_done(void *arg)
{
	return mem_be_completed(X.be, MEM_OP_COMMIT) >= *(unsigned long *)arg;
}

struct read_job {
	struct cache_file *f;
	uint64_t off;
	size_t len;
	ssize_t rc;
	pthread_t tid;
};

static void *read_main(void *arg)
{
	struct read_job *j = arg;
	void *buf = malloc(j->len);

	j->rc = cache_read(j->f, NULL, buf, j->len, j->off);
	free(buf);
	return NULL;
}

/*
 * Regression test (failed before e50619d "Fix false write-back conflicts
 * during a write stream"): the conflict check was skipped while
 * f->inflight > 0, which also counts chunk fetches, so an upload that
 * ran while a read fetched another chunk moved the backend's mtime
 * unchecked; the next dirty episode then took this node's own upload
 * for a change by another client, and file_conflict() moved the new
 * dirty data to conflicts/: the backend never got the write.
 */
START_TEST(test_no_false_conflict_upload_during_fetch)
{
	size_t len = 2 * CS;
	unsigned char *model = pattern_new(len, 41), *piece = malloc(BS);
	struct read_job rj = { .off = CS, .len = BS };
	struct cache_file *f;
	struct be_node *n;
	unsigned long one = 1;

	fx_open();
	f = fx_file("cf", model, len, &n);
	/* A reader fetches chunk 1; the backend is slow to answer. */
	mem_be_gate(X.be, MEM_OP_READ, 1);
	rj.f = f;
	ck_assert_int_eq(pthread_create(&rj.tid, NULL, read_main, &rj), 0);
	ck_assert(wait_for(reads_waiting, NULL, 5000));
	/* Meanwhile a whole block of chunk 0 is written and uploaded. */
	pattern(piece, BS, 0, 42);
	ck_assert_int_eq(cache_write(f, NULL, piece, BS, 0), (ssize_t)BS);
	memcpy(model, piece, BS);
	ck_assert(wait_for(upload_done, &one, 5000));
	ck_assert(wait_for(no_dirty, NULL, 5000));
	mem_be_gate(X.be, MEM_OP_READ, 0);
	pthread_join(rj.tid, NULL);
	ck_assert_int_eq(rj.rc, (ssize_t)BS);

	/* Nobody else touched the file.  Another write: */
	write_model(f, model, BS, BS, 43);
	ck_assert_int_eq(cache_file_flush(f), 0);
	assert_backend_has(n, model, len, "backend");
	assert_cache_has(f, model, len, "cache");
	free(model);
	free(piece);
}
END_TEST

/*
 * Regression test (CI, posix-difftest seed 3515292667 under ASan: "dirty
 * block fails its checksum" for ever, the close returned EIO and the
 * bytes never reached the backend).  A fetch merges a dirty block that is
 * not present (a partial write into a block never read) with the
 * backend's bytes around its range and writes the merged block into the
 * data file.  An open that found the file changed on the backend
 * meanwhile (file_drop_stale(), trunc_seq) made the fetch keep nothing:
 * the data file held the merged bytes, the block's sum still those of
 * before, and no reader fetched the block again (the reader took its
 * bytes from the fetch's buffer).
 */
START_TEST(bug_fetch_during_open_leaves_stale_sum)
{
	size_t len = 2 * CS;
	unsigned char *model = pattern_new(len, 44);
	struct read_job rj = { .off = 0, .len = BS };
	struct cache_file *f;
	struct be_node *n;

	fx_open();
	f = fx_file("fo", model, len, &n);
	/* Uploads fail: the write stays dirty, in a block not present. */
	mem_be_fail(X.be, MEM_OP_WRITE, -EIO, -1);
	write_model(f, model, 100, BS + 5000, 45);
	/* A reader of block 0 fetches chunk 0, block 1 merged into it. */
	mem_be_gate(X.be, MEM_OP_READ, 1);
	rj.f = f;
	ck_assert_int_eq(pthread_create(&rj.tid, NULL, read_main, &rj), 0);
	ck_assert(wait_for(reads_waiting, NULL, 5000));
	/* Another node changes block 3; an open here sees the change. */
	pattern(model + 3 * BS, 50, 3 * BS, 46);
	ck_assert_int_eq(mem_be_set_data(X.be, n, model, len), 0);
	fx_reopen(n);
	mem_be_gate(X.be, MEM_OP_READ, 0);
	pthread_join(rj.tid, NULL);
	ck_assert_int_eq(rj.rc, (ssize_t)BS);
	ck_assert(wait_for(file_idle, f, 5000));

	mem_be_fail(X.be, MEM_OP_WRITE, 0, 0);
	ck_assert_int_eq(cache_file_flush(f), 0);
	ck_assert_uint_eq(stats().checksum_errors, 0);
	assert_backend_has(n, model, len, "backend");
	assert_cache_has(f, model, len, "cache");
	free(model);
}
END_TEST

/*
 * BUG (cache/chunk.c write_in_chunk() with cache/flush.c flush_upload()):
 * a writer bumps ch->dirty_seq before its pwrite and again only after
 * it stored the new block sums; a flusher that took its snapshot (sums,
 * dirty_seq) in between reads the half-updated block, finds the sum
 * wrong and dirty_seq unchanged, and reports a checksum failure of dirty
 * data: checksum_errors and flush_errors count, "dirty block fails its
 * checksum" is logged as an error and the upload backs off -- although
 * nothing is wrong.  Appending to a file in pieces that are not
 * block-aligned while it uploads is enough.
 */
START_TEST(bug_write_during_upload_false_checksum_error)
{
	size_t piece = 1000;
	unsigned char *want = pattern_new(CS, 44);
	struct cache_file *f;
	struct be_node *n;
	struct cache_stats st;
	int i;

	fx_open();
	f = fx_file("rw", NULL, 0, &n);
	/* A full chunk goes out at once; keep rewriting parts of it. */
	ck_assert_int_eq(cache_write(f, NULL, want, CS, 0), (ssize_t)CS);
	for (i = 0; i < 30000 && !stats().checksum_errors; i++) {
		uint64_t off = ((uint64_t)i * 7919) % (CS - piece);

		pattern(want + off, piece, off, 47 + (unsigned int)i);
		ck_assert_int_eq(cache_write(f, NULL, want + off, piece, off),
				 (ssize_t)piece);
	}
	ck_assert_int_eq(cache_file_flush(f), 0);
	assert_backend_has(n, want, CS, "backend");
	st = stats();
	ck_assert_msg(st.checksum_errors == 0 && st.flush_errors == 0,
		      "%llu checksum errors and %llu flush errors counted while rewriting a chunk being uploaded; nothing was corrupt",
		      (unsigned long long)st.checksum_errors,
		      (unsigned long long)st.flush_errors);
	free(want);
}
END_TEST

/* Writes of this process stop at cur bytes (old: the limit to put back). */
static void fsize_limit(struct rlimit *old, rlim_t cur)
{
	struct rlimit rl;

	signal(SIGXFSZ, SIG_IGN);
	ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, old), 0);
	rl = *old;
	rl.rlim_cur = cur;
	ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
}

/*
 * BUG (cache/chunk.c, write_in_chunk()): a write to the cache file that
 * stops part way (the cache file system fills up: the kernel writes what
 * fits, the engine's next try gets ENOSPC and reports only that) left the
 * new bytes in the file and the old sums in the chunk.  The application
 * got the error, but the dirty block then failed its checksum at every
 * upload: it never went out, and an unmount waited 60 s for it before it
 * gave up (tests/integration/chaos.sh, a full cache fs on the async node).
 * Here RLIMIT_FSIZE stops the write part way.
 */
START_TEST(bug_partial_cache_write_corrupts_dirty_block)
{
	uint64_t off = CS - 2 * BS;	/* the last two blocks of chunk 0 */
	unsigned char *want = pattern_new(2 * BS, 3), *patch = pattern_new(BS, 9);
	unsigned char *got = malloc(2 * BS);
	struct rlimit old;
	struct cache_file *f;
	struct be_node *n;
	struct cache_stats st;
	ssize_t rc;

	fx_open();
	f = fx_file("rw", NULL, 0, &n);
	/* Both blocks stay dirty: no upload before the failed write. */
	mem_be_gate(X.be, MEM_OP_WRITE, 1);
	ck_assert_int_eq(cache_write(f, NULL, want, 2 * BS, off), (ssize_t)(2 * BS));
	fsize_limit(&old, off + BS + 100);	/* the write below stops there */
	rc = cache_write(f, NULL, patch, BS, off + BS / 2);
	ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
	ck_assert_msg(rc < 0, "the write past RLIMIT_FSIZE returned %zd", rc);
	mem_be_gate(X.be, MEM_OP_WRITE, 0);

	ck_assert_int_eq(cache_file_flush(f), 0);
	st = stats();
	ck_assert_msg(st.checksum_errors == 0,
		      "%llu checksum errors after a cache write that failed part way",
		      (unsigned long long)st.checksum_errors);
	/* What the cache shows is what the backend got; outside the failed
	 * write's range, the bytes written before it. */
	ck_assert_int_eq(cache_read(f, NULL, got, 2 * BS, off), (ssize_t)(2 * BS));
	assert_same(got, want, BS / 2, "before the failed write");
	assert_same(got + BS / 2 + BS, want + BS / 2 + BS, BS / 2,
		    "after the failed write");
	memcpy(want, got, 2 * BS);
	free(got);
	got = calloc(1, CS);
	ck_assert_ptr_nonnull(got);
	memcpy(got + off, want, 2 * BS);
	assert_backend_has(n, got, CS, "backend");
	free(got);
	free(want);
	free(patch);
}
END_TEST

/*
 * The same for a fill: a read fetched a chunk whose block held one dirty
 * byte, and the fill's write of the merged block (the backend's bytes
 * around this node's byte) stopped part way, on a full cache file system.
 * The block's sum was still that of the byte alone: the upload called
 * the block corrupt at every try and the unmount waited 60 s for it
 * (chaos.sh, seed 3132465359).  Here RLIMIT_FSIZE stops the fill.
 */
START_TEST(bug_partial_fill_corrupts_dirty_block)
{
	uint64_t off = CS - 2 * BS;	/* a block near the end of chunk 0 */
	unsigned char *back = pattern_new(CS, 11), *got = malloc(BS);
	struct rlimit old;
	struct cache_file *f;
	struct be_node *n;
	struct cache_stats st;
	ssize_t rc;

	fx_open();
	f = fx_file("fill", back, CS, &n);
	mem_be_gate(X.be, MEM_OP_WRITE, 1);	/* the byte stays dirty */
	ck_assert_int_eq(cache_write(f, NULL, "Z", 1, off), 1);
	fsize_limit(&old, off + BS / 2);	/* the fill below stops there */
	rc = cache_read(f, NULL, got, BS, off);
	ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
	/* The reader took its bytes from the fetch: the fill's failure is
	 * not its (a full cache fs does not fail reads). */
	back[off] = 'Z';
	ck_assert_msg(rc == (ssize_t)BS,
		      "the read whose fill passed RLIMIT_FSIZE returned %zd", rc);
	assert_same(got, back + off, BS, "read whose fill failed");
	mem_be_gate(X.be, MEM_OP_WRITE, 0);

	ck_assert_int_eq(cache_file_flush(f), 0);
	st = stats();
	ck_assert_msg(st.checksum_errors == 0,
		      "%llu checksum errors after a fill that failed part way",
		      (unsigned long long)st.checksum_errors);
	assert_backend_has(n, back, CS, "backend");
	ck_assert_int_eq(cache_read(f, NULL, got, BS, off), (ssize_t)BS);
	assert_same(got, back + off, BS, "read after the failed fill");
	free(got);
	free(back);
}
END_TEST

struct hammer {
	struct cache_file *f;
	atomic_int stop;
	unsigned long eio, reads;
	pthread_t tid;
};

static void *hammer_read(void *arg)
{
	struct hammer *h = arg;
	unsigned char buf[2 * 4096];

	while (!atomic_load(&h->stop)) {
		ssize_t rc = cache_read(h->f, NULL, buf, sizeof(buf), 0);

		h->reads++;
		if (rc == -EIO)
			h->eio++;
	}
	return NULL;
}

/*
 * BUG (cache/chunk.c, read_in_chunk() and verify_blocks() against
 * write_in_chunk()): a reader verifies the blocks it read against
 * ch->sums, but a writer updates the cache file first and ch->sums only
 * afterwards, with no lock held between: a read that runs while another
 * thread writes the same dirty block sees new bytes and old sums and
 * returns -EIO ("checksum mismatch on dirty data") to the application,
 * and counts a checksum error.
 */
START_TEST(bug_read_during_write_eio)
{
	unsigned char *buf = pattern_new(2 * BS, 45);
	struct hammer h = { 0 };
	struct cache_file *f;
	int i;

	fx_open();
	f = fx_file("rw", NULL, 0, NULL);
	mem_be_fail(X.be, MEM_OP_WRITE, -EIO, -1);	/* keep it dirty */
	ck_assert_int_eq(cache_write(f, NULL, buf, 2 * BS, 0), (ssize_t)(2 * BS));
	h.f = f;
	ck_assert_int_eq(pthread_create(&h.tid, NULL, hammer_read, &h), 0);
	for (i = 0; i < 3000; i++) {
		pattern(buf, 2 * BS, (uint64_t)i, 46);
		ck_assert_int_eq(cache_write(f, NULL, buf, 2 * BS, 0),
				 (ssize_t)(2 * BS));
	}
	atomic_store(&h.stop, 1);
	pthread_join(h.tid, NULL);
	mem_be_fail(X.be, MEM_OP_WRITE, 0, 0);
	ck_assert_msg(h.eio == 0,
		      "%lu of %lu reads racing with writes of the same blocks returned EIO",
		      h.eio, h.reads);
	free(buf);
}
END_TEST

static bool scanned(void *arg)
{
	return stats().cache_used_bytes >= *(uint64_t *)arg;
}

/*
 * BUG (cache/evict.c, cache_evict_maybe(): "Not enough in memory: files
 * cached by an earlier run" -- cold_evict() runs only when evicting every
 * clean chunk loaded in this run did not free enough): after a restart
 * with a full cache, the data read in this run is evicted before the
 * files left by the earlier run, which nobody has touched since and are
 * by definition older.  The new run's working set keeps being thrown
 * out while the stale data stays: the hit rate collapses until every
 * loaded chunk is gone.  Clean chunks are meant to go LRU.
 */
START_TEST(bug_restart_evicts_hot_before_cold)
{
	size_t alen = 32 * CS, blen = 2 * CS;
	unsigned char *a = pattern_new(alen, 48), *b = pattern_new(blen, 49);
	struct cache_file *f;
	uint64_t want = alen;
	uint64_t i;

	X.cfg.size = 32 * CS;
	fx_open();
	f = fx_file("old", a, alen, NULL);
	for (i = 0; i < 32; i++)
		read_chunk(f, i, a);
	ck_assert_int_eq(fx_close(), 0);

	/* Restart: the earlier run's data is counted, not loaded. */
	fx_open();
	ck_assert_msg(wait_for(scanned, &want, 5000),
		      "the earlier run's %llu bytes were not counted: %llu",
		      (unsigned long long)want,
		      (unsigned long long)stats().cache_used_bytes);
	f = fx_file("new", b, blen, NULL);
	ck_assert_uint_eq(read_chunk(f, 0, b), 1);
	ck_assert_uint_eq(read_chunk(f, 1, b), 1);
	/* The most recently used data of the cache must still be there. */
	ck_assert_msg(read_chunk(f, 0, b) == 0 && read_chunk(f, 1, b) == 0,
		      "chunks read a moment ago were evicted before data untouched since the last run (%llu chunks evicted)",
		      (unsigned long long)stats().chunks_evicted);
	free(a);
	free(b);
}
END_TEST

static bool scan_done(void *arg)
{
	return stats().scan_done == 1;
}

static bool none_removing(void *arg)
{
	struct cache_stats st = stats();

	return st.cold_files_removing == 0 && st.evict_freeing_bytes == 0;
}

/* The data file of a cached backend node, by the cache's own name. */
static void cold_data_name(const struct be_node *n, char *buf, size_t len)
{
	snprintf(buf, len, "%s/data/%08x-%016llx-%016llx", X.dir,
		 spec_hash_of(X.be), (unsigned long long)n->fileid,
		 (unsigned long long)n->hkey);
}

/*
 * Issue 14: a cache dir of many small files left by an earlier run.  The
 * scan counts every one (scan_done, scan_files, cold_files), a file opened
 * again leaves the cold list, and eviction removes the others strictly
 * oldest first by their data file's mtime, whatever order the scan found
 * them in -- batch after batch, as a cache of millions of files needs
 * (a batch stops on a time limit; the loop below does what the next
 * reads would do).
 */
START_TEST(test_cold_files_oldest_first)
{
	enum { N = 1500, KEEP = 400 };
	struct be_node **nodes = calloc(N, sizeof(*nodes));
	unsigned char *data = pattern_new(BS, 50);
	struct cache_file *f;
	struct cache_stats st;
	uint64_t per, want, evicted;
	char name[256];
	int i, tries, opened = 7, gone = 0;

	ck_assert_ptr_nonnull(nodes);
	X.cfg.size = 0;		/* no limit while the set is made */
	fx_open();
	for (i = 0; i < N; i++) {
		struct be_attr a;
		unsigned char got[64];

		snprintf(name, sizeof(name), "cold%04d", i);
		ck_assert_int_eq(mem_be_put_file(X.be, name, data, BS,
						 &nodes[i], &a), 0);
		ck_assert_int_ge(cache_file_get(X.c, 0, nodes[i], &a, &f), 0);
		ck_assert_int_eq(cache_read(f, NULL, got, sizeof(got), 0),
				 (ssize_t)sizeof(got));
		cache_file_put(f);
	}
	ck_assert_int_eq(fx_close(), 0);
	/* Ages unrelated to the order the files were made (or listed):
	 * file i is (i * 7919) % N seconds old, so (i * 7919) % N = 0 is
	 * the newest. */
	for (i = 0; i < N; i++) {
		struct timespec ts[2] = { { 0, UTIME_OMIT },
					  { 1000000000 - (i * 7919L) % N, 0 } };

		cold_data_name(nodes[i], name, sizeof(name));
		ck_assert_int_eq(utimensat(AT_FDCWD, name, ts, 0), 0);
	}

	fx_open();
	ck_assert_msg(wait_for(scan_done, NULL, 20000), "scan not done");
	st = stats();
	ck_assert_uint_eq(st.scan_files, N);
	ck_assert_uint_eq(st.cold_files, N);
	ck_assert_uint_eq(st.files, 0);
	per = st.cache_used_bytes / N;
	ck_assert_uint_eq(st.cache_used_bytes, per * N);
	ck_assert_uint_gt(per, 0);
	/* The oldest of all is opened again: it is no longer cold, and its
	 * bytes are counted as its chunks load. */
	for (i = 0; i < N; i++)
		if ((i * 7919L) % N == N - 1)
			opened = i;
	f = fx_reopen(nodes[opened]);
	ck_assert_uint_eq(stats().cold_files, N - 1);
	ck_assert_uint_eq(stats().cache_used_bytes, per * (N - 1));

	/* Keep KEEP cold files' worth: the rest goes, oldest first. */
	X.cfg.size = per * KEEP;
	for (tries = 0; tries < 10000 &&
	     stats().cache_used_bytes > X.cfg.size; tries++) {
		cache_evict_maybe(X.c);
		/* the remover unlinks what the batch picked */
		ck_assert(wait_for(none_removing, NULL, 20000));
	}
	st = stats();
	ck_assert_uint_le(st.cache_used_bytes, X.cfg.size);
	ck_assert_uint_ge(st.evict_batches, 1);
	ck_assert_uint_ge(st.evict_batch_us_max, st.evict_batch_us_last);
	evicted = st.cold_files_evicted;
	want = (N - 1) - KEEP;
	ck_assert_msg(evicted >= want && evicted <= N - 1,
		      "%llu cold files evicted, want at least %llu",
		      (unsigned long long)evicted, (unsigned long long)want);
	ck_assert_uint_eq(st.cold_files, N - 1 - evicted);
	ck_assert_uint_eq(st.cache_used_bytes, per * (N - 1 - evicted));
	for (i = 0; i < N; i++) {
		/* age rank: 0 the oldest */
		long rank = N - 1 - (i * 7919L) % N;
		bool exists;

		cold_data_name(nodes[i], name, sizeof(name));
		exists = access(name, F_OK) == 0;
		if (i == opened) {
			ck_assert_msg(exists, "the file opened again was evicted");
			continue;
		}
		/* rank 0 is the opened one: cold ranks start at 1 */
		ck_assert_msg(exists == (rank > (long)evicted),
			      "file of age rank %ld (of %d): %s, with %llu evicted",
			      rank, N, exists ? "kept" : "evicted",
			      (unsigned long long)evicted);
		gone += !exists;
	}
	ck_assert_int_eq(gone, (int)evicted);
	/* The opened file reads from its cache file, as before. */
	{
		unsigned long reads = mem_be_calls(X.be, MEM_OP_READ);
		unsigned char *got = malloc(BS);

		ck_assert_int_eq(cache_read(f, NULL, got, BS, 0), (ssize_t)BS);
		assert_same(got, data, BS, "the file opened again");
		ck_assert_uint_eq(mem_be_calls(X.be, MEM_OP_READ), reads);
		free(got);
	}
	for (i = 0; i < N; i++)
		be_node_put(X.be, nodes[i]);
	free(nodes);
	free(data);
}
END_TEST

/*
 * A set of n cold files of one block each, file i holding pattern 70 + i:
 * cached, the cache closed, their data files aged so that file 0 is the
 * oldest and file n - 1 the newest, the cache opened again and scanned.
 * Returns the bytes each counts for.
 */
static uint64_t cold_set(int n, struct be_node **nodes)
{
	unsigned char *data = malloc(BS);
	struct cache_file *f;
	char name[256];
	uint64_t used;
	int i;

	ck_assert_ptr_nonnull(data);
	X.cfg.size = 0;		/* no limit while the set is made */
	fx_open();
	for (i = 0; i < n; i++) {
		struct be_attr a;

		pattern(data, BS, 0, 70 + i);
		snprintf(name, sizeof(name), "set%04d", i);
		ck_assert_int_eq(mem_be_put_file(X.be, name, data, BS,
						 &nodes[i], &a), 0);
		ck_assert_int_ge(cache_file_get(X.c, 0, nodes[i], &a, &f), 0);
		ck_assert_int_eq(cache_read(f, NULL, data, 64, 0), 64);
		cache_file_put(f);
	}
	ck_assert_int_eq(fx_close(), 0);
	for (i = 0; i < n; i++) {
		struct timespec ts[2] = { { 0, UTIME_OMIT },
					  { 1000000000L + i, 0 } };

		cold_data_name(nodes[i], name, sizeof(name));
		ck_assert_int_eq(utimensat(AT_FDCWD, name, ts, 0), 0);
	}
	free(data);
	fx_open();
	ck_assert_msg(wait_for(scan_done, NULL, 20000), "scan not done");
	used = stats().cache_used_bytes;
	ck_assert_uint_eq(stats().cold_files, (uint64_t)n);
	ck_assert_uint_eq(used % (uint64_t)n, 0);
	ck_assert_uint_gt(used, 0);
	return used / (uint64_t)n;
}

static bool cold_exists(const struct be_node *n)
{
	char name[256];

	cold_data_name(n, name, sizeof(name));
	return access(name, F_OK) == 0;
}

/* Entries of the cache dir's trash/ (-1: it is not there). */
static int trash_entries(void)
{
	char path[256];
	struct dirent *e;
	int n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "%s/trash", X.dir);
	d = opendir(path);
	if (!d)
		return -1;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

struct bg_call {
	pthread_t t;
	struct cache_file *f;	/* write: into it; open: the result */
	struct be_node *node;	/* open: of this node */
	int rc;
	atomic_bool done;
};

static void *bg_write_main(void *arg)
{
	struct bg_call *b = arg;
	unsigned char *buf = pattern_new(CS, 80);

	b->rc = (int)cache_write(b->f, NULL, buf, CS, 0);
	free(buf);
	atomic_store(&b->done, true);
	return NULL;
}

static void *bg_open_main(void *arg)
{
	struct bg_call *b = arg;
	struct be_attr a;

	b->rc = X.be->ops->getattr(X.be, NULL, b->node, &a);
	if (b->rc == 0)
		b->rc = cache_file_get(X.c, 0, b->node, &a, &b->f);
	atomic_store(&b->done, true);
	return NULL;
}

static bool bg_done(void *arg)
{
	return atomic_load(&((struct bg_call *)arg)->done);
}

static void *bg_truncate_main(void *arg)
{
	struct bg_call *b = arg;
	struct be_attr a;

	b->rc = cache_file_truncate(b->f, NULL, CS, &a);
	atomic_store(&b->done, true);
	return NULL;
}

static bool pt_scanned_two(void *arg)
{
	struct cache_file *f = arg;
	bool yes;

	pthread_mutex_lock(&f->lock);
	yes = f->pt_scanned >= 2;
	pthread_mutex_unlock(&f->lock);
	return yes;
}

static bool commits_waiting(void *arg)
{
	return mem_be_waiting(X.be, MEM_OP_COMMIT) >= *(unsigned long *)arg;
}

static bool commits_completed(void *arg)
{
	return mem_be_completed(X.be, MEM_OP_COMMIT) >= *(unsigned long *)arg;
}

/*
 * Another node changed a file that a passthrough writer here holds: an
 * open hashes the writer's bytes and fetches the rest of the data file
 * again in place.  A block the writer wrote while that fetch waited for
 * the backend was overwritten with the backend's older bytes, and the
 * write was lost (the hour-long chaos run saw a read through a writer's
 * own descriptor return other bytes, after a server outage made the
 * fetch wait).
 */
START_TEST(bug_pt_write_during_refetch_lost)
{
	unsigned char *data = pattern_new(CS, 95), *want = malloc(CS);
	unsigned char *got = malloc(CS), blk[BS];
	struct bg_call o = { 0 };
	struct cache_file *f;
	struct be_node *n;
	int fd;

	fx_open();
	f = fx_file("fence", data, CS, &n);
	ck_assert_int_eq(cache_file_pt_begin(f, NULL, true, false, &fd), 0);
	memcpy(want, data, CS);
	memset(blk, 0x11, BS);
	ck_assert_int_eq(pwrite(fd, blk, BS, BS), (ssize_t)BS);
	memcpy(want + BS, blk, BS);
	/* the other node's block 10 */
	memcpy(got, data, CS);
	memset(got + 10 * BS, 0x55, BS);
	memset(want + 10 * BS, 0x55, BS);
	ck_assert_int_eq(mem_be_set_data(X.be, n, got, CS), 0);
	/* an open here fetches the file again; the backend is slow */
	mem_be_gate(X.be, MEM_OP_READ, 1);
	o.node = n;
	ck_assert_int_eq(pthread_create(&o.t, NULL, bg_open_main, &o), 0);
	ck_assert(wait_for(reads_waiting, NULL, 10000));
	/* meanwhile the writer writes block 5 */
	memset(blk, 0x77, BS);
	ck_assert_int_eq(pwrite(fd, blk, BS, 5 * BS), (ssize_t)BS);
	memcpy(want + 5 * BS, blk, BS);
	mem_be_gate(X.be, MEM_OP_READ, 0);
	ck_assert_int_eq(pthread_join(o.t, NULL), 0);
	ck_assert_int_eq(o.rc, 0);
	track_file(o.f);
	ck_assert_int_eq(pread(fd, got, CS, 0), (ssize_t)CS);
	assert_same(got, want, CS, "the data file after the fetch");
	cache_file_pt_end(f, true);
	ck_assert_int_eq(cache_file_flush(f), 0);
	assert_backend_has(n, want, CS, "backend after the writer's end");
	free(data);
	free(want);
	free(got);
}
END_TEST

/*
 * A flusher's batch of two chunks of a passthrough writer's file, the
 * first resting (the kernel wrote it after its rehash), the second being
 * committed, while a truncate of the file comes: the truncate holds
 * rehash_lock and waits for the uploads in flight.  The flusher used to
 * rehash the first chunk (waiting for rehash_lock) before it ended the
 * second upload, so each waited for the other for ever (posix-difftest,
 * nfs, seeds 514810279 and 198588421, under load).
 */
START_TEST(bug_flush_batch_rehash_vs_truncate)
{
	unsigned char *a = pattern_new(2 * CS, 81), *b = pattern_new(CS, 82);
	struct bg_call t = { 0 };
	struct cache_file *f, *g;
	unsigned long one = 1, two = 2;
	struct be_node *n;
	int fd;

	X.cfg.flushers = 1;
	X.cfg.close_mode = CACHE_CLOSE_ASYNC;
	fx_open();
	/* the one flusher waits in g's COMMIT while f's chunks queue up */
	mem_be_gate(X.be, MEM_OP_COMMIT, 1);
	g = fx_file("g", NULL, 0, NULL);
	write_all(g, b, CS, 0, CS);
	ck_assert(wait_for(commits_waiting, &one, 10000));
	f = fx_file("f", NULL, 0, &n);
	ck_assert_int_eq(cache_file_pt_begin(f, NULL, true, false, &fd), 0);
	ck_assert_int_eq(pwrite(fd, a, 2 * CS, 0), (ssize_t)(2 * CS));
	ck_assert_int_eq(cache_file_pt_sync(f), 0);	/* both queued */
	/* the background scan of a growing file has hashed both chunks */
	ck_assert(wait_for(pt_scanned_two, f, 10000));
	ck_assert_int_eq(pwrite(fd, b, 100, 0), 100);	/* chunk 0 rests */
	/* g's commit goes; its generation check (GETATTR) is slow, so the
	 * gate is closed again before the flusher reaches f's batch */
	mem_be_set_delay(X.be, MEM_OP_GETATTR, 300);
	mem_be_gate(X.be, MEM_OP_COMMIT, 0);
	ck_assert(wait_for(commits_completed, &one, 10000));
	mem_be_gate(X.be, MEM_OP_COMMIT, 1);
	mem_be_set_delay(X.be, MEM_OP_GETATTR, 0);
	ck_assert(wait_for(commits_waiting, &one, 10000));
	ck_assert_uint_eq(mem_be_completed(X.be, MEM_OP_COMMIT), 1);
	t.f = f;
	ck_assert_int_eq(pthread_create(&t.t, NULL, bg_truncate_main, &t), 0);
	sleep_ms(200);	/* the truncate waits for the uploads in flight */
	mem_be_gate(X.be, MEM_OP_COMMIT, 0);
	ck_assert_msg(wait_for(bg_done, &t, 10000),
		      "the truncate and the flusher wait for each other");
	pthread_join(t.t, NULL);
	ck_assert_int_eq(t.rc, 0);
	ck_assert(wait_for(commits_completed, &two, 10000));
	cache_file_pt_end(f, true);
	ck_assert_int_eq(cache_file_flush(f), 0);
	memcpy(a, b, 100);
	assert_backend_has(n, a, CS, "backend after the truncate");
	ck_assert_uint_eq(stats().checksum_errors, 0);
	free(a);
	free(b);
}
END_TEST

/*
 * Issue 14: an unlink of a cold file can wait for a busy cache fs (ext4's
 * journal: 144 ms for one batch at a million files).  It ran in the
 * thread of the write that found the cache over its limit, with
 * table_lock held, so that write waited for it.  Now the write only picks
 * the files and a remover thread unlinks them: with every unlink held at
 * a gate, the write past the limit returns, the remover is the one held,
 * and the picked bytes count as being freed, not as freed, until the
 * gate opens.
 */
START_TEST(test_evict_writer_does_not_wait_for_unlink)
{
	enum { N = 32 };
	struct be_node *nodes[N];
	struct bg_call w = { 0 };
	char data_dir[] = "data/";
	struct cache_stats st;
	uint64_t per;
	bool returned;
	int i;

	per = cold_set(N, nodes);
	w.f = fx_file("writer", NULL, 0, NULL);
	/* No upload ends, so no flusher runs a batch: the writer's is the
	 * only one. */
	mem_be_gate(X.be, MEM_OP_WRITE, 1);
	ugate_set(true);
	X.cfg.size = per * N / 2;	/* half the cold files must go */
	ck_assert_int_eq(pthread_create(&w.t, NULL, bg_write_main, &w), 0);
	returned = wait_for(bg_done, &w, 10000);
	if (!returned)
		ugate_set(false);	/* let it finish, then fail */
	ck_assert_msg(returned,
		      "a write past the limit waited for the unlink of a cold file");
	pthread_join(w.t, NULL);
	ck_assert_int_eq(w.rc, (int)CS);
	ck_assert_msg(wait_for(ugate_holds, data_dir, 10000),
		      "no removal of a cold file is under way");
	st = stats();
	ck_assert_uint_ge(st.evict_batches, 1);
	ck_assert_uint_gt(st.cold_files_removing, 0);
	ck_assert_uint_ge(st.evict_freeing_bytes, per * N / 2);
	ck_assert_uint_eq(st.cold_files_evicted, 0);
	ck_assert_uint_ge(st.cache_used_bytes, per * N);
	ck_assert(cold_exists(nodes[0]));

	ugate_set(false);
	mem_be_gate(X.be, MEM_OP_WRITE, 0);
	ck_assert_msg(wait_for(none_removing, NULL, 20000),
		      "the remover did not finish");
	st = stats();
	ck_assert_uint_ge(st.cold_files_evicted, N / 2);
	ck_assert_uint_eq(st.cold_files, N - st.cold_files_evicted);
	ck_assert_uint_le(st.cache_used_bytes, X.cfg.size + CS);
	for (i = 0; i < N; i++)	/* oldest first */
		ck_assert_msg(cold_exists(nodes[i]) ==
				      (i >= (int)st.cold_files_evicted),
			      "cold file %d of %d: %s, with %llu evicted", i, N,
			      cold_exists(nodes[i]) ? "kept" : "removed",
			      (unsigned long long)st.cold_files_evicted);
	ck_assert_int_eq(trash_entries(), 0);
	for (i = 0; i < N; i++)
		be_node_put(X.be, nodes[i]);
}
END_TEST

/*
 * The one case where a writer does wait for the remover: the cache fs is
 * truly short of room (less free than half of cache_min_free), and what
 * was picked is still being removed.  Once the removal ends, it goes on.
 */
START_TEST(test_evict_writer_waits_when_no_room)
{
	enum { N = 16 };
	struct be_node *nodes[N];
	struct bg_call w = { 0 };
	struct statvfs sv;
	int i;

	cold_set(N, nodes);
	w.f = fx_file("writer", NULL, 0, NULL);
	mem_be_gate(X.be, MEM_OP_WRITE, 1);
	ugate_set(true);
	ck_assert_int_eq(statvfs(X.dir, &sv), 0);
	/* The cache fs has less than half of this free. */
	X.cfg.min_free = 4 * (uint64_t)sv.f_bavail * sv.f_frsize + (1ULL << 30);
	ck_assert_int_eq(pthread_create(&w.t, NULL, bg_write_main, &w), 0);
	ck_assert(wait_for(ugate_holds, NULL, 10000));
	sleep_ms(200);
	ck_assert_msg(!bg_done(&w),
		      "a write with the cache fs out of room did not wait for the remover");
	ck_assert_uint_gt(stats().evict_freeing_bytes, 0);
	ugate_set(false);
	ck_assert_msg(wait_for(bg_done, &w, 20000),
		      "the write did not go on once the remover was done");
	pthread_join(w.t, NULL);
	ck_assert_int_eq(w.rc, (int)CS);
	ck_assert_uint_eq(stats().evict_freeing_bytes, 0);
	ck_assert_uint_eq(stats().cold_files_evicted, N);
	X.cfg.min_free = 0;
	mem_be_gate(X.be, MEM_OP_WRITE, 0);
	for (i = 0; i < N; i++)
		be_node_put(X.be, nodes[i]);
}
END_TEST

/*
 * The race the remover brings: an open of a cold file that eviction has
 * picked.  Not yet taken by the remover, the open takes it back: its
 * cached data is read without a fetch, and it is not removed.  Being
 * removed (held at the gate), the open waits for the removal and caches
 * the file afresh: its data is fetched again, never read from files
 * being unlinked.
 */
START_TEST(test_evict_open_during_removal)
{
	enum { N = 8 };
	struct be_node *nodes[N];
	struct bg_call o = { 0 };
	unsigned char *want = malloc(BS), *got = malloc(BS);
	struct cache_file *f;
	unsigned long reads;
	char name[256];
	uint64_t per;
	int i;

	ck_assert_ptr_nonnull(want);
	ck_assert_ptr_nonnull(got);
	per = cold_set(N, nodes);
	ugate_set(true);
	X.cfg.size = per;	/* all but one must go: every one is picked */
	cache_evict_maybe(X.c);
	cold_data_name(nodes[0], name, sizeof(name));
	ck_assert_msg(wait_for(ugate_holds, strrchr(name, '/') + 1, 10000),
		      "the oldest file's removal is not under way");
	ck_assert_uint_eq(stats().cold_files, 0);

	/* File 1 is picked, not taken yet: the open takes it back. */
	reads = mem_be_calls(X.be, MEM_OP_READ);
	f = fx_reopen(nodes[1]);
	pattern(want, BS, 0, 71);
	ck_assert_int_eq(cache_read(f, NULL, got, BS, 0), (ssize_t)BS);
	assert_same(got, want, BS, "a picked file opened again");
	ck_assert_uint_eq(mem_be_calls(X.be, MEM_OP_READ), reads);

	/* File 0 is being removed: its open waits for that. */
	o.node = nodes[0];
	ck_assert_int_eq(pthread_create(&o.t, NULL, bg_open_main, &o), 0);
	sleep_ms(200);
	ck_assert_msg(!bg_done(&o),
		      "an open of a file being removed did not wait for it");
	X.cfg.size = 0;	/* from here on, no eviction of what is read */
	ugate_set(false);
	pthread_join(o.t, NULL);
	ck_assert_int_eq(o.rc, 0);
	track_file(o.f);
	pattern(want, BS, 0, 70);
	ck_assert_int_eq(cache_read(o.f, NULL, got, BS, 0), (ssize_t)BS);
	assert_same(got, want, BS, "a file opened while it was removed");
	ck_assert_uint_gt(mem_be_calls(X.be, MEM_OP_READ), reads);

	ck_assert(wait_for(none_removing, NULL, 20000));
	ck_assert_uint_eq(stats().cold_files_evicted, N - 1);
	ck_assert(cold_exists(nodes[0]));	/* cached again */
	ck_assert(cold_exists(nodes[1]));	/* taken back */
	for (i = 2; i < N; i++)
		ck_assert_msg(!cold_exists(nodes[i]), "file %d kept", i);
	ck_assert_int_eq(trash_entries(), 0);
	/* ... and what is cached is right, now from the cache file */
	reads = mem_be_calls(X.be, MEM_OP_READ);
	ck_assert_int_eq(cache_read(o.f, NULL, got, BS, 0), (ssize_t)BS);
	assert_same(got, want, BS, "the file cached again");
	ck_assert_uint_eq(mem_be_calls(X.be, MEM_OP_READ), reads);
	for (i = 0; i < N; i++)
		be_node_put(X.be, nodes[i]);
	free(want);
	free(got);
}
END_TEST

/*
 * kill -9 in the middle of a removal: the index is in trash/, the data
 * file still in data/.  The next start removes both before it serves,
 * the scan does not count the file, and an open fetches it again.
 */
START_TEST(test_evict_crash_mid_removal)
{
	enum { N = 8 };
	struct be_node *nodes[N];
	unsigned char *want = malloc(BS), *got = malloc(BS);
	struct cache_file *f;
	unsigned long reads;
	char name[256];
	int i, status;
	pid_t pid;

	ck_assert_ptr_nonnull(want);
	ck_assert_ptr_nonnull(got);
	cold_set(N, nodes);
	ck_assert_int_eq(fx_close(), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		/* The crashing run: the oldest file's removal is held at
		 * the gate, and the process dies there. */
		fx_open();
		ck_assert(wait_for(scan_done, NULL, 20000));
		ugate_set(true);
		X.cfg.size = 1;
		cache_evict_maybe(X.c);
		cold_data_name(nodes[0], name, sizeof(name));
		if (wait_for(ugate_holds, strrchr(name, '/') + 1, 10000))
			kill(getpid(), SIGKILL);	/* kill -9 */
		_exit(3);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
		      "the crashing run did not get to the removal (status %d)",
		      status);
	ck_assert_int_eq(trash_entries(), 1);
	ck_assert(cold_exists(nodes[0]));	/* half removed */

	fx_open();
	ck_assert_int_eq(trash_entries(), 0);
	ck_assert(!cold_exists(nodes[0]));
	ck_assert(wait_for(scan_done, NULL, 20000));
	ck_assert_uint_eq(stats().scan_files, N - 1);
	ck_assert_uint_eq(stats().cold_files, N - 1);
	reads = mem_be_calls(X.be, MEM_OP_READ);
	f = fx_reopen(nodes[0]);
	pattern(want, BS, 0, 70);
	ck_assert_int_eq(cache_read(f, NULL, got, BS, 0), (ssize_t)BS);
	assert_same(got, want, BS, "the file whose removal was cut short");
	ck_assert_uint_gt(mem_be_calls(X.be, MEM_OP_READ), reads);
	for (i = 0; i < N; i++)
		be_node_put(X.be, nodes[i]);
	free(want);
	free(got);
}
END_TEST

/*
 * BUG (cache/cache.c, cache_close(): pthread_key_delete(c->ring_key)
 * does not run the key's destructor): the io_uring of every thread still
 * alive at cache_close() -- at least the caller's -- is leaked, one
 * io_uring fd and its mappings per thread.
 */
START_TEST(bug_cache_close_leaks_ring)
{
	unsigned char buf[4096] = { 0 };
	struct cache_file *f;
	int before, after;
	struct dirent *e;
	DIR *d;

	fx_open();
	f = fx_file("warm", buf, sizeof(buf), NULL);
	ck_assert_int_eq(cache_read(f, NULL, buf, sizeof(buf), 0), 4096);
	ck_assert_int_eq(fx_close(), 0);

	d = opendir("/proc/self/fd");
	for (before = 0; (e = readdir(d));)
		before++;
	closedir(d);
	fx_open();
	f = fx_file("warm", buf, sizeof(buf), NULL);
	ck_assert_int_eq(cache_read(f, NULL, buf, sizeof(buf), 0), 4096);
	ck_assert_int_eq(fx_close(), 0);
	d = opendir("/proc/self/fd");
	for (after = 0; (e = readdir(d));)
		after++;
	closedir(d);
	ck_assert_msg(after == before,
		      "%d file descriptors before cache_open, %d after cache_close",
		      before, after);
}
END_TEST

/*
 * cache_read_pin hands out the cache file for a zero-copy reply only when
 * the daemon need not see the bytes (verify=off) and the range is wholly
 * present in one chunk; the fd at the offset holds exactly the data.
 */
START_TEST(test_read_pin)
{
	size_t len = 2 * CS + 5000;
	unsigned char *want = pattern_new(len, 31), *got = malloc(len);
	struct cache_file *f;
	struct cache_pin pin;
	ssize_t n;

	X.cfg.verify = 0;
	fx_open();
	f = fx_file("pin", NULL, 0, NULL);
	write_all(f, want, len, 0, len);

	n = cache_read_pin(f, NULL, 70000, 1000, &pin);
	ck_assert_int_eq(n, 70000);
	ck_assert_int_eq(pread(pin.fd, got, 70000, (off_t)pin.off), 70000);
	assert_same(got, want + 1000, 70000, "pinned range read from the fd");
	cache_read_unpin(&pin);
	ck_assert_uint_eq(stats().bytes_read_splice, 70000);

	/* Short at the end of the file, 0 past it. */
	n = cache_read_pin(f, NULL, 100000, len - 300, &pin);
	ck_assert_int_eq(n, 300);
	cache_read_unpin(&pin);
	ck_assert_int_eq(cache_read_pin(f, NULL, 10, len + 10, &pin), 0);
	/* Across a chunk edge: copied instead. */
	ck_assert_int_eq(cache_read_pin(f, NULL, 2000, CS - 1000, &pin),
			 -EAGAIN);
	ck_assert_uint_eq(stats().bytes_read_splice, 70300);
	free(want);
	free(got);
}
END_TEST

/* With verify=on every byte is checked on its way: never pinned. */
START_TEST(test_read_pin_not_with_verify)
{
	unsigned char *want = pattern_new(BS, 32);
	struct cache_file *f;
	struct cache_pin pin;

	fx_open();
	f = fx_file("pin", NULL, 0, NULL);
	write_all(f, want, BS, 0, BS);
	ck_assert_int_eq(cache_read_pin(f, NULL, BS, 0, &pin), -EAGAIN);
	ck_assert_uint_eq(stats().bytes_read_splice, 0);
	free(want);
}
END_TEST

/*
 * Blocks not present (a cold file) are not pinned; once a read fetched
 * them they are: in the buffer the fetch filled (mem, with verify on or
 * off: its bytes were hashed as they came), and once that no longer
 * holds them (a write to the chunk), as the cache file with verify=off
 * only.  The reader that fetched got its bytes from the fetch itself
 * (one backend read, right bytes).
 */
static void read_pin_after_fetch(int verify)
{
	size_t len = CS + 777;
	unsigned char *want = pattern_new(len, 33), *got = malloc(len);
	struct cache_file *f;
	struct cache_pin pin;

	X.cfg.verify = verify;
	fx_open();
	f = fx_file("cold", want, len, NULL);
	ck_assert_int_eq(cache_read_pin(f, NULL, 4096, 0, &pin), -EAGAIN);
	ck_assert_int_eq(cache_read(f, NULL, got, 5000, 3000), 5000);
	assert_same(got, want + 3000, 5000, "cold read served from the fetch");
	ck_assert_uint_eq(mem_be_calls(X.be, MEM_OP_READ), 1);
	ck_assert_int_eq(cache_read_pin(f, NULL, 4096, 8192, &pin), 4096);
	ck_assert_ptr_nonnull(pin.mem);
	assert_same(pin.mem, want + 8192, 4096, "pinned in the fetch's buffer");
	cache_read_unpin(&pin);
	/* A write to the chunk: the buffer no longer holds it. */
	memset(want + 100, 0x5a, 10);
	write_all(f, want + 100, 10, 100, len);
	if (verify) {
		ck_assert_int_eq(cache_read_pin(f, NULL, 4096, 8192, &pin),
				 -EAGAIN);
	} else {
		ck_assert_int_eq(cache_read_pin(f, NULL, 4096, 8192, &pin),
				 4096);
		ck_assert_ptr_null(pin.mem);
		ck_assert_int_eq(pread(pin.fd, got, 4096, (off_t)pin.off),
				 4096);
		assert_same(got, want + 8192, 4096, "pinned in the cache file");
		cache_read_unpin(&pin);
	}
	ck_assert_int_eq(cache_read(f, NULL, got, len, 0), (ssize_t)len);
	assert_same(got, want, len, "read after the write");
	free(want);
	free(got);
}

START_TEST(test_read_pin_after_fetch)
{
	read_pin_after_fetch(0);
}
END_TEST

START_TEST(test_read_pin_kept_verify)
{
	read_pin_after_fetch(1);
}
END_TEST

/*
 * cache_direct=on: fills, read-backs and checked reads use O_DIRECT, the
 * rest the buffered descriptor; cache_direct=fills (the default): only
 * fills.  Data of unaligned sizes and offsets comes back right, reaches
 * the backend, and the checksums hold.
 */
static void direct_io(enum cache_direct_mode mode)
{
	size_t len = 2 * CS + 12345, blen = CS + 4097;
	unsigned char *want = pattern_new(len, 34), *got = malloc(len);
	unsigned char *back = pattern_new(blen, 35);
	struct cache_file *f, *g;
	struct be_node *n;

	X.cfg.direct = mode;
	fx_open();
	f = fx_file("w", NULL, 0, &n);
	/* fills: the O_DIRECT descriptor is opened for the first fill */
	ck_assert_int_eq(file_fds_get(f, FILE_FD_DATA), 0);
	if (mode == CACHE_DIRECT_ON)
		ck_assert_int_ge(file_fd(f, FILE_FD_SLOT_DIRECT), 0);
	else
		ck_assert_int_lt(file_fd(f, FILE_FD_SLOT_DIRECT), 0);
	file_fds_put(f);
	ck_assert_int_eq(file_fds_get(f, FILE_FD_DATA | FILE_FD_FILL), 0);
	ck_assert_int_ge(file_fd(f, FILE_FD_SLOT_DIRECT), 0);
	file_fds_put(f);
	write_all(f, want, len, 0, 100003);
	ck_assert_int_eq(cache_file_flush(f), 0);
	assert_backend_has(n, want, len, "backend after a flush with O_DIRECT read-backs");
	assert_cache_has(f, want, len, "written data read with O_DIRECT");

	g = fx_file("cold", back, blen, NULL);
	ck_assert_uint_eq(read_all(g, NULL, got, blen, 0, 65536), blen);
	assert_same(got, back, blen, "cold file of an unaligned size");
	ck_assert_uint_eq(read_all(g, NULL, got, blen, 0, 4096), blen);
	assert_same(got, back, blen, "read again from the O_DIRECT-filled cache");
	ck_assert_uint_eq(stats().checksum_errors, 0);
	free(want);
	free(back);
	free(got);
}

START_TEST(test_direct_io)
{
	direct_io(CACHE_DIRECT_ON);
}
END_TEST

START_TEST(test_direct_fills)
{
	direct_io(CACHE_DIRECT_FILLS);
}
END_TEST

/*
 * A read after a fetch is served from the buffer the fetch filled
 * (reads_kept), not read back from the cache file; a write to the chunk,
 * a truncate and a later fetch of other chunks (which take the pool's
 * buffers) each make it read the cache file again, and every byte read
 * is right.
 */
START_TEST(test_reads_kept)
{
	size_t len = 3 * CS + 4321;
	unsigned char *data = pattern_new(len, 37), *got = malloc(len);
	unsigned char patch[100];
	struct cache_file *f;
	struct be_attr a;
	uint64_t kept;

	X.cfg.direct = CACHE_DIRECT_FILLS;
	fx_open();
	f = fx_file("kept", data, len, NULL);
	ck_assert_uint_eq(read_all(f, NULL, got, len, 0, 65536), len);
	assert_same(got, data, len, "first read (fetches)");
	kept = stats().reads_kept;
	ck_assert_uint_eq(read_all(f, NULL, got, len, 0, 65536), len);
	assert_same(got, data, len, "second read");
	ck_assert_uint_gt(stats().reads_kept, kept);

	/* a write to chunk 1: its kept buffer is stale, the rest not */
	memset(patch, 0xa5, sizeof(patch));
	write_all(f, patch, sizeof(patch), CS + 10, sizeof(patch));
	memcpy(data + CS + 10, patch, sizeof(patch));
	ck_assert_uint_eq(read_all(f, NULL, got, len, 0, 4096), len);
	assert_same(got, data, len, "read after a write");
	/* a truncate into chunk 2, then a size past it again */
	ck_assert_int_eq(cache_file_truncate(f, NULL, 2 * CS + 7, &a), 0);
	ck_assert_int_eq(cache_file_truncate(f, NULL, len, &a), 0);
	memset(data + 2 * CS + 7, 0, len - (2 * CS + 7));
	ck_assert_uint_eq(read_all(f, NULL, got, len, 0, 8192), len);
	assert_same(got, data, len, "read after truncates");
	ck_assert_uint_eq(stats().checksum_errors, 0);
	free(data);
	free(got);
}
END_TEST

/*
 * The flusher's GETATTR after a flush (refresh_gen) answered with the
 * attributes from before a truncate of this node's that ran meanwhile,
 * and put that stale generation over the truncate's own.  The next
 * upload's conflict check then took this node's truncate for another
 * client's change and set the local data aside (CI, posix-difftest on
 * nfs, seed 824254753).  The answer must be dropped.
 */
START_TEST(bug_refresh_gen_overwrites_own_truncate)
{
	unsigned char *want = pattern_new(2 * BS, 36);
	struct cache_file *f;
	struct be_attr a;
	unsigned long done;
	int i;

	fx_open();
	f = fx_file("rg", NULL, 0, NULL);
	write_all(f, want, BS, 0, BS);
	ck_assert_int_eq(cache_file_flush(f), 0);	/* the check is done */

	mem_be_gate(X.be, MEM_OP_GETATTR, 1);
	write_all(f, want + BS, BS, BS, BS);
	ck_assert_int_eq(cache_file_flush(f), 0);
	/* The refresh's answer (size 2 * BS) waits at the gate. */
	for (i = 0; i < 500 && mem_be_waiting(X.be, MEM_OP_GETATTR) < 1; i++)
		usleep(10000);
	ck_assert_uint_ge(mem_be_waiting(X.be, MEM_OP_GETATTR), 1);
	ck_assert_int_eq(cache_file_truncate(f, NULL, 100, &a), 0);
	done = mem_be_completed(X.be, MEM_OP_GETATTR) +
	       mem_be_waiting(X.be, MEM_OP_GETATTR);
	mem_be_gate(X.be, MEM_OP_GETATTR, 0);
	for (i = 0; i < 500 && mem_be_completed(X.be, MEM_OP_GETATTR) < done;
	     i++)
		usleep(10000);
	usleep(50000);	/* the answer is applied, or not, under f->lock */
	pthread_mutex_lock(&f->lock);
	ck_assert_uint_eq(f->gen.size, 100);
	pthread_mutex_unlock(&f->lock);
	free(want);
}
END_TEST

struct cold_reader {
	struct cache_file *f;
	uint64_t off;
	size_t len;
	unsigned char *got;
	ssize_t n;
};

static void *cold_reader_main(void *arg)
{
	struct cold_reader *r = arg;

	r->n = cache_read(r->f, NULL, r->got, r->len, r->off);
	return NULL;
}

/*
 * Readers that wait for a chunk being fetched share that one fetch and
 * may take their bytes from it while it is still being written to the
 * cache file (reads_from_fetch); either way every byte is right.
 */
START_TEST(test_readers_share_fetch)
{
	size_t len = CS;
	unsigned char *want = pattern_new(len, 37);
	struct cold_reader r[4];
	pthread_t t[4];
	struct cache_file *f;
	int i;

	fx_open();
	f = fx_file("shared", want, len, NULL);
	mem_be_set_delay(X.be, MEM_OP_READ, 200);
	for (i = 0; i < 4; i++) {
		r[i] = (struct cold_reader){ .f = f, .off = (uint64_t)i * 60001,
					     .len = 50000,
					     .got = malloc(50000) };
		ck_assert_int_eq(pthread_create(&t[i], NULL, cold_reader_main,
						&r[i]), 0);
	}
	for (i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		ck_assert_int_eq(r[i].n, 50000);
		assert_same(r[i].got, want + r[i].off, 50000,
			    "a reader of a chunk being fetched");
		free(r[i].got);
	}
	ck_assert_uint_eq(mem_be_calls(X.be, MEM_OP_READ), 1);
	fprintf(stderr, "test_readers_share_fetch: %llu of 3 waiting readers served from the fetch\n",
		(unsigned long long)stats().reads_from_fetch);
	free(want);
}
END_TEST

/*
 * A pin of a range whose fetch is in flight waits for it and hands out
 * the fetch's own buffer (the reply is written from it, no copy), held
 * until the unpin: the fetch ends only then.  One backend read.
 */
START_TEST(test_pin_waits_for_fetch)
{
	size_t len = CS;
	unsigned char *want = pattern_new(len, 38);
	struct cold_reader r;
	struct cache_file *f;
	struct cache_pin pin;
	pthread_t t;

	fx_open();
	f = fx_file("pinf", want, len, NULL);
	mem_be_set_delay(X.be, MEM_OP_READ, 200);
	r = (struct cold_reader){ .f = f, .off = 0, .len = 5000,
				  .got = malloc(5000) };
	ck_assert_int_eq(pthread_create(&t, NULL, cold_reader_main, &r), 0);
	usleep(50 * 1000);	/* its fetch is in flight */
	ck_assert_int_eq(cache_read_pin(f, NULL, 50000, 60001, &pin), 50000);
	ck_assert_ptr_nonnull(pin.mem);
	assert_same(pin.mem, want + 60001, 50000, "pinned from the fetch");
	usleep(50 * 1000);
	assert_same(pin.mem, want + 60001, 50000, "still there at the unpin");
	cache_read_unpin(&pin);
	pthread_join(t, NULL);
	ck_assert_int_eq(r.n, 5000);
	assert_same(r.got, want, 5000, "the fetching reader");
	ck_assert_uint_eq(mem_be_calls(X.be, MEM_OP_READ), 1);
	ck_assert_uint_eq(stats().reads_from_fetch + stats().reads_kept, 1);
	free(r.got);
	free(want);
}
END_TEST

/* ---- credentials ------------------------------------------------------- */

static const struct be_cred alice = { .uid = 1500, .gid = 100, .ngroups = 1,
				      .groups = { 1600 } };
static const struct be_cred bob = { .uid = 1501, .gid = 100 };

/*
 * Uploads go out with the credentials of the user whose writes they
 * carry; a chunk holds one writer's data, so a write by another user to
 * a dirty chunk uploads the first writer's bytes first, as that writer.
 */
START_TEST(test_cred_upload_per_writer)
{
	size_t len = 2 * CS;
	unsigned char *want = pattern_new(len, 91), *p = malloc(len);
	struct cache_file *f;
	struct be_node *n;

	fx_open();
	f = fx_file("cr", want, len, &n);
	pattern(p, len, 0, 92);
	write_all(f, p, CS, 0, CS);	/* the daemon's: no cred */
	ck_assert_int_eq(cache_write(f, &alice, p + CS, 1000, CS), 1000);
	memcpy(want, p, CS);
	memcpy(want + CS, p + CS, 1000);
	ck_assert_int_eq(cache_flush_all(X.c), 0);
	ck_assert_uint_ge(mem_be_calls_by(X.be, MEM_OP_WRITE, -1), 1);
	ck_assert_uint_eq(mem_be_calls_by(X.be, MEM_OP_WRITE, 1500), 1);
	ck_assert_uint_eq(mem_be_calls_by(X.be, MEM_OP_WRITE, 1501), 0);

	/* alice, then bob, in the same chunk: alice's bytes go first. */
	ck_assert_int_eq(cache_write(f, &alice, p + 5000, 100, 5000), 100);
	ck_assert_uint_eq(mem_be_calls_by(X.be, MEM_OP_WRITE, 1500), 1);
	ck_assert_int_eq(cache_write(f, &bob, p + 9000, 100, 9000), 100);
	ck_assert_uint_eq(mem_be_calls_by(X.be, MEM_OP_WRITE, 1500), 2);
	ck_assert_uint_ge(mem_be_calls_by(X.be, MEM_OP_COMMIT, 1500), 1);
	ck_assert_int_eq(cache_flush_all(X.c), 0);
	ck_assert_uint_eq(mem_be_calls_by(X.be, MEM_OP_WRITE, 1501), 1);
	ck_assert_int_eq(mem_be_last_uid(X.be, MEM_OP_COMMIT), 1501);
	memcpy(want + 5000, p + 5000, 100);
	memcpy(want + 9000, p + 9000, 100);
	assert_backend_has(n, want, len, "backend after two writers");
	free(want);
	free(p);
}
END_TEST

/* A fetch goes out with the reader's credentials (the stream's). */
START_TEST(test_cred_fetch_as_reader)
{
	size_t len = CS;
	unsigned char *want = pattern_new(len, 93), *got = malloc(len);
	struct cache_stream s = { .cred = &bob };
	struct cache_file *f;

	fx_open();
	f = fx_file("fr", want, len, NULL);
	ck_assert_int_eq(cache_read(f, &s, got, len, 0), (ssize_t)len);
	assert_same(got, want, len, "read as bob");
	ck_assert_int_eq(mem_be_last_uid(X.be, MEM_OP_READ), 1501);
	free(want);
	free(got);
}
END_TEST

/*
 * The journal keeps each dirty chunk's writer: after a crash, the restart
 * uploads alice's chunk as alice and bob's as bob.
 */
START_TEST(test_cred_replay)
{
	size_t len = 2 * CS;
	unsigned char *orig = pattern_new(len, 94), *want = malloc(len);
	unsigned char p1[700], p2[900];
	const struct crash_write w[2] = { { p1, sizeof(p1), 100 },
					  { p2, sizeof(p2), CS + 10 } };
	const struct be_cred *const who[2] = { &alice, &bob };
	struct be_node *n;

	n = fx_backend_file("rc", orig, len);
	memcpy(want, orig, len);
	pattern(p1, sizeof(p1), 100, 95);
	memcpy(want + 100, p1, sizeof(p1));
	pattern(p2, sizeof(p2), CS + 10, 96);
	memcpy(want + CS + 10, p2, sizeof(p2));
	crash_after_writes(n, 0, w, who, 2);
	fx_open();
	ck_assert_int_eq(cache_flush_all(X.c), 0);
	assert_backend_has(n, want, len, "backend after the replay");
	ck_assert_uint_eq(mem_be_calls_by(X.be, MEM_OP_WRITE, 1500), 1);
	ck_assert_uint_eq(mem_be_calls_by(X.be, MEM_OP_WRITE, 1501), 1);
	ck_assert_uint_eq(mem_be_calls_by(X.be, MEM_OP_WRITE, -1), 0);
	free(orig);
	free(want);
}
END_TEST

struct test_entry {
	const char *name;
	const TTest *fn;
	bool bug;	/* reproduced the bug in its comment until fixed */
};

#define T(fn) { #fn, fn, false }
#define B(fn) { #fn, fn, true }


/* STAGEFS_TEST=name runs only the tests whose name contains name. */
/* Descriptors of this process open on cache files (data/, index/). */
static int cache_dir_fds(void)
{
	char d[160];
	int n;

	snprintf(d, sizeof(d), "%s/data/", X.dir);
	n = fds_under(d, NULL);
	snprintf(d, sizeof(d), "%s/index/", X.dir);
	n += fds_under(d, NULL);
	return n;
}

/*
 * Issue 14: many files written and closed one after another must not
 * keep their cache files open.  With max_fds = 6 (three files' data and
 * index), 200 files are written, flushed and put; the descriptors under
 * the cache dir stay at 6.  A splice pin keeps its descriptor however
 * many files come after it, and every file reads back right afterwards
 * (its descriptors opened again).
 */
#define FD_FILES 200
START_TEST(test_fd_limit)
{
	struct be_node *nodes[FD_FILES];
	struct cache_file *f;
	struct cache_pin pin;
	struct be_attr a;
	struct stat st0, st1;
	char name[32], buf[64], got[64];
	int i;

	X.cfg.max_fds = 6;
	X.cfg.verify = 0;	/* the splice pin needs it off */
	fx_open();
	for (i = 0; i < FD_FILES; i++) {
		snprintf(name, sizeof(name), "many-%d", i);
		ck_assert_int_eq(mem_be_put_file(X.be, name, NULL, 0,
						 &nodes[i], &a), 0);
		ck_assert_int_eq(cache_file_get(X.c, 0, nodes[i], &a, &f), 0);
		snprintf(buf, sizeof(buf), "file %d of many\n", i);
		ck_assert_int_eq(cache_write(f, NULL, buf, strlen(buf), 0),
				 (ssize_t)strlen(buf));
		ck_assert_int_eq(cache_file_close(f), 0);
		cache_file_put(f);
		ck_assert_int_le(cache_dir_fds(), 6);
	}

	/* A pinned read of file 0 holds its descriptor through the churn. */
	f = fx_reopen(nodes[0]);
	ck_assert_int_eq(cache_read_pin(f, NULL, 10, 0, &pin), 10);
	ck_assert_int_eq(fstat(pin.fd, &st0), 0);
	for (i = 1; i < 60; i++) {
		struct cache_file *g;

		ck_assert_int_eq(X.be->ops->getattr(X.be, NULL, nodes[i], &a), 0);
		ck_assert_int_eq(cache_file_get(X.c, 0, nodes[i], &a, &g), 0);
		snprintf(buf, sizeof(buf), "file %d of many\n", i);
		ck_assert_int_eq(cache_read(g, NULL, got, sizeof(got), 0),
				 (ssize_t)strlen(buf));
		ck_assert_int_eq(memcmp(got, buf, strlen(buf)), 0);
		cache_file_put(g);
	}
	ck_assert_int_eq(fstat(pin.fd, &st1), 0);
	ck_assert_uint_eq(st0.st_ino, st1.st_ino);
	ck_assert_int_eq(pread(pin.fd, got, 10, 0), 10);
	ck_assert_int_eq(memcmp(got, "file 0 of ", 10), 0);
	cache_read_unpin(&pin);

	/* Every file again, through descriptors opened anew. */
	for (i = 0; i < FD_FILES; i++) {
		ssize_t n;

		ck_assert_int_eq(X.be->ops->getattr(X.be, NULL, nodes[i], &a), 0);
		ck_assert_int_eq(cache_file_get(X.c, 0, nodes[i], &a, &f), 0);
		snprintf(buf, sizeof(buf), "file %d of many\n", i);
		n = cache_read(f, NULL, got, sizeof(got), 0);
		ck_assert_int_eq(n, (ssize_t)strlen(buf));
		ck_assert_int_eq(memcmp(got, buf, (size_t)n), 0);
		cache_file_put(f);
		ck_assert_int_le(cache_dir_fds(), 6);
	}
	ck_assert_int_eq(stats().bytes_read_backend, 0);	/* all cached */
	for (i = 0; i < FD_FILES; i++)
		be_node_put(X.be, nodes[i]);
}
END_TEST

static Suite *cache_suite(void)
{
	const char *only = getenv("STAGEFS_TEST");
	Suite *s = suite_create("cache");
	TCase *tc = tcase_create("core");
	TCase *bugs = tcase_create("known_bugs");
	const struct test_entry tests[] = {
		T(test_write_read_back),
		T(test_flush_uploads),
		T(test_writeback_off),
		T(test_partial_block_merge),
		T(test_partial_block_merge_across_chunks),
		T(test_range_upload_only_written),
		T(test_range_flush_before_disjoint_write),
		T(test_range_truncate_cuts),
		T(test_range_replay),
		T(test_holes_and_eof),
		T(test_truncate_dirty),
		T(test_truncate_clean),
		T(test_close_to_open),
		T(test_checksum_clean_block_refetched),
		T(test_checksum_dirty_block_eio),
		T(test_scrub_clean_block_refetched),
		T(test_scrub_dirty_block_left),
		T(test_scrub_skips_passthrough_writer),
		T(test_scrub_during_writes),
		T(test_evict_lru_order),
		T(test_evict_never_dirty),
		T(test_cold_files_oldest_first),
		T(test_evict_writer_does_not_wait_for_unlink),
		T(test_evict_writer_waits_when_no_room),
		T(test_evict_open_during_removal),
		T(test_evict_crash_mid_removal),
		T(test_backpressure),
		T(test_flush_retries_counted),
		T(test_flush_permanent_error_reported),
		T(test_commit_lost_writes_rewritten),
		T(test_estale_drops_dirty),
		T(test_lock_busy),
		T(test_node_id_kept),
		T(test_restart_keeps_clean),
		T(test_crash_recovery_overwrite),
		T(test_crash_stale_sum_uploaded_as_is),
		T(test_table_trim_unused_files),
		T(test_journal_compacted_while_running),
		T(test_jstate_rewrite_same),
		T(test_prefetch_sequential),
		T(test_prefetch_not_random),
		T(test_no_false_conflict_upload_during_fetch),
		T(bug_fetch_during_open_leaves_stale_sum),
		T(test_read_pin),
		T(test_read_pin_not_with_verify),
		T(test_read_pin_after_fetch),
		T(test_read_pin_kept_verify),
		T(test_pin_waits_for_fetch),
		T(test_direct_io),
		T(test_direct_fills),
		T(test_reads_kept),
		T(test_readers_share_fetch),
		T(test_fd_limit),
		T(test_pt_zero_growth_gives_size),
		T(test_pt_truncate_keeps_writer_bytes),
		T(test_pt_zero_runs_left_out),
		B(bug_pt_refresh_keeps_other_nodes_gap),
		B(bug_pt_release_takes_other_nodes_change),
		B(bug_refresh_takes_change_after_commit),
		B(bug_rehash_uploads_leftover_blocks),
		B(bug_pt_crash_replay_sends_zero_runs),
		B(bug_pt_crash_runs_before_dirty),
		T(bug_flush_batch_rehash_vs_truncate),
		B(bug_pt_write_during_refetch_lost),
		T(bug_rehash_during_daemon_writes),
		T(test_pt_crash_fresh_data_files),
		T(test_cred_upload_per_writer),
		T(test_cred_fetch_as_reader),
		T(test_cred_replay),
		B(bug_crash_recovery_extending_write_lost),
		B(bug_estale_on_conflict_check_retried_forever),
		B(bug_estale_race_dirty_chunks_underflow),
		B(bug_write_after_gone_hangs_flush),
		B(bug_write_during_upload_false_checksum_error),
		B(bug_partial_cache_write_corrupts_dirty_block),
		B(bug_partial_fill_corrupts_dirty_block),
		B(bug_read_during_write_eio),
		B(bug_restart_evicts_hot_before_cold),
		B(bug_cache_close_leaks_ring),
		B(bug_refresh_gen_overwrites_own_truncate),
		B(bug_batch_backoff_per_chunk),
		B(bug_flush_all_waits_for_corrupt_block),
	};
	size_t i;

	tcase_add_checked_fixture(tc, fx_setup, fx_teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(bugs, fx_setup, fx_teardown);
	tcase_set_timeout(bugs, 60);
	for (i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		if (only && !strstr(tests[i].name, only))
			continue;
		tcase_add_test(tests[i].bug ? bugs : tc, tests[i].fn);
	}
	suite_add_tcase(s, tc);
	suite_add_tcase(s, bugs);
	return s;
}

int main(void)
{
	SRunner *sr;
	int failed;

	strcpy(base_dir, "/tmp/stagefs-unit-cache-XXXXXX");
	if (!mkdtemp(base_dir)) {
		perror("mkdtemp");
		return EXIT_FAILURE;
	}
	log_init(0, getenv("STAGEFS_TEST_LOG") ? LOG_LVL_DEBUG : LOG_LVL_ERR);
	sr = srunner_create(cache_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	nftw(base_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
