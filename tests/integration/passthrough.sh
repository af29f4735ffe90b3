#!/usr/bin/env bash
# FUSE passthrough (issue 12), through the mount on the real ganesha: the
# kernel reads and writes the cache data file itself.  The daemon's
# counters prove it saw no READ or WRITE (bytes_read_cache and
# bytes_written do not move), and the export still gets every byte, found
# by the rehash.
#
#  1. a new file written with dd: no WRITE reached the daemon, the export
#     has it at close; read back: no READ reached the daemon;
#  2. a long writer: its grown part is uploaded while the file is open;
#  3. fsync=backend: on the export when fsync returns;
#  4. mmap, O_APPEND, O_DIRECT, copy_file_range and sendfile through
#     passthrough opens;
#  5. kill -9 during a passthrough write (fsync=local, server frozen):
#     after the restart every fsynced byte reaches the export;
#  6. eviction under pressure never punches a file a passthrough reader
#     has open;
#  7. two nodes: a passthrough writer on A, a reader on B;
#  9. only what this node changed goes out, to the byte (after 7, on its
#     two mounts);
#  8. passthrough=off: every byte through the daemon again (copy_file_range
#     and sendfile too);
#     passthrough=bogus: one line, exit 1, nothing mounted;
# 10. no room for a passthrough writer: the daemon's path;
# 11. passthrough descriptors that outlive a kill -9 of the daemon;
# 12. 4 KiB writes over posix on ext4: no GETXATTR per write(2).
. "$(dirname "$0")/cache-lib.sh"
need_root
need_nfs
need_cmd python3
need_cmd setfattr attr
setup_tmp

# copy_check SRC CFR SF: copy SRC to CFR with copy_file_range and to SF
# with sendfile, a chunk at a time; both read back as SRC.
copy_check() {
	python3 - "$@" <<'PY'
import os, sys
path, cfr, sf = sys.argv[1:4]
src = open(path, "rb").read()
s = os.open(path, os.O_RDONLY)
for dst, copy in ((cfr, lambda t, off: os.copy_file_range(s, t, len(src) - off, off)),
                  (sf, lambda t, off: os.sendfile(t, s, off, len(src) - off))):
    t = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    off = 0
    while off < len(src):
        k = copy(t, off)
        assert k > 0, dst
        off += k
    os.close(t)
    assert open(dst, "rb").read() == src, dst
os.close(s)
PY
}

make_backend nfs
A=$TEST_TMP/mntA
mount_stagefs "$BACKEND" "$A" "$TEST_TMP/cacheA" passthrough=on
ctl "$A" status | grep -q "^passthrough on" \
	|| fail "status does not say passthrough is on: $(ctl "$A" status | grep passthrough)"

# 1. write and read without the daemon (and no GETXATTR per write)
head -c $((64 << 20)) /dev/urandom >"$TEST_TMP/src"
dd if="$TEST_TMP/src" of="$A/f" bs=1M status=none || fail "dd to a passthrough file failed"
[[ $(ctr "$A" bytes_written) -eq 0 ]] || fail "1: the daemon saw $(ctr "$A" bytes_written) bytes of WRITE"
# The kernel asks for security.capability before each write(2); the
# export holds no xattrs, so it learnt at the first that there are none.
[[ $(ctr "$A" be_xattr) -eq 0 ]] \
	|| fail "1: $(ctr "$A" be_xattr) xattr calls reached the backend during 64 writes"
[[ $(ctr "$A" passthrough_bytes_written) -eq $((64 << 20)) ]] \
	|| fail "1: the rehash found $(ctr "$A" passthrough_bytes_written) bytes, 64 MiB were written"
same_file "$TEST_TMP/src" "$BACKEND_DIR/f"
r0=$(ctr "$A" bytes_read_cache)
same_file "$TEST_TMP/src" "$A/f"
[[ $(ctr "$A" bytes_read_cache) -eq $r0 ]] || fail "1: the read back reached the daemon ($(ctr "$A" bytes_read_cache) bytes)"
[[ $(ctr "$A" passthrough_opens) -ge 2 ]] || fail "1: passthrough_opens is $(ctr "$A" passthrough_opens)"
# the requests themselves, as the kernel sent them
[[ $(ctr "$A" fuse_write) -eq 0 && $(ctr "$A" fuse_read) -eq 0 ]] \
	|| fail "1: the kernel sent $(ctr "$A" fuse_write) WRITE and $(ctr "$A" fuse_read) READ requests"
[[ $(ctr "$A" fuse_open) -ge 1 ]] || fail "1: fuse_open counts no OPEN (are requests counted?)"
info "1: 64 MiB written and read through passthrough; the daemon saw no READ or WRITE; export ok"

