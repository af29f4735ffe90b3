/* SPDX-License-Identifier: GPL-2.0 */
/*
 * cache.c - the cache object: the cache dir and its lock, the file table,
 * the work queues, journal replay at start and the drain at stop.
 *
 * Cache dir layout (0700, files 0600):
 *     lock         flock()ed by the daemon that owns the dir; holds its pid
 *     node-id      this node's id (nodeid.c)
 *     journal      which chunks hold dirty data (journal.c)
 *     data/<id>    the cached bytes of one backend file, sparse
 *     index/<id>   its chunk table (index.c)
 *
 * Thread safety: see cache.h for the lock order.
 */
#include "cache_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#define TABLE_SIZE 4096

static void ring_key_free(void *p)
{
	ring_engine_destroy(p);
}

struct ring_engine *cache_ring(struct cache *c)
{
	struct ring_engine *e = pthread_getspecific(c->ring_key);

	if (!e) {
		int rc = ring_engine_init(&e);

		if (rc < 0) {
			/* Without a ring this thread cannot do cache I/O. */
			log_msg(LOG_LVL_ERR, "cache", "io_uring setup: %s",
				strerror(-rc));
			abort();
		}
		pthread_setspecific(c->ring_key, e);
	}
	return e;
}

static size_t key_hash(int be_idx, uint64_t fileid)
{
	uint64_t h = fileid * 0x9e3779b97f4a7c15ULL ^ (uint64_t)be_idx;

	return (size_t)(h >> 20) % TABLE_SIZE;
}

/* Find a file in the table; c->table_lock held. */
/* Find a file; ANY_HKEY matches any handle (the newest entry). */
#define ANY_HKEY (~0ULL)

static struct cache_file *table_find(struct cache *c, int be_idx,
				     uint64_t fileid, uint64_t hkey)
{
	struct cache_file *f = c->table[key_hash(be_idx, fileid)];

	while (f && !(f->be_idx == be_idx && f->fileid == fileid &&
		      (hkey == ANY_HKEY || f->hkey == hkey)))
		f = f->hnext;
	return f;
}

/* The same, with a reference taken; takes c->table_lock itself. */
static struct cache_file *table_get(struct cache *c, int be_idx,
				    uint64_t fileid, uint64_t hkey)
{
	struct cache_file *f;

	pthread_mutex_lock(&c->table_lock);
	f = table_find(c, be_idx, fileid, hkey);
	if (f)
		cache_file_ref(f);
	pthread_mutex_unlock(&c->table_lock);
	return f;
}

struct cache_file *cache_table_find(struct cache *c, int be_idx,
				    uint64_t fileid, uint64_t hkey)
{
	return table_find(c, be_idx, fileid, hkey);
}

ssize_t cache_table_files(struct cache *c, struct cache_file ***out)
{
	struct cache_file **v, *f;
	size_t b, n = 0;

	pthread_mutex_lock(&c->table_lock);
	v = malloc((c->nfiles ? c->nfiles : 1) * sizeof(*v));
	if (!v) {
		pthread_mutex_unlock(&c->table_lock);
		return -ENOMEM;
	}
	for (b = 0; b < TABLE_SIZE; b++)
		for (f = c->table[b]; f && n < c->nfiles; f = f->hnext) {
			cache_file_ref(f);
			v[n++] = f;
		}
	pthread_mutex_unlock(&c->table_lock);
	*out = v;
	return (ssize_t)n;
}

/*
 * Can f leave the table?  Only the table holds it, and it has nothing
 * dirty, in flight or kept in memory alone (a pin, a passthrough writer's
 * state).  *bytes: what its chunks count in used_bytes.  table_lock held.
 */
static bool file_unloadable(struct cache_file *f, uint64_t *bytes)
{
	uint64_t i, blocks = 0;
	bool ok;

	if (atomic_load(&f->refs) != 1 || pthread_mutex_trylock(&f->lock))
		return false;
	ok = !f->dirty_chunks && !f->inflight && !f->pinned && !f->pt_users &&
	     !f->pt_writers && !f->flush_waiters && !f->local_change &&
	     !f->gone;
	for (i = 0; ok && i < f->nchunks; i++) {
		const struct chunk *ch = f->chunks[i];

		if (!ch)
			continue;
		ok = !ch->dirty && !ch->fetching && !ch->flushing &&
		     !ch->queued && !ch->readers && !ch->writers;
		blocks += popcount64(ch->present);
	}
	pthread_mutex_unlock(&f->lock);
	*bytes = blocks * f->c->block_size;
	return ok;
}

/* The most files cache_table_trim() takes at one hold of table_lock. */
#define TRIM_BATCH 512

void cache_table_trim(struct cache *c)
{
	size_t max = c->cfg->mem_files ? c->cfg->mem_files : CACHE_MEM_FILES;
	struct cache_file *out = NULL, *f, **pp;
	size_t n = 0, want, seen, b;
	int64_t now = time(NULL);

	pthread_mutex_lock(&c->table_lock);
	if (c->nfiles <= max) {
		pthread_mutex_unlock(&c->table_lock);
		return;
	}
	/* Down to seven eighths, so that it is not done at every file. */
	want = c->nfiles - (max - max / 8);
	if (want > TRIM_BATCH)
		want = TRIM_BATCH;
	b = c->trim_cursor;
	for (seen = 0; seen < TABLE_SIZE && n < want; seen++) {
		for (pp = &c->table[b]; (f = *pp) && n < want;) {
			uint64_t bytes;

			if (!file_unloadable(f, &bytes)) {
				pp = &f->hnext;
				continue;
			}
			/* Listed before table_lock is dropped: an open
			 * that comes next finds it there (cold_forget). */
			if (!cold_relist(c, spec_hash_of(file_be(f)),
					 f->fileid, f->hkey, bytes, now))
				goto out;
			atomic_fetch_sub(&c->used_bytes, bytes);
			*pp = f->hnext;
			f->in_table = false;
			c->nfiles--;
			f->hnext = out;
			out = f;
			n++;
		}
		b = (b + 1) % TABLE_SIZE;
	}
out:
	c->trim_cursor = b;
	atomic_fetch_add(&c->files_unloaded, n);	/* with files */
	pthread_mutex_unlock(&c->table_lock);
	while ((f = out)) {
		out = f->hnext;
		cache_file_put(f);	/* the table's: the last */
	}
}

/*
 * A file used by someone besides the table (an open handle, a queued
 * upload or prefetch) keeps its descriptors longer than an idle one.
 * The mark follows the 1 <-> 2 transitions of refs; a race between two of
 * them can leave it wrong, which only changes what is closed first.
 */
void cache_file_ref(struct cache_file *f)
{
	if (atomic_fetch_add(&f->refs, 1) == 1 && f->in_table)
		file_fds_busy(f, true);
}

static void file_free(struct cache_file *f)
{
	uint64_t i;

	for (i = 0; i < f->nchunks; i++) {
		if (f->chunks[i])
			free(f->chunks[i]->pt_runs);
		free(f->chunks[i]);
	}
	free(f->chunks);
	if (f->pt_pre_fd >= 0)
		close(f->pt_pre_fd);
	index_close(f);
	be_node_put(file_be(f), f->node);
	pthread_mutex_destroy(&f->lock);
	pthread_mutex_destroy(&f->wlock);
	pthread_mutex_destroy(&f->rehash_lock);
	pthread_cond_destroy(&f->cond);
	free(f);
}

