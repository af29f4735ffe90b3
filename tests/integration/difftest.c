/* SPDX-License-Identifier: GPL-2.0 */
/*
 * difftest.c - seeded differential test of a file system against a native
 * directory.
 *
 *   difftest [-s SEED] [-n OPS] [-c EVERY] [-v] [-H N] [-X OP,...] [-O LIST]
 *            REF_DIR TEST_DIR
 *   difftest -C REF_DIR TEST_DIR
 *
 * Runs the same pseudo-random sequence of file system calls (open with
 * O_CREAT/O_TRUNC/O_APPEND/O_EXCL, pwrite at random and sparse offsets,
 * write, pread, read, lseek, ftruncate, truncate, fsync, close and reopen,
 * stat, fstat, rename, link, unlink, mkdir, rmdir, symlink, readlink,
 * chmod, readdir) in REF_DIR (a native directory) and in TEST_DIR (a
 * stagefs mount), call by call, and compares return values, errno, the
 * bytes read and the attributes (type, mode, size, nlink, uid, gid; not
 * times). Every EVERY ops (default 1000) and at the end it also compares
 * the whole trees: names, attributes, contents, symlink targets and which
 * names are hard links of one inode. Both directories must start empty.
 *
 * The sequence depends only on SEED (and on the results, which are equal
 * until the first difference), so a failure is reproduced by running the
 * same SEED again. On the first difference it prints the seed, the op
 * index, the call, both results and the last ops before it, and exits 1.
 *
 * -O 3,10-12 runs only those ops of the sequence, each with the same
 * parameters as in the full run (every op draws from its own random
 * stream), to shrink a failure to the few ops that cause it.
 *
 * -X leaves ops (by name: open, pwrite, rename, ...) or the open flags
 * O_TRUNC, O_APPEND, O_EXCL out of the mix, to look past a known bug; the
 * same seed then gives a different sequence. -v prints every op; -H N
 * prints the last N ops (default 40) with a difference, and an op that
 * opens a file notes the inode number the mount gave it (to match the
 * daemon's log lines, which name files by it).
 *
 * -C only compares two existing trees (e.g. the reference against the
 * backend directory after unmounting) and exits 1 on a difference.
 *
 * Exit: 0 no difference, 1 difference, 2 usage or setup error.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define NSLOTS 8
#define CHUNK (4 << 20)		/* stagefs' default chunk_size */
#define MAXPATH 4096
#define MAXIO (2 << 20)
#define HIST_DEFAULT 40

static uint64_t seed, rng_state;
static long op_index = -1;
static int verbose;
static const char *root[2];	/* 0: reference, 1: file system under test */
static char *iobuf[2], *wbuf;
static char (*hist)[320];	/* the last ops, for the report */
static long *hist_idx;
static int hist_n, hist_len = HIST_DEFAULT;

struct slot {
	int fd[2];
	char path[256];
	int flags;
};
static struct slot slots[NSLOTS];
static int no_flags;	/* open flags -X left out */
static char xopts[256];	/* the -X argument, for the report */
static const char *only_arg;	/* the -O argument, for the report */

/* ---- pseudo-random numbers (splitmix64) ------------------------------ */

static uint64_t rnd64(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t rnd(uint64_t n)
{
	return n ? rnd64() % n : 0;
}

/* ---- reporting ------------------------------------------------------ */

static const char *ename(int e)
{
	static char buf[2][32];
	static int which;
	const char *n = NULL;

	switch (e) {
	case 0: n = "0"; break;
	case EPERM: n = "EPERM"; break;
	case ENOENT: n = "ENOENT"; break;
	case EIO: n = "EIO"; break;
	case EBADF: n = "EBADF"; break;
	case EACCES: n = "EACCES"; break;
	case EEXIST: n = "EEXIST"; break;
	case EXDEV: n = "EXDEV"; break;
	case ENOTDIR: n = "ENOTDIR"; break;
	case EISDIR: n = "EISDIR"; break;
	case EINVAL: n = "EINVAL"; break;
	case EFBIG: n = "EFBIG"; break;
	case ENOSPC: n = "ENOSPC"; break;
	case ESPIPE: n = "ESPIPE"; break;
	case EROFS: n = "EROFS"; break;
	case EMLINK: n = "EMLINK"; break;
	case ENAMETOOLONG: n = "ENAMETOOLONG"; break;
	case ENOTEMPTY: n = "ENOTEMPTY"; break;
	case ELOOP: n = "ELOOP"; break;
	case ENOSYS: n = "ENOSYS"; break;
	case EOPNOTSUPP: n = "EOPNOTSUPP"; break;
	case ESTALE: n = "ESTALE"; break;
	case ENXIO: n = "ENXIO"; break;
	case EBUSY: n = "EBUSY"; break;
	case ETXTBSY: n = "ETXTBSY"; break;
	case EOVERFLOW: n = "EOVERFLOW"; break;
	}
	if (n)
		return n;
	which ^= 1;
	snprintf(buf[which], sizeof(buf[which]), "errno %d", e);
	return buf[which];
}

static void note(const char *fmt, ...)
{
	int i = hist_n++ % hist_len;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(hist[i], sizeof(hist[i]), fmt, ap);
	va_end(ap);
	hist_idx[i] = op_index;
	if (verbose)
		printf("op %ld: %s\n", op_index, hist[i]);
}

static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "difftest: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	exit(2);
}

