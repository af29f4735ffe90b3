/* SPDX-License-Identifier: GPL-2.0 */
/*
 * passthrough.c - FUSE passthrough with libfuse 3.14: the kernel reads
 * and writes an open file's cache data file itself, and no READ or WRITE
 * reaches the daemon.
 *
 * libfuse 3.14 has no passthrough API, but fuse_session_custom_io() lets
 * the daemon see every request it reads and every reply it writes:
 *  - the INIT request says whether the kernel offers passthrough; the INIT
 *    reply asks for it (pt_proto.h); it also asks, passthrough or not,
 *    for FUSE_DIRECT_IO_ALLOW_MMAP where offered (Linux 6.6+), so that
 *    an O_DIRECT open (answered with direct_io) can be mmap()ed as on a
 *    local file system instead of failing with ENODEV, and for
 *    FUSE_PARALLEL_DIROPS (with libfuse 3.14's own reply the kernel kept it
 *    off: lookups in a directory waited for each other), and for
 *    FUSE_HANDLE_KILLPRIV_V2 (without it the kernel asks for
 *    security.capability before every write(2): one GETXATTR round trip
 *    per 4 KiB record; with it, the daemon clears set-id bits, file.c);
 *  - a WRITE or SETATTR that asks for set-id bits to be cleared is marked
 *    for the thread that reads it, which is the thread that handles it
 *    (libfuse 3.14 drops the flag: pt_req_kill_suidgid());
 *  - an OPEN or CREATE reply whose handle is passthrough gets
 *    FOPEN_PASSTHROUGH and the backing id of the inode's cache file,
 *    registered with FUSE_DEV_IOC_BACKING_OPEN.  The id stays registered
 *    while the inode has passthrough opens, and is closed at the last
 *    release: the kernel looks it up after the reply's write returns;
 *  - every request is counted by opcode (s->pt.ops, stagefsctl stats:
 *    fuse_lookup, fuse_read, ...).
 *
 * The kernel allows an inode one io mode at a time: while it has
 * passthrough opens, every open of it must be passthrough (on the one
 * backing file), and while it has caching opens, none may be.  pt_open()
 * keeps that rule with counts per inode.  docs/ARCHITECTURE.md has the
 * data path, cache/passthrough.c the rehash that finds what was written.
 *
 * Thread safety: s->pt.lock protects the pending replies; s->ino_lock the
 * per inode counts and backing id; the request counts are atomics.
 */
#include "fs_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "pt_proto.h"

/* An OPEN or CREATE request read, whose reply may need patching. */
struct pt_pending {
	uint64_t unique;
	uint32_t opcode;
	struct pt_pending *next;
};

#define PT_BUCKETS 256

static void pending_add(struct sfs *s, uint64_t unique, uint32_t opcode)
{
	struct pt_pending *p = malloc(sizeof(*p));
	struct pt_pending **b = &s->pt.pending[unique % PT_BUCKETS];

	if (!p) {
		/* The reply cannot be made passthrough: say so at open. */
		atomic_store(&s->pt.lost, true);
		return;
	}
	p->unique = unique;
	p->opcode = opcode;
	pthread_mutex_lock(&s->pt.lock);
	p->next = *b;
	*b = p;
	pthread_mutex_unlock(&s->pt.lock);
}

/* The opcode of a pending request, which leaves the table; or 0. */
static uint32_t pending_take(struct sfs *s, uint64_t unique)
{
	struct pt_pending **pp, *p;
	uint32_t op = 0;

	pthread_mutex_lock(&s->pt.lock);
	for (pp = &s->pt.pending[unique % PT_BUCKETS]; (p = *pp);
	     pp = &p->next) {
		if (p->unique == unique) {
			*pp = p->next;
			op = p->opcode;
			free(p);
			break;
		}
	}
	pthread_mutex_unlock(&s->pt.lock);
	return op;
}

/*
 * Set by pt_read() for the request it read; libfuse's worker threads
 * handle each request they read before they read the next.
 */
static __thread bool req_kill_suidgid;

bool pt_req_kill_suidgid(void)
{
	return req_kill_suidgid;
}

