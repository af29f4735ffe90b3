/* SPDX-License-Identifier: GPL-2.0 */
/*
 * nfs_url.c - nfs://HOST[:PORT]/EXPORT[/SUBDIR] parsing and the NFSv3
 * status to errno mapping.  No libnfs calls: the unit test links this file
 * alone (it only needs the NFS3ERR_* constants from the header).
 */
#include "nfs_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nfsc/libnfs.h>
#include <nfsc/libnfs-raw.h>
#include <nfsc/libnfs-raw-mount.h>
#include <nfsc/libnfs-raw-nfs.h>

#define NFS_URL_SCHEME "nfs://"

/* where: "backend 'SPEC'", or "hosts file 'F', line N". */
static int url_fail(char *err, size_t errlen, const char *where,
		    const char *what, const char *arg)
{
	if (arg)
		snprintf(err, errlen, "%s: %s '%s'", where, what, arg);
	else
		snprintf(err, errlen, "%s: %s", where, what);
	return -EINVAL;
}

static int host_char_ok(char c)
{
	return isalnum((unsigned char)c) || c == '.' || c == '-' || c == '_';
}

/* Split "HOST[:PORT]" (len bytes at a) and add it to url->addrs. */
static int parse_authority(const char *where, const char *a, size_t len,
			   struct nfs_spec *url, char *err, size_t errlen)
{
	const char *host = a, *port = NULL;
	size_t hostlen, portlen = 0, i;
	struct nfs_addr_spec *na;
	char buf[16];
	long v = 0;

	if (len == 0)
		return url_fail(err, errlen, where, "missing host", NULL);
	if (a[0] == '[') {
		const char *close = memchr(a, ']', len);

		if (!close)
			return url_fail(err, errlen, where,
					"missing ']' after IPv6 address", NULL);
		host = a + 1;
		hostlen = (size_t)(close - host);
		if (hostlen == 0)
			return url_fail(err, errlen, where, "missing host",
					NULL);
		for (i = 0; i < hostlen; i++)
			if (!isxdigit((unsigned char)host[i]) &&
			    host[i] != ':' && host[i] != '.')
				return url_fail(err, errlen, where,
						"bad IPv6 address", NULL);
		if ((size_t)(close + 1 - a) < len) {
			if (close[1] != ':')
				return url_fail(err, errlen, where,
						"junk after IPv6 address",
						NULL);
			port = close + 2;
			portlen = len - (size_t)(port - a);
		}
	} else {
		const char *colon = memchr(a, ':', len);

		hostlen = colon ? (size_t)(colon - a) : len;
		if (colon) {
			port = colon + 1;
			portlen = len - hostlen - 1;
			if (memchr(port, ':', portlen))
				return url_fail(err, errlen, where,
						"bad host (an IPv6 address goes in brackets: nfs://[::1]/export)",
						NULL);
		}
		if (hostlen == 0)
			return url_fail(err, errlen, where, "missing host",
					NULL);
		for (i = 0; i < hostlen; i++)
			if (!host_char_ok(host[i])) {
				char h[256];

				snprintf(h, sizeof(h), "%.*s", (int)hostlen,
					 host);
				return url_fail(err, errlen, where, "bad host",
						h);
			}
	}
	if (port) {
		snprintf(buf, sizeof(buf), "%.*s",
			 (int)(portlen < 15 ? portlen : 15), port);
		if (portlen == 0 || portlen > 5)
			return url_fail(err, errlen, where, "bad port", buf);
		for (i = 0; i < portlen; i++)
			if (!isdigit((unsigned char)port[i]))
				return url_fail(err, errlen, where, "bad port",
						buf);
		v = strtol(buf, NULL, 10);
		if (v < 1 || v > 65535)
			return url_fail(err, errlen, where, "bad port", buf);
	}
	for (i = 0; i < url->naddrs; i++)
		if (strlen(url->addrs[i].host) == hostlen &&
		    !strncmp(url->addrs[i].host, host, hostlen) &&
		    url->addrs[i].port == (int)v) {
			return url_fail(err, errlen, where,
					"address listed twice",
					url->addrs[i].host);
		}
	if (url->naddrs >= NFS_MAX_ADDRS)
		return url_fail(err, errlen, where,
				"more than " NFS_MAX_ADDRS_S " addresses", NULL);
	na = realloc(url->addrs, (url->naddrs + 1) * sizeof(*na));
	if (!na)
		return -ENOMEM;
	url->addrs = na;
	na[url->naddrs].host = strndup(host, hostlen);
	if (!na[url->naddrs].host)
		return -ENOMEM;
	na[url->naddrs].port = (int)v;
	url->naddrs++;
	url->host = na[0].host;
	url->port = na[0].port;
	return 0;
}

