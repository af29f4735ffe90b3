/* SPDX-License-Identifier: GPL-2.0 */
/*
 * flush.c - the upload (flusher) and prefetch threads.
 *
 * A flusher takes one dirty chunk at a time from the queue, reads its
 * dirty blocks from the cache file, checks their checksums, writes them
 * to the backend and commits them, and only then marks them clean.  A
 * chunk written to while it was uploading stays dirty and goes round
 * again.  A failed upload is retried with exponential backoff for as long
 * as it takes; nothing dirty is ever dropped, except the data of a file
 * the backend no longer has (ESTALE, ENOENT after an unlink).  A COMMIT
 * that answers -EAGAIN (the server restarted and lost some of the batch's
 * unstable writes) is no failure: the chunks go back to the queue at
 * once, are written again and committed again, counted in
 * flush_rewrites.
 *
 * Thread safety: each thread owns its ring; shared state is under the
 * locks named in cache_int.h.
 */
#include "cache_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

static struct flush_item *pop(pthread_mutex_t *lock, pthread_cond_t *cond,
			      struct flush_item **head,
			      struct flush_item **tail, atomic_bool *stopping)
{
	struct flush_item *it;

	pthread_mutex_lock(lock);
	while (!*head && !*stopping)
		pthread_cond_wait(cond, lock);
	it = *head;
	if (it) {
		*head = it->next;
		if (!*head)
			*tail = NULL;
	}
	pthread_mutex_unlock(lock);
	return it;
}

/* Errors that mean "the object is gone": its dirty data has no home. */
static bool err_gone(int err)
{
	return err == -ESTALE || err == -ENOENT;
}

/* Errors that waiting will not cure: reported to fsync and close. */
static bool err_permanent(int err)
{
	return err == -ENOSPC || err == -EDQUOT || err == -EFBIG ||
	       err == -EROFS || err == -EACCES || err == -EPERM;
}

/* Drop every dirty block of a file whose backend object vanished. */
static void file_gone(struct cache_file *f)
{
	struct cache *c = f->c;
	uint64_t idx, dropped = 0;

	f->gone = true;
	for (idx = 0; idx < f->nchunks; idx++) {
		struct chunk *ch = f->chunks[idx];

		if (!ch || !ch->dirty)
			continue;
		dropped += dirty_len(ch, ~0ULL);
		ch->dirty = 0;
		ch->journaled = false;
		index_store_chunk(f, idx);
	}
	f->dirty_chunks = 0;
	atomic_fetch_sub(&c->dirty_bytes, dropped);
	if (!dropped)
		return;
	cache_journal(c, JREC_DROP, f, 0);
	log_msg(LOG_LVL_INFO, "flush",
		"file %llx is gone from the backend; dropped %llu dirty bytes",
		(unsigned long long)f->fileid, (unsigned long long)dropped);
}

/* A partly written chunk rests this long before it is uploaded. */
#define FLUSH_REST_US 200000

/*
 * An upload step ends, maybe with the file's dirty data dropped (the
 * file is gone from the backend): wake whoever waits on the file and the
 * writers waiting for space, and unlock f->lock.  Returns rc.
 */
static int dropped_unlock(struct cache_file *f, int rc)
{
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);
	pthread_cond_broadcast(&f->c->space_cond);
	return rc;
}

/* One chunk's upload, from flush_upload() to flush_finish(). */
struct upload {
	uint64_t idx;
	uint64_t mask;		/* the dirty blocks it sent */
	uint64_t whole;		/* ... of them, those dirty from end to end */
	uint64_t seq;		/* ch->dirty_seq when it started */
	uint64_t sent;		/* bytes written to the backend */
	const struct be_cred *cred;	/* the writer's: WRITE and COMMIT */
	struct be_range span;	/* from the first byte sent to the last */
	bool started;		/* flush_finish() must run */
	bool rehash;		/* -EBUSY: a passthrough writer changed a
				 * block since its hash: hash it again */
	bool corrupt;		/* -EIO: a dirty block fails its checksum */
};

