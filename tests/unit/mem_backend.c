/* SPDX-License-Identifier: GPL-2.0 */
/*
 * mem_backend.c - the in-memory, fault-injecting backend of the unit
 * tests.  See mem_backend.h for what it promises.
 *
 * Thread safety: mb->lock protects everything but the immutable fields
 * (fileid) and the reference counts, which are atomic.
 */
#include "mem_backend.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

struct mem_node;

struct mem_dirent {
	char *name;
	struct mem_node *node;
	struct mem_dirent *next;
};

struct mem_xattr {
	char *name;
	void *value;
	size_t size;
	struct mem_xattr *next;
};

struct mem_node {
	struct be_node base;
	uint32_t mode, uid, gid, nlink;
	uint64_t rdev;
	struct timespec atime, mtime, ctime;
	uint64_t change;
	char *data;			/* regular files: size bytes, zeros to cap */
	size_t size, cap;
	char *target;			/* symlinks */
	struct mem_dirent *entries;	/* directories */
	struct mem_xattr *xattrs;
	struct mem_node *all_next;	/* every node ever made */
	uint64_t own_seq;		/* writes and setattrs through be_ops */
	bool cattr_set;			/* cattr: as the last commit left it, */
	uint64_t cattr_own;		/* ... while own_seq is still this */
	struct be_attr cattr;
};

#define MEM_BY_MAX 8

struct mem_fault {
	int err;
	int count;		/* > 0: fail this many more; -1: fail all */
	unsigned int delay_ms;
	bool gate;
	unsigned long calls, failures, waiting, completed;
	long last_uid;		/* the last call's cred uid, -1: none */
	unsigned int nby;
	struct {
		long uid;
		unsigned long calls;
	} by[MEM_BY_MAX];	/* calls per cred uid */
};

struct mem_be {
	struct be base;
	pthread_mutex_t lock;
	pthread_cond_t gate_cond;
	struct mem_node *root;
	struct mem_node *all;
	uint64_t next_fileid;
	struct timespec last;
	struct mem_fault faults[MEM_OP_COUNT];
	bool committed;			/* mem_be_committed_attr() on */
	void (*on_getattr)(void *);	/* once, before the next getattr */
	void *on_getattr_arg;
};

static inline struct mem_be *to_mb(struct be *be)
{
	return container_of(be, struct mem_be, base);
}

static inline struct mem_node *to_mn(struct be_node *n)
{
	return container_of(n, struct mem_node, base);
}

/* A clock that always moves forward, so every change shows in mtime. */
static struct timespec mem_now(struct mem_be *mb)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	if (ts.tv_sec < mb->last.tv_sec ||
	    (ts.tv_sec == mb->last.tv_sec && ts.tv_nsec <= mb->last.tv_nsec)) {
		ts = mb->last;
		if (++ts.tv_nsec == 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec = 0;
		}
	}
	mb->last = ts;
	return ts;
}

static void touch_data(struct mem_be *mb, struct mem_node *n)
{
	n->mtime = n->ctime = mem_now(mb);
	n->change++;
}

static void touch_meta(struct mem_be *mb, struct mem_node *n)
{
	n->ctime = mem_now(mb);
	n->change++;
}

static void fill_attr(const struct mem_node *n, struct be_attr *a)
{
	if (!a)
		return;
	memset(a, 0, sizeof(*a));
	a->fileid = n->base.fileid;
	a->size = n->size;
	a->used = n->size;
	a->rdev = n->rdev;
	a->mode = n->mode;
	a->nlink = n->nlink;
	a->uid = n->uid;
	a->gid = n->gid;
	a->atime = n->atime;
	a->mtime = n->mtime;
	a->ctime = n->ctime;
	a->change = n->change;
}

/* Hand out a node: a reference for *out, attributes for *attr. */
static int give(struct mem_node *n, struct be_node **out, struct be_attr *attr)
{
	if (out)
		*out = be_node_get(&n->base);
	fill_attr(n, attr);
	return 0;
}

static struct mem_node *node_new(struct mem_be *mb, uint32_t mode,
				 const struct be_cred *cred)
{
	struct mem_node *n = calloc(1, sizeof(*n));

	if (!n)
		return NULL;
	n->base.fileid = mb->next_fileid++;
	atomic_init(&n->base.refs, 0);
	n->mode = mode;
	n->nlink = S_ISDIR(mode) ? 2 : 1;
	if (cred) {
		n->uid = cred->uid;
		n->gid = cred->gid;
	}
	n->atime = n->mtime = n->ctime = mem_now(mb);
	n->change = 1;
	n->all_next = mb->all;
	mb->all = n;
	return n;
}

static int ensure_cap(struct mem_node *n, size_t need)
{
	size_t ncap = n->cap ? n->cap : 4096;
	char *d;

	if (need <= n->cap)
		return 0;
	while (ncap < need)
		ncap *= 2;
	d = realloc(n->data, ncap);
	if (!d)
		return -ENOMEM;
	memset(d + n->cap, 0, ncap - n->cap);
	n->data = d;
	n->cap = ncap;
	return 0;
}

