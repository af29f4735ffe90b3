/* SPDX-License-Identifier: GPL-2.0 */
/*
 * inode.c - the table from FUSE node ids to backend nodes.
 *
 * Thread safety: the table and every nlookup are under sfs->ino_lock.
 */
#include "fs_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define ITABLE_SIZE 65536

static size_t ihash(int be_idx, uint64_t fileid)
{
	return (size_t)((fileid * 0x9e3779b97f4a7c15ULL) >> 16 ^
			(uint64_t)be_idx) % ITABLE_SIZE;
}

int inode_table_init(struct sfs *s)
{
	pthread_mutex_init(&s->ino_lock, NULL);
	s->itable_size = ITABLE_SIZE;
	s->itable = calloc(ITABLE_SIZE, sizeof(*s->itable));
	return s->itable ? 0 : -ENOMEM;
}

/* After the session: a file unlinked while open and still open now (its
 * last RELEASE never came) is removed for good, as at its last close. */
void inode_table_destroy(struct sfs *s)
{
	size_t i;

	for (i = 0; s->itable && i < s->itable_size; i++) {
		struct sfs_inode *ino, *next;

		for (ino = s->itable[i]; ino; ino = next) {
			next = ino->hnext;
			/* Still open at the unmount: the kernel drops a RELEASE
			 * it had not yet sent when the connection ends. */
			if (ino->silly_name && ino->silly_dir)
				silly_remove(s, ino, ino->silly_dir,
					     ino->silly_name, ino->silly_cred);
			else {
				free(ino->silly_name);
				free(ino->silly_cred);
			}
			free(ino->dn_name);
			be_node_put(ino_be(s, ino), ino->node);
			free(ino);
		}
	}
	free(s->itable);
	s->itable = NULL;
	pthread_mutex_destroy(&s->ino_lock);
}

struct sfs_inode *inode_get(struct sfs *s, fuse_ino_t ino)
{
	if (ino == FUSE_ROOT_ID)
		return s->root;
	return (struct sfs_inode *)(uintptr_t)ino;
}

fuse_ino_t inode_id(struct sfs *s, struct sfs_inode *ino)
{
	return ino == s->root ? FUSE_ROOT_ID : (fuse_ino_t)(uintptr_t)ino;
}

struct sfs_inode *inode_enter(struct sfs *s, int be_idx,
			      struct be_node *node)
{
	size_t h = ihash(be_idx, node->fileid);
	struct sfs_inode *ino;

	pthread_mutex_lock(&s->ino_lock);
	/* A reused fileid with another handle is another file. */
	for (ino = s->itable[h]; ino; ino = ino->hnext)
		if (ino->be_idx == be_idx && be_node_same(ino->node, node))
			break;
	if (!ino) {
		ino = calloc(1, sizeof(*ino));
		if (!ino)
			goto out;
		ino->be_idx = be_idx;
		ino->fileid = node->fileid;
		ino->node = be_node_get(node);
		ino->hnext = s->itable[h];
		s->itable[h] = ino;
	}
	ino->nlookup++;
out:
	pthread_mutex_unlock(&s->ino_lock);
	return ino;
}

struct sfs_inode *inode_find(struct sfs *s, int be_idx, uint64_t fileid,
			     const struct be_node *node)
{
	struct sfs_inode *ino;

	pthread_mutex_lock(&s->ino_lock);
	for (ino = s->itable[ihash(be_idx, fileid)]; ino; ino = ino->hnext)
		if (ino->be_idx == be_idx && ino->fileid == fileid &&
		    (!node || be_node_same(ino->node, node)))
			break;
	if (ino)
		ino->nlookup++;
	pthread_mutex_unlock(&s->ino_lock);
	return ino;
}

void inode_forget(struct sfs *s, struct sfs_inode *ino, uint64_t n)
{
	struct sfs_inode **pp;
	struct be_node *gone;

	pthread_mutex_lock(&s->ino_lock);
	ino->nlookup = n > ino->nlookup ? 0 : ino->nlookup - n;
	if (ino->nlookup || ino == s->root) {
		pthread_mutex_unlock(&s->ino_lock);
		return;
	}
	gone = offline_forget_locked(s, ino);
	for (pp = &s->itable[ihash(ino->be_idx, ino->fileid)]; *pp;
	     pp = &(*pp)->hnext) {
		if (*pp == ino) {
			*pp = ino->hnext;
			break;
		}
	}
	pthread_mutex_unlock(&s->ino_lock);
	if (gone)
		be_node_put(ino_be(s, ino), gone);
	be_node_put(ino_be(s, ino), ino->node);
	free(ino);
}

void attr_to_stat(struct sfs *s, int be_idx, const struct be_attr *a,
		  struct stat *st)
{
	memset(st, 0, sizeof(*st));
	/* Backend 0 keeps its fileids; junction backends get their index in
	 * the top bits so that numbers from two exports cannot collide. */
	st->st_ino = be_idx ? a->fileid ^ ((uint64_t)be_idx << 56) : a->fileid;
	st->st_mode = a->mode;
	st->st_nlink = a->nlink;
	st->st_uid = a->uid;
	st->st_gid = a->gid;
	st->st_rdev = a->rdev;
	st->st_size = (off_t)a->size;
	st->st_blocks = (blkcnt_t)((a->used + 511) / 512);
	st->st_blksize = 1 << 20;
	st->st_atim = a->atime;
	st->st_mtim = a->mtime;
	st->st_ctim = a->ctime;
}

int make_entry(struct sfs *s, int be_idx, struct be_node *node,
	       struct be_attr *attr, struct fuse_entry_param *e)
{
	struct be_attr raw = *attr;
	struct sfs_inode *ino;

	memset(e, 0, sizeof(*e));
	if (S_ISREG(attr->mode))
		cache_fixup_attr(s->cache, be_idx, node, attr);
	ino = inode_enter(s, be_idx, node);
	if (!ino)
		return -ENOMEM;
	offline_attr_save(s, ino, &raw);
	e->ino = inode_id(s, ino);
	e->generation = 0;
	attr_to_stat(s, be_idx, attr, &e->attr);
	e->attr_timeout = s->cfg.attr_timeout;
	e->entry_timeout = s->cfg.entry_timeout;
	return 0;
}

void reply_attr(fuse_req_t req, struct sfs_inode *ino, struct be_attr *a)
{
	struct sfs *s = req_sfs(req);
	struct be_attr raw = *a;
	struct stat st;

	if (S_ISREG(a->mode))
		cache_fixup_attr(s->cache, ino->be_idx, ino->node, a);
	/* One ino_lock section: the backend's own attributes for outages
	 * (offline.c), and an unlinked open file only lives under its
	 * hidden name. */
	pthread_mutex_lock(&s->ino_lock);
	ino->last = raw;
	ino->have_last = true;
	if (ino->silly_name && a->nlink)
		a->nlink--;
	pthread_mutex_unlock(&s->ino_lock);
	attr_to_stat(s, ino->be_idx, a, &st);
	fuse_reply_attr(req, &st, s->cfg.attr_timeout);
}