/* The WRITEs of one chunk's upload, joined where they touch. */
struct seg_writer {
	struct cache *c;
	struct be *be;
	struct be_node *node;
	const struct be_cred *cred;	/* the writer's */
	const char *buf;	/* the chunk's bytes */
	uint64_t start;		/* file offset of buf[0] */
	uint64_t off, len;	/* the segment not yet sent */
	uint64_t sent;
	uint64_t first, end;	/* the first byte sent, and past the last */
	int rc;
};

static void seg_flush(struct seg_writer *w)
{
	uint64_t t0 = now_us();
	ssize_t n;

	if (!w->len || w->rc)
		return;
	n = be_pwrite(w->be, w->cred, w->node, w->buf + (w->off - w->start), w->len,
		      w->off);
	hist_add(w->c->be_write_us, t0);
	if (n < 0) {
		w->rc = (int)n;
	} else {
		if (!w->sent)
			w->first = w->off;
		w->end = w->off + w->len;
		w->sent += w->len;
	}
	w->len = 0;
}

static void seg_add(struct seg_writer *w, uint64_t s, uint64_t t)
{
	if (t <= s || w->rc)
		return;
	if (w->len && w->off + w->len == s) {
		w->len += t - s;
		return;
	}
	seg_flush(w);
	w->off = s;
	w->len = t - s;
}

/*
 * [s, t) of a block written onto zeros by a passthrough writer: send it
 * without its zero runs of ZSKIP_MIN bytes or more, which this node did
 * not change.  The file's last byte always goes, for the file's size.
 */
static void seg_add_nonzero(struct seg_writer *w, uint64_t s, uint64_t t,
			    uint64_t size)
{
	uint64_t p = s - w->start, x = p, e = t - w->start, z;

	while (x < e) {
		x = zero_run_next(w->buf, x, e, &z);
		if (z == e)
			break;
		seg_add(w, w->start + p, w->start + z);
		p = w->start + x == size ? x - 1 : x;
	}
	seg_add(w, w->start + p, t);
}

/*
 * Write the dirty ranges of one chunk to the backend, unstable: the chunk
 * stays dirty and flushing until flush_finish().  Only the bytes this
 * node wrote go out, never cached bytes around them: other nodes may be
 * writing those.  Adjacent ranges (a range to the end of its block, the
 * next from the start of its own) go out as one WRITE.  force: no rest
 * for a chunk still being filled.  Returns 0, or -EBUSY or -EAGAIN when
 * it must go round again, or the backend's error.
 */