/* New size; bytes past it read as zeros if the file grows again. */
static int set_size(struct mem_node *n, size_t size)
{
	int rc;

	if (size < n->size) {
		memset(n->data + size, 0, n->size - size);
	} else {
		rc = ensure_cap(n, size);
		if (rc < 0)
			return rc;
	}
	n->size = size;
	return 0;
}

static struct mem_dirent *dir_find(struct mem_node *dir, const char *name)
{
	struct mem_dirent *d;

	for (d = dir->entries; d; d = d->next)
		if (!strcmp(d->name, name))
			return d;
	return NULL;
}

static int dir_add(struct mem_node *dir, const char *name, struct mem_node *n)
{
	struct mem_dirent *d = calloc(1, sizeof(*d));

	if (!d || !(d->name = strdup(name))) {
		free(d);
		return -ENOMEM;
	}
	d->node = n;
	d->next = dir->entries;
	dir->entries = d;
	return 0;
}

static void dir_remove(struct mem_node *dir, struct mem_dirent *victim)
{
	struct mem_dirent **pp;

	for (pp = &dir->entries; *pp; pp = &(*pp)->next) {
		if (*pp == victim) {
			*pp = victim->next;
			free(victim->name);
			free(victim);
			return;
		}
	}
}

/*
 * The fate of one data call, with mb->lock held: waits at a closed gate,
 * then returns the injected error, or 0 after the configured delay.
 */
static int fault_enter(struct mem_be *mb, enum mem_op op,
		       const struct be_cred *cred)
{
	struct mem_fault *f = &mb->faults[op];
	long uid = cred ? (long)cred->uid : -1;
	unsigned int ms, i;

	f->calls++;
	f->last_uid = uid;
	for (i = 0; i < f->nby && f->by[i].uid != uid; i++)
		;
	if (i < MEM_BY_MAX) {
		f->by[i].uid = uid;
		f->by[i].calls++;
		if (i == f->nby)
			f->nby++;
	}
	f->waiting++;
	while (f->gate)
		pthread_cond_wait(&mb->gate_cond, &mb->lock);
	f->waiting--;
	if (f->count) {
		if (f->count > 0)
			f->count--;
		f->failures++;
		return f->err;
	}
	ms = f->delay_ms;
	if (ms) {
		struct timespec ts = { .tv_sec = ms / 1000,
				       .tv_nsec = (long)(ms % 1000) * 1000000 };

		pthread_mutex_unlock(&mb->lock);
		nanosleep(&ts, NULL);
		pthread_mutex_lock(&mb->lock);
	}
	return 0;
}

static void fault_done(struct mem_be *mb, enum mem_op op)
{
	pthread_mutex_lock(&mb->lock);
	mb->faults[op].completed++;
	pthread_mutex_unlock(&mb->lock);
}

/* ---- be_ops ------------------------------------------------------------ */

static void mem_destroy(struct be *be)
{
	struct mem_be *mb = to_mb(be);
	struct mem_node *n, *next;

	for (n = mb->all; n; n = next) {
		struct mem_dirent *d, *dn;
		struct mem_xattr *x, *xn;

		next = n->all_next;
		for (d = n->entries; d; d = dn) {
			dn = d->next;
			free(d->name);
			free(d);
		}
		for (x = n->xattrs; x; x = xn) {
			xn = x->next;
			free(x->name);
			free(x->value);
			free(x);
		}
		free(n->data);
		free(n->target);
		free(n);
	}
	pthread_cond_destroy(&mb->gate_cond);
	pthread_mutex_destroy(&mb->lock);
	free(mb->base.spec);
	free(mb);
}

static void mem_node_free(struct be *be, struct be_node *node)
{
	/* The backend owns its nodes until mem_destroy(). */
}

static int mem_root(struct be *be, const struct be_cred *cred,
		struct be_node **out, struct be_attr *attr)
{
	struct mem_be *mb = to_mb(be);

	pthread_mutex_lock(&mb->lock);
	give(mb->root, out, attr);
	pthread_mutex_unlock(&mb->lock);
	return 0;
}

static int mem_lookup(struct be *be, const struct be_cred *cred,
		struct be_node *dir, const char *name,
		      struct be_node **out, struct be_attr *attr)
{
	struct mem_be *mb = to_mb(be);
	struct mem_dirent *d;
	int rc = -ENOENT;

	pthread_mutex_lock(&mb->lock);
	if (!S_ISDIR(to_mn(dir)->mode))
		rc = -ENOTDIR;
	else if ((d = dir_find(to_mn(dir), name)))
		rc = give(d->node, out, attr);
	pthread_mutex_unlock(&mb->lock);
	return rc;
}