# 2. a long writer is uploaded while it writes
python3 - "$A/long" "$TEST_TMP/src" "$TEST_TMP/go2" >"$TEST_TMP/w2.out" 2>&1 <<'PY' &
import os, sys, time
path, src, go = sys.argv[1:4]
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.write(fd, open(src, "rb").read()[:32 << 20])
print("WRITTEN", flush=True)
while not os.path.exists(go):
    time.sleep(0.05)
os.close(fd)
PY
wpid=$!
at_exit "kill $wpid 2>/dev/null || true"
wait_secs 30 grep -q WRITTEN "$TEST_TMP/w2.out" || fail "2: the writer did not write"
wait_secs 30 counter_ge "$A" bytes_flushed $(((64 << 20) + (28 << 20))) \
	|| fail "2: an open passthrough writer's 32 MiB were not uploaded while open (bytes_flushed $(ctr "$A" bytes_flushed))"
touch "$TEST_TMP/go2"
wait "$wpid" || fail "2: writer failed: $(cat "$TEST_TMP/w2.out")"
cmp -s -n $((32 << 20)) "$TEST_TMP/src" "$BACKEND_DIR/long" || fail "2: the export differs"
info "2: a writer's grown part went out while the file was open"

# 3. fsync=backend: the data is on the export when fsync returns
python3 - "$A/fs" "$BACKEND_DIR/fs" <<'PY' || fail "3: fsync did not put the data on the export"
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
data = os.urandom(3 << 20)
os.write(fd, data)
os.fsync(fd)
ok = open(sys.argv[2], "rb").read() == data
os.close(fd)
sys.exit(0 if ok else 1)
PY
info "3: fsync through passthrough is on the export"

