/* SPDX-License-Identifier: GPL-2.0 */
/*
 * posix.c - a backend that is a local directory, typically a kernel NFS
 * mount of the VAST export.
 *
 * Every node holds an O_PATH descriptor of its object (as libfuse's
 * passthrough_ll does), and every name is resolved one component at a
 * time with *at() calls and O_NOFOLLOW, so a symlink is never followed,
 * in or out of the root.  Data goes through a read-write descriptor that
 * is opened lazily through /proc/self/fd and kept with the node.
 *
 * Thread safety: a node's rwfd is set once under node->lock; everything
 * else is immutable after creation or owned by the kernel.
 */
#include "backend_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <xxhash.h>

struct posix_be {
	struct be base;
	int rootfd;		/* O_PATH of the root directory */
	int mountfd;		/* O_RDONLY of it: open_by_handle_at needs one */
};

struct posix_node {
	struct be_node base;
	int fd;			/* O_PATH, O_NOFOLLOW */
	uint32_t type;		/* S_IFMT bits */
	pthread_mutex_t lock;
	int rwfd;		/* protected by lock; -1 until first data op */
};

static inline struct posix_be *to_pbe(struct be *be)
{
	return container_of(be, struct posix_be, base);
}

static inline struct posix_node *to_pn(struct be_node *n)
{
	return container_of(n, struct posix_node, base);
}

static void proc_path(char *buf, size_t len, int fd)
{
	snprintf(buf, len, "/proc/self/fd/%d", fd);
}

static int posix_err(const char *op, const char *name, int err)
{
	/* ENOENT and EEXIST are answers, not failures worth a log line. */
	if (err != ENOENT && err != EEXIST && err != ENOTEMPTY)
		log_msg(LOG_LVL_WARN, "posix", "%s %s: %s", op,
			name ? name : "", strerror(err));
	return -err;
}

static void stat_to_attr(const struct stat *st, struct be_attr *a)
{
	a->fileid = st->st_ino;
	a->size = (uint64_t)st->st_size;
	a->used = (uint64_t)st->st_blocks * 512;
	a->rdev = st->st_rdev;
	a->mode = st->st_mode;
	a->nlink = (uint32_t)st->st_nlink;
	a->uid = st->st_uid;
	a->gid = st->st_gid;
	a->atime = st->st_atim;
	a->mtime = st->st_mtim;
	a->ctime = st->st_ctim;
	a->change = 0;
}

