#!/usr/bin/env bash
# Two nodes, one backend (issue 5 "consistency", issue 8 "two nodes"): two
# daemons, each with its own cache_dir, mount the same export subdir at two
# mountpoints (A and B), standing in for two compute nodes.
#
# 1. A file written and closed on A reads right on B.
# 2. Rewritten on B (other size, then same size other bytes): A reopens
#    and sees B's version, not its stale cached one.
# 3. Concurrent writers of different files in one directory, one on each
#    node: every file of both survives, with its bytes.
# 4. Concurrent writers are not a conflict: A (flush_on_close=async)
#    writes 1 MiB at 1 MiB into a cached file while the server is frozen,
#    so its data stays dirty; another client writes 1 MiB at 4 MiB of the
#    same file directly in the export; thaw.  Both writes are on the
#    export, the rest of the file is untouched, and A reads the merged
#    file (its cached copy of the other client's range was dropped).
# 5. Identity: a file created right after another was unlinked gets the
#    unlinked file's inode number (fileid) from the backend's file system;
#    its data must still go to the new file (10 tries).
. "$(dirname "$0")/cache-lib.sh"
need_root
need_nfs
need_cmd python3
setup_tmp
verified=0

make_backend nfs
A=$TEST_TMP/mntA
B=$TEST_TMP/mntB
mount_stagefs "$BACKEND" "$A" "$TEST_TMP/cacheA"
mount_stagefs "$BACKEND" "$B" "$TEST_TMP/cacheB"

# 1. write+close on A, read on B
head -c $(( (9 << 20) + 333 )) /dev/urandom >"$TEST_TMP/v1"
cp "$TEST_TMP/v1" "$A/f"
[[ $(xxh "$B/f") == "$(xxh "$TEST_TMP/v1")" ]] || fail "B reads A's closed file wrong"
[[ $(xxh "$A/f") == "$(xxh "$TEST_TMP/v1")" ]] || fail "A reads its own file wrong"
verified=$((verified + 2 * $(stat -c %s "$TEST_TMP/v1")))
info "1: A wrote and closed, B reads it right"

# 2. B rewrites in place, A reopens: same size other bytes, then smaller
#    (open O_TRUNC of the existing file), then A rewrites and B reopens.
head -c $(( (9 << 20) + 333 )) /dev/urandom >"$TEST_TMP/v2"
cp "$TEST_TMP/v2" "$B/f"
[[ $(xxh "$A/f") == "$(xxh "$TEST_TMP/v2")" ]] \
	|| fail "A serves stale bytes after B rewrote the file with the same size"
verified=$((verified + $(stat -c %s "$TEST_TMP/v2")))
head -c $(( (5 << 20) + 77 )) /dev/urandom >"$TEST_TMP/v3"
cp "$TEST_TMP/v3" "$B/f"   # open(O_TRUNC) of the existing file, then write
bsize=$(stat -c %s "$BACKEND_DIR/f")
[[ $bsize -eq $(stat -c %s "$TEST_TMP/v3") ]] \
	|| fail "B rewrote f with $(stat -c %s "$TEST_TMP/v3") bytes (cp: open O_TRUNC + write) but the backend holds $bsize bytes (O_TRUNC lost?)"
got=$(xxh "$A/f")
[[ $got == "$(xxh "$TEST_TMP/v3")" ]] \
	|| fail "A serves a stale version after B rewrote the file (A sees $(stat -c %s "$A/f") bytes, B wrote $(stat -c %s "$TEST_TMP/v3"))"
verified=$((verified + $(stat -c %s "$TEST_TMP/v3")))
#    and back: A rewrites, B sees it
head -c $(( (7 << 20) + 1 )) /dev/urandom >"$TEST_TMP/v4"
cp "$TEST_TMP/v4" "$A/f"
[[ $(xxh "$B/f") == "$(xxh "$TEST_TMP/v4")" ]] || fail "B serves a stale version after A rewrote the file"
verified=$((verified + $(stat -c %s "$TEST_TMP/v4")))
info "2: rewrites on one node are seen by the other at the next open"

# 3. concurrent writers of different files in one directory
mkdir "$A/d"
writer() {   # writer MNT PREFIX
	local i
	for i in $(seq 1 25); do
		head -c $(( (i * 37 + 11) << 10 )) "$TEST_TMP/v1" >"$1/d/$2$i" || return 1
	done
}
writer "$A" a & pa=$!
writer "$B" b & pb=$!
wait "$pa" || fail "writer on A failed"
wait "$pb" || fail "writer on B failed"
for p in a b; do
	for i in $(seq 1 25); do
		n=$(( (i * 37 + 11) << 10 ))
		out=$(pyrun cmpslice "$BACKEND_DIR/d/$p$i" "$TEST_TMP/v1" 0 "$n") || fail "concurrent writers: $p$i: $out"
		verified=$((verified + n))
	done
