/* SPDX-License-Identifier: GPL-2.0 */
/*
 * scan.c - data cached by an earlier run, for usage and eviction.
 *
 * Start-up reads only the journal; the daemon serves at once.  Then a
 * background thread lists index/ and, for every file not in the table
 * (so clean: replay loaded every file with dirty data), counts its data
 * file's allocated bytes into cache_used_bytes and puts it on the cold
 * list.  When the evictor runs out of chunks in memory, it picks cold
 * files whole, oldest first, and hands them to the remover thread
 * (reap.c), which unlinks them.  A cold file that is opened again leaves
 * the list: its chunks are then counted as they are loaded.  Files of this
 * run that nobody uses join the list when the table holds more than
 * mem_files (cache_table_trim(), cold_relist()), from the same thread.
 *
 * A node's cache holds millions of such files (issue 14), so the list is
 * built for that: a compact entry per file (struct cold_ent, 40 bytes) in
 * blocks that never move, a min-heap of entry numbers ordered by mtime
 * (the oldest is found in O(log n), not by a walk of every file), and an
 * open-addressing hash of entry numbers by (spec hash, fileid, handle
 * hash) for cold_forget().  An entry that leaves the list (opened, or
 * evicted) stays where it is until cache_close(): its heap position is
 * dropped lazily when it reaches the top.  About 56 bytes a file in all
 * (docs/performance.md, "Cache at scale").
 *
 * An entry's life: LISTED (on the list, counted in ncold) -> QUEUED
 * (picked by the evictor, on the removal queue; its bytes are still in
 * used_bytes and also in freeing_bytes) -> REMOVING (the remover is
 * unlinking its files) -> GONE.  An open of a QUEUED file takes it back
 * (GONE, and the remover skips it); an open of a REMOVING file waits for
 * the removal and then starts the file afresh (cache_file_get()).  So no
 * open reads a file being removed, and the evictor -- a reader's or a
 * writer's thread -- makes no system call for a cold file.
 *
 * Thread safety: the cold list is under c->cold_lock, taken after
 * table_lock when both are needed.  Only the scanner thread adds.
 */
#include "cache_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define COLD_BLOCK_SHIFT 16	/* entries per block: 65,536 (2.5 MiB) */
#define COLD_BLOCK (1u << COLD_BLOCK_SHIFT)

struct cold_ent {
	uint64_t fileid;
	uint64_t hkey;
	uint64_t bytes;
	int64_t mtime;
	uint32_t spec_hash;
	uint32_t state;		/* enum cold_state */
};

enum cold_state {
	COLD_LISTED,		/* on the list (the heap), counted in ncold */
	COLD_QUEUED,		/* picked: waits for the remover */
	COLD_REMOVING,		/* the remover is unlinking it */
	COLD_GONE,		/* opened since, or removed: not counted */
};

struct cold_list {
	struct cold_ent **blocks;	/* nblocks blocks of COLD_BLOCK */
	size_t nblocks;
	uint32_t n;			/* entries made */
	uint32_t *heap;			/* entry numbers, oldest on top */
	uint32_t nheap, heap_cap;
	uint32_t *hash;			/* entry number + 1; 0: empty */
	uint32_t hash_cap;		/* a power of 2, at least 2 n */
	/* The removal queue: entry numbers, oldest first, [rq_head, rq_tail) */
	uint32_t *rq;
	uint32_t rq_head, rq_tail, rq_cap;
};

static struct cold_ent *ent(struct cold_list *l, uint32_t i)
{
	return &l->blocks[i >> COLD_BLOCK_SHIFT][i & (COLD_BLOCK - 1)];
}

static uint32_t key_hash(unsigned int spec_hash, uint64_t fileid,
			 uint64_t hkey)
{
	uint64_t h = (fileid ^ hkey * 0xff51afd7ed558ccdULL ^ spec_hash) *
		     0x9e3779b97f4a7c15ULL;

	return (uint32_t)(h >> 32);
}