# 4. mmap, O_APPEND, O_DIRECT
python3 - "$A" <<'PY' || fail "4: mmap/O_APPEND/O_DIRECT through passthrough"
import mmap, os, sys
d = sys.argv[1]
fd = os.open(d + "/mm", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
os.ftruncate(fd, 1 << 20)
m = mmap.mmap(fd, 1 << 20)
m[4096:4096 + 11] = b"hello mmap!"
m.flush(); m.close(); os.close(fd)
assert open(d + "/mm", "rb").read()[4096:4107] == b"hello mmap!"
fd = os.open(d + "/ap", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
for i in range(100):
    os.write(fd, b"line %03d\n" % i)
os.close(fd)
assert open(d + "/ap", "rb").read() == b"".join(b"line %03d\n" % i for i in range(100))
fd = os.open(d + "/dio", os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o644)
buf = mmap.mmap(-1, 1 << 20)
buf.write(os.urandom(1 << 20))
os.pwrite(fd, buf, 0)
back = mmap.mmap(-1, 1 << 20)
os.preadv(fd, [back], 0)
assert back[:] == buf[:]
os.close(fd)
PY
python3 - "$BACKEND_DIR" <<'PY' || fail "4: the export lacks the mmap, append or O_DIRECT bytes"
import sys
d = sys.argv[1]
assert open(d + "/mm", "rb").read()[4096:4107] == b"hello mmap!"
assert open(d + "/ap", "rb").read() == b"".join(b"line %03d\n" % i for i in range(100))
PY
# copy_file_range and sendfile from a passthrough reader to passthrough
# writers: the kernel splices between the cache files (stagefs answers no
# COPY_FILE_RANGE), and still no READ or WRITE reaches the daemon
r0=$(ctr "$A" fuse_read) w0=$(ctr "$A" fuse_write)
copy_check "$A/f" "$A/cfr" "$A/sf" || fail "4: copy_file_range/sendfile through passthrough"
[[ $(ctr "$A" fuse_read) -eq $r0 && $(ctr "$A" fuse_write) -eq $w0 ]] \
	|| fail "4: copy_file_range/sendfile sent $(($(ctr "$A" fuse_read) - r0)) READ and $(($(ctr "$A" fuse_write) - w0)) WRITE requests"
same_file "$TEST_TMP/src" "$BACKEND_DIR/cfr"
same_file "$TEST_TMP/src" "$BACKEND_DIR/sf"
info "4: mmap, O_APPEND, O_DIRECT, copy_file_range and sendfile through passthrough opens"
unmount_stagefs "$A" || fail "A: daemon exit status $?"

# 5. kill -9 during a passthrough write: fsynced bytes survive
mount_stagefs "$BACKEND" "$A" "$TEST_TMP/cache5" passthrough=on fsync=local flush_on_close=async
head -c $((24 << 20)) /dev/urandom >"$TEST_TMP/src5"
python3 - "$A/crash" "$TEST_TMP/src5" "$TEST_TMP/go5" >"$TEST_TMP/w5.out" 2>&1 <<'PY' &
import os, sys, time
path, src, go = sys.argv[1:4]
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
print("READY", flush=True)
while not os.path.exists(go):
    time.sleep(0.05)
os.write(fd, open(src, "rb").read())
os.fsync(fd)
print("FSYNCED", flush=True)
time.sleep(600)
PY
wpid=$!
at_exit "kill $wpid 2>/dev/null || true"
release_frozen "$TEST_TMP/w5.out" "$TEST_TMP/go5" crash
wait_secs 30 grep -q FSYNCED "$TEST_TMP/w5.out" || fail "5: fsync=local did not return with the server frozen"
crash_stagefs "$A"
kill "$wpid" 2>/dev/null || true
wait "$wpid" 2>/dev/null || true
thaw_nfs
mount_stagefs "$BACKEND" "$A" "$TEST_TMP/cache5" passthrough=on
sfs_flush "$A" 120
same_file "$TEST_TMP/src5" "$BACKEND_DIR/crash"
grep -q "passthrough writer" "$(stagefs_log "$A")" || fail "5: the replay did not say it rehashed the file"
unmount_stagefs "$A" || fail "A: daemon exit status $?"
info "5: after kill -9 of a passthrough writer's daemon, the fsynced 24 MiB reached the export"

# 6. eviction never punches a file a passthrough reader has open
mount_stagefs "$BACKEND" "$A" "$TEST_TMP/cache6" passthrough=on cache_size=48M
head -c $((32 << 20)) "$TEST_TMP/src" >"$A/keep"
python3 - "$A/keep" "$TEST_TMP/go6" "$TEST_TMP/r6.out" <<'PY' &
import os, sys, time, hashlib
path, go, out = sys.argv[1:4]
fd = os.open(path, os.O_RDONLY)
while not os.path.exists(go):
    time.sleep(0.05)
h = hashlib.sha256()
off = 0
while True:
    b = os.pread(fd, 1 << 20, off)
    if not b:
        break
    h.update(b); off += len(b)
open(out, "w").write(h.hexdigest())
PY
rpid=$!
at_exit "kill $rpid 2>/dev/null || true"
sleep 1
for i in 1 2 3; do head -c $((32 << 20)) /dev/urandom >"$A/fill$i"; cat "$A/fill$i" >/dev/null; done
[[ $(ctr "$A" chunks_evicted) -gt 0 ]] || fail "6: nothing was evicted (cache_size 48M, 128 MiB written)"
touch "$TEST_TMP/go6"
wait "$rpid" || fail "6: the passthrough reader failed"
want=$(head -c $((32 << 20)) "$TEST_TMP/src" | sha256sum | cut -d' ' -f1)
[[ $(cat "$TEST_TMP/r6.out") == "$want" ]] || fail "6: a passthrough reader read wrong bytes after eviction pressure"
unmount_stagefs "$A" || fail "A: daemon exit status $?"
info "6: eviction left the open passthrough file alone"

# 7. two nodes
B=$TEST_TMP/mntB
mount_stagefs "$BACKEND" "$A" "$TEST_TMP/cache7a" passthrough=on
mount_stagefs "$BACKEND" "$B" "$TEST_TMP/cache7b" passthrough=on
head -c $((9 << 20)) /dev/urandom >"$TEST_TMP/v1"
cp "$TEST_TMP/v1" "$A/two"
same_file "$TEST_TMP/v1" "$B/two"
head -c $((5 << 20)) /dev/urandom >"$TEST_TMP/v2"
cp "$TEST_TMP/v2" "$B/two"
same_file "$TEST_TMP/v2" "$A/two"
info "7: passthrough writers and readers on two nodes hand files over at close and open"

# 9. only the bytes this node changed go out, to the byte: zeros written
#    over bytes already uploaded; a writer the kernel forces into
#    passthrough (a reader has the file open) that changes two parts of
#    a block with B's bytes between; and an fsync through the reader's
#    descriptor, which must upload the writer's bytes (fsync=backend)
python3 - "$A/zero" "$BACKEND_DIR/zero" <<'PY' || fail "9: zeros written over uploaded bytes did not reach the export"
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.write(fd, b"A" * 65536)
os.fsync(fd)
os.pwrite(fd, bytes(4096), 1000)
os.fsync(fd)
os.close(fd)
want = b"A" * 1000 + bytes(4096) + b"A" * (65536 - 5096)
sys.exit(0 if open(sys.argv[2], "rb").read() == want else 1)
PY
python3 -c 'import sys; open(sys.argv[1], "wb").write(b"x" * 65536)' "$A/runs"
o0=$(ctr "$A" passthrough_opens)
python3 - "$A/runs" "$B/runs" "$BACKEND_DIR/runs" <<'PY' || fail "9: the forced writer's two runs (or B's bytes between them) are wrong on the export"
import os, sys
a, b, exp = sys.argv[1:4]
r = os.open(a, os.O_RDONLY)
w = os.open(a, os.O_RDWR)
fb = os.open(b, os.O_WRONLY)
os.pwrite(fb, b"B" * 100, 1000)
os.fsync(fb)
os.close(fb)
os.pwrite(w, b"a" * 100, 0)
os.pwrite(w, b"a" * 100, 5000)
os.fsync(r)             # the reader's descriptor: the file is synced
got = open(exp, "rb").read()
os.close(w)
os.close(r)
want = bytearray(b"x" * 65536)
want[0:100] = b"a" * 100
want[1000:1100] = b"B" * 100
want[5000:5100] = b"a" * 100
if got != bytes(want):
    bad = [i for i in range(len(want)) if i >= len(got) or got[i] != want[i]]
    print("differs at", bad[:3], "...", len(bad), "bytes", file=sys.stderr)
    sys.exit(1)
PY
[[ $(ctr "$A" passthrough_opens) -ge $((o0 + 2)) ]] \
	|| fail "9: the reader and the writer were not passthrough (passthrough_opens $o0 -> $(ctr "$A" passthrough_opens))"
info "9: zeros over uploaded bytes, two runs of a forced writer around B's bytes, fsync through a reader: to the byte"
unmount_stagefs "$A" || fail "A: daemon exit status $?"
unmount_stagefs "$B" || fail "B: daemon exit status $?"

# 11. descriptors opened through passthrough outlive a kill -9 of the
#     daemon (the kernel holds their backing files): the restarted daemon
#     never uses those data files in place.  A reader's descriptor still
#     reads the bytes it read before while the new daemon serves the
#     export's newer ones; a write through the dead daemon's writer
#     descriptor (nothing can acknowledge it) stays out of the new daemon's
#     file, and what that writer fsynced reaches the export.
mount_stagefs "$BACKEND" "$A" "$TEST_TMP/cache11" passthrough=on fsync=local
head -c $((8 << 20)) /dev/urandom >"$TEST_TMP/v11a"
head -c $((8 << 20)) /dev/urandom >"$TEST_TMP/v11b"
head -c $((3 << 20)) /dev/urandom >"$TEST_TMP/w11"
cp "$TEST_TMP/v11a" "$A/r11"
sfs_flush "$A"
python3 - "$A" "$TEST_TMP" >"$TEST_TMP/o11.out" 2>&1 <<'PY' &
import hashlib, os, sys, time
mnt, tmp = sys.argv[1:3]
def wait(name):
    while not os.path.exists(tmp + "/" + name):
        time.sleep(0.05)
r = os.open(mnt + "/r11", os.O_RDONLY)
w = os.open(mnt + "/w11", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
os.pread(r, 1 << 20, 0)
print("READY", flush=True)
wait("go11a")
os.write(w, open(tmp + "/w11", "rb").read())
os.fsync(w)
print("FSYNCED", flush=True)
wait("go11b")
h, off = hashlib.sha256(), 0
while True:
    b = os.pread(r, 1 << 20, off)
    if not b:
        break
    h.update(b)
    off += len(b)
print("R", h.hexdigest(), flush=True)
os.pwrite(w, b"X" * 4096, 0)
print("DONE", flush=True)
PY
opid=$!
at_exit "kill $opid 2>/dev/null || true"
wait_secs 30 grep -q READY "$TEST_TMP/o11.out" || fail "11: the opener did not start: $(cat "$TEST_TMP/o11.out")"
[[ $(ctr "$A" passthrough_opens) -ge 2 ]] || fail "11: the opens are not passthrough ($(ctr "$A" passthrough_opens))"
freeze_nfs
touch "$TEST_TMP/go11a"
wait_secs 30 grep -q FSYNCED "$TEST_TMP/o11.out" || fail "11: fsync=local did not return with the server frozen"
crash_stagefs "$A"
thaw_nfs
cp "$TEST_TMP/v11b" "$BACKEND_DIR/r11"
mount_stagefs "$BACKEND" "$A" "$TEST_TMP/cache11" passthrough=on
grep -q "open through passthrough when the daemon stopped" "$(stagefs_log "$A")" \
	|| fail "11: the restart did not settle the files open through passthrough"
same_file "$TEST_TMP/v11b" "$A/r11"
touch "$TEST_TMP/go11b"
wait "$opid" || fail "11: the old descriptors failed: $(cat "$TEST_TMP/o11.out")"
[[ $(sed -n 's/^R //p' "$TEST_TMP/o11.out") == $(sha256sum <"$TEST_TMP/v11a" | cut -d' ' -f1) ]] \
	|| fail "11: the old reader's descriptor no longer reads the bytes it read before the crash"
same_file "$TEST_TMP/w11" "$A/w11"
sfs_flush "$A" 120
same_file "$TEST_TMP/w11" "$BACKEND_DIR/w11"
same_file "$TEST_TMP/v11b" "$A/r11"
unmount_stagefs "$A" || fail "A: daemon exit status $?"
info "11: descriptors of a killed daemon keep their old data files; the new daemon's files stay its own"

# 8. passthrough=off, and a bad value
mount_stagefs "$BACKEND" "$A" "$TEST_TMP/cache8" passthrough=off
head -c $((4 << 20)) "$TEST_TMP/src" >"$A/off"
[[ $(ctr "$A" bytes_written) -eq $((4 << 20)) && $(ctr "$A" passthrough_opens) -eq 0 ]] \
	|| fail "8: passthrough=off: bytes_written $(ctr "$A" bytes_written), passthrough_opens $(ctr "$A" passthrough_opens)"
copy_check "$A/off" "$A/off-cfr" "$A/off-sf" || fail "8: copy_file_range/sendfile through the daemon"
[[ $(ctr "$A" bytes_written) -eq $((12 << 20)) ]] \
	|| fail "8: the copies wrote $(($(ctr "$A" bytes_written) - (4 << 20))) bytes through the daemon, not 8 MiB"
same_file "$A/off" "$BACKEND_DIR/off-cfr"
same_file "$A/off" "$BACKEND_DIR/off-sf"
unmount_stagefs "$A" || fail "A: daemon exit status $?"
# 10. no room for a writer the kernel cannot make wait: a new file on a
#     cache fs with less than twice cache_min_free free goes through the
#     daemon (which waits for uploads when full), its read stays passthrough
avail=$(df -B1 --output=avail "$TEST_TMP" | tail -n1)
mount_stagefs "$BACKEND" "$A" "$TEST_TMP/cache10" passthrough=on cache_min_free=$((avail / 2 + (256 << 20)))
head -c $((4 << 20)) "$TEST_TMP/src" >"$A/noroom"
[[ $(ctr "$A" bytes_written) -eq $((4 << 20)) && $(ctr "$A" passthrough_opens) -eq 0 ]] \
	|| fail "10: no room: bytes_written $(ctr "$A" bytes_written), passthrough_opens $(ctr "$A" passthrough_opens)"
unmount_stagefs "$A" || fail "A: daemon exit status $?"
info "10: with no room to spare, a new file is written through the daemon"
# 12. small records over a backend whose file system holds xattrs (a
#     posix backend on ext4 or XFS): the kernel asks for security.capability
#     once per inode and attribute refresh (FUSE_HANDLE_KILLPRIV_V2 makes
#     the superblock SB_NOSEC), not before each write(2)
if setfattr -n user.probe -v 1 "$TEST_TMP/src" 2>/dev/null; then
	make_backend posix
	mount_stagefs "$BACKEND" "$A" "$TEST_TMP/cache12" passthrough=on
	dd if=/dev/zero of="$A/small" bs=4k count=2000 status=none || fail "12: dd bs=4k failed"
	[[ $(ctr "$A" fuse_write) -eq 0 && $(ctr "$A" fuse_getxattr) -le 10 ]] \
		|| fail "12: 2000 writes of 4 KiB: $(ctr "$A" fuse_write) WRITE and $(ctr "$A" fuse_getxattr) GETXATTR requests"
	info "12: 2000 writes of 4 KiB over posix: $(ctr "$A" fuse_getxattr) GETXATTR requests"
	unmount_stagefs "$A" || fail "A: daemon exit status $?"
else
	info "12: skipped: $TEST_TMP holds no user xattrs"
fi
mount_should_fail "$BACKEND" "$A" "$TEST_TMP/cache8" passthrough=bogus
[[ $MOUNT_ERR == *"bad value for passthrough"* && $(grep -c . <<<"$MOUNT_ERR") -eq 1 ]] \
	|| fail "8: passthrough=bogus said: $MOUNT_ERR"
info "ok"