static int flush_upload(struct cache_file *f, uint64_t idx, char *buf,
			bool force, struct upload *up)
{
	struct cache *c = f->c;
	struct be *be = file_be(f);
	uint64_t bs = c->block_size, start = chunk_start(c, idx);
	uint64_t sums[CACHE_BLOCKS], mask, seq, size, sent = 0, m, zskip, bad = 0;
	uint64_t runs_mask;
	struct pt_run *runs = NULL;
	uint32_t nruns = 0, r;
	uint32_t lo[CACHE_BLOCKS], hi[CACHE_BLOCKS];
	struct seg_writer w;
	struct chunk *ch;
	unsigned int b, e;
	int rc = 0;

	memset(up, 0, sizeof(*up));
	up->idx = idx;

	pthread_mutex_lock(&f->lock);
	ch = idx < f->nchunks ? f->chunks[idx] : NULL;
	if (ch)
		ch->queued = false;
	if (ch && ch->dirty && f->gone)
		file_gone(f);	/* written after the backend lost it */
	if (!ch || !ch->dirty || ch->flushing || f->gone) {
		pthread_mutex_unlock(&f->lock);
		return 0;
	}
	/* A write is between its bytes and its sums: come back later. */
	if (ch->writers) {
		pthread_mutex_unlock(&f->lock);
		return -EBUSY;
	}
	/*
	 * A chunk still being filled by a sequential writer would be sent
	 * again and again: wait until it is full or has rested, unless
	 * someone waits for the data or dirty data presses.
	 */
	if (!force && dirty_len(ch, ~0ULL) != c->cfg->chunk_size &&
	    now_us() - ch->last_write_us < FLUSH_REST_US &&
	    !f->flush_waiters && !atomic_load(&c->flush_all_waiters) &&
	    !atomic_load(&c->stopping) &&
	    atomic_load(&c->dirty_bytes) < c->cfg->dirty_max / 2) {
		pthread_mutex_unlock(&f->lock);
		return -EBUSY;
	}
	mask = ch->dirty;
	seq = ch->dirty_seq;
	size = f->size;
	memcpy(sums, ch->sums, sizeof(sums));
	memcpy(lo, ch->dlo, sizeof(lo));
	memcpy(hi, ch->dhi, sizeof(hi));
	zskip = ch->zskip;
	/* The blocks sent as runs (passthrough.c): their runs, as now. */
	runs_mask = ch->pt_runs_mask & mask;
	if (runs_mask) {
		runs = malloc(ch->pt_nruns * sizeof(*runs));
		if (runs) {
			memcpy(runs, ch->pt_runs, ch->pt_nruns * sizeof(*runs));
			nruns = ch->pt_nruns;
		} else {
			runs_mask = 0;	/* the whole ranges: more, not less */
		}
	}
	ch->flushing = true;
	ch->readers++;
	f->inflight++;
	up->started = true;
	up->cred = ch->wcred;
	up->mask = mask;
	up->seq = seq;
	for (m = mask; m; m &= m - 1) {
		b = (unsigned int)__builtin_ctzll(m);
		if (range_whole(c, idx, b, lo[b], hi[b], size) &&
		    !((zskip | runs_mask) & (1ULL << b)))
			up->whole |= 1ULL << b;
	}
	pthread_mutex_unlock(&f->lock);
	rc = file_fds_get(f, FILE_FD_DATA);
	if (rc < 0) {
		free(runs);
		return rc;	/* flush_finish() leaves it dirty */
	}

	/* Read and check the dirty blocks, run by run. */
	for (b = 0; b < CACHE_BLOCKS && rc == 0; b = e) {
		uint64_t off, len;
		ssize_t n;
		unsigned int i;

		if (!(mask & (1ULL << b))) {
			e = b + 1;
			continue;
		}
		for (e = b; e < CACHE_BLOCKS && (mask & (1ULL << e)); e++)
			;
		off = start + b * bs;
		len = (e - b) * bs;
		n = ring_pread(cache_ring(c), data_fd(f, buf + b * bs, off, len),
			       buf + b * bs, len, off);
		if (n < 0) {
			rc = (int)n;
			break;
		}
		memset(buf + b * bs + n, 0, len - (size_t)n);
		for (i = b; i < e; i++) {
			if (XXH3_64bits(buf + i * bs, bs) == sums[i])
				continue;
			pthread_mutex_lock(&f->lock);
			rc = ch->dirty_seq != seq || ch->writers ||
				     ch->fetching ? -EAGAIN :
			     f->pt_unsynced ? -EBUSY :	/* the kernel writes it:
							 * the next rehash */
								   -EIO;
			pthread_mutex_unlock(&f->lock);
			up->rehash = rc == -EBUSY;
			if (rc != -EIO)
				break;
			/* Only this block stays behind: the others go. */
			atomic_fetch_add(&c->checksum_errors, 1);
			log_msg(LOG_LVL_ERR, "flush",
				"file %llx offset %llu: dirty block fails its checksum; not uploading it",
				(unsigned long long)f->fileid,
				(unsigned long long)(start + i * bs));
			bad |= 1ULL << i;
			rc = 0;
		}
	}
	file_fds_put(f);	/* the bytes are in buf */
	if (bad) {
		mask &= ~bad;
		up->mask = mask;
		up->whole &= mask;
		up->corrupt = true;
		if (!mask && rc == 0)
			rc = -EIO;
	}
	/* Send the ranges, joined where they touch, no further than EOF. */
	w = (struct seg_writer){ .c = c, .be = be, .node = f->node,
				 .cred = up->cred, .buf = buf, .start = start };
	for (m = mask; m && rc == 0 && w.rc == 0; m &= m - 1) {
		uint64_t s, t;

		b = (unsigned int)__builtin_ctzll(m);
		s = start + b * bs + lo[b];
		t = start + b * bs + hi[b];
		if (t > size)
			t = size;
		if (zskip & (1ULL << b)) {
			seg_add_nonzero(&w, s, t, size);
		} else if (runs_mask & (1ULL << b)) {
			for (r = 0; r < nruns; r++) {
				uint64_t rs = start + b * bs + runs[r].lo;
				uint64_t rt = start + b * bs + runs[r].hi;

				if (runs[r].b == b)
					seg_add(&w, rs, rt < t ? rt : t);
			}
		} else {
			seg_add(&w, s, t);
		}
	}
	free(runs);
	if (rc == 0)
		seg_flush(&w);
	if (rc == 0)
		rc = w.rc;
	sent = w.sent;
	up->sent = sent;
	up->span = (struct be_range){ .off = w.first, .len = w.end - w.first };
	return rc;
}

