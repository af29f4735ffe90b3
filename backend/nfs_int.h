/* SPDX-License-Identifier: GPL-2.0 */
/*
 * nfs_int.h - private to the NFSv3 backend (nfs*.c) and its unit tests.
 *
 * Its parts:
 *   nfs_url.c   parsing nfs://HOST[:PORT][,HOST...]/PATH (a VIP pool)
 *               and the hosts= file, and mapping NFS3ERR_* to -errno.
 *               Pure functions, no libnfs calls, so the unit test links
 *               this file alone.
 *   nfs_conn.c  the connection pool: nconnect libnfs RPC contexts, each a
 *               TCP connection owned by one thread, plus the one-shot
 *               MOUNT exchange at open time.  It knows nothing about the
 *               meaning of the calls it carries.
 *   nfs_verf.c  which unstable writes a COMMIT made stable (the write
 *               verifier bookkeeping).  Pure, linked alone by its test.
 *   nfs_limits.c  what NFSv3 can hold (times, symlink targets), decided
 *               as the Linux NFSv3 client does.  Pure, linked alone by
 *               its test.
 *   nfs.c       open (MOUNT at every address), the namespace calls and
 *               the be_ops table; turns replies into be_attr.
 *   nfs_data.c  READ and WRITE split into rsize/wsize pieces, COMMIT, and
 *               the write verifier (nfs_be.h: the objects both share).
 *
 * Credentials: each connection keeps a small cache of AUTH_SYS
 * credentials, and before it builds a call's RPC it installs the call's
 * (libnfs encodes a context's auth into each request when it builds it).
 *
 * Thread safety: nfs_spec_*() and nfs_stat3_*() are pure and reentrant.
 * nfs_wt_*() take no locks: calls on one tracker must be serialised by
 * the caller.
 * nfs_pool_submit() may be called from any thread, including from a done
 * callback.  A struct nfs_call belongs to the pool from nfs_pool_submit()
 * until its done callback runs; done runs exactly once, on the thread
 * that owns the connection (or on the submitting thread if the pool is
 * shutting down), with no pool lock held.  The libnfs contexts are never
 * touched outside their owner thread.
 */
#ifndef STAGEFS_NFS_INT_H
#define STAGEFS_NFS_INT_H

#include <stddef.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "backend.h"

/* ---- nfs_url.c ---------------------------------------------------- */

/* The most server addresses one backend spreads its connections over. */
#define NFS_MAX_ADDRS 64
#define NFS_MAX_ADDRS_S "64"

/* One server address of a pool. */
struct nfs_addr_spec {
	char *host;	/* brackets of an IPv6 literal removed */
	int port;	/* NFS port; 0: ask the server's portmapper */
};

/* A parsed nfs://HOST[:PORT][,HOST[:PORT]...]/PATH. */
struct nfs_spec {
	struct nfs_addr_spec *addrs;	/* in the order given, no repeats */
	unsigned int naddrs;
	const char *host;	/* addrs[0].host, for messages */
	int port;		/* addrs[0].port */
	char *path;	/* "/a/b": one slash between components, none at the end */
};

/*
 * Parse spec into url.  Several addresses of one cluster (a VIP pool) are
 * separated by commas.  PATH is normalised (repeated and trailing slashes
 * dropped); "." and ".." components, a "?query", an empty path and an
 * address listed twice are refused.  On failure returns -EINVAL and
 * writes one line into err, "backend 'SPEC': PROBLEM"; url is then left
 * empty.
 */
int nfs_spec_parse(const char *spec, struct nfs_spec *url, char *err,
		  size_t errlen);
/*
 * Add the addresses of a hosts file's text (-o hosts=FILE): one or more
 * HOST[:PORT] per line, comma separated; blank lines and lines starting
 * with '#' are skipped.  On failure returns -EINVAL with one line in err,
 * "hosts file 'FILE', line N: PROBLEM".
 */
int nfs_spec_add_hosts(struct nfs_spec *url, const char *file,
		       const char *text, char *err, size_t errlen);
void nfs_spec_free(struct nfs_spec *url);

/*
 * Length of the first n components of path ("/a/b/c", 2 -> 4 for "/a/b");
 * and how many components it has.
 */
size_t nfs_path_prefix_len(const char *path, unsigned int n);
unsigned int nfs_path_components(const char *path);

/*
 * Is export (as the server's export list spells it) a component-wise
 * prefix of path?  Trailing slashes in export are ignored; "/" is a
 * prefix of everything.  Returns the length of path it covers (0 for
 * "/"), or -1.
 */
int nfs_export_covers(const char *export_dir, const char *path);