static int fd_attr(int fd, struct be_attr *attr, struct stat *stout)
{
	struct stat st;

	if (fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (attr)
		stat_to_attr(&st, attr);
	if (stout)
		*stout = st;
	return 0;
}

/* A hash of the file's handle (it holds the inode's generation), or 0. */
static uint64_t handle_key(int fd)
{
	union {
		struct file_handle fh;
		char space[sizeof(struct file_handle) + MAX_HANDLE_SZ];
	} h;
	int mnt_id;

	h.fh.handle_bytes = MAX_HANDLE_SZ;
	if (name_to_handle_at(fd, "", &h.fh, &mnt_id, AT_EMPTY_PATH) < 0)
		return 0;
	return XXH3_64bits(h.fh.f_handle, h.fh.handle_bytes) ^
	       (uint64_t)(uint32_t)h.fh.handle_type;
}

/* Wrap an O_PATH fd into a node; takes ownership of fd. */
static int node_from_fd(int fd, struct be_node **out, struct be_attr *attr)
{
	struct posix_node *pn;
	struct stat st = { 0 };
	int rc;

	rc = fd_attr(fd, attr, &st);
	if (rc < 0)
		goto out_close;
	if (!out) {
		close(fd);
		return 0;
	}
	pn = calloc(1, sizeof(*pn));
	if (!pn) {
		rc = -ENOMEM;
		goto out_close;
	}
	pn->base.fileid = st.st_ino;
	atomic_init(&pn->base.refs, 1);
	pn->base.hkey = handle_key(fd);
	pn->fd = fd;
	pn->type = st.st_mode & S_IFMT;
	pn->rwfd = -1;
	pthread_mutex_init(&pn->lock, NULL);
	*out = &pn->base;
	return 0;
out_close:
	close(fd);
	return rc;
}

static int valid_name(const char *name)
{
	return name[0] && strcmp(name, ".") && strcmp(name, "..") &&
	       !strchr(name, '/');
}

static int open_child(int dirfd, const char *name, struct be_node **out,
		      struct be_attr *attr)
{
	int fd;

	if (!valid_name(name))
		return -EINVAL;
	fd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	return node_from_fd(fd, out, attr);
}

static void posix_destroy(struct be *be)
{
	struct posix_be *p = to_pbe(be);

	close(p->rootfd);
	close(p->mountfd);
	free(be->spec);
	free(p);
}

static void posix_node_free(struct be *be, struct be_node *n)
{
	struct posix_node *pn = to_pn(n);

	if (pn->rwfd >= 0)
		close(pn->rwfd);
	close(pn->fd);
	pthread_mutex_destroy(&pn->lock);
	free(pn);
}

static int posix_root(struct be *be, struct be_node **out,
		      struct be_attr *attr)
{
	int fd = fcntl(to_pbe(be)->rootfd, F_DUPFD_CLOEXEC, 0);

	if (fd < 0)
		return posix_err("root", be->spec, errno);
	return node_from_fd(fd, out, attr);
}

static int posix_lookup(struct be *be, struct be_node *dir, const char *name,
			struct be_node **out, struct be_attr *attr)
{
	int rc = open_child(to_pn(dir)->fd, name, out, attr);

	if (rc < 0 && rc != -ENOENT)
		posix_err("lookup", name, -rc);
	return rc;
}

static int posix_getattr(struct be *be, struct be_node *n,
			 struct be_attr *attr)
{
	int rc = fd_attr(to_pn(n)->fd, attr, NULL);

	return rc < 0 ? posix_err("getattr", NULL, -rc) : 0;
}

/* The read-write descriptor of a regular file, opened on first use. */
static int node_rwfd(struct posix_node *pn)
{
	char path[64];
	int fd;

	pthread_mutex_lock(&pn->lock);
	if (pn->rwfd < 0) {
		proc_path(path, sizeof(path), pn->fd);
		fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd < 0 && errno == EISDIR)
			fd = open(path, O_RDONLY | O_CLOEXEC);
		pn->rwfd = fd < 0 ? -errno : fd;
	}
	fd = pn->rwfd;
	if (fd < 0)
		pn->rwfd = -1;	/* try again next time */
	pthread_mutex_unlock(&pn->lock);
	return fd;
}