/* First difference: report and exit 1. */
static void mismatch(const char *what, const char *fmt, ...)
{
	int i, first = hist_n > hist_len ? hist_n - hist_len : 0;
	va_list ap;

	fflush(stdout);
	fprintf(stderr, "difftest: MISMATCH seed=%" PRIu64 " op=%ld: %s\n",
		seed, op_index, what);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\ndifftest: ref=%s test=%s\n", root[0], root[1]);
	fprintf(stderr, "difftest: last ops before the difference:\n");
	for (i = first; i < hist_n; i++)
		fprintf(stderr, "  op %ld: %s\n", hist_idx[i % hist_len],
			hist[i % hist_len]);
	fprintf(stderr, "difftest: reproduce with: difftest -s %" PRIu64
		" -n %ld%s%s%s%s REF_DIR TEST_DIR (on empty dirs)\n", seed,
		op_index + 1, *xopts ? " -X " : "", xopts,
		only_arg ? " -O " : "", only_arg ? only_arg : "");
	exit(1);
}

/* ---- comparing results ---------------------------------------------- */

struct res {
	long rc;
	int err;
};

static long n_ok, n_err;

static void cmp_res(const char *call, struct res r[2])
{
	if (r[0].rc < 0)
		n_err++;
	else
		n_ok++;
	if ((r[0].rc < 0) != (r[1].rc < 0) ||
	    (r[0].rc < 0 && r[0].err != r[1].err) ||
	    (r[0].rc >= 0 && r[0].rc != r[1].rc))
		mismatch(call, "  ref:  rc=%ld %s\n  test: rc=%ld %s",
			 r[0].rc, r[0].rc < 0 ? ename(r[0].err) : "",
			 r[1].rc, r[1].rc < 0 ? ename(r[1].err) : "");
}

static void res_set(struct res *r, long rc)
{
	r->rc = rc;
	r->err = rc < 0 ? errno : 0;
}

/* Attributes that must agree (not times, not inode numbers, not blocks). */
static void cmp_stat(const char *call, const struct stat *a,
		     const struct stat *b)
{
	bool dir = S_ISDIR(a->st_mode);

	if (a->st_mode != b->st_mode || a->st_nlink != b->st_nlink ||
	    a->st_uid != b->st_uid || a->st_gid != b->st_gid ||
	    (!dir && a->st_size != b->st_size))
		mismatch(call,
			 "  ref:  mode=%06o nlink=%lu uid=%u gid=%u size=%lld\n"
			 "  test: mode=%06o nlink=%lu uid=%u gid=%u size=%lld",
			 (unsigned)a->st_mode, (unsigned long)a->st_nlink,
			 (unsigned)a->st_uid, (unsigned)a->st_gid,
			 (long long)a->st_size,
			 (unsigned)b->st_mode, (unsigned long)b->st_nlink,
			 (unsigned)b->st_uid, (unsigned)b->st_gid,
			 (long long)b->st_size);
}

static void cmp_bytes(const char *call, const char *a, const char *b,
		      size_t n, long long base)
{
	size_t i;

	if (memcmp(a, b, n) == 0)
		return;
	for (i = 0; i < n && a[i] == b[i]; i++)
		;
	mismatch(call, "  contents differ first at byte %lld (offset %zu of "
		 "%zu read): ref=0x%02x test=0x%02x",
		 base + (long long)i, i, n, (unsigned char)a[i],
		 (unsigned char)b[i]);
}

static void full(char *out, int side, const char *rel)
{
	if (snprintf(out, MAXPATH, "%s/%s", root[side], rel) >= MAXPATH)
		die("path too long: %s/%s", root[side], rel);
}

/* ---- names ---------------------------------------------------------- */

static const char *const dnames[] = { "d0", "d1", "d2" };
static const char *const fnames[] = { "f0", "f1", "f2", "f3", "f4", "f5" };
static const char *const lnames[] = { "l0", "l1" };

/* A parent "", "dX/" or "dX/dY/". */
static void gen_parent(char *out, size_t len)
{
	uint64_t r = rnd(100);
	int depth = r < 50 ? 0 : r < 85 ? 1 : 2, i;

	out[0] = 0;
	for (i = 0; i < depth; i++) {
		strncat(out, dnames[rnd(3)], len - strlen(out) - 1);
		strncat(out, "/", len - strlen(out) - 1);
	}
}

enum kind { K_FILE, K_DIR, K_ANY };

static void gen_path(char *out, size_t len, enum kind k)
{
	uint64_t r = rnd(100);
	const char *name;

	gen_parent(out, len);
	if (k == K_ANY)
		k = r < 60 ? K_FILE : r < 85 ? K_DIR : K_ANY;
	else if (r < 8)
		k = k == K_FILE ? K_DIR : K_FILE;	/* the wrong kind, for errors */
	if (k == K_FILE)
		name = fnames[rnd(6)];
	else if (k == K_DIR)
		name = dnames[rnd(3)];
	else
		name = lnames[rnd(2)];
	strncat(out, name, len - strlen(out) - 1);
}

/* ---- offsets, sizes, data ------------------------------------------- */

