/* SPDX-License-Identifier: GPL-2.0 */
/*
 * ring.c - the io_uring engine for cache-file I/O.
 *
 * One ring per thread that does cache I/O (FUSE workers, flushers,
 * prefetchers): the thread submits and reaps its own requests, so no
 * lock is needed and a request's latency is never queued behind another
 * thread's.  A FUSE request touching several blocks or chunks submits
 * them as one batch.  The measurements behind this choice over one
 * shared engine thread (tools/ring-bench) are in docs/performance.md,
 * "The ring: per thread, one engine thread, registered buffers".
 *
 * Thread safety: a ring_engine is used only by the thread that made it.
 */
#include "cache_int.h"

#include <errno.h>
#include <liburing.h>
#include <stdbool.h>
#include <stdlib.h>

#define RING_DEPTH 64

struct ring_engine {
	struct io_uring ring;
	char *buf;		/* this thread's staging buffer, or NULL */
	size_t buf_len;
	bool buf_fixed;		/* registered with the ring as index 0 */
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
	free(e->buf);
	free(e);
}

/*
 * The thread's staging buffer of at least len bytes (4 KiB aligned), kept
 * for the thread's life and registered with its ring: chunk fills and
 * flusher read-backs move whole chunks through it again and again, and a
 * registered buffer saves pinning its pages on every request.  If the
 * kernel refuses the registration (RLIMIT_MEMLOCK for a non-root daemon),
 * the buffer is used unregistered.
 */
void *ring_buf(struct ring_engine *e, size_t len)
{
	struct iovec iov;

	if (e->buf && e->buf_len >= len)
		return e->buf;
	if (e->buf_fixed)
		io_uring_unregister_buffers(&e->ring);
	free(e->buf);
	e->buf_fixed = false;
	e->buf_len = 0;
	e->buf = cache_buf_alloc(len);
	if (!e->buf)
		return NULL;
	e->buf_len = len;
	iov.iov_base = e->buf;
	iov.iov_len = len;
	e->buf_fixed = io_uring_register_buffers(&e->ring, &iov, 1) == 0;
	return e->buf;
}

static bool in_fixed(const struct ring_engine *e, const struct ring_op *op)
{
	const char *p = op->buf;

	return e->buf_fixed && p >= e->buf && p + op->len <= e->buf + e->buf_len;
}

/* Submit ops[0..n) (n <= RING_DEPTH) and reap every completion. */
static int ring_batch(struct ring_engine *e, struct ring_op *ops, int n)
{
	struct io_uring_cqe *cqe;
	int i, rc, done = 0;

	for (i = 0; i < n; i++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&e->ring);

		unsigned int len = (unsigned int)ops[i].len;

		if (in_fixed(e, &ops[i]) && ops[i].write)
			io_uring_prep_write_fixed(sqe, ops[i].fd, ops[i].buf,
						  len, ops[i].off, 0);
		else if (in_fixed(e, &ops[i]))
			io_uring_prep_read_fixed(sqe, ops[i].fd, ops[i].buf,
						 len, ops[i].off, 0);
		else if (ops[i].write)
			io_uring_prep_write(sqe, ops[i].fd, ops[i].buf, len,
					    ops[i].off);
		else
			io_uring_prep_read(sqe, ops[i].fd, ops[i].buf, len,
					   ops[i].off);
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
	/*
	 * Finish short writes one by one (rare).  A short read of a regular
	 * file is its end: reading on would fail on an O_DIRECT descriptor
	 * at the unaligned offset.
	 */
	for (i = 0; i < n; i++) {
		struct ring_op *op = &ops[i];
		ssize_t res = op->res;

		if (op->write && res > 0 && (size_t)res < op->len) {
			ssize_t more = ring_pwrite(e, op->fd,
						   (char *)op->buf + res,
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
		total += (size_t)op.res;
		if (op.res == 0 || (!write && (size_t)op.res < op.len))
			break;	/* end of file (see ring_run) */
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