void cache_file_put(struct cache_file *f)
{
	int old;

	if (!f)
		return;
	old = atomic_fetch_sub(&f->refs, 1);
	if (old == 1)
		file_free(f);
	else if (old == 2 && f->in_table)
		file_fds_busy(f, false);
}

/*
 * The journal is compacted when it reaches twice its size after the last
 * compaction, and at least journal_compact (JCOMPACT_MIN by default):
 * every file written leaves a FILE, a DIRTY and a CLEAN record (about 250
 * bytes for a small file), and a daemon that runs for weeks would
 * otherwise grow it without end, to a size start-up refuses to replay
 * (journal.c).
 */
#define JCOMPACT_MIN (4ULL << 20)

static uint64_t next_compaction(struct cache *c)
{
	uint64_t n = 2 * journal_size(c->journal);
	uint64_t min = c->cfg->journal_compact ? c->cfg->journal_compact :
						  JCOMPACT_MIN;

	return n > min ? n : min;
}

/*
 * Rewrite the journal as what it says (jstate.c), from its own records:
 * the table cannot be walked here (journal_lock is taken under
 * f->lock), and the records of files and backends that replay could not
 * act on are kept.  A new epoch: every file writes its FILE record again
 * before its next one.  journal_lock held.
 */
static void journal_compact(struct cache *c)
{
	struct jstate *s = jstate_new(c);
	uint64_t before = journal_size(c->journal), t0 = now_us();
	char err[256] = "";
	int rc = s ? journal_replay(c->journal, jstate_rec, s, err,
				    sizeof(err)) :
		     -ENOMEM;

	if (rc == 0)
		rc = journal_rewrite(c->journal, jstate_emit, s);
	jstate_free(s);
	if (rc == 0) {
		c->jepoch++;
		atomic_fetch_add(&c->journal_compactions, 1);
		log_msg(LOG_LVL_INFO, "journal",
			"compacted from %llu to %llu bytes in %llu ms",
			(unsigned long long)before,
			(unsigned long long)journal_size(c->journal),
			(unsigned long long)((now_us() - t0) / 1000));
	} else {
		log_msg(LOG_LVL_WARN, "journal", "compaction: %s",
			err[0] ? err : strerror(-rc));
	}
	c->jcompact_at = next_compaction(c);
}

int cache_journal(struct cache *c, enum jrec_type type, struct cache_file *f,
		  uint64_t chunk)
{
	return cache_journal_payload(c, type, f, chunk, NULL, 0);
}

int cache_journal_payload(struct cache *c, enum jrec_type type,
			  struct cache_file *f, uint64_t chunk,
			  const void *payload, size_t plen)
{
	const char *spec = file_be(f)->spec;
	int rc = 0;

	pthread_mutex_lock(&c->journal_lock);
	if ((type == JREC_DIRTY || type == JREC_PTOPEN || type == JREC_RUNS) &&
	    f->jepoch != c->jepoch) {
		unsigned char h[BE_HANDLE_MAX];
		size_t len = sizeof(h);

		rc = file_be(f)->ops->node_encode(file_be(f), f->node, h, &len);
		if (rc == 0)
			rc = journal_append(c->journal, JREC_FILE, spec,
					    f->fileid, 0, h, len);
		f->jepoch = rc == 0 ? c->jepoch : 0;
	}
	if (rc == 0 && type == JREC_DROP) {
		/* Names the handle: the fileid may be another file's now. */
		unsigned char h[BE_HANDLE_MAX];
		size_t len = sizeof(h);

		if (file_be(f)->ops->node_encode(file_be(f), f->node, h,
						 &len) < 0)
			len = 0;
		rc = journal_append(c->journal, type, spec, f->fileid, chunk,
				    h, len);
	} else if (rc == 0 && type == JREC_RUNS) {
		rc = journal_append(c->journal, type, spec, f->fileid, chunk,
				    payload, plen);
	} else if (rc == 0) {
		/* A dirty chunk's writer, a passthrough open's: cred.c */
		unsigned char w[BE_HANDLE_MAX];
		size_t len = 0;

		if (type == JREC_DIRTY)
			len = cache_cred_encode(f->chunks[chunk]->wcred, w,
						sizeof(w));
		else if (type == JREC_PTOPEN)
			len = cache_cred_encode(f->pt_cred, w, sizeof(w));
		rc = journal_append(c->journal, type, spec, f->fileid, chunk,
				    len ? w : NULL, len);
	}
	if (type == JREC_DROP)
		f->jepoch = 0;
	if (rc == 0 && journal_size(c->journal) > c->jcompact_at)
		journal_compact(c);
	pthread_mutex_unlock(&c->journal_lock);
	if (rc < 0)
		log_msg(LOG_LVL_ERR, "journal", "append: %s", strerror(-rc));
	return rc;
}

static void enqueue(pthread_mutex_t *lock, pthread_cond_t *cond,
		    struct flush_item **head, struct flush_item **tail,
		    struct flush_item *it)
{
	pthread_mutex_lock(lock);
	if (*tail)
		(*tail)->next = it;
	else
		*head = it;
	*tail = it;
	pthread_cond_signal(cond);
	pthread_mutex_unlock(lock);
}

/* Queue chunk idx of f for upload; f->lock held (or f not yet shared). */
void cache_queue_flush(struct cache_file *f, uint64_t idx)
{
	struct chunk *ch = f->chunks[idx];
	struct flush_item *it;

	if (!ch || ch->queued || !ch->dirty)
		return;
	it = calloc(1, sizeof(*it));
	if (!it)
		return;	/* cache_file_flush() queues it again */
	ch->queued = true;
	cache_file_ref(f);
	it->f = f;
	it->chunk = idx;
	atomic_fetch_add(&f->c->queued_chunks, 1);
	enqueue(&f->c->queue_lock, &f->c->queue_cond, &f->c->qhead,
		&f->c->qtail, it);
}

void cache_queue_prefetch(struct cache_file *f, uint64_t idx,
			  const struct be_cred *cred)
{
	struct flush_item *it = calloc(1, sizeof(*it));

	if (!it)
		return;	/* prefetch is only a hint */
	cache_file_ref(f);
	it->f = f;
	it->chunk = idx;
	it->cred = cache_cred(f->c, cred);
	enqueue(&f->c->prefetch_lock, &f->c->prefetch_cond, &f->c->phead,
		&f->c->ptail, it);
}

static struct cache_file *file_new(struct cache *c, int be_idx,
				   struct be_node *node)
{
	struct cache_file *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	f->c = c;
	f->be_idx = be_idx;
	f->fileid = node->fileid;
	f->hkey = node->hkey;
	f->node = be_node_get(node);
	atomic_init(&f->refs, 1);	/* the table's */
	f->pt_pre_fd = -1;
	f->pt_slot = -1;
	fdlru_ent_init(&f->fds);
	pthread_mutex_init(&f->wlock, NULL);
	pthread_mutex_init(&f->lock, NULL);
	pthread_mutex_init(&f->rehash_lock, NULL);
	pthread_cond_init(&f->cond, NULL);
	return f;
}