/*
 * NFS3ERR_* (and NFS3_OK) to 0 / -errno.  NFS3ERR_JUKEBOX maps to -EAGAIN,
 * although the connection layer retries it and callers never see it.
 * BADHANDLE is -ESTALE: the handle is useless either way.
 */
int nfs_stat3_to_errno(int stat);
/* "NFS3ERR_NOENT"; "NFS3ERR_#12345" for an unknown value (static buf). */
const char *nfs_stat3_str(int stat);
/* MNT3ERR_* to a short text, for the open-time messages. */
const char *nfs_mnt3_str(int stat);

/* ---- nfs_limits.c ------------------------------------------------ */

/*
 * A time as NFSv3 can hold it (unsigned 32-bit seconds): before 1970
 * becomes 1970-01-01T00:00:00, after 2106-02-07T06:28:15 becomes that,
 * both with 0 nanoseconds, as the kernel client's VFS clamps them.
 */
void nfs_time_clamp(int64_t sec, long nsec, uint32_t *sec3, uint32_t *nsec3);

/*
 * The longest symlink target the kernel NFSv3 client sends
 * (NFS3_MAXPATHLEN, which is PATH_MAX); a longer one fails there with
 * ENAMETOOLONG before any call.  Through FUSE the VFS already stops at
 * PATH_MAX - 1.
 */
#define NFS_SYMLINK_MAX 4096
/* 0, or -ENAMETOOLONG for a target longer than NFS_SYMLINK_MAX. */
int nfs_symlink_len_ok(size_t target_len);

/* ---- nfs_verf.c -------------------------------------------------- */

/* A byte range [start, end) of a file and the newest write in it. */
struct nfs_wrange {
	uint64_t start, end;
	uint64_t seq;		/* the newest write in it */
	uint64_t gen;		/* verifier generation it was written under */
};

/*
 * One file's unstable writes (see nfs_verf.c).  Zero-initialise; free
 * with nfs_wt_free().
 */
struct nfs_wtrack {
	uint64_t wseq;		/* completed writes so far */
	uint64_t commit_wseq;	/* wseq when the newest COMMIT was prepared */
	struct nfs_wrange *unc;	/* completed writes no COMMIT covers yet */
	size_t nunc, capunc;
	struct nfs_wrange *lost; /* written under an old verifier, not since */
	size_t nlost, caplost;
	uint64_t untracked_gen;	/* out of memory while tracking: be careful */
};

void nfs_wt_free(struct nfs_wtrack *t);
/* A WRITE of [off, off + len) completed under generation gen. */
void nfs_wt_write_done(struct nfs_wtrack *t, uint64_t gen, uint64_t off,
		       uint64_t len);
/* A COMMIT is about to be sent: returns the wseq to give commit_done. */
uint64_t nfs_wt_commit_start(struct nfs_wtrack *t);
/*
 * The COMMIT prepared at wseq succeeded under generation gen.  Returns 0
 * if the completed writes to r[0..nr) (nr == 0: the whole file) are
 * stable; -EAGAIN if some of them were lost (the server restarted after
 * they were written): write them again and commit again; -EIO if out of
 * memory made it unknowable.
 */
int nfs_wt_commit_done(struct nfs_wtrack *t, uint64_t gen, uint64_t wseq,
		       const struct be_range *r, unsigned int nr);
/* The file was truncated to size: forget what lies beyond. */
void nfs_wt_truncate(struct nfs_wtrack *t, uint64_t size);
/* How many bytes are lost now (logs, tests). */
uint64_t nfs_wt_lost_bytes(const struct nfs_wtrack *t);

/* ---- nfs_conn.c --------------------------------------------------- */

struct be_cred;
struct rpc_context;
struct nfs_pool;
struct nfs_call;
struct nfs_tkt;
struct nfs_conn;

/* libnfs's rpc_cb, spelled out so that this header needs no libnfs. */
typedef void (*nfs_rpc_cb)(struct rpc_context *rpc, int status, void *data,
			   void *private_data);

/*
 * Issue the call's RPC on rpc: one rpc_nfs3_*_async(rpc, cb, args, priv).
 * Return what it returned (0 queued, <0 not queued: the call fails with
 * -EIO), or -ENAMETOOLONG if libnfs could not encode the arguments
 * because they are too long for its call buffer (libnfs 4.0 has 4 KiB
 * for the whole call): the call then fails with -ENAMETOOLONG, not
 * retried.  libnfs's own values are -1 to -3.  Runs on the owner
 * thread, possibly several times for one call (retries after a
 * reconnect), so the arguments must stay valid until done.
 */
typedef int (*nfs_issue_fn)(struct nfs_call *call, struct rpc_context *rpc,
			    nfs_rpc_cb cb, void *priv);
