/* SPDX-License-Identifier: GPL-2.0 */
/*
 * silly.c - the hidden names of files unlinked while open, their removal
 * at the last close, the removal at start of those this node's earlier
 * runs left behind, and, where root is squashed, their moves out of a
 * directory being removed.
 *
 * A file whose last name goes while it is open is renamed to a hidden
 * name (dir.c silly_rename()) and removed at its last close
 * (silly_remove()).  A daemon that dies in between (kill -9, a node crash)
 * leaves the file there.  The hidden name therefore starts with this
 * node's id (cache_node_id(): random, kept in the cache dir), and a start
 * removes, after the journal replay and before the mount, every entry of
 * SILLY_DIR at a backend's root that starts with that id and a '-'.  No
 * other daemon runs with this id (the cache dir lock), so none of them is
 * open; names of other nodes, and of versions before the id, are never
 * touched.  Where root is squashed the hidden files are spread over the
 * users' directories and renamed as their users: they are not looked for
 * (docs/operations.md); a directory left with only such names of this
 * node moves them up when it is removed (silly_evacuate()), and one whose
 * mode their removal opens is never seen so here (the flux registry).
 *
 * Thread safety: silly_name() reads immutable fields only;
 * silly_cleanup() runs once in main(), before the session starts;
 * silly_evacuate() moves a name under ino_lock, so a last close takes
 * either the old directory or the new one; the flux registry has its own
 * lock, and atomics for the check on the hot path.
 */
#include "fs_int.h"

#include <errno.h>
#include <stdatomic.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
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

/*
 * Directories whose mode unlink_as_owner() has opened for a moment.  The
 * kernel asks for a directory's attributes again after an EACCES from its
 * permission check (fuse_permission()), and an answer read while the mode
 * was open would let this node's own callers through a directory its owner
 * closed (difftest seed 883322035: a link() through a 0666 directory got
 * EEXIST, not EACCES).  GETATTR and LOOKUP of a directory read while any
 * such change ran (flux.seq moved) wait for it to end and read again.
 * One daemon per process: the registry is the process's.
 */
#define FLUX_MAX 8

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	_Atomic uint64_t seq;	/* changes begun and ended */
	_Atomic unsigned int n;	/* changes running */
	struct {
		int be_idx;
		uint64_t fileid;
	} ent[FLUX_MAX];
} flux = { .lock = PTHREAD_MUTEX_INITIALIZER,
	   .cond = PTHREAD_COND_INITIALIZER };

/* The entry of a directory in flux, or -1; flux.lock held. */
static int flux_find(int be_idx, uint64_t fileid)
{
	unsigned int i;

	for (i = 0; i < flux.n; i++)
		if (flux.ent[i].be_idx == be_idx &&
		    flux.ent[i].fileid == fileid)
			return (int)i;
	return -1;
}

static void flux_begin(int be_idx, uint64_t fileid)
{
	pthread_mutex_lock(&flux.lock);
	while (flux.n == FLUX_MAX || flux_find(be_idx, fileid) >= 0)
		pthread_cond_wait(&flux.cond, &flux.lock);
	flux.ent[flux.n].be_idx = be_idx;
	flux.ent[flux.n].fileid = fileid;
	atomic_fetch_add(&flux.n, 1);
	atomic_fetch_add(&flux.seq, 1);
	pthread_mutex_unlock(&flux.lock);
}

static void flux_end(int be_idx, uint64_t fileid)
{
	int i;

	pthread_mutex_lock(&flux.lock);
	i = flux_find(be_idx, fileid);
	if (i >= 0) {
		flux.ent[i] = flux.ent[flux.n - 1];
		atomic_fetch_sub(&flux.n, 1);
	}
	atomic_fetch_add(&flux.seq, 1);
	pthread_cond_broadcast(&flux.cond);
	pthread_mutex_unlock(&flux.lock);
}

uint64_t silly_flux_seq(void)
{
	return atomic_load(&flux.seq);
}

bool silly_flux_wait(int be_idx, uint64_t fileid, uint64_t seq)
{
	bool again;

	/* none begun, ended or running: almost always */
	if (atomic_load(&flux.seq) == seq && !atomic_load(&flux.n))
		return false;
	pthread_mutex_lock(&flux.lock);
	again = flux.seq != seq;
	while (flux_find(be_idx, fileid) >= 0)
		pthread_cond_wait(&flux.cond, &flux.lock);
	pthread_mutex_unlock(&flux.lock);
	return again;
}

