/* SPDX-License-Identifier: GPL-2.0 */
/*
 * backend.h - the one interface between the staging cache and the place
 * where the data really lives (a posix directory or an NFSv3 export).
 *
 * A backend is a table of operations (struct be_ops) plus an object that
 * starts with a pointer to that table (struct be).  Implementations embed
 * struct be first and reach their private data with container_of().
 * Nothing outside backend/ may know which implementation it talks to:
 * be_open() picks one from the spec string through a registry table.
 *
 * Objects in the backend tree are named by struct be_node references.  A
 * node is reference counted: every function that hands one out (root,
 * lookup, create, mkdir, mknod, symlink, node_decode, readdir's borrowed
 * node after be_node_get) gives the caller one reference, released with
 * be_node_put().  Nodes survive renames of the object they name, which is
 * why the FUSE layer and the flusher hold nodes rather than paths.
 *
 * Return values: >= 0 on success, -errno on failure; errno itself is
 * never used to carry a result between functions.  A backend logs each
 * error once, where it translates it (operation, name, server message).
 *
 * Thread safety: every operation may be called from any thread at any
 * time, concurrently, on the same or different nodes.  Completion
 * callbacks of the asynchronous data operations run on a backend thread
 * (or on the caller's thread before the submitting call returns) and must
 * not block for long: they typically signal a condition or queue work.
 */
#ifndef STAGEFS_BACKEND_H
#define STAGEFS_BACKEND_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>

#include "log.h"

/*
 * 2: every operation that reaches the backend takes the caller's
 * credentials (const struct be_cred *cred, after be); create, mkdir,
 * mknod and symlink lost their owner argument (the server sets the owner
 * from the credentials); access was added.
 */
#define BE_OPS_VERSION 2
/* Longest persistent handle node_encode() produces (NFSv3: 64 bytes). */
#define BE_HANDLE_MAX 128

#ifndef container_of
#define container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))
#endif

struct be;

/* Attributes of a backend object, as the backend reported them. */
struct be_attr {
	uint64_t fileid;	/* stable identity: inode number / NFS fileid */
	uint64_t size;
	uint64_t used;		/* bytes allocated on the backend */
	uint64_t rdev;
	uint32_t mode;		/* type and permission bits, as in st_mode */
	uint32_t nlink;
	uint32_t uid, gid;
	struct timespec atime, mtime, ctime;
	uint64_t change;	/* change attribute, 0 where there is none */
};

/*
 * The generation of a file's contents: if size, mtime or the change
 * attribute differ from the ones recorded with a cached copy, the data
 * changed on the backend.  ctime is kept for the record but not compared:
 * a chmod or a rename moves it without touching the data (the Linux NFS
 * client makes the same choice for NFSv3).
 */
struct be_gen {
	uint64_t size;
	int64_t mtime_ns;
	int64_t ctime_ns;
	uint64_t change;
};

static inline struct be_gen be_attr_gen(const struct be_attr *a)
{
	struct be_gen g = {
		.size = a->size,
		.mtime_ns = (int64_t)a->mtime.tv_sec * 1000000000 + a->mtime.tv_nsec,
		.ctime_ns = (int64_t)a->ctime.tv_sec * 1000000000 + a->ctime.tv_nsec,
		.change = a->change,
	};
	return g;
}

static inline int be_gen_equal(const struct be_gen *a, const struct be_gen *b)
{
	return a->size == b->size && a->mtime_ns == b->mtime_ns &&
	       a->change == b->change;
}

/*
 * A reference to one object in the backend tree.  Implementations embed
 * it first in their own node struct.  fileid never changes; refs is the
 * only mutable field and is atomic.
 */
struct be_node {
	uint64_t fileid;
	atomic_int refs;
	/*
	 * A hash of the object's handle, 0 if the backend has none.  A
	 * server reuses an unlinked file's fileid (inode number) for a new
	 * file; the handle tells them apart, so the identity of an object
	 * is (fileid, hkey).
	 */
	uint64_t hkey;
};

static inline int be_node_same(const struct be_node *a,
			       const struct be_node *b)
{
	return a->fileid == b->fileid && a->hkey == b->hkey;
}

