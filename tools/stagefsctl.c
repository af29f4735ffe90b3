// SPDX-License-Identifier: GPL-2.0
/*
 * stagefsctl - ask a running stagefs daemon for its status and counters,
 * and tell it to flush, evict, prefetch, pin, unpin or scrub files.
 *
 * It speaks the control protocol of fs/ctl.h: one connection per command,
 * "COMMAND [ARG]\n" out, "ok\n" + payload or "error: ...\n" back.  Paths
 * given on the command line are resolved here, inside the mount; the
 * daemon only ever sees st_ino numbers.  While it asks for a file, the
 * tool holds an O_PATH descriptor of it so that the kernel keeps the
 * inode, which the daemon needs to know to make a cache file of it.
 *
 * Thread safety: single threaded, except that flush, prefetch and scrub run a
 * progress thread which polls "stats json" on connections of its own
 * while the main thread blocks on the command; the two share struct
 * progress as its comments say.  The only globals are the SIGINT flag and
 * the nftw() result list (nftw has no cookie), both used by main only.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE	/* O_PATH, nftw's FTW_PHYS, asprintf */
#endif
#include "ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define PROG "stagefsctl"
#define EXIT_USAGE 2
#define EXIT_INTR 130
#define BAR_WIDTH 20
#define RATE_WINDOW 8		/* progress samples the rate is taken over */
#define MAX_ANSWER (16u << 20)	/* more than any answer the daemon gives */
#define ERR_MAX (2 * PATH_MAX + 512)	/* room for the paths in a message */

static volatile sig_atomic_t interrupted;

/* The stagefs mount that the command line names. */
struct mount {
	char path[PATH_MAX];	/* real path of the mountpoint */
	dev_t dev;		/* st_dev of the files in it */
	char sock[sizeof(((struct sockaddr_un *)0)->sun_path)];
	bool unmounted;		/* its daemon still runs (draining) */
};

/* Options and arguments of a command. */
struct args {
	const char *fmt;	/* stats: "text", "json" or "prometheus" */
	const char *output;	/* stats --output */
	double interval;	/* top --interval, seconds */
	unsigned long count;	/* top --count, 0 = forever */
	const char *path;	/* flush, evict, prefetch, pin, unpin, scrub */
};

struct command {
	const char *name;
	const char *synopsis;
	const char *summary;	/* for the list in --help */
	const char *help;
	const char *opts;	/* the getopt letters it takes */
	int min_args, max_args;	/* positional arguments */
	bool mutates;		/* takes PATH and needs root */
};

