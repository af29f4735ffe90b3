/* SPDX-License-Identifier: GPL-2.0 */
/*
 * nfs_limits.c - what an NFSv3 export can hold, decided before a call
 * goes out, as the Linux NFSv3 client decides it.  Pure functions, no
 * libnfs: the unit test links this file alone.
 *
 * Thread safety: no state.
 */
#include "nfs_int.h"

#include <errno.h>

/*
 * nfstime3 (RFC 1813) is unsigned 32-bit seconds: 1970-01-01 to
 * 2106-02-07T06:28:15Z.  The kernel client sets its superblock's
 * s_time_min 0 and s_time_max U32_MAX, and the VFS's timestamp_truncate()
 * clamps a time outside them to the nearest end with 0 nanoseconds; a
 * time inside keeps its nanoseconds.  Sending the low 32 bits instead
 * would turn 2200 into 2063.
 */
void nfs_time_clamp(int64_t sec, long nsec, uint32_t *sec3, uint32_t *nsec3)
{
	if (sec < 0) {
		*sec3 = 0;
		*nsec3 = 0;
	} else if (sec > (int64_t)UINT32_MAX) {
		*sec3 = UINT32_MAX;
		*nsec3 = 0;
	} else {
		*sec3 = (uint32_t)sec;
		*nsec3 = nsec < 0 || nsec > 999999999 ? 0 : (uint32_t)nsec;
	}
}

int nfs_symlink_len_ok(size_t target_len)
{
	return target_len > NFS_SYMLINK_MAX ? -ENAMETOOLONG : 0;
}
