/* SPDX-License-Identifier: GPL-2.0 */
/*
 * difftest.c - seeded differential test of a file system against a native
 * directory.
 *
 *   difftest [-s SEED] [-n OPS] [-c EVERY] [-v] [-H N] [-X OP,...] [-O LIST]
 *            [-M TEST_DIR2 [-E EXPORT_DIR] [-F STAGEFSCTL]] REF_DIR TEST_DIR
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
 * Two mounts (-M TEST_DIR2): TEST_DIR and TEST_DIR2 are two stagefs mounts
 * of one nfs export, each with its own cache_dir: two nodes, A and B.
 * TEST_DIR2 must be mounted with entry_timeout=0,attr_timeout=0 (B checks
 * what A did to the namespace at once, and B's fstat revalidates).  The
 * ops above run through A as before; besides them the sequence has shared
 * files s0..s2 at the root that both nodes write at once, each only its
 * own bytes, as MPI-IO ranks do:
 *   - At the start and at each checkpoint a shared file may be laid out
 *     anew through A (created with O_TRUNC, sparse or written whole, fsync,
 *     close) with a seeded size (up to 6 MiB, often across the first 4 MiB
 *     chunk boundary) and a seeded partition of its bytes into ranges
 *     owned by A or by B: 1 byte, up to 512 bytes, 47,008 bytes (IOR's
 *     odd size), other unaligned sizes, the rest of a 64 KiB block, whole
 *     blocks; so one 64 KiB block often holds ranges of both nodes.
 *   - swrite: a node writes (pwrite) a whole range of its own or a piece
 *     of one, through a descriptor it opened on its own mount; the same
 *     bytes go to the reference.  Each node keeps up to 2 descriptors per
 *     shared file (sopen, sclose), both nodes' descriptors are open at
 *     once, and sizes never change between checkpoints.
 *   - sread: a node reads a range, a 64 KiB block or a random span and
 *     compares it with the reference, following close-to-open: its own
 *     ranges always; a range of the other node only if the other node's
 *     last write to it was published (a close of a descriptor that wrote,
 *     or an fsync, on the writer's node) before the reader's last open of
 *     the file (or, on B, an fstat: attr_timeout=0 revalidates when B
 *     has nothing of its own unpublished in the file).
 *   - sfsync, sstat (fstat: size and mode), and bstat, breaddir: stat,
 *     lstat, readlink and readdir through B of the tree that A changes
 *     (all but the sizes of regular files, which A may not have uploaded).
 *   - Checkpoint, every EVERY ops and at the end: every descriptor is
 *     closed on both nodes (also the single-mount ops' slots); with
 *     -F STAGEFSCTL, `STAGEFSCTL MNT flush` runs on both mounts; then the
 *     whole tree through A, through B and, with -E, the export directory
 *     itself must equal the reference.
 * -F also means the mounts have flush_on_close=async: a close hands
 * nothing to the other node, only an fsync or a checkpoint does.  Without
 * -F a close that wrote does (flush_on_close=sync).
 *
 * The sequence depends only on SEED (and on the results, which are equal
 * until the first difference), so a failure is reproduced by running the
 * same SEED again. On the first difference it prints the seed, the op
 * index, the call, both results and the last ops before it, and exits 1.
 *
 * -O 3,10-12 runs only those ops of the sequence, each with the same
 * parameters as in the full run (every op draws from its own random
 * stream), to shrink a failure to the few ops that cause it.  With -M the
 * checkpoints (and their layouts) still run where they fall.
 *
 * -X leaves ops (by name: open, pwrite, rename, ..., swrite, sread, ...)
 * or the open flags O_TRUNC, O_APPEND, O_EXCL out of the mix, to look past
 * a known bug; the same seed then gives a different sequence. -v prints
 * every op; -H N prints the last N ops (default 40) with a difference, and
 * an op that opens a file notes the inode number the mount gave it (to
 * match the daemon's log lines, which name files by it).
 *
 * Run as an unprivileged user (the Root_Squash run of posix-difftest.sh),
 * a file or directory that neither side lets it read or search (EACCES or
 * EPERM on both) is not compared further.
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
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
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
/* The trees: the reference, the mount under test (node A), with -M the
 * second mount (node B) and with -E the export directory. */
enum { SIDE_REF, SIDE_A, SIDE_B, SIDE_EXPORT, NROOTS };
static const char *root[NROOTS];
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
static long every = 1000;	/* ops between tree comparisons (-c) */
static const char *flush_prog;	/* -F: stagefsctl, flush_on_close=async */

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
	fprintf(stderr, "\ndifftest: ref=%s test=%s", root[SIDE_REF],
		root[SIDE_A]);
	if (root[SIDE_B])
		fprintf(stderr, " B=%s", root[SIDE_B]);
	if (root[SIDE_EXPORT])
		fprintf(stderr, " export=%s", root[SIDE_EXPORT]);
	fprintf(stderr, "\n");
	fprintf(stderr, "difftest: last ops before the difference:\n");
	for (i = first; i < hist_n; i++)
		fprintf(stderr, "  op %ld: %s\n", hist_idx[i % hist_len],
			hist[i % hist_len]);
	fprintf(stderr, "difftest: reproduce with: difftest -s %" PRIu64
		" -n %ld -c %ld%s%s%s%s%s%s%s REF_DIR TEST_DIR (on empty dirs)\n",
		seed, op_index + 1, every, *xopts ? " -X " : "", xopts,
		only_arg ? " -O " : "", only_arg ? only_arg : "",
		root[SIDE_B] ? " -M TEST_DIR2" : "",
		root[SIDE_EXPORT] ? " -E EXPORT_DIR" : "",
		flush_prog ? " -F STAGEFSCTL" : "");
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