static int mem_getattr(struct be *be, const struct be_cred *cred,
		struct be_node *node,
		       struct be_attr *attr)
{
	struct mem_be *mb = to_mb(be);
	void (*hook)(void *);
	int rc = -ESTALE;

	pthread_mutex_lock(&mb->lock);
	hook = mb->on_getattr;
	mb->on_getattr = NULL;
	pthread_mutex_unlock(&mb->lock);
	if (hook)
		hook(mb->on_getattr_arg);
	pthread_mutex_lock(&mb->lock);
	if (to_mn(node)->nlink)
		rc = give(to_mn(node), NULL, attr);
	if (rc == 0)
		rc = fault_enter(mb, MEM_OP_GETATTR, cred);
	pthread_mutex_unlock(&mb->lock);
	if (rc == 0)
		fault_done(mb, MEM_OP_GETATTR);
	return rc;
}

static int mem_setattr(struct be *be, const struct be_cred *cred,
		struct be_node *node,
		       const struct be_setattr *sa, struct be_attr *attr)
{
	struct mem_be *mb = to_mb(be);
	struct mem_node *n = to_mn(node);
	int rc;

	pthread_mutex_lock(&mb->lock);
	rc = fault_enter(mb, MEM_OP_SETATTR, cred);
	n->own_seq++;
	if (rc == 0 && !n->nlink)
		rc = -ESTALE;
	if (rc == 0 && (sa->valid & BE_SET_SIZE)) {
		if (!S_ISREG(n->mode))
			rc = -EINVAL;
		else if ((rc = set_size(n, (size_t)sa->size)) == 0)
			touch_data(mb, n);
	}
	if (rc == 0) {
		if (sa->valid & BE_SET_MODE)
			n->mode = (n->mode & S_IFMT) | (sa->mode & 07777);
		if (sa->valid & BE_SET_UID)
			n->uid = sa->uid;
		if (sa->valid & BE_SET_GID)
			n->gid = sa->gid;
		if (sa->valid & BE_SET_ATIME)
			n->atime = sa->atime;
		if (sa->valid & BE_SET_ATIME_NOW)
			n->atime = mem_now(mb);
		if (sa->valid & BE_SET_MTIME)
			n->mtime = sa->mtime;
		if (sa->valid & BE_SET_MTIME_NOW)
			n->mtime = mem_now(mb);
		touch_meta(mb, n);
		fill_attr(n, attr);
	}
	pthread_mutex_unlock(&mb->lock);
	fault_done(mb, MEM_OP_SETATTR);
	return rc;
}

/* Make a new object of the given mode under dir; mb->lock held. */
static int make_obj(struct mem_be *mb, struct mem_node *dir, const char *name,
		    uint32_t mode, const struct be_cred *cred,
		    struct mem_node **out)
{
	struct mem_node *n;

	if (!S_ISDIR(dir->mode))
		return -ENOTDIR;
	if (!dir->nlink)
		return -ENOENT;
	if (dir_find(dir, name))
		return -EEXIST;
	n = node_new(mb, mode, cred);
	if (!n)
		return -ENOMEM;
	if (dir_add(dir, name, n) < 0) {
		n->nlink = 0;
		return -ENOMEM;
	}
	if (S_ISDIR(mode))
		dir->nlink++;
	touch_data(mb, dir);
	*out = n;
	return 0;
}

static int mem_create(struct be *be, const struct be_cred *cred,
		struct be_node *dir, const char *name,
		      uint32_t mode, int exclusive,
		      struct be_node **out, struct be_attr *attr)
{
	struct mem_be *mb = to_mb(be);
	struct mem_dirent *d;
	struct mem_node *n;
	int rc;

	pthread_mutex_lock(&mb->lock);
	d = S_ISDIR(to_mn(dir)->mode) ? dir_find(to_mn(dir), name) : NULL;
	if (d) {
		if (exclusive)
			rc = -EEXIST;
		else if (S_ISDIR(d->node->mode))
			rc = -EISDIR;
		else
			rc = give(d->node, out, attr);
	} else {
		rc = make_obj(mb, to_mn(dir), name, S_IFREG | (mode & 07777),
			      cred, &n);
		if (rc == 0)
			rc = give(n, out, attr);
	}
	pthread_mutex_unlock(&mb->lock);
	return rc;
}

static int mem_mkdir(struct be *be, const struct be_cred *cred,
		struct be_node *dir, const char *name,
		     uint32_t mode,
		     struct be_node **out, struct be_attr *attr)
{
	struct mem_be *mb = to_mb(be);
	struct mem_node *n;
	int rc;

	pthread_mutex_lock(&mb->lock);
	rc = make_obj(mb, to_mn(dir), name, S_IFDIR | (mode & 07777), cred,
		      &n);
	if (rc == 0)
		rc = give(n, out, attr);
	pthread_mutex_unlock(&mb->lock);
	return rc;
}