/*
 * Who asks.  Every operation made for an application carries the caller's
 * credentials, and the backend makes the request as that user: NFS sends
 * them as AUTH_SYS, the posix backend switches the calling thread's file
 * system ids (setfsuid, setfsgid, setgroups).  The server (or the kernel
 * under a posix backend) then checks every access itself, and a new
 * object gets its owner there, from the request: uid, and gid or the
 * setgid directory's group.  NULL means the daemon itself (root on the
 * node; "nobody" on an export that squashes root).
 *
 * AUTH_SYS carries at most 16 supplementary groups.  A caller in more
 * has only the first BE_CRED_NGROUPS of its list (the kernel keeps it
 * sorted) sent, as the Linux NFS client does; the server can look the
 * groups up itself instead (ganesha: Manage_Gids, knfsd: --manage-gids).
 */
#define BE_CRED_NGROUPS 16

struct be_cred {
	uint32_t uid;
	uint32_t gid;
	uint32_t ngroups;
	uint32_t groups[BE_CRED_NGROUPS];
};

static inline int be_cred_equal(const struct be_cred *a,
				const struct be_cred *b)
{
	uint32_t i;

	if (!a || !b)
		return a == b;
	if (a->uid != b->uid || a->gid != b->gid || a->ngroups != b->ngroups)
		return 0;
	for (i = 0; i < a->ngroups && i < BE_CRED_NGROUPS; i++)
		if (a->groups[i] != b->groups[i])
			return 0;
	return 1;
}

/* Which fields of be_setattr to apply. */
enum {
	BE_SET_MODE = 1 << 0,
	BE_SET_UID = 1 << 1,
	BE_SET_GID = 1 << 2,
	BE_SET_SIZE = 1 << 3,
	BE_SET_ATIME = 1 << 4,		/* to .atime */
	BE_SET_MTIME = 1 << 5,		/* to .mtime */
	BE_SET_ATIME_NOW = 1 << 6,	/* to the server's clock */
	BE_SET_MTIME_NOW = 1 << 7,
};

struct be_setattr {
	unsigned int valid;
	uint32_t mode;		/* permission bits only */
	uint32_t uid, gid;
	uint64_t size;
	struct timespec atime, mtime;
};

/* rename flags: the Linux renameat2 values. */
#define BE_RENAME_NOREPLACE (1 << 0)
#define BE_RENAME_EXCHANGE (1 << 1)

/*
 * readdir callback, once per entry ("." and ".." are not reported).
 * fileid is the entry's, always.  attr may be NULL if the backend has none
 * at hand (an NFS server sends none to a caller who may read a directory
 * but not search it); node may be NULL, and is borrowed: take
 * be_node_get() to keep it.  Return 0 to go on, any other value to stop;
 * readdir then returns that value.
 */
typedef int (*be_dirent_fn)(void *arg, const char *name, uint64_t fileid,
			    const struct be_attr *attr, struct be_node *node);

/*
 * readdir_names callback, once per entry ("." and ".." are not reported):
 * the name, its fileid, and type, its S_IFMT bits (0: not known).  Return
 * as be_dirent_fn.
 */
typedef int (*be_dirname_fn)(void *arg, const char *name, uint64_t fileid,
			     uint32_t type);

/* A byte range of a file: [off, off + len). */
struct be_range {
	uint64_t off;
	uint64_t len;
};

/*
 * Completion of an asynchronous data operation.  res is the number of
 * bytes transferred or -errno.  For read, a result shorter than asked
 * means end of file was reached (the rest of the buffer is untouched);
 * for write, a backend always completes the whole request or fails.
 */
typedef void (*be_io_cb)(void *cookie, ssize_t res);

/* One server address of a backend (be_ops.addrs). */
struct be_addr_stat {
	char addr[64];
	int port;		/* 0: the portmapper's */
	unsigned int conns;	/* connections to it */
	unsigned int up;	/* of them connected */
	uint64_t down_since_ms;	/* be_now_ms() when the last one went; 0 */
	uint64_t calls;		/* requests it answered */
	uint64_t bytes;		/* data bytes they moved */
	uint64_t resent;	/* requests moved to another connection */
	char last_error[128];	/* why a connection to it last broke */
};

/*
 * The operations.  Each that reaches the backend takes cred, the caller
 * the request is made for (NULL: the daemon's own); the backend does not
 * keep the pointer past the call (the data operations copy it).
 */
struct be_ops {
	int version;		/* BE_OPS_VERSION */
	const char *name;	/* "posix", "nfs" */

	void (*destroy)(struct be *be);
	void (*node_free)(struct be *be, struct be_node *node);

