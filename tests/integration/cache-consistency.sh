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
# 4. Write-back conflict: A (flush_on_close=async) writes a file while the
#    server is frozen, so its data stays dirty; the same file is changed
#    directly in the export; thaw.  A detects the conflict: the log says
#    "conflict", the conflicts counter is 1, the backend keeps the other
#    version, and A's version is in A's cache_dir/conflicts/.
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

# 4. write-back conflict
cacheA=$TEST_TMP/cacheA4
mount_stagefs "$BACKEND" "$A" "$cacheA" flush_on_close=async
head -c $((6 << 20)) /dev/urandom >"$TEST_TMP/base"
cp "$TEST_TMP/base" "$A/c"
sfs_flush "$A" 60
head -c $((6 << 20)) /dev/urandom >"$TEST_TMP/mine"
head -c $(( (3 << 20) + 5 )) /dev/urandom >"$TEST_TMP/other"
python3 - "$A/c" "$TEST_TMP/mine" "$TEST_TMP/go" >"$TEST_TMP/w.out" 2>&1 <<'PY' &
import os, sys, time
path, src, go = sys.argv[1:4]
fd = os.open(path, os.O_WRONLY)
print("READY", flush=True)
while not os.path.exists(go):
    time.sleep(0.05)
os.pwrite(fd, open(src, "rb").read(), 0)
os.close(fd)
print("CLOSED", flush=True)
PY
wpid=$!
at_exit "kill $wpid 2>/dev/null || true"
release_frozen "$TEST_TMP/w.out" "$TEST_TMP/go" conflict
wait_secs 30 grep -q CLOSED "$TEST_TMP/w.out" || fail "conflict: write+close (async) did not return with the server frozen"
wait "$wpid" || fail "conflict: writer failed: $(cat "$TEST_TMP/w.out")"
[[ $(ctr "$A" dirty_bytes) -gt 0 ]] || fail "conflict: A has nothing dirty"
# Another client changes the file (directly in the export).
cp "$TEST_TMP/other" "$BACKEND_DIR/c"
thaw_nfs
wait_secs 60 grep -q conflict "$(stagefs_log "$A")" \
	|| fail "conflict: A's log has no 'conflict' line within 60 s of the thaw"
sfs_flush "$A" 60
n=$(ctr "$A" conflicts)
[[ $n -eq 1 ]] || fail "conflict: the conflicts counter is $n, expected 1"
same_file "$TEST_TMP/other" "$BACKEND_DIR/c"
kept=$(ls "$cacheA"/conflicts/*.data 2>/dev/null | head -n1)
[[ -n "$kept" ]] || fail "conflict: nothing in $cacheA/conflicts/ ($(ls "$cacheA/conflicts"))"
out=$(python3 - "$kept" "$TEST_TMP/mine" <<'PY'
import sys
a = open(sys.argv[1], "rb").read(); b = open(sys.argv[2], "rb").read()
print("ok" if a[:len(b)] == b else f"kept {len(a)} bytes, differs from A's {len(b)}")
PY
)
[[ $out == ok ]] || fail "conflict: A's version in conflicts/ is wrong: $out"
verified=$((verified + (6 << 20) + (3 << 20) + 5))
# A now shows the backend's version.
[[ $(xxh "$A/c") == "$(xxh "$TEST_TMP/other")" ]] || fail "conflict: A still serves its own version after the conflict"
grep conflict "$(stagefs_log "$A")" | head -n1 | sed 's/^/  log: /'
unmount_stagefs "$A" || fail "A: daemon exit status $?"

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
