/* SPDX-License-Identifier: GPL-2.0 */
/*
 * dir.c - names: lookup and forget, making and removing objects, rename,
 * links, and directory listing.
 *
 * Every operation here goes straight to the backend, with the caller's
 * credentials: names are never cached by stagefs itself, only by the
 * kernel for entry_timeout.  New objects get their owner on the backend,
 * from those credentials (the caller, or a setgid directory's group).
 *
 * Thread safety: no state of its own; see fs_int.h.
 */
#include "fs_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * Reply with an entry for name in dir, a node we were handed; consumes the
 * node ref.  The name is remembered for answers during an outage.
 */
static void reply_entry_node(fuse_req_t req, struct sfs_inode *dir,
			     const char *name, struct be_node *node,
			     struct be_attr *attr)
{
	struct sfs *s = req_sfs(req);
	struct fuse_entry_param e;
	int rc = make_entry(s, dir->be_idx, node, attr, &e);

	be_node_put(s->bes[dir->be_idx], node);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	offline_name(s, dir, name, inode_get(s, e.ino));
	fuse_reply_entry(req, &e);
}

static void sfs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct sfs *s = req_sfs(req);
	struct sfs_inode *dir = inode_get(s, parent);
	struct be_node *node;
	struct be_attr attr;
	struct be_cred cred;
	uint64_t fseq = silly_flux_seq();
	int rc;

	req_cred(req, &cred);
	be_wait_set(offline_wait_ms(s, dir));
	rc = ino_be(s, dir)->ops->lookup(ino_be(s, dir), &cred, dir->node,
					 name, &node, &attr);
	be_wait_set(0);
	/* a directory's mode opened for a moment (silly.c) */
	if (rc == 0 && S_ISDIR(attr.mode) &&
	    silly_flux_wait(dir->be_idx, node->fileid, fseq) &&
	    ino_be(s, dir)->ops->getattr(ino_be(s, dir), &cred, node,
					 &attr) < 0) {
		be_node_put(ino_be(s, dir), node);
		rc = -ESTALE;
	}
	if (rc == -ETIMEDOUT) {
		/* No answer within outage_wait: what this name last was. */
		struct sfs_inode *ino = offline_lookup(s, dir, name, &attr);

		if (ino) {
			struct fuse_entry_param e = {
				.ino = inode_id(s, ino),
				.attr_timeout = s->cfg.attr_timeout,
				.entry_timeout = s->cfg.entry_timeout,
			};

			if (S_ISREG(attr.mode))
				cache_fixup_attr(s->cache, ino->be_idx,
						 ino->node, &attr);
			attr_to_stat(s, ino->be_idx, &attr, &e.attr);
			fuse_reply_entry(req, &e);
			return;
		}
		rc = ino_be(s, dir)->ops->lookup(ino_be(s, dir), &cred,
						 dir->node, name, &node,
						 &attr);
	}
	if (rc == -ENOENT) {
		/* A negative entry the kernel may cache for entry_timeout. */
		struct fuse_entry_param e = {
			.ino = 0,
			.entry_timeout = s->cfg.entry_timeout,
		};

		fuse_reply_entry(req, &e);
		return;
	}
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	reply_entry_node(req, dir, name, node, &attr);
}

static void sfs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct sfs *s = req_sfs(req);

	inode_forget(s, inode_get(s, ino), nlookup);
	fuse_reply_none(req);
}

static void sfs_forget_multi(fuse_req_t req, size_t count,
			     struct fuse_forget_data *forgets)
{
	struct sfs *s = req_sfs(req);
	size_t i;

	for (i = 0; i < count; i++)
		inode_forget(s, inode_get(s, forgets[i].ino),
			     forgets[i].nlookup);
	fuse_reply_none(req);
}

static void sfs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode)
{
	struct sfs *s = req_sfs(req);
	struct sfs_inode *dir = inode_get(s, parent);
	struct be_node *node;
	struct be_attr attr;
	struct be_cred cred;
	int rc;

	req_cred(req, &cred);
	rc = ino_be(s, dir)->ops->mkdir(ino_be(s, dir), &cred, dir->node, name,
					mode & 07777, &node, &attr);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	reply_entry_node(req, dir, name, node, &attr);
}

