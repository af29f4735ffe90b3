/* SPDX-License-Identifier: GPL-2.0 */
/*
 * fuzz_namespace.c - libFuzzer target for the namespace file parser,
 * ns_parse_text() in fs/namespace.c, and the virtual tree ns_build()
 * makes from what it accepts.
 *
 * The input is the text of a namespace file (cut at the first NUL, as
 * ns_parse_file() refuses binary data).  Besides ASan/UBSan, the target
 * checks what the parser promises: an accepted file has at least one
 * junction, every path is absolute without empty, "." or ".." parts,
 * junctions neither nest nor repeat a backend, "/" is alone, and each
 * backend is an nfs:// URL or an absolute directory; a refusal writes a
 * message naming the file.
 *
 * namespace.c calls into inode.c (inode_enter() and friends); the stubs
 * below stand in for them so the target links namespace.c alone.  They
 * are never reached by the FUSE wrappers, which the target does not call.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs_int.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- stubs for inode.c --------------------------------------------- */

struct sfs_inode *inode_get(struct sfs *s, fuse_ino_t ino)
{
	return ino == FUSE_ROOT_ID ? s->root :
				     (struct sfs_inode *)(uintptr_t)ino;
}

fuse_ino_t inode_id(struct sfs *s, struct sfs_inode *ino)
{
	return ino == s->root ? FUSE_ROOT_ID : (fuse_ino_t)(uintptr_t)ino;
}

/* The junction inodes ns_build() asks for; freed by the target. */
static struct sfs_inode *entered[4096];
static int nentered;

struct sfs_inode *inode_enter(struct sfs *s, int be_idx, struct be_node *node)
{
	struct sfs_inode *ino;

	if (nentered == (int)(sizeof(entered) / sizeof(entered[0])))
		return NULL;
	ino = calloc(1, sizeof(*ino));
	if (!ino)
		return NULL;
	ino->be_idx = be_idx;
	ino->node = node;
	ino->nlookup = 1;
	entered[nentered++] = ino;
	return ino;
}

void inode_forget(struct sfs *s, struct sfs_inode *ino, uint64_t n)
{
	abort();	/* only the FUSE wrappers call it */
}

int make_entry(struct sfs *s, int be_idx, struct be_node *node,
	       struct be_attr *attr, struct fuse_entry_param *e)
{
	abort();	/* only the FUSE wrappers call it */
}

/* ---- invariants ------------------------------------------------------ */

static void check(int cond, const char *what, const char *text)
{
	if (!cond)
		fuzz_fail("fuzz_namespace: invariant broken: %s; input:\n%.512s",
			  what, text);
}

/* Absolute, no empty, "." or ".." component, "/" only alone. */
static int path_ok(const char *p)
{
	const char *c;

	if (p[0] != '/')
		return 0;
	if (!strcmp(p, "/"))
		return 1;
	for (c = p + 1;;) {
		const char *e = strchr(c, '/');
		size_t len = e ? (size_t)(e - c) : strlen(c);

		if (len == 0 || (len == 1 && c[0] == '.') ||
		    (len == 2 && c[0] == '.' && c[1] == '.'))
			return 0;
		if (!e)
			return 1;
		c = e + 1;
	}
}

/* Is one path a component prefix of the other (or equal)? */
static int nested(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	const char *s = la < lb ? a : b, *l = la < lb ? b : a;
	size_t ls = la < lb ? la : lb;

	if (!strcmp(a, "/") || !strcmp(b, "/"))
		return 1;
	return !strncmp(s, l, ls) && (l[ls] == '\0' || l[ls] == '/');
}

static void check_accepted(const struct ns_junction *j, int n,
			   const char *text)
{
	int a, b;

	check(n >= 1, "accepted a file without junctions", text);
	for (a = 0; a < n; a++) {
		check(j[a].path && j[a].backend, "NULL string", text);
		check(path_ok(j[a].path), "accepted a bad junction path", text);
		check(j[a].backend[0] == '/' ||
			      !strncmp(j[a].backend, "nfs://", 6),
		      "accepted a backend that is neither nfs:// nor absolute",
		      text);
		check(j[a].backend[0] != '/' || path_ok(j[a].backend),
		      "accepted a backend directory with '..' or empty parts",
		      text);
		check(strncmp(j[a].backend, "nfs://", 6) ||
			      !strstr(j[a].backend + 6, "/.."),
		      "accepted an nfs:// backend with '/..'", text);
		check(j[a].line >= 1, "line number below 1", text);
		for (b = 0; b < a; b++) {
			check(!nested(j[a].path, j[b].path),
			      "accepted nested or repeated junctions", text);
			check(strcmp(j[a].backend, j[b].backend),
			      "accepted one backend twice", text);
			check(j[b].line < j[a].line,
			      "junction lines out of order", text);
		}
	}
}

/* Build the virtual tree as the daemon does, then take it down. */
static void build_tree(const struct ns_junction *j, int n, const char *text)
{
	static struct be_node *roots[4096];
	struct sfs s;
	int k, rc;

	if (n > (int)(sizeof(roots) / sizeof(roots[0])))
		return;
	memset(&s, 0, sizeof(s));
	for (k = 0; k < n; k++)
		roots[k] = (struct be_node *)(uintptr_t)(0x1000 + 16 * k);
	nentered = 0;
	rc = ns_build(&s, j, n, roots);
	check(rc == 0 || rc == -ENOMEM, "ns_build failed on accepted input",
	      text);
	if (rc == 0) {
		check(s.root != NULL, "ns_build left no root", text);
		check(nentered == n, "ns_build entered a junction twice",
		      text);
		check((n == 1 && !strcmp(j[0].path, "/")) == (s.vroot == NULL),
		      "virtual root present iff the junctions are below /",
		      text);
		for (k = 0; k < nentered; k++)
			check(entered[k]->be_idx == k &&
				      entered[k]->node == roots[k],
			      "junction inode for the wrong backend", text);
	}
	ns_destroy(&s);
	for (k = 0; k < nentered; k++)
		free(entered[k]);
	nentered = 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ns_junction *j = NULL;
	char err[512];
	char *text;
	int n = -1, rc;

	if (size > (1 << 20))	/* ns_parse_file()'s limit */
		return 0;
	text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';

	err[0] = '\0';
	rc = ns_parse_text(text, "fuzz", &j, &n, err, sizeof(err));
	if (rc == 0) {
		check_accepted(j, n, text);
		build_tree(j, n, text);
		ns_free(j, n);
	} else {
		check(rc == -EINVAL || rc == -ENOMEM,
		      "refused with an unexpected error", text);
		check(rc == -ENOMEM || !strncmp(err, "namespace fuzz", 14),
		      "refusal without a message naming the file", text);
	}
	free(text);
	return 0;
}