static void hash_put(struct cold_list *l, uint32_t i)
{
	struct cold_ent *e = ent(l, i);
	uint32_t m = l->hash_cap - 1,
		 p = key_hash(e->spec_hash, e->fileid, e->hkey) & m;

	while (l->hash[p])
		p = (p + 1) & m;
	l->hash[p] = i + 1;
}

/* Room for one more entry everywhere; false if out of memory. */
static bool cold_reserve(struct cold_list *l)
{
	if ((l->n >> COLD_BLOCK_SHIFT) >= l->nblocks) {
		struct cold_ent **nb = realloc(l->blocks, (l->nblocks + 1) *
							  sizeof(*nb));

		if (!nb)
			return false;
		l->blocks = nb;
		nb[l->nblocks] = malloc(COLD_BLOCK * sizeof(**nb));
		if (!nb[l->nblocks])
			return false;
		l->nblocks++;
	}
	if (l->nheap == l->heap_cap) {
		uint32_t cap = l->heap_cap ? 2 * l->heap_cap : 4096;
		uint32_t *nh = realloc(l->heap, cap * sizeof(*nh));

		if (!nh)
			return false;
		l->heap = nh;
		l->heap_cap = cap;
	}
	if (2ULL * (l->n + 1) > l->hash_cap) {
		uint32_t cap = l->hash_cap ? 2 * l->hash_cap : 8192, i;
		uint32_t *old = l->hash;

		l->hash = calloc(cap, sizeof(*l->hash));
		if (!l->hash) {
			l->hash = old;
			return false;
		}
		free(old);
		l->hash_cap = cap;
		for (i = 0; i < l->n; i++)
			hash_put(l, i);
	}
	return true;
}

static bool older(struct cold_list *l, uint32_t a, uint32_t b)
{
	int64_t ma = ent(l, a)->mtime, mb = ent(l, b)->mtime;

	return ma < mb || (ma == mb && a < b);
}

static void heap_push(struct cold_list *l, uint32_t i)
{
	uint32_t k = l->nheap++;

	while (k && older(l, i, l->heap[(k - 1) / 2])) {
		l->heap[k] = l->heap[(k - 1) / 2];
		k = (k - 1) / 2;
	}
	l->heap[k] = i;
}

static void heap_pop(struct cold_list *l)
{
	uint32_t last = l->heap[--l->nheap], k = 0, n = l->nheap;

	for (;;) {
		uint32_t c = 2 * k + 1;

		if (c >= n)
			break;
		if (c + 1 < n && older(l, l->heap[c + 1], l->heap[c]))
			c++;
		if (!older(l, l->heap[c], last))
			break;
		l->heap[k] = l->heap[c];
		k = c;
	}
	if (n)
		l->heap[k] = last;
}

/* The entry of a key in any state, or -1.  c->cold_lock held. */
static int64_t hash_find(struct cold_list *l, unsigned int spec_hash,
			 uint64_t fileid, uint64_t hkey, bool any)
{
	uint32_t m, p;

	if (!l || !l->n)
		return -1;
	m = l->hash_cap - 1;
	for (p = key_hash(spec_hash, fileid, hkey) & m; l->hash[p];
	     p = (p + 1) & m) {
		struct cold_ent *e = ent(l, l->hash[p] - 1);

		if (e->fileid == fileid && e->hkey == hkey &&
		    e->spec_hash == spec_hash &&
		    (any || e->state != COLD_GONE))
			return l->hash[p] - 1;
	}
	return -1;
}

/* The oldest file still on the list, taken off it and put on the removal
 * queue; its bytes, or 0 if the list is empty.  c->cold_lock held. */
