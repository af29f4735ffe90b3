#!/usr/bin/env bash
# Junctions: three backends (an nfs export subdir and two directories) in
# one tree; renames across junctions get EXDEV, virtual directories refuse
# changes, bad namespace files stop the mount with file, line and reason,
# and tools/lfs runs the common job-script lines against the mount.
. "$(dirname "$0")/lib.sh"
need_nfs
setup_tmp
LFS=$SRC_ROOT/tools/lfs
export STAGEFSCTL=$STAGEFSCTL_BIN

nfs_subdir users
users_dir=$NFS_SUBDIR_PATH
mkdir -p "$TEST_TMP/projA" "$TEST_TMP/projB"
ns=$TEST_TMP/ns.conf
cat >"$ns" <<NS
# path in mount    backend
/users             $NFS_SUBDIR_URL
/projects/a        $TEST_TMP/projA
/projects/b        $TEST_TMP/projB
NS
mnt=$TEST_TMP/lus
mount_stagefs lus-h-scratch01 "$mnt" "$TEST_TMP/cache" "namespace=$ns"

[[ $(ls "$mnt" | tr '\n' ' ') == "projects users " ]] || fail "root lists: $(ls "$mnt")"
[[ $(ls "$mnt/projects" | tr '\n' ' ') == "a b " ]] || fail "projects lists: $(ls "$mnt/projects")"
[[ -d $mnt/users && -d $mnt/projects/a ]] || fail "junction points are not directories"

echo one >"$mnt/users/u.txt"
echo two >"$mnt/projects/a/a.txt"
echo three >"$mnt/projects/b/b.txt"
[[ $(cat "$users_dir/u.txt") == one ]] || fail "users junction did not land on the nfs export"
[[ $(cat "$TEST_TMP/projA/a.txt") == two ]] || fail "projects/a junction did not land"
[[ $(cat "$TEST_TMP/projB/b.txt") == three ]] || fail "projects/b junction did not land"

# rename across junctions: EXDEV (python shows the errno plainly)
err=$(python3 -c 'import os,sys; os.rename(sys.argv[1], sys.argv[2])' \
	"$mnt/projects/a/a.txt" "$mnt/projects/b/a.txt" 2>&1) && fail "rename across junctions succeeded"
[[ $err == *"Invalid cross-device link"* ]] || fail "cross-junction rename: $err"
# within one junction it works
mv "$mnt/projects/a/a.txt" "$mnt/projects/a/a2.txt"
# virtual directories refuse changes
err=$(touch "$mnt/newfile" 2>&1) && fail "created a file in a virtual directory"
[[ $err == *"not permitted"* ]] || fail "create in virtual dir: $err"
err=$(rmdir "$mnt/users" 2>&1) && fail "removed a junction point"
[[ $err == *"busy"* ]] || fail "rmdir of a junction: $err"

# lfs, as job scripts use it
"$LFS" setstripe -c 8 -S 4M "$mnt/users/striped.dat" 2>"$TEST_TMP/lfs.err" || fail "lfs setstripe failed"
[[ -f $mnt/users/striped.dat ]] || fail "lfs setstripe did not create the file"
grep -q "managed by the backend" "$TEST_TMP/lfs.err" || fail "setstripe does not say striping is managed by the backend"
out=$("$LFS" getstripe "$mnt/users/striped.dat") || fail "lfs getstripe failed"
[[ $out == *"lmm_stripe_count:  1"* && $out == *"managed by the backend"* ]] \
	|| fail "lfs getstripe: $out"
[[ $("$LFS" getstripe -c "$mnt/users/striped.dat") == 1 ]] || fail "lfs getstripe -c"
"$LFS" df -h "$mnt" >"$TEST_TMP/df.out" || fail "lfs df failed"
cat "$TEST_TMP/df.out"
for j in users a b; do
	grep -q "^$j-" "$TEST_TMP/df.out" || fail "lfs df has no row for junction $j"
done
found=$("$LFS" find "$mnt" -type f -name '*.txt' | sort | tr '\n' ' ')
[[ $found == "$mnt/projects/a/a2.txt $mnt/projects/b/b.txt $mnt/users/u.txt " ]] \
	|| fail "lfs find -name: $found"
[[ -z $("$LFS" find "$mnt" -type f -size +1M) ]] || fail "lfs find -size +1M found small files"
[[ $("$LFS" find "$mnt" -type f -mtime -1) == *u.txt* ]] || fail "lfs find -mtime -1"
err=$("$LFS" find "$mnt" --ost 3 2>&1) && fail "lfs find --ost was accepted"
[[ $err == *"not emulated"* ]] || fail "lfs find --ost: $err"
err=$("$LFS" hsm_archive "$mnt/users/u.txt" 2>&1) && fail "lfs hsm_archive was accepted"
[[ $err == *"not emulated"* ]] || fail "lfs hsm_archive: $err"

unmount_stagefs "$mnt" || fail "daemon exit status $?"

# bad namespace files: file, line, reason; nothing mounted
bad() {
	local pattern=$1
	printf '%b' "$2" >"$TEST_TMP/bad.ns"
	mount_should_fail lus "$TEST_TMP/mnt-bad" "$TEST_TMP/cache" "namespace=$TEST_TMP/bad.ns"
	[[ $MOUNT_ERR == *"$TEST_TMP/bad.ns$pattern"* ]] || fail "bad namespace ($pattern): $MOUNT_ERR"
	info "refused: $MOUNT_ERR"
}
bad ":2: junction '/p/q' overlaps '/p'" "/p $TEST_TMP/projA\n/p/q $TEST_TMP/projB\n"
bad ":1: path '/p/../q'" "/p/../q $TEST_TMP/projA\n"
bad ":1: backend '$TEST_TMP/../etc'" "/p $TEST_TMP/../etc\n"
bad ":3: expected" "# c\n/p $TEST_TMP/projA\n/q\n"
bad ":2: backend '$TEST_TMP/projA' is already" "/p $TEST_TMP/projA\n/q $TEST_TMP/projA\n"
bad ":1: backend 'relative'" "/p relative\n"
info "ok"