/* "a,b[:p],[::1]": each address of a pool, in order. */
static int parse_authorities(const char *where, const char *a, size_t len,
			     struct nfs_spec *url, char *err, size_t errlen)
{
	const char *end = a + len;
	int rc;

	for (;;) {
		const char *comma = memchr(a, ',', (size_t)(end - a));
		size_t n = comma ? (size_t)(comma - a) : (size_t)(end - a);

		rc = parse_authority(where, a, n, url, err, errlen);
		if (rc < 0 || !comma)
			return rc;
		a = comma + 1;
	}
}

int nfs_spec_add_hosts(struct nfs_spec *url, const char *file,
		       const char *text, char *err, size_t errlen)
{
	unsigned int line = 0;
	char where[320];
	int rc;

	while (*text) {
		size_t n = strcspn(text, "\n"), b = 0, e = n;

		line++;
		while (b < e && isspace((unsigned char)text[b]))
			b++;
		while (e > b && isspace((unsigned char)text[e - 1]))
			e--;
		if (b < e && text[b] != '#') {
			snprintf(where, sizeof(where), "hosts file '%.200s', line %u",
				 file, line);
			rc = parse_authorities(where, text + b, e - b, url, err,
					       errlen);
			if (rc == -ENOMEM)
				snprintf(err, errlen, "out of memory");
			if (rc < 0)
				return rc;
		}
		text += n;
		if (*text)
			text++;
	}
	return 0;
}

/* Copy p into url->path with one slash between components. */
static int parse_path(const char *where, const char *p, struct nfs_spec *url,
		      char *err, size_t errlen)
{
	size_t len = strlen(p), o = 0;
	char *out;

	if (strchr(p, '?'))
		return url_fail(err, errlen, where,
				"URL options ('?...') are not supported",
				NULL);
	out = malloc(len + 2);
	if (!out)
		return -ENOMEM;
	while (*p) {
		size_t n;

		while (*p == '/')
			p++;
		n = strcspn(p, "/");
		if (n == 0)
			break;
		if ((n == 1 && p[0] == '.') ||
		    (n == 2 && p[0] == '.' && p[1] == '.')) {
			free(out);
			return url_fail(err, errlen, where,
					"'.' and '..' are not allowed in the path",
					NULL);
		}
		out[o++] = '/';
		memcpy(out + o, p, n);
		o += n;
		p += n;
	}
	out[o] = '\0';
	if (o == 0) {
		free(out);
		return url_fail(err, errlen, where, "missing export path",
				NULL);
	}
	url->path = out;
	return 0;
}

int nfs_spec_parse(const char *spec, struct nfs_spec *url, char *err,
		  size_t errlen)
{
	const char *a, *slash;
	char where[600];
	int rc;

	memset(url, 0, sizeof(*url));
	snprintf(where, sizeof(where), "backend '%s'", spec);
	if (strncmp(spec, NFS_URL_SCHEME, strlen(NFS_URL_SCHEME)) != 0)
		return url_fail(err, errlen, where, "not an nfs:// URL", NULL);
	a = spec + strlen(NFS_URL_SCHEME);
	slash = strchr(a, '/');
	if (memchr(a, '@', slash ? (size_t)(slash - a) : strlen(a)))
		return url_fail(err, errlen, where,
				"user names in the URL are not supported",
				NULL);
	rc = parse_authorities(where, a,
			       slash ? (size_t)(slash - a) : strlen(a), url,
			       err, errlen);
	if (rc < 0)
		goto out_free;
	if (!slash) {
		rc = url_fail(err, errlen, where, "missing export path", NULL);
		goto out_free;
	}
	rc = parse_path(where, slash, url, err, errlen);
	if (rc < 0)
		goto out_free;
	return 0;

out_free:
	if (rc == -ENOMEM)
		snprintf(err, errlen, "%s: out of memory", where);
	nfs_spec_free(url);
	return rc;
}

void nfs_spec_free(struct nfs_spec *url)
{
	unsigned int i;

	for (i = 0; i < url->naddrs; i++)
		free(url->addrs[i].host);
	free(url->addrs);
	free(url->path);
	memset(url, 0, sizeof(*url));
}

unsigned int nfs_path_components(const char *path)
{
	unsigned int n = 0;

	for (; *path; path++)
		if (*path == '/')
			n++;
	return n;
}

size_t nfs_path_prefix_len(const char *path, unsigned int n)
{
	size_t i;

	if (n == 0)
		return 0;
	for (i = 1; path[i]; i++)
		if (path[i] == '/' && --n == 0)
			return i;
	return i;
}

int nfs_export_covers(const char *export_dir, const char *path)
{
	size_t len = strlen(export_dir);

	while (len > 0 && export_dir[len - 1] == '/')
		len--;
	if (len == 0)
		return export_dir[0] == '/' ? 0 : -1;
	if (strncmp(export_dir, path, len) != 0)
		return -1;
	if (path[len] != '\0' && path[len] != '/')
		return -1;
	return (int)len;
}

