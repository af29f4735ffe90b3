/* SPDX-License-Identifier: GPL-2.0 */
/*
 * fdcache.c - the descriptors of the cache files, bounded.
 *
 * A cache file has a data file, an index file and, with cache_direct=on
 * or fills, a second, O_DIRECT descriptor of the data file (for fills
 * only when one comes).  The cache holds a
 * struct cache_file for every file it has data of, millions on a large
 * node, so these cannot stay open: they live in the cache's fdlru
 * (backend/fdlru.h).  Every user takes the ones it needs with
 * file_fds_get() and gives them back with file_fds_put(): a read or
 * write for the time of its cache-file I/O, a splice reply until it is
 * sent (cache_read_pin .. cache_read_unpin), a flusher for its read-back,
 * the index for each slot it reads or writes.  A file nobody uses keeps
 * its descriptors only as a cache; when more than cache_config.max_fds
 * are open, those of the least recently used files are closed.  Files
 * with users besides the table (open handles, queued uploads or
 * prefetches) lose theirs last.
 *
 * Files are created only by index_open() (FILE_FD_CREATE): a reopen finds
 * them or fails, so a cache file that vanished under the daemon gives an
 * error instead of an empty file that would read as zeros.
 *
 * Thread safety: see fdlru.h; the fdlru's lock is taken under any other.
 */
#include "cache_int.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

static int open_slot(struct fdlru_ent *e, unsigned int slot,
		     unsigned int flags)
{
	struct cache_file *f = container_of(e, struct cache_file, fds);
	int oflags = O_RDWR | O_CLOEXEC;
	char name[128];
	int fd;

	index_file_name(f, slot == FILE_FD_SLOT_INDEX ? "index" : "data",
			name, sizeof(name));
	if (slot == FILE_FD_SLOT_DIRECT)
		oflags |= O_DIRECT;	/* after the data slot: it exists */
	else if (flags & FILE_FD_CREATE)
		oflags |= O_CREAT;
	fd = openat(f->c->dir_fd, name, oflags, 0600);
	if (fd < 0) {
		int err = errno;

		if (err != EMFILE && err != ENFILE)
			log_msg(LOG_LVL_ERR, "cache", "open %s/%s: %s",
				f->c->cfg->dir, name, strerror(err));
		return -err;
	}
	return fd;
}

int cache_fds_init(struct cache *c)
{
	unsigned int max = c->cfg->max_fds ? c->cfg->max_fds :
					     fdlru_default_limit();

	return fdlru_create(max, open_slot, &c->fdlru);
}

void cache_fds_destroy(struct cache *c)
{
	fdlru_destroy(c->fdlru);
	c->fdlru = NULL;
}

int file_fds_get(struct cache_file *f, unsigned int what)
{
	unsigned int mask = 0;

	if (what & FILE_FD_DATA) {
		mask |= 1u << FILE_FD_SLOT_DATA;
		/* Opened when first needed: a small file that is only
		 * written never has its data file opened twice. */
		if (f->c->direct == CACHE_DIRECT_ON ||
		    (f->c->direct != CACHE_DIRECT_OFF && (what & FILE_FD_FILL)))
			mask |= 1u << FILE_FD_SLOT_DIRECT;
	}
	if (what & FILE_FD_INDEX)
		mask |= 1u << FILE_FD_SLOT_INDEX;
	return fdlru_get(f->c->fdlru, &f->fds, mask, what & FILE_FD_CREATE);
}

void file_fds_put(struct cache_file *f)
{
	fdlru_put(f->c->fdlru, &f->fds);
}

void file_fds_close(struct cache_file *f)
{
	fdlru_close(f->c->fdlru, &f->fds);
}

void file_fds_busy(struct cache_file *f, bool busy)
{
	fdlru_mark(f->c->fdlru, &f->fds, busy);
}
