/* SPDX-License-Identifier: GPL-2.0 */
/*
 * opts.c - the command line and every mount option, in one table.
 *
 * Everyone else gets a const pointer to the result.  A bad option stops
 * the mount with one line that names it; options this table does not know
 * are left for libfuse, which refuses unknown ones in the same way.
 *
 * Thread safety: runs once, in main(), before any thread starts.
 */
#include "fs_int.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <xxhash.h>

#include "config.h"

#define OPT(t, p, v) { t, offsetof(struct sfs_config, p), v }

enum { KEY_HELP, KEY_VERSION, KEY_FOREGROUND, KEY_DEBUG };

static const struct fuse_opt sfs_opts[] = {
	OPT("cache_dir=%s", cache_dir, 0),
	OPT("cache_size=%s", cache_size_s, 0),
	OPT("cache_min_free=%s", cache_min_free_s, 0),
	OPT("chunk_size=%s", chunk_size_s, 0),
	OPT("readahead=%s", readahead_s, 0),
	OPT("kernel_readahead=%s", kernel_readahead_s, 0),
	OPT("dirty_max=%s", dirty_max_s, 0),
	OPT("journal_compact=%s", journal_compact_s, 0),
	OPT("nconnect=%u", nconnect, 0),
	OPT("mem_files=%u", cache.mem_files, 0),
	OPT("writeback=%s", writeback_s, 0),
	OPT("flush_on_close=%s", flush_on_close_s, 0),
	OPT("fsync=%s", fsync_s, 0),
	OPT("verify=%s", verify_s, 0),
	OPT("passthrough=%s", passthrough_s, 0),
	OPT("killpriv=%s", killpriv_s, 0),
	OPT("cache_direct=%s", cache_direct_s, 0),
	OPT("default_permissions=%s", default_permissions_s, 0),
	OPT("namespace=%s", namespace_file, 0),
	OPT("hosts=%s", hosts_file, 0),
	OPT("ctl_socket=%s", ctl_socket, 0),
	OPT("attr_timeout=%lf", attr_timeout, 0),
	OPT("entry_timeout=%lf", entry_timeout, 0),
	OPT("groups_timeout=%lf", groups_timeout, 0),
	OPT("hard", soft, 0),
	OPT("soft", soft, 1),
	OPT("outage_wait=%lf", outage_wait, 0),
	OPT("offline=%s", offline_s, 0),
	OPT("readdirplus=%s", readdirplus_s, 0),
	FUSE_OPT_KEY("-h", KEY_HELP),
	FUSE_OPT_KEY("--help", KEY_HELP),
	FUSE_OPT_KEY("-V", KEY_VERSION),
	FUSE_OPT_KEY("--version", KEY_VERSION),
	FUSE_OPT_KEY("-f", KEY_FOREGROUND),
	FUSE_OPT_KEY("-d", KEY_DEBUG),
	FUSE_OPT_KEY("debug", KEY_DEBUG),
	FUSE_OPT_END
};

