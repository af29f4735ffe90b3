/* SPDX-License-Identifier: GPL-2.0 */
/*
 * fs_int.h - shared by the files of fs/, the FUSE layer.
 *
 * The daemon context (struct sfs) travels as the FUSE userdata; there is
 * no other global state.  FUSE node ids are pointers to struct sfs_inode
 * (FUSE_ROOT_ID maps to sfs->root).  An inode is named by (backend index,
 * fileid): two names of one file (hard links) share one inode.  st_ino is
 * the backend fileid, so it is stable across remounts.
 *
 * Lookup counts: every entry reply adds one to inode->nlookup, forget
 * takes them away, and at zero the inode leaves the table and drops its
 * backend node.  Open file handles hold a reference to the inode's
 * cache_file (the cache's pin on the data), not to the inode: the kernel
 * keeps the lookup count of an open file above zero.
 *
 * Credentials: every backend call made for a request carries the
 * caller's (req_cred()); an open file's data goes with its opener's, kept
 * in the handle, as the NFS client sends a file's I/O with the
 * credentials it was opened with.  The daemon's own calls (mount-time
 * checks, the hidden directory) pass NULL.
 *
 * Thread safety: the inode table is under sfs->ino_lock; an inode's
 * immutable fields (be_idx, fileid, node) need no lock.
 */
#ifndef STAGEFS_FS_INT_H
#define STAGEFS_FS_INT_H

#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "backend.h"
#include "cache.h"
#include "pt_proto.h"

struct sfs_config {
	/* from fuse_opt, see opts.c */
	char *cache_dir;
	char *cache_size_s, *cache_min_free_s, *chunk_size_s;
	char *readahead_s, *kernel_readahead_s, *dirty_max_s;
	char *journal_compact_s;
	char *writeback_s, *flush_on_close_s, *fsync_s, *verify_s;
	char *cache_direct_s;
	char *passthrough_s;
	char *killpriv_s;
	char *default_permissions_s;
	char *offline_s;
	char *readdirplus_s;
	char *namespace_file;
	char *hosts_file;	/* -o hosts=: more addresses of BACKEND */
	char *ctl_socket;
	unsigned int nconnect;
	double attr_timeout, entry_timeout;
	double groups_timeout;	/* seconds a caller's groups are kept (cred.c) */
	int foreground, debug, show_help, show_version;
	int default_permissions;	/* the kernel checks modes (default) */
	int killpriv;		/* ask for FUSE_HANDLE_KILLPRIV_V2 (default) */
	int soft;		/* fail requests after the retry deadline */
	double outage_wait;	/* seconds before the cache answers alone */
	uint64_t kernel_readahead;	/* bytes; the mount bdi's read_ahead_kb, 0: leave */
	int offline_serve;	/* offline=serve: stale opens allowed */
	/* listings carry attributes (READDIRPLUS): on, off, or auto (off
	 * where every backend lists names cheaper: sfs.plus) */
	enum sfs_rdp { SFS_RDP_AUTO, SFS_RDP_ON, SFS_RDP_OFF } readdirplus;
	/* parsed */
	enum sfs_pt_mode { SFS_PT_AUTO, SFS_PT_ON, SFS_PT_OFF } passthrough;
	char *backend;
	char *mountpoint;
	struct cache_config cache;
};

struct ns_vnode;
struct ghost;

/* One line of a namespace file. */
struct ns_junction {
	char *path;		/* in the mount */
	char *backend;
	int line;
};

struct sfs_inode {
	int be_idx;		/* -1: a virtual directory (namespace.c) */
	struct ns_vnode *vnode;	/* virtual directories only */
	uint64_t fileid;
	struct be_node *node;	/* reference held */
	uint64_t nlookup;	/* protected by sfs->ino_lock */
	unsigned int nopen;	/* open handles; protected by sfs->ino_lock */
	unsigned int nopendir;	/* open directory handles; the same */
	/* Unlinked while open: the hidden name it lives under until the
	 * last close (as the NFS client's silly rename does), and who
	 * removes it then; under ino_lock */
	struct be_node *silly_dir;
	char *silly_name;
	/* passthrough.c, under sfs->ino_lock: the kernel's io mode */
	unsigned int pt_opens;		/* passthrough opens */
	unsigned int cached_opens;	/* opens through the daemon */
	int pt_id;			/* backing id while pt_opens */
	struct be_cred *silly_cred;	/* NULL: the daemon */
	struct sfs_inode *hnext;	/* protected by sfs->ino_lock */
	/* offline.c, under ino_lock: the backend's last attributes, and
	 * the name (in directory fileid dn_dir) that last led here */
	struct be_attr last;
	bool have_last;
	uint64_t dn_dir;
	char *dn_name;
	struct sfs_inode *dn_next;
	/* handed out by offline_lookup(): an open checks the name again */
	bool offline_named;
};

