/* SPDX-License-Identifier: GPL-2.0 */
/*
 * chunk.c - the read and write paths over chunks and blocks.
 *
 * Invariants, all under f->lock:
 *  - a dirty block has one dirty byte range [dlo, dhi); it may be present
 *    or not (a partial write does not fetch the rest of its block);
 *  - a block that is not present and starts at or past be_size reads as
 *    its place in the cache file: zeros (holes: eviction punches them,
 *    truncate cuts the file) but for the dirty range;
 *  - a read of a block that holds backend data and is not present fetches
 *    it and merges the dirty range over the fetched bytes;
 *  - mine is a subset of present: blocks written whole by this node;
 *  - the checksum of a present or dirty block is the XXH3-64 of all
 *    block_size bytes of its place in the cache file, zero-padded past
 *    the cache file's end;
 *  - while ch->fetching, no writer touches the chunk; while ch->readers
 *    (reads and writes of the cache file, also counted in f->inflight),
 *    nothing punches, resets or frees it.
 *
 * Thread safety: see the comment of each function.
 */
#include "cache_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

static inline uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/* Blocks of chunk idx that hold backend data (start below be_size). */
static uint64_t backend_blocks(struct cache_file *f, uint64_t idx)
{
	struct cache *c = f->c;
	uint64_t start = chunk_start(c, idx);
	uint64_t n;

	if (f->be_size <= start)
		return 0;
	n = (f->be_size - start + c->block_size - 1) / c->block_size;
	return n >= CACHE_BLOCKS ? ~0ULL : (1ULL << n) - 1;
}

/* The chunk, loaded from the index or made; f->lock held. */
struct chunk *file_chunk(struct cache_file *f, uint64_t idx, bool create)
{
	struct cache *c = f->c;
	struct chunk *ch;
	int rc;

	if (idx >= CACHE_MAX_CHUNKS)
		return NULL;	/* callers refuse such offsets first */
	if (idx >= f->nchunks) {
		uint64_t n = f->nchunks ? f->nchunks : 16;
		struct chunk **nc;

		while (n <= idx)
			n *= 2;
		nc = realloc(f->chunks, n * sizeof(*nc));
		if (!nc)
			return NULL;
		memset(nc + f->nchunks, 0, (n - f->nchunks) * sizeof(*nc));
		f->chunks = nc;
		f->nchunks = n;
	}
	ch = f->chunks[idx];
	if (ch)
		return ch;
	ch = calloc(1, sizeof(*ch));
	if (!ch)
		return NULL;
	rc = index_load_chunk(f, idx, ch);
	if (rc <= 0 && !create) {
		free(ch);
		return NULL;
	}
	if (rc < 0)
		memset(ch, 0, sizeof(*ch));	/* corrupt slot: nothing known */
	f->chunks[idx] = ch;
	if (ch->present)
		atomic_fetch_add(&c->used_bytes,
				 popcount64(ch->present) * c->block_size);
	if (ch->dirty) {
		/* Dirty data found in the index: it must go out. */
		atomic_fetch_add(&c->dirty_bytes, dirty_len(ch, ~0ULL));
		f->dirty_chunks++;
		ch->journaled = true;
		cache_queue_flush(f, idx);
	}
	ch->lru_stamp = atomic_fetch_add(&c->lru_clock, 1);
	return ch;
}

/* XXH3 of one block read from the cache file, zero padded. */
static int block_sum_from_file(struct cache_file *f, uint64_t off, void *tmp,
			       uint64_t *sum)
{
	struct cache *c = f->c;
	ssize_t n = file_fds_get(f, FILE_FD_DATA);

	if (n < 0)
		return (int)n;
	n = ring_pread(cache_ring(c), data_fd(f, tmp, off, c->block_size), tmp,
		       c->block_size, off);
	file_fds_put(f);
	if (n < 0)
		return (int)n;
	memset((char *)tmp + n, 0, c->block_size - (size_t)n);
	*sum = XXH3_64bits(tmp, c->block_size);
	return 0;
}

/* The sums of blocks mask of the chunk at start, as the data file holds
 * them, into sums; returns the blocks it could read. */
static uint64_t resum_blocks(struct cache_file *f, uint64_t start,
			     uint64_t mask, uint64_t *sums)
{
	uint64_t bs = f->c->block_size, ok = 0;
	void *tmp;

	if (!mask || !(tmp = aligned_alloc(4096, bs)))
		return 0;
	for (; mask; mask &= mask - 1) {
		unsigned int b = (unsigned int)__builtin_ctzll(mask);

		if (block_sum_from_file(f, start + b * bs, tmp, &sums[b]) == 0)
			ok |= 1ULL << b;
	}
	free(tmp);
	return ok;
}

/* Which blocks of a chunk [a, b) (offsets in the chunk) touches. */
static uint64_t range_blocks(struct cache *c, uint64_t a, uint64_t b)
{
	return block_mask((unsigned int)(a / c->block_size),
			  (unsigned int)((b - 1) / c->block_size));
}

/*
 * A reader's range of a chunk being fetched: [off, off+len) is copied to
 * dst straight from the fetched bytes (done is set) when every block of
 * it came from that fetch, so the reader neither waits for the cache
 * write nor reads the cache file back and hashes it again.
 */
struct fetch_copy {
	char *dst;
	uint64_t off;
	size_t len;
	bool done;
};

/*
 * The buffer of the fetch of ch in flight (ch->fbuf), held against its
 * end, if every block of mask came from that fetch; or NULL.  The fetch
 * waits for fetch_unpin() before it lets the buffer go.  f->lock held.
 */
static const char *fetch_pin(struct chunk *ch, uint64_t mask)
{
	if (!ch->fbuf || (mask & ~ch->fbuf_mask))
		return NULL;
	ch->fbuf_users++;
	return ch->fbuf;
}

/* f->lock held. */
static void fetch_unpin(struct cache_file *f, struct chunk *ch)
{
	if (--ch->fbuf_users == 0)
		pthread_cond_broadcast(&f->cond);
}

/*
 * A fetch of chunk idx in flight has its bytes in ch->fbuf: copy fc's
 * range from there if all of it came from that fetch.  Used by the
 * fetching reader and by the readers waiting on it.  f->lock held
 * (dropped for the copy).  Returns true if it did.
 */
static bool copy_from_fetch(struct cache_file *f, uint64_t idx,
			    struct fetch_copy *fc)
{
	struct cache *c = f->c;
	struct chunk *ch = f->chunks[idx];
	uint64_t start = chunk_start(c, idx);
	const char *src = fetch_pin(ch, range_blocks(c, fc->off - start,
						      fc->off + fc->len - start));

	if (!src)
		return false;
	pthread_mutex_unlock(&f->lock);
	memcpy(fc->dst, src + (fc->off - start), fc->len);
	pthread_mutex_lock(&f->lock);
	fetch_unpin(f, ch);
	fc->done = true;
	return true;
}

uint64_t zero_run_next(const char *buf, uint64_t x, uint64_t t, uint64_t *z)
{
	while (x < t) {
		uint64_t y;

		if (buf[x]) {
			x++;
			continue;
		}
		for (y = x; y < t && !buf[y]; y++)
			;
		if (y - x >= ZSKIP_MIN) {
			*z = x;
			return y;
		}
		x = y;
	}
	*z = t;
	return t;
}

/* The data file's bytes [lo, hi) of block b of chunk idx into buf; the
 * data file taken.  0 or -errno. */
static int overlay_range(struct cache_file *f, uint64_t idx, char *buf,
			 unsigned int b, uint32_t lo, uint32_t hi)
{
	struct cache *c = f->c;
	uint64_t o = b * c->block_size + lo;
	ssize_t n = ring_pread(cache_ring(c), file_fd(f, FILE_FD_SLOT_DATA),
			       buf + o, hi - lo, chunk_start(c, idx) + o);

	return n < 0 ? (int)n : 0;
}

