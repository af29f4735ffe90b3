/* SPDX-License-Identifier: GPL-2.0 */
/*
 * xattr.c - extended attributes, passed to the backend.
 *
 * The backend decides what it supports: the posix backend stores them in
 * the directory's file system; NFSv3 has none: EOPNOTSUPP, and an empty
 * list (docs/consistency.md, "What NFSv3 cannot hold").
 *
 * Each call carries the caller's credentials.  Where no backend holds
 * xattrs at all (s->no_xattrs), a getxattr is answered ENOSYS: the kernel
 * then answers EOPNOTSUPP itself, as the backend would have.  It asks
 * for security.capability before every write(2) of a passthrough open
 * (file_remove_privs() on the FUSE file), a round trip per write.
 *
 * Thread safety: s->no_xattrs is set once, before the session starts.
 */
#include "fs_int.h"

#include <errno.h>
#include <stdlib.h>

void xattr_check_backends(struct sfs *s)
{
	int k;

	s->no_xattrs = s->nbe > 0;
	for (k = 0; k < s->nbe && s->no_xattrs; k++) {
		struct be *be = s->bes[k];
		struct be_node *root;

		if (be->ops->root(be, NULL, &root, NULL) < 0) {
			s->no_xattrs = false;
			break;
		}
		s->no_xattrs = be->ops->getxattr(be, NULL, root,
						 "security.capability", NULL,
						 0) == -EOPNOTSUPP;
		be_node_put(be, root);
	}
	if (s->no_xattrs)
		log_msg(LOG_LVL_INFO, "fs",
			"no backend holds extended attributes: the kernel answers EOPNOTSUPP for them");
}

static void sfs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			 const char *value, size_t size, int flags)
{
	struct sfs *s = req_sfs(req);
	struct sfs_inode *in = inode_get(s, ino);
	struct be_cred cred;

	req_cred(req, &cred);
	be_count(ino_be(s, in), BE_CALL_XATTR);
	fuse_reply_err(req, -ino_be(s, in)->ops->setxattr(ino_be(s, in), &cred,
							   in->node, name,
							   value, size,
							   flags));
}

/* getxattr and listxattr share the size-probe protocol of FUSE. */
static void reply_xattr(fuse_req_t req, size_t size, int rc, char *buf)
{
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)rc);
	else
		fuse_reply_buf(req, buf, (size_t)rc);
}

static void sfs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			 size_t size)
{
	struct sfs *s = req_sfs(req);
	struct sfs_inode *in;
	struct be_cred cred;
	char *buf;
	int rc;

	if (s->no_xattrs) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	in = inode_get(s, ino);
	buf = size ? malloc(size) : NULL;
	if (size && !buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	req_cred(req, &cred);
	be_count(ino_be(s, in), BE_CALL_XATTR);
	rc = ino_be(s, in)->ops->getxattr(ino_be(s, in), &cred, in->node, name,
					  buf, size);
	reply_xattr(req, size, rc, buf);
	free(buf);
}

static void sfs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct sfs *s = req_sfs(req);
	struct sfs_inode *in = inode_get(s, ino);
	char *buf = size ? malloc(size) : NULL;
	struct be_cred cred;
	int rc;

	if (size && !buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	req_cred(req, &cred);
	be_count(ino_be(s, in), BE_CALL_XATTR);
	rc = ino_be(s, in)->ops->listxattr(ino_be(s, in), &cred, in->node, buf,
					   size);
	reply_xattr(req, size, rc, buf);
	free(buf);
}

static void sfs_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	struct sfs *s = req_sfs(req);
	struct sfs_inode *in = inode_get(s, ino);
	struct be_cred cred;

	req_cred(req, &cred);
	be_count(ino_be(s, in), BE_CALL_XATTR);
	fuse_reply_err(req, -ino_be(s, in)->ops->removexattr(ino_be(s, in), &cred,
							      in->node,
							      name));
}

void xattr_ops_init(struct fuse_lowlevel_ops *ops)
{
	ops->setxattr = sfs_setxattr;
	ops->getxattr = sfs_getxattr;
	ops->listxattr = sfs_listxattr;
	ops->removexattr = sfs_removexattr;
}