static ssize_t pt_read(int fd, void *buf, size_t len, void *userdata)
{
	struct sfs *s = userdata;
	ssize_t n = read(fd, buf, len);
	const struct pt_in_header *h = buf;

	req_kill_suidgid = false;
	if (n < (ssize_t)sizeof(*h))
		return n;
	if (s->pt.killpriv)
		req_kill_suidgid = pt_req_kills_suidgid(h, (size_t)n);
	if (h->opcode < PT_OPS_COUNTED)
		atomic_fetch_add_explicit(&s->pt.ops[h->opcode], 1,
					  memory_order_relaxed);
	if (h->opcode == PT_OP_INIT) {
		s->pt.offered = pt_kernel_offers(
			(const void *)(h + 1), (uint32_t)n - sizeof(*h));
		s->pt.dio_mmap = pt_kernel_offers_dio_mmap(
			(const void *)(h + 1), (uint32_t)n - sizeof(*h));
		s->pt.parallel_dirops = pt_kernel_offers_parallel_dirops(
			(const void *)(h + 1), (uint32_t)n - sizeof(*h));
		s->pt.killpriv = s->cfg.killpriv &&
			pt_kernel_offers_killpriv_v2(
				(const void *)(h + 1), (uint32_t)n - sizeof(*h));
		s->pt.init_unique = h->unique;
	} else if ((h->opcode == PT_OP_OPEN || h->opcode == PT_OP_CREATE) &&
		   s->pt.enabled) {
		pending_add(s, h->unique, h->opcode);
	}
	return n;
}

static ssize_t pt_writev(int fd, struct iovec *iov, int count,
			 void *userdata)
{
	struct sfs *s = userdata;
	const struct pt_out_header *oh = iov[0].iov_base;
	uint32_t op;

	if (count < 2 || iov[0].iov_len < sizeof(*oh))
		return writev(fd, iov, count);
	if (!s->pt.init_done && oh->unique == s->pt.init_unique) {
		s->pt.init_done = true;
		if (oh->error == 0 &&
		    iov[1].iov_len >= sizeof(struct pt_init_out)) {
			if (s->pt.enabled)
				pt_init_out_enable(iov[1].iov_base);
			/* An O_DIRECT open (direct_io) may be mapped too,
			 * as on a local file system. */
			if (s->pt.dio_mmap)
				pt_init_out_dio_mmap(iov[1].iov_base);
			/* Lookups in one directory run side by side: one
			 * that waits for the server (hard) must not hold up
			 * the others, which the cache may answer. */
			if (s->pt.parallel_dirops)
				((struct pt_init_out *)iov[1].iov_base)->flags |=
					PT_INIT_PARALLEL_DIROPS;
			/* SB_NOSEC: no GETXATTR of security.capability
			 * before every write(2). */
			if (s->pt.killpriv)
				((struct pt_init_out *)iov[1].iov_base)->flags |=
					PT_INIT_HANDLE_KILLPRIV_V2;
		} else {
			s->pt.dio_mmap = false;
			s->pt.parallel_dirops = false;
			s->pt.killpriv = false;
		}
		return writev(fd, iov, count);
	}
	if (!s->pt.enabled || !(op = pending_take(s, oh->unique)) ||
	    oh->error)
		return writev(fd, iov, count);
	{
		size_t at = op == PT_OP_CREATE ? PT_ENTRY_OUT_SIZE : 0;
		struct pt_open_out *oo;
		struct sfs_fh *fh;

		if (iov[1].iov_len < at + sizeof(*oo))
			return writev(fd, iov, count);
		oo = (struct pt_open_out *)((char *)iov[1].iov_base + at);
		fh = (struct sfs_fh *)(uintptr_t)oo->fh;
		if (fh && fh->backing_id > 0)
			pt_open_out_set(oo, fh->backing_id);
	}
	return writev(fd, iov, count);
}

int pt_install(struct sfs *s)
{
	static const struct fuse_custom_io io = {
		.read = pt_read,
		.writev = pt_writev,
	};

	pthread_mutex_init(&s->pt.lock, NULL);
	/* Also with passthrough off: the INIT reply asks for the mmap of
	 * direct_io files.  Until INIT says otherwise the read hook sees
	 * OPENs only once the kernel agreed to passthrough (pt_init()). */
	return fuse_session_custom_io(s->se, &io, fuse_session_fd(s->se));
}