static off_t gen_off(void)
{
	uint64_t r = rnd(100);
	off_t o;

	if (r < 50)
		o = (off_t)rnd(256 << 10);
	else if (r < 75)	/* around a chunk boundary */
		o = (off_t)(1 + rnd(3)) * CHUNK - (64 << 10) +
		    (off_t)rnd(128 << 10);
	else if (r < 93)
		o = (off_t)rnd(2 << 20);
	else			/* far out: a sparse file */
		o = (off_t)rnd(20 << 20);
	if (rnd(4) == 0)
		o &= ~(off_t)4095;
	return o;
}

static size_t gen_len(void)
{
	uint64_t r = rnd(100);
	size_t n;

	if (r < 40)
		n = 1 + rnd(512);
	else if (r < 80)
		n = 1 + rnd(64 << 10);
	else if (r < 96)
		n = 1 + rnd(256 << 10);
	else
		n = 1 + rnd(MAXIO);
	if (rnd(4) == 0 && n >= 4096)
		n &= ~(size_t)4095;
	return n;
}

static off_t gen_size(void)
{
	uint64_t r = rnd(100);

	if (r < 15)
		return 0;
	if (r < 30)
		return (off_t)rnd(4096);
	return gen_off();
}

static void fill(char *buf, size_t n)
{
	uint64_t x = rnd64();
	size_t i;

	for (i = 0; i < n; i++) {
		if ((i & 7) == 0)
			x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		buf[i] = (char)(x >> (8 * (i & 7)));
	}
}

/* ---- whole-tree comparison ------------------------------------------ */

struct ent {
	char name[256];
	unsigned char type;
};

static int ent_cmp(const void *a, const void *b)
{
	return strcmp(((const struct ent *)a)->name,
		      ((const struct ent *)b)->name);
}

/* Sorted names of a directory (without . and ..); -1 and errno on error. */
static int list_dir(const char *path, struct ent **out)
{
	DIR *d = opendir(path);
	struct dirent *de;
	struct ent *v = NULL;
	int n = 0, cap = 0;

	if (!d)
		return -1;
	errno = 0;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			v = realloc(v, (size_t)cap * sizeof(*v));
			if (!v)
				die("out of memory");
		}
		snprintf(v[n].name, sizeof(v[n].name), "%s", de->d_name);
		v[n].type = de->d_type;
		n++;
	}
	if (errno) {
		int e = errno;

		closedir(d);
		free(v);
		errno = e;
		return -1;
	}
	closedir(d);
	if (n)
		qsort(v, (size_t)n, sizeof(*v), ent_cmp);
	*out = v;
	return n;
}

struct inoref {
	dev_t dev;
	ino_t ino;
	char rel[MAXPATH];
};
static struct inoref *inos[2];
static int ninos[2], capinos[2];

/* The first name seen (in sorted walk order) for this inode. */
static const char *ino_first(int side, const struct stat *st, const char *rel)
{
	int i;

	for (i = 0; i < ninos[side]; i++)
		if (inos[side][i].ino == st->st_ino &&
		    inos[side][i].dev == st->st_dev)
			return inos[side][i].rel;
	if (ninos[side] == capinos[side]) {
		capinos[side] = capinos[side] ? capinos[side] * 2 : 64;
		inos[side] = realloc(inos[side], (size_t)capinos[side] *
				     sizeof(struct inoref));
		if (!inos[side])
			die("out of memory");
	}
	inos[side][ninos[side]].dev = st->st_dev;
	inos[side][ninos[side]].ino = st->st_ino;
	snprintf(inos[side][ninos[side]].rel, MAXPATH, "%s", rel);
	return inos[side][ninos[side]++].rel;
}

static void cmp_contents(const char *rel)
{
	char p[2][MAXPATH], what[MAXPATH + 64];
	int fd[2], i;
	long long off = 0;

	snprintf(what, sizeof(what), "tree: contents of %s", rel);
	for (i = 0; i < 2; i++) {
		full(p[i], i, rel);
		fd[i] = open(p[i], O_RDONLY | O_NOFOLLOW);
		if (fd[i] < 0)
			mismatch(what, "  cannot open %s: %s", p[i],
				 strerror(errno));
	}
	for (;;) {
		ssize_t n[2];

		for (i = 0; i < 2; i++) {
			n[i] = pread(fd[i], iobuf[i], MAXIO, off);
			if (n[i] < 0)
				mismatch(what, "  read %s at %lld: %s", p[i],
					 off, strerror(errno));
		}
		if (n[0] != n[1])
			mismatch(what, "  at offset %lld: ref read %zd bytes, "
				 "test read %zd", off, n[0], n[1]);
		if (n[0] == 0)
			break;
		cmp_bytes(what, iobuf[0], iobuf[1], (size_t)n[0], off);
		off += n[0];
	}
	close(fd[0]);
	close(fd[1]);
}