/*
 * After the commit that covers it (rc is the upload's or the commit's
 * result): mark the chunk clean, or leave it dirty for another round.
 * Returns rc, or -EAGAIN if the chunk was written to meanwhile.
 */
static int flush_finish(struct cache_file *f, struct upload *up, int rc)
{
	struct cache *c = f->c;
	uint64_t bs = c->block_size, mask = up->mask, seq = up->seq;
	uint64_t sent = up->sent, idx = up->idx;
	struct chunk *ch;

	pthread_mutex_lock(&f->lock);
	ch = f->chunks[idx];	/* the array may move; the chunk does not */
	ch->flushing = false;
	ch->readers--;
	f->inflight--;
	if (rc == 0) {
		f->upload_seq++;
		atomic_fetch_add(&c->bytes_flushed, sent);
		if (ch->dirty_seq == seq) {
			uint64_t cleaned = ch->dirty & mask;
			uint64_t part = cleaned & ~up->whole;

			atomic_fetch_sub(&c->dirty_bytes,
					 dirty_len(ch, cleaned));
			ch->dirty &= ~mask;
			ch->zskip &= ~mask;
			chunk_runs_drop(ch, mask);
			/*
			 * A block this node wrote only in part may hold
			 * cached bytes that other nodes have changed since:
			 * it is not trusted any more.  Its written bytes
			 * are on the backend now.
			 */
			if ((ch->present & part) && !f->pt_users) {
				atomic_fetch_sub(&c->used_bytes,
						 popcount64(ch->present & part) *
							 bs);
				ch->present &= ~part;
				ch->mine &= ~part;
			}
			if (!ch->readers && !ch->fetching && !f->pt_users)
				punch_blocks(f, idx, part);
			/* file_gone() may have cleaned it already. */
			if (cleaned && !ch->dirty) {
				f->dirty_chunks--;
				if (ch->journaled)
					cache_journal(c, JREC_CLEAN, f, idx);
				ch->journaled = false;
			}
			index_store_chunk(f, idx);
			if (f->size > f->be_size)
				f->be_size = f->size;
		} else {
			rc = -EAGAIN;
		}
		f->flush_error = 0;
		/* The rest went; a block that fails its checksum stays, and
		 * the chunk goes back for another round, as a failure. */
		if (rc == 0 && up->corrupt)
			f->flush_error = rc = -EIO;
	} else if (err_gone(rc)) {
		file_gone(f);
		rc = 0;
	} else if (rc != -EAGAIN) {
		/* Waiting cures neither; a close or fsync waiting for the
		 * file returns it instead of waiting for ever. */
		if (err_permanent(rc) || up->corrupt)
			f->flush_error = rc;
	}
	return dropped_unlock(f, rc);
}

/*
 * The file is clean and attr is the backend's view after this node's
 * uploads; f->lock held.  The generation moved by this node's writes, and
 * maybe by another node's between them (a change after them is not in
 * attr: upload_attr()): the two cannot be told apart, so every cached
 * block this node did not write whole since the file was last opened here
 * is dropped (it is fetched again when read), and the blocks it did write
 * are kept.
 */
static void settle_gen(struct cache_file *f, const struct be_attr *attr)
{
	struct be_gen gen = be_attr_gen(attr);

	if (attr->size != f->size)
		file_eof_block_not_mine(f);	/* grown or cut elsewhere */
	if (!be_gen_equal(&gen, &f->gen))
		file_drop_stale(f);
	f->gen = gen;
	f->gen_upload_seq = f->upload_seq;
	f->be_size = f->size = attr->size;
	index_store_header(f);
}

