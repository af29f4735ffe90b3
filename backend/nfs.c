/* SPDX-License-Identifier: GPL-2.0 */
/*
 * nfs.c - the NFSv3 backend: be_ops over libnfs's raw RPC layer.
 *
 * Every operation is handle based: a node carries the NFS file handle,
 * and each be_ops call becomes one or a few rpc_nfs3_*_async() calls that
 * nfs_conn.c carries over one of nconnect TCP connections.
 *
 * Namespace operations are synchronous: the calling thread builds the
 * arguments in a struct nfs_sync on its stack, submits it, and sleeps on
 * its condition until the connection thread has copied the reply out.
 *
 * Data operations (nfs_data.c) are asynchronous: a read or write is cut into pieces of
 * at most rsize/wsize (FSINFO rtmax/wtmax, capped at 1 MiB), spread over
 * the connections, and the caller's callback runs when the last piece
 * ends.  Writes are UNSTABLE.
 *
 * COMMIT and the write verifier.  The backend numbers the verifiers it
 * sees (a generation that moves whenever a WRITE or COMMIT reply carries
 * a new one: the server restarted).  Each node keeps, in a struct
 * nfs_wtrack (nfs_verf.c), the byte ranges of its completed writes that
 * no COMMIT covers yet, with their generation; when the generation moves
 * they become "lost" until the same bytes are written again.  A COMMIT
 * through commit_ranges() answers -EAGAIN when lost bytes lie in the
 * caller's ranges: the caller writes them again and commits again (the
 * flusher does so at once; it is not an error).  commit() answers -EAGAIN
 * while anything of the file is lost.  Nothing is resent from here: the
 * backend keeps no copy of the data.
 *
 * Thread safety: see backend.h.  State shared between threads: the
 * configuration (immutable after open), the verifier generation
 * (nb->verf_lock), each node's write bookkeeping (node->lock; the two
 * locks are never held together) and the node refcounts (atomic).  The
 * bookkeeping is per node object: write and commit a file through the
 * same node, as the cache does.
 */
#include "nfs_be.h"

#include <xxhash.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <nfsc/libnfs.h>
#include <nfsc/libnfs-raw.h>
#include <nfsc/libnfs-raw-nfs.h>

/* nfs_be.h has the objects and nfs_data.c the data operations. */
#define NFS_DEF_NCONNECT 4
#define NFS_MAX_NCONNECT 64
#define NFS_DEF_TIMEOUT_MS 10000
#define NFS_DEF_RETRY_MS 60000
#define NFS_HOSTS_FILE_MAX (1 << 20)
#define NFS_RDP_DIRCOUNT 16384
#define NFS_RDP_MAXCOUNT 65536

static struct nfs_node *node_new(const void *fh, uint32_t len,
				 uint64_t fileid)
{
	struct nfs_node *n;

	if (len == 0 || len > NFS3_FHSIZE)
		return NULL;
	n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	n->base.fileid = fileid;
	atomic_init(&n->base.refs, 1);
	n->base.hkey = XXH3_64bits(fh, len);
	n->fh_len = len;
	memcpy(n->fh, fh, len);
	pthread_mutex_init(&n->lock, NULL);
	return n;
}

static void nfsbe_node_free(struct be *be, struct be_node *bn)
{
	struct nfs_node *n = NN(bn);

	(void)be;
	pthread_mutex_destroy(&n->lock);
	nfs_wt_free(&n->wt);
	free(n);
}

static void time_from3(struct timespec *ts, const nfstime3 *t)
{
	ts->tv_sec = t->seconds;
	ts->tv_nsec = t->nseconds;
}

/* Clamped to what NFSv3 can hold, as the kernel client does. */
static void time_to3(nfstime3 *t, const struct timespec *ts)
{
	uint32_t sec, nsec;

	nfs_time_clamp((int64_t)ts->tv_sec, ts->tv_nsec, &sec, &nsec);
	t->seconds = sec;
	t->nseconds = nsec;
}

static uint32_t ftype_bits(ftype3 type)
{
	switch (type) {
	case NF3REG:
		return S_IFREG;
	case NF3DIR:
		return S_IFDIR;
	case NF3BLK:
		return S_IFBLK;
	case NF3CHR:
		return S_IFCHR;
	case NF3LNK:
		return S_IFLNK;
	case NF3SOCK:
		return S_IFSOCK;
	case NF3FIFO:
		return S_IFIFO;
	}
	return 0;
}

void nfs_attr_from3(struct be_attr *a, const fattr3 *f)
{
	memset(a, 0, sizeof(*a));
	a->fileid = f->fileid;
	a->size = f->size;
	a->used = f->used;
	a->rdev = makedev(f->rdev.specdata1, f->rdev.specdata2);
	a->mode = ftype_bits(f->type) | (f->mode & 07777);
	a->nlink = f->nlink;
	a->uid = f->uid;
	a->gid = f->gid;
	time_from3(&a->atime, &f->atime);
	time_from3(&a->mtime, &f->mtime);
	time_from3(&a->ctime, &f->ctime);
	a->change = 0;		/* NFSv3 has no change attribute */
}

/* A truncate to size drops what lies beyond it from the bookkeeping. */
static void node_truncated(struct nfs_node *n, uint64_t size)
{
	pthread_mutex_lock(&n->lock);
	nfs_wt_truncate(&n->wt, size);
	pthread_mutex_unlock(&n->lock);
}

/* A SETATTR of n: the attributes a COMMIT carried no longer hold. */
static void meta_changing(struct nfs_node *n)
{
	pthread_mutex_lock(&n->lock);
	n->meta_seq++;
	pthread_mutex_unlock(&n->lock);
}

/* ---- synchronous calls -------------------------------------------- */

enum nfs_sop {
	SOP_GETATTR,
	SOP_SETATTR,
	SOP_LOOKUP,
	SOP_CREATE,
	SOP_MKDIR,
	SOP_MKNOD,
	SOP_SYMLINK,
	SOP_READLINK,
	SOP_LINK,
	SOP_REMOVE,
	SOP_RMDIR,
	SOP_RENAME,
	SOP_READDIRPLUS,
	SOP_FSSTAT,
	SOP_FSINFO,
	SOP_PATHCONF,
	SOP_ACCESS,
};

static const char *const sop_names[] = {
	[SOP_GETATTR] = "GETATTR",	[SOP_SETATTR] = "SETATTR",
	[SOP_LOOKUP] = "LOOKUP",	[SOP_CREATE] = "CREATE",
	[SOP_MKDIR] = "MKDIR",		[SOP_MKNOD] = "MKNOD",
	[SOP_SYMLINK] = "SYMLINK",	[SOP_READLINK] = "READLINK",
	[SOP_LINK] = "LINK",		[SOP_REMOVE] = "REMOVE",
	[SOP_RMDIR] = "RMDIR",		[SOP_RENAME] = "RENAME",
	[SOP_READDIRPLUS] = "READDIRPLUS", [SOP_FSSTAT] = "FSSTAT",
	[SOP_FSINFO] = "FSINFO",	[SOP_PATHCONF] = "PATHCONF",
	[SOP_ACCESS] = "ACCESS",
};

/* One directory entry of a READDIRPLUS reply, copied out. */
struct rd_ent {
	char *name;
	uint64_t fileid;
	uint64_t cookie;
	int have_attr;
	int have_fh;
	fattr3 attr;
	uint32_t fh_len;
	unsigned char fh[NFS3_FHSIZE];
};

struct nfs_sync {
	struct nfs_call call;
	enum nfs_sop op;
	char what[80];		/* "LOOKUP name", for logs */
	int quiet;		/* open time: the caller reports errors */
	union {
		GETATTR3args getattr;
		SETATTR3args setattr;
		LOOKUP3args lookup;
		CREATE3args create;
		MKDIR3args mkdir;
		MKNOD3args mknod;
		SYMLINK3args symlink;
		READLINK3args readlink;
		LINK3args link;
		REMOVE3args remove;
		RMDIR3args rmdir;
		RENAME3args rename;
		READDIRPLUS3args rdp;
		FSSTAT3args fsstat;
		FSINFO3args fsinfo;
		PATHCONF3args pathconf;
		ACCESS3args access;
	} a;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	int done;		/* protected by lock */
	/* Results, written by the connection thread before done is set. */
	int err;		/* 0 or -errno */
	int stat;		/* nfsstat3, or -1 if the RPC itself failed */
	int have_fh;
	int have_attr;
	int have_dattr;		/* the directory's, after the change */
	uint32_t fh_len;
	unsigned char fh[NFS3_FHSIZE];
	fattr3 attr;
	fattr3 dattr;
	union {
		char *link;
		FSSTAT3resok fsstat;
		FSINFO3resok fsinfo;
		PATHCONF3resok pathconf;
		uint32_t access;	/* ACCESS3_* granted */
		struct {
			struct rd_ent *ents;
			size_t n;
			int eof;
			cookieverf3 verf;
		} rdp;
	} r;
};

