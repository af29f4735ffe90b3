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
		dropped += popcount64(ch->dirty) * c->block_size;
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

/*
 * The file changed on the backend since this node cached it, and this
 * node has writes to it that are not uploaded: neither version may be
 * lost.  The backend keeps the other writer's version; this node's data
 * and index files move to cache_dir/conflicts/, and the file starts
 * afresh.  f->lock held.
 */
void file_conflict(struct cache_file *f, const struct be_attr *attr)
{
	struct cache *c = f->c;
	char from[128], to[160];
	uint64_t idx, dirty = 0;
	long now = (long)time(NULL);
	int i;

	for (idx = 0; idx < f->nchunks; idx++) {
		struct chunk *ch = f->chunks[idx];

		if (ch && ch->dirty) {
			dirty += popcount64(ch->dirty) * c->block_size;
			if (ch->journaled)
				cache_journal(c, JREC_CLEAN, f, idx);
		}
	}
	for (i = 0; i < 2; i++) {
		const char *dir = i ? "index" : "data";

		index_file_name(f, dir, from, sizeof(from));
		snprintf(to, sizeof(to), "conflicts/%016llx-%ld.%s",
			 (unsigned long long)f->fileid, now, dir);
		if (renameat(c->dir_fd, from, c->dir_fd, to) < 0)
			log_msg(LOG_LVL_ERR, "flush", "keep aside %s: %s", from,
				strerror(errno));
	}
	log_msg(LOG_LVL_ERR, "flush",
		"conflict: file %llx was changed on the backend by another client while this node held %llu bytes of unflushed writes to it; the backend keeps the other version, this node's version is kept in %s/conflicts/%016llx-%ld.data (block map in .index)",
		(unsigned long long)f->fileid, (unsigned long long)dirty,
		c->cfg->dir, (unsigned long long)f->fileid, now);
	atomic_fetch_add(&c->conflicts, 1);
	atomic_fetch_sub(&c->dirty_bytes, dirty);
	for (idx = 0; idx < f->nchunks; idx++) {
		struct chunk *ch = f->chunks[idx];

		if (!ch)
			continue;
		atomic_fetch_sub(&c->used_bytes,
				 popcount64(ch->present) * c->block_size);
		free(ch);
		f->chunks[idx] = NULL;
	}
	f->dirty_chunks = 0;
	index_close(f);
	if (index_open(f, true) < 0)
		log_msg(LOG_LVL_ERR, "flush", "file %llx: cannot reopen cache files",
			(unsigned long long)f->fileid);
	f->gen = be_attr_gen(attr);
	f->be_size = f->size = attr->size;
	f->trunc_seq++;
	f->episode_checked = false;
	index_store_header(f);
}

/* A partly written chunk rests this long before it is uploaded. */
#define FLUSH_REST_US 200000

/*
 * An upload step ends, maybe with the file's dirty data dropped (gone,
 * or kept aside as a conflict): wake whoever waits on the file and the
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
	uint64_t seq;		/* ch->dirty_seq when it started */
	uint64_t sent;		/* bytes written to the backend */
	struct be_range span;	/* from the first byte sent to the last */
	bool started;		/* flush_finish() must run */
};

/*
 * Write the dirty blocks of one chunk to the backend, unstable: the chunk
 * stays dirty and flushing until flush_finish().  Returns 0, or -EAGAIN
 * when it must go round again, or the backend's error.
 */
