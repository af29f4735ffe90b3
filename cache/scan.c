/* SPDX-License-Identifier: GPL-2.0 */
/*
 * scan.c - data cached by an earlier run, for usage and eviction.
 *
 * Start-up reads only the journal; the daemon serves at once.  Then a
 * background thread lists index/ and, for every file not in the table
 * (so clean: replay loaded every file with dirty data), counts its data
 * file's allocated bytes into cache_used_bytes and puts it on the cold
 * list.  When the evictor runs out of chunks in memory, it removes cold
 * files whole, oldest first.  A cold file that is opened again leaves the
 * list: its chunks are then counted as they are loaded.
 *
 * A node's cache holds millions of such files (issue 14), so the list is
 * built for that: a compact entry per file (struct cold_ent, 40 bytes) in
 * blocks that never move, a min-heap of entry numbers ordered by mtime
 * (the oldest is found in O(log n), not by a walk of every file), and an
 * open-addressing hash of entry numbers by (spec hash, fileid, handle
 * hash) for cold_forget().  An entry that leaves the list (opened, or
 * evicted) is marked gone and stays where it is until cache_close(): its
 * heap position is dropped lazily when it reaches the top.  About 56
 * bytes a file in all (docs/performance.md, "Cache at scale").
 *
 * Thread safety: the cold list is under c->cold_lock, taken after
 * table_lock when both are needed.  Only the scanner thread adds.
 */
#include "cache_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
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
	uint32_t gone;		/* opened since, or evicted: not counted */
};

struct cold_list {
	struct cold_ent **blocks;	/* nblocks blocks of COLD_BLOCK */
	size_t nblocks;
	uint32_t n;			/* entries made */
	uint32_t *heap;			/* entry numbers, oldest on top */
	uint32_t nheap, heap_cap;
	uint32_t *hash;			/* entry number + 1; 0: empty */
	uint32_t hash_cap;		/* a power of 2, at least 2 n */
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

/* The oldest file still on the list, taken off it; false if none.
 * c->cold_lock held. */
static bool cold_pop(struct cache *c, struct cold_ent *out)
{
	struct cold_list *l = c->cold;

	while (l && l->nheap) {
		struct cold_ent *e = ent(l, l->heap[0]);

		heap_pop(l);
		if (e->gone)
			continue;
		e->gone = 1;
		c->ncold--;
		*out = *e;
		return true;
	}
	return false;
}

/* A file of the table is about to be opened: it is no longer cold. */
void cold_forget(struct cache *c, unsigned int spec_hash, uint64_t fileid,
		 uint64_t hkey)
{
	struct cold_list *l;
	uint32_t m, p;

	pthread_mutex_lock(&c->cold_lock);
	l = c->cold;
	if (!l || !l->n)
		goto out;
	m = l->hash_cap - 1;
	for (p = key_hash(spec_hash, fileid, hkey) & m; l->hash[p];
	     p = (p + 1) & m) {
		struct cold_ent *e = ent(l, l->hash[p] - 1);

		if (e->fileid == fileid && e->hkey == hkey &&
		    e->spec_hash == spec_hash && !e->gone) {
			e->gone = 1;
			atomic_fetch_sub(&c->used_bytes, e->bytes);
			c->ncold--;
			break;
		}
	}
out:
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
static bool cold_add(struct cache *c, const struct cold_ent *ne)
{
	struct cold_list *l;
	bool ok = true;

	pthread_mutex_lock(&c->table_lock);	/* no race with get */
	if (in_table(c, ne->spec_hash, ne->fileid, ne->hkey))
		goto out;
	pthread_mutex_lock(&c->cold_lock);
	l = c->cold;
	if (!l)
		l = c->cold = calloc(1, sizeof(*l));
	ok = l && l->n < UINT32_MAX - 1 && cold_reserve(l);
	if (ok) {
		*ent(l, l->n) = *ne;
		hash_put(l, l->n);
		heap_push(l, l->n);
		l->n++;
		c->ncold++;
		atomic_fetch_add(&c->used_bytes, ne->bytes);
	}
	pthread_mutex_unlock(&c->cold_lock);
out:
	pthread_mutex_unlock(&c->table_lock);
	return ok;
}

void *scan_main(void *arg)
{
	struct cache *c = arg;
	uint64_t files = 0, bytes = 0, t0 = now_us();
	struct dirent *de;
	DIR *dp;
	int fd, data_fd;

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
		return NULL;
	}
	while (!atomic_load(&c->stopping) && (de = readdir(dp))) {
		struct cold_ent ne = { 0 };
		unsigned int spec_hash;
		struct stat st;

		if (sscanf(de->d_name, "%8x-%16" SCNx64 "-%16" SCNx64,
			   &spec_hash, &ne.fileid, &ne.hkey) != 3)
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
	/* last: once scan_done is seen, this thread touches nothing more */
	atomic_store(&c->scan_us, now_us() - t0);
	atomic_store(&c->scan_done, 1);
	return NULL;
}

/*
 * Remove the oldest cold files until at least want bytes are freed, or
 * until the batch has run for deadline_us (now_us() clock; 0: none):
 * a file costs two unlinks whatever its size, and a cache of millions
 * of small files would otherwise hold the reader or writer that
 * evicts for seconds.  The next read or write goes on where this
 * stopped.  table_lock is held for each file's removal, so that a
 * cache_file_get() of the same file cannot open the files being
 * unlinked.
 */
uint64_t cold_evict(struct cache *c, uint64_t want, uint64_t deadline_us)
{
	uint64_t freed = 0;

	while (freed < want && (!deadline_us || now_us() < deadline_us)) {
		struct cold_ent cf;
		char name[80];
		bool got;

		pthread_mutex_lock(&c->table_lock);
		pthread_mutex_lock(&c->cold_lock);
		got = cold_pop(c, &cf);
		pthread_mutex_unlock(&c->cold_lock);
		if (!got) {
			pthread_mutex_unlock(&c->table_lock);
			break;
		}
		snprintf(name, sizeof(name), "index/%08x-%016" PRIx64 "-%016" PRIx64,
			 cf.spec_hash, cf.fileid, cf.hkey);
		/* Journal records replay could not act on may be this
		 * file's: keep it (still counted), off the list.  Without
		 * them, replay loaded every file with dirty data. */
		if (c->keep_journal && index_name_dirty(c, name)) {
			pthread_mutex_unlock(&c->table_lock);
			continue;
		}
		unlinkat(c->dir_fd, name, 0);
		snprintf(name, sizeof(name), "data/%08x-%016" PRIx64 "-%016" PRIx64,
			 cf.spec_hash, cf.fileid, cf.hkey);
		unlinkat(c->dir_fd, name, 0);
		pthread_mutex_unlock(&c->table_lock);
		atomic_fetch_sub(&c->used_bytes, cf.bytes);
		atomic_fetch_add(&c->chunks_evicted,
				 (cf.bytes + c->cfg->chunk_size - 1) /
					 c->cfg->chunk_size);
		atomic_fetch_add(&c->cold_evicted, 1);
		freed += cf.bytes;
	}
	return freed;
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
	free(l);
	c->cold = NULL;
}
