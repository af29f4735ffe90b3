/* SPDX-License-Identifier: GPL-2.0 */
/*
 * fuzz_journal.c - libFuzzer target for the journal reader,
 * journal_replay() in cache/journal.c.
 *
 * The input is the whole journal file.  The target writes it to a file in
 * a private temp dir, opens it with journal_open() and replays it with a
 * callback that checks each record, then checks what the header comment
 * of journal.c promises:
 *
 *  - replay returns 0 (perhaps after cutting a torn tail) or -EUCLEAN
 *    with a message; a refusal leaves the file as it was;
 *  - a cut only shortens the file: what stays is the input's prefix;
 *  - "A bad record with valid data after it is corruption, and replay
 *    refuses to guess": the cut-off tail holds no complete record with a
 *    valid checksum at any offset (found by replaying the tail from each
 *    offset that starts with the record magic);
 *  - replay is idempotent (a crash during start-up replays again): a
 *    second replay sees the same records and cuts nothing;
 *  - the journal stays appendable: after journal_append() a fresh
 *    open + replay sees the old records and the new one.
 *
 * The only knowledge of the format here is the magic (JREC_MAGIC in
 * journal.c); keep it in sync.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "cache_int.h"
#include "fuzz_util.h"
#include "log.h"

#define JREC_MAGIC 0x4a534753u	/* "SGSJ", as in cache/journal.c */
#define JSPEC_MAX 4096		/* as in cache/journal.c */
#define MAX_INPUT (256 << 10)

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char tdir[64], jpath[128], spath[128];

struct seen {
	uint64_t *h;	/* one hash per record, in order */
	size_t n, cap;
};

static void cleanup(void)
{
	char p[160];

	unlink(jpath);
	unlink(spath);
	snprintf(p, sizeof(p), "%s.new", jpath);
	unlink(p);
	rmdir(tdir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *t = getenv("TMPDIR");

	snprintf(tdir, sizeof(tdir), "%s/stagefs-fuzz-journal-XXXXXX",
		 t && strlen(t) < 32 ? t : "/tmp");
	if (!mkdtemp(tdir)) {
		perror("fuzz_journal: mkdtemp");
		exit(1);
	}
	snprintf(jpath, sizeof(jpath), "%s/journal", tdir);
	snprintf(spath, sizeof(spath), "%s/scratch", tdir);
	atexit(cleanup);
	log_set_level(LOG_LVL_ERR);	/* torn-tail warnings are expected */
	return 0;
}

static void check(int cond, const char *what)
{
	if (!cond)
		fuzz_fail("fuzz_journal: invariant broken: %s", what);
}

static int record(void *arg, enum jrec_type type, const char *spec,
		  uint64_t fileid, uint64_t chunk, const void *handle,
		  size_t handle_len)
{
	struct seen *s = arg;
	size_t slen = strlen(spec);	/* ASan: spec is NUL-terminated */
	XXH64_state_t *st;

	check(type >= JREC_FILE && type <= JREC_DROP,
	      "callback got a record type out of range");
	check(slen <= JSPEC_MAX, "callback got a spec over JSPEC_MAX");
	check(handle_len <= BE_HANDLE_MAX,
	      "callback got a handle over BE_HANDLE_MAX");
	if (!s)
		return 0;
	if (s->n == s->cap) {
		size_t ncap = s->cap ? 2 * s->cap : 64;
		uint64_t *nh = realloc(s->h, ncap * sizeof(*nh));

		if (!nh)
			return -ENOMEM;
		s->h = nh;
		s->cap = ncap;
	}
	/* Hash every byte the callback may read: ASan checks the bounds. */
	st = XXH64_createState();
	XXH64_reset(st, 0);
	XXH64_update(st, &type, sizeof(type));
	XXH64_update(st, &fileid, sizeof(fileid));
	XXH64_update(st, &chunk, sizeof(chunk));
	XXH64_update(st, spec, slen + 1);
	XXH64_update(st, &handle_len, sizeof(handle_len));
	XXH64_update(st, handle, handle_len);
	s->h[s->n++] = XXH64_digest(st);
	XXH64_freeState(st);
	return 0;
}

static int write_file(const char *path, const void *data, size_t size)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = size ? write(fd, data, size) : 0;
	close(fd);
	return n == (ssize_t)size ? 0 : -EIO;
}

