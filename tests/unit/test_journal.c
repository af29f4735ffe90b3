/* SPDX-License-Identifier: GPL-2.0 */
/*
 * test_journal.c - unit tests of cache/journal.c: the append-only log of
 * dirty chunks, its replay after a crash (torn tail, corruption) and its
 * compaction.
 *
 * Each test works in its own directory under /tmp, made by the fixture
 * and removed by it, so the suite is safe with CK_FORK=no.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache_int.h"

#define MAX_RECS 64

struct rec {
	enum jrec_type type;
	char spec[128];
	uint64_t fileid;
	uint64_t chunk;
	unsigned char handle[BE_HANDLE_MAX];
	size_t handle_len;
};

struct seen {
	struct rec r[MAX_RECS];
	int n;
	int fail_at;	/* return -ENOMEM at this record (1-based), 0: never */
};

/*
 * Each test's directory is made in base_dir, which main() makes and
 * removes: with CK_FORK (the default) a failed assertion _exit()s the
 * test's process before its teardown runs.
 */
static char base_dir[64];
static char tdir[128];
static char jpath[160];
static char err[1024];
static struct journal *J;

static void setup(void)
{
	snprintf(tdir, sizeof(tdir), "%s/t-XXXXXX", base_dir);
	ck_assert_ptr_nonnull(mkdtemp(tdir));
	snprintf(jpath, sizeof(jpath), "%s/journal", tdir);
	err[0] = '\0';
	J = NULL;
}

static void teardown(void)
{
	char path[200];

	journal_close(J);
	J = NULL;
	unlink(jpath);
	snprintf(path, sizeof(path), "%s.new", jpath);
	unlink(path);
	rmdir(tdir);
}

static int collect(void *arg, enum jrec_type type, const char *spec,
		   uint64_t fileid, uint64_t chunk, const void *handle,
		   size_t handle_len)
{
	struct seen *s = arg;
	struct rec *r;

	if (s->fail_at && s->n + 1 == s->fail_at)
		return -ENOMEM;
	ck_assert_int_lt(s->n, MAX_RECS);
	r = &s->r[s->n++];
	memset(r, 0, sizeof(*r));
	r->type = type;
	snprintf(r->spec, sizeof(r->spec), "%s", spec);
	r->fileid = fileid;
	r->chunk = chunk;
	ck_assert_uint_le(handle_len, BE_HANDLE_MAX);
	memcpy(r->handle, handle, handle_len);
	r->handle_len = handle_len;
	return 0;
}

static void jopen(void)
{
	int rc;

	journal_close(J);
	J = NULL;
	rc = journal_open(jpath, &J, err, sizeof(err));
	ck_assert_msg(rc == 0, "journal_open: %d (%s)", rc, err);
}

static int jreplay(struct seen *s)
{
	memset(s, 0, sizeof(*s));
	err[0] = '\0';
	return journal_replay(J, collect, s, err, sizeof(err));
}

static off_t file_size(void)
{
	struct stat st;

	ck_assert_int_eq(stat(jpath, &st), 0);
	return st.st_size;
}

/* The i-th record of the standard set used by most tests. */
static void std_rec(int i, struct rec *r)
{
	memset(r, 0, sizeof(*r));
	r->type = (enum jrec_type)(JREC_FILE + i % 4);
	snprintf(r->spec, sizeof(r->spec), "nfs://vast%d/export/scratch", i % 3);
	r->fileid = 0x1000 + (uint64_t)i * 7;
	r->chunk = (uint64_t)i * 3;
	if (r->type == JREC_FILE) {
		size_t k;

		r->handle_len = 8 + (size_t)i;
		for (k = 0; k < r->handle_len; k++)
			r->handle[k] = (unsigned char)(i * 31 + k);
	}
}

/* Append n standard records; offs[i] gets where record i starts. */
static void append_std(int first, int n, uint64_t *offs)
{
	int i;

	for (i = first; i < first + n; i++) {
		struct rec r;

		std_rec(i, &r);
		if (offs)
			offs[i - first] = journal_size(J);
		ck_assert_int_eq(journal_append(J, r.type, r.spec, r.fileid,
						r.chunk, r.handle,
						r.handle_len), 0);
	}
}

