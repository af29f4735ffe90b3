/* SPDX-License-Identifier: GPL-2.0 */
/*
 * test_fdlru.c - unit tests of the bounded descriptor cache
 * (backend/fdlru.c): the limit is honoured, descriptors in use are never
 * closed, a closed entry opens again, EMFILE makes room, and many threads
 * can share it (the 'threads' run under TSan).
 *
 * Entries are backed by real files in a directory under /tmp, one file
 * per (entry, slot), so a test can check that a descriptor still names
 * the file it should (same inode) and count its open descriptors.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fd_count.h"
#include "fdlru.h"

#define NENT 64

struct obj {
	struct fdlru_ent e;
	int id;
	ino_t ino[FDLRU_SLOTS];	/* of its files, per slot */
};

static char dir[64];
static struct obj objs[NENT];
static atomic_int opens;	/* calls of open_obj that succeeded */
static atomic_int fail_next;	/* open_obj fails with this -errno once */

static int open_obj(struct fdlru_ent *e, unsigned int slot,
		    unsigned int flags)
{
	struct obj *o = (struct obj *)((char *)e - offsetof(struct obj, e));
	char path[128];
	int fd, err = atomic_exchange(&fail_next, 0);

	if (err)
		return err;
	snprintf(path, sizeof(path), "%s/%d.%u", dir, o->id, slot);
	fd = open(path, O_RDWR | O_CLOEXEC | (flags ? O_CREAT : 0), 0600);
	if (fd < 0)
		return -errno;
	atomic_fetch_add(&opens, 1);
	return fd;
}

/* Descriptors of this process that name files in dir. */
static int fds_in_dir(void)
{
	int n = fds_under(dir, NULL);

	ck_assert_int_ge(n, 0);
	return n;
}

/* The descriptor of slot s of o is open on o's file. */
static void assert_names(struct obj *o, unsigned int s)
{
	struct stat st;
	int fd = fdlru_fd(&o->e, s);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fstat(fd, &st), 0);
	ck_assert_uint_eq(st.st_ino, o->ino[s]);
}

static int rm_one(const char *path, const struct stat *sb, int type,
		  struct FTW *ftw)
{
	remove(path);
	return 0;
}

static void setup(void)
{
	int i;
	unsigned int s;

	snprintf(dir, sizeof(dir), "/tmp/stagefs-fdlru-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	for (i = 0; i < NENT; i++) {
		objs[i].id = i;
		fdlru_ent_init(&objs[i].e);
		for (s = 0; s < FDLRU_SLOTS; s++) {
			char path[128];
			struct stat st;
			int fd;

			snprintf(path, sizeof(path), "%s/%d.%u", dir, i, s);
			fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
			ck_assert_int_ge(fd, 0);
			ck_assert_int_eq(fstat(fd, &st), 0);
			objs[i].ino[s] = st.st_ino;
			close(fd);
		}
	}
	atomic_store(&opens, 0);
	atomic_store(&fail_next, 0);
}

static void teardown(void)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void close_all(struct fdlru *l)
{
	int i;

	for (i = 0; i < NENT; i++)
		fdlru_close(l, &objs[i].e);
	ck_assert_uint_eq(fdlru_open_fds(l), 0);
	ck_assert_int_eq(fds_in_dir(), 0);
	fdlru_destroy(l);
}

/* Sixty-four entries of two slots through a limit of ten descriptors. */
START_TEST(test_limit)
{
	struct fdlru *l;
	int i;

	ck_assert_int_eq(fdlru_create(10, open_obj, &l), 0);
	ck_assert_uint_eq(fdlru_limit(l), 10);
	for (i = 0; i < NENT; i++) {
		ck_assert_int_eq(fdlru_get(l, &objs[i].e, 0x3, 0), 0);
		assert_names(&objs[i], 0);
		assert_names(&objs[i], 1);
		fdlru_put(l, &objs[i].e);
		ck_assert_uint_le(fdlru_open_fds(l), 10);
		ck_assert_int_le(fds_in_dir(), 10);
	}
	/* The most recent five are the ones still open. */
	for (i = NENT - 5; i < NENT; i++)
		ck_assert_int_ge(objs[i].e.fd[0], 0);
	ck_assert_int_lt(objs[0].e.fd[0], 0);
	close_all(l);
}
END_TEST

