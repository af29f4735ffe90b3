/* SPDX-License-Identifier: GPL-2.0 */
/*
 * posix.c - a backend that is a local directory, typically a kernel NFS
 * mount of the VAST export.
 *
 * Every name is resolved one component at a time with *at() calls and
 * O_NOFOLLOW from an O_PATH descriptor of the directory (as libfuse's
 * passthrough_ll does), so a symlink is never followed, in or out of the
 * root.  Data goes through a read-write descriptor of the file.
 *
 * A node does not hold its descriptors for its whole life: the kernel
 * keeps every inode it has looked up, hundreds of thousands after a run
 * of small files, and each would pin one or two descriptors.  A node
 * holds its file handle (name_to_handle_at), and its O_PATH and
 * read-write descriptors live in the backend's fdlru (fdlru.h): opened
 * on demand with open_by_handle_at() (the daemon runs as root, so
 * CAP_DAC_READ_SEARCH holds), taken for the time of one operation, and
 * closed, least recently used first, once more than params->max_fds are
 * open.  A handle names the object, not a path: a node stays right
 * across renames, and a file deleted meanwhile answers ESTALE, as on
 * NFS.  Where there is no usable handle (a file system without them, an
 * object on another mount below the root, no CAP_DAC_READ_SEARCH), the
 * node keeps its O_PATH descriptor for its life, as before, and only its
 * read-write one is in the LRU.
 *
 * Credentials: an operation made for a user runs with that user's file
 * system ids on the calling thread (setfsuid, setfsgid and the groups),
 * which it gives back when it returns, so the kernel (and under it a
 * kernel NFS client, with root squashing) checks every access and makes
 * the user the owner of what it creates.  glibc's setgroups() changes
 * every thread of the process, so the raw system call is used, which in
 * the kernel changes only the calling thread's.  A data operation for a
 * user opens its own descriptor with the user's ids, through /proc from
 * the node's O_PATH one (the NFS client sends a descriptor's I/O with its
 * opener's credentials); the LRU's read-write descriptors are the
 * daemon's.  O_PATH descriptors are opened by handle as the daemon for a
 * moment (open_by_handle_at needs CAP_DAC_READ_SEARCH, which a user's
 * fsuid drops); an O_PATH descriptor grants nothing by itself.  A daemon
 * that is not root cannot switch and works as itself.
 *
 * Thread safety: a node's fields are immutable after creation; its
 * descriptors are the fdlru's (fdlru.h), used between pn_get and pn_put.
 * The id switch is per thread and undone before each operation returns.
 */
#include "backend_int.h"
#include "fdlru.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/fsuid.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <xxhash.h>

struct posix_be {
	struct be base;
	int rootfd;		/* O_PATH of the root directory */
	int mountfd;		/* O_RDONLY of it: open_by_handle_at needs one */
	int mnt_id;		/* the root's mount: handles of it open here */
	bool handles;		/* open_by_handle_at works (see posix_open) */
	struct fdlru *fdlru;	/* the nodes' descriptors */
	bool switch_ids;	/* root: requests run with the caller's ids */
	atomic_bool no_direct;	/* O_DIRECT refused here: buffered I/O */
	uid_t self_uid;		/* the daemon's ids, given back after each */
	gid_t self_gid;
	int self_ngroups;
	gid_t *self_groups;
};

/* A node's descriptors, slots of its fdlru entry. */
enum { PN_PATH, PN_RW };

struct posix_node {
	struct be_node base;
	struct posix_be *pbe;
	uint32_t type;		/* S_IFMT bits */
	int pinfd;		/* O_PATH for life when there is no handle,
				 * else -1 */
	struct fdlru_ent fds;	/* PN_PATH (O_PATH) and PN_RW */
	int htype;		/* the handle, if pinfd < 0 */
	unsigned int hlen;
	unsigned char handle[];
};

static inline struct posix_be *to_pbe(struct be *be)
{
	return container_of(be, struct posix_be, base);
}

static inline struct posix_node *to_pn(struct be_node *n)
{
	return container_of(n, struct posix_node, base);
}

/* ---- the caller's ids on this thread ---------------------------------- */

static int set_groups(size_t n, const gid_t *groups)
{
	/* per thread, unlike glibc's setgroups() */
	return syscall(SYS_setgroups, n, groups) < 0 ? -errno : 0;
}

/*
 * Does cred name the daemon's own ids: its uid, gid and the same set of
 * groups?  A call for such a caller runs as the daemon, with the same
 * rights, and needs no switch (8 system calls and two credential copies
 * in the kernel per call, for every request of a root caller).
 */
static bool ids_are_self(const struct posix_be *p, const struct be_cred *cred)
{
	uint32_t i;
	int j;

	if (cred->uid != p->self_uid || cred->gid != p->self_gid ||
	    cred->ngroups != (uint32_t)p->self_ngroups)
		return false;
	for (i = 0; i < cred->ngroups; i++) {
		for (j = 0; j < p->self_ngroups; j++)
			if (p->self_groups[j] == cred->groups[i])
				break;
		if (j == p->self_ngroups)
			return false;
	}
	return true;
}

/*
 * Take cred's file system ids on this thread.  Returns 1 if it switched
 * (ids_leave() switches back), 0 if there was nothing to do (no cred, no
 * switching, or cred is the daemon's own), or -errno.
 */
static int ids_enter(struct be *be, const struct be_cred *cred)
{
	struct posix_be *p = container_of(be, struct posix_be, base);
	gid_t groups[BE_CRED_NGROUPS];
	uint32_t i, n;
	int rc;

	if (!cred || !p->switch_ids || ids_are_self(p, cred))
		return 0;
	n = cred->ngroups < BE_CRED_NGROUPS ? cred->ngroups : BE_CRED_NGROUPS;
	for (i = 0; i < n; i++)
		groups[i] = cred->groups[i];
	rc = set_groups(n, groups);
	if (rc < 0)
		return rc;
	setfsgid(cred->gid);
	setfsuid(cred->uid);
	/* setfsuid() reports no error: read the ids back */
	if ((uid_t)setfsuid((uid_t)-1) != cred->uid ||
	    (gid_t)setfsgid((gid_t)-1) != cred->gid) {
		setfsuid(p->self_uid);
		setfsgid(p->self_gid);
		set_groups((size_t)p->self_ngroups, p->self_groups);
		return -EPERM;
	}
	return 1;
}

