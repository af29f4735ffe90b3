/* SPDX-License-Identifier: GPL-2.0 */
/*
 * main.c - start, mount, serve, drain, exit.
 *
 * Start-up order matters for "nothing is mounted half-way": options, the
 * mountpoint, the backend(s), the cache (lock, journal replay), the
 * removal of hidden files a crashed run left behind, and only then the
 * mount.  Without -f the process forks first and the parent
 * waits until the child reports the mount done, so every error reaches
 * the terminal as one line and a non-zero exit, and no thread is lost in
 * a fork.  At unmount (fusermount3 -u, SIGTERM, SIGINT) the loop ends, the
 * cache uploads everything dirty, and the exit status says whether it
 * could.
 *
 * Thread safety: main() runs alone until fuse_session_loop_mt().
 */
#include "fs_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "ctl.h"

#define MAX_WRITE (1U << 20)

static void daemon_ready(int fd, char status);

static void sfs_init(void *userdata, struct fuse_conn_info *conn)
{
	struct sfs *s = userdata;

	if (conn->max_write < MAX_WRITE)
		conn->max_write = MAX_WRITE;
	/* The kernel keeps the smaller of this and the bdi's read_ahead_kb,
	 * which set_kernel_readahead() raised before INIT. */
	conn->max_readahead = s->cfg.kernel_readahead > MAX_WRITE ?
				      (unsigned int)s->cfg.kernel_readahead :
				      MAX_WRITE;
	/* O_TRUNC comes as a SETATTR before the open, through the cache's
	 * truncate, instead of a flag sfs_open would have to act on. */
	conn->want &= ~(unsigned int)FUSE_CAP_ATOMIC_O_TRUNC;
	/* Locks are the kernel's, local to this node (no lock ops here). */
	conn->want &= ~(unsigned int)FUSE_CAP_POSIX_LOCKS;
	conn->want &= ~(unsigned int)FUSE_CAP_FLOCK_LOCKS;
	/* readdirplus=off: plain listings; a find then costs no lookup
	 * per entry, an ls -l one LOOKUP per entry instead. */
	if (!s->plus)
		conn->want &= ~(unsigned int)(FUSE_CAP_READDIRPLUS |
					      FUSE_CAP_READDIRPLUS_AUTO);
	/* readdirplus=auto on posix: the kernel picks per page (fs/dir.c) */
	if (s->plus_auto && (conn->capable & FUSE_CAP_READDIRPLUS_AUTO))
		conn->want |= FUSE_CAP_READDIRPLUS_AUTO;
	/* Cache hits go back by splice from the cache file (fs/file.c). */
	if (conn->capable & FUSE_CAP_SPLICE_WRITE)
		conn->want |= FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE;
	/* The mount is usable once the kernel's INIT is answered: only now
	 * is it known whether passthrough=on can be kept. */
	if (!pt_init(s)) {
		fuse_session_exit(s->se);
		return;
	}
	if (!s->cfg.foreground)
		log_init(1, s->cfg.debug ? LOG_LVL_DEBUG : LOG_LVL_INFO);
	daemon_ready(s->notify_fd, 0);
	s->notify_fd = -1;
}

/*
 * libfuse logs a line in several calls: gather them per thread and log
 * whole lines.  Part of the log sink, the one process-wide state.
 */
static void fuse_log_sink(enum fuse_log_level level, const char *fmt,
			  va_list ap)
{
	static __thread char line[1024];
	static __thread size_t len;
	char *nl;

	vsnprintf(line + len, sizeof(line) - len, fmt, ap);
	len = strlen(line);
	nl = strchr(line, '\n');
	if (!nl && len < sizeof(line) - 1)
		return;
	if (nl)
		*nl = '\0';
	log_msg(level <= FUSE_LOG_ERR ? LOG_LVL_ERR :
		level <= FUSE_LOG_WARNING ? LOG_LVL_WARN :
		level <= FUSE_LOG_INFO ? LOG_LVL_INFO : LOG_LVL_DEBUG,
		"fuse", "%s", strncmp(line, "fuse: ", 6) ? line : line + 6);
	len = 0;
	line[0] = '\0';
}

