/* SPDX-License-Identifier: GPL-2.0 */
/*
 * resend.c - the answer to a namespace call that was sent again.
 *
 * A call whose reply was lost (the connection broke, or its address went
 * silent and it moved to another) is sent again as a new request.  The
 * server may have done the work the first time; the second send then
 * finds it done and says so as an error: a REMOVE or RMDIR answers
 * ENOENT, a RENAME ENOENT (its source is gone), a MKDIR, LINK or
 * exclusive CREATE EEXIST.  A kernel NFS client hides this with the
 * server's duplicate request cache (the same XID on the same connection);
 * a request sent on a new connection or to another address of a cluster
 * does not reach that cache, so the client must look.  be_resent_answer()
 * looks at what the name holds now and answers success where it holds
 * what the first send made:
 *   REMOVE, RMDIR   ENOENT: the name is gone, which is what was asked;
 *   RENAME          ENOENT: the target name holds the object (its fileid
 *                   when the caller knows it, else any object);
 *   LINK            EEXIST: the name holds the linked file (same fileid);
 *   MKDIR           EEXIST: the name holds an empty directory owned by
 *                   the caller (a directory another client made at the
 *                   same moment for the same user is taken as ours: both
 *                   callers then see success, a harmless difference);
 *   CREATE          EEXIST of an exclusive create: the name holds a file
 *                   whose atime and mtime seconds carry the create's
 *                   verifier, as NFSv3 servers store it (RFC 1813 3.3.8).
 * Anything else keeps its error.
 */
#include "backend.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Does the name's object now look like the first send's work? */
static bool made_by_first(const struct be_resent *r, const struct be_cred *cred,
			  const struct be_attr *a)
{
	uint32_t uid = cred ? cred->uid : (uint32_t)geteuid();

	switch (r->op) {
	case BE_RESENT_LINK:
		return a->fileid == r->fileid;
	case BE_RESENT_MKDIR:
		return S_ISDIR(a->mode) && a->uid == uid && a->nlink <= 2;
	case BE_RESENT_CREATE:
		return S_ISREG(a->mode) && a->size == 0 &&
		       (uint32_t)a->atime.tv_sec == r->verf[0] &&
		       (uint32_t)a->mtime.tv_sec == r->verf[1];
	case BE_RESENT_RENAME:
		return !r->fileid || a->fileid == r->fileid;
	default:
		return false;
	}
}

int be_resent_answer(struct be *be, const struct be_cred *cred,
		     const struct be_resent *r, int err, struct be_node **out,
		     struct be_attr *attr)
{
	struct be_node *dir = r->dir, *node = NULL;
	const char *name = r->name;
	struct be_attr a;
	int rc;

	switch (r->op) {
	case BE_RESENT_REMOVE:
	case BE_RESENT_RMDIR:
		return err == -ENOENT ? 0 : err;
	case BE_RESENT_RENAME:
		if (err != -ENOENT)
			return err;
		dir = r->newdir;
		name = r->newname;
		break;
	case BE_RESENT_LINK:
	case BE_RESENT_MKDIR:
	case BE_RESENT_CREATE:
		if (err != -EEXIST)
			return err;
		break;
	default:
		return err;
	}
	rc = be->ops->lookup(be, cred, dir, name, &node, &a);
	if (rc < 0)
		return err;
	if (!made_by_first(r, cred, &a)) {
		be_node_put(be, node);
		return err;
	}
	log_msg(LOG_LVL_INFO, "backend",
		"%s: %s of %s sent again after a lost reply: done by the first send",
		be->spec, be_resent_op_name(r->op), r->name);
	if (out)
		*out = node;
	else
		be_node_put(be, node);
	if (attr)
		*attr = a;
	return 0;
}

const char *be_resent_op_name(enum be_resent_op op)
{
	static const char *const names[] = {
		[BE_RESENT_REMOVE] = "REMOVE", [BE_RESENT_RMDIR] = "RMDIR",
		[BE_RESENT_RENAME] = "RENAME", [BE_RESENT_LINK] = "LINK",
		[BE_RESENT_MKDIR] = "MKDIR",   [BE_RESENT_CREATE] = "CREATE",
	};

	return (unsigned int)op < sizeof(names) / sizeof(names[0]) ?
		       names[op] : "?";
}