/*
 * The same for a zskip block: its zero runs of ZSKIP_MIN bytes or more
 * are not this node's (the upload leaves them out), so the fetched bytes
 * stay there.  The pieces kept, this node's bytes, are added to z (room
 * for ZPIECES_MAX more): once the fetched bytes are in the block, its
 * zero runs no longer tell them apart, and its upload sends these runs
 * instead (chunk_zskip_to_runs()).  A zero run to the file's end (eof,
 * an offset in the block) keeps its last byte, as the upload does (the
 * file's size).  tmp: room for a block.
 */
#define ZPIECES_MAX(bs) ((bs) / (ZSKIP_MIN + 1) + 2)

static void keep_piece(char *buf, const char *tmp, uint64_t o, unsigned int b,
		       uint64_t from, uint64_t to, struct pt_run *z,
		       uint32_t *nz)
{
	if (to <= from)
		return;
	memcpy(buf + o + from, tmp + from, to - from);
	z[(*nz)++] = (struct pt_run){ b, (uint32_t)from, (uint32_t)to };
}

static int overlay_nonzero(struct cache_file *f, uint64_t idx, char *buf,
			   unsigned int b, uint32_t lo, uint32_t hi,
			   uint64_t eof, char *tmp, struct pt_run *z,
			   uint32_t *nz)
{
	uint64_t o = b * f->c->block_size, x = lo, zs, y;
	ssize_t n = ring_pread(cache_ring(f->c), file_fd(f, FILE_FD_SLOT_DATA),
			       tmp + lo, hi - lo, chunk_start(f->c, idx) + o + lo);

	if (n < 0)
		return (int)n;
	if ((uint64_t)n < hi - lo)	/* the data file ends first */
		hi = lo + (uint32_t)n;
	while (x < hi) {
		y = zero_run_next(tmp, x, hi, &zs);
		keep_piece(buf, tmp, o, b, x, zs, z, nz);
		if (zs < y && y == eof)
			keep_piece(buf, tmp, o, b, y - 1, y, z, nz);
		x = y;
	}
	return 0;
}

/*
 * Copy the dirty ranges of the blocks in want from the cache file over
 * the fetched bytes in buf (the whole chunk).  No writer runs while
 * ch->fetching, so the ranges hold still; but an upload may finish and
 * clean a block between the backend's answer and here: its range is then
 * in neither, and *missed gets the blocks of dirty0 (dirty when the fetch
 * began) that are not dirty any more.  *zout (malloc'd, *nzout of them):
 * the pieces of the zskip blocks that were kept (overlay_nonzero()).
 * f->lock not held.
 */
static int overlay_dirty(struct cache_file *f, struct chunk *ch, uint64_t idx,
			 uint64_t want, uint64_t dirty0, char *buf,
			 uint64_t *missed, struct pt_run **zout, uint32_t *nzout)
{
	uint32_t lo[CACHE_BLOCKS], hi[CACHE_BLOCKS], nruns = 0, i;
	uint64_t m, rmask = 0, zmask, bs = f->c->block_size, eof;
	struct pt_run *runs = NULL, *z = NULL;
	char *tmp = NULL;
	int rc = 0;

	*zout = NULL;
	*nzout = 0;
	pthread_mutex_lock(&f->lock);
	m = want & ch->dirty;
	*missed = dirty0 & ~m;
	memcpy(lo, ch->dlo, sizeof(lo));
	memcpy(hi, ch->dhi, sizeof(hi));
	zmask = ch->zskip & m;
	eof = f->size - chunk_start(f->c, idx);	/* wraps if before */
	/*
	 * A passthrough writer's block is dirty over a span, but only its
	 * runs are this node's: the bytes between are the backend's, maybe
	 * another node's newer ones (two-mount difftest seed 31415926).
	 */
	if (ch->pt_runs_mask & m) {
		runs = malloc(ch->pt_nruns * sizeof(*runs));
		if (runs) {
			memcpy(runs, ch->pt_runs, ch->pt_nruns * sizeof(*runs));
			nruns = ch->pt_nruns;
			rmask = ch->pt_runs_mask & m;
		} else {
			rc = -ENOMEM;
		}
	}
	pthread_mutex_unlock(&f->lock);
	if (zmask && rc == 0) {
		tmp = malloc(bs);
		z = malloc(popcount64(zmask) * ZPIECES_MAX(bs) * sizeof(*z));
		if (!tmp || !z)
			rc = -ENOMEM;
	}
	if (!m || rc < 0)
		goto out;
	rc = file_fds_get(f, FILE_FD_DATA);
	if (rc < 0)
		goto out;
	for (i = 0; rc == 0 && i < nruns; i++)
		if (rmask & (1ULL << runs[i].b))
			rc = overlay_range(f, idx, buf, runs[i].b, runs[i].lo,
					   runs[i].hi);
	for (m &= ~rmask; rc == 0 && m; m &= m - 1) {
		unsigned int b = (unsigned int)__builtin_ctzll(m);

		if (zmask & (1ULL << b))
			rc = overlay_nonzero(f, idx, buf, b, lo[b], hi[b],
					     eof - b * bs, tmp, z, nzout);
		else
			rc = overlay_range(f, idx, buf, b, lo[b], hi[b]);
	}
	file_fds_put(f);
out:
	free(runs);
	free(tmp);
	if (rc < 0) {
		free(z);
		*nzout = 0;
	} else {
		*zout = z;
	}
	return rc;
}

/*
 * The zskip blocks of mask took the backend's bytes into their zero runs
 * (the fill wrote them): each goes out as the pieces z[0..n) of this
 * node's bytes that overlay_nonzero() kept, a single one as the block's
 * dirty range.  f->lock held.
 */
static void zskip_settle(struct cache_file *f, struct chunk *ch, uint64_t mask,
			 struct pt_run *z, uint32_t n)
{
	uint32_t i = 0, j;

	mask &= ch->dirty & ch->zskip;
	while (i < n) {
		unsigned int b = z[i].b;

		for (j = i; j < n && z[j].b == b; j++)
			;
		if (!(mask & (1ULL << b))) {
			i = j;
			continue;
		}
		if (j - i == 1) {
			atomic_fetch_sub(&f->c->dirty_bytes,
					 (ch->dhi[b] - ch->dlo[b]) -
						 (z[i].hi - z[i].lo));
			ch->dlo[b] = z[i].lo;
			ch->dhi[b] = z[i].hi;
			ch->zskip &= ~(1ULL << b);
			chunk_runs_drop(ch, 1ULL << b);
		} else {
			chunk_zskip_to_runs(ch, b, z + i, j - i);
		}
		i = j;
	}
}

/*
 * The bytes a fetch wrote into the data file of a file with passthrough
 * writers go into their pre-image too: they are the backend's
 * (passthrough.c).  False if one write failed.
 */
static bool pre_mirror(int fd, const struct ring_op *ops, int nops)
{
	int i;

	for (i = 0; i < nops; i++)
		if (pwrite(fd, ops[i].buf, ops[i].len, (off_t)ops[i].off) !=
		    (ssize_t)ops[i].len)
			return false;
	return true;
}

/*
 * A passthrough writer may write the data file while a fetch waits for
 * the backend: the blocks of mask must still hold what the cache knows of
 * them (exp[], taken under f->lock once the fetch had its bytes), or the
 * fetch would write the backend's older bytes over the writer's.  A
 * leftover block may also have been punched (zeros).  Returns 0, or
 * -EAGAIN if one moved: the caller hashes the writer's bytes and fetches
 * again (file_fetch_all()).  The window left is this check's to the
 * fill's write, not the backend's answer time.
 */
static int writer_moved(struct cache_file *f, uint64_t start, uint64_t mask,
			const uint64_t *exp, uint64_t leftover)
{
	struct cache *c = f->c;
	void *tmp = aligned_alloc(4096, c->block_size);
	uint64_t s;
	int rc = 0;

	if (!tmp)
		return -ENOMEM;
	for (; mask && rc == 0; mask &= mask - 1) {
		unsigned int b = (unsigned int)__builtin_ctzll(mask);

		rc = block_sum_from_file(f, start + b * c->block_size, tmp, &s);
		if (rc == 0 && s != exp[b] &&
		    !((leftover & (1ULL << b)) && s == c->zero_sum))
			rc = -EAGAIN;
	}
	free(tmp);
	return rc;
}

