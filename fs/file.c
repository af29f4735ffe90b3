/* SPDX-License-Identifier: GPL-2.0 */
/*
 * file.c - attributes and file data: getattr, setattr, create, open,
 * read, write, flush, release, fsync, fallocate, access.
 *
 * Data goes through cache/; only this layer turns its -errno into a FUSE
 * reply.  Backend calls carry the caller's credentials; an open file's
 * fetches and uploads go with its opener's (the handle keeps them), and
 * open asks the backend whether the opener may (NFS ACCESS), as the NFS
 * client does: the server decides, also with default_permissions off.  Consistency is close-to-open: open() fetches the backend's
 * attributes and the cache drops clean data of a file changed elsewhere;
 * with flush_on_close=sync a close returns once the data is on the
 * backend.
 *
 * Thread safety: a file handle's stream state is touched only by reads
 * of that handle; a racing pair of reads makes a wrong guess about
 * sequentiality, never a wrong answer.
 */
#include "fs_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void inode_open(struct sfs *s, struct sfs_inode *ino)
{
	pthread_mutex_lock(&s->ino_lock);
	if (ino->nopen++ == 0)
		s->open_inodes++;
	pthread_mutex_unlock(&s->ino_lock);
}

/*
 * The last close of a file unlinked while open removes it for good.  A
 * file whose hiding is still under way (silly_name set, silly_dir not
 * yet) is left to silly_rename(), which removes it when it finds it
 * closed.
 */
void inode_release(struct sfs *s, struct sfs_inode *ino)
{
	struct be_node *dir = NULL;
	struct be_cred *cred = NULL;
	char *name = NULL;

	pthread_mutex_lock(&s->ino_lock);
	if (--ino->nopen == 0)
		s->open_inodes--;
	if (ino->nopen == 0 && ino->silly_name && ino->silly_dir) {
		dir = ino->silly_dir;
		name = ino->silly_name;
		cred = ino->silly_cred;
		ino->silly_dir = NULL;
		ino->silly_name = NULL;
		ino->silly_cred = NULL;
	}
	pthread_mutex_unlock(&s->ino_lock);
	if (name)
		silly_remove(s, ino, dir, name, cred);
}

static struct sfs_fh *fh_of(struct fuse_file_info *fi)
{
	return (struct sfs_fh *)(uintptr_t)fi->fh;
}

static bool dir_open(struct sfs *s, struct sfs_inode *in)
{
	bool open;

	pthread_mutex_lock(&s->ino_lock);
	open = in->nopendir > 0;
	pthread_mutex_unlock(&s->ino_lock);
	return open;
}

static void sfs_getattr(fuse_req_t req, fuse_ino_t ino,
			struct fuse_file_info *fi)
{
	struct sfs *s = req_sfs(req);
	struct sfs_inode *in = inode_get(s, ino);
	struct be_cred cred;
	struct be_attr a;
	uint64_t fseq = silly_flux_seq();
	int rc;

	req_cred(req, &cred);
	be_wait_set(offline_wait_ms(s, in));
	rc = ino_be(s, in)->ops->getattr(ino_be(s, in), &cred, in->node, &a);
	be_wait_set(0);
	if (rc == 0 && S_ISDIR(a.mode) &&
	    silly_flux_wait(in->be_idx, in->node->fileid, fseq))
		rc = ino_be(s, in)->ops->getattr(ino_be(s, in), &cred,
						 in->node, &a);
	/* No answer within outage_wait: the last attributes it gave. */
	if (rc == -ETIMEDOUT && offline_attr(s, in, &a))
		rc = 0;
	else if (rc == -ETIMEDOUT)
		rc = ino_be(s, in)->ops->getattr(ino_be(s, in), &cred,
						 in->node, &a);
	/*
	 * A directory removed while open here (an fstat on its
	 * descriptor): NFS keeps no silly name for directories, so its
	 * handle is stale.  A local file system answers with nlink 0; so
	 * do we, from the last attributes seen.  Not open here: ESTALE,
	 * and the kernel looks a path up again (a stat then gets ENOENT).
	 */
	if (rc == -ESTALE && dir_open(s, in) && offline_attr(s, in, &a) &&
	    S_ISDIR(a.mode)) {
		a.nlink = 0;
		rc = 0;
	}
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		reply_attr(req, in, &a);
}

