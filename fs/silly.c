/* SPDX-License-Identifier: GPL-2.0 */
/*
 * silly.c - the hidden names of files unlinked while open.
 *
 * A file whose last name goes while it is open is renamed to a hidden
 * name (dir.c silly_rename()) and removed at its last close (file.c
 * silly_remove()).  A daemon that dies in between (kill -9, a node crash)
 * leaves the file there.  The hidden name therefore starts with this
 * node's id (cache_node_id(): random, kept in the cache dir): names of
 * different nodes never collide, and a node can tell its own leftovers.
 *
 * Thread safety: silly_name() reads immutable fields only.
 */
#include "fs_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int silly_name(struct sfs *s, struct sfs_inode *ino, bool here, char *buf,
	       size_t len)
{
	int n = snprintf(buf, len,
			 "%s%016" PRIx64 "-%016" PRIx64 "-%016" PRIx64 "-%d",
			 here ? SILLY_DIR "-" : "", cache_node_id(s->cache),
			 ino->fileid, ino->node->hkey, (int)getpid());

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}
