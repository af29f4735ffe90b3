/* SPDX-License-Identifier: GPL-2.0 */
/*
 * scrub.c - read cached blocks back from the data files and check them
 * against their XXH3-64 sums (stagefsctl scrub).
 *
 * verify=on checks the blocks that a read through the daemon touches.
 * With passthrough the kernel reads the data file itself and nothing is
 * checked on the way, and with verify=off nothing is either: a scrub is
 * how a bad block in those files is found.
 *
 * A file is scrubbed a chunk at a time.  Under f->lock the chunk is
 * loaded (file_chunk), a fetch or a write in flight on it is waited for,
 * and the sums of its present and dirty blocks and its dirty_seq are
 * noted; the chunk is pinned (readers) and the lock dropped.  The span of
 * those blocks is read into the thread's staging buffer with one ring
 * request and each block is hashed, zero padded past the data file's end
 * as the sums are defined (chunk.c).  Under the lock again: a chunk
 * written or truncated meanwhile (dirty_seq, trunc_seq) is checked again;
 * a block whose sum moved (a reader's verify dropped and fetched it) is
 * left out.  A bad clean block is dropped as verify_blocks() does: its
 * present bit is cleared, it is never punched (a passthrough reader may
 * be reading the data file), and it is fetched again in place.  A bad
 * dirty block is only counted: the flusher will not upload it and a read
 * of it gets EIO, until the application writes it again.
 *
 * The bytes a passthrough writer puts in the data file are not in the
 * sums until the rehash at its last release (passthrough.c): a file with
 * f->pt_unsynced is skipped, and counted as such.
 *
 * Thread safety: f->lock per chunk, never held across the data file read
 * or the refetch's backend read (fetch_chunk drops it).  The staging
 * buffer is the calling thread's; the refetch reuses it after the hashes
 * are taken.
 */
#include "cache_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* Checks of a chunk that writes keep changing, before it is skipped. */
#define SCRUB_TRIES 100

static bool scrub_stop(struct cache *c, struct cache_scrub *s)
{
	return atomic_load(&c->stopping) || (s->stop && s->stop(s->arg));
}

/* The file's bytes in block b of chunk idx, for a file of size bytes. */
static uint64_t block_bytes(struct cache *c, uint64_t idx, unsigned int b,
			    uint64_t size)
{
	uint64_t off = chunk_start(c, idx) + b * c->block_size;

	if (off >= size)
		return 0;
	return size - off < c->block_size ? size - off : c->block_size;
}

/*
 * Judge the blocks in mask of chunk idx: sums[] are what they were when
 * the blocks were read, hashes[] what was read.  Counts each block, and
 * drops the bad clean ones.  f->lock held.  Returns the dropped blocks.
 */
static uint64_t judge(struct cache_file *f, uint64_t idx, uint64_t mask,
		      const uint64_t *sums, const uint64_t *hashes,
		      struct cache_scrub *s)
{
	struct cache *c = f->c;
	struct chunk *ch = f->chunks[idx];
	uint64_t dropped = 0, bytes = 0;

	for (; mask; mask &= mask - 1) {
		unsigned int b = (unsigned int)__builtin_ctzll(mask);
		uint64_t bit = 1ULL << b;
		uint64_t off = chunk_start(c, idx) + b * c->block_size;

		/* Dropped or fetched again meanwhile: not what was read. */
		if (!((ch->present | ch->dirty) & bit) || ch->sums[b] != sums[b])
			continue;
		s->checked++;
		bytes += block_bytes(c, idx, b, f->size);
		if (hashes[b] == sums[b])
			continue;
		s->bad++;
		atomic_fetch_add(&c->checksum_errors, 1);
		if (ch->dirty & bit) {
			log_msg(LOG_LVL_ERR, "scrub",
				"file %llx offset %llu: checksum mismatch on dirty data; it is not uploaded and a read of it gets EIO until it is written again",
				(unsigned long long)f->fileid,
				(unsigned long long)off);
			continue;
		}
		log_msg(LOG_LVL_WARN, "scrub",
			"file %llx offset %llu: checksum mismatch on clean data; fetching it again",
			(unsigned long long)f->fileid, (unsigned long long)off);
		ch->present &= ~bit;
		ch->mine &= ~bit;
		atomic_fetch_sub(&c->used_bytes, c->block_size);
		dropped |= bit;
	}
	s->bytes += bytes;
	atomic_fetch_add(&c->bytes_scrubbed, bytes);
	if (dropped)
		index_store_chunk(f, idx);
	return dropped;
}

/* Scrub chunk idx of f.  Returns 0 or the -errno of the data file read. */
static int scrub_chunk(struct cache_file *f, uint64_t idx,
		       struct cache_scrub *s)
{
	struct cache *c = f->c;
	uint64_t bs = c->block_size, start = chunk_start(c, idx);
	uint64_t sums[CACHE_BLOCKS], hashes[CACHE_BLOCKS];
	uint64_t mask, seq, tseq, dropped, lo, len;
	unsigned int first, last, b, tries = 0;
	struct chunk *ch;
	ssize_t n;
	char *buf;
	int rc = 0;