static int sync_issue(struct nfs_call *call, struct rpc_context *rpc,
		      nfs_rpc_cb cb, void *priv)
{
	struct nfs_sync *s = container_of(call, struct nfs_sync, call);

	switch (s->op) {
	case SOP_GETATTR:
		return rpc_nfs3_getattr_async(rpc, cb, &s->a.getattr, priv);
	case SOP_SETATTR:
		return rpc_nfs3_setattr_async(rpc, cb, &s->a.setattr, priv);
	case SOP_LOOKUP:
		return rpc_nfs3_lookup_async(rpc, cb, &s->a.lookup, priv);
	case SOP_CREATE:
		return rpc_nfs3_create_async(rpc, cb, &s->a.create, priv);
	case SOP_MKDIR:
		return rpc_nfs3_mkdir_async(rpc, cb, &s->a.mkdir, priv);
	case SOP_MKNOD:
		return rpc_nfs3_mknod_async(rpc, cb, &s->a.mknod, priv);
	case SOP_SYMLINK: {
		/*
		 * libnfs 4.0 encodes a call into 4 KiB, header and
		 * credentials included (later versions add 512 bytes for
		 * SYMLINK): a target of more than 3,700 to 3,960 bytes,
		 * as the name and groups leave room, does not fit, and -2
		 * is its "ZDR error: Failed to encode".
		 * Nothing else in SYMLINK3args is long enough to overflow.
		 */
		int rc = rpc_nfs3_symlink_async(rpc, cb, &s->a.symlink, priv);

		return rc == -2 ? -ENAMETOOLONG : rc;
	}
	case SOP_READLINK:
		return rpc_nfs3_readlink_async(rpc, cb, &s->a.readlink, priv);
	case SOP_LINK:
		return rpc_nfs3_link_async(rpc, cb, &s->a.link, priv);
	case SOP_REMOVE:
		return rpc_nfs3_remove_async(rpc, cb, &s->a.remove, priv);
	case SOP_RMDIR:
		return rpc_nfs3_rmdir_async(rpc, cb, &s->a.rmdir, priv);
	case SOP_RENAME:
		return rpc_nfs3_rename_async(rpc, cb, &s->a.rename, priv);
	case SOP_READDIRPLUS:
		return rpc_nfs3_readdirplus_async(rpc, cb, &s->a.rdp, priv);
	case SOP_FSSTAT:
		return rpc_nfs3_fsstat_async(rpc, cb, &s->a.fsstat, priv);
	case SOP_FSINFO:
		return rpc_nfs3_fsinfo_async(rpc, cb, &s->a.fsinfo, priv);
	case SOP_PATHCONF:
		return rpc_nfs3_pathconf_async(rpc, cb, &s->a.pathconf, priv);
	case SOP_ACCESS:
		return rpc_nfs3_access_async(rpc, cb, &s->a.access, priv);
	}
	return -1;
}

static void take_fh(struct nfs_sync *s, const nfs_fh3 *fh)
{
	if (fh->data.data_len == 0 || fh->data.data_len > NFS3_FHSIZE)
		return;
	s->have_fh = 1;
	s->fh_len = fh->data.data_len;
	memcpy(s->fh, fh->data.data_val, fh->data.data_len);
}

static void take_post_fh(struct nfs_sync *s, const post_op_fh3 *fh)
{
	if (fh->handle_follows)
		take_fh(s, &fh->post_op_fh3_u.handle);
}

static void take_attr(struct nfs_sync *s, const post_op_attr *a)
{
	if (!a->attributes_follow)
		return;
	s->have_attr = 1;
	s->attr = a->post_op_attr_u.attributes;
}

/* The directory's attributes after a change in it that succeeded. */
static void take_dattr(struct nfs_sync *s, const wcc_data *w)
{
	if (!w->after.attributes_follow)
		return;
	s->have_dattr = 1;
	s->dattr = w->after.post_op_attr_u.attributes;
}

/* A reply that made an object (CREATE, MKDIR, MKNOD, SYMLINK). */
static void take_new(struct nfs_sync *s, nfsstat3 status, const post_op_fh3 *fh,
		     const post_op_attr *a, const wcc_data *dir)
{
	if (status != NFS3_OK)
		return;
	take_post_fh(s, fh);
	take_attr(s, a);
	take_dattr(s, dir);
}

/*
 * libnfs's ZDR decoder puts list elements at 4-byte aligned addresses:
 * read each one through an aligned copy (UBSan, and strict platforms).
 */
static void take_rdp(struct nfs_sync *s, const READDIRPLUS3resok *ok)
{
	const entryplus3 *next;
	entryplus3 e;
	size_t n = 0, i = 0;

	memcpy(s->r.rdp.verf, ok->cookieverf, sizeof(cookieverf3));
	s->r.rdp.eof = ok->reply.eof;
	for (next = ok->reply.entries; next; next = e.nextentry) {
		memcpy(&e, next, sizeof(e));
		n++;
	}
	s->r.rdp.ents = n ? calloc(n, sizeof(struct rd_ent)) : NULL;
	if (n && !s->r.rdp.ents)
		goto out_nomem;
	for (next = ok->reply.entries; next; next = e.nextentry, i++) {
		struct rd_ent *d = &s->r.rdp.ents[i];

		memcpy(&e, next, sizeof(e));
		d->name = strdup(e.name ? e.name : "");
		if (!d->name)
			goto out_nomem;
		s->r.rdp.n = i + 1;
		d->fileid = e.fileid;
		d->cookie = e.cookie;
		if (e.name_attributes.attributes_follow) {
			d->have_attr = 1;
			d->attr = e.name_attributes.post_op_attr_u.attributes;
		}
		if (e.name_handle.handle_follows) {
			const nfs_fh3 *fh = &e.name_handle.post_op_fh3_u.handle;

			if (fh->data.data_len > 0 &&
			    fh->data.data_len <= NFS3_FHSIZE) {
				d->have_fh = 1;
				d->fh_len = fh->data.data_len;
				memcpy(d->fh, fh->data.data_val, d->fh_len);
			}
		}
	}
	return;

out_nomem:
	s->err = -ENOMEM;
}