static void cmp_tree(const char *rel)
{
	char p[2][MAXPATH], what[MAXPATH + 64], sub[MAXPATH];
	struct ent *e[2] = { NULL, NULL };
	int n[2], i, j;

	for (i = 0; i < 2; i++) {
		full(p[i], i, rel);
		n[i] = list_dir(p[i], &e[i]);
		if (n[i] < 0)
			mismatch("tree", "  cannot list %s: %s", p[i],
				 strerror(errno));
	}
	for (i = 0, j = 0; i < n[0] || j < n[1];) {
		int c = i >= n[0] ? 1 : j >= n[1] ? -1 :
			strcmp(e[0][i].name, e[1][j].name);

		if (c)
			mismatch("tree", "  directory '%s': '%s' only in %s",
				 rel, c < 0 ? e[0][i].name : e[1][j].name,
				 c < 0 ? "ref" : "test");
		i++;
		j++;
	}
	for (i = 0; i < n[0]; i++) {
		struct stat st[2];
		const char *first[2];
		int s;

		snprintf(sub, sizeof(sub), "%s%s%s", rel, *rel ? "/" : "",
			 e[0][i].name);
		snprintf(what, sizeof(what), "tree: lstat %s", sub);
		for (s = 0; s < 2; s++) {
			full(p[s], s, sub);
			if (lstat(p[s], &st[s]) < 0)
				mismatch(what, "  lstat %s: %s", p[s],
					 strerror(errno));
		}
		cmp_stat(what, &st[0], &st[1]);
		if (e[0][i].type != DT_UNKNOWN && e[1][i].type != DT_UNKNOWN &&
		    e[0][i].type != e[1][i].type)
			mismatch(what, "  d_type ref=%d test=%d",
				 e[0][i].type, e[1][i].type);
		if (S_ISREG(st[0].st_mode)) {
			for (s = 0; s < 2; s++)
				first[s] = ino_first(s, &st[s], sub);
			if (strcmp(first[0], first[1]))
				mismatch(what, "  hard links differ: ref: same "
					 "inode as '%s', test: same inode as "
					 "'%s'", first[0], first[1]);
			cmp_contents(sub);
		} else if (S_ISLNK(st[0].st_mode)) {
			char t[2][MAXPATH];

			for (s = 0; s < 2; s++) {
				ssize_t k = readlink(p[s], t[s], MAXPATH - 1);

				if (k < 0)
					mismatch(what, "  readlink %s: %s",
						 p[s], strerror(errno));
				t[s][k] = 0;
			}
			if (strcmp(t[0], t[1]))
				mismatch(what, "  symlink target ref='%s' "
					 "test='%s'", t[0], t[1]);
		} else if (S_ISDIR(st[0].st_mode)) {
			cmp_tree(sub);
		}
	}
	free(e[0]);
	free(e[1]);
}

static void cmp_trees(void)
{
	ninos[0] = ninos[1] = 0;
	cmp_tree("");
}

/* ---- the operations ------------------------------------------------- */

static const char *flagstr(int f)
{
	static char b[128];

	snprintf(b, sizeof(b), "%s%s%s%s%s",
		 (f & O_ACCMODE) == O_RDONLY ? "O_RDONLY" :
		 (f & O_ACCMODE) == O_WRONLY ? "O_WRONLY" : "O_RDWR",
		 f & O_CREAT ? "|O_CREAT" : "", f & O_EXCL ? "|O_EXCL" : "",
		 f & O_TRUNC ? "|O_TRUNC" : "", f & O_APPEND ? "|O_APPEND" : "");
	return b;
}

static int pick_open_slot(void)
{
	int i, n = 0, c[NSLOTS];

	for (i = 0; i < NSLOTS; i++)
		if (slots[i].fd[0] >= 0 || slots[i].fd[1] >= 0)
			c[n++] = i;
	return n ? c[rnd((uint64_t)n)] : -1;
}

static void slot_close(int i)
{
	char call[400];
	struct res r[2];
	int s;

	snprintf(call, sizeof(call), "close(slot %d '%s')", i, slots[i].path);
	note("%s", call);
	for (s = 0; s < 2; s++) {
		res_set(&r[s], slots[i].fd[s] >= 0 ? close(slots[i].fd[s]) : 0);
		slots[i].fd[s] = -1;
	}
	cmp_res(call, r);
}

static void do_open(const char *path, int flags, mode_t mode, int reopen_slot)
{
	char call[400], p[MAXPATH];
	struct res r[2];
	int i, s, fd[2];

	if (reopen_slot >= 0) {
		i = reopen_slot;
	} else {
		for (i = 0; i < NSLOTS; i++)
			if (slots[i].fd[0] < 0 && slots[i].fd[1] < 0)
				break;
		if (i == NSLOTS) {
			i = (int)rnd(NSLOTS);
			slot_close(i);
		}
	}
	snprintf(call, sizeof(call), "open('%s', %s, 0%o) -> slot %d", path,
		 flagstr(flags), (unsigned)mode, i);
	note("%s", call);
	for (s = 0; s < 2; s++) {
		full(p, s, path);
		fd[s] = open(p, flags, mode);
		res_set(&r[s], fd[s] < 0 ? -1 : 0);
	}
	for (s = 0; s < 2; s++)
		slots[i].fd[s] = fd[s];
	if (fd[1] >= 0) {	/* to match the daemon's log lines */
		struct stat st;

		if (fstat(fd[1], &st) == 0)
			note("  (slot %d: test inode %llx)", i,
			     (unsigned long long)st.st_ino);
	}
	snprintf(slots[i].path, sizeof(slots[i].path), "%s", path);
	slots[i].flags = flags;
	cmp_res(call, r);
}