/*
 * Fetch the blocks of chunk idx that hold backend data and are not
 * present (merged with the dirty range of any of them), except those a write in flight is filling.  Called with
 * f->lock held and !ch->fetching; drops the lock for the I/O and returns
 * with it held.  Concurrent readers of the chunk wait on f->cond instead
 * of fetching again.  The bytes go through the thread's registered
 * staging buffer.
 */
static int fetch_chunk(struct cache_file *f, uint64_t idx, bool prefetch,
		       struct fetch_copy *fc, const struct be_cred *cred)
{
	struct cache *c = f->c;
	struct chunk *ch = f->chunks[idx];
	uint64_t start = chunk_start(c, idx), trunc_seq = f->trunc_seq;
	uint64_t want = backend_blocks(f, idx) & ~ch->present & ~ch->wmask;
	uint64_t got = 0, dirty0 = want & ch->dirty, missed = 0, resummed = 0;
	uint64_t len = min_u64(c->cfg->chunk_size,
			       f->be_size > start ? f->be_size - start : 0);
	uint64_t sums[CACHE_BLOCKS];
	struct ring_op ops[CACHE_BLOCKS];
	uint64_t exp[CACHE_BLOCKS], leftover = 0;
	struct pt_run *zr = NULL;
	uint32_t nzr = 0;
	int nops = 0, rc = 0, pre = -1;
	bool pre_ok = false, writers = false;
	struct rbuf *rb;
	unsigned int b;
	uint64_t t0;
	ssize_t n;
	char *buf;

	if (!want)
		return 0;
	ch->fetching = true;
	f->inflight++;
	pthread_mutex_unlock(&f->lock);

	/* a buffer kept for the readers after us, else the thread's own */
	rb = rbuf_take(c);
	buf = rb ? rbuf_data(rb) : ring_buf(cache_ring(c), c->cfg->chunk_size);
	if (!buf) {
		rc = -ENOMEM;
		goto out_lock;
	}
	t0 = now_us();
	n = be_pread(file_be(f), cred, f->node, buf, len, start);
	hist_add(c->be_read_us, t0);
	if (n < 0) {
		rc = (int)n;
		goto out_lock;
	}
	atomic_fetch_add(&c->bytes_read_backend, (uint64_t)n);
	if (prefetch)
		atomic_fetch_add(&c->prefetch_chunks, 1);
	memset(buf + n, 0, c->cfg->chunk_size - (size_t)n);
	/* Merge: this node's dirty bytes win over the backend's.  A block
	 * whose range an upload took meanwhile is stale here: left out. */
	rc = overlay_dirty(f, ch, idx, want, dirty0, buf, &missed, &zr, &nzr);
	if (rc < 0)
		goto out_lock;
	want &= ~missed;
	/* Write what we fetched, as runs of wanted blocks. */
	for (b = 0; b < CACHE_BLOCKS; b++) {
		uint64_t boff = b * c->block_size;

		if (!(want & (1ULL << b)))
			continue;
		sums[b] = XXH3_64bits(buf + boff, c->block_size);
		got |= 1ULL << b;
		if (nops && ops[nops - 1].off + ops[nops - 1].len ==
				    start + boff) {
			ops[nops - 1].len += c->block_size;
			continue;
		}
		ops[nops++] = (struct ring_op){ .fd = -1, .write = 1,
						.buf = buf + boff,
						.len = c->block_size,
						.off = start + boff };
	}
	/*
	 * Readers waiting for this chunk take their bytes from buf now,
	 * checked by construction (the sums come from the same bytes), while
	 * this thread writes them into the cache file.
	 */
	pthread_mutex_lock(&f->lock);
	ch->fbuf = buf;
	ch->fbuf_mask = want;
	if (f->pt_writers && f->pt_pre_fd >= 0)
		pre = fcntl(f->pt_pre_fd, F_DUPFD_CLOEXEC, 0);
	writers = f->pt_writers > 0;
	if (writers) {
		uint64_t known = ch->present | ch->dirty | ch->leftover;

		for (b = 0; b < CACHE_BLOCKS; b++)
			exp[b] = (known & (1ULL << b)) ? ch->sums[b] :
							 c->zero_sum;
		leftover = ch->leftover;
	}
	pthread_cond_broadcast(&f->cond);
	if (fc)
		copy_from_fetch(f, idx, fc);
	pthread_mutex_unlock(&f->lock);
	/* Never write past the data: the cache file keeps the file's size. */
	if (nops) {
		struct ring_op *last = &ops[nops - 1];
		uint64_t end = start + (uint64_t)n;

		if (last->off + last->len > end)
			last->len = end > last->off ? end - last->off : 0;
		if (!last->len)
			nops--;
	}
	/* O_DIRECT takes the aligned part of the last run, the tail not. */
	if (nops && (ops[nops - 1].len & 4095) && ops[nops - 1].len > 4096) {
		struct ring_op *last = &ops[nops - 1];
		size_t head = last->len & ~(size_t)4095;

		ops[nops] = *last;
		ops[nops].buf = (char *)last->buf + head;
		ops[nops].off += head;
		ops[nops].len -= head;
		last->len = head;
		nops++;
	}
	if (writers && nops)
		rc = writer_moved(f, start, got, exp, leftover);
	if (rc == 0)
		rc = file_fds_get(f, FILE_FD_DATA | FILE_FD_FILL);
	if (rc < 0)
		goto out_lock;
	for (b = 0; b < (unsigned int)nops; b++)
		ops[b].fd = fill_fd(f, ops[b].buf, ops[b].off, ops[b].len);
	rc = ring_run(cache_ring(c), ops, nops);
	file_fds_put(f);
	if (pre >= 0)
		pre_ok = rc == 0 && pre_mirror(pre, ops, nops);
	/*
	 * A fill that failed part way (a full cache file system) may have
	 * written some merged blocks: a dirty one then holds the backend's
	 * bytes around this node's range, and its sum must say so, or the
	 * flusher calls it corrupt for ever (chaos seed 3132465359).
	 */
	if (rc < 0)
		resummed = resum_blocks(f, start, want & dirty0, sums);
out_lock:
	pthread_mutex_lock(&f->lock);
	while (ch->fbuf_users)	/* buf is this thread's: wait for them */
		pthread_cond_wait(&f->cond, &f->lock);
	ch->fbuf = NULL;
	ch->fbuf_mask = 0;
	ch->fetching = false;
	f->inflight--;
	if (rc == 0 || resummed)
		zskip_settle(f, ch, rc == 0 ? want : resummed, zr, nzr);
	free(zr);
	if (rc == 0 && f->trunc_seq == trunc_seq) {
		got &= ~ch->present;	/* a writer may have come first */
		/* New sums of dirty blocks: an upload that read them before
		 * must not take the change for a bad block. */
		if (got & ch->dirty)
			ch->dirty_seq++;
		for (b = 0; b < CACHE_BLOCKS; b++)
			if (got & (1ULL << b))
				ch->sums[b] = sums[b];
		ch->leftover &= ~got;
		if (pre >= 0 && pre_ok)
			ch->pt_stale &= ~got;
		else if (pre >= 0)
			ch->pt_stale |= got;
		ch->present |= got;
		atomic_fetch_add(&c->used_bytes,
				 popcount64(got) * c->block_size);
		index_store_chunk(f, idx);
		if (rb && got) {
			ch->rb = rb;
			ch->rb_seq = rbuf_seq(rb);
			ch->rb_mask = got;
			ch->rb_dseq = ch->dirty_seq;
			ch->rb_tseq = f->trunc_seq;
		}
	} else {
		/*
		 * Nothing becomes present: the fill failed (the blocks
		 * resum_blocks() read back), or an open dropped the file's
		 * cached bytes as stale meanwhile (file_drop_stale(), which
		 * cannot wait for fills).  Either way a dirty block written
		 * holds the merged bytes now, and its sum must say so, or the
		 * flusher calls it corrupt for ever (difftest seed
		 * 3515292667: a prefetch, then an open).
		 */
		resummed = (rc < 0 ? resummed : got) & ch->dirty;
		for (b = 0; b < CACHE_BLOCKS; b++)
			if (resummed & (1ULL << b))
				ch->sums[b] = sums[b];
		if (resummed) {
			ch->dirty_seq++;
			index_store_chunk(f, idx);
		}
		if (rc < 0 && rc != -EAGAIN)
			log_msg(LOG_LVL_WARN, "cache",
				"fetch of file %llx chunk %llu failed: %s",
				(unsigned long long)f->fileid,
				(unsigned long long)idx, strerror(-rc));
	}
	ch->lru_stamp = atomic_fetch_add(&c->lru_clock, 1);
	pthread_cond_broadcast(&f->cond);
	rbuf_done(c, rb);
	if (pre >= 0)
		close(pre);
	return rc;
}

