#!/usr/bin/env bash
# Real tools through the mount, on both backends (issue 4, "Done when"):
#   tar x      of a tarball holding hard links, symlinks, a sparse file, a
#              fifo, odd names, owners, old mtimes and (posix) user xattrs
#   cp -a      of the same tree
#   rsync -aH  (-aHAX on posix) of the same tree, then a second rsync that
#              must find nothing to do (sizes and mtimes kept)
#   git clone  of a local repository with a few commits, git fsck, a commit
#              made on the mount, and a clone back out of the mount
#   make       of a small C program with gcc, run it, then an incremental
#              rebuild that recompiles only the touched file
# and after each, diff -r against the source, plus the metadata diff -r does
# not see (type, mode, owner, size, mtime, link count, symlink target,
# xattrs).  After unmounting, the copies on the backend are checked too.
#
# Each failed check is reported (CHECK FAILED: ...) and the test goes on;
# it fails at the end if any check failed.
. "$(dirname "$0")/lib.sh"
need_root
need_cmd tar
need_cmd rsync
need_cmd git
need_cmd make
need_cmd gcc
need_cmd getfattr attr
need_cmd setfattr attr
setup_tmp
trap '[[ $BASHPID == "$$" ]] && _lib_err $? $LINENO "$BASH_COMMAND"' ERR

NBAD=0
declare -a BAD=()
bad() {
	NBAD=$((NBAD + 1))
	BAD+=("$KIND: $*")
	echo "CHECK FAILED: $KIND: $*" >&2
}

# ---------------------------------------------------------------- the source

SRC=$TEST_TMP/src
mkdir -p "$SRC"/{a/b/c,empty,links,odd,sparse,modes}
head -c 1234567 /dev/urandom >"$SRC/a/random.bin"
head -c $((9 << 20)) /dev/urandom >"$SRC/a/b/big.bin" # > two 4M chunks
for i in $(seq 1 40); do echo "small file $i" >"$SRC/a/b/c/s$i.txt"; done
: >"$SRC/a/zero-length"
echo "linked" >"$SRC/links/h1"
ln "$SRC/links/h1" "$SRC/links/h2"
ln "$SRC/links/h1" "$SRC/a/h3" # a hard link in another dir
ln -s h1 "$SRC/links/rel"
ln -s ../a/b "$SRC/links/dir-link"
ln -s does/not/exist "$SRC/links/dangling"
ln -s /etc/hostname "$SRC/links/absolute"
mkfifo "$SRC/links/fifo"
echo spaces >"$SRC/odd/name with spaces"
echo unicode >"$SRC/odd/ünïcødé-名前"
echo dash >"$SRC/odd/-leading-dash"
echo dots >"$SRC/odd/..dots.."
printf 'head' >"$SRC/sparse/s"
printf 'mid' | dd of="$SRC/sparse/s" bs=1 seek=$((10 << 20)) conv=notrunc status=none
truncate -s $((50 << 20)) "$SRC/sparse/s"
truncate -s $((8 << 20)) "$SRC/sparse/all-hole"
echo x >"$SRC/modes/0600" && chmod 0600 "$SRC/modes/0600"
echo x >"$SRC/modes/0755" && chmod 0755 "$SRC/modes/0755"
echo x >"$SRC/modes/4755" && chmod 4755 "$SRC/modes/4755"
echo x >"$SRC/modes/0444" && chmod 0444 "$SRC/modes/0444"
mkdir "$SRC/modes/d0700" && chmod 0700 "$SRC/modes/d0700"
mkdir "$SRC/modes/d2775" && chmod 2775 "$SRC/modes/d2775"
echo owned >"$SRC/modes/owned" && chown 4001:4002 "$SRC/modes/owned"
mkdir "$SRC/modes/dir-owned" && chown 4003:4004 "$SRC/modes/dir-owned"
ln -s owned "$SRC/modes/link-owned" && chown -h 4005:4006 "$SRC/modes/link-owned"
# user xattrs (used on posix only)
setfattr -n user.color -v blue "$SRC/a/random.bin"
setfattr -n user.empty "$SRC/a/random.bin"
setfattr -n user.bin -v 0x00ff10 "$SRC/links/h1"
setfattr -n user.dir -v yes "$SRC/a/b"
# old mtimes (ns precision), on everything but symlinks
find "$SRC" -mindepth 1 ! -type l -print0 | xargs -0 touch -h -d '2019-03-04 05:06:07.123456789 UTC'
touch -d '2001-01-01 UTC' "$SRC/a/random.bin"
touch -d '2002-02-02 02:02:02.5 UTC' "$SRC/a/b" "$SRC"

