/* SPDX-License-Identifier: GPL-2.0 */
/*
 * passthrough.c - the cache's side of FUSE passthrough: the kernel reads
 * and writes a file's cache data file itself, and the daemon learns what
 * changed by hashing the blocks again (rehash).
 *
 * A read open is passthrough when every block of the file is present: the
 * data file then holds the newest bytes.  A write open is passthrough when
 * the file is empty (a create, an O_TRUNC): against that pre-image of
 * zeros, the bytes this node changed are its non-zero bytes, and only
 * those go out (zero runs of ZSKIP_MIN bytes or more inside a block's
 * range are left out of the upload, see flush.c).  A write open that the kernel
 * forces into passthrough mode on a non-empty file (another passthrough
 * open of the inode is there already) does not know its pre-image: its
 * changed blocks go out whole (docs/consistency.md).
 *
 * The rehash runs at FLUSH, fsync and the last release, and, for a long
 * writer, in the background on the chunks the file has grown past
 * (pt_main, every PT_SCAN_MS).  A file with passthrough opens is never
 * evicted or punched: the kernel reads its data file directly.
 *
 * Crash safety: a passthrough write open is journaled (JREC_PTOPEN) before
 * the open is answered, and its end (JREC_PTCLOSE) after the last rehash.
 * The replay rehashes a file whose writer did not end.
 *
 * Thread safety: f->lock protects the pt_* fields; c->pt_lock the list of
 * files with passthrough writers.  No lock is held across data file I/O.
 */
#include "cache_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

/* A long passthrough writer's new chunks are rehashed this often. */
#define PT_SCAN_MS 200

int cache_file_pt_can(struct cache_file *f, bool write)
{
	int ok;

	pthread_mutex_lock(&f->lock);
	if (write)
		ok = (f->size == 0 && !f->dirty_chunks) ||
		     (f->pt_writers && f->pt_owned);
	else
		ok = !f->gone && file_whole(f);
	pthread_mutex_unlock(&f->lock);
	return ok;
}

static void pt_list_add(struct cache_file *f)
{
	struct cache *c = f->c;
	struct cache_file **n;

	pthread_mutex_lock(&c->pt_lock);
	if (c->npt == c->pt_cap) {
		size_t cap = c->pt_cap ? c->pt_cap * 2 : 16;

		n = realloc(c->pt, cap * sizeof(*n));
		if (!n)
			goto out;	/* no background rehash; close does it */
		c->pt = n;
		c->pt_cap = cap;
	}
	cache_file_ref(f);
	c->pt[c->npt++] = f;
out:
	pthread_mutex_unlock(&c->pt_lock);
}

static void pt_list_del(struct cache_file *f)
{
	struct cache *c = f->c;
	size_t i;

	pthread_mutex_lock(&c->pt_lock);
	for (i = 0; i < c->npt; i++)
		if (c->pt[i] == f) {
			c->pt[i] = c->pt[--c->npt];
			pthread_mutex_unlock(&c->pt_lock);
			cache_file_put(f);
			return;
		}
	pthread_mutex_unlock(&c->pt_lock);
}

int cache_file_pt_begin(struct cache_file *f, const struct be_cred *cred,
			bool write, bool must, int *fd)
{
	struct cache *c = f->c;
	bool writers;
	int rc = 0;

	/*
	 * An open the kernel makes passthrough: the file must be whole.
	 * What a passthrough writer put in the data file is the newest: it
	 * is hashed first, never fetched over.
	 */
	pthread_mutex_lock(&f->lock);
	writers = f->pt_writers > 0;
	pthread_mutex_unlock(&f->lock);
	if (must && writers)
		rc = cache_file_pt_sync(f);
	pthread_mutex_lock(&f->lock);
	if (rc == 0 && must && !file_whole(f))
		rc = file_fetch_all(f, cred, writers);
	/* Taken until cache_file_pt_end(): the kernel's backing file is
	 * made from it. */
	if (rc == 0)
		rc = file_fds_get(f, FILE_FD_DATA);
	if (rc < 0)
		goto out;
	f->pt_users++;
	if (write)
		f->pt_cred = cache_cred(c, cred);
	if (write && f->pt_writers++ == 0) {
		/* the kernel writes the data file now: kept fetch buffers
		 * would read older bytes */
		file_drop_kept(f);
		f->pt_owned = f->size == 0 && !f->dirty_chunks;
		f->pt_unsynced = true;
		f->pt_scanned = 0;
		rc = cache_journal(c, JREC_PTOPEN, f, f->pt_owned);
		if (rc < 0) {
			f->pt_writers--;
			f->pt_users--;
			f->pt_unsynced = false;
			file_fds_put(f);
			goto out;
		}
		pthread_mutex_unlock(&f->lock);
		pt_list_add(f);
		pthread_mutex_lock(&f->lock);
	}
	atomic_fetch_add(&c->pt_opens, 1);
	*fd = file_fd(f, FILE_FD_SLOT_DATA);
out:
	pthread_mutex_unlock(&f->lock);
	return rc;
}