static void ids_leave(struct be *be, int entered)
{
	struct posix_be *p = container_of(be, struct posix_be, base);

	if (entered <= 0)
		return;
	setfsuid(p->self_uid);
	setfsgid(p->self_gid);
	set_groups((size_t)p->self_ngroups, p->self_groups);
}

/* This thread's file system ids, as ids_daemon() found them. */
struct fsids {
	uid_t uid;
	gid_t gid;
};

/*
 * The daemon's file system ids for a moment, whatever ids this thread
 * runs with (setfsuid back to root's gives back the capabilities a
 * user's fsuid takes away); ids_daemon_done() restores them.
 */
static struct fsids ids_daemon(const struct posix_be *p)
{
	struct fsids was = { (uid_t)setfsuid((uid_t)-1),
			     (gid_t)setfsgid((gid_t)-1) };

	if (was.uid != p->self_uid || was.gid != p->self_gid) {
		setfsuid(p->self_uid);
		setfsgid(p->self_gid);
	}
	return was;
}

static void ids_daemon_done(const struct posix_be *p, struct fsids was)
{
	int e = errno;

	if (was.uid != p->self_uid || was.gid != p->self_gid) {
		setfsgid(was.gid);
		setfsuid(was.uid);
	}
	errno = e;
}

/* open_by_handle_at() as the daemon: it needs CAP_DAC_READ_SEARCH. */
static int open_handle_as_daemon(struct posix_be *p, struct file_handle *fh,
				 int flags)
{
	struct fsids was = ids_daemon(p);
	int fd = open_by_handle_at(p->mountfd, fh, flags);

	ids_daemon_done(p, was);
	return fd;
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

/* A file handle, as name_to_handle_at() fills it. */
union posix_fh {
	struct file_handle fh;
	char space[sizeof(struct file_handle) + MAX_HANDLE_SZ];
};

/* A hash of a handle (it holds the inode's generation). */
static uint64_t handle_hash(const struct file_handle *fh)
{
	return XXH3_64bits(fh->f_handle, fh->handle_bytes) ^
	       (uint64_t)(uint32_t)fh->handle_type;
}

static void node_handle(const struct posix_node *pn, union posix_fh *h)
{
	h->fh.handle_type = pn->htype;
	h->fh.handle_bytes = pn->hlen;
	memcpy(h->fh.f_handle, pn->handle, pn->hlen);
}

/*
 * The fdlru's open function: slot PN_PATH or PN_RW of a node, from its
 * handle (or, without one, through /proc from its pinned O_PATH fd).
 */
static int node_open_slot(struct fdlru_ent *e, unsigned int slot,
			  unsigned int flags)
{
	struct posix_node *pn = container_of(e, struct posix_node, fds);
	union posix_fh h;
	char path[64];
	int fd;

	if (pn->pinfd >= 0) {
		if (slot == PN_PATH)
			return -EINVAL;	/* pn_get never asks for it */
		proc_path(path, sizeof(path), pn->pinfd);
		fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd < 0 && errno == EISDIR)
			fd = open(path, O_RDONLY | O_CLOEXEC);
		return fd < 0 ? -errno : fd;
	}
	node_handle(pn, &h);
	if (slot == PN_PATH) {
		fd = open_handle_as_daemon(pn->pbe, &h.fh, O_PATH | O_CLOEXEC);
	} else {
		fd = open_handle_as_daemon(pn->pbe, &h.fh, O_RDWR | O_CLOEXEC);
		if (fd < 0 && errno == EISDIR)
			fd = open_handle_as_daemon(pn->pbe, &h.fh,
						   O_RDONLY | O_CLOEXEC);
	}
	return fd < 0 ? -errno : fd;
}

/*
 * Take a descriptor of pn for one operation: slot PN_PATH (O_PATH) or
 * PN_RW.  Returns it, or -errno; give it back with pn_put().
 */
static int pn_get(struct posix_node *pn, unsigned int slot)
{
	bool pinned = slot == PN_PATH && pn->pinfd >= 0;
	int rc = fdlru_get(pn->pbe->fdlru, &pn->fds, pinned ? 0 : 1u << slot,
			   0);

	if (rc < 0)
		return rc;
	return pinned ? pn->pinfd : fdlru_fd(&pn->fds, slot);
}

static void pn_put(struct posix_node *pn)
{
	fdlru_put(pn->pbe->fdlru, &pn->fds);
}

/* The O_PATH descriptor of a node, for one operation. */
static inline int path_get(struct be_node *n)
{
	return pn_get(to_pn(n), PN_PATH);
}

static inline void path_put(struct be_node *n)
{
	pn_put(to_pn(n));
}

/*
 * Wrap an O_PATH fd into a node; takes ownership of fd.  A node with a
 * handle that opens through the backend's mountfd hands fd to the LRU;
 * one without keeps it (pinfd).
 */
static int node_from_fd(struct be *be, int fd, struct be_node **out,
			struct be_attr *attr)
{
	struct posix_be *p = to_pbe(be);
	struct posix_node *pn;
	union posix_fh h;
	struct stat st = { 0 };
	int rc, mnt_id = -1;
	bool handle;

