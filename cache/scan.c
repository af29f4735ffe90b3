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
 * Thread safety: the cold list is under c->cold_lock, taken after
 * table_lock when both are needed.
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

#define COLD_BUCKETS 4096

struct cold_file {
	unsigned int spec_hash;
	uint64_t fileid;
	uint64_t hkey;
	uint64_t bytes;
	int64_t mtime;
	struct cold_file *next;
};

static size_t cold_hash(uint64_t fileid)
{
	return (size_t)((fileid * 0x9e3779b97f4a7c15ULL) >> 32) % COLD_BUCKETS;
}

/* A file of the table is about to be opened: it is no longer cold. */
void cold_forget(struct cache *c, unsigned int spec_hash, uint64_t fileid,
		 uint64_t hkey)
{
	struct cold_file **pp, *cf;

	pthread_mutex_lock(&c->cold_lock);
	if (!c->cold)
		goto out;
	for (pp = &c->cold[cold_hash(fileid)]; (cf = *pp); pp = &cf->next) {
		if (cf->fileid == fileid && cf->spec_hash == spec_hash &&
		    cf->hkey == hkey) {
			*pp = cf->next;
			atomic_fetch_sub(&c->used_bytes, cf->bytes);
			c->ncold--;
			free(cf);
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

void *scan_main(void *arg)
{
	struct cache *c = arg;
	uint64_t files = 0, bytes = 0;
	struct dirent *de;
	DIR *dp;
	int fd;

	fd = openat(c->dir_fd, "index", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || !(dp = fdopendir(fd))) {
		log_msg(LOG_LVL_WARN, "scan", "cannot list %s/index: %s",
			c->cfg->dir, strerror(errno));
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	while (!atomic_load(&c->stopping) && (de = readdir(dp))) {
		unsigned int spec_hash;
		uint64_t fileid, hkey;
		struct cold_file *cf;
		char name[300];
		struct stat st;

		if (sscanf(de->d_name, "%8x-%16" SCNx64 "-%16" SCNx64,
			   &spec_hash, &fileid, &hkey) != 3)
			continue;
		snprintf(name, sizeof(name), "data/%s", de->d_name);
		if (fstatat(c->dir_fd, name, &st, 0) < 0)
			continue;
		cf = calloc(1, sizeof(*cf));
		if (!cf)
			break;
		cf->spec_hash = spec_hash;
		cf->fileid = fileid;
		cf->hkey = hkey;
		cf->bytes = (uint64_t)st.st_blocks * 512;
		cf->mtime = st.st_mtim.tv_sec;
		pthread_mutex_lock(&c->table_lock);	/* no race with get */
		if (in_table(c, spec_hash, fileid, hkey)) {
			pthread_mutex_unlock(&c->table_lock);
			free(cf);
			continue;
		}
		pthread_mutex_lock(&c->cold_lock);
		if (!c->cold)
			c->cold = calloc(COLD_BUCKETS, sizeof(*c->cold));
		if (c->cold) {
			cf->next = c->cold[cold_hash(fileid)];
			c->cold[cold_hash(fileid)] = cf;
			c->ncold++;
			atomic_fetch_add(&c->used_bytes, cf->bytes);
			files++;
			bytes += cf->bytes;
		} else {
			free(cf);
		}
		pthread_mutex_unlock(&c->cold_lock);
		pthread_mutex_unlock(&c->table_lock);
	}
	closedir(dp);
	log_msg(files ? LOG_LVL_INFO : LOG_LVL_DEBUG, "scan",
		"%llu files (%llu bytes) cached by earlier runs are counted and may be evicted",
		(unsigned long long)files, (unsigned long long)bytes);
	cache_evict_maybe(c);
	return NULL;
}

/* Remove the oldest cold files until at least want bytes are freed. */
uint64_t cold_evict(struct cache *c, uint64_t want)
{
	uint64_t freed = 0;

	while (freed < want) {
		struct cold_file **pp, **oldest = NULL, *cf;
		char name[80];
		size_t b;

		pthread_mutex_lock(&c->cold_lock);
		for (b = 0; c->cold && b < COLD_BUCKETS; b++)
			for (pp = &c->cold[b]; *pp; pp = &(*pp)->next)
				if (!oldest || (*pp)->mtime < (*oldest)->mtime)
					oldest = pp;
		if (!oldest) {
			pthread_mutex_unlock(&c->cold_lock);
			break;
		}
		cf = *oldest;
		*oldest = cf->next;
		c->ncold--;
		pthread_mutex_unlock(&c->cold_lock);

		snprintf(name, sizeof(name), "index/%08x-%016" PRIx64 "-%016" PRIx64,
			 cf->spec_hash, cf->fileid, cf->hkey);
		if (index_name_dirty(c, name)) {
			/* Journal records replay could not act on: keep it
			 * (still counted), off the list. */
			free(cf);
			continue;
		}
		unlinkat(c->dir_fd, name, 0);
		snprintf(name, sizeof(name), "data/%08x-%016" PRIx64 "-%016" PRIx64,
			 cf->spec_hash, cf->fileid, cf->hkey);
		unlinkat(c->dir_fd, name, 0);
		atomic_fetch_sub(&c->used_bytes, cf->bytes);
		atomic_fetch_add(&c->chunks_evicted,
				 (cf->bytes + c->cfg->chunk_size - 1) /
					 c->cfg->chunk_size);
		freed += cf->bytes;
		free(cf);
	}
	return freed;
}

void cold_free(struct cache *c)
{
	size_t b;

	for (b = 0; c->cold && b < COLD_BUCKETS; b++) {
		struct cold_file *cf, *next;

		for (cf = c->cold[b]; cf; cf = next) {
			next = cf->next;
			free(cf);
		}
	}
	free(c->cold);
	c->cold = NULL;
}