/* On the connection thread: copy what the caller needs, wake it. */
static void sync_done(struct nfs_call *call, int err, void *res)
{
	struct nfs_sync *s = container_of(call, struct nfs_sync, call);

	s->stat = -1;
	s->err = err;
	if (err == 0) {
		s->stat = *(int *)res;
		s->err = nfs_stat3_to_errno(s->stat);
	}
	if (err)
		goto out_wake;
	switch (s->op) {
	case SOP_GETATTR: {
		GETATTR3res *r = res;

		if (r->status == NFS3_OK) {
			s->have_attr = 1;
			s->attr = r->GETATTR3res_u.resok.obj_attributes;
		}
		break;
	}
	case SOP_SETATTR: {
		SETATTR3res *r = res;

		if (r->status == NFS3_OK)
			take_attr(s, &r->SETATTR3res_u.resok.obj_wcc.after);
		break;
	}
	case SOP_LOOKUP: {
		LOOKUP3res *r = res;

		if (r->status == NFS3_OK) {
			take_fh(s, &r->LOOKUP3res_u.resok.object);
			take_attr(s, &r->LOOKUP3res_u.resok.obj_attributes);
		}
		break;
	}
	case SOP_CREATE: {
		CREATE3res *r = res;

		take_new(s, r->status, &r->CREATE3res_u.resok.obj,
			 &r->CREATE3res_u.resok.obj_attributes,
			 &r->CREATE3res_u.resok.dir_wcc);
		break;
	}
	case SOP_MKDIR: {
		MKDIR3res *r = res;

		take_new(s, r->status, &r->MKDIR3res_u.resok.obj,
			 &r->MKDIR3res_u.resok.obj_attributes,
			 &r->MKDIR3res_u.resok.dir_wcc);
		break;
	}
	case SOP_MKNOD: {
		MKNOD3res *r = res;

		take_new(s, r->status, &r->MKNOD3res_u.resok.obj,
			 &r->MKNOD3res_u.resok.obj_attributes,
			 &r->MKNOD3res_u.resok.dir_wcc);
		break;
	}
	case SOP_SYMLINK: {
		SYMLINK3res *r = res;

		take_new(s, r->status, &r->SYMLINK3res_u.resok.obj,
			 &r->SYMLINK3res_u.resok.obj_attributes,
			 &r->SYMLINK3res_u.resok.dir_wcc);
		break;
	}
	case SOP_READLINK: {
		READLINK3res *r = res;

		if (r->status == NFS3_OK) {
			s->r.link = strdup(r->READLINK3res_u.resok.data ?
						   r->READLINK3res_u.resok.data :
						   "");
			if (!s->r.link)
				s->err = -ENOMEM;
		}
		break;
	}
	case SOP_LINK: {
		LINK3res *r = res;

		if (r->status == NFS3_OK) {
			take_attr(s, &r->LINK3res_u.resok.file_attributes);
			take_dattr(s, &r->LINK3res_u.resok.linkdir_wcc);
		}
		break;
	}
	case SOP_REMOVE: {
		REMOVE3res *r = res;

		if (r->status == NFS3_OK)
			take_dattr(s, &r->REMOVE3res_u.resok.dir_wcc);
		break;
	}
	case SOP_RMDIR: {
		RMDIR3res *r = res;

		if (r->status == NFS3_OK)
			take_dattr(s, &r->RMDIR3res_u.resok.dir_wcc);
		break;
	}
	case SOP_RENAME:
		break;
	case SOP_READDIRPLUS: {
		READDIRPLUS3res *r = res;

		if (r->status == NFS3_OK)
			take_rdp(s, &r->READDIRPLUS3res_u.resok);
		break;
	}
	case SOP_FSSTAT: {
		FSSTAT3res *r = res;

		if (r->status == NFS3_OK)
			s->r.fsstat = r->FSSTAT3res_u.resok;
		break;
	}
	case SOP_FSINFO: {
		FSINFO3res *r = res;

		if (r->status == NFS3_OK)
			s->r.fsinfo = r->FSINFO3res_u.resok;
		break;
	}
	case SOP_PATHCONF: {
		PATHCONF3res *r = res;

		if (r->status == NFS3_OK)
			s->r.pathconf = r->PATHCONF3res_u.resok;
		break;
	}
	case SOP_ACCESS: {
		ACCESS3res *r = res;

		if (r->status == NFS3_OK) {
			s->r.access = r->ACCESS3res_u.resok.access;
			take_attr(s, &r->ACCESS3res_u.resok.obj_attributes);
		}
		break;
	}
	}
out_wake:
	pthread_mutex_lock(&s->lock);
	s->done = 1;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

static void sync_init(struct nfs_sync *s, enum nfs_sop op, const char *name)
{
	memset(s, 0, sizeof(*s));
	s->op = op;
	if (name)
		snprintf(s->what, sizeof(s->what), "%s %.64s", sop_names[op],
			 name);
	else
		snprintf(s->what, sizeof(s->what), "%s", sop_names[op]);
	s->call.issue = sync_issue;
	s->call.done = sync_done;
	s->call.op = s->what;
	s->call.weight = NFS_SMALL_WEIGHT;
}

static void sync_free(struct nfs_sync *s)
{
	size_t i;

	if (s->op == SOP_READLINK)
		free(s->r.link);
	if (s->op == SOP_READDIRPLUS) {
		for (i = 0; i < s->r.rdp.n; i++)
			free(s->r.rdp.ents[i].name);
		free(s->r.rdp.ents);
	}
}

/* Is this error an expected answer rather than a problem? */
static int err_is_quiet(enum nfs_sop op, int err)
{
	if (err == -ENOENT)
		return 1;
	if (err == -EEXIST)
		return op == SOP_CREATE || op == SOP_MKDIR || op == SOP_MKNOD ||
		       op == SOP_SYMLINK || op == SOP_LINK ||
		       op == SOP_RENAME;
	if (err == -ENOTEMPTY)
		return op == SOP_RMDIR || op == SOP_RENAME;
	return 0;
}

/* Run s to its end; logs an NFS error once.  Returns s->err. */
/* The statistics kind of a namespace RPC (be_count), or -1. */
static int sop_call(enum nfs_sop op)
{
	switch (op) {
	case SOP_LOOKUP:
		return BE_CALL_LOOKUP;
	case SOP_GETATTR:
		return BE_CALL_GETATTR;
	case SOP_SETATTR:
		return BE_CALL_SETATTR;
	case SOP_READDIRPLUS:
		return BE_CALL_READDIR;
	case SOP_ACCESS:
		return BE_CALL_ACCESS;
	case SOP_CREATE:
	case SOP_MKDIR:
	case SOP_MKNOD:
	case SOP_SYMLINK:
	case SOP_LINK:
		return BE_CALL_CREATE;
	case SOP_REMOVE:
	case SOP_RMDIR:
		return BE_CALL_REMOVE;
	case SOP_RENAME:
		return BE_CALL_RENAME;
	default:
		return -1;
	}
}

static int sync_run(struct nfs_be *nb, const struct be_cred *cred,
		    struct nfs_sync *s, uint64_t deadline_ms)
{
	unsigned int wait = be_wait_get();
	uint64_t until = 0;
	int kind = sop_call(s->op);

	if (kind >= 0)
		be_count(&nb->be, (enum be_call)kind);
	if (wait && !deadline_ms)
		deadline_ms = until = nfs_now_ms() + wait;
	s->call.cred = cred;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	s->call.deadline_ms = deadline_ms;
	nfs_pool_submit(nb->pool, &s->call);
	pthread_mutex_lock(&s->lock);
	while (!s->done)
		pthread_cond_wait(&s->cond, &s->lock);
	pthread_mutex_unlock(&s->lock);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);

	/* be_wait_set()'s limit, not the server's answer: the caller's */
	if (until && s->err && s->stat < 0 && s->err != -ESHUTDOWN &&
	    nfs_now_ms() >= until) {
		s->err = -ETIMEDOUT;
		s->quiet = 1;
	}
	if (s->err && s->stat >= 0) {
		int quiet = s->quiet || err_is_quiet(s->op, s->err) ||
			    (s->call.tries > 1 && s->err == -ENOENT);

		log_msg(quiet ? LOG_LVL_DEBUG : LOG_LVL_WARN, "nfs",
			"%s: %s: %s (%s)", nb->be.spec, s->what,
			strerror(-s->err), nfs_stat3_str(s->stat));
	} else if (s->err) {
		/* ENAMETOOLONG: the caller's argument, not a fault here */
		log_msg(s->quiet ? LOG_LVL_DEBUG :
			s->err == -ENAMETOOLONG ? LOG_LVL_WARN : LOG_LVL_ERR,
			"nfs",
			"%s: %s: %s (%s)", nb->be.spec, s->what,
			strerror(-s->err), s->call.why);
	}
	return s->err;
}

static void diropargs(diropargs3 *d, struct nfs_node *dir, const char *name)
{
	fh_of(&d->dir, dir);
	d->name = (char *)name;
}

static int nfsbe_getattr_fh(struct nfs_be *nb, const struct be_cred *cred,
			    const unsigned char *fh, uint32_t len,
			    const char *name, fattr3 *out, uint64_t deadline)
{
	struct nfs_sync s;
	int rc;

	sync_init(&s, SOP_GETATTR, name);
	s.a.getattr.object.data.data_len = len;
	s.a.getattr.object.data.data_val = (char *)fh;
	rc = sync_run(nb, cred, &s, deadline);
	if (rc == 0)
		*out = s.attr;
	sync_free(&s);
	return rc;
}

/*
 * Turn the handle and attributes of a sync reply into a node: LOOKUP if
 * the server sent no handle, GETATTR if it sent no attributes.
 */
static int sync_make_node(struct nfs_be *nb, const struct be_cred *cred,
			  struct nfs_sync *s,
			  struct nfs_node *dir, const char *name,
			  struct be_node **out, struct be_attr *attr)
{
	struct nfs_node *n;
	int rc;

