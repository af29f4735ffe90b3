/* SPDX-License-Identifier: GPL-2.0 */
/*
 * ctl.c - the control socket; see ctl.h for the protocol.
 */
#include "fs_int.h"
#include "ctl.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"

/* Connections served at once; more are told to come back. */
#define CTL_MAX_CONN 64

struct ctl {
	struct sfs *s;
	int lfd;
	int stop_pipe[2];
	char path[108];
	char link[4096 + sizeof(CTL_CACHE_LINK) + 1];	/* in the cache dir */
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned int active;	/* protected by lock */
};

struct ctl_conn {
	struct ctl *ctl;
	int fd;
	uid_t uid;
};

static void say(int fd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void say(int fd, const char *fmt, ...)
{
	char buf[4096];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(buf) - 1)
		n = (int)sizeof(buf) - 1;
	if (n > 0 && write(fd, buf, (size_t)n) < 0)
		return;	/* the client went away; nothing to tell */
}

/* name, kind (counter or gauge), help */
#define STAT_FIELDS(X)                                                      \
	X(bytes_read_cache, counter, "bytes served to readers")            \
	X(bytes_read_backend, counter, "bytes fetched from the backend")   \
	X(bytes_read_splice, counter, "bytes of bytes_read_cache spliced from the cache file") \
	X(bytes_written, counter, "bytes written by applications")         \
	X(bytes_flushed, counter, "bytes uploaded to the backend")         \
	X(dirty_bytes, gauge, "bytes not yet on the backend")              \
	X(cache_used_bytes, gauge, "bytes cached on the local device")     \
	X(chunks_evicted, counter, "chunks evicted")                        \
	X(checksum_errors, counter, "cached blocks that failed their checksum") \
	X(flush_errors, counter, "uploads that failed for a reason waiting will not cure") \
	X(flush_retries, counter, "uploads retried")                        \
	X(flush_rewrites, counter, "chunks written again because the server lost unstable writes (it restarted)") \
	X(prefetch_chunks, counter, "chunks fetched ahead of readers")     \
	X(reads_from_fetch, counter, "reads served from a fetch still writing the cache") \
	X(reads_kept, counter, "reads served from the buffer of a finished fetch (not read back from the cache file)") \
	X(flush_queue, gauge, "chunks waiting for upload")                 \
	X(files, gauge, "files in the cache table")                         \
	X(flushes_before_write, counter, "writes that uploaded a disjoint dirty range of their block first") \
	X(passthrough_opens, counter, "opens the kernel serves from the cache file itself") \
	X(passthrough_bytes_written, counter, "dirty bytes found in cache files written through passthrough") \
	X(bytes_scrubbed, counter, "cached bytes read back and checked by stagefsctl scrub") \
	X(stale_opens, counter, "opens served the cached copy while the backend did not answer (offline=serve)") \
	X(cold_files, gauge, "files cached by an earlier run or unloaded, and not opened since") \
	X(files_unloaded, counter, "unused clean files moved out of memory to the cold list (mem_files)") \
	X(cold_files_evicted, counter, "cold files removed by eviction") \
	X(scan_done, gauge, "1 once the start-up scan has counted every file of the cache dir") \
	X(scan_files, gauge, "files the start-up scan has counted") \
	X(scan_ms, gauge, "how long the start-up scan took, ms (0 until it is done)") \
	X(evict_batches, counter, "eviction batches run")                   \
	X(evict_batch_us_last, gauge, "how long the last eviction batch took, us") \
	X(evict_batch_us_max, gauge, "how long the longest eviction batch took, us") \
	X(evict_freeing_bytes, gauge, "bytes of cold files eviction picked that the remover has not removed yet") \
	X(cold_files_removing, gauge, "cold files eviction picked that the remover has not removed yet") \
	X(journal_bytes, gauge, "size of the journal of dirty chunks, bytes") \
	X(journal_compactions, counter, "times the running daemon rewrote its journal to what is still dirty")