static int mem_mknod(struct be *be, const struct be_cred *cred,
		struct be_node *dir, const char *name,
		     uint32_t mode, uint64_t rdev,
		     struct be_node **out, struct be_attr *attr)
{
	struct mem_be *mb = to_mb(be);
	struct mem_node *n;
	int rc;

	if (!S_ISFIFO(mode) && !S_ISSOCK(mode) && !S_ISCHR(mode) &&
	    !S_ISBLK(mode))
		return -EINVAL;
	pthread_mutex_lock(&mb->lock);
	rc = make_obj(mb, to_mn(dir), name, mode, cred, &n);
	if (rc == 0) {
		n->rdev = rdev;
		rc = give(n, out, attr);
	}
	pthread_mutex_unlock(&mb->lock);
	return rc;
}

static int mem_symlink(struct be *be, const struct be_cred *cred,
		struct be_node *dir, const char *name,
		       const char *target,
		       struct be_node **out, struct be_attr *attr)
{
	struct mem_be *mb = to_mb(be);
	struct mem_node *n;
	int rc;

	pthread_mutex_lock(&mb->lock);
	rc = make_obj(mb, to_mn(dir), name, S_IFLNK | 0777, cred, &n);
	if (rc == 0) {
		n->target = strdup(target);
		n->size = strlen(target);
		rc = n->target ? give(n, out, attr) : -ENOMEM;
	}
	pthread_mutex_unlock(&mb->lock);
	return rc;
}

static int mem_readlink(struct be *be, const struct be_cred *cred,
		struct be_node *node, char *buf,
			size_t size)
{
	struct mem_be *mb = to_mb(be);
	struct mem_node *n = to_mn(node);
	int rc;

	pthread_mutex_lock(&mb->lock);
	if (!S_ISLNK(n->mode)) {
		rc = -EINVAL;
	} else {
		size_t len = strlen(n->target);

		memcpy(buf, n->target, len < size ? len : size);
		if (len < size)
			buf[len] = '\0';
		rc = (int)len;
	}
	pthread_mutex_unlock(&mb->lock);
	return rc;
}

static int mem_link(struct be *be, const struct be_cred *cred,
		struct be_node *node, struct be_node *dir,
		    const char *name, struct be_attr *attr)
{
	struct mem_be *mb = to_mb(be);
	struct mem_node *n = to_mn(node), *dn = to_mn(dir);
	int rc;

	pthread_mutex_lock(&mb->lock);
	if (S_ISDIR(n->mode))
		rc = -EPERM;
	else if (!n->nlink)
		rc = -ENOENT;
	else if (!S_ISDIR(dn->mode))
		rc = -ENOTDIR;
	else if (dir_find(dn, name))
		rc = -EEXIST;
	else
		rc = dir_add(dn, name, n);
	if (rc == 0) {
		n->nlink++;
		touch_meta(mb, n);
		touch_data(mb, dn);
		fill_attr(n, attr);
	}
	pthread_mutex_unlock(&mb->lock);
	return rc;
}

static int mem_unlink(struct be *be, const struct be_cred *cred,
		struct be_node *dir, const char *name)
{
	struct mem_be *mb = to_mb(be);
	struct mem_dirent *d;
	int rc = 0;

	pthread_mutex_lock(&mb->lock);
	d = S_ISDIR(to_mn(dir)->mode) ? dir_find(to_mn(dir), name) : NULL;
	if (!d) {
		rc = -ENOENT;
	} else if (S_ISDIR(d->node->mode)) {
		rc = -EISDIR;
	} else {
		d->node->nlink--;
		touch_meta(mb, d->node);
		dir_remove(to_mn(dir), d);
		touch_data(mb, to_mn(dir));
	}
	pthread_mutex_unlock(&mb->lock);
	return rc;
}

static int mem_rmdir(struct be *be, const struct be_cred *cred,
		struct be_node *dir, const char *name)
{
	struct mem_be *mb = to_mb(be);
	struct mem_dirent *d;
	int rc = 0;

	pthread_mutex_lock(&mb->lock);
	d = S_ISDIR(to_mn(dir)->mode) ? dir_find(to_mn(dir), name) : NULL;
	if (!d) {
		rc = -ENOENT;
	} else if (!S_ISDIR(d->node->mode)) {
		rc = -ENOTDIR;
	} else if (d->node->entries) {
		rc = -ENOTEMPTY;
	} else {
		d->node->nlink = 0;
		to_mn(dir)->nlink--;
		dir_remove(to_mn(dir), d);
		touch_data(mb, to_mn(dir));
	}
	pthread_mutex_unlock(&mb->lock);
	return rc;
}

