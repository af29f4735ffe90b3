/* SPDX-License-Identifier: GPL-2.0 */
/*
 * fuzz_replay.c - libFuzzer target for the start-up replay of the cache:
 * cache_open() reading a journal whose records are well formed (valid
 * checksums) but say anything, then cache_close().  fuzz_journal covers
 * the record reader; this one covers what cache/cache.c does with the
 * records (replay_rec(), replay_file(), file_chunk() on the chunk numbers
 * they name, the compaction) against a real cache dir.
 *
 * Set-up, once: an in-memory backend (tests/unit/mem_backend.c) with two
 * files, and a template cache dir left by a child process that wrote
 * dirty data to both and _exit()ed while every upload failed (a crashed
 * daemon).  Each input then becomes a fresh copy of the template's data
 * and index files plus a journal built from the input:
 *
 *   repeat: one op byte, bits 0-1 record type - 1, bits 2-3 backend spec
 *   (this backend, twice as likely; another; empty), bits 4-5 file (a, b,
 *   a fileid that does not exist, or 8 bytes of input), bit 6 chunk (0:
 *   one byte mod 8, 1: 8 bytes of input), bit 7 handle of a FILE record
 *   (0: the file's own, 1: a length byte and that many bytes);
 *   op 0xff: the rest of the input goes raw after the records.
 *
 * Checks: no sanitizer report, no hang (libFuzzer's -timeout), and
 * cache_open() either starts (and cache_close() then succeeds) or refuses
 * with -EUCLEAN and a message.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cache_int.h"
#include "fuzz_util.h"
#include "mem_backend.h"

#define SPEC "mem://fuzz"
#define CHUNK (256 << 10)
#define MAX_RECS 512
#define MAX_TMPL 16

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char tdir[64], tmpl[96], run[96];
static struct be *be;
static struct be *bes[1];
static struct be_node *node[2];
static uint64_t fileid[2];
static unsigned char *orig[2];
static size_t orig_len[2] = { 600 << 10, 100 << 10 };
static struct cache_config cfg;

/* The template's data and index files, in memory. */
static struct {
	char name[128];		/* "data/..." or "index/..." */
	unsigned char *buf;
	size_t len;
} tf[MAX_TMPL];
static int ntf;

static int rm_one(const char *path, const struct stat *st, int flag,
		  struct FTW *ftw)
{
	return remove(path) < 0 ? -1 : 0;
}

static void rm_tree(const char *dir)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void cleanup(void)
{
	rm_tree(tdir);
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

/* A crashed daemon: dirty data in the cache, none of it uploaded. */
static void make_template(void)
{
	static const struct {
		int file;
		uint64_t off;
		size_t len;
	} w[] = { { 0, 0, 8192 }, { 0, 300 << 10, 4096 },
		  { 0, (512 << 10) + 100, 20000 }, { 1, 4096, 4096 } };
	int status;
	pid_t pid;

	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		struct cache_file *f[2];
		struct cache *c;
		char err[512], buf[20000];
		size_t i;

		memset(buf, 'w', sizeof(buf));
		mem_be_fail(be, MEM_OP_WRITE, -EIO, -1);
		cfg.dir = tmpl;
		if (cache_open(&cfg, bes, 1, &c, err, sizeof(err)))
			_exit(2);
		for (i = 0; i < 2; i++) {
			struct be_attr a;

			if (be->ops->getattr(be, NULL, node[i], &a) ||
			    cache_file_get(c, 0, node[i], &a, &f[i]) < 0)
				_exit(3);
		}
		for (i = 0; i < sizeof(w) / sizeof(w[0]); i++)
			if (cache_write(f[w[i].file], NULL, buf, w[i].len,
					w[i].off) != (ssize_t)w[i].len)
				_exit(4);
		_exit(0);
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
	    WEXITSTATUS(status)) {
		fprintf(stderr, "fuzz_replay: template child failed (0x%x)\n",
			status);
		exit(1);
	}
}

static int load_one(const char *path, const struct stat *st, int flag,
		    struct FTW *ftw)
{
	const char *rel = path + strlen(tmpl) + 1;
	int fd;

	if (flag != FTW_F || (strncmp(rel, "data/", 5) &&
			      strncmp(rel, "index/", 6)))
		return 0;
	if (ntf == MAX_TMPL)
		return -1;
	snprintf(tf[ntf].name, sizeof(tf[ntf].name), "%s", rel);
	tf[ntf].len = (size_t)st->st_size;
	tf[ntf].buf = malloc(tf[ntf].len + 1);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (!tf[ntf].buf || fd < 0 ||
	    pread(fd, tf[ntf].buf, tf[ntf].len, 0) != (ssize_t)tf[ntf].len)
		return -1;
	close(fd);
	ntf++;
	return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *t = getenv("TMPDIR");
	int i;

	snprintf(tdir, sizeof(tdir), "%s/stagefs-fuzz-replay-XXXXXX",
		 t && strlen(t) < 32 ? t : "/tmp");
	if (!mkdtemp(tdir))
		die("fuzz_replay: mkdtemp");
	atexit(cleanup);
	snprintf(tmpl, sizeof(tmpl), "%s/template", tdir);
	snprintf(run, sizeof(run), "%s/run", tdir);
	if (mkdir(tmpl, 0700) < 0)
		die("fuzz_replay: mkdir");
	log_set_level(LOG_LVL_ERR);