/* Make fd's file empty; one just created is left alone (an ftruncate
 * costs a journal update even when the size does not change). */
static int empty_file(int fd)
{
	struct stat st;

	if (fstat(fd, &st) == 0 && st.st_size == 0)
		return 0;
	return ftruncate(fd, 0) < 0 ? -errno : 0;
}

/* Forget every clean byte of f, loaded or not; f->lock held, no dirty. */
static void file_reset(struct cache_file *f, const struct be_attr *attr)
{
	struct cache *c = f->c;
	uint64_t i;
	int rc;

	for (i = 0; i < f->nchunks; i++) {
		if (!f->chunks[i])
			continue;
		atomic_fetch_sub(&c->used_bytes,
				 popcount64(f->chunks[i]->present) *
					 c->block_size);
		free(f->chunks[i]->pt_runs);
		free(f->chunks[i]);
		f->chunks[i] = NULL;
	}
	rc = file_fds_get(f, FILE_FD_DATA | FILE_FD_INDEX);
	if (rc == 0) {
		rc = empty_file(file_fd(f, FILE_FD_SLOT_DATA));
		if (rc == 0)
			rc = empty_file(file_fd(f, FILE_FD_SLOT_INDEX));
		file_fds_put(f);
	}
	if (rc < 0)
		log_msg(LOG_LVL_WARN, "cache", "reset of file %llx: %s",
			(unsigned long long)f->fileid, strerror(-rc));
	f->gen = be_attr_gen(attr);
	f->be_size = f->size = attr->size;
	f->trunc_seq++;
	index_store_header(f);
}

/*
 * attr is the backend's fresh view of f; f->lock held.  If the file
 * changed since the generation the cached data is of, drop what may be
 * stale (close-to-open at an open; at a getattr, so that an open file
 * another node appends to is followed, as on NFS).  This node's own
 * changes in progress are not taken for another node's: while a truncate
 * or setattr of ours runs, nothing is done, and a getattr leaves a file
 * with dirty data or uploads of ours since its generation to the
 * flusher's file_refresh_gen().
 */
static void file_revalidate(struct cache_file *f, const struct be_attr *attr,
			    bool at_open, bool synced)
{
	struct be_gen gen = be_attr_gen(attr);
	bool own = f->dirty_chunks || f->upload_seq != f->gen_upload_seq;

	if (be_gen_equal(&gen, &f->gen) || f->local_change)
		return;
	if (!at_open && (own || f->inflight))
		return;
	/* The kernel writes it: unless its bytes were just hashed (an
	 * open, cache_file_get()), they cannot be told from stale ones. */
	if (f->pt_writers && !synced)
		return;
	if (!own && !f->pt_users) {
		/* Nothing of ours in it: readers of the old data finish
		 * first, then the whole cached copy goes. */
		while (f->inflight && !f->dirty_chunks)
			pthread_cond_wait(&f->cond, &f->lock);
		if (!f->dirty_chunks) {
			file_reset(f, attr);
			f->gen_upload_seq = f->upload_seq;
			return;
		}
	}
	if (attr->size != f->size)
		file_eof_block_not_mine(f);
	file_drop_stale(f);
	f->gen = gen;
	f->gen_upload_seq = f->upload_seq;
	f->be_size = attr->size;
	if (!f->dirty_chunks || attr->size > f->size)
		f->size = attr->size;
	index_store_header(f);
	/* Passthrough readers read the data file: fetch it anew, in place
	 * (and into a writer's pre-image, fetch_chunk()). */
	if (f->pt_users && file_fetch_all(f, f->pt_cred, synced) < 0)
		log_msg(LOG_LVL_WARN, "cache",
			"file %llx changed on the backend and cannot be fetched again for its passthrough readers",
			(unsigned long long)f->fileid);
}

/* Every block of the file, up to its size, is present; f->lock held. */
bool file_whole(struct cache_file *f)
{
	struct cache *c = f->c;
	uint64_t cs = c->cfg->chunk_size, bs = c->block_size, idx;

	for (idx = 0; idx * cs < f->size; idx++) {
		uint64_t left = f->size - idx * cs, need;
		struct chunk *ch = file_chunk(f, idx, false);

		need = left >= cs ? ~0ULL : block_mask(0, (unsigned int)((left - 1) / bs));
		if (!ch || (ch->present & need) != need)
			return false;
	}
	return true;
}

/*
 * node's file is not in the table (table_lock held; dropped here): load
 * it from its cache files, or make them, and put it in.  A cold file being
 * removed (reap.c) is waited for, without table_lock, and then cached
 * afresh: never opened half removed (-EAGAIN: look in the table again).
 * attr NULL (an open while the backend does not answer): only a file the
 * cache dir holds, as its index says, is loaded, else -ENOENT.
 */
static int table_load(struct cache *c, int be_idx, struct be_node *node,
		      const struct be_attr *attr, struct cache_file **out)
{
	struct cache_file *f;
	struct be_gen gen;
	int64_t busy;
	int rc;

	busy = cold_forget(c, spec_hash_of(c->bes[be_idx]), node->fileid,
			   node->hkey);
	if (busy >= 0) {
		pthread_mutex_unlock(&c->table_lock);
		cold_wait_removed(c, busy);
		return -EAGAIN;
	}
	f = file_new(c, be_idx, node);
	if (!f) {
		pthread_mutex_unlock(&c->table_lock);
		return -ENOMEM;
	}
	rc = index_open(f, attr != NULL);
	if (rc < 0 || (!attr && rc == 0)) {	/* 0: no header to go by */
		pthread_mutex_unlock(&c->table_lock);
		if (attr)
			log_msg(LOG_LVL_ERR, "cache",
				"cannot create the cache files of %llx in %s: %s",
				(unsigned long long)f->fileid, c->cfg->dir,
				strerror(-rc));
		file_free(f);
		/* the cache device's trouble, not the name's */
		return attr ? -EIO : -ENOENT;
	}
	if (attr) {
		gen = be_attr_gen(attr);
		if (rc == 0 || !be_gen_equal(&gen, &f->gen))
			file_reset(f, attr);
	}
	f->in_table = true;
	f->hnext = c->table[key_hash(be_idx, f->fileid)];
	c->table[key_hash(be_idx, f->fileid)] = f;
	c->nfiles++;
	cache_file_ref(f);	/* the caller's */
	pthread_mutex_unlock(&c->table_lock);
	*out = f;
	return 0;
}

int cache_file_get_offline(struct cache *c, int be_idx, struct be_node *node,
			   struct cache_file **out)
{
	struct cache_file *f;
	bool whole;
	int rc;

	/*
	 * Not in memory, but cached (an earlier run's, or unloaded past
	 * mem_files): loaded as its index has it.
	 */
	for (;;) {
		pthread_mutex_lock(&c->table_lock);
		f = table_find(c, be_idx, node->fileid, node->hkey);
		if (f) {
			cache_file_ref(f);
			pthread_mutex_unlock(&c->table_lock);
			break;
		}
		if (!cache_file_cold(c, be_idx, node)) {
			pthread_mutex_unlock(&c->table_lock);
			return -ENOENT;
		}
		rc = table_load(c, be_idx, node, NULL, &f);
		if (rc == 0)
			break;
		if (rc != -EAGAIN)
			return -ENOENT;
	}
	pthread_mutex_lock(&f->lock);
	whole = !f->gone && file_whole(f);
	pthread_mutex_unlock(&f->lock);
	if (!whole) {
		cache_file_put(f);
		return -ENOENT;
	}
	atomic_fetch_add(&c->stale_opens, 1);
	*out = f;
	return 0;
}