/*
 * Where root is squashed the hidden file is removed as the user who
 * unlinked it, in its own directory, and a chmod since then (a directory
 * made read-only or unsearchable) refuses that: the file would stay for
 * good, as the NFS client's .nfsXXXX does.  The directory's owner may
 * change its mode, so as the owner: open the directory up for the
 * removal and put its mode back (this node's own callers never see the
 * open mode: flux above; another node may, for two RPCs).
 */
static int unlink_as_owner(struct be *be, int be_idx,
			   const struct be_cred *cred, struct be_node *dir,
			   const char *name)
{
	struct be_setattr sa = { .valid = BE_SET_MODE };
	struct be_attr a;
	int rc;

	rc = be->ops->getattr(be, cred, dir, &a);
	if (rc < 0)
		return rc;
	if (a.uid != cred->uid || (a.mode & 0300) == 0300)
		return -EACCES;
	sa.mode = (a.mode & 07777) | 0300;
	flux_begin(be_idx, dir->fileid);
	rc = be->ops->setattr(be, cred, dir, &sa, NULL);
	if (rc < 0) {
		flux_end(be_idx, dir->fileid);
		return rc;
	}
	rc = be->ops->unlink(be, cred, dir, name);
	sa.mode = a.mode & 07777;
	if (be->ops->setattr(be, cred, dir, &sa, NULL) < 0)
		log_msg(LOG_LVL_WARN, "fs",
			"cannot give back mode %04o to the directory of %s: it stays %04o",
			sa.mode, name, (a.mode & 07777) | 0300);
	flux_end(be_idx, dir->fileid);
	return rc;
}

void silly_remove(struct sfs *s, struct sfs_inode *ino, struct be_node *dir,
		  char *name, struct be_cred *cred)
{
	struct be *be = ino_be(s, ino);
	struct be_node *root;
	int rc = be->ops->unlink(be, cred, dir, name);

	if ((rc == -EACCES || rc == -EPERM) && cred)
		rc = unlink_as_owner(be, ino->be_idx, cred, dir, name);
	if (rc < 0 && rc != -ENOENT)
		log_msg(LOG_LVL_WARN, "fs",
			"cannot remove %s, a file unlinked while open, at its last close: %s",
			name, strerror(-rc));
	be_node_put(be, dir);
	free(name);
	free(cred);
	/* Leave no trace in the tree: the hidden directory goes when empty
	 * (ENOTEMPTY while other files there are open, here or on another
	 * node). */
	if (!s->silly_here[ino->be_idx] &&
	    be->ops->root(be, NULL, &root, NULL) == 0) {
		be->ops->rmdir(be, NULL, root, SILLY_DIR);
		be_node_put(be, root);
	}
}

/* This node's entries of one SILLY_DIR listing. */
struct leftovers {
	char prefix[48];	/* [SILLY_DIR "-"] "<node id>-" */
	size_t plen;
	char **names;
	size_t n, cap;
	size_t others;		/* entries that are not, but "." and ".." */
};

static int collect(void *arg, const char *name, uint64_t fileid,
		   const struct be_attr *attr, struct be_node *node)
{
	struct leftovers *l = arg;
	char **more;

	if (strncmp(name, l->prefix, l->plen)) {
		if (strcmp(name, ".") && strcmp(name, ".."))
			l->others++;
		return 0;
	}
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;

		more = realloc(l->names, cap * sizeof(*more));
		if (!more)
			return -ENOMEM;
		l->names = more;
		l->cap = cap;
	}
	l->names[l->n] = strdup(name);
	if (!l->names[l->n])
		return -ENOMEM;
	l->n++;
	return 0;
}

/*
 * Remove this node's leftovers from SILLY_DIR at the root of backend k.
 * Listed first and removed after, so the listing does not run over a
 * directory that changes under it.  Failures are logged, never returned.
 */