/* The FUSE requests stats names, counted as they arrive (passthrough.c). */
static const struct {
	unsigned int op;
	const char *name;
} fuse_ops[] = {
	{ PT_OP_LOOKUP, "lookup" },	{ PT_OP_GETATTR, "getattr" },
	{ PT_OP_READDIR, "readdir" },	{ PT_OP_READDIRPLUS, "readdirplus" },
	{ PT_OP_OPEN, "open" },		{ PT_OP_CREATE, "create" },
	{ PT_OP_READ, "read" },		{ PT_OP_WRITE, "write" },
	{ PT_OP_GETXATTR, "getxattr" },
};
#define NFUSE_OPS (sizeof(fuse_ops) / sizeof(fuse_ops[0]))

static unsigned long long fuse_op_count(const struct sfs *s, unsigned int i)
{
	return (unsigned long long)atomic_load_explicit(
		&s->pt.ops[fuse_ops[i].op], memory_order_relaxed);
}

/* Namespace calls to the backends, by kind, summed over the junctions. */
static void be_calls(const struct sfs *s, uint64_t out[BE_CALL_NR])
{
	int i, k;

	for (k = 0; k < BE_CALL_NR; k++)
		out[k] = 0;
	for (i = 0; i < s->nbe; i++)
		for (k = 0; k < BE_CALL_NR; k++)
			out[k] += atomic_load_explicit(&s->bes[i]->calls[k],
						       memory_order_relaxed);
}

/* A histogram as JSON: [n0, n1, ...], bucket i = [2^i, 2^(i+1)) us. */
static void say_hist_json(int fd, const char *name, const uint64_t *h)
{
	int i;

	say(fd, ", \"%s\": [", name);
	for (i = 0; i < CACHE_HIST_BUCKETS; i++)
		say(fd, "%s%llu", i ? ", " : "", (unsigned long long)h[i]);
	say(fd, "]");
}

/* The latency below which a fraction q of the operations finished. */
static unsigned long long hist_quantile(const uint64_t *h, double q)
{
	uint64_t total = 0, seen = 0;
	int i;

	for (i = 0; i < CACHE_HIST_BUCKETS; i++)
		total += h[i];
	for (i = 0; i < CACHE_HIST_BUCKETS && total; i++) {
		seen += h[i];
		if ((double)seen >= q * (double)total)
			return 2ULL << i;	/* upper bound of the bucket */
	}
	return 0;
}

static void say_hist_text(int fd, const char *name, const char *what,
			  const uint64_t *h)
{
	if (!hist_quantile(h, 1.0)) {
		say(fd, "%-20s - (no %s yet)\n", name, what);
		return;
	}
	say(fd, "%-20s p50 < %llu, p99 < %llu (%s)\n", name,
	    hist_quantile(h, 0.5), hist_quantile(h, 0.99), what);
}

/* Prometheus label values escape backslash, quote and newline. */
static void prom_label(const char *in, char *out, size_t len)
{
	size_t j = 0;

	for (; *in && j + 3 < len; in++) {
		if (*in == '\\' || *in == '"' || *in == '\n') {
			out[j++] = '\\';
			out[j++] = *in == '\n' ? 'n' : *in;
		} else {
			out[j++] = *in;
		}
	}
	out[j] = '\0';
}

static void say_hist_prom(int fd, const char *name, const char *help,
			  const char *label, const uint64_t *h)
{
	uint64_t cum = 0;
	int i;

	say(fd, "# HELP stagefs_%s %s\n# TYPE stagefs_%s histogram\n", name,
	    help, name);
	for (i = 0; i < CACHE_HIST_BUCKETS; i++) {
		cum += h[i];
		say(fd, "stagefs_%s_bucket{mountpoint=\"%s\",le=\"%g\"} %llu\n",
		    name, label, (double)(2ULL << i) / 1e6,
		    (unsigned long long)cum);
	}
	say(fd, "stagefs_%s_bucket{mountpoint=\"%s\",le=\"+Inf\"} %llu\n",
	    name, label, (unsigned long long)cum);
	say(fd, "stagefs_%s_count{mountpoint=\"%s\"} %llu\n", name, label,
	    (unsigned long long)cum);
}

