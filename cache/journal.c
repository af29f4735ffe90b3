/* SPDX-License-Identifier: GPL-2.0 */
/*
 * journal.c - the append-only log of which chunks hold dirty data.
 *
 * A record is a fixed header, the backend spec and a payload (a handle, a
 * writer's credentials, or a chunk's runs), sealed with an XXH32 checksum.  Writes are plain write(2) calls in one piece, so a
 * daemon killed with SIGKILL never leaves a record half in the page
 * cache; a node crash can tear the last record, which replay cuts off.  A
 * bad record with valid data after it is corruption, and replay refuses
 * to guess.  So a write cut short (a full file system) is cut off again
 * at once, before any other record follows it.
 *
 * Thread safety: the caller serialises all calls (cache->journal_lock).
 */
#include "cache_int.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define JREC_MAGIC 0x4a534753u	/* "SGSJ" */
#define JSPEC_MAX 4096

struct jrec_hdr {
	uint32_t magic;
	uint16_t type;
	uint16_t spec_len;
	uint64_t fileid;
	uint64_t chunk;
	uint16_t handle_len;
	uint16_t pad;
	uint32_t sum;		/* XXH32 of header (sum = 0) and payload */
};

struct journal {
	char *path;
	int fd;
	uint64_t size;
	bool torn;	/* a short write is still past size: cut it first */
};

int journal_open(const char *path, struct journal **out, char *err,
		 size_t errlen)
{
	struct journal *j = calloc(1, sizeof(*j));
	struct stat st;

	if (!j || !(j->path = strdup(path))) {
		free(j);
		snprintf(err, errlen, "journal %s: out of memory", path);
		return -ENOMEM;
	}
	j->fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (j->fd < 0 || fstat(j->fd, &st) < 0) {
		int e = errno;

		snprintf(err, errlen, "journal %s: %s", path, strerror(e));
		if (j->fd >= 0)
			close(j->fd);
		free(j->path);
		free(j);
		return -e;
	}
	j->size = (uint64_t)st.st_size;
	*out = j;
	return 0;
}

static uint32_t rec_sum(const struct jrec_hdr *h, const void *payload,
			size_t len)
{
	XXH32_state_t *s = XXH32_createState();
	struct jrec_hdr tmp = *h;
	uint32_t sum;

	tmp.sum = 0;
	XXH32_reset(s, 0);
	XXH32_update(s, &tmp, sizeof(tmp));
	XXH32_update(s, payload, len);
	sum = XXH32_digest(s);
	XXH32_freeState(s);
	return sum;
}

static size_t payload_max(unsigned int type)
{
	return type == JREC_RUNS ? JPAYLOAD_MAX : BE_HANDLE_MAX;
}

static int write_rec(int fd, enum jrec_type type, const char *spec,
		     uint64_t fileid, uint64_t chunk, const void *handle,
		     size_t handle_len, uint64_t *size, bool *torn)
{
	size_t spec_len = strlen(spec);
	char sbuf[sizeof(struct jrec_hdr) + JSPEC_MAX + BE_HANDLE_MAX], *buf;
	struct jrec_hdr h = {
		.magic = JREC_MAGIC,
		.type = (uint16_t)type,
		.spec_len = (uint16_t)spec_len,
		.fileid = fileid,
		.chunk = chunk,
		.handle_len = (uint16_t)handle_len,
	};
	size_t len;
	ssize_t n;
	int rc;

	if (*torn) {
		if (ftruncate(fd, (off_t)*size) < 0)
			return -errno;
		*torn = false;
	}
	if (spec_len > JSPEC_MAX || handle_len > payload_max(type))
		return -ENAMETOOLONG;
	buf = handle_len <= BE_HANDLE_MAX ? sbuf :
		malloc(sizeof(h) + spec_len + handle_len);
	if (!buf)
		return -ENOMEM;
	memcpy(buf + sizeof(h), spec, spec_len);
	if (handle_len)
		memcpy(buf + sizeof(h) + spec_len, handle, handle_len);
	h.sum = rec_sum(&h, buf + sizeof(h), spec_len + handle_len);
	memcpy(buf, &h, sizeof(h));
	len = sizeof(h) + spec_len + handle_len;
	n = write(fd, buf, len);
	rc = n < 0 ? -errno : -ENOSPC;
	if (buf != sbuf)
		free(buf);
	if (n >= 0 && (size_t)n == len) {
		*size += len;
		return 0;
	}
	/* Part of the record may be in the file (write(2) stores what
	 * fits): it must not stay between two records. */
	if (n != 0 && ftruncate(fd, (off_t)*size) < 0)
		*torn = true;
	return rc;
}

int journal_append(struct journal *j, enum jrec_type type, const char *spec,
		   uint64_t fileid, uint64_t chunk, const void *handle,
		   size_t handle_len)
{
	return write_rec(j->fd, type, spec, fileid, chunk, handle, handle_len,
			 &j->size, &j->torn);
}