static int mem_rename(struct be *be, const struct be_cred *cred,
		struct be_node *olddir,
		      const char *oldname, struct be_node *newdir,
		      const char *newname, unsigned int flags)
{
	struct mem_be *mb = to_mb(be);
	struct mem_node *od = to_mn(olddir), *nd = to_mn(newdir);
	struct mem_dirent *src, *dst;
	struct mem_node *moving;
	int rc = 0;

	pthread_mutex_lock(&mb->lock);
	src = S_ISDIR(od->mode) ? dir_find(od, oldname) : NULL;
	dst = S_ISDIR(nd->mode) ? dir_find(nd, newname) : NULL;
	if (!S_ISDIR(od->mode) || !S_ISDIR(nd->mode)) {
		rc = -ENOTDIR;
		goto out;
	}
	if (!src) {
		rc = -ENOENT;
		goto out;
	}
	moving = src->node;
	if (flags & BE_RENAME_EXCHANGE) {
		if (!dst) {
			rc = -ENOENT;
			goto out;
		}
		src->node = dst->node;
		dst->node = moving;
		goto out_touch;
	}
	if (dst && (flags & BE_RENAME_NOREPLACE)) {
		rc = -EEXIST;
		goto out;
	}
	if (dst && dst->node == moving)
		goto out;
	if (dst) {
		struct mem_node *victim = dst->node;

		if (S_ISDIR(victim->mode) && !S_ISDIR(moving->mode)) {
			rc = -EISDIR;
			goto out;
		}
		if (!S_ISDIR(victim->mode) && S_ISDIR(moving->mode)) {
			rc = -ENOTDIR;
			goto out;
		}
		if (S_ISDIR(victim->mode)) {
			if (victim->entries) {
				rc = -ENOTEMPTY;
				goto out;
			}
			victim->nlink = 0;
			nd->nlink--;
		} else {
			victim->nlink--;
		}
		dst->node = moving;
	} else {
		rc = dir_add(nd, newname, moving);
		if (rc < 0)
			goto out;
	}
	dir_remove(od, src);
	if (S_ISDIR(moving->mode) && od != nd) {
		od->nlink--;
		nd->nlink++;
	}
out_touch:
	touch_meta(mb, moving);
	touch_data(mb, od);
	touch_data(mb, nd);
out:
	pthread_mutex_unlock(&mb->lock);
	return rc;
}

struct dirent_copy {
	char *name;
	struct mem_node *node;
	struct be_attr attr;
};

static int mem_readdir(struct be *be, const struct be_cred *cred,
		struct be_node *dir, be_dirent_fn fn,
		       void *arg)
{
	struct mem_be *mb = to_mb(be);
	struct dirent_copy *v = NULL;
	struct mem_dirent *d;
	size_t n = 0, i;
	int rc = 0;

	/* Copy, so the callback may call back into the backend. */
	pthread_mutex_lock(&mb->lock);
	if (!S_ISDIR(to_mn(dir)->mode)) {
		pthread_mutex_unlock(&mb->lock);
		return -ENOTDIR;
	}
	for (d = to_mn(dir)->entries; d; d = d->next)
		n++;
	v = calloc(n ? n : 1, sizeof(*v));
	if (!v) {
		pthread_mutex_unlock(&mb->lock);
		return -ENOMEM;
	}
	for (i = 0, d = to_mn(dir)->entries; d; d = d->next, i++) {
		v[i].name = strdup(d->name);
		v[i].node = d->node;
		fill_attr(d->node, &v[i].attr);
	}
	pthread_mutex_unlock(&mb->lock);
	for (i = 0; i < n && rc == 0; i++)
		if (v[i].name)
			rc = fn(arg, v[i].name, v[i].attr.fileid, &v[i].attr,
				&v[i].node->base);
	for (i = 0; i < n; i++)
		free(v[i].name);
	free(v);
	return rc;
}

static int mem_statfs(struct be *be, const struct be_cred *cred,
		struct be_node *node, struct statvfs *st)
{
	memset(st, 0, sizeof(*st));
	st->f_bsize = 4096;
	st->f_frsize = 4096;
	st->f_blocks = 1 << 20;
	st->f_bfree = 1 << 19;
	st->f_bavail = 1 << 19;
	st->f_files = 1 << 20;
	st->f_ffree = 1 << 19;
	st->f_favail = 1 << 19;
	st->f_namemax = 255;
	return 0;
}

static struct mem_xattr *xattr_find(struct mem_node *n, const char *name)
{
	struct mem_xattr *x;

	for (x = n->xattrs; x; x = x->next)
		if (!strcmp(x->name, name))
			return x;
	return NULL;
}

static int mem_setxattr(struct be *be, const struct be_cred *cred,
		struct be_node *node, const char *name,
			const void *value, size_t size, int flags)
{
	struct mem_be *mb = to_mb(be);
	struct mem_node *n = to_mn(node);
	struct mem_xattr *x;
	void *copy;
	int rc = 0;

	pthread_mutex_lock(&mb->lock);
	x = xattr_find(n, name);
	if (x && (flags & 1))		/* XATTR_CREATE */
		rc = -EEXIST;
	else if (!x && (flags & 2))	/* XATTR_REPLACE */
		rc = -ENODATA;
	if (rc)
		goto out;
	copy = malloc(size ? size : 1);
	if (!copy) {
		rc = -ENOMEM;
		goto out;
	}
	memcpy(copy, value, size);
	if (!x) {
		x = calloc(1, sizeof(*x));
		if (!x || !(x->name = strdup(name))) {
			free(x);
			free(copy);
			rc = -ENOMEM;
			goto out;
		}
		x->next = n->xattrs;
		n->xattrs = x;
	}
	free(x->value);
	x->value = copy;
	x->size = size;
	touch_meta(mb, n);
out:
	pthread_mutex_unlock(&mb->lock);
	return rc;
}