static void op_open(void)
{
	static const mode_t modes[] = { 0644, 0600, 0755, 0666, 0640, 0444 };
	char path[256];
	uint64_t r = rnd(100);
	int flags = r < 70 ? O_RDWR : r < 85 ? O_WRONLY : O_RDONLY;

	gen_path(path, sizeof(path), rnd(10) ? K_FILE : K_ANY);
	if (rnd(100) < 80)
		flags |= O_CREAT;
	if (rnd(100) < 20)
		flags |= O_TRUNC;
	if (rnd(100) < 20)
		flags |= O_APPEND;
	if ((flags & O_CREAT) && rnd(100) < 12)
		flags |= O_EXCL;
	do_open(path, flags & ~no_flags, modes[rnd(6)], -1);
}

static void op_reopen(void)
{
	int i = pick_open_slot();
	char path[256];
	int flags;

	if (i < 0) {
		op_open();
		return;
	}
	snprintf(path, sizeof(path), "%s", slots[i].path);
	flags = slots[i].flags & ~(O_CREAT | O_EXCL | O_TRUNC);
	slot_close(i);
	do_open(path, flags, 0, i);
}

static void op_close(void)
{
	int i = pick_open_slot();

	if (i >= 0)
		slot_close(i);
}

static void op_pwrite(bool positional)
{
	int i = pick_open_slot(), s;
	size_t n = gen_len();
	off_t off = gen_off();
	char call[400];
	struct res r[2];

	if (i < 0) {
		op_open();
		return;
	}
	fill(wbuf, n);
	if (positional)
		snprintf(call, sizeof(call), "pwrite(slot %d '%s' %s, len %zu, "
			 "off %lld)", i, slots[i].path,
			 flagstr(slots[i].flags), n, (long long)off);
	else
		snprintf(call, sizeof(call), "write(slot %d '%s' %s, len %zu)",
			 i, slots[i].path, flagstr(slots[i].flags), n);
	note("%s", call);
	for (s = 0; s < 2; s++)
		res_set(&r[s], positional ?
			pwrite(slots[i].fd[s], wbuf, n, off) :
			write(slots[i].fd[s], wbuf, n));
	cmp_res(call, r);
}

static void op_pread(bool positional)
{
	int i = pick_open_slot(), s;
	size_t n = gen_len();
	off_t off = gen_off();
	char call[400];
	struct res r[2];

	if (i < 0) {
		op_open();
		return;
	}
	if (positional)
		snprintf(call, sizeof(call), "pread(slot %d '%s', len %zu, "
			 "off %lld)", i, slots[i].path, n, (long long)off);
	else
		snprintf(call, sizeof(call), "read(slot %d '%s', len %zu)", i,
			 slots[i].path, n);
	note("%s", call);
	if (!positional)	/* where the read starts, for the report */
		off = lseek(slots[i].fd[0], 0, SEEK_CUR);
	for (s = 0; s < 2; s++)
		res_set(&r[s], positional ?
			pread(slots[i].fd[s], iobuf[s], n, off) :
			read(slots[i].fd[s], iobuf[s], n));
	cmp_res(call, r);
	if (r[0].rc > 0)
		cmp_bytes(call, iobuf[0], iobuf[1], (size_t)r[0].rc,
			  (long long)off);
}

static void op_lseek(void)
{
	int i = pick_open_slot(), s, whence;
	struct stat st;
	off_t off;
	char call[400];
	struct res r[2];

	if (i < 0) {
		op_open();
		return;
	}
	/* Where lseek goes in a directory is the file system's business. */
	if (fstat(slots[i].fd[0], &st) == 0 && S_ISDIR(st.st_mode))
		return;
	switch (rnd(3)) {
	case 0:
		whence = SEEK_SET;
		off = gen_off();
		break;
	case 1:
		whence = SEEK_END;
		off = (off_t)rnd(8192) - 4096;
		break;
	default:
		whence = SEEK_CUR;
		off = (off_t)rnd(8192) - 4096;
		break;
	}
	snprintf(call, sizeof(call), "lseek(slot %d '%s', %lld, %s)", i,
		 slots[i].path, (long long)off,
		 whence == SEEK_SET ? "SEEK_SET" :
		 whence == SEEK_END ? "SEEK_END" : "SEEK_CUR");
	note("%s", call);
	for (s = 0; s < 2; s++)
		res_set(&r[s], lseek(slots[i].fd[s], off, whence));
	cmp_res(call, r);
}

static void op_ftruncate(void)
{
	int i = pick_open_slot(), s;
	off_t size = gen_size();
	char call[400];
	struct res r[2];

	if (i < 0) {
		op_open();
		return;
	}
	snprintf(call, sizeof(call), "ftruncate(slot %d '%s' %s, %lld)", i,
		 slots[i].path, flagstr(slots[i].flags), (long long)size);
	note("%s", call);
	for (s = 0; s < 2; s++)
		res_set(&r[s], ftruncate(slots[i].fd[s], size));
	cmp_res(call, r);
}

static void op_fsync(void)
{
	int i = pick_open_slot(), s;
	bool data = rnd(2);
	char call[400];
	struct res r[2];

	if (i < 0) {
		op_open();
		return;
	}
	snprintf(call, sizeof(call), "%s(slot %d '%s')",
		 data ? "fdatasync" : "fsync", i, slots[i].path);
	note("%s", call);
	for (s = 0; s < 2; s++)
		res_set(&r[s], data ? fdatasync(slots[i].fd[s]) :
			fsync(slots[i].fd[s]));
	cmp_res(call, r);
}