/*
 * The buffer the last fetch of ch filled, pinned, if it still holds the
 * blocks of mask unchanged (see struct chunk); or NULL.  Its bytes were
 * hashed as they arrived: a read from it needs no check.  f->lock held.
 */
static struct rbuf *kept_pin(struct cache_file *f, struct chunk *ch,
			     uint64_t mask)
{
	struct rbuf *rb = ch->rb;

	if (!rb || f->pt_writers || ch->rb_dseq != ch->dirty_seq ||
	    ch->rb_tseq != f->trunc_seq || (mask & ~ch->rb_mask) ||
	    (mask & ~ch->present))
		return NULL;
	if (!rbuf_pin(rb, ch->rb_seq)) {
		ch->rb = NULL;	/* taken by another fetch */
		return NULL;
	}
	return rb;
}

/*
 * Copy [off, off + len) of chunk idx (blocks mask) from the buffer its
 * last fetch filled (kept_pin()).  f->lock held (dropped for the copy).
 * Returns true if it did.
 */
static bool copy_from_kept(struct cache_file *f, struct chunk *ch,
			   uint64_t idx, uint64_t mask, char *dst,
			   uint64_t off, size_t len)
{
	struct rbuf *rb = kept_pin(f, ch, mask);

	if (!rb)
		return false;
	pthread_mutex_unlock(&f->lock);
	memcpy(dst, rbuf_data(rb) + (off - chunk_start(f->c, idx)), len);
	rbuf_unpin(rb);
	pthread_mutex_lock(&f->lock);
	atomic_fetch_add(&f->c->reads_kept, 1);
	return true;
}

void file_drop_kept(struct cache_file *f)
{
	uint64_t i;

	for (i = 0; i < f->nchunks; i++)
		if (f->chunks[i])
			f->chunks[i]->rb = NULL;
}

int file_fetch_chunk(struct cache_file *f, uint64_t idx, bool prefetch,
		     const struct be_cred *cred)
{
	return fetch_chunk(f, idx, prefetch, NULL, cred);
}

/* Cache-file I/O on ch is over; f->lock held. */
static void io_done(struct cache_file *f, struct chunk *ch)
{
	ch->readers--;
	if (--f->inflight == 0)
		pthread_cond_broadcast(&f->cond);
}

/*
 * A writer's bytes and sums of ch agree again; f->lock held.  Readers and
 * flushers that saw a mismatch while ch->writers was set try again.
 */
static void write_done(struct cache_file *f, struct chunk *ch)
{
	if (--ch->writers == 0)
		pthread_cond_broadcast(&f->cond);
}

/*
 * Make the blocks in mask that hold backend data present; f->lock held.
 * A block that a write in flight is filling is waited for, not fetched.
 * fc (or NULL) is the caller's range, see struct fetch_copy; a fetch goes
 * out with cred, the reader's.
 */
static int ensure_present(struct cache_file *f, uint64_t idx, uint64_t mask,
			  struct fetch_copy *fc, const struct be_cred *cred)
{
	struct chunk *ch = f->chunks[idx];
	int rc;

	for (;;) {
		uint64_t need = mask & backend_blocks(f, idx) & ~ch->present;

		if (!need)
			return 0;
		if (fc && ch->fbuf && copy_from_fetch(f, idx, fc)) {
			atomic_fetch_add(&f->c->reads_from_fetch, 1);
			return 0;
		}
		if (ch->fetching || (need & ch->wmask)) {
			pthread_cond_wait(&f->cond, &f->lock);
			continue;
		}
		rc = fetch_chunk(f, idx, false, fc, cred);
		/*
		 * Served by its own fetch, from the fetched buffer: whether
		 * the bytes then reached the cache file does not matter to
		 * this reader.  A full cache file system (ENOSPC) must not
		 * fail a read the backend answered: each read fetches again
		 * until there is room.
		 */
		if (fc && fc->done)
			return 0;
		if (rc < 0)
			return rc;
	}
}

/*
 * Check the present blocks of [lo, hi) (block aligned, within chunk idx)
 * against hashes[] computed from what was read.  Returns 0, or -EAGAIN
 * after dropping bad clean blocks (the caller fetches again), or -EIO for
 * a bad dirty block.  f->lock held.
 */
static int verify_blocks(struct cache_file *f, uint64_t idx,
			 const uint64_t *hashes, uint64_t lo, uint64_t hi)
{
	struct cache *c = f->c;
	struct chunk *ch = f->chunks[idx];
	uint64_t start = chunk_start(c, idx), off;
	int rc = 0;

	for (off = lo; off < hi; off += c->block_size) {
		unsigned int b = (unsigned int)((off - start) / c->block_size);

		if (!((ch->present | ch->dirty) & (1ULL << b)))
			continue;
		if (hashes[(off - lo) / c->block_size] == ch->sums[b])
			continue;
		atomic_fetch_add(&c->checksum_errors, 1);
		if (ch->dirty & (1ULL << b)) {
			log_msg(LOG_LVL_ERR, "cache",
				"file %llx offset %llu: checksum mismatch on dirty data; returning EIO",
				(unsigned long long)f->fileid,
				(unsigned long long)off);
			return -EIO;
		}
		log_msg(LOG_LVL_WARN, "cache",
			"file %llx offset %llu: checksum mismatch on clean data; fetching it again",
			(unsigned long long)f->fileid, (unsigned long long)off);
		ch->present &= ~(1ULL << b);
		ch->mine &= ~(1ULL << b);
		atomic_fetch_sub(&c->used_bytes, c->block_size);
		rc = -EAGAIN;
	}
	if (rc)
		index_store_chunk(f, idx);
	return rc;
}

