/* SPDX-License-Identifier: GPL-2.0 */
/*
 * fdlru.h - a bounded cache of open file descriptors, least recently used
 * first out, as a kernel bounds its caches.
 *
 * An owner object (a cache file, a posix backend node) embeds one struct
 * fdlru_ent with up to FDLRU_SLOTS descriptors.  Its user brackets every
 * use with fdlru_get() and fdlru_put(): get opens the slots it asks for
 * that are not open (through the fdlru's open function), and between the
 * two the descriptors are the user's to use and are never closed under
 * it.  Once no user is left the entry is idle, and idle entries are
 * closed, the least recently used first, whenever the descriptors open
 * in the fdlru pass its limit.  So a process may own any number of such
 * objects with a bounded number of descriptors; a descriptor of an idle
 * object is only a cache.
 *
 * The limit is a target, not a wall: descriptors of entries in use are
 * never closed, so while more are in use than the limit allows, the count
 * stays above it until they are put.  An open that fails with EMFILE or
 * ENFILE closes idle entries, whatever the count, and is tried once more.
 *
 * Idle entries are on two lists.  An entry whose owner is busy (marked
 * with fdlru_mark(), e.g. a file with open handles) loses its descriptors
 * only when no other idle entry is left to close.
 *
 * This lives in backend/ because both the posix backend and cache/ use
 * it; it knows nothing of either.
 *
 * Thread safety: every function may be called from any thread.  The
 * fdlru's lock is a leaf: no other lock is taken under it, and the open
 * function and close(2) run without it.  The fields of struct fdlru_ent
 * are private to fdlru.c and protected by that lock, but a slot's
 * descriptor may be read with fdlru_fd() without it between a get that
 * asked for that slot and the matching put.
 */
#ifndef STAGEFS_FDLRU_H
#define STAGEFS_FDLRU_H

#include <stdbool.h>

#define FDLRU_SLOTS 3

struct fdlru;

struct fdlru_ent {
	int fd[FDLRU_SLOTS];	/* -1: not open */
	unsigned int users;	/* gets not yet put */
	bool opening;		/* a get is opening slots, lock dropped */
	bool busy;		/* idle on the second list (fdlru_mark) */
	bool listed;		/* on an idle list */
	struct fdlru_ent *prev, *next;
};

/*
 * Open slot `slot` of e for a get with these flags (the caller's own
 * meaning, e.g. "create").  Returns the descriptor or -errno.  Runs
 * without the fdlru's lock, concurrently for different entries, never for
 * the same one.
 */
typedef int (*fdlru_open_fn)(struct fdlru_ent *e, unsigned int slot,
			     unsigned int flags);

/* max_fds: the number of open descriptors to stay under (at least 1). */
int fdlru_create(unsigned int max_fds, fdlru_open_fn open_fn,
		 struct fdlru **out);
/* Every entry must have been closed (fdlru_close) before. */
void fdlru_destroy(struct fdlru *l);

/* A new entry: nothing open, no user. */
void fdlru_ent_init(struct fdlru_ent *e);

/*
 * Make the slots in mask (bit i: slot i) of e open and take one use of
 * e.  Returns 0, or -errno if a slot could not be opened; then no use is
 * taken (slots that did open stay, idle).  Waits while another get opens
 * slots of the same entry.
 */
int fdlru_get(struct fdlru *l, struct fdlru_ent *e, unsigned int mask,
	      unsigned int flags);

/* Slot's descriptor; only between a get of that slot and its put. */
static inline int fdlru_fd(const struct fdlru_ent *e, unsigned int slot)
{
	return e->fd[slot];
}

/*
 * Give back one use.  The last one makes e the most recently used idle
 * entry; then idle entries are closed while the count is over the limit.
 * A put of an entry without users is a caller's bug: logged, ignored.
 */
void fdlru_put(struct fdlru *l, struct fdlru_ent *e);

/*
 * Hand an open descriptor to slot `slot` of e, which must not be open
 * (a node made from a descriptor it already has).  e becomes the most
 * recently used idle entry if it has no user.
 */
void fdlru_adopt(struct fdlru *l, struct fdlru_ent *e, unsigned int slot,
		 int fd);

/* Whether e's owner is busy; see above.  Only a hint for the order. */
void fdlru_mark(struct fdlru *l, struct fdlru_ent *e, bool busy);

/*
 * Close every slot of e now and take it off the lists, after waiting for
 * its users to put it (the caller makes sure they will).  A wait of more
 * than a few seconds is logged, naming e, and goes on.  e may be used
 * again afterwards, or freed.
 */
void fdlru_close(struct fdlru *l, struct fdlru_ent *e);

/* A limit for callers that were given none: RLIMIT_NOFILE / 4, >= 16. */
unsigned int fdlru_default_limit(void);

/* Descriptors open in entries of l now, and the limit. */
unsigned int fdlru_open_fds(struct fdlru *l);
unsigned int fdlru_limit(const struct fdlru *l);

#endif /* STAGEFS_FDLRU_H */
