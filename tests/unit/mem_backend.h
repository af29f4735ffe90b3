/* SPDX-License-Identifier: GPL-2.0 */
/*
 * mem_backend.h - an in-memory backend with fault injection, for the unit
 * tests only (never linked into the daemon).
 *
 * It implements every operation of struct be_ops over a tree of nodes
 * held in memory.  Data operations complete their callback on the
 * caller's thread before the submitting call returns.  Nodes are owned
 * by the backend and freed by be_close(); node_free only drops a
 * reference, so a test may keep node pointers as long as the backend
 * lives.  A node whose last name was unlinked answers -ESTALE to data
 * operations and to node_decode, as an NFS server does.
 *
 * Fault injection, per data operation (read, write, commit, setattr) and
 * getattr, whose answer is taken when the call arrives and delivered after
 * the gate or delay (a reply that was already on the wire):
 *  - mem_be_fail(be, op, -EIO, 3): the next 3 calls fail with -EIO
 *    (delivered through the callback, as an asynchronous failure), then
 *    the operation works again; count -1 fails until mem_be_fail(.., 0);
 *  - mem_be_set_delay(): successful calls sleep first (a slow server);
 *  - mem_be_gate(): calls wait at the entrance until the gate opens, so
 *    a test can line several of them up before it decides their fate;
 *  - mem_be_calls() / mem_be_failures() / mem_be_waiting() count them.
 *
 * Thread safety: every function may be called from any thread; one
 * mutex protects the tree and the fault settings.
 */
#ifndef STAGEFS_TEST_MEM_BACKEND_H
#define STAGEFS_TEST_MEM_BACKEND_H

#include <stdbool.h>
#include <stddef.h>

#include "backend.h"

enum mem_op {
	MEM_OP_READ,
	MEM_OP_WRITE,
	MEM_OP_COMMIT,
	MEM_OP_SETATTR,
	MEM_OP_GETATTR,		/* the answer is taken first, then delayed */
	MEM_OP_COUNT
};

/* A new, empty backend whose spec (the journal's name for it) is spec. */
struct be *mem_be_new(const char *spec);

/*
 * Create (or replace the contents of) the regular file name in the root
 * directory.  *out gets a reference when out is given.
 */
int mem_be_put_file(struct be *be, const char *name, const void *data,
		    size_t len, struct be_node **out, struct be_attr *attr);

/*
 * Change a file's contents behind the cache's back, as another node
 * would: the contents become data[0..len) and mtime, ctime and the
 * change attribute move on.
 */
int mem_be_set_data(struct be *be, struct be_node *node, const void *data,
		    size_t len);

/* A malloc()ed copy of the contents (NULL for an empty file), and size. */
void *mem_be_get_data(struct be *be, struct be_node *node, size_t *len);

/* The reference count of node, for leak checks. */
int mem_be_node_refs(struct be_node *node);

/* count > 0: the next count calls fail; -1: all until cleared; 0: clear. */
void mem_be_fail(struct be *be, enum mem_op op, int err, int count);
void mem_be_set_delay(struct be *be, enum mem_op op, unsigned int ms);
/* Close (1) or open (0) the gate of op. */
void mem_be_gate(struct be *be, enum mem_op op, int closed);
unsigned long mem_be_calls(struct be *be, enum mem_op op);
unsigned long mem_be_failures(struct be *be, enum mem_op op);
/* Calls of op waiting at a closed gate now. */
unsigned long mem_be_waiting(struct be *be, enum mem_op op);
/* Calls of op that have delivered their result. */
unsigned long mem_be_completed(struct be *be, enum mem_op op);
/*
 * Credentials: the uid of the last call of op (-1: made with no cred,
 * as the daemon), and how many calls of op came with uid.  New objects
 * are owned by the uid and gid of the call that made them.
 */
long mem_be_last_uid(struct be *be, enum mem_op op);
unsigned long mem_be_calls_by(struct be *be, enum mem_op op, long uid);

/*
 * committed_attr (be_ops): off at first (the cache then asks getattr);
 * on, the attributes the last commit of a node left, while no write or
 * setattr went through be_ops since (mem_be_set_data is another node's).
 */
void mem_be_committed_attr(struct be *be, bool on);
/* fn(arg), once, at the start of the next getattr. */
void mem_be_on_getattr(struct be *be, void (*fn)(void *), void *arg);

#endif /* STAGEFS_TEST_MEM_BACKEND_H */