TARBALL=$TEST_TMP/src.tar
tar --xattrs --xattrs-include='user.*' --sparse --format=posix -cf "$TARBALL" -C "$SRC" .

# meta DIR: one line per entry (not the root) with what diff -r does not
# compare: type, mode, owner, size and mtime (seconds) of non-links, link
# count of files, target and owner of symlinks.
meta() {
	(cd "$1" && find . -mindepth 1 \( -type l -printf '%p %y %U:%G -> %l\n' \) \
		-o \( -type f -printf '%p %y %m %U:%G %s %n %Ts\n' \) \
		-o \( -printf '%p %y %m %U:%G %Ts\n' \) | LC_ALL=C sort)
}
# xattrs DIR: the user xattrs of every non-link entry.
xattrs() {
	(cd "$1" && find . -mindepth 1 ! -type l -print0 | LC_ALL=C sort -z |
		xargs -0 getfattr --absolute-names -d -m '^user\.' -- 2>/dev/null)
}

# same_tree WHAT COPY [xattrs]: diff -r, metadata and (posix) xattrs.
same_tree() {
	local what=$1 copy=$2 out
	# diff -r compares files and symlink targets; it calls two fifos a
	# difference (meta checks the fifo's type)
	out=$(diff -r --no-dereference -x fifo "$SRC" "$copy" 2>&1) || bad "$what: diff -r differs: $(echo "$out" | head -5)"
	out=$(diff <(meta "$SRC") <(meta "$copy") 2>&1) || bad "$what: metadata differs: $(echo "$out" | head -8)"
	if [[ "${3:-}" == xattrs ]]; then
		out=$(diff <(xattrs "$SRC") <(xattrs "$copy") 2>&1) || bad "$what: xattrs differ: $(echo "$out" | head -8)"
	fi
	# hard links are one inode in the copy
	local i1 i2 i3
	i1=$(stat -c %i "$copy/links/h1" 2>&1) || true
	i2=$(stat -c %i "$copy/links/h2" 2>&1) || true
	i3=$(stat -c %i "$copy/a/h3" 2>&1) || true
	[[ $i1 == "$i2" && $i1 == "$i3" ]] || bad "$what: hard links are not one inode: $i1 $i2 $i3"
}

# ---------------------------------------------------------------- git repo

REPO=$TEST_TMP/repo
git init -q -b main "$REPO"
git -C "$REPO" config user.email t@example.com
git -C "$REPO" config user.name tester
for i in 1 2 3 4 5; do
	echo "line $i" >>"$REPO/file.txt"
	head -c $((i * 100000)) /dev/urandom >"$REPO/blob$i.bin"
	mkdir -p "$REPO/dir$i"
	echo "$i" >"$REPO/dir$i/n"
	[[ $i == 2 ]] && ln -s file.txt "$REPO/link"
	[[ $i == 3 ]] && { printf '#!/bin/sh\necho hi\n' >"$REPO/run.sh"; chmod +x "$REPO/run.sh"; }
	[[ $i == 4 ]] && git -C "$REPO" rm -q "blob1.bin"
	git -C "$REPO" add -A
	git -C "$REPO" commit -q -m "commit $i"
done
git -C "$REPO" tag v1
git -C "$REPO" gc -q # packs and loose objects both
echo "loose" >"$REPO/loose.txt"
git -C "$REPO" add loose.txt
git -C "$REPO" commit -q -m "commit 6"
NCOMMITS=$(git -C "$REPO" rev-list --count HEAD)
HEAD_ID=$(git -C "$REPO" rev-parse HEAD)

