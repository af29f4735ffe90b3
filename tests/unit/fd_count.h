/* SPDX-License-Identifier: GPL-2.0 */
/*
 * fd_count.h - for the unit tests only: how many descriptors this process
 * has open on files under a directory.
 *
 * Thread safety: reads /proc/self/fd; reentrant.
 */
#ifndef STAGEFS_TEST_FD_COUNT_H
#define STAGEFS_TEST_FD_COUNT_H

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/*
 * Descriptors open on paths that start with dir and, if sub is not NULL,
 * contain sub.  Returns -1 if /proc/self/fd cannot be read.
 */
static inline int fds_under(const char *dir, const char *sub)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;

	if (!d)
		return -1;
	while ((de = readdir(d))) {
		char p[300], target[600];
		ssize_t len;

		if (de->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "/proc/self/fd/%s", de->d_name);
		len = readlink(p, target, sizeof(target) - 1);
		if (len <= 0)
			continue;
		target[len] = '\0';
		if (!strncmp(target, dir, strlen(dir)) &&
		    (!sub || strstr(target, sub)))
			n++;
	}
	closedir(d);
	return n;
}

#endif /* STAGEFS_TEST_FD_COUNT_H */
