/* SPDX-License-Identifier: GPL-2.0 */
/*
 * cache_int.h - structures and helpers shared by the files of cache/.
 *
 * Thread safety: see the field comments; the lock order is in cache.h.
 */
#ifndef STAGEFS_CACHE_INT_H
#define STAGEFS_CACHE_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <sys/uio.h>
#include <time.h>

#include "cache.h"
#include "fdlru.h"

/* ---- io_uring engine (ring.c) ---------------------------------------- */

/*
 * One ring per thread, made on first use and freed when the thread ends
 * (a pthread key owned by struct cache).  Each call submits its requests
 * as one batch and waits for all of them.
 */
struct ring_engine;

struct ring_op {
	int fd;
	int write;		/* 0: read */
	void *buf;
	size_t len;
	uint64_t off;
	ssize_t res;		/* out: bytes or -errno */
};

int ring_engine_init(struct ring_engine **out);
void ring_engine_destroy(struct ring_engine *e);
/* Run n operations as one submission; returns 0 or the first -errno. */
int ring_run(struct ring_engine *e, struct ring_op *ops, int n);
/* Full-length transfer of one buffer (loops over short transfers). */
ssize_t ring_pread(struct ring_engine *e, int fd, void *buf, size_t len,
		   uint64_t off);
ssize_t ring_pwrite(struct ring_engine *e, int fd, const void *buf,
		    size_t len, uint64_t off);
int ring_fdatasync(struct ring_engine *e, int fd);
/* This thread's registered staging buffer, at least len bytes; or NULL. */
void *ring_buf(struct ring_engine *e, size_t len);

/* ---- journal (journal.c) --------------------------------------------- */

enum jrec_type {
	JREC_FILE = 1,		/* file key -> backend spec, handle */
	JREC_DIRTY = 2,		/* chunk has dirty blocks */
	JREC_CLEAN = 3,		/* chunk has none any more */
	JREC_DROP = 4,		/* file's dirty data is gone (unlinked) */
	JREC_PTOPEN = 5,	/* a passthrough writer has it open (chunk:
				 * 1 if the file was empty at its open) */
	JREC_PTCLOSE = 6,	/* ... and is done, its bytes rehashed */
	JREC_RUNS = 7,		/* the byte runs of a chunk's dirty blocks
				 * that go out as runs (passthrough.c) */
};
/* The largest payload of a record: RUNS; the others hold a handle or a
 * writer's credentials (BE_HANDLE_MAX). */
#define JPAYLOAD_MAX 65535

struct jkey {
	uint32_t be_idx;
	uint64_t fileid;
};

struct journal;

/* Callback for replay, once per valid record in order. */
typedef int (*journal_replay_fn)(void *arg, enum jrec_type type,
				 const char *spec, uint64_t fileid,
				 uint64_t chunk, const void *handle,
				 size_t handle_len);

int journal_open(const char *path, struct journal **out, char *err,
		 size_t errlen);
/* Read every record; a torn tail is cut off, a bad record in the middle
 * is an error (-EUCLEAN). */
int journal_replay(struct journal *j, journal_replay_fn fn, void *arg,
		   char *err, size_t errlen);
int journal_append(struct journal *j, enum jrec_type type, const char *spec,
		   uint64_t fileid, uint64_t chunk, const void *handle,
		   size_t handle_len);
int journal_sync(struct journal *j);
uint64_t journal_size(struct journal *j);
/* Start a fresh journal holding only what emit() appends (compaction). */
int journal_rewrite(struct journal *j, int (*emit)(void *arg, struct journal *nj),
		    void *arg);
void journal_close(struct journal *j);

/* ---- what the journal says (jstate.c) ------------------------------- */

/* A writer's credentials from the journal (none: older records). */
struct jcred {
	bool set;
	struct be_cred cred;
};

/* A dirty chunk of a jfile. */
struct jchunk {
	uint64_t idx;		/* its number */
	struct jcred cred;	/* its writer */
	void *runs;		/* its last RUNS record's payload, or NULL */
	size_t runs_len;
};

struct jfile {
	int be_idx;
	uint64_t fileid;
	unsigned char handle[BE_HANDLE_MAX];
	size_t handle_len;
	struct jchunk *chunks;
	size_t nchunks, cap;
	struct jcred pt_cred;	/* the passthrough writer's */
	int pt;			/* a passthrough writer did not end: 1, or
				 * 2 if the file was empty at its open */
	struct jfile *next;	/* all files, newest first */
	struct jfile *hnext;	/* the hash chain, newest first */
};