static void sfs_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode, dev_t rdev)
{
	struct sfs *s = req_sfs(req);
	struct sfs_inode *dir = inode_get(s, parent);
	struct be *be = ino_be(s, dir);
	struct be_node *node;
	struct be_attr attr;
	struct be_cred cred;
	int rc;

	req_cred(req, &cred);
	if (S_ISREG(mode))
		rc = be->ops->create(be, &cred, dir->node, name, mode & 07777,
				     1, &node, &attr);
	else
		rc = be->ops->mknod(be, &cred, dir->node, name, mode, rdev,
				    &node, &attr);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	reply_entry_node(req, dir, name, node, &attr);
}

static void sfs_symlink(fuse_req_t req, const char *target,
			fuse_ino_t parent, const char *name)
{
	struct sfs *s = req_sfs(req);
	struct sfs_inode *dir = inode_get(s, parent);
	struct be_node *node;
	struct be_attr attr;
	struct be_cred cred;
	int rc;

	req_cred(req, &cred);
	rc = ino_be(s, dir)->ops->symlink(ino_be(s, dir), &cred, dir->node,
					  name, target, &node, &attr);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	reply_entry_node(req, dir, name, node, &attr);
}

static void sfs_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct sfs *s = req_sfs(req);
	struct sfs_inode *in = inode_get(s, ino);
	char buf[4097];
	struct be_cred cred;
	int rc;

	req_cred(req, &cred);
	rc = ino_be(s, in)->ops->readlink(ino_be(s, in), &cred, in->node, buf,
					  sizeof(buf));
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else if ((size_t)rc >= sizeof(buf))
		fuse_reply_err(req, ENAMETOOLONG);
	else
		fuse_reply_readlink(req, buf);
}

static void sfs_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		     const char *newname)
{
	struct sfs *s = req_sfs(req);
	struct sfs_inode *in = inode_get(s, ino);
	struct sfs_inode *dir = inode_get(s, newparent);
	struct fuse_entry_param e;
	struct be_attr attr;
	struct be_cred cred;
	int rc;

	if (in->be_idx != dir->be_idx) {
		fuse_reply_err(req, EXDEV);
		return;
	}
	req_cred(req, &cred);
	rc = ino_be(s, in)->ops->link(ino_be(s, in), &cred, in->node,
				      dir->node, newname, &attr);
	if (rc == 0)
		rc = make_entry(s, in->be_idx, in->node, &attr, &e);
	if (rc == 0)
		offline_name(s, dir, newname, in);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_entry(req, &e);
}

/*
 * Where a file unlinked while open hides: SILLY_DIR at the backend's root
 * (made by the daemon, mode 1777: users rename into it), or, where the
 * daemon cannot keep that directory (root squashed), dir itself.
 */
static int silly_dir(struct sfs *s, struct sfs_inode *dir,
		     struct be_node **out)
{
	struct be *be = ino_be(s, dir);
	struct be_node *root;
	int rc;

	if (s->silly_here[dir->be_idx]) {
		*out = be_node_get(dir->node);
		return 0;
	}
	rc = be->ops->root(be, NULL, &root, NULL);
	if (rc < 0)
		return rc;
	rc = be->ops->lookup(be, NULL, root, SILLY_DIR, out, NULL);
	if (rc == -ENOENT) {
		rc = be->ops->mkdir(be, NULL, root, SILLY_DIR, 01777, out,
				    NULL);
		if (rc == -EEXIST)
			rc = be->ops->lookup(be, NULL, root, SILLY_DIR, out,
					     NULL);
	}
	be_node_put(be, root);
	return rc;
}

/* RENAMEs into the hidden directory before an unlink gives up */
#define SILLY_TRIES 3

/*
 * The last name of a file that is still open goes away: keep the file
 * under a hidden name until the last close, so that it stays readable and
 * writable (POSIX) even for data not in the cache, as the NFS client's
 * silly rename does.  The rename is the caller's (cred), so the backend
 * checks that the caller may remove the name.  The hidden name is in
 * SILLY_DIR at the backend's root, so the directory it left can still be
 * removed, and the daemon removes it at the last close (or, after a
 * crash, at its next start: silly.c); where root is
 * squashed, it is in the same directory and the caller removes it, as
 * with NFS.  Returns 1 if it did, 0 if the file needs no hiding, or
 * -errno if an open file could not be hidden: then the name must stay
 * (the NFS client fails the unlink too), or the open file would lose its
 * data.
 */
