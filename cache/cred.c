/* SPDX-License-Identifier: GPL-2.0 */
/*
 * cred.c - the credentials the cache fetches and uploads with.
 *
 * A fetch goes out with the credentials of the reader it is for, an
 * upload with those of the user whose writes it carries: a dirty chunk
 * remembers its writer (ch->wcred), and a DIRTY journal record carries
 * it, so that after a crash each user's data still goes out as that user.
 * A chunk holds one writer's data at a time: a write by another user
 * uploads the chunk first (see write_in_chunk()).
 *
 * Credentials are interned: one copy per distinct (uid, gid, groups),
 * kept until cache_close(), so a chunk holds a pointer and two are the
 * same user exactly when the pointers are equal.  NULL is the daemon.
 *
 * Thread safety: cache_cred() takes c->cred_lock (a leaf lock); the
 * copies it returns never change.
 */
#include "cache_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct cred_ent {
	struct be_cred cred;
	struct cred_ent *next;
};

const struct be_cred *cache_cred(struct cache *c, const struct be_cred *cred)
{
	struct cred_ent *e;
	uint32_t n;

	if (!cred)
		return NULL;
	pthread_mutex_lock(&c->cred_lock);
	for (e = c->creds; e; e = e->next)
		if (be_cred_equal(&e->cred, cred))
			goto out;
	e = calloc(1, sizeof(*e));
	if (e) {
		n = cred->ngroups < BE_CRED_NGROUPS ? cred->ngroups :
						      BE_CRED_NGROUPS;
		e->cred.uid = cred->uid;
		e->cred.gid = cred->gid;
		e->cred.ngroups = n;
		memcpy(e->cred.groups, cred->groups, n * sizeof(uint32_t));
		e->next = c->creds;
		c->creds = e;
	}
out:
	pthread_mutex_unlock(&c->cred_lock);
	/* out of memory: the daemon's, which at worst the server refuses */
	return e ? &e->cred : NULL;
}

void cache_creds_free(struct cache *c)
{
	struct cred_ent *e;

	while ((e = c->creds)) {
		c->creds = e->next;
		free(e);
	}
}

/* The journal's form: uid, gid, ngroups, groups (host order, as the
 * rest of the journal). */
size_t cache_cred_encode(const struct be_cred *cred, void *buf, size_t len)
{
	uint32_t w[3 + BE_CRED_NGROUPS];
	size_t need;

	if (!cred)
		return 0;
	w[0] = cred->uid;
	w[1] = cred->gid;
	w[2] = cred->ngroups < BE_CRED_NGROUPS ? cred->ngroups :
						 BE_CRED_NGROUPS;
	memcpy(&w[3], cred->groups, w[2] * sizeof(uint32_t));
	need = (3 + w[2]) * sizeof(uint32_t);
	if (need > len)
		return 0;
	memcpy(buf, w, need);
	return need;
}

int cache_cred_decode(const void *buf, size_t len, struct be_cred *out)
{
	uint32_t w[3 + BE_CRED_NGROUPS];

	if (len < 3 * sizeof(uint32_t) || len > sizeof(w) ||
	    len % sizeof(uint32_t))
		return -EINVAL;
	memcpy(w, buf, len);
	if (w[2] > BE_CRED_NGROUPS || len != (3 + w[2]) * sizeof(uint32_t))
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	out->uid = w[0];
	out->gid = w[1];
	out->ngroups = w[2];
	memcpy(out->groups, &w[3], w[2] * sizeof(uint32_t));
	return 0;
}
