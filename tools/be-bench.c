/* SPDX-License-Identifier: GPL-2.0 */
/*
 * be-bench.c - throughput of a backend, driven directly (no FUSE).
 *
 *   be-bench [--size MiB] [--nconnect N] [--repeat R] BACKEND_SPEC
 *
 * Writes one large file through the backend (4 MiB pieces, up to 16 in
 * flight through the asynchronous write op, then a commit) and reads it
 * back the same way, R rounds, printing MB/s (10^6 bytes/s) per round and
 * the median.  For an nfs:// backend each of our rounds alternates with
 * nfs-cp (Debian libnfs-utils) reading the same file from the server into
 * a local tmpfs file and writing a local file of the same size to the server, and
 * the medians of both and the ratio ours/nfs-cp are printed.  Every file
 * it makes is removed at the end.
 */
#include "backend.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PIECE (4u << 20)
#define DEPTH 16

struct pipeline {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int inflight;
	int err;		/* first error, -errno */
	int bad_data;
};

struct slot {
	struct pipeline *p;
	uint8_t *buf;
	struct iovec iov;
	uint64_t off;
	int busy;
	int reading;
};

static struct pipeline pl = { .lock = PTHREAD_MUTEX_INITIALIZER,
			      .cond = PTHREAD_COND_INITIALIZER };
static struct slot slots[DEPTH];

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void io_cb(void *cookie, ssize_t res)
{
	struct slot *s = cookie;
	uint64_t stamp;

	pthread_mutex_lock(&pl.lock);
	if (res < 0) {
		if (!pl.err)
			pl.err = (int)res;
	} else if ((size_t)res != s->iov.iov_len) {
		if (!pl.err)
			pl.err = -EIO;
	} else if (s->reading) {
		memcpy(&stamp, s->buf, sizeof(stamp));
		if (stamp != s->off)
			pl.bad_data++;
	}
	s->busy = 0;
	pl.inflight--;
	pthread_cond_broadcast(&pl.cond);
	pthread_mutex_unlock(&pl.lock);
}

/* One pass over [0, size): returns 0 or -errno. */
static int pass(struct be *be, struct be_node *n, uint64_t size, int reading)
{
	uint64_t off = 0;
	struct slot *s;
	int i, rc;

	pl.err = 0;
	pl.bad_data = 0;
	while (off < size) {
		pthread_mutex_lock(&pl.lock);
		while (pl.inflight == DEPTH && !pl.err)
			pthread_cond_wait(&pl.cond, &pl.lock);
		if (pl.err) {
			pthread_mutex_unlock(&pl.lock);
			break;
		}
		s = NULL;
		for (i = 0; i < DEPTH && !s; i++)
			if (!slots[i].busy)
				s = &slots[i];
		s->busy = 1;
		pl.inflight++;
		pthread_mutex_unlock(&pl.lock);

		s->off = off;
		s->reading = reading;
		s->iov.iov_base = s->buf;
		s->iov.iov_len = size - off < PIECE ? size - off : PIECE;
		if (reading) {
			rc = be->ops->read(be, NULL, n, &s->iov, 1, off, io_cb, s);
		} else {
			memcpy(s->buf, &off, sizeof(off));
			rc = be->ops->write(be, NULL, n, &s->iov, 1, off, io_cb, s);
		}
		if (rc < 0) {
			pthread_mutex_lock(&pl.lock);
			s->busy = 0;
			pl.inflight--;
			if (!pl.err)
				pl.err = rc;
			pthread_mutex_unlock(&pl.lock);
			break;
		}
		off += s->iov.iov_len;
	}
	pthread_mutex_lock(&pl.lock);
	while (pl.inflight > 0)
		pthread_cond_wait(&pl.cond, &pl.lock);
	rc = pl.err;
	if (!rc && pl.bad_data) {
		fprintf(stderr, "be-bench: %d pieces read back wrong\n",
			pl.bad_data);
		rc = -EIO;
	}
	pthread_mutex_unlock(&pl.lock);
	return rc;
}