static uint64_t cold_pick(struct cache *c)
{
	struct cold_list *l = c->cold;

	while (l && l->nheap) {
		uint32_t i = l->heap[0];
		struct cold_ent *e = ent(l, i);

		heap_pop(l);
		if (e->state != COLD_LISTED)
			continue;
		if (l->rq_tail == l->rq_cap) {
			if (l->rq_head) {	/* slide down: room at the end */
				memmove(l->rq, l->rq + l->rq_head,
					(l->rq_tail - l->rq_head) *
						sizeof(*l->rq));
				l->rq_tail -= l->rq_head;
				l->rq_head = 0;
			} else {
				uint32_t cap = l->rq_cap ? 2 * l->rq_cap : 4096;
				uint32_t *nq = realloc(l->rq,
						       cap * sizeof(*nq));

				if (!nq) {	/* stays on the list */
					heap_push(l, i);
					return 0;
				}
				l->rq = nq;
				l->rq_cap = cap;
			}
		}
		l->rq[l->rq_tail++] = i;
		e->state = COLD_QUEUED;
		c->ncold--;
		c->nreap++;
		/* at least 1: a file of no blocks is still worth a pick */
		atomic_fetch_add(&c->freeing_bytes, e->bytes);
		return e->bytes ? e->bytes : 1;
	}
	return 0;
}

int64_t cold_forget(struct cache *c, unsigned int spec_hash, uint64_t fileid,
		    uint64_t hkey)
{
	struct cold_ent *e;
	int64_t i, busy = -1;

	pthread_mutex_lock(&c->cold_lock);
	i = hash_find(c->cold, spec_hash, fileid, hkey, false);
	if (i < 0)
		goto out;
	e = ent(c->cold, (uint32_t)i);
	switch (e->state) {
	case COLD_LISTED:
		c->ncold--;
		break;
	case COLD_QUEUED:	/* taken back: the remover skips it */
		c->nreap--;
		atomic_fetch_sub(&c->freeing_bytes, e->bytes);
		break;
	case COLD_REMOVING:
		busy = i;
		goto out;
	default:
		goto out;
	}
	e->state = COLD_GONE;
	atomic_fetch_sub(&c->used_bytes, e->bytes);
out:
	pthread_mutex_unlock(&c->cold_lock);
	return busy;
}

void cold_wait_removed(struct cache *c, int64_t i)
{
	pthread_mutex_lock(&c->cold_lock);
	while (ent(c->cold, (uint32_t)i)->state == COLD_REMOVING)
		pthread_cond_wait(&c->reaped_cond, &c->cold_lock);
	pthread_mutex_unlock(&c->cold_lock);
}

/* Is the file in the table?  c->table_lock held. */
static bool in_table(struct cache *c, unsigned int spec_hash, uint64_t fileid,
		     uint64_t hkey)
{
	int i;

	for (i = 0; i < c->nbe; i++)
		if (spec_hash_of(c->bes[i]) == spec_hash &&
		    cache_table_find(c, i, fileid, hkey))
			return true;
	return false;
}

/* Put one file on the list unless it is in the table; false if out of
 * memory.  Takes table_lock and cold_lock. */
/* A new entry for ne, listed; false if out of memory.  cold_lock held. */
static bool cold_append(struct cache *c, const struct cold_ent *ne)
{
	struct cold_list *l = c->cold;

	if (!l)
		l = c->cold = calloc(1, sizeof(*l));
	if (!l || l->n >= UINT32_MAX - 1 || !cold_reserve(l))
		return false;
	*ent(l, l->n) = *ne;
	hash_put(l, l->n);
	heap_push(l, l->n);
	l->n++;
	c->ncold++;
	atomic_fetch_add(&c->used_bytes, ne->bytes);
	return true;
}

static bool cold_add(struct cache *c, const struct cold_ent *ne)
{
	bool ok = true;

	pthread_mutex_lock(&c->table_lock);	/* no race with get */
	if (in_table(c, ne->spec_hash, ne->fileid, ne->hkey))
		goto out;
	pthread_mutex_lock(&c->cold_lock);
	/* Listed already: a name read before the remover took the file
	 * away (its data file was still there for the fstatat). */
	if (hash_find(c->cold, ne->spec_hash, ne->fileid, ne->hkey, true) < 0)
		ok = cold_append(c, ne);
	pthread_mutex_unlock(&c->cold_lock);
out:
	pthread_mutex_unlock(&c->table_lock);
	return ok;
}

