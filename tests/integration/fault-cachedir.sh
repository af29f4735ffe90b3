#!/usr/bin/env bash
# Cache device trouble (issue 8 "cache device trouble"), nfs backend:
#
# 1. The cache fills up: the cache dir is a 96 MiB tmpfs (so cache_size and
#    dirty_max default to 80% and 40% of it), half full of clean data, and
#    a writer pushes 160 MiB with the NFS server frozen.  The writer waits
#    without an error, nothing acknowledged is dropped, and after the thaw
#    every byte lands on the backend.  Then, with the cache fs filled up
#    by another file, a file not cached reads right from the backend (no
#    ENOSPC from a read).
# 2. The cache dir is deleted under a running daemon: writes (to a new file
#    and to a cached one) fail with an error and the daemon logs it; they
#    do not silently succeed.  The daemon still exits when unmounted.
# 3. Damaged journal and index with dirty data at stake (three files
#    written and fsynced with fsync=local while the server is frozen, then
#    kill -9):
#    a. garbage between two journal records: the next start is refused with
#       a line that names the journal, and the journal is left as it was;
#    b. a damaged index header of a file with dirty data: start refused,
#       and its cached data is not destroyed by the refusal;
#    c. a damaged index slot of a dirty chunk: start refused (not silently
#       skipping that chunk's dirty data);
#    d. a torn last journal record (a partial record appended): accepted,
#       the log says so, and all the fsynced data reaches the backend.
. "$(dirname "$0")/cache-lib.sh"
need_root
need_nfs
need_cmd python3
setup_tmp
verified=0
# Failures of the independent checks of parts 2 and 3 are collected, so one
# run reports all of them; the test fails at the end if there are any.
declare -a problems=()
problem() { echo "PROBLEM: $*" >&2; problems+=("$*"); }
# start_refused WHAT OPTS...: stagefs on $cache must refuse to start.  Sets
# MOUNT_ERR; records a problem (instead of failing) if it mounts.
start_refused() {
	local what=$1 out=$TEST_TMP/refused.$RANDOM.log rc=0
	shift
	timeout 30 "$STAGEFS_BIN" -f -o "cache_dir=$cache,$(IFS=,; echo "$*")" "$BACKEND" "$mnt" </dev/null >"$out" 2>&1 &
	local pid=$!
	wait_secs 10 bash -c "! kill -0 $pid 2>/dev/null || grep -q ' $mnt ' /proc/mounts" || true
	if is_mounted "$mnt"; then
		problem "$what: the daemon started (mounted) instead of refusing"
		fusermount3 -u "$mnt" 2>/dev/null || fusermount3 -uz "$mnt" 2>/dev/null || true
	fi
	wait "$pid" || rc=$?
	MOUNT_ERR=$(grep -v ' info: ' "$out" || true)
	MOUNT_RC=$rc
	if [[ $rc -eq 0 ]]; then
		problem "$what: stagefs exited 0"
	fi
	info "$what: exit status $rc: $(tr '\n' '|' <<<"$MOUNT_ERR" | cut -c1-300)"
}
make_backend nfs
mnt=$TEST_TMP/mnt

# ------------------------------------------------------------ 1. cache fills
cfs=$TEST_TMP/cachefs
mkdir -p "$cfs"
mount -t tmpfs -o size=96m,mode=0700 tmpfs "$cfs" || skip "cannot mount a tmpfs"
at_exit "umount -l '$cfs' 2>/dev/null || true"
dd if=/dev/urandom of="$BACKEND_DIR/clean" bs=1M count=48 status=none
dd if=/dev/urandom of="$TEST_TMP/big" bs=1M count=160 status=none
# The daemon's write path: a passthrough writer on a full cache fs gets
# ENOSPC from the kernel instead of waiting (docs/tuning.md).
mount_stagefs "$BACKEND" "$mnt" "$cfs/cache" passthrough=off
[[ $(xxh "$mnt/clean") == "$(xxh "$BACKEND_DIR/clean")" ]] || fail "fill: clean file reads wrong"
python3 - "$mnt/big" "$TEST_TMP/big" "$TEST_TMP/go1" >"$TEST_TMP/w1.out" 2>&1 <<'PY' &
import os, sys, time
path, src, go = sys.argv[1:4]
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
print("READY", flush=True)
while not os.path.exists(go):
    time.sleep(0.05)
