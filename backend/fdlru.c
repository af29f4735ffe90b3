/* SPDX-License-Identifier: GPL-2.0 */
/*
 * fdlru.c - the bounded cache of open descriptors (see fdlru.h).
 *
 * Idle entries sit on two doubly linked lists, most recently used at the
 * head: list 0 for entries whose owner is idle, list 1 for busy owners.
 * Closing takes from the tail of list 0, then of list 1.  Entries in use
 * are on no list, which is what keeps their descriptors open.  Closing
 * happens in two steps: under the lock the victims' descriptors are taken
 * out of their entries (and no longer counted), and after it they are
 * closed, so close(2) never runs under the lock.
 *
 * fdlru_close() waits for the entry's users, as it must; a user that
 * never puts would make it wait for ever, unseen (a FORGET at unmount,
 * whose handler libfuse then joins).  So a wait that lasts says so in the
 * log, naming the entry, and a put without a get is refused and logged
 * instead of wrapping the count.
 *
 * Thread safety: everything under l->lock (a leaf lock), see fdlru.h.
 */
#include "fdlru.h"
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* Descriptors taken out of entries under the lock, closed after it. */
#define FDLRU_BATCH 48
/* Idle entries closed when an open fails with EMFILE or ENFILE. */
#define FDLRU_RECLAIM 16
/* A close waiting this long for users logs it, and again every period. */
#define FDLRU_CLOSE_WARN_S 5
#define FDLRU_CLOSE_REWARN_S 60

_Static_assert(FDLRU_SLOTS == 3, "wait_unused() logs three slots");

struct fdlru {
	pthread_mutex_t lock;
	pthread_cond_t cond;	/* an entry's users or opening went down */
	unsigned int max;
	unsigned int nopen;	/* descriptors open in entries; under lock */
	fdlru_open_fn open_fn;
	struct fdlru_ent *head[2], *tail[2];	/* idle lists, under lock */
};

struct victims {
	int fd[FDLRU_BATCH];
	unsigned int n;
};

int fdlru_create(unsigned int max_fds, fdlru_open_fn open_fn,
		 struct fdlru **out)
{
	struct fdlru *l = calloc(1, sizeof(*l));
	pthread_condattr_t ca;

	if (!l)
		return -ENOMEM;
	pthread_mutex_init(&l->lock, NULL);
	/* Waits are timed (fdlru_close): on a clock that never jumps. */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&l->cond, &ca);
	pthread_condattr_destroy(&ca);
	l->max = max_fds ? max_fds : 1;
	l->open_fn = open_fn;
	*out = l;
	return 0;
}

void fdlru_destroy(struct fdlru *l)
{
	if (!l)
		return;
	pthread_mutex_destroy(&l->lock);
	pthread_cond_destroy(&l->cond);
	free(l);
}

void fdlru_ent_init(struct fdlru_ent *e)
{
	unsigned int i;

	for (i = 0; i < FDLRU_SLOTS; i++)
		e->fd[i] = -1;
	e->users = 0;
	e->opening = false;
	e->busy = false;
	e->listed = false;
	e->prev = e->next = NULL;
}

static unsigned int open_mask(const struct fdlru_ent *e)
{
	unsigned int i, m = 0;

	for (i = 0; i < FDLRU_SLOTS; i++)
		if (e->fd[i] >= 0)
			m |= 1u << i;
	return m;
}

/* Take e off its idle list; l->lock held. */
static void unlist(struct fdlru *l, struct fdlru_ent *e)
{
	int k = e->busy;

	if (!e->listed)
		return;
	if (e->prev)
		e->prev->next = e->next;
	else
		l->head[k] = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		l->tail[k] = e->prev;
	e->prev = e->next = NULL;
	e->listed = false;
}

