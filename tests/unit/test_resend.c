/* SPDX-License-Identifier: GPL-2.0 */
/*
 * test_resend.c - be_resent_answer() (backend/resend.c): a namespace call
 * whose first reply was lost is sent again and finds its own work done.
 *
 * Each case runs the call on mem_backend twice: the first send does the
 * work and its reply is dropped (the test throws it away, as a broken
 * connection would), the second send gets ENOENT or EEXIST; the answer
 * must then be success, with the object the first send made.  And each
 * has its counterpart where the name holds something the first send did
 * not make (another client's): the error stays.
 */
#include <check.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "backend.h"
#include "mem_backend.h"

static struct be *be;
static struct be_node *root;
static const struct be_cred alice = { .uid = 1001, .gid = 1001 };
static const struct be_cred bob = { .uid = 1002, .gid = 1002 };

static void setup(void)
{
	struct be_attr a;

	be = mem_be_new("mem://resend");
	ck_assert_ptr_nonnull(be);
	ck_assert_int_eq(be->ops->root(be, NULL, &root, &a), 0);
}

static void teardown(void)
{
	be_node_put(be, root);
	be_close(be);
}

START_TEST(test_remove_resent)
{
	struct be_node *n;
	int rc;

	ck_assert_int_eq(mem_be_put_file(be, "f", "x", 1, NULL, NULL), 0);
	ck_assert_int_eq(be->ops->unlink(be, &alice, root, "f"), 0); /* lost */
	rc = be->ops->unlink(be, &alice, root, "f");
	ck_assert_int_eq(rc, -ENOENT);
	ck_assert_int_eq(be_resent_answer(be, &alice, &(struct be_resent){
		.op = BE_RESENT_REMOVE, .dir = root, .name = "f" }, rc, NULL,
		NULL), 0);
	/* other errors stay */
	ck_assert_int_eq(be_resent_answer(be, &alice, &(struct be_resent){
		.op = BE_RESENT_REMOVE, .dir = root, .name = "f" }, -EACCES,
		NULL, NULL), -EACCES);

	ck_assert_int_eq(be->ops->mkdir(be, &alice, root, "d", 0755, &n, NULL),
			 0);
	be_node_put(be, n);
	ck_assert_int_eq(be->ops->rmdir(be, &alice, root, "d"), 0); /* lost */
	rc = be->ops->rmdir(be, &alice, root, "d");
	ck_assert_int_eq(rc, -ENOENT);
	ck_assert_int_eq(be_resent_answer(be, &alice, &(struct be_resent){
		.op = BE_RESENT_RMDIR, .dir = root, .name = "d" }, rc, NULL,
		NULL), 0);
}
END_TEST

START_TEST(test_rename_resent)
{
	struct be_node *n;
	struct be_attr a;
	int rc;

	ck_assert_int_eq(mem_be_put_file(be, "a", "x", 1, &n, &a), 0);
	ck_assert_int_eq(be->ops->rename(be, &alice, root, "a", root, "b", 0),
			 0);	/* lost */
	rc = be->ops->rename(be, &alice, root, "a", root, "b", 0);
	ck_assert_int_eq(rc, -ENOENT);
	ck_assert_int_eq(be_resent_answer(be, &alice, &(struct be_resent){
		.op = BE_RESENT_RENAME, .dir = root, .name = "a",
		.newdir = root, .newname = "b", .fileid = a.fileid }, rc,
		NULL, NULL), 0);
	/* the target holds another object: not ours */
	ck_assert_int_eq(be_resent_answer(be, &alice, &(struct be_resent){
		.op = BE_RESENT_RENAME, .dir = root, .name = "a",
		.newdir = root, .newname = "b", .fileid = a.fileid + 1 },
		rc, NULL, NULL), -ENOENT);
	/* nothing at the target: the source was never there */
	ck_assert_int_eq(be_resent_answer(be, &alice, &(struct be_resent){
		.op = BE_RESENT_RENAME, .dir = root, .name = "a",
		.newdir = root, .newname = "c" }, rc, NULL, NULL), -ENOENT);
	be_node_put(be, n);
}
END_TEST