/* Passthrough state of the session (passthrough.c). */
struct sfs_pt {
	bool offered;		/* the kernel's INIT offers it */
	bool enabled;		/* ... and it is in use */
	bool refused;		/* passthrough=on, and the kernel cannot */
	bool dio_mmap;		/* FUSE_DIRECT_IO_ALLOW_MMAP: offered, and
				 * asked for in the INIT reply */
	bool parallel_dirops;	/* FUSE_PARALLEL_DIROPS: ditto */
	bool killpriv;		/* FUSE_HANDLE_KILLPRIV_V2: ditto; the
				 * daemon clears set-id bits (file.c) */
	bool init_done;
	atomic_bool lost;	/* a reply could not be tracked: no more */
	uint64_t init_unique;
	pthread_mutex_t lock;
	struct pt_pending *pending[256];	/* OPEN/CREATE in flight */
	/* Requests the kernel sent, by opcode (statistics only). */
	atomic_uint_fast64_t ops[PT_OPS_COUNTED];
};

struct sfs {
	struct sfs_config cfg;
	struct be **bes;
	int nbe;
	/* The kernel is asked for READDIRPLUS: cfg.readdirplus, with auto
	 * decided once the backends are open (main.c); read-only after.
	 * plus_auto: auto where every backend lists names cheaper (posix):
	 * the kernel's auto mode, listings by names, READDIRPLUS replies of
	 * one page (fs/dir.c). */
	bool plus, plus_auto;
	struct cache *cache;
	struct fuse_session *se;

	pthread_mutex_t ino_lock;
	/* Inodes with nopen > 0; protected by ino_lock.  While it is 0, an
	 * unlink needs no LOOKUP to learn whether to hide its file. */
	unsigned int open_inodes;
	struct sfs_inode **itable;
	size_t itable_size;
	struct sfs_inode *root;
	/*
	 * Per backend, set at mount: the daemon cannot keep SILLY_DIR at
	 * the root (the export squashes root), so unlinked open files hide
	 * in their own directory instead, as the NFS client's .nfs files.
	 */
	bool *silly_here;
	bool no_xattrs;		/* no backend holds xattrs (xattr.c) */

	/* namespace.c: junctions (NULL without -o namespace) */
	struct ns_junction *junctions;
	int njunctions;
	struct ns_vnode *vroot;
	struct fuse_lowlevel_ops base_ops;	/* what the wrappers call */
	struct timespec started;	/* times of virtual directories */
	struct sfs_pt pt;
	int notify_fd;		/* the parent waits for the INIT on it */
	uint64_t nofile;	/* RLIMIT_NOFILE the descriptor LRUs share */
	pthread_key_t read_buf_key;	/* file.c: a worker's read buffer */
	/* offline.c */
	struct sfs_inode **dtable;	/* names, under ino_lock */
	struct ghost *ghosts;		/* names of forgotten inodes, ditto */
	pthread_t watch;
	bool watch_started;
	atomic_bool watch_stop;
	atomic_bool ended;	/* the session is over (unmount, signal) */
};

/* An open file. */
struct sfs_fh {
	struct sfs_inode *ino;	/* the kernel holds a lookup while open */
	struct be_cred cred;	/* the opener's: fetches and uploads */
	struct cache_file *cf;
	struct cache_stream stream;
	bool written;
	bool pt;		/* passthrough: the kernel does the I/O */
	bool pt_write;		/* ... and may write */
	bool cached;		/* counted in ino->cached_opens */
	int backing_id;		/* read by the reply hook */
};