static const struct {
	int stat;
	int err;
	const char *name;
} stat3_table[] = {
	{ NFS3_OK, 0, "NFS3_OK" },
	{ NFS3ERR_PERM, EPERM, "NFS3ERR_PERM" },
	{ NFS3ERR_NOENT, ENOENT, "NFS3ERR_NOENT" },
	{ NFS3ERR_IO, EIO, "NFS3ERR_IO" },
	{ NFS3ERR_NXIO, ENXIO, "NFS3ERR_NXIO" },
	{ NFS3ERR_ACCES, EACCES, "NFS3ERR_ACCES" },
	{ NFS3ERR_EXIST, EEXIST, "NFS3ERR_EXIST" },
	{ NFS3ERR_XDEV, EXDEV, "NFS3ERR_XDEV" },
	{ NFS3ERR_NODEV, ENODEV, "NFS3ERR_NODEV" },
	{ NFS3ERR_NOTDIR, ENOTDIR, "NFS3ERR_NOTDIR" },
	{ NFS3ERR_ISDIR, EISDIR, "NFS3ERR_ISDIR" },
	{ NFS3ERR_INVAL, EINVAL, "NFS3ERR_INVAL" },
	{ NFS3ERR_FBIG, EFBIG, "NFS3ERR_FBIG" },
	{ NFS3ERR_NOSPC, ENOSPC, "NFS3ERR_NOSPC" },
	{ NFS3ERR_ROFS, EROFS, "NFS3ERR_ROFS" },
	{ NFS3ERR_MLINK, EMLINK, "NFS3ERR_MLINK" },
	{ NFS3ERR_NAMETOOLONG, ENAMETOOLONG, "NFS3ERR_NAMETOOLONG" },
	{ NFS3ERR_NOTEMPTY, ENOTEMPTY, "NFS3ERR_NOTEMPTY" },
	{ NFS3ERR_DQUOT, EDQUOT, "NFS3ERR_DQUOT" },
	{ NFS3ERR_STALE, ESTALE, "NFS3ERR_STALE" },
	{ NFS3ERR_REMOTE, EREMOTE, "NFS3ERR_REMOTE" },
	{ NFS3ERR_BADHANDLE, ESTALE, "NFS3ERR_BADHANDLE" },
	{ NFS3ERR_NOT_SYNC, EIO, "NFS3ERR_NOT_SYNC" },
	{ NFS3ERR_BAD_COOKIE, EIO, "NFS3ERR_BAD_COOKIE" },
	{ NFS3ERR_NOTSUPP, EOPNOTSUPP, "NFS3ERR_NOTSUPP" },
	{ NFS3ERR_TOOSMALL, EIO, "NFS3ERR_TOOSMALL" },
	{ NFS3ERR_SERVERFAULT, EIO, "NFS3ERR_SERVERFAULT" },
	{ NFS3ERR_BADTYPE, EINVAL, "NFS3ERR_BADTYPE" },
	{ NFS3ERR_JUKEBOX, EAGAIN, "NFS3ERR_JUKEBOX" },
};

int nfs_stat3_to_errno(int stat)
{
	size_t i;

	for (i = 0; i < sizeof(stat3_table) / sizeof(stat3_table[0]); i++)
		if (stat3_table[i].stat == stat)
			return -stat3_table[i].err;
	return -EIO;
}

const char *nfs_stat3_str(int stat)
{
	static __thread char buf[32];
	size_t i;

	for (i = 0; i < sizeof(stat3_table) / sizeof(stat3_table[0]); i++)
		if (stat3_table[i].stat == stat)
			return stat3_table[i].name;
	snprintf(buf, sizeof(buf), "NFS3ERR_#%d", stat);
	return buf;
}

const char *nfs_mnt3_str(int stat)
{
	switch (stat) {
	case MNT3_OK:
		return "ok";
	case MNT3ERR_PERM:
		return "not permitted (MNT3ERR_PERM)";
	case MNT3ERR_NOENT:
		return "no such directory (MNT3ERR_NOENT)";
	case MNT3ERR_IO:
		return "I/O error (MNT3ERR_IO)";
	case MNT3ERR_ACCES:
		return "access denied (MNT3ERR_ACCES)";
	case MNT3ERR_NOTDIR:
		return "not a directory (MNT3ERR_NOTDIR)";
	case MNT3ERR_INVAL:
		return "invalid argument (MNT3ERR_INVAL)";
	case MNT3ERR_NAMETOOLONG:
		return "name too long (MNT3ERR_NAMETOOLONG)";
	case MNT3ERR_NOTSUPP:
		return "not supported (MNT3ERR_NOTSUPP)";
	case MNT3ERR_SERVERFAULT:
		return "server fault (MNT3ERR_SERVERFAULT)";
	}
	return "unknown MOUNT error";
}