	pthread_mutex_lock(&f->lock);
again:
	ch = file_chunk(f, idx, false);
	if (!ch)
		goto out_unlock;	/* nothing cached there */
	/* A fetch fills blocks; a write changes bytes before their sums. */
	if (ch->fetching || ch->writers) {
		pthread_cond_wait(&f->cond, &f->lock);
		goto again;
	}
	mask = ch->present | ch->dirty;
	if (!mask)
		goto out_unlock;
	if (f->pt_unsynced) {
		s->skipped += popcount64(mask);
		goto out_unlock;
	}
	seq = ch->dirty_seq;
	tseq = f->trunc_seq;
	memcpy(sums, ch->sums, sizeof(sums));
	ch->readers++;
	f->inflight++;
	pthread_mutex_unlock(&f->lock);

	first = (unsigned int)__builtin_ctzll(mask);
	last = 63 - (unsigned int)__builtin_clzll(mask);
	lo = start + first * bs;
	len = (last - first + 1) * bs;
	buf = ring_buf(cache_ring(c), c->cfg->chunk_size);
	if (!buf) {
		n = -ENOMEM;
	} else if ((n = file_fds_get(f, FILE_FD_DATA)) == 0) {
		n = ring_pread(cache_ring(c), data_fd(f, buf, lo, len), buf,
			       len, lo);
		file_fds_put(f);
	}
	if (n >= 0) {
		memset(buf + n, 0, len - (size_t)n);
		for (b = first; b <= last; b++)
			if (mask & (1ULL << b))
				hashes[b] = XXH3_64bits(buf + (b - first) * bs,
							bs);
	}

	pthread_mutex_lock(&f->lock);
	ch->readers--;
	if (--f->inflight == 0)
		pthread_cond_broadcast(&f->cond);
	if (n < 0) {
		rc = (int)n;
		goto out_unlock;
	}
	/* Written, truncated or opened by a passthrough writer meanwhile. */
	if (ch->dirty_seq != seq || f->trunc_seq != tseq || f->pt_unsynced) {
		if (++tries < SCRUB_TRIES)
			goto again;
		s->skipped += popcount64(mask);
		goto out_unlock;
	}
	dropped = judge(f, idx, mask, sums, hashes, s);
	if (!dropped)
		goto out_unlock;
	/* In place: the data file keeps its other bytes for passthrough
	 * readers, and the fetch writes the dropped blocks over the bad. */
	if (file_ensure_present(f, idx, dropped, NULL) == 0)
		s->refetched += popcount64(dropped & f->chunks[idx]->present);
	else
		log_msg(LOG_LVL_WARN, "scrub",
			"file %llx chunk %llu: the bad blocks cannot be fetched again now; the next read of them fetches them",
			(unsigned long long)f->fileid, (unsigned long long)idx);
out_unlock:
	pthread_mutex_unlock(&f->lock);
	return rc;
}

int cache_file_scrub(struct cache_file *f, struct cache_scrub *s)
{
	struct cache *c = f->c;
	uint64_t cs = c->cfg->chunk_size, idx, n;
	int rc = 0;

	s->files++;
	for (idx = 0; rc == 0; idx++) {
		pthread_mutex_lock(&f->lock);
		n = (f->size + cs - 1) / cs;	/* the file may change size */
		pthread_mutex_unlock(&f->lock);
		if (idx >= n)
			break;
		if (scrub_stop(c, s))
			return -EINTR;
		rc = scrub_chunk(f, idx, s);
	}
	if (rc < 0)
		log_msg(LOG_LVL_ERR, "scrub",
			"file %llx chunk %llu: reading the cache data file: %s",
			(unsigned long long)f->fileid,
			(unsigned long long)(idx - 1), strerror(-rc));
	return rc;
}

int cache_scrub_all(struct cache *c, struct cache_scrub *s)
{
	struct cache_file **v;
	ssize_t n = cache_table_files(c, &v), i;
	int rc = 0, r;

	if (n < 0)
		return (int)n;
	for (i = 0; i < n; i++) {
		if (rc != -EINTR) {
			r = cache_file_scrub(v[i], s);
			if (r == -EINTR || (r < 0 && rc == 0))
				rc = r;
		}
		cache_file_put(v[i]);
	}
	free(v);
	log_msg(LOG_LVL_INFO, "scrub",
		"%s: %llu blocks (%llu bytes) of %llu files checked, %llu bad, %llu fetched again, %llu skipped (passthrough writers)",
		rc == -EINTR ? "stopped" : "done",
		(unsigned long long)s->checked, (unsigned long long)s->bytes,
		(unsigned long long)s->files, (unsigned long long)s->bad,
		(unsigned long long)s->refetched,
		(unsigned long long)s->skipped);
	return rc;
}