struct jstate {
	struct cache *c;
	struct jfile *files;
	struct jfile **tab;
	size_t nfiles;
	struct jraw *raw, *raw_tail;	/* records of backends not mounted
					 * now, in order */
	uint64_t unknown;	/* ... how many */
	uint64_t bad_chunk;	/* a record's chunk number out of range */
};

struct jstate *jstate_new(struct cache *c);
void jstate_free(struct jstate *s);
/* A journal_replay_fn; arg: the jstate. */
int jstate_rec(void *arg, enum jrec_type type, const char *spec,
	       uint64_t fileid, uint64_t chunk, const void *handle,
	       size_t handle_len);
/* For journal_rewrite(); arg: the jstate. */
int jstate_emit(void *arg, struct journal *nj);
/* Has the journal dirty data (or a passthrough writer) of fileid? */
bool jstate_names(void *arg, uint64_t fileid);

/* ---- per-file state (chunk.c, index.c) ------------------------------- */

/*
 * Per block: present (every byte of the block's place in the cache file is
 * the file's content), dirty (this node wrote the bytes [dlo, dhi) of the
 * block and the backend has not acknowledged them) and a checksum.  A
 * dirty block need not be present: a partial write does not fetch the
 * rest of its block, and a read of it fetches and merges around the dirty
 * range.  An upload sends exactly the dirty ranges, never cached bytes
 * this node did not write (another node may be writing them).
 */
/* A run of bytes of block b of a chunk to upload: [lo, hi). */
struct pt_run {
	uint32_t b, lo, hi;
};

struct chunk {
	uint64_t present;	/* block mask */
	uint64_t dirty;		/* block mask: dlo/dhi are valid */
	uint64_t mine;		/* present blocks wholly written by this node
				 * since the file was last opened here (up to
				 * the end of the file, if it ends in one) */
	uint64_t sums[CACHE_BLOCKS];	/* XXH3-64 of each present or dirty
					 * block, as it is in the cache file */
	uint64_t zskip;		/* dirty blocks written by a passthrough writer
				 * onto zeros: their upload leaves out the zero
				 * runs inside the range (index slot flag) */
	/* Dirty blocks whose upload is a set of byte runs, not the whole
	 * [dlo, dhi): a passthrough writer changed parts of them with other
	 * bytes between (another node's, maybe).  Sorted by block, then
	 * offset; valid for the blocks of pt_runs_mask & dirty; kept in
	 * the journal (JREC_RUNS, chunk_runs_journal()). */
	uint64_t pt_runs_mask;
	struct pt_run *pt_runs;
	uint32_t pt_nruns;
	uint64_t runs_digest;	/* of the last JREC_RUNS record (0: none) */
	uint64_t leftover;	/* blocks dropped as stale but not punched (a
				 * passthrough reader reads the data file):
				 * their old bytes are still there, and sums[]
				 * still hashes them; a rehash must not take
				 * them for a writer's (index slot flag) */
	uint64_t pt_stale;	/* blocks the passthrough writers changed
				 * whose pre-image no longer holds what went
				 * out: a further change goes out whole */
	uint32_t dlo[CACHE_BLOCKS];	/* the dirty byte range of a block */
	uint32_t dhi[CACHE_BLOCKS];	/* [dlo, dhi), offsets in the block */
	uint64_t dirty_seq;	/* bumped by every write to the chunk */
	bool fetching;		/* a fetch is in flight; wait on f->cond */
	bool flushing;		/* an upload is in flight */
	bool queued;		/* on the flush queue */
	bool journaled;		/* a DIRTY record is in the journal */
	unsigned int readers;	/* I/O on the cache file in progress: no evict */
	unsigned int writers;	/* writes whose sums are not stored yet */
	uint64_t wmask;		/* blocks the write in flight is filling:
				 * a fetch leaves them alone */
	const char *fbuf;	/* a fetch's bytes of the whole chunk, while
				 * it writes them to the cache file */
	uint64_t fbuf_mask;	/* the blocks of fbuf that came from it */
	unsigned int fbuf_users;	/* readers copying from fbuf */
	/*
	 * The buffer the last fetch filled, kept for readers (rbuf.c): valid
	 * for the blocks of rb_mask while rb still holds generation rb_seq,
	 * no write came (dirty_seq == rb_dseq) and no truncate (the file's
	 * trunc_seq == rb_tseq).
	 */
	struct rbuf *rb;
	uint64_t rb_seq, rb_mask, rb_dseq, rb_tseq;
	uint64_t lru_stamp;	/* last access, for eviction */
	uint64_t last_write_us;	/* now_us() of the last write */
	/* Whose the dirty ranges are: they go out with it (cred.c); one
	 * writer per chunk.  Interned; NULL: the daemon. */
	const struct be_cred *wcred;
};