int cache_file_get(struct cache *c, int be_idx, struct be_node *node,
		   const struct be_attr *attr, struct cache_file **out)
{
	struct be_gen gen = be_attr_gen(attr);
	struct cache_file *f;
	bool synced = false;
	uint64_t i;
	int rc;

again:
	pthread_mutex_lock(&c->table_lock);
	f = table_find(c, be_idx, node->fileid, node->hkey);
	if (f) {
		cache_file_ref(f);
		pthread_mutex_unlock(&c->table_lock);
		pthread_mutex_lock(&f->lock);
		/*
		 * Another node changed a file this node's passthrough writer
		 * holds (its release may simply not have come yet): hash the
		 * writer's bytes, so that the refresh keeps them as dirty
		 * ranges and fetches the rest in place.  A kernel write
		 * between the hash and the fetch of its block is the one
		 * thing this cannot fence (docs/consistency.md).
		 */
		if (f->pt_writers && !be_gen_equal(&gen, &f->gen) &&
		    !f->local_change) {
			pthread_mutex_unlock(&f->lock);
			synced = cache_file_pt_sync(f) == 0;
			pthread_mutex_lock(&f->lock);
		}
		file_revalidate(f, attr, true, synced);
		/*
		 * Close-to-open: what is cached now is of this generation.
		 * Blocks written whole from here on are this open's own,
		 * kept when its uploads move the generation (settle_gen()).
		 */
		for (i = 0; i < f->nchunks; i++)
			if (f->chunks[i])
				f->chunks[i]->mine = 0;
		pthread_mutex_unlock(&f->lock);
		*out = f;
		return 0;
	}
	rc = table_load(c, be_idx, node, attr, out);
	if (rc == -EAGAIN)
		goto again;
	return rc;
}

int cache_file_lookup(struct cache *c, int be_idx, uint64_t fileid,
		      struct cache_file **out)
{
	struct cache_file *f;

	f = table_get(c, be_idx, fileid, ANY_HKEY);
	*out = f;
	return f ? 0 : -ENOENT;
}

void cache_file_pin(struct cache_file *f, int pinned)
{
	pthread_mutex_lock(&f->lock);
	f->pinned = pinned;
	pthread_mutex_unlock(&f->lock);
}

int cache_setattr(struct cache *c, const struct be_cred *cred, int be_idx,
		  struct be_node *node, const struct be_setattr *sa,
		  struct be_attr *attr)
{
	struct be *be = c->bes[be_idx];
	struct cache_file *f;
	int rc;

	f = table_get(c, be_idx, node->fileid, node->hkey);
	if (f) {
		pthread_mutex_lock(&f->lock);
		f->local_change++;
		pthread_mutex_unlock(&f->lock);
	}
	rc = be->ops->setattr(be, cred, node, sa, attr);
	if (!f)
		return rc;
	pthread_mutex_lock(&f->lock);
	if (rc == 0) {
		struct be_gen g = be_attr_gen(attr);

		/* Only the times may move: a size change is truncate's. */
		if (g.size == f->gen.size || f->dirty_chunks)
			f->gen = g;
		if (sa->valid & (BE_SET_MTIME | BE_SET_MTIME_NOW))
			f->mtime = attr->mtime;	/* the local view's too */
		/* A passthrough writer's file reports the data file's
		 * times (cache_fixup_attr()): they take the new ones too. */
		if (f->pt_writers && (sa->valid & (BE_SET_ATIME |
						   BE_SET_ATIME_NOW |
						   BE_SET_MTIME |
						   BE_SET_MTIME_NOW)) &&
		    file_fds_get(f, FILE_FD_DATA) == 0) {
			struct timespec ts[2] = { attr->atime, attr->mtime };

			if (futimens(file_fd(f, FILE_FD_SLOT_DATA), ts) < 0)
				log_msg(LOG_LVL_WARN, "cache",
					"file %llx: times of the data file: %s",
					(unsigned long long)f->fileid,
					strerror(errno));
			file_fds_put(f);
		}
	}
	f->local_change--;
	f->local_seq++;
	pthread_mutex_unlock(&f->lock);
	cache_file_put(f);
	return rc;
}

void cache_fixup_attr(struct cache *c, int be_idx, const struct be_node *node,
		      struct be_attr *attr)
{
	struct cache_file *f;

	pthread_mutex_lock(&c->table_lock);
	f = table_find(c, be_idx, node->fileid, node->hkey);
	if (f) {
		pthread_mutex_lock(&f->lock);
		file_revalidate(f, attr, false, false);
		if (f->pt_writers) {
			/* The kernel writes the data file: its size and
			 * mtime are the file's. */
			struct stat st;

			if (file_fds_get(f, FILE_FD_DATA) == 0) {
				if (fstat(file_fd(f, FILE_FD_SLOT_DATA),
					  &st) == 0) {
					if ((uint64_t)st.st_size > f->size)
						f->size = (uint64_t)st.st_size;
					if (st.st_mtim.tv_sec >
					    f->mtime.tv_sec)
						f->mtime = st.st_mtim;
				}
				file_fds_put(f);
			}
			attr->size = f->size;
			attr->mtime = attr->ctime = f->mtime;
		} else if (f->dirty_chunks || f->inflight) {
			/* Writes not on the backend yet: the local view. */
			attr->size = f->size;
			if (f->dirty_chunks &&
			    (f->mtime.tv_sec > attr->mtime.tv_sec ||
			     (f->mtime.tv_sec == attr->mtime.tv_sec &&
			      f->mtime.tv_nsec > attr->mtime.tv_nsec))) {
				attr->mtime = f->mtime;
				attr->ctime = f->mtime;
			}
		}
		pthread_mutex_unlock(&f->lock);
	}
	pthread_mutex_unlock(&c->table_lock);
}

/* Queue every dirty chunk of f that is not on its way; f->lock held. */
static void requeue_dirty(struct cache_file *f)
{
	uint64_t i;

	for (i = 0; i < f->nchunks; i++)
		if (f->chunks[i] && f->chunks[i]->dirty &&
		    !f->chunks[i]->flushing)
			cache_queue_flush(f, i);
}

int cache_file_flush(struct cache_file *f)
{
	int rc;

	pthread_mutex_lock(&f->lock);
	requeue_dirty(f);
	f->flush_waiters++;
	while ((f->dirty_chunks || f->inflight) && !f->flush_error) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&f->cond, &f->lock, &ts);
	}
	f->flush_waiters--;
	rc = f->flush_error;
	pthread_mutex_unlock(&f->lock);
	return rc;
}

int cache_file_fsync(struct cache_file *f)
{
	struct cache *c = f->c;
	int rc;

	if (c->cfg->fsync_mode == CACHE_FSYNC_BACKEND)
		return cache_file_flush(f);
	pthread_mutex_lock(&f->lock);
	rc = index_sync(f);
	pthread_mutex_unlock(&f->lock);
	pthread_mutex_lock(&c->journal_lock);
	if (rc == 0)
		rc = journal_sync(c->journal);
	pthread_mutex_unlock(&c->journal_lock);
	return rc;
}