	rc = fd_attr(fd, attr, &st);
	if (rc < 0)
		goto out_close;
	if (!out) {
		close(fd);
		return 0;
	}
	h.fh.handle_bytes = MAX_HANDLE_SZ;
	handle = name_to_handle_at(fd, "", &h.fh, &mnt_id, AT_EMPTY_PATH) == 0;
	pn = calloc(1, sizeof(*pn) + (handle ? h.fh.handle_bytes : 0));
	if (!pn) {
		rc = -ENOMEM;
		goto out_close;
	}
	pn->base.fileid = st.st_ino;
	atomic_init(&pn->base.refs, 1);
	pn->base.hkey = handle ? handle_hash(&h.fh) : 0;
	pn->pbe = p;
	pn->type = st.st_mode & S_IFMT;
	pn->pinfd = -1;
	fdlru_ent_init(&pn->fds);
	if (handle) {
		pn->htype = h.fh.handle_type;
		pn->hlen = h.fh.handle_bytes;
		memcpy(pn->handle, h.fh.f_handle, pn->hlen);
	}
	if (handle && p->handles && mnt_id == p->mnt_id) {
		fdlru_adopt(p->fdlru, &pn->fds, PN_PATH, fd);
	} else {
		pn->pinfd = fd;
		pn->hlen = handle ? pn->hlen : 0;
	}
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

static int open_child(struct be *be, int dirfd, const char *name,
		      struct be_node **out, struct be_attr *attr)
{
	int fd;

	if (!valid_name(name))
		return -EINVAL;
	fd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	return node_from_fd(be, fd, out, attr);
}

static void posix_destroy(struct be *be)
{
	struct posix_be *p = to_pbe(be);

	close(p->rootfd);
	close(p->mountfd);
	fdlru_destroy(p->fdlru);
	free(p->self_groups);
	free(be->spec);
	free(p);
}

static void posix_node_free(struct be *be, struct be_node *n)
{
	struct posix_node *pn = to_pn(n);

	fdlru_close(pn->pbe->fdlru, &pn->fds);
	if (pn->pinfd >= 0)
		close(pn->pinfd);
	free(pn);
}

static int px_root(struct be *be, struct be_node **out,
		      struct be_attr *attr)
{
	int fd = fcntl(to_pbe(be)->rootfd, F_DUPFD_CLOEXEC, 0);

	if (fd < 0)
		return posix_err("root", be->spec, errno);
	return node_from_fd(be, fd, out, attr);
}

static int px_lookup(struct be *be, struct be_node *dir, const char *name,
			struct be_node **out, struct be_attr *attr)
{
	int dirfd = path_get(dir);
	int rc;

	if (dirfd < 0)
		return posix_err("lookup", name, -dirfd);
	rc = open_child(be, dirfd, name, out, attr);
	path_put(dir);
	if (rc < 0 && rc != -ENOENT)
		posix_err("lookup", name, -rc);
	return rc;
}

static int px_getattr(struct be *be, struct be_node *n,
			 struct be_attr *attr)
{
	int fd = path_get(n);
	int rc;

