/* SPDX-License-Identifier: GPL-2.0 */
/*
 * index.c - the per-file chunk table on disk.
 *
 * For every cached backend file there is a data file (the bytes, sparse,
 * at their own offsets) and an index file: a header with the file's
 * identity, backend generation and handle, then one fixed-size slot per
 * chunk with its present and dirty block masks and the XXH3 checksum of
 * every present block.  Slots are read lazily, when a chunk is first
 * touched, so start-up reads nothing but the journal.  A slot carries its
 * own checksum; a slot that fails it is treated as absent if it claims
 * no dirty data, and reported otherwise.
 *
 * Thread safety: called with f->lock held (the fds belong to f).
 */
#include "cache_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#define IDX_MAGIC 0x58444753u	/* "SGDX" */
#define SLOT_MAGIC 0x544c5353u	/* "SSLT" */
#define IDX_VERSION 1
#define IDX_HDR_SIZE 4096

struct idx_hdr {
	uint32_t magic;
	uint32_t version;
	uint64_t chunk_size;
	uint64_t fileid;
	struct be_gen gen;
	uint64_t be_size;
	uint64_t size;
	uint32_t handle_len;
	uint32_t sum;
	unsigned char handle[BE_HANDLE_MAX];
};

struct idx_slot {
	uint64_t present;
	uint64_t dirty;
	uint64_t sums[CACHE_BLOCKS];
	uint32_t magic;
	uint32_t sum;		/* XXH32 of the slot with sum = 0 */
};

static uint32_t slot_sum(const struct idx_slot *s)
{
	struct idx_slot tmp = *s;

	tmp.sum = 0;
	return XXH32(&tmp, sizeof(tmp), 0);
}

static uint32_t hdr_sum(const struct idx_hdr *h)
{
	struct idx_hdr tmp = *h;

	tmp.sum = 0;
	return XXH32(&tmp, sizeof(tmp), 0);
}

static off_t slot_off(uint64_t idx)
{
	return (off_t)(IDX_HDR_SIZE + idx * sizeof(struct idx_slot));
}

int index_store_header(struct cache_file *f)
{
	struct idx_hdr h;
	size_t hlen = sizeof(h.handle);

	memset(&h, 0, sizeof(h));
	h.magic = IDX_MAGIC;
	h.version = IDX_VERSION;
	h.chunk_size = f->c->cfg->chunk_size;
	h.fileid = f->fileid;
	h.gen = f->gen;
	h.be_size = f->be_size;
	h.size = f->size;
	if (file_be(f)->ops->node_encode(file_be(f), f->node, h.handle,
					 &hlen) == 0)
		h.handle_len = (uint32_t)hlen;
	h.sum = hdr_sum(&h);
	if (pwrite(f->idx_fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h))
		return -EIO;
	return 0;
}

unsigned int spec_hash_of(struct be *be)
{
	return (unsigned int)XXH32(be->spec, strlen(be->spec), 0);
}

unsigned int index_spec_hash(struct cache_file *f)
{
	return spec_hash_of(file_be(f));
}

/* "<dir>/<hash of backend spec>-<fileid>-<handle hash>" */
void index_file_name(struct cache_file *f, const char *dir, char *buf,
		     size_t len)
{
	snprintf(buf, len, "%s/%08x-%016llx-%016llx", dir, index_spec_hash(f),
		 (unsigned long long)f->fileid, (unsigned long long)f->hkey);
}

/*
 * Open (or make) the data and index files of f.  If the index holds a
 * valid header for this file, its generation and sizes are taken; the
 * caller compares them with the backend's.  Returns 1 if a header was
 * found, 0 if not: then, with may_reset, both files are emptied.
 */
void index_close(struct cache_file *f)
{
	int *fds[] = { &f->fd, &f->dfd, &f->idx_fd };
	size_t i;

	for (i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
		if (*fds[i] >= 0)
			close(*fds[i]);
		*fds[i] = -1;
	}
}

int index_open(struct cache_file *f, bool may_reset)
{
	struct cache *c = f->c;
	char name[128];
	struct idx_hdr h;
	ssize_t n;

	index_file_name(f, "data", name, sizeof(name));
	f->fd = openat(c->dir_fd, name, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (f->fd < 0)
		return -errno;
	if (c->cfg->direct) {
		f->dfd = openat(c->dir_fd, name, O_RDWR | O_DIRECT | O_CLOEXEC);
		if (f->dfd < 0) {
			int e = errno;

			index_close(f);
			return -e;
		}
	}
	index_file_name(f, "index", name, sizeof(name));
	f->idx_fd = openat(c->dir_fd, name, O_RDWR | O_CREAT | O_CLOEXEC,
			   0600);
	if (f->idx_fd < 0) {
		int e = errno;

		index_close(f);
		return -e;
	}
	n = pread(f->idx_fd, &h, sizeof(h), 0);
	if (n == (ssize_t)sizeof(h) && h.magic == IDX_MAGIC &&
	    h.version == IDX_VERSION && h.sum == hdr_sum(&h) &&
	    h.fileid == f->fileid && h.chunk_size == c->cfg->chunk_size) {
		f->gen = h.gen;
		f->be_size = h.be_size;
		f->size = h.size;
		return 1;
	}
	if (!may_reset)
		return 0;	/* replay: keep the evidence, refuse */
	if (n > 0)
		log_msg(LOG_LVL_WARN, "index",
			"%s: header invalid or from another chunk size; starting the file afresh",
			name);
	/* New or unusable: no chunk of it can be trusted. */
	if (ftruncate(f->idx_fd, 0) < 0 || ftruncate(f->fd, 0) < 0)
		return -errno;
	return 0;
}

int index_store_chunk(struct cache_file *f, uint64_t idx)
{
	struct chunk *ch = f->chunks[idx];
	struct idx_slot s;

	memset(&s, 0, sizeof(s));
	if (ch) {
		s.present = ch->present;
		s.dirty = ch->dirty;
		memcpy(s.sums, ch->sums, sizeof(s.sums));
	}
	s.magic = SLOT_MAGIC;
	s.sum = slot_sum(&s);
	if (pwrite(f->idx_fd, &s, sizeof(s), slot_off(idx)) !=
	    (ssize_t)sizeof(s))
		return -EIO;
	return 0;
}

/* Returns 1 if a slot was loaded into ch, 0 if there is none. */
int index_load_chunk(struct cache_file *f, uint64_t idx, struct chunk *ch)
{
	struct idx_slot s;
	ssize_t n = pread(f->idx_fd, &s, sizeof(s), slot_off(idx));

	if (n < 0)
		return -errno;
	if (n < (ssize_t)sizeof(s) || s.magic != SLOT_MAGIC)
		return 0;
	if (s.sum != slot_sum(&s)) {
		log_msg(LOG_LVL_ERR, "index",
			"file %llx chunk %llu: index slot is corrupt",
			(unsigned long long)f->fileid,
			(unsigned long long)idx);
		return -EUCLEAN;
	}
	ch->present = s.present;
	ch->dirty = s.dirty & s.present;
	memcpy(ch->sums, s.sums, sizeof(ch->sums));
	return 1;
}

int index_sync(struct cache_file *f)
{
	if (fdatasync(f->idx_fd) < 0 || fdatasync(f->fd) < 0)
		return -errno;
	return 0;
}