/*
 * The dirty range of a changed block of n bytes (up to the file's end),
 * whose bytes are blk.  In a file that was empty when its passthrough
 * writer opened it (owned), the pre-image is zeros: if the block has a
 * zero run of ZSKIP_MIN bytes, the range is the span of its non-zero
 * bytes and the upload leaves out such runs inside it (returns true: the
 * block is zskip), so that bytes another node writes between this node's
 * are not overwritten.  A block at the file's end keeps its last byte,
 * so that the upload gives the file its size.  Otherwise, and for a
 * block that turned all zeros, the whole block (returns false).
 */
static bool changed_range(const char *blk, uint64_t n, bool owned,
			  bool eof, uint32_t *lo, uint32_t *hi)
{
	uint64_t a = 0, b = n, x, run = 0;

	*lo = 0;
	*hi = (uint32_t)n;
	if (!owned)
		return false;
	for (x = 0; x < n && run < ZSKIP_MIN; x++)
		run = blk[x] ? 0 : run + 1;
	if (run < ZSKIP_MIN)
		return false;	/* no zero run to leave out: all of it */
	while (a < b && !blk[a])
		a++;
	while (b > a && !blk[b - 1])
		b--;
	if (eof)
		b = n;
	if (a < b) {
		*lo = (uint32_t)a;
		*hi = (uint32_t)b;
	}
	return true;
}

/*
 * Hash chunk idx of the data file again (size: the data file's size now)
 * and turn every block whose bytes changed into dirty ranges, queued for
 * upload.  buf: room for the chunk's blocks up to size.  Returns the dirty bytes it added, or
 * -errno.
 */
static int64_t rehash_chunk(struct cache_file *f, uint64_t idx, uint64_t size,
			    char *buf, bool owned)
{
	struct cache *c = f->c;
	uint64_t bs = c->block_size, start = chunk_start(c, idx);
	uint64_t len = size - start < c->cfg->chunk_size ? size - start :
							   c->cfg->chunk_size;
	uint64_t known = 0, sums[CACHE_BLOCKS], changed = 0, grown = 0;
	uint64_t olddirty, be_size, forced = 0;
	uint32_t lo[CACHE_BLOCKS], hi[CACHE_BLOCKS];
	uint64_t zs = 0;
	bool end_dirty = false;	/* a dirty range reaches the file's end */
	struct chunk *ch;
	unsigned int b, nb = (unsigned int)((len + bs - 1) / bs);
	ssize_t n;
	int rc = 0;

	pthread_mutex_lock(&f->lock);
	ch = file_chunk(f, idx, true);
	if (!ch) {
		pthread_mutex_unlock(&f->lock);
		return -ENOMEM;
	}
	known = ch->present | ch->dirty;
	memcpy(sums, ch->sums, sizeof(sums));
	be_size = f->be_size;
	if (size > start && size - start <= c->cfg->chunk_size) {
		b = (unsigned int)((size - 1 - start) / bs);
		end_dirty = (ch->dirty & (1ULL << b)) &&
			    start + b * bs + ch->dhi[b] >= size;
	}
	ch->readers++;
	f->inflight++;
	pthread_mutex_unlock(&f->lock);

	n = file_fds_get(f, FILE_FD_DATA);
	if (n == 0) {
		n = ring_pread(cache_ring(c), file_fd(f, FILE_FD_SLOT_DATA), buf,
			       len, start);
		file_fds_put(f);
	}
	if (n < 0) {
		rc = (int)n;
		goto out;
	}
	memset(buf + n, 0, nb * bs - (size_t)n);
	for (b = 0; b < nb; b++) {
		uint64_t s = XXH3_64bits(buf + b * bs, bs);
		uint64_t in_file = size - (start + b * bs);

		if (s == ((known & (1ULL << b)) ? sums[b] : c->zero_sum)) {
			/*
			 * The kernel made the file longer with zeros (glibc's
			 * posix_fallocate writes one zero byte per block; a
			 * sparse copy seeks past the end): the backend learns
			 * the size only from an upload of the last byte.
			 */
			if (in_file > 0 && in_file <= bs && size > be_size &&
			    !end_dirty) {
				forced |= 1ULL << b;
				changed |= 1ULL << b;
				sums[b] = s;
				lo[b] = (uint32_t)(in_file - 1);
				hi[b] = (uint32_t)in_file;
			}
			continue;
		}
		sums[b] = s;
		changed |= 1ULL << b;
		if (changed_range(buf + b * bs, in_file < bs ? in_file : bs,
				  owned, in_file <= bs, &lo[b], &hi[b]))
			zs |= 1ULL << b;
	}
out:
	pthread_mutex_lock(&f->lock);
	ch->readers--;
	if (--f->inflight == 0)
		pthread_cond_broadcast(&f->cond);
	if (rc < 0 || !changed) {
		pthread_mutex_unlock(&f->lock);
		return rc;
	}
	olddirty = ch->dirty;
	/* A chunk dirty already keeps its writer (a kernel write reached
	 * through another open does not say whose it is). */
	if (!olddirty)
		ch->wcred = f->pt_cred;
	for (b = 0; b < nb; b++) {
		uint64_t bit = 1ULL << b, before = dirty_len(ch, bit);

		if (!(changed & bit))
			continue;
		/* Another rehash of the same bytes came first. */
		if (!(forced & bit) && ((ch->present | ch->dirty) & bit) &&
		    ch->sums[b] == sums[b]) {
			changed &= ~bit;
			continue;
		}
		if (ch->dirty & bit) {
			lo[b] = lo[b] < ch->dlo[b] ? lo[b] : ch->dlo[b];
			hi[b] = hi[b] > ch->dhi[b] ? hi[b] : ch->dhi[b];
		}
		ch->dirty |= bit;
		ch->dlo[b] = lo[b];
		ch->dhi[b] = hi[b];
		ch->sums[b] = sums[b];
		if (zs & bit)
			ch->zskip |= bit;
		else
			ch->zskip &= ~bit;
		if (!(ch->present & bit)) {
			ch->present |= bit;
			atomic_fetch_add(&c->used_bytes, bs);
		}
		if (!(zs & bit) && range_whole(c, idx, b, lo[b], hi[b], size))
			ch->mine |= bit;
		grown += dirty_len(ch, bit) - before;
	}
	if (!changed) {
		pthread_mutex_unlock(&f->lock);
		return 0;
	}
	ch->dirty_seq++;
	ch->last_write_us = now_us();
	if (!olddirty)
		f->dirty_chunks++;
	atomic_fetch_add(&c->dirty_bytes, grown);
	atomic_fetch_add(&c->pt_bytes_written, grown);
	index_store_chunk(f, idx);
	if (!ch->journaled && cache_journal(c, JREC_DIRTY, f, idx) == 0)
		ch->journaled = true;
	cache_queue_flush(f, idx);
	pthread_mutex_unlock(&f->lock);
	return (int64_t)grown;
}

