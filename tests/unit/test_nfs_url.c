/* SPDX-License-Identifier: GPL-2.0 */
/*
 * test_nfs_url.c - the NFS backend's pure helpers: nfs:// URL parsing
 * (good URLs, and bad ones with the exact line the user sees), export
 * prefix matching, and the NFS3ERR_* to errno mapping.
 *
 * Links backend/nfs_url.c only; no server needed.
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <nfsc/libnfs.h>
#include <nfsc/libnfs-raw.h>
#include <nfsc/libnfs-raw-nfs.h>

#include "nfs_int.h"

struct good_case {
	const char *spec;
	const char *host;
	int port;
	const char *path;
};

static const struct good_case good[] = {
	{ "nfs://127.0.0.1/x", "127.0.0.1", 0, "/x" },
	{ "nfs://vast1/scratch/users", "vast1", 0, "/scratch/users" },
	{ "nfs://vast1.example.org:2049/scratch", "vast1.example.org", 2049,
	  "/scratch" },
	{ "nfs://h/a//b///c/", "h", 0, "/a/b/c" },
	{ "nfs://h:1/e", "h", 1, "/e" },
	{ "nfs://h:65535/e", "h", 65535, "/e" },
	{ "nfs://[::1]/export", "::1", 0, "/export" },
	{ "nfs://[fe80::1:2]:2050/e/sub", "fe80::1:2", 2050, "/e/sub" },
	{ "nfs://[::ffff:127.0.0.1]/e", "::ffff:127.0.0.1", 0, "/e" },
	{ "nfs://my_host-1/e.d/.hidden/..x", "my_host-1", 0,
	  "/e.d/.hidden/..x" },
};

START_TEST(test_url_good)
{
	const struct good_case *c = &good[_i];
	struct nfs_spec url;
	char err[256] = "";
	int rc;

	rc = nfs_spec_parse(c->spec, &url, err, sizeof(err));
	ck_assert_msg(rc == 0, "%s: rc %d, err '%s'", c->spec, rc, err);
	ck_assert_str_eq(url.host, c->host);
	ck_assert_int_eq(url.port, c->port);
	ck_assert_str_eq(url.path, c->path);
	nfs_spec_free(&url);
	ck_assert_ptr_null(url.host);
	ck_assert_ptr_null(url.path);
}
END_TEST

struct bad_case {
	const char *spec;
	const char *err;
};

static const struct bad_case bad[] = {
	{ "nfs://", "backend 'nfs://': missing host" },
	{ "nfs:///export", "backend 'nfs:///export': missing host" },
	{ "nfs://:2049/export", "backend 'nfs://:2049/export': missing host" },
	{ "nfs://host", "backend 'nfs://host': missing export path" },
	{ "nfs://host/", "backend 'nfs://host/': missing export path" },
	{ "nfs://host///", "backend 'nfs://host///': missing export path" },
	{ "nfs://host:/e", "backend 'nfs://host:/e': bad port ''" },
	{ "nfs://host:0/e", "backend 'nfs://host:0/e': bad port '0'" },
	{ "nfs://host:65536/e", "backend 'nfs://host:65536/e': bad port '65536'" },
	{ "nfs://host:20x9/e", "backend 'nfs://host:20x9/e': bad port '20x9'" },
	{ "nfs://host:-1/e", "backend 'nfs://host:-1/e': bad port '-1'" },
	{ "nfs://host:1234567/e",
	  "backend 'nfs://host:1234567/e': bad port '1234567'" },
	{ "nfs://[::1/e", "backend 'nfs://[::1/e': missing ']' after IPv6 address" },
	{ "nfs://[]/e", "backend 'nfs://[]/e': missing host" },
	{ "nfs://[zz::1]/e", "backend 'nfs://[zz::1]/e': bad IPv6 address" },
	{ "nfs://[::1]x/e", "backend 'nfs://[::1]x/e': junk after IPv6 address" },
	{ "nfs://[::1]:99999/e", "backend 'nfs://[::1]:99999/e': bad port '99999'" },
	{ "nfs://::1/e",
	  "backend 'nfs://::1/e': bad host (an IPv6 address goes in brackets: nfs://[::1]/export)" },
	{ "nfs://ho st/e", "backend 'nfs://ho st/e': bad host 'ho st'" },
	{ "nfs://user@host/e",
	  "backend 'nfs://user@host/e': user names in the URL are not supported" },
	{ "nfs://host/e?version=4",
	  "backend 'nfs://host/e?version=4': URL options ('?...') are not supported" },
	{ "nfs://host/e/../etc",
	  "backend 'nfs://host/e/../etc': '.' and '..' are not allowed in the path" },
	{ "nfs://host/./e",
	  "backend 'nfs://host/./e': '.' and '..' are not allowed in the path" },
	{ "nfs://host/e/..",
	  "backend 'nfs://host/e/..': '.' and '..' are not allowed in the path" },
	{ "NFS://host/e", "backend 'NFS://host/e': not an nfs:// URL" },
	{ "/local/dir", "backend '/local/dir': not an nfs:// URL" },
	{ "nfs://a,a/e", "backend 'nfs://a,a/e': address listed twice 'a'" },
	{ "nfs://a,/e", "backend 'nfs://a,/e': missing host" },
	{ "nfs://a,b c/e", "backend 'nfs://a,b c/e': bad host 'b c'" },
};

START_TEST(test_url_bad)
{
	const struct bad_case *c = &bad[_i];
	struct nfs_spec url;
	char err[256] = "";
	int rc;

	rc = nfs_spec_parse(c->spec, &url, err, sizeof(err));
	ck_assert_msg(rc == -EINVAL, "%s: rc %d", c->spec, rc);
	ck_assert_str_eq(err, c->err);
	ck_assert_ptr_null(url.host);
	ck_assert_ptr_null(url.path);
}
END_TEST

/* A VIP pool: every address in order, each with its own port. */
START_TEST(test_url_pool)
{
	struct nfs_spec url;
	char err[256] = "";

	ck_assert_int_eq(nfs_spec_parse("nfs://v1,v2:2050,[::1]:7/x/", &url,
					 err, sizeof(err)), 0);
	ck_assert_uint_eq(url.naddrs, 3);
	ck_assert_str_eq(url.addrs[0].host, "v1");
	ck_assert_int_eq(url.addrs[0].port, 0);
	ck_assert_str_eq(url.addrs[1].host, "v2");
	ck_assert_int_eq(url.addrs[1].port, 2050);
	ck_assert_str_eq(url.addrs[2].host, "::1");
	ck_assert_int_eq(url.addrs[2].port, 7);
	ck_assert_str_eq(url.host, "v1");
	ck_assert_str_eq(url.path, "/x");
	/* the same host at another port is another address */
	ck_assert_int_eq(nfs_spec_add_hosts(&url, "f", "v1:2049\n", err,
					    sizeof(err)), 0);
	ck_assert_uint_eq(url.naddrs, 4);
	nfs_spec_free(&url);
	ck_assert_uint_eq(url.naddrs, 0);
	ck_assert_ptr_null(url.addrs);
}
END_TEST

