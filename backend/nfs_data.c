/* SPDX-License-Identifier: GPL-2.0 */
/*
 * nfs_data.c - the NFS backend's data path: READ and WRITE cut into
 * rsize/wsize pieces spread over the pool's connections, COMMIT (of the
 * whole file, or of a writer's own ranges), and the write verifier's
 * bookkeeping (see the head of nfs.c for the rules).  Every operation is
 * asynchronous: the caller's callback runs when the last piece ends, on a
 * connection thread.
 */
#include "nfs_be.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the write verifier ------------------------------------------- */

/* Record a verifier seen in a WRITE or COMMIT reply; its generation. */
static uint64_t verf_note(struct nfs_be *nb, const char *v)
{
	uint64_t x, gen;

	memcpy(&x, v, sizeof(x));
	pthread_mutex_lock(&nb->verf_lock);
	if (!nb->have_verf) {
		nb->have_verf = 1;
		nb->verf = x;
		nb->verf_gen = 1;
	} else if (x != nb->verf) {
		nb->verf = x;
		nb->verf_gen++;
		log_msg(LOG_LVL_WARN, "nfs",
			"%s: the server's write verifier changed (server restarted?): unstable writes since the last COMMIT may be lost",
			nb->be.spec);
	}
	gen = nb->verf_gen;
	pthread_mutex_unlock(&nb->verf_lock);
	return gen;
}

/* A WRITE of [off, off + len) completed under verifier v. */
static void node_write_done(struct nfs_be *nb, struct nfs_node *n,
			    const char *v, uint64_t off, uint32_t len)
{
	uint64_t gen = verf_note(nb, v);

	pthread_mutex_lock(&n->lock);
	nfs_wt_write_done(&n->wt, gen, off, len);
	pthread_mutex_unlock(&n->lock);
}

/* ---- data ---------------------------------------------------------- */

struct nfs_io;

/* One READ or WRITE RPC's worth of a request. */
struct nfs_piece {
	struct nfs_call call;
	struct nfs_io *io;
	uint64_t off;		/* file offset of the next byte to move */
	size_t pos;		/* the same byte's place in the request */
	uint32_t len;		/* bytes still to move */
	char *buf;		/* write: the bytes, contiguous */
	char *bounce;		/* write: buf, if we had to gather it */
	union {
		READ3args r;
		WRITE3args w;
	} a;
};

struct nfs_io {
	struct nfs_be *nb;
	struct nfs_node *node;	/* a reference, until the end */
	struct be_cred cred;	/* the caller's, if has_cred */
	bool has_cred;
	const struct iovec *iov;
	int iovcnt;
	uint64_t off;
	size_t len;
	be_io_cb cb;
	void *cookie;
	atomic_uint pending;	/* pieces not ended */
	atomic_int err;		/* first error */
	char why[160];		/* ... and its story, by whoever set err */
	_Atomic uint64_t eof;	/* lowest request position at EOF */
	unsigned int npieces;
	bool write;
	struct nfs_piece pieces[];
};

/* Where request position pos lives: iov index and offset in it. */
static int iov_find(const struct iovec *iov, int iovcnt, size_t pos,
		    size_t *in)
{
	int i;

	for (i = 0; i < iovcnt; i++) {
		if (pos < iov[i].iov_len) {
			*in = pos;
			return i;
		}
		pos -= iov[i].iov_len;
	}
	*in = 0;
	return iovcnt;
}

static void iov_to(const struct iovec *iov, int iovcnt, size_t pos,
		   const char *src, size_t n)
{
	size_t in;
	int i = iov_find(iov, iovcnt, pos, &in);

	for (; i < iovcnt && n; i++, in = 0) {
		size_t k = iov[i].iov_len - in;

		if (k > n)
			k = n;
		memcpy((char *)iov[i].iov_base + in, src, k);
		src += k;
		n -= k;
	}
}

static void iov_from(const struct iovec *iov, int iovcnt, size_t pos,
		     char *dst, size_t n)
{
	size_t in;
	int i = iov_find(iov, iovcnt, pos, &in);

	for (; i < iovcnt && n; i++, in = 0) {
		size_t k = iov[i].iov_len - in;

		if (k > n)
			k = n;
		memcpy(dst, (const char *)iov[i].iov_base + in, k);
		dst += k;
		n -= k;
	}
}

/* Pointer to [pos, pos+n) if one iovec holds it all, else NULL. */
static char *iov_contig(const struct iovec *iov, int iovcnt, size_t pos,
			size_t n)
{
	size_t in;
	int i = iov_find(iov, iovcnt, pos, &in);

	if (i >= iovcnt || iov[i].iov_len - in < n)
		return NULL;
	return (char *)iov[i].iov_base + in;
}