/* Fork; the parent waits for the child's word and exits with it. */
static int daemon_fork(void)
{
	int p[2];
	pid_t pid;
	char status = 1;

	if (pipe(p) < 0)
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0) {
		close(p[1]);
		if (read(p[0], &status, 1) != 1)
			status = 1;	/* the child died and said why */
		_exit(status);
	}
	close(p[0]);
	setsid();
	return p[1];
}

/* Tell the waiting parent the exit status (0: mounted), detach. */
static void daemon_ready(int fd, char status)
{
	int nul;

	if (fd < 0)
		return;
	if (write(fd, &status, 1) != 1)
		log_msg(LOG_LVL_WARN, "main", "cannot notify the parent");
	close(fd);
	if (status)
		return;
	nul = open("/dev/null", O_RDWR);
	if (nul >= 0) {
		dup2(nul, 0);
		dup2(nul, 1);
		dup2(nul, 2);
		if (nul > 2)
			close(nul);
	}
	if (chdir("/") < 0)
		log_msg(LOG_LVL_WARN, "main", "chdir /: %s", strerror(errno));
}

static int check_mountpoint(const char *mp)
{
	struct stat st;

	if (stat(mp, &st) < 0) {
		fprintf(stderr, "stagefs: mountpoint %s: %s\n", mp,
			strerror(errno));
		return -errno;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr, "stagefs: mountpoint %s: not a directory\n",
			mp);
		return -ENOTDIR;
	}
	return 0;
}

/* Options libfuse gets from us: the mount's name and the safe defaults. */
static int add_fuse_opts(struct fuse_args *args, const struct sfs_config *cfg)
{
	char buf[PATH_MAX + 64];
	size_t i, j = 0;

	/* fsname may not hold a comma: escape it for fuse_opt. */
	for (i = 0; cfg->backend[i] && j < PATH_MAX; i++) {
		if (cfg->backend[i] == ',' || cfg->backend[i] == '\\')
			buf[j++] = '\\';
		buf[j++] = cfg->backend[i];
	}
	buf[j] = '\0';
	{
		char opt[PATH_MAX + 96];

		snprintf(opt, sizeof(opt), "-osubtype=stagefs,fsname=%s", buf);
		if (fuse_opt_add_arg(args, opt) < 0)
			return -ENOMEM;
	}
	/*
	 * The kernel checks permissions against the modes first, unless
	 * default_permissions=off: then only the backend does (it gets
	 * every request with the caller's credentials; open asks it).
	 */
	if (cfg->default_permissions &&
	    fuse_opt_add_arg(args, "-odefault_permissions") < 0)
		return -ENOMEM;
	if (getuid() == 0 && fuse_opt_add_arg(args, "-oallow_other") < 0)
		return -ENOMEM;
	return 0;
}

static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/*
 * Descriptors the daemon needs besides cache files and backend nodes:
 * stdio, /dev/fuse, an io_uring per thread (up to 32 FUSE workers plus
 * the flushers and prefetchers), nconnect sockets, the journal, lock and
 * control socket, control clients, readdir's directories, and the uses
 * in flight of the two LRUs (which may run over their limits by that).
 */
#define FD_RESERVE 256
/* More open at once buys nothing but pinned kernel inodes. */
#define FD_LRU_MAX 65536

/*
 * Split RLIMIT_NOFILE (already raised to the hard limit): a reserve (a
 * quarter of it below 1024), then half of the rest for the cache files'
 * descriptors and half for the backends' nodes, each capped.  At 1024:
 * 384 and 384.
 */
/*
 * The kernel's read-ahead window for the mount (its bdi's read_ahead_kb).
 * A FUSE mount starts at the system default, 128 KiB, and the INIT reply
 * can only lower it; a sequential reader then sends the daemon one READ
 * of 128 KiB at a time.  A wider window lets the kernel send READs of up
 * to max_pages (1 MiB) ahead of the reader.  Needs root (sysfs); a
 * failure is logged and the mount goes on.
 */
