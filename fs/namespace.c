/* SPDX-License-Identifier: GPL-2.0 */
/*
 * namespace.c - junctions: several backend trees in one mount.
 *
 * The namespace file has one junction per line, "<path in mount>
 * <backend>".  Either "/" is the only junction (the whole mount is one
 * backend, as without the option), or every junction is below "/" and
 * the directories above them are virtual: they exist only in stagefs,
 * list their children, and refuse changes (EPERM to make something in
 * them, EBUSY to remove or rename a junction).  Junctions may not nest.
 *
 * The FUSE operations of dir.c, file.c and xattr.c know nothing of
 * virtual directories: ns_wrap_ops() puts a wrapper in front of each that
 * answers for virtual inodes and passes everything else through.
 *
 * Thread safety: the junction table and the virtual tree are built before
 * the mount and never change; virtual inodes are never freed.
 */
#include "fs_int.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* st_ino of virtual directories: high bit set, never a backend fileid. */
#define VINO_BASE (1ULL << 63)

struct ns_vnode {
	char *name;
	struct ns_vnode *parent, *child, *next;
	int be_idx;			/* >= 0: a junction, no children */
	struct sfs_inode *ino;		/* what lookup of this name gives */
	uint64_t vino;
};

/* ---- parsing --------------------------------------------------------- */

