/* SPDX-License-Identifier: GPL-2.0 */
/*
 * nfs_conn.c - the NFS backend's connections: nconnect libnfs RPC
 * contexts, each a TCP connection to the server's NFS program, each owned
 * and driven by one thread; plus the one-shot MOUNT exchange at open.
 *
 * A connection thread polls its eventfd (new work) and the context's
 * socket, calls rpc_service(), and issues the calls other threads queued
 * on it.  libnfs contexts are not thread-safe, so only the owner thread
 * touches its context; other threads only take conn->lock to append to
 * conn->sub and poke the eventfd.
 *
 * Every issue of a call gets a ticket, the private data libnfs hands back
 * to the RPC callback.  A call that runs past its deadline while its RPC
 * is still in flight is completed at once and its ticket orphaned; the
 * ticket is freed when libnfs finally calls back (a late reply, or the
 * context's destruction), so no callback ever sees a freed call.
 *
 * A connection is torn down and made again when libnfs reports it broken
 * (rpc_service() < 0), when connecting takes longer than
 * connect_timeout_ms, or when calls are in flight and nothing came back
 * for stall_ms.  The calls it carried are submitted again, to the least
 * loaded connection, until their deadline (retry_deadline_ms after the
 * first submit, call_deadline()) passes; only then do they fail.  A hard
 * pool (the default) has no such deadline: its calls are retried until
 * the server answers, and the log says "not responding, still trying"
 * once per outage and "OK" when a reply comes, as the NFS client does;
 * nfs_pool_release() (at unmount) turns it soft.  NFS3ERR_JUKEBOX is
 * retried the same way, after a growing delay.
 *
 * Retried calls are not idempotent in general (a REMOVE whose reply was
 * lost comes back NOENT the second time); nfs.c copes where it can.
 *
 * Credentials.  Every call goes out with its own AUTH_SYS credential
 * (call->cred: the application's user, or the daemon's).  libnfs encodes
 * a context's auth into a request when it builds it, and a context is
 * driven by this one thread, so the thread installs the call's
 * credential right before it builds the call.  rpc_set_auth() frees the
 * auth it replaces, so cached AUTH objects cannot be swapped in: each
 * context gets one AUTH of the largest size (BE_CRED_NGROUPS groups) at
 * connect, owned by libnfs, and each issue copies the encoded body of
 * the call's credential into it from a small per-connection cache of
 * AUTH objects keyed by (uid, gid, groups), made with
 * libnfs_authunix_create() on a miss.
 */
#include "backend.h"
#include "nfs_int.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <nfsc/libnfs.h>
#include <nfsc/libnfs-raw.h>
#include <nfsc/libnfs-raw-mount.h>
#include <nfsc/libnfs-raw-nfs.h>
#include <nfsc/libnfs-zdr.h>

#define CONN_BACKOFF_MIN_MS 50
#define CONN_BACKOFF_MAX_MS 2000
#define CONN_TICK_MS 100
#define JUKEBOX_DELAY_MS 250
#define JUKEBOX_DELAY_MAX_MS 4000
#define CONN_AUTH_CACHE 8	/* credentials cached per connection */
#define CONN_SLOW_MS 1000	/* no reply this long: pick other connections */

/* A doubly linked list of calls, owner thread only. */
struct call_list {
	struct nfs_call *head, *tail;
};

/* A credential and its encoded AUTH_SYS form (never given to libnfs). */
struct conn_auth {
	struct be_cred cred;
	struct AUTH *auth;
	uint64_t used;		/* LRU stamp */
};

/* One issue of a call: what libnfs knows as private_data. */
struct nfs_tkt {
	struct nfs_tkt *next, *prev;
	struct nfs_conn *conn;
	struct nfs_call *call;	/* NULL: orphaned, the call has ended */
};

/* One server address and what went through it (nfs_pool_addrs()). */
struct nfs_paddr {
	char *host;
	int port;
	unsigned int nconn;		/* connections to it */
	atomic_uint nup;		/* of them connected */
	atomic_uint_fast64_t down_ms;	/* since when none is up; 0: up */
	atomic_uint_fast64_t calls;	/* answered */
	atomic_uint_fast64_t bytes;	/* weight of the answered calls */
	atomic_uint_fast64_t resent;	/* calls moved to another connection */
	atomic_uint_fast64_t reply_ms;	/* its last reply */
	atomic_int silent;	/* addr_silent() said so; a reply clears it */
	char last_why[128];		/* protected by the pool's err_lock */
};

struct nfs_conn {
	struct nfs_pool *pool;
	struct nfs_paddr *addr;
	unsigned int idx;
	pthread_t thread;
	int efd;

	pthread_mutex_t lock;
	struct nfs_call *sub_head, *sub_tail;	/* protected by lock */
	int stop;				/* protected by lock */

	atomic_ullong load;	/* weight of the calls it owns */
	atomic_int up;		/* connected, for the balancer */
	atomic_int slow;	/* calls in flight, no reply for CONN_SLOW_MS */

	/* Owner thread only. */
	struct rpc_context *rpc;
	int connected;
	int broken;		/* set by a callback: tear down */
	int was_up;		/* had a connection before this outage */
	int fail_err;		/* for the calls of a teardown: -EIO, or
				 * -ETIMEDOUT when the server stalled */
	uint64_t connect_ms;	/* when connecting started */
	uint64_t next_connect_ms;
	unsigned int backoff_ms;
	uint64_t progress_ms;	/* last reply, or first issue with no ticket out */
	struct call_list waiting;	/* to issue (connect, jukebox delay) */
	struct call_list failed;	/* RPC-level errors of the last service */
	struct nfs_tkt *tkts;		/* issued on rpc, incl. orphans */
	unsigned int ninflight;		/* tickets with a live call */
	char why[256];			/* this failure, for logs */
	char last_why[256];		/* the last teardown's reason */
	struct AUTH *auth;	/* the context's, owned by libnfs; NULL
				 * without a context */
	int auth_cur;		/* auths[] entry copied into it, or -1 */
	struct conn_auth auths[CONN_AUTH_CACHE];
	unsigned int nauth;
	uint64_t auth_clock;
};