/* A use of an entry keeps it open however many others come and go. */
START_TEST(test_in_use_never_closed)
{
	struct fdlru *l;
	int i, fd0, fd1;

	ck_assert_int_eq(fdlru_create(4, open_obj, &l), 0);
	/* obj 0 idle first (on the list), then taken again while open. */
	ck_assert_int_eq(fdlru_get(l, &objs[0].e, 0x1, 0), 0);
	fdlru_put(l, &objs[0].e);
	ck_assert_int_eq(fdlru_get(l, &objs[0].e, 0x1, 0), 0);
	ck_assert_int_eq(fdlru_get(l, &objs[1].e, 0x7, 0), 0);
	fd0 = fdlru_fd(&objs[0].e, 0);
	fd1 = fdlru_fd(&objs[1].e, 2);
	for (i = 2; i < NENT; i++) {
		ck_assert_int_eq(fdlru_get(l, &objs[i].e, 0x3, 0), 0);
		fdlru_put(l, &objs[i].e);
		/* The four in use stay; every other one is closed. */
		ck_assert_uint_le(fdlru_open_fds(l), 4);
	}
	ck_assert_int_eq(fdlru_fd(&objs[0].e, 0), fd0);
	ck_assert_int_eq(fdlru_fd(&objs[1].e, 2), fd1);
	assert_names(&objs[0], 0);
	assert_names(&objs[1], 0);
	assert_names(&objs[1], 2);
	/* A second use of a held entry, for another slot, keeps it too. */
	ck_assert_int_eq(fdlru_get(l, &objs[0].e, 0x2, 0), 0);
	assert_names(&objs[0], 1);
	fdlru_put(l, &objs[0].e);
	assert_names(&objs[0], 0);
	ck_assert_int_eq(fdlru_fd(&objs[0].e, 0), fd0);
	fdlru_put(l, &objs[0].e);
	fdlru_put(l, &objs[1].e);
	ck_assert_uint_le(fdlru_open_fds(l), 4);
	close_all(l);
}
END_TEST

/* Closed by the LRU, an entry opens again on the next get. */
START_TEST(test_reopen)
{
	struct fdlru *l;
	char buf[8] = "";
	int i;

	ck_assert_int_eq(fdlru_create(2, open_obj, &l), 0);
	ck_assert_int_eq(fdlru_get(l, &objs[0].e, 0x1, 0), 0);
	ck_assert_int_eq(pwrite(fdlru_fd(&objs[0].e, 0), "hello", 5, 0), 5);
	fdlru_put(l, &objs[0].e);
	for (i = 1; i < 4; i++) {
		ck_assert_int_eq(fdlru_get(l, &objs[i].e, 0x1, 0), 0);
		fdlru_put(l, &objs[i].e);
	}
	ck_assert_int_lt(objs[0].e.fd[0], 0);
	ck_assert_int_eq(atomic_load(&opens), 4);
	ck_assert_int_eq(fdlru_get(l, &objs[0].e, 0x1, 0), 0);
	ck_assert_int_eq(atomic_load(&opens), 5);
	assert_names(&objs[0], 0);
	ck_assert_int_eq(pread(fdlru_fd(&objs[0].e, 0), buf, 5, 0), 5);
	ck_assert_str_eq(buf, "hello");
	fdlru_put(l, &objs[0].e);
	/* Open and used again: no new open. */
	ck_assert_int_eq(fdlru_get(l, &objs[0].e, 0x1, 0), 0);
	fdlru_put(l, &objs[0].e);
	ck_assert_int_eq(atomic_load(&opens), 5);
	close_all(l);
}
END_TEST

/* Busy owners lose their descriptors after every idle one. */
START_TEST(test_busy_last)
{
	struct fdlru *l;
	int i;

	ck_assert_int_eq(fdlru_create(3, open_obj, &l), 0);
	ck_assert_int_eq(fdlru_get(l, &objs[0].e, 0x1, 0), 0);
	fdlru_put(l, &objs[0].e);
	fdlru_mark(l, &objs[0].e, true);
	for (i = 1; i < 10; i++) {
		ck_assert_int_eq(fdlru_get(l, &objs[i].e, 0x1, 0), 0);
		fdlru_put(l, &objs[i].e);
	}
	ck_assert_int_ge(objs[0].e.fd[0], 0);	/* the oldest, but busy */
	fdlru_mark(l, &objs[0].e, false);
	ck_assert_int_eq(fdlru_get(l, &objs[10].e, 0x1, 0), 0);
	fdlru_put(l, &objs[10].e);
	ck_assert_int_ge(objs[0].e.fd[0], 0);	/* idle now, but used later */
	for (i = 11; i < 14; i++) {
		ck_assert_int_eq(fdlru_get(l, &objs[i].e, 0x1, 0), 0);
		fdlru_put(l, &objs[i].e);
	}
	ck_assert_int_lt(objs[0].e.fd[0], 0);
	close_all(l);
}
END_TEST