	if (!s->have_fh) {
		struct nfs_sync l;

		sync_init(&l, SOP_LOOKUP, name);
		diropargs(&l.a.lookup.what, dir, name);
		rc = sync_run(nb, cred, &l, 0);
		if (rc == 0 && !l.have_fh)
			rc = -EIO;
		if (rc < 0) {
			sync_free(&l);
			return rc;
		}
		s->have_fh = 1;
		s->fh_len = l.fh_len;
		memcpy(s->fh, l.fh, l.fh_len);
		if (!s->have_attr && l.have_attr) {
			s->have_attr = 1;
			s->attr = l.attr;
		}
		sync_free(&l);
	}
	if (!s->have_attr) {
		rc = nfsbe_getattr_fh(nb, cred, s->fh, s->fh_len, name, &s->attr, 0);
		if (rc < 0)
			return rc;
		s->have_attr = 1;
	}
	if (attr)
		nfs_attr_from3(attr, &s->attr);
	if (out) {
		n = node_new(s->fh, s->fh_len, s->attr.fileid);
		if (!n)
			return -ENOMEM;
		*out = &n->base;
	}
	return 0;
}

/*
 * A directory's attributes from this node's own changes in it.  The reply
 * to a CREATE, MKDIR, MKNOD, SYMLINK, LINK, REMOVE or RMDIR carries the
 * directory's attributes after the change (wcc_data); they answer a
 * GETATTR of the directory for nb->dir_attr_ms (the mount's attr_timeout,
 * at most 1 s), as the kernel NFS client's attribute cache takes them.
 * The kernel's FUSE asks right after each create in a directory (the
 * create made its view of the directory stale): a create costs one RPC
 * fewer.  Kept only from a change that no other change of the directory
 * through this node overlapped: replies on several connections may come
 * back in another order than the server ran the calls.  A RENAME or a
 * SETATTR forgets them.
 */
struct dir_change {
	uint64_t seq;
	bool alone;
};

static void dir_change_begin(struct nfs_node *d, struct dir_change *c)
{
	pthread_mutex_lock(&d->lock);
	c->alone = d->dchanging == 0;
	c->seq = ++d->dstarted;
	d->dchanging++;
	d->dattr_set = false;
	pthread_mutex_unlock(&d->lock);
}

/* after: the directory's attributes after the change, or NULL */
static void dir_change_end(struct nfs_be *nb, struct nfs_node *d,
			   const struct dir_change *c, const fattr3 *after)
{
	pthread_mutex_lock(&d->lock);
	d->dchanging--;
	if (after && nb->dir_attr_ms && c->alone && d->dstarted == c->seq) {
		d->dattr = *after;
		d->dattr_ms = nfs_now_ms();
		d->dattr_set = true;
	}
	pthread_mutex_unlock(&d->lock);
}

static void dir_change_sync(struct nfs_be *nb, struct nfs_node *d,
			    const struct dir_change *c, int rc,
			    const struct nfs_sync *s)
{
	dir_change_end(nb, d, c, rc == 0 && s->have_dattr ? &s->dattr : NULL);
}

static bool dir_attr_fresh(struct nfs_be *nb, struct nfs_node *n, fattr3 *out)
{
	bool fresh;

	pthread_mutex_lock(&n->lock);
	fresh = n->dattr_set && n->dchanging == 0 &&
		nfs_now_ms() - n->dattr_ms < nb->dir_attr_ms;
	if (fresh)
		*out = n->dattr;
	pthread_mutex_unlock(&n->lock);
	return fresh;
}

/* ---- namespace operations ------------------------------------------ */

static int nfsbe_getattr(struct be *be, const struct be_cred *cred,
			 struct be_node *node, struct be_attr *attr)
{
	struct nfs_node *n = NN(node);
	fattr3 f;
	int rc = 0;

	if (!dir_attr_fresh(NB(be), n, &f)) {
		rc = nfsbe_getattr_fh(NB(be), cred, n->fh, n->fh_len, NULL,
				      &f, 0);
	} else {
		be_count(be, BE_CALL_GETATTR_CACHED);
	}
	if (rc == 0 && attr)
		nfs_attr_from3(attr, &f);
	return rc;
}

static int nfsbe_root(struct be *be, const struct be_cred *cred,
		      struct be_node **out, struct be_attr *attr)
{
	struct nfs_be *nb = NB(be);
	int rc;

	if (attr) {
		rc = nfsbe_getattr(be, cred, &nb->root->base, attr);
		if (rc < 0)
			return rc;
	}
	if (out)
		*out = be_node_get(&nb->root->base);
	return 0;
}

static int nfsbe_lookup(struct be *be, const struct be_cred *cred,
			struct be_node *dir, const char *name,
			struct be_node **out, struct be_attr *attr)
{
	struct nfs_be *nb = NB(be);
	struct nfs_sync s;
	int rc;

	sync_init(&s, SOP_LOOKUP, name);
	diropargs(&s.a.lookup.what, NN(dir), name);
	rc = sync_run(nb, cred, &s, 0);
	if (rc == 0 && !s.have_fh)
		rc = -EIO;
	if (rc == 0)
		rc = sync_make_node(nb, cred, &s, NN(dir), name, out, attr);
	sync_free(&s);
	return rc;
}

/*
 * The attributes of a new object: its mode only.  The request goes out
 * with the caller's credentials, and the server makes the caller the
 * owner (with the group of a setgid directory), as for the kernel client.
 */
static void sattr_mode(sattr3 *sa, uint32_t mode)
{
	memset(sa, 0, sizeof(*sa));
	if (mode != UINT32_MAX) {
		sa->mode.set_it = 1;
		sa->mode.set_mode3_u.mode = mode & 07777;
	}
}

static int nfsbe_setattr(struct be *be, const struct be_cred *cred,
			 struct be_node *node, const struct be_setattr *sa,
			 struct be_attr *attr)
{
	struct nfs_be *nb = NB(be);
	struct nfs_node *n = NN(node);
	struct dir_change dc;
	struct nfs_sync s;
	sattr3 *a;
	int rc;

	sync_init(&s, SOP_SETATTR, NULL);
	fh_of(&s.a.setattr.object, n);
	a = &s.a.setattr.new_attributes;
	if (sa->valid & BE_SET_MODE) {
		a->mode.set_it = 1;
		a->mode.set_mode3_u.mode = sa->mode & 07777;
	}
	if (sa->valid & BE_SET_UID) {
		a->uid.set_it = 1;
		a->uid.set_uid3_u.uid = sa->uid;
	}
	if (sa->valid & BE_SET_GID) {
		a->gid.set_it = 1;
		a->gid.set_gid3_u.gid = sa->gid;
	}
	if (sa->valid & BE_SET_SIZE) {
		a->size.set_it = 1;
		a->size.set_size3_u.size = sa->size;
	}
	if (sa->valid & BE_SET_ATIME_NOW) {
		a->atime.set_it = SET_TO_SERVER_TIME;
	} else if (sa->valid & BE_SET_ATIME) {
		a->atime.set_it = SET_TO_CLIENT_TIME;
		time_to3(&a->atime.set_atime_u.atime, &sa->atime);
	}
	if (sa->valid & BE_SET_MTIME_NOW) {
		a->mtime.set_it = SET_TO_SERVER_TIME;
	} else if (sa->valid & BE_SET_MTIME) {
		a->mtime.set_it = SET_TO_CLIENT_TIME;
		time_to3(&a->mtime.set_mtime_u.mtime, &sa->mtime);
	}
	s.a.setattr.guard.check = 0;
	meta_changing(n);
	dir_change_begin(n, &dc);
	rc = sync_run(nb, cred, &s, 0);
	dir_change_end(nb, n, &dc, NULL);
	meta_changing(n);
	if (rc == 0 && (sa->valid & BE_SET_SIZE))
		node_truncated(n, sa->size);
	if (rc == 0 && attr) {
		if (!s.have_attr)
			rc = nfsbe_getattr_fh(nb, cred, n->fh, n->fh_len, NULL, &s.attr,
					    0);
		if (rc == 0)
			nfs_attr_from3(attr, &s.attr);
	}
	sync_free(&s);
	return rc;
}

