/* SPDX-License-Identifier: GPL-2.0 */
/*
 * test_pt_proto.c - the passthrough negotiation (fs/pt_proto.h): which
 * INIT requests offer passthrough (a kernel without it, Linux before 6.9,
 * must get today's path: passthrough=auto falls back), what the INIT
 * reply asks for, and how an OPEN reply is made passthrough.  The
 * structures are checked against the kernel's layout (protocol 7.40).
 */
#include <check.h>
#include <linux/fuse.h>
#include <stddef.h>
#include <string.h>

#include "pt_proto.h"

static struct pt_init_in init_in(uint32_t minor, uint32_t flags,
				 uint32_t flags2)
{
	struct pt_init_in in;

	memset(&in, 0, sizeof(in));
	in.major = 7;
	in.minor = minor;
	in.flags = flags;
	in.flags2 = flags2;
	return in;
}

START_TEST(test_layout)
{
	ck_assert_uint_eq(sizeof(struct pt_in_header), 40);
	ck_assert_uint_eq(sizeof(struct pt_init_in), 64);
	ck_assert_uint_eq(sizeof(struct pt_out_header), 16);
	ck_assert_uint_eq(sizeof(struct pt_init_out), 64);
	ck_assert_uint_eq(offsetof(struct pt_init_out, flags2), 32);
	ck_assert_uint_eq(offsetof(struct pt_init_out, max_stack_depth), 36);
	ck_assert_uint_eq(sizeof(struct pt_open_out), 16);
	ck_assert_uint_eq(offsetof(struct pt_open_out, backing_id), 12);
	ck_assert_uint_eq(sizeof(struct pt_backing_map), 16);
	ck_assert_uint_eq(PT_DEV_IOC_BACKING_OPEN, 0x4010e501);
	ck_assert_uint_eq(PT_DEV_IOC_BACKING_CLOSE, 0x4004e502);
}
END_TEST

START_TEST(test_offers)
{
	struct pt_init_in in;

	/* Linux 6.9+ with CONFIG_FUSE_PASSTHROUGH. */
	in = init_in(41, PT_INIT_EXT, PT_FLAGS2_PASSTHROUGH);
	ck_assert(pt_kernel_offers(&in, sizeof(in)));
	/* Without the config option: no flag. */
	in = init_in(41, PT_INIT_EXT, 0);
	ck_assert(!pt_kernel_offers(&in, sizeof(in)));
	/* RHEL 8 / 9 kernels: older protocol, no flags2. */
	in = init_in(31, 0, 0);
	ck_assert(!pt_kernel_offers(&in, sizeof(in)));
	in = init_in(38, 0, PT_FLAGS2_PASSTHROUGH);	/* flags2 not valid */
	ck_assert(!pt_kernel_offers(&in, sizeof(in)));
	in = init_in(36, PT_INIT_EXT, PT_FLAGS2_PASSTHROUGH);
	ck_assert(!pt_kernel_offers(&in, sizeof(in)));
	/* A short request is not trusted. */
	in = init_in(41, PT_INIT_EXT, PT_FLAGS2_PASSTHROUGH);
	ck_assert(!pt_kernel_offers(&in, 16));
}
END_TEST

START_TEST(test_dio_mmap)
{
	struct pt_init_in in;
	struct pt_init_out out;

	/* Linux 6.6+: offered in flags2 (FUSE_DIRECT_IO_ALLOW_MMAP). */
	in = init_in(39, PT_INIT_EXT, PT_FLAGS2_DIRECT_IO_ALLOW_MMAP);
	ck_assert(pt_kernel_offers_dio_mmap(&in, sizeof(in)));
	ck_assert(!pt_kernel_offers(&in, sizeof(in)));
	/* Older kernels: not offered, not asked for. */
	in = init_in(38, PT_INIT_EXT, PT_FLAGS2_DIRECT_IO_ALLOW_MMAP);
	ck_assert(!pt_kernel_offers_dio_mmap(&in, sizeof(in)));
	in = init_in(41, 0, PT_FLAGS2_DIRECT_IO_ALLOW_MMAP);
	ck_assert(!pt_kernel_offers_dio_mmap(&in, sizeof(in)));
	in = init_in(41, PT_INIT_EXT, PT_FLAGS2_PASSTHROUGH);
	ck_assert(!pt_kernel_offers_dio_mmap(&in, sizeof(in)));
	in = init_in(41, PT_INIT_EXT, PT_FLAGS2_DIRECT_IO_ALLOW_MMAP);
	ck_assert(!pt_kernel_offers_dio_mmap(&in, 16));
	/* The reply keeps what libfuse set and adds the bit: 1 << 36. */
	memset(&out, 0, sizeof(out));
	out.flags = 1u << 3;
	pt_init_out_dio_mmap(&out);
	ck_assert_uint_eq(out.flags, (1u << 3) | PT_INIT_EXT);
	ck_assert_uint_eq((uint64_t)out.flags2 << 32, 1ULL << 36);
}
END_TEST