static void check_std(const struct seen *s, int first, int n)
{
	int i;

	ck_assert_int_eq(s->n, n);
	for (i = 0; i < n; i++) {
		struct rec r;

		std_rec(first + i, &r);
		ck_assert_int_eq(s->r[i].type, r.type);
		ck_assert_str_eq(s->r[i].spec, r.spec);
		ck_assert_uint_eq(s->r[i].fileid, r.fileid);
		ck_assert_uint_eq(s->r[i].chunk, r.chunk);
		ck_assert_uint_eq(s->r[i].handle_len, r.handle_len);
		ck_assert_mem_eq(s->r[i].handle, r.handle, r.handle_len);
	}
}

static void pwrite_at(const void *buf, size_t len, off_t off)
{
	int fd = open(jpath, O_WRONLY);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, buf, len, off), (ssize_t)len);
	close(fd);
}

static void append_bytes(int byte, size_t len)
{
	char *buf = malloc(len);

	ck_assert_ptr_nonnull(buf);
	memset(buf, byte, len);
	pwrite_at(buf, len, file_size());
	free(buf);
}

/* ---- tests ------------------------------------------------------------- */

START_TEST(test_roundtrip)
{
	struct seen s;

	jopen();
	ck_assert_uint_eq(journal_size(J), 0);
	append_std(0, 8, NULL);
	ck_assert_int_eq(journal_sync(J), 0);
	ck_assert_uint_eq(journal_size(J), (uint64_t)file_size());

	/* From disk, in order. */
	jopen();
	ck_assert_uint_eq(journal_size(J), (uint64_t)file_size());
	ck_assert_int_eq(jreplay(&s), 0);
	check_std(&s, 0, 8);

	/* Appending after a replay continues the same log. */
	append_std(8, 2, NULL);
	jopen();
	ck_assert_int_eq(jreplay(&s), 0);
	check_std(&s, 0, 10);
}
END_TEST

START_TEST(test_empty_journal)
{
	struct seen s;

	jopen();
	ck_assert_int_eq(jreplay(&s), 0);
	ck_assert_int_eq(s.n, 0);
	ck_assert_uint_eq(journal_size(J), 0);
}
END_TEST

START_TEST(test_torn_tail_in_payload)
{
	uint64_t offs[3];
	struct seen s;
	off_t full;

	jopen();
	append_std(0, 3, offs);
	full = file_size();
	/* The node died while the third record was being written. */
	ck_assert_int_eq(truncate(jpath, full - 5), 0);

	jopen();
	ck_assert_msg(jreplay(&s) == 0, "replay of a torn tail: %s", err);
	check_std(&s, 0, 2);
	ck_assert_uint_eq(journal_size(J), offs[2]);
	ck_assert_int_eq(file_size(), (off_t)offs[2]);

	/* A record appended after the cut is read back after the others. */
	append_std(7, 1, NULL);
	jopen();
	ck_assert_int_eq(jreplay(&s), 0);
	ck_assert_int_eq(s.n, 3);
	ck_assert_uint_eq(s.r[2].fileid, 0x1000 + 7 * 7);
}
END_TEST

START_TEST(test_torn_tail_in_header)
{
	uint64_t offs[3];
	struct seen s;

	jopen();
	append_std(0, 3, offs);
	/* Only 10 bytes of the last record's header made it. */
	ck_assert_int_eq(truncate(jpath, (off_t)offs[2] + 10), 0);

	jopen();
	ck_assert_msg(jreplay(&s) == 0, "replay of a torn header: %s", err);
	check_std(&s, 0, 2);
	ck_assert_int_eq(file_size(), (off_t)offs[2]);
}
END_TEST

START_TEST(test_bad_sum_on_last_record_is_torn)
{
	uint64_t offs[3];
	struct seen s;
	off_t full;
	char c;

	jopen();
	append_std(0, 3, offs);
	full = file_size();
	/* Last byte of the last record wrong: a torn write, not corruption. */
	c = 'x';
	pwrite_at(&c, 1, full - 1);

	jopen();
	ck_assert_msg(jreplay(&s) == 0, "replay: %s", err);
	check_std(&s, 0, 2);
	ck_assert_int_eq(file_size(), (off_t)offs[2]);
}
END_TEST

