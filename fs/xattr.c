/* SPDX-License-Identifier: GPL-2.0 */
/*
 * xattr.c - extended attributes, passed to the backend.
 *
 * The backend decides what it supports: the posix backend stores them in
 * the directory's file system; NFSv3 has none: EOPNOTSUPP, and an empty
 * list (docs/consistency.md, "What NFSv3 cannot hold").
 *
 * Each call carries the caller's credentials.
 *
 * Thread safety: no state of its own.
 */
#include "fs_int.h"

#include <errno.h>
#include <stdlib.h>

static void sfs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			 const char *value, size_t size, int flags)
{
	struct sfs *s = req_sfs(req);
	struct sfs_inode *in = inode_get(s, ino);
	struct be_cred cred;

	req_cred(req, &cred);
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
	struct sfs_inode *in = inode_get(s, ino);
	char *buf = size ? malloc(size) : NULL;
	struct be_cred cred;
	int rc;

	if (size && !buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	req_cred(req, &cred);
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