static void op_fstat(void)
{
	int i = pick_open_slot(), s;
	struct stat st[2];
	char call[400];
	struct res r[2];

	if (i < 0) {
		op_open();
		return;
	}
	snprintf(call, sizeof(call), "fstat(slot %d '%s')", i, slots[i].path);
	note("%s", call);
	for (s = 0; s < 2; s++)
		res_set(&r[s], fstat(slots[i].fd[s], &st[s]));
	cmp_res(call, r);
	if (r[0].rc == 0)
		cmp_stat(call, &st[0], &st[1]);
}

/* A call on one or two paths, the same on both sides. */
enum pop { P_STAT, P_LSTAT, P_TRUNCATE, P_UNLINK, P_MKDIR, P_RMDIR,
	   P_RENAME, P_LINK, P_SYMLINK, P_READLINK, P_CHMOD, P_READDIR };

static void op_path(enum pop op)
{
	static const mode_t cmodes[] = { 0644, 0600, 0755, 0700, 0444, 0666,
					 04755, 02755, 0640 };
	char a[256], b[256], call[600], pa[MAXPATH], pb[MAXPATH];
	char lt[2][MAXPATH];
	struct stat st[2];
	struct ent *ents[2] = { NULL, NULL };
	struct res r[2];
	off_t size = 0;
	mode_t mode = 0;
	int s;

	a[0] = b[0] = 0;
	switch (op) {
	case P_STAT:
	case P_LSTAT:
		gen_path(a, sizeof(a), K_ANY);
		snprintf(call, sizeof(call), "%s('%s')",
			 op == P_STAT ? "stat" : "lstat", a);
		break;
	case P_TRUNCATE:
		gen_path(a, sizeof(a), K_FILE);
		size = gen_size();
		snprintf(call, sizeof(call), "truncate('%s', %lld)", a,
			 (long long)size);
		break;
	case P_UNLINK:
		gen_path(a, sizeof(a), rnd(5) ? K_FILE : K_ANY);
		snprintf(call, sizeof(call), "unlink('%s')", a);
		break;
	case P_MKDIR:
		gen_path(a, sizeof(a), K_DIR);
		mode = rnd(4) ? 0755 : 0700;
		snprintf(call, sizeof(call), "mkdir('%s', 0%o)", a,
			 (unsigned)mode);
		break;
	case P_RMDIR:
		gen_path(a, sizeof(a), K_DIR);
		snprintf(call, sizeof(call), "rmdir('%s')", a);
		break;
	case P_RENAME:
		gen_path(a, sizeof(a), K_ANY);
		gen_path(b, sizeof(b), rnd(3) ? K_FILE : K_ANY);
		snprintf(call, sizeof(call), "rename('%s', '%s')", a, b);
		break;
	case P_LINK:
		gen_path(a, sizeof(a), K_FILE);
		gen_path(b, sizeof(b), K_FILE);
		snprintf(call, sizeof(call), "link('%s', '%s')", a, b);
		break;
	case P_SYMLINK:
		/*
		 * A relative target that never leaves the tree, wherever a
		 * later rename moves the link: its '..' always undoes the
		 * component before it.  (A plain "../f" moved to the root
		 * would reach the directory that holds both trees, and the
		 * two sides would then share one file outside them.)
		 */
		gen_parent(b, sizeof(b));
		strncat(b, lnames[rnd(2)], sizeof(b) - strlen(b) - 1);
		switch (rnd(5)) {
		case 0:
			snprintf(a, sizeof(a), "nowhere");
			break;
		case 1:
			snprintf(a, sizeof(a), "%s", dnames[rnd(3)]);
			break;
		case 2:
			snprintf(a, sizeof(a), "%s/../%s", dnames[rnd(3)],
				 fnames[rnd(6)]);
			break;
		default:
			snprintf(a, sizeof(a), "%s", fnames[rnd(6)]);
			break;
		}
		snprintf(call, sizeof(call), "symlink('%s', '%s')", a, b);
		break;
	case P_READLINK:
		gen_path(a, sizeof(a), rnd(4) ? K_ANY : K_FILE);
		snprintf(call, sizeof(call), "readlink('%s')", a);
		break;
	case P_CHMOD:
		gen_path(a, sizeof(a), rnd(5) ? K_FILE : K_ANY);
		mode = cmodes[rnd(9)];
		snprintf(call, sizeof(call), "chmod('%s', 0%o)", a,
			 (unsigned)mode);
		break;
	case P_READDIR:
		gen_parent(a, sizeof(a));
		if (*a)
			a[strlen(a) - 1] = 0;
		snprintf(call, sizeof(call), "readdir('%s')", *a ? a : ".");
		break;
	}
	note("%s", call);
	for (s = 0; s < 2; s++) {
		full(pa, s, a);
		full(pb, s, b);
		switch (op) {
		case P_STAT:
			res_set(&r[s], stat(pa, &st[s]));
			break;
		case P_LSTAT:
			res_set(&r[s], lstat(pa, &st[s]));
			break;
		case P_TRUNCATE:
			res_set(&r[s], truncate(pa, size));
			break;
		case P_UNLINK:
			res_set(&r[s], unlink(pa));
			break;
		case P_MKDIR:
			res_set(&r[s], mkdir(pa, mode));
			break;
		case P_RMDIR:
			res_set(&r[s], rmdir(pa));
			break;
		case P_RENAME:
			res_set(&r[s], rename(pa, pb));
			break;
		case P_LINK:
			res_set(&r[s], link(pa, pb));
			break;
		case P_SYMLINK:
			res_set(&r[s], symlink(a, pb));
			break;
		case P_READLINK: {
			ssize_t k = readlink(pa, lt[s], MAXPATH - 1);

			res_set(&r[s], k);
			if (k >= 0)
				lt[s][k] = 0;
			break;
		}
		case P_CHMOD:
			res_set(&r[s], chmod(pa, mode));
			break;
		case P_READDIR:
			res_set(&r[s], list_dir(pa, &ents[s]));
			break;
		}
	}
	cmp_res(call, r);
	if (r[0].rc < 0)
		return;
	if (op == P_STAT || op == P_LSTAT) {
		cmp_stat(call, &st[0], &st[1]);
	} else if (op == P_READLINK) {
		if (strcmp(lt[0], lt[1]))
			mismatch(call, "  ref: '%s'\n  test: '%s'", lt[0],
				 lt[1]);
	} else if (op == P_READDIR) {
		int i;

		for (i = 0; i < r[0].rc; i++)
			if (strcmp(ents[0][i].name, ents[1][i].name) ||
			    (ents[0][i].type != DT_UNKNOWN &&
			     ents[1][i].type != DT_UNKNOWN &&
			     ents[0][i].type != ents[1][i].type))
				mismatch(call, "  entry %d: ref '%s' (d_type "
					 "%d), test '%s' (d_type %d)", i,
					 ents[0][i].name, ents[0][i].type,
					 ents[1][i].name, ents[1][i].type);
		free(ents[0]);
		free(ents[1]);
	}
}