START_TEST(test_corrupt_middle_payload)
{
	uint64_t offs[4];
	char want[64];
	struct seen s;
	off_t full;
	char c;

	jopen();
	append_std(0, 4, offs);
	full = file_size();
	/* Flip a byte of the second record's spec: valid records follow. */
	c = '#';
	pwrite_at(&c, 1, (off_t)offs[1] + 32 + 3);

	jopen();
	ck_assert_int_eq(jreplay(&s), -EUCLEAN);
	/* Records before the damage were delivered; nothing was cut. */
	check_std(&s, 0, 1);
	ck_assert_int_eq(file_size(), full);
	snprintf(want, sizeof(want), "offset %llu", (unsigned long long)offs[1]);
	ck_assert_msg(strstr(err, want), "error '%s' does not name '%s'", err,
		      want);
}
END_TEST

START_TEST(test_corrupt_middle_magic)
{
	uint64_t offs[4];
	char want[64];
	struct seen s;
	off_t full;
	char c = 0;

	jopen();
	append_std(0, 4, offs);
	full = file_size();
	pwrite_at(&c, 1, (off_t)offs[2]);

	jopen();
	ck_assert_int_eq(jreplay(&s), -EUCLEAN);
	check_std(&s, 0, 2);
	ck_assert_int_eq(file_size(), full);
	snprintf(want, sizeof(want), "offset %llu", (unsigned long long)offs[2]);
	ck_assert_msg(strstr(err, want), "error '%s' does not name '%s'", err,
		      want);
}
END_TEST

/*
 * BUG (cache/journal.c, journal_replay(), the length check
 * "if (off + sizeof(h) + plen > j->size) goto torn;" that runs before the
 * checksum is verified): a record in the middle whose spec_len field is
 * damaged so that it seems to reach past the end of the file is taken for
 * a torn tail, and replay ftruncate()s the journal there, silently
 * throwing away the valid records after it (the dirty-chunk records of
 * other files) instead of refusing with -EUCLEAN.
 */
START_TEST(bug_corrupt_middle_length_cuts_valid_records)
{
	uint64_t offs[4];
	struct seen s;
	uint16_t bad = 4000;	/* <= JSPEC_MAX, > what follows */
	off_t full;
	int rc;

	jopen();
	append_std(0, 4, offs);
	full = file_size();
	ck_assert_int_lt(full - (off_t)offs[1], 4000);
	/* spec_len sits after magic (4) and type (2). */
	pwrite_at(&bad, sizeof(bad), (off_t)offs[1] + 6);

	jopen();
	rc = jreplay(&s);
	ck_assert_msg(file_size() == full,
		      "replay cut the journal from %lld to %lld bytes, dropping the valid records after a damaged one (rc %d)",
		      (long long)full, (long long)file_size(), rc);
	ck_assert_int_eq(rc, -EUCLEAN);
}
END_TEST

START_TEST(test_short_garbage_tail)
{
	uint64_t offs[2];
	struct seen s;

	jopen();
	append_std(0, 2, offs);
	append_bytes(0xa5, 20);	/* less than a header */

	jopen();
	ck_assert_msg(jreplay(&s) == 0, "replay: %s", err);
	check_std(&s, 0, 2);
	ck_assert_int_eq(file_size(), (off_t)journal_size(J));
}
END_TEST

/*
 * BUG (cache/journal.c, journal_replay(), label "bad:": "if (h.magic !=
 * JREC_MAGIC) ... return -EUCLEAN"): a tail of zeros after the last valid
 * record -- what a file system typically leaves when the node crashes
 * after the file size was extended but before the data reached the disk
 * -- is reported as "garbage", -EUCLEAN, and cache_open() refuses to
 * start.  Nothing valid follows it, so by the module's own rule ("a bad
 * record is a torn tail only if it is the last thing there") it is a torn
 * tail to cut off.
 */