struct cache_file {
	struct cache *c;
	int be_idx;
	uint64_t fileid;
	uint64_t hkey;		/* node->hkey: (fileid, hkey) names it */
	struct be_node *node;	/* reference held */
	atomic_int refs;	/* users (open handles, flusher, table) */

	pthread_mutex_t wlock;	/* serialises writers and truncate */
	pthread_mutex_t lock;
	pthread_cond_t cond;	/* fetch done, flush done, inflight==0 */
	/* The data file, the index file and, with cache_direct=on, the
	 * data file with O_DIRECT: opened on demand, kept in the cache's
	 * descriptor LRU (fdcache.c); use them between file_fds_get() and
	 * file_fds_put() only. */
	struct fdlru_ent fds;
	/* protected by lock: */
	struct be_gen gen;	/* backend generation the clean data is of */
	uint64_t be_size;	/* size on the backend as far as we know */
	uint64_t size;		/* size as this node sees it */
	struct timespec mtime;	/* of the last local write (for getattr) */
	uint64_t nchunks;	/* entries in chunks[] */
	struct chunk **chunks;	/* NULL where nothing is cached */
	uint64_t dirty_chunks;
	unsigned int inflight;	/* uploads and fetches in progress */
	uint64_t trunc_seq;	/* bumped by truncate/invalidate: stale fills */
	int flush_error;	/* last upload error, reported at flush */
	bool gone;		/* backend object vanished: drop dirty data */
	bool pinned;		/* never evict */
	uint64_t jepoch;	/* == c->jepoch: a FILE record is in the
				 * journal (a compaction starts a new epoch) */
	unsigned int local_change;	/* this node is changing the backend */
	uint64_t local_seq;	/* bumped when such a change is done */
	uint64_t upload_seq;	/* bumped by every completed upload */
	uint64_t gen_upload_seq;	/* upload_seq when gen was last set:
					 * if they differ, gen predates our
					 * own uploads (file_refresh_gen pending) */
	/* The backend's attributes right after this node's uploads, taken
	 * while a passthrough writer held the file (its generation is
	 * settled with them at its end, file_settle_pt()): valid while
	 * upload_seq and local_seq are still snap_upload_seq, snap_local_seq */
	bool snap_set;
	uint64_t snap_upload_seq, snap_local_seq;
	struct be_attr snap;
	unsigned int flush_waiters;	/* in cache_file_flush() */
	unsigned int pt_users;	/* passthrough opens: the kernel reads and
				 * writes fd itself; never evict or punch */
	unsigned int pt_writers;	/* ... of them open for writing */
	bool pt_unsynced;	/* a passthrough writer has had the data file
				 * since the last rehash at its end: it may
				 * hold bytes the sums do not know (scrub
				 * leaves it alone) */
	const struct be_cred *pt_cred;	/* the last passthrough writer's
					 * (interned): its data goes with it */
	bool pt_owned;		/* empty at the first passthrough write
				 * open: every byte in it is this node's */
	uint64_t pt_scanned;	/* chunks below this rehashed in the
				 * background (pt_main) */
	int pt_slot;		/* its record in pt-open (ptmark.c), or -1 */
	int pt_pre_fd;		/* the pre-image of the passthrough writers'
				 * bytes, which the rehash diffs against
				 * (passthrough.c), or -1: changed blocks go
				 * out whole */
	pthread_mutex_t rehash_lock;	/* one rehash of the file at a time */
	bool in_table;

	struct cache_file *hnext;	/* protected by c->table_lock */
};

/* ---- the cache object (cache.c) -------------------------------------- */

struct flush_item {
	struct cache_file *f;	/* holds a reference */
	uint64_t chunk;
	const struct be_cred *cred;	/* prefetch: the reader's (interned) */
	struct flush_item *next;
};

struct cache {
	const struct cache_config *cfg;
	struct be *const *bes;
	int nbe;
	uint64_t block_size;	/* chunk_size / CACHE_BLOCKS */
	uint64_t zero_sum;	/* XXH3-64 of a block of zeros */
	int lock_fd;
	bool prev_clean;	/* the last run ended in cache_close() (lock) */
	int dir_fd;
	uint64_t node_id;	/* nodeid.c; set once in cache_open() */
	pthread_key_t ring_key;	/* this thread's ring_engine */
	struct fdlru *fdlru;	/* the cache files' open descriptors */
	struct rbuf_pool *rbufs;	/* rbuf.c */
	/* cfg->direct in force: FILLS falls back to OFF where the cache
	 * file system refuses O_DIRECT */
	enum cache_direct_mode direct;