/* Make an idle entry with open slots the most recently used; lock held. */
static void relist(struct fdlru *l, struct fdlru_ent *e)
{
	int k = e->busy;

	unlist(l, e);
	if (e->users || e->opening || !open_mask(e))
		return;
	e->prev = NULL;
	e->next = l->head[k];
	if (l->head[k])
		l->head[k]->prev = e;
	else
		l->tail[k] = e;
	l->head[k] = e;
	e->listed = true;
}

/* Move e's descriptors into v (there is room); lock held. */
static void take_fds(struct fdlru *l, struct fdlru_ent *e, struct victims *v)
{
	unsigned int i;

	for (i = 0; i < FDLRU_SLOTS; i++) {
		if (e->fd[i] < 0)
			continue;
		v->fd[v->n++] = e->fd[i];
		e->fd[i] = -1;
		l->nopen--;
	}
}

/*
 * Take the descriptors of idle entries, least recently used first, until
 * the count is at most keep or the batch is full.  Lock held.
 */
static void shrink(struct fdlru *l, unsigned int keep, struct victims *v)
{
	while (l->nopen > keep && v->n + FDLRU_SLOTS <= FDLRU_BATCH) {
		struct fdlru_ent *e = l->tail[0] ? l->tail[0] : l->tail[1];

		if (!e)
			break;	/* everything open is in use */
		unlist(l, e);
		take_fds(l, e, v);
	}
}

static void close_victims(struct victims *v)
{
	unsigned int i;

	for (i = 0; i < v->n; i++)
		close(v->fd[i]);
	v->n = 0;
}

/*
 * Open the slots of need; e is ours (opening).  fds[i] gets slot i's new
 * descriptor, -1 for every slot not opened, also those after a failure.
 * Returns 0 or -errno.
 */
static int open_slots(struct fdlru *l, struct fdlru_ent *e, unsigned int need,
		      unsigned int flags, int *fds)
{
	unsigned int i;
	bool reclaimed = false;

	for (i = 0; i < FDLRU_SLOTS; i++)
		fds[i] = -1;
	for (i = 0; i < FDLRU_SLOTS; i++) {
		int fd;

		if (!(need & (1u << i)))
			continue;
		fd = l->open_fn(e, i, flags);
		if ((fd == -EMFILE || fd == -ENFILE) && !reclaimed) {
			/* The budget was wrong: give back idle ones, retry. */
			struct victims v = { .n = 0 };
			unsigned int keep;

			pthread_mutex_lock(&l->lock);
			keep = l->nopen > FDLRU_RECLAIM ?
				       l->nopen - FDLRU_RECLAIM : 0;
			shrink(l, keep, &v);
			pthread_mutex_unlock(&l->lock);
			close_victims(&v);
			reclaimed = true;
			fd = l->open_fn(e, i, flags);
		}
		if (fd < 0)
			return fd;
		fds[i] = fd;
	}
	return 0;
}

int fdlru_get(struct fdlru *l, struct fdlru_ent *e, unsigned int mask,
	      unsigned int flags)
{
	struct victims v = { .n = 0 };
	int fds[FDLRU_SLOTS];
	unsigned int need, i;
	int rc;

	mask &= (1u << FDLRU_SLOTS) - 1;
	pthread_mutex_lock(&l->lock);
	while (e->opening)
		pthread_cond_wait(&l->cond, &l->lock);
	unlist(l, e);
	e->users++;
	need = mask & ~open_mask(e);
	if (!need) {
		pthread_mutex_unlock(&l->lock);
		return 0;
	}
	e->opening = true;
	pthread_mutex_unlock(&l->lock);

	rc = open_slots(l, e, need, flags, fds);

	pthread_mutex_lock(&l->lock);
	for (i = 0; i < FDLRU_SLOTS; i++) {
		if (fds[i] < 0)
			continue;
		e->fd[i] = fds[i];
		l->nopen++;
	}
	e->opening = false;
	if (rc < 0)
		e->users--;
	pthread_cond_broadcast(&l->cond);
	relist(l, e);
	shrink(l, l->max, &v);
	pthread_mutex_unlock(&l->lock);
	close_victims(&v);
	return rc;
}