int cache_file_close(struct cache_file *f)
{
	if (f->c->cfg->close_mode == CACHE_CLOSE_SYNC)
		return cache_file_flush(f);
	return 0;
}

void cache_get_stats(struct cache *c, struct cache_stats *st)
{
	int b;

	st->bytes_read_cache = atomic_load(&c->bytes_read_cache);
	st->bytes_read_splice = atomic_load(&c->bytes_read_splice);
	st->bytes_read_backend = atomic_load(&c->bytes_read_backend);
	st->bytes_written = atomic_load(&c->bytes_written);
	st->bytes_flushed = atomic_load(&c->bytes_flushed);
	st->dirty_bytes = atomic_load(&c->dirty_bytes);
	st->cache_used_bytes = atomic_load(&c->used_bytes);
	st->chunks_evicted = atomic_load(&c->chunks_evicted);
	st->checksum_errors = atomic_load(&c->checksum_errors);
	st->flush_errors = atomic_load(&c->flush_errors);
	st->flush_retries = atomic_load(&c->flush_retries);
	for (b = 0; b < c->nbe; b++)	/* requests the backend sent again */
		st->flush_retries += atomic_load(&c->bes[b]->retries);
	st->flush_rewrites = atomic_load(&c->flush_rewrites);
	st->prefetch_chunks = atomic_load(&c->prefetch_chunks);
	st->reads_from_fetch = atomic_load(&c->reads_from_fetch);
	st->reads_kept = atomic_load(&c->reads_kept);
	st->flush_queue = atomic_load(&c->queued_chunks);
	st->flushes_before_write = atomic_load(&c->flushes_before_write);
	st->passthrough_opens = atomic_load(&c->pt_opens);
	st->passthrough_bytes_written = atomic_load(&c->pt_bytes_written);
	st->bytes_scrubbed = atomic_load(&c->bytes_scrubbed);
	st->stale_opens = atomic_load(&c->stale_opens);
	st->cold_files = cold_count(c);
	st->cold_files_evicted = atomic_load(&c->cold_evicted);
	st->files_unloaded = atomic_load(&c->files_unloaded);
	st->scan_done = atomic_load(&c->scan_done);
	st->scan_files = atomic_load(&c->scan_files);
	st->scan_ms = atomic_load(&c->scan_us) / 1000;
	st->evict_batches = atomic_load(&c->evict_batches);
	st->evict_batch_us_last = atomic_load(&c->evict_batch_us_last);
	st->evict_batch_us_max = atomic_load(&c->evict_batch_us_max);
	st->evict_freeing_bytes = atomic_load(&c->freeing_bytes);
	st->cold_files_removing = cold_reaping(c);
	st->journal_compactions = atomic_load(&c->journal_compactions);
	pthread_mutex_lock(&c->journal_lock);
	st->journal_bytes = journal_size(c->journal);
	pthread_mutex_unlock(&c->journal_lock);
	for (b = 0; b < CACHE_HIST_BUCKETS; b++) {
		st->be_read_us[b] = atomic_load(&c->be_read_us[b]);
		st->be_write_us[b] = atomic_load(&c->be_write_us[b]);
	}
	pthread_mutex_lock(&c->table_lock);
	st->files = c->nfiles;
	pthread_mutex_unlock(&c->table_lock);
}

/*
 * The error that holds every file still dirty, if each one's last upload
 * failed in a way that waiting does not cure (a block that fails its
 * checksum, a full or read-only export) and none has an upload in flight;
 * else 0.
 */
static int dirty_all_failed(struct cache *c)
{
	int err = 0;
	bool any = false, other = false;
	size_t b;

	pthread_mutex_lock(&c->table_lock);
	for (b = 0; b < TABLE_SIZE && !other; b++) {
		struct cache_file *f;

		for (f = c->table[b]; f && !other; f = f->hnext) {
			pthread_mutex_lock(&f->lock);
			if (f->dirty_chunks) {
				any = true;
				if (!f->flush_error || f->inflight)
					other = true;
				else
					err = f->flush_error;
			}
			pthread_mutex_unlock(&f->lock);
		}
	}
	pthread_mutex_unlock(&c->table_lock);
	return any && !other ? err : 0;
}

/* No upload for this long, and only failed ones left: stop waiting. */
#define FLUSH_ALL_FAILED_S	5
#define FLUSH_ALL_STALLED_S	60

int cache_flush_all(struct cache *c)
{
	uint64_t last_flushed = atomic_load(&c->bytes_flushed);
	time_t last_progress = time(NULL);
	size_t b;

	int rc = 0;

	/* Make sure every dirty chunk is on its way, and now. */
	atomic_fetch_add(&c->flush_all_waiters, 1);
	pt_sync_all(c);
	pthread_mutex_lock(&c->table_lock);
	for (b = 0; b < TABLE_SIZE; b++) {
		struct cache_file *f;

		for (f = c->table[b]; f; f = f->hnext) {
			pthread_mutex_lock(&f->lock);
			requeue_dirty(f);
			pthread_mutex_unlock(&f->lock);
		}
	}
	pthread_mutex_unlock(&c->table_lock);

	pthread_mutex_lock(&c->queue_lock);
	while (atomic_load(&c->dirty_bytes)) {
		struct timespec ts;
		uint64_t flushed = atomic_load(&c->bytes_flushed);

		if (flushed != last_flushed) {
			last_flushed = flushed;
			last_progress = time(NULL);
		} else if (time(NULL) - last_progress > FLUSH_ALL_STALLED_S) {
			rc = -EIO;
			break;
		} else if (time(NULL) - last_progress >= FLUSH_ALL_FAILED_S) {
			/* Table locks come before the queue's elsewhere. */
			pthread_mutex_unlock(&c->queue_lock);
			rc = dirty_all_failed(c);
			pthread_mutex_lock(&c->queue_lock);
			if (rc)
				break;
		}
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&c->space_cond, &c->queue_lock, &ts);
	}
	pthread_mutex_unlock(&c->queue_lock);
	atomic_fetch_sub(&c->flush_all_waiters, 1);
	return rc;
}

/* ---- start-up: lock, journal replay ---------------------------------- */

/* What the lock file holds after a run that ended in cache_close(). */
#define LOCK_CLEAN	"clean\n"

/* The lock file holds text, durably; 0 or -errno. */
static int lock_write(struct cache *c, const char *text)
{
	size_t n = strlen(text);

	if (ftruncate(c->lock_fd, 0) < 0 ||
	    pwrite(c->lock_fd, text, n, 0) != (ssize_t)n ||
	    fdatasync(c->lock_fd) < 0)
		return -errno;
	return 0;
}