static const struct command commands[] = {
	{ "status", "status",
	  "versions, backends, options, health",
	  "Show the daemon's version, backends, options, cache use and health.\n",
	  "", 0, 0, false },
	{ "stats", "stats [--json|--prometheus] [--output FILE]",
	  "print the counters",
	  "Print the daemon's counters: as text (default), as one JSON object\n"
	  "(--json) or in the Prometheus text format (--prometheus).\n"
	  "--output FILE writes FILE.tmp and renames it to FILE, as the\n"
	  "node_exporter textfile collector wants.\n",
	  "jpo:", 0, 0, false },
	{ "top", "top [--interval SECS] [--count N]",
	  "watch throughput, hit ratio, cache use",
	  "Show, every SECS seconds (default 1), the read, write and flush\n"
	  "throughput, the hit ratio, dirty data, cache use and error counts.\n"
	  "--count N stops after N frames; Ctrl-C stops too.\n",
	  "i:n:", 0, 0, false },
	{ "flush", "flush [PATH]",
	  "upload dirty data: all, or under PATH",
	  "Upload dirty data to the backend: all of it, or that of the file\n"
	  "PATH, or of every file under the directory PATH.  Shows progress\n"
	  "on a terminal.  Needs root.\n",
	  "", 0, 1, true },
	{ "evict", "evict PATH",
	  "drop clean cached data under PATH",
	  "Drop the clean cached data of the file PATH, or of every file\n"
	  "under the directory PATH.  Needs root.\n",
	  "", 1, 1, true },
	{ "prefetch", "prefetch PATH",
	  "fetch PATH into the cache",
	  "Fetch the file PATH, or every file under the directory PATH, into\n"
	  "the cache.  Shows progress on a terminal.  Needs root.\n",
	  "", 1, 1, true },
	{ "pin", "pin PATH",
	  "keep PATH in the cache",
	  "Keep the file PATH, or every file under the directory PATH, in the\n"
	  "cache: eviction passes it over.  Needs root.\n",
	  "", 1, 1, true },
	{ "unpin", "unpin PATH",
	  "let PATH be evicted again",
	  "Let the file PATH, or every file under the directory PATH, be\n"
	  "evicted again.  Needs root.\n",
	  "", 1, 1, true },
	{ "scrub", "scrub [PATH]",
	  "check cached data against its checksums",
	  "Read the cached blocks back from the cache device and check them\n"
	  "against their checksums: those of every file the daemon has opened\n"
	  "since it started (not files cached by an earlier run and not\n"
	  "opened since), or of the file PATH, or of every file under the\n"
	  "directory PATH.  A bad clean block is fetched\n"
	  "again from the backend; a bad dirty block is left (reads of it get\n"
	  "EIO, and it is not uploaded).  Each bad block counts in\n"
	  "checksum_errors and is logged by the daemon.  This is the check\n"
	  "that covers passthrough reads, which verify=on does not see.  Files\n"
	  "a passthrough writer has open are skipped.  Shows progress on a\n"
	  "terminal and ends with a summary line.  Exit status 1 if a bad\n"
	  "block is left (dirty, or the backend could not be read).  Ctrl-C\n"
	  "stops it at the next chunk.  Needs root.\n",
	  "", 0, 1, true },
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void msg(const char *fmt, ...)
{
	va_list ap;

	fputs(PROG ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void usage(FILE *f)
{
	size_t i;

	fprintf(f,
		"Usage: " PROG " [--socket PATH] MOUNTPOINT COMMAND [ARGS]\n"
		"\n"
		"Talk to the stagefs daemon that serves MOUNTPOINT.  Once it is\n"
		"unmounted, while its daemon still uploads, MOUNTPOINT or the\n"
		"daemon's cache dir reach it for status and stats.\n"
		"\n"
		"Commands:\n");
	for (i = 0; i < NCOMMANDS; i++)
		fprintf(f, strlen(commands[i].synopsis) > 32 ?
			"  %s\n%36s%s\n" : "  %-32s  %s%s\n",
			commands[i].synopsis, "", commands[i].summary);
	fprintf(f,
		"\n"
		"PATH is a file, or a directory taken with everything under it,\n"
		"inside MOUNTPOINT.  Anyone may ask for status, stats and top;\n"
		"flush, evict, prefetch, pin, unpin and scrub need root.\n"
		"\n"
		"Options:\n"
		"  -s, --socket PATH  the daemon's control socket (default:\n"
		"                     " CTL_DIR "/<hash of MOUNTPOINT>.sock)\n"
		"  -h, --help         show this, or a command's help after COMMAND\n"
		"\n"
		"Exit status: 0 on success, 1 on errors, 2 on bad usage.\n");
}

static void command_usage(const struct command *c)
{
	printf("Usage: " PROG " [--socket PATH] MOUNTPOINT %s\n\n%s",
	       c->synopsis, c->help);
}

/* ------------------------------------------------------------------ */
/* Talking to the daemon */

enum req_rc {
	REQ_OK,		/* the daemon said ok; payload returned */
	REQ_ERROR,	/* the daemon said "error: ..."; err holds the ... */
	REQ_FAIL,	/* no answer: cannot connect, connection lost, ... */
	REQ_LOCAL,	/* a file could not be asked about (send_file) */
	REQ_INTR,	/* interrupted by SIGINT or SIGTERM */
};

static int send_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR && !interrupted)
			continue;
		if (n < 0)
			return -errno;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Send cmd, read the whole answer.  On REQ_OK *payload is a malloc'd
 * string (the answer after "ok\n") for the caller to free; otherwise it is
 * NULL and err says what went wrong.
 */
static int request(const struct mount *m, const char *cmd, char **payload,
		   char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char line[256], *buf = NULL, *nbuf;
	size_t len = 0, cap = 0;
	int fd, rc, n;

	*payload = NULL;
	n = snprintf(line, sizeof(line), "%s\n", cmd);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", m->sock);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return REQ_FAIL;
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		rc = errno == EINTR && interrupted ? REQ_INTR : REQ_FAIL;
		snprintf(err, errlen,
			 "cannot reach the stagefs daemon of %s (socket %s): %s",
			 m->path, m->sock, strerror(errno));
		goto out;
	}
	rc = send_all(fd, line, (size_t)n);
	if (rc < 0) {
		rc = interrupted ? REQ_INTR : REQ_FAIL;
		snprintf(err, errlen, "cannot talk to the stagefs daemon of %s: %s",
			 m->path, strerror(errno));
		goto out;
	}
	for (;;) {
		ssize_t r;

		if (cap - len < 4096) {
			if (cap >= MAX_ANSWER) {
				snprintf(err, errlen,
					 "the stagefs daemon of %s answers too much",
					 m->path);
				rc = REQ_FAIL;
				goto out;
			}
			cap = cap ? cap * 2 : 8192;
			nbuf = realloc(buf, cap);
			if (!nbuf) {
				snprintf(err, errlen, "out of memory");
				rc = REQ_FAIL;
				goto out;
			}
			buf = nbuf;
		}
		r = read(fd, buf + len, cap - len - 1);
		if (r < 0 && errno == EINTR) {
			if (interrupted) {
				rc = REQ_INTR;
				goto out;
			}
			continue;
		}
		if (r < 0) {
			snprintf(err, errlen,
				 "lost the connection to the stagefs daemon of %s: %s",
				 m->path, strerror(errno));
			rc = REQ_FAIL;
			goto out;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	buf[len] = '\0';
	if (!strncmp(buf, "ok\n", 3)) {
		memmove(buf, buf + 3, len - 3 + 1);
		*payload = buf;
		buf = NULL;
		rc = REQ_OK;
	} else if (!strncmp(buf, "error: ", 7)) {
		buf[strcspn(buf, "\n")] = '\0';
		snprintf(err, errlen, "%s", buf + 7);
		rc = REQ_ERROR;
	} else if (len == 0) {
		snprintf(err, errlen,
			 "the stagefs daemon of %s closed the connection without answering",
			 m->path);
		rc = REQ_FAIL;
	} else {
		buf[strcspn(buf, "\n")] = '\0';
		snprintf(err, errlen,
			 "unexpected answer from the stagefs daemon of %s: %.60s",
			 m->path, buf);
		rc = REQ_FAIL;
	}
out:
	close(fd);
	free(buf);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Counters from "stats json" */

enum stat_key {
	K_READ_CACHE, K_READ_BACKEND, K_WRITTEN, K_FLUSHED, K_DIRTY, K_USED,
	K_QUEUE, K_FILES, K_CSUM_ERRORS, K_FLUSH_ERRORS, K_RETRIES,
	K_CACHE_SIZE, K_DIRTY_MAX, K_SCRUBBED, K_REWRITES, K_NKEYS
};

static const char *const key_names[K_NKEYS] = {
	[K_READ_CACHE] = "bytes_read_cache",
	[K_READ_BACKEND] = "bytes_read_backend",
	[K_WRITTEN] = "bytes_written",
	[K_FLUSHED] = "bytes_flushed",
	[K_DIRTY] = "dirty_bytes",
	[K_USED] = "cache_used_bytes",
	[K_QUEUE] = "flush_queue",
	[K_FILES] = "files",
	[K_CSUM_ERRORS] = "checksum_errors",
	[K_FLUSH_ERRORS] = "flush_errors",
	[K_RETRIES] = "flush_retries",
	[K_CACHE_SIZE] = "cache_size",
	[K_DIRTY_MAX] = "dirty_max",
	[K_SCRUBBED] = "bytes_scrubbed",
	[K_REWRITES] = "flush_rewrites",
};

struct sample {
	uint64_t v[K_NKEYS];
	bool have[K_NKEYS];	/* the daemon sent the key */
	double t;		/* CLOCK_MONOTONIC seconds */
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Starts with '{', braces and brackets balance outside strings, nothing
 * but white space after the end.  Enough to catch a truncated answer. */
static bool json_looks_valid(const char *s)
{
	bool in_str = false;
	int depth = 0;

	s += strspn(s, " \t\r\n");
	if (*s != '{')
		return false;
	for (; *s; s++) {
		if (in_str) {
			if (*s == '\\' && s[1])
				s++;
			else if (*s == '"')
				in_str = false;
		} else if (*s == '"') {
			in_str = true;
		} else if (*s == '{' || *s == '[') {
			depth++;
		} else if (*s == '}' || *s == ']') {
			if (--depth == 0) {
				s++;
				break;
			}
		}
	}
	if (in_str || depth)
		return false;
	s += strspn(s, " \t\r\n");
	return *s == '\0';
}

/* The number of "key": in the daemon's flat JSON object. */
static int json_u64(const char *js, const char *key, uint64_t *v)
{
	size_t klen = strlen(key);
	const char *p = js;
	char *end;

	while ((p = strchr(p, '"'))) {
		const char *q = p + 1;

		if (strncmp(q, key, klen) || q[klen] != '"') {
			p = q;
			continue;
		}
		q += klen + 1;
		q += strspn(q, " \t\r\n");
		if (*q != ':') {
			p = q;
			continue;
		}
		q++;
		q += strspn(q, " \t\r\n");
		if (*q < '0' || *q > '9')
			return -EINVAL;
		errno = 0;
		*v = strtoull(q, &end, 10);
		return errno ? -errno : 0;
	}
	return -ENOENT;
}

static int get_sample(const struct mount *m, struct sample *s, char *err,
		      size_t errlen)
{
	char *js;
	int rc, k;

	rc = request(m, "stats json", &js, err, errlen);
	if (rc != REQ_OK)
		return rc;
	if (!json_looks_valid(js)) {
		snprintf(err, errlen,
			 "the stagefs daemon of %s sent malformed JSON", m->path);
		free(js);
		return REQ_FAIL;
	}
	memset(s, 0, sizeof(*s));
	s->t = now();
	for (k = 0; k < K_NKEYS; k++)
		s->have[k] = json_u64(js, key_names[k], &s->v[k]) == 0;
	free(js);
	return REQ_OK;
}

/* How much counter k grew from a to b; a restarted daemon counts from 0. */
static uint64_t delta(const struct sample *a, const struct sample *b, int k)
{
	return b->v[k] >= a->v[k] ? b->v[k] - a->v[k] : b->v[k];
}

/* ------------------------------------------------------------------ */
/* Formatting */

static const char *fmt_bytes(char *buf, size_t len, uint64_t b)
{
	static const char *const unit[] = { "KiB", "MiB", "GiB", "TiB",
					    "PiB", "EiB" };
	double v = (double)b / 1024;
	int i = 0;

	if (b < 1024) {
		snprintf(buf, len, "%llu B", (unsigned long long)b);
		return buf;
	}
	while (v >= 1024 && i < 5) {
		v /= 1024;
		i++;
	}
	snprintf(buf, len, v < 100 ? "%.1f %s" : "%.0f %s", v, unit[i]);
	return buf;
}

static const char *fmt_rate(char *buf, size_t len, double bytes_per_s)
{
	double mb = bytes_per_s / 1e6;

	snprintf(buf, len, mb >= 100 ? "%.0f MB/s" : "%.1f MB/s", mb);
	return buf;
}

static const char *fmt_secs(char *buf, size_t len, double s)
{
	unsigned long n = (unsigned long)(s + 0.5);

	if (s < 10)
		snprintf(buf, len, "%.1fs", s);
	else if (n < 60)
		snprintf(buf, len, "%lus", n);
	else if (n < 3600)
		snprintf(buf, len, "%lum%02lus", n / 60, n % 60);
	else
		snprintf(buf, len, "%luh%02lum", n / 3600, n / 60 % 60);
	return buf;
}

static const char *fmt_u64(char *buf, size_t len, const struct sample *s,
			   int k)
{
	if (s->have[k])
		snprintf(buf, len, "%llu", (unsigned long long)s->v[k]);
	else
		snprintf(buf, len, "-");
	return buf;
}

static void fmt_bar(char *bar, double frac)
{
	int i, full;

	if (frac < 0)
		frac = 0;
	if (frac > 1)
		frac = 1;
	full = (int)(frac * BAR_WIDTH + 0.5);
	for (i = 0; i < BAR_WIDTH; i++)
		bar[i] = i < full ? '#' : '.';
	bar[BAR_WIDTH] = '\0';
}

/* ------------------------------------------------------------------ */
/* Progress of flush, prefetch and scrub */

enum pmode { P_FLUSH, P_PREFETCH, P_SCRUB };

/* Per mode: the counter that grows, and the words of the line. */
static const struct {
	int key;
	const char *doing, *did;
} pmodes[] = {
	[P_FLUSH] = { K_FLUSHED, "flushing", "flushed " },
	[P_PREFETCH] = { K_READ_BACKEND, "prefetching", "prefetched " },
	[P_SCRUB] = { K_SCRUBBED, "scrubbing", "scrubbed " },
};

struct progress {
	const struct mount *m;
	enum pmode mode;
	bool by_files;		/* a list of files: the line counts them, and
				 * the goal is their size; else the goal is
				 * total */
	bool tty;		/* stderr is a terminal: draw */
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;		/* protected by lock */
	size_t files_done;	/* protected by lock */
	size_t files_total;	/* set before the thread starts */
	uint64_t size_total;	/* by_files: bytes in the files; ditto */
	struct sample start;	/* ditto */
	/* The rest belongs to the thread, and to main once it is joined. */
	uint64_t total;		/* flush: bytes to upload; scrub of the
				 * whole cache: cache_used_bytes */
	uint64_t bytes;		/* uploaded, fetched or checked since start */
	double rate;		/* bytes/s over the last RATE_WINDOW samples */
	double win_t[RATE_WINDOW];
	uint64_t win_bytes[RATE_WINDOW];
	unsigned int nsamples;
	bool drawn;		/* a line is on the terminal; protected by
				 * lock while the thread runs */
};

static void progress_update(struct progress *p, const struct sample *cur)
{
	uint64_t bytes = delta(&p->start, cur, pmodes[p->mode].key);
	unsigned int slot = p->nsamples % RATE_WINDOW, old;
	double dt;

	/* Uploads finish a chunk at a time: smooth over a few seconds. */
	p->win_t[slot] = cur->t;
	p->win_bytes[slot] = bytes;
	p->nsamples++;
	old = p->nsamples > RATE_WINDOW ? p->nsamples % RATE_WINDOW : 0;
	dt = cur->t - p->win_t[old];
	if (dt > 0.1 && bytes >= p->win_bytes[old])
		p->rate = (double)(bytes - p->win_bytes[old]) / dt;
	p->bytes = bytes;
	if (p->mode == P_FLUSH && bytes + cur->v[K_DIRTY] > p->total)
		p->total = bytes + cur->v[K_DIRTY];
}

static void progress_draw(struct progress *p, size_t files_done, bool final)
{
	char bar[BAR_WIDTH + 1], done[32], total[32], rate[32], secs[32];
	double elapsed = now() - p->start.t, frac, left;
	uint64_t goal = p->by_files ? p->size_total : p->total;

	if (!p->by_files) {
		frac = goal ? (double)p->bytes / (double)goal : 1;
	} else {
		double ff = p->files_total ?
			(double)files_done / (double)p->files_total : 1;

		frac = goal ? (double)p->bytes / (double)goal : 0;
		if (ff > frac)
			frac = ff;
	}
	fmt_bar(bar, frac);
	fmt_bytes(done, sizeof(done), p->bytes);
	fmt_bytes(total, sizeof(total), goal);
	if (final) {
		fmt_rate(rate, sizeof(rate),
			 elapsed > 0 ? (double)p->bytes / elapsed : 0);
		snprintf(secs, sizeof(secs), "in ");
		fmt_secs(secs + 3, sizeof(secs) - 3, elapsed);
	} else {
		fmt_rate(rate, sizeof(rate), p->rate);
		left = goal > p->bytes ? (double)(goal - p->bytes) : 0;
		snprintf(secs, sizeof(secs), "ETA ");
		if (left == 0)
			snprintf(secs + 4, sizeof(secs) - 4, "0s");
		else if (p->rate < 1)
			snprintf(secs + 4, sizeof(secs) - 4, "-");
		else
			fmt_secs(secs + 4, sizeof(secs) - 4, left / p->rate);
	}
	if (!p->by_files)
		fprintf(stderr, "\r%s [%s]  %s / %s  %s  %s\033[K%s",
			final ? pmodes[p->mode].did : pmodes[p->mode].doing,
			bar, done, total, rate, secs, final ? "\n" : "");
	else
		fprintf(stderr,
			"\r%s [%s]  %zu/%zu files  %s / %s  %s  %s\033[K%s",
			final ? pmodes[p->mode].did : pmodes[p->mode].doing,
			bar, files_done, p->files_total, done, total, rate,
			secs, final ? "\n" : "");
	fflush(stderr);
	p->drawn = !final;
}

static void *progress_main(void *arg)
{
	struct progress *p = arg;
	struct sample cur;
	char err[ERR_MAX];

	pthread_mutex_lock(&p->lock);
	while (!p->done) {
		struct timespec ts;
		bool ok;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += 500000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		while (!p->done &&
		       pthread_cond_timedwait(&p->cond, &p->lock, &ts) == 0)
			;
		if (p->done)
			break;
		pthread_mutex_unlock(&p->lock);
		/* A missed sample only delays the line; the command reports. */
		ok = get_sample(p->m, &cur, err, sizeof(err)) == REQ_OK;
		pthread_mutex_lock(&p->lock);
		if (ok && !p->done) {
			progress_update(p, &cur);
			if (p->tty)
				progress_draw(p, p->files_done, false);
		}
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* Take the starting sample and start the thread; -1 if the daemon is
 * not there (the error is told). */
static int progress_start(struct progress *p, const struct mount *m,
			  enum pmode mode, bool by_files, size_t files_total,
			  uint64_t size_total)
{
	pthread_condattr_t ca;
	sigset_t block, old;
	char err[ERR_MAX];
	int rc;

	memset(p, 0, sizeof(*p));
	p->m = m;
	p->mode = mode;
	p->by_files = by_files;
	p->tty = isatty(STDERR_FILENO);
	p->files_total = files_total;
	p->size_total = size_total;
	rc = get_sample(m, &p->start, err, sizeof(err));
	if (rc != REQ_OK) {
		if (rc != REQ_INTR)
			msg("%s", err);
		return -1;
	}
	p->total = p->start.v[mode == P_FLUSH ? K_DIRTY : K_USED];
	p->win_t[0] = p->start.t;
	p->nsamples = 1;
	pthread_mutex_init(&p->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->cond, &ca);
	pthread_condattr_destroy(&ca);
	/* Signals go to main, whose blocking read they interrupt. */
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	rc = pthread_create(&p->thread, NULL, progress_main, p);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		msg("cannot start the progress thread: %s", strerror(rc));
		pthread_cond_destroy(&p->cond);
		pthread_mutex_destroy(&p->lock);
		return -1;
	}
	return 0;
}

static void progress_file_done(struct progress *p)
{
	pthread_mutex_lock(&p->lock);
	p->files_done++;
	pthread_mutex_unlock(&p->lock);
}

/* Tell of a failed file without garbling the progress line. */
static void progress_msg(struct progress *p, const char *path,
			 const char *err)
{
	pthread_mutex_lock(&p->lock);
	if (p->drawn) {
		fputc('\n', stderr);
		p->drawn = false;
	}
	msg("%s: %s", path, err);
	pthread_mutex_unlock(&p->lock);
}

/* Stop the thread; show the last line or summary if ok. */
static void progress_finish(struct progress *p, bool ok)
{
	char done[32], rate[32], secs[32], err[ERR_MAX];
	struct sample cur;
	double elapsed;

	pthread_mutex_lock(&p->lock);
	p->done = true;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
	pthread_join(p->thread, NULL);
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);

	if (!ok) {
		if (p->drawn)
			fputc('\n', stderr);
		return;
	}
	if (get_sample(p->m, &cur, err, sizeof(err)) == REQ_OK)
		progress_update(p, &cur);
	if (p->tty) {
		progress_draw(p, p->files_done, true);
		return;
	}
	elapsed = now() - p->start.t;
	fmt_bytes(done, sizeof(done), p->bytes);
	fmt_rate(rate, sizeof(rate),
		 elapsed > 0 ? (double)p->bytes / elapsed : 0);
	fmt_secs(secs, sizeof(secs), elapsed);
	if (!p->by_files)
		fprintf(stderr, "%s%s in %s (%s)\n", pmodes[p->mode].did, done,
			secs, rate);
	else
		fprintf(stderr, "%s%zu/%zu files, %s %s in %s (%s)\n",
			pmodes[p->mode].did, p->files_done, p->files_total,
			done, p->mode == P_PREFETCH ? "from the backend" :
						      "checked", secs, rate);
}

/* ------------------------------------------------------------------ */
/* Finding the mount and the files */

/* Undo the \ooo escapes of /proc/self/mountinfo, in place. */
static void unescape(char *s)
{
	char *d = s;

	while (*s) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' &&
		    s[2] >= '0' && s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
			*d++ = (char)(((s[1] - '0') << 6) | ((s[2] - '0') << 3) |
				      (s[3] - '0'));
			s += 4;
		} else {
			*d++ = *s++;
		}
	}
	*d = '\0';
}

/*
 * Fill m for the mountpoint arg, which must be where a stagefs is mounted
 * (the topmost mount there).  The root of the mount is not stat()ed: a
 * user the mount does not allow could not.
 */
static int find_mount(const char *arg, const char *sock, struct mount *m)
{
	char *real = realpath(arg, NULL), *line = NULL;
	bool found = false, stagefs = false;
	size_t cap = 0;
	FILE *f;
	int rc = -1;

	if (!real) {
		msg("%s is not a stagefs mount (%s)", arg, strerror(errno));
		return -1;
	}
	if (strlen(real) >= sizeof(m->path)) {
		msg("%s: path too long", arg);
		goto out;
	}
	strcpy(m->path, real);
	f = fopen("/proc/self/mountinfo", "re");
	if (!f) {
		msg("/proc/self/mountinfo: %s", strerror(errno));
		goto out;
	}
	while (getline(&line, &cap, f) > 0) {
		char *save = NULL, *tok[5], *t, *fstype;
		unsigned int maj, min;
		int i;

		line[strcspn(line, "\n")] = '\0';
		for (i = 0; i < 5; i++)
			tok[i] = strtok_r(i ? NULL : line, " ", &save);
		if (!tok[4])
			continue;
		while ((t = strtok_r(NULL, " ", &save)) && strcmp(t, "-"))
			;
		fstype = t ? strtok_r(NULL, " ", &save) : NULL;
		if (!fstype || sscanf(tok[2], "%u:%u", &maj, &min) != 2)
			continue;
		unescape(tok[4]);
		if (strcmp(tok[4], real))
			continue;
		/* Later lines are mounted over earlier ones: the last wins. */
		found = true;
		stagefs = !strcmp(fstype, "fuse.stagefs");
		m->dev = makedev(maj, min);
	}
	free(line);
	fclose(f);
	if (!found || !stagefs) {
		/*
		 * Unmounted, but its daemon may still be uploading what is
		 * dirty: its socket is named after this path.
		 */
		char path[sizeof(m->sock)], link[PATH_MAX + 16];
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		ssize_t n;
		int fd = -1;

		/* A cache dir names its daemon's socket. */
		snprintf(link, sizeof(link), "%s/" CTL_CACHE_LINK, m->path);
		if (sock)
			snprintf(path, sizeof(path), "%s", sock);
		else if ((n = readlink(link, path, sizeof(path) - 1)) > 0)
			path[n] = '\0';
		else
			ctl_default_path(m->path, path, sizeof(path));
		if (strlen(path) < sizeof(sa.sun_path)) {
			strcpy(sa.sun_path, path);
			fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		}
		if (fd >= 0 &&
		    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			close(fd);
			strcpy(m->sock, path);
			m->dev = 0;
			m->unmounted = true;
			rc = 0;
			goto out;
		}
		if (fd >= 0)
			close(fd);
		msg("%s is not a stagefs mount", arg);
		goto out;
	}
	if (sock) {
		if (strlen(sock) >= sizeof(m->sock)) {
			msg("%s: socket path too long", sock);
			goto out;
		}
		strcpy(m->sock, sock);
	} else {
		ctl_default_path(m->path, m->sock, sizeof(m->sock));
	}
	rc = 0;
out:
	free(real);
	return rc;
}

struct target {
	char *path;
	uint64_t size;
};

/* What nftw() found; nftw takes no cookie. */
static struct {
	struct target *v;
	size_t n, cap;
	dev_t dev;
	unsigned int errors;
} walk;

static int add_target(const char *path, uint64_t size)
{
	if (walk.n == walk.cap) {
		size_t cap = walk.cap ? walk.cap * 2 : 64;
		struct target *v = realloc(walk.v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		walk.v = v;
		walk.cap = cap;
	}
	walk.v[walk.n].path = strdup(path);
	if (!walk.v[walk.n].path)
		return -ENOMEM;
	walk.v[walk.n++].size = size;
	return 0;
}

static int walk_cb(const char *path, const struct stat *st, int type,
		   struct FTW *ftw)
{
	(void)ftw;
	if (interrupted)
		return 1;
	switch (type) {
	case FTW_F:
		if (S_ISREG(st->st_mode) && st->st_dev == walk.dev &&
		    add_target(path, (uint64_t)st->st_size) < 0) {
			msg("out of memory");
			return 1;
		}
		break;
	case FTW_DNR:
		msg("%s: cannot read the directory", path);
		walk.errors++;
		break;
	case FTW_NS:
		msg("%s: cannot stat", path);
		walk.errors++;
		break;
	}
	return 0;
}

static void free_targets(void)
{
	size_t i;

	for (i = 0; i < walk.n; i++)
		free(walk.v[i].path);
	free(walk.v);
	memset(&walk, 0, sizeof(walk));
}

/*
 * Resolve arg inside the mount into walk.v: the file itself, or every
 * regular file under the directory (*tree).  *whole is set when arg is
 * the mountpoint itself, which is not walked if root_is_all.  Returns -1
 * when told.
 */
static int collect(const struct mount *m, const char *arg, bool root_is_all,
		   bool *whole, bool *tree)
{
	size_t mlen = strlen(m->path);
	char *real = realpath(arg, NULL);
	struct stat st;
	int rc = -1;

	*whole = *tree = false;
	if (!real) {
		msg("%s: %s", arg, strerror(errno));
		return -1;
	}
	if (strcmp(m->path, "/") &&
	    (strncmp(real, m->path, mlen) ||
	     (real[mlen] != '\0' && real[mlen] != '/'))) {
		msg("%s is not inside the stagefs mount %s", arg, m->path);
		goto out;
	}
	if (stat(real, &st) < 0) {
		msg("%s: %s", arg, strerror(errno));
		goto out;
	}
	if (st.st_dev != m->dev) {
		msg("%s is on another file system, mounted inside %s", arg,
		    m->path);
		goto out;
	}
	*whole = !strcmp(real, m->path);
	*tree = S_ISDIR(st.st_mode);
	walk.dev = m->dev;
	if (*whole && root_is_all) {
		rc = 0;
		goto out;
	}
	if (S_ISREG(st.st_mode)) {
		if (add_target(real, (uint64_t)st.st_size) < 0) {
			msg("out of memory");
			goto out;
		}
	} else if (S_ISDIR(st.st_mode)) {
		if (nftw(real, walk_cb, 16, FTW_PHYS | FTW_MOUNT) < 0) {
			msg("%s: %s", arg, strerror(errno));
			goto out;
		}
		if (interrupted)
			goto out;
	} else {
		msg("%s is neither a regular file nor a directory", arg);
		goto out;
	}
	rc = 0;
out:
	free(real);
	return rc;
}

/*
 * Send "cmd INO" for the file at path.  The O_PATH descriptor keeps the
 * kernel's reference on the inode (so the daemon still knows it) and
 * gives the st_ino of what is there now.
 */
static int send_file(const struct mount *m, const char *cmd, const char *path,
		     char **payload, char *err, size_t errlen)
{
	char line[128];
	struct stat st;
	int fd, rc;

	*payload = NULL;
	fd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		snprintf(err, errlen, "%s", strerror(errno));
		rc = REQ_LOCAL;
		goto out;
	}
	if (!S_ISREG(st.st_mode) || st.st_dev != m->dev) {
		snprintf(err, errlen, "no longer a regular file in the mount");
		rc = REQ_LOCAL;
		goto out;
	}
	snprintf(line, sizeof(line), "%s %llu", cmd,
		 (unsigned long long)st.st_ino);
	rc = request(m, line, payload, err, errlen);
out:
	if (fd >= 0)
		close(fd);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Commands */

static int cmd_status(const struct mount *m)
{
	char *out, err[ERR_MAX];
	int rc = request(m, "status", &out, err, sizeof(err));

	if (rc != REQ_OK) {
		if (rc != REQ_INTR)
			msg("%s", err);
		return rc == REQ_INTR ? EXIT_INTR : 1;
	}
	fputs(out, stdout);
	free(out);
	return 0;
}

/* Write data to path.tmp, then rename it over path. */
static int write_atomic(const char *path, const char *data)
{
	size_t len = strlen(data), off = 0;
	char *tmp;
	int fd, rc = 0;

	if (asprintf(&tmp, "%s.tmp", path) < 0) {
		msg("out of memory");
		return -1;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		msg("%s: %s", tmp, strerror(errno));
		free(tmp);
		return -1;
	}
	while (off < len) {
		ssize_t n = write(fd, data + off, len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			break;
		}
		off += (size_t)n;
	}
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0) {
		msg("%s: %s", path, strerror(-rc));
		unlink(tmp);
	}
	free(tmp);
	return rc < 0 ? -1 : 0;
}

static int cmd_stats(const struct mount *m, const struct args *a)
{
	char line[64], *out, err[ERR_MAX];
	int rc;

	snprintf(line, sizeof(line), "stats %s", a->fmt);
	rc = request(m, line, &out, err, sizeof(err));
	if (rc != REQ_OK) {
		if (rc != REQ_INTR)
			msg("%s", err);
		return rc == REQ_INTR ? EXIT_INTR : 1;
	}
	if (!strcmp(a->fmt, "json") && !json_looks_valid(out)) {
		msg("the stagefs daemon of %s sent malformed JSON", m->path);
		rc = 1;
	} else if (a->output) {
		rc = write_atomic(a->output, out) < 0;
	} else {
		fputs(out, stdout);
		rc = fflush(stdout) == EOF;
		if (rc)
			msg("standard output: %s", strerror(errno));
	}
	free(out);
	return rc;
}

static double rate_of(const struct sample *a, const struct sample *b, int k)
{
	double dt = b->t - a->t;

	return dt > 0 ? (double)delta(a, b, k) / dt : 0;
}

/* "1.2 GiB of 2.0 GiB (60%)", or just the bytes when there is no limit. */
static void fmt_part(char *buf, size_t len, const struct sample *s, int k,
		     int klimit)
{
	char used[32], lim[32];

	fmt_bytes(used, sizeof(used), s->v[k]);
	if (!s->have[k])
		snprintf(buf, len, "-");
	else if (!s->have[klimit] || !s->v[klimit])
		snprintf(buf, len, "%s", used);
	else
		snprintf(buf, len, "%s of %s (%.0f%%)", used,
			 fmt_bytes(lim, sizeof(lim), s->v[klimit]),
			 100.0 * (double)s->v[k] / (double)s->v[klimit]);
}

static void top_frame(const struct mount *m, const struct args *a,
		      const struct sample *p, const struct sample *c, bool tty)
{
	char r1[32], r2[32], r3[32], r4[32], hit[16], part[96], clock[16];
	char e1[24], e2[24], e3[24], e5[24], q[24], files[24];
	double served = rate_of(p, c, K_READ_CACHE);
	double fetched = rate_of(p, c, K_READ_BACKEND);
	time_t t = time(NULL);
	struct tm tm;

	if (served > 0) {
		double h = 1 - fetched / served;

		snprintf(hit, sizeof(hit), "%.1f%%",
			 100 * (h < 0 ? 0 : h > 1 ? 1 : h));
	} else {
		snprintf(hit, sizeof(hit), "-");
	}
	localtime_r(&t, &tm);
	strftime(clock, sizeof(clock), "%H:%M:%S", &tm);
	printf("%sstagefs %s  every %gs  %s\n\n", tty ? "\033[H\033[2J" : "\n",
	       m->path, a->interval, clock);
	printf("read    %12s served, %s from the backend, hit ratio %s\n",
	       fmt_rate(r1, sizeof(r1), served),
	       fmt_rate(r2, sizeof(r2), fetched), hit);
	printf("write   %12s\n",
	       fmt_rate(r3, sizeof(r3), rate_of(p, c, K_WRITTEN)));
	printf("flush   %12s, %s chunks queued, %s rewritten after a server restart\n",
	       fmt_rate(r4, sizeof(r4), rate_of(p, c, K_FLUSHED)),
	       fmt_u64(q, sizeof(q), c, K_QUEUE),
	       fmt_u64(e5, sizeof(e5), c, K_REWRITES));
	fmt_part(part, sizeof(part), c, K_DIRTY, K_DIRTY_MAX);
	printf("dirty   %s\n", part);
	fmt_part(part, sizeof(part), c, K_USED, K_CACHE_SIZE);
	printf("cache   %s, %s files\n", part,
	       fmt_u64(files, sizeof(files), c, K_FILES));
	printf("errors  %s checksum, %s flush, %s flush retries\n",
	       fmt_u64(e1, sizeof(e1), c, K_CSUM_ERRORS),
	       fmt_u64(e2, sizeof(e2), c, K_FLUSH_ERRORS),
	       fmt_u64(e3, sizeof(e3), c, K_RETRIES));
	fflush(stdout);
}

/* Sleep secs; false if interrupted. */
static bool nap(double secs)
{
	struct timespec ts = { .tv_sec = (time_t)secs };

	ts.tv_nsec = (long)((secs - (double)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) < 0)
		if (errno != EINTR || interrupted)
			return false;
	return !interrupted;
}

static int cmd_top(const struct mount *m, const struct args *a)
{
	static char obuf[8192];
	struct sample prev, cur;
	bool tty = isatty(STDOUT_FILENO);
	unsigned long frame;
	char err[ERR_MAX];
	int rc;

	/* One write per frame: no flicker. */
	setvbuf(stdout, obuf, _IOFBF, sizeof(obuf));
	rc = get_sample(m, &prev, err, sizeof(err));
	for (frame = 0; rc == REQ_OK && (!a->count || frame < a->count);
	     frame++) {
		if (!nap(a->interval))
			return 0;
		rc = get_sample(m, &cur, err, sizeof(err));
		if (rc == REQ_OK) {
			top_frame(m, a, &prev, &cur, tty);
			prev = cur;
		}
	}
	if (rc == REQ_INTR)
		return 0;
	if (rc != REQ_OK) {
		msg("%s", err);
		return 1;
	}
	return 0;
}

static const char *past(const char *cmd)
{
	if (!strcmp(cmd, "flush"))
		return "flushed";
	if (!strcmp(cmd, "evict"))
		return "evicted";
	if (!strcmp(cmd, "prefetch"))
		return "prefetched";
	if (!strcmp(cmd, "pin"))
		return "pinned";
	return "unpinned";
}

/* What scrubs answered, summed (fs/ctl.h: "CHECKED BAD REFETCHED BYTES
 * SKIPPED").  Returns -1 if the answer is not that. */
struct scrub_sum {
	unsigned long long checked, bad, refetched, bytes, skipped;
};

static int scrub_add(struct scrub_sum *t, const char *out, char *err,
		     size_t errlen)
{
	struct scrub_sum r;

	if (sscanf(out, "%llu %llu %llu %llu %llu", &r.checked, &r.bad,
		   &r.refetched, &r.bytes, &r.skipped) != 5) {
		snprintf(err, errlen, "unexpected answer to scrub: %.60s", out);
		return -1;
	}
	t->checked += r.checked;
	t->bad += r.bad;
	t->refetched += r.refetched;
	t->bytes += r.bytes;
	t->skipped += r.skipped;
	return 0;
}

/* flush, evict, prefetch, pin, unpin, scrub */
static int cmd_files(const struct mount *m, const struct command *c,
		     const struct args *a)
{
	bool flush = !strcmp(c->name, "flush");
	bool scrub = !strcmp(c->name, "scrub");
	bool show = flush || scrub || !strcmp(c->name, "prefetch");
	bool whole = !a->path, tree = false, started = false;
	size_t i, not_cached = 0, failed = 0, done = 0;
	struct scrub_sum sum = { 0 };
	struct progress p;
	uint64_t size = 0;
	char err[ERR_MAX], *out;
	int rc = REQ_OK, status = 0;

	if (a->path) {
		if (collect(m, a->path, flush || scrub, &whole, &tree) < 0) {
			status = interrupted ? EXIT_INTR : 1;
			goto out;
		}
		failed += walk.errors;
	}
	whole = whole && (flush || scrub);
	for (i = 0; i < walk.n; i++)
		size += walk.v[i].size;
	if (show) {
		if (progress_start(&p, m, flush ? P_FLUSH : scrub ? P_SCRUB :
							  P_PREFETCH,
				   !flush && !whole, walk.n, size) < 0) {
			status = interrupted ? EXIT_INTR : 1;
			goto out;
		}
		started = true;
	}
	if (whole) {
		rc = request(m, c->name, &out, err, sizeof(err));
		if (rc == REQ_OK && scrub &&
		    scrub_add(&sum, out, err, sizeof(err)) < 0)
			rc = REQ_FAIL;
		free(out);
		goto finish;
	}
	for (i = 0; i < walk.n && !interrupted; i++) {
		rc = send_file(m, c->name, walk.v[i].path, &out, err,
			       sizeof(err));
		if (rc == REQ_OK && !strncmp(out, "not cached", 10)) {
			not_cached++;
			if (!tree && !show)
				printf("%s: not cached\n", walk.v[i].path);
		} else if (rc == REQ_OK && scrub &&
			   scrub_add(&sum, out, err, sizeof(err)) < 0) {
			rc = REQ_FAIL;
		} else if (rc == REQ_OK) {
			done++;
		}
		free(out);
		if (show)
			progress_file_done(&p);
		if (rc == REQ_OK)
			continue;
		if (rc == REQ_INTR || rc == REQ_FAIL)
			break;
		/* Every other file would be refused alike. */
		if (rc == REQ_ERROR && !strncmp(err, "permission denied", 17))
			break;
		if (started)
			progress_msg(&p, walk.v[i].path, err);
		else
			msg("%s: %s", walk.v[i].path, err);
		failed++;
		rc = REQ_OK;
	}
finish:
	if (started)
		progress_finish(&p, rc == REQ_OK && !interrupted);
	if (interrupted || rc == REQ_INTR) {
		msg(scrub ? "interrupted; the daemon stops the scrub at its next chunk" :
			    "interrupted; the daemon finishes the request it was serving");
		status = EXIT_INTR;
		goto out;
	}
	if (rc != REQ_OK) {
		msg("%s", err);
		status = 1;
		goto out;
	}
	if (tree && !show)
		printf("%s %zu file%s, %zu not cached\n", past(c->name), done,
		       done == 1 ? "" : "s", not_cached);
	if (scrub) {
		printf("scrubbed %llu blocks (%llu bytes), %llu bad, refetched %llu",
		       sum.checked, sum.bytes, sum.bad, sum.refetched);
		if (sum.skipped)
			printf(", %llu skipped (a passthrough writer has the file)",
			       sum.skipped);
		if (not_cached)
			printf(", %zu file%s not cached", not_cached,
			       not_cached == 1 ? "" : "s");
		printf("\n");
		if (sum.bad > sum.refetched) {
			msg("%llu bad block%s left in the cache (dirty, or not fetched again); see the daemon's log",
			    sum.bad - sum.refetched,
			    sum.bad - sum.refetched == 1 ? "" : "s");
			status = 1;
		}
	}
	if (failed) {
		msg("%zu error%s", failed, failed == 1 ? "" : "s");
		status = 1;
	}
out:
	free_targets();
	return status;
}

/* ------------------------------------------------------------------ */

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

static const struct option cmd_longopts[] = {
	{ "json", no_argument, NULL, 'j' },
	{ "prometheus", no_argument, NULL, 'p' },
	{ "output", required_argument, NULL, 'o' },
	{ "interval", required_argument, NULL, 'i' },
	{ "count", required_argument, NULL, 'n' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 }
};

/* Parse a command's options and arguments; exits on --help or misuse. */
static void parse_command(const struct command *c, int argc, char **argv,
			  struct args *a)
{
	char optstr[16], *end;
	int opt, nargs;

	memset(a, 0, sizeof(*a));
	a->fmt = "text";
	a->interval = 1;
	snprintf(optstr, sizeof(optstr), ":h%s", c->opts);
	optind = 0;	/* GNU: start afresh, argv[0] is the command */
	opterr = 0;
	while ((opt = getopt_long(argc, argv, optstr, cmd_longopts,
				  NULL)) != -1) {
		if (opt != 'h' && opt != '?' && opt != ':' &&
		    !strchr(c->opts, opt))
			opt = '?';
		switch (opt) {
		case 'h':
			command_usage(c);
			exit(0);
		case 'j':
		case 'p':
			if (strcmp(a->fmt, "text")) {
				msg("stats: --json and --prometheus exclude each other");
				exit(EXIT_USAGE);
			}
			a->fmt = opt == 'j' ? "json" : "prometheus";
			break;
		case 'o':
			a->output = optarg;
			break;
		case 'i':
			errno = 0;
			a->interval = strtod(optarg, &end);
			if (errno || *end || !(a->interval >= 0.1) ||
			    a->interval > 86400) {
				msg("top: --interval takes seconds, 0.1 to 86400: '%s'",
				    optarg);
				exit(EXIT_USAGE);
			}
			break;
		case 'n':
			errno = 0;
			a->count = strtoul(optarg, &end, 10);
			if (errno || *end || !a->count || *optarg == '-') {
				msg("top: --count takes a positive number: '%s'",
				    optarg);
				exit(EXIT_USAGE);
			}
			break;
		case ':':
			msg("%s: %s needs an argument", c->name,
			    argv[optind - 1]);
			exit(EXIT_USAGE);
		default:
			msg("%s: unknown option '%s' (see " PROG
			    " MOUNTPOINT %s --help)", c->name,
			    argv[optind - 1], c->name);
			exit(EXIT_USAGE);
		}
	}
	nargs = argc - optind;
	if (nargs < c->min_args || nargs > c->max_args) {
		msg("usage: " PROG " [--socket PATH] MOUNTPOINT %s",
		    c->synopsis);
		exit(EXIT_USAGE);
	}
	if (nargs)
		a->path = argv[optind];
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	const struct command *c = NULL;
	const char *sock = NULL, *mnt;
	struct sigaction sa = { .sa_handler = on_signal };
	struct mount m;
	struct args a;
	size_t i;
	int opt;

	opterr = 0;
	while ((opt = getopt_long(argc, argv, "+:hs:", longopts, NULL)) != -1) {
		switch (opt) {
		case 'h':
			usage(stdout);
			return 0;
		case 's':
			sock = optarg;
			break;
		case ':':
			msg("%s needs an argument", argv[optind - 1]);
			return EXIT_USAGE;
		default:
			msg("unknown option '%s' (see " PROG " --help)",
			    argv[optind - 1]);
			return EXIT_USAGE;
		}
	}
	if (argc - optind == 2 && (!strcmp(argv[optind + 1], "--help") ||
				   !strcmp(argv[optind + 1], "-h"))) {
		usage(stdout);	/* "MOUNTPOINT --help" */
		return 0;
	}
	if (argc - optind < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	mnt = argv[optind];
	for (i = 0; i < NCOMMANDS; i++)
		if (!strcmp(argv[optind + 1], commands[i].name))
			c = &commands[i];
	if (!c) {
		msg("unknown command '%s' (see " PROG " --help)",
		    argv[optind + 1]);
		return EXIT_USAGE;
	}
	parse_command(c, argc - optind - 1, argv + optind + 1, &a);

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);	/* no SA_RESTART: wake blocked reads */
	sigaction(SIGTERM, &sa, NULL);
	if (find_mount(mnt, sock, &m) < 0)
		return 1;
	if (m.unmounted && strcmp(c->name, "status") &&
	    strcmp(c->name, "stats")) {
		msg("%s is not mounted; its daemon is still uploading what is dirty: only status and stats answer",
		    mnt);
		return 1;
	}
	if (!strcmp(c->name, "status"))
		return cmd_status(&m);
	if (!strcmp(c->name, "stats"))
		return cmd_stats(&m, &a);
	if (!strcmp(c->name, "top"))
		return cmd_top(&m, &a);
	return cmd_files(&m, c, &a);
}