/* Read [off, off+len) which lies within chunk idx. */
static ssize_t read_in_chunk(struct cache_file *f, uint64_t idx, char *dst,
			     uint64_t off, size_t len,
			     const struct be_cred *cred)
{
	struct cache *c = f->c;
	uint64_t start = chunk_start(c, idx);
	uint64_t lo = off - (off - start) % c->block_size;
	uint64_t hi = off + len;
	uint64_t mask, seq, hashes[CACHE_BLOCKS];
	struct chunk *ch;
	struct fetch_copy fc = { .dst = dst, .off = off, .len = len };
	char *buf = NULL;
	ssize_t n;
	int rc, tries = 0;

	hi += (c->block_size - (hi - start) % c->block_size) % c->block_size;
	mask = range_blocks(c, lo - start, hi - start);
	pthread_mutex_lock(&f->lock);
again:
	ch = file_chunk(f, idx, true);
	if (!ch) {
		rc = -ENOMEM;
		goto out_unlock;
	}
	rc = ensure_present(f, idx, mask, &fc, cred);
	if (rc < 0)
		goto out_unlock;
	if (fc.done)
		goto out_unlock;	/* served from the fetch itself */
	/* A block being rewritten has new bytes and old sums for a moment. */
	if (ch->writers) {
		pthread_cond_wait(&f->cond, &f->lock);
		goto again;
	}
	if (copy_from_kept(f, ch, idx, mask, dst, off, len)) {
		rc = 0;
		goto out_unlock;
	}
	seq = ch->dirty_seq;
	ch->readers++;
	f->inflight++;
	ch->lru_stamp = atomic_fetch_add(&c->lru_clock, 1);
	pthread_mutex_unlock(&f->lock);

	rc = file_fds_get(f, FILE_FD_DATA);
	if (rc < 0)
		goto out_reader;
	if (c->cfg->verify) {
		/* Whole blocks are checked: read straight into dst when the
		 * request is block aligned (and dst is, for O_DIRECT), through
		 * the thread's buffer if not. */
		if (off == lo && len == hi - lo &&
		    (c->direct != CACHE_DIRECT_ON || !((uintptr_t)dst & 4095)))
			buf = dst;
		else	/* as large as this read: workers stay small */
			buf = ring_buf(cache_ring(c), hi - lo);
		if (!buf) {
			rc = -ENOMEM;
			goto out_put;
		}
		n = ring_pread(cache_ring(c), data_fd(f, buf, lo, hi - lo),
			       buf, hi - lo, lo);
		if (n >= 0) {
			uint64_t o;

			memset(buf + n, 0, (hi - lo) - (size_t)n);
			for (o = 0; o < hi - lo; o += c->block_size)
				hashes[o / c->block_size] =
					XXH3_64bits(buf + o, c->block_size);
		}
	} else {
		n = ring_pread(cache_ring(c), file_fd(f, FILE_FD_SLOT_DATA), dst,
			       len, off);
		if (n >= 0)
			memset(dst + n, 0, len - (size_t)n);
	}
	file_fds_put(f);
	if (n < 0) {
		rc = (int)n;
		goto out_reader;
	}
	pthread_mutex_lock(&f->lock);
	io_done(f, ch);
	if (c->cfg->verify) {
		if (ch->dirty_seq != seq && ++tries < 100)
			goto again;	/* written meanwhile: read it again */
		rc = verify_blocks(f, idx, hashes, lo, hi);
		if (rc == -EAGAIN && ++tries < 3)
			goto again;
		if (rc < 0)
			goto out_unlock;
		if (buf != dst)
			memcpy(dst, buf + (off - lo), len);
	}
	rc = 0;
	goto out_unlock;
out_put:
	file_fds_put(f);
out_reader:
	pthread_mutex_lock(&f->lock);
	io_done(f, ch);
out_unlock:
	pthread_mutex_unlock(&f->lock);
	return rc < 0 ? rc : (ssize_t)len;
}

/* Queue prefetch of the chunks ahead of a sequential stream. */
static void stream_advance(struct cache_file *f, struct cache_stream *s,
			   uint64_t off, size_t len)
{
	struct cache *c = f->c;
	uint64_t cs = c->cfg->chunk_size, ra = c->cfg->readahead;
	uint64_t end, idx, last, first = 0, n = 0;

	/* Two workers may serve reads of one handle at once: f->lock. */
	pthread_mutex_lock(&f->lock);
	if (off == s->next_off && off) {
		s->seq_count++;
	} else if (off != s->next_off) {
		s->seq_count = 0;
		s->window = 0;
		s->prefetched = 0;
	}
	s->next_off = off + len;
	if (s->seq_count >= 2 && ra) {
		/* The window starts at two chunks, doubles up to readahead. */
		s->window = s->window ? min_u64(s->window * 2, ra) :
					min_u64(2 * cs, ra);
		end = min_u64(s->next_off + s->window, f->size);
		idx = (s->prefetched > s->next_off ? s->prefetched :
						     s->next_off) / cs;
		last = end ? (end - 1) / cs : 0;
		if (end && idx <= last) {
			first = idx;
			n = last - idx + 1;
			s->prefetched = (last + 1) * cs;
		}
	}
	pthread_mutex_unlock(&f->lock);
	for (idx = first; idx < first + n; idx++)
		cache_queue_prefetch(f, idx, s->cred);
}

/* cache_read(), with the stream advanced (advance) or not. */
static ssize_t read_common(struct cache_file *f, struct cache_stream *s,
			   void *buf, size_t size, uint64_t off, bool advance)
{
	struct cache *c = f->c;
	uint64_t fsize = cache_file_size(f), done = 0;
	uint64_t cs = c->cfg->chunk_size;

	if (off >= fsize)
		return 0;
	size = (size_t)min_u64(size, fsize - off);
	if (off + size > cache_max_size(c))
		return -EFBIG;
	if (s && advance)
		stream_advance(f, s, off, size);
	while (done < size) {
		uint64_t pos = off + done, idx = pos / cs;
		size_t piece = (size_t)min_u64(size - done,
					       chunk_start(c, idx + 1) - pos);
		ssize_t n = read_in_chunk(f, idx, (char *)buf + done, pos,
					  piece, s ? s->cred : NULL);

		if (n < 0)
			return done ? (ssize_t)done : n;
		done += (uint64_t)n;
	}
	atomic_fetch_add(&c->bytes_read_cache, done);
	cache_evict_maybe(c);
	return (ssize_t)done;
}

ssize_t cache_read(struct cache_file *f, struct cache_stream *s, void *buf,
		   size_t size, uint64_t off)
{
	return read_common(f, s, buf, size, off, true);
}

ssize_t cache_read_after_pin(struct cache_file *f, struct cache_stream *s,
			     void *buf, size_t size, uint64_t off)
{
	return read_common(f, s, buf, size, off, false);
}

/*
 * The memory pins of cache_read_pin(), f->lock held: from the buffer of
 * the fetch of ch in flight, if all of the range came from it (mask),
 * or from the buffer of its last fetch (kept_pin()).  Returns true with
 * *pin filled.
 */
static bool pin_mem(struct cache_file *f, struct chunk *ch, uint64_t idx,
		    uint64_t mask, uint64_t off, size_t size,
		    struct cache_pin *pin)
{
	uint64_t at = off - chunk_start(f->c, idx);
	const char *src;
	struct rbuf *rb;

	if (ch->fetching) {
		src = fetch_pin(ch, mask);	/* the fetch waits for the reply */
		if (!src)
			return false;
		*pin = (struct cache_pin){ .f = f, .ch = ch, .fd = -1,
					   .mem = src + at, .off = off,
					   .len = size };
		atomic_fetch_add(&f->c->reads_from_fetch, 1);
		return true;
	}
	rb = kept_pin(f, ch, mask);
	if (!rb)
		return false;
	*pin = (struct cache_pin){ .f = f, .rb = rb, .fd = -1,
				   .mem = rbuf_data(rb) + at, .off = off,
				   .len = size };
	atomic_fetch_add(&f->c->reads_kept, 1);
	return true;
}

ssize_t cache_read_pin(struct cache_file *f, struct cache_stream *s,
		       size_t size, uint64_t off, struct cache_pin *pin)
{
	struct cache *c = f->c;
	uint64_t cs = c->cfg->chunk_size, idx = off / cs, mask, fsize;
	struct chunk *ch;
	struct stat st;

	fsize = cache_file_size(f);
	if (off >= fsize)
		return 0;
	size = (size_t)min_u64(size, fsize - off);
	/* First, whatever follows: the prefetch of what comes next goes
	 * out before this read waits for anything. */
	if (s)
		stream_advance(f, s, off, size);
	if ((off + size - 1) / cs != idx)
		return -EAGAIN;
	mask = range_blocks(c, off - chunk_start(c, idx),
			    off + size - chunk_start(c, idx));
	pthread_mutex_lock(&f->lock);
	for (;;) {
		ch = idx < f->nchunks ? f->chunks[idx] : NULL;
		if (!ch || ch->writers || off + size > f->size)
			goto again;
		/* The bytes in memory: a fetch's, in flight or kept.  A
		 * fetch of blocks this read needs is waited for here, as the
		 * copying path would (ensure_present()). */
		if (pin_mem(f, ch, idx, mask, off, size, pin)) {
			ch->lru_stamp = atomic_fetch_add(&c->lru_clock, 1);
			pthread_mutex_unlock(&f->lock);
			return (ssize_t)size;
		}
		if (!ch->fetching || ch->fbuf || !(mask & ~ch->present))
			break;
		pthread_cond_wait(&f->cond, &f->lock);
	}
	/* verify=on: the bytes must be checked on the way */
	if (ch->fetching || (mask & ~ch->present) || c->cfg->verify)
		goto again;
	ch->readers++;
	f->inflight++;
	ch->lru_stamp = atomic_fetch_add(&c->lru_clock, 1);
	pthread_mutex_unlock(&f->lock);

	/* The descriptor stays taken until cache_read_unpin(). */
	if (file_fds_get(f, FILE_FD_DATA) < 0)
		goto again_io;
	/* A splice stops at the cache file's end: it must hold the range. */
	if (fstat(file_fd(f, FILE_FD_SLOT_DATA), &st) < 0 ||
	    (uint64_t)st.st_size < off + size) {
		file_fds_put(f);
		goto again_io;
	}
	*pin = (struct cache_pin){ .f = f, .ch = ch,
				   .fd = file_fd(f, FILE_FD_SLOT_DATA),
				   .off = off, .len = size };
	return (ssize_t)size;
again_io:
	pthread_mutex_lock(&f->lock);
	io_done(f, ch);
again:
	pthread_mutex_unlock(&f->lock);
	return -EAGAIN;
}