/*
 * The backend's view of f after this node's uploads: what the reply to
 * their commit carried, if the backend kept it (no request, and no window
 * in which another node's later change passes for ours); else asked now.
 */
static int upload_attr(struct cache_file *f, struct be_attr *attr)
{
	struct be *be = file_be(f);

	if (be->ops->committed_attr &&
	    be->ops->committed_attr(be, f->node, attr) == 0)
		return 0;
	return be->ops->getattr(be, NULL, f->node, attr);
}

/*
 * f is clean, nothing of it in flight, and neither an upload nor a change
 * of this node's came since upload_seq and local_seq were seq and lseq;
 * f->lock held.
 */
static bool unchanged_since(const struct cache_file *f, uint64_t seq,
			    uint64_t lseq)
{
	return !f->dirty_chunks && !f->inflight && f->upload_seq == seq &&
	       !f->local_change && f->local_seq == lseq;
}

/* After the last dirty chunk: remember the backend's new generation. */
void file_refresh_gen(struct cache_file *f)
{
	struct be_attr attr;
	uint64_t seq, lseq;
	bool clean;

	pthread_mutex_lock(&f->lock);
	clean = !f->dirty_chunks && !f->gone && !f->local_change;
	seq = f->upload_seq;
	lseq = f->local_seq;
	pthread_mutex_unlock(&f->lock);
	if (!clean || upload_attr(f, &attr))
		return;
	pthread_mutex_lock(&f->lock);
	/*
	 * An upload, or a truncate or utimens of this node's, after our
	 * getattr would make its answer stale: it would put back the
	 * generation from before that change, and the next upload's check
	 * would take this node's own change for another client's.
	 */
	if (!unchanged_since(f, seq, lseq)) {
		pthread_mutex_unlock(&f->lock);
		return;
	}
	if (f->pt_writers) {
		/*
		 * A passthrough writer is still growing the file: its size
		 * and generation are settled at its end (file_settle_pt()),
		 * with what the backend says now, right after the uploads.
		 * Asked at the end instead, the backend would give another
		 * node's change made between this writer's close and its
		 * release for this node's own.
		 */
		f->snap = attr;
		f->snap_upload_seq = seq;
		f->snap_local_seq = lseq;
		f->snap_set = true;
	} else {
		settle_gen(f, &attr);
	}
	pthread_mutex_unlock(&f->lock);
}

/*
 * The last passthrough writer is done and what it wrote is hashed: settle
 * the generation its uploads made.  With the attributes taken right after
 * them if nothing was uploaded or changed here since; else by asking now.
 */
void file_settle_pt(struct cache_file *f)
{
	bool done = false;

	pthread_mutex_lock(&f->lock);
	if (f->upload_seq == f->gen_upload_seq) {
		done = true;	/* no upload since the generation was set */
	} else if (f->snap_set && !f->pt_writers && !f->gone &&
		   unchanged_since(f, f->snap_upload_seq, f->snap_local_seq)) {
		settle_gen(f, &f->snap);
		done = true;
	}
	f->snap_set = false;
	pthread_mutex_unlock(&f->lock);
	if (!done)
		file_refresh_gen(f);
}

/* Is chunk idx still dirty (f->lock held)? */
static bool ch_dirty_left(struct cache_file *f, uint64_t idx)
{
	return idx < f->nchunks && f->chunks[idx] && f->chunks[idx]->dirty;
}

static void backoff_sleep(unsigned int failures)
{
	unsigned int ms = 100U << (failures < 8 ? failures : 8);
	struct timespec ts;

	if (ms > 10000)
		ms = 10000;
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (long)(ms % 1000) * 1000000;
	nanosleep(&ts, NULL);
}

/* Chunks of one file uploaded before one COMMIT: 16 x 4 MiB by default. */
#define FLUSH_BATCH 16