/*
 * Attributes that must agree (not times, not inode numbers, not blocks;
 * with !fsize not the size of a regular file, which node B sees only once
 * node A uploaded it).
 */
static void cmp_stat(const char *call, const struct stat *a,
		     const struct stat *b, bool fsize)
{
	bool size = S_ISREG(a->st_mode) ? fsize : !S_ISDIR(a->st_mode);

	if (a->st_mode != b->st_mode || a->st_nlink != b->st_nlink ||
	    a->st_uid != b->st_uid || a->st_gid != b->st_gid ||
	    (size && a->st_size != b->st_size))
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
static struct inoref *inos[NROOTS];
static int ninos[NROOTS], capinos[NROOTS];

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

static const char *side_name(int side)
{
	static const char *const n[NROOTS] = { "ref", "test", "B", "export" };

	return root[SIDE_B] && side == SIDE_A ? "A" : n[side];
}

/* The contents of rel in the reference and in tree 'side'. */
static void cmp_contents(int side, const char *rel)
{
	char p[2][MAXPATH], what[MAXPATH + 64];
	int fd[2], i, sd[2] = { SIDE_REF, side };
	long long off = 0;

	int err[2];

	snprintf(what, sizeof(what), "tree (%s): contents of %s",
		 side_name(side), rel);
	for (i = 0; i < 2; i++) {
		full(p[i], sd[i], rel);
		fd[i] = open(p[i], O_RDONLY | O_NOFOLLOW);
		err[i] = fd[i] < 0 ? errno : 0;
	}
	/* A user who may not read the file on either side: alike. */
	if (err[0] && err[0] == err[1] && (err[0] == EACCES || err[0] == EPERM))
		return;
	for (i = 0; i < 2; i++)
		if (fd[i] < 0)
			mismatch(what, "  cannot open %s: %s", p[i],
				 strerror(err[i]));
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
				 "%s read %zd", off, n[0], side_name(side),
				 n[1]);
		if (n[0] == 0)
			break;
		cmp_bytes(what, iobuf[0], iobuf[1], (size_t)n[0], off);
		off += n[0];
	}
	close(fd[0]);
	close(fd[1]);
}

/*
 * The hidden directory where stagefs keeps a file unlinked while open
 * (fs/fs_int.h SILLY_DIR): the mounts never show it, but the export
 * holds it until the daemon has handled the last RELEASE, which the kernel
 * sends after close(2) returned.  The export is compared with it left
 * out; after the unmount (difftest -C) it must be gone.
 */
#define SILLY_DIR ".stagefs-unlinked"

static void drop_silly(struct ent *e, int *n)
{
	int i;

	for (i = 0; i < *n; i++)
		if (!strcmp(e[i].name, SILLY_DIR)) {
			memmove(&e[i], &e[i + 1],
				(size_t)(*n - i - 1) * sizeof(*e));
			(*n)--;
			return;
		}
}

/* The directory rel in the reference and in tree 'side', recursively. */
static void cmp_tree(int side, const char *rel)
{
	char p[2][MAXPATH], what[MAXPATH + 64], sub[MAXPATH];
	struct ent *e[2] = { NULL, NULL };
	int n[2], i, j, sd[2] = { SIDE_REF, side };

	int err[2];

	for (i = 0; i < 2; i++) {
		full(p[i], sd[i], rel);
		n[i] = list_dir(p[i], &e[i]);
		err[i] = n[i] < 0 ? errno : 0;
	}
	/* An unprivileged run may not read a directory on either side. */
	if (err[0] && err[0] == err[1] && (err[0] == EACCES || err[0] == EPERM))
		return;
	for (i = 0; i < 2; i++)
		if (n[i] < 0)
			mismatch("tree", "  cannot list %s: %s", p[i],
				 strerror(err[i]));
	if (side == SIDE_EXPORT && !*rel)
		drop_silly(e[1], &n[1]);
	for (i = 0, j = 0; i < n[0] || j < n[1];) {
		int c = i >= n[0] ? 1 : j >= n[1] ? -1 :
			strcmp(e[0][i].name, e[1][j].name);

		if (c)
			mismatch("tree", "  directory '%s': '%s' only in %s",
				 rel, c < 0 ? e[0][i].name : e[1][j].name,
				 c < 0 ? "ref" : side_name(side));
		i++;
		j++;
	}
	for (i = 0; i < n[0]; i++) {
		struct stat st[2];
		const char *first[2];
		int s;

		snprintf(sub, sizeof(sub), "%s%s%s", rel, *rel ? "/" : "",
			 e[0][i].name);
		snprintf(what, sizeof(what), "tree (%s): lstat %s",
			 side_name(side), sub);
		for (s = 0; s < 2; s++) {
			full(p[s], sd[s], sub);
			err[s] = lstat(p[s], &st[s]) < 0 ? errno : 0;
		}
		/* Not searchable for this user on either side: alike. */
		if (err[0] && err[0] == err[1] &&
		    (err[0] == EACCES || err[0] == EPERM))
			continue;
		for (s = 0; s < 2; s++)
			if (err[s])
				mismatch(what, "  lstat %s: %s", p[s],
					 strerror(err[s]));
		cmp_stat(what, &st[0], &st[1], true);
		if (e[0][i].type != DT_UNKNOWN && e[1][i].type != DT_UNKNOWN &&
		    e[0][i].type != e[1][i].type)
			mismatch(what, "  d_type ref=%d %s=%d",
				 e[0][i].type, side_name(side), e[1][i].type);
		if (S_ISREG(st[0].st_mode)) {
			for (s = 0; s < 2; s++)
				first[s] = ino_first(sd[s], &st[s], sub);
			if (strcmp(first[0], first[1]))
				mismatch(what, "  hard links differ: ref: same "
					 "inode as '%s', %s: same inode as "
					 "'%s'", first[0], side_name(side),
					 first[1]);
			cmp_contents(side, sub);
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
					 "%s='%s'", t[0], side_name(side),
					 t[1]);
		} else if (S_ISDIR(st[0].st_mode)) {
			cmp_tree(side, sub);
		}
	}
	free(e[0]);
	free(e[1]);
}