static int silly_rename(struct sfs *s, const struct be_cred *cred,
			struct sfs_inode *dir, const char *name)
{
	struct be *be = ino_be(s, dir);
	bool here = s->silly_here[dir->be_idx];
	struct sfs_inode *ino;
	struct be_node *node, *hdir = NULL;
	struct be_cred *rm_cred = NULL;
	struct be_attr a;
	char hidden[96], *hidden_name = NULL;
	int rc, tries;

	/*
	 * No file open at all (a rm -rf, mostly): nothing to hide, and no
	 * LOOKUP to pay per name.  An open racing with this unlink is not
	 * covered, as it was not by the nopen check below either.
	 */
	pthread_mutex_lock(&s->ino_lock);
	rc = s->open_inodes != 0;
	pthread_mutex_unlock(&s->ino_lock);
	if (!rc)
		return 0;
	if (be->ops->lookup(be, cred, dir->node, name, &node, &a) < 0)
		return 0;
	ino = S_ISREG(a.mode) && a.nlink == 1 ?
		      inode_find(s, dir->be_idx, node->fileid, node) : NULL;
	be_node_put(be, node);
	if (!ino)
		return 0;
	if (here) {
		rm_cred = malloc(sizeof(*rm_cred));
		if (!rm_cred) {
			inode_forget(s, ino, 1);
			return -ENOMEM;
		}
		*rm_cred = *cred;
	}
	rc = 0;
	pthread_mutex_lock(&s->ino_lock);
	if (ino->nopen && !ino->silly_name &&
	    silly_name(s, ino, here, hidden, sizeof(hidden)) == 0) {
		ino->silly_name = strdup(hidden);
		rc = ino->silly_name != NULL;
		if (rc == 1) {
			ino->silly_cred = rm_cred;
			rm_cred = NULL;
		}
	}
	pthread_mutex_unlock(&s->ino_lock);
	free(rm_cred);
	/*
	 * The hidden directory goes when its last file is removed (a last
	 * close here or on another node: silly_remove()), and that can
	 * happen between silly_dir() and the RENAME into it, which then
	 * fails with ENOENT (posix) or ESTALE (NFS).  Make it again and
	 * retry: a failure that stays is reported.
	 */
	for (tries = 0; rc == 1 && tries < SILLY_TRIES; tries++) {
		int err = silly_dir(s, dir, &hdir);

		if (err == 0)
			err = be->ops->rename(be, cred, dir->node, name, hdir,
					      hidden, 0);
		if (err == 0)
			break;
		if (hdir)
			be_node_put(be, hdir);
		hdir = NULL;
		if ((err != -ESTALE && err != -ENOENT) ||
		    tries == SILLY_TRIES - 1)
			rc = err;
	}
	pthread_mutex_lock(&s->ino_lock);
	if (rc == 1 && ino->nopen) {
		ino->silly_dir = hdir;
		hdir = NULL;
	} else if (rc == 1) {
		/* Closed while we hid it: inode_release() left it to us. */
		hidden_name = ino->silly_name;
		rm_cred = ino->silly_cred;
		ino->silly_name = NULL;
		ino->silly_cred = NULL;
	} else if (ino->silly_name && !ino->silly_dir) {
		free(ino->silly_name);
		free(ino->silly_cred);
		ino->silly_name = NULL;
		ino->silly_cred = NULL;
	}
	pthread_mutex_unlock(&s->ino_lock);
	if (hidden_name) {
		silly_remove(s, ino, hdir, hidden_name, rm_cred);
		hdir = NULL;
	}
	if (hdir)
		be_node_put(be, hdir);
	inode_forget(s, ino, 1);
	return rc;
}

static void sfs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct sfs *s = req_sfs(req);
	struct sfs_inode *dir = inode_get(s, parent);
	struct be_cred cred;
	int rc;

	req_cred(req, &cred);
	offline_unname(s, dir, name);
	rc = silly_rename(s, &cred, dir, name);
	if (rc) {
		fuse_reply_err(req, rc < 0 ? -rc : 0);
		return;
	}
	fuse_reply_err(req, -ino_be(s, dir)->ops->unlink(ino_be(s, dir), &cred,
							 dir->node, name));
}

