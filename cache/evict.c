/* SPDX-License-Identifier: GPL-2.0 */
/*
 * evict.c - keeps the cache within cache_size and above cache_min_free.
 *
 * When usage passes the limit, the thread that noticed takes the evict
 * lock (others go on: one evictor is enough), collects the least recently
 * used chunks that are clean, not pinned and not in use, and punches them
 * out of their cache files until usage is one batch below the limit.  So
 * the cache never holds more than cache_size plus the data written or
 * fetched while one batch is being evicted.  Dirty data is never evicted.
 *
 * Cold files (cached by an earlier run) go first, whole: a batch only
 * picks them (scan.c), and the remover thread unlinks them (reap.c).
 * Their bytes count as used until they are gone, but as being freed
 * (freeing_bytes) from the pick on, so a batch picks only for the usage
 * that is not already on its way out; meanwhile the cache may hold more
 * than cache_size by what the remover has still to remove.  A reader or
 * writer waits for the remover only when the cache fs is truly short of
 * room (evict_wait_room()).
 *
 * Thread safety: takes c->table_lock, then each f->lock in turn; the
 * cold list's c->cold_lock (scan.c) on its own.
 */
#include "cache_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/statvfs.h>

/* Evict this many chunks' worth below the limit, to avoid thrashing. */
#define EVICT_BATCH_CHUNKS 16

struct victim {
	uint64_t stamp;
	struct cache_file *f;
	uint64_t idx;
};

static int victim_cmp(const void *a, const void *b)
{
	const struct victim *x = a, *y = b;

	return x->stamp < y->stamp ? -1 : x->stamp > y->stamp;
}

/*
 * How often the cache fs's free space is asked for.  Every read and write
 * checks the limits; an fstatfs each time was two system calls per 128 KiB
 * read.  Between samples, free space follows this cache's own use
 * (used_bytes), so only other writers to the cache fs are seen late, by
 * at most this long.
 */
#define EVICT_STATFS_US 100000

/* Bytes available on the cache fs now, from a sample at most
 * EVICT_STATFS_US old. */
static uint64_t cache_fs_avail(struct cache *c, uint64_t used)
{
	uint64_t now = now_us(), base;
	struct statvfs sv;

	if (now - atomic_load(&c->free_sampled_us) >= EVICT_STATFS_US &&
	    fstatvfs(c->dir_fd, &sv) == 0) {
		used = atomic_load(&c->used_bytes);
		base = (uint64_t)sv.f_bavail * sv.f_frsize + used;
		atomic_store(&c->free_base, base);
		atomic_store(&c->free_sampled_us, now);
	} else {
		base = atomic_load(&c->free_base);
	}
	return base > used ? base - used : 0;
}

/*
 * Room for a new passthrough writer (passthrough.c): the kernel writes
 * its data file without asking, and cannot be made to wait, so a write
 * open goes passthrough only while the cache fs has twice cache_min_free
 * free (eviction keeps clean data out of the second half) and dirty data
 * is under half of dirty_max.  A writer opened then that outgrows what is
 * free while uploads cannot drain (the server down) gets ENOSPC
 * (docs/tuning.md).
 */
bool cache_pt_room(struct cache *c)
{
	uint64_t used = atomic_load(&c->used_bytes);

	return atomic_load(&c->dirty_bytes) < c->cfg->dirty_max / 2 &&
	       cache_fs_avail(c, used) >= 2 * c->cfg->min_free;
}

/* How many bytes over the limits the cache is now, not counting what
 * the remover is freeing (0: within them). */
static uint64_t overage(struct cache *c)
{
	uint64_t used = atomic_load(&c->used_bytes), over = 0;
	uint64_t freeing = atomic_load(&c->freeing_bytes);

	used = used > freeing ? used - freeing : 0;

	if (c->cfg->size && used > c->cfg->size)
		over = used - c->cfg->size;
	if (c->cfg->min_free) {
		uint64_t avail = cache_fs_avail(c, used);

		if (avail < c->cfg->min_free &&
		    c->cfg->min_free - avail > over)
			over = c->cfg->min_free - avail;
	}
	return over;
}

static size_t collect(struct cache *c, struct victim **out)
{
	size_t n = 0, cap = 1024, b;
	struct victim *v = malloc(cap * sizeof(*v));

	if (!v)
		return 0;
	pthread_mutex_lock(&c->table_lock);
	for (b = 0; b < c->table_size; b++) {
		struct cache_file *f;

		for (f = c->table[b]; f; f = f->hnext) {
			uint64_t idx;

			pthread_mutex_lock(&f->lock);
			for (idx = 0; idx < f->nchunks && !f->pinned; idx++) {
				struct chunk *ch = f->chunks[idx];

				if (!ch || !(ch->present & ~ch->dirty) ||
				    ch->fetching || ch->flushing ||
				    ch->readers)
					continue;
				if (n == cap) {
					struct victim *nv = realloc(
						v, 2 * cap * sizeof(*v));

					if (!nv)
						break;
					v = nv;
					cap *= 2;
				}
				cache_file_ref(f);
				v[n++] = (struct victim){ ch->lru_stamp, f,
							  idx };
			}
			pthread_mutex_unlock(&f->lock);
		}
	}
	/* Each victim holds its file: an unused one may leave the table
	 * meanwhile (cache_table_trim()). */
	pthread_mutex_unlock(&c->table_lock);
	qsort(v, n, sizeof(*v), victim_cmp);
	*out = v;
	return n;
}