/* The whole tree 'side' against the reference. */
static void cmp_trees(int side)
{
	ninos[SIDE_REF] = ninos[side] = 0;
	cmp_tree(side, "");
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
		cmp_stat(call, &st[0], &st[1], true);
}

/*
 * A call on one or two paths, the same in the reference and in tree
 * 'side': the mount under test (A) or, for the calls that change nothing,
 * the second mount (B), which sees what A did to the namespace.
 */
enum pop { P_STAT, P_LSTAT, P_TRUNCATE, P_UNLINK, P_MKDIR, P_RMDIR,
	   P_RENAME, P_LINK, P_SYMLINK, P_READLINK, P_CHMOD, P_READDIR };

static void op_path(enum pop op, int side)
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
	if (side != SIDE_A) {	/* "B: stat('d0')" */
		char t[sizeof(call)];

		snprintf(t, sizeof(t), "%s: %.580s", side_name(side), call);
		memcpy(call, t, sizeof(call));
	}
	note("%s", call);
	for (s = 0; s < 2; s++) {
		full(pa, s ? side : SIDE_REF, a);
		full(pb, s ? side : SIDE_REF, b);
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
		cmp_stat(call, &st[0], &st[1], side == SIDE_A);
	} else if (op == P_READLINK) {
		if (strcmp(lt[0], lt[1]))
			mismatch(call, "  ref: '%s'\n  %s: '%s'", lt[0],
				 side_name(side), lt[1]);
	} else if (op == P_READDIR) {
		int i;

		for (i = 0; i < r[0].rc; i++)
			if (strcmp(ents[0][i].name, ents[1][i].name) ||
			    (ents[0][i].type != DT_UNKNOWN &&
			     ents[1][i].type != DT_UNKNOWN &&
			     ents[0][i].type != ents[1][i].type))
				mismatch(call, "  entry %d: ref '%s' (d_type "
					 "%d), %s '%s' (d_type %d)", i,
					 ents[0][i].name, ents[0][i].type,
					 side_name(side), ents[1][i].name,
					 ents[1][i].type);
		free(ents[0]);
		free(ents[1]);
	}
}

/* ---- two mounts: disjoint writers of shared files (-M) --------------- */

#define NSHARED 3	/* s0, s1, s2 at the root */
#define SSLOTS 2	/* descriptors per node and shared file */
#define BLOCK (64 << 10)	/* the cache's unit of dirty byte ranges */
#define NEVER LONG_MAX

/* A range of a shared file's bytes, written only by its owner. */
struct srange {
	off_t off;
	size_t len;
	int owner;	/* node 0 (A) or 1 (B) */
	long wop;	/* op of the owner's last write to it; -1: the layout */
	long pub;	/* op that published that write; NEVER: not yet */
};

struct sslot {
	int fd;	/* on the node's own mount; -1: free */
	int flags;
	bool wrote;
};

struct sfile {
	char name[8];
	off_t size;	/* fixed between checkpoints */
	struct srange *r;	/* sorted, covering [0, size) */
	int nr;
	int ref_fd;	/* the reference's copy, open from its layout on */
	struct sslot sl[2][SSLOTS];	/* each node's own descriptors */
	long opened[2];	/* each node's last open (or revalidation) */
};

static struct sfile shared[NSHARED];
static long n_swrite, n_sread, n_layout, n_checkpoint;
static long long n_cmp_own, n_cmp_other;

static int node_side(int node)
{
	return node ? SIDE_B : SIDE_A;
}

static char node_name(int node)
{
	return node ? 'B' : 'A';
}

/* Wrong result of a call that must work on the mount (the reference
 * has no such call, or it worked there). */
static void expect(const char *call, long rc, long want)
{
	struct res r[2] = { { want, 0 }, { rc, rc < 0 ? errno : 0 } };

	cmp_res(call, r);
}

/* The node's writes to f so far are handed over: a later open (or
 * revalidation) on the other node must show them. */