START_TEST(test_link_resent)
{
	struct be_node *n, *other;
	struct be_attr a, got;
	int rc;

	ck_assert_int_eq(mem_be_put_file(be, "f", "x", 1, &n, &a), 0);
	ck_assert_int_eq(be->ops->link(be, &alice, n, root, "l", NULL), 0);
	rc = be->ops->link(be, &alice, n, root, "l", NULL);
	ck_assert_int_eq(rc, -EEXIST);
	memset(&got, 0, sizeof(got));
	ck_assert_int_eq(be_resent_answer(be, &alice, &(struct be_resent){
		.op = BE_RESENT_LINK, .dir = root, .name = "l",
		.fileid = a.fileid }, rc, NULL, &got), 0);
	ck_assert_uint_eq(got.fileid, a.fileid);
	ck_assert_uint_eq(got.nlink, 2);
	/* the name holds another file */
	ck_assert_int_eq(mem_be_put_file(be, "g", "y", 1, &other, NULL), 0);
	rc = be->ops->link(be, &alice, other, root, "l", NULL);
	ck_assert_int_eq(rc, -EEXIST);
	ck_assert_int_eq(be_resent_answer(be, &alice, &(struct be_resent){
		.op = BE_RESENT_LINK, .dir = root, .name = "l",
		.fileid = other->fileid }, rc, NULL, NULL), -EEXIST);
	be_node_put(be, other);
	be_node_put(be, n);
}
END_TEST

START_TEST(test_mkdir_resent)
{
	struct be_node *n, *got = NULL;
	int rc;

	ck_assert_int_eq(be->ops->mkdir(be, &alice, root, "d", 0755, &n, NULL),
			 0);	/* lost */
	rc = be->ops->mkdir(be, &alice, root, "d", 0755, NULL, NULL);
	ck_assert_int_eq(rc, -EEXIST);
	ck_assert_int_eq(be_resent_answer(be, &alice, &(struct be_resent){
		.op = BE_RESENT_MKDIR, .dir = root, .name = "d" }, rc, &got,
		NULL), 0);
	ck_assert_ptr_nonnull(got);
	ck_assert(be_node_same(got, n));
	be_node_put(be, got);
	/* another user's directory is not ours */
	ck_assert_int_eq(be_resent_answer(be, &bob, &(struct be_resent){
		.op = BE_RESENT_MKDIR, .dir = root, .name = "d" }, rc, NULL,
		NULL), -EEXIST);
	/* nor a file */
	ck_assert_int_eq(mem_be_put_file(be, "f", "", 0, NULL, NULL), 0);
	ck_assert_int_eq(be_resent_answer(be, &alice, &(struct be_resent){
		.op = BE_RESENT_MKDIR, .dir = root, .name = "f" }, -EEXIST,
		NULL, NULL), -EEXIST);
	be_node_put(be, n);
}
END_TEST

START_TEST(test_create_resent)
{
	const uint32_t verf[2] = { 0x1234567, 42 };
	struct be_setattr sa = { .valid = BE_SET_ATIME | BE_SET_MTIME };
	struct be_node *n, *got = NULL;
	int rc;

	/* the first send: the server made the file and kept the verifier
	 * in its atime and mtime */
	ck_assert_int_eq(be->ops->create(be, &alice, root, "f", 0644, 1, &n,
					 NULL), 0);
	sa.atime.tv_sec = verf[0];
	sa.mtime.tv_sec = verf[1];
	ck_assert_int_eq(be->ops->setattr(be, &alice, n, &sa, NULL), 0);
	rc = be->ops->create(be, &alice, root, "f", 0644, 1, NULL, NULL);
	ck_assert_int_eq(rc, -EEXIST);
	ck_assert_int_eq(be_resent_answer(be, &alice, &(struct be_resent){
		.op = BE_RESENT_CREATE, .dir = root, .name = "f",
		.verf = { verf[0], verf[1] } }, rc, &got, NULL), 0);
	ck_assert(be_node_same(got, n));
	be_node_put(be, got);
	/* another create's verifier: O_EXCL must fail */
	ck_assert_int_eq(be_resent_answer(be, &alice, &(struct be_resent){
		.op = BE_RESENT_CREATE, .dir = root, .name = "f",
		.verf = { verf[0], verf[1] + 1 } }, rc, NULL, NULL), -EEXIST);
	be_node_put(be, n);
}
END_TEST

static Suite *resend_suite(void)
{
	Suite *s = suite_create("resend");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_remove_resent);
	tcase_add_test(tc, test_rename_resent);
	tcase_add_test(tc, test_link_resent);
	tcase_add_test(tc, test_mkdir_resent);
	tcase_add_test(tc, test_create_resent);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(resend_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