static int take_lock(struct cache *c, char *err, size_t errlen)
{
	char pid[32];
	ssize_t n;
	int rc;

	c->lock_fd = openat(c->dir_fd, "lock", O_RDWR | O_CREAT | O_CLOEXEC,
			    0600);
	if (c->lock_fd < 0) {
		snprintf(err, errlen, "cache dir %s: cannot create lock file: %s",
			 c->cfg->dir, strerror(errno));
		return -errno;
	}
	if (flock(c->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		n = pread(c->lock_fd, pid, sizeof(pid) - 1, 0);
		pid[n > 0 ? n : 0] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		snprintf(err, errlen,
			 "cache dir %s is in use by another stagefs (pid %s)",
			 c->cfg->dir, pid[0] ? pid : "unknown");
		return -EBUSY;
	}
	/*
	 * A run that ended in cache_close() left LOCK_CLEAN in place of its
	 * pid: every sum it wrote is on disk.  Our pid replaces it, durably,
	 * before any write of ours can be cut short by a crash.
	 */
	n = pread(c->lock_fd, pid, sizeof(pid) - 1, 0);
	pid[n > 0 ? n : 0] = '\0';
	c->prev_clean = !strcmp(pid, LOCK_CLEAN);
	snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	rc = lock_write(c, pid);
	if (rc < 0) {
		snprintf(err, errlen, "cache dir %s: cannot write lock file: %s",
			 c->cfg->dir, strerror(-rc));
		return -EIO;
	}
	return 0;
}

/*
 * A crash between a write's bytes and its sums leaves a dirty block whose
 * sum is stale.  That write was never acknowledged, and it touched only
 * its own bytes: the block as it is holds every acknowledged byte, so it
 * goes out as it is, with a fresh sum.  After a run that ended cleanly
 * every sum was on disk, so a block that fails its sum is corrupt: it
 * keeps that sum, and the upload's check refuses it, as during a run.
 * f->lock held.
 */
static void resum_dirty(struct cache_file *f, uint64_t idx, struct chunk *ch)
{
	struct cache *c = f->c;
	char *tmp = malloc(c->block_size);
	unsigned int b;
	bool changed = false;

	if (tmp && file_fds_get(f, FILE_FD_DATA) < 0) {
		free(tmp);
		return;	/* the upload's read-back reports it */
	}
	for (b = 0; tmp && b < CACHE_BLOCKS; b++) {
		uint64_t off = chunk_start(c, idx) + b * c->block_size;
		ssize_t n;
		uint64_t sum;

		if (!(ch->dirty & (1ULL << b)))
			continue;
		n = pread(file_fd(f, FILE_FD_SLOT_DATA), tmp, c->block_size,
			  (off_t)off);
		if (n < 0)
			continue;
		memset(tmp + n, 0, c->block_size - (size_t)n);
		sum = XXH3_64bits(tmp, c->block_size);
		if (sum == ch->sums[b])
			continue;
		if (c->prev_clean) {
			atomic_fetch_add(&c->checksum_errors, 1);
			log_msg(LOG_LVL_ERR, "replay",
				"file %llx offset %llu: dirty block fails its checksum after a clean stop: the cache holds corrupt data there; not uploading it",
				(unsigned long long)f->fileid,
				(unsigned long long)off);
			continue;
		}
		log_msg(LOG_LVL_WARN, "replay",
			"file %llx offset %llu: a write the crash interrupted left this block; it is uploaded as it is",
			(unsigned long long)f->fileid, (unsigned long long)off);
		ch->sums[b] = sum;
		changed = true;
	}
	if (tmp)
		file_fds_put(f);
	if (changed)
		index_store_chunk(f, idx);
	free(tmp);
}

/* Bring a file with dirty data back into the table and queue it. */
static int replay_file(struct cache *c, struct jfile *rf, uint64_t *bytes)
{
	struct be *be = c->bes[rf->be_idx];
	struct cache_file *f;
	struct be_node *node;
	struct be_attr attr;
	struct be_gen gen;
	size_t i;
	int rc;

	rc = be->ops->node_decode(be, NULL, rf->handle, rf->handle_len, &node,
				  &attr);
	if (rc < 0) {
		log_msg(LOG_LVL_ERR, "replay",
			"file %llx on %s has dirty data in the cache but cannot be reopened on the backend (%s); its data and journal records stay in %s for recovery by hand",
			(unsigned long long)rf->fileid, be->spec,
			strerror(-rc), c->cfg->dir);
		return 1;	/* kept: the journal must not be compacted */
	}
	f = file_new(c, rf->be_idx, node);
	be_node_put(be, node);
	if (!f)
		return -ENOMEM;
	rc = index_open(f, false);
	if (rc <= 0) {
		log_msg(LOG_LVL_ERR, "replay",
			"file %llx: index missing or invalid (%s); refusing to guess its dirty data",
			(unsigned long long)rf->fileid,
			rc < 0 ? strerror(-rc) : "no header");
		file_free(f);
		return -EUCLEAN;
	}
	gen = be_attr_gen(&attr);
	f->in_table = true;
	f->hnext = c->table[key_hash(f->be_idx, f->fileid)];
	c->table[key_hash(f->be_idx, f->fileid)] = f;
	c->nfiles++;
	pthread_mutex_lock(&f->lock);
	for (i = 0; i < rf->nchunks && rc >= 0; i++) {
		const struct jchunk *jc = &rf->chunks[i];
		struct chunk probe, *ch;

		/* A damaged slot of a dirty chunk: refuse to guess. */
		rc = index_load_chunk(f, jc->idx, &probe);
		if (rc < 0)
			break;
		ch = file_chunk(f, jc->idx, false);
		if (!ch)
			continue;
		/* Each user's data goes out as that user, as before the
		 * crash. */
		if (jc->cred.set)
			ch->wcred = cache_cred(c, &jc->cred.cred);
		resum_dirty(f, jc->idx, ch);
		/* A passthrough writer's blocks go out by their runs, as
		 * they would have (those the crash left unchanged). */
		if (jc->runs_len)
			chunk_runs_restore(ch, jc->runs, jc->runs_len);
		*bytes += dirty_len(ch, ~0ULL);
	}
	/*
	 * The backend's generation moved since the index was written: by
	 * this node's own uploads before the crash, or by another client.
	 * The dirty ranges go out either way (only the bytes written here);
	 * cached bytes around them may be stale and are dropped.
	 */
	if (rc >= 0 && !be_gen_equal(&f->gen, &gen)) {
		log_msg(LOG_LVL_INFO, "replay",
			"file %llx changed on the backend since the index was written; uploading this node's dirty ranges and dropping its other cached data",
			(unsigned long long)rf->fileid);
		file_drop_stale(f);
	}
	f->gen = gen;
	if (attr.size > f->be_size)
		f->be_size = attr.size;
	pthread_mutex_unlock(&f->lock);
	if (rc < 0) {
		log_msg(LOG_LVL_ERR, "replay",
			"file %llx chunk %llu: the index slot of dirty data is damaged; refusing to guess",
			(unsigned long long)rf->fileid,
			(unsigned long long)rf->chunks[i].idx);
		return -EUCLEAN;
	}
	/* A passthrough writer's bytes are in the data file only. */
	if (rf->pt && rf->pt_cred.set)
		f->pt_cred = cache_cred(c, &rf->pt_cred.cred);
	if (rf->pt) {
		rc = cache_file_pt_replay(f, rf->pt == 2);
		if (rc < 0)
			return rc;
		log_msg(LOG_LVL_INFO, "replay",
			"file %llx had a passthrough writer: its data file was hashed again, %llu dirty bytes",
			(unsigned long long)rf->fileid,
			(unsigned long long)atomic_load(&c->dirty_bytes));
	}
	return 0;
}

/* Compaction: a journal with just what is dirty now. */
static int emit_dirty(void *arg, struct journal *nj)
{
	struct cache *c = arg;
	size_t b;
	int rc = 0;

	for (b = 0; b < TABLE_SIZE && rc == 0; b++) {
		struct cache_file *f;

		for (f = c->table[b]; f && rc == 0; f = f->hnext) {
			unsigned char h[BE_HANDLE_MAX];
			size_t len = sizeof(h);
			uint64_t i;

			f->jepoch = 0;
			if (!f->dirty_chunks && !f->pt_writers)
				continue;
			rc = file_be(f)->ops->node_encode(file_be(f), f->node,
							  h, &len);
			if (rc == 0)
				rc = journal_append(nj, JREC_FILE,
						    file_be(f)->spec,
						    f->fileid, 0, h, len);
			f->jepoch = rc == 0 ? c->jepoch : 0;
			len = cache_cred_encode(f->pt_cred, h, sizeof(h));
			if (rc == 0 && f->pt_writers)
				rc = journal_append(nj, JREC_PTOPEN,
						    file_be(f)->spec, f->fileid,
						    f->pt_owned, len ? h : NULL,
						    len);
			for (i = 0; i < f->nchunks && rc == 0; i++) {
				struct chunk *ch = f->chunks[i];

				if (!ch || !ch->dirty)
					continue;
				len = cache_cred_encode(ch->wcred, h,
							sizeof(h));
				rc = journal_append(nj, JREC_DIRTY,
						    file_be(f)->spec,
						    f->fileid, i, len ? h : NULL,
						    len);
				ch->journaled = rc == 0;
				if (rc == 0)
					rc = chunk_runs_emit(f, i, nj);
			}
		}
	}
	return rc;
}

static int replay(struct cache *c, char *err, size_t errlen)
{
	struct jstate *s = jstate_new(c);
	uint64_t bytes = 0, nfiles = 0, unknown;
	struct jfile *rf;
	int rc;

	if (!s)
		return -ENOMEM;
	rc = journal_replay(c->journal, jstate_rec, s, err, errlen);
	if (rc == -EUCLEAN && s->bad_chunk)
		snprintf(err, errlen,
			 "cache dir %s: journal names chunk %llu, beyond any file this cache holds; refusing to guess which dirty data is safe (move the cache dir aside to start empty)",
			 c->cfg->dir, (unsigned long long)s->bad_chunk);
	/* before any data file is used: ptmark.c */
	if (rc == 0)
		rc = pt_marks_settle(c, jstate_names, s, err, errlen);
	unknown = s->unknown;
	for (rf = s->files; rf && rc == 0; rf = rf->next) {
		if (!rf->nchunks && !rf->pt)
			continue;
		rc = replay_file(c, rf, &bytes);
		if (rc == 1) {
			unknown++;
			rc = 0;
		}
		nfiles++;
		if (rc == -EUCLEAN)
			snprintf(err, errlen,
				 "cache dir %s: dirty data of file %llx cannot be trusted (index damaged); refusing to start. Move the cache dir aside to start empty.",
				 c->cfg->dir, (unsigned long long)rf->fileid);
	}
	jstate_free(s);
	if (rc < 0) {
		if (!err[0])
			snprintf(err, errlen, "cache dir %s: journal replay: %s",
				 c->cfg->dir, strerror(-rc));
		return rc;
	}
	if (unknown)
		log_msg(LOG_LVL_WARN, "replay",
			"%llu journal records or files could not be replayed now (backend not mounted, file not reopened); the journal keeps them",
			(unsigned long long)unknown);
	if (bytes)
		log_msg(LOG_LVL_INFO, "replay",
			"%llu dirty bytes in %llu files queued for upload",
			(unsigned long long)bytes, (unsigned long long)nfiles);
	/* Records of backends not mounted now, and of files not reopened,
	 * must not be lost: a compaction from the table would drop them
	 * (one from the journal itself keeps them: journal_compact()). */
	c->keep_journal = unknown != 0;
	pthread_mutex_lock(&c->journal_lock);
	if (!unknown) {
		rc = journal_rewrite(c->journal, emit_dirty, c);
		if (rc < 0)
			log_msg(LOG_LVL_WARN, "journal", "compaction: %s",
				strerror(-rc));
	}
	c->jcompact_at = next_compaction(c);
	pthread_mutex_unlock(&c->journal_lock);
	return 0;
}

static int make_subdir(struct cache *c, const char *name, char *err,
		       size_t errlen)
{
	if (mkdirat(c->dir_fd, name, 0700) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "cache dir %s: cannot create %s/: %s",
			 c->cfg->dir, name, strerror(errno));
		return -errno;
	}
	return 0;
}