static int mem_getxattr(struct be *be, const struct be_cred *cred,
		struct be_node *node, const char *name,
			void *value, size_t size)
{
	struct mem_be *mb = to_mb(be);
	struct mem_xattr *x;
	int rc;

	pthread_mutex_lock(&mb->lock);
	x = xattr_find(to_mn(node), name);
	if (!x)
		rc = -ENODATA;
	else if (size && size < x->size)
		rc = -ERANGE;
	else {
		if (size)
			memcpy(value, x->value, x->size);
		rc = (int)x->size;
	}
	pthread_mutex_unlock(&mb->lock);
	return rc;
}

static int mem_listxattr(struct be *be, const struct be_cred *cred,
		struct be_node *node, char *list,
			 size_t size)
{
	struct mem_be *mb = to_mb(be);
	struct mem_xattr *x;
	size_t need = 0;
	int rc;

	pthread_mutex_lock(&mb->lock);
	for (x = to_mn(node)->xattrs; x; x = x->next)
		need += strlen(x->name) + 1;
	if (size && size < need) {
		rc = -ERANGE;
	} else {
		size_t off = 0;

		for (x = to_mn(node)->xattrs; x && size; x = x->next) {
			memcpy(list + off, x->name, strlen(x->name) + 1);
			off += strlen(x->name) + 1;
		}
		rc = (int)need;
	}
	pthread_mutex_unlock(&mb->lock);
	return rc;
}

static int mem_removexattr(struct be *be, const struct be_cred *cred,
		struct be_node *node,
			   const char *name)
{
	struct mem_be *mb = to_mb(be);
	struct mem_node *n = to_mn(node);
	struct mem_xattr **pp, *x;
	int rc = -ENODATA;

	pthread_mutex_lock(&mb->lock);
	for (pp = &n->xattrs; (x = *pp); pp = &x->next) {
		if (!strcmp(x->name, name)) {
			*pp = x->next;
			free(x->name);
			free(x->value);
			free(x);
			touch_meta(mb, n);
			rc = 0;
			break;
		}
	}
	pthread_mutex_unlock(&mb->lock);
	return rc;
}

static int mem_read(struct be *be, const struct be_cred *cred,
		struct be_node *node,
		    const struct iovec *iov, int iovcnt, uint64_t off,
		    be_io_cb cb, void *cookie)
{
	struct mem_be *mb = to_mb(be);
	struct mem_node *n = to_mn(node);
	ssize_t res;

	pthread_mutex_lock(&mb->lock);
	res = fault_enter(mb, MEM_OP_READ, cred);
	if (res == 0 && !n->nlink)
		res = -ESTALE;
	else if (res == 0 && S_ISDIR(n->mode))
		res = -EISDIR;
	else if (res == 0 && !S_ISREG(n->mode))
		res = -EINVAL;
	if (res == 0) {
		size_t done = 0;
		int i;

		for (i = 0; i < iovcnt; i++) {
			uint64_t pos = off + done;
			size_t want = iov[i].iov_len, have;

			if (pos >= n->size)
				break;
			have = n->size - pos < want ? n->size - pos : want;
			memcpy(iov[i].iov_base, n->data + pos, have);
			done += have;
			if (have < want)
				break;
		}
		res = (ssize_t)done;
	}
	pthread_mutex_unlock(&mb->lock);
	cb(cookie, res);
	fault_done(mb, MEM_OP_READ);
	return 0;
}

