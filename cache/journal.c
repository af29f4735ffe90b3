/* SPDX-License-Identifier: GPL-2.0 */
/*
 * journal.c - the append-only log of which chunks hold dirty data.
 *
 * A record is a fixed header, the backend spec and a handle, sealed with
 * an XXH32 checksum.  Writes are plain write(2) calls in one piece, so a
 * daemon killed with SIGKILL never leaves a record half in the page
 * cache; a node crash can tear the last record, which replay cuts off.  A
 * bad record with valid data after it is corruption, and replay refuses
 * to guess.
 *
 * Thread safety: the caller serialises all calls (cache->journal_lock).
 */
#include "cache_int.h"

#include <errno.h>
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

static int write_rec(int fd, enum jrec_type type, const char *spec,
		     uint64_t fileid, uint64_t chunk, const void *handle,
		     size_t handle_len, uint64_t *size)
{
	size_t spec_len = strlen(spec);
	char buf[sizeof(struct jrec_hdr) + JSPEC_MAX + BE_HANDLE_MAX];
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

	if (spec_len > JSPEC_MAX || handle_len > BE_HANDLE_MAX)
		return -ENAMETOOLONG;
	memcpy(buf + sizeof(h), spec, spec_len);
	if (handle_len)
		memcpy(buf + sizeof(h) + spec_len, handle, handle_len);
	h.sum = rec_sum(&h, buf + sizeof(h), spec_len + handle_len);
	memcpy(buf, &h, sizeof(h));
	len = sizeof(h) + spec_len + handle_len;
	n = write(fd, buf, len);
	if (n < 0)
		return -errno;
	if ((size_t)n != len)
		return -EIO;
	*size += len;
	return 0;
}

int journal_append(struct journal *j, enum jrec_type type, const char *spec,
		   uint64_t fileid, uint64_t chunk, const void *handle,
		   size_t handle_len)
{
	return write_rec(j->fd, type, spec, fileid, chunk, handle, handle_len,
			 &j->size);
}

int journal_replay(struct journal *j, journal_replay_fn fn, void *arg,
		   char *err, size_t errlen)
{
	char payload[JSPEC_MAX + 1 + BE_HANDLE_MAX];
	struct jrec_hdr h;
	uint64_t off = 0, nrec = 0;
	int rc;

	while (off < j->size) {
		ssize_t n = pread(j->fd, &h, sizeof(h), (off_t)off);
		size_t plen;
		char spec[JSPEC_MAX + 1];

		if (n < 0)
			return -errno;
		if ((size_t)n < sizeof(h))
			goto torn;
		plen = (size_t)h.spec_len + h.handle_len;
		if (h.magic != JREC_MAGIC || h.spec_len > JSPEC_MAX ||
		    h.handle_len > BE_HANDLE_MAX || h.type < JREC_FILE ||
		    h.type > JREC_DROP)
			goto bad;
		if (off + sizeof(h) + plen > j->size)
			goto torn;
		n = pread(j->fd, payload, plen, (off_t)(off + sizeof(h)));
		if (n < 0)
			return -errno;
		if ((size_t)n < plen)
			goto torn;
		if (rec_sum(&h, payload, plen) != h.sum)
			goto bad;
		memcpy(spec, payload, h.spec_len);
		spec[h.spec_len] = '\0';
		rc = fn(arg, (enum jrec_type)h.type, spec, h.fileid, h.chunk,
			payload + h.spec_len, h.handle_len);
		if (rc < 0)
			return rc;
		off += sizeof(h) + plen;
		nrec++;
	}
	log_msg(nrec ? LOG_LVL_INFO : LOG_LVL_DEBUG, "journal",
		"replayed %llu records (%llu bytes)",
		(unsigned long long)nrec, (unsigned long long)off);
	return 0;
bad:
	/* A bad record is a torn tail only if it is the last thing there. */
	if (off + sizeof(h) + (size_t)h.spec_len + h.handle_len < j->size &&
	    h.magic == JREC_MAGIC) {
		snprintf(err, errlen,
			 "journal %s: record %llu at offset %llu is corrupt and valid data follows; refusing to guess which dirty data is safe (move the cache dir aside to start empty)",
			 j->path, (unsigned long long)nrec,
			 (unsigned long long)off);
		return -EUCLEAN;
	}
	if (h.magic != JREC_MAGIC) {
		snprintf(err, errlen,
			 "journal %s: garbage at offset %llu of %llu; refusing to guess which dirty data is safe (move the cache dir aside to start empty)",
			 j->path, (unsigned long long)off,
			 (unsigned long long)j->size);
		return -EUCLEAN;
	}
torn:
	log_msg(LOG_LVL_WARN, "journal",
		"%s: torn record at offset %llu cut off (%llu bytes)", j->path,
		(unsigned long long)off,
		(unsigned long long)(j->size - off));
	if (ftruncate(j->fd, (off_t)off) < 0)
		return -errno;
	j->size = off;
	return 0;
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