/* Replay path; returns replay's status, *size the size afterwards. */
static int replay_file(const char *path, struct seen *s, uint64_t *size)
{
	struct journal *j;
	char err[1024];
	int rc;

	err[0] = '\0';
	rc = journal_open(path, &j, err, sizeof(err));
	if (rc < 0)	/* the harness, not the code under test */
		fuzz_fail("fuzz_journal: journal_open: %s", err);
	rc = journal_replay(j, record, s, err, sizeof(err));
	check(rc == 0 || rc == -EUCLEAN,
	      "replay returned neither 0 nor -EUCLEAN");
	check(rc == 0 || !strncmp(err, "journal ", 8),
	      "refusal without a message");
	*size = journal_size(j);
	journal_close(j);
	return rc;
}

static uint64_t file_size(const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0)
		fuzz_fail("fuzz_journal: harness: file I/O failed");
	return (uint64_t)st.st_size;
}

/* Does a complete, valid record start at some offset of tail? */
static long valid_record_in(const uint8_t *tail, size_t len)
{
	uint32_t magic = JREC_MAGIC;
	size_t o;

	for (o = 0; o + sizeof(magic) <= len; o++) {
		struct seen s = { 0 };
		uint64_t sz;

		if (memcmp(tail + o, &magic, sizeof(magic)))
			continue;
		if (write_file(spath, tail + o, len - o) < 0)
			fuzz_fail("fuzz_journal: harness: file I/O failed");
		replay_file(spath, &s, &sz);
		free(s.h);
		if (s.n > 0)
			return (long)o;
	}
	return -1;
}

static int same_records(const struct seen *a, const struct seen *b)
{
	return a->n == b->n &&
	       (!a->n || !memcmp(a->h, b->h, a->n * sizeof(*a->h)));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct seen first = { 0 }, again = { 0 }, after = { 0 };
	struct journal *j;
	uint8_t *back;
	uint64_t sz, sz2;
	char err[1024];
	int rc, fd;

	if (size > MAX_INPUT)
		return 0;
	if (write_file(jpath, data, size) < 0)
		fuzz_fail("fuzz_journal: harness: file I/O failed");
	rc = replay_file(jpath, &first, &sz);
	check(file_size(jpath) == sz, "journal_size() differs from the file");

	/* The file after replay: the input, or a prefix of it. */
	back = malloc(size + 1);
	fd = open(jpath, O_RDONLY | O_CLOEXEC);
	if (!back || fd < 0)
		fuzz_fail("fuzz_journal: harness: file I/O failed");
	check(sz <= size, "replay made the journal longer");
	check(pread(fd, back, size + 1, 0) == (ssize_t)sz &&
		      (!sz || !memcmp(back, data, sz)),
	      "replay changed bytes it kept");
	close(fd);
	free(back);

	if (rc < 0) {
		check(sz == size, "a refused journal was cut");
		goto out;
	}
	if (sz < size) {
		long o = valid_record_in(data + sz, size - sz);

		if (o >= 0)
			fuzz_fail("fuzz_journal: invariant broken: replay cut the journal at offset %llu of %zu as a torn tail, but a valid record starts at offset %llu",
				  (unsigned long long)sz, size,
				  (unsigned long long)(sz + (uint64_t)o));
	}

	/* Idempotent. */
	rc = replay_file(jpath, &again, &sz2);
	check(rc == 0, "second replay refused what the first accepted");
	check(sz2 == sz, "second replay cut again");
	check(same_records(&first, &again), "second replay saw other records");

	/* Still appendable. */
	err[0] = '\0';
	if (journal_open(jpath, &j, err, sizeof(err)) < 0)
		fuzz_fail("fuzz_journal: harness: file I/O failed");
	rc = journal_replay(j, record, NULL, err, sizeof(err));
	check(rc == 0, "third replay refused");
	rc = journal_append(j, JREC_DIRTY, "nfs://fuzz/export", 42, 7,
			    NULL, 0);
	check(rc == 0, "append after replay failed");
	journal_close(j);
	rc = replay_file(jpath, &after, &sz2);
	check(rc == 0, "replay after append refused");
	check(after.n == first.n + 1 &&
		      (!first.n ||
		       !memcmp(after.h, first.h, first.n * sizeof(*first.h))),
	      "replay after append lost or changed records");
out:
	free(first.h);
	free(again.h);
	free(after.h);
	return 0;
}