/* The cache_file of an inode: from the handle, or a temporary one. */
static int inode_cache_file(struct sfs *s, const struct be_cred *cred,
			    struct sfs_inode *in, struct fuse_file_info *fi,
			    struct cache_file **cf)
{
	struct be_attr a;
	int rc;

	if (fi && fi->fh) {
		*cf = fh_of(fi)->cf;
		return 0;
	}
	rc = ino_be(s, in)->ops->getattr(ino_be(s, in), cred, in->node, &a);
	if (rc < 0)
		return rc;
	return cache_file_get(s->cache, in->be_idx, in->node, &a, cf);
}

/*
 * FUSE_HANDLE_KILLPRIV_V2 (passthrough.c): a write, truncate or chown by
 * a caller without CAP_FSETID clears set-user-ID, and set-group-ID where
 * group-executable or the caller is not in the file's group, as on a
 * local file system.  The mode change goes out as the file's owner: the
 * caller may only have write permission.  The last attributes (an open's
 * revalidation, or this node's own changes) say whether there may be
 * anything to clear: nothing to do for almost every file.  Where they
 * say so, the mode is asked of the backend first: another node may have
 * changed it since, and its chmod must not be undone.  The new
 * attributes go in out, the reply to a SETATTR; without one (a WRITE, a
 * truncate) the kernel is told to ask for them again.
 *
 * It does not fail the write: where the backend refuses (a root-owned
 * file on an export with root_squash), the upload, which goes out as the
 * writer, has the server clear the bits as an NFS client's WRITE does.
 * The inode's last mode says they are gone, so that every write does not
 * ask again; the next GETATTR says what the server did.
 */
bool file_kill_suidgid(struct sfs *s, struct sfs_inode *in,
		       const struct be_cred *cred, struct be_attr *out)
{
	struct be_setattr sa = { .valid = BE_SET_MODE };
	struct be_cred owner = { 0 };
	struct be_attr last, a;
	uint32_t killed;
	int rc;

	if (!offline_attr(s, in, &last) ||
	    mode_suidgid_killed(last.mode, last.gid, cred) == last.mode)
		return false;
	if (ino_be(s, in)->ops->getattr(ino_be(s, in), NULL, in->node, &a) ==
	    0) {
		last.mode = a.mode;
		last.uid = a.uid;
		last.gid = a.gid;
	}
	a = last;
	killed = mode_suidgid_killed(last.mode, last.gid, cred);
	if (killed == last.mode)
		goto out;	/* changed elsewhere: nothing left to clear */
	sa.mode = killed & 07777;
	owner.uid = last.uid;
	owner.gid = last.gid;
	rc = cache_setattr(s->cache, &owner, in->be_idx, in->node, &sa, &a);
	if (rc < 0) {
		log_msg(LOG_LVL_WARN, "fs",
			"%s: fileid %llu: cannot clear set-user-ID/set-group-ID as the owner (%s); left to the server at the upload",
			ino_be(s, in)->spec, (unsigned long long)in->fileid,
			strerror(-rc));
		a = last;
		a.mode = killed;
	}
out:
	offline_attr_save(s, in, &a);
	if (out)
		*out = a;
	else
		fuse_lowlevel_notify_inval_inode(s->se, inode_id(s, in), -1, 0);
	return true;
}

/*
 * Is this SETATTR the kernel clearing set-id bits after a write?  Then
 * it goes out as the owner (file_kill_suidgid()): a local file system
 * clears them for any writer, and a kernel NFS client leaves them to the
 * server's WRITE.
 *  - Under FUSE_HANDLE_KILLPRIV_V2, a SETATTR with nothing to set: the
 *    kernel's file_remove_privs() keeps only what is left once the kill
 *    is taken out.  A write (passthrough, whose WRITEs never come here),
 *    or a chown(-1, -1), and both clear the bits.
 *  - Without it (killpriv=off, or Linux before 5.11), a SETATTR of the
 *    mode sent as the writer.  With default_permissions the kernel
 *    refuses a chmod by a caller who neither owns the file nor is root
 *    before it gets here, so a mode-only SETATTR from such a caller that
 *    only takes the set-id bits off is that clear.
 */
