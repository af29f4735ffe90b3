/* SPDX-License-Identifier: GPL-2.0 */
/*
 * rbuf.c - the buffers chunk fetches land in, kept for the readers that
 * come after the fetch.
 *
 * A fetch reads a whole chunk from the backend into a buffer, hashes it
 * and writes it to the cache file (O_DIRECT by default: the bytes do not
 * stay in the page cache).  A sequential reader usually asks for the
 * chunk just after a prefetcher filled it; reading it back from the
 * cache file costs a disk read, a copy out of the page cache and a hash
 * per read.  Instead, the buffer stays attached to its chunk (ch->rb,
 * under f->lock) and a reader copies from it, checked by construction:
 * the sums came from the same bytes.
 *
 * The pool has a fixed number of buffers (the prefetch window's chunks
 * plus two per flusher), allocated on first use and reused oldest first.
 * A buffer's seq moves whenever it is taken for a new fetch, so a chunk's
 * (rb, rb_seq) pair goes stale by itself and nothing has to find the
 * chunks that point at it.  A reader pins the buffer (users), then checks
 * seq; a fetch that takes the buffer moves seq first, then waits for the
 * pins to go.  Pins last one memcpy.  Buffers live as long as the cache.
 */
#include "cache_int.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/mman.h>

/*
 * A chunk buffer is written whole by every fetch, read-back and rehash,
 * and a buffer new to the process costs a page fault per 4 KiB at its
 * first touch (on this project's VMs also a fault on the host: about 3 s
 * per GiB of new memory, docs/performance.md "Session 18").  A fresh
 * mount touches its whole pool in its first cold read.  On 2 MiB pages
 * that is 2 faults per 4 MiB chunk instead of 1,024 (docs/performance.md,
 * "Session 22").  THP "never" leaves the madvise without effect; a size
 * under 2 MiB could not fill a huge page, and stays on small pages.
 */
#define HUGE_PAGE (2UL << 20)

void *cache_buf_alloc(size_t size)
{
	size_t len = (size + 4095) & ~(size_t)4095;
	void *p;

	if (len < HUGE_PAGE)
		return aligned_alloc(4096, len ? len : 4096);
	len = (len + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
	p = aligned_alloc(HUGE_PAGE, len);
	if (p)
		(void)madvise(p, len, MADV_HUGEPAGE);
	return p;
}

struct rbuf {
	char *buf;			/* chunk_size, cache_buf_alloc() */
	atomic_uint_fast64_t seq;	/* moves at every take */
	atomic_uint users;		/* readers copying out */
	bool busy;			/* a fetch is filling it (pool lock) */
	uint64_t stamp;			/* when taken, for oldest first */
};

struct rbuf_pool {
	pthread_mutex_t lock;
	uint64_t clock;
	unsigned int n;
	struct rbuf v[];
};

int rbuf_pool_init(struct cache *c)
{
	uint64_t n = c->cfg->readahead / c->cfg->chunk_size +
		     2ULL * c->cfg->flushers;
	struct rbuf_pool *p;

	if (n < RBUF_MIN)
		n = RBUF_MIN;
	if (n > RBUF_MAX)
		n = RBUF_MAX;
	p = calloc(1, sizeof(*p) + n * sizeof(p->v[0]));
	if (!p)
		return -ENOMEM;
	pthread_mutex_init(&p->lock, NULL);
	p->n = (unsigned int)n;
	c->rbufs = p;
	return 0;
}

void rbuf_pool_free(struct cache *c)
{
	struct rbuf_pool *p = c->rbufs;
	unsigned int i;

	if (!p)
		return;
	for (i = 0; i < p->n; i++)
		free(p->v[i].buf);
	pthread_mutex_destroy(&p->lock);
	free(p);
	c->rbufs = NULL;
}

struct rbuf *rbuf_take(struct cache *c)
{
	struct rbuf_pool *p = c->rbufs;
	struct rbuf *r = NULL;
	unsigned int i;

	if (!p)
		return NULL;
	pthread_mutex_lock(&p->lock);
	for (i = 0; i < p->n; i++)
		if (!p->v[i].busy && (!r || p->v[i].stamp < r->stamp))
			r = &p->v[i];
	if (r) {
		r->busy = true;
		r->stamp = ++p->clock;
	}
	pthread_mutex_unlock(&p->lock);
	if (!r)
		return NULL;	/* every buffer is being filled */
	atomic_fetch_add(&r->seq, 1);	/* chunks pointing here go stale */
	while (atomic_load(&r->users))
		sched_yield();	/* a reader's memcpy */
	if (!r->buf) {
		r->buf = cache_buf_alloc(c->cfg->chunk_size);
		if (!r->buf) {
			rbuf_done(c, r);
			return NULL;
		}
	}
	return r;
}

void rbuf_done(struct cache *c, struct rbuf *r)
{
	struct rbuf_pool *p = c->rbufs;

	if (!r)
		return;
	pthread_mutex_lock(&p->lock);
	r->busy = false;
	pthread_mutex_unlock(&p->lock);
}

char *rbuf_data(struct rbuf *r)
{
	return r->buf;
}

uint64_t rbuf_seq(struct rbuf *r)
{
	return atomic_load(&r->seq);
}

bool rbuf_pin(struct rbuf *r, uint64_t seq)
{
	atomic_fetch_add(&r->users, 1);
	if (atomic_load(&r->seq) == seq)
		return true;
	atomic_fetch_sub(&r->users, 1);
	return false;
}

void rbuf_unpin(struct rbuf *r)
{
	atomic_fetch_sub(&r->users, 1);
}