# ---------------------------------------------------------------- C program

PROG=$TEST_TMP/prog
mkdir -p "$PROG"
cat >"$PROG/util.h" <<'EOF'
int add(int a, int b);
EOF
cat >"$PROG/util.c" <<'EOF'
#include "util.h"
int add(int a, int b) { return a + b; }
EOF
cat >"$PROG/main.c" <<'EOF'
#include <stdio.h>
#include "util.h"
int main(void) { printf("%d\n", add(40, 2)); return 0; }
EOF
cat >"$PROG/Makefile" <<'EOF'
prog: main.o util.o
	$(CC) -o $@ main.o util.o
%.o: %.c util.h
	$(CC) -O2 -c -o $@ $<
clean:
	rm -f prog *.o
EOF
touch -d '2020-01-01 UTC' "$PROG"/*

# ---------------------------------------------------------------- per backend

for KIND in $(backends); do
	[[ $KIND == nfs ]] && need_nfs
	make_backend "$KIND"
	MNT=$TEST_TMP/mnt.$KIND
	mount_stagefs "$BACKEND" "$MNT" "$TEST_TMP/cache.$KIND"
	nbad_before=$NBAD
	if [[ $KIND == posix ]]; then XA=xattrs; else XA=; fi

	# tar x
	info "$KIND: tar x"
	mkdir "$MNT/tar"
	if [[ $KIND == posix ]]; then
		tar_opts=(--xattrs --xattrs-include='user.*')
	else
		tar_opts=(--no-xattrs)
	fi
	out=$(tar "${tar_opts[@]}" --same-owner -xpf "$TARBALL" -C "$MNT/tar" 2>&1) || bad "tar x failed: $out"
	[[ -z $out ]] || bad "tar x said: $(echo "$out" | head -5)"
	same_tree "tar x" "$MNT/tar" $XA

	# cp -a
	info "$KIND: cp -a"
	out=$(cp -a "$SRC" "$MNT/cp" 2>&1) || bad "cp -a failed: $(echo "$out" | head -5)"
	[[ -z $out ]] || bad "cp -a said: $(echo "$out" | head -5)"
	same_tree "cp -a" "$MNT/cp" $XA

	# rsync
	# The test NFS server (ganesha VFS) does not set times on symlinks.
	if [[ $KIND == posix ]]; then rs_opts=(-aHAX); else rs_opts=(-aH --omit-link-times); fi
	info "$KIND: rsync ${rs_opts[*]}"
	out=$(rsync "${rs_opts[@]}" --numeric-ids "$SRC/" "$MNT/rsync/" 2>&1) \
		|| bad "rsync ${rs_opts[*]} failed: $(echo "$out" | head -5)"
	same_tree "rsync ${rs_opts[*]}" "$MNT/rsync" $XA
	out=$(rsync "${rs_opts[@]}" --numeric-ids -i "$SRC/" "$MNT/rsync/" 2>&1) \
		|| bad "second rsync failed: $(echo "$out" | head -5)"
	[[ -z $out ]] || bad "a second rsync found changes (sizes or mtimes not kept): $(echo "$out" | head -5)"
	# and back out of the mount into a native dir
	out=$(rsync "${rs_opts[@]}" --numeric-ids "$MNT/rsync/" "$TEST_TMP/back.$KIND/" 2>&1) \
		|| bad "rsync out of the mount failed: $(echo "$out" | head -5)"
	diff -r --no-dereference -x fifo "$SRC" "$TEST_TMP/back.$KIND" >/dev/null 2>&1 || bad "rsync out of the mount: diff -r differs"

	# git
	info "$KIND: git clone"
	out=$(git clone -q "file://$REPO" "$MNT/clone" 2>&1) || bad "git clone failed: $(echo "$out" | head -5)"
	out=$(git -C "$MNT/clone" fsck --full --strict 2>&1) || bad "git fsck failed: $(echo "$out" | head -5)"
	[[ $(git -C "$MNT/clone" rev-parse HEAD 2>&1) == "$HEAD_ID" ]] || bad "git clone: HEAD differs"
	[[ $(git -C "$MNT/clone" rev-list --count HEAD 2>&1) == "$NCOMMITS" ]] || bad "git clone: commit count differs"
	out=$(git -C "$MNT/clone" status --porcelain 2>&1) || true
	[[ -z $out ]] || bad "git status in the clone is not clean: $(echo "$out" | head -5)"
	out=$(diff -r --no-dereference -x .git "$REPO" "$MNT/clone" 2>&1) || bad "git clone: diff -r of the work tree differs: $(echo "$out" | head -5)"
	[[ -x "$MNT/clone/run.sh" && $("$MNT/clone/run.sh" 2>&1) == hi ]] || bad "git clone: run.sh is not executable"
	# a commit on the mount (index.lock, renames, object files), gc, fsck
	(
		cd "$MNT/clone"
		git config user.email t@example.com && git config user.name tester
		echo change >>file.txt && git commit -q -am "on the mount" && git gc -q
	) >"$TEST_TMP/git.out" 2>&1 || bad "git commit/gc on the mount failed: $(head -5 "$TEST_TMP/git.out")"
	out=$(git -C "$MNT/clone" fsck --full --strict 2>&1) || bad "git fsck after commit and gc failed: $(echo "$out" | head -5)"
	out=$(git clone -q "$MNT/clone" "$TEST_TMP/clone2.$KIND" 2>&1) || bad "git clone out of the mount failed: $(echo "$out" | head -5)"
	[[ $(git -C "$TEST_TMP/clone2.$KIND" rev-list --count HEAD 2>&1) == $((NCOMMITS + 1)) ]] \
		|| bad "clone of the clone: commit count differs"

	# make
	info "$KIND: make"
	cp -a "$PROG" "$MNT/make"
	out=$(make -C "$MNT/make" 2>&1) || bad "make failed: $(echo "$out" | tail -5)"
	[[ $("$MNT/make/prog" 2>&1) == 42 ]] || bad "the program built on the mount does not run: $("$MNT/make/prog" 2>&1 | head -2)"
	make -q -C "$MNT/make" prog || bad "make -q: not up to date right after make"
	sleep 1.1
	touch "$MNT/make/util.c"
	out=$(make -C "$MNT/make" 2>&1) || bad "incremental make failed: $(echo "$out" | tail -5)"
	[[ $out == *"-c -o util.o util.c"* && $out != *"main.o main.c"* ]] \
		|| bad "incremental make did not rebuild just util.o: $out"
	make -q -C "$MNT/make" prog || bad "make -q: not up to date after the incremental make"
	out=$(diff -r -x '*.o' -x prog "$PROG" "$MNT/make" 2>&1) || bad "make: diff -r of the sources differs: $(echo "$out" | head -5)"
	make -C "$MNT/make" clean >/dev/null 2>&1 || bad "make clean failed"

	# everything reaches the backend
	unmount_stagefs "$MNT" || bad "daemon exit status $? at unmount"
	info "$KIND: checking the backend"
	same_tree "tar x (backend)" "$BACKEND_DIR/tar" $XA
	same_tree "cp -a (backend)" "$BACKEND_DIR/cp" $XA
	same_tree "rsync (backend)" "$BACKEND_DIR/rsync" $XA
	out=$(git -C "$BACKEND_DIR/clone" fsck --full --strict 2>&1) || bad "git fsck on the backend failed: $(echo "$out" | head -5)"
	out=$(diff -r "$PROG" "$BACKEND_DIR/make" 2>&1) || bad "make dir on the backend differs: $(echo "$out" | head -5)"
	left=$(find "$BACKEND_DIR" -name '.stagefs*' | head -3)
	[[ -z $left ]] || bad "hidden files left on the backend: $left"
	info "$KIND: $((NBAD - nbad_before)) failed check(s)"
done

if [[ $NBAD -gt 0 ]]; then
	printf '  %s\n' "${BAD[@]}" >&2
	fail "$NBAD check(s) failed"
fi
info "ok"
