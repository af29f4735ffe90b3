/* SPDX-License-Identifier: GPL-2.0 */
/*
 * ptmark.c - passthrough descriptors that outlive the daemon.
 *
 * The kernel holds a passthrough open's backing file (the cache data file)
 * by itself.  When the daemon dies (kill -9, a crash), a descriptor opened
 * through passthrough still reads and writes that data file, and nothing
 * sees it: the FUSE connection is gone, but the backing file is the
 * descriptor's.  A restarted daemon must not use such a data file in
 * place.  It would fetch newer bytes into a file an old descriptor still
 * reads (which then reads a mix of two versions), and take the old
 * descriptor's later writes, which no fsync can acknowledge any more, for
 * bytes of its own.
 *
 * So a file with passthrough opens is marked: a record in pt-open, a
 * file in the cache dir, written before the first such open is answered
 * and zeroed after the last one's release.  A record is one pwrite of
 * PTMARK_REC bytes (the data file's name) into the page cache, about a
 * microsecond: every open-read-close of a small cached file pays it.  It
 * needs no fsync: a process crash keeps it, and a node crash ends every
 * descriptor with it.  At start, after the journal is read and before
 * any cached file is loaded, each record left behind is settled:
 *   - a file with dirty data (its index says so, or the journal names
 *     it) gets a fresh data file: a copy of the old one (a reflink where
 *     the cache fs has them), made durable and renamed over it;
 *   - a clean file leaves the cache the way an eviction removes it (the
 *     index through trash/): the backend has its bytes, a later open
 *     fetches them into a new data file.
 * Either way the old descriptors keep the old inode to themselves: they
 * read what they read before the crash and their own later writes.
 *
 * Thread safety: pt_user_get() and pt_user_put() run under f->lock and take
 * c->ptmark_lock (a leaf) for the free records; the start-up settling
 * runs before any other thread.
 */
#include "cache_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PTMARK_REC CACHE_NAME_MAX	/* a data file's name, zero-padded */

static int slot_get(struct cache *c)
{
	int slot = -1;

	pthread_mutex_lock(&c->ptmark_lock);
	if (c->ptmark_nfree)
		slot = (int)c->ptmark_free[--c->ptmark_nfree];
	else if (c->ptmark_n < INT_MAX)
		slot = (int)c->ptmark_n++;
	pthread_mutex_unlock(&c->ptmark_lock);
	return slot;
}

static void slot_put(struct cache *c, int slot)
{
	pthread_mutex_lock(&c->ptmark_lock);
	if (c->ptmark_nfree == c->ptmark_cap) {
		size_t ncap = c->ptmark_cap ? 2 * c->ptmark_cap : 64;
		uint32_t *n = realloc(c->ptmark_free, ncap * sizeof(*n));

		if (!n) {	/* the record is not used again */
			pthread_mutex_unlock(&c->ptmark_lock);
			return;
		}
		c->ptmark_free = n;
		c->ptmark_cap = ncap;
	}
	c->ptmark_free[c->ptmark_nfree++] = (uint32_t)slot;
	pthread_mutex_unlock(&c->ptmark_lock);
}

static int pt_mark(struct cache_file *f)
{
	struct cache *c = f->c;
	char rec[PTMARK_REC] = { 0 };
	int slot = slot_get(c), rc;

	if (slot < 0)
		return -ENOMEM;
	cache_name(rec, sizeof(rec), index_spec_hash(f), f->fileid, f->hkey);
	if (pwrite(c->ptmark_fd, rec, sizeof(rec),
		   (off_t)slot * PTMARK_REC) == (ssize_t)sizeof(rec)) {
		f->pt_slot = slot;
		return 0;
	}
	rc = errno ? -errno : -ENOSPC;
	log_msg(LOG_LVL_WARN, "passthrough",
		"cannot write %s/pt-open (%s): the open goes through the daemon",
		c->cfg->dir, strerror(-rc));
	slot_put(c, slot);
	return rc;
}

static void pt_unmark(struct cache_file *f)
{
	static const char zero[PTMARK_REC];
	struct cache *c = f->c;
	int slot = f->pt_slot;

	if (slot < 0)
		return;
	f->pt_slot = -1;
	if (pwrite(c->ptmark_fd, zero, sizeof(zero),
		   (off_t)slot * PTMARK_REC) != (ssize_t)sizeof(zero)) {
		/* The record stays (and its slot unused): a start after a
		 * crash settles this file needlessly, and that is all. */
		log_msg(LOG_LVL_WARN, "passthrough",
			"cannot clear a record of %s/pt-open: %s", c->cfg->dir,
			strerror(errno));
		return;
	}
	slot_put(c, slot);
}

int pt_user_get(struct cache_file *f)
{
	int rc = f->pt_users ? 0 : pt_mark(f);

	if (rc == 0)
		f->pt_users++;
	return rc;
}