static void set_kernel_readahead(struct sfs *s)
{
	char line[4096], want[PATH_MAX * 4 + 1], path[96];
	const char *mp = s->cfg.mountpoint;
	unsigned int maj = 0, min = 0;
	size_t j = 0;
	bool found = false;
	FILE *f;
	int fd;

	if (!s->cfg.kernel_readahead)
		return;
	/* mountinfo spells space, tab, newline and backslash in octal */
	for (; *mp && j + 5 < sizeof(want); mp++) {
		if (strchr(" \t\n\\", *mp))
			j += (size_t)sprintf(want + j, "\\%03o",
					     (unsigned char)*mp);
		else
			want[j++] = *mp;
	}
	want[j] = '\0';
	f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		unsigned int a, b;
		char point[sizeof(line)];
		const char *dash = strstr(line, " - ");

		if (sscanf(line, "%*u %*u %u:%u %*s %4095s", &a, &b, point) ==
			    3 &&
		    !strcmp(point, want) && dash &&
		    !strncmp(dash + 3, "fuse", 4)) {
			maj = a;
			min = b;
			found = true;	/* the last one is ours */
		}
	}
	fclose(f);
	if (!found)
		return;
	snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb", maj,
		 min);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		char v[32];
		int n = snprintf(v, sizeof(v), "%llu",
				 (unsigned long long)(s->cfg.kernel_readahead >>
						      10));

		if (write(fd, v, (size_t)n) == n) {
			close(fd);
			log_msg(LOG_LVL_DEBUG, "main",
				"kernel read-ahead of the mount: %s KiB", v);
			return;
		}
		close(fd);
	}
	log_msg(LOG_LVL_INFO, "main",
		"cannot set the kernel read-ahead of the mount (%s: %s): sequential reads arrive in 128 KiB pieces",
		path, strerror(errno));
}

static void fd_budget(struct sfs *s, struct be_params *params)
{
	struct rlimit rl;
	uint64_t n = 1024, reserve, half;
	int nbe = s->junctions ? s->njunctions : 1;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		n = rl.rlim_cur;
	reserve = n < 4 * FD_RESERVE ? n / 4 : FD_RESERVE;
	half = (n - reserve) / 2;
	if (half > FD_LRU_MAX)
		half = FD_LRU_MAX;
	if (half < 16)
		half = 16;
	s->cfg.cache.max_fds = (unsigned int)half;
	params->max_fds = (unsigned int)(half / (uint64_t)nbe) ?: 1;
	s->nofile = n;
}

/*
 * Open the backend of every junction (or the one BACKEND) and its root.
 * On failure err names the junction and the problem.
 */
static int open_backends(struct sfs *s, const struct be_params *params,
			 struct be_node ***roots, char *err, size_t errlen)
{
	int n = s->junctions ? s->njunctions : 1, k, rc;
	char msg[900];

	s->bes = calloc((size_t)n, sizeof(*s->bes));
	*roots = calloc((size_t)n, sizeof(**roots));
	if (!s->bes || !*roots) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (k = 0; k < n; k++) {
		const char *spec = s->junctions ? s->junctions[k].backend :
						  s->cfg.backend;
		struct be_attr a;

		rc = be_open(spec, params, &s->bes[k], msg, sizeof(msg));
		if (rc == 0) {
			s->nbe = k + 1;
			rc = s->bes[k]->ops->root(s->bes[k], NULL, &(*roots)[k], &a);
			if (rc == 0 && !S_ISDIR(a.mode))
				rc = -ENOTDIR;
			if (rc < 0)
				snprintf(msg, sizeof(msg), "backend %s: root: %s",
					 spec, strerror(-rc));
		}
		if (rc < 0) {
			if (s->junctions)
				snprintf(err, errlen, "junction %s (line %d): %s",
					 s->junctions[k].path,
					 s->junctions[k].line, msg);
			else
				snprintf(err, errlen, "%s", msg);
			return rc;
		}
	}
	return 0;
}

/*
 * readdirplus: s->plus and s->plus_auto from the option.  auto is on
 * where one backend's lookup is a round trip to a server (nfs): its
 * listing brings the attributes anyway and spares ls -l a LOOKUP per
 * entry.  Where every backend lists names cheaper than entries
 * (be_ops.readdir_names: posix), it is the kernel's auto mode with
 * one-page READDIRPLUS replies (fs/dir.c): an ls -l that stats what it
 * lists gets READDIRPLUS pages, a find plain ones after the first
 * (docs/performance.md, "meta on posix").
 */
