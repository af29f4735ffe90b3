/* SPDX-License-Identifier: GPL-2.0 */
/*
 * reap.c - the remover of evicted cold files (issue 14).
 *
 * The evictor runs in the thread of a read or a write that found the
 * cache over its limit.  For a cold file (cached by an earlier run, see
 * scan.c) it only picks: the file leaves the cold list for the removal
 * queue, with no system call.  This thread unlinks the picked files, one
 * at a time, oldest first: an unlink can wait for a busy ext4 journal for
 * over 100 ms, and no application's write should wait for that.  The
 * bytes of a file count as freed once its files are gone (until then
 * they are in freeing_bytes, so the evictor does not pick more for them).
 *
 * A removal is crash-safe: the index file is first renamed into trash/
 * (from then on the file is not cached: an open makes a new index, which
 * truncates the data file, and the scan does not list it), then the data
 * file is unlinked, then the trash entry.  A crash in between leaves the
 * index in trash/, and the next start removes its data file and it
 * before it replays the journal or serves anything (reap_trash()).  A
 * file picked but not yet taken by this thread is untouched: after a
 * crash it is a cold file like any other.
 *
 * An open of a picked file that this thread has not taken yet takes it
 * back (cold_forget()); an open of the file being removed waits for the
 * removal (cold_wait_removed()) and then caches the file afresh.
 *
 * Thread safety: takes c->cold_lock only (in scan.c), and no lock while
 * it unlinks.
 */
#include "cache_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void reap_files(struct cache *c, const char *name)
{
	char iname[300], dname[300], tname[300];

	snprintf(iname, sizeof(iname), "index/%s", name);
	snprintf(dname, sizeof(dname), "data/%s", name);
	snprintf(tname, sizeof(tname), "trash/%s", name);
	if (renameat(c->dir_fd, iname, c->dir_fd, tname) < 0) {
		/* Gone already (ENOENT), or no room for the trash entry:
		 * unlink it in place (a crash before the data file's unlink
		 * then leaves that data file behind). */
		if (errno != ENOENT)
			unlinkat(c->dir_fd, iname, 0);
		tname[0] = 0;
	}
	if (unlinkat(c->dir_fd, dname, 0) < 0 && errno != ENOENT)
		log_msg(LOG_LVL_WARN, "evict", "cannot remove %s/%s: %s",
			c->cfg->dir, dname, strerror(errno));
	if (tname[0])
		unlinkat(c->dir_fd, tname, 0);
}

/* Remove one picked file; false if it is kept (it may hold dirty data). */
static bool reap_one(struct cache *c, const struct cold_victim *v)
{
	char iname[80], name[CACHE_NAME_MAX];

	cache_name(name, sizeof(name), v->spec_hash, v->fileid, v->hkey);
	snprintf(iname, sizeof(iname), "index/%s", name);
	/* Journal records replay could not act on may be this file's: keep
	 * it (still counted), off the list.  Without them, replay loaded
	 * every file with dirty data. */
	if (c->keep_journal && index_name_dirty(c, iname))
		return false;
	reap_files(c, name);
	return true;
}

void *reap_main(void *arg)
{
	struct cache *c = arg;
	struct cold_victim v;

	pthread_setname_np(pthread_self(), "sfs-reap");
	while (cold_reap_take(c, &v))
		cold_reap_done(c, &v, reap_one(c, &v));
	return NULL;
}

int reap_trash(struct cache *c, char *err, size_t errlen)
{
	struct dirent *de;
	size_t n = 0;
	DIR *dp;
	int fd;

	fd = openat(c->dir_fd, "trash", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || !(dp = fdopendir(fd))) {
		int rc = -errno;

		snprintf(err, errlen, "cache dir %s: cannot list trash/: %s",
			 c->cfg->dir, strerror(-rc));
		if (fd >= 0)
			close(fd);
		return rc;
	}
	while ((de = readdir(dp))) {
		char name[300];

		if (de->d_name[0] == '.')
			continue;
		/* the data file first: the trash entry is the record */
		snprintf(name, sizeof(name), "data/%s", de->d_name);
		unlinkat(c->dir_fd, name, 0);
		snprintf(name, sizeof(name), "trash/%s", de->d_name);
		unlinkat(c->dir_fd, name, 0);
		n++;
	}
	closedir(dp);
	if (n)
		log_msg(LOG_LVL_INFO, "evict",
			"removed %zu cached file(s) whose eviction a crash interrupted",
			n);
	return 0;
}
