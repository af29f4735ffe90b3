/* SPDX-License-Identifier: GPL-2.0 */
/*
 * fuzz_nfs_url.c - libFuzzer target for backend/nfs_url.c: the
 * nfs://HOST[:PORT]/EXPORT[/SUBDIR] parser nfs_spec_parse() and the path
 * helpers the mount code applies to its result and to the server's
 * export list (nfs_path_components(), nfs_path_prefix_len(),
 * nfs_export_covers()).
 *
 * Input: the URL, optionally followed by a NUL and an export path as a
 * server might list it (server-controlled text).
 *
 * Checks besides ASan/UBSan, from the contract in nfs_int.h: an accepted
 * URL gives a non-empty host of legal characters, a port 0..65535 and a
 * path "/a/b" with one slash between components, none at the end, and no
 * "." or ".." component; a refused one leaves the struct empty and writes
 * "backend 'SPEC': PROBLEM".  The helpers stay inside their strings and
 * return component boundaries.
 */
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "nfs_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond, const char *what, const char *spec)
{
	if (!cond)
		fuzz_fail("fuzz_nfs_url: invariant broken: %s (URL '%.512s')",
			  what, spec);
}

static int host_ok(const char *h)
{
	const char *c;
	int v6 = strchr(h, ':') != NULL;

	if (!*h)
		return 0;
	for (c = h; *c; c++) {
		unsigned char u = (unsigned char)*c;

		if (v6 ? !(isxdigit(u) || u == ':' || u == '.') :
			 !(isalnum(u) || u == '.' || u == '-' || u == '_'))
			return 0;
	}
	return 1;
}

static int path_normal(const char *p)
{
	const char *c;

	if (p[0] != '/' || p[1] == '\0')
		return 0;
	for (c = p + 1;;) {
		const char *e = strchr(c, '/');
		size_t len = e ? (size_t)(e - c) : strlen(c);

		if (len == 0 || (len == 1 && c[0] == '.') ||
		    (len == 2 && c[0] == '.' && c[1] == '.'))
			return 0;
		if (!e)
			return 1;
		c = e + 1;
	}
}

static void check_helpers(const char *path, const char *export_dir,
			  const char *spec)
{
	size_t plen = strlen(path);
	unsigned int n = nfs_path_components(path), k;
	int cov;

	for (k = 0; k <= n + 1; k++) {
		size_t l = nfs_path_prefix_len(path, k);
		unsigned int comps = 0;
		size_t i;

		check(l <= plen, "nfs_path_prefix_len past the end", spec);
		check(path[l] == '\0' || path[l] == '/',
		      "nfs_path_prefix_len not at a component boundary", spec);
		for (i = 0; i < l; i++)
			comps += path[i] == '/';
		check(comps == (k < n ? k : n),
		      "nfs_path_prefix_len: wrong number of components", spec);
	}
	if (!export_dir)
		return;
	cov = nfs_export_covers(export_dir, path);
	check(cov >= -1 && cov <= (int)plen,
	      "nfs_export_covers out of range", spec);
	if (cov > 0) {
		check(path[cov] == '\0' || path[cov] == '/',
		      "nfs_export_covers not at a component boundary", spec);
		check(!strncmp(export_dir, path, (size_t)cov),
		      "nfs_export_covers: export is not a prefix", spec);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct nfs_spec url;
	char err[512];
	char *buf, *export_dir = NULL;
	size_t ulen;
	int rc;

	if (size > 65536)
		return 0;
	buf = malloc(size + 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	ulen = strlen(buf);
	if (ulen < size)
		export_dir = buf + ulen + 1;

	err[0] = '\0';
	memset(&url, 0xa5, sizeof(url));
	rc = nfs_spec_parse(buf, &url, err, sizeof(err));
	if (rc == 0) {
		check(url.host && url.path, "accepted without host or path",
		      buf);
		check(host_ok(url.host), "accepted a bad host", buf);
		check(url.port >= 0 && url.port <= 65535, "port out of range",
		      buf);
		check(path_normal(url.path), "path not normalised", buf);
		check(!strchr(url.path, '?'), "path with a query", buf);
		check_helpers(url.path, export_dir, buf);
	} else {
		check(rc == -EINVAL || rc == -ENOMEM,
		      "refused with an unexpected error", buf);
		check(!url.host && !url.path && url.port == 0,
		      "refusal left the struct filled", buf);
		check(!strncmp(err, "backend '", 9),
		      "refusal without a message", buf);
	}
	nfs_spec_free(&url);
	free(buf);
	return 0;
}