/* Record the request's first error; it is logged once, at the end. */
static void io_set_err(struct nfs_io *io, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void io_set_err(struct nfs_io *io, int err, const char *fmt, ...)
{
	int expected = 0;
	va_list ap;

	if (!atomic_compare_exchange_strong(&io->err, &expected, err))
		return;
	va_start(ap, fmt);
	vsnprintf(io->why, sizeof(io->why), fmt, ap);
	va_end(ap);
}

static void io_note_eof(struct nfs_io *io, uint64_t pos)
{
	uint64_t cur = atomic_load(&io->eof);

	while (pos < cur && !atomic_compare_exchange_weak(&io->eof, &cur, pos))
		;
}

static void io_free(struct nfs_io *io)
{
	unsigned int i;

	for (i = 0; i < io->npieces; i++)
		free(io->pieces[i].bounce);
	free(io);
}

static void piece_end(struct nfs_piece *p)
{
	struct nfs_io *io = p->io;
	struct nfs_be *nb = io->nb;
	ssize_t res;
	uint64_t eof;
	int err;

	if (atomic_fetch_sub(&io->pending, 1) != 1)
		return;
	err = atomic_load(&io->err);
	eof = atomic_load(&io->eof);
	if (err) {
		res = err;
		log_msg(err == -ESTALE ? LOG_LVL_WARN : LOG_LVL_ERR, "nfs",
			"%s: %s of %zu bytes at %llu, fileid %llu: %s (%s)",
			nb->be.spec, p->call.op, io->len,
			(unsigned long long)io->off,
			(unsigned long long)io->node->base.fileid,
			strerror(-err), io->why);
	} else {
		res = (ssize_t)(eof < io->len ? eof : io->len);
	}
	if (io->write) {
		pthread_mutex_lock(&io->node->lock);
		io->node->w_inflight--;
		pthread_mutex_unlock(&io->node->lock);
	}
	be_node_put(&nb->be, &io->node->base);
	io->cb(io->cookie, res);
	io_free(io);
}

static int read_issue(struct nfs_call *call, struct rpc_context *rpc,
		      nfs_rpc_cb cb, void *priv)
{
	struct nfs_piece *p = container_of(call, struct nfs_piece, call);

	fh_of(&p->a.r.file, p->io->node);
	p->a.r.offset = p->off;
	p->a.r.count = p->len;
	return rpc_nfs3_read_async(rpc, cb, &p->a.r, priv);
}

static void read_done(struct nfs_call *call, int err, void *res)
{
	struct nfs_piece *p = container_of(call, struct nfs_piece, call);
	struct nfs_io *io = p->io;
	READ3res *r = res;
	const READ3resok *ok;
	uint32_t count;

	if (err) {
		io_set_err(io, err, "%s", call->why);
		goto out_end;
	}
	if (r->status != NFS3_OK) {
		io_set_err(io, nfs_stat3_to_errno(r->status), "%s at %llu",
			   nfs_stat3_str(r->status),
			   (unsigned long long)p->off);
		goto out_end;
	}
	ok = &r->READ3res_u.resok;
	count = ok->count;
	if (count > ok->data.data_len)
		count = ok->data.data_len;
	if (count > p->len)
		count = p->len;
	iov_to(io->iov, io->iovcnt, p->pos, ok->data.data_val, count);
	if (ok->eof || count == 0) {
		io_note_eof(io, p->pos + count);
		goto out_end;
	}
	if (count < p->len) {
		/* short read before EOF: ask for the rest */
		p->off += count;
		p->pos += count;
		p->len -= count;
		p->call.weight = p->len;
		nfs_pool_submit(io->nb->pool, &p->call);
		return;
	}
out_end:
	piece_end(p);
}

static int write_issue(struct nfs_call *call, struct rpc_context *rpc,
		       nfs_rpc_cb cb, void *priv)
{
	struct nfs_piece *p = container_of(call, struct nfs_piece, call);

	fh_of(&p->a.w.file, p->io->node);
	p->a.w.offset = p->off;
	p->a.w.count = p->len;
	p->a.w.stable = UNSTABLE;
	p->a.w.data.data_len = p->len;
	p->a.w.data.data_val = p->buf;
	return rpc_nfs3_write_async(rpc, cb, &p->a.w, priv);
}

static void write_done(struct nfs_call *call, int err, void *res)
{
	struct nfs_piece *p = container_of(call, struct nfs_piece, call);
	struct nfs_io *io = p->io;
	WRITE3res *r = res;
	uint32_t count;

	if (err) {
		io_set_err(io, err, "%s", call->why);
		goto out_end;
	}
	if (r->status != NFS3_OK) {
		io_set_err(io, nfs_stat3_to_errno(r->status), "%s at %llu",
			   nfs_stat3_str(r->status),
			   (unsigned long long)p->off);
		goto out_end;
	}
	count = r->WRITE3res_u.resok.count;
	if (count <= p->len)
		node_write_done(io->nb, io->node, r->WRITE3res_u.resok.verf,
				p->off, count);
	if (count == 0 || count > p->len) {
		io_set_err(io, -EIO, "server wrote %u of %u bytes at %llu",
			   count, p->len, (unsigned long long)p->off);
		goto out_end;
	}
	if (count < p->len) {
		p->off += count;
		p->pos += count;
		p->buf += count;
		p->len -= count;
		p->call.weight = p->len;
		nfs_pool_submit(io->nb->pool, &p->call);
		return;
	}
out_end:
	piece_end(p);
}

static int nfsbe_rw(struct be *be, const struct be_cred *cred,
		    struct be_node *node, const struct iovec *iov, int iovcnt,
		    uint64_t off, be_io_cb cb, void *cookie, int is_write)
{
	struct nfs_be *nb = NB(be);
	struct nfs_io *io;
	size_t len = 0, pos, psize;
	unsigned int n, i;
	int k;

	for (k = 0; k < iovcnt; k++)
		len += iov[k].iov_len;
	if (len == 0) {
		cb(cookie, 0);
		return 0;
	}
	if (off > (uint64_t)INT64_MAX || len > (uint64_t)INT64_MAX - off)
		return -EFBIG;
	psize = is_write ? nb->wsize : nb->rsize;
	n = (unsigned int)((len + psize - 1) / psize);
	io = calloc(1, sizeof(*io) + n * sizeof(io->pieces[0]));
	if (!io)
		return -ENOMEM;
	io->nb = nb;
	io->node = NN(node);
	io->iov = iov;
	io->iovcnt = iovcnt;
	io->off = off;
	io->len = len;
	io->cb = cb;
	io->cookie = cookie;
	io->npieces = n;
	if (cred) {
		io->cred = *cred;
		io->has_cred = true;
	}
	atomic_init(&io->pending, n);
	atomic_init(&io->err, 0);
	atomic_init(&io->eof, UINT64_MAX);
	for (i = 0, pos = 0; i < n; i++, pos += psize) {
		struct nfs_piece *p = &io->pieces[i];

		p->io = io;
		p->pos = pos;
		p->off = off + pos;
		p->len = (uint32_t)(len - pos < psize ? len - pos : psize);
		p->call.op = is_write ? "WRITE" : "READ";
		p->call.issue = is_write ? write_issue : read_issue;
		p->call.done = is_write ? write_done : read_done;
		p->call.weight = p->len;
		p->call.cred = io->has_cred ? &io->cred : NULL;
		if (!is_write)
			continue;
		p->buf = iov_contig(iov, iovcnt, pos, p->len);
		if (p->buf)
			continue;
		p->bounce = malloc(p->len);
		if (!p->bounce) {
			io_free(io);
			return -ENOMEM;
		}
		iov_from(iov, iovcnt, pos, p->bounce, p->len);
		p->buf = p->bounce;
	}
	be_node_get(node);
	io->write = is_write;
	if (is_write) {
		pthread_mutex_lock(&io->node->lock);
		io->node->w_inflight++;
		pthread_mutex_unlock(&io->node->lock);
	}
	/* io may end during the last submit: do not touch it after */
	for (i = 0; i < n; i++)
		nfs_pool_submit(nb->pool, &io->pieces[i].call);
	return 0;
}

int nfsbe_read(struct be *be, const struct be_cred *cred,
	       struct be_node *node, const struct iovec *iov,
	       int iovcnt, uint64_t off, be_io_cb cb, void *cookie)
{
	return nfsbe_rw(be, cred, node, iov, iovcnt, off, cb, cookie, 0);
}

int nfsbe_write(struct be *be, const struct be_cred *cred,
		struct be_node *node, const struct iovec *iov,
		int iovcnt, uint64_t off, be_io_cb cb, void *cookie)
{
	return nfsbe_rw(be, cred, node, iov, iovcnt, off, cb, cookie, 1);
}

struct nfsbe_commit {
	struct nfs_call call;
	struct nfs_be *nb;
	struct nfs_node *node;	/* a reference, until the end */
	COMMIT3args a;
	struct be_cred cred;	/* the caller's, if has_cred */
	bool has_cred;
	uint64_t wseq;		/* the node's write count when prepared */
	uint64_t meta;		/* ... and its meta_seq */
	bool quiet;		/* no WRITE of the node was in flight then */
	const struct be_range *r;	/* the caller's, until cb */
	unsigned int nr;
	be_io_cb cb;
	void *cookie;
};

static int commit_issue(struct nfs_call *call, struct rpc_context *rpc,
			nfs_rpc_cb cb, void *priv)
{
	struct nfsbe_commit *c = container_of(call, struct nfsbe_commit, call);

	return rpc_nfs3_commit_async(rpc, cb, &c->a, priv);
}

static void commit_done(struct nfs_call *call, int err, void *res)
{
	struct nfsbe_commit *c = container_of(call, struct nfsbe_commit, call);
	struct nfs_be *nb = c->nb;
	struct nfs_node *n = c->node;
	COMMIT3res *r = res;
	uint64_t gen, lost = 0;

	if (err) {
		log_msg(LOG_LVL_ERR, "nfs", "%s: COMMIT fileid %llu: %s (%s)",
			nb->be.spec, (unsigned long long)n->base.fileid,
			strerror(-err), call->why);
	} else if (r->status != NFS3_OK) {
		err = nfs_stat3_to_errno(r->status);
		log_msg(LOG_LVL_WARN, "nfs", "%s: COMMIT fileid %llu: %s (%s)",
			nb->be.spec, (unsigned long long)n->base.fileid,
			strerror(-err), nfs_stat3_str(r->status));
	} else {
		const post_op_attr *after =
			&r->COMMIT3res_u.resok.file_wcc.after;

		gen = verf_note(nb, r->COMMIT3res_u.resok.verf);
		pthread_mutex_lock(&n->lock);
		err = nfs_wt_commit_done(&n->wt, gen, c->wseq, c->r, c->nr);
		if (err)
			lost = nfs_wt_lost_bytes(&n->wt);
		/* The file after every WRITE of ours, if none was in flight
		 * or completed meanwhile: the server ran them all first. */
		n->cattr_set = !err && after->attributes_follow && c->quiet &&
			       !n->w_inflight && n->wt.wseq == c->wseq &&
			       n->meta_seq == c->meta;
		if (n->cattr_set) {
			n->cattr = after->post_op_attr_u.attributes;
			n->cattr_wseq = c->wseq;
			n->cattr_meta = c->meta;
		}
		pthread_mutex_unlock(&n->lock);
		if (err == -EAGAIN)
			log_msg(LOG_LVL_INFO, "nfs",
				"%s: COMMIT fileid %llu: the server restarted after some of these writes (write verifier changed); %llu bytes of the file must be written again",
				nb->be.spec, (unsigned long long)n->base.fileid,
				(unsigned long long)lost);
		else if (err)
			log_msg(LOG_LVL_ERR, "nfs",
				"%s: COMMIT fileid %llu: out of memory tracking unstable writes",
				nb->be.spec, (unsigned long long)n->base.fileid);
	}
	be_node_put(&nb->be, &n->base);
	c->cb(c->cookie, err);
	free(c);
}

int nfsbe_commit_ranges(struct be *be, const struct be_cred *cred,
			struct be_node *node, const struct be_range *r,
			unsigned int nr, be_io_cb cb, void *cookie)
{
	struct nfs_be *nb = NB(be);
	struct nfs_node *n = NN(node);
	struct nfsbe_commit *c;

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->nb = nb;
	c->node = NN(be_node_get(node));
	fh_of(&c->a.file, n);
	c->a.offset = 0;
	c->a.count = 0;		/* the whole file: see nfs_wt_commit_done */
	pthread_mutex_lock(&n->lock);
	c->wseq = nfs_wt_commit_start(&n->wt);
	c->meta = n->meta_seq;
	c->quiet = !n->w_inflight;
	pthread_mutex_unlock(&n->lock);
	c->r = r;
	c->nr = nr;
	c->cb = cb;
	c->cookie = cookie;
	c->call.op = "COMMIT";
	c->call.issue = commit_issue;
	c->call.done = commit_done;
	c->call.weight = NFS_SMALL_WEIGHT;
	if (cred) {
		c->cred = *cred;
		c->has_cred = true;
		c->call.cred = &c->cred;
	}
	nfs_pool_submit(nb->pool, &c->call);
	return 0;
}

int nfsbe_commit(struct be *be, const struct be_cred *cred,
		 struct be_node *node, be_io_cb cb, void *cookie)
{
	return nfsbe_commit_ranges(be, cred, node, NULL, 0, cb, cookie);
}

int nfsbe_committed_attr(struct be *be, struct be_node *node,
			 struct be_attr *attr)
{
	struct nfs_node *n = NN(node);
	int rc = -ENODATA;

	pthread_mutex_lock(&n->lock);
	if (n->cattr_set && !n->w_inflight && n->wt.wseq == n->cattr_wseq &&
	    n->meta_seq == n->cattr_meta) {
		nfs_attr_from3(attr, &n->cattr);
		rc = 0;
	}
	pthread_mutex_unlock(&n->lock);
	return rc;
}

/* ---- handles -------------------------------------------------------- */

