/* SPDX-License-Identifier: GPL-2.0 */
/*
 * cred.c - who a backend call is made for: the caller of a FUSE request,
 * and what the daemon's own credentials may do on each backend.
 *
 * Every backend call made for an application carries the caller's uid,
 * gid and supplementary groups, so an export that squashes root works and
 * the server checks every access (docs/security.md).  The daemon keeps
 * its own credentials (NULL) for its own work: the mount, and the
 * directory where files unlinked while open wait for their last close.
 * Where the export squashes root, that directory cannot be the daemon's,
 * and such a file hides in its own directory instead, renamed and later
 * removed by the user who unlinked it, as the NFS client's .nfs files.
 *
 * Thread safety: req_cred() only reads the request; cred_check_backends()
 * runs once at mount, before the session starts.
 */
#include "fs_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void req_cred(fuse_req_t req, struct be_cred *cred)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	gid_t groups[BE_CRED_NGROUPS];
	int i, n = 0;

	cred->uid = ctx->uid;
	cred->gid = ctx->gid;
	/*
	 * Requests the kernel makes on its own (pid 0) have no process to
	 * read the groups of.  Past BE_CRED_NGROUPS the rest of the list is
	 * dropped, as AUTH_SYS and the kernel NFS client drop it.
	 */
	if (ctx->pid > 0)
		n = fuse_req_getgroups(req, BE_CRED_NGROUPS, groups);
	if (n < 0)
		n = 0;	/* no /proc: uid and gid only */
	if (n > BE_CRED_NGROUPS)
		n = BE_CRED_NGROUPS;
	cred->ngroups = (uint32_t)n;
	for (i = 0; i < n; i++)
		cred->groups[i] = groups[i];
	for (; i < BE_CRED_NGROUPS; i++)
		cred->groups[i] = 0;
}

/*
 * May the daemon keep SILLY_DIR at the root of be?  It must be able to
 * make it (mode 1777: users rename their files into it) and own it under
 * its own uid, so that it may remove anyone's file from it later.  An
 * export that squashes root makes the daemon "nobody": then no.  A
 * directory made just for the check goes again.
 */
static bool daemon_owns_silly_dir(struct be *be)
{
	struct be_setattr sa = { .valid = BE_SET_MODE, .mode = 01777 };
	struct be_node *root, *dir = NULL;
	struct be_attr a;
	bool made = false, ok;
	int rc;

	if (be->ops->root(be, NULL, &root, NULL) < 0)
		return false;
	rc = be->ops->lookup(be, NULL, root, SILLY_DIR, &dir, &a);
	if (rc == -ENOENT) {
		rc = be->ops->mkdir(be, NULL, root, SILLY_DIR, 01777, &dir,
				    &a);
		made = rc == 0;
	}
	if (rc == 0)
		rc = be->ops->setattr(be, NULL, dir, &sa, &a);
	ok = rc == 0 && a.uid == (uint32_t)geteuid() &&
	     (a.mode & 07777) == 01777;
	if (made)
		be->ops->rmdir(be, NULL, root, SILLY_DIR);
	be_node_put(be, dir);
	be_node_put(be, root);
	return ok;
}

int cred_check_backends(struct sfs *s, char *err, size_t errlen)
{
	int k;

	s->silly_here = calloc((size_t)s->nbe, sizeof(*s->silly_here));
	if (!s->silly_here) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (k = 0; k < s->nbe; k++) {
		s->silly_here[k] = !daemon_owns_silly_dir(s->bes[k]);
		if (s->silly_here[k])
			log_msg(LOG_LVL_INFO, "fs",
				"%s: the daemon cannot keep %s at the root (the export squashes root?): a file unlinked while open is hidden in its own directory until its last close",
				s->bes[k]->spec, SILLY_DIR);
	}
	return 0;
}