struct nfs_pool {
	struct nfs_pool_params p;
	char *spec;
	char *host;		/* "a,b": every address, for messages */
	struct nfs_paddr *addrs;
	unsigned int naddrs;
	atomic_uint rr;
	struct be_cred self;	/* the daemon's: calls without a cred */
	char machine[65];	/* AUTH_SYS machine name: the host name */
	uint32_t auth_len;	/* size of the largest credential body */
	pthread_mutex_t err_lock;
	char last_error[256];	/* protected by err_lock */
	atomic_uint_fast64_t released_ms;	/* nfs_pool_release(): when */
	atomic_bool aborted;	/* nfs_pool_release(pool, true) */
	atomic_uint_fast64_t outage_ms;	/* nfs_pool_outage_since() */
	atomic_bool told;	/* "not responding" logged, "OK" not yet */
	unsigned int nconn;
	struct nfs_conn conns[];
};

uint64_t nfs_now_ms(void)
{
	return be_now_ms();
}

static void list_add(struct call_list *l, struct nfs_call *c)
{
	c->next = NULL;
	c->prev = l->tail;
	if (l->tail)
		l->tail->next = c;
	else
		l->head = c;
	l->tail = c;
}

static void list_del(struct call_list *l, struct nfs_call *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		l->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		l->tail = c->prev;
	c->next = c->prev = NULL;
}

/* The pending error of a socket poll() reported POLLERR/POLLHUP on. */
static void sock_error(int fd, char *buf, size_t len)
{
	socklen_t sl = sizeof(int);
	int e = 0;

	if (fd >= 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &sl) == 0 &&
	    e != 0)
		snprintf(buf, len, "%s", strerror(e));
}

/*
 * Why rpc_service() gave up, unless a callback or the socket said it
 * already.  libnfs reports a connection the server closed as a failed
 * reconnect (we do not let it reconnect): say what happened instead.
 */
static void rpc_why(struct rpc_context *rpc, char *buf, size_t len)
{
	const char *e = rpc_get_error(rpc);

	if (buf[0] && strncmp(buf, "RPC ERROR: ", 11) != 0)
		return;
	if (!e || !*e || strstr(e, "reconnect"))
		e = "connection closed by the server";
	snprintf(buf, len, "%s", e);
}

static void set_last_error(struct nfs_pool *pool, const char *msg)
{
	pthread_mutex_lock(&pool->err_lock);
	snprintf(pool->last_error, sizeof(pool->last_error), "%s", msg);
	pthread_mutex_unlock(&pool->err_lock);
}

char *nfs_pool_last_error(struct nfs_pool *pool, char *buf, size_t len)
{
	pthread_mutex_lock(&pool->err_lock);
	snprintf(buf, len, "%s", pool->last_error);
	pthread_mutex_unlock(&pool->err_lock);
	return buf;
}

/*
 * When the call fails if the server has not answered: its own deadline,
 * else retry_deadline_ms after its first submit; in a hard pool never,
 * until nfs_pool_release() (then at once for the calls it found).
 */
static uint64_t call_deadline(const struct nfs_pool *pool,
			      const struct nfs_call *c)
{
	uint64_t released = atomic_load(&pool->released_ms);

	if (atomic_load(&pool->aborted))
		return 0;
	if (c->deadline_ms)
		return c->deadline_ms;
	if (!pool->p.hard || (released && c->first_ms > released))
		return c->first_ms + pool->p.retry_deadline_ms;
	return released ? released : UINT64_MAX;
}

/* The server has not answered since t (a connection lost, a call past the
 * soft deadline); the first such moment of an outage is kept. */
static void pool_outage(struct nfs_pool *pool, uint64_t t)
{
	uint_fast64_t zero = 0;

	atomic_compare_exchange_strong(&pool->outage_ms, &zero, t);
}

/*
 * A hard call is past the deadline a soft one has: say so, once an
 * outage, as the NFS client does; not while a connection is up (the call
 * moves there), nor once the pool is released (soft).
 */
static void pool_still_trying(struct nfs_pool *pool, uint64_t now)
{
	unsigned int i;

	if (atomic_load(&pool->released_ms))
		return;
	for (i = 0; i < pool->nconn; i++)
		if (atomic_load(&pool->conns[i].up))
			return;
	pool_outage(pool, now);
	if (!atomic_exchange(&pool->told, true))
		log_msg(LOG_LVL_WARN, "nfs",
			"%s: server %s not responding, still trying",
			pool->spec, pool->host);
}

/* A reply came: the outage, if any, is over. */
static void pool_answered(struct nfs_pool *pool)
{
	if (!atomic_load(&pool->outage_ms) && !atomic_load(&pool->told))
		return;
	atomic_store(&pool->outage_ms, 0);
	if (atomic_exchange(&pool->told, false))
		log_msg(LOG_LVL_WARN, "nfs", "%s: server %s OK", pool->spec,
			pool->host);
}

void nfs_pool_release(struct nfs_pool *pool, bool abort)
{
	uint_fast64_t zero = 0;

	atomic_compare_exchange_strong(&pool->released_ms, &zero,
				       nfs_now_ms());
	if (abort)
		atomic_store(&pool->aborted, true);
}

uint64_t nfs_pool_outage_since(struct nfs_pool *pool)
{
	return atomic_load(&pool->outage_ms);
}

/* The call's end: done exactly once. */
static void call_complete(struct nfs_call *call, int err, void *res)
{
	struct nfs_conn *conn = call->conn;

	if (conn)
		atomic_fetch_sub(&conn->load, call->weight);
	call->conn = NULL;
	call->done(call, err, res);
}