n = 0
with open(src, "rb") as f:
    while True:
        b = f.read(1 << 20)
        if not b:
            break
        try:
            os.write(fd, b)
        except OSError as e:
            print("ERR", n, e.errno, e.strerror, flush=True)
            sys.exit(1)
        n += len(b)
print("WRITTEN", n, flush=True)
os.close(fd)
print("CLOSED", flush=True)
PY
wpid=$!
at_exit "kill $wpid 2>/dev/null || true"
release_frozen "$TEST_TMP/w1.out" "$TEST_TMP/go1" fill
sleep 8
grep -q ERR "$TEST_TMP/w1.out" && fail "fill: a writer got an error while the cache was full: $(grep ERR "$TEST_TMP/w1.out")"
pid_alive "$wpid" || fail "fill: writer ended with the server frozen: $(cat "$TEST_TMP/w1.out")"
info "fill: writer waits; dirty_bytes=$(ctr "$mnt" dirty_bytes) cache_used_bytes=$(ctr "$mnt" cache_used_bytes); tmpfs: $(df -k --output=used,avail "$cfs" | tail -n1) KiB used/avail"
thaw_nfs
wait_secs 180 grep -q CLOSED "$TEST_TMP/w1.out" || fail "fill: writer did not finish within 180 s of the thaw: $(cat "$TEST_TMP/w1.out")"
wait "$wpid" || fail "fill: writer failed: $(cat "$TEST_TMP/w1.out")"
sfs_flush "$mnt" 120
[[ $(xxh "$mnt/clean") == "$(xxh "$BACKEND_DIR/clean")" ]] || fail "fill: clean file reads wrong after the fill"
unmount_stagefs "$mnt" || fail "fill: daemon exit status $?"
same_file "$TEST_TMP/big" "$BACKEND_DIR/big"
verified=$((verified + (160 << 20) + (96 << 20)))
info "fill: ok, 160 MiB written through a full cache are on the backend"

# 1b. A read of a file the cache has no room for is served from the
# backend (each read fetches again), not failed with ENOSPC.
dd if=/dev/urandom of="$BACKEND_DIR/cold" bs=1M count=12 status=none
mount_stagefs "$BACKEND" "$mnt" "$cfs/cache"
avail=$(df -B1 --output=avail "$cfs" | tail -n1)
fallocate -l $((avail > 4096 ? avail - 4096 : 0)) "$cfs/filler" 2>/dev/null ||
	head -c "$avail" /dev/zero >"$cfs/filler" 2>/dev/null || true
info "full read: tmpfs $(df -k --output=used,avail "$cfs" | tail -n1) KiB used/avail"
[[ $(xxh "$mnt/cold") == "$(xxh "$BACKEND_DIR/cold")" ]] ||
	fail "full read: a read of a file not cached failed or read wrong on a full cache fs"
rm -f "$cfs/filler"
unmount_stagefs "$mnt" || fail "full read: daemon exit status $?"
verified=$((verified + (12 << 20)))
info "full read: ok, 12 MiB read from the backend through a full cache fs"

# -------------------------------------------------- 2. cache dir deleted
cache=$TEST_TMP/cache2
mount_stagefs "$BACKEND" "$mnt" "$cache"
head -c $((3 << 20)) /dev/urandom >"$TEST_TMP/a"
cp "$TEST_TMP/a" "$mnt/a"
[[ $(xxh "$mnt/a") == "$(xxh "$TEST_TMP/a")" ]] || fail "deleted: a reads wrong"
log=$(stagefs_log "$mnt")
lines0=$(wc -l <"$log")
rm -rf "$cache"
ok_new=0 ok_old=0
head -c $((2 << 20)) /dev/urandom >"$TEST_TMP/b"
python3 - "$mnt/b" "$TEST_TMP/b" 2>"$TEST_TMP/b.err" <<'PY' && ok_new=1
import os, sys
try:
    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, open(sys.argv[2], "rb").read())
    os.close(fd)
except OSError as e:
    sys.exit(f"errno {e.errno} ({e.strerror}) from {e.filename or 'write/close'}")
