/* SPDX-License-Identifier: GPL-2.0 */
/*
 * fuzz_opts.c - libFuzzer target for the command line and mount options:
 * opts_parse() and parse_size() in fs/opts.c.
 *
 * The input is a list of arguments separated by NUL bytes, as main()
 * would get them after "stagefs".  The target first passes
 * "-o cache_dir=<a private temp dir>" so that a run never creates the
 * default cache dir under /var/cache; the input may still override it.
 *
 * Checks besides ASan/UBSan:
 *  - parse_size() (on the value of every "name=value" argument) accepts
 *    exactly DIGITS[B] and DIGITS{K,M,G,T}[B|iB] and returns DIGITS <<
 *    shift without overflow (reference_size() below);
 *  - an accepted command line leaves a usable configuration: a cache dir,
 *    a power-of-2 chunk size from 256K to 256M, nconnect 1..64 flushers,
 *    dirty_max of at least two chunks, finite non-negative timeouts.
 *
 * opts.c writes its refusals to stderr and --help to stdout; run-fuzz
 * discards both (-close_fd_mask=3).
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs_int.h"
#include "fuzz_util.h"

#define MAX_ARGS 64

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char tdir[64];
static char cdir_opt[128];

static void cleanup(void)
{
	rmdir(tdir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *t = getenv("TMPDIR");

	snprintf(tdir, sizeof(tdir), "%s/stagefs-fuzz-opts-XXXXXX",
		 t && strlen(t) < 32 ? t : "/tmp");
	if (!mkdtemp(tdir)) {
		perror("fuzz_opts: mkdtemp");
		exit(1);
	}
	atexit(cleanup);
	snprintf(cdir_opt, sizeof(cdir_opt), "cache_dir=%s", tdir);
	return 0;
}

static void check(int cond, const char *what, const char *arg)
{
	if (!cond)
		fuzz_fail("fuzz_opts: invariant broken: %s (argument '%.256s')",
			  what, arg ? arg : "");
}

/*
 * What parse_size() should do: DIGITS, an optional K/M/G/T (any case),
 * then an optional "B", or "iB" after a unit ("4M", "4MB", "4MiB", "5B";
 * not " 5", "+5", "5i", "5iB", "4Mi"); the value must fit in 64 bits.
 * Returns 0 with *out set, or -EINVAL.
 */
static int reference_size(const char *s, uint64_t *out)
{
	unsigned __int128 v = 0;
	int shift = 0;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	for (; *s >= '0' && *s <= '9'; s++) {
		v = v * 10 + (unsigned)(*s - '0');
		if (v > UINT64_MAX)
			return -EINVAL;
	}
	switch (*s) {
	case 'k': case 'K': shift = 10; s++; break;
	case 'm': case 'M': shift = 20; s++; break;
	case 'g': case 'G': shift = 30; s++; break;
	case 't': case 'T': shift = 40; s++; break;
	default: break;
	}
	if (shift && s[0] == 'i' && s[1] == 'B')
		s += 2;
	else if (s[0] == 'B')
		s++;
	if (*s)
		return -EINVAL;
	v <<= shift;
	if (v > UINT64_MAX)
		return -EINVAL;
	*out = (uint64_t)v;
	return 0;
}

static void check_size(const char *s)
{
	uint64_t got = 0x5a5a5a5a5a5a5a5aULL, want = 0;
	int rc = parse_size(s, &got), ref = reference_size(s, &want);

	check(rc == 0 || rc == -EINVAL, "parse_size: unexpected error", s);
	if (rc == 0 && ref != 0)
		check(0, "parse_size accepted a malformed size", s);
	if (rc != 0 && ref == 0)
		check(0, "parse_size refused a well-formed size", s);
	if (rc == 0)
		check(got == want, "parse_size returned the wrong value", s);
	else
		check(got == 0x5a5a5a5a5a5a5a5aULL,
		      "parse_size wrote *out on failure", s);
}

static void check_config(const struct sfs_config *cfg)
{
	const struct cache_config *cc = &cfg->cache;

	if (cfg->show_help || cfg->show_version)
		return;
	check(cfg->backend && cfg->mountpoint, "no backend or mountpoint",
	      NULL);
	check(cfg->cache_dir && cc->dir == cfg->cache_dir, "no cache dir",
	      NULL);
	check(cc->chunk_size >= (256 << 10) && cc->chunk_size <= (256 << 20) &&
		      !(cc->chunk_size & (cc->chunk_size - 1)),
	      "chunk_size out of range", cfg->chunk_size_s);
	check(cfg->nconnect >= 1 && cfg->nconnect <= 64 &&
		      cc->flushers == cfg->nconnect,
	      "nconnect out of range", NULL);
	check(cc->dirty_max >= 2 * cc->chunk_size, "dirty_max below two chunks",
	      cfg->dirty_max_s);
	check(isfinite(cfg->attr_timeout) && cfg->attr_timeout >= 0,
	      "attr_timeout is NaN, infinite or negative", NULL);
	check(isfinite(cfg->entry_timeout) && cfg->entry_timeout >= 0,
	      "entry_timeout is NaN, infinite or negative", NULL);
	check(cc->writeback == 0 || cc->writeback == 1, "writeback not 0/1",
	      cfg->writeback_s);
	check(cc->verify == 0 || cc->verify == 1, "verify not 0/1",
	      cfg->verify_s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *argv[MAX_ARGS + 4];
	char *buf, *p, *end;
	struct fuse_args args;
	struct sfs_config cfg;
	int argc = 0, rc;

	if (size > 16384)
		return 0;
	buf = malloc(size + 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';

	argv[argc++] = (char *)"stagefs";
	argv[argc++] = (char *)"-o";
	argv[argc++] = cdir_opt;
	for (p = buf, end = buf + size; p < end && argc < MAX_ARGS + 3;
	     p += strlen(p) + 1) {
		char *eq = strrchr(p, '=');

		argv[argc++] = p;
		if (eq)
			check_size(eq + 1);
	}
	if (size == 0)
		check_size("");
	argv[argc] = NULL;

	args = (struct fuse_args)FUSE_ARGS_INIT(argc, argv);
	memset(&cfg, 0, sizeof(cfg));
	rc = opts_parse(&args, &cfg);
	check(rc == 0 || rc == -EINVAL, "opts_parse: unexpected error", NULL);
	if (rc == 0)
		check_config(&cfg);
	opts_free(&cfg);
	fuse_opt_free_args(&args);
	free(buf);
	return 0;
}