/* End call with err, saying why in call->why for the owner's log line. */
static void call_fail(struct nfs_call *call, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void call_fail(struct nfs_call *call, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(call->why, sizeof(call->why), fmt, ap);
	va_end(ap);
	log_msg(LOG_LVL_DEBUG, "nfs", "%s: %s", call->op, call->why);
	call_complete(call, err, NULL);
}

static void conn_wake(struct nfs_conn *conn)
{
	uint64_t one = 1;
	ssize_t n;

	n = write(conn->efd, &one, sizeof(one));
	(void)n;	/* EAGAIN: the counter is full, so it is awake anyway */
}

/*
 * The least loaded connection among the best kind: connected and
 * answering, then connected, then any (all down: the call waits on one).
 */
static struct nfs_conn *pool_pick(struct nfs_pool *pool)
{
	unsigned int start = atomic_fetch_add(&pool->rr, 1), i;
	struct nfs_conn *best = NULL;
	unsigned long long best_load = 0;
	int best_up = 0;

	for (i = 0; i < pool->nconn; i++) {
		struct nfs_conn *c = &pool->conns[(start + i) % pool->nconn];
		unsigned long long load = atomic_load(&c->load);
		int up = !atomic_load(&c->up) ? 0 :
			 atomic_load(&c->slow) || atomic_load(&c->addr->silent) ?
							1 : 2;

		if (!best || up > best_up ||
		    (up == best_up && load < best_load)) {
			best = c;
			best_load = load;
			best_up = up;
		}
	}
	return best;
}

void nfs_pool_submit(struct nfs_pool *pool, struct nfs_call *call)
{
	struct nfs_conn *conn;
	int stop;

	if (!call->first_ms)
		call->first_ms = nfs_now_ms();
	call->next = call->prev = NULL;
	call->tkt = NULL;
	call->not_before_ms = 0;

	conn = pool_pick(pool);
	atomic_fetch_add(&conn->load, call->weight);
	call->conn = conn;
	pthread_mutex_lock(&conn->lock);
	stop = conn->stop;
	if (!stop) {
		if (conn->sub_tail)
			conn->sub_tail->next = call;
		else
			conn->sub_head = call;
		conn->sub_tail = call;
	}
	pthread_mutex_unlock(&conn->lock);
	if (stop) {
		call_fail(call, -ESHUTDOWN, "backend closing");
		return;
	}
	conn_wake(conn);
}

/* ---- the owner thread ----------------------------------------------- */

/* The encoded AUTH_SYS credential of cred, from the cache or made now. */
static struct conn_auth *conn_auth_get(struct nfs_conn *conn,
				       const struct be_cred *cred)
{
	struct nfs_pool *pool = conn->pool;
	struct conn_auth *e;
	struct AUTH *a;
	unsigned int i, victim = 0;
	uint32_t n = cred->ngroups < BE_CRED_NGROUPS ? cred->ngroups :
						       BE_CRED_NGROUPS;

	for (i = 0; i < conn->nauth; i++) {
		e = &conn->auths[i];
		if (be_cred_equal(&e->cred, cred))
			goto out_found;
		if (e->used < conn->auths[victim].used)
			victim = i;
	}
	a = libnfs_authunix_create(pool->machine, cred->uid, cred->gid, n,
				   (uint32_t *)cred->groups);
	if (!a)
		return NULL;
	if (a->ah_cred.oa_length > pool->auth_len) {
		libnfs_auth_destroy(a);	/* cannot happen: n <= the max */
		return NULL;
	}
	if (conn->nauth < CONN_AUTH_CACHE) {
		i = conn->nauth++;
	} else {
		i = victim;
		libnfs_auth_destroy(conn->auths[i].auth);
		if (conn->auth_cur == (int)i)
			conn->auth_cur = -1;
	}
	e = &conn->auths[i];
	memset(&e->cred, 0, sizeof(e->cred));
	e->cred.uid = cred->uid;
	e->cred.gid = cred->gid;
	e->cred.ngroups = n;
	memcpy(e->cred.groups, cred->groups, n * sizeof(cred->groups[0]));
	e->auth = a;
out_found:
	e->used = ++conn->auth_clock;
	return e;
}

/* Make the context's next request go out with cred (NULL: the daemon's). */
static int conn_set_auth(struct nfs_conn *conn, const struct be_cred *cred)
{
	struct conn_auth *e;

	if (!conn->auth)
		return -EIO;
	e = conn_auth_get(conn, cred ? cred : &conn->pool->self);
	if (!e)
		return -ENOMEM;
	if (conn->auth_cur == (int)(e - conn->auths))
		return 0;
	memcpy(conn->auth->ah_cred.oa_base, e->auth->ah_cred.oa_base,
	       e->auth->ah_cred.oa_length);
	conn->auth->ah_cred.oa_length = e->auth->ah_cred.oa_length;
	conn->auth_cur = (int)(e - conn->auths);
	return 0;
}

/* The context's own AUTH, big enough for any credential. */
static int conn_make_auth(struct nfs_conn *conn)
{
	uint32_t zeros[BE_CRED_NGROUPS] = { 0 };
	struct AUTH *a = libnfs_authunix_create(conn->pool->machine, 0, 0,
						BE_CRED_NGROUPS, zeros);

	if (!a)
		return -ENOMEM;
	rpc_set_auth(conn->rpc, a);	/* frees libnfs's default one */
	conn->auth = a;
	conn->auth_cur = -1;
	return conn_set_auth(conn, NULL);
}

static void conn_free_auths(struct nfs_conn *conn)
{
	unsigned int i;

	for (i = 0; i < conn->nauth; i++)
		libnfs_auth_destroy(conn->auths[i].auth);
	conn->nauth = 0;
}

static void conn_rpc_cb(struct rpc_context *rpc, int status, void *data,
			void *priv)
{
	struct nfs_tkt *t = priv;
	struct nfs_conn *conn = t->conn;
	struct nfs_call *call = t->call;
	uint64_t now = nfs_now_ms();

	(void)rpc;
	if (t->prev)
		t->prev->next = t->next;
	else
		conn->tkts = t->next;
	if (t->next)
		t->next->prev = t->prev;
	free(t);
	if (status == RPC_STATUS_SUCCESS) {
		conn->progress_ms = now;
		atomic_store(&conn->addr->reply_ms, now);
		atomic_store(&conn->addr->silent, 0);
		atomic_store(&conn->slow, 0);
		pool_answered(conn->pool);
	}
	if (!call)
		return;		/* it ended while in flight */
	conn->ninflight--;
	call->tkt = NULL;

	if (status == RPC_STATUS_SUCCESS) {
		int stat;

		if (!data) {
			call_fail(call, -EIO, "empty reply");
			return;
		}
		stat = *(int *)data;
		if (stat == NFS3ERR_JUKEBOX &&
		    now < call_deadline(conn->pool, call)) {
			unsigned int d = JUKEBOX_DELAY_MS << (call->jukebox < 4 ?
							      call->jukebox : 4);

			call->jukebox++;
			call->not_before_ms = now + (d < JUKEBOX_DELAY_MAX_MS ?
						     d : JUKEBOX_DELAY_MAX_MS);
			log_msg(LOG_LVL_DEBUG, "nfs",
				"%s: %s: server busy (NFS3ERR_JUKEBOX), retrying",
				conn->pool->spec, call->op);
			list_add(&conn->waiting, call);
			return;
		}
		if (stat == NFS3ERR_JUKEBOX) {
			call_fail(call, -ETIMEDOUT,
				  "server still busy (NFS3ERR_JUKEBOX) after %u ms",
				  (unsigned int)(now - call->first_ms));
			return;
		}
		atomic_fetch_add(&conn->addr->calls, 1);
		atomic_fetch_add(&conn->addr->bytes, call->weight);
		call_complete(call, 0, data);
		return;
	}
	/*
	 * ERROR, CANCEL or TIMEOUT.  Whether the connection is gone or the
	 * server refused this one call is known only once rpc_service()
	 * returns: park it.
	 */
	if (!conn->why[0])
		snprintf(conn->why, sizeof(conn->why), "%s",
			 status == RPC_STATUS_ERROR && data ?
				 (const char *)data :
			 status == RPC_STATUS_CANCEL ? "connection closed" :
						       "timed out");
	call->err = status == RPC_STATUS_TIMEOUT ? -ETIMEDOUT : -EIO;
	list_add(&conn->failed, call);
}

static void conn_connect_cb(struct rpc_context *rpc, int status, void *data,
			    void *priv)
{
	struct nfs_conn *conn = priv;

	(void)rpc;
	if (status == RPC_STATUS_SUCCESS) {
		conn->connected = 1;
		conn->why[0] = '\0';
		conn->backoff_ms = 0;
		atomic_store(&conn->up, 1);
		atomic_store(&conn->slow, 0);
		atomic_fetch_add(&conn->addr->nup, 1);
		atomic_store(&conn->addr->down_ms, 0);
		atomic_store(&conn->addr->reply_ms, nfs_now_ms());
		atomic_store(&conn->addr->silent, 0);
		pool_answered(conn->pool);
		if (conn->was_up)
			log_msg(LOG_LVL_INFO, "nfs",
				"%s: connection %u to %s is back",
				conn->pool->spec, conn->idx, conn->addr->host);
		else
			log_msg(LOG_LVL_DEBUG, "nfs",
				"%s: connection %u to %s up", conn->pool->spec,
				conn->idx, conn->addr->host);
		conn->was_up = 1;
		return;
	}
	if (!conn->why[0])
		snprintf(conn->why, sizeof(conn->why), "%s",
			 data ? (const char *)data : "connection failed");
	conn->broken = 1;
}

static void conn_start_connect(struct nfs_conn *conn, uint64_t now)
{
	int rc;

	conn->rpc = rpc_init_context();
	if (!conn->rpc || conn_make_auth(conn) < 0) {
		snprintf(conn->why, sizeof(conn->why), "out of memory");
		conn->broken = 1;
		return;
	}
	conn->connect_ms = now;
	conn->connected = 0;
	conn->broken = 0;
	if (conn->addr->port)
		rc = rpc_connect_port_async(conn->rpc, conn->addr->host,
					    conn->addr->port, NFS_PROGRAM,
					    NFS_V3, conn_connect_cb, conn);
	else
		rc = rpc_connect_program_async(conn->rpc, conn->addr->host,
					       NFS_PROGRAM, NFS_V3,
					       conn_connect_cb, conn);
	if (rc != 0) {
		snprintf(conn->why, sizeof(conn->why), "%s",
			 rpc_get_error(conn->rpc));
		conn->broken = 1;
	}
}

/* Move every call the connection holds for issue onto l. */
static void conn_take_all(struct nfs_conn *conn, struct call_list *l)
{
	struct nfs_call *c;

	while ((c = conn->failed.head)) {
		list_del(&conn->failed, c);
		list_add(l, c);
	}
	while ((c = conn->waiting.head)) {
		list_del(&conn->waiting, c);
		list_add(l, c);
	}
}

/*
 * Drop the context.  Its callbacks run (CANCEL) and park their calls on
 * failed; whatever libnfs did not call back is freed here.  The calls go
 * back to the pool unless their deadline has passed.
 */
static void conn_teardown(struct nfs_conn *conn, uint64_t now, int stopping)
{
	struct nfs_pool *pool = conn->pool;
	struct call_list retry = { NULL, NULL };
	struct nfs_tkt *t;
	struct nfs_call *c;
	unsigned int i;
	int other_up = 0;
	uint_fast64_t zero = 0;

	if (atomic_exchange(&conn->up, 0))
		atomic_fetch_sub(&conn->addr->nup, 1);
	atomic_store(&conn->slow, 0);
	if (!stopping && atomic_load(&conn->addr->nup) == 0)
		atomic_compare_exchange_strong(&conn->addr->down_ms, &zero,
					       now);
	if (conn->rpc) {
		if (!stopping && conn->connected)
			log_msg(LOG_LVL_WARN, "nfs",
				"%s: connection %u to %s lost: %s; reconnecting",
				pool->spec, conn->idx, conn->addr->host,
				conn->why);
		rpc_destroy_context(conn->rpc);	/* frees conn->auth */
		conn->rpc = NULL;
	}
	conn->auth = NULL;
	conn->auth_cur = -1;
	if (conn->why[0]) {
		set_last_error(pool, conn->why);
		snprintf(conn->last_why, sizeof(conn->last_why), "%s",
			 conn->why);
		pthread_mutex_lock(&pool->err_lock);
		snprintf(conn->addr->last_why, sizeof(conn->addr->last_why),
			 "%.127s", conn->why);
		pthread_mutex_unlock(&pool->err_lock);
	}
	/* Tickets libnfs never called back: their RPCs are gone too. */
	while ((t = conn->tkts)) {
		conn->tkts = t->next;
		c = t->call;
		free(t);
		if (!c)
			continue;
		c->tkt = NULL;
		c->err = conn->fail_err;
		list_add(&conn->failed, c);
	}
	conn->fail_err = -EIO;
	conn->ninflight = 0;
	conn->connected = 0;
	conn->broken = 0;
	conn->backoff_ms = conn->backoff_ms ? conn->backoff_ms * 2 :
					      CONN_BACKOFF_MIN_MS;
	if (conn->backoff_ms > CONN_BACKOFF_MAX_MS)
		conn->backoff_ms = CONN_BACKOFF_MAX_MS;
	conn->next_connect_ms = now + conn->backoff_ms;

	for (i = 0; i < pool->nconn; i++)
		if (&pool->conns[i] != conn && atomic_load(&pool->conns[i].up))
			other_up = 1;
	if (!stopping && !other_up)
		pool_outage(pool, now);
	conn_take_all(conn, &retry);
	while ((c = retry.head)) {
		list_del(&retry, c);
		if (stopping) {
			call_fail(c, -ESHUTDOWN, "backend closing");
		} else if (now >= call_deadline(pool, c)) {
			call_fail(c, c->err ? c->err : -EIO,
				  "no answer from %s within %u ms: %s",
				  conn->addr->host,
				  (unsigned int)(now - c->first_ms), conn->why);
		} else if (other_up) {
			/* another connection is up: go there now */
			atomic_fetch_sub(&conn->load, c->weight);
			c->conn = NULL;
			if (pool->p.retries)
				atomic_fetch_add(pool->p.retries, 1);
			atomic_fetch_add(&conn->addr->resent, 1);
			nfs_pool_submit(pool, c);
		} else {
			if (pool->p.retries)
				atomic_fetch_add(pool->p.retries, 1);
			list_add(&conn->waiting, c);
		}
	}
}

static void conn_issue(struct nfs_conn *conn, struct nfs_call *call,
		       uint64_t now)
{
	struct nfs_tkt *t = calloc(1, sizeof(*t));
	int rc;

	if (!t) {
		call_fail(call, -ENOMEM, "out of memory");
		return;
	}
	/* unanswered tickets, orphans too, keep the stall clock running */
	if (!conn->tkts)
		conn->progress_ms = now;
	t->conn = conn;
	t->call = call;
	t->next = conn->tkts;
	if (conn->tkts)
		conn->tkts->prev = t;
	conn->tkts = t;
	conn->ninflight++;
	call->tkt = t;
	call->tries++;
	rc = conn_set_auth(conn, call->cred);
	if (rc == 0)
		rc = call->issue(call, conn->rpc, conn_rpc_cb, t);
	if (rc == 0)
		return;
	/* not queued: libnfs did not keep the ticket */
	if (t->prev)
		t->prev->next = t->next;
	else
		conn->tkts = t->next;
	if (t->next)
		t->next->prev = t->prev;
	free(t);
	conn->ninflight--;
	call->tkt = NULL;
	if (rc == -ENAMETOOLONG)
		call_fail(call, rc, "arguments too long to encode: %s",
			  rpc_get_error(conn->rpc));
	else
		call_fail(call, -EIO, "cannot queue the call: %s",
			  rpc_get_error(conn->rpc));
}

/*
 * Has the connection's address gone silent while another answers?  Then
 * its calls should move now rather than after stall_ms: nothing came back
 * on any of its connections for failover_ms, and another address replied
 * within that time.
 */
static bool addr_silent(struct nfs_conn *conn, uint64_t now)
{
	struct nfs_pool *pool = conn->pool;
	uint64_t wait = pool->p.stall_ms / 4 > 2000 ? pool->p.stall_ms / 4 :
						       2000;
	unsigned int i;

	if (pool->naddrs < 2 || now - conn->progress_ms < wait ||
	    now - atomic_load(&conn->addr->reply_ms) < wait)
		return false;
	for (i = 0; i < pool->naddrs; i++)
		if (&pool->addrs[i] != conn->addr &&
		    now - atomic_load(&pool->addrs[i].reply_ms) < wait)
			return true;
	return false;
}

/* Deadlines of waiting and in-flight calls, connect and stall timers. */
static void conn_timers(struct nfs_conn *conn, uint64_t now)
{
	struct nfs_pool *pool = conn->pool;
	struct nfs_call *c, *next;
	struct nfs_tkt *t;

	for (c = conn->waiting.head; c; c = next) {
		next = c->next;
		if (pool->p.hard && !c->deadline_ms && !c->jukebox &&
		    now >= c->first_ms + pool->p.retry_deadline_ms)
			pool_still_trying(pool, now);
		if (now < call_deadline(pool, c))
			continue;
		list_del(&conn->waiting, c);
		if (c->jukebox)
			call_fail(c, -ETIMEDOUT,
				  "server still busy (NFS3ERR_JUKEBOX) after %u ms",
				  (unsigned int)(now - c->first_ms));
		else
			call_fail(c, c->err ? c->err : -EIO,
				  "server %s not reachable for %u ms%s%s",
				  conn->addr->host, (unsigned int)(now - c->first_ms),
				  conn->last_why[0] ? ": " : "",
				  conn->last_why);
	}
	for (t = conn->tkts; t; t = t->next) {
		c = t->call;
		if (c && pool->p.hard && !c->deadline_ms &&
		    now >= c->first_ms + pool->p.retry_deadline_ms)
			pool_still_trying(pool, now);
		if (!c || now < call_deadline(pool, c))
			continue;
		/* orphan the ticket: the late reply will find no call */
		t->call = NULL;
		c->tkt = NULL;
		conn->ninflight--;
		call_fail(c, -ETIMEDOUT, "no answer from %s within %u ms",
			  conn->addr->host, (unsigned int)(now - c->first_ms));
	}
	if (conn->rpc && !conn->connected &&
	    now - conn->connect_ms >= pool->p.connect_timeout_ms) {
		snprintf(conn->why, sizeof(conn->why),
			 "no answer within %u ms", pool->p.connect_timeout_ms);
		conn->broken = 1;
	}
	if (conn->rpc && conn->connected && conn->tkts && !conn->broken) {
		/* a silent address is left at once, any connection after
		 * stall_ms without a reply */
		bool silent = addr_silent(conn, now);

		if (now - conn->progress_ms >= CONN_SLOW_MS)
			atomic_store(&conn->slow, 1);
		if (silent)
			atomic_store(&conn->addr->silent, 1);
		if (silent || now - conn->progress_ms >= pool->p.stall_ms) {
			snprintf(conn->why, sizeof(conn->why),
				 "no reply for %u ms with %u calls in flight%s",
				 (unsigned int)(now - conn->progress_ms),
				 conn->ninflight,
				 silent ? ", while other addresses answer" : "");
			conn->fail_err = -ETIMEDOUT;
			conn->broken = 1;
		}
	}
	if (conn->rpc && conn->connected && !conn->tkts && !conn->broken &&
	    atomic_load(&conn->addr->silent)) {
		/*
		 * Another connection found the address silent.  This one,
		 * idle, is as dead, and only trying it tells: it connects
		 * again (a reply or a connect clears the flag), else the
		 * address counts as down once none of its connections is
		 * up.  An idle connection that stayed "up" kept a dead
		 * address up in status for as long as nothing was sent.
		 */
		snprintf(conn->why, sizeof(conn->why),
			 "another connection to this address went silent");
		conn->broken = 1;
	}
}

static int conn_poll_timeout(struct nfs_conn *conn, uint64_t now)
{
	struct nfs_call *c;
	int64_t t = 1000;

	if (!conn->rpc) {
		t = (int64_t)conn->next_connect_ms - (int64_t)now;
	} else if (!conn->connected || conn->ninflight) {
		t = CONN_TICK_MS;
	} else {
		for (c = conn->waiting.head; c; c = c->next)
			if ((int64_t)(c->not_before_ms - now) < t)
				t = (int64_t)(c->not_before_ms - now);
	}
	if ((conn->tkts || conn->waiting.head) && t > CONN_TICK_MS)
		t = CONN_TICK_MS;	/* deadlines, orphans */
	return t < 0 ? 0 : (int)t;
}

static void *conn_main(void *arg)
{
	struct nfs_conn *conn = arg;
	struct nfs_call *sub, *c, *next;
	struct pollfd pfd[2];
	uint64_t now;
	int stop, rc;

	pthread_setname_np(pthread_self(), "sfs-nfs");
	for (;;) {
		pthread_mutex_lock(&conn->lock);
		sub = conn->sub_head;
		conn->sub_head = conn->sub_tail = NULL;
		stop = conn->stop;
		pthread_mutex_unlock(&conn->lock);
		for (c = sub; c; c = next) {
			next = c->next;
			list_add(&conn->waiting, c);
		}
		now = nfs_now_ms();
		if (stop)
			break;

		if (!conn->rpc && now >= conn->next_connect_ms)
			conn_start_connect(conn, now);
		if (conn->rpc && conn->connected) {
			for (c = conn->waiting.head; c; c = next) {
				next = c->next;
				if (c->not_before_ms > now)
					continue;
				list_del(&conn->waiting, c);
				conn_issue(conn, c, now);
			}
		}
		conn_timers(conn, now);
		if (conn->broken) {
			conn_teardown(conn, now, 0);
			continue;
		}

		pfd[0].fd = conn->efd;
		pfd[0].events = POLLIN;
		pfd[0].revents = 0;
		pfd[1].fd = conn->rpc ? rpc_get_fd(conn->rpc) : -1;
		pfd[1].events = conn->rpc ? (short)rpc_which_events(conn->rpc) :
					    0;
		pfd[1].revents = 0;
		rc = poll(pfd, 2, conn_poll_timeout(conn, now));
		if (rc < 0 && errno != EINTR) {
			log_msg(LOG_LVL_ERR, "nfs", "%s: poll: %s",
				conn->pool->spec, strerror(errno));
			usleep(10000);
			continue;
		}
		if (pfd[0].revents & POLLIN) {
			uint64_t v;
			ssize_t n = read(conn->efd, &v, sizeof(v));

			(void)n;
		}
		if (!conn->rpc || pfd[1].fd < 0 || !pfd[1].revents)
			continue;
		conn->why[0] = '\0';
		if (pfd[1].revents & (POLLERR | POLLHUP))
			sock_error(pfd[1].fd, conn->why, sizeof(conn->why));
		rc = rpc_service(conn->rpc, pfd[1].revents);
		if (rc < 0 || conn->broken) {
			rpc_why(conn->rpc, conn->why, sizeof(conn->why));
			conn_teardown(conn, nfs_now_ms(), 0);
			continue;
		}
		/* the connection lives: these were refused one by one */
		while ((c = conn->failed.head)) {
			list_del(&conn->failed, c);
			call_fail(c, -EIO, "RPC failed: %s", conn->why);
		}
	}

	/* stopping: end everything this connection owns */
	conn_teardown(conn, now, 1);
	while ((c = conn->waiting.head)) {
		list_del(&conn->waiting, c);
		call_fail(c, -ESHUTDOWN, "backend closing");
	}
	return NULL;
}

static void pool_free(struct nfs_pool *pool)
{
	unsigned int i;

	for (i = 0; i < pool->naddrs; i++)
		free(pool->addrs[i].host);
	free(pool->addrs);
	free(pool->spec);
	free(pool->host);
	free(pool);
}

int nfs_pool_create(const struct nfs_pool_params *p, struct nfs_pool **out)
{
	struct nfs_pool *pool;
	unsigned int i, n = p->nconnect ? p->nconnect : 1;
	size_t hlen = 1;
	int rc = 0;

	if (p->naddrs == 0)
		return -EINVAL;
	if (n < p->naddrs)
		n = p->naddrs;
	pool = calloc(1, sizeof(*pool) + n * sizeof(pool->conns[0]));
	if (!pool)
		return -ENOMEM;
	pool->p = *p;
	pool->spec = strdup(p->spec);
	pool->addrs = calloc(p->naddrs, sizeof(*pool->addrs));
	for (i = 0; i < p->naddrs; i++)
		hlen += strlen(p->addrs[i].host) + 1;
	pool->host = calloc(1, hlen);
	if (!pool->spec || !pool->addrs || !pool->host) {
		rc = -ENOMEM;
		goto out_free;
	}
	for (i = 0; i < p->naddrs; i++) {
		struct nfs_paddr *a = &pool->addrs[i];

		a->host = strdup(p->addrs[i].host);
		if (!a->host) {
			rc = -ENOMEM;
			goto out_free;
		}
		a->port = p->addrs[i].port;
		pool->naddrs++;
		if (i)
			strcat(pool->host, ",");
		strcat(pool->host, a->host);
	}
	pool->p.spec = pool->spec;
	pool->p.addrs = NULL;	/* the caller's: use pool->addrs */
	pool->self.uid = (uint32_t)geteuid();
	pool->self.gid = (uint32_t)getegid();
	if (gethostname(pool->machine, sizeof(pool->machine) - 1) < 0 ||
	    !pool->machine[0])
		snprintf(pool->machine, sizeof(pool->machine), "stagefs");
	{
		uint32_t zeros[BE_CRED_NGROUPS] = { 0 };
		struct AUTH *a = libnfs_authunix_create(pool->machine, 0, 0,
							BE_CRED_NGROUPS,
							zeros);

		if (!a) {
			rc = -ENOMEM;
			goto out_free;
		}
		pool->auth_len = a->ah_cred.oa_length;
		libnfs_auth_destroy(a);
	}
	pthread_mutex_init(&pool->err_lock, NULL);
	for (i = 0; i < n; i++) {
		struct nfs_conn *conn = &pool->conns[i];

		conn->pool = pool;
		conn->addr = &pool->addrs[i % pool->naddrs];
		conn->addr->nconn++;
		conn->idx = i;
		conn->fail_err = -EIO;
		conn->auth_cur = -1;
		pthread_mutex_init(&conn->lock, NULL);
		conn->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (conn->efd < 0) {
			rc = -errno;
			pthread_mutex_destroy(&conn->lock);
			goto out_stop;
		}
		rc = -pthread_create(&conn->thread, NULL, conn_main, conn);
		if (rc < 0) {
			close(conn->efd);
			pthread_mutex_destroy(&conn->lock);
			goto out_stop;
		}
		pool->nconn++;
	}
	*out = pool;
	return 0;

out_stop:
	nfs_pool_destroy(pool);
	return rc;
out_free:
	pool_free(pool);
	return rc;
}

void nfs_pool_destroy(struct nfs_pool *pool)
{
	unsigned int i;

	if (!pool)
		return;
	for (i = 0; i < pool->nconn; i++) {
		struct nfs_conn *conn = &pool->conns[i];

		pthread_mutex_lock(&conn->lock);
		conn->stop = 1;
		pthread_mutex_unlock(&conn->lock);
		conn_wake(conn);
	}
	for (i = 0; i < pool->nconn; i++) {
		struct nfs_conn *conn = &pool->conns[i];
		struct nfs_call *c, *next;

		pthread_join(conn->thread, NULL);
		/* submitted after the thread's last look */
		c = conn->sub_head;
		conn->sub_head = conn->sub_tail = NULL;
		for (; c; c = next) {
			next = c->next;
			call_fail(c, -ESHUTDOWN, "backend closing");
		}
		close(conn->efd);
		pthread_mutex_destroy(&conn->lock);
		conn_free_auths(conn);
	}
	pthread_mutex_destroy(&pool->err_lock);
	pool_free(pool);
}

unsigned int nfs_pool_addrs(struct nfs_pool *pool, struct be_addr_stat *out,
			    unsigned int max)
{
	unsigned int i;

	for (i = 0; i < pool->naddrs && i < max; i++) {
		struct nfs_paddr *a = &pool->addrs[i];
		struct be_addr_stat *o = &out[i];

		memset(o, 0, sizeof(*o));
		snprintf(o->addr, sizeof(o->addr), "%s", a->host);
		o->port = a->port;
		o->conns = a->nconn;
		o->up = atomic_load(&a->nup);
		o->down_since_ms = atomic_load(&a->down_ms);
		o->calls = atomic_load(&a->calls);
		o->bytes = atomic_load(&a->bytes);
		o->resent = atomic_load(&a->resent);
		pthread_mutex_lock(&pool->err_lock);
		snprintf(o->last_error, sizeof(o->last_error), "%s",
			 a->last_why);
		pthread_mutex_unlock(&pool->err_lock);
	}
	return pool->naddrs;
}

/* ---- MOUNT at open time --------------------------------------------- */

/* One synchronous exchange with the MOUNT program. */
struct mnt_state {
	struct rpc_context *rpc;
	uint64_t deadline;
	int done;
	int status;
	char msg[256];
	/* results */
	struct exportnode *exports;	/* copied list, ours to free */
	int mnt_stat;
	uint32_t fh_len;
	unsigned char fh[FHSIZE3];
};

static void mnt_cb_generic(struct rpc_context *rpc, int status, void *data,
			   void *priv)
{
	struct mnt_state *st = priv;

	(void)rpc;
	st->done = 1;
	st->status = status;
	if (status != RPC_STATUS_SUCCESS)
		snprintf(st->msg, sizeof(st->msg), "%s",
			 status == RPC_STATUS_ERROR && data ?
				 (const char *)data : "cancelled");
}

static void free_exports(struct exportnode *e)
{
	struct exportnode *next;

	for (; e; e = next) {
		next = e->ex_next;
		free(e->ex_dir);
		free(e);
	}
}

static void mnt_export_cb(struct rpc_context *rpc, int status, void *data,
			  void *priv)
{
	struct mnt_state *st = priv;
	struct exportnode **tail = &st->exports, *next, e;

	mnt_cb_generic(rpc, status, data, priv);
	if (status != RPC_STATUS_SUCCESS || !data)
		return;
	/* ZDR list elements are only 4-byte aligned: read through a copy */
	for (next = *(exports *)data; next; next = e.ex_next) {
		struct exportnode *copy = calloc(1, sizeof(*copy));

		memcpy(&e, next, sizeof(e));
		if (!copy)
			return;
		copy->ex_dir = strdup(e.ex_dir ? e.ex_dir : "");
		if (!copy->ex_dir) {
			free(copy);
			return;
		}
		*tail = copy;
		tail = &copy->ex_next;
	}
}

static void mnt_mnt_cb(struct rpc_context *rpc, int status, void *data,
		       void *priv)
{
	struct mnt_state *st = priv;
	mountres3 *res = data;

	mnt_cb_generic(rpc, status, data, priv);
	if (status != RPC_STATUS_SUCCESS || !res)
		return;
	st->mnt_stat = res->fhs_status;
	if (res->fhs_status != MNT3_OK)
		return;
	st->fh_len = res->mountres3_u.mountinfo.fhandle.fhandle3_len;
	if (st->fh_len > sizeof(st->fh)) {
		st->mnt_stat = MNT3ERR_SERVERFAULT;
		return;
	}
	memcpy(st->fh, res->mountres3_u.mountinfo.fhandle.fhandle3_val,
	       st->fh_len);
}

/* Drive st->rpc until the callback ran; -ETIMEDOUT, -EIO or 0. */
static int mnt_wait(struct mnt_state *st)
{
	char sockmsg[128] = "";

	st->done = 0;
	while (!st->done) {
		struct pollfd pfd;
		uint64_t now = nfs_now_ms();
		int rc;

		if (now >= st->deadline)
			return -ETIMEDOUT;
		pfd.fd = rpc_get_fd(st->rpc);
		pfd.events = (short)rpc_which_events(st->rpc);
		pfd.revents = 0;
		rc = poll(&pfd, 1, (int)(st->deadline - now));
		if (rc < 0 && errno != EINTR)
			return -errno;
		if (rc <= 0)
			continue;
		if (pfd.revents & (POLLERR | POLLHUP))
			sock_error(pfd.fd, sockmsg, sizeof(sockmsg));
		if (rpc_service(st->rpc, pfd.revents) < 0) {
			if (sockmsg[0])
				snprintf(st->msg, sizeof(st->msg), "%s",
					 sockmsg);
			else if (!st->done)
				snprintf(st->msg, sizeof(st->msg), "%s",
					 rpc_get_error(st->rpc));
			if (!st->done || st->status != RPC_STATUS_SUCCESS)
				return -EIO;
		}
	}
	return st->status == RPC_STATUS_SUCCESS ? 0 : -EIO;
}

static int mnt_try(struct mnt_state *st, const char *dir)
{
	int rc;

	st->mnt_stat = MNT3ERR_SERVERFAULT;
	if (rpc_mount3_mnt_async(st->rpc, mnt_mnt_cb, (char *)dir, st) != 0) {
		snprintf(st->msg, sizeof(st->msg), "%s",
			 rpc_get_error(st->rpc));
		return -EIO;
	}
	rc = mnt_wait(st);
	if (rc < 0)
		return rc;
	return st->mnt_stat == MNT3_OK ? 0 : -ENOENT;
}

int nfs_mount_export(const char *spec, const char *host, const char *path,
		     unsigned int timeout_ms, unsigned char *fh,
		     uint32_t *fh_len, size_t *covered, char *err,
		     size_t errlen)
{
	struct addrinfo hints, *ai = NULL;
	struct mnt_state st;
	struct exportnode *e;
	int best = -1, rc, denied = 0, last_stat = MNT3ERR_NOENT;
	unsigned int n;
	char *dir = NULL;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(host, NULL, &hints, &ai);
	if (rc != 0) {
		snprintf(err, errlen, "%s: cannot resolve host %s: %s", spec,
			 host, gai_strerror(rc));
		return -EHOSTUNREACH;
	}
	freeaddrinfo(ai);

	memset(&st, 0, sizeof(st));
	st.deadline = nfs_now_ms() + timeout_ms;
	st.rpc = rpc_init_context();
	if (!st.rpc) {
		snprintf(err, errlen, "%s: out of memory", spec);
		return -ENOMEM;
	}
	if (rpc_connect_program_async(st.rpc, host, MOUNT_PROGRAM,
				      MOUNT_V3, mnt_cb_generic, &st) != 0) {
		snprintf(st.msg, sizeof(st.msg), "%s", rpc_get_error(st.rpc));
		rc = -EHOSTUNREACH;
		goto out_unreachable;
	}
	rc = mnt_wait(&st);
	if (rc < 0)
		goto out_unreachable;

	/* The export list: pick the longest export that covers the path. */
	if (rpc_mount3_export_async(st.rpc, mnt_export_cb, &st) == 0 &&
	    mnt_wait(&st) == 0) {
		for (e = st.exports; e; e = e->ex_next) {
			int len = nfs_export_covers(e->ex_dir, path);

			if (len > best)
				best = len;
		}
	}
	if (nfs_now_ms() >= st.deadline) {
		rc = -ETIMEDOUT;
		goto out_unreachable;
	}
	if (best >= 0) {
		dir = strndup(path, best ? (size_t)best : 1);
		if (!dir) {
			rc = -ENOMEM;
			goto out_destroy;
		}
		rc = mnt_try(&st, dir);
		if (rc == 0) {
			*covered = (size_t)best;
			goto out_found;
		}
		if (rc != -ENOENT)
			goto out_unreachable;
		last_stat = st.mnt_stat;
		denied |= st.mnt_stat == MNT3ERR_ACCES ||
			  st.mnt_stat == MNT3ERR_PERM;
		free(dir);
		dir = NULL;
	}
	/* Not in the list (or the list lied): MNT successive prefixes. */
	for (n = nfs_path_components(path); n > 0; n--) {
		size_t len = nfs_path_prefix_len(path, n);

		if (best >= 0 && len == (size_t)best)
			continue;
		dir = strndup(path, len);
		if (!dir) {
			rc = -ENOMEM;
			goto out_destroy;
		}
		rc = mnt_try(&st, dir);
		if (rc == 0) {
			*covered = len;
			goto out_found;
		}
		if (rc != -ENOENT)
			goto out_unreachable;
		if (st.mnt_stat != MNT3ERR_NOENT)
			last_stat = st.mnt_stat;
		denied |= st.mnt_stat == MNT3ERR_PERM;
		free(dir);
		dir = NULL;
	}
	if (denied)
		snprintf(err, errlen, "%s: export %s: access denied by %s (%s)",
			 spec, path, host, nfs_mnt3_str(last_stat));
	else
		snprintf(err, errlen, "%s: export %s not found on %s", spec,
			 path, host);
	rc = denied ? -EACCES : -ENOENT;
	goto out_destroy;

out_found:
	*fh_len = st.fh_len;
	memcpy(fh, st.fh, st.fh_len);
	log_msg(LOG_LVL_DEBUG, "nfs", "%s: mounted export %s of %s", spec, dir,
		host);
	rc = 0;
	goto out_destroy;

out_unreachable:
	if (rc == -ETIMEDOUT)
		snprintf(err, errlen,
			 "%s: server %s not reachable: no answer within %u ms",
			 spec, host, timeout_ms);
	else
		snprintf(err, errlen, "%s: server %s not reachable: %s", spec,
			 host, st.msg[0] ? st.msg : strerror(-rc));
	if (rc != -ETIMEDOUT)
		rc = -EHOSTUNREACH;
out_destroy:
	free(dir);
	rpc_destroy_context(st.rpc);
	free_exports(st.exports);
	return rc;
}