/* Run argv, return its wall time in seconds, or -1 if it failed. */
static double run_timed(char *const argv[])
{
	double t0 = now_s();
	int st;
	pid_t pid = fork();

	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY);

		if (fd >= 0)
			dup2(fd, STDOUT_FILENO);
		execvp(argv[0], argv);
		fprintf(stderr, "be-bench: cannot run %s: %s\n", argv[0],
			strerror(errno));
		_exit(127);
	}
	if (waitpid(pid, &st, 0) < 0)
		return -1;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "be-bench: %s %s %s failed (status %d)\n",
			argv[0], argv[1], argv[2], st);
		return -1;
	}
	return now_s() - t0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	double *c;
	double m;

	if (n == 0)
		return 0;
	c = malloc(sizeof(*c) * (size_t)n);
	if (!c)
		return 0;
	memcpy(c, v, sizeof(*c) * (size_t)n);
	qsort(c, (size_t)n, sizeof(*c), cmp_double);
	m = n % 2 ? c[n / 2] : (c[n / 2 - 1] + c[n / 2]) / 2;
	free(c);
	return m;
}

/* A local file of size bytes, for nfs-cp to upload. */
static int make_local(const char *path, uint64_t size)
{
	uint64_t off = 0;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ssize_t w;

	if (fd < 0)
		return -errno;
	while (off < size) {
		size_t len = size - off < PIECE ? size - off : PIECE;

		memcpy(slots[0].buf, &off, sizeof(off));
		w = pwrite(fd, slots[0].buf, len, (off_t)off);
		if (w < 0) {
			close(fd);
			return -errno;
		}
		off += (uint64_t)w;
	}
	close(fd);
	return 0;
}

