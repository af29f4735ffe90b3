/* SPDX-License-Identifier: GPL-2.0 */
/*
 * pt_proto.h - the parts of the kernel's FUSE protocol that passthrough
 * (and the mmap of O_DIRECT opens, and KILLPRIV_V2) needs and that
 * libfuse 3.14 and Debian 12's <linux/fuse.h> (protocol 7.38) do not
 * name or do not pass on.  From the kernel's include/uapi/linux/fuse.h,
 * protocol 7.40 (Linux 6.9): FUSE_PASSTHROUGH is bit 37 of the INIT
 * flags (bit 5 of flags2), max_stack_depth follows flags2 in
 * fuse_init_out (libfuse 3.14 calls it unused[0]), FOPEN_PASSTHROUGH is
 * bit 7 of open_flags and the backing id is the word after it (libfuse's
 * "padding"), and the backing file ioctls are FUSE_DEV_IOC_BACKING_OPEN
 * and _CLOSE on /dev/fuse.
 *
 * The functions are pure, for the unit test of the negotiation.
 *
 * Thread safety: no state.
 */
#ifndef STAGEFS_PT_PROTO_H
#define STAGEFS_PT_PROTO_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>

/* The opcodes the hook matches or stats names (<linux/fuse.h> has these
 * as enum fuse_opcode; they are kept here beside the rest of what the
 * hook reads, as the protocol's fixed numbers). */
#define PT_OP_LOOKUP 1
#define PT_OP_GETATTR 3
#define PT_OP_SETATTR 4
#define PT_OP_OPEN 14
#define PT_OP_READ 15
#define PT_OP_WRITE 16
#define PT_OP_GETXATTR 22
#define PT_OP_INIT 26
#define PT_OP_READDIR 28
#define PT_OP_CREATE 35
#define PT_OP_READDIRPLUS 44
/* Requests are counted by opcode below this (fs/ctl.c names some). */
#define PT_OPS_COUNTED 64

#define PT_INIT_EXT (1U << 30)		/* flags: flags2 is valid */
#define PT_INIT_PARALLEL_DIROPS (1U << 18)	/* lookups of one directory
						 * need not be serialised */
#define PT_FLAGS2_PASSTHROUGH (1U << 5)	/* FUSE_PASSTHROUGH >> 32 */
/* FUSE_DIRECT_IO_ALLOW_MMAP >> 32, protocol 7.39 (Linux 6.6): a file
 * opened with direct_io may still be mapped shared. */
#define PT_FLAGS2_DIRECT_IO_ALLOW_MMAP (1U << 4)
/*
 * FUSE_HANDLE_KILLPRIV_V2, protocol 7.33 (Linux 5.11): the daemon clears
 * set-user-ID, and set-group-ID where group-executable, on write,
 * truncate and chown.  In return the kernel marks the superblock
 * SB_NOSEC: it asks for security.capability once per inode and
 * attribute refresh, not before every write(2).  Its signals: a bit in
 * fuse_write_in.write_flags (the word at byte 20) and in
 * fuse_setattr_in.valid (byte 0); libfuse 3.14 passes neither on.
 */
#define PT_INIT_HANDLE_KILLPRIV_V2 (1U << 28)
#define PT_WRITE_KILL_SUIDGID (1U << 2)
#define PT_FATTR_KILL_SUIDGID (1U << 11)
#define PT_FOPEN_DIRECT_IO (1U << 0)
#define PT_FOPEN_PASSTHROUGH (1U << 7)

struct pt_in_header {
	uint32_t len;
	uint32_t opcode;
	uint64_t unique;
	uint64_t nodeid;
	uint32_t uid, gid, pid;
	uint16_t total_extlen;
	uint16_t padding;
};

struct pt_init_in {
	uint32_t major, minor, max_readahead, flags;
	uint32_t flags2;
	uint32_t unused[11];
};

struct pt_out_header {
	uint32_t len;
	int32_t error;
	uint64_t unique;
};

struct pt_init_out {
	uint32_t major, minor, max_readahead, flags;
	uint16_t max_background, congestion_threshold;
	uint32_t max_write, time_gran;
	uint16_t max_pages, map_alignment;
	uint32_t flags2;
	uint32_t max_stack_depth;
	uint32_t unused[6];
};