START_TEST(bug_zero_filled_tail_refused)
{
	struct seen s;
	off_t end;
	int rc;

	jopen();
	append_std(0, 3, NULL);
	end = file_size();
	append_bytes(0, 4096 - (size_t)(end % 4096));

	jopen();
	rc = jreplay(&s);
	ck_assert_msg(rc == 0,
		      "replay of a zero-filled tail after a crash: rc %d (%s)",
		      rc, err);
	check_std(&s, 0, 3);
	ck_assert_int_eq(file_size(), end);
	ck_assert_uint_eq(journal_size(J), (uint64_t)end);
}
END_TEST

/* Same as above with non-zero garbage: nothing valid follows it. */
START_TEST(bug_garbage_tail_refused)
{
	struct seen s;
	off_t end;
	int rc;

	jopen();
	append_std(0, 3, NULL);
	end = file_size();
	append_bytes(0xa5, 100);

	jopen();
	rc = jreplay(&s);
	ck_assert_msg(rc == 0, "replay of a garbage tail: rc %d (%s)", rc,
		      err);
	check_std(&s, 0, 3);
	ck_assert_int_eq(file_size(), end);
}
END_TEST

static int emit_two(void *arg, struct journal *nj)
{
	int i, rc = 0;

	for (i = 20; i < 22 && rc == 0; i++) {
		struct rec r;

		std_rec(i, &r);
		rc = journal_append(nj, r.type, r.spec, r.fileid, r.chunk,
				    r.handle, r.handle_len);
	}
	return rc;
}

static int emit_fail(void *arg, struct journal *nj)
{
	emit_two(arg, nj);
	return -EIO;
}

START_TEST(test_rewrite)
{
	char tmp[200];
	uint64_t one, two;
	struct seen s;

	jopen();
	append_std(0, 10, NULL);
	ck_assert_int_eq(journal_rewrite(J, emit_two, NULL), 0);
	/* Only what emit appended, in the journal's own file. */
	two = journal_size(J);
	ck_assert_uint_eq(two, (uint64_t)file_size());
	snprintf(tmp, sizeof(tmp), "%s.new", jpath);
	ck_assert_int_eq(access(tmp, F_OK), -1);
	ck_assert_int_eq(jreplay(&s), 0);
	check_std(&s, 20, 2);

	/* Appends go to the new file; a reopen sees the same. */
	append_std(22, 1, NULL);
	one = journal_size(J) - two;
	ck_assert_uint_gt(one, 0);
	ck_assert_uint_eq(journal_size(J), (uint64_t)file_size());
	jopen();
	ck_assert_int_eq(jreplay(&s), 0);
	check_std(&s, 20, 3);
}
END_TEST

START_TEST(test_rewrite_failure_keeps_old)
{
	char tmp[200];
	struct seen s;
	off_t full;

	jopen();
	append_std(0, 5, NULL);
	full = file_size();
	ck_assert_int_eq(journal_rewrite(J, emit_fail, NULL), -EIO);
	ck_assert_int_eq(file_size(), full);
	ck_assert_uint_eq(journal_size(J), (uint64_t)full);
	snprintf(tmp, sizeof(tmp), "%s.new", jpath);
	ck_assert_int_eq(access(tmp, F_OK), -1);
	ck_assert_int_eq(jreplay(&s), 0);
	check_std(&s, 0, 5);
	/* Still appendable. */
	append_std(5, 1, NULL);
	jopen();
	ck_assert_int_eq(jreplay(&s), 0);
	check_std(&s, 0, 6);
}
END_TEST

START_TEST(test_too_long)
{
	char *spec = malloc(5000);
	unsigned char h[BE_HANDLE_MAX + 1] = { 0 };

	ck_assert_ptr_nonnull(spec);
	memset(spec, 's', 4999);
	spec[4999] = '\0';
	jopen();
	ck_assert_int_eq(journal_append(J, JREC_FILE, spec, 1, 0, NULL, 0),
			 -ENAMETOOLONG);
	ck_assert_int_eq(journal_append(J, JREC_FILE, "x", 1, 0, h,
					sizeof(h)),
			 -ENAMETOOLONG);
	ck_assert_uint_eq(journal_size(J), 0);
	ck_assert_int_eq(file_size(), 0);
	free(spec);
}
END_TEST