bool cold_relist(struct cache *c, unsigned int spec_hash, uint64_t fileid,
		 uint64_t hkey, uint64_t bytes, int64_t mtime)
{
	struct cold_ent ne = { .fileid = fileid, .hkey = hkey,
			       .bytes = bytes, .mtime = mtime,
			       .spec_hash = spec_hash,
			       .state = COLD_LISTED };
	struct cold_list *l;
	int64_t i;
	bool ok = true;

	pthread_mutex_lock(&c->cold_lock);
	l = c->cold;
	i = hash_find(l, spec_hash, fileid, hkey, true);
	if (i < 0) {
		ok = cold_append(c, &ne);
	} else if (ent(l, (uint32_t)i)->state == COLD_GONE) {
		/* GONE (opened since it was listed) is the only state it
		 * can be in: the file was in the table.  Its old heap slot,
		 * if still there, is skipped as a duplicate once picked. */
		ok = l->nheap < l->heap_cap || cold_reserve(l);
		if (ok) {
			*ent(l, (uint32_t)i) = ne;
			heap_push(l, (uint32_t)i);
			c->ncold++;
			atomic_fetch_add(&c->used_bytes, bytes);
		}
	}
	pthread_mutex_unlock(&c->cold_lock);
	return ok;
}

bool cache_file_cold(struct cache *c, int be_idx, const struct be_node *node)
{
	int64_t i;
	bool cold = false;

	pthread_mutex_lock(&c->cold_lock);
	i = hash_find(c->cold, spec_hash_of(c->bes[be_idx]), node->fileid,
		      node->hkey, false);
	if (i >= 0)
		cold = ent(c->cold, (uint32_t)i)->state == COLD_LISTED ||
		       ent(c->cold, (uint32_t)i)->state == COLD_QUEUED;
	pthread_mutex_unlock(&c->cold_lock);
	return cold;
}

/* How often the scanner thread, its scan done, keeps the table's size. */
#define TRIM_MS 200