static inline struct sfs *req_sfs(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* Is the caller root, or in group gid (its own or a supplementary one)? */
static inline bool cred_in_group(const struct be_cred *cred, uint32_t gid)
{
	uint32_t i;

	if (cred->uid == 0 || cred->gid == gid)
		return true;
	for (i = 0; i < cred->ngroups; i++)
		if (cred->groups[i] == gid)
			return true;
	return false;
}

/*
 * A regular file's mode (its group gid) after a write, truncate or chown
 * by cred without CAP_FSETID, as a local file system leaves it (Linux's
 * setattr_should_drop_suidgid()): set-user-ID cleared, and set-group-ID
 * where the group may execute or the caller is not in the group (without
 * group execute it marks mandatory locking, and stays for the group).
 */
static inline uint32_t mode_suidgid_killed(uint32_t mode, uint32_t gid,
					   const struct be_cred *cred)
{
	if (!S_ISREG(mode))
		return mode;
	mode &= ~(uint32_t)S_ISUID;
	if ((mode & S_ISGID) &&
	    ((mode & S_IXGRP) || !cred_in_group(cred, gid)))
		mode &= ~(uint32_t)S_ISGID;
	return mode;
}

static inline struct be *ino_be(struct sfs *s, struct sfs_inode *ino)
{
	return s->bes[ino->be_idx];
}

/* passthrough.c */
int pt_install(struct sfs *s);
bool pt_init(struct sfs *s);
void pt_destroy(struct sfs *s);
int pt_open(struct sfs *s, struct sfs_inode *in, struct sfs_fh *fh,
	    int flags);
void pt_release(struct sfs *s, struct sfs_inode *in, struct sfs_fh *fh);
/* Does the request this thread is handling ask to clear set-id bits? */
bool pt_req_kill_suidgid(void);
/* file.c: clear them after cred's write (on the backend, as the owner),
 * if the file's last attributes have any (false: none); out NULL: the
 * kernel is told to ask for the attributes again, else they are in out. */
bool file_kill_suidgid(struct sfs *s, struct sfs_inode *in,
		       const struct be_cred *cred, struct be_attr *out);

/* opts.c */
int opts_parse(struct fuse_args *args, struct sfs_config *cfg);
void opts_usage(const char *prog);
void opts_free(struct sfs_config *cfg);
/* "512M" -> bytes (K, M, G, T suffixes).  Returns 0 or -EINVAL. */
int parse_size(const char *s, uint64_t *out);

/* inode.c */
int inode_table_init(struct sfs *s);
void inode_table_destroy(struct sfs *s);
struct sfs_inode *inode_get(struct sfs *s, fuse_ino_t ino);
/* Find or add the inode for node; takes one lookup count. */
struct sfs_inode *inode_enter(struct sfs *s, int be_idx,
			      struct be_node *node);
/*
 * The inode of a known file, with one more lookup count, or NULL.  With
 * node, only the inode of that very object (a fileid may be reused).
 */
struct sfs_inode *inode_find(struct sfs *s, int be_idx, uint64_t fileid,
			     const struct be_node *node);
void inode_forget(struct sfs *s, struct sfs_inode *ino, uint64_t n);
fuse_ino_t inode_id(struct sfs *s, struct sfs_inode *ino);
void attr_to_stat(struct sfs *s, int be_idx, const struct be_attr *a,
		  struct stat *st);
/* Fill a fuse_entry_param from a fresh node and its attributes. */
int make_entry(struct sfs *s, int be_idx, struct be_node *node,
	       struct be_attr *attr, struct fuse_entry_param *e);
void reply_attr(fuse_req_t req, struct sfs_inode *ino, struct be_attr *a);

/*
 * Files unlinked while open live in this directory at the backend's root
 * until their last close (or, where root is squashed, under a name that
 * starts with it in their own directory); readdir shows no name that
 * starts with it.
 */
#define SILLY_DIR ".stagefs-unlinked"

/* silly.c */
/*
 * The hidden name of ino: "<node id>-<fileid>-<hkey>-<pid>" (16 hex
 * digits each, the pid in decimal), after SILLY_DIR "-" when here (root
 * squashed: it stays in its own directory).  The node id makes names of
 * different nodes differ and tells a start which are its own.  Returns 0,
 * or -ENAMETOOLONG if buf is too small.
 */
int silly_name(struct sfs *s, struct sfs_inode *ino, bool here, char *buf,
	       size_t len);
/*
 * At start, after the journal replay and before the mount: remove the
 * files unlinked while open that earlier runs of this node left in
 * SILLY_DIR (a crash before their last close), on every backend where
 * the daemon keeps SILLY_DIR.  Logs one line per backend with the count,
 * and a warning per entry it cannot remove; never fails.
 */
void silly_cleanup(struct sfs *s);
/*
 * Where root is squashed a file unlinked while open hides in its own
 * directory, which then cannot be removed or renamed over, where a local
 * file system would.  Before parent/name goes (an rmdir, or a rename over
 * it that failed with ENOTEMPTY): if all it holds is this node's hidden
 * files, move them up into parent as cred (who may write there), where
 * their last close removes them.  Returns how many went (then the caller
 * tries again), 0 if nothing is to be done, or -errno.
 */
int silly_evacuate(struct sfs *s, const struct be_cred *cred,
		   struct sfs_inode *parent, const char *name);
/*
 * A directory's attributes read from the backend while its mode may have
 * been opened for a moment to remove a hidden name (its owner closed it
 * after the unlink): take silly_flux_seq() before the read, and if
 * silly_flux_wait() with it says so (it waits for such a change of the
 * directory to end), read them again.
 */
uint64_t silly_flux_seq(void);
bool silly_flux_wait(int be_idx, uint64_t fileid, uint64_t seq);
/*
 * Remove a hidden file for good, as cred (NULL: the daemon); takes over
 * dir's reference, name and cred.  Where cred may not remove it (its
 * directory's mode changed since the unlink) but owns the directory, the
 * mode is opened for the removal and put back.  Logs a failure.
 */
void silly_remove(struct sfs *s, struct sfs_inode *ino, struct be_node *dir,
		  char *name, struct be_cred *cred);

/* offline.c: answers while the backend does not (see there). */
int offline_init(struct sfs *s);
void offline_destroy(struct sfs *s);
/* The limit for be_wait_set() of a call on ino that has a fallback. */
unsigned int offline_wait_ms(struct sfs *s, struct sfs_inode *ino);
/* Keep a's copy as ino's last known attributes. */
void offline_attr_save(struct sfs *s, struct sfs_inode *ino,
		       const struct be_attr *a);
/* ino's last known attributes into a; false if none. */
bool offline_attr(struct sfs *s, struct sfs_inode *ino, struct be_attr *a);
/* name in dir led to ino (a LOOKUP answer). */
void offline_name(struct sfs *s, struct sfs_inode *dir, const char *name,
		  struct sfs_inode *ino);
/* name in dir is gone or moved (unlink, rmdir, rename). */
void offline_unname(struct sfs *s, struct sfs_inode *dir, const char *name);
/* ino is being freed; ino_lock held.  Its name becomes a ghost; returns
 * a backend node reference to put once the lock is dropped, or NULL. */
struct be_node *offline_forget_locked(struct sfs *s, struct sfs_inode *ino);
/* The inode name last led to in dir, with a lookup count taken and its
 * last attributes in a; NULL if none is known. */
struct sfs_inode *offline_lookup(struct sfs *s, struct sfs_inode *dir,
				 const char *name, struct be_attr *a);
/* At an open that reached the backend: does the name offline_lookup()
 * answered with still lead to ino?  0 or -ESTALE (the kernel looks up
 * again). */
int offline_name_check(struct sfs *s, const struct be_cred *cred,
		       struct sfs_inode *ino);
/* Let every backend stop waiting for its server (be_ops.release). */
void offline_release(struct sfs *s, bool abort);
/* The thread that releases hard backends once the session has ended. */
int offline_watch_start(struct sfs *s);
void offline_watch_stop(struct sfs *s);

/* cred.c */
/*
 * The caller of req as the backend should see it: uid, gid and the first
 * BE_CRED_NGROUPS supplementary groups (fuse_req_getgroups).
 */
void req_cred(fuse_req_t req, struct be_cred *cred);
/*
 * Mount-time check of what the daemon's own credentials may do on each
 * backend (sets s->silly_here).  Returns 0, or -errno with one line in
 * err that says which export setting is needed.
 */
int cred_check_backends(struct sfs *s, char *err, size_t errlen);

/* file.c: open handle accounting for unlink-while-open. */
void inode_open(struct sfs *s, struct sfs_inode *ino);
void inode_release(struct sfs *s, struct sfs_inode *ino);

/* file.c: each worker thread's read buffer (made on its first read, freed
 * when it ends); init before the session loop, destroy after it. */
int file_read_bufs_init(struct sfs *s);
void file_read_bufs_destroy(struct sfs *s);

/* namespace.c */
int ns_parse_text(const char *text, const char *file, struct ns_junction **out,
		  int *nout, char *err, size_t errlen);
int ns_parse_file(const char *file, struct ns_junction **out, int *nout,
		  char *err, size_t errlen);
void ns_free(struct ns_junction *j, int n);
int ns_build(struct sfs *s, const struct ns_junction *j, int n,
	     struct be_node **roots);
void ns_destroy(struct sfs *s);
void ns_wrap_ops(struct sfs *s, struct fuse_lowlevel_ops *ops);

/* ops: dir.c, file.c, xattr.c fill in their part of the table */
void dir_ops_init(struct fuse_lowlevel_ops *ops);
void file_ops_init(struct fuse_lowlevel_ops *ops);
void xattr_ops_init(struct fuse_lowlevel_ops *ops);
/* At mount: does any backend hold xattrs?  Sets s->no_xattrs. */
void xattr_check_backends(struct sfs *s);

#endif /* STAGEFS_FS_INT_H */