static int mem_write(struct be *be, const struct be_cred *cred,
		struct be_node *node,
		     const struct iovec *iov, int iovcnt, uint64_t off,
		     be_io_cb cb, void *cookie)
{
	struct mem_be *mb = to_mb(be);
	struct mem_node *n = to_mn(node);
	size_t total = 0, done = 0;
	ssize_t res;
	int i;

	for (i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	pthread_mutex_lock(&mb->lock);
	res = fault_enter(mb, MEM_OP_WRITE, cred);
	n->own_seq++;
	if (res == 0 && !n->nlink)
		res = -ESTALE;
	else if (res == 0 && !S_ISREG(n->mode))
		res = S_ISDIR(n->mode) ? -EISDIR : -EINVAL;
	if (res == 0)
		res = ensure_cap(n, (size_t)off + total);
	if (res == 0) {
		for (i = 0; i < iovcnt; i++) {
			memcpy(n->data + off + done, iov[i].iov_base,
			       iov[i].iov_len);
			done += iov[i].iov_len;
		}
		if (off + total > n->size)
			n->size = (size_t)off + total;
		touch_data(mb, n);
		res = (ssize_t)total;
	}
	pthread_mutex_unlock(&mb->lock);
	cb(cookie, res);
	fault_done(mb, MEM_OP_WRITE);
	return 0;
}

static int mem_commit(struct be *be, const struct be_cred *cred,
		struct be_node *node, be_io_cb cb,
		      void *cookie)
{
	struct mem_be *mb = to_mb(be);
	ssize_t res;

	struct mem_node *n = to_mn(node);

	pthread_mutex_lock(&mb->lock);
	res = fault_enter(mb, MEM_OP_COMMIT, cred);
	if (res == 0 && !n->nlink)
		res = -ESTALE;
	n->cattr_set = res == 0;
	if (res == 0) {
		fill_attr(n, &n->cattr);
		n->cattr_own = n->own_seq;
	}
	pthread_mutex_unlock(&mb->lock);
	cb(cookie, res);
	fault_done(mb, MEM_OP_COMMIT);
	return 0;
}

static int mem_committed_attr(struct be *be, struct be_node *node,
			      struct be_attr *attr)
{
	struct mem_be *mb = to_mb(be);
	struct mem_node *n = to_mn(node);
	int rc = -ENODATA;

	pthread_mutex_lock(&mb->lock);
	if (mb->committed && n->cattr_set && n->cattr_own == n->own_seq) {
		*attr = n->cattr;
		rc = 0;
	}
	pthread_mutex_unlock(&mb->lock);
	return rc;
}

void mem_be_committed_attr(struct be *be, bool on)
{
	struct mem_be *mb = to_mb(be);

	pthread_mutex_lock(&mb->lock);
	mb->committed = on;
	pthread_mutex_unlock(&mb->lock);
}

void mem_be_on_getattr(struct be *be, void (*fn)(void *), void *arg)
{
	struct mem_be *mb = to_mb(be);

	pthread_mutex_lock(&mb->lock);
	mb->on_getattr = fn;
	mb->on_getattr_arg = arg;
	pthread_mutex_unlock(&mb->lock);
}

static int mem_node_encode(struct be *be, struct be_node *node, void *buf,
			   size_t *len)
{
	if (*len < sizeof(node->fileid))
		return -ENAMETOOLONG;
	memcpy(buf, &node->fileid, sizeof(node->fileid));
	*len = sizeof(node->fileid);
	return 0;
}

static int mem_node_decode(struct be *be, const struct be_cred *cred,
		const void *buf, size_t len,
			   struct be_node **out, struct be_attr *attr)
{
	struct mem_be *mb = to_mb(be);
	struct mem_node *n;
	uint64_t fileid;
	int rc = -ESTALE;

	if (len != sizeof(fileid))
		return -EINVAL;
	memcpy(&fileid, buf, sizeof(fileid));
	pthread_mutex_lock(&mb->lock);
	for (n = mb->all; n; n = n->all_next)
		if (n->base.fileid == fileid && n->nlink)
			break;
	if (n)
		rc = give(n, out, attr);
	pthread_mutex_unlock(&mb->lock);
	return rc;
}

/* No permission model: every access is granted. */
static int mem_access(struct be *be, const struct be_cred *cred,
		      struct be_node *node, int mask, struct be_attr *attr)
{
	return mem_getattr(be, cred, node, attr);
}

static const struct be_ops mem_ops = {
	.version = BE_OPS_VERSION,
	.name = "mem",
	.destroy = mem_destroy,
	.node_free = mem_node_free,
	.root = mem_root,
	.lookup = mem_lookup,
	.getattr = mem_getattr,
	.setattr = mem_setattr,
	.create = mem_create,
	.mkdir = mem_mkdir,
	.mknod = mem_mknod,
	.symlink = mem_symlink,
	.readlink = mem_readlink,
	.link = mem_link,
	.unlink = mem_unlink,
	.rmdir = mem_rmdir,
	.rename = mem_rename,
	.readdir = mem_readdir,
	.statfs = mem_statfs,
	.setxattr = mem_setxattr,
	.getxattr = mem_getxattr,
	.listxattr = mem_listxattr,
	.removexattr = mem_removexattr,
	.read = mem_read,
	.write = mem_write,
	.commit = mem_commit,
	.committed_attr = mem_committed_attr,
	.node_encode = mem_node_encode,
	.node_decode = mem_node_decode,
	.access = mem_access,
};

/* ---- test controls ----------------------------------------------------- */

struct be *mem_be_new(const char *spec)
{
	struct mem_be *mb = calloc(1, sizeof(*mb));

	if (!mb)
		return NULL;
	mb->base.ops = &mem_ops;
	mb->base.spec = strdup(spec);
	pthread_mutex_init(&mb->lock, NULL);
	pthread_cond_init(&mb->gate_cond, NULL);
	mb->next_fileid = 1;
	mb->root = node_new(mb, S_IFDIR | 0755, NULL);
	if (!mb->base.spec || !mb->root) {
		mem_destroy(&mb->base);
		return NULL;
	}
	return &mb->base;
}

int mem_be_put_file(struct be *be, const char *name, const void *data,
		    size_t len, struct be_node **out, struct be_attr *attr)
{
	struct mem_be *mb = to_mb(be);
	struct mem_dirent *d;
	struct mem_node *n;
	int rc = 0;

	pthread_mutex_lock(&mb->lock);
	d = dir_find(mb->root, name);
	if (d) {
		n = d->node;
	} else {
		rc = make_obj(mb, mb->root, name, S_IFREG | 0644, NULL, &n);
		if (rc < 0)
			goto out;
	}
	n->size = 0;
	rc = ensure_cap(n, len);
	if (rc < 0)
		goto out;
	if (n->cap)
		memset(n->data, 0, n->cap);
	if (len)
		memcpy(n->data, data, len);
	n->size = len;
	touch_data(mb, n);
	give(n, out, attr);
out:
	pthread_mutex_unlock(&mb->lock);
	return rc;
}

int mem_be_set_data(struct be *be, struct be_node *node, const void *data,
		    size_t len)
{
	struct mem_be *mb = to_mb(be);
	struct mem_node *n = to_mn(node);
	int rc;

	pthread_mutex_lock(&mb->lock);
	rc = ensure_cap(n, len);
	if (rc == 0) {
		if (n->cap)
			memset(n->data, 0, n->cap);
		if (len)
			memcpy(n->data, data, len);
		n->size = len;
		touch_data(mb, n);
	}
	pthread_mutex_unlock(&mb->lock);
	return rc;
}

void *mem_be_get_data(struct be *be, struct be_node *node, size_t *len)
{
	struct mem_be *mb = to_mb(be);
	struct mem_node *n = to_mn(node);
	void *copy = NULL;

	pthread_mutex_lock(&mb->lock);
	*len = n->size;
	if (n->size && (copy = malloc(n->size)))
		memcpy(copy, n->data, n->size);
	pthread_mutex_unlock(&mb->lock);
	return copy;
}

int mem_be_node_refs(struct be_node *node)
{
	return atomic_load(&node->refs);
}

void mem_be_fail(struct be *be, enum mem_op op, int err, int count)
{
	struct mem_be *mb = to_mb(be);

	pthread_mutex_lock(&mb->lock);
	mb->faults[op].err = err;
	mb->faults[op].count = count;
	pthread_mutex_unlock(&mb->lock);
}

void mem_be_set_delay(struct be *be, enum mem_op op, unsigned int ms)
{
	struct mem_be *mb = to_mb(be);

	pthread_mutex_lock(&mb->lock);
	mb->faults[op].delay_ms = ms;
	pthread_mutex_unlock(&mb->lock);
}

void mem_be_gate(struct be *be, enum mem_op op, int closed)
{
	struct mem_be *mb = to_mb(be);

	pthread_mutex_lock(&mb->lock);
	mb->faults[op].gate = closed != 0;
	pthread_cond_broadcast(&mb->gate_cond);
	pthread_mutex_unlock(&mb->lock);
}

static unsigned long fault_counter(struct be *be, enum mem_op op, int which)
{
	struct mem_be *mb = to_mb(be);
	struct mem_fault *f = &mb->faults[op];
	unsigned long v;

	pthread_mutex_lock(&mb->lock);
	v = which == 0 ? f->calls : which == 1 ? f->failures :
	    which == 2 ? f->waiting : f->completed;
	pthread_mutex_unlock(&mb->lock);
	return v;
}

unsigned long mem_be_calls(struct be *be, enum mem_op op)
{
	return fault_counter(be, op, 0);
}

unsigned long mem_be_failures(struct be *be, enum mem_op op)
{
	return fault_counter(be, op, 1);
}

unsigned long mem_be_waiting(struct be *be, enum mem_op op)
{
	return fault_counter(be, op, 2);
}

unsigned long mem_be_completed(struct be *be, enum mem_op op)
{
	return fault_counter(be, op, 3);
}

long mem_be_last_uid(struct be *be, enum mem_op op)
{
	struct mem_be *mb = to_mb(be);
	long uid;

	pthread_mutex_lock(&mb->lock);
	uid = mb->faults[op].last_uid;
	pthread_mutex_unlock(&mb->lock);
	return uid;
}

unsigned long mem_be_calls_by(struct be *be, enum mem_op op, long uid)
{
	struct mem_be *mb = to_mb(be);
	unsigned long n = 0;
	unsigned int i;

	pthread_mutex_lock(&mb->lock);
	for (i = 0; i < mb->faults[op].nby; i++)
		if (mb->faults[op].by[i].uid == uid)
			n = mb->faults[op].by[i].calls;
	pthread_mutex_unlock(&mb->lock);
	return n;
}