	/* Namespace operations.  Synchronous; *out and *attr optional. */
	int (*root)(struct be *be, const struct be_cred *cred,
		    struct be_node **out, struct be_attr *attr);
	int (*lookup)(struct be *be, const struct be_cred *cred,
		      struct be_node *dir, const char *name,
		      struct be_node **out, struct be_attr *attr);
	int (*getattr)(struct be *be, const struct be_cred *cred,
		       struct be_node *node, struct be_attr *attr);
	int (*setattr)(struct be *be, const struct be_cred *cred,
		       struct be_node *node, const struct be_setattr *sa,
		       struct be_attr *attr);
	/*
	 * New objects are owned by cred's uid, and its gid or the setgid
	 * directory's group, as the server (or kernel) decides.
	 * exclusive: fail with -EEXIST if the name exists.
	 */
	int (*create)(struct be *be, const struct be_cred *cred,
		      struct be_node *dir, const char *name, uint32_t mode,
		      int exclusive, struct be_node **out,
		      struct be_attr *attr);
	int (*mkdir)(struct be *be, const struct be_cred *cred,
		     struct be_node *dir, const char *name, uint32_t mode,
		     struct be_node **out, struct be_attr *attr);
	/* mode carries the type: S_IFIFO, S_IFSOCK, S_IFCHR, S_IFBLK. */
	int (*mknod)(struct be *be, const struct be_cred *cred,
		     struct be_node *dir, const char *name, uint32_t mode,
		     uint64_t rdev, struct be_node **out,
		     struct be_attr *attr);
	int (*symlink)(struct be *be, const struct be_cred *cred,
		       struct be_node *dir, const char *name,
		       const char *target, struct be_node **out,
		       struct be_attr *attr);
	/* Returns the target length; buf is NUL-terminated if it fits. */
	int (*readlink)(struct be *be, const struct be_cred *cred,
			struct be_node *node, char *buf, size_t size);
	int (*link)(struct be *be, const struct be_cred *cred,
		    struct be_node *node, struct be_node *dir,
		    const char *name, struct be_attr *attr);
	int (*unlink)(struct be *be, const struct be_cred *cred,
		      struct be_node *dir, const char *name);
	int (*rmdir)(struct be *be, const struct be_cred *cred,
		     struct be_node *dir, const char *name);
	int (*rename)(struct be *be, const struct be_cred *cred,
		      struct be_node *olddir, const char *oldname,
		      struct be_node *newdir, const char *newname,
		      unsigned int flags);
	int (*readdir)(struct be *be, const struct be_cred *cred,
		       struct be_node *dir, be_dirent_fn fn, void *arg);
	int (*statfs)(struct be *be, const struct be_cred *cred,
		      struct be_node *node, struct statvfs *st);

	/* Extended attributes; -EOPNOTSUPP where the backend has none. */
	int (*setxattr)(struct be *be, const struct be_cred *cred,
			struct be_node *node, const char *name,
			const void *value, size_t size, int flags);
	/* Returns the value size; size 0 asks for the size only. */
	int (*getxattr)(struct be *be, const struct be_cred *cred,
			struct be_node *node, const char *name, void *value,
			size_t size);
	int (*listxattr)(struct be *be, const struct be_cred *cred,
			 struct be_node *node, char *list, size_t size);
	int (*removexattr)(struct be *be, const struct be_cred *cred,
			   struct be_node *node, const char *name);

	/*
	 * Data.  read and write return 0 once the request is submitted: cb
	 * is then called exactly once, on any thread, possibly before the
	 * call returns.  A negative return means nothing was submitted and
	 * cb is NOT called.  The iovec array must stay valid until cb.
	 * Writes are UNSTABLE: they reach stable storage at commit.
	 */
	int (*read)(struct be *be, const struct be_cred *cred,
		    struct be_node *node, const struct iovec *iov, int iovcnt,
		    uint64_t off, be_io_cb cb, void *cookie);
	int (*write)(struct be *be, const struct be_cred *cred,
		     struct be_node *node, const struct iovec *iov, int iovcnt,
		     uint64_t off, be_io_cb cb, void *cookie);
	/* Make every completed write to node stable (NFS COMMIT, fsync). */
	int (*commit)(struct be *be, const struct be_cred *cred,
		      struct be_node *node, be_io_cb cb, void *cookie);
	/*
	 * Optional (NULL: ask with getattr).  The file's attributes as the
	 * reply to the last commit of node carried them, while they are
	 * still the file after every write and setattr sent through node:
	 * none was in flight or sent since.  -ENODATA when there are none
	 * such.  No request goes out.
	 */
	int (*committed_attr)(struct be *be, struct be_node *node,
			      struct be_attr *attr);

