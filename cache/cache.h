/* SPDX-License-Identifier: GPL-2.0 */
/*
 * cache.h - the staging cache between the FUSE layer and the backends.
 *
 * Data of each backend file is kept in a sparse cache file under
 * cache_dir, split into chunks of chunk_size bytes; each chunk is split
 * into CACHE_BLOCKS blocks.  Per block the cache knows whether it is
 * present, whether it is dirty (written here, not yet acknowledged by the
 * backend) and its XXH3 checksum.  Reads are served from present blocks;
 * a miss fetches the whole chunk.  Writes land in the cache file through
 * io_uring and are uploaded by the flusher threads.  See
 * docs/ARCHITECTURE.md for the threads and the on-disk layout.
 *
 * A cache_file is named by (backend index, fileid).  It holds a reference
 * to a backend node (for uploads and fetches) which is how it survives
 * renames; unlinking the last name makes the backend answer ESTALE or
 * ENOENT to uploads, and the cache then drops that file's dirty data.
 *
 * References: cache_file_get() returns a cache_file holding one
 * reference; the FUSE layer takes one per open file handle and puts it at
 * release.  The cache keeps files it has data for in its table without a
 * reference; they leave the table when evicted or replaced.
 *
 * Thread safety: every function may be called from any thread.
 * Lock order, outermost first:
 *     cache->table_lock  ->  file->lock  ->  cache->queue_lock
 *                                        ->  cache->journal_lock
 *     cache->table_lock  ->  cache->cold_lock
 * No lock is held while calling into the backend or while doing cache
 * file I/O, and none is held when a function here returns.
 */
#ifndef STAGEFS_CACHE_H
#define STAGEFS_CACHE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "backend.h"

/* Blocks per chunk: one 64-bit mask of present and of dirty blocks. */
#define CACHE_BLOCKS 64

enum cache_close_mode {
	CACHE_CLOSE_SYNC,	/* close waits until the data is on the backend */
	CACHE_CLOSE_ASYNC,	/* close returns; the flusher carries on */
};

enum cache_fsync_mode {
	CACHE_FSYNC_BACKEND,	/* fsync: committed on the backend */
	CACHE_FSYNC_LOCAL,	/* fsync: durable on the local cache device */
};

/* Filled by fs/opts.c; the cache keeps a const pointer to it. */
/* Which whole-block transfers of the cache files use O_DIRECT. */
enum cache_direct_mode {
	CACHE_DIRECT_OFF,
	/*
	 * Chunk fills only (bytes fetched from the backend): no copy into
	 * the page cache on the cold path; a file system without O_DIRECT
	 * falls back to buffered writes.
	 */
	CACHE_DIRECT_FILLS,
	/* Fills, flusher read-backs and checked reads; refused without it. */
	CACHE_DIRECT_ON,
};

struct cache_config {
	const char *dir;
	uint64_t size;		/* evict clean chunks above this */
	uint64_t min_free;	/* ... or below this much free space */
	uint64_t chunk_size;
	uint64_t readahead;	/* bytes prefetched ahead of a stream */
	uint64_t dirty_max;	/* writers wait above this */
	uint64_t journal_compact;	/* compact the journal above this
					 * (0: 4 MiB) */
	unsigned int flushers;	/* upload threads */
	int writeback;		/* 0: writes go through to the backend */
	enum cache_close_mode close_mode;
	enum cache_fsync_mode fsync_mode;
	int verify;		/* check block checksums on every read */
	enum cache_direct_mode direct;	/* O_DIRECT for cache-file I/O */
	unsigned int max_fds;	/* cache-file descriptors kept open; 0: a
				 * quarter of RLIMIT_NOFILE */
	unsigned int mem_files;	/* files whose state stays in memory once
				 * unused; 0: CACHE_MEM_FILES */
};

/* The default of cache_config.mem_files: about 2 KiB each for small files. */
#define CACHE_MEM_FILES 32768

struct cache;
struct cache_file;

/* Latency histogram: bucket i counts operations of [2^i, 2^(i+1)) us. */
#define CACHE_HIST_BUCKETS 26

