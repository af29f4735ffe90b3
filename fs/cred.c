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
 * Thread safety: req_cred() reads the request, and its cache of groups
 * under groups_lock; cred_check_backends() runs once at mount, before the
 * session starts.
 */
#include "fs_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/*
 * The supplementary groups of thread pid (the kernel's pid of a request
 * is its thread's), from the "Groups:" line of /proc/PID/task/PID/status,
 * at most max of them; returns how many, or -errno.  One open and one
 * read: libfuse's fuse_req_getgroups() reads into 1 KiB first, and a
 * status is larger (1.4 KiB on 6.x), so it opened, rendered and read every
 * status twice, on every request (a fifth of the daemon's CPU in a stat
 * of many files on the posix backend, docs/performance.md).
 */
static int proc_groups(pid_t pid, gid_t *list, int max)
{
	char path[64], buf[8192], *p, *end;
	ssize_t len;
	int fd, n = 0;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/status", (int)pid,
		 (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	len = read(fd, buf, sizeof(buf) - 1);
	if (len < 0)
		n = -errno;
	close(fd);
	if (n < 0)
		return n;
	buf[len] = '\0';
	p = strstr(buf, "\nGroups:");
	/* the line must be whole: a status past 8 KiB is not read on */
	if (!p || !strchr(p + 1, '\n'))
		return -EIO;
	p += strlen("\nGroups:");
	for (;;) {
		unsigned long g;

		while (*p == ' ' || *p == '\t')
			p++;
		if (*p < '0' || *p > '9')
			break;
		g = strtoul(p, &end, 10);
		if (n < max)
			list[n] = (gid_t)g;
		n++;
		p = end;
	}
	return n;
}

/*
 * The groups read last for a thread, kept groups_timeout seconds: a
 * create asks for them four times (GETATTR of the directory, LOOKUP,
 * CREATE, GETXATTR), and rendering a status is the largest cost of such a
 * request after the kernel's own (docs/performance.md).  Kept by thread
 * id, uid and gid; a process that changes its groups without changing
 * its ids is seen with the old ones until the entry ages out, where the
 * kernel's own check (default_permissions) already uses the new ones.
 */
#define GROUPS_SLOTS 256

struct groups_ent {
	pid_t pid;
	uid_t uid;
	gid_t gid;
	int n;
	uint64_t at_us;
	gid_t groups[BE_CRED_NGROUPS];
};

static struct groups_ent groups_cache[GROUPS_SLOTS];
static pthread_mutex_t groups_lock = PTHREAD_MUTEX_INITIALIZER;

static uint64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* The caller's groups (at most BE_CRED_NGROUPS) into groups: how many. */
static int caller_groups(fuse_req_t req, const struct fuse_ctx *ctx,
			 gid_t *groups)
{
	struct groups_ent *e = &groups_cache[(unsigned int)ctx->pid %
					     GROUPS_SLOTS];
	uint64_t ttl = (uint64_t)(req_sfs(req)->cfg.groups_timeout * 1e6);
	uint64_t now = ttl ? mono_us() : 0;
	int n = -1;

	if (ttl) {
		pthread_mutex_lock(&groups_lock);
		if (e->pid == ctx->pid && e->uid == ctx->uid &&
		    e->gid == ctx->gid && now - e->at_us < ttl) {
			n = e->n;
			memcpy(groups, e->groups, (size_t)n * sizeof(*groups));
		}
		pthread_mutex_unlock(&groups_lock);
		if (n >= 0)
			return n;
	}
	n = proc_groups(ctx->pid, groups, BE_CRED_NGROUPS);
	if (n == -EIO)	/* a status we could not parse */
		n = fuse_req_getgroups(req, BE_CRED_NGROUPS, groups);
	if (n < 0)
		return 0;	/* no /proc: uid and gid only */
	if (n > BE_CRED_NGROUPS)
		n = BE_CRED_NGROUPS;
	if (ttl) {
		pthread_mutex_lock(&groups_lock);
		e->pid = ctx->pid;
		e->uid = ctx->uid;
		e->gid = ctx->gid;
		e->n = n;
		e->at_us = now;
		memcpy(e->groups, groups, (size_t)n * sizeof(*groups));
		pthread_mutex_unlock(&groups_lock);
	}
	return n;
}

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
		n = caller_groups(req, ctx, groups);
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