	cfg = (struct cache_config){
		.size = 1ULL << 30,
		.chunk_size = CHUNK,
		.dirty_max = 64ULL << 20,
		.flushers = 1,
		.writeback = 1,
		.close_mode = CACHE_CLOSE_SYNC,
		.fsync_mode = CACHE_FSYNC_BACKEND,
		.verify = 1,
	};
	be = mem_be_new(SPEC);
	if (!be)
		die("fuzz_replay: mem_be_new");
	bes[0] = be;
	for (i = 0; i < 2; i++) {
		struct be_attr a;
		size_t k;

		orig[i] = malloc(orig_len[i]);
		if (!orig[i])
			die("fuzz_replay: malloc");
		for (k = 0; k < orig_len[i]; k++)
			orig[i][k] = (unsigned char)(k * 31 + i);
		if (mem_be_put_file(be, i ? "b" : "a", orig[i], orig_len[i],
				    &node[i], &a))
			die("fuzz_replay: mem_be_put_file");
		fileid[i] = a.fileid;
	}
	make_template();
	if (nftw(tmpl, load_one, 16, FTW_PHYS) != 0 || ntf == 0) {
		fprintf(stderr, "fuzz_replay: cannot load the template\n");
		exit(1);
	}
	return 0;
}

/* ---- input decoding ---------------------------------------------------- */

struct in {
	const uint8_t *p;
	size_t left;
};

static uint8_t take8(struct in *in)
{
	if (!in->left)
		return 0;
	in->left--;
	return *in->p++;
}

static uint64_t take64(struct in *in)
{
	uint64_t v = 0;
	int i;

	for (i = 0; i < 8; i++)
		v |= (uint64_t)take8(in) << (8 * i);
	return v;
}

static void write_template(void)
{
	char path[256];
	int i;

	rm_tree(run);
	snprintf(path, sizeof(path), "%s/data", run);
	if (mkdir(run, 0700) < 0 || mkdir(path, 0700) < 0)
		die("fuzz_replay: mkdir run");
	snprintf(path, sizeof(path), "%s/index", run);
	if (mkdir(path, 0700) < 0)
		die("fuzz_replay: mkdir index");
	for (i = 0; i < ntf; i++) {
		int fd;

		snprintf(path, sizeof(path), "%s/%s", run, tf[i].name);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0 || pwrite(fd, tf[i].buf, tf[i].len, 0) !=
				      (ssize_t)tf[i].len)
			die("fuzz_replay: write template");
		close(fd);
	}
}

static void write_journal(const uint8_t *data, size_t size)
{
	static const char *const specs[] = { SPEC, SPEC, "mem://other", "" };
	struct in in = { data, size };
	struct journal *j;
	char path[256], err[512];
	int n = 0;

	snprintf(path, sizeof(path), "%s/journal", run);
	if (journal_open(path, &j, err, sizeof(err)) < 0)
		die("fuzz_replay: journal_open");
	while (in.left && n++ < MAX_RECS) {
		uint8_t op = take8(&in), h[256];
		enum jrec_type type = (enum jrec_type)(JREC_FILE + (op & 3));
		const char *spec = specs[(op >> 2) & 3];
		uint64_t fid, chunk;
		size_t hlen = 0;

		if (op == 0xff) {
			int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);

			if (fd < 0 || (in.left && write(fd, in.p, in.left) !=
							  (ssize_t)in.left))
				die("fuzz_replay: journal tail");
			close(fd);
			break;
		}
		switch ((op >> 4) & 3) {
		case 0: fid = fileid[0]; break;
		case 1: fid = fileid[1]; break;
		case 2: fid = 999999; break;
		default: fid = take64(&in); break;
		}
		chunk = (op & 0x40) ? take64(&in) : take8(&in) % 8;
		if (type == JREC_FILE) {
			if (op & 0x80) {
				size_t k;

				hlen = take8(&in) % (BE_HANDLE_MAX + 1);
				for (k = 0; k < hlen; k++)
					h[k] = take8(&in);
			} else {
				memcpy(h, &fid, sizeof(fid));
				hlen = sizeof(fid);
			}
		}
		if (journal_append(j, type, spec, fid, chunk, hlen ? h : NULL,
				   hlen) < 0)
			die("fuzz_replay: journal_append");
	}
	journal_close(j);
}

static void check(int cond, const char *what, int rc, const char *err)
{
	if (!cond)
		fuzz_fail("fuzz_replay: invariant broken: %s (rc %d: %s)", what,
			  rc, err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cache *c = NULL;
	char err[1024];
	int rc, i;

	if (size > 8192)
		return 0;
	write_template();
	write_journal(data, size);
	cfg.dir = run;
	err[0] = '\0';
	rc = cache_open(&cfg, bes, 1, &c, err, sizeof(err));
	check(rc == 0 || rc == -EUCLEAN, "cache_open: unexpected error", rc,
	      err);
	check(rc == 0 || err[0], "cache_open refused without a message", rc,
	      err);
	if (rc == 0) {
		rc = cache_close(c);
		check(rc == 0, "cache_close failed", rc, "");
	}
	/* The close uploaded the template's dirty data: undo it. */
	for (i = 0; i < 2; i++)
		mem_be_set_data(be, node[i], orig[i], orig_len[i]);
	return 0;
}