static int nfsbe_create(struct be *be, const struct be_cred *cred,
			struct be_node *dir, const char *name, uint32_t mode,
			int exclusive, struct be_node **out,
			struct be_attr *attr)
{
	struct nfs_be *nb = NB(be);
	struct be_node *node = NULL;
	struct dir_change dc;
	struct nfs_sync s;
	uint32_t verf[2];
	bool excl = exclusive && !atomic_load(&nb->no_excl);
	int rc;

again:
	sync_init(&s, SOP_CREATE, name);
	diropargs(&s.a.create.where, NN(dir), name);
	if (excl) {
		/*
		 * EXCLUSIVE, as the NFS client makes an O_EXCL create: the
		 * server keeps the verifier with the file, so a create sent
		 * again after a lost reply finds its own file, not EEXIST.
		 * Words below 2^31: servers keep them as times.
		 */
		verf[0] = nb->verf_salt;
		verf[1] = (uint32_t)atomic_fetch_add(&nb->verf_seq, 1) &
			  INT32_MAX;
		s.a.create.how.mode = EXCLUSIVE;
		memcpy(s.a.create.how.createhow3_u.verf, verf, sizeof(verf));
	} else {
		s.a.create.how.mode = exclusive ? GUARDED : UNCHECKED;
		/* obj_attributes and g_obj_attributes share the union */
		sattr_mode(&s.a.create.how.createhow3_u.obj_attributes, mode);
	}
	dir_change_begin(NN(dir), &dc);
	rc = sync_run(nb, cred, &s, 0);
	dir_change_sync(nb, NN(dir), &dc, rc, &s);
	if (excl && (rc == -EOPNOTSUPP || rc == -ENOTSUP)) {
		/* not this server: GUARDED from now on */
		log_msg(LOG_LVL_INFO, "nfs",
			"%s: the server has no EXCLUSIVE create; O_EXCL creates go GUARDED",
			nb->be.spec);
		atomic_store(&nb->no_excl, true);
		excl = false;
		sync_free(&s);
		goto again;
	}
	if (rc == -EEXIST && excl && s.call.tries > 1)
		rc = be_resent_answer(be, cred, &(struct be_resent){
			.op = BE_RESENT_CREATE, .dir = dir, .name = name,
			.verf = { verf[0], verf[1] } }, rc, &node, attr);
	else if (rc == 0)
		rc = sync_make_node(nb, cred, &s, NN(dir), name, &node, attr);
	sync_free(&s);
	if (rc == 0 && excl) {
		/* the verifier sits in atime and mtime; the mode is not set */
		struct be_setattr sa = {
			.valid = BE_SET_MODE | BE_SET_ATIME_NOW |
				 BE_SET_MTIME_NOW,
			.mode = mode,
		};

		rc = nfsbe_setattr(be, cred, node, &sa, attr);
	}
	if (rc == 0 && out)
		*out = node;
	else
		be_node_put(be, node);
	return rc;
}

static int nfsbe_mkdir(struct be *be, const struct be_cred *cred,
		       struct be_node *dir, const char *name, uint32_t mode,
		       struct be_node **out, struct be_attr *attr)
{
	struct nfs_be *nb = NB(be);
	struct dir_change dc;
	struct nfs_sync s;
	int rc;

	sync_init(&s, SOP_MKDIR, name);
	diropargs(&s.a.mkdir.where, NN(dir), name);
	sattr_mode(&s.a.mkdir.attributes, mode);
	dir_change_begin(NN(dir), &dc);
	rc = sync_run(nb, cred, &s, 0);
	dir_change_sync(nb, NN(dir), &dc, rc, &s);
	if (rc < 0 && s.call.tries > 1) {
		rc = be_resent_answer(be, cred, &(struct be_resent){
			.op = BE_RESENT_MKDIR, .dir = dir, .name = name },
			rc, out, attr);
		sync_free(&s);
		return rc;
	}
	if (rc == 0)
		rc = sync_make_node(nb, cred, &s, NN(dir), name, out, attr);
	sync_free(&s);
	return rc;
}

static int nfsbe_mknod(struct be *be, const struct be_cred *cred,
		       struct be_node *dir, const char *name, uint32_t mode,
		       uint64_t rdev, struct be_node **out,
		       struct be_attr *attr)
{
	struct nfs_be *nb = NB(be);
	struct dir_change dc;
	mknoddata3 *w;
	struct nfs_sync s;
	int rc;

	if (S_ISREG(mode))
		return nfsbe_create(be, cred, dir, name, mode, 1, out, attr);
	sync_init(&s, SOP_MKNOD, name);
	diropargs(&s.a.mknod.where, NN(dir), name);
	w = &s.a.mknod.what;
	switch (mode & S_IFMT) {
	case S_IFIFO:
		w->type = NF3FIFO;
		sattr_mode(&w->mknoddata3_u.pipe_attributes, mode);
		break;
	case S_IFSOCK:
		w->type = NF3SOCK;
		sattr_mode(&w->mknoddata3_u.sock_attributes, mode);
		break;
	case S_IFCHR:
	case S_IFBLK:
		/* chr_device and blk_device share the union */
		w->type = S_ISCHR(mode) ? NF3CHR : NF3BLK;
		sattr_mode(&w->mknoddata3_u.chr_device.dev_attributes, mode);
		w->mknoddata3_u.chr_device.spec.specdata1 = major(rdev);
		w->mknoddata3_u.chr_device.spec.specdata2 = minor(rdev);
		break;
	default:
		return -EINVAL;
	}
	dir_change_begin(NN(dir), &dc);
	rc = sync_run(nb, cred, &s, 0);
	dir_change_sync(nb, NN(dir), &dc, rc, &s);
	if (rc == 0)
		rc = sync_make_node(nb, cred, &s, NN(dir), name, out, attr);
	sync_free(&s);
	return rc;
}

static int nfsbe_symlink(struct be *be, const struct be_cred *cred,
			 struct be_node *dir, const char *name,
			 const char *target, struct be_node **out,
			 struct be_attr *attr)
{
	struct nfs_be *nb = NB(be);
	struct dir_change dc;
	struct nfs_sync s;
	int rc;

	rc = nfs_symlink_len_ok(strlen(target));
	if (rc < 0)
		return rc;
	sync_init(&s, SOP_SYMLINK, name);
	diropargs(&s.a.symlink.where, NN(dir), name);
	sattr_mode(&s.a.symlink.symlink.symlink_attributes, UINT32_MAX);
	s.a.symlink.symlink.symlink_data = (char *)target;
	dir_change_begin(NN(dir), &dc);
	rc = sync_run(nb, cred, &s, 0);
	dir_change_sync(nb, NN(dir), &dc, rc, &s);
	if (rc == 0)
		rc = sync_make_node(nb, cred, &s, NN(dir), name, out, attr);
	sync_free(&s);
	return rc;
}

static int nfsbe_readlink(struct be *be, const struct be_cred *cred,
			  struct be_node *node, char *buf, size_t size)
{
	struct nfs_sync s;
	size_t len;
	int rc;

	sync_init(&s, SOP_READLINK, NULL);
	fh_of(&s.a.readlink.symlink, NN(node));
	rc = sync_run(NB(be), cred, &s, 0);
	if (rc == 0) {
		len = strlen(s.r.link);
		memcpy(buf, s.r.link, len < size ? len : size);
		if (len < size)
			buf[len] = '\0';
		rc = len > INT_MAX ? -ENAMETOOLONG : (int)len;
	}
	sync_free(&s);
	return rc;
}

static int nfsbe_link(struct be *be, const struct be_cred *cred,
		      struct be_node *node, struct be_node *dir,
		      const char *name, struct be_attr *attr)
{
	struct nfs_be *nb = NB(be);
	struct nfs_node *n = NN(node);
	struct dir_change dc;
	struct nfs_sync s;
	int rc;

	sync_init(&s, SOP_LINK, name);
	fh_of(&s.a.link.file, n);
	diropargs(&s.a.link.link, NN(dir), name);
	dir_change_begin(NN(dir), &dc);
	rc = sync_run(nb, cred, &s, 0);
	dir_change_sync(nb, NN(dir), &dc, rc, &s);
	if (rc < 0 && s.call.tries > 1) {
		rc = be_resent_answer(be, cred, &(struct be_resent){
			.op = BE_RESENT_LINK, .dir = dir, .name = name,
			.fileid = node->fileid }, rc, NULL, attr);
		sync_free(&s);
		return rc;
	}
	if (rc == 0 && attr) {
		if (!s.have_attr)
			rc = nfsbe_getattr_fh(nb, cred, n->fh, n->fh_len, name, &s.attr,
					    0);
		if (rc == 0)
			nfs_attr_from3(attr, &s.attr);
	}
	sync_free(&s);
	return rc;
}

static int nfsbe_unlink(struct be *be, const struct be_cred *cred,
			struct be_node *dir, const char *name)
{
	struct dir_change dc;
	struct nfs_sync s;
	int rc;