/* A failed open takes no use; EMFILE closes idle ones and retries. */
START_TEST(test_open_errors)
{
	struct fdlru *l;
	int i;

	ck_assert_int_eq(fdlru_create(100, open_obj, &l), 0);
	for (i = 0; i < 40; i++) {
		ck_assert_int_eq(fdlru_get(l, &objs[i].e, 0x1, 0), 0);
		fdlru_put(l, &objs[i].e);
	}
	ck_assert_uint_eq(fdlru_open_fds(l), 40);
	atomic_store(&fail_next, -EMFILE);
	ck_assert_int_eq(fdlru_get(l, &objs[50].e, 0x1, 0), 0);
	assert_names(&objs[50], 0);
	/* Sixteen idle ones made room for it. */
	ck_assert_uint_eq(fdlru_open_fds(l), 40 - 16 + 1);
	ck_assert_int_lt(objs[0].e.fd[0], 0);
	fdlru_put(l, &objs[50].e);

	atomic_store(&fail_next, -ENOENT);
	ck_assert_int_eq(fdlru_get(l, &objs[51].e, 0x1, 0), -ENOENT);
	ck_assert_uint_eq(objs[51].e.users, 0);
	/* ... and the entry works once the cause is gone. */
	ck_assert_int_eq(fdlru_get(l, &objs[51].e, 0x1, 0), 0);
	assert_names(&objs[51], 0);
	fdlru_put(l, &objs[51].e);
	close_all(l);
}
END_TEST

/*
 * Fill the stack below the caller with what looks like open descriptors,
 * as earlier calls leave it in the daemon: what a get leaves in slots it
 * did not reach must come from the entry, not from the stack.
 */
static int __attribute__((noinline)) dirty_stack(int fd)
{
	volatile int junk[4096];
	int i;

	for (i = 0; i < 4096; i++)
		junk[i] = fd;
	return junk[fd % 4096];
}

/*
 * bug: a get whose open failed at one slot left the slots after it as
 * whatever was on the stack, and took any such value >= 0 for a
 * descriptor it had opened: counted in the LRU, put in the entry (a
 * posix node's read-write slot, a cache file's O_DIRECT one, used for
 * I/O), and later closed, under whoever really owned that number.
 */
START_TEST(bug_failed_open_keeps_no_stack_fds)
{
	struct fdlru *l;
	unsigned int s;
	int spare = open("/dev/null", O_RDONLY | O_CLOEXEC);

	ck_assert_int_ge(spare, 0);
	ck_assert_int_eq(fdlru_create(100, open_obj, &l), 0);
	/* Slot 0 fails: 1 and 2 are never reached. */
	ck_assert_int_eq(dirty_stack(spare), spare);
	atomic_store(&fail_next, -ESTALE);
	ck_assert_int_eq(fdlru_get(l, &objs[9].e, 0x7, 0), -ESTALE);
	/* Only slot 1 asked for, and it fails: 2 is never reached. */
	ck_assert_int_eq(dirty_stack(spare), spare);
	atomic_store(&fail_next, -ENOENT);
	ck_assert_int_eq(fdlru_get(l, &objs[10].e, 0x2, 0), -ENOENT);
	for (s = 0; s < FDLRU_SLOTS; s++) {
		ck_assert_int_lt(objs[9].e.fd[s], 0);
		ck_assert_int_lt(objs[10].e.fd[s], 0);
	}
	ck_assert_uint_eq(objs[9].e.users, 0);
	ck_assert_uint_eq(fdlru_open_fds(l), 0);
	close_all(l);
	/* Nobody closed a descriptor the LRU never owned. */
	ck_assert_int_eq(fcntl(spare, F_GETFD), FD_CLOEXEC);
	close(spare);
}
END_TEST

/* Create flag reaches the open function: a missing file is made. */
START_TEST(test_create_flag)
{
	struct fdlru *l;
	char path[128];

	ck_assert_int_eq(fdlru_create(8, open_obj, &l), 0);
	snprintf(path, sizeof(path), "%s/%d.%u", dir, 7, 1);
	ck_assert_int_eq(unlink(path), 0);
	ck_assert_int_eq(fdlru_get(l, &objs[7].e, 0x2, 0), -ENOENT);
	ck_assert_int_eq(fdlru_get(l, &objs[7].e, 0x2, 1), 0);
	fdlru_put(l, &objs[7].e);
	ck_assert_int_eq(access(path, F_OK), 0);
	close_all(l);
}
END_TEST

