/* SPDX-License-Identifier: GPL-2.0 */
/*
 * fuzz_util.h - shared by the libFuzzer targets of tests/fuzz.
 *
 * run-fuzz runs the targets with -close_fd_mask=3: what the code under
 * test prints to stdout and stderr is discarded, and libFuzzer's output
 * and the sanitizer reports go to a copy of the real stderr.  A broken
 * invariant is reported the same way, through the sanitizer's report fd,
 * so it shows in the log before the abort()'s stack trace.
 */
#ifndef STAGEFS_FUZZ_UTIL_H
#define STAGEFS_FUZZ_UTIL_H

#include <sanitizer/common_interface_defs.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static inline void fuzz_fail(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));

static inline void fuzz_fail(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	__sanitizer_report_error_summary(msg);
	abort();
}

#endif /* STAGEFS_FUZZ_UTIL_H */