/*
 * Each server address of each backend that has them (be_ops.addrs), in
 * fmt (text, json or prometheus); label is the mountpoint's for
 * prometheus.  The address is prefixed by its backend's index when the
 * mount has several backends.
 */
static void say_addrs(struct ctl *ctl, int fd, const char *fmt,
		      const char *label)
{
	struct be_addr_stat a[16];
	const char *sep = "";
	int k;

	if (!strcmp(fmt, "json"))
		say(fd, ", \"addresses\": [");
	for (k = 0; k < ctl->s->nbe; k++) {
		struct be *be = ctl->s->bes[k];
		unsigned int n, i;

		if (!be->ops->addrs)
			continue;
		n = be->ops->addrs(be, a, 16);
		for (i = 0; i < n && i < 16; i++) {
			char name[96];

			snprintf(name, sizeof(name), "%.63s", a[i].addr);
			if (ctl->s->nbe > 1)
				snprintf(name, sizeof(name), "%d:%.63s", k,
					 a[i].addr);
			if (!strcmp(fmt, "json")) {
				say(fd, "%s{\"address\": \"%s\", \"connections\": %u, \"up\": %u, \"requests\": %llu, \"bytes\": %llu, \"resent\": %llu}",
				    sep, name, a[i].conns, a[i].up,
				    (unsigned long long)a[i].calls,
				    (unsigned long long)a[i].bytes,
				    (unsigned long long)a[i].resent);
				sep = ", ";
			} else if (!strcmp(fmt, "prometheus")) {
				say(fd, "stagefs_address_requests_total{mountpoint=\"%s\",address=\"%s\"} %llu\n"
					"stagefs_address_bytes_total{mountpoint=\"%s\",address=\"%s\"} %llu\n"
					"stagefs_address_resent_total{mountpoint=\"%s\",address=\"%s\"} %llu\n"
					"stagefs_address_connections_up{mountpoint=\"%s\",address=\"%s\"} %u\n",
				    label, name, (unsigned long long)a[i].calls,
				    label, name, (unsigned long long)a[i].bytes,
				    label, name,
				    (unsigned long long)a[i].resent, label,
				    name, a[i].up);
			} else {
				say(fd, "address_requests[%s] %llu\naddress_bytes[%s] %llu\naddress_resent[%s] %llu\n",
				    name, (unsigned long long)a[i].calls, name,
				    (unsigned long long)a[i].bytes, name,
				    (unsigned long long)a[i].resent);
			}
		}
	}
	if (!strcmp(fmt, "json"))
		say(fd, "]");
}