/* A request as the kernel sends it: header, then the op's arguments. */
struct req {
	struct pt_in_header h;
	union {
		struct fuse_write_in w;
		struct fuse_setattr_in sa;
		struct fuse_open_in o;
	} u;
};

START_TEST(test_killpriv_v2)
{
	struct pt_init_in in;
	struct req r;

	/* Offered since protocol 7.33 (Linux 5.11), in flags: RHEL 8's
	 * 7.31 gets the GETXATTR before each write, as before. */
	in = init_in(33, PT_INIT_HANDLE_KILLPRIV_V2, 0);
	ck_assert(pt_kernel_offers_killpriv_v2(&in, sizeof(in)));
	in = init_in(31, PT_INIT_HANDLE_KILLPRIV_V2, 0);
	ck_assert(!pt_kernel_offers_killpriv_v2(&in, sizeof(in)));
	in = init_in(41, PT_INIT_EXT, PT_FLAGS2_PASSTHROUGH);
	ck_assert(!pt_kernel_offers_killpriv_v2(&in, sizeof(in)));
	in = init_in(41, PT_INIT_HANDLE_KILLPRIV_V2, 0);
	ck_assert(!pt_kernel_offers_killpriv_v2(&in, 16));
	ck_assert_uint_eq(PT_INIT_HANDLE_KILLPRIV_V2, FUSE_HANDLE_KILLPRIV_V2);

	/* The request's flag, at the kernel's offsets. */
	memset(&r, 0, sizeof(r));
	r.h.opcode = PT_OP_WRITE;
	r.u.w.write_flags = FUSE_WRITE_KILL_SUIDGID | FUSE_WRITE_LOCKOWNER;
	ck_assert(pt_req_kills_suidgid(&r.h, sizeof(r.h) + sizeof(r.u.w)));
	ck_assert(!pt_req_kills_suidgid(&r.h, sizeof(r.h) + 20));
	r.u.w.write_flags = FUSE_WRITE_LOCKOWNER;
	ck_assert(!pt_req_kills_suidgid(&r.h, sizeof(r.h) + sizeof(r.u.w)));
	memset(&r, 0, sizeof(r));
	r.h.opcode = PT_OP_SETATTR;
	r.u.sa.valid = FATTR_SIZE | FATTR_KILL_SUIDGID;
	ck_assert(pt_req_kills_suidgid(&r.h, sizeof(r.h) + sizeof(r.u.sa)));
	r.u.sa.valid = FATTR_SIZE;
	ck_assert(!pt_req_kills_suidgid(&r.h, sizeof(r.h) + sizeof(r.u.sa)));
	/* Other requests never: an OPEN's flags word is not a write's. */
	memset(&r, 0xff, sizeof(r));
	r.h.opcode = PT_OP_OPEN;
	ck_assert(!pt_req_kills_suidgid(&r.h, sizeof(r)));
}
END_TEST

START_TEST(test_init_reply)
{
	struct pt_init_out out;

	memset(&out, 0, sizeof(out));
	out.flags = 1u << 7;
	out.flags2 = 1u << 1;
	pt_init_out_enable(&out);
	ck_assert_uint_eq(out.flags, (1u << 7) | PT_INIT_EXT);
	ck_assert_uint_eq(out.flags2, (1u << 1) | PT_FLAGS2_PASSTHROUGH);
	ck_assert_uint_eq(out.max_stack_depth, 1);
}
END_TEST

START_TEST(test_open_reply)
{
	struct pt_open_out oo = { .fh = 42, .open_flags = PT_FOPEN_DIRECT_IO | 2,
				  .backing_id = 0 };

	pt_open_out_set(&oo, 7);
	ck_assert_uint_eq(oo.fh, 42);
	ck_assert_uint_eq(oo.open_flags, PT_FOPEN_PASSTHROUGH | 2);
	ck_assert_int_eq(oo.backing_id, 7);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("pt_proto");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_layout);
	tcase_add_test(tc, test_offers);
	tcase_add_test(tc, test_dio_mmap);
	tcase_add_test(tc, test_killpriv_v2);
	tcase_add_test(tc, test_init_reply);
	tcase_add_test(tc, test_open_reply);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