	pthread_mutex_t table_lock;
	struct cache_file **table;	/* hash on (be_idx, fileid) */
	size_t table_size;
	size_t nfiles;			/* protected by table_lock */

	pthread_mutex_t queue_lock;
	pthread_cond_t queue_cond;	/* work for the flushers */
	pthread_cond_t space_cond;	/* dirty bytes went down */
	struct flush_item *qhead, *qtail;	/* protected by queue_lock */
	atomic_bool stopping;
	atomic_uint flush_all_waiters;	/* in cache_flush_all() */
	pthread_t *flushers;
	unsigned int nflushers;

	pthread_mutex_t prefetch_lock;
	pthread_cond_t prefetch_cond;
	struct flush_item *phead, *ptail;	/* prefetch queue */
	pthread_t *prefetchers;
	unsigned int nprefetchers;

	pthread_mutex_t journal_lock;
	struct journal *journal;	/* protected by journal_lock */
	uint64_t jepoch;	/* bumped by a compaction; journal_lock */
	uint64_t jcompact_at;	/* compact when the journal is larger */

	pthread_mutex_t cred_lock;	/* a leaf */
	struct cred_ent *creds;		/* cred.c; protected by cred_lock */
	bool keep_journal;	/* replay left records it could not act on */

	atomic_uint_fast64_t lru_clock;
	pthread_mutex_t evict_lock;	/* one evictor at a time (trylock) */
	/* evict.c: the cache fs's free space, sampled at most every
	 * EVICT_STATFS_US: bytes available plus used_bytes at the sample
	 * (so free now is about free_base - used_bytes), and when. */
	atomic_uint_fast64_t free_base, free_sampled_us;

	pthread_mutex_t pt_lock;
	struct cache_file **pt;	/* files with passthrough writers (a
				 * reference each); protected by pt_lock */
	size_t npt, pt_cap;
	pthread_t pt_thread;
	bool pt_started;
	/* ptmark.c: the pt-open file, its free records; ptmark_lock (a
	 * leaf) protects them */
	pthread_mutex_t ptmark_lock;
	int ptmark_fd;
	uint32_t *ptmark_free;
	size_t ptmark_nfree, ptmark_cap, ptmark_n;

	pthread_mutex_t cold_lock;
	struct cold_list *cold;	/* scan.c; protected by cold_lock */
	size_t ncold;		/* files on it; protected by cold_lock */
	size_t nreap;		/* picked, not yet removed; cold_lock */
	pthread_cond_t reap_cond;	/* work for the remover (cold_lock) */
	pthread_cond_t reaped_cond;	/* a removal ended (cold_lock) */
	/* bytes of the picked files not yet removed: still in used_bytes,
	 * but already being freed (evict.c does not pick them again) */
	atomic_uint_fast64_t freeing_bytes;
	pthread_t reaper;	/* reap.c */
	bool reaper_started;
	pthread_t scanner;
	bool scanner_started;
	size_t trim_cursor;	/* the bucket cache_table_trim() goes on at;
				 * table_lock */
	atomic_uint_fast64_t files_unloaded;
	/* scan.c: files the scan has counted so far, 1 once it is done,
	 * and how long it took */
	atomic_uint_fast64_t scan_files, scan_done, scan_us;
	/* evict.c: batches run, the last one's and the longest one's time */
	atomic_uint_fast64_t evict_batches, evict_batch_us_last;
	atomic_uint_fast64_t evict_batch_us_max;

	/* counters, see struct cache_stats */
	atomic_uint_fast64_t bytes_read_cache, bytes_read_backend;
	atomic_uint_fast64_t bytes_read_splice;
	atomic_uint_fast64_t bytes_written, bytes_flushed;
	atomic_uint_fast64_t dirty_bytes, used_bytes;
	atomic_uint_fast64_t chunks_evicted, checksum_errors;
	atomic_uint_fast64_t cold_evicted;	/* cold files removed */
	atomic_uint_fast64_t flush_errors, flush_retries;
	atomic_uint_fast64_t flush_rewrites;
	atomic_uint_fast64_t prefetch_chunks, queued_chunks;
	atomic_uint_fast64_t reads_from_fetch;
	atomic_uint_fast64_t reads_kept;	/* rbuf.c: after the fetch */
	atomic_uint_fast64_t flushes_before_write;
	atomic_uint_fast64_t pt_opens, pt_bytes_written;
	atomic_uint_fast64_t journal_compactions;
	atomic_uint_fast64_t bytes_scrubbed;
	atomic_uint_fast64_t stale_opens;	/* cache_file_get_offline() */
	bool drained;		/* cache_drain() ran (main thread only) */
	int drain_rc;
	atomic_uint_fast64_t be_read_us[CACHE_HIST_BUCKETS];
	atomic_uint_fast64_t be_write_us[CACHE_HIST_BUCKETS];
};