static void publish(int node, int f)
{
	struct sfile *sf = &shared[f];
	int k;

	for (k = 0; k < sf->nr; k++)
		if (sf->r[k].owner == node && sf->r[k].pub == NEVER)
			sf->r[k].pub = op_index;
}

/* The node has writes to f that are not handed over yet. */
static bool unpublished(int node, int f)
{
	struct sfile *sf = &shared[f];
	int k;

	for (k = 0; k < sf->nr; k++)
		if (sf->r[k].owner == node && sf->r[k].pub == NEVER)
			return true;
	return false;
}

/* A seeded partition of [0, size) into ranges of A and B. */
static void partition(struct sfile *sf)
{
	off_t o = 0;
	int owner = (int)rnd(2), cap = 0;

	free(sf->r);
	sf->r = NULL;
	sf->nr = 0;
	while (o < sf->size) {
		uint64_t r = rnd(100);
		off_t rest = BLOCK - o % BLOCK;
		off_t len;

		if (r < 12)
			len = 1;
		else if (r < 32)
			len = 1 + (off_t)rnd(512);
		else if (r < 42)
			len = 47008;	/* IOR's odd record size */
		else if (r < 57)
			len = 1 + (off_t)rnd(100000);
		else if (r < 75)
			len = rest;	/* to the end of the block */
		else if (r < 85)	/* whole blocks */
			len = rest + (off_t)rnd(8) * BLOCK;
		else
			len = 1 + (off_t)rnd(BLOCK);
		if (len > sf->size - o)
			len = sf->size - o;
		if (sf->nr == cap) {
			cap = cap ? cap * 2 : 64;
			sf->r = realloc(sf->r, (size_t)cap * sizeof(*sf->r));
			if (!sf->r)
				die("out of memory");
		}
		sf->r[sf->nr].off = o;
		sf->r[sf->nr].len = (size_t)len;
		sf->r[sf->nr].owner = owner;
		sf->r[sf->nr].wop = -1;
		sf->r[sf->nr].pub = -1;
		sf->nr++;
		o += len;
		if (rnd(4))
			owner ^= 1;
	}
}

/*
 * Lay shared file f out anew through A (all descriptors are closed): a
 * new size and partition, contents sparse or written whole, fsync (so B
 * sees it whatever flush_on_close is), close.  The reference keeps its
 * descriptor open.
 */
static void layout(int f)
{
	struct sfile *sf = &shared[f];
	char call[400], p[MAXPATH];
	uint64_t r = rnd(100);
	bool sparse = rnd(2);
	struct res res[2];
	int fd[2], s;
	off_t o;

	if (r < 20)
		sf->size = 1 + (off_t)rnd(256 << 10);
	else if (r < 45)
		sf->size = 1 + (off_t)rnd(2 << 20);
	else if (r < 80)	/* across the first chunk boundary */
		sf->size = CHUNK - (off_t)rnd(512 << 10) +
			   (off_t)rnd(1 << 20);
	else
		sf->size = 1 + (off_t)rnd(6 << 20);
	partition(sf);
	n_layout++;
	snprintf(call, sizeof(call), "A: layout '%s': open O_RDWR|O_CREAT|"
		 "O_TRUNC, %s %lld bytes, fsync, close; %d ranges", sf->name,
		 sparse ? "ftruncate to" : "write", (long long)sf->size,
		 sf->nr);
	note("%s", call);
	if (sf->ref_fd >= 0)
		close(sf->ref_fd);
	for (s = 0; s < 2; s++) {
		full(p, s ? SIDE_A : SIDE_REF, sf->name);
		fd[s] = open(p, O_RDWR | O_CREAT | O_TRUNC, 0644);
		res_set(&res[s], fd[s]);
		if (fd[s] >= 0)
			res[s].rc = 0;
	}
	cmp_res(call, res);
	sf->ref_fd = fd[0];
	if (sparse) {
		for (s = 0; s < 2; s++)
			res_set(&res[s], ftruncate(fd[s], sf->size));
		cmp_res(call, res);
	}
	for (o = 0; !sparse && o < sf->size; o += MAXIO) {
		size_t n = (size_t)(sf->size - o < MAXIO ? sf->size - o :
				    MAXIO);

		fill(wbuf, n);
		for (s = 0; s < 2; s++)
			res_set(&res[s], pwrite(fd[s], wbuf, n, o));
		cmp_res(call, res);
	}
	expect(call, fsync(fd[1]), 0);
	expect(call, close(fd[1]), 0);
}

/* A free descriptor slot of node on f, closing one if all are taken. */
static int sslot_free(int node, int f)
{
	struct sfile *sf = &shared[f];
	int i;

	for (i = 0; i < SSLOTS; i++)
		if (sf->sl[node][i].fd < 0)
			return i;
	return -1;
}

static void sslot_close(int node, int f, int i)
{
	struct sfile *sf = &shared[f];
	struct sslot *sl = &sf->sl[node][i];
	char call[200];

	snprintf(call, sizeof(call), "%c: close('%s' slot %d%s)",
		 node_name(node), sf->name, i, sl->wrote ? ", wrote" : "");
	note("%s", call);
	expect(call, close(sl->fd), 0);
	/* With flush_on_close=sync the close of a descriptor that wrote
	 * returns once all of the node's dirty data of the file is on the
	 * backend. */
	if (sl->wrote && !flush_prog)
		publish(node, f);
	sl->fd = -1;
	sl->wrote = false;
}