static bool setattr_kernel_kill(struct sfs *s, struct sfs_inode *in,
				const struct be_cred *cred, int valid,
				mode_t mode)
{
	struct be_attr last;
	uint32_t killed;

	if (!valid)
		return s->pt.killpriv;
	if (valid != FUSE_SET_ATTR_MODE || !s->cfg.default_permissions ||
	    cred->uid == 0 || !offline_attr(s, in, &last) ||
	    last.uid == cred->uid)
		return false;
	killed = mode_suidgid_killed(last.mode, last.gid, cred);
	return killed != last.mode && (mode & 07777) == (killed & 07777);
}

static void sfs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *st,
			int valid, struct fuse_file_info *fi)
{
	struct sfs *s = req_sfs(req);
	struct sfs_inode *in = inode_get(s, ino);
	struct be *be = ino_be(s, in);
	struct be_setattr sa = { 0 };
	struct be_cred cred;
	struct be_attr a;
	int rc = 0;

	req_cred(req, &cred);
	if (setattr_kernel_kill(s, in, &cred, valid, st->st_mode) &&
	    file_kill_suidgid(s, in, &cred, &a)) {
		reply_attr(req, in, &a);
		return;
	}
	if (valid & FUSE_SET_ATTR_SIZE) {
		struct cache_file *cf;

		rc = inode_cache_file(s, &cred, in, fi, &cf);
		if (rc == 0) {
			rc = cache_file_truncate(cf, &cred, (uint64_t)st->st_size,
						 &a);
			if (!(fi && fi->fh))
				cache_file_put(cf);
		}
		if (rc < 0)
			goto out_err;
	}
	if (valid & FUSE_SET_ATTR_MODE) {
		sa.valid |= BE_SET_MODE;
		sa.mode = st->st_mode & 07777;
	}
	if (valid & FUSE_SET_ATTR_UID) {
		sa.valid |= BE_SET_UID;
		sa.uid = st->st_uid;
	}
	if (valid & FUSE_SET_ATTR_GID) {
		sa.valid |= BE_SET_GID;
		sa.gid = st->st_gid;
	}
	if (valid & FUSE_SET_ATTR_ATIME_NOW) {
		sa.valid |= BE_SET_ATIME_NOW;
	} else if (valid & FUSE_SET_ATTR_ATIME) {
		sa.valid |= BE_SET_ATIME;
		sa.atime = st->st_atim;
	}
	if (valid & FUSE_SET_ATTR_MTIME_NOW) {
		sa.valid |= BE_SET_MTIME_NOW;
	} else if (valid & FUSE_SET_ATTR_MTIME) {
		sa.valid |= BE_SET_MTIME;
		sa.mtime = st->st_mtim;
	}
	if (sa.valid & (BE_SET_MTIME | BE_SET_MTIME_NOW | BE_SET_MODE |
			BE_SET_UID | BE_SET_GID)) {
		/*
		 * An upload after this would move the mtime again (tar x and
		 * cp -a set it right after writing), would clear a set-id bit
		 * just set (the server drops it on an unprivileged WRITE), or
		 * would go out as a writer the new mode or owner no longer
		 * lets write (uploads carry their writer's credentials): the
		 * data goes first, as the NFS client writes back before any
		 * SETATTR of a regular file.
		 */
		struct cache_file *cf;

		if (cache_file_lookup(s->cache, in->be_idx, in->fileid,
				      &cf) == 0) {
			/* tar sets the times before it closes: a
			 * passthrough writer's bytes are found first. */
			rc = cache_file_pt_sync_writers(cf);
			if (rc == 0)
				rc = cache_file_flush(cf);
			cache_file_put(cf);
			if (rc < 0)
				goto out_err;
		}
	}
	if (pt_req_kill_suidgid()) {
		/* chown (the caller may: root, or the owner giving the file
		 * to one of its groups) in the same call; truncate, which
		 * write permission allows, as the owner. */
		struct be_attr last;
		bool known = offline_attr(s, in, &last);
		uint32_t gid = known ? last.gid : cred.gid;

		if (sa.valid & BE_SET_MODE) {
			sa.mode = mode_suidgid_killed(sa.mode | S_IFREG, gid,
						      &cred) & 07777;
		} else if (sa.valid & (BE_SET_UID | BE_SET_GID)) {
			if (known && mode_suidgid_killed(last.mode, gid,
							 &cred) != last.mode) {
				sa.valid |= BE_SET_MODE;
				sa.mode = mode_suidgid_killed(last.mode, gid,
							      &cred) & 07777;
			}
		} else if (valid & FUSE_SET_ATTR_SIZE) {
			file_kill_suidgid(s, in, &cred, NULL);
			a.mode = mode_suidgid_killed(a.mode, a.gid, &cred);
		}
	}
	if (sa.valid) {
		rc = cache_setattr(s->cache, &cred, in->be_idx, in->node, &sa,
				   &a);
	} else if (!(valid & FUSE_SET_ATTR_SIZE)) {
		rc = be->ops->getattr(be, &cred, in->node, &a);
	}
	if (rc < 0)
		goto out_err;
	reply_attr(req, in, &a);
	return;
out_err:
	fuse_reply_err(req, -rc);
}

