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
 * no dirty data, and reported otherwise.  Version 2 slots also hold the
 * dirty byte range of every block; an index of version 1 (whole dirty
 * blocks) is converted when it is opened.  Version 3 keeps two flags of
 * a block in the top bits of its dhi (a block is at most 4 MiB): a dirty
 * block's upload leaves out its zero runs (zskip), a block that is
 * neither present nor dirty still holds old bytes (leftover).  Both
 * matter after a crash: without them the replay sent a zskip block's
 * zeros over another node's bytes, and took a leftover block's old bytes
 * for a passthrough writer's.  A version 2 index is a version 3 one
 * without flags, and its header is rewritten when it is opened.
 *
 * Thread safety: called with f->lock held; the descriptors come from
 * file_fds_get() (fdcache.c).
 */
#include "cache_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#define IDX_MAGIC 0x58444753u	/* "SGDX" */
#define SLOT_MAGIC 0x544c5353u	/* "SSLT" */
#define IDX_VERSION 3
/* Flags in the top bits of idx_slot.dhi[b] (version 3). */
#define SLOT_ZSKIP (1u << 31)
#define SLOT_LEFTOVER (1u << 30)
#define SLOT_FLAGS (SLOT_ZSKIP | SLOT_LEFTOVER)
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
	uint32_t dlo[CACHE_BLOCKS];
	uint32_t dhi[CACHE_BLOCKS];
	uint32_t magic;
	uint32_t sum;		/* XXH32 of the slot with sum = 0 */
};

/* The slot of version 1: dirty blocks were dirty as a whole. */
struct idx_slot_v1 {
	uint64_t present;
	uint64_t dirty;
	uint64_t sums[CACHE_BLOCKS];
	uint32_t magic;
	uint32_t sum;
};

static uint32_t slot_sum(const struct idx_slot *s)
{
	struct idx_slot tmp = *s;

	tmp.sum = 0;
	return XXH32(&tmp, sizeof(tmp), 0);
}

