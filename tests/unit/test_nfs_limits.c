/* SPDX-License-Identifier: GPL-2.0 */
/*
 * test_nfs_limits.c - what the NFS backend sends for values NFSv3 cannot
 * hold (backend/nfs_limits.c): times outside unsigned 32-bit seconds are
 * clamped as the kernel client's VFS clamps them (timestamp_truncate with
 * s_time_min 0, s_time_max U32_MAX), never wrapped; symlink targets past
 * the kernel client's NFS3_MAXPATHLEN are refused.
 */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "nfs_int.h"

static void clamp(int64_t sec, long nsec, uint32_t want_sec,
		  uint32_t want_nsec)
{
	uint32_t s = 12345, ns = 12345;

	nfs_time_clamp(sec, nsec, &s, &ns);
	ck_assert_msg(s == want_sec && ns == want_nsec,
		      "%lld.%09ld -> %u.%09u, want %u.%09u", (long long)sec,
		      nsec, s, ns, want_sec, want_nsec);
}

START_TEST(test_time_in_range_kept)
{
	clamp(0, 0, 0, 0);
	clamp(1104537600, 123456789, 1104537600, 123456789);
	/* the last second NFSv3 holds keeps its nanoseconds */
	clamp(UINT32_MAX, 999999999, UINT32_MAX, 999999999);
	clamp(INT32_MAX + 1LL, 1, (uint32_t)INT32_MAX + 1, 1); /* 2038 */
}
END_TEST

/* 2200-01-01 is 7258118400: its low 32 bits would be 2063. */
START_TEST(test_time_after_2106_clamped)
{
	clamp(UINT32_MAX + 1LL, 0, UINT32_MAX, 0);
	clamp(UINT32_MAX + 1LL, 500000000, UINT32_MAX, 0);
	clamp(7258118400LL, 0, UINT32_MAX, 0);
	clamp(INT64_MAX, 999999999, UINT32_MAX, 0);
}
END_TEST

START_TEST(test_time_before_1970_clamped)
{
	clamp(-1, 999999999, 0, 0);
	clamp(-315619200LL, 0, 0, 0);	/* 1960-01-01 */
	clamp(INT64_MIN, 0, 0, 0);
}
END_TEST

START_TEST(test_symlink_len)
{
	ck_assert_int_eq(nfs_symlink_len_ok(0), 0);
	ck_assert_int_eq(nfs_symlink_len_ok(4095), 0);
	ck_assert_int_eq(nfs_symlink_len_ok(NFS_SYMLINK_MAX), 0);
	ck_assert_int_eq(nfs_symlink_len_ok(NFS_SYMLINK_MAX + 1),
			 -ENAMETOOLONG);
	ck_assert_int_eq(nfs_symlink_len_ok(SIZE_MAX), -ENAMETOOLONG);
}
END_TEST

static Suite *limits_suite(void)
{
	Suite *s = suite_create("nfs_limits");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_time_in_range_kept);
	tcase_add_test(tc, test_time_after_2106_clamped);
	tcase_add_test(tc, test_time_before_1970_clamped);
	tcase_add_test(tc, test_symlink_len);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(limits_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
