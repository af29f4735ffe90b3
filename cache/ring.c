/* SPDX-License-Identifier: GPL-2.0 */
/*
 * ring.c - the io_uring engine for cache-file I/O.
 *
 * One ring per thread that does cache I/O (FUSE workers, flushers,
 * prefetchers): the thread submits and reaps its own requests, so no
 * lock is needed and a request's latency is never queued behind another
 * thread's.  A FUSE request touching several blocks or chunks submits
 * them as one batch.  docs/performance.md records the measurements that
 * chose this over one shared engine thread.
 *
 * Thread safety: a ring_engine is used only by the thread that made it.
 */
#include "cache_int.h"

#include <errno.h>
#include <liburing.h>
#include <stdlib.h>

#define RING_DEPTH 64

struct ring_engine {
	struct io_uring ring;
};

int ring_engine_init(struct ring_engine **out)
{
	struct ring_engine *e = calloc(1, sizeof(*e));
	int rc;

	if (!e)
		return -ENOMEM;
	rc = io_uring_queue_init(RING_DEPTH, &e->ring, 0);
	if (rc < 0) {
		free(e);
		return rc;
	}
	*out = e;
	return 0;
}

void ring_engine_destroy(struct ring_engine *e)
{
	if (!e)
		return;
	io_uring_queue_exit(&e->ring);
	free(e);
}

/* Submit ops[0..n) (n <= RING_DEPTH) and reap every completion. */
static int ring_batch(struct ring_engine *e, struct ring_op *ops, int n)
{
	struct io_uring_cqe *cqe;
	int i, rc, done = 0;

	for (i = 0; i < n; i++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&e->ring);

		if (ops[i].write)
			io_uring_prep_write(sqe, ops[i].fd, ops[i].buf,
					    (unsigned int)ops[i].len, ops[i].off);
		else
			io_uring_prep_read(sqe, ops[i].fd, ops[i].buf,
					   (unsigned int)ops[i].len, ops[i].off);
		io_uring_sqe_set_data(sqe, &ops[i]);
	}
	rc = io_uring_submit(&e->ring);
	if (rc < 0)
		return rc;
	while (done < n) {
		rc = io_uring_wait_cqe(&e->ring, &cqe);
		if (rc == -EINTR)
			continue;
		if (rc < 0)
			return rc;
		((struct ring_op *)io_uring_cqe_get_data(cqe))->res = cqe->res;
		io_uring_cqe_seen(&e->ring, cqe);
		done++;
	}
	return 0;
}

int ring_run(struct ring_engine *e, struct ring_op *ops, int n)
{
	int i, rc, first_err = 0;

	for (i = 0; i < n; i += RING_DEPTH) {
		int m = n - i < RING_DEPTH ? n - i : RING_DEPTH;

		rc = ring_batch(e, ops + i, m);
		if (rc < 0)
			return rc;
	}
	/* Finish short transfers one by one (rare: signals, EOF). */
	for (i = 0; i < n; i++) {
		struct ring_op *op = &ops[i];
		ssize_t res = op->res;

		if (res >= 0 && (size_t)res < op->len && res > 0) {
			ssize_t more = op->write ?
				ring_pwrite(e, op->fd, (char *)op->buf + res,
					    op->len - (size_t)res,
					    op->off + (uint64_t)res) :
				ring_pread(e, op->fd, (char *)op->buf + res,
					   op->len - (size_t)res,
					   op->off + (uint64_t)res);
			op->res = more < 0 ? more : res + more;
		}
		if (op->res < 0 && !first_err)
			first_err = (int)op->res;
	}
	return first_err;
}

static ssize_t ring_full(struct ring_engine *e, int fd, void *buf, size_t len,
			 uint64_t off, int write)
{
	size_t total = 0;

	while (total < len) {
		struct ring_op op = {
			.fd = fd,
			.write = write,
			.buf = (char *)buf + total,
			.len = len - total > (1U << 30) ? (1U << 30) :
							  len - total,
			.off = off + total,
		};
		int rc = ring_batch(e, &op, 1);

		if (rc < 0)
			return rc;
		if (op.res == -EINTR || op.res == -EAGAIN)
			continue;
		if (op.res < 0)
			return op.res;
		if (op.res == 0)
			break;	/* end of file on a read */
		total += (size_t)op.res;
	}
	return (ssize_t)total;
}

ssize_t ring_pread(struct ring_engine *e, int fd, void *buf, size_t len,
		   uint64_t off)
{
	return ring_full(e, fd, buf, len, off, 0);
}

ssize_t ring_pwrite(struct ring_engine *e, int fd, const void *buf,
		    size_t len, uint64_t off)
{
	return ring_full(e, fd, (void *)buf, len, off, 1);
}

int ring_fdatasync(struct ring_engine *e, int fd)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&e->ring);
	struct io_uring_cqe *cqe;
	int rc;

	io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
	io_uring_sqe_set_data(sqe, NULL);
	rc = io_uring_submit(&e->ring);
	if (rc < 0)
		return rc;
	do {
		rc = io_uring_wait_cqe(&e->ring, &cqe);
	} while (rc == -EINTR);
	if (rc < 0)
		return rc;
	rc = cqe->res;
	io_uring_cqe_seen(&e->ring, cqe);
	return rc;
}
