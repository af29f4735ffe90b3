/* SPDX-License-Identifier: GPL-2.0 */
/*
 * conformance.c - the backend conformance suite (issue 3).
 *
 *   conformance BACKEND_SPEC
 *
 * Opens the backend with be_open() and runs the same checks against
 * whatever implementation it gets, straight through the be_ops table (no
 * FUSE).  Everything happens in a fresh directory under the backend root
 * (named from pid and time) that is removed at the end.  Prints TAP
 * ("ok N - name" / "not ok N - name: detail") and exits 1 on any failure.
 */
#include "backend.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int ntests, nfailed;
static struct be *be;
static const struct be_ops *ops;

static void report(int good, const char *name, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void report(int good, const char *name, const char *fmt, ...)
{
	va_list ap;

	ntests++;
	if (good) {
		printf("ok %d - %s\n", ntests, name);
	} else {
		nfailed++;
		printf("not ok %d - %s: ", ntests, name);
		va_start(ap, fmt);
		vprintf(fmt, ap);
		va_end(ap);
		printf("\n");
	}
	fflush(stdout);
}

/* A failed step inside a check: report it and leave the check. */
#define REQUIRE(name, cond, ...)                                  \
	do {                                                      \
		if (!(cond)) {                                    \
			report(0, name, __VA_ARGS__);             \
			goto out;                                 \
		}                                                 \
	} while (0)

#define RC(name, rc, what)                                                   \
	REQUIRE(name, (rc) >= 0, "%s: %s (%d)", what, strerror((int)-(rc)), \
		(int)(rc))

static uint8_t pat(uint64_t off)
{
	uint64_t x = off * 0x9E3779B97F4A7C15ull;

	return (uint8_t)((x >> 29) ^ (off >> 12) ^ 0x5a);
}

static void fill(uint8_t *buf, size_t len, uint64_t off)
{
	size_t i;

	for (i = 0; i < len; i++)
		buf[i] = pat(off + i);
}

/* Index of the first byte that is not the pattern, or -1. */
static long check_pat(const uint8_t *buf, size_t len, uint64_t off)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (buf[i] != pat(off + i))
			return (long)i;
	return -1;
}

static long check_zero(const uint8_t *buf, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (buf[i])
			return (long)i;
	return -1;
}

