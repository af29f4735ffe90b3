/* SPDX-License-Identifier: GPL-2.0 */
/*
 * log.h - the one logging call of stagefs.
 *
 * It lives at the bottom of the module stack (backend/) so that every
 * layer can use it without pointing a dependency upward.  The sink is the
 * only process-wide mutable state in stagefs: stderr when the daemon runs
 * in the foreground, syslog when it runs as a daemon.
 *
 * Thread safety: log_msg() may be called from any thread; log_init() and
 * log_set_level() are called once at start-up, before other threads run.
 */
#ifndef STAGEFS_LOG_H
#define STAGEFS_LOG_H

enum log_level {
	LOG_LVL_ERR = 0,
	LOG_LVL_WARN,
	LOG_LVL_INFO,
	LOG_LVL_DEBUG,
};

void log_init(int use_syslog, enum log_level level);
void log_set_level(enum log_level level);
int log_enabled(enum log_level level);
void log_msg(enum log_level level, const char *component, const char *fmt,
	     ...) __attribute__((format(printf, 3, 4)));

#endif /* STAGEFS_LOG_H */