static void op_pwrite_p(void) { op_pwrite(true); }
static void op_write(void) { op_pwrite(false); }
static void op_pread_p(void) { op_pread(true); }
static void op_read(void) { op_pread(false); }
static void op_stat(void) { op_path(P_STAT); }
static void op_lstat(void) { op_path(P_LSTAT); }
static void op_truncate(void) { op_path(P_TRUNCATE); }
static void op_unlink(void) { op_path(P_UNLINK); }
static void op_mkdir(void) { op_path(P_MKDIR); }
static void op_rmdir(void) { op_path(P_RMDIR); }
static void op_rename(void) { op_path(P_RENAME); }
static void op_link(void) { op_path(P_LINK); }
static void op_symlink(void) { op_path(P_SYMLINK); }
static void op_readlink(void) { op_path(P_READLINK); }
static void op_chmod(void) { op_path(P_CHMOD); }
static void op_readdir(void) { op_path(P_READDIR); }

/* The op mix; weights in per mille. -X NAME leaves an op out (to isolate
 * a bug; the same seed then gives another sequence). */
static struct {
	const char *name;
	unsigned weight;
	void (*fn)(void);
	bool off;
} ops[] = {
	{ "open", 110, op_open, false },
	{ "reopen", 40, op_reopen, false },
	{ "close", 60, op_close, false },
	{ "pwrite", 150, op_pwrite_p, false },
	{ "write", 50, op_write, false },
	{ "pread", 130, op_pread_p, false },
	{ "read", 30, op_read, false },
	{ "lseek", 30, op_lseek, false },
	{ "ftruncate", 50, op_ftruncate, false },
	{ "fsync", 25, op_fsync, false },
	{ "fstat", 40, op_fstat, false },
	{ "stat", 30, op_stat, false },
	{ "lstat", 20, op_lstat, false },
	{ "truncate", 25, op_truncate, false },
	{ "unlink", 45, op_unlink, false },
	{ "mkdir", 35, op_mkdir, false },
	{ "rmdir", 25, op_rmdir, false },
	{ "rename", 45, op_rename, false },
	{ "link", 30, op_link, false },
	{ "symlink", 15, op_symlink, false },
	{ "readlink", 10, op_readlink, false },
	{ "chmod", 15, op_chmod, false },
	{ "readdir", 15, op_readdir, false },
};
#define NOPS (sizeof(ops) / sizeof(ops[0]))

static void one_op(void)
{
	unsigned total = 0, r;
	size_t i;

	for (i = 0; i < NOPS; i++)
		total += ops[i].off ? 0 : ops[i].weight;
	r = (unsigned)rnd(total);
	for (i = 0; i < NOPS; i++) {
		if (ops[i].off)
			continue;
		if (r < ops[i].weight) {
			ops[i].fn();
			return;
		}
		r -= ops[i].weight;
	}
}

/* -O 3,10-12,40: run only these ops of the sequence (to shrink a failure
 * to the few ops that cause it; the others keep their parameters). */
static struct range {
	long lo, hi;
} *only;
static size_t nonly;

static void parse_only(const char *arg)
{
	const char *p = arg;
	char *end;

	while (*p) {
		long lo = strtol(p, &end, 10), hi = lo;

		if (end == p)
			die("-O: bad list at '%s'", p);
		p = end;
		if (*p == '-') {
			hi = strtol(p + 1, &end, 10);
			if (end == p + 1)
				die("-O: bad range at '%s'", p);
			p = end;
		}
		only = realloc(only, (nonly + 1) * sizeof(*only));
		if (!only)
			die("out of memory");
		only[nonly].lo = lo;
		only[nonly++].hi = hi;
		if (*p == ',')
			p++;
		else if (*p)
			die("-O: bad list at '%s'", p);
	}
	if (!only)
		die("-O: empty list");
}