	/*
	 * Persistent handles, so the journal can name a file across a
	 * restart.  encode writes at most *len bytes and sets *len.
	 */
	int (*node_encode)(struct be *be, struct be_node *node, void *buf,
			   size_t *len);
	int (*node_decode)(struct be *be, const struct be_cred *cred,
			   const void *buf, size_t len, struct be_node **out,
			   struct be_attr *attr);

	/*
	 * May cred access node as mask (R_OK, W_OK, X_OK, or'ed) says?  0
	 * or -EACCES, asked of the server (NFS ACCESS) as an NFS client asks
	 * at open; attr (optional) gets the node's attributes as well.
	 */
	int (*access)(struct be *be, const struct be_cred *cred,
		      struct be_node *node, int mask, struct be_attr *attr);

	/*
	 * Optional (NULL: commit is used).  As commit, for a writer that
	 * cares about the bytes it wrote, r[0..nr): cb gets 0 once its
	 * completed writes there are stable, or -EAGAIN if the backend
	 * lost some of them (NFS: the server restarted between the WRITE
	 * and the COMMIT, so its write verifier changed).  -EAGAIN is no
	 * failure: write those bytes again, then commit again.  Lost
	 * writes of other ranges do not fail this call; their writers
	 * learn of them at their own commit.  commit itself answers
	 * -EAGAIN when anything of the file is lost.  r must stay valid
	 * until cb.
	 */
	int (*commit_ranges)(struct be *be, const struct be_cred *cred,
			     struct be_node *node, const struct be_range *r,
			     unsigned int nr, be_io_cb cb, void *cookie);

	/*
	 * Outages (optional, NULL where the backend has none of its own: a
	 * kernel mount follows its own hard or soft option).
	 * unreachable_since(): since when (CLOCK_MONOTONIC ms) the server
	 * has not answered, or 0.  release(): the mount is gone; requests
	 * that a hard backend would retry until the server answers fail as
	 * soft ones do (those already waiting at once), so the daemon can
	 * end; with abort (the final drain has given up), every request not
	 * answered yet fails now, and so does every new one.  Any thread.
	 */
	uint64_t (*unreachable_since)(struct be *be);
	void (*release)(struct be *be, bool abort);

	/*
	 * The server addresses the backend spreads its connections over
	 * (optional): each one's state and counters into out[0..max);
	 * returns how many addresses there are.
	 */
	unsigned int (*addrs)(struct be *be, struct be_addr_stat *out,
			      unsigned int max);

	/*
	 * A listing of names, fileids and types only, for a plain READDIR
	 * (optional).  A backend has it when such a listing costs less than
	 * readdir's and a lookup is a local call, not a round trip to a
	 * server (posix: getdents without a stat per entry): fs/ then answers
	 * plain listings for readdirplus=auto, and a find asks nothing per
	 * entry.  NFS has none: its READDIRPLUS brings the attributes in the
	 * same round trip, and saves a LOOKUP RPC per entry for ls -l.
	 */
	int (*readdir_names)(struct be *be, const struct be_cred *cred,
			     struct be_node *dir, be_dirname_fn fn,
			     void *arg);
};

/*
 * For the synchronous operations of the calling thread, until set again
 * (0: no limit): a request the server has not answered within ms fails
 * with -ETIMEDOUT, whatever the hard or soft mode (the request itself may
 * still reach the server).  For the caller that has an answer of its own
 * to give when the backend is away (cached attributes).  Backends without
 * their own retries ignore it.
 */
void be_wait_set(unsigned int ms);
unsigned int be_wait_get(void);
/* The clock of unreachable_since(). */
uint64_t be_now_ms(void);

/*
 * Namespace calls a backend made, by kind (stagefsctl stats: be_lookup,
 * ...).  The NFS backend counts RPCs, once per call however often it is
 * resent (a listing is one READDIRPLUS per directory page); the posix
 * backend counts be_ops calls (its readdir also stats every entry).
 */
enum be_call {
	BE_CALL_LOOKUP,
	BE_CALL_GETATTR,
	BE_CALL_SETATTR,
	BE_CALL_READDIR,	/* NFS: READDIRPLUS rounds */
	BE_CALL_ACCESS,
	BE_CALL_CREATE,		/* create, mkdir, mknod, symlink, link */
	BE_CALL_REMOVE,		/* unlink, rmdir */
	BE_CALL_RENAME,
	BE_CALL_XATTR,		/* get, set, list, remove (counted by fs/) */
	BE_CALL_GETATTR_CACHED,	/* nfs: a GETATTR of a directory answered
				 * from this node's last change in it */
	BE_CALL_NR
};