	sync_init(&s, SOP_REMOVE, name);
	diropargs(&s.a.remove.object, NN(dir), name);
	dir_change_begin(NN(dir), &dc);
	rc = sync_run(NB(be), cred, &s, 0);
	dir_change_sync(NB(be), NN(dir), &dc, rc, &s);
	if (rc < 0 && s.call.tries > 1)
		rc = be_resent_answer(be, cred, &(struct be_resent){
			.op = BE_RESENT_REMOVE, .dir = dir, .name = name },
			rc, NULL, NULL);
	sync_free(&s);
	return rc;
}

static int nfsbe_rmdir(struct be *be, const struct be_cred *cred,
		       struct be_node *dir, const char *name)
{
	struct dir_change dc;
	struct nfs_sync s;
	int rc;

	sync_init(&s, SOP_RMDIR, name);
	diropargs(&s.a.rmdir.object, NN(dir), name);
	dir_change_begin(NN(dir), &dc);
	rc = sync_run(NB(be), cred, &s, 0);
	dir_change_sync(NB(be), NN(dir), &dc, rc, &s);
	if (rc < 0 && s.call.tries > 1)
		rc = be_resent_answer(be, cred, &(struct be_resent){
			.op = BE_RESENT_RMDIR, .dir = dir, .name = name },
			rc, NULL, NULL);
	sync_free(&s);
	return rc;
}

/*
 * NFSv3 RENAME always replaces.  NOREPLACE is emulated with a LOOKUP
 * first: best effort, a name created by another client between the two
 * calls is replaced.  EXCHANGE cannot be done: -EINVAL.
 */
static int nfsbe_rename(struct be *be, const struct be_cred *cred,
			struct be_node *olddir, const char *oldname,
			struct be_node *newdir, const char *newname,
			unsigned int flags)
{
	struct dir_change dc[2];
	struct nfs_sync s;
	int rc;

	if (flags & ~BE_RENAME_NOREPLACE)
		return -EINVAL;
	if (flags & BE_RENAME_NOREPLACE) {
		sync_init(&s, SOP_LOOKUP, newname);
		diropargs(&s.a.lookup.what, NN(newdir), newname);
		rc = sync_run(NB(be), cred, &s, 0);
		sync_free(&s);
		if (rc == 0)
			return -EEXIST;
		if (rc != -ENOENT)
			return rc;
	}
	sync_init(&s, SOP_RENAME, oldname);
	diropargs(&s.a.rename.from, NN(olddir), oldname);
	diropargs(&s.a.rename.to, NN(newdir), newname);
	dir_change_begin(NN(olddir), &dc[0]);
	dir_change_begin(NN(newdir), &dc[1]);
	rc = sync_run(NB(be), cred, &s, 0);
	dir_change_end(NB(be), NN(newdir), &dc[1], NULL);
	dir_change_end(NB(be), NN(olddir), &dc[0], NULL);
	if (rc < 0 && s.call.tries > 1)
		rc = be_resent_answer(be, cred, &(struct be_resent){
			.op = BE_RESENT_RENAME, .dir = olddir,
			.name = oldname, .newdir = newdir,
			.newname = newname }, rc, NULL, NULL);
	sync_free(&s);
	return rc;
}

static int nfsbe_readdir(struct be *be, const struct be_cred *cred,
			 struct be_node *dir, be_dirent_fn fn, void *arg)
{
	struct nfs_be *nb = NB(be);
	cookieverf3 verf;
	uint64_t cookie = 0;
	int rc = 0, eof = 0;
	size_t i;

	memset(verf, 0, sizeof(verf));
	while (!eof && rc == 0) {
		struct nfs_sync s;

		sync_init(&s, SOP_READDIRPLUS, NULL);
		fh_of(&s.a.rdp.dir, NN(dir));
		s.a.rdp.cookie = cookie;
		memcpy(s.a.rdp.cookieverf, verf, sizeof(verf));
		s.a.rdp.dircount = NFS_RDP_DIRCOUNT;
		s.a.rdp.maxcount = NFS_RDP_MAXCOUNT;
		rc = sync_run(nb, cred, &s, 0);
		if (rc < 0) {
			sync_free(&s);
			break;
		}
		eof = s.r.rdp.eof;
		memcpy(verf, s.r.rdp.verf, sizeof(verf));
		if (s.r.rdp.n == 0 && !eof) {
			log_msg(LOG_LVL_WARN, "nfs",
				"%s: READDIRPLUS: empty reply without EOF, stopping",
				be->spec);
			eof = 1;
		}
		for (i = 0; i < s.r.rdp.n && rc == 0; i++) {
			struct rd_ent *d = &s.r.rdp.ents[i];
			struct nfs_node *n = NULL;
			struct be_attr a;

			cookie = d->cookie;
			if (!strcmp(d->name, ".") || !strcmp(d->name, ".."))
				continue;
			if (d->have_attr)
				nfs_attr_from3(&a, &d->attr);
			if (d->have_fh)
				n = node_new(d->fh, d->fh_len,
					     d->have_attr ? d->attr.fileid :
							    d->fileid);
			rc = fn(arg, d->name, d->fileid, d->have_attr ? &a : NULL,
				n ? &n->base : NULL);
			if (n)
				be_node_put(be, &n->base);
		}
		sync_free(&s);
	}
	return rc;
}

static int nfsbe_statfs(struct be *be, const struct be_cred *cred,
			struct be_node *node, struct statvfs *st)
{
	struct nfs_be *nb = NB(be);
	struct nfs_node *n = node ? NN(node) : nb->root;
	struct nfs_sync s;
	const unsigned long frsize = 4096;
	int rc;

	sync_init(&s, SOP_FSSTAT, NULL);
	fh_of(&s.a.fsstat.fsroot, n);
	rc = sync_run(nb, cred, &s, 0);
	if (rc == 0) {
		const FSSTAT3resok *f = &s.r.fsstat;

		memset(st, 0, sizeof(*st));
		st->f_bsize = nb->wtpref ? nb->wtpref : frsize;
		st->f_frsize = frsize;
		st->f_blocks = f->tbytes / frsize;
		st->f_bfree = f->fbytes / frsize;
		st->f_bavail = f->abytes / frsize;
		st->f_files = f->tfiles;
		st->f_ffree = f->ffiles;
		st->f_favail = f->afiles;
		st->f_namemax = nb->namemax;
	}
	sync_free(&s);
	return rc;
}

static int nfsbe_setxattr(struct be *be, const struct be_cred *cred,
			  struct be_node *node, const char *name,
			  const void *value, size_t size, int flags)
{
	(void)be, (void)cred, (void)node, (void)name, (void)value, (void)size, (void)flags;
	return -EOPNOTSUPP;
}

static int nfsbe_getxattr(struct be *be, const struct be_cred *cred,
			  struct be_node *node, const char *name, void *value,
			  size_t size)
{
	(void)be, (void)cred, (void)node, (void)name, (void)value, (void)size;
	return -EOPNOTSUPP;
}

/*
 * NFSv3 has no extended attributes.  The kernel NFSv3 client lists none
 * (an empty list, not an error: cp -a, rsync -X and tar --xattrs go on)
 * and refuses to get, set or remove a user.* one with EOPNOTSUPP.
 */
static int nfsbe_listxattr(struct be *be, const struct be_cred *cred,
			   struct be_node *node, char *list, size_t size)
{
	(void)be, (void)cred, (void)node, (void)list, (void)size;
	return 0;
}

static int nfsbe_removexattr(struct be *be, const struct be_cred *cred,
			     struct be_node *node, const char *name)
{
	(void)be, (void)cred, (void)node, (void)name;
	return -EOPNOTSUPP;
}

/*
 * ACCESS, as the kernel client asks it at open: the server decides with
 * the caller's credentials (mode bits, ACLs, root squashing).  X_OK is
 * EXECUTE for a file and LOOKUP for a directory.
 */
static int nfsbe_access(struct be *be, const struct be_cred *cred,
			struct be_node *node, int mask, struct be_attr *attr)
{
	struct nfs_be *nb = NB(be);
	struct nfs_node *n = NN(node);
	uint32_t want = 0, x;
	struct nfs_sync s;
	int rc;

	if (mask & R_OK)
		want |= ACCESS3_READ;
	if (mask & W_OK)
		want |= ACCESS3_MODIFY;
	if (mask & X_OK)
		want |= ACCESS3_EXECUTE | ACCESS3_LOOKUP;
	sync_init(&s, SOP_ACCESS, NULL);
	fh_of(&s.a.access.object, n);
	s.a.access.access = want ? want : ACCESS3_READ;
	rc = sync_run(nb, cred, &s, 0);
	if (rc == 0 && !s.have_attr)
		rc = nfsbe_getattr_fh(nb, cred, n->fh, n->fh_len, NULL, &s.attr,
				      0);
	if (rc == 0) {
		x = s.attr.type == NF3DIR ? ACCESS3_LOOKUP : ACCESS3_EXECUTE;
		want &= ~(uint32_t)(ACCESS3_EXECUTE | ACCESS3_LOOKUP);
		if (mask & X_OK)
			want |= x;
		if ((s.r.access & want) != want)
			rc = -EACCES;
		if (attr)
			nfs_attr_from3(attr, &s.attr);
	}
	sync_free(&s);
	return rc;
}