void cache_read_unpin(struct cache_pin *pin)
{
	struct cache_file *f = pin->f;

	if (pin->rb) {
		rbuf_unpin(pin->rb);
	} else if (pin->mem) {
		pthread_mutex_lock(&f->lock);
		fetch_unpin(f, pin->ch);
		pthread_mutex_unlock(&f->lock);
	} else {
		file_fds_put(f);
		pthread_mutex_lock(&f->lock);
		io_done(f, pin->ch);
		pthread_mutex_unlock(&f->lock);
		atomic_fetch_add(&f->c->bytes_read_splice, pin->len);
	}
	atomic_fetch_add(&f->c->bytes_read_cache, pin->len);
	cache_evict_maybe(f->c);
}

/* The part of block i that [a, b) (offsets in the chunk) covers, as
 * offsets in the block. */
static void block_part(struct cache *c, unsigned int i, uint64_t a,
		       uint64_t b, uint32_t *lo, uint32_t *hi)
{
	uint64_t bs = c->block_size, s = i * bs;

	*lo = (uint32_t)(a > s ? a - s : 0);
	*hi = (uint32_t)(b < s + bs ? b - s : bs);
}

/*
 * Would writing [a, b) (offsets in the chunk) leave a block of the chunk
 * with two separate dirty ranges?  Only the first and the last block of
 * a write can: the ones between are covered whole.
 */
static bool write_splits_range(struct cache_file *f, const struct chunk *ch,
			       uint64_t a, uint64_t b)
{
	struct cache *c = f->c;
	unsigned int ends[2] = { (unsigned int)(a / c->block_size),
				 (unsigned int)((b - 1) / c->block_size) };
	int k;

	for (k = 0; k < 2; k++) {
		unsigned int i = ends[k];
		uint32_t lo, hi;

		if (!(ch->dirty & (1ULL << i)))
			continue;
		block_part(c, i, a, b, &lo, &hi);
		if (hi < ch->dlo[i] || lo > ch->dhi[i])
			return true;
	}
	return false;
}

/*
 * After resum_blocks(); f->lock held.  A dirty block keeps its dirty
 * range (the write failed: its bytes are unspecified, POSIX says) and
 * takes the sum of what the file holds, so that it can still be
 * uploaded; a clean block may differ from the backend now: it is not
 * present any more and is fetched again when read.
 */
static void write_failed(struct cache_file *f, struct chunk *ch, uint64_t idx,
			 unsigned int first, unsigned int last,
			 const uint64_t *sums, uint64_t ok)
{
	uint64_t stale = 0;
	unsigned int i;

	for (i = first; i <= last; i++) {
		uint64_t bit = 1ULL << i;

		if (ch->dirty & bit) {
			if (ok & bit)
				ch->sums[i] = sums[i];
		} else if (ch->present & bit) {
			stale |= bit;
		}
	}
	if (stale) {
		ch->present &= ~stale;
		ch->mine &= ~stale;
		atomic_fetch_sub(&f->c->used_bytes,
				 popcount64(stale) * f->c->block_size);
	}
	index_store_chunk(f, idx);
}

/*
 * Write [off, off+len), which lies within chunk idx, for the writer wc
 * (interned); f->wlock held.  Each block keeps one dirty byte range, as
 * the NFS client keeps one per page: a write that would leave a gap
 * inside a block's dirty range uploads that range first.  A chunk's dirty
 * data is one writer's, uploaded with its credentials: a write by another
 * uploads it first too.  A partial write does not fetch the rest of
 * its block; the block stays not present (a read fetches and merges).
 */
static int write_in_chunk(struct cache_file *f, uint64_t idx, const char *src,
			  uint64_t off, size_t len, const struct be_cred *wc)
{
	struct cache *c = f->c;
	uint64_t start = chunk_start(c, idx), bs = c->block_size;
	uint64_t a = off - start, b = a + len;
	uint64_t mask = range_blocks(c, a, b), partial = 0, beyond, grown = 0;
	uint64_t sums[CACHE_BLOCKS], olddirty, newsize, resummed = 0;
	unsigned int first = (unsigned int)(a / bs);
	unsigned int last = (unsigned int)((b - 1) / bs), i;
	struct chunk *ch;
	char *tmp = NULL;
	bool written = false;
	ssize_t n;
	int rc;

	if (a % bs)
		partial |= 1ULL << first;
	if (b % bs)
		partial |= 1ULL << last;

	pthread_mutex_lock(&f->lock);
again:
	ch = file_chunk(f, idx, true);
	if (!ch) {
		rc = -ENOMEM;
		goto out_unlock;
	}
	if (ch->fetching) {
		pthread_cond_wait(&f->cond, &f->lock);
		goto again;
	}
	if ((partial && write_splits_range(f, ch, a, b)) ||
	    (ch->dirty && ch->wcred != wc)) {
		if (ch->flushing) {
			pthread_cond_wait(&f->cond, &f->lock);
			goto again;
		}
		rc = file_flush_chunk_now(f, idx);
		if (rc < 0)
			goto out_unlock;
		atomic_fetch_add(&c->flushes_before_write, 1);
		goto again;
	}
	ch->dirty_seq++;
	ch->readers++;
	ch->writers++;
	ch->wmask = mask;	/* writers are serialised by f->wlock */
	f->inflight++;
	pthread_mutex_unlock(&f->lock);

	rc = file_fds_get(f, FILE_FD_DATA);
	if (rc < 0)
		goto out_reader;
	n = ring_pwrite(cache_ring(c), file_fd(f, FILE_FD_SLOT_DATA), src, len,
			off);
	file_fds_put(f);
	written = true;
	if (n < 0) {
		rc = (int)n;
		goto out_reader;
	}
	for (i = first; i <= last; i++) {
		uint64_t boff = start + i * bs;

		if (partial & (1ULL << i)) {
			/* The sum covers the whole block as it is stored. */
			if (!tmp && !(tmp = aligned_alloc(4096, bs))) {
				rc = -ENOMEM;
				goto out_reader;
			}
			rc = block_sum_from_file(f, boff, tmp, &sums[i]);
			if (rc < 0)
				goto out_reader;
		} else {
			sums[i] = XXH3_64bits(src + (boff - off), bs);
		}
	}
	rc = 0;
out_reader:
	if (rc < 0 && written)
		/* A failed write may have stored some of its bytes (a
		 * full cache file system stops it part way, and the engine
		 * reports only the error): take the sums from the file. */
		resummed = resum_blocks(f, start, block_mask(first, last),
					sums);
	pthread_mutex_lock(&f->lock);
	io_done(f, ch);
	ch->wmask = 0;
	if (rc < 0) {
		if (written)
			write_failed(f, ch, idx, first, last, sums, resummed);
		write_done(f, ch);
		goto out_unlock;
	}
	/* Blocks wholly past the backend's data hold zeros but for ours. */
	beyond = ~backend_blocks(f, idx);
	olddirty = ch->dirty;
	/* The file grows: the block it ended in is not all ours any more. */
	if (off + len > f->size)
		file_eof_block_not_mine(f);
	newsize = off + len > f->size ? off + len : f->size;
	for (i = first; i <= last; i++) {
		uint64_t bit = 1ULL << i, before = dirty_len(ch, bit);
		uint32_t lo, hi;
		bool whole;

		block_part(c, i, a, b, &lo, &hi);
		if (ch->dirty & bit) {	/* touching: write_splits_range() */
			lo = lo < ch->dlo[i] ? lo : ch->dlo[i];
			hi = hi > ch->dhi[i] ? hi : ch->dhi[i];
		}
		ch->dirty |= bit;
		ch->zskip &= ~bit;	/* the daemon saw these bytes written */
		chunk_runs_drop(ch, bit);
		ch->dlo[i] = lo;
		ch->dhi[i] = hi;
		ch->sums[i] = sums[i];
		grown += dirty_len(ch, bit) - before;
		whole = range_whole(c, idx, i, lo, hi, newsize);
		if (whole)
			ch->mine |= bit;
		if (!(ch->present & bit) && (whole || (beyond & bit))) {
			ch->present |= bit;
			atomic_fetch_add(&c->used_bytes, bs);
		}
	}
	write_done(f, ch);
	ch->wcred = wc;
	ch->dirty_seq++;
	ch->last_write_us = now_us();
	ch->lru_stamp = atomic_fetch_add(&c->lru_clock, 1);
	atomic_fetch_add(&c->dirty_bytes, grown);
	if (!olddirty)
		f->dirty_chunks++;
	/* A crash must not forget that the file grew (the flusher sends
	 * no byte past f->size): the header goes with the slot. */
	clock_gettime(CLOCK_REALTIME, &f->mtime);
	if (off + len > f->size) {
		f->size = off + len;
		index_store_header(f);
	}
	rc = index_store_chunk(f, idx);
	if (rc == 0 && !ch->journaled) {
		rc = cache_journal(c, JREC_DIRTY, f, idx);
		ch->journaled = rc == 0;
	}
	cache_queue_flush(f, idx);
out_unlock:
	pthread_mutex_unlock(&f->lock);
	free(tmp);
	return rc;
}