void *scan_main(void *arg)
{
	struct cache *c = arg;
	uint64_t files = 0, bytes = 0, t0 = now_us();
	struct dirent *de;
	DIR *dp;
	int fd, data_fd;

	pthread_setname_np(pthread_self(), "sfs-scan");
	fd = openat(c->dir_fd, "index", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	data_fd = openat(c->dir_fd, "data", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || data_fd < 0 || !(dp = fdopendir(fd))) {
		log_msg(LOG_LVL_WARN, "scan", "cannot list %s/index: %s",
			c->cfg->dir, strerror(errno));
		if (fd >= 0)
			close(fd);
		if (data_fd >= 0)
			close(data_fd);
		atomic_store(&c->scan_done, 1);
		goto trim;
	}
	while (!atomic_load(&c->stopping) && (de = readdir(dp))) {
		struct cold_ent ne = { 0 };
		unsigned int spec_hash;
		struct stat st;

		if (!cache_name_parse(de->d_name, &spec_hash, &ne.fileid,
				      &ne.hkey))
			continue;
		if (fstatat(data_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		ne.spec_hash = spec_hash;
		ne.bytes = (uint64_t)st.st_blocks * 512;
		ne.mtime = st.st_mtim.tv_sec;
		if (!cold_add(c, &ne)) {
			log_msg(LOG_LVL_WARN, "scan",
				"out of memory after %llu files: the rest are not counted",
				(unsigned long long)files);
			break;
		}
		files++;
		bytes += ne.bytes;
		atomic_store(&c->scan_files, files);
	}
	closedir(dp);
	close(data_fd);
	log_msg(files ? LOG_LVL_INFO : LOG_LVL_DEBUG, "scan",
		"%llu files (%llu bytes) cached by earlier runs are counted and may be evicted (%.1f s)",
		(unsigned long long)files, (unsigned long long)bytes,
		(double)(now_us() - t0) / 1e6);
	cache_evict_maybe(c);
	atomic_store(&c->scan_us, now_us() - t0);
	atomic_store(&c->scan_done, 1);
trim:	/* Then the table's size, until the cache closes. */
	while (!atomic_load(&c->stopping)) {
		struct timespec ts = { 0, TRIM_MS * 1000000L };

		nanosleep(&ts, NULL);
		cache_table_trim(c);
	}
	return NULL;
}

/* Picks a batch takes with cold_lock held at a time: an open or the
 * remover waits for no more than this many. */
#define COLD_PICK_SLICE 256

/*
 * Pick the oldest cold files for removal until at least want bytes are
 * on their way, or until now_us() passes deadline_us (0: none).  No
 * system call: the remover thread (reap.c) unlinks them.  The next read
 * or write goes on where this stopped.
 */
uint64_t cold_evict(struct cache *c, uint64_t want, uint64_t deadline_us)
{
	uint64_t picked = 0, got = 1;
	unsigned int k;

	while (got && picked < want &&
	       (!deadline_us || now_us() < deadline_us)) {
		pthread_mutex_lock(&c->cold_lock);
		for (k = 0; k < COLD_PICK_SLICE && picked < want; k++) {
			got = cold_pick(c);
			if (!got)
				break;
			picked += got;
		}
		if (picked)
			pthread_cond_signal(&c->reap_cond);
		pthread_mutex_unlock(&c->cold_lock);
	}
	return picked;
}

bool cold_reap_take(struct cache *c, struct cold_victim *out)
{
	struct cold_list *l;
	bool got = false;

	pthread_mutex_lock(&c->cold_lock);
	while (!got && !atomic_load(&c->stopping)) {
		struct cold_ent *e;
		uint32_t i;

		l = c->cold;
		if (!l || l->rq_head == l->rq_tail) {
			pthread_cond_wait(&c->reap_cond, &c->cold_lock);
			continue;
		}
		i = l->rq[l->rq_head++];
		if (l->rq_head == l->rq_tail)
			l->rq_head = l->rq_tail = 0;
		e = ent(l, i);
		if (e->state != COLD_QUEUED)
			continue;	/* opened meanwhile */
		e->state = COLD_REMOVING;
		*out = (struct cold_victim){ .ent = i, .spec_hash = e->spec_hash,
					     .fileid = e->fileid,
					     .hkey = e->hkey,
					     .bytes = e->bytes };
		got = true;
	}
	pthread_mutex_unlock(&c->cold_lock);
	return got;
}

void cold_reap_done(struct cache *c, const struct cold_victim *v,
		    bool removed)
{
	pthread_mutex_lock(&c->cold_lock);
	ent(c->cold, v->ent)->state = COLD_GONE;
	c->nreap--;
	atomic_fetch_sub(&c->freeing_bytes, v->bytes);
	if (removed) {
		atomic_fetch_sub(&c->used_bytes, v->bytes);
		atomic_fetch_add(&c->chunks_evicted,
				 (v->bytes + c->cfg->chunk_size - 1) /
					 c->cfg->chunk_size);
		atomic_fetch_add(&c->cold_evicted, 1);
	}
	pthread_cond_broadcast(&c->reaped_cond);
	pthread_mutex_unlock(&c->cold_lock);
}

void cold_reap_stop(struct cache *c)
{
	pthread_mutex_lock(&c->cold_lock);
	pthread_cond_broadcast(&c->reap_cond);
	pthread_mutex_unlock(&c->cold_lock);
}

size_t cold_reaping(struct cache *c)
{
	size_t n;

	pthread_mutex_lock(&c->cold_lock);
	n = c->nreap;
	pthread_mutex_unlock(&c->cold_lock);
	return n;
}

size_t cold_count(struct cache *c)
{
	size_t n;

	pthread_mutex_lock(&c->cold_lock);
	n = c->ncold;
	pthread_mutex_unlock(&c->cold_lock);
	return n;
}

void cold_free(struct cache *c)
{
	struct cold_list *l = c->cold;
	size_t b;

	if (!l)
		return;
	for (b = 0; b < l->nblocks; b++)
		free(l->blocks[b]);
	free(l->blocks);
	free(l->heap);
	free(l->hash);
	free(l->rq);
	free(l);
	c->cold = NULL;
}