/*
 * Rehash chunks [from, to) of f (to = ~0: up to the data file's end),
 * taking the size the kernel gave the data file.  Returns 0 or -errno.
 */
int file_pt_rehash(struct cache_file *f, uint64_t from, uint64_t to)
{
	struct cache *c = f->c;
	uint64_t size, idx, cs = c->cfg->chunk_size;
	struct stat st;
	bool owned;
	char *buf;
	int64_t r = 0;

	pthread_mutex_lock(&f->lock);
	r = file_fds_get(f, FILE_FD_DATA);
	if (r == 0) {
		r = fstat(file_fd(f, FILE_FD_SLOT_DATA), &st) < 0 ? -errno : 0;
		file_fds_put(f);
	}
	if (r < 0) {
		pthread_mutex_unlock(&f->lock);
		return (int)r;
	}
	size = (uint64_t)st.st_size;
	if (size > f->size) {
		f->size = size;
		clock_gettime(CLOCK_REALTIME, &f->mtime);
		index_store_header(f);
	}
	owned = f->pt_owned;
	pthread_mutex_unlock(&f->lock);
	if (to > (size + cs - 1) / cs)
		to = (size + cs - 1) / cs;
	if (from >= to)
		return 0;
	/* As large as the data, up to a chunk: a small file costs little. */
	buf = aligned_alloc(4096, size - from * cs < cs ?
				  (size - from * cs + c->block_size - 1) /
					  c->block_size * c->block_size : cs);
	if (!buf)
		return -ENOMEM;
	for (idx = from; idx < to && r >= 0; idx++)
		r = rehash_chunk(f, idx, size, buf, owned);
	free(buf);
	/* The daemon sees no reads or writes of passthrough files: it
	 * keeps the cache in bounds here and after uploads. */
	cache_evict_maybe(c);
	return r < 0 ? (int)r : 0;
}

int cache_file_pt_sync(struct cache_file *f)
{
	int rc = file_pt_rehash(f, 0, ~0ULL);

	if (rc < 0)
		log_msg(LOG_LVL_ERR, "passthrough",
			"file %llx: rehash of the cache file: %s",
			(unsigned long long)f->fileid, strerror(-rc));
	return rc;
}

