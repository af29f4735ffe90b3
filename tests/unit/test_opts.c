/* SPDX-License-Identifier: GPL-2.0 */
/*
 * test_opts.c - unit tests of fs/opts.c: parse_size() and opts_parse()
 * over argv arrays as main() would pass them.
 *
 * Every opts_parse() call names a cache_dir made by the fixture under
 * /tmp (so nothing is created under /var/cache), and stderr is captured
 * to check that a refusal names the option.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs_int.h"

/*
 * Each test's directory is made in base_dir, which main() makes and
 * removes: with CK_FORK (the default) a failed assertion _exit()s the
 * test's process before its teardown runs.
 */
static char base_dir[64];
static char tdir[128];
static char cdir_opt[160];	/* "cache_dir=<tdir>" */
static char errtext[4096];	/* stderr of the last parse */
static struct sfs_config cfg;

static void setup(void)
{
	snprintf(tdir, sizeof(tdir), "%s/t-XXXXXX", base_dir);
	ck_assert_ptr_nonnull(mkdtemp(tdir));
	snprintf(cdir_opt, sizeof(cdir_opt), "cache_dir=%s", tdir);
	memset(&cfg, 0, sizeof(cfg));
	errtext[0] = '\0';
}

static void teardown(void)
{
	char path[160];

	opts_free(&cfg);
	snprintf(path, sizeof(path), "%s/stderr", tdir);
	unlink(path);
	rmdir(tdir);
}

/*
 * opts_parse() over "stagefs" followed by the given arguments (a NULL
 * ends them).  Whatever it writes to stderr ends up in errtext.
 */