static int ns_err(char *err, size_t errlen, const char *file, int line,
		  const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int ns_err(char *err, size_t errlen, const char *file, int line,
		  const char *fmt, ...)
{
	char msg[3 * PATH_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(err, errlen, "namespace %s:%d: %s", file, line, msg);
	return -EINVAL;
}

/* Is path absolute, without empty, "." or ".." components? */
static const char *path_problem(const char *p)
{
	const char *c;

	if (p[0] != '/')
		return "is not absolute";
	if (!strcmp(p, "/"))
		return NULL;
	for (c = p + 1;;) {
		const char *e = strchr(c, '/');
		size_t len = e ? (size_t)(e - c) : strlen(c);

		if (len == 0)
			return e ? "has an empty component" :
				   "ends with '/'";
		if ((len == 1 && c[0] == '.') ||
		    (len == 2 && c[0] == '.' && c[1] == '.'))
			return "has a '.' or '..' component";
		if (!e)
			return NULL;
		c = e + 1;
	}
}

/* Is a inside b or b inside a, as component paths? */
static int overlaps(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), l = la < lb ? la : lb;

	if (!strcmp(a, "/") || !strcmp(b, "/"))
		return 1;
	return !strncmp(a, b, l) && (la == lb || (la < lb ? b[la] : a[lb]) == '/');
}

void ns_free(struct ns_junction *j, int n)
{
	int i;

	for (i = 0; i < n; i++) {
		free(j[i].path);
		free(j[i].backend);
	}
	free(j);
}

int ns_parse_text(const char *text, const char *file, struct ns_junction **out,
		  int *nout, char *err, size_t errlen)
{
	struct ns_junction *j = NULL;
	const char *line = text;
	int n = 0, lineno = 0, i, rc = 0;

	while (line && *line) {
		const char *start = line, *eol = strchr(line, '\n');
		size_t len = eol ? (size_t)(eol - line) : strlen(line);
		char buf[PATH_MAX * 2 + 16], path[PATH_MAX], be[PATH_MAX];
		char extra[2];
		const char *why;
		int k;

		lineno++;
		line = eol ? eol + 1 : NULL;
		if (len >= sizeof(buf)) {
			rc = ns_err(err, errlen, file, lineno, "line too long");
			goto out_free;
		}
		memcpy(buf, start, len);
		buf[len] = '\0';
		k = sscanf(buf, " %4095s %4095s %1s", path, be, extra);
		if (k <= 0 || path[0] == '#')
			continue;
		if (k != 2) {
			rc = ns_err(err, errlen, file, lineno,
				    "expected '<path in mount> <nfs:// URL or directory>', got '%s'",
				    buf);
			goto out_free;
		}
		if ((why = path_problem(path))) {
			rc = ns_err(err, errlen, file, lineno, "path '%s' %s",
				    path, why);
			goto out_free;
		}
		if (be[0] == '/' && (why = path_problem(be))) {
			rc = ns_err(err, errlen, file, lineno,
				    "backend '%s' %s: a junction may not escape its backend",
				    be, why);
			goto out_free;
		}
		if (be[0] != '/' && strncmp(be, "nfs://", 6)) {
			rc = ns_err(err, errlen, file, lineno,
				    "backend '%s' is not an nfs:// URL or an absolute directory",
				    be);
			goto out_free;
		}
		if (strncmp(be, "nfs://", 6) && strstr(be, "/../")) {
			rc = ns_err(err, errlen, file, lineno,
				    "backend '%s' has '..': a junction may not escape its backend",
				    be);
			goto out_free;
		}
		if (!strncmp(be, "nfs://", 6) && strstr(be + 6, "/..")) {
			rc = ns_err(err, errlen, file, lineno,
				    "backend '%s' has '..': a junction may not escape its backend",
				    be);
			goto out_free;
		}
		for (i = 0; i < n; i++) {
			if (overlaps(j[i].path, path)) {
				rc = ns_err(err, errlen, file, lineno,
					    "junction '%s' overlaps '%s' of line %d",
					    path, j[i].path, j[i].line);
				goto out_free;
			}
			if (!strcmp(j[i].backend, be)) {
				rc = ns_err(err, errlen, file, lineno,
					    "backend '%s' is already the junction of line %d",
					    be, j[i].line);
				goto out_free;
			}
		}
		{
			struct ns_junction *nj = realloc(j, (size_t)(n + 1) * sizeof(*j));

			if (!nj) {
				rc = -ENOMEM;
				goto out_free;
			}
			j = nj;
		}
		j[n].path = strdup(path);
		j[n].backend = strdup(be);
		j[n].line = lineno;
		n++;
		if (!j[n - 1].path || !j[n - 1].backend) {
			rc = -ENOMEM;
			goto out_free;
		}
	}
	if (!n) {
		snprintf(err, errlen, "namespace %s: no junctions", file);
		rc = -EINVAL;
		goto out_free;
	}
	*out = j;
	*nout = n;
	return 0;
out_free:
	ns_free(j, n);
	return rc;
}

int ns_parse_file(const char *file, struct ns_junction **out, int *nout,
		  char *err, size_t errlen)
{
	char *text;
	FILE *fp = fopen(file, "r");
	long len;
	int rc;

	if (!fp) {
		snprintf(err, errlen, "namespace %s: %s", file, strerror(errno));
		return -errno;
	}
	if (fseek(fp, 0, SEEK_END) < 0 || (len = ftell(fp)) < 0 ||
	    len > (1 << 20) || fseek(fp, 0, SEEK_SET) < 0) {
		snprintf(err, errlen, "namespace %s: unreadable or over 1 MiB",
			 file);
		fclose(fp);
		return -EINVAL;
	}
	text = calloc(1, (size_t)len + 1);
	if (!text || fread(text, 1, (size_t)len, fp) != (size_t)len) {
		snprintf(err, errlen, "namespace %s: read error", file);
		free(text);
		fclose(fp);
		return -EIO;
	}
	fclose(fp);
	if (memchr(text, '\0', (size_t)len)) {
		snprintf(err, errlen, "namespace %s: binary data", file);
		free(text);
		return -EINVAL;
	}
	rc = ns_parse_text(text, file, out, nout, err, errlen);
	free(text);
	return rc;
}

/* ---- the virtual tree ------------------------------------------------ */

static struct ns_vnode *vnode_child(struct ns_vnode *v, const char *name)
{
	for (v = v->child; v; v = v->next)
		if (!strcmp(v->name, name))
			return v;
	return NULL;
}

static struct sfs_inode *vinode_new(struct ns_vnode *v)
{
	struct sfs_inode *ino = calloc(1, sizeof(*ino));

	if (!ino)
		return NULL;
	ino->be_idx = -1;
	ino->vnode = v;
	ino->nlookup = 1;	/* never freed */
	return ino;
}

/*
 * Build the tree: junction k's root node is roots[k].  Sets s->root.
 */
int ns_build(struct sfs *s, const struct ns_junction *j, int n,
	     struct be_node **roots)
{
	struct ns_vnode *top;
	uint64_t next_vino = VINO_BASE + 1;
	int k;

	if (n == 1 && !strcmp(j[0].path, "/")) {
		s->root = inode_enter(s, 0, roots[0]);
		return s->root ? 0 : -ENOMEM;
	}
	top = calloc(1, sizeof(*top));
	if (!top)
		return -ENOMEM;
	top->be_idx = -1;
	top->vino = next_vino++;
	top->name = strdup("/");
	s->root = vinode_new(top);
	s->vroot = top;
	if (!s->root || !top->name)
		return -ENOMEM;
	top->ino = s->root;
	for (k = 0; k < n; k++) {
		char *copy = strdup(j[k].path), *save = NULL, *comp;
		struct ns_vnode *v = top;

		if (!copy)
			return -ENOMEM;
		for (comp = strtok_r(copy, "/", &save); comp;
		     comp = strtok_r(NULL, "/", &save)) {
			struct ns_vnode *c = vnode_child(v, comp);

			if (!c) {
				c = calloc(1, sizeof(*c));
				if (!c || !(c->name = strdup(comp))) {
					free(c);
					free(copy);
					return -ENOMEM;
				}
				c->parent = v;
				c->be_idx = -1;
				c->vino = next_vino++;
				c->next = v->child;
				v->child = c;
				c->ino = vinode_new(c);
				if (!c->ino) {
					free(copy);
					return -ENOMEM;
				}
			}
			v = c;
		}
		free(copy);
		/* The last component is the junction: a backend root. */
		free(v->ino);
		v->be_idx = k;
		v->ino = inode_enter(s, k, roots[k]);
		if (!v->ino)
			return -ENOMEM;
	}
	return 0;
}

static void vnode_free(struct sfs *s, struct ns_vnode *v)
{
	struct ns_vnode *c, *next;

	for (c = v->child; c; c = next) {
		next = c->next;
		vnode_free(s, c);
	}
	if (v->be_idx < 0)
		free(v->ino);
	free(v->name);
	free(v);
}

void ns_destroy(struct sfs *s)
{
	if (s->vroot)
		vnode_free(s, s->vroot);
	s->vroot = NULL;
}

/* ---- answers for virtual inodes -------------------------------------- */

static bool is_virtual(struct sfs *s, fuse_ino_t ino)
{
	return inode_get(s, ino)->be_idx < 0;
}

static void vattr(struct sfs *s, struct ns_vnode *v, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = v->vino;
	st->st_mode = S_IFDIR | 0755;
	st->st_nlink = 2;
	st->st_blksize = 1 << 20;
	st->st_atim = st->st_mtim = st->st_ctim = s->started;
}

/* The entry for child c of a virtual directory (one lookup count). */
static int ventry(struct sfs *s, struct ns_vnode *c,
		  struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	if (c->be_idx >= 0) {
		struct be *be = s->bes[c->be_idx];
		struct be_attr a;
		int rc = be->ops->getattr(be, NULL, c->ino->node, &a);

		if (rc < 0)
			return rc;
		return make_entry(s, c->be_idx, c->ino->node, &a, e);
	}
	e->ino = inode_id(s, c->ino);
	vattr(s, c, &e->attr);
	e->attr_timeout = s->cfg.attr_timeout;
	e->entry_timeout = s->cfg.entry_timeout;
	return 0;
}

static void ns_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct sfs *s = req_sfs(req);
	struct sfs_inode *dir = inode_get(s, parent);
	struct fuse_entry_param e;
	struct ns_vnode *c;
	int rc;

	if (!is_virtual(s, parent)) {
		s->base_ops.lookup(req, parent, name);
		return;
	}
	c = !strcmp(name, "..") ? (dir->vnode->parent ? dir->vnode->parent :
							 dir->vnode) :
	    !strcmp(name, ".") ? dir->vnode : vnode_child(dir->vnode, name);
	if (!c) {
		memset(&e, 0, sizeof(e));
		e.entry_timeout = s->cfg.entry_timeout;
		fuse_reply_entry(req, &e);
		return;
	}
	rc = ventry(s, c, &e);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_entry(req, &e);
}