/* Microseconds on the monotonic clock. */
static inline uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static inline void hist_add(atomic_uint_fast64_t *hist, uint64_t start_us)
{
	uint64_t d = now_us() - start_us;
	unsigned int b = d ? 63 - (unsigned int)__builtin_clzll(d) : 0;

	atomic_fetch_add(&hist[b < CACHE_HIST_BUCKETS ? b :
				CACHE_HIST_BUCKETS - 1], 1);
}

struct ring_engine *cache_ring(struct cache *c);

static inline struct be *file_be(struct cache_file *f)
{
	return f->c->bes[f->be_idx];
}

static inline uint64_t chunk_start(struct cache *c, uint64_t idx)
{
	return idx * c->cfg->chunk_size;
}

/*
 * A file's chunks are an array indexed by chunk number, so the largest
 * file the cache takes is bounded: 2^24 chunks (64 TiB with 4 MiB chunks,
 * a 128 MiB array at worst).  Larger offsets get EFBIG.
 */
#define CACHE_MAX_CHUNKS (1ULL << 24)

static inline uint64_t cache_max_size(const struct cache *c)
{
	return CACHE_MAX_CHUNKS * c->cfg->chunk_size;
}

static inline uint64_t popcount64(uint64_t x)
{
	return (uint64_t)__builtin_popcountll(x);
}

/* Mask of blocks [first, last] inclusive. */
static inline uint64_t block_mask(unsigned int first, unsigned int last)
{
	uint64_t hi = last >= 63 ? ~0ULL : ((1ULL << (last + 1)) - 1);

	return hi & ~((1ULL << first) - 1);
}

/* Bytes of the dirty ranges of the blocks in mask. */
static inline uint64_t dirty_len(const struct chunk *ch, uint64_t mask)
{
	uint64_t n = 0;

	for (mask &= ch->dirty; mask; mask &= mask - 1) {
		unsigned int b = (unsigned int)__builtin_ctzll(mask);

		n += ch->dhi[b] - ch->dlo[b];
	}
	return n;
}

/*
 * Does the range [lo, hi) of block b of chunk idx cover all of the block
 * that lies in a file of the given size?  Then the block holds nothing
 * but bytes this node wrote (and zeros past the end of the file).
 */
static inline bool range_whole(const struct cache *c, uint64_t idx,
			       unsigned int b, uint32_t lo, uint32_t hi,
			       uint64_t size)
{
	return lo == 0 && (hi == c->block_size ||
			   idx * c->cfg->chunk_size + b * c->block_size + hi >=
				   size);
}

/*
 * A zero run inside a zskip block's range that is at least this long is
 * not uploaded (shorter ones go with the bytes around them: one WRITE
 * per short run would make random data, with a zero byte every 256,
 * cost hundreds of WRITEs a block).
 */
#define ZSKIP_MIN 64

/*
 * The first zero run of ZSKIP_MIN bytes or more in buf[x, t): its start
 * in *z and its end returned; both t where there is none (chunk.c).
 */
uint64_t zero_run_next(const char *buf, uint64_t x, uint64_t t, uint64_t *z);

/* cred.c */
struct cred_ent;
/* The interned copy of cred (NULL for NULL), valid until cache_close. */
const struct be_cred *cache_cred(struct cache *c, const struct be_cred *cred);
void cache_creds_free(struct cache *c);
/* The journal's form of cred: bytes written (0 for NULL or no room). */
size_t cache_cred_encode(const struct be_cred *cred, void *buf, size_t len);
int cache_cred_decode(const void *buf, size_t len, struct be_cred *out);

/* nodeid.c: read node-id from the cache dir, or make and save one (a
 * failure to save is logged; the id then holds for this run only). */
void cache_node_id_load(struct cache *c);

/* cache.c */
void cache_file_ref(struct cache_file *f);
int cache_journal(struct cache *c, enum jrec_type type,
		  struct cache_file *f, uint64_t chunk);
/* The same with a payload (JREC_RUNS). */
int cache_journal_payload(struct cache *c, enum jrec_type type,
			  struct cache_file *f, uint64_t chunk,
			  const void *payload, size_t plen);
void cache_queue_flush(struct cache_file *f, uint64_t chunk);
void cache_queue_prefetch(struct cache_file *f, uint64_t chunk,
			  const struct be_cred *cred);