static int parse(const char *first, ...)
{
	char *argv[32];
	const char *a;
	char path[160];
	struct fuse_args args;
	int argc = 0, rc, fd, saved, i;
	ssize_t n;
	va_list ap;

	opts_free(&cfg);
	argv[argc++] = strdup("stagefs");
	va_start(ap, first);
	for (a = first; a; a = va_arg(ap, const char *)) {
		ck_assert_int_lt(argc, 31);
		argv[argc++] = strdup(a);
	}
	va_end(ap);
	argv[argc] = NULL;
	args = (struct fuse_args)FUSE_ARGS_INIT(argc, argv);

	snprintf(path, sizeof(path), "%s/stderr", tdir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	fflush(stderr);
	saved = dup(2);
	dup2(fd, 2);
	rc = opts_parse(&args, &cfg);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	n = pread(fd, errtext, sizeof(errtext) - 1, 0);
	errtext[n > 0 ? n : 0] = '\0';
	close(fd);

	fuse_opt_free_args(&args);
	for (i = 0; i < argc; i++)
		free(argv[i]);
	return rc;
}

/* parse() with BACKEND MOUNTPOINT and "-o cache_dir=...,<opts>". */
static int parse_o(const char *opts)
{
	char o[512];

	snprintf(o, sizeof(o), "%s%s%s", cdir_opt, opts ? "," : "",
		 opts ? opts : "");
	return parse("nfs://vast1/scratch", "/lus/h-scratch01", "-o", o,
		     (const char *)NULL);
}

static void expect_refused(const char *opts, const char *name)
{
	int rc = parse_o(opts);

	ck_assert_msg(rc == -EINVAL, "'%s' accepted (rc %d)", opts, rc);
	ck_assert_msg(strstr(errtext, name),
		      "refusal of '%s' does not name %s: '%s'", opts, name,
		      errtext);
}

/* ---- parse_size -------------------------------------------------------- */

static void size_ok(const char *s, uint64_t want)
{
	uint64_t v = 12345;
	int rc = parse_size(s, &v);

	ck_assert_msg(rc == 0, "parse_size('%s') = %d", s, rc);
	ck_assert_msg(v == want, "parse_size('%s') = %llu, want %llu", s,
		      (unsigned long long)v, (unsigned long long)want);
}

static void size_bad(const char *s)
{
	uint64_t v = 12345;
	int rc = parse_size(s, &v);

	ck_assert_msg(rc == -EINVAL, "parse_size('%s') accepted: %llu",
		      s ? s : "(null)", (unsigned long long)v);
	ck_assert_msg(v == 12345, "parse_size('%s') failed but wrote %llu",
		      s ? s : "(null)", (unsigned long long)v);
}

START_TEST(test_parse_size_good)
{
	size_ok("0", 0);
	size_ok("1", 1);
	size_ok("512", 512);
	size_ok("4k", 4096);
	size_ok("4K", 4096);
	size_ok("1M", 1ULL << 20);
	size_ok("256m", 256ULL << 20);
	size_ok("2G", 2ULL << 30);
	size_ok("3T", 3ULL << 40);
	size_ok("300t", 300ULL << 40);
	size_ok("1KiB", 1024);
	size_ok("1KB", 1024);
	size_ok("8MiB", 8ULL << 20);
	size_ok("16777215T", 16777215ULL << 40);
	size_ok("18446744073709551615", ~0ULL);
}
END_TEST

START_TEST(test_parse_size_overflow)
{
	size_bad("18446744073709551616");
	size_bad("99999999999999999999999");
	size_bad("16777216T");
	size_bad("17179869184G");
	size_bad("17592186044416M");
	size_bad("18014398509481984K");
}
END_TEST

START_TEST(test_parse_size_negative)
{
	size_bad("-1");
	size_bad("-0");
	size_bad("-5M");
	size_bad("-18446744073709551615");
}
END_TEST

START_TEST(test_parse_size_junk)
{
	size_bad(NULL);
	size_bad("");
	size_bad("abc");
	size_bad("K");
	size_bad("M1");
	size_bad("4X");
	size_bad("4MM");
	size_bad("4 M");
	size_bad("4M ");
	size_bad("1.5G");
	size_bad("0x10");
	size_bad("4Mjunk");
	size_bad("4MBB");
}
END_TEST

/*
 * BUG (fs/opts.c, parse_size(): the sign check "*s == '-'" looks only at
 * the first character, but strtoull() skips leading white space and then
 * accepts a minus sign, negating the value): " -1" parses as
 * 18446744073709551615 (16 EiB) instead of being refused.
 */
START_TEST(bug_parse_size_negative_after_space)
{
	size_bad(" -1");
	size_bad("\t-4G");
}
END_TEST

/*
 * BUG (fs/opts.c, parse_size(): "if (*end == 'i' || *end == 'B') end +=
 * ...;" runs whether or not a K/M/G/T unit came before): "5i" and "5iB"
 * are accepted as 5 bytes.
 */
START_TEST(bug_parse_size_i_without_unit)
{
	size_bad("5i");
	size_bad("5iB");
}
END_TEST

/* ---- opts_parse -------------------------------------------------------- */

START_TEST(test_opts_all_options)
{
	int rc = parse_o("cache_size=1G,cache_min_free=2G,chunk_size=1M,"
			 "readahead=8M,dirty_max=100M,nconnect=8,writeback=off,"
			 "flush_on_close=async,fsync=local,verify=off,"
			 "attr_timeout=2.5,entry_timeout=0,groups_timeout=0");

	ck_assert_msg(rc == 0, "rc %d: %s", rc, errtext);
	ck_assert_str_eq(cfg.backend, "nfs://vast1/scratch");
	ck_assert_str_eq(cfg.mountpoint, "/lus/h-scratch01");
	ck_assert_str_eq(cfg.cache.dir, tdir);
	ck_assert_uint_eq(cfg.cache.size, 1ULL << 30);
	ck_assert_uint_eq(cfg.cache.min_free, 2ULL << 30);
	ck_assert_uint_eq(cfg.cache.chunk_size, 1ULL << 20);
	ck_assert_uint_eq(cfg.cache.readahead, 8ULL << 20);
	ck_assert_uint_eq(cfg.cache.dirty_max, 100ULL << 20);
	ck_assert_uint_eq(cfg.cache.flushers, 8);
	ck_assert_uint_eq(cfg.nconnect, 8);
	ck_assert_int_eq(cfg.cache.writeback, 0);
	ck_assert_int_eq(cfg.cache.close_mode, CACHE_CLOSE_ASYNC);
	ck_assert_int_eq(cfg.cache.fsync_mode, CACHE_FSYNC_LOCAL);
	ck_assert_int_eq(cfg.cache.verify, 0);
	ck_assert_double_eq(cfg.attr_timeout, 2.5);
	ck_assert_double_eq(cfg.entry_timeout, 0.0);
	ck_assert_double_eq(cfg.groups_timeout, 0.0);
}
END_TEST

START_TEST(test_opts_defaults)
{
	int rc = parse_o(NULL);

	ck_assert_msg(rc == 0, "rc %d: %s", rc, errtext);
	ck_assert_uint_eq(cfg.cache.chunk_size, 4ULL << 20);
	ck_assert_uint_eq(cfg.cache.readahead, 64ULL << 20);
	ck_assert_int_eq(cfg.cache.writeback, 1);
	ck_assert_int_eq(cfg.cache.verify, 1);
	ck_assert_int_eq(cfg.cache.close_mode, CACHE_CLOSE_SYNC);
	ck_assert_int_eq(cfg.cache.fsync_mode, CACHE_FSYNC_BACKEND);
	ck_assert_uint_eq(cfg.cache.flushers, 4);
	ck_assert_uint_gt(cfg.cache.size, 0);
	ck_assert_uint_gt(cfg.cache.min_free, 0);
	ck_assert_uint_eq(cfg.cache.dirty_max,
			  cfg.cache.size / 2 > 2 * cfg.cache.chunk_size ?
				  cfg.cache.size / 2 :
				  2 * cfg.cache.chunk_size);
	ck_assert_int_eq(cfg.foreground, 0);
	ck_assert_int_eq(cfg.passthrough, SFS_PT_AUTO);
	ck_assert_int_eq(cfg.killpriv, 1);

	/* -f, and on=1/off=0 spelled the other way round. */
	rc = parse("-f", "/srv/export", "/mnt/x", "-o", cdir_opt, "-o",
		   "writeback=on,verify=on,flush_on_close=sync,fsync=backend",
		   (const char *)NULL);
	ck_assert_msg(rc == 0, "rc %d: %s", rc, errtext);
	ck_assert_int_eq(cfg.foreground, 1);
	ck_assert_str_eq(cfg.backend, "/srv/export");
	ck_assert_int_eq(cfg.cache.writeback, 1);
	ck_assert_int_eq(cfg.cache.verify, 1);
}
END_TEST

START_TEST(test_opts_dirty_max_floor)
{
	int rc = parse_o("chunk_size=1M,dirty_max=1K");

	ck_assert_msg(rc == 0, "rc %d: %s", rc, errtext);
	ck_assert_uint_eq(cfg.cache.dirty_max, 2ULL << 20);
}
END_TEST

START_TEST(test_opts_journal_compact)
{
	expect_refused("journal_compact=4K", "journal_compact");
	expect_refused("journal_compact=abc", "journal_compact");
	ck_assert_int_eq(parse_o("journal_compact=64K"), 0);
	ck_assert_uint_eq(cfg.cache.journal_compact, 64ULL << 10);
	ck_assert_int_eq(parse_o("chunk_size=1M"), 0);
	ck_assert_uint_eq(cfg.cache.journal_compact, 0);	/* the default */
}
END_TEST

START_TEST(test_opts_mem_files)
{
	expect_refused("mem_files=5", "mem_files");
	expect_refused("mem_files=200000000", "mem_files");
	ck_assert_int_eq(parse_o("mem_files=abc"), -EINVAL);
	ck_assert_int_eq(parse_o("mem_files=1000"), 0);
	ck_assert_uint_eq(cfg.cache.mem_files, 1000);
	ck_assert_int_eq(parse_o("chunk_size=1M"), 0);
	ck_assert_uint_eq(cfg.cache.mem_files, 0);	/* the default */
}
END_TEST

START_TEST(test_opts_bad_chunk_size)
{
	expect_refused("chunk_size=3M", "chunk_size");
	expect_refused("chunk_size=128K", "chunk_size");
	expect_refused("chunk_size=512M", "chunk_size");
	expect_refused("chunk_size=0", "chunk_size");
	expect_refused("chunk_size=abc", "chunk_size");
	expect_refused("chunk_size=-4M", "chunk_size");
	/* The smallest and the largest are fine. */
	ck_assert_int_eq(parse_o("chunk_size=256K"), 0);
	ck_assert_uint_eq(cfg.cache.chunk_size, 256ULL << 10);
	ck_assert_int_eq(parse_o("chunk_size=256M"), 0);
}
END_TEST

START_TEST(test_opts_bad_choice)
{
	expect_refused("writeback=maybe", "writeback");
	expect_refused("writeback=1", "writeback");
	expect_refused("writeback=", "writeback");
	expect_refused("verify=yes", "verify");
	expect_refused("flush_on_close=later", "flush_on_close");
	expect_refused("fsync=none", "fsync");
	expect_refused("killpriv=auto", "killpriv");
	ck_assert_int_eq(parse_o("killpriv=off"), 0);
	ck_assert_int_eq(cfg.killpriv, 0);
}
END_TEST

/* readdirplus: auto (the default), on, off; nothing else. */
START_TEST(test_opts_readdirplus)
{
	ck_assert_int_eq(parse_o(NULL), 0);
	ck_assert_int_eq(cfg.readdirplus, SFS_RDP_AUTO);
	ck_assert_int_eq(parse_o("readdirplus=on"), 0);
	ck_assert_int_eq(cfg.readdirplus, SFS_RDP_ON);
	ck_assert_int_eq(parse_o("readdirplus=off"), 0);
	ck_assert_int_eq(cfg.readdirplus, SFS_RDP_OFF);
	ck_assert_int_eq(parse_o("readdirplus=auto"), 0);
	ck_assert_int_eq(cfg.readdirplus, SFS_RDP_AUTO);
	expect_refused("readdirplus=maybe", "readdirplus");
	expect_refused("readdirplus=", "readdirplus");
}
END_TEST

START_TEST(test_opts_bad_sizes)
{
	expect_refused("cache_size=12Q", "cache_size");
	expect_refused("cache_min_free=-1", "cache_min_free");
	expect_refused("readahead=lots", "readahead");
	expect_refused("dirty_max=99999999999T", "dirty_max");
}
END_TEST

START_TEST(test_opts_missing_args)
{
	int rc;

	rc = parse("nfs://vast1/scratch", "-o", cdir_opt, (const char *)NULL);
	ck_assert_int_eq(rc, -EINVAL);
	ck_assert_msg(strstr(errtext, "mountpoint"), "stderr: '%s'", errtext);

	rc = parse("-o", cdir_opt, (const char *)NULL);
	ck_assert_int_eq(rc, -EINVAL);
	ck_assert_msg(strstr(errtext, "backend"), "stderr: '%s'", errtext);

	rc = parse("nfs://a/b", "/mnt/a", "/mnt/b", "-o", cdir_opt,
		   (const char *)NULL);
	ck_assert_int_eq(rc, -EINVAL);
	ck_assert_msg(strstr(errtext, "/mnt/b"), "stderr: '%s'", errtext);
}
END_TEST

START_TEST(test_opts_bad_numbers)
{
	expect_refused("nconnect=0", "nconnect");
	expect_refused("nconnect=65", "nconnect");
	ck_assert_int_eq(parse_o("nconnect=abc"), -EINVAL);
	expect_refused("attr_timeout=-1", "attr_timeout");
	expect_refused("entry_timeout=-0.5", "entry_timeout");
	expect_refused("groups_timeout=-1", "groups_timeout");
	expect_refused("groups_timeout=nan", "groups_timeout");
	expect_refused("groups_timeout=3601", "groups_timeout");
}
END_TEST

START_TEST(test_opts_bad_cache_dir)
{
	char o[256];
	int rc;

	snprintf(o, sizeof(o), "cache_dir=%s/does/not/exist", tdir);
	rc = parse("nfs://vast1/scratch", "/mnt", "-o", o, (const char *)NULL);
	ck_assert_int_eq(rc, -EINVAL);
	ck_assert_msg(strstr(errtext, "does/not/exist"), "stderr: '%s'",
		      errtext);
}
END_TEST

START_TEST(test_opts_help_version)
{
	ck_assert_int_eq(parse("--help", (const char *)NULL), 0);
	ck_assert_int_eq(cfg.show_help, 1);
	ck_assert_int_eq(parse("-V", (const char *)NULL), 0);
	ck_assert_int_eq(cfg.show_version, 1);
	ck_assert_int_eq(parse("-d", "nfs://a/b", "/mnt", "-o", cdir_opt,
			       (const char *)NULL),
			 0);
	ck_assert_int_eq(cfg.debug, 1);
	ck_assert_int_eq(cfg.foreground, 1);
}
END_TEST

/*
 * BUG (fs/opts.c, opts_parse(): "if (cfg->attr_timeout < 0 ||
 * cfg->entry_timeout < 0)"): a NaN is not < 0, so attr_timeout=nan is
 * accepted and goes on to the kernel timeouts.
 */
START_TEST(bug_opts_nan_timeout)
{
	int rc = parse_o("attr_timeout=nan");

	ck_assert_msg(rc == -EINVAL, "attr_timeout=nan accepted (rc %d)", rc);
}
END_TEST

static Suite *opts_suite(void)
{
	Suite *s = suite_create("opts");
	TCase *tc = tcase_create("core");
	TCase *bugs = tcase_create("known_bugs");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_parse_size_good);
	tcase_add_test(tc, test_parse_size_overflow);
	tcase_add_test(tc, test_parse_size_negative);
	tcase_add_test(tc, test_parse_size_junk);
	tcase_add_test(tc, test_opts_all_options);
	tcase_add_test(tc, test_opts_defaults);
	tcase_add_test(tc, test_opts_dirty_max_floor);
	tcase_add_test(tc, test_opts_bad_chunk_size);
	tcase_add_test(tc, test_opts_journal_compact);
	tcase_add_test(tc, test_opts_mem_files);
	tcase_add_test(tc, test_opts_bad_choice);
	tcase_add_test(tc, test_opts_readdirplus);
	tcase_add_test(tc, test_opts_bad_sizes);
	tcase_add_test(tc, test_opts_missing_args);
	tcase_add_test(tc, test_opts_bad_numbers);
	tcase_add_test(tc, test_opts_bad_cache_dir);
	tcase_add_test(tc, test_opts_help_version);
	suite_add_tcase(s, tc);

	/* Each reproduced the bug named in its comment until it was fixed. */
	tcase_add_checked_fixture(bugs, setup, teardown);
	tcase_add_test(bugs, bug_parse_size_negative_after_space);
	tcase_add_test(bugs, bug_parse_size_i_without_unit);
	tcase_add_test(bugs, bug_opts_nan_timeout);
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

	strcpy(base_dir, "/tmp/stagefs-unit-opts-XXXXXX");
	if (!mkdtemp(base_dir)) {
		perror("mkdtemp");
		return EXIT_FAILURE;
	}
	sr = srunner_create(opts_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	nftw(base_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