static uint32_t slot_v1_sum(const struct idx_slot_v1 *s)
{
	struct idx_slot_v1 tmp = *s;

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
	ssize_t n;

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
	if (file_fds_get(f, FILE_FD_INDEX) < 0)
		return -EIO;
	n = pwrite(file_fd(f, FILE_FD_SLOT_INDEX), &h, sizeof(h), 0);
	file_fds_put(f);
	if (n != (ssize_t)sizeof(h))
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

/* "<hash of backend spec>-<fileid>-<handle hash>" */
void cache_name(char *buf, size_t len, unsigned int spec_hash,
		uint64_t fileid, uint64_t hkey)
{
	snprintf(buf, len, "%08x-%016" PRIx64 "-%016" PRIx64, spec_hash,
		 fileid, hkey);
}

bool cache_name_parse(const char *name, unsigned int *spec_hash,
		      uint64_t *fileid, uint64_t *hkey)
{
	return sscanf(name, "%8x-%16" SCNx64 "-%16" SCNx64, spec_hash, fileid,
		      hkey) == 3;
}

/* "<dir>/" and cache_name() */
void index_file_name(struct cache_file *f, const char *dir, char *buf,
		     size_t len)
{
	char name[CACHE_NAME_MAX];

	cache_name(name, sizeof(name), index_spec_hash(f), f->fileid, f->hkey);
	snprintf(buf, len, "%s/%s", dir, name);
}

/*
 * An index written by a stagefs that knew only whole dirty blocks: rewrite
 * it in place as the current version (no flags), each dirty block dirty
 * from its first byte to its last.  Slots are read first and written back
 * from the end, since the new slots are larger.  Returns 0 or -errno.
 */
static int convert_v1(struct cache_file *f, struct idx_hdr *h)
{
	uint64_t bs = f->c->block_size, i, n;
	struct idx_slot_v1 *old;
	int ifd = file_fd(f, FILE_FD_SLOT_INDEX);	/* index_open's */
	off_t end = lseek(ifd, 0, SEEK_END);
	int rc = 0;

	if (end < IDX_HDR_SIZE)
		n = 0;
	else
		n = ((uint64_t)end - IDX_HDR_SIZE) / sizeof(*old);
	old = calloc(n ? n : 1, sizeof(*old));
	if (!old)
		return -ENOMEM;
	if (n && pread(ifd, old, n * sizeof(*old), IDX_HDR_SIZE) !=
			 (ssize_t)(n * sizeof(*old))) {
		rc = -EIO;
		goto out;
	}
	for (i = n; i-- > 0;) {
		struct idx_slot s;
		unsigned int b;

		memset(&s, 0, sizeof(s));
		if (old[i].magic == SLOT_MAGIC &&
		    old[i].sum == slot_v1_sum(&old[i])) {
			s.present = old[i].present;
			s.dirty = old[i].dirty & old[i].present;
			memcpy(s.sums, old[i].sums, sizeof(s.sums));
			for (b = 0; b < CACHE_BLOCKS; b++)
				if (s.dirty & (1ULL << b))
					s.dhi[b] = (uint32_t)bs;
			s.magic = SLOT_MAGIC;
			s.sum = slot_sum(&s);
		} else if (old[i].magic == SLOT_MAGIC) {
			/* A damaged slot stays damaged: replay refuses it. */
			s.magic = SLOT_MAGIC;
			s.sum = ~slot_sum(&s);
		}
		if (pwrite(ifd, &s, sizeof(s), slot_off(i)) !=
		    (ssize_t)sizeof(s)) {
			rc = -EIO;
			goto out;
		}
	}
	h->version = IDX_VERSION;
	h->sum = hdr_sum(h);
	if (pwrite(ifd, h, sizeof(*h), 0) != (ssize_t)sizeof(*h) ||
	    fdatasync(ifd) < 0)
		rc = -EIO;
	else
		log_msg(LOG_LVL_INFO, "index",
			"file %llx: index converted from version 1 (%llu slots)",
			(unsigned long long)f->fileid, (unsigned long long)n);
out:
	free(old);
	return rc;
}

void index_close(struct cache_file *f)
{
	file_fds_close(f);
}

/*
 * Open (or make) the data and index files of f.  If the index holds a
 * valid header for this file, its generation and sizes are taken; the
 * caller compares them with the backend's.  Returns 1 if a header was
 * found, 0 if not: then the caller must empty both files before it uses
 * them (file_reset(); without may_reset, a replay, it refuses instead).
 */
int index_open(struct cache_file *f, bool may_reset)
{
	struct cache *c = f->c;
	char name[128];
	struct idx_hdr h;
	ssize_t n;
	int rc;

	rc = file_fds_get(f, FILE_FD_DATA | FILE_FD_INDEX | FILE_FD_CREATE);
	if (rc < 0)
		return rc;
	index_file_name(f, "index", name, sizeof(name));
	n = pread(file_fd(f, FILE_FD_SLOT_INDEX), &h, sizeof(h), 0);
	if (n == (ssize_t)sizeof(h) && h.magic == IDX_MAGIC &&
	    h.version == 1 && h.sum == hdr_sum(&h) &&
	    h.fileid == f->fileid && h.chunk_size == c->cfg->chunk_size &&
	    convert_v1(f, &h) == 0)
		n = pread(file_fd(f, FILE_FD_SLOT_INDEX), &h, sizeof(h), 0);
	/* Version 2 slots are version 3 slots without flags: the header
	 * says 3 before a slot with flags is written. */
	if (n == (ssize_t)sizeof(h) && h.magic == IDX_MAGIC &&
	    h.version == 2 && h.sum == hdr_sum(&h)) {
		h.version = IDX_VERSION;
		h.sum = hdr_sum(&h);
		if (pwrite(file_fd(f, FILE_FD_SLOT_INDEX), &h, sizeof(h), 0) !=
		    (ssize_t)sizeof(h))
			n = -1;
	}
	if (n == (ssize_t)sizeof(h) && h.magic == IDX_MAGIC &&
	    h.version == IDX_VERSION && h.sum == hdr_sum(&h) &&
	    h.fileid == f->fileid && h.chunk_size == c->cfg->chunk_size) {
		f->gen = h.gen;
		f->be_size = h.be_size;
		f->size = h.size;
		rc = 1;
		goto out_put;
	}
	rc = 0;
	if (!may_reset)
		goto out_put;	/* replay: keep the evidence, refuse */
	/* New or unusable: no chunk of it can be trusted; the caller
	 * empties both files (file_reset()). */
	if (n > 0)
		log_msg(LOG_LVL_WARN, "index",
			"%s: header invalid or from another chunk size; starting the file afresh",
			name);
out_put:
	file_fds_put(f);
	return rc;
}

int index_store_chunk(struct cache_file *f, uint64_t idx)
{
	struct chunk *ch = f->chunks[idx];
	struct idx_slot s;
	unsigned int b;
	ssize_t n;

	memset(&s, 0, sizeof(s));
	if (ch) {
		s.present = ch->present;
		s.dirty = ch->dirty;
		memcpy(s.sums, ch->sums, sizeof(s.sums));
		memcpy(s.dlo, ch->dlo, sizeof(s.dlo));
		memcpy(s.dhi, ch->dhi, sizeof(s.dhi));
		for (b = 0; b < CACHE_BLOCKS; b++) {
			uint64_t bit = 1ULL << b;

			if (ch->dirty & ch->zskip & bit)
				s.dhi[b] |= SLOT_ZSKIP;
			if (ch->leftover & ~ch->dirty & bit)
				s.dhi[b] |= SLOT_LEFTOVER;
		}
	}
	s.magic = SLOT_MAGIC;
	s.sum = slot_sum(&s);
	if (file_fds_get(f, FILE_FD_INDEX) < 0)
		return -EIO;
	n = pwrite(file_fd(f, FILE_FD_SLOT_INDEX), &s, sizeof(s), slot_off(idx));
	file_fds_put(f);
	if (n != (ssize_t)sizeof(s))
		return -EIO;
	/* After the slot: a record it does not match is not used. */
	chunk_runs_journal(f, idx);
	return 0;
}

/* Returns 1 if a slot was loaded into ch, 0 if there is none. */
int index_load_chunk(struct cache_file *f, uint64_t idx, struct chunk *ch)
{
	struct idx_slot s;
	ssize_t n;
	unsigned int b;
	int rc = file_fds_get(f, FILE_FD_INDEX);

	if (rc < 0)
		return rc;
	n = pread(file_fd(f, FILE_FD_SLOT_INDEX), &s, sizeof(s), slot_off(idx));
	rc = n < 0 ? -errno : 0;
	file_fds_put(f);
	if (rc < 0)
		return rc;
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
	ch->dirty = 0;
	ch->zskip = 0;
	ch->leftover = 0;
	memcpy(ch->sums, s.sums, sizeof(ch->sums));
	for (b = 0; b < CACHE_BLOCKS; b++) {
		uint32_t flags = s.dhi[b] & SLOT_FLAGS, hi = s.dhi[b] & ~SLOT_FLAGS;

		if (!(s.dirty & (1ULL << b))) {
			if ((flags & SLOT_LEFTOVER) && !(s.present & (1ULL << b)))
				ch->leftover |= 1ULL << b;
			continue;
		}
		/* Only well-formed ranges count as dirty. */
		if (s.dlo[b] >= hi || hi > f->c->block_size)
			continue;
		ch->dirty |= 1ULL << b;
		ch->dlo[b] = s.dlo[b];
		ch->dhi[b] = hi;
		if (flags & SLOT_ZSKIP)
			ch->zskip |= 1ULL << b;
	}
	return 1;
}

void index_forget_chunks(struct cache_file *f, uint64_t from, uint64_t to)
{
	struct cache *c = f->c;

	if (to <= from)
		return;
	if (file_fds_get(f, FILE_FD_DATA | FILE_FD_INDEX) < 0)
		return;	/* fdcache.c logged it */
	fallocate(file_fd(f, FILE_FD_SLOT_DATA),
		  FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		  (off_t)chunk_start(c, from),
		  (off_t)((to - from) * c->cfg->chunk_size));
	/* A punched slot reads as zeros: no magic, no slot. */
	fallocate(file_fd(f, FILE_FD_SLOT_INDEX),
		  FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, slot_off(from),
		  (off_t)((to - from) * sizeof(struct idx_slot)));
	file_fds_put(f);
}

bool index_name_dirty(struct cache *c, const char *index_name)
{
	struct idx_hdr h;
	struct idx_slot s;
	size_t stride;
	off_t off = IDX_HDR_SIZE;
	bool dirty = false;
	int fd = openat(c->dir_fd, index_name, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return false;
	if (pread(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h))
		goto out;
	/* Both versions start a slot with the present and dirty masks. */
	stride = h.version == 1 ? sizeof(struct idx_slot_v1) : sizeof(s);
	while (!dirty && pread(fd, &s, stride, off) == (ssize_t)stride) {
		dirty = s.dirty != 0;
		off += (off_t)stride;
	}
out:
	close(fd);
	return dirty;
}

uint64_t index_nslots(struct cache_file *f)
{
	off_t end;

	if (file_fds_get(f, FILE_FD_INDEX) < 0)
		return 0;	/* fdcache.c logged it */
	end = lseek(file_fd(f, FILE_FD_SLOT_INDEX), 0, SEEK_END);
	file_fds_put(f);
	if (end <= IDX_HDR_SIZE)
		return 0;
	return ((uint64_t)end - IDX_HDR_SIZE + sizeof(struct idx_slot) - 1) /
	       sizeof(struct idx_slot);
}

int index_sync(struct cache_file *f)
{
	int rc = file_fds_get(f, FILE_FD_DATA | FILE_FD_INDEX);

	if (rc < 0)
		return rc;
	if (fdatasync(file_fd(f, FILE_FD_SLOT_INDEX)) < 0 ||
	    fdatasync(file_fd(f, FILE_FD_SLOT_DATA)) < 0)
		rc = -errno;
	file_fds_put(f);
	return rc;
}
