/* SPDX-License-Identifier: GPL-2.0 */
/*
 * backend.c - picks an implementation for a spec string, and the
 * synchronous wrappers over the asynchronous data operations.
 */
#include "backend_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static _Thread_local unsigned int wait_ms;

void be_wait_set(unsigned int ms)
{
	wait_ms = ms;
}

unsigned int be_wait_get(void)
{
	return wait_ms;
}

uint64_t be_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

const char *const be_call_names[BE_CALL_NR] = {
	[BE_CALL_LOOKUP] = "lookup",	[BE_CALL_GETATTR] = "getattr",
	[BE_CALL_SETATTR] = "setattr",	[BE_CALL_READDIR] = "readdir",
	[BE_CALL_ACCESS] = "access",	[BE_CALL_CREATE] = "create",
	[BE_CALL_REMOVE] = "remove",	[BE_CALL_RENAME] = "rename",
	[BE_CALL_XATTR] = "xattr",	[BE_CALL_GETATTR_CACHED] = "getattr_cached",
};

static const struct be_factory *const factories[] = {
#ifdef STAGEFS_HAVE_NFS
	&be_nfs_factory,
#endif
	&be_posix_factory,
};

int be_open(const char *spec, const struct be_params *params, struct be **out,
	    char *err, size_t errlen)
{
	size_t i;

	if (!spec || !*spec) {
		snprintf(err, errlen, "no backend given");
		return -EINVAL;
	}
	for (i = 0; i < sizeof(factories) / sizeof(factories[0]); i++) {
		if (factories[i]->match(spec))
			return factories[i]->open(spec, params, out, err,
						  errlen);
	}
	if (strncmp(spec, "nfs://", 6) == 0)
		snprintf(err, errlen,
			 "backend '%s': this build has no nfs:// support", spec);
	else
		snprintf(err, errlen,
			 "backend '%s': not an nfs:// URL or an absolute directory",
			 spec);
	return -EINVAL;
}

void be_close(struct be *be)
{
	if (be)
		be->ops->destroy(be);
}

/* One synchronous wait on an asynchronous completion. */
struct be_waiter {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int done;
	ssize_t res;
};

static void be_waiter_cb(void *cookie, ssize_t res)
{
	struct be_waiter *w = cookie;

	pthread_mutex_lock(&w->lock);
	w->res = res;
	w->done = 1;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

static ssize_t be_waiter_wait(struct be_waiter *w, int submit_rc)
{
	ssize_t res;

	if (submit_rc < 0) {
		res = submit_rc;
		goto out;
	}
	pthread_mutex_lock(&w->lock);
	while (!w->done)
		pthread_cond_wait(&w->cond, &w->lock);
	res = w->res;
	pthread_mutex_unlock(&w->lock);
out:
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
	return res;
}

#define BE_WAITER_INIT                                                     \
	{ .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER, \
	  .done = 0, .res = 0 }

ssize_t be_pread(struct be *be, const struct be_cred *cred,
		 struct be_node *node, void *buf, size_t len, uint64_t off)
{
	struct be_waiter w = BE_WAITER_INIT;
	struct iovec iov = { .iov_base = buf, .iov_len = len };

	return be_waiter_wait(&w, be->ops->read(be, cred, node, &iov, 1, off,
						be_waiter_cb, &w));
}

ssize_t be_pwrite(struct be *be, const struct be_cred *cred,
		  struct be_node *node, const void *buf, size_t len,
		  uint64_t off)
{
	struct be_waiter w = BE_WAITER_INIT;
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };

	return be_waiter_wait(&w, be->ops->write(be, cred, node, &iov, 1,
						 off,
						 be_waiter_cb, &w));
}

int be_commit(struct be *be, const struct be_cred *cred,
	      struct be_node *node)
{
	struct be_waiter w = BE_WAITER_INIT;

	return (int)be_waiter_wait(&w, be->ops->commit(be, cred, node, be_waiter_cb,
						       &w));
}

int be_commit_ranges(struct be *be, const struct be_cred *cred,
		     struct be_node *node, const struct be_range *r,
		     unsigned int nr)
{
	struct be_waiter w = BE_WAITER_INIT;

	if (!be->ops->commit_ranges)
		return be_commit(be, cred, node);
	return (int)be_waiter_wait(&w, be->ops->commit_ranges(be, cred, node,
							      r, nr,
							      be_waiter_cb,
							      &w));
}