/* chunk.c: call with f->lock held */
struct chunk *file_chunk(struct cache_file *f, uint64_t idx, bool create);
/* Every block of the file, up to its size, is present; f->lock held. */
bool file_whole(struct cache_file *f);
/* Forget the kept fetch buffers of f's chunks (rbuf.c); f->lock held. */
void file_drop_kept(struct cache_file *f);
int file_fetch_chunk(struct cache_file *f, uint64_t idx, bool prefetch,
		     const struct be_cred *cred);
void file_drop_clean(struct cache_file *f, uint64_t from_chunk);
int punch_blocks(struct cache_file *f, uint64_t idx, uint64_t mask);
void file_eof_block_not_mine(struct cache_file *f);
void file_drop_stale(struct cache_file *f);
/* over_writers: a passthrough writer's bytes were just hashed (dirty
 * ranges, kept by the fetch's overlay): fetch even while it holds the file. */
int file_fetch_all(struct cache_file *f, const struct be_cred *cred,
		   bool over_writers);
/* Make the blocks in mask of chunk idx that hold backend data present
 * (waits for a fetch or a write in flight on them, else fetches). */
int file_ensure_present(struct cache_file *f, uint64_t idx, uint64_t mask,
			const struct be_cred *cred);

/* flush.c: upload chunk idx now, in the calling thread, and commit it;
 * f->lock held (dropped meanwhile), f->wlock held by the caller. */
int file_flush_chunk_now(struct cache_file *f, uint64_t idx);
/* flush.c: once the file is clean, take the backend's generation after
 * this node's uploads as the cached data's (a no-op while it is dirty or
 * being changed here; kept for file_settle_pt() while a passthrough
 * writer holds it). */
void file_refresh_gen(struct cache_file *f);
/* flush.c: the last passthrough writer's end, its bytes hashed: settle
 * the generation its uploads made. */
void file_settle_pt(struct cache_file *f);
/* passthrough.c: hash chunks [from, to) of the data file again (to = ~0:
 * to its end), taking what a passthrough writer put there as dirty; f->lock
 * not held.  0 or -errno. */
int file_pt_rehash(struct cache_file *f, uint64_t from, uint64_t to);
void file_pt_all_stale(struct cache_file *f);
/* The runs of the blocks of mask go (their whole range is sent). */
void chunk_runs_drop(struct chunk *ch, uint64_t mask);
/* A fetch took the backend's bytes into the zero runs of zskip block b:
 * its upload goes by the n > 1 pieces r of this node's bytes instead
 * (joined as a rehash's runs are).  f->lock held. */
void chunk_zskip_to_runs(struct chunk *ch, unsigned int b, struct pt_run *r,
			 uint32_t n);
/* The runs of block b, pointed at by *out; how many (0: none). */
uint32_t chunk_runs_of(const struct chunk *ch, unsigned int b,
		       const struct pt_run **out);
/*
 * The runs across a crash: a JREC_RUNS record holds those of a chunk's
 * dirty blocks, each with the block's sum and range, and the replay takes
 * a block's runs only where all three still match its slot.
 * chunk_runs_journal(): append one after the slot is stored, if they
 * changed since the last (f->lock held).  chunk_runs_emit(): into a
 * journal being rewritten.  chunk_runs_restore(): at replay; returns the
 * blocks whose runs were taken.
 */
void chunk_runs_journal(struct cache_file *f, uint64_t idx);
int chunk_runs_emit(struct cache_file *f, uint64_t idx, struct journal *nj);
unsigned int chunk_runs_restore(struct chunk *ch, const void *buf,
				size_t len);
/* chunk.c's truncate: the pre-image past size goes; f->lock held */
void file_pt_pre_truncate(struct cache_file *f, uint64_t size);

/* index.c: persistence of the per-file chunk table */
int index_open(struct cache_file *f, bool may_reset);
void index_close(struct cache_file *f);

unsigned int index_spec_hash(struct cache_file *f);
/* A cached file's name in data/, index/ and trash/ (and pt-open), made
 * and read back; CACHE_NAME_MAX bytes hold it. */
#define CACHE_NAME_MAX 64
void cache_name(char *buf, size_t len, unsigned int spec_hash,
		uint64_t fileid, uint64_t hkey);
bool cache_name_parse(const char *name, unsigned int *spec_hash,
		      uint64_t *fileid, uint64_t *hkey);
void index_file_name(struct cache_file *f, const char *dir, char *buf,
		     size_t len);