static void wait_for_space(struct cache *c)
{
	if (atomic_load(&c->dirty_bytes) <= c->cfg->dirty_max)
		return;
	pthread_mutex_lock(&c->queue_lock);
	while (atomic_load(&c->dirty_bytes) > c->cfg->dirty_max &&
	       !c->stopping)
		pthread_cond_wait(&c->space_cond, &c->queue_lock);
	pthread_mutex_unlock(&c->queue_lock);
}

ssize_t cache_write(struct cache_file *f, const struct be_cred *cred,
		    const void *buf, size_t size, uint64_t off)
{
	struct cache *c = f->c;
	uint64_t cs = c->cfg->chunk_size, done = 0;
	const struct be_cred *wc;
	int rc = 0;

	if (!size)
		return 0;
	if (off + size > cache_max_size(c) || off + size < off)
		return -EFBIG;
	wc = cache_cred(c, cred);
	wait_for_space(c);
	pthread_mutex_lock(&f->wlock);
	while (done < size) {
		uint64_t pos = off + done, idx = pos / cs;
		size_t piece = (size_t)min_u64(size - done,
					       chunk_start(c, idx + 1) - pos);

		rc = write_in_chunk(f, idx, (const char *)buf + done, pos,
				    piece, wc);
		if (rc < 0)
			break;
		done += piece;
	}
	pthread_mutex_unlock(&f->wlock);
	atomic_fetch_add(&c->bytes_written, done);
	if (!c->cfg->writeback && done)
		rc = cache_file_flush(f);
	cache_evict_maybe(c);
	if (rc < 0 && !done)
		return rc;
	return rc < 0 ? rc : (ssize_t)done;
}

/*
 * The file's end moves (or another node's view of it differs): the block
 * the file ended in, if it ends inside one, held zeros past the end that
 * this node did not write.  f->lock held.
 */
void file_eof_block_not_mine(struct cache_file *f)
{
	struct cache *c = f->c;
	uint64_t idx = f->size / c->cfg->chunk_size;

	if (f->size % c->block_size && idx < f->nchunks && f->chunks[idx])
		f->chunks[idx]->mine &= ~(1ULL << ((f->size % c->cfg->chunk_size) /
						   c->block_size));
}

/* Punch the blocks in mask of chunk idx out of the cache file. */
int punch_blocks(struct cache_file *f, uint64_t idx, uint64_t mask)
{
	struct cache *c = f->c;
	int rc;

	if (!mask)
		return 0;
	rc = file_fds_get(f, FILE_FD_DATA);
	if (rc < 0)
		return rc;
	if (idx < f->nchunks && f->chunks[idx])
		f->chunks[idx]->leftover &= ~mask;
	for (; mask; mask &= mask - 1) {
		unsigned int b = (unsigned int)__builtin_ctzll(mask);

		fallocate(file_fd(f, FILE_FD_SLOT_DATA),
			  FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			  (off_t)(chunk_start(c, idx) + b * c->block_size),
			  (off_t)c->block_size);
	}
	file_fds_put(f);
	return 0;
}

/*
 * Forget present, clean data of chunks from from_chunk on, punching the
 * cache file.  Dirty blocks are kept.  f->lock held; used by evict.
 */
void file_drop_clean(struct cache_file *f, uint64_t from_chunk)
{
	struct cache *c = f->c;
	uint64_t idx;

	for (idx = from_chunk; idx < f->nchunks; idx++) {
		struct chunk *ch = f->chunks[idx];
		uint64_t drop;

		if (!ch || !ch->present || ch->readers || ch->fetching ||
		    f->pt_users)
			continue;
		drop = ch->present & ~ch->dirty;
		if (!drop)
			continue;
		if (punch_blocks(f, idx, drop) < 0)
			continue;	/* kept: still present and valid */
		ch->present &= ~drop;
		ch->mine &= ~drop;
		atomic_fetch_sub(&c->used_bytes, popcount64(drop) * c->block_size);
		index_store_chunk(f, idx);
	}
}

/* file_drop_stale() of chunk idx (not NULL); f->lock held. */
static void chunk_drop_stale(struct cache_file *f, uint64_t idx)
{
	struct cache *c = f->c;
	struct chunk *ch = f->chunks[idx];
	uint64_t full = 0, drop, m;

	/* A passthrough writer's block sent as runs, or without its zero
	 * runs, holds bytes between that are not this node's: fetched again
	 * around them (overlay_dirty()). */
	for (m = ch->dirty & ~ch->pt_runs_mask & ~ch->zskip; m; m &= m - 1) {
		unsigned int b = (unsigned int)__builtin_ctzll(m);

		if (range_whole(c, idx, b, ch->dlo[b], ch->dhi[b], f->size))
			full |= 1ULL << b;
	}
	drop = ch->present & ~full & ~ch->mine;
	if (!drop)
		return;
	if (!ch->readers && !ch->fetching && !f->pt_users)
		punch_blocks(f, idx, drop & ~ch->dirty);
	else
		ch->leftover |= drop & ~ch->dirty;
	ch->present &= ~drop;
	atomic_fetch_sub(&c->used_bytes, popcount64(drop) * c->block_size);
	index_store_chunk(f, idx);
}

/*
 * The backend's file changed in a way this node did not make (or cannot
 * tell from its own): forget every cached byte that may be stale, in the
 * loaded chunks and in the slots of chunks not loaded (which never hold
 * dirty data).  Kept: the dirty ranges, the blocks they cover whole, and
 * the blocks this node wrote whole since its last settled generation
 * (ch->mine).  A fill in flight is discarded (trunc_seq).  A block with
 * I/O on it keeps its bytes, but not its present bit: it is fetched
 * again before it is read.  f->lock held.
 */
