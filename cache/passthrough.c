/* SPDX-License-Identifier: GPL-2.0 */
/*
 * passthrough.c - the cache's side of FUSE passthrough: the kernel reads
 * and writes a file's cache data file itself, and the daemon learns what
 * changed by hashing the blocks again (rehash).
 *
 * A read open is passthrough when every block of the file is present: the
 * data file then holds the newest bytes.  A write open is passthrough when
 * the file is empty (a create, an O_TRUNC), or when the kernel forces it
 * into passthrough mode (another passthrough open of the inode is there
 * already).
 *
 * Only the bytes this node changed go out, so that two nodes can write
 * disjoint parts of one file.  The rehash finds them against a pre-image:
 * an unnamed file in the cache dir (O_TMPFILE) that holds, per block, the
 * bytes the backend has as far as this node knows.  For a file empty at
 * the first write open it starts empty (zeros); for a forced open it is a
 * copy of the data file, made before the open is answered (up to
 * PT_PRE_MAX).  A changed block's dirty range is the span of the bytes
 * that differ from it, and where unchanged bytes lie between, the upload
 * sends only the runs that differ (ch->pt_runs); where the pre-image is
 * zeros, zero runs of ZSKIP_MIN bytes or more inside the range are left
 * out instead (zskip, flush.c).  After the rehash a block sent as a range
 * is written into the pre-image, and bytes a refresh fetches in place go
 * into it too (fetch_chunk()); a block sent whole is only marked stale
 * (ch->pt_stale: a dense stream costs no second write), and its next
 * change goes out whole, as does every change of a block whose before
 * bytes are not known (no pre-image, a replay after a crash; but in a
 * file its writer created, a zskip block's zero runs are still left out).
 * The zskip and leftover marks are kept in the index slot (index.c), so
 * that a replay uploads what the writer would have.
 *
 * The rehash runs at FLUSH, fsync and the last release, and, for a long
 * writer, in the background on the chunks the file has grown past
 * (pt_main, every PT_SCAN_MS).  A file with passthrough opens is never
 * evicted or punched: the kernel reads its data file directly.
 *
 * Crash safety: a passthrough write open is journaled (JREC_PTOPEN) before
 * the open is answered, and its end (JREC_PTCLOSE) after the last rehash.
 * The replay rehashes a file whose writer did not end.
 *
 * Thread safety: f->lock protects the pt_* fields; c->pt_lock the list of
 * files with passthrough writers.  No lock is held across data file I/O.
 */
#include "cache_int.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

/* A long passthrough writer's new chunks are rehashed this often. */
#define PT_SCAN_MS 200
/* A forced write open of a larger file makes no pre-image (a copy of
 * the file, made while the open waits): its changed blocks go out whole. */
#define PT_PRE_MAX (256ULL << 20)

int cache_file_pt_can(struct cache_file *f, bool write)
{
	int ok;

	pthread_mutex_lock(&f->lock);
	if (write)
		ok = ((f->size == 0 && !f->dirty_chunks) ||
		      (f->pt_writers && f->pt_owned)) &&
		     cache_pt_room(f->c);
	else
		ok = !f->gone && file_whole(f);
	pthread_mutex_unlock(&f->lock);
	return ok;
}

static void pt_list_add(struct cache_file *f)
{
	struct cache *c = f->c;
	struct cache_file **n;

	pthread_mutex_lock(&c->pt_lock);
	if (c->npt == c->pt_cap) {
		size_t cap = c->pt_cap ? c->pt_cap * 2 : 16;

		n = realloc(c->pt, cap * sizeof(*n));
		if (!n)
			goto out;	/* no background rehash; close does it */
		c->pt = n;
		c->pt_cap = cap;
	}
	cache_file_ref(f);
	c->pt[c->npt++] = f;
out:
	pthread_mutex_unlock(&c->pt_lock);
}

static void pt_list_del(struct cache_file *f)
{
	struct cache *c = f->c;
	size_t i;

	pthread_mutex_lock(&c->pt_lock);
	for (i = 0; i < c->npt; i++)
		if (c->pt[i] == f) {
			c->pt[i] = c->pt[--c->npt];
			pthread_mutex_unlock(&c->pt_lock);
			cache_file_put(f);
			return;
		}
	pthread_mutex_unlock(&c->pt_lock);
}

/* Every block's pre-image is stale (none is made yet, or it could not be
 * cut); f->lock held. */
void file_pt_all_stale(struct cache_file *f)
{
	uint64_t i;

	for (i = 0; i < f->nchunks; i++)
		if (f->chunks[i])
			f->chunks[i]->pt_stale = ~0ULL;
}

void file_pt_pre_truncate(struct cache_file *f, uint64_t size)
{
	struct stat st;

	if (f->pt_pre_fd >= 0 && fstat(f->pt_pre_fd, &st) == 0 &&
	    (uint64_t)st.st_size > size &&
	    ftruncate(f->pt_pre_fd, (off_t)size) < 0)
		file_pt_all_stale(f);
}

/* cache_int.h */
int cache_copy_data(int src, int dst, uint64_t size)
{
	off_t off = 0, d, e;

	if (ioctl(dst, FICLONE, src) == 0)	/* a reflink, where there are */
		return ftruncate(dst, (off_t)size) < 0 ? -errno : 0;
	while ((uint64_t)off < size) {
		loff_t in, out;

		d = lseek(src, off, SEEK_DATA);
		if (d < 0 && errno == ENXIO)
			break;	/* a hole to the end */
		if (d < 0 || (e = lseek(src, d, SEEK_HOLE)) < 0)
			return -errno;
		if ((uint64_t)e > size)
			e = (off_t)size;
		in = out = d;
		while (in < e) {
			ssize_t n = copy_file_range(src, &in, dst, &out,
						    (size_t)(e - in), 0);

			if (n <= 0)
				return n < 0 ? -errno : -EIO;
		}
		off = e;
	}
	return ftruncate(dst, (off_t)size) < 0 ? -errno : 0;
}