static int sslot_open(int node, int f, int flags)
{
	struct sfile *sf = &shared[f];
	char call[200], p[MAXPATH];
	int i = sslot_free(node, f);
	struct stat st;

	if (i < 0) {
		i = (int)rnd(SSLOTS);
		sslot_close(node, f, i);
	}
	snprintf(call, sizeof(call), "%c: open('%s', %s) -> slot %d",
		 node_name(node), sf->name, flagstr(flags), i);
	note("%s", call);
	full(p, node_side(node), sf->name);
	sf->sl[node][i].fd = open(p, flags);
	expect(call, sf->sl[node][i].fd < 0 ? -1 : 0, 0);
	if (fstat(sf->sl[node][i].fd, &st) == 0)
		note("  (%c: inode %llx)", node_name(node),
		     (unsigned long long)st.st_ino);
	sf->sl[node][i].flags = flags;
	sf->sl[node][i].wrote = false;
	sf->opened[node] = op_index;
	return i;
}

/* An open descriptor of node on f (writable if asked), or a new one. */
static int sslot_pick(int node, int f, bool writable)
{
	struct sfile *sf = &shared[f];
	int i, n = 0, c[SSLOTS];

	for (i = 0; i < SSLOTS; i++)
		if (sf->sl[node][i].fd >= 0 &&
		    (!writable || (sf->sl[node][i].flags & O_ACCMODE) == O_RDWR))
			c[n++] = i;
	if (n)
		return c[rnd((uint64_t)n)];
	return sslot_open(node, f, O_RDWR);
}

static void op_sopen(void)
{
	int node = (int)rnd(2), f = (int)rnd(NSHARED);

	sslot_open(node, f, rnd(5) ? O_RDWR : O_RDONLY);
}

static void op_sclose(void)
{
	int node = (int)rnd(2), f = (int)rnd(NSHARED), i, n = 0;
	int c[SSLOTS];

	for (i = 0; i < SSLOTS; i++)
		if (shared[f].sl[node][i].fd >= 0)
			c[n++] = i;
	if (n)
		sslot_close(node, f, c[rnd((uint64_t)n)]);
}

/* A node writes one of its ranges, whole or a piece of it. */
static void op_swrite(void)
{
	int node = (int)rnd(2), f = (int)rnd(NSHARED), k, i;
	struct sfile *sf = &shared[f];
	struct srange *r;
	struct res res[2];
	char call[400];
	off_t off;
	size_t n;

	for (k = (int)rnd((uint64_t)sf->nr), i = 0;
	     i < sf->nr && sf->r[k].owner != node; i++)
		k = (k + 1) % sf->nr;
	if (sf->r[k].owner != node)
		return;	/* the other node owns every byte */
	r = &sf->r[k];
	off = r->off;
	n = r->len;
	if (rnd(2) && n > 1) {	/* a piece of the range */
		off_t a = (off_t)rnd(n), b = (off_t)rnd(n);

		if (a > b) {
			off_t t = a;

			a = b;
			b = t;
		}
		off += a;
		n = (size_t)(b - a) + 1;
	}
	i = sslot_pick(node, f, true);
	fill(wbuf, n);
	snprintf(call, sizeof(call), "%c: pwrite('%s' slot %d, len %zu, off "
		 "%lld) [range %d of %c: %lld+%zu]", node_name(node),
		 sf->name, i, n, (long long)off, k, node_name(node),
		 (long long)r->off, r->len);
	note("%s", call);
	res_set(&res[0], pwrite(sf->ref_fd, wbuf, n, off));
	res_set(&res[1], pwrite(sf->sl[node][i].fd, wbuf, n, off));
	cmp_res(call, res);
	sf->sl[node][i].wrote = true;
	r->wop = op_index;
	r->pub = NEVER;
	n_swrite++;
}

/*
 * On a wrong read of a shared file: how many bytes of the range [lo,
 * lo + len) differ from the reference (a: the reference's, b: the
 * node's, first difference at j), what the node read there, and what the
 * export holds there: a node's stale copy, or the export's.
 */
static void show_difference(const struct sfile *sf, const char *a,
			    const char *b, size_t j, size_t len, off_t lo)
{
	size_t k, n = 0, last = j;
	char eb[16];
	ssize_t en = -1;
	int efd = -1;

	for (k = j; k < len; k++)
		if (a[k] != b[k]) {
			n++;
			last = k;
		}
	fprintf(stderr, "difftest: %zu bytes of the range differ, the last at byte %lld; read from the first:",
		n, (long long)(lo + (off_t)last));
	for (k = j; k < j + 16 && k < len; k++)
		fprintf(stderr, " %02x", (unsigned char)b[k]);
	if (root[SIDE_EXPORT]) {
		char ep[MAXPATH + 16];

		snprintf(ep, sizeof(ep), "%s/%s", root[SIDE_EXPORT], sf->name);
		efd = open(ep, O_RDONLY | O_CLOEXEC);
		if (efd >= 0)
			en = pread(efd, eb, sizeof(eb), lo + (off_t)j);
		fprintf(stderr, "\ndifftest: the export there:");
		for (k = 0; en > 0 && k < (size_t)en; k++)
			fprintf(stderr, " %02x", (unsigned char)eb[k]);
		if (efd >= 0)
			close(efd);
	}
	fprintf(stderr, "\n");
}