/* Counters, all monotonic but the gauges marked so. */
struct cache_stats {
	uint64_t bytes_read_cache;
	uint64_t bytes_read_backend;
	uint64_t bytes_read_splice;	/* of bytes_read_cache: by splice */
	uint64_t bytes_written;
	uint64_t bytes_flushed;
	uint64_t dirty_bytes;		/* gauge */
	uint64_t cache_used_bytes;	/* gauge */
	uint64_t chunks_evicted;
	uint64_t checksum_errors;
	uint64_t flush_errors;
	uint64_t flush_retries;
	uint64_t flush_rewrites;		/* chunks sent again: server lost them */
	uint64_t prefetch_chunks;
	uint64_t reads_from_fetch;	/* reads copied from a fetch in flight */
	uint64_t reads_kept;	/* reads copied from a finished fetch's buffer */
	uint64_t flush_queue;		/* gauge: chunks waiting to upload */
	uint64_t files;			/* gauge: files in the table */
	uint64_t flushes_before_write;	/* writes that had to upload a
					 * disjoint dirty range first */
	uint64_t passthrough_opens;	/* opens answered with passthrough */
	uint64_t passthrough_bytes_written;	/* dirty bytes found by the
						 * rehash of passthrough
						 * writes */
	uint64_t bytes_scrubbed;	/* file bytes checked by a scrub */
	uint64_t stale_opens;	/* opens served the cached copy while the
				 * backend did not answer (offline=serve) */
	uint64_t cold_files;	/* gauge: files on the cold list: cached by
				 * an earlier run (counted by the scan) or
				 * unloaded, and not opened since */
	uint64_t files_unloaded;	/* unused clean files moved out of
					 * memory to the cold list */
	uint64_t cold_files_evicted;	/* of them, removed by eviction */
	uint64_t scan_done;	/* gauge: 1 once the start-up scan has
				 * counted every file of the cache dir */
	uint64_t scan_files;	/* gauge: files it has counted so far */
	uint64_t scan_ms;	/* gauge: how long it took (0 until done) */
	uint64_t evict_batches;	/* eviction batches run */
	uint64_t evict_batch_us_last;	/* gauge: the last batch's time */
	uint64_t evict_batch_us_max;	/* gauge: the longest batch's time */
	uint64_t evict_freeing_bytes;	/* gauge: bytes of cold files picked
					 * by eviction, not yet removed (the
					 * remover thread's backlog) */
	uint64_t cold_files_removing;	/* gauge: those files */
	uint64_t journal_bytes;		/* gauge: the journal's size */
	uint64_t journal_compactions;	/* while running (cache.c) */
	uint64_t be_read_us[CACHE_HIST_BUCKETS];	/* chunk fetches */
	uint64_t be_write_us[CACHE_HIST_BUCKETS];	/* chunk uploads */
};

/*
 * Open the cache in cfg->dir for the given backends (the index in this
 * array is the backend index used below; each backend's spec names it in
 * the journal).  Takes the cache dir lock, replays the journal and queues
 * every dirty range found there, and starts the flusher threads.  On
 * failure returns -errno and writes one line naming the problem to err.
 */
int cache_open(const struct cache_config *cfg, struct be *const *bes,
	       int nbe, struct cache **out, char *err, size_t errlen);

/*
 * Upload everything dirty and wait for it, giving up after 60 s without
 * an upload completing.  Returns 0, or -EIO if some dirty data could not
 * be flushed (it stays in the cache and the journal for the next start;
 * logged).  Once: a second call returns the first's result.  The cache
 * stays usable (stats) until cache_close().
 */
int cache_drain(struct cache *c);
/*
 * cache_drain() if it has not run, then stop the threads and free c.
 * Returns cache_drain()'s result.
 */
int cache_close(struct cache *c);

/* Wait until nothing is dirty (or a flush error); progress for tools. */
int cache_flush_all(struct cache *c);

void cache_get_stats(struct cache *c, struct cache_stats *st);

/*
 * This node's id: random, made once and kept in the cache dir (node-id),
 * so it stays the same across restarts with the same cache dir and
 * differs between cache dirs.  While the cache is open, no other daemon
 * has it (the cache dir lock).  The FUSE layer names the hidden files of
 * unlinked open files with it (cache/nodeid.c).
 */
uint64_t cache_node_id(const struct cache *c);

/*
 * The cache_file for a backend node, created if need be; takes a
 * reference to node when it keeps it.  attr is the backend's current view:
 * if its generation differs from the cached copy's and no data is dirty,
 * the stale clean data is dropped (close-to-open).  Returns 0 or -errno.
 */
int cache_file_get(struct cache *c, int be_idx, struct be_node *node,
		   const struct be_attr *attr, struct cache_file **out);
void cache_file_put(struct cache_file *f);

/*
 * The cached copy of a file, for an open while the backend cannot be
 * asked (offline=serve): its entry, with a reference, if it is in the
 * cache table and every byte of it is present or dirty, without any
 * revalidation; counted in stale_opens.  -ENOENT if not.
 */
int cache_file_get_offline(struct cache *c, int be_idx, struct be_node *node,
			   struct cache_file **out);

/*
 * Correct a backend's attributes for data that is still in the cache:
 * the size of a file with dirty data is the local one, and its mtime and
 * ctime are those of the last local write if that is later.
 */
