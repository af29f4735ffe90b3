/* SPDX-License-Identifier: GPL-2.0 */
/*
 * jstate.c - what the journal says: per file, its handle, its dirty
 * chunks, their writers and the byte runs of their passthrough-written
 * blocks, and a passthrough writer that did not end.
 *
 * Built by replaying the records in order (jstate_rec(), a
 * journal_replay_fn), and written back as the shortest journal that
 * replays to the same state (jstate_emit(), for journal_rewrite()): one
 * FILE record per file that still has dirty chunks or a passthrough
 * writer, then its PTOPEN, DIRTY and RUNS records.  Start-up uses the
 * state to bring dirty files back (cache.c, replay()); a running daemon compacts
 * its journal with it when the journal has grown (cache_journal()), so
 * that a node that writes for weeks without a restart neither fills its
 * cache dir with records of chunks long clean nor meets a journal too
 * large to replay.
 *
 * Records of a backend that is not mounted now are kept as they are,
 * and written back first.  Files are found by (backend, fileid) in a
 * hash table; a record about a fileid already known with another handle
 * starts a new file (a server reuses the fileid of a deleted file), and
 * the newest one of a fileid is the one later records are about.
 *
 * Thread safety: none; a jstate belongs to its caller.
 */
#include "cache_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define JSTATE_BUCKETS 4096

/* A record of a backend not mounted now, kept whole. */
struct jraw {
	enum jrec_type type;
	char *spec;
	uint64_t fileid, chunk;
	size_t len;
	struct jraw *next;
	unsigned char payload[];
};

/* Forget the runs of every chunk. */
static void drop_runs(struct jfile *jf)
{
	size_t i;

	for (i = 0; i < jf->nchunks; i++) {
		free(jf->chunks[i].runs);
		jf->chunks[i].runs = NULL;
		jf->chunks[i].runs_len = 0;
	}
}

struct jstate *jstate_new(struct cache *c)
{
	struct jstate *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->c = c;
	s->tab = calloc(JSTATE_BUCKETS, sizeof(*s->tab));
	if (!s->tab) {
		free(s);
		return NULL;
	}
	return s;
}

void jstate_free(struct jstate *s)
{
	struct jfile *jf;
	struct jraw *raw;

	if (!s)
		return;
	while ((jf = s->files)) {
		s->files = jf->next;
		drop_runs(jf);
		free(jf->chunks);
		free(jf);
	}
	while ((raw = s->raw)) {
		s->raw = raw->next;
		free(raw->spec);
		free(raw);
	}
	free(s->tab);
	free(s);
}

/* By fileid alone: jstate_names() has no backend. */
static size_t bucket(uint64_t fileid)
{
	return (size_t)((fileid * 0x9e3779b97f4a7c15ULL) >> 52) %
	       JSTATE_BUCKETS;
}

static void jcred_of(struct jcred *jc, const void *buf, size_t len)
{
	jc->set = len && cache_cred_decode(buf, len, &jc->cred) == 0;
}

/* jcred_of()'s inverse: the record's bytes, 0 for none. */
static size_t jcred_encode(const struct jcred *jc, void *buf, size_t len)
{
	return jc->set ? cache_cred_encode(&jc->cred, buf, len) : 0;
}

/* A new file of (be_idx, fileid), the newest of that fileid; or NULL. */
static struct jfile *jfile_add(struct jstate *s, int be_idx, uint64_t fileid)
{
	size_t h = bucket(fileid);
	struct jfile *jf = calloc(1, sizeof(*jf));

	if (!jf)
		return NULL;
	jf->be_idx = be_idx;
	jf->fileid = fileid;
	jf->next = s->files;
	s->files = jf;
	jf->hnext = s->tab[h];
	s->tab[h] = jf;
	s->nfiles++;
	return jf;
}

/* The newest file of (be_idx, fileid), or a new one if create. */
static struct jfile *jfile_find(struct jstate *s, int be_idx, uint64_t fileid,
				bool create)
{
	struct jfile *jf;

	for (jf = s->tab[bucket(fileid)]; jf; jf = jf->hnext)
		if (jf->be_idx == be_idx && jf->fileid == fileid)
			return jf;
	return create ? jfile_add(s, be_idx, fileid) : NULL;
}