void fdlru_put(struct fdlru *l, struct fdlru_ent *e)
{
	struct victims v = { .n = 0 };

	pthread_mutex_lock(&l->lock);
	if (!e->users) {
		/* Wrapped, the count would keep fdlru_close waiting for ever. */
		pthread_mutex_unlock(&l->lock);
		log_msg(LOG_LVL_ERR, "fdlru",
			"put of entry %p, which has no user: a put without its get",
			(void *)e);
		return;
	}
	if (--e->users == 0) {
		relist(l, e);
		pthread_cond_broadcast(&l->cond);
	}
	shrink(l, l->max, &v);
	pthread_mutex_unlock(&l->lock);
	close_victims(&v);
}

void fdlru_adopt(struct fdlru *l, struct fdlru_ent *e, unsigned int slot,
		 int fd)
{
	struct victims v = { .n = 0 };

	pthread_mutex_lock(&l->lock);
	if (slot >= FDLRU_SLOTS || e->fd[slot] >= 0) {
		pthread_mutex_unlock(&l->lock);
		close(fd);	/* a caller's mistake; do not leak it */
		return;
	}
	e->fd[slot] = fd;
	l->nopen++;
	relist(l, e);
	shrink(l, l->max, &v);
	pthread_mutex_unlock(&l->lock);
	close_victims(&v);
}

void fdlru_mark(struct fdlru *l, struct fdlru_ent *e, bool busy)
{
	pthread_mutex_lock(&l->lock);
	if (e->busy != busy) {
		bool listed = e->listed;

		unlist(l, e);
		e->busy = busy;
		if (listed)
			relist(l, e);
	}
	pthread_mutex_unlock(&l->lock);
}

/*
 * Wait until e has no user and no open in progress; l->lock held.  A wait
 * of more than FDLRU_CLOSE_WARN_S seconds is logged, then every
 * FDLRU_CLOSE_REWARN_S, and goes on: closing under a user would be worse.
 */
static void wait_unused(struct fdlru *l, struct fdlru_ent *e)
{
	struct timespec start, until;
	time_t warn = FDLRU_CLOSE_WARN_S;

	if (!e->users && !e->opening)
		return;
	clock_gettime(CLOCK_MONOTONIC, &start);
	until = start;
	until.tv_sec += warn;
	while (e->users || e->opening) {
		if (pthread_cond_timedwait(&l->cond, &l->lock, &until) !=
		    ETIMEDOUT)
			continue;
		if (!e->users && !e->opening)
			break;
		log_msg(LOG_LVL_ERR, "fdlru",
			"close of entry %p (fds %d %d %d) has waited %lld s for %u user(s)%s: a get without its put, or a user that is stuck",
			(void *)e, e->fd[0], e->fd[1], e->fd[2],
			(long long)warn, e->users,
			e->opening ? " and an open" : "");
		warn += FDLRU_CLOSE_REWARN_S;
		until.tv_sec = start.tv_sec + warn;
	}
}

void fdlru_close(struct fdlru *l, struct fdlru_ent *e)
{
	struct victims v = { .n = 0 };

	pthread_mutex_lock(&l->lock);
	wait_unused(l, e);
	unlist(l, e);
	take_fds(l, e, &v);
	pthread_mutex_unlock(&l->lock);
	close_victims(&v);
}

unsigned int fdlru_open_fds(struct fdlru *l)
{
	unsigned int n;

	pthread_mutex_lock(&l->lock);
	n = l->nopen;
	pthread_mutex_unlock(&l->lock);
	return n;
}

unsigned int fdlru_limit(const struct fdlru *l)
{
	return l->max;
}

unsigned int fdlru_default_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
		return 1024;
	if (rl.rlim_cur / 4 > 1U << 20)
		return 1U << 20;
	return rl.rlim_cur / 4 > 16 ? (unsigned int)(rl.rlim_cur / 4) : 16;
}
