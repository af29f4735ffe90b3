/* SPDX-License-Identifier: GPL-2.0 */
/*
 * offline.c - what the daemon answers while the backend does not: the
 * last attributes and names the backend gave, and the watch that lets an
 * unmounted daemon stop waiting for an unreachable server.
 *
 * Every GETATTR, LOOKUP and OPEN of a node already known asks the backend
 * with a limit of outage_wait (be_wait_set()), or of OFFLINE_PROBE_MS
 * once the backend has not answered for outage_wait (so a reader of
 * cached files does not wait outage_wait at every call of an outage).
 * Past it (-ETIMEDOUT):
 *   - getattr answers the inode's last attributes (cache-corrected);
 *   - lookup answers the inode that name last led to in that directory,
 *     as this node saw it (names are forgotten at unlink, rmdir and
 *     rename through this mount), also after the kernel forgot the inode
 *     (a ghost keeps its backend node: struct ghost); an open of it that
 *     reaches the backend checks the name again (offline_name_check());
 *   - open, with offline=serve, hands out the cached copy of a file whole
 *     in the cache (cache_file_get_offline(): counted as stale_opens and
 *     logged); offline=wait, or a file not whole, asks again;
 * and anything without such an answer asks again without a limit: with
 * hard, it waits for the server; with soft, it fails after the retry
 * deadline.  A server that is merely slow past outage_wait gets the same
 * treatment: the answer is the last one known (docs/consistency.md).
 *
 * Thread safety: the names and attributes are under sfs->ino_lock; the
 * watch thread only reads fuse_session_exited() and calls be release().
 */
#include "fs_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#define DTABLE_SIZE 65536
#define GHOSTS 65536

/*
 * What a forgotten inode's name led to: the kernel forgets inodes whose
 * dentries it drops (memory pressure, drop_caches), and with them this
 * node's knowledge of the name.  A ghost keeps the backend node and the
 * last attributes, so that a lookup during an outage can bring the inode
 * back.  Direct-mapped by (backend, directory, name): a newer ghost
 * takes the slot of an older one, so the table stays bounded.
 */
struct ghost {
	int be_idx;
	uint64_t dir;
	char *name;		/* NULL: a free slot */
	struct be_node *node;	/* reference held */
	struct be_attr attr;
};

static size_t dhash(int be_idx, uint64_t dir, const char *name)
{
	return (XXH3_64bits(name, strlen(name)) ^ (dir * 0x9e3779b97f4a7c15ULL) ^
		(uint64_t)be_idx) % DTABLE_SIZE;
}

/*
 * Once the backend is known to be away (no answer for outage_wait), a
 * call with a fallback waits only this long: long enough for an answer
 * from a server that is back, so the first such call ends the outage.
 */
#define OFFLINE_PROBE_MS 200

unsigned int offline_wait_ms(struct sfs *s, struct sfs_inode *ino)
{
	unsigned int wait = (unsigned int)(s->cfg.outage_wait * 1000);
	struct be *be = ino->be_idx >= 0 ? ino_be(s, ino) : NULL;
	uint64_t since = be && be->ops->unreachable_since ?
				 be->ops->unreachable_since(be) : 0;

	if (since && be_now_ms() - since >= wait)
		return OFFLINE_PROBE_MS;
	return wait;
}

void offline_attr_save(struct sfs *s, struct sfs_inode *ino,
		       const struct be_attr *a)
{
	pthread_mutex_lock(&s->ino_lock);
	ino->last = *a;
	ino->have_last = true;
	pthread_mutex_unlock(&s->ino_lock);
}

bool offline_attr(struct sfs *s, struct sfs_inode *ino, struct be_attr *a)
{
	bool ok;

	pthread_mutex_lock(&s->ino_lock);
	ok = ino->have_last;
	if (ok)
		*a = ino->last;
	pthread_mutex_unlock(&s->ino_lock);
	return ok;
}

/* ino off its name's chain; returns the name, now the caller's. */
static char *unchain_locked(struct sfs *s, struct sfs_inode *ino)
{
	struct sfs_inode **pp;
	char *name = ino->dn_name;

	if (!name)
		return NULL;
	for (pp = &s->dtable[dhash(ino->be_idx, ino->dn_dir, name)]; *pp;
	     pp = &(*pp)->dn_next)
		if (*pp == ino) {
			*pp = ino->dn_next;
			break;
		}
	ino->dn_name = NULL;
	ino->dn_next = NULL;
	return name;
}