static void sfs_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct sfs *s = req_sfs(req);
	struct sfs_inode *dir = inode_get(s, parent);
	struct be *be = ino_be(s, dir);
	struct be_cred cred;
	int rc;

	req_cred(req, &cred);
	offline_unname(s, dir, name);
	rc = be->ops->rmdir(be, &cred, dir->node, name);
	if (rc == -ENOTEMPTY && silly_evacuate(s, &cred, dir, name) > 0)
		rc = be->ops->rmdir(be, &cred, dir->node, name);
	fuse_reply_err(req, -rc);
}

static void sfs_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		       fuse_ino_t newparent, const char *newname,
		       unsigned int flags)
{
	struct sfs *s = req_sfs(req);
	struct sfs_inode *od = inode_get(s, parent);
	struct sfs_inode *nd = inode_get(s, newparent);
	struct be *be = ino_be(s, od);
	struct be_cred cred;
	int rc;

	if (od->be_idx != nd->be_idx) {
		fuse_reply_err(req, EXDEV);
		return;
	}
	if (flags & ~(unsigned int)(BE_RENAME_NOREPLACE | BE_RENAME_EXCHANGE)) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	req_cred(req, &cred);
	offline_unname(s, od, name);
	offline_unname(s, nd, newname);
	/* A rename over an open file unlinks it: keep it while open (if
	 * the source is there to replace it, and is not the same name). */
	if (!flags && (od != nd || strcmp(name, newname))) {
		struct be_node *src;

		rc = be->ops->lookup(be, &cred, od->node, name, &src, NULL);

		if (rc < 0) {
			fuse_reply_err(req, -rc);
			return;
		}
		be_node_put(be, src);
		rc = silly_rename(s, &cred, nd, newname);
		if (rc < 0) {
			fuse_reply_err(req, -rc);
			return;
		}
	}
	rc = be->ops->rename(be, &cred, od->node, name, nd->node, newname,
			     flags);
	if (rc == -ENOTEMPTY && silly_evacuate(s, &cred, nd, newname) > 0)
		rc = be->ops->rename(be, &cred, od->node, name, nd->node,
				     newname, flags);
	fuse_reply_err(req, -rc);
}

/* ---- listing -------------------------------------------------------- */

/* A snapshot of a directory taken at opendir; offsets index into it. */
struct dir_entry {
	char *name;
	uint64_t fileid;	/* 0 for "." and ".." */
	uint32_t type;		/* S_IFMT bits, 0: not known (or attr's) */
	struct be_attr attr;
	bool has_attr;
	struct be_node *node;	/* from the backend, or NULL */
};

struct dir_handle {
	struct dir_entry *ents;
	size_t n, cap;
	bool names;		/* listed by readdir_names: no attributes */
};

/*
 * readdirplus=auto on posix: a READDIRPLUS reply holds at most a page, as
 * the kernel asked before it took the reader's buffer size (seen on 6.18:
 * up to 1 MiB, a whole directory of 1,000 entries, since stagefs answers
 * st_blksize 1 MiB and glibc sizes its getdents buffer by it).  The
 * kernel's auto mode then does what it was made for: the next page is
 * READDIRPLUS again only if the caller looked at the entries of this one
 * (an ls -l), else a plain READDIR (a find).
 *
 * The first page (offset 0) the kernel asks with READDIRPLUS whoever
 * reads, so nothing says the caller wants attributes: its entries go
 * without them (node id 0, which the kernel lists without making an
 * inode), and only PLUS_FIRST_ENTRIES of them.  A find then makes no
 * lookup at all; an ls -l looks the first page's few entries up, which
 * tells the kernel to ask the next pages with READDIRPLUS, answered
 * with attributes.  A first page of "." and ".." alone would not: the
 * kernel would list the rest plain and an ls -l would look up each.
 */
#define PLUS_AUTO_PAGE 4096
#define PLUS_FIRST_ENTRIES 8

/* Add an entry to d's snapshot (type: S_IFMT bits, 0 if not known). */
static int dir_add(struct dir_handle *d, const char *name, uint64_t fileid,
		   uint32_t type, const struct be_attr *attr,
		   struct be_node *node)
{
	struct dir_entry *e;