/*
 * Open a handle on a regular file whose fresh attributes are in a, for
 * the opener cred.  a NULL: the backend did not answer, and the cached
 * copy is served as it is if it is whole (-ENOENT if not).
 */
static int open_handle(struct sfs *s, const struct be_cred *cred,
		       struct sfs_inode *in, struct be_attr *a,
		       struct fuse_file_info *fi)
{
	struct sfs_fh *fh = calloc(1, sizeof(*fh));
	int rc;

	if (!fh)
		return -ENOMEM;
	fh->cred = *cred;
	fh->stream.cred = &fh->cred;
	rc = a ? cache_file_get(s->cache, in->be_idx, in->node, a, &fh->cf) :
		 cache_file_get_offline(s->cache, in->be_idx, in->node,
					&fh->cf);
	if (rc < 0) {
		free(fh);
		return rc;
	}
	/*
	 * No keep_cache, even when the cached data is still valid: the
	 * differential test found the kernel serving stale pages of a
	 * file truncated by path and reopened.  Reads after open come from
	 * the staging cache, which is cheap, so correctness wins.
	 */
	fh->ino = in;
	rc = pt_open(s, in, fh, fi->flags);
	if (rc < 0) {
		cache_file_put(fh->cf);
		free(fh);
		return rc;
	}
	inode_open(s, in);
	fi->fh = (uintptr_t)fh;
	fh->written = fh->pt_write;
	if ((fi->flags & O_DIRECT) && !fh->pt)
		fi->direct_io = 1;
	return 0;
}

/*
 * The backend did not answer an open's revalidation within outage_wait:
 * with offline=serve, a file whole in the cache is opened as it is
 * (close-to-open cannot be kept; docs/consistency.md).  Not for O_TRUNC,
 * and not without default_permissions: the kernel's check of the modes
 * is then the only one.  -ETIMEDOUT: ask the backend again.
 */
static int open_offline(struct sfs *s, const struct be_cred *cred,
			struct sfs_inode *in, struct fuse_file_info *fi)
{
	int rc;

	if (!s->cfg.offline_serve || !s->cfg.default_permissions ||
	    (fi->flags & O_TRUNC))
		return -ETIMEDOUT;
	rc = open_handle(s, cred, in, NULL, fi);
	if (rc == -ENOENT)
		return -ETIMEDOUT;
	if (rc == 0)
		log_msg(LOG_LVL_INFO, "fs",
			"%s: fileid %llu opened from the cache, unchecked: the backend does not answer (outage_wait %g s, offline=serve)",
			ino_be(s, in)->spec, (unsigned long long)in->fileid,
			s->cfg.outage_wait);
	return rc;
}

static void sfs_open(fuse_req_t req, fuse_ino_t ino,
		     struct fuse_file_info *fi)
{
	struct sfs *s = req_sfs(req);
	struct sfs_inode *in = inode_get(s, ino);
	int acc = fi->flags & O_ACCMODE;
	int mask = (acc != O_WRONLY ? R_OK : 0) | (acc != O_RDONLY ? W_OK : 0);
	struct be *be = ino_be(s, in);
	struct be_cred cred;
	struct be_attr a;
	int rc;