static int posix_setattr(struct be *be, struct be_node *n,
			 const struct be_setattr *sa, struct be_attr *attr)
{
	struct posix_node *pn = to_pn(n);
	char path[64];
	int fd;

	proc_path(path, sizeof(path), pn->fd);
	if ((sa->valid & BE_SET_MODE) && chmod(path, sa->mode & 07777) < 0)
		return posix_err("chmod", NULL, errno);
	if (sa->valid & (BE_SET_UID | BE_SET_GID)) {
		uid_t uid = sa->valid & BE_SET_UID ? sa->uid : (uid_t)-1;
		gid_t gid = sa->valid & BE_SET_GID ? sa->gid : (gid_t)-1;

		if (fchownat(pn->fd, "", uid, gid,
			     AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
			return posix_err("chown", NULL, errno);
	}
	if (sa->valid & BE_SET_SIZE) {
		fd = node_rwfd(pn);
		if (fd < 0)
			return posix_err("truncate", NULL, -fd);
		if (ftruncate(fd, (off_t)sa->size) < 0)
			return posix_err("truncate", NULL, errno);
	}
	if (sa->valid & (BE_SET_ATIME | BE_SET_MTIME | BE_SET_ATIME_NOW |
			 BE_SET_MTIME_NOW)) {
		struct timespec ts[2] = { { .tv_nsec = UTIME_OMIT },
					  { .tv_nsec = UTIME_OMIT } };

		if (sa->valid & BE_SET_ATIME_NOW)
			ts[0].tv_nsec = UTIME_NOW;
		else if (sa->valid & BE_SET_ATIME)
			ts[0] = sa->atime;
		if (sa->valid & BE_SET_MTIME_NOW)
			ts[1].tv_nsec = UTIME_NOW;
		else if (sa->valid & BE_SET_MTIME)
			ts[1] = sa->mtime;
		if (pn->type == S_IFLNK) {
			/* utimensat cannot reach a symlink through /proc. */
			if (utimensat(pn->fd, "", ts, AT_EMPTY_PATH) < 0 &&
			    errno != EINVAL && errno != ENOENT)
				return posix_err("utimens", NULL, errno);
		} else if (utimensat(AT_FDCWD, path, ts, 0) < 0) {
			return posix_err("utimens", NULL, errno);
		}
	}
	return posix_getattr(be, n, attr);
}

/* Give a new object its creator's identity. */
static int chown_new(int dirfd, const char *name, const struct be_cred *cred)
{
	if (!cred)
		return 0;
	if (fchownat(dirfd, name, cred->uid, cred->gid,
		     AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	return 0;
}

static int posix_create(struct be *be, struct be_node *dir, const char *name,
			uint32_t mode, const struct be_cred *cred,
			int exclusive, struct be_node **out,
			struct be_attr *attr)
{
	int dirfd = to_pn(dir)->fd;
	int fd, rc, created = 1;

	if (!valid_name(name))
		return -EINVAL;
	fd = openat(dirfd, name,
		    O_CREAT | O_EXCL | O_RDWR | O_NOFOLLOW | O_CLOEXEC,
		    mode & 07777);
	if (fd < 0 && errno == EEXIST && !exclusive) {
		created = 0;
		fd = openat(dirfd, name, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
	}
	if (fd < 0)
		return posix_err("create", name, errno);
	if (created) {
		rc = chown_new(dirfd, name, cred);
		if (rc == 0 && fchmod(fd, mode & 07777) < 0)
			rc = -errno;
		if (rc < 0) {
			close(fd);
			unlinkat(dirfd, name, 0);
			return posix_err("create", name, -rc);
		}
	}
	close(fd);
	return posix_lookup(be, dir, name, out, attr);
}

static int posix_mkdir(struct be *be, struct be_node *dir, const char *name,
		       uint32_t mode, const struct be_cred *cred,
		       struct be_node **out, struct be_attr *attr)
{
	int dirfd = to_pn(dir)->fd;
	int rc;

	if (!valid_name(name))
		return -EINVAL;
	if (mkdirat(dirfd, name, mode & 07777) < 0)
		return posix_err("mkdir", name, errno);
	rc = chown_new(dirfd, name, cred);
	if (rc < 0) {
		unlinkat(dirfd, name, AT_REMOVEDIR);
		return posix_err("mkdir", name, -rc);
	}
	return posix_lookup(be, dir, name, out, attr);
}

static int posix_mknod(struct be *be, struct be_node *dir, const char *name,
		       uint32_t mode, uint64_t rdev,
		       const struct be_cred *cred, struct be_node **out,
		       struct be_attr *attr)
{
	int dirfd = to_pn(dir)->fd;
	int rc;

	if (!valid_name(name))
		return -EINVAL;
	if (mknodat(dirfd, name, mode, (dev_t)rdev) < 0)
		return posix_err("mknod", name, errno);
	rc = chown_new(dirfd, name, cred);
	if (rc < 0) {
		unlinkat(dirfd, name, 0);
		return posix_err("mknod", name, -rc);
	}
	return posix_lookup(be, dir, name, out, attr);
}

static int posix_symlink(struct be *be, struct be_node *dir, const char *name,
			 const char *target, const struct be_cred *cred,
			 struct be_node **out, struct be_attr *attr)
{
	int dirfd = to_pn(dir)->fd;
	int rc;

	if (!valid_name(name))
		return -EINVAL;
	if (symlinkat(target, dirfd, name) < 0)
		return posix_err("symlink", name, errno);
	rc = chown_new(dirfd, name, cred);
	if (rc < 0) {
		unlinkat(dirfd, name, 0);
		return posix_err("symlink", name, -rc);
	}
	return posix_lookup(be, dir, name, out, attr);
}

static int posix_readlink(struct be *be, struct be_node *n, char *buf,
			  size_t size)
{
	ssize_t len = readlinkat(to_pn(n)->fd, "", buf, size);

	if (len < 0)
		return posix_err("readlink", NULL, errno);
	if ((size_t)len < size)
		buf[len] = '\0';
	return (int)len;
}

static int posix_link(struct be *be, struct be_node *n, struct be_node *dir,
		      const char *name, struct be_attr *attr)
{
	int dirfd = to_pn(dir)->fd;

	if (!valid_name(name))
		return -EINVAL;
	if (linkat(to_pn(n)->fd, "", dirfd, name, AT_EMPTY_PATH) < 0)
		return posix_err("link", name, errno);
	return posix_getattr(be, n, attr);
}

static int posix_unlink(struct be *be, struct be_node *dir, const char *name)
{
	if (unlinkat(to_pn(dir)->fd, name, 0) < 0)
		return posix_err("unlink", name, errno);
	return 0;
}

static int posix_rmdir(struct be *be, struct be_node *dir, const char *name)
{
	if (unlinkat(to_pn(dir)->fd, name, AT_REMOVEDIR) < 0)
		return posix_err("rmdir", name, errno);
	return 0;
}

static int posix_rename(struct be *be, struct be_node *olddir,
			const char *oldname, struct be_node *newdir,
			const char *newname, unsigned int flags)
{
	if (!valid_name(oldname) || !valid_name(newname))
		return -EINVAL;
	if (renameat2(to_pn(olddir)->fd, oldname, to_pn(newdir)->fd, newname,
		      flags) < 0)
		return posix_err("rename", oldname, errno);
	return 0;
}

static int posix_readdir(struct be *be, struct be_node *dir, be_dirent_fn fn,
			 void *arg)
{
	struct dirent *de;
	struct be_attr a;
	struct stat st;
	DIR *dp;
	int fd, rc = 0;

	fd = openat(to_pn(dir)->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return posix_err("opendir", NULL, errno);
	dp = fdopendir(fd);
	if (!dp) {
		rc = posix_err("opendir", NULL, errno);
		close(fd);
		return rc;
	}
	while ((errno = 0, de = readdir(dp)) != NULL) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;	/* raced with an unlink */
		stat_to_attr(&st, &a);
		rc = fn(arg, de->d_name, &a, NULL);
		if (rc)
			break;
	}
	if (!de && errno)
		rc = posix_err("readdir", NULL, errno);
	closedir(dp);
	return rc;
}

static int posix_statfs(struct be *be, struct be_node *n, struct statvfs *st)
{
	if (fstatvfs(to_pn(n)->fd, st) < 0)
		return posix_err("statfs", NULL, errno);
	return 0;
}

/* xattrs go through /proc; symlinks have none here (like passthrough_ll) */
static int xattr_path(struct posix_node *pn, char *path, size_t len)
{
	if (pn->type == S_IFLNK)
		return -EOPNOTSUPP;
	proc_path(path, len, pn->fd);
	return 0;
}

static int posix_setxattr(struct be *be, struct be_node *n, const char *name,
			  const void *value, size_t size, int flags)
{
	char path[64];
	int rc = xattr_path(to_pn(n), path, sizeof(path));

	if (rc < 0)
		return rc;
	if (setxattr(path, name, value, size, flags) < 0)
		return errno == ENOTSUP || errno == EEXIST || errno == ENODATA ?
			       -errno :
			       posix_err("setxattr", name, errno);
	return 0;
}

static int posix_getxattr(struct be *be, struct be_node *n, const char *name,
			  void *value, size_t size)
{
	char path[64];
	ssize_t len;
	int rc = xattr_path(to_pn(n), path, sizeof(path));

	if (rc < 0)
		return rc == -EOPNOTSUPP ? -ENODATA : rc;
	len = getxattr(path, name, value, size);
	return len < 0 ? -errno : (int)len;
}

static int posix_listxattr(struct be *be, struct be_node *n, char *list,
			   size_t size)
{
	char path[64];
	ssize_t len;

	if (xattr_path(to_pn(n), path, sizeof(path)) < 0)
		return 0;
	len = listxattr(path, list, size);
	return len < 0 ? -errno : (int)len;
}

static int posix_removexattr(struct be *be, struct be_node *n,
			     const char *name)
{
	char path[64];
	int rc = xattr_path(to_pn(n), path, sizeof(path));

	if (rc < 0)
		return rc;
	return removexattr(path, name) < 0 ? -errno : 0;
}

static ssize_t do_rw(int fd, const struct iovec *iov, int iovcnt,
		     uint64_t off, int write)
{
	struct iovec local[IOV_MAX < 64 ? IOV_MAX : 64];
	size_t total = 0, want = 0;
	int i;

	if (iovcnt > (int)(sizeof(local) / sizeof(local[0])))
		return -EINVAL;
	for (i = 0; i < iovcnt; i++) {
		local[i] = iov[i];
		want += iov[i].iov_len;
	}
	/* Loop over short transfers; a short read at EOF ends it. */
	i = 0;
	while (total < want) {
		ssize_t n = write ? pwritev(fd, local + i, iovcnt - i,
					    (off_t)(off + total)) :
				    preadv(fd, local + i, iovcnt - i,
					   (off_t)(off + total));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		total += (size_t)n;
		while (i < iovcnt && (size_t)n >= local[i].iov_len) {
			n -= (ssize_t)local[i].iov_len;
			i++;
		}
		if (i < iovcnt) {
			local[i].iov_base = (char *)local[i].iov_base + n;
			local[i].iov_len -= (size_t)n;
		}
	}
	return (ssize_t)total;
}

/* Data runs on the caller's thread: preadv/pwritev, then the callback. */
static int posix_rw(struct be_node *n, const struct iovec *iov, int iovcnt,
		    uint64_t off, be_io_cb cb, void *cookie, int write)
{
	int fd = node_rwfd(to_pn(n));
	ssize_t res;

	if (fd < 0)
		return posix_err(write ? "write" : "read", NULL, -fd);
	res = do_rw(fd, iov, iovcnt, off, write);
	if (res < 0)
		posix_err(write ? "write" : "read", NULL, (int)-res);
	cb(cookie, res);
	return 0;
}

static int posix_read(struct be *be, struct be_node *n,
		      const struct iovec *iov, int iovcnt, uint64_t off,
		      be_io_cb cb, void *cookie)
{
	return posix_rw(n, iov, iovcnt, off, cb, cookie, 0);
}

static int posix_write(struct be *be, struct be_node *n,
		       const struct iovec *iov, int iovcnt, uint64_t off,
		       be_io_cb cb, void *cookie)
{
	return posix_rw(n, iov, iovcnt, off, cb, cookie, 1);
}

static int posix_commit(struct be *be, struct be_node *n, be_io_cb cb,
			void *cookie)
{
	int fd = node_rwfd(to_pn(n));

	if (fd < 0)
		return posix_err("commit", NULL, -fd);
	cb(cookie, fdatasync(fd) < 0 ? posix_err("fdatasync", NULL, errno) :
				       0);
	return 0;
}

/* A persistent handle: name_to_handle_at()'s type and bytes. */
static int posix_node_encode(struct be *be, struct be_node *n, void *buf,
			     size_t *len)
{
	union {
		struct file_handle fh;
		char space[sizeof(struct file_handle) + MAX_HANDLE_SZ];
	} h;
	int mnt_id;
	size_t need;

	h.fh.handle_bytes = MAX_HANDLE_SZ;
	if (name_to_handle_at(to_pn(n)->fd, "", &h.fh, &mnt_id,
			      AT_EMPTY_PATH) < 0)
		return posix_err("name_to_handle_at", NULL, errno);
	need = sizeof(int32_t) + h.fh.handle_bytes;
	if (need > *len)
		return -ENAMETOOLONG;
	memcpy(buf, &h.fh.handle_type, sizeof(int32_t));
	memcpy((char *)buf + sizeof(int32_t), h.fh.f_handle,
	       h.fh.handle_bytes);
	*len = need;
	return 0;
}

static int posix_node_decode(struct be *be, const void *buf, size_t len,
			     struct be_node **out, struct be_attr *attr)
{
	union {
		struct file_handle fh;
		char space[sizeof(struct file_handle) + MAX_HANDLE_SZ];
	} h;
	int fd;

	if (len < sizeof(int32_t) || len - sizeof(int32_t) > MAX_HANDLE_SZ)
		return -EINVAL;
	memcpy(&h.fh.handle_type, buf, sizeof(int32_t));
	h.fh.handle_bytes = (unsigned int)(len - sizeof(int32_t));
	memcpy(h.fh.f_handle, (const char *)buf + sizeof(int32_t),
	       h.fh.handle_bytes);
	fd = open_by_handle_at(to_pbe(be)->mountfd, &h.fh,
			       O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	return node_from_fd(fd, out, attr);
}

static const struct be_ops posix_ops = {
	.version = BE_OPS_VERSION,
	.name = "posix",
	.destroy = posix_destroy,
	.node_free = posix_node_free,
	.root = posix_root,
	.lookup = posix_lookup,
	.getattr = posix_getattr,
	.setattr = posix_setattr,
	.create = posix_create,
	.mkdir = posix_mkdir,
	.mknod = posix_mknod,
	.symlink = posix_symlink,
	.readlink = posix_readlink,
	.link = posix_link,
	.unlink = posix_unlink,
	.rmdir = posix_rmdir,
	.rename = posix_rename,
	.readdir = posix_readdir,
	.statfs = posix_statfs,
	.setxattr = posix_setxattr,
	.getxattr = posix_getxattr,
	.listxattr = posix_listxattr,
	.removexattr = posix_removexattr,
	.read = posix_read,
	.write = posix_write,
	.commit = posix_commit,
	.node_encode = posix_node_encode,
	.node_decode = posix_node_decode,
};

static int posix_match(const char *spec)
{
	return spec[0] == '/';
}

static int posix_open(const char *spec, const struct be_params *params,
		      struct be **out, char *err, size_t errlen)
{
	struct posix_be *p;
	struct stat st;
	int fd;

	fd = open(spec, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;

		snprintf(err, errlen, "backend '%s': %s", spec,
			 e == ENOTDIR ? "not a directory" : strerror(e));
		return -e;
	}
	if (fstat(fd, &st) < 0 || !S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "backend '%s': not a directory", spec);
		close(fd);
		return -ENOTDIR;
	}
	p = calloc(1, sizeof(*p));
	if (!p || !(p->base.spec = strdup(spec))) {
		free(p);
		close(fd);
		snprintf(err, errlen, "backend '%s': out of memory", spec);
		return -ENOMEM;
	}
	p->base.ops = &posix_ops;
	p->rootfd = fd;
	p->mountfd = open(spec, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (p->mountfd < 0) {
		int e = errno;

		snprintf(err, errlen, "backend '%s': %s", spec, strerror(e));
		close(fd);
		free(p->base.spec);
		free(p);
		return -e;
	}
	*out = &p->base;
	return 0;
}

const struct be_factory be_posix_factory = {
	.name = "posix",
	.match = posix_match,
	.open = posix_open,
};