void pt_user_put(struct cache_file *f)
{
	if (--f->pt_users == 0)
		pt_unmark(f);
}

static int sync_dir(struct cache *c, const char *dir)
{
	int fd = openat(c->dir_fd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = 0;

	if (fd < 0 || fsync(fd) < 0)
		rc = -errno;
	if (fd >= 0)
		close(fd);
	return rc;
}

/*
 * A fresh inode for data/NAME, with the same bytes; 0 or -errno.  The
 * copy is linked as trash/NAME.copy first: a crash before the rename
 * leaves it there, and reap_trash() removes it at the next start.
 */
static int pt_detach(struct cache *c, const char *name)
{
	char dname[300], tname[300], proc[64];
	int src, dst, rc = 0;
	struct stat st;

	snprintf(dname, sizeof(dname), "data/%s", name);
	snprintf(tname, sizeof(tname), "trash/%s.copy", name);
	src = openat(c->dir_fd, dname, O_RDONLY | O_CLOEXEC);
	if (src < 0)
		return errno == ENOENT ? 0 : -errno;
	dst = openat(c->dir_fd, "data", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (dst < 0 || fstat(src, &st) < 0) {
		rc = -errno;
		goto out;
	}
	rc = cache_copy_data(src, dst, (uint64_t)st.st_size);
	if (rc == 0 && fdatasync(dst) < 0)
		rc = -errno;
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", dst);
	if (rc == 0 && linkat(AT_FDCWD, proc, c->dir_fd, tname,
			      AT_SYMLINK_FOLLOW) < 0)
		rc = -errno;
	if (rc == 0 && renameat(c->dir_fd, tname, c->dir_fd, dname) < 0) {
		rc = -errno;
		unlinkat(c->dir_fd, tname, 0);
	}
	if (rc == 0)
		rc = sync_dir(c, "data");
out:
	if (dst >= 0)
		close(dst);
	close(src);
	return rc;
}

/* One record left by an earlier run; 0 or -errno (err set). */
static int settle_one(struct cache *c, const char *name,
		      bool (*dirty)(void *, uint64_t), void *arg,
		      uint64_t *ncopied, uint64_t *ndropped, char *err,
		      size_t errlen)
{
	char iname[300];
	unsigned int spec;
	uint64_t fileid, hkey;
	int rc;

	if (!cache_name_parse(name, &spec, &fileid, &hkey) ||
	    strchr(name, '/') || strchr(name, '.'))
		return 0;	/* not a name this cache makes */
	snprintf(iname, sizeof(iname), "index/%s", name);
	if (!dirty(arg, fileid) && !index_name_dirty(c, iname)) {
		reap_files(c, name);
		(*ndropped)++;
		return 0;
	}
	rc = pt_detach(c, name);
	if (rc < 0)
		snprintf(err, errlen,
			 "cache dir %s: data/%s has dirty data and was open through passthrough when the daemon stopped; cannot copy it to a fresh file (%s)",
			 c->cfg->dir, name, strerror(-rc));
	else
		(*ncopied)++;
	return rc;
}

int pt_marks_settle(struct cache *c, bool (*dirty)(void *, uint64_t),
		    void *arg, char *err, size_t errlen)
{
	uint64_t ncopied = 0, ndropped = 0;
	char rec[PTMARK_REC + 1] = { 0 };
	off_t off = 0;
	int rc = 0;

	c->ptmark_fd = openat(c->dir_fd, "pt-open",
			      O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (c->ptmark_fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "cache dir %s: cannot open pt-open: %s",
			 c->cfg->dir, strerror(-rc));
		return rc;
	}
	while (rc == 0 && pread(c->ptmark_fd, rec, PTMARK_REC, off) ==
				  PTMARK_REC) {
		off += PTMARK_REC;
		if (rec[0])
			rc = settle_one(c, rec, dirty, arg, &ncopied,
					&ndropped, err, errlen);
	}
	if (rc < 0)
		return rc;	/* the records stay for the next start */
	if (ftruncate(c->ptmark_fd, 0) < 0) {
		rc = -errno;
		snprintf(err, errlen, "cache dir %s: cannot empty pt-open: %s",
			 c->cfg->dir, strerror(-rc));
		return rc;
	}
	if (ncopied + ndropped)
		log_msg(LOG_LVL_INFO, "passthrough",
			"%" PRIu64 " file(s) were open through passthrough when the daemon stopped: %" PRIu64 " with dirty data got a fresh data file, %" PRIu64 " clean ones left the cache; old descriptors keep the old files",
			ncopied + ndropped, ncopied, ndropped);
	return 0;
}

void pt_marks_close(struct cache *c)
{
	if (c->ptmark_fd >= 0)
		close(c->ptmark_fd);
	c->ptmark_fd = -1;
	free(c->ptmark_free);
	c->ptmark_free = NULL;
	c->ptmark_nfree = c->ptmark_cap = c->ptmark_n = 0;
}