static void ns_getattr(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct sfs *s = req_sfs(req);
	struct stat st;

	if (!is_virtual(s, ino)) {
		s->base_ops.getattr(req, ino, fi);
		return;
	}
	vattr(s, inode_get(s, ino)->vnode, &st);
	fuse_reply_attr(req, &st, s->cfg.attr_timeout);
}

static void ns_forget(fuse_req_t req, fuse_ino_t ino, uint64_t n)
{
	struct sfs *s = req_sfs(req);

	if (is_virtual(s, ino))
		fuse_reply_none(req);
	else
		s->base_ops.forget(req, ino, n);
}

static void ns_forget_multi(fuse_req_t req, size_t count,
			    struct fuse_forget_data *forgets)
{
	struct sfs *s = req_sfs(req);
	size_t i;

	for (i = 0; i < count; i++)
		if (!is_virtual(s, forgets[i].ino))
			inode_forget(s, inode_get(s, forgets[i].ino),
				     forgets[i].nlookup);
	fuse_reply_none(req);
}

static void ns_opendir(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct sfs *s = req_sfs(req);

	if (!is_virtual(s, ino)) {
		s->base_ops.opendir(req, ino, fi);
		return;
	}
	fi->fh = 0;
	fuse_reply_open(req, fi);
}