/* ino's name off its chain and freed; ino_lock held. */
static void unname_locked(struct sfs *s, struct sfs_inode *ino)
{
	free(unchain_locked(s, ino));
}

static struct sfs_inode *find_locked(struct sfs *s, struct sfs_inode *dir,
				     const char *name)
{
	struct sfs_inode *ino;

	for (ino = s->dtable[dhash(dir->be_idx, dir->fileid, name)]; ino;
	     ino = ino->dn_next)
		if (ino->be_idx == dir->be_idx && ino->dn_dir == dir->fileid &&
		    !strcmp(ino->dn_name, name))
			return ino;
	return NULL;
}

int offline_init(struct sfs *s)
{
	s->dtable = calloc(DTABLE_SIZE, sizeof(*s->dtable));
	s->ghosts = calloc(GHOSTS, sizeof(*s->ghosts));
	return s->dtable && s->ghosts ? 0 : -ENOMEM;
}

/* The ghost slot of (be_idx, dir, name) if it holds that name. */
static struct ghost *ghost_find(struct sfs *s, int be_idx, uint64_t dir,
				const char *name)
{
	struct ghost *g = &s->ghosts[dhash(be_idx, dir, name) % GHOSTS];

	return g->name && g->be_idx == be_idx && g->dir == dir &&
		       !strcmp(g->name, name) ? g : NULL;
}

/* Empty a slot; returns the node reference for the caller to put. */
static struct be_node *ghost_clear(struct ghost *g)
{
	struct be_node *n = g->node;

	free(g->name);
	g->name = NULL;
	g->node = NULL;
	return n;
}

void offline_name(struct sfs *s, struct sfs_inode *dir, const char *name,
		  struct sfs_inode *ino)
{
	struct sfs_inode *old;
	struct be_node *gone = NULL;
	struct ghost *g;
	char *copy;
	size_t h;

	if (!s->dtable || dir->be_idx < 0 || ino->be_idx != dir->be_idx)
		return;
	pthread_mutex_lock(&s->ino_lock);
	ino->offline_named = false;
	if (ino->dn_name && ino->dn_dir == dir->fileid &&
	    !strcmp(ino->dn_name, name)) {
		pthread_mutex_unlock(&s->ino_lock);
		return;
	}
	/* A live name wins over the ghost of an older one. */
	g = ghost_find(s, dir->be_idx, dir->fileid, name);
	if (g)
		gone = ghost_clear(g);
	copy = strdup(name);
	if (copy) {
		old = find_locked(s, dir, name);
		if (old)
			unname_locked(s, old);
		unname_locked(s, ino);
		h = dhash(dir->be_idx, dir->fileid, name);
		ino->dn_dir = dir->fileid;
		ino->dn_name = copy;
		ino->dn_next = s->dtable[h];
		s->dtable[h] = ino;
	}
	pthread_mutex_unlock(&s->ino_lock);
	if (gone)
		be_node_put(ino_be(s, dir), gone);
}

void offline_unname(struct sfs *s, struct sfs_inode *dir, const char *name)
{
	struct sfs_inode *ino;
	struct be_node *gone = NULL;
	struct ghost *g;

	if (!s->dtable || dir->be_idx < 0)
		return;
	pthread_mutex_lock(&s->ino_lock);
	ino = find_locked(s, dir, name);
	if (ino)
		unname_locked(s, ino);
	g = ghost_find(s, dir->be_idx, dir->fileid, name);
	if (g)
		gone = ghost_clear(g);
	pthread_mutex_unlock(&s->ino_lock);
	if (gone)
		be_node_put(ino_be(s, dir), gone);
}

struct be_node *offline_forget_locked(struct sfs *s, struct sfs_inode *ino)
{
	struct be_node *gone = NULL;
	struct ghost *g;

	uint64_t dir = ino->dn_dir;
	char *name;

	if (!s->dtable || !ino->dn_name)
		return NULL;
	name = unchain_locked(s, ino);
	if (!ino->have_last) {
		free(name);
		return NULL;
	}
	g = &s->ghosts[dhash(ino->be_idx, dir, name) % GHOSTS];
	if (g->name)
		gone = ghost_clear(g);
	g->be_idx = ino->be_idx;
	g->dir = dir;
	g->name = name;
	g->node = be_node_get(ino->node);
	g->attr = ino->last;
	return gone;
}

