/* SPDX-License-Identifier: GPL-2.0 */
/*
 * test_nfs_verf.c - the NFS backend's unstable-write bookkeeping
 * (backend/nfs_verf.c): which writes a COMMIT made stable, and which a
 * server restart (a new write verifier, a new generation) lost.
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>

#include "nfs_int.h"

#define MB (1024ULL * 1024)

static int commit_range(struct nfs_wtrack *t, uint64_t gen, uint64_t wseq,
			uint64_t off, uint64_t len)
{
	struct be_range r = { off, len };

	return nfs_wt_commit_done(t, gen, wseq, &r, 1);
}

/*
 * Found by a 1 GiB dd conv=fsync across a ganesha restart that never
 * finished (issue 13): a write completed while flusher A's COMMIT was in
 * flight and touched A's range; the two merged, so A's COMMIT could not
 * take its own bytes out.  A's chunk was clean, yet its bytes stayed
 * "uncommitted", turned "lost" at the restart, and no one would ever
 * write them again: every later COMMIT failed, for ever.
 */
START_TEST(bug_committed_bytes_lost_after_restart)
{
	struct nfs_wtrack t = { 0 };
	uint64_t w;

	nfs_wt_write_done(&t, 1, 0, 4 * MB);		/* A's chunk */
	w = nfs_wt_commit_start(&t);			/* A's COMMIT leaves */
	nfs_wt_write_done(&t, 1, 4 * MB, 4 * MB);	/* B's, touching A's */
	ck_assert_int_eq(commit_range(&t, 1, w, 0, 4 * MB), 0);
	/* The server restarts; the next reply carries generation 2. */
	nfs_wt_write_done(&t, 2, 100 * MB, MB);
	ck_assert_uint_eq(nfs_wt_lost_bytes(&t), 4 * MB);	/* B's only */
	w = nfs_wt_commit_start(&t);
	ck_assert_int_eq(commit_range(&t, 2, w, 100 * MB, MB), 0);
	ck_assert_int_eq(commit_range(&t, 2, w, 0, 4 * MB), 0);
	ck_assert_int_eq(commit_range(&t, 2, w, 4 * MB, 4 * MB), -EAGAIN);
	nfs_wt_free(&t);
}
END_TEST

/* Writes with no COMMIT prepared between them still share one range. */
START_TEST(test_ranges_merge_between_commits)
{
	struct nfs_wtrack t = { 0 };
	int i;

	for (i = 0; i < 64; i++)
		nfs_wt_write_done(&t, 1, (uint64_t)i * MB, MB);
	ck_assert_uint_eq(t.nunc, 1);
	ck_assert_int_eq(commit_range(&t, 1, nfs_wt_commit_start(&t), 0,
				      64 * MB), 0);
	ck_assert_uint_eq(t.nunc, 0);
	nfs_wt_free(&t);
}
END_TEST

/* The restart loses what was not committed; writing it again repairs. */
START_TEST(test_restart_then_rewrite)
{
	struct nfs_wtrack t = { 0 };
	uint64_t w;

	nfs_wt_write_done(&t, 1, 0, 8 * MB);
	w = nfs_wt_commit_start(&t);
	/* The COMMIT's reply comes from the restarted server. */
	ck_assert_int_eq(commit_range(&t, 2, w, 0, 8 * MB), -EAGAIN);
	ck_assert_uint_eq(nfs_wt_lost_bytes(&t), 8 * MB);
	nfs_wt_write_done(&t, 2, 0, 4 * MB);
	w = nfs_wt_commit_start(&t);
	ck_assert_int_eq(commit_range(&t, 2, w, 0, 8 * MB), -EAGAIN);
	nfs_wt_write_done(&t, 2, 4 * MB, 4 * MB);
	w = nfs_wt_commit_start(&t);
	ck_assert_int_eq(commit_range(&t, 2, w, 0, 8 * MB), 0);
	ck_assert_uint_eq(nfs_wt_lost_bytes(&t), 0);
	ck_assert_uint_eq(t.nunc, 0);
	nfs_wt_free(&t);
}
END_TEST

/*
 * Another writer's lost bytes do not fail this writer's COMMIT: four
 * flushers each waited for the slowest one's rewrite, with backoff.  A
 * COMMIT of the whole file (nr == 0) still fails.
 */
START_TEST(test_others_lost_bytes_do_not_fail_mine)
{
	struct nfs_wtrack t = { 0 };
	uint64_t w;

	nfs_wt_write_done(&t, 1, 0, 4 * MB);		/* flusher B */
	nfs_wt_write_done(&t, 2, 64 * MB, 4 * MB);	/* A, after restart */
	w = nfs_wt_commit_start(&t);
	ck_assert_int_eq(commit_range(&t, 2, w, 64 * MB, 4 * MB), 0);
	ck_assert_int_eq(nfs_wt_commit_done(&t, 2, w, NULL, 0), -EAGAIN);
	ck_assert_int_eq(commit_range(&t, 2, w, 0, 4 * MB), -EAGAIN);
	nfs_wt_free(&t);
}
END_TEST

/* A write that completes after the COMMIT left is not covered by it. */
START_TEST(test_write_during_commit_not_covered)
{
	struct nfs_wtrack t = { 0 };
	uint64_t w;

	w = nfs_wt_commit_start(&t);
	nfs_wt_write_done(&t, 1, 0, MB);
	ck_assert_int_eq(commit_range(&t, 1, w, 0, MB), 0);
	ck_assert_uint_eq(t.nunc, 1);
	nfs_wt_write_done(&t, 2, 10 * MB, MB);	/* restart */
	ck_assert_uint_eq(nfs_wt_lost_bytes(&t), MB);
	nfs_wt_free(&t);
}
END_TEST

START_TEST(test_truncate_forgets_lost)
{
	struct nfs_wtrack t = { 0 };

	nfs_wt_write_done(&t, 1, 0, 8 * MB);
	nfs_wt_write_done(&t, 2, 20 * MB, MB);
	ck_assert_uint_eq(nfs_wt_lost_bytes(&t), 8 * MB);
	nfs_wt_truncate(&t, 2 * MB);
	ck_assert_uint_eq(nfs_wt_lost_bytes(&t), 2 * MB);
	nfs_wt_truncate(&t, 0);
	ck_assert_uint_eq(nfs_wt_lost_bytes(&t), 0);
	ck_assert_int_eq(nfs_wt_commit_done(&t, 2, nfs_wt_commit_start(&t),
					    NULL, 0), 0);
	nfs_wt_free(&t);
}
END_TEST

static Suite *verf_suite(void)
{
	Suite *s = suite_create("nfs_verf");
	TCase *tc = tcase_create("core");
	TCase *bugs = tcase_create("known_bugs");

	tcase_add_test(tc, test_ranges_merge_between_commits);
	tcase_add_test(tc, test_restart_then_rewrite);
	tcase_add_test(tc, test_others_lost_bytes_do_not_fail_mine);
	tcase_add_test(tc, test_write_during_commit_not_covered);
	tcase_add_test(tc, test_truncate_forgets_lost);
	tcase_add_test(bugs, bug_committed_bytes_lost_after_restart);
	suite_add_tcase(s, tc);
	suite_add_tcase(s, bugs);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(verf_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