static void ns_releasedir(fuse_req_t req, fuse_ino_t ino,
			  struct fuse_file_info *fi)
{
	struct sfs *s = req_sfs(req);

	if (!is_virtual(s, ino))
		s->base_ops.releasedir(req, ino, fi);
	else
		fuse_reply_err(req, 0);
}

static void vreaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		     bool plus)
{
	struct sfs *s = req_sfs(req);
	struct ns_vnode *v = inode_get(s, ino)->vnode, *c;
	char *buf = malloc(size), *p = buf;
	size_t rem = size, len;
	off_t i = 0;

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	/* Entries: ".", "..", then the children, at offsets 1, 2, 3... */
	for (c = NULL; rem; i++) {
		struct fuse_entry_param e;
		const char *name;

		if (i == 0) {
			name = ".";
		} else if (i == 1) {
			name = "..";
		} else {
			c = c ? c->next : v->child;
			if (!c)
				break;
			name = c->name;
		}
		if (i < off)
			continue;
		memset(&e, 0, sizeof(e));
		e.attr.st_mode = S_IFDIR;
		if (plus && c && ventry(s, c, &e) < 0)
			continue;
		len = plus ? fuse_add_direntry_plus(req, p, rem, name, &e, i + 1) :
			     fuse_add_direntry(req, p, rem, name, &e.attr, i + 1);
		if (len > rem) {
			if (plus && c && c->be_idx >= 0)
				inode_forget(s, c->ino, 1);
			break;
		}
		p += len;
		rem -= len;
	}
	fuse_reply_buf(req, buf, size - rem);
	free(buf);
}

static void ns_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	struct sfs *s = req_sfs(req);

	if (!is_virtual(s, ino))
		s->base_ops.readdir(req, ino, size, off, fi);
	else
		vreaddir(req, ino, size, off, false);
}

static void ns_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size,
			   off_t off, struct fuse_file_info *fi)
{
	struct sfs *s = req_sfs(req);

	if (!is_virtual(s, ino))
		s->base_ops.readdirplus(req, ino, size, off, fi);
	else
		vreaddir(req, ino, size, off, true);
}

static void ns_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct sfs *s = req_sfs(req);
	struct be_node *root;
	struct statvfs st;
	int rc;

	if (!is_virtual(s, ino)) {
		s->base_ops.statfs(req, ino);
		return;
	}
	/* A virtual directory reports the first junction's file system. */
	rc = s->bes[0]->ops->root(s->bes[0], NULL, &root, NULL);
	if (rc == 0) {
		rc = s->bes[0]->ops->statfs(s->bes[0], NULL, root, &st);
		be_node_put(s->bes[0], root);
	}
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_statfs(req, &st);
}

static void ns_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	struct sfs *s = req_sfs(req);

	if (!is_virtual(s, ino))
		s->base_ops.access(req, ino, mask);
	else
		fuse_reply_err(req, (mask & W_OK) ? EACCES : 0);
}

/* Wrappers that refuse changes in virtual directories. */
#define REFUSE_IF_VIRTUAL(s, ino, err)                                   \
	do {                                                             \
		if (is_virtual(s, ino)) {                                \
			fuse_reply_err(req, err);                        \
			return;                                          \
		}                                                        \
	} while (0)

static void ns_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		       int to_set, struct fuse_file_info *fi)
{
	REFUSE_IF_VIRTUAL(req_sfs(req), ino, EPERM);
	req_sfs(req)->base_ops.setattr(req, ino, attr, to_set, fi);
}