/*
 * Another, older file of jf's (be_idx, fileid) with this handle: moved to
 * the head of its hash chain, where jfile_find() finds it first, and
 * returned; NULL if there is none.
 */
static struct jfile *jfile_raise(struct jstate *s, struct jfile *jf,
			const void *handle, size_t handle_len)
{
	struct jfile **pp = &s->tab[bucket(jf->fileid)], *o;

	for (; (o = *pp); pp = &o->hnext)
		if (o != jf && o->be_idx == jf->be_idx &&
		    o->fileid == jf->fileid && o->handle_len == handle_len &&
		    !memcmp(o->handle, handle, handle_len))
			break;
	if (!o)
		return NULL;
	*pp = o->hnext;
	o->hnext = s->tab[bucket(jf->fileid)];
	s->tab[bucket(jf->fileid)] = o;
	return o;
}

static int keep_raw(struct jstate *s, enum jrec_type type, const char *spec,
		    uint64_t fileid, uint64_t chunk, const void *payload,
		    size_t len)
{
	struct jraw *raw = malloc(sizeof(*raw) + len);

	if (!raw || !(raw->spec = strdup(spec))) {
		free(raw);
		return -ENOMEM;
	}
	raw->type = type;
	raw->fileid = fileid;
	raw->chunk = chunk;
	raw->len = len;
	raw->next = NULL;
	memcpy(raw->payload, payload, len);
	if (s->raw_tail)
		s->raw_tail->next = raw;
	else
		s->raw = raw;
	s->raw_tail = raw;
	return 0;
}