/*
 * A node reads a span and compares the bytes it must see: its own
 * ranges, and the other node's ranges whose last write was published
 * before this node last opened (or revalidated) the file.
 */
static void op_sread(void)
{
	int node = (int)rnd(2), f = (int)rnd(NSHARED), k, i;
	struct sfile *sf = &shared[f];
	uint64_t w = rnd(100);
	struct res res[2];
	char call[400];
	off_t off, hi;
	size_t n;

	if (w < 35) {	/* one range */
		k = (int)rnd((uint64_t)sf->nr);
		off = sf->r[k].off;
		n = sf->r[k].len;
	} else if (w < 60) {	/* a block */
		off = (off_t)rnd((uint64_t)sf->size) & ~(off_t)(BLOCK - 1);
		n = BLOCK;
	} else if (w < 90) {
		off = (off_t)rnd((uint64_t)sf->size);
		n = 1 + rnd(256 << 10);
	} else {
		off = rnd(2) ? 0 : (off_t)rnd((uint64_t)sf->size);
		n = MAXIO;
	}
	i = sslot_pick(node, f, false);
	snprintf(call, sizeof(call), "%c: pread('%s' slot %d, len %zu, off "
		 "%lld)", node_name(node), sf->name, i, n, (long long)off);
	note("%s", call);
	res_set(&res[0], pread(sf->ref_fd, iobuf[0], n, off));
	res_set(&res[1], pread(sf->sl[node][i].fd, iobuf[1], n, off));
	cmp_res(call, res);
	n_sread++;
	hi = off + res[0].rc;
	for (k = 0; k < sf->nr && sf->r[k].off < hi; k++) {
		struct srange *r = &sf->r[k];
		off_t lo = r->off > off ? r->off : off;
		off_t end = r->off + (off_t)r->len < hi ?
			    r->off + (off_t)r->len : hi;
		bool own = r->owner == node;
		char *a = iobuf[0] + (lo - off), *b = iobuf[1] + (lo - off);
		size_t j;

		if (end <= lo || (!own && r->pub >= sf->opened[node]))
			continue;
		if (own)
			n_cmp_own += end - lo;
		else
			n_cmp_other += end - lo;
		if (!memcmp(a, b, (size_t)(end - lo)))
			continue;
		for (j = 0; a[j] == b[j]; j++)
			;
		show_difference(sf, a, b, j, (size_t)(end - lo), lo);
		mismatch(call, "  contents differ first at byte %lld: ref=0x%02x "
			 "test=0x%02x\n  the byte is in range %d of node %c "
			 "[%lld, %lld), last written at op %ld (-1: the "
			 "layout), published at op %ld (-1: the last "
			 "checkpoint); node %c last opened '%s' at op %ld",
			 (long long)(lo + (off_t)j), (unsigned char)a[j],
			 (unsigned char)b[j], k, node_name(r->owner),
			 (long long)r->off, (long long)(r->off + (off_t)r->len),
			 r->wop, r->pub, node_name(node), sf->name,
			 sf->opened[node]);
	}
}

static void op_sfsync(void)
{
	int node = (int)rnd(2), f = (int)rnd(NSHARED), i;
	bool data = rnd(2);
	char call[200];

	i = sslot_pick(node, f, false);
	snprintf(call, sizeof(call), "%c: %s('%s' slot %d)", node_name(node),
		 data ? "fdatasync" : "fsync", shared[f].name, i);
	note("%s", call);
	expect(call, data ? fdatasync(shared[f].sl[node][i].fd) :
	       fsync(shared[f].sl[node][i].fd), 0);
	/* fsync=backend: all of the node's dirty data of the file is on
	 * the backend, whatever flush_on_close says. */
	publish(node, f);
}

/*
 * fstat through a node: the size (fixed between checkpoints) and mode.
 * B has attr_timeout=0, so its fstat reaches the daemon, which drops
 * what another node changed if B has no writes of its own in flight: it
 * revalidates as an open does.
 */
static void op_sstat(void)
{
	int node = (int)rnd(2), f = (int)rnd(NSHARED), i;
	struct stat st[2];
	struct res res[2];
	char call[200];

	i = sslot_pick(node, f, false);
	snprintf(call, sizeof(call), "%c: fstat('%s' slot %d)",
		 node_name(node), shared[f].name, i);
	note("%s", call);
	res_set(&res[0], fstat(shared[f].ref_fd, &st[0]));
	res_set(&res[1], fstat(shared[f].sl[node][i].fd, &st[1]));
	cmp_res(call, res);
	cmp_stat(call, &st[0], &st[1], true);
	if (node == 1 && !unpublished(node, f))
		shared[f].opened[node] = op_index;
}

/* B looks at what A did to the namespace (B has entry_timeout=0). */
static void op_bstat(void)
{
	static const enum pop p[] = { P_STAT, P_LSTAT, P_READLINK };

	op_path(p[rnd(3)], SIDE_B);
}

static void op_breaddir(void)
{
	op_path(P_READDIR, SIDE_B);
}