void opts_usage(const char *prog)
{
	printf("usage: %s [-f] [-d] [-o opt[,opt...]] BACKEND MOUNTPOINT\n"
	       "\n"
	       "BACKEND  nfs://HOST[:PORT]/EXPORT[/SUBDIR]   NFSv3 through libnfs\n"
	       "         nfs://VIP1,VIP2,.../EXPORT          one cluster at several addresses\n"
	       "         /ABSOLUTE/DIR                      a local or kernel-mounted directory\n"
	       "\n"
	       "stagefs options (sizes take K, M, G, T):\n"
	       "  -o cache_dir=DIR          staging cache directory (default /var/cache/stagefs/<id>)\n"
	       "  -o cache_size=SIZE        evict clean data above this (default 80%% of the cache fs)\n"
	       "  -o cache_min_free=SIZE    ... or when the cache fs has less free (default 5%%)\n"
	       "  -o chunk_size=SIZE        unit of caching and fetching, power of 2 (default 4M)\n"
	       "  -o readahead=SIZE         prefetch window of a sequential reader (default 64M)\n"
	       "  -o kernel_readahead=SIZE  the kernel's read-ahead for the mount, 0: leave it\n"
	       "                            (default 4M; the system's is 128K)\n"
	       "  -o nconnect=N             backend connections and upload threads (default 4)\n"
	       "  -o writeback=on|off       write-back caching (default on)\n"
	       "  -o flush_on_close=sync|async  close waits for the upload (default sync)\n"
	       "  -o fsync=backend|local    what fsync guarantees (default backend)\n"
	       "  -o dirty_max=SIZE         writers wait above this much dirty data (default cache_size/2)\n"
	       "  -o journal_compact=SIZE   rewrite the journal to what is still dirty when it\n"
	       "                            grows past SIZE and twice its last size (default 4M)\n"
	       "  -o mem_files=N            files whose cache state stays in memory once unused\n"
	       "                            (default 32768; about 2K each)\n"
	       "  -o verify=on|off          check checksums on every cache read (default on)\n"
	       "  -o passthrough=auto|on|off  the kernel reads and writes cached files\n"
	       "                            itself (FUSE passthrough, Linux 6.9+; default auto)\n"
	       "  -o killpriv=on|off        the daemon clears set-id bits after a write (Linux\n"
	       "                            5.11+; off: the kernel does, as older ones; default on)\n"
	       "  -o cache_direct=fills|on|off  O_DIRECT for chunk fills (fills, the default),\n"
	       "                            also for block reads of the cache (on), or none\n"
	       "  -o default_permissions=on|off  the kernel checks modes before the backend does (default on)\n"
	       "  -o hosts=FILE             more addresses of the nfs:// BACKEND's cluster, one per line\n"
	       "  -o namespace=FILE         junctions of several backends in one tree\n"
	       "  -o ctl_socket=PATH        control socket for stagefsctl (default /run/stagefs/<id>.sock)\n"
	       "  -o attr_timeout=SECS      kernel attribute cache (default 1.0)\n"
	       "  -o entry_timeout=SECS     kernel name cache (default 1.0)\n"
	       "  -o groups_timeout=SECS    a caller's groups are read again after this\n"
	       "                            (default 1.0; 0: on every request)\n"
	       "  -o readdirplus=on|off|auto  listings carry each entry's attributes, so that\n"
	       "                            ls -l asks nothing per entry; auto (the default):\n"
	       "                            on, but off where every backend is posix\n"
	       "  -o hard|soft              an unreachable server: wait for it (hard, the default)\n"
	       "                            or fail requests after 60 s (soft), as NFS mounts do\n"
	       "  -o outage_wait=SECS       answer from the cache what it can after this long\n"
	       "                            without the server (default 5)\n"
	       "  -o offline=serve|wait     an open of a file whole in the cache during an outage:\n"
	       "                            serve the cached copy (default) or wait for the server\n"
	       "  -f                        stay in the foreground, log to stderr\n"
	       "  -d                        debug: foreground, verbose log\n"
	       "\n"
	       "FUSE options such as allow_other pass through. Every backend request carries\n"
	       "the caller's uid, gid and groups (docs/security.md).\n",
	       prog);
}

static int opt_proc(void *data, const char *arg, int key,
		    struct fuse_args *outargs)
{
	struct sfs_config *cfg = data;

	switch (key) {
	case KEY_HELP:
		cfg->show_help = 1;
		return 0;
	case KEY_VERSION:
		cfg->show_version = 1;
		return 0;
	case KEY_FOREGROUND:
		cfg->foreground = 1;
		return 0;
	case KEY_DEBUG:
		cfg->foreground = 1;
		cfg->debug = 1;
		return 0;
	case FUSE_OPT_KEY_NONOPT:
		if (!cfg->backend) {
			cfg->backend = strdup(arg);
			return 0;
		}
		if (!cfg->mountpoint) {
			cfg->mountpoint = strdup(arg);
			return 0;
		}
		fprintf(stderr, "stagefs: unexpected argument '%s'\n", arg);
		return -1;
	default:
		return 1;	/* for libfuse */
	}
}