int cache_file_pt_flush(struct cache_file *f, bool fsync)
{
	const struct cache_config *cfg = f->c->cfg;

	/*
	 * fsync=local: the data file is made durable, and the journal's
	 * PTOPEN record makes a replay hash the file again, so nothing
	 * acknowledged is lost without hashing it now.  An async close
	 * leaves the hash to the release, which the kernel sends after
	 * close() has returned; opens of the file stay passthrough until
	 * then, so no one reads it through the daemon unhashed.
	 */
	if (fsync ? cfg->fsync_mode != CACHE_FSYNC_BACKEND :
		    cfg->close_mode != CACHE_CLOSE_SYNC)
		return 0;
	return cache_file_pt_sync(f);
}

int cache_file_pt_sync_writers(struct cache_file *f)
{
	bool writers;

	pthread_mutex_lock(&f->lock);
	writers = f->pt_writers > 0;
	pthread_mutex_unlock(&f->lock);
	return writers ? cache_file_pt_sync(f) : 0;
}

void cache_file_pt_end(struct cache_file *f, bool write)
{
	bool last;
	int rc;

	pthread_mutex_lock(&f->lock);
	last = write && f->pt_writers == 1;
	if (!last) {
		f->pt_users--;
		if (write)
			f->pt_writers--;
	}
	pthread_mutex_unlock(&f->lock);
	if (!last) {
		file_fds_put(f);	/* cache_file_pt_begin()'s */
		return;
	}
	/*
	 * What the kernel wrote since the last FLUSH (an async close's
	 * writes, mmap).  The last writer stays counted until its bytes
	 * are hashed: an open racing with this release (the kernel's next
	 * open of the file, made passthrough) would otherwise see no
	 * writer, take the unhashed blocks for absent ones and fetch the
	 * backend's older bytes over them (the two-mount difftest lost
	 * whole writes so).
	 */
	rc = cache_file_pt_sync(f);
	pthread_mutex_lock(&f->lock);
	f->pt_users--;
	last = --f->pt_writers == 0;
	if (last && rc == 0) {
		f->pt_owned = false;
		f->pt_unsynced = false;
		cache_journal(f->c, JREC_PTCLOSE, f, 0);
	}
	pthread_mutex_unlock(&f->lock);
	file_fds_put(f);	/* cache_file_pt_begin()'s */
	if (!last)
		return;	/* a writer that came meanwhile hashes at its end */
	if (rc == 0) {
		/*
		 * Its uploads may all be done (a FLUSH waits for them): their
		 * flusher could not settle the generation while the kernel
		 * wrote, so it is settled here.  Left unsettled, the next open
		 * took another node's later change for this node's own and
		 * kept this node's old blocks (passthrough.sh case 7).
		 */
		file_refresh_gen(f);
	}
	pt_list_del(f);
}

int cache_file_pt_replay(struct cache_file *f, bool owned)
{
	int rc;

	pthread_mutex_lock(&f->lock);
	f->pt_owned = owned;
	pthread_mutex_unlock(&f->lock);
	rc = cache_file_pt_sync(f);
	pthread_mutex_lock(&f->lock);
	f->pt_owned = false;
	if (rc == 0)
		cache_journal(f->c, JREC_PTCLOSE, f, 0);
	pthread_mutex_unlock(&f->lock);
	return rc;
}

/*
 * A long passthrough writer must not wait for its close: the chunks its
 * file has grown past are rehashed and uploaded while it writes.  A chunk
 * rewritten after that is found by the rehash at close.
 */
void *pt_main(void *arg)
{
	struct cache *c = arg;
	struct timespec ts = { 0, PT_SCAN_MS * 1000000L };

	while (!atomic_load(&c->stopping)) {
		struct cache_file *f = NULL;
		size_t i;

		nanosleep(&ts, NULL);
		for (i = 0;; i++) {
			struct stat st;
			uint64_t full, from;

			pthread_mutex_lock(&c->pt_lock);
			f = i < c->npt ? c->pt[i] : NULL;
			if (f)
				cache_file_ref(f);
			pthread_mutex_unlock(&c->pt_lock);
			if (!f)
				break;
			pthread_mutex_lock(&f->lock);
			from = f->pt_scanned;
			full = 0;
			if (file_fds_get(f, FILE_FD_DATA) == 0) {
				if (fstat(file_fd(f, FILE_FD_SLOT_DATA),
					  &st) == 0)
					full = (uint64_t)st.st_size /
					       c->cfg->chunk_size;
				file_fds_put(f);
			}
			if (full > from)
				f->pt_scanned = full;
			pthread_mutex_unlock(&f->lock);
			if (full > from)
				file_pt_rehash(f, from, full);
			cache_file_put(f);
		}
	}
	return NULL;
}