static uint64_t evict_one(struct cache *c, struct victim *v)
{
	struct cache_file *f = v->f;
	struct chunk *ch;
	uint64_t drop = 0;

	pthread_mutex_lock(&f->lock);
	ch = f->chunks[v->idx];
	if (ch && !f->pinned && !f->pt_users && !ch->fetching && !ch->flushing &&
	    !ch->readers && ch->lru_stamp == v->stamp) {
		drop = ch->present & ~ch->dirty;
		if (punch_blocks(f, v->idx, drop) < 0)
			drop = 0;	/* kept, still valid */
		ch->present &= ~drop;
		ch->mine &= ~drop;
		index_store_chunk(f, v->idx);
	}
	pthread_mutex_unlock(&f->lock);
	if (drop) {
		atomic_fetch_sub(&c->used_bytes,
				 popcount64(drop) * c->block_size);
		atomic_fetch_add(&c->chunks_evicted, 1);
	}
	return popcount64(drop) * c->block_size;
}

/* The longest a batch goes on picking cold files (see cold_evict()). */
#define EVICT_COLD_US 20000
/* A batch longer than this is logged, with where its time went. */
#define EVICT_SLOW_US 100000

/*
 * The cache fs is truly short of room when it has less free than this:
 * half of cache_min_free, and at least one batch.  Only then does a
 * reader or writer wait for the remover.
 */
static uint64_t room_floor(struct cache *c)
{
	uint64_t batch = EVICT_BATCH_CHUNKS * c->cfg->chunk_size;

	return c->cfg->min_free / 2 > batch ? c->cfg->min_free / 2 : batch;
}

/* While picked cold files are being removed and the cache fs is short of
 * room, wait for the remover (it frees what was picked for this). */
static void evict_wait_room(struct cache *c)
{
	while (atomic_load(&c->freeing_bytes) && !atomic_load(&c->stopping) &&
	       cache_fs_avail(c, atomic_load(&c->used_bytes)) < room_floor(c)) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100 * 1000 * 1000;	/* re-sample statvfs */
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_mutex_lock(&c->cold_lock);
		if (atomic_load(&c->freeing_bytes))
			pthread_cond_timedwait(&c->reaped_cond, &c->cold_lock,
					       &ts);
		pthread_mutex_unlock(&c->cold_lock);
	}
}

void cache_evict_maybe(struct cache *c)
{
	struct victim *v = NULL;
	uint64_t over, freed = 0, t0, t_cold, t_collect = 0, d, max;
	uint64_t cold_freed, nchunks = 0;
	size_t n = 0, i;

	over = overage(c);
	if (!over || pthread_mutex_trylock(&c->evict_lock)) {
		evict_wait_room(c);
		return;
	}
	t0 = now_us();
	over += EVICT_BATCH_CHUNKS * c->cfg->chunk_size;
	/* Files cached by an earlier run and not opened since are the
	 * least recently used of all (scan.c).  They are picked here and
	 * removed by the remover thread.  A batch that ran out of time
	 * leaves the rest to the next: chunks in memory go only once no
	 * cold file is left. */
	freed = cold_freed = cold_evict(c, over, t0 + EVICT_COLD_US);
	t_cold = now_us();
	if (freed < over && !cold_count(c)) {
		n = collect(c, &v);
		t_collect = now_us();
		for (i = 0; i < n && freed < over; i++) {
			uint64_t b = evict_one(c, &v[i]);

			freed += b;
			nchunks += b != 0;
		}
		for (i = 0; i < n; i++)
			cache_file_put(v[i].f);
		free(v);
	}
	d = now_us() - t0;
	max = atomic_load(&c->evict_batch_us_max);
	atomic_fetch_add(&c->evict_batches, 1);
	atomic_store(&c->evict_batch_us_last, d);
	while (d > max &&
	       !atomic_compare_exchange_weak(&c->evict_batch_us_max, &max, d))
		;
	pthread_mutex_unlock(&c->evict_lock);
	if (d > EVICT_SLOW_US)
		log_msg(LOG_LVL_INFO, "evict",
			"a batch took %.1f ms: cold files picked in %.1f ms (%llu bytes); %zu chunks in memory looked at in %.1f ms, %llu evicted in %.1f ms",
			d / 1e3, (t_cold - t0) / 1e3,
			(unsigned long long)cold_freed, n,
			t_collect ? (t_collect - t_cold) / 1e3 : 0.0,
			(unsigned long long)nchunks,
			t_collect ? (t0 + d - t_collect) / 1e3 : 0.0);
	evict_wait_room(c);
}