/*
 * One COMMIT for the spans that the uploads up[0..n) sent, as the first
 * writer's: it covers every writer's.  Each upload that succeeded takes
 * its result; -EAGAIN (a server restart lost some of the unstable
 * writes) sends the chunk again at once, counted in flush_rewrites.
 * Returns whether anything was sent.
 */
static bool commit_uploads(struct cache_file *f, const struct upload *up,
			   int *rcs, int n)
{
	struct be_range spans[FLUSH_BATCH];
	const struct be_cred *cred = NULL;
	unsigned int nspans = 0;
	int i, crc;

	for (i = 0; i < n; i++) {
		if (!up[i].sent)
			continue;
		if (!nspans)
			cred = up[i].cred;
		spans[nspans++] = up[i].span;
	}
	if (!nspans)
		return false;
	crc = be_commit_ranges(file_be(f), cred, f->node, spans, nspans);
	for (i = 0; i < n && crc < 0; i++) {
		if (rcs[i] != 0)
			continue;
		rcs[i] = crc;
		if (crc == -EAGAIN && up[i].sent)
			atomic_fetch_add(&f->c->flush_rewrites, 1);
	}
	return true;
}

/*
 * An upload that rested (-EBUSY) because a passthrough writer changed a
 * block after its last rehash: hash the chunk again now, or a FLUSH or
 * fsync waiting for the upload would wait for ever for the rehash at
 * release.  True if it did (the upload can go again at once).
 */
static bool rehash_rested(struct cache_file *f, const struct upload *up)
{
	return up->rehash && file_pt_rehash(f, up->idx, up->idx + 1) == 0;
}

int file_flush_chunk_now(struct cache_file *f, uint64_t idx)
{
	struct cache *c = f->c;
	unsigned int failures = 0;
	struct upload up;
	char *buf = cache_buf_alloc(c->cfg->chunk_size);
	int rc;

	if (!buf)
		return -ENOMEM;
	f->flush_waiters++;
	pthread_mutex_unlock(&f->lock);
	for (;;) {
		rc = flush_upload(f, idx, buf, true, &up);
		if (rc == 0)
			commit_uploads(f, &up, &rc, 1);
		if (up.started)
			rc = flush_finish(f, &up, rc);
		if (rc == 0 || rc == -EIO || err_permanent(rc) ||
		    atomic_load(&c->stopping))
			break;
		if (rc == -EAGAIN)
			continue;
		if (rehash_rested(f, &up))
			continue;
		if (rc != -EBUSY)
			atomic_fetch_add(&c->flush_retries, 1);
		backoff_sleep(failures++);
	}
	free(buf);
	if (rc == 0)
		file_refresh_gen(f);
	pthread_mutex_lock(&f->lock);
	f->flush_waiters--;
	if (ch_dirty_left(f, idx))
		cache_queue_flush(f, idx);
	return rc;
}


/* Take more chunks of it->f from the head of the queue. */
static int take_batch(struct cache *c, struct flush_item **batch)
{
	int n = 1;

	pthread_mutex_lock(&c->queue_lock);
	while (n < FLUSH_BATCH && c->qhead && c->qhead->f == batch[0]->f) {
		batch[n++] = c->qhead;
		c->qhead = c->qhead->next;
		if (!c->qhead)
			c->qtail = NULL;
	}
	pthread_mutex_unlock(&c->queue_lock);
	atomic_fetch_sub(&c->queued_chunks, (uint64_t)n);
	return n;
}

/*
 * Count one chunk's round; true if it failed in a way that calls for a
 * pause before the batch is tried again.
 */
static bool round_failed(struct cache *c, struct flush_item *it, int rc,
			 unsigned int failures)
{
	if (rc == 0 || rc == -EAGAIN || rc == -EBUSY)
		return false;
	atomic_fetch_add(&c->flush_retries, 1);
	if (err_permanent(rc) || rc == -EIO)
		atomic_fetch_add(&c->flush_errors, 1);
	log_msg(failures ? LOG_LVL_DEBUG : LOG_LVL_WARN, "flush",
		"upload of file %llx chunk %llu failed: %s; retrying",
		(unsigned long long)it->f->fileid,
		(unsigned long long)it->chunk, strerror(-rc));
	return true;
}