static void want_plus(struct sfs *s)
{
	int k;

	s->plus = s->cfg.readdirplus != SFS_RDP_OFF;
	s->plus_auto = s->cfg.readdirplus == SFS_RDP_AUTO;
	for (k = 0; k < s->nbe; k++)
		if (!s->bes[k]->ops->readdir_names)
			s->plus_auto = false;
}

static void close_backends(struct sfs *s, struct be_node **roots)
{
	int k;

	for (k = 0; k < s->nbe; k++) {
		if (roots && roots[k])
			be_node_put(s->bes[k], roots[k]);
		be_close(s->bes[k]);
	}
	free(roots);
	free(s->bes);
	s->bes = NULL;
	s->nbe = 0;
}

int main(int argc, char **argv)
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_lowlevel_ops ops = { .init = sfs_init };
	struct be_params params = { 0 };
	struct fuse_loop_config *loop_cfg = NULL;
	struct sfs s;
	struct ctl *ctl = NULL;
	struct be_node **roots = NULL;
	struct ns_junction single = { .path = (char *)"/" };
	char err[1024] = "";
	int notify_fd = -1, rc, ret = 1;

	umask(0);	/* the kernel applied the caller's umask already */
	memset(&s, 0, sizeof(s));
	s.notify_fd = -1;
	clock_gettime(CLOCK_REALTIME, &s.started);
	log_init(0, LOG_LVL_INFO);
	if (opts_parse(&args, &s.cfg) < 0)
		goto out_args;
	if (s.cfg.show_help) {
		opts_usage(argv[0]);
		ret = 0;
		goto out_args;
	}
	if (s.cfg.show_version) {
		printf("stagefs %s (libfuse %s)\n", STAGEFS_VERSION,
		       fuse_pkgversion());
		ret = 0;
		goto out_args;
	}
	if (s.cfg.debug)
		log_set_level(LOG_LVL_DEBUG);
	if (check_mountpoint(s.cfg.mountpoint) < 0)
		goto out_args;
	if (s.cfg.namespace_file &&
	    ns_parse_file(s.cfg.namespace_file, &s.junctions, &s.njunctions, err,
			  sizeof(err)) < 0) {
		fprintf(stderr, "stagefs: %s\n", err);
		goto out_args;
	}
	single.backend = s.cfg.backend;
	if (add_fuse_opts(&args, &s.cfg) < 0)
		goto out_args;
	raise_nofile();
	fuse_set_log_func(fuse_log_sink);
	/* Early, so that a bad FUSE option is refused before any slow work. */
	dir_ops_init(&ops);
	file_ops_init(&ops);
	xattr_ops_init(&ops);
	ns_wrap_ops(&s, &ops);
	s.se = fuse_session_new(&args, &ops, sizeof(ops), &s);
	if (!s.se)
		goto out_args;	/* libfuse said why, in one line */

	if (!s.cfg.foreground) {
		notify_fd = daemon_fork();
		if (notify_fd < 0) {
			fprintf(stderr, "stagefs: fork: %s\n",
				strerror(-notify_fd));
			goto out_args;
		}
	}

	params.nconnect = s.cfg.nconnect;
	params.soft = s.cfg.soft;
	params.hosts_file = s.cfg.hosts_file;
	params.dir_attr_ms = s.cfg.attr_timeout >= 1.0 ? 1000 :
			     (unsigned int)(s.cfg.attr_timeout * 1000);
	fd_budget(&s, &params);
	rc = open_backends(&s, &params, &roots, err, sizeof(err));
	if (rc == 0)
		rc = cred_check_backends(&s, err, sizeof(err));
	if (rc == 0) {
		want_plus(&s);
		xattr_check_backends(&s);
	}
	if (rc < 0) {
		fprintf(stderr, "stagefs: %s\n", err);
		goto out_be;
	}
	if (inode_table_init(&s) < 0 || offline_init(&s) < 0 ||
	    ns_build(&s, s.junctions ? s.junctions : &single, s.nbe, roots) < 0) {
		fprintf(stderr, "stagefs: out of memory\n");
		goto out_inodes;
	}
	rc = cache_open(&s.cfg.cache, s.bes, s.nbe, &s.cache, err,
			sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "stagefs: %s\n", err);
		goto out_inodes;
	}
	/* The replay has queued what the dead run left dirty; the hidden
	 * files it left go now (their uploads then find them gone). */
	silly_cleanup(&s);
	rc = ctl_start(&s, &ctl, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "stagefs: %s\n", err);
		goto out_cache;
	}

	rc = file_read_bufs_init(&s);
	if (rc < 0) {
		fprintf(stderr, "stagefs: read buffers: %s\n", strerror(-rc));
		goto out_cache;
	}
	if (fuse_set_signal_handlers(s.se) < 0)
		goto out_bufs;
	if (fuse_session_mount(s.se, s.cfg.mountpoint) < 0)
		goto out_signals;
	if (pt_install(&s) < 0) {
		fprintf(stderr, "stagefs: cannot watch the FUSE channel for passthrough\n");
		fuse_session_unmount(s.se);
		goto out_signals;
	}

	set_kernel_readahead(&s);
	log_msg(LOG_LVL_INFO, "main", "mounted %s on %s (cache %s)",
		s.cfg.backend, s.cfg.mountpoint, s.cfg.cache.dir);
	log_msg(LOG_LVL_INFO, "main",
		"RLIMIT_NOFILE %llu: up to %u cache-file and %u backend descriptors kept open",
		(unsigned long long)s.nofile, s.cfg.cache.max_fds,
		params.max_fds);
	s.notify_fd = notify_fd;	/* sfs_init() answers the parent */
	notify_fd = -1;

	loop_cfg = fuse_loop_cfg_create();
	fuse_loop_cfg_set_max_threads(loop_cfg, 32);
	/* Idle workers are kept (libfuse's default): each new one would
	 * build its own io_uring; docs/performance.md has the measurement. */
	if (offline_watch_start(&s) < 0)
		log_msg(LOG_LVL_WARN, "main",
			"cannot start the session watch: an unmount during a backend outage waits for the server");
	rc = fuse_session_loop_mt(s.se, loop_cfg);
	offline_watch_stop(&s);
	atomic_store(&s.ended, true);
	fuse_loop_cfg_destroy(loop_cfg);
	fuse_session_unmount(s.se);
	ret = rc < 0 ? 1 : 0;
	if (s.pt.refused) {
		fprintf(stderr, "stagefs: passthrough=on, but the kernel does not offer FUSE passthrough (it needs Linux 6.9 or later with CONFIG_FUSE_PASSTHROUGH); use passthrough=auto or off\n");
		ret = 1;
	}
	if (s.notify_fd >= 0) {	/* no INIT came, or it was refused */
		daemon_ready(s.notify_fd, 1);
		s.notify_fd = -1;
	}
	{
		struct cache_stats st;

		cache_get_stats(s.cache, &st);
		log_msg(LOG_LVL_INFO, "main",
			"unmounted %s; uploading %llu dirty bytes before exit",
			s.cfg.mountpoint, (unsigned long long)st.dirty_bytes);
	}
out_signals:
	fuse_remove_signal_handlers(s.se);
out_bufs:
	file_read_bufs_destroy(&s);	/* the workers have ended */
out_cache:
	/* stagefsctl status still answers during the drain (the socket is
	 * found by the mountpoint's path, also once it is unmounted). */
	if (cache_drain(s.cache) < 0) {
		ret = 1;
		/* Uploads still waiting would hold up the flushers' end. */
		offline_release(&s, true);
	}
	else if (ret == 0 && s.cache)
		log_msg(LOG_LVL_INFO, "main", "all data is on the backend");
	ctl_stop(ctl);
	cache_close(s.cache);
	s.cache = NULL;
out_inodes:
	ns_destroy(&s);
	inode_table_destroy(&s);
	offline_destroy(&s);
out_be:
	close_backends(&s, roots);
	free(s.silly_here);
out_args:
	if (s.se)
		fuse_session_destroy(s.se);
	pt_destroy(&s);
	ns_free(s.junctions, s.njunctions);
	opts_free(&s.cfg);
	fuse_opt_free_args(&args);
	return ret;
}
