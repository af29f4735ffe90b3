/* SPDX-License-Identifier: GPL-2.0 */
/*
 * cache-gen.c - a cache dir holding many small cached files, made fast
 * (issue 14: the cache-scale case of tools/stagefs-bench).
 *
 *   cache-gen [--size BYTES] [--per-dir N] [--reopen N] [--start I]
 *             BACKEND_DIR CACHE_DIR COUNT
 *
 * Makes COUNT files of --size bytes (default 4096) on a posix backend,
 * BACKEND_DIR/scale/dNNNN/fNNNNNNN, --per-dir (default 10,000) to a
 * directory, and caches each one the way the daemon does: the cache's
 * own cache_open(), cache_file_get() and cache_read() on a backend opened
 * with be_open(BACKEND_DIR), so the data and index files it leaves are the
 * daemon's by construction and cannot drift from them.  BACKEND_DIR must
 * be the very string the daemon is given as BACKEND (the cache names a
 * backend by a hash of it).
 *
 * The backend files are sparse (ftruncate): they cost an inode, not
 * blocks; the cache's copies hold real blocks, as fetched data does.
 * The cache is closed and opened again every --reopen files (default
 * 100,000) so that the generator's own table stays small.  --start I
 * numbers the files from I (to add to an existing set).  Prints progress
 * to stderr and, at the end, one line: "files N bytes B seconds S".
 */
#include "backend.h"
#include "cache.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: cache-gen [--size BYTES] [--per-dir N] [--reopen N] [--start I] BACKEND_DIR CACHE_DIR COUNT\n");
	exit(2);
}

struct gen {
	struct be *be;
	struct be_node *root, *top, *dir;
	struct cache_config cfg;
	struct cache *c;
	uint64_t size;
	char *buf;
	int top_fd, dir_fd;
	long cur_dir;
};

static int open_cache(struct gen *g)
{
	char err[512];
	int rc = cache_open(&g->cfg, &g->be, 1, &g->c, err, sizeof(err));

	if (rc < 0)
		fprintf(stderr, "cache-gen: %s\n", err);
	return rc;
}

/* The backend directory of file i: made on first use, then looked up
 * through the backend as the daemon would. */
static int enter_dir(struct gen *g, long d)
{
	char name[32];
	int rc;

	if (g->cur_dir == d)
		return 0;
	if (g->dir_fd >= 0)
		close(g->dir_fd);
	if (g->dir)
		be_node_put(g->be, g->dir);
	g->dir = NULL;
	snprintf(name, sizeof(name), "d%04ld", d);
	if (mkdirat(g->top_fd, name, 0755) < 0 && errno != EEXIST)
		return -errno;
	g->dir_fd = openat(g->top_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (g->dir_fd < 0)
		return -errno;
	rc = g->be->ops->lookup(g->be, NULL, g->top, name, &g->dir, NULL);
	if (rc < 0)
		return rc;
	g->cur_dir = d;
	return 0;
}

static int one_file(struct gen *g, long i)
{
	struct cache_file *f;
	struct be_node *n;
	struct be_attr a;
	char name[32];
	ssize_t got;
	int fd, rc;

	snprintf(name, sizeof(name), "f%07ld", i);
	fd = openat(g->dir_fd, name, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	rc = ftruncate(fd, (off_t)g->size) < 0 ? -errno : 0;
	close(fd);
	if (rc < 0)
		return rc;
	rc = g->be->ops->lookup(g->be, NULL, g->dir, name, &n, &a);
	if (rc < 0)
		return rc;
	rc = cache_file_get(g->c, 0, n, &a, &f);
	if (rc == 0) {
		got = cache_read(f, NULL, g->buf, g->size, 0);
		if (got != (ssize_t)g->size)
			rc = got < 0 ? (int)got : -EIO;
		cache_file_put(f);
	}
	be_node_put(g->be, n);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "size", required_argument, NULL, 's' },
		{ "per-dir", required_argument, NULL, 'p' },
		{ "reopen", required_argument, NULL, 'r' },
		{ "start", required_argument, NULL, 'i' },
		{ NULL, 0, NULL, 0 },
	};
	struct gen g = { .size = 4096, .top_fd = -1, .dir_fd = -1,
			 .cur_dir = -1 };
	long count, per_dir = 10000, reopen = 100000, start = 0, i;
	struct be_params params = { 0 };
	char err[512], path[4096];
	double t0;
	int opt, rc;

	while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (opt) {
		case 's': g.size = strtoull(optarg, NULL, 0); break;
		case 'p': per_dir = strtol(optarg, NULL, 0); break;
		case 'r': reopen = strtol(optarg, NULL, 0); break;
		case 'i': start = strtol(optarg, NULL, 0); break;
		default: usage();
		}
	}
	if (argc - optind != 3 || g.size == 0 || g.size > (4u << 20) ||
	    per_dir < 1 || reopen < 1 || start < 0)
		usage();
	count = strtol(argv[optind + 2], NULL, 0);
	log_init(0, LOG_LVL_WARN);
	/* The daemon's defaults (fs/opts.c); no limit: nothing is evicted
	 * while the set is made. */
	g.cfg.dir = argv[optind + 1];
	g.cfg.chunk_size = 4ULL << 20;
	g.cfg.dirty_max = 8ULL << 20;
	g.cfg.writeback = 1;
	g.cfg.verify = 1;
	g.cfg.flushers = 1;
	g.buf = malloc(g.size);
	if (!g.buf)
		return 1;
	if (mkdir(g.cfg.dir, 0700) < 0 && errno != EEXIST) {
		perror(g.cfg.dir);
		return 1;
	}
	snprintf(path, sizeof(path), "%s/scale", argv[optind]);
	if (mkdir(path, 0755) < 0 && errno != EEXIST) {
		perror(path);
		return 1;
	}
	g.top_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (g.top_fd < 0) {
		perror(path);
		return 1;
	}
	rc = be_open(argv[optind], &params, &g.be, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "cache-gen: %s\n", err);
		return 1;
	}
	rc = g.be->ops->root(g.be, NULL, &g.root, NULL);
	if (rc == 0)
		rc = g.be->ops->lookup(g.be, NULL, g.root, "scale", &g.top,
				       NULL);
	if (rc < 0) {
		fprintf(stderr, "cache-gen: %s/scale: %s\n", argv[optind],
			strerror(-rc));
		return 1;
	}
	if (open_cache(&g) < 0)
		return 1;
	t0 = now_s();
	for (i = start; i < start + count; i++) {
		if (i > start && (i - start) % reopen == 0) {
			if (cache_close(g.c) < 0 || open_cache(&g) < 0)
				return 1;
			fprintf(stderr, "cache-gen: %ld files, %.0f/s\n",
				i - start, (double)(i - start) / (now_s() - t0));
		}
		rc = enter_dir(&g, i / per_dir);
		if (rc == 0)
			rc = one_file(&g, i);
		if (rc < 0) {
			fprintf(stderr, "cache-gen: file %ld: %s\n", i,
				strerror(-rc));
			cache_close(g.c);
			return 1;
		}
	}
	rc = cache_close(g.c);
	if (g.dir_fd >= 0)
		close(g.dir_fd);
	if (g.dir)
		be_node_put(g.be, g.dir);
	be_node_put(g.be, g.top);
	be_node_put(g.be, g.root);
	be_close(g.be);
	close(g.top_fd);
	free(g.buf);
	printf("files %ld bytes %llu seconds %.1f\n", count,
	       (unsigned long long)count * g.size, now_s() - t0);
	return rc < 0;
}