int parse_size(const char *s, uint64_t *out)
{
	unsigned long long v;
	char *end;
	int shift = 0;

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	case 't': case 'T': shift = 40; end++; break;
	default: break;
	}
	/* "4M", "4MB" and "4MiB" alike; "5B" is 5 bytes, "5i" is junk. */
	if (shift && end[0] == 'i' && end[1] == 'B')
		end += 2;
	else if (*end == 'B')
		end++;
	if (*end || (shift && v > (~0ULL >> shift)))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

static int size_opt(const char *name, const char *s, uint64_t *out)
{
	if (!s)
		return 0;
	if (parse_size(s, out) < 0) {
		fprintf(stderr,
			"stagefs: bad value for %s: '%s' (expected a size such as 512M or 2T)\n",
			name, s);
		return -EINVAL;
	}
	return 0;
}

/* Parse "a|b" style options; *out is the index of the match. */
static int choice_opt(const char *name, const char *s, const char *a,
		      const char *b, int *out)
{
	if (!s)
		return 0;
	if (!strcmp(s, a)) {
		*out = 0;
		return 0;
	}
	if (!strcmp(s, b)) {
		*out = 1;
		return 0;
	}
	fprintf(stderr, "stagefs: bad value for %s: '%s' (expected %s or %s)\n",
		name, s, a, b);
	return -EINVAL;
}

/* The default cache dir: one per backend and mountpoint. */
static int default_cache_dir(struct sfs_config *cfg)
{
	char buf[4096];
	unsigned long long h;

	h = XXH3_64bits(cfg->backend, strlen(cfg->backend)) ^
	    XXH3_64bits(cfg->mountpoint, strlen(cfg->mountpoint));
	mkdir("/var/cache/stagefs", 0700);
	snprintf(buf, sizeof(buf), "/var/cache/stagefs/%016llx", h);
	if (mkdir(buf, 0700) < 0 && errno != EEXIST) {
		fprintf(stderr, "stagefs: cannot create cache dir %s: %s\n",
			buf, strerror(errno));
		return -errno;
	}
	cfg->cache_dir = strdup(buf);
	return 0;
}