/* fdlru_close waits for the users, then closes. */
static void *late_put(void *arg)
{
	struct fdlru *l = arg;

	usleep(100 * 1000);
	assert_names(&objs[3], 0);	/* still open while in use */
	fdlru_put(l, &objs[3].e);
	return NULL;
}

START_TEST(test_close_waits)
{
	struct fdlru *l;
	pthread_t t;

	ck_assert_int_eq(fdlru_create(8, open_obj, &l), 0);
	ck_assert_int_eq(fdlru_get(l, &objs[3].e, 0x1, 0), 0);
	ck_assert_int_eq(pthread_create(&t, NULL, late_put, l), 0);
	fdlru_close(l, &objs[3].e);
	ck_assert_int_lt(objs[3].e.fd[0], 0);
	pthread_join(t, NULL);
	close_all(l);
}
END_TEST

/*
 * A put without a get is refused (and logged): wrapped, the count of
 * users would keep the entry's fdlru_close waiting for ever, which is
 * how a daemon hangs at unmount (its FORGETs free the nodes).
 */
START_TEST(test_put_without_get)
{
	struct fdlru *l;

	ck_assert_int_eq(fdlru_create(8, open_obj, &l), 0);
	ck_assert_int_eq(fdlru_get(l, &objs[5].e, 0x1, 0), 0);
	fdlru_put(l, &objs[5].e);
	fdlru_put(l, &objs[5].e);	/* the bug under test */
	ck_assert_uint_eq(objs[5].e.users, 0);
	fdlru_close(l, &objs[5].e);	/* returns */
	close_all(l);
}
END_TEST

/* Many threads, few descriptors: every use sees its own files. */
#define NTHREADS 4
#define ROUNDS 3000

struct worker {
	struct fdlru *l;
	unsigned int seed;
	int bad;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	int r;

	for (r = 0; r < ROUNDS; r++) {
		struct obj *o = &objs[rand_r(&w->seed) % NENT];
		unsigned int mask = 1 + rand_r(&w->seed) % 7, s;
		struct stat st;

		if (fdlru_get(w->l, &o->e, mask, 0) < 0) {
			w->bad++;
			continue;
		}
		for (s = 0; s < FDLRU_SLOTS; s++) {
			if (!(mask & (1u << s)))
				continue;
			if (fstat(fdlru_fd(&o->e, s), &st) < 0 ||
			    st.st_ino != o->ino[s])
				w->bad++;
		}
		if (r % 7 == 0)
			fdlru_mark(w->l, &o->e, r % 2);
		fdlru_put(w->l, &o->e);
	}
	return NULL;
}

START_TEST(test_threads)
{
	struct worker w[NTHREADS];
	pthread_t t[NTHREADS];
	struct fdlru *l;
	int i;

	ck_assert_int_eq(fdlru_create(12, open_obj, &l), 0);
	for (i = 0; i < NTHREADS; i++) {
		w[i] = (struct worker){ .l = l, .seed = (unsigned int)i + 1 };
		ck_assert_int_eq(pthread_create(&t[i], NULL, worker_main, &w[i]),
				 0);
	}
	for (i = 0; i < NTHREADS; i++) {
		pthread_join(t[i], NULL);
		ck_assert_int_eq(w[i].bad, 0);
	}
	/* At most 4 threads x 3 slots in use beyond the limit of 12. */
	ck_assert_uint_le(fdlru_open_fds(l), 12);
	close_all(l);
}
END_TEST

static Suite *fdlru_suite(void)
{
	Suite *s = suite_create("fdlru");
	TCase *tc = tcase_create("core");
	TCase *bugs = tcase_create("known_bugs");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_limit);
	tcase_add_test(tc, test_in_use_never_closed);
	tcase_add_test(tc, test_reopen);
	tcase_add_test(tc, test_busy_last);
	tcase_add_test(tc, test_open_errors);
	tcase_add_test(tc, test_create_flag);
	tcase_add_test(tc, test_close_waits);
	tcase_add_test(tc, test_put_without_get);
	tcase_add_test(tc, test_threads);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);
	tcase_add_checked_fixture(bugs, setup, teardown);
	tcase_add_test(bugs, bug_failed_open_keeps_no_stack_fds);
	tcase_set_timeout(bugs, 60);
	suite_add_tcase(s, bugs);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(fdlru_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