	if (!strncmp(name, SILLY_DIR, sizeof(SILLY_DIR) - 1))
		return 0;
	if (d->n == d->cap) {
		size_t ncap = d->cap ? d->cap * 2 : 64;
		struct dir_entry *ne = realloc(d->ents, ncap * sizeof(*ne));

		if (!ne)
			return -ENOMEM;
		d->ents = ne;
		d->cap = ncap;
	}
	e = &d->ents[d->n];
	memset(e, 0, sizeof(*e));
	e->name = strdup(name);
	if (!e->name)
		return -ENOMEM;
	e->fileid = fileid;
	e->type = type;
	if (attr) {
		e->attr = *attr;
		e->has_attr = true;
	}
	e->node = node ? be_node_get(node) : NULL;
	d->n++;
	return 0;
}

/* be_ops.readdir's callback. */
static int dir_collect(void *arg, const char *name, uint64_t fileid,
		       const struct be_attr *attr, struct be_node *node)
{
	return dir_add(arg, name, fileid, attr ? attr->mode & S_IFMT : 0,
		       attr, node);
}

/* be_ops.readdir_names's callback: a name for a plain listing. */
static int dir_collect_name(void *arg, const char *name, uint64_t fileid,
			    uint32_t type)
{
	return dir_add(arg, name, fileid, type, NULL, NULL);
}

static void dir_free(struct sfs *s, int be_idx, struct dir_handle *d)
{
	size_t i;

	for (i = 0; i < d->n; i++) {
		free(d->ents[i].name);
		be_node_put(s->bes[be_idx], d->ents[i].node);
	}
	free(d->ents);
	free(d);
}

static void sfs_opendir(fuse_req_t req, fuse_ino_t ino,
			struct fuse_file_info *fi)
{
	struct sfs *s = req_sfs(req);
	struct sfs_inode *in = inode_get(s, ino);
	struct dir_handle *d;
	struct be_cred cred;
	int rc, tries = 0;

	req_cred(req, &cred);
again:
	d = calloc(1, sizeof(*d));
	if (!d) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	/* "." and ".." first, as a native file system lists them. */
	rc = dir_add(d, ".", 0, S_IFDIR, NULL, NULL);
	if (rc == 0)
		rc = dir_add(d, "..", 0, S_IFDIR, NULL, NULL);
	/*
	 * Without READDIRPLUS (readdirplus=off) a listing needs names and
	 * types only: no stat per entry where the backend can leave it out.
	 * With readdirplus=auto on posix too: the entries of a READDIRPLUS
	 * page are looked up when it is answered (do_readdir), and most
	 * pages of a find are plain.
	 */
	d->names = (!s->plus || s->plus_auto) &&
		   ino_be(s, in)->ops->readdir_names;
	if (rc == 0 && d->names)
		rc = ino_be(s, in)->ops->readdir_names(ino_be(s, in), &cred,
						       in->node,
						       dir_collect_name, d);
	else if (rc == 0)
		rc = ino_be(s, in)->ops->readdir(ino_be(s, in), &cred, in->node,
						 dir_collect, d);
	if (rc < 0) {
		dir_free(s, in->be_idx, d);
		/*
		 * The directory is there (a removed one answers ESTALE), yet
		 * CI once saw ENOENT for the root's listing while a silly-
		 * renamed file in it was being removed (nfs+squash, seed
		 * 1495213737; ganesha is known to answer READDIR NOENT
		 * transiently): the listing is made again.
		 */
		if (rc == -ENOENT && ++tries < 3)
			goto again;
		fuse_reply_err(req, -rc);
		return;
	}
	fi->fh = (uintptr_t)d;
	fi->cache_readdir = 0;
	pthread_mutex_lock(&s->ino_lock);
	in->nopendir++;
	pthread_mutex_unlock(&s->ino_lock);
	fuse_reply_open(req, fi);
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size,
		       off_t off, struct fuse_file_info *fi, bool plus)
{
	struct sfs *s = req_sfs(req);
	struct sfs_inode *in = inode_get(s, ino);
	struct dir_handle *d = (struct dir_handle *)(uintptr_t)fi->fh;
	char *buf, *p;
	struct be_cred cred;
	bool have_cred = false;
	size_t rem;
	size_t i;
	/* the first page of a names listing: no lookups (PLUS_AUTO_PAGE) */
	bool first = plus && s->plus_auto && d->names && off == 0;

	if (plus && s->plus_auto && size > PLUS_AUTO_PAGE)
		size = PLUS_AUTO_PAGE;
	buf = p = malloc(size);
	rem = size;
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	for (i = (size_t)off; i < d->n; i++) {
		struct dir_entry *de = &d->ents[i];
		struct fuse_entry_param e;
		size_t len;

		if (first && i >= PLUS_FIRST_ENTRIES)
			break;

		memset(&e, 0, sizeof(e));
		e.attr.st_mode = de->type ? de->type :
				 de->fileid ? 0 : S_IFDIR;
		e.attr.st_ino = de->fileid;
		/* a names listing: looked up now, but not "." and ".." */
		if (plus && (de->has_attr ||
			     (d->names && !first && de->fileid))) {
			struct be_node *node = de->node;
			struct be_attr attr = de->attr;
			int rc = 0;

			/* No lookup for an entry this reply has no room for
			 * (buf NULL: its size only). */
			if (fuse_add_direntry_plus(req, NULL, 0, de->name, NULL,
						   0) > rem)
				break;
			if (!node && !have_cred) {
				req_cred(req, &cred);	/* reads /proc */
				have_cred = true;
			}
			if (!node)
				rc = ino_be(s, in)->ops->lookup(
					ino_be(s, in), &cred, in->node, de->name,
					&node, &attr);
			else
				be_node_get(node);
			if (rc == -ENOENT)
				continue;	/* gone since opendir */
			/*
			 * The caller may read the directory but not search it
			 * (mode r without x): the name without its attributes,
			 * as a plain readdir would list it.
			 */
			if (rc < 0)
				goto plain_plus;
			rc = make_entry(s, in->be_idx, node, &attr, &e);
			be_node_put(ino_be(s, in), node);
			if (rc < 0)
				break;
			len = fuse_add_direntry_plus(req, p, rem, de->name,
						     &e, (off_t)(i + 1));
			if (len > rem) {
				/* Did not fit: give the lookup back. */
				inode_forget(s, inode_get(s, e.ino), 1);
				break;
			}
		} else if (plus) {
plain_plus:
			len = fuse_add_direntry_plus(req, p, rem, de->name,
						     &e, (off_t)(i + 1));
			if (len > rem)
				break;
		} else {
			len = fuse_add_direntry(req, p, rem, de->name,
						&e.attr, (off_t)(i + 1));
			if (len > rem)
				break;
		}
		p += len;
		rem -= len;
	}
	fuse_reply_buf(req, buf, size - rem);
	free(buf);
}