START_TEST(test_callback_error_stops_replay)
{
	struct seen s;
	off_t full;
	int rc;

	jopen();
	append_std(0, 4, NULL);
	full = file_size();
	memset(&s, 0, sizeof(s));
	s.fail_at = 3;
	rc = journal_replay(J, collect, &s, err, sizeof(err));
	ck_assert_int_eq(rc, -ENOMEM);
	ck_assert_int_eq(s.n, 2);
	ck_assert_int_eq(file_size(), full);
}
END_TEST

/*
 * BUG (cache/journal.c, write_rec()): a record write cut short (the cache
 * file system is full: write(2) stores what fits) returned an error but
 * left the part in the file, and the next records went after it.  After a
 * kill -9 the start refused the journal ("record N is corrupt and valid
 * records follow"): the node's dirty data could not come back without a
 * hand (tests/integration/chaos.sh, a full cache fs, then kill -9).
 * RLIMIT_FSIZE cuts the write short here.
 */
START_TEST(bug_short_append_corrupts_journal)
{
	struct rlimit old, rl;
	struct seen s;
	struct rec r;
	uint64_t before;
	int rc, i;

	jopen();
	append_std(0, 4, NULL);
	before = journal_size(J);
	signal(SIGXFSZ, SIG_IGN);
	ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
	rl = old;
	rl.rlim_cur = before + 10;	/* 10 bytes of the next record fit */
	ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
	std_rec(4, &r);
	rc = journal_append(J, r.type, r.spec, r.fileid, r.chunk, r.handle,
			    r.handle_len);
	ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
	ck_assert_int_lt(rc, 0);
	ck_assert_uint_eq(journal_size(J), before);
	ck_assert_int_eq(file_size(), (off_t)before);
	append_std(5, 2, NULL);
	jopen();	/* as the next start does */
	rc = jreplay(&s);
	ck_assert_msg(rc == 0, "replay after a short append: %d (%s)", rc, err);
	ck_assert_int_eq(s.n, 6);
	for (i = 0; i < 6; i++) {
		std_rec(i < 4 ? i : i + 1, &r);	/* record 4 failed */
		ck_assert_uint_eq(s.r[i].fileid, r.fileid);
		ck_assert_uint_eq(s.r[i].chunk, r.chunk);
	}
}
END_TEST

static Suite *journal_suite(void)
{
	Suite *s = suite_create("journal");
	TCase *tc = tcase_create("core");
	TCase *bugs = tcase_create("known_bugs");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_roundtrip);
	tcase_add_test(tc, test_empty_journal);
	tcase_add_test(tc, test_torn_tail_in_payload);
	tcase_add_test(tc, test_torn_tail_in_header);
	tcase_add_test(tc, test_bad_sum_on_last_record_is_torn);
	tcase_add_test(tc, test_corrupt_middle_payload);
	tcase_add_test(tc, test_corrupt_middle_magic);
	tcase_add_test(tc, test_short_garbage_tail);
	tcase_add_test(tc, test_rewrite);
	tcase_add_test(tc, test_rewrite_failure_keeps_old);
	tcase_add_test(tc, test_too_long);
	tcase_add_test(tc, test_callback_error_stops_replay);
	suite_add_tcase(s, tc);

	/* Each reproduced the bug named in its comment until it was fixed. */
	tcase_add_checked_fixture(bugs, setup, teardown);
	tcase_add_test(bugs, bug_corrupt_middle_length_cuts_valid_records);
	tcase_add_test(bugs, bug_zero_filled_tail_refused);
	tcase_add_test(bugs, bug_garbage_tail_refused);
	tcase_add_test(bugs, bug_short_append_corrupts_journal);
	suite_add_tcase(s, bugs);
	return s;
}

static int rm_one(const char *path, const struct stat *sb, int type,
		  struct FTW *ftw)
{
	remove(path);
	return 0;
}

int main(void)
{
	SRunner *sr;
	int failed;

	strcpy(base_dir, "/tmp/stagefs-unit-journal-XXXXXX");
	if (!mkdtemp(base_dir)) {
		perror("mkdtemp");
		return EXIT_FAILURE;
	}
	log_init(0, getenv("STAGEFS_TEST_LOG") ? LOG_LVL_DEBUG : LOG_LVL_ERR);
	sr = srunner_create(journal_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	nftw(base_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