static void cleanup_be(struct sfs *s, int k, uint64_t id)
{
	struct be *be = s->bes[k];
	struct leftovers l = { 0 };
	struct be_node *root, *dir = NULL;
	size_t i, removed = 0;
	int rc;

	l.plen = (size_t)snprintf(l.prefix, sizeof(l.prefix), "%016" PRIx64 "-",
				  id);
	rc = be->ops->root(be, NULL, &root, NULL);
	if (rc < 0) {
		log_msg(LOG_LVL_WARN, "fs", "%s: root: %s; %s not cleaned",
			be->spec, strerror(-rc), SILLY_DIR);
		return;
	}
	rc = be->ops->lookup(be, NULL, root, SILLY_DIR, &dir, NULL);
	if (rc == 0)
		rc = be->ops->readdir(be, NULL, dir, collect, &l);
	if (rc < 0 && rc != -ENOENT)
		log_msg(LOG_LVL_WARN, "fs", "%s: cannot list %s: %s%s",
			be->spec, SILLY_DIR, strerror(-rc),
			l.n ? "; removing what was listed" : "");
	for (i = 0; i < l.n; i++) {
		rc = be->ops->unlink(be, NULL, dir, l.names[i]);
		if (rc == 0 || rc == -ENOENT)
			removed++;
		else
			log_msg(LOG_LVL_WARN, "fs",
				"%s: cannot remove %s/%s, left by an earlier run of this node: %s",
				be->spec, SILLY_DIR, l.names[i],
				strerror(-rc));
		free(l.names[i]);
	}
	free(l.names);
	/* As at a last close: the directory goes when empty. */
	if (removed)
		be->ops->rmdir(be, NULL, root, SILLY_DIR);
	log_msg(LOG_LVL_INFO, "fs",
		"%s: removed %zu file(s) unlinked while open that an earlier run of this node (id %016" PRIx64 ") left in %s",
		be->spec, removed, id, SILLY_DIR);
	be_node_put(be, dir);
	be_node_put(be, root);
}

/* The inode this run hid (or is hiding) as name, or NULL; ino_lock held. */
static struct sfs_inode *hidden_inode(struct sfs *s, int be_idx,
				      const char *name)
{
	struct sfs_inode *ino;
	size_t i;

	for (i = 0; i < s->itable_size; i++)
		for (ino = s->itable[i]; ino; ino = ino->hnext)
			if (ino->be_idx == be_idx && ino->silly_name &&
			    !strcmp(ino->silly_name, name))
				return ino;
	return NULL;
}

/* Did this daemon make the hidden name (it ends in "-<our pid>")? */
static bool name_of_this_run(const char *name)
{
	char tail[24];
	size_t n = strlen(name), t;

	t = (size_t)snprintf(tail, sizeof(tail), "-%d", (int)getpid());
	return n >= t && !strcmp(name + n - t, tail);
}

int silly_evacuate(struct sfs *s, const struct be_cred *cred,
		   struct sfs_inode *parent, const char *name)
{
	struct be *be = ino_be(s, parent);
	struct leftovers l = { 0 };
	struct be_node *sub = NULL;
	struct be_cred *rm_cred;
	struct sfs_inode *ino;
	size_t i, moved = 0;
	int rc;

	if (!s->silly_here[parent->be_idx])
		return 0;
	l.plen = (size_t)snprintf(l.prefix, sizeof(l.prefix),
				  SILLY_DIR "-%016" PRIx64 "-",
				  cache_node_id(s->cache));
	rc = be->ops->lookup(be, cred, parent->node, name, &sub, NULL);
	if (rc == 0)
		rc = be->ops->readdir(be, cred, sub, collect, &l);
	for (i = 0; rc == 0 && !l.others && i < l.n; i++) {
		rm_cred = malloc(sizeof(*rm_cred));
		if (!rm_cred) {
			rc = -ENOMEM;
			break;
		}
		*rm_cred = *cred;
		/* Under ino_lock: the last close takes the name it finds. */
		pthread_mutex_lock(&s->ino_lock);
		ino = hidden_inode(s, parent->be_idx, l.names[i]);
		if (ino && ino->silly_dir &&
		    ino->silly_dir->fileid == sub->fileid) {
			rc = be->ops->rename(be, cred, sub, l.names[i],
					     parent->node, l.names[i], 0);
			if (rc == 0) {
				be_node_put(be, ino->silly_dir);
				ino->silly_dir = be_node_get(parent->node);
				/* who may remove it from parent now */
				free(ino->silly_cred);
				ino->silly_cred = rm_cred;
				rm_cred = NULL;
			}
		} else if (ino || name_of_this_run(l.names[i])) {
			/* being hidden, or removed at its last close, now:
			 * the directory is not empty yet */
			rc = -EBUSY;
		} else {
			/* an earlier run's (a crash): nobody has it open,
			 * as at a start (silly_cleanup()) */
			rc = be->ops->unlink(be, cred, sub, l.names[i]);
		}
		pthread_mutex_unlock(&s->ino_lock);
		free(rm_cred);
		if (rc == -ENOENT)	/* closed meanwhile, and removed */
			rc = 0;
		moved += rc == 0;
	}
	for (i = 0; i < l.n; i++)
		free(l.names[i]);
	free(l.names);
	if (sub)
		be_node_put(be, sub);
	return rc < 0 ? rc : l.others ? 0 : (int)moved;
}

void silly_cleanup(struct sfs *s)
{
	uint64_t id = cache_node_id(s->cache);
	int k;

	for (k = 0; k < s->nbe; k++)
		if (!s->silly_here[k])
			cleanup_be(s, k, id);
}