/*
 * The first writer of a passthrough session: make its pre-image (see the
 * top), empty for an owned file, else a copy of the data file.  None if
 * an earlier writer's bytes were never hashed (the copy would take them
 * for the backend's), or the file is over PT_PRE_MAX, or on any error.
 * f->lock held, the data file taken.
 */
static void pt_pre_make(struct cache_file *f, bool unhashed)
{
	struct cache *c = f->c;
	int fd, rc = 0;
	uint64_t i;

	if (f->pt_pre_fd >= 0) {	/* a session that failed its end */
		close(f->pt_pre_fd);
		f->pt_pre_fd = -1;
	}
	file_pt_all_stale(f);
	if (!f->pt_owned && (unhashed || f->size > PT_PRE_MAX))
		return;
	fd = openat(c->dir_fd, "data", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	if (!f->pt_owned)
		rc = cache_copy_data(file_fd(f, FILE_FD_SLOT_DATA), fd, f->size);
	if (rc < 0) {
		close(fd);
		goto out;
	}
	f->pt_pre_fd = fd;
	for (i = 0; i < f->nchunks; i++)
		if (f->chunks[i])
			f->chunks[i]->pt_stale = 0;
out:
	if (rc < 0)
		log_msg(LOG_LVL_WARN, "passthrough",
			"file %llx: no pre-image (%s): its changed blocks go out whole",
			(unsigned long long)f->fileid, strerror(-rc));
}

int cache_file_pt_begin(struct cache_file *f, const struct be_cred *cred,
			bool write, bool must, int *fd)
{
	struct cache *c = f->c;
	bool writers;
	int rc = 0;

	/*
	 * An open the kernel makes passthrough: the file must be whole.
	 * What a passthrough writer put in the data file is the newest: it
	 * is hashed first, never fetched over.
	 */
	pthread_mutex_lock(&f->lock);
	writers = f->pt_writers > 0;
	pthread_mutex_unlock(&f->lock);
	if (must && writers)
		rc = cache_file_pt_sync(f);
	pthread_mutex_lock(&f->lock);
	if (rc == 0 && must && !file_whole(f))
		rc = file_fetch_all(f, cred, writers);
	/* Taken until cache_file_pt_end(): the kernel's backing file is
	 * made from it. */
	if (rc == 0)
		rc = file_fds_get(f, FILE_FD_DATA);
	if (rc < 0)
		goto out;
	/* before the kernel holds the data file */
	rc = pt_user_get(f);
	if (rc < 0) {
		file_fds_put(f);
		goto out;
	}
	if (write)
		f->pt_cred = cache_cred(c, cred);
	if (write && f->pt_writers++ == 0) {
		/* the kernel writes the data file now: kept fetch buffers
		 * would read older bytes */
		file_drop_kept(f);
		f->pt_owned = f->size == 0 && !f->dirty_chunks;
		pt_pre_make(f, f->pt_unsynced);
		f->pt_unsynced = true;
		f->pt_scanned = 0;
		rc = cache_journal(c, JREC_PTOPEN, f, f->pt_owned);
		if (rc < 0) {
			if (f->pt_pre_fd >= 0)
				close(f->pt_pre_fd);
			f->pt_pre_fd = -1;
			f->pt_writers--;
			pt_user_put(f);
			f->pt_unsynced = false;
			file_fds_put(f);
			goto out;
		}
		pthread_mutex_unlock(&f->lock);
		pt_list_add(f);
		pthread_mutex_lock(&f->lock);
	}
	atomic_fetch_add(&c->pt_opens, 1);
	*fd = file_fd(f, FILE_FD_SLOT_DATA);
out:
	pthread_mutex_unlock(&f->lock);
	return rc;
}

/* Runs one rehash finds in a block, and a block keeps, at most. */
#define PT_RUNS_MAX 16
#define PT_RUNS_KEEP 64

void chunk_runs_drop(struct chunk *ch, uint64_t mask)
{
	uint32_t i, n = 0;

	if (!(ch->pt_runs_mask & mask))
		return;
	for (i = 0; i < ch->pt_nruns; i++)
		if (!(mask & (1ULL << ch->pt_runs[i].b)))
			ch->pt_runs[n++] = ch->pt_runs[i];
	ch->pt_nruns = n;
	ch->pt_runs_mask &= ~mask;
	if (!n) {
		free(ch->pt_runs);
		ch->pt_runs = NULL;
	}
}

uint32_t chunk_runs_of(const struct chunk *ch, unsigned int b,
		       const struct pt_run **out)
{
	uint32_t i = 0, n = 0;

	if (!(ch->pt_runs_mask & ch->dirty & (1ULL << b)))
		return 0;
	while (i < ch->pt_nruns && ch->pt_runs[i].b < b)
		i++;
	*out = ch->pt_runs + i;
	while (i + n < ch->pt_nruns && ch->pt_runs[i + n].b == b)
		n++;
	return n;
}

/*
 * Join sorted runs r[0..n) that overlap, touch, or have fewer than gap
 * bytes between; while more than max are left, join across twice the
 * gap (1, 2, 4, ... bytes: a rewrite of random bytes matches its old
 * ones here and there, and a run per match is not worth a WRITE).
 * Returns how many are left.
 */
static uint32_t runs_join(struct pt_run *r, uint32_t n, uint32_t gap,
			  uint32_t max)
{
	uint32_t i, m;

	for (;;) {
		for (i = 0, m = 0; i < n; i++) {
			if (m && r[i].lo < r[m - 1].hi + gap) {
				if (r[i].hi > r[m - 1].hi)
					r[m - 1].hi = r[i].hi;
				continue;
			}
			r[m++] = r[i];
		}
		if (m <= max)
			return m;
		n = m;
		gap = gap ? 2 * gap : 1;
	}
}

/*
 * Block b's runs become r[0..n) (sorted or not, overlapping or not):
 * sorted and joined (runs_join(), at most PT_RUNS_KEEP).  A single run,
 * or no memory: no runs, and the block's whole range goes.  f->lock held.
 */
static void chunk_runs_set(struct chunk *ch, unsigned int b,
			   struct pt_run *r, uint32_t n)
{
	struct pt_run *nr;
	uint32_t i, j, m = 0, at;

	for (i = 1; i < n; i++) {	/* insertion sort: n is small */
		struct pt_run t = r[i];

		for (j = i; j > 0 && r[j - 1].lo > t.lo; j--)
			r[j] = r[j - 1];
		r[j] = t;
	}
	m = runs_join(r, n, 0, PT_RUNS_KEEP);
	for (i = 0; i < m; i++)
		r[i].b = b;
	chunk_runs_drop(ch, 1ULL << b);
	if (m <= 1)
		return;
	nr = realloc(ch->pt_runs, (ch->pt_nruns + m) * sizeof(*nr));
	if (!nr)
		return;
	ch->pt_runs = nr;
	for (at = 0; at < ch->pt_nruns && nr[at].b < b; at++)
		;
	memmove(nr + at + m, nr + at, (ch->pt_nruns - at) * sizeof(*nr));
	memcpy(nr + at, r, m * sizeof(*nr));
	ch->pt_nruns += m;
	ch->pt_runs_mask |= 1ULL << b;
}

void chunk_zskip_to_runs(struct chunk *ch, unsigned int b, struct pt_run *r,
			 uint32_t n)
{
	ch->zskip &= ~(1ULL << b);
	chunk_runs_set(ch, b, r, n);
}

/* A block of a JREC_RUNS record, then its n runs (struct rec_run). */
struct rec_blk {
	uint8_t b;
	uint8_t pad;
	uint16_t n;
	uint32_t dlo, dhi;
	uint32_t pad2;
	uint64_t sum;
};

struct rec_run {
	uint32_t lo, hi;
};

/* At most: every block with PT_RUNS_KEEP runs. */
#define RUNS_REC_MAX                                                      \
	(CACHE_BLOCKS * (sizeof(struct rec_blk) +                          \
			 PT_RUNS_KEEP * sizeof(struct rec_run)))
_Static_assert(RUNS_REC_MAX <= JPAYLOAD_MAX, "a RUNS record fits");

/* The record of ch's runs into buf (RUNS_REC_MAX bytes); its length, 0
 * if no dirty block has runs. */
static size_t runs_encode(const struct chunk *ch, char *buf)
{
	uint64_t m = ch->pt_runs_mask & ch->dirty;
	size_t len = 0;

	for (; m; m &= m - 1) {
		unsigned int b = (unsigned int)__builtin_ctzll(m);
		const struct pt_run *r;
		uint32_t n = chunk_runs_of(ch, b, &r), i;
		struct rec_blk h = { .b = (uint8_t)b, .n = (uint16_t)n,
				     .dlo = ch->dlo[b], .dhi = ch->dhi[b],
				     .sum = ch->sums[b] };

		memcpy(buf + len, &h, sizeof(h));
		len += sizeof(h);
		for (i = 0; i < n; i++) {
			struct rec_run x = { r[i].lo, r[i].hi };

			memcpy(buf + len, &x, sizeof(x));
			len += sizeof(x);
		}
	}
	return len;
}

void chunk_runs_journal(struct cache_file *f, uint64_t idx)
{
	struct chunk *ch = f->chunks[idx];
	uint64_t digest;
	size_t len;
	char *buf;

	if (!ch)
		return;
	if (!(ch->pt_runs_mask & ch->dirty)) {
		/* None now: an empty record replaces the last one while the
		 * chunk stays dirty (its CLEAN record ends it otherwise). */
		if (ch->runs_digest && ch->dirty)
			cache_journal_payload(f->c, JREC_RUNS, f, idx, NULL, 0);
		ch->runs_digest = 0;
		return;
	}
	buf = malloc(RUNS_REC_MAX);
	if (!buf)
		return;	/* the replay sends the whole ranges */
	len = runs_encode(ch, buf);
	digest = XXH3_64bits(buf, len) | 1;
	if (digest != ch->runs_digest &&
	    cache_journal_payload(f->c, JREC_RUNS, f, idx, buf, len) == 0)
		ch->runs_digest = digest;
	free(buf);
}

int chunk_runs_emit(struct cache_file *f, uint64_t idx, struct journal *nj)
{
	struct chunk *ch = f->chunks[idx];
	size_t len;
	char *buf;
	int rc;

	if (!ch || !(ch->pt_runs_mask & ch->dirty))
		return 0;
	buf = malloc(RUNS_REC_MAX);
	if (!buf)
		return -ENOMEM;
	len = runs_encode(ch, buf);
	rc = journal_append(nj, JREC_RUNS, file_be(f)->spec, f->fileid, idx,
			    buf, len);
	free(buf);
	return rc;
}

unsigned int chunk_runs_restore(struct chunk *ch, const void *buf,
				size_t len)
{
	struct pt_run r[PT_RUNS_KEEP];
	const char *p = buf;
	unsigned int taken = 0;
	size_t off = 0;

	while (len - off >= sizeof(struct rec_blk)) {
		struct rec_blk h;
		uint32_t i;
		bool ok;

		memcpy(&h, p + off, sizeof(h));
		off += sizeof(h);
		if (h.n > PT_RUNS_KEEP || h.b >= CACHE_BLOCKS ||
		    (len - off) / sizeof(struct rec_run) < h.n)
			break;	/* not a record this cache wrote */
		/* The block as the record saw it, and runs inside its
		 * range: else its whole range goes, as before runs. */
		ok = (ch->dirty & (1ULL << h.b)) && h.n > 1 &&
		     ch->sums[h.b] == h.sum && ch->dlo[h.b] == h.dlo &&
		     ch->dhi[h.b] == h.dhi;
		for (i = 0; i < h.n; i++) {
			struct rec_run x;

			memcpy(&x, p + off, sizeof(x));
			off += sizeof(x);
			r[i] = (struct pt_run){ h.b, x.lo, x.hi };
			if (x.lo >= x.hi || x.lo < h.dlo || x.hi > h.dhi)
				ok = false;
		}
		if (!ok)
			continue;
		ch->zskip &= ~(1ULL << h.b);
		chunk_runs_set(ch, h.b, r, h.n);
		taken++;
	}
	return taken;
}

/*
 * A rehash found block b changed: [lo, hi), or the n runs r (n > 1), or
 * zskip.  Before the dirty range takes the new one in: its runs are the
 * union of the new ones and what is still to go of the old (its runs,
 * or its whole range).  f->lock held.
 */
static void pt_runs_update(struct chunk *ch, unsigned int b, bool zskip,
			   uint32_t lo, uint32_t hi, const struct pt_run *r,
			   uint32_t n)
{
	uint64_t bit = 1ULL << b;
	const struct pt_run *old = NULL;
	uint32_t nold = 0;
	struct pt_run *all;

	if (!(ch->dirty & bit))
		chunk_runs_drop(ch, bit);	/* left from an older round */
	/* One range, onto no other or one it touches: the (joined) range
	 * says it.  Onto a range apart from it, the bytes between are not
	 * this node's: two runs (two-mount difftest seed 31415926). */
	if (zskip || (!n && !(ch->pt_runs_mask & ch->dirty & bit) &&
		      (!(ch->dirty & bit) ||
		       (lo <= ch->dhi[b] && ch->dlo[b] <= hi)))) {
		chunk_runs_drop(ch, bit);
		return;
	}
	if (ch->dirty & bit)
		nold = chunk_runs_of(ch, b, &old);
	all = malloc((n + (nold ? nold : 1) + 1) * sizeof(*all));
	if (!all) {
		chunk_runs_drop(ch, bit);
		return;
	}
	if (n)
		memcpy(all, r, n * sizeof(*all));
	else
		all[n++] = (struct pt_run){ b, lo, hi };
	if (nold) {
		memcpy(all + n, old, nold * sizeof(*all));
		n += nold;
	} else if (ch->dirty & bit) {
		all[n++] = (struct pt_run){ b, ch->dlo[b], ch->dhi[b] };
	}
	chunk_runs_set(ch, b, all, n);
	free(all);
}

/*
 * The runs of [a, b) of a block where its bytes differ from pre, joined
 * to at most PT_RUNS_MAX (runs_join()): another node's single byte
 * between two of this node's runs is left alone, as the kernel's NFS
 * client leaves it.  blk[a] and blk[b - 1] differ.  runs: room for
 * PT_RUNS_MAX; scratch: for (b - a + 1) / 2 + 1.
 */
static uint32_t diff_runs(const char *blk, const char *pre, uint64_t a,
			  uint64_t b, struct pt_run *runs, struct pt_run *scratch)
{
	uint64_t x = a, y;
	uint32_t k = 0;

	while (x < b) {
		for (y = x; y < b && blk[y] != pre[y]; y++)
			;
		scratch[k++] = (struct pt_run){ 0, (uint32_t)x, (uint32_t)y };
		while (y < b && blk[y] == pre[y])
			y++;
		x = y;
	}
	k = runs_join(scratch, k, 0, PT_RUNS_MAX);
	memcpy(runs, scratch, k * sizeof(*runs));
	return k;
}

/*
 * Whether blk[0, n) may hold ZSKIP_MIN zero bytes in a row: such a run
 * covers at least ZSKIP_MIN / 8 - 1 whole 8-byte words of any grid.  A
 * word at a time, so that a block of data (the common case: a writer's
 * new bytes, no zero run) costs an eighth of a byte-by-byte look.
 */
static bool zero_words(const char *blk, uint64_t n)
{
	uint64_t x, w, run = 0;

	for (x = 0; x + sizeof(w) <= n; x += sizeof(w)) {
		memcpy(&w, blk + x, sizeof(w));
		run = w ? 0 : run + 1;
		if (run >= ZSKIP_MIN / sizeof(w) - 1)
			return true;
	}
	return false;
}

/*
 * The dirty range of a changed block of n bytes (up to the file's end),
 * whose bytes are blk, against its pre-image pre (NULL with pre_zero:
 * zeros; NULL without: not known).  The range is the span of the bytes
 * that differ, and *nruns (runs[]) the runs of them that go out when
 * more than one (other bytes lie between).  Where the pre-image is zeros
 * and the block has a zero run of ZSKIP_MIN bytes, the range is the span
 * of its non-zero bytes and the upload leaves out such runs inside it
 * (returns true: the block is zskip), so that bytes another node writes
 * between this node's are not overwritten.  eof: the block is the last of
 * a file longer than the backend's, and keeps its last byte, so that the
 * upload gives the file its size.  The whole block where the pre-image is
 * not known, or where no byte differs from it.
 */
static bool changed_range(const char *blk, const char *pre, bool pre_zero,
			  uint64_t n, bool eof, uint32_t *lo, uint32_t *hi,
			  struct pt_run *runs, struct pt_run *scratch,
			  uint32_t *nruns)
{
	uint64_t a = 0, b = n, x, run = 0;
	bool zs = false;

	*lo = 0;
	*hi = (uint32_t)n;
	*nruns = 0;
	if (pre && !pre[0] && !memcmp(pre, pre + 1, n - 1))
		pre_zero = true;
	if (pre_zero) {
		if (!zero_words(blk, n))
			return false;	/* no zero run to leave out: all */
		for (x = 0; x < n && run < ZSKIP_MIN; x++)
			run = blk[x] ? 0 : run + 1;
		zs = run >= ZSKIP_MIN;
		if (!zs)
			return false;
		while (a < b && !blk[a])
			a++;
		while (b > a && !blk[b - 1])
			b--;
	} else if (pre) {
		while (a < b && blk[a] == pre[a])
			a++;
		while (b > a && blk[b - 1] == pre[b - 1])
			b--;
		if (a < b)
			*nruns = diff_runs(blk, pre, a, b, runs, scratch);
	} else {
		return false;
	}
	if (eof)
		b = n;
	if (a >= b) {
		*nruns = 0;
		return false;	/* the same bytes: all of it */
	}
	if (*nruns)
		runs[*nruns - 1].hi = (uint32_t)b;
	if (*nruns == 1)
		*nruns = 0;
	*lo = (uint32_t)a;
	*hi = (uint32_t)b;
	return zs;
}

/* The pre-image as one rehash uses it (file_pt_rehash()). */
struct pt_pre {
	int fd;			/* a dup of f->pt_pre_fd, or -1 */
	uint64_t len;		/* its size: zeros past it */
	char *buf;		/* room for a chunk of it */
	struct pt_run *runs;	/* room for PT_RUNS_MAX runs per block */
	struct pt_run *scratch;	/* for diff_runs() */
	bool owned;		/* f->pt_owned: without a pre-image (a
				 * replay), the blocks never hashed were
				 * zeros, and so were a zskip block's zero
				 * runs */
};

/* The pre-image's bytes of chunk [start, start + len) into pre->buf,
 * zeros past its end; 0 or -errno. */
static int pre_read(struct pt_pre *pre, uint64_t start, uint64_t len,
		    uint64_t room)
{
	ssize_t n = 0;

	if (start < pre->len)
		n = pread(pre->fd, pre->buf,
			  len < pre->len - start ? len : pre->len - start,
			  (off_t)start);
	if (n < 0)
		return -errno;
	memset(pre->buf + n, 0, room - (size_t)n);
	return 0;
}

/* The data file's size into *size; f->lock held.  0 or -errno. */
static int data_size(struct cache_file *f, uint64_t *size)
{
	struct stat st;
	int rc = file_fds_get(f, FILE_FD_DATA);

	if (rc < 0)
		return rc;
	rc = fstat(file_fd(f, FILE_FD_SLOT_DATA), &st) < 0 ? -errno : 0;
	file_fds_put(f);
	if (rc == 0)
		*size = (uint64_t)st.st_size;
	return rc;
}

/* A passthrough writer made the data file longer than f: f grows to size;
 * f->lock held. */
static void pt_grow(struct cache_file *f, uint64_t size)
{
	if (size <= f->size)
		return;
	f->size = size;
	clock_gettime(CLOCK_REALTIME, &f->mtime);
	index_store_header(f);
}

/* Of the blocks of mask, one the daemon made known or forgot, or summed
 * anew, since known and was were taken; f->lock held. */
static bool block_state_moved(const struct chunk *ch, uint64_t mask,
			      uint64_t known, const uint64_t *was)
{
	unsigned int b;

	if (((ch->present | ch->dirty | ch->leftover) ^ known) & mask)
		return true;
	for (; mask; mask &= mask - 1) {
		b = (unsigned int)__builtin_ctzll(mask);
		if ((known & (1ULL << b)) && ch->sums[b] != was[b])
			return true;
	}
	return false;
}

/*
 * Hash chunk idx of the data file again and turn every block whose bytes
 * changed into dirty ranges, queued for upload.  buf: room bytes.
 * Returns the dirty bytes it added, or -errno: -EAGAIN if the daemon
 * wrote or fetched in the chunk meanwhile (hash it again), -E2BIG if the
 * data file grew past room.  f->rehash_lock held.
 *
 * The daemon's own writes and fetches store their bytes first and their
 * sums after: a rehash reading between takes their bytes for the
 * kernel's, and one that stores its sums after theirs leaves sums of
 * bytes the block no longer holds ("dirty block fails its checksum", for
 * ever).  So it starts with none in flight in the chunk, takes the data
 * file's size then (one such write may have made it longer), and keeps
 * nothing if one came before it is done.
 */
static int64_t rehash_chunk(struct cache_file *f, uint64_t idx, uint64_t room,
			    char *buf, struct pt_pre *pre)
{
	const struct pt_run *kept;
	struct cache *c = f->c;
	uint64_t bs = c->block_size, start = chunk_start(c, idx), size, len;
	uint64_t known = 0, sums[CACHE_BLOCKS], changed = 0, grown = 0;
	uint64_t olddirty, be_size, forced = 0, seq, was[CACHE_BLOCKS];
	uint32_t lo[CACHE_BLOCKS], hi[CACHE_BLOCKS];
	uint64_t zs = 0, stale, ranged = 0, left, zskip0;
	uint32_t nruns[CACHE_BLOCKS] = { 0 };
	bool end_dirty = false;	/* a dirty range reaches the file's end */
	bool pre_in = false;	/* pre->buf holds this chunk */
	struct chunk *ch;
	unsigned int b, nb;
	ssize_t n;
	int rc = 0;

	pthread_mutex_lock(&f->lock);
	for (;;) {
		ch = file_chunk(f, idx, true);
		if (!ch) {
			pthread_mutex_unlock(&f->lock);
			return -ENOMEM;
		}
		if (!ch->writers && !ch->fetching)
			break;
		pthread_cond_wait(&f->cond, &f->lock);
	}
	rc = data_size(f, &size);
	if (rc < 0 || size <= start) {
		pthread_mutex_unlock(&f->lock);
		return rc;
	}
	len = size - start < c->cfg->chunk_size ? size - start :
						  c->cfg->chunk_size;
	nb = (unsigned int)((len + bs - 1) / bs);
	if (nb * bs > room) {
		pthread_mutex_unlock(&f->lock);
		return -E2BIG;
	}
	pt_grow(f, size);
	/* A leftover block's bytes are what its sum says, not a writer's. */
	known = ch->present | ch->dirty | ch->leftover;
	left = ch->leftover & ~ch->present & ~ch->dirty;
	zskip0 = ch->zskip & ch->dirty;
	stale = ch->pt_stale;
	seq = ch->dirty_seq;
	memcpy(sums, ch->sums, sizeof(sums));
	memcpy(was, ch->sums, sizeof(was));
	be_size = f->be_size;
	if (size > start && size - start <= c->cfg->chunk_size) {
		b = (unsigned int)((size - 1 - start) / bs);
		end_dirty = (ch->dirty & (1ULL << b)) &&
			    start + b * bs + ch->dhi[b] >= size;
	}
	ch->readers++;
	f->inflight++;
	pthread_mutex_unlock(&f->lock);

	n = file_fds_get(f, FILE_FD_DATA);
	if (n == 0) {
		n = ring_pread(cache_ring(c), file_fd(f, FILE_FD_SLOT_DATA), buf,
			       len, start);
		file_fds_put(f);
	}
	if (n < 0) {
		rc = (int)n;
		goto out;
	}
	memset(buf + n, 0, nb * bs - (size_t)n);
	for (b = 0; b < nb; b++) {
		uint64_t s = XXH3_64bits(buf + b * bs, bs);
		uint64_t in_file = size - (start + b * bs);

		/* A leftover block punched since its flag was stored (a
		 * replay) is zeros: no writer's either. */
		if (s == ((known & (1ULL << b)) ? sums[b] : c->zero_sum) ||
		    ((left & (1ULL << b)) && s == c->zero_sum)) {
			/*
			 * The kernel made the file longer with zeros (glibc's
			 * posix_fallocate writes one zero byte per block; a
			 * sparse copy seeks past the end): the backend learns
			 * the size only from an upload of the last byte.
			 */
			if (in_file > 0 && in_file <= bs && size > be_size &&
			    !end_dirty) {
				forced |= 1ULL << b;
				changed |= 1ULL << b;
				sums[b] = s;
				lo[b] = (uint32_t)(in_file - 1);
				hi[b] = (uint32_t)in_file;
			}
			continue;
		}
		sums[b] = s;
		changed |= 1ULL << b;
		if (pre->fd >= 0 && !(stale & (1ULL << b)) &&
		    start + b * bs < pre->len && !pre_in) {
			rc = pre_read(pre, start, len, nb * bs);
			if (rc < 0)
				goto out;
			pre_in = true;
		}
		if (changed_range(buf + b * bs,
				  pre_in && !(stale & (1ULL << b)) ?
					  pre->buf + b * bs : NULL,
				  !(stale & (1ULL << b)) &&
					  (pre->fd >= 0 ?
						   start + b * bs >= pre->len :
						   pre->owned &&
							   (!(known & (1ULL << b)) ||
							    (zskip0 & (1ULL << b)))),
				  in_file < bs ? in_file : bs,
				  in_file <= bs && size > be_size, &lo[b], &hi[b],
				  pre->runs ? pre->runs + b * PT_RUNS_MAX : NULL,
				  pre->scratch, &nruns[b]))
			zs |= 1ULL << b;
		/* Its bytes go into the pre-image unless it is a block of
		 * a dense stream: sent whole, past the pre-image's end, not
		 * the last. */
		if (pre->fd >= 0 &&
		    (zs & (1ULL << b) || lo[b] > 0 || in_file <= bs ||
		     hi[b] < bs || start + b * bs < pre->len))
			ranged |= 1ULL << b;
	}
out:
	pthread_mutex_lock(&f->lock);
	ch->readers--;
	if (--f->inflight == 0)
		pthread_cond_broadcast(&f->cond);
	if (rc < 0 || !changed) {
		pthread_mutex_unlock(&f->lock);
		return rc;
	}
	if (ch->writers || ch->fetching || ch->dirty_seq != seq ||
	    block_state_moved(ch, changed, known, was)) {
		pthread_mutex_unlock(&f->lock);
		return -EAGAIN;
	}
	olddirty = ch->dirty;
	/* A chunk dirty already keeps its writer (a kernel write reached
	 * through another open does not say whose it is). */
	if (!olddirty)
		ch->wcred = f->pt_cred;
	for (b = 0; b < nb; b++) {
		uint64_t bit = 1ULL << b, before = dirty_len(ch, bit);

		if (!(changed & bit))
			continue;
		/* Another rehash of the same bytes came first. */
		if (!(forced & bit) && ((ch->present | ch->dirty) & bit) &&
		    ch->sums[b] == sums[b]) {
			changed &= ~bit;
			continue;
		}
		pt_runs_update(ch, b, zs & bit, lo[b], hi[b],
			       nruns[b] ? pre->runs + b * PT_RUNS_MAX : NULL,
			       nruns[b]);
		if (ch->dirty & bit) {
			lo[b] = lo[b] < ch->dlo[b] ? lo[b] : ch->dlo[b];
			hi[b] = hi[b] > ch->dhi[b] ? hi[b] : ch->dhi[b];
		}
		ch->dirty |= bit;
		ch->dlo[b] = lo[b];
		ch->dhi[b] = hi[b];
		ch->sums[b] = sums[b];
		if (zs & bit)
			ch->zskip |= bit;
		else
			ch->zskip &= ~bit;
		if (!(ch->present & bit)) {
			ch->present |= bit;
			atomic_fetch_add(&c->used_bytes, bs);
		}
		ch->leftover &= ~bit;
		/* whole, with no runs: no bytes of others between */
		if (!(zs & bit) && range_whole(c, idx, b, lo[b], hi[b], size) &&
		    !chunk_runs_of(ch, b, &kept))
			ch->mine |= bit;

		if (ranged & bit)
			ch->pt_stale &= ~bit;
		else
			ch->pt_stale |= bit;
		grown += dirty_len(ch, bit) - before;
	}
	ranged &= changed;
	if (!changed) {
		pthread_mutex_unlock(&f->lock);
		return 0;
	}
	ch->dirty_seq++;
	ch->last_write_us = now_us();
	if (!olddirty)
		f->dirty_chunks++;
	atomic_fetch_add(&c->dirty_bytes, grown);
	atomic_fetch_add(&c->pt_bytes_written, grown);
	index_store_chunk(f, idx);
	if (!ch->journaled && cache_journal(c, JREC_DIRTY, f, idx) == 0)
		ch->journaled = true;
	cache_queue_flush(f, idx);
	pthread_mutex_unlock(&f->lock);
	/* What goes out of a block sent as a range is all of its bytes now:
	 * the next rehash diffs against them (rehash_lock orders it). */
	for (b = 0; b < nb; b++) {
		uint64_t in_file = size - (start + b * bs);
		size_t m = in_file < bs ? (size_t)in_file : bs;

		if ((ranged & (1ULL << b)) &&
		    pwrite(pre->fd, buf + b * bs, m,
			   (off_t)(start + b * bs)) != (ssize_t)m) {
			pthread_mutex_lock(&f->lock);
			ch->pt_stale |= 1ULL << b;
			pthread_mutex_unlock(&f->lock);
		}
	}
	return (int64_t)grown;
}

/*
 * A chunk the daemon keeps writing (a flusher's rehash of a chunk that
 * rested, after the passthrough writer left) is not waited out for ever:
 * after this many tries the rehash leaves it (the other chunks still go)
 * and fails with -EBUSY, and the upload rests again.  Writes from the
 * daemon and passthrough writes of one file never overlap (the kernel
 * allows one mode at a time), so a release's rehash does not meet it.
 */
#define REHASH_TRIES 8

/* The rehash's buffers of room bytes (pre->buf only with a pre-image);
 * false without memory. */
static bool rehash_bufs(char **buf, struct pt_pre *pre, uint64_t room)
{
	free(*buf);
	free(pre->buf);
	*buf = cache_buf_alloc(room);
	pre->buf = pre->fd >= 0 ? cache_buf_alloc(room) : NULL;
	return *buf && (pre->fd < 0 || pre->buf);
}

/*
 * Rehash chunks [from, to) of f (to = ~0: up to the data file's end),
 * taking the size the kernel gave the data file.  Returns 0 or -errno.
 */
int file_pt_rehash(struct cache_file *f, uint64_t from, uint64_t to)
{
	struct cache *c = f->c;
	uint64_t size, idx, cs = c->cfg->chunk_size, room;
	struct pt_pre pre = { .fd = -1 };
	struct stat st;
	char *buf = NULL;
	bool busy = false;
	int64_t r = 0;

	pthread_mutex_lock(&f->rehash_lock);
	pthread_mutex_lock(&f->lock);
	r = data_size(f, &size);
	if (r < 0) {
		pthread_mutex_unlock(&f->lock);
		pthread_mutex_unlock(&f->rehash_lock);
		return (int)r;
	}
	pt_grow(f, size);
	pre.owned = f->pt_owned;
	/* a dup: the last writer's end may close the pre-image meanwhile */
	if (f->pt_pre_fd >= 0)
		pre.fd = fcntl(f->pt_pre_fd, F_DUPFD_CLOEXEC, 0);
	pthread_mutex_unlock(&f->lock);
	if (to > (size + cs - 1) / cs)
		to = (size + cs - 1) / cs;
	if (from >= to)
		goto out;
	if (pre.fd >= 0 && fstat(pre.fd, &st) == 0) {
		pre.len = (uint64_t)st.st_size;
	} else if (pre.fd >= 0) {
		close(pre.fd);	/* changed blocks go out whole */
		pre.fd = -1;
	}
	/* As large as the data, up to a chunk: a small file costs little. */
	room = size - from * cs < cs ? (size - from * cs + c->block_size - 1) /
					       c->block_size * c->block_size :
				       cs;
	if (pre.fd >= 0) {
		pre.runs = malloc(CACHE_BLOCKS * PT_RUNS_MAX *
				  sizeof(*pre.runs));
		pre.scratch = malloc((c->block_size / 2 + 1) *
				     sizeof(*pre.scratch));
	}
	if (!rehash_bufs(&buf, &pre, room) ||
	    (pre.fd >= 0 && (!pre.runs || !pre.scratch)))
		r = -ENOMEM;
	for (idx = from; idx < to && r >= 0; idx++) {
		unsigned int tries = 0;

		do {
			r = rehash_chunk(f, idx, room, buf, &pre);
			if (r == -E2BIG) {	/* the daemon made it longer */
				room = cs;
				r = rehash_bufs(&buf, &pre, room) ? -EAGAIN :
								    -ENOMEM;
			}
		} while (r == -EAGAIN && ++tries < REHASH_TRIES);
		if (r == -EAGAIN) {	/* the next chunks still go */
			busy = true;
			r = 0;
		}
	}
	free(buf);
	free(pre.buf);
	free(pre.runs);
	free(pre.scratch);
out:
	if (pre.fd >= 0)
		close(pre.fd);
	pthread_mutex_unlock(&f->rehash_lock);
	/* The daemon sees no reads or writes of passthrough files: it
	 * keeps the cache in bounds here and after uploads. */
	cache_evict_maybe(c);
	return r < 0 ? (int)r : busy ? -EBUSY : 0;
}

int cache_file_pt_sync(struct cache_file *f)
{
	int rc = file_pt_rehash(f, 0, ~0ULL);

	if (rc < 0)
		log_msg(LOG_LVL_ERR, "passthrough",
			"file %llx: rehash of the cache file: %s",
			(unsigned long long)f->fileid, strerror(-rc));
	return rc;
}

int cache_file_pt_flush(struct cache_file *f, bool fsync)
{
	const struct cache_config *cfg = f->c->cfg;

	/*
	 * fsync=local: the data file is made durable, and the journal's
	 * PTOPEN record makes a replay hash the file again, so nothing
	 * acknowledged is lost without hashing it now.  An async close
	 * leaves the hash to the release, which the kernel sends after
	 * close() has returned; opens of the file stay passthrough until
	 * then, so no one reads it through the daemon unhashed.
	 */
	if (fsync ? cfg->fsync_mode != CACHE_FSYNC_BACKEND :
		    cfg->close_mode != CACHE_CLOSE_SYNC)
		return 0;
	return cache_file_pt_sync_writers(f);
}

int cache_file_pt_sync_writers(struct cache_file *f)
{
	bool writers;

	pthread_mutex_lock(&f->lock);
	writers = f->pt_writers > 0;
	pthread_mutex_unlock(&f->lock);
	return writers ? cache_file_pt_sync(f) : 0;
}

void cache_file_pt_end(struct cache_file *f, bool write)
{
	bool last;
	int rc;

	pthread_mutex_lock(&f->lock);
	last = write && f->pt_writers == 1;
	if (!last) {
		pt_user_put(f);
		if (write)
			f->pt_writers--;
	}
	pthread_mutex_unlock(&f->lock);
	if (!last) {
		file_fds_put(f);	/* cache_file_pt_begin()'s */
		return;
	}
	/*
	 * What the kernel wrote since the last FLUSH (an async close's
	 * writes, mmap).  The last writer stays counted until its bytes
	 * are hashed: an open racing with this release (the kernel's next
	 * open of the file, made passthrough) would otherwise see no
	 * writer, take the unhashed blocks for absent ones and fetch the
	 * backend's older bytes over them (the two-mount difftest lost
	 * whole writes so).
	 */
	rc = cache_file_pt_sync(f);
	pthread_mutex_lock(&f->lock);
	pt_user_put(f);
	last = --f->pt_writers == 0;
	if (last && f->pt_pre_fd >= 0) {
		close(f->pt_pre_fd);
		f->pt_pre_fd = -1;
	}
	if (last && rc == 0) {
		f->pt_owned = false;
		f->pt_unsynced = false;
		cache_journal(f->c, JREC_PTCLOSE, f, 0);
	}
	pthread_mutex_unlock(&f->lock);
	file_fds_put(f);	/* cache_file_pt_begin()'s */
	if (!last)
		return;	/* a writer that came meanwhile hashes at its end */
	if (rc == 0) {
		/*
		 * Its uploads may all be done (a FLUSH waits for them): their
		 * flusher could not settle the generation while the kernel
		 * wrote, so it is settled here.  Left unsettled, the next open
		 * took another node's later change for this node's own and
		 * kept this node's old blocks (passthrough.sh case 7).
		 */
		file_settle_pt(f);
	}
	pt_list_del(f);
}

int cache_file_pt_replay(struct cache_file *f, bool owned)
{
	int rc;

	pthread_mutex_lock(&f->lock);
	f->pt_owned = owned;
	pthread_mutex_unlock(&f->lock);
	rc = cache_file_pt_sync(f);
	pthread_mutex_lock(&f->lock);
	f->pt_owned = false;
	if (rc == 0)
		cache_journal(f->c, JREC_PTCLOSE, f, 0);
	pthread_mutex_unlock(&f->lock);
	return rc;
}

void pt_sync_all(struct cache *c)
{
	struct cache_file **v;
	size_t i, n;

	pthread_mutex_lock(&c->pt_lock);
	n = c->npt;
	v = malloc((n ? n : 1) * sizeof(*v));
	for (i = 0; v && i < n; i++) {
		v[i] = c->pt[i];
		cache_file_ref(v[i]);
	}
	pthread_mutex_unlock(&c->pt_lock);
	if (!v)
		return;	/* the releases hash them */
	for (i = 0; i < n; i++) {
		cache_file_pt_sync_writers(v[i]);
		cache_file_put(v[i]);
	}
	free(v);
}

/*
 * A long passthrough writer must not wait for its close: the chunks its
 * file has grown past are rehashed and uploaded while it writes.  A chunk
 * rewritten after that is found by the rehash at close.
 */
void *pt_main(void *arg)
{
	struct cache *c = arg;
	struct timespec ts = { 0, PT_SCAN_MS * 1000000L };

	pthread_setname_np(pthread_self(), "sfs-ptscan");
	while (!atomic_load(&c->stopping)) {
		struct cache_file *f = NULL;
		size_t i;

		nanosleep(&ts, NULL);
		for (i = 0;; i++) {
			uint64_t full, from, size;

			pthread_mutex_lock(&c->pt_lock);
			f = i < c->npt ? c->pt[i] : NULL;
			if (f)
				cache_file_ref(f);
			pthread_mutex_unlock(&c->pt_lock);
			if (!f)
				break;
			pthread_mutex_lock(&f->lock);
			from = f->pt_scanned;
			full = data_size(f, &size) == 0 ?
				       size / c->cfg->chunk_size : 0;
			if (full > from)
				f->pt_scanned = full;
			pthread_mutex_unlock(&f->lock);
			if (full > from)
				file_pt_rehash(f, from, full);
			cache_file_put(f);
		}
	}
	return NULL;
}