static bool op_kept(long i)
{
	size_t k;

	for (k = 0; k < nonly; k++)
		if (i >= only[k].lo && i <= only[k].hi)
			return true;
	return false;
}

/* -X a,b,c: ops to leave out, or the open flags O_TRUNC, O_APPEND, O_EXCL. */
static void exclude(char *list)
{
	char *tok, *save = NULL;
	size_t i;

	for (tok = strtok_r(list, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		if (!strcmp(tok, "O_TRUNC")) {
			no_flags |= O_TRUNC;
			continue;
		}
		if (!strcmp(tok, "O_APPEND")) {
			no_flags |= O_APPEND;
			continue;
		}
		if (!strcmp(tok, "O_EXCL")) {
			no_flags |= O_EXCL;
			continue;
		}
		for (i = 0; i < NOPS; i++)
			if (!strcmp(tok, ops[i].name))
				break;
		if (i == NOPS)
			die("-X: unknown op '%s'", tok);
		ops[i].off = true;
	}
}

static void check_empty(int side)
{
	struct ent *e = NULL;
	int n = list_dir(root[side], &e);

	if (n < 0)
		die("cannot list %s: %s", root[side], strerror(errno));
	if (n > 0)
		die("%s is not empty (has '%s')", root[side], e[0].name);
	free(e);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: difftest [-s SEED] [-n OPS] [-c EVERY] [-v] [-H N] [-X OP,...] [-O LIST]\n"
		"                REF_DIR TEST_DIR\n"
		"       difftest -C REF_DIR TEST_DIR\n");
	exit(2);
}

int main(int argc, char **argv)
{
	long nops = 10000, every = 1000, i;
	bool compare_only = false, seeded = false;
	struct timespec t0, t1;
	int c, s;

	while ((c = getopt(argc, argv, "s:n:c:vCX:O:H:")) != -1) {
		switch (c) {
		case 's':
			seed = strtoull(optarg, NULL, 0);
			seeded = true;
			break;
		case 'n':
			nops = strtol(optarg, NULL, 0);
			break;
		case 'c':
			every = strtol(optarg, NULL, 0);
			break;
		case 'v':
			verbose = 1;
			break;
		case 'H':
			hist_len = atoi(optarg);
			if (hist_len < 1 || hist_len > 1000000)
				usage();
			break;
		case 'C':
			compare_only = true;
			break;
		case 'O':
			parse_only(optarg);
			only_arg = optarg;
			break;
		case 'X':
			snprintf(xopts + strlen(xopts),
				 sizeof(xopts) - strlen(xopts), "%s%s",
				 *xopts ? "," : "", optarg);
			exclude(optarg);
			break;
		default:
			usage();
		}
	}
	if (argc - optind != 2)
		usage();
	root[0] = argv[optind];
	root[1] = argv[optind + 1];
	setvbuf(stdout, NULL, _IOLBF, 0);
	hist = calloc((size_t)hist_len, sizeof(*hist));
	hist_idx = calloc((size_t)hist_len, sizeof(*hist_idx));
	if (!hist || !hist_idx)
		die("out of memory");
	for (s = 0; s < 2; s++) {
		iobuf[s] = malloc(MAXIO);
		if (!iobuf[s])
			die("out of memory");
	}
	wbuf = malloc(MAXIO);
	if (!wbuf)
		die("out of memory");
	if (compare_only) {
		cmp_trees();
		printf("difftest: trees %s and %s are the same\n", root[0],
		       root[1]);
		return 0;
	}
	if (!seeded) {
		clock_gettime(CLOCK_REALTIME, &t0);
		seed = (uint64_t)t0.tv_nsec ^ ((uint64_t)t0.tv_sec << 20) ^
		       (uint64_t)getpid();
	}
	rng_state = seed;
	umask(022);
	check_empty(0);
	check_empty(1);
	for (i = 0; i < NSLOTS; i++)
		slots[i].fd[0] = slots[i].fd[1] = -1;
	printf("difftest: seed=%" PRIu64 " ops=%ld ref=%s test=%s\n", seed,
	       nops, root[0], root[1]);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (op_index = 0; op_index < nops; op_index++) {
		/* Each op draws from its own stream: leaving ops out (-O)
		 * does not change the others. */
		rng_state = seed ^ ((uint64_t)op_index * 0xd1b54a32d192ed03ULL);
		rnd64();
		if (only && !op_kept(op_index))
			continue;
		one_op();
		if (every > 0 && (op_index + 1) % every == 0) {
			cmp_trees();
			if (!verbose && (op_index + 1) % (every * 10) == 0)
				printf("difftest: %ld ops, no difference\n",
				       op_index + 1);
		}
	}
	for (i = 0; i < NSLOTS; i++)
		if (slots[i].fd[0] >= 0 || slots[i].fd[1] >= 0)
			slot_close((int)i);
	cmp_trees();
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("difftest: seed=%" PRIu64 ": %ld ops, no difference (%.1f s; "
	       "%ld calls succeeded, %ld failed alike)\n",
	       seed, nops, (double)(t1.tv_sec - t0.tv_sec) +
	       (double)(t1.tv_nsec - t0.tv_nsec) / 1e9, n_ok, n_err);
	return 0;
}