/* Run 'flush_prog MNT flush' and wait for it. */
static void run_flush(int side)
{
	char call[MAXPATH + 64];
	int st = 0;
	pid_t pid;

	snprintf(call, sizeof(call), "checkpoint: %s %s flush", flush_prog,
		 root[side]);
	note("%s", call);
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		if (null >= 0)	/* its "flushed ..." line */
			dup2(null, STDOUT_FILENO);
		execlp(flush_prog, flush_prog, root[side], "flush",
		       (char *)NULL);
		fprintf(stderr, "difftest: %s: %s\n", flush_prog,
			strerror(errno));
		_exit(127);
	}
	if (waitpid(pid, &st, 0) < 0)
		die("waitpid: %s", strerror(errno));
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		mismatch(call, "  exit status %d", WIFEXITED(st) ?
			 WEXITSTATUS(st) : 128 + WTERMSIG(st));
}

/*
 * Every descriptor closed on both nodes (and flushed with -F): A, B and
 * the export hold what the reference holds.  Then shared files are laid
 * out anew (all of them the first time, before op 0).
 */
static void checkpoint(bool last)
{
	int i, f, node;

	rng_state = seed ^ ((uint64_t)(op_index + 2) * 0x9e6c63d0676a9a99ULL) ^
		    0x5851f42d4c957f2dULL;
	rnd64();
	if (op_index >= 0) {
		note("checkpoint");
		n_checkpoint++;
		for (i = 0; i < NSLOTS; i++)
			if (slots[i].fd[0] >= 0 || slots[i].fd[1] >= 0)
				slot_close(i);
		for (f = 0; f < NSHARED; f++)
			for (node = 0; node < 2; node++)
				for (i = 0; i < SSLOTS; i++)
					if (shared[f].sl[node][i].fd >= 0)
						sslot_close(node, f, i);
		if (flush_prog) {
			run_flush(SIDE_A);
			run_flush(SIDE_B);
		}
		cmp_trees(SIDE_A);
		cmp_trees(SIDE_B);
		if (root[SIDE_EXPORT])
			cmp_trees(SIDE_EXPORT);
	}
	for (f = 0; f < NSHARED; f++) {
		for (i = 0; i < shared[f].nr; i++)
			shared[f].r[i].pub = -1;
		shared[f].opened[0] = shared[f].opened[1] = -1;
		if (!last && (op_index < 0 || rnd(2)))
			layout(f);
	}
}

static void shared_init(void)
{
	int f, node, i;

	for (f = 0; f < NSHARED; f++) {
		snprintf(shared[f].name, sizeof(shared[f].name), "s%d", f);
		shared[f].ref_fd = -1;
		for (node = 0; node < 2; node++)
			for (i = 0; i < SSLOTS; i++)
				shared[f].sl[node][i].fd = -1;
	}
}

static void op_pwrite_p(void) { op_pwrite(true); }
static void op_write(void) { op_pwrite(false); }
static void op_pread_p(void) { op_pread(true); }
static void op_read(void) { op_pread(false); }
static void op_stat(void) { op_path(P_STAT, SIDE_A); }
static void op_lstat(void) { op_path(P_LSTAT, SIDE_A); }
static void op_truncate(void) { op_path(P_TRUNCATE, SIDE_A); }
static void op_unlink(void) { op_path(P_UNLINK, SIDE_A); }
static void op_mkdir(void) { op_path(P_MKDIR, SIDE_A); }
static void op_rmdir(void) { op_path(P_RMDIR, SIDE_A); }
static void op_rename(void) { op_path(P_RENAME, SIDE_A); }
static void op_link(void) { op_path(P_LINK, SIDE_A); }
static void op_symlink(void) { op_path(P_SYMLINK, SIDE_A); }
static void op_readlink(void) { op_path(P_READLINK, SIDE_A); }
static void op_chmod(void) { op_path(P_CHMOD, SIDE_A); }
static void op_readdir(void) { op_path(P_READDIR, SIDE_A); }

/* The op mix; weights in per mille. -X NAME leaves an op out (to isolate
 * a bug; the same seed then gives another sequence).  The ops marked
 * 'two' run only with two mounts (-M), which doubles the total. */
static struct {
	const char *name;
	unsigned weight;
	void (*fn)(void);
	bool off;
	bool two;
} ops[] = {
	{ "open", 110, op_open, false, false },
	{ "reopen", 40, op_reopen, false, false },
	{ "close", 60, op_close, false, false },
	{ "pwrite", 150, op_pwrite_p, false, false },
	{ "write", 50, op_write, false, false },
	{ "pread", 130, op_pread_p, false, false },
	{ "read", 30, op_read, false, false },
	{ "lseek", 30, op_lseek, false, false },
	{ "ftruncate", 50, op_ftruncate, false, false },
	{ "fsync", 25, op_fsync, false, false },
	{ "fstat", 40, op_fstat, false, false },
	{ "stat", 30, op_stat, false, false },
	{ "lstat", 20, op_lstat, false, false },
	{ "truncate", 25, op_truncate, false, false },
	{ "unlink", 45, op_unlink, false, false },
	{ "mkdir", 35, op_mkdir, false, false },
	{ "rmdir", 25, op_rmdir, false, false },
	{ "rename", 45, op_rename, false, false },
	{ "link", 30, op_link, false, false },
	{ "symlink", 15, op_symlink, false, false },
	{ "readlink", 10, op_readlink, false, false },
	{ "chmod", 15, op_chmod, false, false },
	{ "readdir", 15, op_readdir, false, false },
	{ "sopen", 60, op_sopen, false, true },
	{ "sclose", 50, op_sclose, false, true },
	{ "swrite", 400, op_swrite, false, true },
	{ "sread", 300, op_sread, false, true },
	{ "sfsync", 40, op_sfsync, false, true },
	{ "sstat", 50, op_sstat, false, true },
	{ "bstat", 60, op_bstat, false, true },
	{ "breaddir", 40, op_breaddir, false, true },
};
#define NOPS (sizeof(ops) / sizeof(ops[0]))