	/*
	 * Close-to-open: the backend's attributes, now, with the answer to
	 * whether the opener may (one ACCESS call, as the NFS client's).
	 * No answer within outage_wait: maybe the cached copy (offline.c).
	 */
	req_cred(req, &cred);
	be_wait_set(offline_wait_ms(s, in));
	rc = be->ops->access(be, &cred, in->node, mask, &a);
	be_wait_set(0);
	if (rc == -ETIMEDOUT) {
		rc = open_offline(s, &cred, in, fi);
		if (rc != -ETIMEDOUT)
			goto out;
		rc = be->ops->access(be, &cred, in->node, mask, &a);
	}
	if (rc == 0)
		offline_attr_save(s, in, &a);
	if (rc == 0 && !S_ISREG(a.mode))
		rc = -EINVAL;
	if (rc == 0)
		rc = offline_name_check(s, &cred, in);
	if (rc == 0)
		rc = open_handle(s, &cred, in, &a, fi);
out:
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_open(req, fi);
}

static void sfs_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		       mode_t mode, struct fuse_file_info *fi)
{
	struct sfs *s = req_sfs(req);
	struct sfs_inode *dir = inode_get(s, parent);
	struct be *be = ino_be(s, dir);
	struct fuse_entry_param e;
	struct be_node *node;
	struct be_attr a;
	struct be_cred cred;
	int rc;

	req_cred(req, &cred);
	rc = be->ops->create(be, &cred, dir->node, name, mode & 07777,
			     !!(fi->flags & O_EXCL), &node, &a);
	if (rc < 0)
		goto out_err;
	rc = make_entry(s, dir->be_idx, node, &a, &e);
	be_node_put(be, node);
	if (rc < 0)
		goto out_err;
	rc = open_handle(s, &cred, inode_get(s, e.ino), &a, fi);
	if (rc < 0) {
		inode_forget(s, inode_get(s, e.ino), 1);
		goto out_err;
	}
	offline_name(s, dir, name, inode_get(s, e.ino));
	fuse_reply_create(req, &e, fi);
	return;
out_err:
	fuse_reply_err(req, -rc);
}

/*
 * A hit still in the buffer its fetch filled goes back from that buffer
 * (a cold sequential read: the prefetched chunks).  A hit on a chunk the
 * daemon need not check (verify=off) goes back as the cache file's fd:
 * libfuse splices it into /dev/fuse, and the bytes never pass through
 * this process.  Anything else is copied.
 */
static bool read_spliced(fuse_req_t req, struct sfs_fh *fh, size_t size,
			 off_t off)
{
	struct fuse_bufvec bv = FUSE_BUFVEC_INIT(0);
	struct cache_pin pin;
	ssize_t n = cache_read_pin(fh->cf, &fh->stream, size, (uint64_t)off,
				   &pin);

	if (n < 0)
		return false;
	if (n == 0) {
		fuse_reply_buf(req, NULL, 0);
		return true;
	}
	if (pin.mem) {
		fuse_reply_buf(req, pin.mem, (size_t)n);
		cache_read_unpin(&pin);
		return true;
	}
	bv.buf[0].size = (size_t)n;
	bv.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	bv.buf[0].fd = pin.fd;
	bv.buf[0].pos = (off_t)pin.off;
	fuse_reply_data(req, &bv, FUSE_BUF_SPLICE_MOVE);
	cache_read_unpin(&pin);
	return true;
}

/*
 * The worker thread's read buffer, kept from one read to the next.  A
 * buffer allocated and freed per read cost an mmap, 33 page faults and a
 * munmap (a TLB shootdown to every worker) for each 128 KiB READ: glibc
 * serves an aligned 128 KiB request by mmap, and the chunk it frees is
 * smaller than the next request, so its dynamic mmap threshold never
 * moves past it.  Only a daemon whose libnfs had freed a larger buffer
 * first escaped that (docs/performance.md, "posix warm reads").
 */
struct read_buf {
	size_t len;
	char *p;		/* page aligned: cache_direct=on reads into it */
};

static void read_buf_free(void *arg)
{
	struct read_buf *rb = arg;

	if (rb)
		free(rb->p);
	free(rb);
}

int file_read_bufs_init(struct sfs *s)
{
	return -pthread_key_create(&s->read_buf_key, read_buf_free);
}