PY
head -c $((1 << 20)) /dev/urandom >"$TEST_TMP/a2"
python3 - "$mnt/a" "$TEST_TMP/a2" 2>"$TEST_TMP/a.err" <<'PY' && ok_old=1
import os, sys
try:
    fd = os.open(sys.argv[1], os.O_WRONLY)
    os.pwrite(fd, open(sys.argv[2], "rb").read(), 1 << 20)
    os.fsync(fd)
    os.close(fd)
except OSError as e:
    sys.exit(f"errno {e.errno} ({e.strerror})")
PY
sleep 1
newlog=$(tail -n +"$((lines0 + 1))" "$log")
info "deleted: new file write: $([[ $ok_new == 1 ]] && echo succeeded || tail -n1 "$TEST_TMP/b.err"); cached file write+fsync: $([[ $ok_old == 1 ]] && echo succeeded || tail -n1 "$TEST_TMP/a.err")"
info "deleted: daemon log since the deletion: $(head -n 3 <<<"$newlog" | cut -c1-200 | tr '\n' '|')"
st=0
unmount_stagefs "$mnt" || st=$?
[[ $st -ne 137 ]] || fail "deleted: the daemon hung at unmount after its cache dir was deleted"
# Each write either failed, or its bytes are on the backend (fsync=backend
# and a sync close say so); either way the daemon must say what happened.
if [[ $ok_new == 1 ]]; then
	same_file "$TEST_TMP/b" "$BACKEND_DIR/b"
elif ! grep -q '^errno 5 ' "$TEST_TMP/b.err"; then
	problem "deleted cache dir: creating+writing a new file failed with $(tail -n1 "$TEST_TMP/b.err"), expected EIO"
fi
if [[ $ok_old == 0 ]] && ! grep -q '^errno 5 ' "$TEST_TMP/a.err"; then
	problem "deleted cache dir: write+fsync of a cached file failed with $(tail -n1 "$TEST_TMP/a.err"), expected EIO"
fi
if [[ $ok_old == 1 ]]; then
	python3 - "$BACKEND_DIR/a" "$TEST_TMP/a" "$TEST_TMP/a2" <<'PY' || fail "deleted: a write+fsync to a cached file succeeded after the cache dir was deleted, but its bytes are not on the backend"
import sys
got = open(sys.argv[1], "rb").read(); old = open(sys.argv[2], "rb").read(); new = open(sys.argv[3], "rb").read()
want = old[:1 << 20] + new + old[2 << 20:]
sys.exit(0 if got == want else 1)
PY
fi
grep -qE ' (error|warning): ' <<<"$newlog" \
	|| problem "deleted: the cache dir was deleted under the daemon and it logged no error or warning (new file write: $([[ $ok_new == 1 ]] && echo succeeded || echo failed), cached file write+fsync: $([[ $ok_old == 1 ]] && echo succeeded || echo failed))"
info "deleted: done (exit status $st)"

# ------------------------------------------------ 3. journal and index damage
cache=$TEST_TMP/cache3
mount_stagefs "$BACKEND" "$mnt" "$cache" fsync=local flush_on_close=async
for i in 1 2 3; do
	head -c $(( (i << 22) + 4097 * i )) /dev/urandom >"$TEST_TMP/j$i"
	touch "$mnt/j$i"
done
python3 - "$mnt" "$TEST_TMP" "$TEST_TMP/go3" >"$TEST_TMP/w3.out" 2>&1 <<'PY' &
import os, sys, time
mnt, tmp, go = sys.argv[1:4]
fds = [os.open(os.path.join(mnt, f"j{i}"), os.O_WRONLY) for i in (1, 2, 3)]
print("READY", flush=True)
while not os.path.exists(go):
    time.sleep(0.05)
for i, fd in zip((1, 2, 3), fds):
    os.pwrite(fd, open(os.path.join(tmp, f"j{i}"), "rb").read(), 0)
    os.fsync(fd)
    os.close(fd)