/*
 * The end of a call.  err == 0: res is the decoded NFSv3 result (its
 * first member is the nfsstat3, which may be an error other than
 * JUKEBOX); it is valid only during the callback.  err < 0: the call
 * failed at the RPC level (-EIO) or ran out of retries (-EIO when the
 * server could not be reached, -ETIMEDOUT when it did not answer), or the
 * pool is shutting down (-ESHUTDOWN); res is NULL and call->why says
 * what happened.  The pool does not log per-call failures (only at
 * debug level): the owner logs them once, with its own context.  The
 * call may be submitted again from inside done.
 */
typedef void (*nfs_done_fn)(struct nfs_call *call, int err, void *res);

struct nfs_call {
	/* Set by the submitter. */
	nfs_issue_fn issue;
	nfs_done_fn done;
	const char *op;		/* "READ", for logs */
	uint32_t weight;	/* bytes it moves, for balancing */
	uint64_t deadline_ms;	/* 0: the pool's (call_deadline()) */
	/*
	 * Who the call is made for, sent as AUTH_SYS; NULL: the daemon's
	 * own (its uid and gid, no groups).  Owned by the submitter, valid
	 * until done.
	 */
	const struct be_cred *cred;
	/* Private to nfs_conn.c; valid while the pool owns the call. */
	struct nfs_call *next, *prev;
	struct nfs_tkt *tkt;
	struct nfs_conn *conn;
	uint64_t first_ms;
	uint64_t not_before_ms;
	unsigned int tries;	/* times issued */
	unsigned int jukebox;	/* JUKEBOX answers so far */
	int err;		/* last transport error, -errno */
	/* When done gets err < 0: what happened, for the owner's log. */
	char why[128];
};

struct nfs_pool_params {
	const char *spec;	/* for log lines */
	/*
	 * The server's addresses (one cluster's VIPs): connection i goes to
	 * addrs[i % naddrs].  A port of 0: ask the portmapper.
	 */
	const struct nfs_addr_spec *addrs;
	unsigned int naddrs;
	unsigned int nconnect;	/* at least naddrs connections are made */
	unsigned int connect_timeout_ms;
	unsigned int stall_ms;		/* no reply this long: reconnect */
	unsigned int retry_deadline_ms;
	/*
	 * hard: a call the server does not answer is retried until it does
	 * (the NFS client's hard mount), not failed after retry_deadline_ms;
	 * nfs_pool_release() ends that.  A call's own deadline_ms still
	 * holds.
	 */
	bool hard;
	atomic_uint_fast64_t *retries;	/* counts calls sent again */
};

int nfs_pool_create(const struct nfs_pool_params *p, struct nfs_pool **out);
/* Stops the threads; calls still owned by the pool end with -ESHUTDOWN. */
void nfs_pool_destroy(struct nfs_pool *pool);
/*
 * Hand call to the least loaded connection (preferring connected ones).
 * The private fields must be zero on the first submit; first_ms,
 * deadline_ms and the retry counters are kept when the call is submitted
 * again from its done callback (a short READ continues its request).
 */
void nfs_pool_submit(struct nfs_pool *pool, struct nfs_call *call);
/*
 * hard no more: calls waiting for an unreachable server now fail as they
 * would in a soft pool (those already submitted at once), so that an
 * unmounted daemon can end.  abort: every call not answered yet, and every
 * new one, fails within a tick (the drain has given up).  Any thread.
 */
void nfs_pool_release(struct nfs_pool *pool, bool abort);
/*
 * Since when (nfs_now_ms()) the server has not answered: set when the
 * last connection goes, or when a call is past retry_deadline_ms; 0 once
 * a reply comes.
 */
uint64_t nfs_pool_outage_since(struct nfs_pool *pool);
/* The last connection error text, "" if none; returns buf. */
char *nfs_pool_last_error(struct nfs_pool *pool, char *buf, size_t len);
/* Each address's state and counters into out[0..max); returns naddrs. */
unsigned int nfs_pool_addrs(struct nfs_pool *pool, struct be_addr_stat *out,
			    unsigned int max);

uint64_t nfs_now_ms(void);

/*
 * The MOUNT exchange with host, synchronous, on the calling thread,
 * bounded by timeout_ms.  Finds the longest prefix of path that the server
 * exports (its export list, else MNT on successive prefixes), MNTs it and
 * returns its root handle in fh/fh_len and in *covered the length of
 * path that the export covers (the rest is to be LOOKUPed).  On
 * failure returns -errno and one line in err.
 */
int nfs_mount_export(const char *spec, const char *host, const char *path,
		     unsigned int timeout_ms, unsigned char *fh,
		     uint32_t *fh_len, size_t *covered, char *err,
		     size_t errlen);

#endif /* STAGEFS_NFS_INT_H */