void file_read_bufs_destroy(struct sfs *s)
{
	/* The workers freed theirs when they ended; this is the caller's. */
	read_buf_free(pthread_getspecific(s->read_buf_key));
	pthread_setspecific(s->read_buf_key, NULL);
	pthread_key_delete(s->read_buf_key);
}

static char *read_buf(struct sfs *s, size_t size)
{
	struct read_buf *rb = pthread_getspecific(s->read_buf_key);
	size_t len = (size + 4095) & ~(size_t)4095 ?: 4096;
	char *p;

	if (rb && rb->len >= len)
		return rb->p;
	if (!rb) {
		rb = calloc(1, sizeof(*rb));
		if (!rb || pthread_setspecific(s->read_buf_key, rb) != 0) {
			free(rb);
			return NULL;
		}
	}
	p = aligned_alloc(4096, len);
	if (!p)
		return NULL;
	free(rb->p);
	rb->p = p;
	rb->len = len;
	return p;
}

static void sfs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	struct sfs_fh *fh = fh_of(fi);
	char *buf;
	ssize_t n;

	if (read_spliced(req, fh, size, off))
		return;
	buf = read_buf(req_sfs(req), size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	n = cache_read_after_pin(fh->cf, &fh->stream, buf, size,
				 (uint64_t)off);
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
}

static void sfs_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
		      size_t size, off_t off, struct fuse_file_info *fi)
{
	struct sfs_fh *fh = fh_of(fi);
	ssize_t n;

	/* the opener's groups: its writes go out as the opener too */
	if (pt_req_kill_suidgid())
		file_kill_suidgid(req_sfs(req), fh->ino, &fh->cred, NULL);
	n = cache_write(fh->cf, &fh->cred, buf, size, (uint64_t)off);
	if (n < 0) {
		fuse_reply_err(req, (int)-n);
		return;
	}
	fh->written = true;
	fuse_reply_write(req, (size_t)n);
}

static void sfs_flush(fuse_req_t req, fuse_ino_t ino,
		      struct fuse_file_info *fi)
{
	struct sfs_fh *fh = fh_of(fi);
	int rc = 0;

	if (fh->pt_write)	/* what the kernel wrote, found if needed now */
		rc = cache_file_pt_flush(fh->cf, false);
	if (rc == 0 && fh->written)
		rc = cache_file_close(fh->cf);
	fuse_reply_err(req, -rc);
}

static void sfs_release(fuse_req_t req, fuse_ino_t ino,
			struct fuse_file_info *fi)
{
	struct sfs_fh *fh = fh_of(fi);

	pt_release(req_sfs(req), fh->ino, fh);
	cache_file_put(fh->cf);
	inode_release(req_sfs(req), fh->ino);
	free(fh);
	fuse_reply_err(req, 0);
}

static void sfs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		      struct fuse_file_info *fi)
{
	struct sfs_fh *fh = fh_of(fi);
	int rc = 0;

	/* An fsync through any descriptor syncs the file: what the kernel
	 * wrote through the passthrough writers' is found first. */
	if (fh->pt)
		rc = cache_file_pt_flush(fh->cf, true);
	if (rc == 0)
		rc = cache_file_fsync(fh->cf);
	fuse_reply_err(req, -rc);
}

static void sfs_fallocate(fuse_req_t req, fuse_ino_t ino, int mode,
			  off_t off, off_t len, struct fuse_file_info *fi)
{
	/* Space on the backend cannot be reserved through NFSv3. */
	fuse_reply_err(req, EOPNOTSUPP);
}

/* Only with default_permissions=off: the backend decides. */
static void sfs_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	struct sfs *s = req_sfs(req);
	struct sfs_inode *in = inode_get(s, ino);
	struct be_cred cred;

	req_cred(req, &cred);
	fuse_reply_err(req, -ino_be(s, in)->ops->access(ino_be(s, in), &cred,
							in->node, mask, NULL));
}

void file_ops_init(struct fuse_lowlevel_ops *ops)
{
	ops->getattr = sfs_getattr;
	ops->setattr = sfs_setattr;
	ops->open = sfs_open;
	ops->create = sfs_create;
	ops->read = sfs_read;
	ops->write = sfs_write;
	ops->flush = sfs_flush;
	ops->release = sfs_release;
	ops->fsync = sfs_fsync;
	ops->fallocate = sfs_fallocate;
	ops->access = sfs_access;
}