bool pt_init(struct sfs *s)
{
	if (s->cfg.passthrough == SFS_PT_OFF) {
		log_msg(LOG_LVL_DEBUG, "passthrough", "off (-o passthrough=auto or on to use it)");
		return true;
	}
	if (!s->pt.offered) {
		if (s->cfg.passthrough == SFS_PT_ON) {
			s->pt.refused = true;
			return false;
		}
		log_msg(LOG_LVL_INFO, "passthrough",
			"the kernel does not offer FUSE passthrough (Linux 6.9+ with CONFIG_FUSE_PASSTHROUGH); every read and write goes through the daemon");
		return true;
	}
	s->pt.enabled = true;
	log_msg(LOG_LVL_INFO, "passthrough",
		"on: the kernel reads and writes cached files itself");
	return true;
}

void pt_destroy(struct sfs *s)
{
	size_t b;

	for (b = 0; b < PT_BUCKETS; b++)
		while (s->pt.pending[b]) {
			struct pt_pending *p = s->pt.pending[b];

			s->pt.pending[b] = p->next;
			free(p);
		}
	pthread_mutex_destroy(&s->pt.lock);
}

/* Register the cache data file fd with the kernel; the id or -errno. */
static int backing_open(struct sfs *s, int fd)
{
	struct pt_backing_map map = { .fd = fd };
	int id = ioctl(fuse_session_fd(s->se), PT_DEV_IOC_BACKING_OPEN, &map);

	if (id <= 0) {
		int e = id < 0 ? errno : EIO;

		log_msg(LOG_LVL_WARN, "passthrough",
			"FUSE_DEV_IOC_BACKING_OPEN: %s", strerror(e));
		return -e;
	}
	return id;
}

static void backing_close(struct sfs *s, int id)
{
	uint32_t v = (uint32_t)id;

	if (ioctl(fuse_session_fd(s->se), PT_DEV_IOC_BACKING_CLOSE, &v) < 0)
		log_msg(LOG_LVL_WARN, "passthrough",
			"FUSE_DEV_IOC_BACKING_CLOSE %d: %s", id,
			strerror(errno));
}

int pt_open(struct sfs *s, struct sfs_inode *in, struct sfs_fh *fh,
	    int flags)
{
	bool write = (flags & O_ACCMODE) != O_RDONLY, must;
	int rc = 0, fd;

	pthread_mutex_lock(&s->ino_lock);
	must = in->pt_opens > 0;
	if (!s->pt.enabled || atomic_load(&s->pt.lost) ||
	    (!must && (in->cached_opens ||
		       !cache_file_pt_can(fh->cf, write)))) {
		/* Today's path: every byte through the daemon. */
		if (!(flags & O_DIRECT))
			in->cached_opens++;
		fh->cached = !(flags & O_DIRECT);
		pthread_mutex_unlock(&s->ino_lock);
		return 0;
	}
	rc = cache_file_pt_begin(fh->cf, &fh->cred, write, must, &fd);
	if (rc == 0 && in->pt_id <= 0) {
		in->pt_id = backing_open(s, fd);
		if (in->pt_id < 0) {
			rc = in->pt_id;
			in->pt_id = 0;
			cache_file_pt_end(fh->cf, write);
		}
	}
	if (rc == 0) {
		in->pt_opens++;
		fh->pt = true;
		fh->pt_write = write;
		fh->backing_id = in->pt_id;
	} else if (!must) {
		/* No backing file: today's path, which the kernel allows. */
		if (!(flags & O_DIRECT))
			in->cached_opens++;
		fh->cached = !(flags & O_DIRECT);
		rc = 0;
	}
	pthread_mutex_unlock(&s->ino_lock);
	return rc;
}

void pt_release(struct sfs *s, struct sfs_inode *in, struct sfs_fh *fh)
{
	int id = 0;

	if (fh->pt)
		cache_file_pt_end(fh->cf, fh->pt_write);
	pthread_mutex_lock(&s->ino_lock);
	if (fh->pt && --in->pt_opens == 0) {
		id = in->pt_id;
		in->pt_id = 0;
	}
	if (fh->cached)
		in->cached_opens--;
	pthread_mutex_unlock(&s->ino_lock);
	if (id > 0)
		backing_close(s, id);
}