static void one_op(void)
{
	unsigned total = 0, r;
	size_t i;

	for (i = 0; i < NOPS; i++)
		total += ops[i].off || (ops[i].two && !root[SIDE_B]) ? 0 :
			 ops[i].weight;
	r = (unsigned)rnd(total);
	for (i = 0; i < NOPS; i++) {
		if (ops[i].off || (ops[i].two && !root[SIDE_B]))
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
		"                [-M TEST_DIR2 [-E EXPORT_DIR] [-F STAGEFSCTL]] REF_DIR TEST_DIR\n"
		"       difftest -C REF_DIR TEST_DIR\n");
	exit(2);
}

int main(int argc, char **argv)
{
	long nops = 10000, i;
	bool compare_only = false, seeded = false;
	struct timespec t0, t1;
	int c, s;

	while ((c = getopt(argc, argv, "s:n:c:vCX:O:H:M:E:F:")) != -1) {
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
		case 'M':
			root[SIDE_B] = optarg;
			break;
		case 'E':
			root[SIDE_EXPORT] = optarg;
			break;
		case 'F':
			flush_prog = optarg;
			break;
		default:
			usage();
		}
	}
	if (argc - optind != 2 ||
	    ((root[SIDE_EXPORT] || flush_prog) && !root[SIDE_B]) ||
	    (compare_only && root[SIDE_B]))
		usage();
	root[SIDE_REF] = argv[optind];
	root[SIDE_A] = argv[optind + 1];
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
		cmp_trees(SIDE_A);
		printf("difftest: trees %s and %s are the same\n",
		       root[SIDE_REF], root[SIDE_A]);
		return 0;
	}
	if (!seeded) {
		clock_gettime(CLOCK_REALTIME, &t0);
		seed = (uint64_t)t0.tv_nsec ^ ((uint64_t)t0.tv_sec << 20) ^
		       (uint64_t)getpid();
	}
	rng_state = seed;
	umask(022);
	for (s = 0; s < NROOTS; s++)
		if (root[s])
			check_empty(s);
	for (i = 0; i < NSLOTS; i++)
		slots[i].fd[0] = slots[i].fd[1] = -1;
	printf("difftest: seed=%" PRIu64 " ops=%ld ref=%s test=%s", seed,
	       nops, root[SIDE_REF], root[SIDE_A]);
	if (root[SIDE_B])
		printf(" B=%s%s%s, flush_on_close=%s", root[SIDE_B],
		       root[SIDE_EXPORT] ? " export=" : "",
		       root[SIDE_EXPORT] ? root[SIDE_EXPORT] : "",
		       flush_prog ? "async" : "sync");
	printf("\n");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (root[SIDE_B]) {
		shared_init();
		checkpoint(false);	/* op_index -1: the first layouts */
	}
	for (op_index = 0; op_index < nops; op_index++) {
		bool kept = !only || op_kept(op_index);

		/* Each op draws from its own stream: leaving ops out (-O)
		 * does not change the others. */
		rng_state = seed ^ ((uint64_t)op_index * 0xd1b54a32d192ed03ULL);
		rnd64();
		if (kept)
			one_op();
		if (every <= 0 || (op_index + 1) % every != 0)
			continue;
		/* With two mounts the checkpoints are part of the sequence:
		 * they run, and lay files out, whichever ops -O keeps. */
		if (root[SIDE_B] && op_index + 1 < nops)
			checkpoint(false);
		else if (!root[SIDE_B] && kept)
			cmp_trees(SIDE_A);
		if (!verbose && (op_index + 1) % (every * 10) == 0)
			printf("difftest: %ld ops, no difference\n",
			       op_index + 1);
	}
	if (root[SIDE_B]) {
		op_index = nops;
		checkpoint(true);
	} else {
		for (i = 0; i < NSLOTS; i++)
			if (slots[i].fd[0] >= 0 || slots[i].fd[1] >= 0)
				slot_close((int)i);
		cmp_trees(SIDE_A);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("difftest: seed=%" PRIu64 ": %ld ops, no difference (%.1f s; "
	       "%ld calls succeeded, %ld failed alike)\n",
	       seed, nops, (double)(t1.tv_sec - t0.tv_sec) +
	       (double)(t1.tv_nsec - t0.tv_nsec) / 1e9, n_ok, n_err);
	if (root[SIDE_B])
		printf("difftest: two mounts: %ld layouts, %ld writes, %ld "
		       "reads, %ld checkpoints; bytes read and compared: "
		       "%lld of the reader's own ranges, %lld of the other "
		       "node's\n", n_layout, n_swrite, n_sread, n_checkpoint,
		       n_cmp_own, n_cmp_other);
	return 0;
}