void file_drop_stale(struct cache_file *f)
{
	uint64_t idx, from = 0, nslots = index_nslots(f);

	f->trunc_seq++;
	for (idx = 0; idx < f->nchunks; idx++) {
		if (!f->chunks[idx])
			continue;
		if (!f->pt_users)
			index_forget_chunks(f, from, idx);
		from = idx + 1;
		chunk_drop_stale(f, idx);
	}
	if (from < nslots && !f->pt_users)
		index_forget_chunks(f, from, nslots);
}

int cache_file_truncate(struct cache_file *f, const struct be_cred *cred,
			uint64_t size, struct be_attr *attr)
{
	struct cache *c = f->c;
	struct be_setattr sa = { .valid = BE_SET_SIZE, .size = size };
	uint64_t cs = c->cfg->chunk_size, bs = c->block_size, idx;
	char *tmp = NULL;
	int rc;

	if (size > cache_max_size(c))
		return -EFBIG;
	/*
	 * What a passthrough writer put in the data file is hashed first:
	 * the block holding the new end gets its sum from the data file
	 * below, and would otherwise take the writer's bytes for clean ones
	 * (difftest seed 3675706986: a pt-written block never uploaded).
	 */
	rc = cache_file_pt_sync_writers(f);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&f->wlock);
	/* no rehash between the cut of the pre-image and its blocks' */
	pthread_mutex_lock(&f->rehash_lock);
	pthread_mutex_lock(&f->lock);
	f->trunc_seq++;
	while (f->inflight)
		pthread_cond_wait(&f->cond, &f->lock);
	rc = file_fds_get(f, FILE_FD_DATA);
	if (rc < 0) {
		pthread_mutex_unlock(&f->lock);
		pthread_mutex_unlock(&f->rehash_lock);
		goto out;
	}
	/* Everything wholly past the new end goes, dirty or not. */
	for (idx = size / cs; idx < f->nchunks; idx++) {
		struct chunk *ch = f->chunks[idx];
		uint64_t keep = 0, gone, olddirty, before;

		if (!ch)
			continue;
		if (size > chunk_start(c, idx)) {
			uint64_t nb = (size - chunk_start(c, idx) + bs - 1) / bs;

			keep = nb >= CACHE_BLOCKS ? ~0ULL : (1ULL << nb) - 1;
		}
		before = dirty_len(ch, ~0ULL);
		olddirty = ch->dirty;
		gone = ch->present & ~keep;
		ch->dirty &= keep;
		ch->present &= keep;
		ch->mine &= keep;
		ch->pt_stale &= keep;
		chunk_runs_drop(ch, ~keep);
		/* The block holding the new end: its range and sum change. */
		if (size % bs && size / cs == idx) {
			unsigned int b = (unsigned int)((size % cs) / bs);
			uint64_t bit = 1ULL << b;
			uint32_t end = (uint32_t)(size % bs);

			if ((ch->dirty & bit) && ch->dhi[b] > end)
				ch->dhi[b] = end;
			chunk_runs_drop(ch, bit);
			if ((ch->dirty & bit) && ch->dhi[b] <= ch->dlo[b])
				ch->dirty &= ~bit;
			ch->mine &= ~bit;
			if (((ch->present | ch->dirty) & bit) &&
			    ftruncate(file_fd(f, FILE_FD_SLOT_DATA),
				      (off_t)size) == 0 &&
			    (tmp || (tmp = aligned_alloc(4096, bs))))
				block_sum_from_file(f, chunk_start(c, idx) +
							       b * bs,
						    tmp, &ch->sums[b]);
		}
		atomic_fetch_sub(&c->dirty_bytes,
				 before - dirty_len(ch, ~0ULL));
		atomic_fetch_sub(&c->used_bytes, popcount64(gone) * bs);
		if (olddirty && !ch->dirty)
			f->dirty_chunks--;
		ch->dirty_seq++;
		if (!ch->dirty && ch->journaled) {
			cache_journal(c, JREC_CLEAN, f, idx);
			ch->journaled = false;
		}
		index_store_chunk(f, idx);
	}
	rc = ftruncate(file_fd(f, FILE_FD_SLOT_DATA), (off_t)size) < 0 ?
		     -errno : 0;
	file_fds_put(f);
	file_pt_pre_truncate(f, size);
	pthread_mutex_unlock(&f->rehash_lock);
	if (rc < 0) {
		pthread_mutex_unlock(&f->lock);
		goto out;
	}
	f->size = size;
	if (f->be_size > size)
		f->be_size = size;
	/* The backend changes under us now: no conflict check meanwhile. */
	f->local_change++;
	pthread_mutex_unlock(&f->lock);

	rc = file_be(f)->ops->setattr(file_be(f), cred, f->node, &sa, attr);
	pthread_mutex_lock(&f->lock);
	if (rc == 0) {
		f->be_size = size;
		f->gen = be_attr_gen(attr);	/* our own change */
		index_store_header(f);
	}
	f->local_change--;
	f->local_seq++;
	pthread_mutex_unlock(&f->lock);
out:
	pthread_mutex_unlock(&f->wlock);
	free(tmp);
	pthread_cond_broadcast(&c->space_cond);
	return rc;
}

uint64_t cache_file_size(struct cache_file *f)
{
	uint64_t size;

	pthread_mutex_lock(&f->lock);
	size = f->size;
	pthread_mutex_unlock(&f->lock);
	return size;
}

int cache_file_evict(struct cache_file *f)
{
	pthread_mutex_lock(&f->lock);
	file_drop_clean(f, 0);
	pthread_mutex_unlock(&f->lock);
	return 0;
}

int file_ensure_present(struct cache_file *f, uint64_t idx, uint64_t mask,
			const struct be_cred *cred)
{
	if (!file_chunk(f, idx, true))
		return -ENOMEM;
	return ensure_present(f, idx, mask, NULL, cred);
}

/* Fetches of one chunk that a passthrough writer wrote into meanwhile,
 * before it is left for the writer's next rehash and the next open. */
#define REFETCH_TRIES 8

/* Make every block that holds backend data present; f->lock held. */
int file_fetch_all(struct cache_file *f, const struct be_cred *cred,
		   bool over_writers)
{
	struct cache *c = f->c;
	unsigned int tries = 0;
	uint64_t idx = 0;
	int rc = 0;

	while (idx * c->cfg->chunk_size < f->be_size && rc == 0) {
		/* A passthrough writer's bytes not yet hashed are not
		 * present, and must not be fetched over. */
		if (f->pt_writers && !over_writers) {
			idx++;
			continue;
		}
		rc = file_ensure_present(f, idx, ~0ULL, cred);
		if (rc != -EAGAIN) {
			tries = 0;
			idx++;
			continue;
		}
		/*
		 * The writer wrote into the chunk while it was fetched
		 * (writer_moved()): its bytes are hashed, kept as dirty
		 * ranges, and the chunk is fetched again around them.  Not
		 * for a caller that leaves the writers' bytes alone (one
		 * came during the fetch): the chunk waits for the next open.
		 */
		rc = 0;
		if (!over_writers || ++tries > REFETCH_TRIES) {
			log_msg(LOG_LVL_INFO, "cache",
				"file %llx chunk %llu: a passthrough writer keeps writing it; left as it is until the next open",
				(unsigned long long)f->fileid,
				(unsigned long long)idx);
			tries = 0;
			idx++;
			continue;
		}
		pthread_mutex_unlock(&f->lock);
		rc = file_pt_rehash(f, idx, idx + 1);
		if (rc == -EBUSY)
			rc = 0;	/* the kernel still writes it: try again */
		pthread_mutex_lock(&f->lock);
		if (rc == 0 && idx < f->nchunks && f->chunks[idx])
			chunk_drop_stale(f, idx);
	}
	return rc;
}

int cache_file_prefetch(struct cache_file *f, const struct be_cred *cred)
{
	int rc;

	pthread_mutex_lock(&f->lock);
	rc = file_fetch_all(f, cred, false);
	pthread_mutex_unlock(&f->lock);
	cache_evict_maybe(f->c);
	return rc;
}