/* Is there a whole, valid record at buf[off]?  Its length, or 0. */
static size_t rec_valid(const char *buf, size_t size, size_t off)
{
	struct jrec_hdr h;
	size_t plen;

	if (size - off < sizeof(h))
		return 0;
	memcpy(&h, buf + off, sizeof(h));
	plen = (size_t)h.spec_len + h.handle_len;
	if (h.magic != JREC_MAGIC || h.spec_len > JSPEC_MAX ||
	    h.type < JREC_FILE || h.type > JREC_RUNS ||
	    h.handle_len > payload_max(h.type) ||
	    size - off - sizeof(h) < plen)
		return 0;
	if (rec_sum(&h, buf + off + sizeof(h), plen) != h.sum)
		return 0;
	return sizeof(h) + plen;
}

/* Does any valid record start after off? */
static bool valid_after(const char *buf, size_t size, size_t off)
{
	const uint32_t magic = JREC_MAGIC;

	for (off++; off + sizeof(struct jrec_hdr) <= size; off++) {
		if (memcmp(buf + off, &magic, sizeof(magic)))
			continue;
		if (rec_valid(buf, size, off))
			return true;
	}
	return false;
}

/*
 * Replay reads the whole journal (compaction keeps it small: one FILE
 * record per dirty file and one DIRTY record per dirty chunk).  A record
 * that fails its checks is a torn tail if no valid record comes after it
 * (a crash in the middle of an append, or a zero-filled tail): it is cut
 * off.  If a valid record follows, the journal is damaged in the middle,
 * and replay refuses to guess.
 */
int journal_replay(struct journal *j, journal_replay_fn fn, void *arg,
		   char *err, size_t errlen)
{
	char spec[JSPEC_MAX + 1];
	size_t size = (size_t)j->size, off = 0, len;
	uint64_t nrec = 0;
	char *buf;
	int rc = 0;

	if (j->size > (1ULL << 30)) {
		snprintf(err, errlen, "journal %s: %llu bytes is too large to be a stagefs journal",
			 j->path, (unsigned long long)j->size);
		return -EUCLEAN;
	}
	buf = malloc(size ? size : 1);
	if (!buf)
		return -ENOMEM;
	if (size && pread(j->fd, buf, size, 0) != (ssize_t)size) {
		rc = -EIO;
		goto out;
	}
	while (off < size && (len = rec_valid(buf, size, off))) {
		struct jrec_hdr h;

		memcpy(&h, buf + off, sizeof(h));
		memcpy(spec, buf + off + sizeof(h), h.spec_len);
		spec[h.spec_len] = '\0';
		rc = fn(arg, (enum jrec_type)h.type, spec, h.fileid, h.chunk,
			buf + off + sizeof(h) + h.spec_len, h.handle_len);
		if (rc < 0)
			goto out;
		off += len;
		nrec++;
	}
	if (off < size) {
		if (valid_after(buf, size, off)) {
			snprintf(err, errlen,
				 "journal %s: record %llu at offset %zu is corrupt and valid records follow; refusing to guess which dirty data is safe (move the cache dir aside to start empty)",
				 j->path, (unsigned long long)nrec, off);
			rc = -EUCLEAN;
			goto out;
		}
		log_msg(LOG_LVL_WARN, "journal",
			"%s: torn tail at offset %zu cut off (%zu bytes)",
			j->path, off, size - off);
		if (ftruncate(j->fd, (off_t)off) < 0) {
			rc = -errno;
			goto out;
		}
		j->size = off;
	}
	log_msg(nrec ? LOG_LVL_INFO : LOG_LVL_DEBUG, "journal",
		"replayed %llu records (%zu bytes)", (unsigned long long)nrec,
		off);
out:
	free(buf);
	return rc;
}

int journal_sync(struct journal *j)
{
	return fdatasync(j->fd) < 0 ? -errno : 0;
}

uint64_t journal_size(struct journal *j)
{
	return j->size;
}

int journal_rewrite(struct journal *j,
		    int (*emit)(void *arg, struct journal *nj), void *arg)
{
	struct journal nj = { .path = NULL, .fd = -1, .size = 0 };
	char tmp[4096];
	int rc;

	snprintf(tmp, sizeof(tmp), "%s.new", j->path);
	nj.fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC,
		     0600);
	if (nj.fd < 0)
		return -errno;
	nj.path = tmp;
	rc = emit(arg, &nj);
	if (rc == 0 && fdatasync(nj.fd) < 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, j->path) < 0)
		rc = -errno;
	if (rc < 0) {
		close(nj.fd);
		unlink(tmp);
		return rc;
	}
	close(j->fd);
	j->fd = nj.fd;
	j->size = nj.size;
	j->torn = nj.torn;
	return 0;
}

void journal_close(struct journal *j)
{
	if (!j)
		return;
	close(j->fd);
	free(j->path);
	free(j);
}