static void cmd_stats(struct ctl *ctl, int fd, const char *fmt)
{
	struct cache_stats st;
	char label[1024];
	const char *sep = "";

	uint64_t calls[BE_CALL_NR];
	int k;

	cache_get_stats(ctl->s->cache, &st);
	be_calls(ctl->s, calls);
	say(fd, "ok\n");
	if (!strcmp(fmt, "json")) {
		say(fd, "{");
#define X(f, kind, help) say(fd, "%s\"" #f "\": %llu", sep, (unsigned long long)st.f), sep = ", ";
		STAT_FIELDS(X)
#undef X
		say(fd, ", \"cache_size\": %llu, \"dirty_max\": %llu",
		    (unsigned long long)ctl->s->cfg.cache.size,
		    (unsigned long long)ctl->s->cfg.cache.dirty_max);
		for (k = 0; k < BE_CALL_NR; k++)
			say(fd, ", \"be_%s\": %llu", be_call_names[k],
			    (unsigned long long)calls[k]);
		for (k = 0; k < (int)NFUSE_OPS; k++)
			say(fd, ", \"fuse_%s\": %llu", fuse_ops[k].name,
			    fuse_op_count(ctl->s, (unsigned int)k));
		say_hist_json(fd, "backend_read_us_hist", st.be_read_us);
		say_hist_json(fd, "backend_write_us_hist", st.be_write_us);
		say_addrs(ctl, fd, fmt, NULL);
		say(fd, "}\n");
	} else if (!strcmp(fmt, "prometheus")) {
		prom_label(ctl->s->cfg.mountpoint, label, sizeof(label));
#define X(f, kind, help)                                                       \
	say(fd, "# HELP stagefs_%s%s %s\n# TYPE stagefs_%s%s " #kind "\n"        \
		"stagefs_%s%s{mountpoint=\"%s\"} %llu\n",                         \
	    #f, !strcmp(#kind, "counter") ? "_total" : "", help, #f,          \
	    !strcmp(#kind, "counter") ? "_total" : "", #f,                     \
	    !strcmp(#kind, "counter") ? "_total" : "", label,                  \
	    (unsigned long long)st.f);
		STAT_FIELDS(X)
#undef X
		say(fd, "# HELP stagefs_cache_size_bytes cache_size option\n# TYPE stagefs_cache_size_bytes gauge\nstagefs_cache_size_bytes{mountpoint=\"%s\"} %llu\n",
		    label, (unsigned long long)ctl->s->cfg.cache.size);
		say(fd, "# HELP stagefs_dirty_max_bytes dirty_max option\n# TYPE stagefs_dirty_max_bytes gauge\nstagefs_dirty_max_bytes{mountpoint=\"%s\"} %llu\n",
		    label, (unsigned long long)ctl->s->cfg.cache.dirty_max);
		say(fd, "# HELP stagefs_backend_calls_total namespace calls to the backend (NFS: RPCs)\n# TYPE stagefs_backend_calls_total counter\n");
		for (k = 0; k < BE_CALL_NR; k++)
			say(fd, "stagefs_backend_calls_total{mountpoint=\"%s\",op=\"%s\"} %llu\n",
			    label, be_call_names[k],
			    (unsigned long long)calls[k]);
		say(fd, "# HELP stagefs_fuse_requests_total requests from the kernel, by kind\n# TYPE stagefs_fuse_requests_total counter\n");
		for (k = 0; k < (int)NFUSE_OPS; k++)
			say(fd, "stagefs_fuse_requests_total{mountpoint=\"%s\",op=\"%s\"} %llu\n",
			    label, fuse_ops[k].name,
			    fuse_op_count(ctl->s, (unsigned int)k));
		say_hist_prom(fd, "backend_read_seconds",
			      "chunk fetches from the backend", label,
			      st.be_read_us);
		say_hist_prom(fd, "backend_write_seconds",
			      "chunk uploads to the backend", label,
			      st.be_write_us);
		say(fd, "# HELP stagefs_address_requests_total requests a server address answered\n# TYPE stagefs_address_requests_total counter\n"
			"# HELP stagefs_address_bytes_total data bytes through a server address\n# TYPE stagefs_address_bytes_total counter\n"
			"# HELP stagefs_address_resent_total requests moved from a server address to another connection\n# TYPE stagefs_address_resent_total counter\n"
			"# HELP stagefs_address_connections_up connections to a server address that are up\n# TYPE stagefs_address_connections_up gauge\n");
		say_addrs(ctl, fd, fmt, label);
	} else {
#define X(f, kind, help) say(fd, "%-20s %llu\n", #f, (unsigned long long)st.f);
		STAT_FIELDS(X)
#undef X
		for (k = 0; k < BE_CALL_NR; k++)
			say(fd, "be_%-17s %llu\n", be_call_names[k],
			    (unsigned long long)calls[k]);
		for (k = 0; k < (int)NFUSE_OPS; k++)
			say(fd, "fuse_%-15s %llu\n", fuse_ops[k].name,
			    fuse_op_count(ctl->s, (unsigned int)k));
		say_hist_text(fd, "backend_read_us", "chunk fetches",
			      st.be_read_us);
		say_hist_text(fd, "backend_write_us", "chunk uploads",
			      st.be_write_us);
		say_addrs(ctl, fd, fmt, NULL);
	}
	(void)sep;
}

/* "address     HOST: up, 2 of 2 connections" per server address. */
static void say_addr_states(int fd, struct be *be)
{
	struct be_addr_stat a[16];
	unsigned int n, i;

	if (!be->ops->addrs)
		return;
	n = be->ops->addrs(be, a, 16);
	for (i = 0; i < n && i < 16; i++) {
		if (a[i].up)
			say(fd, "address     %s: up, %u of %u connections\n",
			    a[i].addr, a[i].up, a[i].conns);
		else if (a[i].down_since_ms)
			say(fd, "address     %s: not answering for %.1f s (%s), %u connections retrying\n",
			    a[i].addr,
			    (double)(be_now_ms() - a[i].down_since_ms) / 1000,
			    a[i].last_error[0] ? a[i].last_error : "no reply",
			    a[i].conns);
		else
			say(fd, "address     %s: connecting, %u connections\n",
			    a[i].addr, a[i].conns);
	}
	if (n > 16)
		say(fd, "address     ... and %u more\n", n - 16);
}

static void cmd_status(struct ctl *ctl, int fd)
{
	const struct sfs_config *cfg = &ctl->s->cfg;
	const struct cache_config *cc = &cfg->cache;
	struct cache_stats st;
	int i;

	cache_get_stats(ctl->s->cache, &st);
	say(fd, "ok\n");
	say(fd, "stagefs %s, pid %d\nmountpoint  %s\n", STAGEFS_VERSION,
	    (int)getpid(), cfg->mountpoint);
	for (i = 0; i < ctl->s->nbe; i++)
		say(fd, "junction    %s -> %s (%s)\n",
		    ctl->s->junctions ? ctl->s->junctions[i].path : "/",
		    ctl->s->bes[i]->spec, ctl->s->bes[i]->ops->name);
	if (atomic_load(&ctl->s->ended))
		say(fd, "state       unmounted: uploading what is dirty, then exiting (gives up after 60 s without progress)\n");
	say(fd, "cache_dir   %s\n", cc->dir);
	say(fd, "options     cache_size=%llu chunk_size=%llu readahead=%llu dirty_max=%llu nconnect=%u writeback=%s flush_on_close=%s fsync=%s verify=%s cache_direct=%s kernel_readahead=%llu mem_files=%u\n",
	    (unsigned long long)cc->size, (unsigned long long)cc->chunk_size,
	    (unsigned long long)cc->readahead,
	    (unsigned long long)cc->dirty_max, cfg->nconnect,
	    cc->writeback ? "on" : "off",
	    cc->close_mode == CACHE_CLOSE_SYNC ? "sync" : "async",
	    cc->fsync_mode == CACHE_FSYNC_BACKEND ? "backend" : "local",
	    cc->verify ? "on" : "off",
	    cc->direct == CACHE_DIRECT_ON ? "on" :
	    cc->direct == CACHE_DIRECT_FILLS ? "fills" : "off",
	    (unsigned long long)cfg->kernel_readahead,
	    cc->mem_files ? cc->mem_files : CACHE_MEM_FILES);
	say(fd, "o_direct    %s\n",
	    ctl->s->pt.dio_mmap ? "uncached, and may be mmap()ed" :
				  "uncached; mmap() of such an open fails with ENODEV (the kernel lacks FUSE_DIRECT_IO_ALLOW_MMAP, Linux 6.6+)");
	say(fd, "passthrough %s\n",
	    ctl->s->pt.enabled ? "on: the kernel reads and writes cached files itself" :
	    cfg->passthrough == SFS_PT_OFF ? "off" :
					     "off: the kernel does not offer it");
	say(fd, "killpriv    %s\n",
	    ctl->s->pt.killpriv ? "on: the daemon clears set-id bits after a write" :
	    !cfg->killpriv ? "off: the kernel clears set-id bits itself" :
			     "off: the kernel does not offer FUSE_HANDLE_KILLPRIV_V2 (Linux 5.11+); it clears set-id bits itself");
	say(fd, "cache_used  %llu bytes in %llu files\n",
	    (unsigned long long)st.cache_used_bytes,
	    (unsigned long long)st.files);
	say(fd, "dirty       %llu bytes, %llu chunks queued for upload\n",
	    (unsigned long long)st.dirty_bytes,
	    (unsigned long long)st.flush_queue);
	say(fd, "backend     %s (%llu upload retries, %llu upload errors)\n",
	    st.flush_retries ? "has had errors" : "healthy",
	    (unsigned long long)st.flush_retries,
	    (unsigned long long)st.flush_errors);
	say(fd, "outages     %s, outage_wait=%gs, offline=%s\n",
	    cfg->soft ? "soft" : "hard", cfg->outage_wait,
	    cfg->offline_serve ? "serve" : "wait");
	for (i = 0; i < ctl->s->nbe; i++) {
		struct be *be = ctl->s->bes[i];
		uint64_t since = be->ops->unreachable_since ?
					 be->ops->unreachable_since(be) : 0;

		if (since)
			say(fd, "unreachable %s: no answer for %.1f s\n",
			    be->spec, (double)(be_now_ms() - since) / 1000);
		say_addr_states(fd, be);
	}
}

/*
 * The cache_file of st_ino (the kernel knows the inode): in memory, or
 * loaded from the cache dir if cold and it is on the cold list (a flush
 * does not look there: such files have nothing dirty), or made if create.
 */
static int file_of(struct ctl *ctl, const char *arg, bool create, bool cold,
		   struct cache_file **out)
{
	struct sfs *s = ctl->s;
	struct sfs_inode *ino;
	struct be_attr a;
	char *end;
	unsigned long long stino = strtoull(arg ? arg : "", &end, 10);
	int be_idx = (int)(stino >> 56), rc;

	if (!arg || *end || be_idx >= s->nbe)
		return -EINVAL;
	if (cache_file_lookup(s->cache, be_idx, stino & ((1ULL << 56) - 1),
			      out) == 0)
		return 0;
	ino = inode_find(s, be_idx, be_idx ? stino ^ ((uint64_t)be_idx << 56) :
						 stino, NULL);
	if (!ino)
		return -ENOENT;
	if (!create && !(cold && cache_file_cold(s->cache, be_idx, ino->node))) {
		inode_forget(s, ino, 1);
		return -ENOENT;
	}
	rc = ino_be(s, ino)->ops->getattr(ino_be(s, ino), NULL, ino->node, &a);
	if (rc == 0)
		rc = cache_file_get(s->cache, be_idx, ino->node, &a, out);
	inode_forget(s, ino, 1);
	return rc;
}

static void cmd_file(struct ctl *ctl, int fd, const char *cmd,
		     const char *arg)
{
	struct cache_file *f = NULL;
	bool create = !strcmp(cmd, "prefetch") || !strcmp(cmd, "pin");
	int rc = file_of(ctl, arg, create, strcmp(cmd, "flush") != 0, &f);

	if (rc == -ENOENT && !create) {
		say(fd, "ok\nnot cached\n");	/* nothing to flush or evict */
		return;
	}
	if (rc < 0) {
		say(fd, "error: %s: %s\n", cmd, strerror(-rc));
		return;
	}
	if (!strcmp(cmd, "flush"))
		rc = cache_file_flush(f);
	else if (!strcmp(cmd, "evict"))
		rc = cache_file_evict(f);
	else if (!strcmp(cmd, "prefetch"))
		rc = cache_file_prefetch(f, NULL);	/* root asked */
	else
		cache_file_pin(f, !strcmp(cmd, "pin"));
	cache_file_put(f);
	if (rc < 0)
		say(fd, "error: %s: %s\n", cmd, strerror(-rc));
	else
		say(fd, "ok\n");
}

/* What a scrub watches: its client's socket and the daemon's stop. */
struct scrub_watch {
	int fd;
	int stop_fd;
};

/* The client hung up (Ctrl-C) or the daemon stops: end the scrub. */
static bool scrub_should_stop(void *arg)
{
	const struct scrub_watch *w = arg;
	struct pollfd p[2] = { { .fd = w->fd, .events = POLLRDHUP },
			       { .fd = w->stop_fd, .events = POLLIN } };

	if (poll(p, 2, 0) <= 0)
		return false;
	return (p[0].revents & (POLLRDHUP | POLLHUP | POLLERR)) ||
	       (p[1].revents & POLLIN);
}

/* scrub [INO]: one file, or every file in the cache table. */
static void cmd_scrub(struct ctl *ctl, int fd, const char *arg)
{
	struct scrub_watch w = { .fd = fd, .stop_fd = ctl->stop_pipe[0] };
	struct cache_scrub sc = { .stop = scrub_should_stop, .arg = &w };
	struct cache_file *f = NULL;
	int rc;

	if (arg && *arg) {
		rc = file_of(ctl, arg, false, true, &f);
		if (rc == -ENOENT) {
			say(fd, "ok\nnot cached\n");
			return;
		}
		if (rc == 0) {
			rc = cache_file_scrub(f, &sc);
			cache_file_put(f);
		}
	} else {
		rc = cache_scrub_all(ctl->s->cache, &sc);
	}
	if (rc < 0)
		say(fd, "error: scrub: %s\n", strerror(-rc));
	else
		say(fd, "ok\n%llu %llu %llu %llu %llu\n",
		    (unsigned long long)sc.checked, (unsigned long long)sc.bad,
		    (unsigned long long)sc.refetched,
		    (unsigned long long)sc.bytes,
		    (unsigned long long)sc.skipped);
}

static void *conn_main(void *arg)
{
	struct ctl_conn *c = arg;
	struct ctl *ctl = c->ctl;
	char line[512], *cmd, *rest;
	size_t len = 0;
	ssize_t n;

	pthread_setname_np(pthread_self(), "sfs-ctlconn");
	/* One line, however the client's writes split it. */
	while (len < sizeof(line) - 1 && !memchr(line, '\n', len)) {
		n = read(c->fd, line + len, sizeof(line) - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	if (!len)
		goto out;
	line[len] = '\0';
	line[strcspn(line, "\r\n")] = '\0';
	cmd = strtok_r(line, " ", &rest);
	if (!cmd) {
		say(c->fd, "error: empty command\n");
	} else if (!strcmp(cmd, "status")) {
		cmd_status(ctl, c->fd);
	} else if (!strcmp(cmd, "stats")) {
		cmd_stats(ctl, c->fd, rest && *rest ? rest : "text");
	} else if (strcmp(cmd, "flush") && strcmp(cmd, "evict") &&
		   strcmp(cmd, "pin") && strcmp(cmd, "unpin") &&
		   strcmp(cmd, "prefetch") && strcmp(cmd, "scrub")) {
		say(c->fd, "error: unknown command '%.64s'\n", cmd);
	} else if (c->uid != 0) {
		say(c->fd, "error: permission denied: only root may %s\n",
		    cmd);
	} else if (!strcmp(cmd, "flush") && !(rest && *rest)) {
		int rc = cache_flush_all(ctl->s->cache);

		if (rc < 0)
			say(c->fd, "error: flush: %s\n", strerror(-rc));
		else
			say(c->fd, "ok\n");
	} else if (!strcmp(cmd, "scrub")) {
		cmd_scrub(ctl, c->fd, rest);
	} else {
		cmd_file(ctl, c->fd, cmd, rest);
	}
out:
	close(c->fd);
	free(c);
	pthread_mutex_lock(&ctl->lock);
	ctl->active--;
	pthread_cond_broadcast(&ctl->cond);
	pthread_mutex_unlock(&ctl->lock);
	return NULL;
}

static void *ctl_main(void *arg)
{
	struct ctl *ctl = arg;

	pthread_setname_np(pthread_self(), "sfs-ctl");
	for (;;) {
		struct pollfd pfd[2] = { { .fd = ctl->lfd, .events = POLLIN },
					 { .fd = ctl->stop_pipe[0],
					   .events = POLLIN } };
		struct ctl_conn *c;
		struct ucred cred;
		socklen_t len = sizeof(cred);
		pthread_t t;
		int fd;

		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfd[1].revents)
			break;
		fd = accept4(ctl->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		c = calloc(1, sizeof(*c));
		if (!c || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred,
				     &len) < 0) {
			free(c);
			close(fd);
			continue;
		}
		c->ctl = ctl;
		c->fd = fd;
		c->uid = cred.uid;
		pthread_mutex_lock(&ctl->lock);
		if (ctl->active >= CTL_MAX_CONN) {
			pthread_mutex_unlock(&ctl->lock);
			say(fd, "error: busy: %d requests in progress\n",
			    CTL_MAX_CONN);
			close(fd);
			free(c);
			continue;
		}
		ctl->active++;
		pthread_mutex_unlock(&ctl->lock);
		if (pthread_create(&t, NULL, conn_main, c) == 0) {
			pthread_detach(t);
		} else {
			close(fd);
			free(c);
			pthread_mutex_lock(&ctl->lock);
			ctl->active--;
			pthread_mutex_unlock(&ctl->lock);
		}
	}
	return NULL;
}

int ctl_start(struct sfs *s, struct ctl **out, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct ctl *ctl = calloc(1, sizeof(*ctl));
	int rc;

	if (!ctl) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	ctl->s = s;
	ctl->stop_pipe[0] = ctl->stop_pipe[1] = -1;
	pthread_mutex_init(&ctl->lock, NULL);
	pthread_cond_init(&ctl->cond, NULL);
	if (s->cfg.ctl_socket)
		snprintf(ctl->path, sizeof(ctl->path), "%s", s->cfg.ctl_socket);
	else
		ctl_default_path(s->cfg.mountpoint, ctl->path,
				 sizeof(ctl->path));
	mkdir(CTL_DIR, 0755);
	ctl->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (ctl->lfd < 0)
		goto out_err;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", ctl->path);
	/* A socket left by a daemon that died: nobody answers on it. */
	if (connect(ctl->lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		snprintf(err, errlen,
			 "control socket %s: another stagefs serves this mountpoint",
			 ctl->path);
		rc = -EBUSY;
		goto out_close;
	}
	unlink(ctl->path);
	if (bind(ctl->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    chmod(ctl->path, 0666) < 0 || listen(ctl->lfd, 16) < 0 ||
	    pipe2(ctl->stop_pipe, O_CLOEXEC) < 0)
		goto out_err;
	if (pthread_create(&ctl->thread, NULL, ctl_main, ctl)) {
		errno = EAGAIN;
		goto out_err;
	}
	/* stagefsctl CACHE_DIR finds the daemon also once it is unmounted */
	snprintf(ctl->link, sizeof(ctl->link), "%s/" CTL_CACHE_LINK,
		 s->cfg.cache.dir);
	unlink(ctl->link);
	if (symlink(ctl->path, ctl->link) < 0)
		log_msg(LOG_LVL_WARN, "ctl", "cannot link %s to %s: %s",
			ctl->link, ctl->path, strerror(errno));
	*out = ctl;
	return 0;
out_err:
	rc = -errno;
	snprintf(err, errlen, "control socket %s: %s", ctl->path,
		 strerror(errno));
out_close:
	if (ctl->lfd >= 0)
		close(ctl->lfd);
	if (ctl->stop_pipe[0] >= 0) {
		close(ctl->stop_pipe[0]);
		close(ctl->stop_pipe[1]);
	}
	free(ctl);
	return rc;
}

void ctl_stop(struct ctl *ctl)
{
	char b = 0;

	if (!ctl)
		return;
	if (write(ctl->stop_pipe[1], &b, 1) != 1)
		log_msg(LOG_LVL_WARN, "ctl", "cannot stop the control thread");
	pthread_join(ctl->thread, NULL);
	close(ctl->lfd);
	unlink(ctl->path);
	unlink(ctl->link);
	pthread_mutex_lock(&ctl->lock);
	while (ctl->active)
		pthread_cond_wait(&ctl->cond, &ctl->lock);
	pthread_mutex_unlock(&ctl->lock);
	close(ctl->stop_pipe[0]);
	close(ctl->stop_pipe[1]);
	free(ctl);
}
