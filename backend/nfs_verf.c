/* SPDX-License-Identifier: GPL-2.0 */
/*
 * nfs_verf.c - which unstable writes a COMMIT made stable: the per-file
 * bookkeeping of the NFS backend's write verifier.
 *
 * An NFSv3 server answers every WRITE and COMMIT with a verifier that
 * changes when it restarts; unstable writes not yet committed when it
 * went away are lost.  The backend numbers the verifiers it sees (a
 * generation, nfs.c).  Here each file keeps
 *   - unc: the byte ranges of its completed writes that no COMMIT covers
 *     yet, each with the generation it was written under and the number
 *     (seq) of its newest write;
 *   - lost: ranges written under an older generation and not since.
 * A COMMIT is prepared when the file's write count is wseq: on success
 * under generation g it covers every write numbered <= wseq that was made
 * under g.  Writes made under an older generation move to lost at that
 * point, and a later write of the same bytes takes them out again.
 *
 * The committer says which bytes it cares about (the ones it wrote):
 * its COMMIT succeeds unless lost data lies in those ranges.  A lost range
 * that belongs to another writer is that writer's business: it sees it at
 * its own COMMIT.  So one writer's rewrite never waits for another's.
 *
 * Two writes share a unc range only when no COMMIT was prepared between
 * them: otherwise a COMMIT that covered the first and not the second
 * could not take the first out, and committed bytes would stay "unc"
 * (and turn "lost", forever, at the next server restart).
 *
 * Pure functions, no locks: the caller serialises calls on one tracker
 * (nfs.c holds the node's lock).  Linked alone by the unit test.
 */
#include "nfs_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void nfs_wt_free(struct nfs_wtrack *t)
{
	free(t->unc);
	free(t->lost);
	memset(t, 0, sizeof(*t));
}

static int wr_push(struct nfs_wrange **v, size_t *n, size_t *cap,
		   struct nfs_wrange r)
{
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 8;
		struct nfs_wrange *p = realloc(*v, nc * sizeof(*p));

		if (!p)
			return -ENOMEM;
		*v = p;
		*cap = nc;
	}
	(*v)[(*n)++] = r;
	return 0;
}

/* Add [s, e) to the lost ranges, merging what it touches. */
static int lost_add(struct nfs_wtrack *t, uint64_t s, uint64_t e)
{
	struct nfs_wrange r = { 0, 0, 0, 0 };
	size_t i = 0;

	while (i < t->nlost) {
		struct nfs_wrange *l = &t->lost[i];

		if (l->end < s || l->start > e) {
			i++;
			continue;
		}
		if (l->start < s)
			s = l->start;
		if (l->end > e)
			e = l->end;
		t->lost[i] = t->lost[--t->nlost];
	}
	r.start = s;
	r.end = e;
	return wr_push(&t->lost, &t->nlost, &t->caplost, r);
}

/* Take [s, e) out of the lost ranges: it was written again. */
static int lost_sub(struct nfs_wtrack *t, uint64_t s, uint64_t e)
{
	size_t i = 0;

	while (i < t->nlost) {
		struct nfs_wrange *l = &t->lost[i];

		if (l->end <= s || l->start >= e) {
			i++;
		} else if (l->start < s && l->end > e) {
			struct nfs_wrange tail = *l;

			tail.start = e;
			l->end = s;
			if (wr_push(&t->lost, &t->nlost, &t->caplost, tail) < 0)
				return -ENOMEM;
			i++;
		} else if (l->start < s) {
			l->end = s;
			i++;
		} else if (l->end > e) {
			l->start = e;
			i++;
		} else {
			t->lost[i] = t->lost[--t->nlost];
		}
	}
	return 0;
}

/* Uncovered writes made under a generation before gen are lost. */
static int unc_expire(struct nfs_wtrack *t, uint64_t gen)
{
	size_t i = 0;

	while (i < t->nunc) {
		if (t->unc[i].gen >= gen) {
			i++;
			continue;
		}
		if (lost_add(t, t->unc[i].start, t->unc[i].end) < 0)
			return -ENOMEM;
		t->unc[i] = t->unc[--t->nunc];
	}
	return 0;
}

void nfs_wt_write_done(struct nfs_wtrack *t, uint64_t gen, uint64_t off,
		       uint64_t len)
{
	uint64_t end = off + len, seq = ++t->wseq;
	struct nfs_wrange r = { off, end, seq, gen };
	size_t i;
	int rc;

	rc = unc_expire(t, gen);
	if (rc == 0)
		rc = lost_sub(t, off, end);
	for (i = 0; rc == 0 && i < t->nunc; i++) {
		struct nfs_wrange *u = &t->unc[i];

		/* a COMMIT prepared since u's newest write splits them */
		if (u->gen != gen || u->seq <= t->commit_wseq ||
		    u->end < off || u->start > end)
			continue;
		if (u->start > off)
			u->start = off;
		if (u->end < end)
			u->end = end;
		u->seq = seq;
		break;
	}
	if (rc == 0 && i == t->nunc)
		rc = wr_push(&t->unc, &t->nunc, &t->capunc, r);
	if (rc < 0 && !t->untracked_gen)
		t->untracked_gen = gen;
}

uint64_t nfs_wt_commit_start(struct nfs_wtrack *t)
{
	if (t->wseq > t->commit_wseq)
		t->commit_wseq = t->wseq;
	return t->wseq;
}

/* Does a lost range meet one of r[0..nr)?  nr == 0: the whole file. */
static int lost_meets(const struct nfs_wtrack *t, const struct be_range *r,
		      unsigned int nr)
{
	size_t i;
	unsigned int k;

	if (nr == 0)
		return t->nlost > 0;
	for (i = 0; i < t->nlost; i++)
		for (k = 0; k < nr; k++)
			if (r[k].len && t->lost[i].start < r[k].off + r[k].len &&
			    t->lost[i].end > r[k].off)
				return 1;
	return 0;
}

int nfs_wt_commit_done(struct nfs_wtrack *t, uint64_t gen, uint64_t wseq,
		       const struct be_range *r, unsigned int nr)
{
	size_t i = 0;
	int rc;

	rc = unc_expire(t, gen);
	if (rc < 0)
		return -EIO;	/* cannot tell what was lost */
	if (t->untracked_gen && t->untracked_gen != gen)
		return -EAGAIN;
	if (lost_meets(t, r, nr))
		return -EAGAIN;
	t->untracked_gen = 0;
	/* The COMMIT covered the whole file: everything written before it. */
	while (i < t->nunc) {
		if (t->unc[i].seq <= wseq)
			t->unc[i] = t->unc[--t->nunc];
		else
			i++;
	}
	return 0;
}

void nfs_wt_truncate(struct nfs_wtrack *t, uint64_t size)
{
	struct {
		struct nfs_wrange *v;
		size_t *cnt;
	} sets[2] = { { t->unc, &t->nunc }, { t->lost, &t->nlost } };
	size_t i, k;

	for (k = 0; k < 2; k++) {
		for (i = 0; i < *sets[k].cnt;) {
			struct nfs_wrange *w = &sets[k].v[i];

			if (w->start >= size) {
				*w = sets[k].v[--*sets[k].cnt];
				continue;
			}
			if (w->end > size)
				w->end = size;
			i++;
		}
	}
}

uint64_t nfs_wt_lost_bytes(const struct nfs_wtrack *t)
{
	uint64_t n = 0;
	size_t i;

	for (i = 0; i < t->nlost; i++)
		n += t->lost[i].end - t->lost[i].start;
	return n;
}