struct pt_open_out {
	uint64_t fh;
	uint32_t open_flags;
	int32_t backing_id;
};

/* A CREATE reply is a fuse_entry_out, then the fuse_open_out. */
#define PT_ENTRY_OUT_SIZE 128

struct pt_backing_map {
	int32_t fd;
	uint32_t flags;
	uint64_t padding;
};

#define PT_DEV_IOC_BACKING_OPEN _IOW(229, 1, struct pt_backing_map)
#define PT_DEV_IOC_BACKING_CLOSE _IOW(229, 2, uint32_t)

/* Does the kernel's INIT request offer passthrough? */
static inline bool pt_kernel_offers(const struct pt_init_in *in, uint32_t len)
{
	if (len < sizeof(*in) || in->major != 7 || in->minor < 40)
		return false;
	return (in->flags & PT_INIT_EXT) && (in->flags2 & PT_FLAGS2_PASSTHROUGH);
}

/* Does the kernel's INIT request offer mmap of direct_io files? */
static inline bool pt_kernel_offers_dio_mmap(const struct pt_init_in *in,
					     uint32_t len)
{
	if (len < sizeof(*in) || in->major != 7 || in->minor < 39)
		return false;
	return (in->flags & PT_INIT_EXT) &&
	       (in->flags2 & PT_FLAGS2_DIRECT_IO_ALLOW_MMAP);
}

/* Does the kernel's INIT request offer parallel lookups in a directory? */
static inline bool pt_kernel_offers_parallel_dirops(const struct pt_init_in *in,
						    uint32_t len)
{
	return len >= sizeof(*in) && in->major == 7 &&
	       (in->flags & PT_INIT_PARALLEL_DIROPS);
}

/* Does the kernel's INIT request offer FUSE_HANDLE_KILLPRIV_V2? */
static inline bool pt_kernel_offers_killpriv_v2(const struct pt_init_in *in,
						uint32_t len)
{
	return len >= sizeof(*in) && in->major == 7 && in->minor >= 33 &&
	       (in->flags & PT_INIT_HANDLE_KILLPRIV_V2);
}

/*
 * Does this request (header and arguments, n bytes) ask the daemon to
 * clear set-user-ID and set-group-ID: a WRITE or a SETATTR (truncate,
 * chown) from a caller without CAP_FSETID, under KILLPRIV_V2?
 */
static inline bool pt_req_kills_suidgid(const struct pt_in_header *h,
					size_t n)
{
	size_t at;
	uint32_t bit, w;

	if (h->opcode == PT_OP_WRITE) {
		at = 20;
		bit = PT_WRITE_KILL_SUIDGID;
	} else if (h->opcode == PT_OP_SETATTR) {
		at = 0;
		bit = PT_FATTR_KILL_SUIDGID;
	} else {
		return false;
	}
	if (n < sizeof(*h) + at + sizeof(w))
		return false;
	memcpy(&w, (const char *)(h + 1) + at, sizeof(w));
	return (w & bit) != 0;
}

/* Ask for mmap of direct_io files in the INIT reply. */
static inline void pt_init_out_dio_mmap(struct pt_init_out *out)
{
	out->flags |= PT_INIT_EXT;
	out->flags2 |= PT_FLAGS2_DIRECT_IO_ALLOW_MMAP;
}

/*
 * Ask for passthrough in the INIT reply: backing files one level deep
 * (the cache file system is not itself stacked).
 */
static inline void pt_init_out_enable(struct pt_init_out *out)
{
	out->flags |= PT_INIT_EXT;
	out->flags2 |= PT_FLAGS2_PASSTHROUGH;
	out->max_stack_depth = 1;
}

/* Make an OPEN or CREATE reply passthrough onto backing file id. */
static inline void pt_open_out_set(struct pt_open_out *oo, int32_t id)
{
	oo->open_flags |= PT_FOPEN_PASSTHROUGH;
	oo->open_flags &= ~PT_FOPEN_DIRECT_IO;
	oo->backing_id = id;
}

#endif /* STAGEFS_PT_PROTO_H */