static void sfs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size,
			off_t off, struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, false);
}

static void sfs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size,
			    off_t off, struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, true);
}

static void sfs_releasedir(fuse_req_t req, fuse_ino_t ino,
			   struct fuse_file_info *fi)
{
	struct sfs *s = req_sfs(req);
	struct sfs_inode *in = inode_get(s, ino);

	pthread_mutex_lock(&s->ino_lock);
	in->nopendir--;
	pthread_mutex_unlock(&s->ino_lock);
	dir_free(s, in->be_idx, (struct dir_handle *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

static void sfs_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
			 struct fuse_file_info *fi)
{
	/* Namespace operations are synchronous on the backend already. */
	fuse_reply_err(req, 0);
}

static void sfs_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct sfs *s = req_sfs(req);
	struct sfs_inode *in = inode_get(s, ino);
	struct statvfs st;
	struct be_cred cred;
	int rc;

	req_cred(req, &cred);
	rc = ino_be(s, in)->ops->statfs(ino_be(s, in), &cred, in->node, &st);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_statfs(req, &st);
}

void dir_ops_init(struct fuse_lowlevel_ops *ops)
{
	ops->lookup = sfs_lookup;
	ops->forget = sfs_forget;
	ops->forget_multi = sfs_forget_multi;
	ops->mkdir = sfs_mkdir;
	ops->mknod = sfs_mknod;
	ops->symlink = sfs_symlink;
	ops->readlink = sfs_readlink;
	ops->link = sfs_link;
	ops->unlink = sfs_unlink;
	ops->rmdir = sfs_rmdir;
	ops->rename = sfs_rename;
	ops->opendir = sfs_opendir;
	ops->readdir = sfs_readdir;
	ops->readdirplus = sfs_readdirplus;
	ops->releasedir = sfs_releasedir;
	ops->fsyncdir = sfs_fsyncdir;
	ops->statfs = sfs_statfs;
}