int index_store_header(struct cache_file *f);
int index_store_chunk(struct cache_file *f, uint64_t idx);
int index_load_chunk(struct cache_file *f, uint64_t idx, struct chunk *ch);
/* Forget the cached bytes and slots of chunks [from, to) (not loaded). */
void index_forget_chunks(struct cache_file *f, uint64_t from, uint64_t to);
/* Does the index file index_name (in c->dir_fd) claim dirty data? */
bool index_name_dirty(struct cache *c, const char *index_name);
/* Number of chunk slots the index file has room for. */
uint64_t index_nslots(struct cache_file *f);
int index_sync(struct cache_file *f);

/*
 * fdcache.c: the descriptors of a cache file.  A user takes the ones it
 * needs with file_fds_get(f, FILE_FD_DATA and/or FILE_FD_INDEX), uses
 * them through file_fd() and data_fd(), and gives them back with one
 * file_fds_put(); in between they are not closed.  Descriptors of files
 * nobody uses are closed, least recently used first, when the cache's
 * limit (cache_config.max_fds) is passed.  Any lock may be held.  Hold
 * them only with f->lock held, or for I/O counted in f->inflight, so
 * that whoever closes them (file_fds_close() waits for every user) with
 * f->lock held once f->inflight is 0 cannot wait for ever.
 */
enum file_fd_slot {
	FILE_FD_SLOT_DATA,	/* the data file, O_RDWR */
	FILE_FD_SLOT_INDEX,	/* the index file, O_RDWR */
	FILE_FD_SLOT_DIRECT,	/* the data file, O_DIRECT (cache_direct=on|fills) */
};
#define FILE_FD_DATA 0x1u	/* the data file (and, with cache_direct=on,
				 * its O_DIRECT twin) */
#define FILE_FD_INDEX 0x2u
#define FILE_FD_CREATE 0x4u	/* create missing files (index_open only) */
#define FILE_FD_FILL 0x8u	/* with DATA: the O_DIRECT twin for a chunk
				 * fill with cache_direct=fills too */

int cache_fds_init(struct cache *c);
void cache_fds_destroy(struct cache *c);
int file_fds_get(struct cache_file *f, unsigned int what);
void file_fds_put(struct cache_file *f);
/* Close f's descriptors now: no I/O on f may be under way or start. */
void file_fds_close(struct cache_file *f);
/* f's users other than the table changed: LRU order hint. */
void file_fds_busy(struct cache_file *f, bool busy);

/* A descriptor file_fds_get() took. */
static inline int file_fd(const struct cache_file *f, enum file_fd_slot s)
{
	return fdlru_fd(&f->fds, s);
}

/*
 * The descriptor for a transfer of the data file (FILE_FD_DATA taken):
 * the O_DIRECT one when cache_direct=on and buffer, offset and length are
 * all 4 KiB aligned (whole blocks: chunk fills, flusher read-backs,
 * checked reads), else the buffered one.  The kernel keeps the two
 * coherent.
 */
static inline int data_fd(const struct cache_file *f, const void *buf,
			  uint64_t off, size_t len)
{
	int dfd = file_fd(f, FILE_FD_SLOT_DIRECT);

	if (f->c->direct == CACHE_DIRECT_ON && dfd >= 0 &&
	    !(((uintptr_t)buf | off | len) & 4095))
		return dfd;
	return file_fd(f, FILE_FD_SLOT_DATA);
}

/* The same for a chunk fill (FILE_FD_FILL taken): O_DIRECT with
 * cache_direct=fills too. */
static inline int fill_fd(const struct cache_file *f, const void *buf,
			  uint64_t off, size_t len)
{
	int dfd = file_fd(f, FILE_FD_SLOT_DIRECT);

	if (dfd >= 0 && !(((uintptr_t)buf | off | len) & 4095))
		return dfd;
	return file_fd(f, FILE_FD_SLOT_DATA);
}

/* rbuf.c: fetch buffers kept for the readers after the fetch */
/* A page-aligned buffer for chunk-sized I/O; free() it.  From 2 MiB up it
 * is on transparent huge pages where the kernel has them. */
void *cache_buf_alloc(size_t size);
#define RBUF_MIN 4
#define RBUF_MAX 64
struct rbuf;
int rbuf_pool_init(struct cache *c);
void rbuf_pool_free(struct cache *c);
/* A buffer for a fetch (its old contents go stale), or NULL: none free. */
struct rbuf *rbuf_take(struct cache *c);
/* The fetch is over: the buffer may be taken again (oldest first). */
void rbuf_done(struct cache *c, struct rbuf *r);
char *rbuf_data(struct rbuf *r);
uint64_t rbuf_seq(struct rbuf *r);
/* Hold r for a copy if it still holds generation seq; then unpin. */
bool rbuf_pin(struct rbuf *r, uint64_t seq);
void rbuf_unpin(struct rbuf *r);

