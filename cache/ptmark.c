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
 * So a file with passthrough opens has a marker, pt/NAME (NAME as in
 * data/NAME), made before the first such open is answered and removed
 * after the last one's release.  A marker needs no fsync: a process crash
 * keeps it, and a node crash ends every descriptor with it.  At start,
 * after the journal is read and before any cached file is loaded, each
 * marker left behind is settled:
 *   - a file with dirty data (its index says so, or the journal names
 *     it) gets a fresh data file: a copy of the old one (a reflink where
 *     the cache fs has them), made durable and renamed over it;
 *   - a clean file leaves the cache the way an eviction removes it (the
 *     index through trash/): the backend has its bytes, a later open
 *     fetches them into a new data file.
 * Either way the old descriptors keep the old inode to themselves: they
 * read what they read before the crash and their own later writes.
 *
 * Thread safety: pt_mark() and pt_unmark() run under f->lock; the start-up
 * settling runs before any other thread.
 */
#include "cache_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int pt_mark(struct cache_file *f)
{
	char name[128];

	index_file_name(f, "pt", name, sizeof(name));
	if (mknodat(f->c->dir_fd, name, S_IFREG | 0600, 0) < 0 &&
	    errno != EEXIST) {
		int rc = -errno;

		log_msg(LOG_LVL_WARN, "passthrough",
			"cannot make %s/%s (%s): the open goes through the daemon",
			f->c->cfg->dir, name, strerror(-rc));
		return rc;
	}
	return 0;
}

void pt_unmark(struct cache_file *f)
{
	char name[128];

	index_file_name(f, "pt", name, sizeof(name));
	if (unlinkat(f->c->dir_fd, name, 0) < 0 && errno != ENOENT)
		log_msg(LOG_LVL_WARN, "passthrough", "cannot remove %s/%s: %s",
			f->c->cfg->dir, name, strerror(errno));
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

/* A fresh inode for data/NAME, with the same bytes; 0 or -errno. */
static int pt_detach(struct cache *c, const char *name)
{
	char dname[300], tname[300], proc[64];
	int src, dst, rc = 0;
	struct stat st;

	snprintf(dname, sizeof(dname), "data/%s", name);
	snprintf(tname, sizeof(tname), "pt/%s.copy", name);
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
	unlinkat(c->dir_fd, tname, 0);	/* an earlier start's, cut short */
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

/* data/NAME and index/NAME go, crash-safe as reap.c removes them. */
static void pt_drop(struct cache *c, const char *name)
{
	char iname[300], tname[300], dname[300];

	snprintf(iname, sizeof(iname), "index/%s", name);
	snprintf(tname, sizeof(tname), "trash/%s", name);
	snprintf(dname, sizeof(dname), "data/%s", name);
	if (renameat(c->dir_fd, iname, c->dir_fd, tname) < 0) {
		if (errno != ENOENT)
			unlinkat(c->dir_fd, iname, 0);
		tname[0] = 0;
	}
	unlinkat(c->dir_fd, dname, 0);
	if (tname[0])
		unlinkat(c->dir_fd, tname, 0);
}

int pt_marks_settle(struct cache *c, bool (*dirty)(void *, uint64_t),
		    void *arg, char *err, size_t errlen)
{
	uint64_t ncopied = 0, ndropped = 0;
	struct dirent *de;
	DIR *dp;
	int fd, rc = 0;

	fd = openat(c->dir_fd, "pt", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || !(dp = fdopendir(fd))) {
		rc = -errno;
		snprintf(err, errlen, "cache dir %s: cannot list pt/: %s",
			 c->cfg->dir, strerror(-rc));
		if (fd >= 0)
			close(fd);
		return rc;
	}
	while ((de = readdir(dp)) && rc == 0) {
		char iname[300], pname[300];
		unsigned int spec;
		uint64_t fileid, hkey;

		if (de->d_name[0] == '.')
			continue;
		snprintf(pname, sizeof(pname), "pt/%s", de->d_name);
		if (sscanf(de->d_name, "%8x-%16" SCNx64 "-%16" SCNx64, &spec,
			   &fileid, &hkey) != 3 || strchr(de->d_name, '.')) {
			unlinkat(c->dir_fd, pname, 0);	/* a .copy */
			continue;
		}
		snprintf(iname, sizeof(iname), "index/%s", de->d_name);
		if (dirty(arg, fileid) || index_name_dirty(c, iname)) {
			rc = pt_detach(c, de->d_name);
			if (rc < 0) {
				snprintf(err, errlen,
					 "cache dir %s: data/%s has dirty data and was open through passthrough when the daemon stopped; cannot copy it to a fresh file (%s)",
					 c->cfg->dir, de->d_name,
					 strerror(-rc));
				break;
			}
			ncopied++;
		} else {
			pt_drop(c, de->d_name);
			ndropped++;
		}
		unlinkat(c->dir_fd, pname, 0);
	}
	closedir(dp);
	if (ncopied + ndropped)
		log_msg(LOG_LVL_INFO, "passthrough",
			"%" PRIu64 " file(s) were open through passthrough when the daemon stopped: %" PRIu64 " with dirty data got a fresh data file, %" PRIu64 " clean ones left the cache; old descriptors keep the old files",
			ncopied + ndropped, ncopied, ndropped);
	return rc;
}