void cache_fixup_attr(struct cache *c, int be_idx, const struct be_node *node,
		      struct be_attr *attr);

/*
 * Per open file stream state for sequential detection.  Owned by the
 * caller (one per FUSE file handle); not locked: the caller serialises or
 * accepts a racy guess.
 */
struct cache_stream {
	/* The opener's credentials: fetches and prefetches for this stream
	 * go out with them (NULL: the daemon's).  Set by the caller. */
	const struct be_cred *cred;
	uint64_t next_off;	/* where a sequential read would go next */
	uint64_t window;	/* current readahead window, bytes */
	uint64_t prefetched;	/* prefetch issued up to here */
	unsigned int seq_count;
};

/*
 * Read up to size bytes at off into buf.  Returns the number of bytes
 * read (short only at end of file) or -errno.  A checksum failure on a
 * clean block refetches it; on a dirty block it returns -EIO.
 */
ssize_t cache_read(struct cache_file *f, struct cache_stream *s, void *buf,
		   size_t size, uint64_t off);

/*
 * A read the caller answers without copying: from memory (mem: the
 * buffer of a fetch of the chunk, in flight or finished, that holds the
 * bytes) or else straight from the cache file (FUSE splices the bytes
 * from fd at off).  Either is pinned (the buffer against reuse, the
 * chunk against eviction and truncation) until cache_read_unpin().
 */
struct cache_pin {
	struct cache_file *f;
	struct chunk *ch;
	struct rbuf *rb;	/* mem's buffer, or NULL */
	const char *mem;	/* the bytes, or NULL: fd */
	int fd;
	uint64_t off;
	size_t len;
};

/*
 * Pin [off, off+size) for a zero-copy reply; a fetch in flight of the
 * blocks it needs is waited for.  Returns the byte count (short only at
 * end of file; 0 at or past it) with *pin filled, or -EAGAIN when the
 * range cannot be handed over as it is: blocks not present, a write in
 * flight, the range spans two chunks, or (not in a fetch's buffer)
 * verify=on, since the bytes must be checked on the way.  The stream s
 * has been advanced either way (its prefetch queued): after -EAGAIN,
 * read with cache_read_after_pin(), which does not advance it again.
 */
ssize_t cache_read_pin(struct cache_file *f, struct cache_stream *s,
		       size_t size, uint64_t off, struct cache_pin *pin);
ssize_t cache_read_after_pin(struct cache_file *f, struct cache_stream *s,
			     void *buf, size_t size, uint64_t off);
void cache_read_unpin(struct cache_pin *pin);

/*
 * Write size bytes at off for the writer cred (NULL: the daemon): the
 * upload of these bytes goes out with cred, also after a restart (the
 * journal keeps it).  A chunk holds one writer's dirty data: a write by
 * another uploads what is there first.  Returns size or -errno.  Waits,
 * without error, while the cache holds more than dirty_max dirty bytes.
 */
ssize_t cache_write(struct cache_file *f, const struct be_cred *cred,
		    const void *buf, size_t size, uint64_t off);

/*
 * Change attributes other than the size (chmod, chown, utimens) on the
 * backend: be->ops->setattr, bracketed so that the generation it makes
 * is known as this node's own, not a change from elsewhere.  No conflict
 * check runs while it is under way, and no earlier GETATTR answer can
 * overwrite it.  Returns 0 with *attr, or -errno.
 */
int cache_setattr(struct cache *c, const struct be_cred *cred, int be_idx,
		  struct be_node *node, const struct be_setattr *sa,
		  struct be_attr *attr);

/* The file's size as this node sees it (the cache's, not the backend's) */
uint64_t cache_file_size(struct cache_file *f);

/*
 * Upload the file's dirty data and wait for it; commit on the backend.
 * Used at close (sync mode), fsync (backend mode) and by tools.
 */
int cache_file_flush(struct cache_file *f);

/* fsync according to the configured mode. */
int cache_file_fsync(struct cache_file *f);

/* close(2) of one file descriptor: flush according to close_mode. */
int cache_file_close(struct cache_file *f);

/*
 * Change the size: waits for uploads in flight, drops dirty data beyond
 * the new size, and sets the size on the backend.  attr gets the result.
 */
int cache_file_truncate(struct cache_file *f, const struct be_cred *cred,
			uint64_t size, struct be_attr *attr);

/* Drop clean cached data of the file (stagefsctl evict). */
int cache_file_evict(struct cache_file *f);

/* Is node's file cached but not in memory (on the cold list: cached by an
 * earlier run, or unloaded past mem_files)?  cache_file_get() loads it. */
bool cache_file_cold(struct cache *c, int be_idx, const struct be_node *node);
/*
 * The file's entry if the table has one (with a reference), or -ENOENT.
 * By fileid alone: with a reused fileid, the newest entry.
 */