struct sfs_inode *offline_lookup(struct sfs *s, struct sfs_inode *dir,
				 const char *name, struct be_attr *a)
{
	struct sfs_inode *ino;

	if (!s->dtable || dir->be_idx < 0)
		return NULL;
	struct be_node *node = NULL;
	struct ghost *g;

	pthread_mutex_lock(&s->ino_lock);
	ino = find_locked(s, dir, name);
	if (ino && ino->have_last && ino->nlookup) {
		ino->nlookup++;
		ino->offline_named = true;
		*a = ino->last;
	} else {
		ino = NULL;
		g = ghost_find(s, dir->be_idx, dir->fileid, name);
		if (g) {
			*a = g->attr;
			node = ghost_clear(g);
		}
	}
	pthread_mutex_unlock(&s->ino_lock);
	if (!node)
		return ino;
	/* The inode the kernel forgot, back from its ghost. */
	ino = inode_enter(s, dir->be_idx, node);
	be_node_put(ino_be(s, dir), node);
	if (ino) {
		offline_attr_save(s, ino, a);
		offline_name(s, dir, name, ino);
		pthread_mutex_lock(&s->ino_lock);
		ino->offline_named = true;
		pthread_mutex_unlock(&s->ino_lock);
	}
	return ino;
}

/*
 * The file a lookup answered from its last name during an outage may no
 * longer be the one at that name: another node may have renamed it away
 * and made a new file there meanwhile.  An open that reaches the backend
 * checks the name again (the lookup waits for the server): 0 if it still
 * leads to ino, or ino was not handed out that way; -ESTALE if not, and
 * the kernel walks the path once more with LOOKUP_REVAL, which asks us
 * for the name again (do_filp_open() retries an open once on ESTALE).
 */
int offline_name_check(struct sfs *s, const struct be_cred *cred,
		       struct sfs_inode *ino)
{
	struct be *be = ino_be(s, ino);
	struct sfs_inode *dir = NULL;
	struct be_node *node;
	char *name = NULL;
	uint64_t dfid;
	bool named;
	int rc;

	pthread_mutex_lock(&s->ino_lock);
	named = ino->offline_named;
	ino->offline_named = false;
	dfid = ino->dn_dir;
	if (named && ino->dn_name)
		name = strdup(ino->dn_name);
	pthread_mutex_unlock(&s->ino_lock);
	if (!named)
		return 0;
	if (name)
		dir = inode_find(s, ino->be_idx, dfid, NULL);
	if (!dir) {
		free(name);
		return -ESTALE;
	}
	rc = be->ops->lookup(be, cred, dir->node, name, &node, NULL);
	inode_forget(s, dir, 1);
	free(name);
	if (rc == -ENOENT)
		return -ESTALE;
	if (rc < 0)
		return rc;
	rc = be_node_same(node, ino->node) ? 0 : -ESTALE;
	be_node_put(be, node);
	return rc;
}

void offline_destroy(struct sfs *s)
{
	size_t i;

	for (i = 0; s->ghosts && i < GHOSTS; i++)
		if (s->ghosts[i].name)
			be_node_put(s->bes[s->ghosts[i].be_idx],
				    ghost_clear(&s->ghosts[i]));
	free(s->ghosts);
	s->ghosts = NULL;
	free(s->dtable);
	s->dtable = NULL;
}

/*
 * The session has ended (unmount, SIGTERM) while workers may wait for an
 * unreachable server (hard): let every backend give up as soft would, so
 * the workers return, the loop ends and the drain (bounded: cache_close)
 * runs.  Polls, as libfuse offers no hook for the end of the session.
 */
static void *watch_main(void *arg)
{
	struct sfs *s = arg;
	struct timespec t = { 0, 100 * 1000 * 1000 };

	pthread_setname_np(pthread_self(), "sfs-watch");
	while (!atomic_load(&s->watch_stop) && !fuse_session_exited(s->se))
		nanosleep(&t, NULL);
	atomic_store(&s->ended, true);
	offline_release(s, false);
	return NULL;
}

void offline_release(struct sfs *s, bool abort)
{
	int k;

	for (k = 0; k < s->nbe; k++)
		if (s->bes[k]->ops->release)
			s->bes[k]->ops->release(s->bes[k], abort);
}

int offline_watch_start(struct sfs *s)
{
	int rc = pthread_create(&s->watch, NULL, watch_main, s);

	if (rc == 0)
		s->watch_started = true;
	return -rc;
}

void offline_watch_stop(struct sfs *s)
{
	if (!s->watch_started)
		return;
	atomic_store(&s->watch_stop, true);
	pthread_join(s->watch, NULL);
	s->watch_started = false;
}
