/* SPDX-License-Identifier: GPL-2.0 */
/*
 * ctl.h - the control channel that stagefsctl talks to.
 *
 * A Unix stream socket, by default /run/stagefs/<XXH3 of the mountpoint's
 * real path, 16 hex digits>.sock, mode 0666.  Anyone may ask for status
 * and stats; commands that change anything (flush, evict, pin, unpin,
 * prefetch, scrub) are refused unless SO_PEERCRED says the caller is root.
 *
 * Protocol: the client sends one line, "COMMAND [ARG]\n"; the daemon
 * answers "ok\n" followed by the payload, or one line "error: ...\n",
 * and closes the connection.  ARG is the st_ino of a file in the mount.
 * A command on a file the cache does not hold answers "ok\nnot cached\n".
 *
 * "scrub [ARG]" checks the cached blocks of one file, or of every file in
 * the cache table, against their checksums.  Its payload is one line,
 * "CHECKED BAD REFETCHED BYTES SKIPPED\n": blocks checked, of them bad,
 * of the bad ones fetched again, the file bytes in the checked blocks,
 * and blocks not checked because a passthrough writer has the file.  A
 * client that hangs up ends the scrub at the next chunk.
 *
 * Thread safety: one thread accepts; every connection is served by a
 * thread of its own (so a client can poll stats while its flush runs).
 */
#ifndef STAGEFS_CTL_H
#define STAGEFS_CTL_H

#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

struct sfs;
struct ctl;

#define CTL_DIR "/run/stagefs"
/* In the cache dir, while the daemon runs: a symlink to its socket. */
#define CTL_CACHE_LINK "ctl.sock"

/* The default socket path of a mountpoint (a real path). */
static inline void ctl_default_path(const char *mountpoint, char *buf,
				    size_t len)
{
	snprintf(buf, len, "%s/%016llx.sock", CTL_DIR,
		 (unsigned long long)XXH3_64bits(mountpoint,
						 strlen(mountpoint)));
}

int ctl_start(struct sfs *s, struct ctl **out, char *err, size_t errlen);
void ctl_stop(struct ctl *ctl);

#endif /* STAGEFS_CTL_H */