static int64_t ts_ns(struct timespec t)
{
	return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* ------------------------------------------------------------ readdir */

#define MAX_ENTS 32
struct dirlist {
	int n;
	int no_attr;
	char names[MAX_ENTS][64];
	struct be_attr attrs[MAX_ENTS];
};

static int collect(void *arg, const char *name, uint64_t fileid,
		   const struct be_attr *attr, struct be_node *node)
{
	struct dirlist *dl = arg;

	if (dl->n >= MAX_ENTS)
		return -E2BIG;
	snprintf(dl->names[dl->n], sizeof(dl->names[0]), "%s", name);
	if (attr)
		dl->attrs[dl->n] = *attr;
	else
		dl->no_attr++;
	dl->n++;
	return 0;
}

/* ------------------------------------------------------------ async read */

struct async_ctl {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int pending;
	int errors;
	ssize_t res[8];
};

struct async_req {
	struct async_ctl *ctl;
	int idx;
};

static void async_cb(void *cookie, ssize_t res)
{
	struct async_req *r = cookie;
	struct async_ctl *c = r->ctl;

	pthread_mutex_lock(&c->lock);
	c->res[r->idx] = res;
	if (res < 0)
		c->errors++;
	c->pending--;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

#define MIB (1024 * 1024)

static void test_async(struct be_node *dir, const struct be_cred *cred)
{
	const char *name = "async vectored reads (8 x 1 MiB concurrent)";
	const size_t total = 8 * MIB;
	struct async_ctl ctl = { .lock = PTHREAD_MUTEX_INITIALIZER,
				 .cond = PTHREAD_COND_INITIALIZER };
	struct async_req req[8];
	struct iovec iov[8][2];
	struct be_node *n = NULL;
	uint8_t *wbuf = NULL, *rbuf = NULL;
	ssize_t w;
	int i, rc, submitted = 0;
	long bad;

	wbuf = malloc(total);
	rbuf = malloc(total);
	REQUIRE(name, wbuf && rbuf, "out of memory");
	fill(wbuf, total, 0);
	memset(rbuf, 0xee, total);
	rc = ops->create(be, cred, dir, "big", 0644, 1, &n, NULL);
	RC(name, rc, "create big");
	w = be_pwrite(be, NULL, n, wbuf, total, 0);
	REQUIRE(name, w == (ssize_t)total, "be_pwrite 8 MiB returned %zd", w);
	rc = be_commit(be, NULL, n);
	RC(name, rc, "commit");

	/* Submit all eight before waiting for any: two iovecs each. */
	pthread_mutex_lock(&ctl.lock);
	ctl.pending = 8;
	pthread_mutex_unlock(&ctl.lock);
	for (i = 0; i < 8; i++) {
		req[i].ctl = &ctl;
		req[i].idx = i;
		iov[i][0].iov_base = rbuf + (size_t)i * MIB;
		iov[i][0].iov_len = 300 * 1024;
		iov[i][1].iov_base = rbuf + (size_t)i * MIB + 300 * 1024;
		iov[i][1].iov_len = MIB - 300 * 1024;
		rc = ops->read(be, NULL, n, iov[i], 2, (uint64_t)i * MIB, async_cb,
			       &req[i]);
		if (rc < 0) {
			pthread_mutex_lock(&ctl.lock);
			ctl.pending -= 8 - i;
			pthread_mutex_unlock(&ctl.lock);
			break;
		}
		submitted++;
	}
	pthread_mutex_lock(&ctl.lock);
	while (ctl.pending > 0)
		pthread_cond_wait(&ctl.cond, &ctl.lock);
	pthread_mutex_unlock(&ctl.lock);
	REQUIRE(name, submitted == 8, "read %d not submitted: %s", submitted,
		strerror(-rc));
	REQUIRE(name, ctl.errors == 0, "%d reads failed", ctl.errors);
	for (i = 0; i < 8; i++)
		REQUIRE(name, ctl.res[i] == MIB, "read %d returned %zd", i,
			ctl.res[i]);
	bad = check_pat(rbuf, total, 0);
	REQUIRE(name, bad < 0, "wrong byte at offset %ld", bad);
	report(1, name, " ");
out:
	if (n)
		be_node_put(be, n);
	free(wbuf);
	free(rbuf);
}

/* ------------------------------------------------------------ the suite */

struct ctx {
	struct be_node *root;
	struct be_node *dir;	/* the work directory */
	struct be_node *f;	/* "f" */
	struct be_cred cred;
	char dirname[64];
};

static void test_mkdir(struct ctx *c)
{
	const char *name = "mkdir/lookup/getattr of the work directory";
	struct be_attr a, la, ga;
	struct be_node *l = NULL;
	int rc;

	rc = ops->mkdir(be, &c->cred, c->root, c->dirname, 0755, &c->dir, &a);
	RC(name, rc, "mkdir");
	REQUIRE(name, S_ISDIR(a.mode), "mkdir attr mode %o is not a dir",
		a.mode);
	REQUIRE(name, (a.mode & 07777) == 0755, "mode %o, want 0755",
		a.mode & 07777);
	REQUIRE(name, a.uid == c->cred.uid && a.gid == c->cred.gid,
		"owner %u:%u, want %u:%u", a.uid, a.gid, c->cred.uid,
		c->cred.gid);
	rc = ops->lookup(be, NULL, c->root, c->dirname, &l, &la);
	RC(name, rc, "lookup");
	REQUIRE(name, la.fileid == a.fileid && l->fileid == a.fileid,
		"lookup fileid %llu, mkdir fileid %llu",
		(unsigned long long)la.fileid, (unsigned long long)a.fileid);
	REQUIRE(name, be_node_same(l, c->dir), "lookup node differs");
	rc = ops->getattr(be, NULL, c->dir, &ga);
	RC(name, rc, "getattr");
	REQUIRE(name, S_ISDIR(ga.mode) && (ga.mode & 07777) == 0755 &&
		      ga.fileid == a.fileid && ga.nlink >= 2,
		"getattr mode %o fileid %llu nlink %u", ga.mode,
		(unsigned long long)ga.fileid, ga.nlink);
	report(1, name, " ");
out:
	be_node_put(be, l);
}

/*
 * A request made for another user is that user's: the backend refuses
 * what the user may not do, and what the user makes is the user's.
 */
static void test_owner(struct ctx *c)
{
	const char *name = "create with another cred: refused in 0755, then uid/gid";
	struct be_cred other = { .uid = 4321, .gid = 8765 };
	struct be_setattr open_dir = { .valid = BE_SET_MODE, .mode = 0777 };
	struct be_setattr close_dir = { .valid = BE_SET_MODE, .mode = 0755 };
	struct be_attr a, ga;
	struct be_node *n = NULL;
	int rc;

	rc = ops->create(be, &other, c->dir, "owned", 0640, 1, &n, &a);
	REQUIRE(name, rc == -EACCES,
		"create as uid 4321 in a 0755 directory of uid %u returned %d, want -EACCES",
		c->cred.uid, rc);
	n = NULL;
	rc = ops->setattr(be, &c->cred, c->dir, &open_dir, NULL);
	RC(name, rc, "chmod 0777");
	rc = ops->create(be, &other, c->dir, "owned", 0640, 1, &n, &a);
	ops->setattr(be, &c->cred, c->dir, &close_dir, NULL);
	RC(name, rc, "create");
	rc = ops->getattr(be, NULL, n, &ga);
	RC(name, rc, "getattr");
	REQUIRE(name, ga.uid == other.uid && ga.gid == other.gid,
		"owner %u:%u, want %u:%u", ga.uid, ga.gid, other.uid,
		other.gid);
	REQUIRE(name, S_ISREG(ga.mode) && (ga.mode & 07777) == 0640,
		"mode %o, want regular 0640", ga.mode);
	report(1, name, " ");
out:
	be_node_put(be, n);
	ops->unlink(be, NULL, c->dir, "owned");
}

static void test_create(struct ctx *c)
{
	const char *name = "create exclusive, second create -EEXIST";
	struct be_attr a;
	struct be_node *n2 = NULL;
	int rc;

	rc = ops->create(be, &c->cred, c->dir, "f", 0644, 1, &c->f, &a);
	RC(name, rc, "create");
	REQUIRE(name, S_ISREG(a.mode) && (a.mode & 07777) == 0644 &&
		      a.size == 0 && a.nlink == 1,
		"attr mode %o size %llu nlink %u", a.mode,
		(unsigned long long)a.size, a.nlink);
	REQUIRE(name, a.uid == c->cred.uid && a.gid == c->cred.gid,
		"owner %u:%u", a.uid, a.gid);
	REQUIRE(name, c->f->fileid == a.fileid, "node fileid differs");
	rc = ops->create(be, &c->cred, c->dir, "f", 0644, 1, &n2, NULL);
	REQUIRE(name, rc == -EEXIST, "second exclusive create returned %d",
		rc);
	report(1, name, " ");
out:
	if (rc >= 0)
		be_node_put(be, n2);
}

/* File layout after test_write: [0, A) data, [A, B) hole, [B, B+C) data. */
#define DA 100000u
#define DB (MIB + 100u)
#define DC 4096u

/*
 * committed_attr right after a commit (ga: a getattr after it): the same
 * generation; none after one more write, nor after a setattr; again after
 * the next commit.  Backends without it: nothing to check.
 */
static void test_committed_attr(struct ctx *c, const struct be_attr *ga)
{
	const char *name = "committed_attr: the file after the commit, none after a write or setattr";
	struct be_gen g1, g2;
	struct be_setattr sa = { .valid = BE_SET_MTIME };
	struct be_attr a;
	uint8_t b = pat(0);
	int rc;

	if (!ops->committed_attr)
		return;
	rc = ops->committed_attr(be, c->f, &a);
	RC(name, rc, "committed_attr after the commit");
	g1 = be_attr_gen(&a);
	g2 = be_attr_gen(ga);
	REQUIRE(name, be_gen_equal(&g1, &g2) && a.fileid == ga->fileid,
		"size %llu mtime %lld, getattr: size %llu mtime %lld",
		(unsigned long long)a.size, (long long)g1.mtime_ns,
		(unsigned long long)ga->size, (long long)g2.mtime_ns);
	REQUIRE(name, be_pwrite(be, NULL, c->f, &b, 1, 0) == 1, "be_pwrite");
	rc = ops->committed_attr(be, c->f, &a);
	REQUIRE(name, rc == -ENODATA, "after a write: %d, want -ENODATA", rc);
	RC(name, be_commit(be, NULL, c->f), "commit");
	RC(name, ops->committed_attr(be, c->f, &a), "committed_attr after the next commit");
	sa.mtime = a.mtime;
	RC(name, ops->setattr(be, NULL, c->f, &sa, NULL), "setattr");
	rc = ops->committed_attr(be, c->f, &a);
	REQUIRE(name, rc == -ENODATA, "after a setattr: %d, want -ENODATA", rc);
	report(1, name, " ");
out:
	return;
}

static void test_write_read(struct ctx *c)
{
	const char *wname = "be_pwrite at offsets, with a sparse hole";
	const char *rname = "read back: bytes, hole zeros, short read at EOF";
	uint8_t *buf = malloc(2 * MIB);
	struct be_attr a;
	ssize_t r;
	long bad;
	int rc;

	REQUIRE(wname, buf != NULL, "out of memory");
	fill(buf, DA, 0);
	r = be_pwrite(be, NULL, c->f, buf, DA, 0);
	REQUIRE(wname, r == DA, "be_pwrite at 0 returned %zd", r);
	fill(buf, DC, DB);
	r = be_pwrite(be, NULL, c->f, buf, DC, DB);
	REQUIRE(wname, r == DC, "be_pwrite at %u returned %zd", DB, r);
	rc = be_commit(be, NULL, c->f);
	RC(wname, rc, "commit");
	rc = ops->getattr(be, NULL, c->f, &a);
	RC(wname, rc, "getattr");
	REQUIRE(wname, a.size == DB + DC, "size %llu, want %u",
		(unsigned long long)a.size, DB + DC);
	report(1, wname, " ");
	test_committed_attr(c, &a);

	memset(buf, 0xee, 2 * MIB);
	r = be_pread(be, NULL, c->f, buf, DA, 0);
	REQUIRE(rname, r == DA, "read at 0 returned %zd", r);
	bad = check_pat(buf, DA, 0);
	REQUIRE(rname, bad < 0, "wrong byte at %ld", bad);
	memset(buf, 0xee, 2 * MIB);
	r = be_pread(be, NULL, c->f, buf, DB - DA, DA);
	REQUIRE(rname, r == DB - DA, "hole read returned %zd", r);
	bad = check_zero(buf, DB - DA);
	REQUIRE(rname, bad < 0, "hole byte at %ld is not zero", DA + bad);
	memset(buf, 0xee, 2 * MIB);
	r = be_pread(be, NULL, c->f, buf, 3 * DC, DB);
	REQUIRE(rname, r == DC, "read across EOF returned %zd, want %u", r,
		DC);
	bad = check_pat(buf, DC, DB);
	REQUIRE(rname, bad < 0, "wrong byte at %ld", DB + bad);
	REQUIRE(rname, buf[DC] == 0xee, "buffer touched past EOF");
	r = be_pread(be, NULL, c->f, buf, 100, DB + DC);
	REQUIRE(rname, r == 0, "read at EOF returned %zd", r);
	r = be_pread(be, NULL, c->f, buf, 100, 10 * MIB);
	REQUIRE(rname, r == 0, "read past EOF returned %zd", r);
	/* One read over all of it. */
	memset(buf, 0xee, 2 * MIB);
	r = be_pread(be, NULL, c->f, buf, 2 * MIB, 0);
	REQUIRE(rname, r == DB + DC, "whole read returned %zd", r);
	REQUIRE(rname, check_pat(buf, DA, 0) < 0 &&
		       check_zero(buf + DA, DB - DA) < 0 &&
		       check_pat(buf + DB, DC, DB) < 0,
		"whole read: wrong bytes");
	report(1, rname, " ");
out:
	free(buf);
}

static void test_truncate(struct ctx *c)
{
	const char *name = "setattr size: truncate down and up";
	uint8_t *buf = malloc(300000);
	struct be_setattr sa = { .valid = BE_SET_SIZE };
	struct be_attr a;
	ssize_t r;
	long bad;
	int rc;

	REQUIRE(name, buf != NULL, "out of memory");
	sa.size = 50000;
	rc = ops->setattr(be, NULL, c->f, &sa, &a);
	RC(name, rc, "truncate to 50000");
	REQUIRE(name, a.size == 50000, "size after truncate down %llu",
		(unsigned long long)a.size);
	r = be_pread(be, NULL, c->f, buf, 300000, 0);
	REQUIRE(name, r == 50000, "read after truncate down returned %zd", r);
	bad = check_pat(buf, 50000, 0);
	REQUIRE(name, bad < 0, "wrong byte at %ld", bad);
	sa.size = 200000;
	rc = ops->setattr(be, NULL, c->f, &sa, &a);
	RC(name, rc, "truncate to 200000");
	rc = ops->getattr(be, NULL, c->f, &a);
	RC(name, rc, "getattr");
	REQUIRE(name, a.size == 200000, "size after truncate up %llu",
		(unsigned long long)a.size);
	memset(buf, 0xee, 300000);
	r = be_pread(be, NULL, c->f, buf, 300000, 0);
	REQUIRE(name, r == 200000, "read after truncate up returned %zd", r);
	REQUIRE(name, check_pat(buf, 50000, 0) < 0, "data lost");
	bad = check_zero(buf + 50000, 150000);
	REQUIRE(name, bad < 0, "byte %ld not zero after extending",
		50000 + bad);
	report(1, name, " ");
out:
	free(buf);
}

static void test_mode_times(struct ctx *c)
{
	const char *mname = "setattr mode";
	const char *tname = "setattr times: exact mtime/atime, MTIME_NOW";
	struct be_setattr sa = { .valid = BE_SET_MODE, .mode = 0600 };
	struct timespec want = { 1234567890, 123456789 };
	struct timespec wanta = { 1111111111, 987654321 };
	struct be_attr a, ga;
	int64_t now;
	int rc;

	rc = ops->setattr(be, NULL, c->f, &sa, &a);
	RC(mname, rc, "setattr");
	rc = ops->getattr(be, NULL, c->f, &ga);
	RC(mname, rc, "getattr");
	REQUIRE(mname, S_ISREG(ga.mode) && (ga.mode & 07777) == 0600 &&
		       (a.mode & 07777) == 0600,
		"mode %o (setattr said %o), want regular 0600", ga.mode,
		a.mode);
	report(1, mname, " ");

	memset(&sa, 0, sizeof(sa));
	sa.valid = BE_SET_MTIME | BE_SET_ATIME;
	sa.mtime = want;
	sa.atime = wanta;
	rc = ops->setattr(be, NULL, c->f, &sa, NULL);
	RC(tname, rc, "setattr mtime");
	rc = ops->getattr(be, NULL, c->f, &ga);
	RC(tname, rc, "getattr");
	REQUIRE(tname, ts_ns(ga.mtime) == ts_ns(want),
		"mtime %lld.%09ld, want %lld.%09ld", (long long)ga.mtime.tv_sec,
		ga.mtime.tv_nsec, (long long)want.tv_sec, want.tv_nsec);
	REQUIRE(tname, ts_ns(ga.atime) == ts_ns(wanta),
		"atime %lld.%09ld, want %lld.%09ld", (long long)ga.atime.tv_sec,
		ga.atime.tv_nsec, (long long)wanta.tv_sec, wanta.tv_nsec);
	REQUIRE(tname, ga.size == 200000, "setattr times changed size");
	memset(&sa, 0, sizeof(sa));
	sa.valid = BE_SET_MTIME_NOW;
	rc = ops->setattr(be, NULL, c->f, &sa, NULL);
	RC(tname, rc, "setattr MTIME_NOW");
	rc = ops->getattr(be, NULL, c->f, &ga);
	RC(tname, rc, "getattr");
	now = (int64_t)time(NULL);
	REQUIRE(tname, ga.mtime.tv_sec > now - 30 && ga.mtime.tv_sec < now + 30,
		"mtime %lld after MTIME_NOW, now is %lld",
		(long long)ga.mtime.tv_sec, (long long)now);
	report(1, tname, " ");
out:
	return;
}

static void test_symlink(struct ctx *c)
{
	const char *name = "symlink + readlink";
	const char *target = "some/where/../target";
	struct be_node *n = NULL, *l = NULL;
	struct be_attr a;
	char buf[256];
	int rc;

	rc = ops->symlink(be, &c->cred, c->dir, "sl", target, &n, &a);
	RC(name, rc, "symlink");
	REQUIRE(name, S_ISLNK(a.mode), "mode %o is not a symlink", a.mode);
	rc = ops->lookup(be, NULL, c->dir, "sl", &l, &a);
	RC(name, rc, "lookup");
	REQUIRE(name, S_ISLNK(a.mode) && a.size == strlen(target),
		"lookup mode %o size %llu", a.mode, (unsigned long long)a.size);
	memset(buf, 'x', sizeof(buf));
	rc = ops->readlink(be, NULL, l, buf, sizeof(buf));
	REQUIRE(name, rc == (int)strlen(target), "readlink returned %d", rc);
	REQUIRE(name, strcmp(buf, target) == 0, "readlink gave '%.*s'",
		(int)strlen(target), buf);
	report(1, name, " ");
out:
	be_node_put(be, n);
	be_node_put(be, l);
}

static void test_link(struct ctx *c)
{
	const char *name = "link: nlink 2, same fileid";
	struct be_node *l = NULL;
	struct be_attr a, la;
	int rc;

	rc = ops->link(be, NULL, c->f, c->dir, "f2", &a);
	RC(name, rc, "link");
	REQUIRE(name, a.nlink == 2 && a.fileid == c->f->fileid,
		"link attr nlink %u fileid %llu", a.nlink,
		(unsigned long long)a.fileid);
	rc = ops->lookup(be, NULL, c->dir, "f2", &l, &la);
	RC(name, rc, "lookup f2");
	REQUIRE(name, la.fileid == c->f->fileid && be_node_same(l, c->f),
		"f2 fileid %llu, f fileid %llu", (unsigned long long)la.fileid,
		(unsigned long long)c->f->fileid);
	rc = ops->getattr(be, NULL, c->f, &a);
	RC(name, rc, "getattr f");
	REQUIRE(name, a.nlink == 2, "f nlink %u", a.nlink);
	report(1, name, " ");
out:
	be_node_put(be, l);
}

static void test_rename(struct ctx *c)
{
	const char *name = "rename: plain, over a file, NOREPLACE -EEXIST";
	struct be_node *l = NULL, *h = NULL;
	struct be_attr a;
	int rc;

	rc = ops->rename(be, NULL, c->dir, "f2", c->dir, "g", 0);
	RC(name, rc, "rename f2 g");
	rc = ops->lookup(be, NULL, c->dir, "f2", &l, NULL);
	REQUIRE(name, rc == -ENOENT, "f2 still there after rename (%d)", rc);
	l = NULL;
	rc = ops->lookup(be, NULL, c->dir, "g", &l, &a);
	RC(name, rc, "lookup g");
	REQUIRE(name, a.fileid == c->f->fileid, "g has fileid %llu",
		(unsigned long long)a.fileid);
	be_node_put(be, l);
	l = NULL;

	rc = ops->create(be, &c->cred, c->dir, "h", 0644, 1, &h, NULL);
	RC(name, rc, "create h");
	rc = ops->rename(be, NULL, c->dir, "g", c->dir, "h", 0);
	RC(name, rc, "rename g over h");
	rc = ops->lookup(be, NULL, c->dir, "h", &l, &a);
	RC(name, rc, "lookup h");
	REQUIRE(name, a.fileid == c->f->fileid && a.nlink == 2,
		"h fileid %llu nlink %u after rename over it",
		(unsigned long long)a.fileid, a.nlink);
	be_node_put(be, l);
	l = NULL;
	rc = ops->lookup(be, NULL, c->dir, "g", &l, NULL);
	REQUIRE(name, rc == -ENOENT, "g still there (%d)", rc);
	l = NULL;

	rc = ops->rename(be, NULL, c->dir, "h", c->dir, "f", BE_RENAME_NOREPLACE);
	REQUIRE(name, rc == -EEXIST, "NOREPLACE onto f returned %d", rc);
	rc = ops->lookup(be, NULL, c->dir, "h", &l, NULL);
	RC(name, rc, "h gone after failed NOREPLACE");
	be_node_put(be, l);
	l = NULL;
	/* NOREPLACE to a free name works. */
	rc = ops->rename(be, NULL, c->dir, "h", c->dir, "h2", BE_RENAME_NOREPLACE);
	RC(name, rc, "NOREPLACE rename to a free name");
	rc = ops->rename(be, NULL, c->dir, "h2", c->dir, "h", 0);
	RC(name, rc, "rename back");
	report(1, name, " ");
out:
	be_node_put(be, h);
	be_node_put(be, l);
}

static void test_mknod(struct ctx *c)
{
	const char *name = "mknod fifo";
	struct be_node *n = NULL;
	struct be_attr a;
	int rc;

	rc = ops->mknod(be, &c->cred, c->dir, "p", S_IFIFO | 0644, 0, &n, &a);
	RC(name, rc, "mknod");
	REQUIRE(name, S_ISFIFO(a.mode) && (a.mode & 07777) == 0644,
		"mode %o", a.mode);
	rc = ops->getattr(be, NULL, n, &a);
	RC(name, rc, "getattr");
	REQUIRE(name, S_ISFIFO(a.mode), "getattr mode %o", a.mode);
	report(1, name, " ");
out:
	be_node_put(be, n);
}

static void test_readdir(struct ctx *c, struct be_node *sub)
{
	const char *name = "readdir lists exactly the entries, with attrs";
	static const char *const want[] = { "d", "f", "h", "p", "sl" };
	static const unsigned int type[] = { S_IFDIR, S_IFREG, S_IFREG,
					     S_IFIFO, S_IFLNK };
	struct dirlist *dl = calloc(1, sizeof(*dl));
	int rc, i, j, found;

	REQUIRE(name, dl != NULL, "out of memory");
	rc = ops->readdir(be, NULL, c->dir, collect, dl);
	RC(name, rc, "readdir");
	REQUIRE(name, dl->n == 5, "%d entries, want 5 (d f h p sl)", dl->n);
	REQUIRE(name, dl->no_attr == 0, "%d entries without attrs",
		dl->no_attr);
	for (i = 0; i < 5; i++) {
		found = -1;
		for (j = 0; j < dl->n; j++)
			if (strcmp(dl->names[j], want[i]) == 0)
				found = j;
		REQUIRE(name, found >= 0, "'%s' missing", want[i]);
		REQUIRE(name, (dl->attrs[found].mode & S_IFMT) == type[i],
			"'%s' has mode %o", want[i], dl->attrs[found].mode);
	}
	for (j = 0; j < dl->n; j++) {
		if (strcmp(dl->names[j], "f") == 0 ||
		    strcmp(dl->names[j], "h") == 0)
			REQUIRE(name, dl->attrs[j].fileid == c->f->fileid &&
				      dl->attrs[j].size == 200000,
				"'%s' fileid %llu size %llu", dl->names[j],
				(unsigned long long)dl->attrs[j].fileid,
				(unsigned long long)dl->attrs[j].size);
		if (strcmp(dl->names[j], "d") == 0)
			REQUIRE(name, dl->attrs[j].fileid == sub->fileid,
				"'d' fileid differs");
	}
	report(1, name, " ");
out:
	free(dl);
}

static void test_remove(struct ctx *c)
{
	const char *name = "unlink/rmdir: -ENOTEMPTY, -ENOENT, -ENOTDIR";
	int rc;

	rc = ops->rmdir(be, NULL, c->dir, "d");
	REQUIRE(name, rc == -ENOTEMPTY || rc == -EEXIST,
		"rmdir of non-empty dir returned %d", rc);
	REQUIRE(name, rc == -ENOTEMPTY, "rmdir of non-empty gave -EEXIST");
	rc = ops->rmdir(be, NULL, c->dir, "f");
	REQUIRE(name, rc == -ENOTDIR, "rmdir of a file returned %d", rc);
	rc = ops->unlink(be, NULL, c->dir, "missing");
	REQUIRE(name, rc == -ENOENT, "unlink of missing returned %d", rc);
	rc = ops->rmdir(be, NULL, c->dir, "missing");
	REQUIRE(name, rc == -ENOENT, "rmdir of missing returned %d", rc);
	report(1, name, " ");
out:
	return;
}

static void test_errors(struct ctx *c)
{
	const char *name = "lookup of missing -ENOENT";
	struct be_node *n = NULL;
	int rc;

	rc = ops->lookup(be, NULL, c->dir, "no-such-name", &n, NULL);
	REQUIRE(name, rc == -ENOENT, "returned %d", rc);
	report(1, name, " ");
out:
	if (rc >= 0)
		be_node_put(be, n);
}

static void test_statfs(struct ctx *c)
{
	const char *name = "statfs sane";
	struct statvfs st;
	int rc;

	memset(&st, 0, sizeof(st));
	rc = ops->statfs(be, NULL, c->dir, &st);
	RC(name, rc, "statfs");
	REQUIRE(name, st.f_bsize > 0 && st.f_blocks > 0 &&
		      st.f_bfree <= st.f_blocks && st.f_bavail <= st.f_blocks,
		"bsize %lu blocks %llu bfree %llu bavail %llu", st.f_bsize,
		(unsigned long long)st.f_blocks,
		(unsigned long long)st.f_bfree,
		(unsigned long long)st.f_bavail);
	report(1, name, " ");
out:
	return;
}

static void test_handles(struct ctx *c)
{
	const char *name = "node_encode/node_decode roundtrip";
	unsigned char buf[BE_HANDLE_MAX];
	size_t len = sizeof(buf);
	struct be_node *n = NULL;
	struct be_attr a;
	int rc;

	rc = ops->node_encode(be, c->f, buf, &len);
	RC(name, rc, "encode");
	REQUIRE(name, len > 0 && len <= BE_HANDLE_MAX, "length %zu", len);
	rc = ops->node_decode(be, NULL, buf, len, &n, &a);
	RC(name, rc, "decode");
	REQUIRE(name, n->fileid == c->f->fileid && a.fileid == c->f->fileid &&
		      be_node_same(n, c->f),
		"decoded fileid %llu, want %llu",
		(unsigned long long)n->fileid,
		(unsigned long long)c->f->fileid);
	REQUIRE(name, a.size == 200000, "decoded size %llu",
		(unsigned long long)a.size);
	report(1, name, " ");
out:
	if (rc >= 0)
		be_node_put(be, n);
}

/* Remove whatever the suite left in the work dir, then the dir itself. */
static int cleanup_fn(void *arg, const char *name, uint64_t fileid,
		      const struct be_attr *attr, struct be_node *node)
{
	struct dirlist *dl = arg;

	return collect(dl, name, fileid, attr, node);
}

static void cleanup(struct ctx *c)
{
	const char *name = "cleanup: the work directory is removed";
	struct dirlist *dl = calloc(1, sizeof(*dl));
	struct be_node *d = NULL;
	int i, rc;

	REQUIRE(name, dl != NULL, "out of memory");
	rc = ops->lookup(be, NULL, c->dir, "d", &d, NULL);
	if (rc >= 0) {
		ops->unlink(be, NULL, d, "x");
		be_node_put(be, d);
		ops->rmdir(be, NULL, c->dir, "d");
	}
	rc = ops->readdir(be, NULL, c->dir, cleanup_fn, dl);
	RC(name, rc, "readdir");
	for (i = 0; i < dl->n; i++) {
		rc = ops->unlink(be, NULL, c->dir, dl->names[i]);
		RC(name, rc, dl->names[i]);
	}
	rc = ops->rmdir(be, NULL, c->root, c->dirname);
	RC(name, rc, "rmdir");
	report(1, name, " ");
out:
	free(dl);
}

int main(int argc, char **argv)
{
	struct be_params params = { .timeout_ms = 20000 };
	struct ctx c = { 0 };
	struct be_node *sub = NULL, *x = NULL;
	struct be_attr a;
	char err[512];
	int rc;

	if (argc != 2) {
		fprintf(stderr, "usage: %s BACKEND_SPEC\n", argv[0]);
		return 2;
	}
	umask(0);
	log_init(0, LOG_LVL_WARN);
	rc = be_open(argv[1], &params, &be, err, sizeof(err));
	if (rc < 0) {
		printf("not ok 1 - be_open %s: %s\n", argv[1], err);
		printf("1..1\n");
		return 1;
	}
	ops = be->ops;
	printf("# backend %s (%s)\n", argv[1], ops->name);
	c.cred.uid = (uint32_t)geteuid();
	c.cred.gid = (uint32_t)getegid();
	snprintf(c.dirname, sizeof(c.dirname), "conformance.%ld.%lld",
		 (long)getpid(), (long long)time(NULL));

	rc = ops->root(be, NULL, &c.root, &a);
	report(rc >= 0 && S_ISDIR(a.mode) && ops->version == BE_OPS_VERSION,
	       "root is a directory", "rc %d mode %o version %d", rc,
	       rc >= 0 ? a.mode : 0, ops->version);
	if (rc < 0)
		goto done;
	test_mkdir(&c);
	if (!c.dir)
		goto done;
	test_create(&c);
	if (!c.f)
		goto clean;
	test_owner(&c);
	test_write_read(&c);
	test_truncate(&c);
	test_mode_times(&c);
	test_symlink(&c);
	test_link(&c);
	test_rename(&c);
	rc = ops->mkdir(be, &c.cred, c.dir, "d", 0700, &sub, NULL);
	if (rc >= 0)
		rc = ops->create(be, &c.cred, sub, "x", 0600, 1, &x, NULL);
	report(rc >= 0, "mkdir d, create d/x", "%s", strerror(-rc));
	test_mknod(&c);
	if (sub)
		test_readdir(&c, sub);
	test_remove(&c);
	test_errors(&c);
	test_statfs(&c);
	test_handles(&c);
	test_async(c.dir, &c.cred);
	be_node_put(be, x);
	be_node_put(be, sub);
clean:
	cleanup(&c);
	be_node_put(be, c.f);
	be_node_put(be, c.dir);
done:
	be_node_put(be, c.root);
	be_close(be);
	printf("1..%d\n", ntests);
	if (nfailed)
		printf("# %d of %d checks failed\n", nfailed, ntests);
	return nfailed ? 1 : 0;
}