done
la=$(ls "$A/d" | wc -l)
lb=$(ls "$B/d" | wc -l)
[[ $la -eq 50 && $lb -eq 50 ]] || fail "concurrent writers: A lists $la files, B lists $lb, expected 50"
info "3: 2 x 25 files written concurrently from both nodes, all there"

unmount_stagefs "$A" || fail "A: daemon exit status $?"
unmount_stagefs "$B" || fail "B: daemon exit status $?"

# 4. concurrent writers of disjoint ranges: both land
cacheA=$TEST_TMP/cacheA4
mount_stagefs "$BACKEND" "$A" "$cacheA" flush_on_close=async
head -c $((6 << 20)) /dev/urandom >"$TEST_TMP/base"
cp "$TEST_TMP/base" "$A/c"
sfs_flush "$A" 60
[[ $(xxh "$A/c") == "$(xxh "$TEST_TMP/base")" ]] || fail "writers: A reads its file wrong"
head -c $((1 << 20)) /dev/urandom >"$TEST_TMP/mine"
head -c $((1 << 20)) /dev/urandom >"$TEST_TMP/other"
python3 - "$A/c" "$TEST_TMP/mine" "$TEST_TMP/go" >"$TEST_TMP/w.out" 2>&1 <<'PY' &
import os, sys, time
path, src, go = sys.argv[1:4]
fd = os.open(path, os.O_WRONLY)
print("READY", flush=True)
while not os.path.exists(go):
    time.sleep(0.05)
os.pwrite(fd, open(src, "rb").read(), 1 << 20)
os.close(fd)
print("CLOSED", flush=True)
PY
wpid=$!
at_exit "kill $wpid 2>/dev/null || true"
release_frozen "$TEST_TMP/w.out" "$TEST_TMP/go" writers
wait_secs 30 grep -q CLOSED "$TEST_TMP/w.out" || fail "writers: write+close (async) did not return with the server frozen"
wait "$wpid" || fail "writers: writer failed: $(cat "$TEST_TMP/w.out")"
[[ $(ctr "$A" dirty_bytes) -eq $((1 << 20)) ]] \
	|| fail "writers: A has $(ctr "$A" dirty_bytes) dirty bytes, expected the 1 MiB it wrote"
# Another client writes another range (directly in the export).
python3 - "$BACKEND_DIR/c" "$TEST_TMP/other" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
os.pwrite(fd, open(sys.argv[2], "rb").read(), 4 << 20)
os.close(fd)
PY
thaw_nfs
sfs_flush "$A" 60
python3 - "$TEST_TMP/base" "$TEST_TMP/mine" "$TEST_TMP/other" "$TEST_TMP/want" <<'PY'
import sys
b = bytearray(open(sys.argv[1], "rb").read())
b[1 << 20:2 << 20] = open(sys.argv[2], "rb").read()
b[4 << 20:5 << 20] = open(sys.argv[3], "rb").read()
open(sys.argv[4], "wb").write(b)
PY
same_file "$TEST_TMP/want" "$BACKEND_DIR/c"
[[ $(xxh "$A/c") == "$(xxh "$TEST_TMP/want")" ]] \
	|| fail "writers: A does not read both writes after its own upload"
! grep -qi conflict "$(stagefs_log "$A")" || fail "writers: A's log speaks of a conflict"
verified=$((verified + (6 << 20)))
unmount_stagefs "$A" || fail "A: daemon exit status $?"
info "4: A's dirty range and another client's range of one file both landed"

# 5. fileid reuse after unlink
mount_stagefs "$BACKEND" "$A" "$TEST_TMP/cacheA5"
mkdir "$A/reuse"
lost=()
for i in $(seq 1 10); do
	echo "old file $i" >"$A/reuse/old$i"
	i1=$(stat -c %i "$A/reuse/old$i")
	rm "$A/reuse/old$i"
	timeout -k 5 60 bash -c "echo 'new file $i' >'$A/reuse/new$i'" || lost+=("new$i: the write or close failed or hung")
	i2=$(stat -c %i "$A/reuse/new$i")
	got=$(cat "$BACKEND_DIR/reuse/new$i" 2>&1 || true)
	[[ $got == "new file $i" ]] || lost+=("new$i (fileid $i2, the unlinked old$i had $i1): the backend holds '$got'")
done
[[ ${#lost[@]} -eq 0 ]] || fail "new files whose fileid an unlinked file had lost their acknowledged data (${#lost[@]} of 10):
$(printf '%s\n' "${lost[@]}")"
unmount_stagefs "$A" || fail "A: daemon exit status $?"
info "5: new files reusing an unlinked file's fileid keep their data"
info "ok: $verified bytes verified"