static int flush_upload(struct cache_file *f, uint64_t idx, char *buf,
			struct upload *up)
{
	struct cache *c = f->c;
	struct be *be = file_be(f);
	uint64_t bs = c->block_size, start = chunk_start(c, idx);
	uint64_t sums[CACHE_BLOCKS], mask, seq, size, sent = 0;
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
	if (ch->dirty != ~0ULL && now_us() - ch->last_write_us < FLUSH_REST_US &&
	    !f->flush_waiters && !atomic_load(&c->flush_all_waiters) &&
	    !atomic_load(&c->stopping) &&
	    atomic_load(&c->dirty_bytes) < c->cfg->dirty_max / 2) {
		pthread_mutex_unlock(&f->lock);
		return -EBUSY;
	}
	/*
	 * The first upload after a clean open checks that nobody else
	 * changed the file since: no upload passes this gate before the
	 * check is done, so this node's own uploads cannot look like a
	 * change from elsewhere.
	 */
	if (!f->episode_checked) {
		struct be_gen base = f->gen;
		uint64_t lseq = f->local_seq;
		struct be_attr attr;
		struct be_gen now;

		/* One checker; and not while a truncate of ours is under way. */
		if (f->checking || f->local_change) {
			pthread_mutex_unlock(&f->lock);
			return -EBUSY;
		}
		f->checking = true;
		pthread_mutex_unlock(&f->lock);
		rc = be->ops->getattr(be, f->node, &attr);
		now = be_attr_gen(&attr);
		pthread_mutex_lock(&f->lock);
		f->checking = false;
		if (err_gone(rc)) {
			file_gone(f);
			return dropped_unlock(f, 0);
		}
		if (rc < 0) {
			pthread_mutex_unlock(&f->lock);
			return rc;
		}
		if (f->local_change || f->local_seq != lseq) {
			/* Our own change raced with the check: again later. */
			pthread_mutex_unlock(&f->lock);
			return -EBUSY;
		}
		if (!be_gen_equal(&base, &now) && be_gen_equal(&base, &f->gen)) {
			/* Reads and writes of the cache file finish first. */
			while (f->inflight)
				pthread_cond_wait(&f->cond, &f->lock);
			file_conflict(f, &attr);
			return dropped_unlock(f, 0);
		}
		f->episode_checked = true;
		if (!ch->dirty || ch->flushing || f->gone) {
			pthread_mutex_unlock(&f->lock);
			return 0;
		}
	}
	mask = ch->dirty;
	seq = ch->dirty_seq;
	size = f->size;
	memcpy(sums, ch->sums, sizeof(sums));
	ch->flushing = true;
	ch->readers++;
	f->inflight++;
	up->started = true;
	up->mask = mask;
	up->seq = seq;
	pthread_mutex_unlock(&f->lock);

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
			rc = ch->dirty_seq != seq || ch->writers ? -EAGAIN :
								   -EIO;
			pthread_mutex_unlock(&f->lock);
			if (rc == -EIO) {
				atomic_fetch_add(&c->checksum_errors, 1);
				log_msg(LOG_LVL_ERR, "flush",
					"file %llx offset %llu: dirty block fails its checksum; not uploading it",
					(unsigned long long)f->fileid,
					(unsigned long long)(start + i * bs));
			}
			break;
		}
		/* Upload no further than the file's end. */
		if (rc == 0 && off < size) {
			if (off + len > size)
				len = size - off;
			uint64_t t0 = now_us();

			n = be_pwrite(be, f->node, buf + b * bs, len, off);
			hist_add(c->be_write_us, t0);
			if (n < 0) {
				rc = (int)n;
			} else {
				if (!sent)
					up->span.off = off;
				up->span.len = off + len - up->span.off;
				sent += len;
			}
		}
	}
	up->sent = sent;
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

			ch->dirty &= ~mask;
			atomic_fetch_sub(&c->dirty_bytes,
					 popcount64(cleaned) * bs);
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
	} else if (err_gone(rc)) {
		file_gone(f);
		rc = 0;
	} else if (rc != -EAGAIN) {
		if (err_permanent(rc))
			f->flush_error = rc;
	}
	return dropped_unlock(f, rc);
}

/* After the last dirty chunk: remember the backend's new generation. */
static void refresh_gen(struct cache_file *f)
{
	struct be_attr attr;
	uint64_t seq, lseq;
	bool clean;

	pthread_mutex_lock(&f->lock);
	clean = !f->dirty_chunks && !f->gone && !f->local_change;
	seq = f->upload_seq;
	lseq = f->local_seq;
	pthread_mutex_unlock(&f->lock);
	if (!clean || file_be(f)->ops->getattr(file_be(f), f->node, &attr))
		return;
	pthread_mutex_lock(&f->lock);
	/*
	 * An upload, or a truncate or utimens of this node's, after our
	 * getattr would make its answer stale: it would put back the
	 * generation from before that change, and the next upload's check
	 * would take this node's own change for another client's.
	 */
	if (!f->dirty_chunks && !f->inflight && f->upload_seq == seq &&
	    !f->local_change && f->local_seq == lseq) {
		f->gen = be_attr_gen(&attr);
		f->be_size = attr.size;
		index_store_header(f);
	}
	pthread_mutex_unlock(&f->lock);
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
	struct be_range spans[FLUSH_BATCH];
	int rcs[FLUSH_BATCH];
	/* The thread's registered buffer: read-backs are fixed reads. */
	char *buf = ring_buf(cache_ring(c), c->cfg->chunk_size);

	if (!buf) {
		log_msg(LOG_LVL_ERR, "flush", "out of memory for a flusher");
		return NULL;
	}
	while ((batch[0] = pop(&c->queue_lock, &c->queue_cond, &c->qhead,
			       &c->qtail, &c->stopping))) {
		struct cache_file *f = batch[0]->f;
		int i, n = take_batch(c, batch), rested = 0, failed = 0;
		unsigned int nspans = 0;
		bool stopping;

		for (i = 0; i < n; i++) {
			rcs[i] = flush_upload(f, batch[i]->chunk, buf, &up[i]);
			if (up[i].sent)
				spans[nspans++] = up[i].span;
			rested += rcs[i] == -EBUSY;
		}
		if (nspans) {
			int crc = be_commit_ranges(file_be(f), f->node, spans,
						   nspans);

			for (i = 0; i < n && crc < 0; i++) {
				if (rcs[i] != 0)
					continue;
				rcs[i] = crc;
				/* lost by a server restart: send again now */
				if (crc == -EAGAIN && up[i].sent)
					atomic_fetch_add(&c->flush_rewrites, 1);
			}
		}
		for (i = 0; i < n; i++) {
			if (up[i].started)
				rcs[i] = flush_finish(f, &up[i], rcs[i]);
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
			refresh_gen(f);
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

	while ((it = pop(&c->prefetch_lock, &c->prefetch_cond, &c->phead,
			 &c->ptail, &c->stopping))) {
		struct cache_file *f = it->f;
		struct chunk *ch;

		pthread_mutex_lock(&f->lock);
		ch = file_chunk(f, it->chunk, true);
		if (ch && !ch->fetching && it->chunk * c->cfg->chunk_size <
						   f->be_size)
			file_fetch_chunk(f, it->chunk, true);
		pthread_mutex_unlock(&f->lock);
		cache_file_put(f);
		free(it);
		cache_evict_maybe(c);
	}
	return NULL;
}
