/* SPDX-License-Identifier: GPL-2.0 */
/*
 * nfs_be.h - the NFS backend's objects, shared by nfs.c (open, namespace
 * operations, the be_ops table) and nfs_data.c (READ, WRITE, COMMIT and
 * the write verifier).  Private to those two files: it needs libnfs.
 */
#ifndef STAGEFS_NFS_BE_H
#define STAGEFS_NFS_BE_H

#include "backend_int.h"
#include "nfs_int.h"

#include <pthread.h>
#include <stdatomic.h>

#include <nfsc/libnfs.h>
#include <nfsc/libnfs-raw.h>
#include <nfsc/libnfs-raw-nfs.h>

#define NFS_XFER_MAX (1024 * 1024)
#define NFS_SMALL_WEIGHT 4096

struct nfs_node {
	struct be_node base;	/* first: be_node <-> nfs_node */
	uint32_t fh_len;
	unsigned char fh[NFS3_FHSIZE];
	pthread_mutex_t lock;
	/* protected by lock: */
	struct nfs_wtrack wt;
	unsigned int w_inflight;	/* WRITE calls submitted, not ended */
	uint64_t meta_seq;	/* bumped around every SETATTR */
	/* The file as the reply to this node's last COMMIT had it, while
	 * wt.wseq and meta_seq are still cattr_wseq and cattr_meta and no
	 * WRITE is in flight (nfsbe_committed_attr). */
	bool cattr_set;
	uint64_t cattr_wseq, cattr_meta;
	fattr3 cattr;
	/* A directory as the reply to this node's own last change in it
	 * had it (dir_change_end() in nfs.c), taken at dattr_ms. */
	unsigned int dchanging;	/* changes of the directory in flight */
	uint64_t dstarted;	/* changes of it sent so far */
	bool dattr_set;
	uint64_t dattr_ms;
	fattr3 dattr;
};

struct nfs_be {
	struct be be;		/* first */
	struct nfs_spec url;
	struct nfs_pool *pool;
	struct nfs_node *root;
	uint32_t rsize, wsize;
	uint32_t namemax;
	uint32_t wtpref;
	unsigned int dir_attr_ms;	/* be_params.dir_attr_ms */

	pthread_mutex_t verf_lock;
	int have_verf;		/* protected by verf_lock */
	uint64_t verf;		/* protected by verf_lock */
	uint64_t verf_gen;	/* protected by verf_lock */

	/* EXCLUSIVE create verifiers: a random word, then a counter */
	uint32_t verf_salt;
	atomic_uint verf_seq;
	atomic_bool no_excl;	/* the server refused EXCLUSIVE */
};

static inline struct nfs_be *NB(struct be *be)
{
	return container_of(be, struct nfs_be, be);
}

static inline struct nfs_node *NN(struct be_node *n)
{
	return container_of(n, struct nfs_node, base);
}

static inline void fh_of(nfs_fh3 *fh, const struct nfs_node *n)
{
	fh->data.data_len = n->fh_len;
	fh->data.data_val = (char *)n->fh;
}

/* ---- nfs_data.c: the data operations of be_ops -------------------- */

int nfsbe_read(struct be *be, const struct be_cred *cred,
	       struct be_node *node, const struct iovec *iov, int iovcnt,
	       uint64_t off, be_io_cb cb, void *cookie);
int nfsbe_write(struct be *be, const struct be_cred *cred,
		struct be_node *node, const struct iovec *iov, int iovcnt,
		uint64_t off, be_io_cb cb, void *cookie);
int nfsbe_commit(struct be *be, const struct be_cred *cred,
		 struct be_node *node, be_io_cb cb, void *cookie);
int nfsbe_commit_ranges(struct be *be, const struct be_cred *cred,
			struct be_node *node, const struct be_range *r,
			unsigned int nr, be_io_cb cb, void *cookie);
int nfsbe_committed_attr(struct be *be, struct be_node *node,
			 struct be_attr *attr);

/* ---- nfs.c ------------------------------------------------------------ */

void nfs_attr_from3(struct be_attr *a, const fattr3 *f);

#endif /* STAGEFS_NFS_BE_H */