static void ns_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode)
{
	REFUSE_IF_VIRTUAL(req_sfs(req), parent, EPERM);
	req_sfs(req)->base_ops.mkdir(req, parent, name, mode);
}

static void ns_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode, dev_t rdev)
{
	REFUSE_IF_VIRTUAL(req_sfs(req), parent, EPERM);
	req_sfs(req)->base_ops.mknod(req, parent, name, mode, rdev);
}

static void ns_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		       const char *name)
{
	REFUSE_IF_VIRTUAL(req_sfs(req), parent, EPERM);
	req_sfs(req)->base_ops.symlink(req, link, parent, name);
}

static void ns_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode, struct fuse_file_info *fi)
{
	REFUSE_IF_VIRTUAL(req_sfs(req), parent, EPERM);
	req_sfs(req)->base_ops.create(req, parent, name, mode, fi);
}

static void ns_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		    const char *newname)
{
	REFUSE_IF_VIRTUAL(req_sfs(req), ino, EPERM);
	REFUSE_IF_VIRTUAL(req_sfs(req), newparent, EPERM);
	req_sfs(req)->base_ops.link(req, ino, newparent, newname);
}

static void ns_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	REFUSE_IF_VIRTUAL(req_sfs(req), parent, EBUSY);
	req_sfs(req)->base_ops.unlink(req, parent, name);
}

static void ns_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	REFUSE_IF_VIRTUAL(req_sfs(req), parent, EBUSY);
	req_sfs(req)->base_ops.rmdir(req, parent, name);
}

static void ns_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname,
		      unsigned int flags)
{
	struct sfs *s = req_sfs(req);

	if (is_virtual(s, parent) || is_virtual(s, newparent)) {
		fuse_reply_err(req, is_virtual(s, parent) &&
					    is_virtual(s, newparent) ?
				    EBUSY : EXDEV);
		return;
	}
	s->base_ops.rename(req, parent, name, newparent, newname, flags);
}

static void ns_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	REFUSE_IF_VIRTUAL(req_sfs(req), ino, EISDIR);
	req_sfs(req)->base_ops.open(req, ino, fi);
}

static void ns_readlink(fuse_req_t req, fuse_ino_t ino)
{
	REFUSE_IF_VIRTUAL(req_sfs(req), ino, EINVAL);
	req_sfs(req)->base_ops.readlink(req, ino);
}

static void ns_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			const char *value, size_t size, int flags)
{
	REFUSE_IF_VIRTUAL(req_sfs(req), ino, EPERM);
	req_sfs(req)->base_ops.setxattr(req, ino, name, value, size, flags);
}

static void ns_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			size_t size)
{
	REFUSE_IF_VIRTUAL(req_sfs(req), ino, ENODATA);
	req_sfs(req)->base_ops.getxattr(req, ino, name, size);
}

static void ns_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct sfs *s = req_sfs(req);

	if (!is_virtual(s, ino))
		s->base_ops.listxattr(req, ino, size);
	else if (size)
		fuse_reply_buf(req, NULL, 0);
	else
		fuse_reply_xattr(req, 0);
}

static void ns_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	REFUSE_IF_VIRTUAL(req_sfs(req), ino, ENODATA);
	req_sfs(req)->base_ops.removexattr(req, ino, name);
}

void ns_wrap_ops(struct sfs *s, struct fuse_lowlevel_ops *ops)
{
	s->base_ops = *ops;
	ops->lookup = ns_lookup;
	ops->getattr = ns_getattr;
	ops->forget = ns_forget;
	ops->forget_multi = ns_forget_multi;
	ops->opendir = ns_opendir;
	ops->releasedir = ns_releasedir;
	ops->readdir = ns_readdir;
	ops->readdirplus = ns_readdirplus;
	ops->statfs = ns_statfs;
	ops->access = ns_access;
	ops->setattr = ns_setattr;
	ops->mkdir = ns_mkdir;
	ops->mknod = ns_mknod;
	ops->symlink = ns_symlink;
	ops->create = ns_create;
	ops->link = ns_link;
	ops->unlink = ns_unlink;
	ops->rmdir = ns_rmdir;
	ops->rename = ns_rename;
	ops->open = ns_open;
	ops->readlink = ns_readlink;
	ops->setxattr = ns_setxattr;
	ops->getxattr = ns_getxattr;
	ops->listxattr = ns_listxattr;
	ops->removexattr = ns_removexattr;
}