static int nfsbe_node_encode(struct be *be, struct be_node *node, void *buf,
			   size_t *len)
{
	struct nfs_node *n = NN(node);

	(void)be;
	if (*len < n->fh_len)
		return -ENOSPC;
	memcpy(buf, n->fh, n->fh_len);
	*len = n->fh_len;
	return 0;
}

static int nfsbe_node_decode(struct be *be, const struct be_cred *cred,
			     const void *buf, size_t len, struct be_node **out,
			     struct be_attr *attr)
{
	struct nfs_be *nb = NB(be);
	struct nfs_node *n;
	fattr3 f;
	int rc;

	if (len == 0 || len > NFS3_FHSIZE)
		return -EINVAL;
	rc = nfsbe_getattr_fh(nb, cred, buf, (uint32_t)len, NULL, &f, 0);
	if (rc < 0)
		return rc;
	if (attr)
		nfs_attr_from3(attr, &f);
	if (out) {
		n = node_new(buf, (uint32_t)len, f.fileid);
		if (!n)
			return -ENOMEM;
		*out = &n->base;
	}
	return 0;
}

/* ---- open and close ---------------------------------------------------- */

static void nfsbe_destroy(struct be *be)
{
	struct nfs_be *nb = NB(be);

	nfs_pool_destroy(nb->pool);
	if (nb->root)
		be_node_put(be, &nb->root->base);
	nfs_spec_free(&nb->url);
	pthread_mutex_destroy(&nb->verf_lock);
	free(be->spec);
	free(nb);
}

static uint64_t nfsbe_unreachable_since(struct be *be)
{
	return nfs_pool_outage_since(NB(be)->pool);
}

static void nfsbe_release(struct be *be, bool abort)
{
	nfs_pool_release(NB(be)->pool, abort);
}

static unsigned int nfsbe_addrs(struct be *be, struct be_addr_stat *out,
				unsigned int max)
{
	return nfs_pool_addrs(NB(be)->pool, out, max);
}

static const struct be_ops nfsbe_ops = {
	.version = BE_OPS_VERSION,
	.name = "nfs",
	.destroy = nfsbe_destroy,
	.node_free = nfsbe_node_free,
	.root = nfsbe_root,
	.lookup = nfsbe_lookup,
	.getattr = nfsbe_getattr,
	.setattr = nfsbe_setattr,
	.create = nfsbe_create,
	.mkdir = nfsbe_mkdir,
	.mknod = nfsbe_mknod,
	.symlink = nfsbe_symlink,
	.readlink = nfsbe_readlink,
	.link = nfsbe_link,
	.unlink = nfsbe_unlink,
	.rmdir = nfsbe_rmdir,
	.rename = nfsbe_rename,
	.readdir = nfsbe_readdir,
	.statfs = nfsbe_statfs,
	.setxattr = nfsbe_setxattr,
	.getxattr = nfsbe_getxattr,
	.listxattr = nfsbe_listxattr,
	.removexattr = nfsbe_removexattr,
	.read = nfsbe_read,
	.write = nfsbe_write,
	.commit = nfsbe_commit,
	.commit_ranges = nfsbe_commit_ranges,
	.committed_attr = nfsbe_committed_attr,
	.node_encode = nfsbe_node_encode,
	.node_decode = nfsbe_node_decode,
	.access = nfsbe_access,
	.unreachable_since = nfsbe_unreachable_since,
	.release = nfsbe_release,
	.addrs = nfsbe_addrs,
};

/* One line for an open-time call that failed. */
static void open_err(struct nfs_be *nb, struct nfs_sync *s, const char *path,
		     unsigned int timeout_ms, char *err, size_t errlen)
{
	char why[256];

	if (s->stat < 0) {
		nfs_pool_last_error(nb->pool, why, sizeof(why));
		if (!why[0] || s->err == -ETIMEDOUT)
			snprintf(why, sizeof(why), "no answer within %u ms",
				 timeout_ms);
		snprintf(err, errlen, "%s: server %s not reachable: %s",
			 nb->be.spec, nb->url.host, why);
	} else if (s->err == -ENOENT) {
		snprintf(err, errlen, "%s: directory %s not found on %s",
			 nb->be.spec, path, nb->url.host);
	} else {
		snprintf(err, errlen, "%s: %s of %s on %s: %s (%s)",
			 nb->be.spec, sop_names[s->op], path, nb->url.host,
			 strerror(-s->err), nfs_stat3_str(s->stat));
	}
}

/* LOOKUP the components of path past the export; then FSINFO, PATHCONF. */
static int nfsbe_open_tree(struct nfs_be *nb, const unsigned char *fh,
			 uint32_t fh_len, size_t covered, uint64_t deadline,
			 unsigned int timeout_ms, char *err, size_t errlen)
{
	const char *path = nb->url.path;
	unsigned char cur[NFS3_FHSIZE];
	uint32_t cur_len = fh_len;
	size_t pos = covered;
	struct nfs_sync s;
	fattr3 attr;
	int rc;

	memcpy(cur, fh, fh_len);
	while (path[pos] == '/') {
		size_t n = strcspn(path + pos + 1, "/");
		char name[NAME_MAX + 1];
		char *sofar;

		if (n > NAME_MAX) {
			snprintf(err, errlen, "%s: path component too long",
				 nb->be.spec);
			return -ENAMETOOLONG;
		}
		memcpy(name, path + pos + 1, n);
		name[n] = '\0';
		pos += 1 + n;
		sync_init(&s, SOP_LOOKUP, name);
		s.quiet = 1;
		s.a.lookup.what.dir.data.data_len = cur_len;
		s.a.lookup.what.dir.data.data_val = (char *)cur;
		s.a.lookup.what.name = name;
		rc = sync_run(nb, NULL, &s, deadline);
		if (rc == 0 && !s.have_fh)
			rc = -EIO;
		if (rc < 0) {
			sofar = strndup(path, pos);
			open_err(nb, &s, sofar ? sofar : path, timeout_ms, err,
				 errlen);
			free(sofar);
			sync_free(&s);
			return rc;
		}
		cur_len = s.fh_len;
		memcpy(cur, s.fh, cur_len);
		sync_free(&s);
	}

	sync_init(&s, SOP_GETATTR, NULL);
	s.quiet = 1;
	s.a.getattr.object.data.data_len = cur_len;
	s.a.getattr.object.data.data_val = (char *)cur;
	rc = sync_run(nb, NULL, &s, deadline);
	if (rc < 0) {
		open_err(nb, &s, path, timeout_ms, err, errlen);
		return rc;
	}
	attr = s.attr;
	if (attr.type != NF3DIR) {
		snprintf(err, errlen, "%s: %s on %s is not a directory",
			 nb->be.spec, path, nb->url.host);
		return -ENOTDIR;
	}
	nb->root = node_new(cur, cur_len, attr.fileid);
	if (!nb->root) {
		snprintf(err, errlen, "%s: out of memory", nb->be.spec);
		return -ENOMEM;
	}

	sync_init(&s, SOP_FSINFO, NULL);
	s.quiet = 1;
	fh_of(&s.a.fsinfo.fsroot, nb->root);
	rc = sync_run(nb, NULL, &s, deadline);
	if (rc < 0) {
		open_err(nb, &s, path, timeout_ms, err, errlen);
		return rc;
	}
	nb->rsize = s.r.fsinfo.rtmax;
	nb->wsize = s.r.fsinfo.wtmax;
	nb->wtpref = s.r.fsinfo.wtpref;
	if (nb->rsize == 0 || nb->rsize > NFS_XFER_MAX)
		nb->rsize = NFS_XFER_MAX;
	if (nb->wsize == 0 || nb->wsize > NFS_XFER_MAX)
		nb->wsize = NFS_XFER_MAX;
	if (nb->wtpref > NFS_XFER_MAX)
		nb->wtpref = NFS_XFER_MAX;

	nb->namemax = NAME_MAX;
	sync_init(&s, SOP_PATHCONF, NULL);
	s.quiet = 1;
	fh_of(&s.a.pathconf.object, nb->root);
	/* the Linux VFS stops at NAME_MAX whatever the server allows */
	if (sync_run(nb, NULL, &s, deadline) == 0 && s.r.pathconf.name_max &&
	    s.r.pathconf.name_max < NAME_MAX)
		nb->namemax = s.r.pathconf.name_max;
	return 0;
}