/* -o hosts=FILE: comments, blank lines, commas, the failing line named. */
START_TEST(test_hosts_file)
{
	struct nfs_spec url;
	char err[256] = "";

	ck_assert_int_eq(nfs_spec_parse("nfs://v1/e", &url, err, sizeof(err)),
			 0);
	ck_assert_int_eq(nfs_spec_add_hosts(&url, "/etc/vips",
					    "# pool\n\n  v2  \nv3,v4:20\r\n",
					    err, sizeof(err)), 0);
	ck_assert_uint_eq(url.naddrs, 4);
	ck_assert_str_eq(url.addrs[1].host, "v2");
	ck_assert_str_eq(url.addrs[3].host, "v4");
	ck_assert_int_eq(url.addrs[3].port, 20);
	ck_assert_int_eq(nfs_spec_add_hosts(&url, "/etc/vips",
					    "v5\n#x\nv6:0\n", err,
					    sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "hosts file '/etc/vips', line 3: bad port '0'");
	ck_assert_int_eq(nfs_spec_add_hosts(&url, "/etc/vips", "v2\n", err,
					    sizeof(err)), -EINVAL);
	ck_assert_str_eq(err,
			 "hosts file '/etc/vips', line 1: address listed twice 'v2'");
	nfs_spec_free(&url);
}
END_TEST

START_TEST(test_url_err_truncated)
{
	struct nfs_spec url;
	char err[16];

	/* a short buffer gets a truncated, terminated line */
	ck_assert_int_eq(nfs_spec_parse("nfs://", &url, err, sizeof(err)),
			 -EINVAL);
	ck_assert_uint_eq(strlen(err), sizeof(err) - 1);
	ck_assert_int_eq(strncmp(err, "backend 'nfs://", 15), 0);
}
END_TEST

START_TEST(test_path_helpers)
{
	ck_assert_uint_eq(nfs_path_components("/a"), 1);
	ck_assert_uint_eq(nfs_path_components("/a/b/c"), 3);
	ck_assert_uint_eq(nfs_path_prefix_len("/a/bb/c", 0), 0);
	ck_assert_uint_eq(nfs_path_prefix_len("/a/bb/c", 1), 2);
	ck_assert_uint_eq(nfs_path_prefix_len("/a/bb/c", 2), 5);
	ck_assert_uint_eq(nfs_path_prefix_len("/a/bb/c", 3), 7);
	ck_assert_uint_eq(nfs_path_prefix_len("/a/bb/c", 9), 7);

	ck_assert_int_eq(nfs_export_covers("/", "/a/b"), 0);
	ck_assert_int_eq(nfs_export_covers("/a", "/a/b"), 2);
	ck_assert_int_eq(nfs_export_covers("/a/", "/a/b"), 2);
	ck_assert_int_eq(nfs_export_covers("/a/b", "/a/b"), 4);
	ck_assert_int_eq(nfs_export_covers("/a/b/c", "/a/b"), -1);
	ck_assert_int_eq(nfs_export_covers("/a/bc", "/a/b"), -1);
	ck_assert_int_eq(nfs_export_covers("/a/b", "/a/bc"), -1);
	ck_assert_int_eq(nfs_export_covers("/x", "/a/b"), -1);
	ck_assert_int_eq(nfs_export_covers("", "/a/b"), -1);
	ck_assert_int_eq(nfs_export_covers("a", "/a/b"), -1);
}
END_TEST

static const struct {
	int stat;
	int err;
	const char *name;
} maps[] = {
	{ NFS3_OK, 0, "NFS3_OK" },
	{ NFS3ERR_PERM, -EPERM, "NFS3ERR_PERM" },
	{ NFS3ERR_NOENT, -ENOENT, "NFS3ERR_NOENT" },
	{ NFS3ERR_IO, -EIO, "NFS3ERR_IO" },
	{ NFS3ERR_NXIO, -ENXIO, "NFS3ERR_NXIO" },
	{ NFS3ERR_ACCES, -EACCES, "NFS3ERR_ACCES" },
	{ NFS3ERR_EXIST, -EEXIST, "NFS3ERR_EXIST" },
	{ NFS3ERR_XDEV, -EXDEV, "NFS3ERR_XDEV" },
	{ NFS3ERR_NODEV, -ENODEV, "NFS3ERR_NODEV" },
	{ NFS3ERR_NOTDIR, -ENOTDIR, "NFS3ERR_NOTDIR" },
	{ NFS3ERR_ISDIR, -EISDIR, "NFS3ERR_ISDIR" },
	{ NFS3ERR_INVAL, -EINVAL, "NFS3ERR_INVAL" },
	{ NFS3ERR_FBIG, -EFBIG, "NFS3ERR_FBIG" },
	{ NFS3ERR_NOSPC, -ENOSPC, "NFS3ERR_NOSPC" },
	{ NFS3ERR_ROFS, -EROFS, "NFS3ERR_ROFS" },
	{ NFS3ERR_MLINK, -EMLINK, "NFS3ERR_MLINK" },
	{ NFS3ERR_NAMETOOLONG, -ENAMETOOLONG, "NFS3ERR_NAMETOOLONG" },
	{ NFS3ERR_NOTEMPTY, -ENOTEMPTY, "NFS3ERR_NOTEMPTY" },
	{ NFS3ERR_DQUOT, -EDQUOT, "NFS3ERR_DQUOT" },
	{ NFS3ERR_STALE, -ESTALE, "NFS3ERR_STALE" },
	{ NFS3ERR_REMOTE, -EREMOTE, "NFS3ERR_REMOTE" },
	{ NFS3ERR_BADHANDLE, -ESTALE, "NFS3ERR_BADHANDLE" },
	{ NFS3ERR_NOT_SYNC, -EIO, "NFS3ERR_NOT_SYNC" },
	{ NFS3ERR_BAD_COOKIE, -EIO, "NFS3ERR_BAD_COOKIE" },
	{ NFS3ERR_NOTSUPP, -EOPNOTSUPP, "NFS3ERR_NOTSUPP" },
	{ NFS3ERR_TOOSMALL, -EIO, "NFS3ERR_TOOSMALL" },
	{ NFS3ERR_SERVERFAULT, -EIO, "NFS3ERR_SERVERFAULT" },
	{ NFS3ERR_BADTYPE, -EINVAL, "NFS3ERR_BADTYPE" },
	{ NFS3ERR_JUKEBOX, -EAGAIN, "NFS3ERR_JUKEBOX" },
};

START_TEST(test_errno_map)
{
	ck_assert_int_eq(nfs_stat3_to_errno(maps[_i].stat), maps[_i].err);
	ck_assert_str_eq(nfs_stat3_str(maps[_i].stat), maps[_i].name);
}
END_TEST

START_TEST(test_errno_unknown)
{
	ck_assert_int_eq(nfs_stat3_to_errno(12345), -EIO);
	ck_assert_int_eq(nfs_stat3_to_errno(-1), -EIO);
	ck_assert_str_eq(nfs_stat3_str(12345), "NFS3ERR_#12345");
	ck_assert_str_eq(nfs_mnt3_str(13), "access denied (MNT3ERR_ACCES)");
	ck_assert_str_eq(nfs_mnt3_str(4242), "unknown MOUNT error");
}
END_TEST

static Suite *nfs_url_suite(void)
{
	Suite *s = suite_create("nfs_url");
	TCase *tc;

	tc = tcase_create("url");
	tcase_add_loop_test(tc, test_url_good, 0,
			    (int)(sizeof(good) / sizeof(good[0])));
	tcase_add_loop_test(tc, test_url_bad, 0,
			    (int)(sizeof(bad) / sizeof(bad[0])));
	tcase_add_test(tc, test_url_err_truncated);
	tcase_add_test(tc, test_url_pool);
	tcase_add_test(tc, test_hosts_file);
	tcase_add_test(tc, test_path_helpers);
	suite_add_tcase(s, tc);

	tc = tcase_create("errno");
	tcase_add_loop_test(tc, test_errno_map, 0,
			    (int)(sizeof(maps) / sizeof(maps[0])));
	tcase_add_test(tc, test_errno_unknown);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(nfs_url_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