/* "lookup", "getattr", ...: the names of enum be_call. */
extern const char *const be_call_names[BE_CALL_NR];

/* Every backend object starts with this. */
struct be {
	const struct be_ops *ops;
	char *spec;		/* the BACKEND string it was opened with */
	/* Requests the backend sent again (reconnects, server busy). */
	atomic_uint_fast64_t retries;
	/* Calls made, by enum be_call: statistics only. */
	atomic_uint_fast64_t calls[BE_CALL_NR];
};

static inline void be_count(struct be *be, enum be_call c)
{
	atomic_fetch_add_explicit(&be->calls[c], 1, memory_order_relaxed);
}

/* Tunables a backend may use; zero means "the backend's default". */
struct be_params {
	unsigned int nconnect;		/* NFS connections */
	unsigned int timeout_ms;	/* give up on an unreachable server */
	unsigned int retry_deadline_ms;	/* retry in-flight I/O this long */
	bool soft;	/* fail after retry_deadline_ms (default: hard, retry
			 * until the server answers, as an NFS hard mount) */
	/* Descriptors the backend may keep open for its nodes (posix); 0:
	 * its own default.  A target: see backend/fdlru.h. */
	unsigned int max_fds;
	/* nfs: more server addresses, one or more per line (-o hosts=). */
	const char *hosts_file;
	/* nfs: how long the attributes a directory had after this node's
	 * own change in it answer a GETATTR of it (the mount's
	 * attr_timeout, at most 1 s); 0: never (backend/nfs.c). */
	unsigned int dir_attr_ms;
};

/*
 * Open the backend named by spec: "nfs://HOST[:PORT]/EXPORT[/SUBDIR]" or
 * an absolute directory.  On failure returns -errno and writes one line
 * naming the problem into err.
 */
int be_open(const char *spec, const struct be_params *params, struct be **out,
	    char *err, size_t errlen);
void be_close(struct be *be);

static inline struct be_node *be_node_get(struct be_node *n)
{
	atomic_fetch_add_explicit(&n->refs, 1, memory_order_relaxed);
	return n;
}

static inline void be_node_put(struct be *be, struct be_node *n)
{
	if (n && atomic_fetch_sub_explicit(&n->refs, 1,
					   memory_order_acq_rel) == 1)
		be->ops->node_free(be, n);
}

/*
 * A namespace call sent again after its first reply was lost (resend.c):
 * the second send may find the first one's work done and answer ENOENT
 * or EEXIST.  be_resent_answer() looks up what the name holds now and
 * returns 0 where it holds what the first send made (then *out, if
 * given, gets a reference to it and *attr its attributes), else err.
 */
enum be_resent_op {
	BE_RESENT_REMOVE,
	BE_RESENT_RMDIR,
	BE_RESENT_RENAME,	/* dir/name -> newdir/newname */
	BE_RESENT_LINK,		/* fileid: the linked file's */
	BE_RESENT_MKDIR,
	BE_RESENT_CREATE,	/* exclusive, with verifier verf */
};

struct be_resent {
	enum be_resent_op op;
	struct be_node *dir;
	const char *name;
	struct be_node *newdir;	/* RENAME */
	const char *newname;	/* RENAME */
	uint64_t fileid;	/* LINK; RENAME's object if known, else 0 */
	uint32_t verf[2];	/* CREATE: the atime and mtime seconds */
};

int be_resent_answer(struct be *be, const struct be_cred *cred,
		     const struct be_resent *r, int err, struct be_node **out,
		     struct be_attr *attr);
const char *be_resent_op_name(enum be_resent_op op);

/* Synchronous wrappers over the asynchronous data operations. */
ssize_t be_pread(struct be *be, const struct be_cred *cred,
		 struct be_node *node, void *buf, size_t len, uint64_t off);
ssize_t be_pwrite(struct be *be, const struct be_cred *cred,
		  struct be_node *node, const void *buf, size_t len,
		  uint64_t off);
int be_commit(struct be *be, const struct be_cred *cred,
	      struct be_node *node);
/* commit_ranges where the backend has it, else commit. */
int be_commit_ranges(struct be *be, const struct be_cred *cred,
		     struct be_node *node, const struct be_range *r,
		     unsigned int nr);

/* Used by the implementations' open functions; see be_open(). */
struct be_factory {
	const char *name;
	/* Does spec name this kind of backend? */
	int (*match)(const char *spec);
	int (*open)(const char *spec, const struct be_params *params,
		    struct be **out, char *err, size_t errlen);
};

#endif /* STAGEFS_BACKEND_H */