/* Put a chunk that is still dirty back in the queue. */
static void requeue(struct flush_item *it)
{
	pthread_mutex_lock(&it->f->lock);
	cache_queue_flush(it->f, it->chunk);
	pthread_mutex_unlock(&it->f->lock);
}

/*
 * A flusher uploads a batch of chunks of one file, then commits once: a
 * COMMIT makes the server sync the file, and one per chunk made draining
 * disk-bound (docs/performance.md).
 */
void *flusher_main(void *arg)
{
	struct cache *c = arg;
	unsigned int failures = 0;
	struct flush_item *batch[FLUSH_BATCH];
	struct upload up[FLUSH_BATCH];
	int rcs[FLUSH_BATCH];
	/* The thread's registered buffer: read-backs are fixed reads. */
	char *buf = ring_buf(cache_ring(c), c->cfg->chunk_size);

	pthread_setname_np(pthread_self(), "sfs-flush");
	if (!buf) {
		log_msg(LOG_LVL_ERR, "flush", "out of memory for a flusher");
		return NULL;
	}
	while ((batch[0] = pop(&c->queue_lock, &c->queue_cond, &c->qhead,
			       &c->qtail, &c->stopping))) {
		struct cache_file *f = batch[0]->f;
		int i, n = take_batch(c, batch), rested = 0, failed = 0;
		bool stopping, sent;

		for (i = 0; i < n; i++) {
			rcs[i] = flush_upload(f, batch[i]->chunk, buf, false,
					      &up[i]);
			rested += rcs[i] == -EBUSY;
		}
		sent = commit_uploads(f, up, rcs, n);
		/*
		 * Every upload of the batch ends before any rehash: a rehash
		 * waits for f->rehash_lock, which a truncate holds while it
		 * waits for the file's uploads in flight (difftest: a
		 * truncate and a flusher waited for each other for ever).
		 */
		for (i = 0; i < n; i++)
			if (up[i].started)
				rcs[i] = flush_finish(f, &up[i], rcs[i]);
		for (i = 0; i < n; i++) {
			if (rehash_rested(f, &up[i])) {
				rcs[i] = -EAGAIN;
				rested--;
			}
			failed += round_failed(c, batch[i], rcs[i], failures);
		}
		/*
		 * One pause per batch, not per chunk: a batch of 16 failed
		 * chunks once slept 16 growing backoffs in a row, over a
		 * minute and a half, before its last chunk went back.
		 */
		stopping = atomic_load(&c->stopping);
		if (failed && !stopping)
			backoff_sleep(failures++);
		else if (!failed && rested < n)
			failures = 0;
		for (i = 0; i < n; i++) {
			/* closing: failed chunks wait for cache_close's rounds */
			if (rcs[i] == 0 || (stopping && rcs[i] != -EAGAIN &&
					    rcs[i] != -EBUSY))
				continue;
			requeue(batch[i]);
		}
		if (rcs[n - 1] == 0)
			file_refresh_gen(f);
		if (sent)
			cache_evict_maybe(c);
		for (i = 0; i < n; i++) {
			cache_file_put(batch[i]->f);
			free(batch[i]);
		}
		if (rested == n) {
			/* Only resting chunks: do not spin on them. */
			struct timespec ts = { 0, 20 * 1000 * 1000 };

			nanosleep(&ts, NULL);
		}
	}
	return NULL;
}

void *prefetcher_main(void *arg)
{
	struct cache *c = arg;
	struct flush_item *it;

	pthread_setname_np(pthread_self(), "sfs-prefetch");
	while ((it = pop(&c->prefetch_lock, &c->prefetch_cond, &c->phead,
			 &c->ptail, &c->stopping))) {
		struct cache_file *f = it->f;
		struct chunk *ch;

		pthread_mutex_lock(&f->lock);
		ch = file_chunk(f, it->chunk, true);
		if (ch && !ch->fetching && it->chunk * c->cfg->chunk_size <
						   f->be_size)
			file_fetch_chunk(f, it->chunk, true, it->cred);
		pthread_mutex_unlock(&f->lock);
		cache_file_put(f);
		free(it);
		cache_evict_maybe(c);
	}
	return NULL;
}
