/* SPDX-License-Identifier: GPL-2.0 */
/*
 * nodeid.c - this node's id, kept in the cache dir as "node-id".
 *
 * A random 64-bit number, made once and read at every start after that.
 * The FUSE layer puts it in the hidden names of files unlinked while
 * open, so that a start can find the ones its own crashed run left
 * behind and never touch another node's (docs/operations.md).  It is the
 * cache dir's and not the host's: two daemons on one host (two cache
 * dirs) must not remove each other's live files, and the cache dir lock
 * is what says that no other daemon runs with this id now.
 *
 * File: 16 lowercase hex digits and a newline, 0600, written to a
 * temporary name, synced and renamed, so it is never seen half-written.
 *
 * Thread safety: runs once in cache_open(), with the cache dir lock held;
 * the id does not change after that.
 */
#include "cache_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#define NODE_ID_FILE "node-id"
#define NODE_ID_TMP "node-id.tmp"

/* Parse "<16 hex>\n".  Returns 0, or -EINVAL. */
static int parse_id(const char *buf, size_t len, uint64_t *id)
{
	uint64_t v = 0;
	size_t i;

	if (len != 17 || buf[16] != '\n')
		return -EINVAL;
	for (i = 0; i < 16; i++) {
		char ch = buf[i];

		if (ch >= '0' && ch <= '9')
			v = v << 4 | (uint64_t)(ch - '0');
		else if (ch >= 'a' && ch <= 'f')
			v = v << 4 | (uint64_t)(ch - 'a' + 10);
		else
			return -EINVAL;
	}
	*id = v;
	return 0;
}

/* Read node-id.  Returns 0, -ENOENT, -EINVAL (not an id) or -errno. */
static int read_id(int dir_fd, uint64_t *id)
{
	char buf[32];
	ssize_t n;
	int fd, rc;

	fd = openat(dir_fd, NODE_ID_FILE, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = pread(fd, buf, sizeof(buf), 0);
	rc = n < 0 ? -errno : parse_id(buf, (size_t)n, id);
	close(fd);
	return rc;
}

/* Write node-id atomically (temporary name, fsync, rename, fsync dir). */
static int write_id(int dir_fd, uint64_t id)
{
	char buf[32];
	int fd, dfd, n, rc = 0;

	n = snprintf(buf, sizeof(buf), "%016" PRIx64 "\n", id);
	fd = openat(dir_fd, NODE_ID_TMP,
		    O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
		    0600);
	if (fd < 0)
		return -errno;
	if (pwrite(fd, buf, (size_t)n, 0) != n || fsync(fd) < 0)
		rc = errno ? -errno : -EIO;
	close(fd);
	if (rc == 0 && renameat(dir_fd, NODE_ID_TMP, dir_fd, NODE_ID_FILE) < 0)
		rc = -errno;
	if (rc < 0) {
		unlinkat(dir_fd, NODE_ID_TMP, 0);
		return rc;
	}
	/* The rename itself must last, or a crash soon after makes a new id
	 * and this run's leftovers are nobody's. */
	dfd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	return 0;
}

void cache_node_id_load(struct cache *c)
{
	uint64_t id;
	int rc;

	rc = read_id(c->dir_fd, &id);
	if (rc == 0) {
		c->node_id = id;
		return;
	}
	if (rc != -ENOENT)
		log_msg(LOG_LVL_WARN, "cache",
			"cache dir %s: %s: %s; making a new node id (hidden files of unlinked open files left by earlier runs will not be removed)",
			c->cfg->dir, NODE_ID_FILE,
			rc == -EINVAL ? "not a node id" : strerror(-rc));
	if (getrandom(&id, sizeof(id), 0) != (ssize_t)sizeof(id)) {
		/* Not a secret: only needs to differ between nodes. */
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		id = (uint64_t)ts.tv_sec * 1000000007ULL ^
		     (uint64_t)ts.tv_nsec << 20 ^ (uint64_t)getpid();
	}
	c->node_id = id;
	rc = write_id(c->dir_fd, id);
	if (rc < 0)
		log_msg(LOG_LVL_WARN, "cache",
			"cache dir %s: cannot save %s: %s; node id %016" PRIx64 " holds for this run only",
			c->cfg->dir, NODE_ID_FILE, strerror(-rc), id);
	else
		log_msg(LOG_LVL_INFO, "cache", "cache dir %s: new node id %016" PRIx64,
			c->cfg->dir, id);
}

uint64_t cache_node_id(const struct cache *c)
{
	return c->node_id;
}