/* scan.c */
struct cold_list;
void *scan_main(void *arg);
/* A file of the table is about to be opened: it is no longer cold.
 * Returns -1, or the entry number of the file if the remover is
 * removing it right now: then the caller drops table_lock, waits with
 * cold_wait_removed() and starts over (the file is then gone, and is
 * cached afresh).  c->table_lock held. */
int64_t cold_forget(struct cache *c, unsigned int spec_hash, uint64_t fileid,
		    uint64_t hkey);
void cold_wait_removed(struct cache *c, int64_t ent);
/* A file that left the table (cache_table_trim()) goes on the list, with
 * bytes added to used_bytes; its old entry, gone since an open, is used
 * again.  False if out of memory.  Takes cold_lock. */
bool cold_relist(struct cache *c, unsigned int spec_hash, uint64_t fileid,
		 uint64_t hkey, uint64_t bytes, int64_t mtime);
/* Move unused clean files out of the table while it holds more than
 * cfg->mem_files (the scanner thread, after its scan). */
void cache_table_trim(struct cache *c);
/* Pick cold files, oldest first, for the remover until want bytes are on
 * their way, the list is empty or now_us() passes deadline_us (0: no
 * deadline).  Makes no system call.  Returns the bytes picked. */
uint64_t cold_evict(struct cache *c, uint64_t want, uint64_t deadline_us);
/* Files on the cold list (a racy read is fine for a decision). */
size_t cold_count(struct cache *c);
/* Files picked and not yet removed (queued or being removed). */
size_t cold_reaping(struct cache *c);

/* A picked cold file, as the remover gets it. */
struct cold_victim {
	uint32_t ent;		/* its entry in the cold list */
	uint32_t spec_hash;
	uint64_t fileid, hkey, bytes;
};
/* The remover's next file, now REMOVING (waits for one); false once
 * c->stopping is set.  Files still queued then stay as they are: cold
 * files, listed again by the next start's scan. */
bool cold_reap_take(struct cache *c, struct cold_victim *out);
/* Its files are gone (removed), or were kept (not removed: still counted
 * in used_bytes); wakes cold_wait_removed(). */
void cold_reap_done(struct cache *c, const struct cold_victim *v,
		    bool removed);
/* c->stopping is set: wake the remover. */
void cold_reap_stop(struct cache *c);
void cold_free(struct cache *c);
unsigned int spec_hash_of(struct be *be);
/* cache.c: c->table_lock held */
struct cache_file *cache_table_find(struct cache *c, int be_idx,
				    uint64_t fileid, uint64_t hkey);
/* cache.c: the files in the table, each with a reference (for the caller
 * to put), in *out (malloc'd); returns how many, or -ENOMEM. */
ssize_t cache_table_files(struct cache *c, struct cache_file ***out);

/* flush.c */
void *flusher_main(void *arg);
void *prefetcher_main(void *arg);

/* passthrough.c */
void *pt_main(void *arg);
/* What every passthrough writer wrote, hashed and queued (a flush of
 * everything: an asynchronous close's release may not have come yet). */
void pt_sync_all(struct cache *c);
int cache_file_pt_replay(struct cache_file *f, bool owned);
/* Copy src's data ranges [0, size) into dst (a reflink where the fs
 * has them); 0 or -errno. */
int cache_copy_data(int src, int dst, uint64_t size);

/* ptmark.c: a file with passthrough opens (f->pt_users, counted by
 * pt_user_get() and pt_user_put(), f->lock held) is marked by a record in
 * the cache dir's pt-open, so that a restart after a crash never uses its
 * data file in place.  pt_marks_settle() runs at start, after the journal
 * is read (dirty(arg, fileid): has the journal dirty data of it?) and
 * opens pt-open; pt_marks_close() at the end. */
int pt_user_get(struct cache_file *f);
void pt_user_put(struct cache_file *f);
int pt_marks_settle(struct cache *c, bool (*dirty)(void *, uint64_t),
		    void *arg, char *err, size_t errlen);
void pt_marks_close(struct cache *c);

/* reap.c: the remover thread of picked cold files, and the start-up
 * removal of those a crash left half removed (in trash/) */
void *reap_main(void *arg);
int reap_trash(struct cache *c, char *err, size_t errlen);
/* Remove the cached file NAME (data/NAME, index/NAME) the crash-safe way:
 * its index through trash/ first. */
void reap_files(struct cache *c, const char *name);

/* evict.c */
void cache_evict_maybe(struct cache *c);
bool cache_pt_room(struct cache *c);

#endif /* STAGEFS_CACHE_INT_H */