int opts_parse(struct fuse_args *args, struct sfs_config *cfg)
{
	struct cache_config *cc = &cfg->cache;
	struct statvfs sv;
	uint64_t fs_size;
	int v = 0;

	memset(cfg, 0, sizeof(*cfg));
	cfg->nconnect = 4;
	cfg->attr_timeout = 1.0;
	cfg->entry_timeout = 1.0;
	cfg->groups_timeout = 1.0;
	cfg->outage_wait = 5.0;
	if (fuse_opt_parse(args, cfg, sfs_opts, opt_proc) < 0)
		return -EINVAL;
	if (cfg->show_help || cfg->show_version)
		return 0;
	if (!cfg->backend || !cfg->mountpoint) {
		/* With -o namespace, BACKEND only names the mount. */
		fprintf(stderr,
			"stagefs: %s (usage: stagefs [-f] [-o opt,...] BACKEND MOUNTPOINT; see --help)\n",
			cfg->backend ? "no mountpoint given" : "no backend given");
		return -EINVAL;
	}
	if (cfg->hosts_file &&
	    (cfg->namespace_file || strncmp(cfg->backend, "nfs://", 6) != 0)) {
		fprintf(stderr, "stagefs: hosts=%s needs an nfs:// BACKEND and no namespace= (list a junction's addresses in its URL)\n",
			cfg->hosts_file);
		return -EINVAL;
	}
	if (cfg->cache.mem_files &&
	    (cfg->cache.mem_files < 100 || cfg->cache.mem_files > 100000000)) {
		fprintf(stderr, "stagefs: bad value for mem_files: %u (expected 100 to 100000000)\n",
			cfg->cache.mem_files);
		return -EINVAL;
	}
	if (cfg->nconnect < 1 || cfg->nconnect > 64) {
		fprintf(stderr, "stagefs: bad value for nconnect: %u (expected 1 to 64)\n",
			cfg->nconnect);
		return -EINVAL;
	}
	if (!(cfg->attr_timeout >= 0 && cfg->attr_timeout < 1e9) ||
	    !(cfg->entry_timeout >= 0 && cfg->entry_timeout < 1e9)) {
		fprintf(stderr, "stagefs: attr_timeout and entry_timeout must be seconds from 0 to 1e9\n");
		return -EINVAL;
	}
	if (!(cfg->groups_timeout >= 0 && cfg->groups_timeout <= 3600)) {
		fprintf(stderr, "stagefs: bad value for groups_timeout: %g (expected seconds from 0 to 3600)\n",
			cfg->groups_timeout);
		return -EINVAL;
	}
	if (!(cfg->outage_wait >= 0.1 && cfg->outage_wait <= 3600)) {
		fprintf(stderr, "stagefs: bad value for outage_wait: %g (expected seconds from 0.1 to 3600)\n",
			cfg->outage_wait);
		return -EINVAL;
	}
	cc->chunk_size = 4ULL << 20;
	cc->readahead = 64ULL << 20;
	cfg->kernel_readahead = 4ULL << 20;
	cc->writeback = 1;
	cc->verify = 1;
	cc->flushers = cfg->nconnect;
	if (size_opt("cache_size", cfg->cache_size_s, &cc->size) ||
	    size_opt("cache_min_free", cfg->cache_min_free_s, &cc->min_free) ||
	    size_opt("chunk_size", cfg->chunk_size_s, &cc->chunk_size) ||
	    size_opt("readahead", cfg->readahead_s, &cc->readahead) ||
	    size_opt("kernel_readahead", cfg->kernel_readahead_s,
		     &cfg->kernel_readahead) ||
	    size_opt("dirty_max", cfg->dirty_max_s, &cc->dirty_max) ||
	    size_opt("journal_compact", cfg->journal_compact_s,
		     &cc->journal_compact))
		return -EINVAL;
	if (cfg->journal_compact_s && cc->journal_compact < (64 << 10)) {
		fprintf(stderr,
			"stagefs: bad value for journal_compact: '%s' (expected a size of 64K or more)\n",
			cfg->journal_compact_s);
		return -EINVAL;
	}
	if (cfg->kernel_readahead > (1ULL << 30)) {
		fprintf(stderr,
			"stagefs: bad value for kernel_readahead: '%s' (expected 0 to 1G)\n",
			cfg->kernel_readahead_s);
		return -EINVAL;
	}
	if (cc->chunk_size < (256 << 10) || cc->chunk_size > (256 << 20) ||
	    (cc->chunk_size & (cc->chunk_size - 1))) {
		fprintf(stderr,
			"stagefs: bad value for chunk_size: '%s' (expected a power of 2 from 256K to 256M)\n",
			cfg->chunk_size_s);
		return -EINVAL;
	}
	if (choice_opt("writeback", cfg->writeback_s, "off", "on", &cc->writeback) ||
	    choice_opt("verify", cfg->verify_s, "off", "on", &cc->verify) ||
	    choice_opt("flush_on_close", cfg->flush_on_close_s, "sync", "async",
		       &v))
		return -EINVAL;
	cc->close_mode = v ? CACHE_CLOSE_ASYNC : CACHE_CLOSE_SYNC;
	cc->direct = CACHE_DIRECT_FILLS;
	if (cfg->cache_direct_s) {
		if (!strcmp(cfg->cache_direct_s, "off")) {
			cc->direct = CACHE_DIRECT_OFF;
		} else if (!strcmp(cfg->cache_direct_s, "on")) {
			cc->direct = CACHE_DIRECT_ON;
		} else if (strcmp(cfg->cache_direct_s, "fills")) {
			fprintf(stderr, "stagefs: bad value for cache_direct: '%s' (expected fills, on or off)\n",
				cfg->cache_direct_s);
			return -EINVAL;
		}
	}
	v = 0;
	if (choice_opt("fsync", cfg->fsync_s, "backend", "local", &v))
		return -EINVAL;
	cc->fsync_mode = v ? CACHE_FSYNC_LOCAL : CACHE_FSYNC_BACKEND;
	/* auto: where the kernel offers it (docs/tuning.md) */
	if (!cfg->passthrough_s || !strcmp(cfg->passthrough_s, "auto")) {
		cfg->passthrough = SFS_PT_AUTO;
	} else if (!strcmp(cfg->passthrough_s, "off")) {
		cfg->passthrough = SFS_PT_OFF;
	} else if (!strcmp(cfg->passthrough_s, "on")) {
		cfg->passthrough = SFS_PT_ON;
	} else {
		fprintf(stderr, "stagefs: bad value for passthrough: '%s' (expected auto, on or off)\n",
			cfg->passthrough_s);
		return -EINVAL;
	}
	cfg->killpriv = 1;
	if (choice_opt("killpriv", cfg->killpriv_s, "off", "on",
		       &cfg->killpriv))
		return -EINVAL;
	cfg->offline_serve = 1;
	if (choice_opt("offline", cfg->offline_s, "wait", "serve",
		       &cfg->offline_serve))
		return -EINVAL;
	cfg->readdirplus = SFS_RDP_AUTO;
	if (cfg->readdirplus_s) {
		if (!strcmp(cfg->readdirplus_s, "on")) {
			cfg->readdirplus = SFS_RDP_ON;
		} else if (!strcmp(cfg->readdirplus_s, "off")) {
			cfg->readdirplus = SFS_RDP_OFF;
		} else if (strcmp(cfg->readdirplus_s, "auto")) {
			fprintf(stderr, "stagefs: bad value for readdirplus: '%s' (expected on, off or auto)\n",
				cfg->readdirplus_s);
			return -EINVAL;
		}
	}
	cfg->default_permissions = 1;
	if (choice_opt("default_permissions", cfg->default_permissions_s,
		       "off", "on", &cfg->default_permissions))
		return -EINVAL;

	{
		/* The default cache dir is named after the real path. */
		char *rp = realpath(cfg->mountpoint, NULL);

		if (rp) {
			free(cfg->mountpoint);
			cfg->mountpoint = rp;
		}
	}
	if (!cfg->cache_dir && default_cache_dir(cfg) < 0)
		return -EINVAL;
	if (statvfs(cfg->cache_dir, &sv) < 0) {
		fprintf(stderr, "stagefs: cache dir %s: %s\n", cfg->cache_dir,
			strerror(errno));
		return -EINVAL;
	}
	fs_size = (uint64_t)sv.f_blocks * sv.f_frsize;
	if (!cc->size)
		cc->size = fs_size / 10 * 8;
	if (!cfg->cache_min_free_s)
		cc->min_free = fs_size / 20;
	if (!cc->dirty_max)
		cc->dirty_max = cc->size / 2;
	if (cc->dirty_max < 2 * cc->chunk_size)
		cc->dirty_max = 2 * cc->chunk_size;
	cc->dir = cfg->cache_dir;
	return 0;
}

void opts_free(struct sfs_config *cfg)
{
	char **strs[] = { &cfg->cache_dir, &cfg->cache_size_s,
			  &cfg->cache_min_free_s, &cfg->chunk_size_s,
			  &cfg->readahead_s, &cfg->kernel_readahead_s,
			  &cfg->dirty_max_s, &cfg->journal_compact_s,
			  &cfg->writeback_s, &cfg->flush_on_close_s,
			  &cfg->fsync_s, &cfg->verify_s, &cfg->cache_direct_s,
			  &cfg->passthrough_s, &cfg->killpriv_s,
			  &cfg->default_permissions_s,
			  &cfg->offline_s, &cfg->namespace_file,
			  &cfg->readdirplus_s,
			  &cfg->hosts_file,
			  &cfg->ctl_socket, &cfg->backend, &cfg->mountpoint };
	size_t i;

	for (i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
		free(*strs[i]);
		*strs[i] = NULL;
	}
}