/* Unlink name in dir if it is there (no error logged for a missing one). */
static void rm_if_exists(struct be *be, struct be_node *dir, const char *name)
{
	struct be_node *n = NULL;

	if (be->ops->lookup(be, NULL, dir, name, &n, NULL) < 0)
		return;
	be_node_put(be, n);
	be->ops->unlink(be, NULL, dir, name);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: be-bench [--size MiB] [--nconnect N] [--repeat R] BACKEND_SPEC\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "size", required_argument, NULL, 's' },
		{ "nconnect", required_argument, NULL, 'n' },
		{ "repeat", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct be_params params = { 0 };
	unsigned long size_mib = 1024, repeat = 3;
	double *ours_w, *ours_r, *cp_w, *cp_r;
	char name[64], cpname[80], local[256], sink[256], url_r[1024],
		url_w[1024];
	struct statvfs sv;
	const char *spec, *tmpdir;
	struct be_node *root = NULL, *n = NULL;
	struct be *be;
	uint64_t size;
	int opt, i, rc, is_nfs, ncp_r = 0, ncp_w = 0, ret = 1;
	unsigned long r;
	char err[512];
	double t, mb;

	while ((opt = getopt_long(argc, argv, "s:n:r:h", lopts, NULL)) != -1) {
		switch (opt) {
		case 's': size_mib = strtoul(optarg, NULL, 0); break;
		case 'n': params.nconnect = (unsigned int)strtoul(optarg, NULL, 0); break;
		case 'r': repeat = strtoul(optarg, NULL, 0); break;
		default: usage();
		}
	}
	if (optind != argc - 1 || !size_mib || !repeat || repeat > 100)
		usage();
	spec = argv[optind];
	is_nfs = strncmp(spec, "nfs://", 6) == 0;
	size = (uint64_t)size_mib << 20;
	mb = (double)size / 1e6;

	log_init(0, LOG_LVL_WARN);
	rc = be_open(spec, &params, &be, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "be-bench: %s\n", err);
		return 1;
	}
	for (i = 0; i < DEPTH; i++) {
		slots[i].buf = aligned_alloc(4096, PIECE);
		if (!slots[i].buf) {
			fprintf(stderr, "be-bench: out of memory\n");
			return 1;
		}
		memset(slots[i].buf, 0xa5 ^ i, PIECE);
	}
	ours_w = calloc(repeat, sizeof(double));
	ours_r = calloc(repeat, sizeof(double));
	cp_w = calloc(repeat, sizeof(double));
	cp_r = calloc(repeat, sizeof(double));
	if (!ours_w || !ours_r || !cp_w || !cp_r)
		return 1;

	snprintf(name, sizeof(name), "be-bench.%ld", (long)getpid());
	snprintf(cpname, sizeof(cpname), "%s.nfs-cp", name);
	/*
	 * nfs-cp's local files: the upload source, and the download sink
	 * (nfs-cp opens its destination O_EXCL, so /dev/null will not do).
	 * On tmpfs if it has room, so the local side costs a memcpy.
	 */
	tmpdir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	if (!getenv("TMPDIR") && statvfs("/dev/shm", &sv) == 0 &&
	    access("/dev/shm", W_OK) == 0 &&
	    (uint64_t)sv.f_bavail * sv.f_frsize > 2 * size + (256u << 20))
		tmpdir = "/dev/shm";
	snprintf(local, sizeof(local), "%s/%s.local", tmpdir, name);
	snprintf(sink, sizeof(sink), "%s/%s.sink", tmpdir, name);
	{
		const char *sp = spec ? spec : "";
		const char *sep = *sp && sp[strlen(sp) - 1] == '/' ? "" : "/";

		snprintf(url_r, sizeof(url_r), "%s%s%s", sp, sep, name);
		snprintf(url_w, sizeof(url_w), "%s%s%s", sp, sep, cpname);
	}

	rc = be->ops->root(be, NULL, &root, NULL);
	if (rc < 0) {
		fprintf(stderr, "be-bench: root: %s\n", strerror(-rc));
		goto out;
	}
	if (is_nfs) {
		rc = make_local(local, size);
		if (rc < 0) {
			fprintf(stderr, "be-bench: %s: %s\n", local,
				strerror(-rc));
			goto out;
		}
	}
	printf("be-bench: %s (%s), %lu MiB, %u KiB pieces, %d in flight, nconnect %u, %lu rounds\n",
	       spec, be->ops->name, size_mib, PIECE >> 10, DEPTH,
	       params.nconnect, repeat);

	for (r = 0; r < repeat; r++) {
		/* Our write: a fresh file, all pieces, then commit. */
		rm_if_exists(be, root, name);
		rc = be->ops->create(be, NULL, root, name, 0644, 1, &n,
				     NULL);
		if (rc < 0) {
			fprintf(stderr, "be-bench: create %s: %s\n", name,
				strerror(-rc));
			goto out;
		}
		t = now_s();
		rc = pass(be, n, size, 0);
		if (!rc)
			rc = be_commit(be, NULL, n);
		if (rc < 0) {
			fprintf(stderr, "be-bench: write: %s\n", strerror(-rc));
			goto out;
		}
		ours_w[r] = mb / (now_s() - t);
		printf("round %lu: be write %8.1f MB/s\n", r + 1, ours_w[r]);
		fflush(stdout);

		if (is_nfs) {
			char *argv_w[] = { (char *)"nfs-cp", local, url_w, NULL };

			rm_if_exists(be, root, cpname);
			t = run_timed(argv_w);
			if (t > 0) {
				cp_w[ncp_w++] = mb / t;
				printf("round %lu: nfs-cp write %8.1f MB/s\n",
				       r + 1, cp_w[ncp_w - 1]);
			}
		}

		t = now_s();
		rc = pass(be, n, size, 1);
		if (rc < 0) {
			fprintf(stderr, "be-bench: read: %s\n", strerror(-rc));
			goto out;
		}
		ours_r[r] = mb / (now_s() - t);
		printf("round %lu: be read  %8.1f MB/s\n", r + 1, ours_r[r]);
		fflush(stdout);

		if (is_nfs) {
			char *argv_r[] = { (char *)"nfs-cp", url_r, sink,
					   NULL };

			unlink(sink);
			t = run_timed(argv_r);
			unlink(sink);
			if (t > 0) {
				cp_r[ncp_r++] = mb / t;
				printf("round %lu: nfs-cp read  %8.1f MB/s\n",
				       r + 1, cp_r[ncp_r - 1]);
			}
		}
		fflush(stdout);
		be_node_put(be, n);
		n = NULL;
	}

	printf("median: be write %.1f MB/s, be read %.1f MB/s\n",
	       median(ours_w, (int)repeat), median(ours_r, (int)repeat));
	ret = 0;
	if (is_nfs) {
		double mw = median(cp_w, ncp_w), mr = median(cp_r, ncp_r);

		printf("median: nfs-cp write %.1f MB/s, nfs-cp read %.1f MB/s\n",
		       mw, mr);
		if (mw > 0 && mr > 0)
			printf("ratio ours/nfs-cp: write %.2f, read %.2f\n",
			       median(ours_w, (int)repeat) / mw,
			       median(ours_r, (int)repeat) / mr);
		if (ncp_w < (int)repeat || ncp_r < (int)repeat) {
			fprintf(stderr, "be-bench: nfs-cp failed in some rounds\n");
			ret = 1;
		}
	}
out:
	be_node_put(be, n);
	if (root) {
		rm_if_exists(be, root, name);
		rm_if_exists(be, root, cpname);
		be_node_put(be, root);
	}
	if (is_nfs) {
		unlink(local);
		unlink(sink);
	}
	be_close(be);
	return ret;
}