int cache_file_lookup(struct cache *c, int be_idx, uint64_t fileid,
		      struct cache_file **out);

/* Pinned files are never evicted (stagefsctl pin / unpin). */
void cache_file_pin(struct cache_file *f, int pinned);

/* Bring the whole file into the cache (stagefsctl prefetch). */
int cache_file_prefetch(struct cache_file *f, const struct be_cred *cred);

/*
 * Scrub (cache/scrub.c, stagefsctl scrub): read the cached blocks back
 * from the data files and check them against their XXH3-64 sums.  This
 * is what catches a bad block that no check on the read path sees:
 * passthrough reads, and verify=off.
 *
 * cache_file_scrub(): every block of f that is present or dirty is read
 * (zero padded past the data file's end, as the sums are defined) and
 * hashed.  A clean block that fails is logged once, counted in
 * checksum_errors, dropped (not punched) and fetched again in place; a
 * dirty block that fails is logged as an error, counted and left (the
 * flusher refuses to upload it, a read of it gets EIO).  A chunk being
 * fetched or written is waited for; a chunk written during its check is
 * checked again.  A file that a passthrough writer has (or had, and its
 * last rehash has not run yet) is skipped: the kernel's writes are not
 * in its sums yet, so a mismatch there is no error.  Adds to s's
 * counters.  Returns 0 (bad blocks are counted, not an error), -EINTR
 * when s->stop said so, or -errno for an I/O error of the data file
 * (that file's scrub ends there).  A refetch that fails leaves the block
 * not present: the next read fetches it.  f->lock not held; it is taken
 * per chunk and dropped for the I/O.
 *
 * cache_scrub_all(): the same for every file in the cache table, one
 * after the other; a file's error is logged and the scrub goes on.
 * Files cached by an earlier run and not opened since (not in the table)
 * are not checked.  Returns 0, -EINTR, or the first file's error.
 */
struct cache_scrub {
	uint64_t checked;	/* blocks read back and hashed */
	uint64_t bytes;		/* the file's bytes in them */
	uint64_t bad;		/* of them, failed their checksum */
	uint64_t refetched;	/* of the bad, clean and fetched again */
	uint64_t skipped;	/* present or dirty blocks not checked: a
				 * passthrough writer has the file */
	uint64_t files;		/* files looked at */
	/* Asked between chunks (may be NULL): true ends the scrub. */
	bool (*stop)(void *arg);
	void *arg;
};

int cache_file_scrub(struct cache_file *f, struct cache_scrub *s);
int cache_scrub_all(struct cache *c, struct cache_scrub *s);

/*
 * Passthrough (cache/passthrough.c): the FUSE layer hands the kernel the
 * file's cache data file, and the kernel reads and writes it without the
 * daemon.
 *
 * cache_file_pt_can(): may an open be passthrough?  For reading: every
 * byte of the file is present.  For writing: the file is empty (a create
 * or O_TRUNC), so that every byte the kernel writes is this node's, and
 * the cache fs has room for a writer that cannot be made to wait
 * (cache_pt_room()).  Returns 1 or 0.
 *
 * cache_file_pt_begin(): a passthrough open starts; *fd is the data file
 * (the caller registers it with the kernel before it answers the open,
 * and must not close it).  cred: the opener's; what passthrough writers
 * write goes out with the last writer's to open.  must: the kernel demands passthrough (another
 * passthrough open of the inode is there): the file is made whole first.
 * A write open is journaled before this returns.  The file is not evicted
 * or punched until cache_file_pt_end().  Returns 0 or -errno.
 *
 * cache_file_pt_sync(): find what the kernel wrote (a rehash of the data
 * file against the index), mark it dirty, to the byte, and queue it.  At
 * FLUSH, fsync and release of a writer; then flush as for any write.
 * cache_file_pt_flush(): what a passthrough writer's FLUSH (fsync false),
 * or an fsync through any passthrough open, needs: the rehash where the
 * file has passthrough writers and the data must reach the backend now
 * (flush_on_close=sync, fsync=backend); otherwise the release hashes it.
 * cache_file_pt_sync_writers(): the same if a passthrough writer has the
 * file open, else nothing (before a SETATTR by path or by another handle).
 */
int cache_file_pt_can(struct cache_file *f, bool write);
int cache_file_pt_begin(struct cache_file *f, const struct be_cred *cred,
			bool write, bool must, int *fd);
int cache_file_pt_sync(struct cache_file *f);
int cache_file_pt_flush(struct cache_file *f, bool fsync);
int cache_file_pt_sync_writers(struct cache_file *f);
void cache_file_pt_end(struct cache_file *f, bool write);

#endif /* STAGEFS_CACHE_H */