print("FSYNCED", flush=True)
PY
wpid3=$!
at_exit "kill $wpid3 2>/dev/null || true"
release_frozen "$TEST_TMP/w3.out" "$TEST_TMP/go3" journal
wait_secs 60 grep -q FSYNCED "$TEST_TMP/w3.out" || fail "journal: fsync=local did not return with the server frozen"
wait "$wpid3" || fail "journal: writer failed: $(cat "$TEST_TMP/w3.out")"
[[ $(ctr "$mnt" dirty_bytes) -gt 0 ]] || fail "journal: nothing dirty"
crash_stagefs "$mnt"
thaw_nfs
pristine=$TEST_TMP/cache3.pristine
cp -a "$cache" "$pristine"
restore() { rm -rf "$cache"; cp -a "$pristine" "$cache"; }
jsize=$(stat -c %s "$cache/journal")
[[ $jsize -gt 0 ]] || fail "journal: the journal is empty with dirty data in the cache"

# a. garbage between two records
python3 - "$cache/journal" <<'PY' || fail "journal: cannot place garbage"
import os, sys
p = sys.argv[1]
b = open(p, "rb").read()
starts = [i for i in range(len(b)) if b.startswith(b"SGSJ", i)]
if len(starts) >= 3:
    at = starts[len(starts) // 2]
    print(f"journal: {len(starts)} records; garbage before the one at offset {at}")
else:
    at = len(b) // 2
    print(f"journal: record boundaries unknown; garbage at the middle, offset {at}")
open(p, "wb").write(b[:at] + bytes(range(7, 7 + 40)) + b[at:])
PY
jsum=$(xxh "$cache/journal")
start_refused "journal garbage" fsync=local flush_on_close=async
grep -qF "$cache/journal" <<<"$MOUNT_ERR" || problem "journal garbage: the refusal does not name the journal ($cache/journal): $MOUNT_ERR"
[[ $(xxh "$cache/journal") == "$jsum" ]] || problem "journal garbage: the refused start changed the journal"

# b. damaged index header of a file with dirty data
restore
idx=$(ls "$cache"/index/* | head -n1)
dat=$cache/data/${idx##*/}
dsum=$(xxh "$dat")
dsz=$(stat -c %s "$dat")
printf '\xff\xff\xff\xff' | dd of="$idx" bs=1 seek=16 conv=notrunc status=none
start_refused "index header damage" fsync=local flush_on_close=async
[[ -f "$dat" && $(stat -c %s "$dat") -eq $dsz && $(xxh "$dat") == "$dsum" ]] \
	|| problem "index header damage: the refused start destroyed the file's cached dirty data (data file now $(stat -c %s "$dat" 2>/dev/null || echo missing) bytes, was $dsz)"

# c. damaged index slot of a dirty chunk (the last slot of the file)
restore
idx=$(ls -S "$cache"/index/* | head -n1)
python3 - "$idx" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
end = os.fstat(fd).st_size
b = os.pread(fd, 1, end - 9)
os.pwrite(fd, bytes([b[0] ^ 0x5a]), end - 9)
os.close(fd)
PY
start_refused "index slot damage" fsync=local flush_on_close=async

# d. torn tail: accepted, and everything fsynced lands
restore
python3 - "$cache/journal" <<'PY'
import sys
p = sys.argv[1]
b = open(p, "rb").read()
starts = [i for i in range(len(b)) if b.startswith(b"SGSJ", i)]
last = starts[-1] if starts else 0
part = b[last:last + 21]
open(p, "ab").write(part)
PY
mount_stagefs "$BACKEND" "$mnt" "$cache" fsync=local flush_on_close=async
grep -qi torn "$(stagefs_log "$mnt")" || fail "torn tail: the daemon did not report the torn record"
sfs_flush "$mnt" 120
unmount_stagefs "$mnt" || fail "torn tail: daemon exit status $?"
for i in 1 2 3; do
	out=$(pyrun cmpslice "$BACKEND_DIR/j$i" "$TEST_TMP/j$i" 0 "$(stat -c %s "$TEST_TMP/j$i")") \
		|| { problem "torn tail: fsynced file j$i did not reach the backend intact after the restart: $out"; continue; }
	verified=$((verified + $(stat -c %s "$TEST_TMP/j$i")))
done
info "$verified bytes verified"
if [[ ${#problems[@]} -gt 0 ]]; then
	fail "$(printf '%s\n' "${#problems[@]} problems:" "${problems[@]}")"
fi
info "ok"