	if (fd < 0)
		return posix_err("getattr", NULL, -fd);
	rc = fd_attr(fd, attr, NULL);
	path_put(n);
	return rc < 0 ? posix_err("getattr", NULL, -rc) : 0;
}

/*
 * A write open of pfd (through path) that the mode refused to this
 * thread's ids, made as the daemon if those ids own the file.  Its owner
 * may write a file whatever its mode, since it may chmod it: a file made
 * 0444 and written through the descriptor that created it (git's objects,
 * tar, cp of a read-only file) is uploaded after that descriptor is gone,
 * and an NFS server lets the owner's WRITEs through the same way (knfsd's
 * owner override; ganesha).  -EACCES if they do not own it.
 */
static int open_as_owner(struct posix_be *p, int pfd, const char *path,
			 int flags)
{
	struct stat st;
	struct fsids was;
	int fd = -1;

	if (fstat(pfd, &st) < 0 || !S_ISREG(st.st_mode))
		return -EACCES;
	was = ids_daemon(p);
	if (was.uid != p->self_uid && st.st_uid == was.uid)
		fd = open(path, flags | O_CLOEXEC);
	else
		errno = EACCES;
	ids_daemon_done(p, was);
	return fd < 0 ? -errno : fd;
}

/*
 * A descriptor of pn opened now with flags and this thread's ids, through
 * /proc from the O_PATH descriptor pfd (-1: take it here); close() it.
 */
static int proc_open(struct posix_node *pn, int pfd, int flags)
{
	char path[64];
	int fd, own = pfd < 0;

	if (own) {
		pfd = pn_get(pn, PN_PATH);
		if (pfd < 0)
			return pfd;
	}
	proc_path(path, sizeof(path), pfd);
	fd = open(path, flags | O_CLOEXEC);
	fd = fd < 0 ? -errno : fd;
	if (fd == -EACCES && (flags & O_ACCMODE) != O_RDONLY)
		fd = open_as_owner(pn->pbe, pfd, path, flags);
	if (own)
		pn_put(pn);
	return fd;
}

/*
 * A descriptor for data I/O with this thread's ids: the LRU's read-write
 * one for the daemon, or, when the thread runs as a user (switched), one
 * from proc_open().  io_fd_done() gives it back.
 */
static int io_fd(struct posix_node *pn, int pfd, int switched, int flags)
{
	if (switched <= 0)
		return pn_get(pn, PN_RW);
	return proc_open(pn, pfd, flags);
}

static void io_fd_done(struct posix_node *pn, int fd, int switched)
{
	if (switched <= 0)
		pn_put(pn);
	else if (fd >= 0)
		close(fd);
}

/* setattr with the node's O_PATH descriptor pfd taken. */
static int setattr_fd(struct posix_node *pn, int pfd, int switched,
		      const struct be_setattr *sa)
{
	char path[64];
	int fd, rc;

	proc_path(path, sizeof(path), pfd);
	if ((sa->valid & BE_SET_MODE) && chmod(path, sa->mode & 07777) < 0)
		return posix_err("chmod", NULL, errno);
	if (sa->valid & (BE_SET_UID | BE_SET_GID)) {
		uid_t uid = sa->valid & BE_SET_UID ? sa->uid : (uid_t)-1;
		gid_t gid = sa->valid & BE_SET_GID ? sa->gid : (gid_t)-1;

		if (fchownat(pfd, "", uid, gid,
			     AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
			return posix_err("chown", NULL, errno);
	}
	if (sa->valid & BE_SET_SIZE) {
		fd = io_fd(pn, pfd, switched, O_WRONLY);
		if (fd < 0)
			return posix_err("truncate", NULL, -fd);
		rc = ftruncate(fd, (off_t)sa->size) < 0 ? -errno : 0;
		io_fd_done(pn, fd, switched);
		if (rc < 0)
			return posix_err("truncate", NULL, -rc);
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
			if (utimensat(pfd, "", ts, AT_EMPTY_PATH) < 0 &&
			    errno != EINVAL && errno != ENOENT)
				return posix_err("utimens", NULL, errno);
		} else if (utimensat(AT_FDCWD, path, ts, 0) < 0) {
			return posix_err("utimens", NULL, errno);
		}
	}
	return 0;
}

static int px_setattr(struct be *be, struct be_node *n, int switched,
		      const struct be_setattr *sa, struct be_attr *attr)
{
	int pfd = path_get(n);
	int rc;

	if (pfd < 0)
		return posix_err("setattr", NULL, -pfd);
	rc = setattr_fd(to_pn(n), pfd, switched, sa);
	path_put(n);
	return rc < 0 ? rc : px_getattr(be, n, attr);
}

/* The new object name in dir, as lookup answers it; dirfd taken. */
static int new_node(struct be *be, int dirfd, const char *name,
		    struct be_node **out, struct be_attr *attr)
{
	int rc = open_child(be, dirfd, name, out, attr);

	return rc < 0 ? posix_err("lookup", name, -rc) : 0;
}

static int px_create(struct be *be, struct be_node *dir, const char *name,
		     uint32_t mode, int exclusive, struct be_node **out,
		     struct be_attr *attr)
{
	int dirfd;
	int fd, rc, created = 1;

	if (!valid_name(name))
		return -EINVAL;
	dirfd = path_get(dir);
	if (dirfd < 0)
		return posix_err("create", name, -dirfd);
	fd = openat(dirfd, name,
		    O_CREAT | O_EXCL | O_RDWR | O_NOFOLLOW | O_CLOEXEC,
		    mode & 07777);
	if (fd < 0 && errno == EEXIST && !exclusive) {
		created = 0;
		fd = openat(dirfd, name, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
	}
	if (fd < 0) {
		rc = posix_err("create", name, errno);
		goto out_put;
	}
	/* the exact mode, whatever the umask: the kernel applied it */
	if (created) {
		rc = fchmod(fd, mode & 07777) < 0 ? -errno : 0;
		if (rc < 0) {
			close(fd);
			unlinkat(dirfd, name, 0);
			rc = posix_err("create", name, -rc);
			goto out_put;
		}
	}
	close(fd);
	rc = new_node(be, dirfd, name, out, attr);
out_put:
	path_put(dir);
	return rc;
}

static int px_mkdir(struct be *be, struct be_node *dir, const char *name,
		    uint32_t mode, struct be_node **out, struct be_attr *attr)
{
	int dirfd, rc;

	if (!valid_name(name))
		return -EINVAL;
	dirfd = path_get(dir);
	if (dirfd < 0)
		return posix_err("mkdir", name, -dirfd);
	if (mkdirat(dirfd, name, mode & 07777) < 0)
		rc = posix_err("mkdir", name, errno);
	else
		rc = new_node(be, dirfd, name, out, attr);
	path_put(dir);
	return rc;
}

static int px_mknod(struct be *be, struct be_node *dir, const char *name,
		    uint32_t mode, uint64_t rdev, struct be_node **out,
		    struct be_attr *attr)
{
	int dirfd, rc;

	if (!valid_name(name))
		return -EINVAL;
	dirfd = path_get(dir);
	if (dirfd < 0)
		return posix_err("mknod", name, -dirfd);
	if (mknodat(dirfd, name, mode, (dev_t)rdev) < 0)
		rc = posix_err("mknod", name, errno);
	else
		rc = new_node(be, dirfd, name, out, attr);
	path_put(dir);
	return rc;
}

static int px_symlink(struct be *be, struct be_node *dir, const char *name,
		      const char *target, struct be_node **out,
		      struct be_attr *attr)
{
	int dirfd, rc;

	if (!valid_name(name))
		return -EINVAL;
	dirfd = path_get(dir);
	if (dirfd < 0)
		return posix_err("symlink", name, -dirfd);
	if (symlinkat(target, dirfd, name) < 0)
		rc = posix_err("symlink", name, errno);
	else
		rc = new_node(be, dirfd, name, out, attr);
	path_put(dir);
	return rc;
}

static int px_readlink(struct be *be, struct be_node *n, char *buf,
			  size_t size)
{
	int fd = path_get(n);
	ssize_t len;

	if (fd < 0)
		return posix_err("readlink", NULL, -fd);
	len = readlinkat(fd, "", buf, size);
	if (len < 0)
		len = posix_err("readlink", NULL, errno);
	path_put(n);
	if (len < 0)
		return (int)len;
	if ((size_t)len < size)
		buf[len] = '\0';
	return (int)len;
}

static int px_link(struct be *be, struct be_node *n, struct be_node *dir,
		      const char *name, struct be_attr *attr)
{
	char path[64];
	int dirfd, fd, rc = 0;

	if (!valid_name(name))
		return -EINVAL;
	dirfd = path_get(dir);
	if (dirfd < 0)
		return posix_err("link", name, -dirfd);
	fd = path_get(n);
	if (fd < 0) {
		path_put(dir);
		return posix_err("link", name, -fd);
	}
	/* Through /proc, not AT_EMPTY_PATH: that needs CAP_DAC_READ_SEARCH,
	 * which a user's fsuid takes away (ENOENT); this way the user's own
	 * rights decide, as link(2) on the backend would
	 * (protected_hardlinks). */
	proc_path(path, sizeof(path), fd);
	if (linkat(AT_FDCWD, path, dirfd, name, AT_SYMLINK_FOLLOW) < 0)
		rc = posix_err("link", name, errno);
	path_put(n);
	path_put(dir);
	return rc < 0 ? rc : px_getattr(be, n, attr);
}

/* unlinkat in dir, with flags. */
static int unlink_in(struct be_node *dir, const char *name, int flags,
		     const char *op)
{
	int dirfd = path_get(dir);
	int rc = 0;

	if (dirfd < 0)
		return posix_err(op, name, -dirfd);
	if (unlinkat(dirfd, name, flags) < 0)
		rc = posix_err(op, name, errno);
	path_put(dir);
	return rc;
}

static int px_unlink(struct be *be, struct be_node *dir, const char *name)
{
	return unlink_in(dir, name, 0, "unlink");
}

static int px_rmdir(struct be *be, struct be_node *dir, const char *name)
{
	return unlink_in(dir, name, AT_REMOVEDIR, "rmdir");
}

static int px_rename(struct be *be, struct be_node *olddir,
			const char *oldname, struct be_node *newdir,
			const char *newname, unsigned int flags)
{
	int ofd, nfd, rc = 0;

	if (!valid_name(oldname) || !valid_name(newname))
		return -EINVAL;
	ofd = path_get(olddir);
	if (ofd < 0)
		return posix_err("rename", oldname, -ofd);
	nfd = path_get(newdir);
	if (nfd < 0) {
		path_put(olddir);
		return posix_err("rename", oldname, -nfd);
	}
	if (renameat2(ofd, oldname, nfd, newname, flags) < 0)
		rc = posix_err("rename", oldname, errno);
	path_put(newdir);
	path_put(olddir);
	return rc;
}

/* A listing of dir, opened anew (its own offset); 0 or -errno. */
static int px_opendir(struct be_node *dir, DIR **out)
{
	int fd = path_get(dir), rc;

	if (fd < 0)
		return posix_err("opendir", NULL, -fd);
	/* Through /proc, not openat(fd, "."): that looks "." up in the
	 * directory, which needs search permission; a user lists a
	 * directory with only read permission (mode 0444). */
	rc = proc_open(to_pn(dir), fd, O_RDONLY | O_DIRECTORY);
	path_put(dir);
	if (rc < 0)
		return posix_err("opendir", NULL, -rc);
	*out = fdopendir(rc);
	if (!*out) {
		int err = posix_err("opendir", NULL, errno);

		close(rc);
		return err;
	}
	return 0;
}

static int px_readdir(struct be *be, struct be_node *dir, be_dirent_fn fn,
			 void *arg)
{
	struct dirent *de;
	struct be_attr a;
	struct stat st;
	DIR *dp;
	int fd, rc = 0;

	rc = px_opendir(dir, &dp);
	if (rc < 0)
		return rc;
	fd = dirfd(dp);
	while ((errno = 0, de = readdir(dp)) != NULL) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;	/* raced with an unlink */
		stat_to_attr(&st, &a);
		rc = fn(arg, de->d_name, a.fileid, &a, NULL);
		if (rc)
			break;
	}
	if (!de && errno)
		rc = posix_err("readdir", NULL, errno);
	closedir(dp);
	return rc;
}

/*
 * As px_readdir, without the fstatat per entry: the type from d_type
 * (an fstatat only where the file system leaves it DT_UNKNOWN).
 */
static int px_readdir_names(struct be_node *dir, be_dirname_fn fn,
			    void *arg)
{
	struct dirent *de;
	struct stat st;
	DIR *dp;
	int fd, rc;

	rc = px_opendir(dir, &dp);
	if (rc < 0)
		return rc;
	fd = dirfd(dp);
	while ((errno = 0, de = readdir(dp)) != NULL) {
		uint32_t type = DTTOIF(de->d_type);

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (de->d_type == DT_UNKNOWN) {
			if (fstatat(fd, de->d_name, &st,
				    AT_SYMLINK_NOFOLLOW) < 0)
				continue;	/* raced with an unlink */
			type = st.st_mode & S_IFMT;
		}
		rc = fn(arg, de->d_name, de->d_ino, type);
		if (rc)
			break;
	}
	if (!de && errno)
		rc = posix_err("readdir", NULL, errno);
	closedir(dp);
	return rc;
}

static int px_statfs(struct be *be, struct be_node *n, struct statvfs *st)
{
	int fd = path_get(n);
	int rc = 0;

	if (fd < 0)
		return posix_err("statfs", NULL, -fd);
	if (fstatvfs(fd, st) < 0)
		rc = posix_err("statfs", NULL, errno);
	path_put(n);
	return rc;
}

/*
 * xattrs go through /proc; symlinks have none here (like passthrough_ll).
 * On success the node's O_PATH descriptor is taken: path_put() after.
 */
static int xattr_path(struct be_node *n, char *path, size_t len)
{
	int fd;

	if (to_pn(n)->type == S_IFLNK)
		return -EOPNOTSUPP;
	fd = path_get(n);
	if (fd < 0)
		return fd;
	proc_path(path, len, fd);
	return 0;
}

static int px_setxattr(struct be *be, struct be_node *n, const char *name,
			  const void *value, size_t size, int flags)
{
	char path[64];
	int rc = xattr_path(n, path, sizeof(path));

	if (rc < 0)
		return rc;
	if (setxattr(path, name, value, size, flags) < 0)
		rc = errno == ENOTSUP || errno == EEXIST || errno == ENODATA ?
			     -errno :
			     posix_err("setxattr", name, errno);
	path_put(n);
	return rc;
}

static int px_getxattr(struct be *be, struct be_node *n, const char *name,
			  void *value, size_t size)
{
	char path[64];
	ssize_t len;
	int rc = xattr_path(n, path, sizeof(path));

	if (rc < 0)
		return rc == -EOPNOTSUPP ? -ENODATA : rc;
	len = getxattr(path, name, value, size);
	rc = len < 0 ? -errno : (int)len;
	path_put(n);
	return rc;
}

static int px_listxattr(struct be *be, struct be_node *n, char *list,
			   size_t size)
{
	char path[64];
	ssize_t len;
	int rc;

	if (xattr_path(n, path, sizeof(path)) < 0)
		return 0;
	len = listxattr(path, list, size);
	rc = len < 0 ? -errno : (int)len;
	path_put(n);
	return rc;
}

static int px_removexattr(struct be *be, struct be_node *n,
			     const char *name)
{
	char path[64];
	int rc = xattr_path(n, path, sizeof(path));

	if (rc < 0)
		return rc;
	rc = removexattr(path, name) < 0 ? -errno : 0;
	path_put(n);
	return rc;
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

/*
 * Data goes around the backend's page cache where it can (O_DIRECT): the
 * bytes live in the staging cache, on their way in or out.  A buffered
 * upload copied every byte into new page-cache pages (59 % of the
 * daemon's samples in a drain over posix, docs/performance.md "Session
 * 22"), a buffered fetch did the same on the way in, and both pushed the
 * jobs' own pages out of a compute node's memory for a second copy of
 * the data.  On a kernel NFS mount an O_DIRECT read goes to the server
 * (close-to-open as before, since stagefs caches it), and an O_DIRECT
 * write goes out as WRITEs and a COMMIT before it returns.  Only I/O
 * whose offset, lengths and buffers are 4 KiB aligned (a whole chunk or
 * block in the cache's buffers), of DIO_MIN bytes or more, qualifies: a
 * small file gains nothing from it, and a direct write of a few KiB
 * waits for the device before the commit does.  The rest stays
 * buffered, and Linux keeps the two coherent (direct I/O writes back and
 * drops the cached pages of its range first).  A file system that
 * refuses O_DIRECT (EINVAL) turns it off for the backend, once.
 */
#define DIO_MIN (256u << 10)

static bool dio_aligned(const struct iovec *iov, int iovcnt, uint64_t off)
{
	size_t len = 0;
	int i;

	if (off & 4095)
		return false;
	for (i = 0; i < iovcnt; i++) {
		if (((uintptr_t)iov[i].iov_base | iov[i].iov_len) & 4095)
			return false;
		len += iov[i].iov_len;
	}
	return len >= DIO_MIN;
}

/* preadv or pwritev of pn with O_DIRECT, on a descriptor of its own (the
 * current ids open it); -EINVAL where the file system will not. */
static ssize_t direct_rw(struct posix_node *pn, const struct iovec *iov,
			 int iovcnt, uint64_t off, int write)
{
	int fd = proc_open(pn, -1, (write ? O_WRONLY : O_RDONLY) | O_DIRECT);
	ssize_t res;

	if (fd < 0)
		return fd;
	res = do_rw(fd, iov, iovcnt, off, write);
	close(fd);
	return res;
}

/*
 * Data runs on the caller's thread, with the caller's ids: preadv or
 * pwritev, then the callback (with the daemon's ids back).
 */
static int posix_rw(struct be *be, const struct be_cred *cred,
		    struct be_node *n, const struct iovec *iov, int iovcnt,
		    uint64_t off, be_io_cb cb, void *cookie, int write)
{
	int ids = ids_enter(be, cred), fd = 0;
	ssize_t res = -EINVAL;

	if (ids < 0)
		return ids;
	if (!atomic_load(&to_pbe(be)->no_direct) &&
	    dio_aligned(iov, iovcnt, off)) {
		res = direct_rw(to_pn(n), iov, iovcnt, off, write);
		if (res == -EINVAL &&
		    !atomic_exchange(&to_pbe(be)->no_direct, true))
			log_msg(LOG_LVL_INFO, "posix",
				"%s: the file system refuses O_DIRECT: data goes through its page cache",
				be->spec);
	}
	if (res == -EINVAL) {	/* not direct, or refused: buffered */
		fd = io_fd(to_pn(n), -1, ids, write ? O_WRONLY : O_RDONLY);
		res = fd < 0 ? fd : do_rw(fd, iov, iovcnt, off, write);
		if (fd >= 0)
			io_fd_done(to_pn(n), fd, ids);
	}
	ids_leave(be, ids);
	if (fd < 0)
		return posix_err(write ? "write" : "read", NULL, -fd);
	if (res < 0)
		posix_err(write ? "write" : "read", NULL, (int)-res);
	cb(cookie, res);
	return 0;
}

static int posix_read(struct be *be, const struct be_cred *cred,
		      struct be_node *n, const struct iovec *iov, int iovcnt,
		      uint64_t off, be_io_cb cb, void *cookie)
{
	return posix_rw(be, cred, n, iov, iovcnt, off, cb, cookie, 0);
}

static int posix_write(struct be *be, const struct be_cred *cred,
		       struct be_node *n, const struct iovec *iov, int iovcnt,
		       uint64_t off, be_io_cb cb, void *cookie)
{
	return posix_rw(be, cred, n, iov, iovcnt, off, cb, cookie, 1);
}

static int posix_commit(struct be *be, const struct be_cred *cred,
			struct be_node *n, be_io_cb cb, void *cookie)
{
	int ids = ids_enter(be, cred), fd, rc;

	if (ids < 0)
		return ids;
	/* the writer may write; someone who only reads can sync too */
	fd = io_fd(to_pn(n), -1, ids, O_WRONLY);
	if (fd == -EACCES)
		fd = io_fd(to_pn(n), -1, ids, O_RDONLY);
	rc = fd < 0 ? fd : fdatasync(fd) < 0 ? -errno : 0;
	if (fd >= 0)
		io_fd_done(to_pn(n), fd, ids);
	ids_leave(be, ids);
	if (fd < 0)
		return posix_err("commit", NULL, -fd);
	cb(cookie, rc < 0 ? posix_err("fdatasync", NULL, -rc) : 0);
	return 0;
}

/* A persistent handle: name_to_handle_at()'s type and bytes. */
static int posix_node_encode(struct be *be, struct be_node *n, void *buf,
			     size_t *len)
{
	struct posix_node *pn = to_pn(n);
	union posix_fh h;
	int mnt_id;
	size_t need;

	h.fh.handle_bytes = MAX_HANDLE_SZ;
	if (pn->hlen)
		node_handle(pn, &h);
	else if (name_to_handle_at(pn->pinfd, "", &h.fh, &mnt_id,
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

static int px_node_decode(struct be *be, const void *buf, size_t len,
			     struct be_node **out, struct be_attr *attr)
{
	union posix_fh h;
	int fd;

	if (len < sizeof(int32_t) || len - sizeof(int32_t) > MAX_HANDLE_SZ)
		return -EINVAL;
	memcpy(&h.fh.handle_type, buf, sizeof(int32_t));
	h.fh.handle_bytes = (unsigned int)(len - sizeof(int32_t));
	memcpy(h.fh.f_handle, (const char *)buf + sizeof(int32_t),
	       h.fh.handle_bytes);
	fd = open_handle_as_daemon(to_pbe(be), &h.fh,
				   O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	return node_from_fd(be, fd, out, attr);
}

/* As an NFS client asks at open; attr gets the attributes as well. */
static int px_access(struct be *be, struct be_node *n, int mask,
		     struct be_attr *attr)
{
	char path[64];
	int rc = px_getattr(be, n, attr), fd;

	if (rc < 0 || !mask || to_pn(n)->type == S_IFLNK)
		return rc;
	fd = path_get(n);
	if (fd < 0)
		return posix_err("access", NULL, -fd);
	proc_path(path, sizeof(path), fd);
	/* AT_EACCESS: with the thread's file system ids, not the real ones */
	if (faccessat(AT_FDCWD, path, mask, AT_EACCESS) < 0)
		rc = errno == EACCES || errno == EPERM || errno == EROFS ?
			     -errno :
			     posix_err("access", NULL, errno);
	path_put(n);
	return rc;
}

/*
 * The table's entries: each runs its px_ function with the caller's ids
 * on this thread (see ids_enter()).
 */
static int posix_root(struct be *be, const struct be_cred *cred,
		      struct be_node **out, struct be_attr *attr)
{
	int ids = ids_enter(be, cred), rc;

	if (ids < 0)
		return ids;
	rc = px_root(be, out, attr);
	ids_leave(be, ids);
	return rc;
}

static int posix_lookup(struct be *be, const struct be_cred *cred,
			struct be_node *dir, const char *name,
			struct be_node **out, struct be_attr *attr)
{
	int ids = ids_enter(be, cred), rc;

	be_count(be, BE_CALL_LOOKUP);
	if (ids < 0)
		return ids;
	rc = px_lookup(be, dir, name, out, attr);
	ids_leave(be, ids);
	return rc;
}

static int posix_getattr(struct be *be, const struct be_cred *cred,
			 struct be_node *n, struct be_attr *attr)
{
	int ids = ids_enter(be, cred), rc;

	be_count(be, BE_CALL_GETATTR);
	if (ids < 0)
		return ids;
	rc = px_getattr(be, n, attr);
	ids_leave(be, ids);
	return rc;
}

static int posix_setattr(struct be *be, const struct be_cred *cred,
			 struct be_node *n, const struct be_setattr *sa,
			 struct be_attr *attr)
{
	int ids = ids_enter(be, cred), rc;

	be_count(be, BE_CALL_SETATTR);
	if (ids < 0)
		return ids;
	rc = px_setattr(be, n, ids, sa, attr);
	ids_leave(be, ids);
	return rc;
}

static int posix_create(struct be *be, const struct be_cred *cred,
			struct be_node *dir, const char *name, uint32_t mode,
			int exclusive, struct be_node **out,
			struct be_attr *attr)
{
	int ids = ids_enter(be, cred), rc;

	be_count(be, BE_CALL_CREATE);
	if (ids < 0)
		return ids;
	rc = px_create(be, dir, name, mode, exclusive, out, attr);
	ids_leave(be, ids);
	return rc;
}

static int posix_mkdir(struct be *be, const struct be_cred *cred,
		       struct be_node *dir, const char *name, uint32_t mode,
		       struct be_node **out, struct be_attr *attr)
{
	int ids = ids_enter(be, cred), rc;

	be_count(be, BE_CALL_CREATE);
	if (ids < 0)
		return ids;
	rc = px_mkdir(be, dir, name, mode, out, attr);
	ids_leave(be, ids);
	return rc;
}

static int posix_mknod(struct be *be, const struct be_cred *cred,
		       struct be_node *dir, const char *name, uint32_t mode,
		       uint64_t rdev, struct be_node **out,
		       struct be_attr *attr)
{
	int ids = ids_enter(be, cred), rc;

	be_count(be, BE_CALL_CREATE);
	if (ids < 0)
		return ids;
	rc = px_mknod(be, dir, name, mode, rdev, out, attr);
	ids_leave(be, ids);
	return rc;
}

static int posix_symlink(struct be *be, const struct be_cred *cred,
			 struct be_node *dir, const char *name,
			 const char *target, struct be_node **out,
			 struct be_attr *attr)
{
	int ids = ids_enter(be, cred), rc;

	be_count(be, BE_CALL_CREATE);
	if (ids < 0)
		return ids;
	rc = px_symlink(be, dir, name, target, out, attr);
	ids_leave(be, ids);
	return rc;
}

static int posix_readlink(struct be *be, const struct be_cred *cred,
			  struct be_node *n, char *buf, size_t size)
{
	int ids = ids_enter(be, cred), rc;

	if (ids < 0)
		return ids;
	rc = px_readlink(be, n, buf, size);
	ids_leave(be, ids);
	return rc;
}

static int posix_link(struct be *be, const struct be_cred *cred,
		      struct be_node *n, struct be_node *dir,
		      const char *name, struct be_attr *attr)
{
	int ids = ids_enter(be, cred), rc;

	be_count(be, BE_CALL_CREATE);
	if (ids < 0)
		return ids;
	rc = px_link(be, n, dir, name, attr);
	ids_leave(be, ids);
	return rc;
}

static int posix_unlink(struct be *be, const struct be_cred *cred,
			struct be_node *dir, const char *name)
{
	int ids = ids_enter(be, cred), rc;

	be_count(be, BE_CALL_REMOVE);
	if (ids < 0)
		return ids;
	rc = px_unlink(be, dir, name);
	ids_leave(be, ids);
	return rc;
}

static int posix_rmdir(struct be *be, const struct be_cred *cred,
		       struct be_node *dir, const char *name)
{
	int ids = ids_enter(be, cred), rc;

	be_count(be, BE_CALL_REMOVE);
	if (ids < 0)
		return ids;
	rc = px_rmdir(be, dir, name);
	ids_leave(be, ids);
	return rc;
}

static int posix_rename(struct be *be, const struct be_cred *cred,
			struct be_node *olddir, const char *oldname,
			struct be_node *newdir, const char *newname,
			unsigned int flags)
{
	int ids = ids_enter(be, cred), rc;

	be_count(be, BE_CALL_RENAME);
	if (ids < 0)
		return ids;
	rc = px_rename(be, olddir, oldname, newdir, newname, flags);
	ids_leave(be, ids);
	return rc;
}

/* fn runs with the caller's ids too: it must not reach the backend. */
static int posix_readdir(struct be *be, const struct be_cred *cred,
			 struct be_node *dir, be_dirent_fn fn, void *arg)
{
	int ids = ids_enter(be, cred), rc;

	be_count(be, BE_CALL_READDIR);
	if (ids < 0)
		return ids;
	rc = px_readdir(be, dir, fn, arg);
	ids_leave(be, ids);
	return rc;
}

static int posix_readdir_names(struct be *be, const struct be_cred *cred,
			       struct be_node *dir, be_dirname_fn fn,
			       void *arg)
{
	int ids = ids_enter(be, cred), rc;

	be_count(be, BE_CALL_READDIR);
	if (ids < 0)
		return ids;
	rc = px_readdir_names(dir, fn, arg);
	ids_leave(be, ids);
	return rc;
}

static int posix_statfs(struct be *be, const struct be_cred *cred,
			struct be_node *n, struct statvfs *st)
{
	int ids = ids_enter(be, cred), rc;

	if (ids < 0)
		return ids;
	rc = px_statfs(be, n, st);
	ids_leave(be, ids);
	return rc;
}

static int posix_setxattr(struct be *be, const struct be_cred *cred,
			  struct be_node *n, const char *name,
			  const void *value, size_t size, int flags)
{
	int ids = ids_enter(be, cred), rc;

	if (ids < 0)
		return ids;
	rc = px_setxattr(be, n, name, value, size, flags);
	ids_leave(be, ids);
	return rc;
}

static int posix_getxattr(struct be *be, const struct be_cred *cred,
			  struct be_node *n, const char *name, void *value,
			  size_t size)
{
	int ids = ids_enter(be, cred), rc;

	if (ids < 0)
		return ids;
	rc = px_getxattr(be, n, name, value, size);
	ids_leave(be, ids);
	return rc;
}

static int posix_listxattr(struct be *be, const struct be_cred *cred,
			   struct be_node *n, char *list, size_t size)
{
	int ids = ids_enter(be, cred), rc;

	if (ids < 0)
		return ids;
	rc = px_listxattr(be, n, list, size);
	ids_leave(be, ids);
	return rc;
}

static int posix_removexattr(struct be *be, const struct be_cred *cred,
			     struct be_node *n, const char *name)
{
	int ids = ids_enter(be, cred), rc;

	if (ids < 0)
		return ids;
	rc = px_removexattr(be, n, name);
	ids_leave(be, ids);
	return rc;
}

static int posix_node_decode(struct be *be, const struct be_cred *cred,
			     const void *buf, size_t len, struct be_node **out,
			     struct be_attr *attr)
{
	int ids = ids_enter(be, cred), rc;

	if (ids < 0)
		return ids;
	rc = px_node_decode(be, buf, len, out, attr);
	ids_leave(be, ids);
	return rc;
}

static int posix_access(struct be *be, const struct be_cred *cred,
			struct be_node *n, int mask, struct be_attr *attr)
{
	int ids = ids_enter(be, cred), rc;

	be_count(be, BE_CALL_ACCESS);
	if (ids < 0)
		return ids;
	rc = px_access(be, n, mask, attr);
	ids_leave(be, ids);
	return rc;
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
	.access = posix_access,
	.readdir_names = posix_readdir_names,
};

static int posix_match(const char *spec)
{
	return spec[0] == '/';
}

/*
 * Can nodes be opened again from their handles?  Not without handles on
 * this file system, nor without CAP_DAC_READ_SEARCH: then every node
 * keeps its O_PATH descriptor, as before the LRU, and says so once.
 */
static void probe_handles(struct posix_be *p)
{
	union posix_fh h;
	int fd;

	h.fh.handle_bytes = MAX_HANDLE_SZ;
	if (name_to_handle_at(p->rootfd, "", &h.fh, &p->mnt_id,
			      AT_EMPTY_PATH) < 0)
		fd = -1;
	else
		fd = open_by_handle_at(p->mountfd, &h.fh, O_PATH | O_CLOEXEC);
	if (fd < 0) {
		log_msg(LOG_LVL_WARN, "posix",
			"%s: objects cannot be reopened by handle (%s); every node the kernel keeps looked up holds a descriptor, and RLIMIT_NOFILE bounds how many files can be in use",
			p->base.spec, strerror(errno));
		return;
	}
	close(fd);
	p->handles = true;
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
	p->self_uid = geteuid();
	p->self_gid = getegid();
	p->switch_ids = p->self_uid == 0;
	p->self_ngroups = getgroups(0, NULL);
	if (p->self_ngroups > 0) {
		p->self_groups = calloc((size_t)p->self_ngroups,
					sizeof(gid_t));
		if (!p->self_groups ||
		    getgroups(p->self_ngroups, p->self_groups) < 0)
			p->switch_ids = false;	/* could not switch back */
	} else {
		p->self_ngroups = 0;
	}
	p->mountfd = open(spec, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (p->mountfd < 0) {
		int e = errno;

		snprintf(err, errlen, "backend '%s': %s", spec, strerror(e));
		close(fd);
		free(p->self_groups);
		free(p->base.spec);
		free(p);
		return -e;
	}
	if (fdlru_create(params->max_fds ? params->max_fds :
					   fdlru_default_limit(),
			 node_open_slot, &p->fdlru) < 0) {
		snprintf(err, errlen, "backend '%s': out of memory", spec);
		close(p->mountfd);
		close(fd);
		free(p->self_groups);
		free(p->base.spec);
		free(p);
		return -ENOMEM;
	}
	probe_handles(p);
	*out = &p->base;
	return 0;
}

const struct be_factory be_posix_factory = {
	.name = "posix",
	.match = posix_match,
	.open = posix_open,
};