static int start_threads(struct cache *c, pthread_t **tids, unsigned int n,
			 void *(*fn)(void *))
{
	unsigned int i;

	*tids = calloc(n, sizeof(**tids));
	if (!*tids)
		return -ENOMEM;
	for (i = 0; i < n; i++)
		if (pthread_create(&(*tids)[i], NULL, fn, c))
			return -EAGAIN;
	return 0;
}

int cache_open(const struct cache_config *cfg, struct be *const *bes,
	       int nbe, struct cache **out, char *err, size_t errlen)
{
	struct cache *c;
	char path[4096];
	int rc;

	err[0] = '\0';
	c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	c->jepoch = 1;	/* a file's 0: no FILE record */
	c->cfg = cfg;
	c->bes = bes;
	c->nbe = nbe;
	c->block_size = cfg->chunk_size / CACHE_BLOCKS;
	{
		void *z = calloc(1, c->block_size);

		if (!z) {
			free(c);
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
		c->zero_sum = XXH3_64bits(z, c->block_size);
		free(z);
	}
	c->lock_fd = -1;
	c->dir_fd = -1;
	c->table_size = TABLE_SIZE;
	c->table = calloc(TABLE_SIZE, sizeof(*c->table));
	pthread_key_create(&c->ring_key, ring_key_free);
	pthread_mutex_init(&c->table_lock, NULL);
	pthread_mutex_init(&c->queue_lock, NULL);
	pthread_cond_init(&c->queue_cond, NULL);
	pthread_cond_init(&c->space_cond, NULL);
	pthread_mutex_init(&c->prefetch_lock, NULL);
	pthread_cond_init(&c->prefetch_cond, NULL);
	pthread_mutex_init(&c->journal_lock, NULL);
	pthread_mutex_init(&c->cred_lock, NULL);
	pthread_mutex_init(&c->evict_lock, NULL);
	pthread_mutex_init(&c->cold_lock, NULL);
	pthread_cond_init(&c->reap_cond, NULL);
	pthread_cond_init(&c->reaped_cond, NULL);
	pthread_mutex_init(&c->pt_lock, NULL);
	pthread_mutex_init(&c->ptmark_lock, NULL);
	c->ptmark_fd = -1;

	if (cache_fds_init(c) < 0) {
		snprintf(err, errlen, "out of memory");
		rc = -ENOMEM;
		goto out_free;
	}
	c->dir_fd = open(cfg->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (c->dir_fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "cache dir %s: %s", cfg->dir,
			 rc == -ENOTDIR ? "not a directory" : strerror(-rc));
		goto out_free;
	}
	if (faccessat(c->dir_fd, ".", W_OK, AT_EACCESS) < 0) {
		rc = -errno;
		snprintf(err, errlen, "cache dir %s: not writable: %s",
			 cfg->dir, strerror(-rc));
		goto out_free;
	}
	rc = take_lock(c, err, errlen);
	if (rc < 0)
		goto out_free;
	cache_node_id_load(c);
	c->direct = cfg->direct;
	if (cfg->direct != CACHE_DIRECT_OFF) {
		int fd = openat(c->dir_fd, "lock", O_RDONLY | O_DIRECT |
						   O_CLOEXEC);

		if (fd < 0 && cfg->direct == CACHE_DIRECT_ON) {
			rc = -errno;
			snprintf(err, errlen,
				 "cache_direct=on: the file system of cache dir %s refuses O_DIRECT: %s",
				 cfg->dir, strerror(-rc));
			goto out_free;
		}
		if (fd < 0) {
			log_msg(LOG_LVL_INFO, "cache",
				"cache dir %s: no O_DIRECT (%s): chunk fills go through the page cache",
				cfg->dir, strerror(errno));
			c->direct = CACHE_DIRECT_OFF;
		} else {
			close(fd);
		}
	}
	/* Cached data is other users' data: only root may look (0700). */
	if (fchmodat(AT_FDCWD, cfg->dir, 0700, 0) < 0)
		log_msg(LOG_LVL_WARN, "cache", "cache dir %s: chmod 0700: %s",
			cfg->dir, strerror(errno));
	if ((rc = make_subdir(c, "data", err, errlen)) < 0 ||
	    (rc = make_subdir(c, "index", err, errlen)) < 0 ||
	    (rc = make_subdir(c, "trash", err, errlen)) < 0)
		goto out_free;
	/* Evictions a crash interrupted, before anything can open them. */
	rc = reap_trash(c, err, errlen);
	if (rc < 0)
		goto out_free;
	snprintf(path, sizeof(path), "%s/journal", cfg->dir);
	rc = journal_open(path, &c->journal, err, errlen);
	if (rc < 0)
		goto out_free;
	rc = rbuf_pool_init(c);
	if (rc < 0) {
		snprintf(err, errlen, "out of memory");
		goto out_free;
	}
	rc = replay(c, err, errlen);
	if (rc < 0)
		goto out_free;
	c->nflushers = cfg->flushers ? cfg->flushers : 4;
	c->nprefetchers = c->nflushers;
	if (start_threads(c, &c->flushers, c->nflushers, flusher_main) ||
	    start_threads(c, &c->prefetchers, c->nprefetchers,
			  prefetcher_main)) {
		snprintf(err, errlen, "cannot start cache threads");
		rc = -EAGAIN;
		goto out_free;	/* the process exits on this error */
	}
	/* No remover, no cold list: without the scan, earlier runs' files
	 * are neither counted nor evicted (as if the scan had failed). */
	c->reaper_started = pthread_create(&c->reaper, NULL, reap_main, c) == 0;
	c->scanner_started = c->reaper_started &&
			     pthread_create(&c->scanner, NULL, scan_main, c) == 0;
	if (!c->scanner_started)
		atomic_store(&c->scan_done, 1);
	c->pt_started = pthread_create(&c->pt_thread, NULL, pt_main, c) == 0;
	*out = c;
	return 0;
out_free:
	cache_fds_destroy(c);
	rbuf_pool_free(c);
	pt_marks_close(c);
	journal_close(c->journal);
	if (c->lock_fd >= 0)
		close(c->lock_fd);
	if (c->dir_fd >= 0)
		close(c->dir_fd);
	free(c->table);
	cache_creds_free(c);
	free(c);
	return rc;
}

static void join_all(pthread_t *tids, unsigned int n)
{
	unsigned int i;

	for (i = 0; tids && i < n; i++)
		pthread_join(tids[i], NULL);
	free(tids);
}

int cache_drain(struct cache *c)
{
	if (!c || c->drained)
		return c ? c->drain_rc : 0;
	c->drain_rc = cache_flush_all(c);
	c->drained = true;
	if (c->drain_rc < 0)
		log_msg(LOG_LVL_ERR, "cache",
			"%llu dirty bytes could not be uploaded (%s); they stay in %s, and the next start tries them again",
			(unsigned long long)atomic_load(&c->dirty_bytes),
			strerror(-c->drain_rc), c->cfg->dir);
	return c->drain_rc;
}

/*
 * Every sum is on disk (after the syncfs of cache_close()), and no
 * passthrough writer is left unhashed: say so to the next start.
 */
static void mark_clean(struct cache *c)
{
	int rc = lock_write(c, LOCK_CLEAN);

	if (rc < 0)
		log_msg(LOG_LVL_WARN, "cache", "cache dir %s: lock file: %s",
			c->cfg->dir, strerror(-rc));
}

int cache_close(struct cache *c)
{
	bool clean_stop;
	size_t b;
	int rc;

	if (!c)
		return 0;
	rc = cache_drain(c);
	pthread_mutex_lock(&c->queue_lock);
	pthread_mutex_lock(&c->prefetch_lock);
	c->stopping = true;
	pthread_cond_broadcast(&c->queue_cond);
	pthread_cond_broadcast(&c->space_cond);
	pthread_cond_broadcast(&c->prefetch_cond);
	pthread_mutex_unlock(&c->prefetch_lock);
	pthread_mutex_unlock(&c->queue_lock);
	join_all(c->flushers, c->nflushers);
	join_all(c->prefetchers, c->nprefetchers);
	if (c->scanner_started)
		pthread_join(c->scanner, NULL);
	cold_reap_stop(c);	/* it ends the removal under way */
	if (c->reaper_started)
		pthread_join(c->reaper, NULL);
	if (c->pt_started)
		pthread_join(c->pt_thread, NULL);
	clean_stop = !c->npt;
	while (c->npt)	/* writers the kernel never released */
		cache_file_put(c->pt[--c->npt]);
	free(c->pt);
	pt_marks_close(c);	/* the records of opens never released stay */
	cold_free(c);

	pthread_mutex_lock(&c->journal_lock);
	if (c->keep_journal || journal_rewrite(c->journal, emit_dirty, c) < 0)
		journal_sync(c->journal);
	journal_close(c->journal);
	pthread_mutex_unlock(&c->journal_lock);
	for (b = 0; b < TABLE_SIZE; b++) {
		struct cache_file *f, *next;

		for (f = c->table[b]; f; f = next) {
			next = f->hnext;
			cache_file_put(f);
		}
	}
	cache_fds_destroy(c);
	/* The indexes of clean data too, open or not: one syncfs. */
	if (syncfs(c->lock_fd) < 0)
		log_msg(LOG_LVL_WARN, "cache", "syncfs of %s: %s", c->cfg->dir,
			strerror(errno));
	else if (clean_stop)
		mark_clean(c);
	rbuf_pool_free(c);	/* no chunk points at them any more */
	free(c->table);
	close(c->lock_fd);
	close(c->dir_fd);
	/* pthread_key_delete runs no destructor: free the caller's ring. */
	ring_engine_destroy(pthread_getspecific(c->ring_key));
	pthread_setspecific(c->ring_key, NULL);
	pthread_key_delete(c->ring_key);
	cache_creds_free(c);
	free(c);
	return rc;
}