/* Chunk chunk of jf, added if new (no writer, no runs), at *at. */
static int add_chunk(struct jfile *jf, uint64_t chunk, size_t *at)
{
	size_t i;

	for (i = 0; i < jf->nchunks; i++)
		if (jf->chunks[i].idx == chunk)
			break;
	if (i == jf->nchunks && jf->nchunks == jf->cap) {
		size_t ncap = jf->cap ? jf->cap * 2 : 16;
		struct jchunk *n = realloc(jf->chunks, ncap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		jf->chunks = n;
		jf->cap = ncap;
	}
	if (i == jf->nchunks)
		jf->chunks[jf->nchunks++] = (struct jchunk){ .idx = chunk };
	*at = i;
	return 0;
}

int jstate_rec(void *arg, enum jrec_type type, const char *spec,
	       uint64_t fileid, uint64_t chunk, const void *handle,
	       size_t handle_len)
{
	struct jstate *s = arg;
	struct cache *c = s->c;
	struct jfile *jf, *older;
	void *p = NULL;
	int be_idx, rc;
	size_t i;

	for (be_idx = 0; be_idx < c->nbe; be_idx++)
		if (!strcmp(c->bes[be_idx]->spec, spec))
			break;
	if (be_idx == c->nbe) {
		s->unknown++;
		return keep_raw(s, type, spec, fileid, chunk, handle,
				handle_len);
	}
	if (chunk >= CACHE_MAX_CHUNKS) {
		s->bad_chunk = chunk;
		return -EUCLEAN;	/* no record this cache wrote */
	}
	jf = jfile_find(s, be_idx, fileid, type != JREC_CLEAN);
	if (!jf)
		return type == JREC_CLEAN ? 0 : -ENOMEM;
	/* A reused fileid: another handle is another file (the newest is
	 * found first, and later records are about it).  A handle named
	 * before is that file again: it becomes the newest, and the file
	 * is never held twice (replayed twice, the second replay took the
	 * first one's blocks for damaged ones: fuzz_replay). */
	older = type == JREC_FILE ? jfile_raise(s, jf, handle, handle_len) :
				    NULL;
	if (older)
		jf = older;
	else if (type == JREC_FILE && jf->handle_len &&
		 (jf->handle_len != handle_len ||
		  memcmp(jf->handle, handle, handle_len)) &&
		 !(jf = jfile_add(s, be_idx, fileid)))
		return -ENOMEM;
	if (type == JREC_DROP && handle_len) {
		/* Names the handle: the fileid may be another file's now. */
		for (; jf; jf = jf->hnext)
			if (jf->be_idx == be_idx && jf->fileid == fileid &&
			    jf->handle_len == handle_len &&
			    !memcmp(jf->handle, handle, handle_len))
				break;
		if (jf) {
			drop_runs(jf);
			jf->nchunks = 0;
			jf->pt = 0;
		}
		return 0;
	}
	switch (type) {
	case JREC_FILE:
		memcpy(jf->handle, handle, handle_len);
		jf->handle_len = handle_len;
		break;
	case JREC_DIRTY:
		rc = add_chunk(jf, chunk, &i);
		if (rc == 0)
			jcred_of(&jf->chunks[i].cred, handle, handle_len);
		return rc;
	case JREC_CLEAN:
		for (i = 0; i < jf->nchunks; i++) {
			if (jf->chunks[i].idx != chunk)
				continue;
			free(jf->chunks[i].runs);
			jf->chunks[i] = jf->chunks[--jf->nchunks];
		}
		break;
	case JREC_DROP:
		drop_runs(jf);
		jf->nchunks = 0;
		jf->pt = 0;
		break;
	case JREC_RUNS:
		/*
		 * The newest of a chunk's.  The first can come before the
		 * chunk's DIRTY record (the slot is stored, its RUNS record
		 * follows it at once, the DIRTY record after): it makes the
		 * chunk dirty here too, and the DIRTY record adds the writer.
		 */
		rc = add_chunk(jf, chunk, &i);
		if (rc < 0)
			return rc;
		if (handle_len && !(p = malloc(handle_len)))
			return -ENOMEM;
		if (handle_len)
			memcpy(p, handle, handle_len);
		free(jf->chunks[i].runs);
		jf->chunks[i].runs = p;
		jf->chunks[i].runs_len = handle_len;
		break;
	case JREC_PTOPEN:
		jf->pt = chunk ? 2 : 1;
		jcred_of(&jf->pt_cred, handle, handle_len);
		break;
	case JREC_PTCLOSE:
		jf->pt = 0;
		break;
	}
	return 0;
}

bool jstate_names(void *arg, uint64_t fileid)
{
	const struct jstate *s = arg;
	const struct jfile *jf;

	for (jf = s->tab[bucket(fileid)]; jf; jf = jf->hnext)
		if (jf->fileid == fileid && (jf->nchunks || jf->pt))
			return true;
	return false;
}

static int emit_file(struct jstate *s, struct journal *nj,
		     const struct jfile *jf)
{
	const char *spec = s->c->bes[jf->be_idx]->spec;
	unsigned char w[BE_HANDLE_MAX];
	size_t i, len;
	int rc;

	/* Records with no FILE before them (none this cache writes) stay
	 * as they were: replay reports them. */
	rc = jf->handle_len ? journal_append(nj, JREC_FILE, spec, jf->fileid,
					     0, jf->handle, jf->handle_len) :
			      0;
	if (rc == 0 && jf->pt) {
		len = jcred_encode(&jf->pt_cred, w, sizeof(w));
		rc = journal_append(nj, JREC_PTOPEN, spec, jf->fileid,
				    jf->pt == 2, len ? w : NULL, len);
	}
	for (i = 0; i < jf->nchunks && rc == 0; i++) {
		const struct jchunk *jc = &jf->chunks[i];

		len = jcred_encode(&jc->cred, w, sizeof(w));
		rc = journal_append(nj, JREC_DIRTY, spec, jf->fileid, jc->idx,
				    len ? w : NULL, len);
		if (rc == 0 && jc->runs_len)
			rc = journal_append(nj, JREC_RUNS, spec, jf->fileid,
					    jc->idx, jc->runs, jc->runs_len);
	}
	return rc;
}

int jstate_emit(void *arg, struct journal *nj)
{
	struct jstate *s = arg;
	struct jfile *jf, **live;
	struct jraw *raw;
	size_t n = 0;
	int rc = 0;

	for (raw = s->raw; raw && rc == 0; raw = raw->next)
		rc = journal_append(nj, raw->type, raw->spec, raw->fileid,
				    raw->chunk, raw->payload, raw->len);
	if (rc < 0)
		return rc;
	/* Oldest first, so that of two files of one fileid the newest is
	 * still the one found last. */
	live = malloc((s->nfiles ? s->nfiles : 1) * sizeof(*live));
	if (!live)
		return -ENOMEM;
	for (jf = s->files; jf; jf = jf->next)
		if (jf->nchunks || jf->pt)
			live[n++] = jf;
	while (n && rc == 0)
		rc = emit_file(s, nj, live[--n]);
	free(live);
	return rc;
}