/* -o hosts=FILE: its addresses join the URL's. */
static int read_hosts(const char *spec, const char *file, struct nfs_spec *url,
		      char *err, size_t errlen)
{
	char *text = NULL, msg[512];
	size_t cap = 0, len = 0;
	FILE *f = fopen(file, "re");
	int rc;

	if (!f) {
		snprintf(err, errlen, "%s: hosts file %s: %s", spec, file,
			 strerror(errno));
		return -errno;
	}
	for (;;) {
		size_t n;

		if (len + 4096 + 1 > cap) {
			char *t = cap < NFS_HOSTS_FILE_MAX ?
					  realloc(text, cap + 65536) : NULL;

			if (!t) {
				snprintf(err, errlen,
					 "%s: hosts file %s: %s", spec, file,
					 cap ? "larger than 1 MiB" :
					       "out of memory");
				free(text);
				fclose(f);
				return cap ? -EFBIG : -ENOMEM;
			}
			text = t;
			cap += 65536;
		}
		n = fread(text + len, 1, 4096, f);
		len += n;
		if (n < 4096)
			break;
	}
	rc = ferror(f) ? -EIO : 0;
	fclose(f);
	text[len] = '\0';
	if (rc == 0 && strlen(text) != len)
		rc = -EINVAL;
	if (rc < 0) {
		snprintf(err, errlen, "%s: hosts file %s: %s", spec, file,
			 rc == -EIO ? "read error" : "not a text file");
		free(text);
		return rc;
	}
	rc = nfs_spec_add_hosts(url, file, text, msg, sizeof(msg));
	free(text);
	if (rc < 0)
		snprintf(err, errlen, "%s: %s", spec, msg);
	return rc;
}

/*
 * MOUNT the export at every address: the same cluster gives the same root
 * handle everywhere, so a different one (another server, another export
 * behind the name) refuses the mount.  An address that does not answer is
 * left out of the pool, with a warning, if another one does.
 */
static int mount_addrs(struct nfs_be *nb, const char *spec,
		       unsigned int timeout_ms, unsigned char *fh,
		       uint32_t *fh_len, size_t *covered, char *err,
		       size_t errlen)
{
	struct nfs_spec *url = &nb->url;
	unsigned char fh2[NFS3_FHSIZE];
	char (*msg)[512] = calloc(url->naddrs, sizeof(*msg));
	int *rcs = calloc(url->naddrs, sizeof(*rcs));
	unsigned int i, j, ref = url->naddrs;
	uint32_t len2;
	size_t cov2;
	int rc = 0;

	if (!msg || !rcs) {
		snprintf(err, errlen, "%s: out of memory", spec);
		rc = -ENOMEM;
		goto out;
	}
	for (i = 0; i < url->naddrs; i++) {
		bool first = ref == url->naddrs;

		rcs[i] = nfs_mount_export(spec, url->addrs[i].host, url->path,
					  timeout_ms, first ? fh : fh2,
					  first ? fh_len : &len2,
					  first ? covered : &cov2, msg[i],
					  sizeof(msg[i]));
		if (rcs[i] < 0)
			continue;
		if (first) {
			ref = i;
			continue;
		}
		if (len2 != *fh_len || memcmp(fh, fh2, len2) != 0 ||
		    cov2 != *covered) {
			snprintf(err, errlen,
				 "%s: %s and %s give different root handles for %s: not addresses of one cluster",
				 spec, url->addrs[ref].host,
				 url->addrs[i].host, url->path);
			rc = -EINVAL;
			goto out;
		}
	}
	if (ref == url->naddrs) {
		snprintf(err, errlen, "%s", msg[0]);
		rc = rcs[0];
		goto out;
	}
	for (i = j = 0; i < url->naddrs; i++) {
		if (rcs[i] == 0) {
			url->addrs[j++] = url->addrs[i];
			continue;
		}
		log_msg(LOG_LVL_WARN, "nfs",
			"%s; left out of the pool until the next mount",
			msg[i]);
		free(url->addrs[i].host);
	}
	url->naddrs = j;
	url->host = url->addrs[0].host;
	url->port = url->addrs[0].port;
out:
	free(msg);
	free(rcs);
	return rc;
}

static int nfsbe_match(const char *spec)
{
	return strncmp(spec, "nfs://", 6) == 0;
}

static int nfsbe_open(const char *spec, const struct be_params *params,
		    struct be **out, char *err, size_t errlen)
{
	struct nfs_pool_params pp;
	unsigned char fh[NFS3_FHSIZE];
	unsigned int nconnect, timeout_ms, retry_ms;
	uint64_t deadline;
	struct nfs_be *nb;
	uint32_t fh_len = 0;
	size_t covered = 0;
	int rc;

	nconnect = params && params->nconnect ? params->nconnect :
						NFS_DEF_NCONNECT;
	if (nconnect > NFS_MAX_NCONNECT)
		nconnect = NFS_MAX_NCONNECT;
	timeout_ms = params && params->timeout_ms ? params->timeout_ms :
						    NFS_DEF_TIMEOUT_MS;
	retry_ms = params && params->retry_deadline_ms ?
			   params->retry_deadline_ms :
			   NFS_DEF_RETRY_MS;

	nb = calloc(1, sizeof(*nb));
	if (!nb) {
		snprintf(err, errlen, "%s: out of memory", spec);
		return -ENOMEM;
	}
	nb->be.ops = &nfsbe_ops;
	nb->dir_attr_ms = params ? params->dir_attr_ms : 0;
	pthread_mutex_init(&nb->verf_lock, NULL);
	if (getrandom(&nb->verf_salt, sizeof(nb->verf_salt), 0) !=
	    sizeof(nb->verf_salt))
		nb->verf_salt = (uint32_t)getpid() ^ (uint32_t)nfs_now_ms();
	nb->verf_salt &= INT32_MAX;
	nb->be.spec = strdup(spec);
	if (!nb->be.spec) {
		snprintf(err, errlen, "%s: out of memory", spec);
		rc = -ENOMEM;
		goto out_free;
	}
	rc = nfs_spec_parse(spec, &nb->url, err, errlen);
	if (rc == 0 && params && params->hosts_file)
		rc = read_hosts(spec, params->hosts_file, &nb->url, err, errlen);
	if (rc < 0)
		goto out_free;
	rc = mount_addrs(nb, spec, timeout_ms, fh, &fh_len, &covered, err,
			 errlen);
	if (rc < 0)
		goto out_free;
	deadline = nfs_now_ms() + timeout_ms;

	memset(&pp, 0, sizeof(pp));
	pp.spec = spec;
	pp.addrs = nb->url.addrs;
	pp.naddrs = nb->url.naddrs;
	if (nconnect < nb->url.naddrs)
		nconnect = nb->url.naddrs;
	pp.nconnect = nconnect;
	pp.connect_timeout_ms = timeout_ms;
	pp.stall_ms = 2 * (timeout_ms > 10000 ? timeout_ms : 10000);
	pp.retry_deadline_ms = retry_ms;
	pp.hard = !(params && params->soft);
	pp.retries = &nb->be.retries;
	rc = nfs_pool_create(&pp, &nb->pool);
	if (rc < 0) {
		snprintf(err, errlen, "%s: cannot start connections: %s", spec,
			 strerror(-rc));
		goto out_free;
	}
	rc = nfsbe_open_tree(nb, fh, fh_len, covered, deadline, timeout_ms, err,
			   errlen);
	if (rc < 0)
		goto out_free;
	log_msg(nb->url.naddrs > 1 ? LOG_LVL_INFO : LOG_LVL_DEBUG, "nfs",
		"%s: NFSv3, %u connections over %u address%s, rsize %u, wsize %u",
		spec, nconnect, nb->url.naddrs,
		nb->url.naddrs > 1 ? "es" : "", nb->rsize, nb->wsize);
	*out = &nb->be;
	return 0;

out_free:
	nfsbe_destroy(&nb->be);
	return rc;
}

const struct be_factory be_nfs_factory = {
	.name = "nfs",
	.match = nfsbe_match,
	.open = nfsbe_open,
};
