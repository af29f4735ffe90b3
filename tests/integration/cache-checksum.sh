#!/usr/bin/env bash
# Integrity of cached data (issue 5 "integrity", issue 8 "a corrupted chunk
# is caught by its checksum"), on both backends, verify=on (the default):
#
# 1. A file that exists only on the backend is read through the mount, so
#    it is cached clean.  Unmount, flip one byte of its cache data file
#    (cache_dir/data/*), drop the page cache, mount again on the same
#    cache_dir: the next read returns the right bytes and checksum_errors
#    is 1.
# 2. Without unmounting: flip another byte in another block, drop the page
#    cache, read again: right bytes, checksum_errors one more.
# 3. A dirty block (written with the NFS server frozen, so not uploaded)
#    that is corrupted in the cache gives EIO on read, is counted, and is
#    never uploaded (nfs only).
# 4. A dirty block that the export refused and that is then corrupted:
#    the unmount gives up on it in seconds, exits non-zero, and the next
#    start keeps it dirty (posix only).
# Every mount here is passthrough=off: verify=on checks the reads that go
# through the daemon, and with passthrough (auto or on, on a 6.9+ kernel)
# the reads of a wholly cached file do not.  scrub.sh shows that, and how
# `stagefsctl scrub` covers it.
# Size: STAGEFS_CHECKSUM_MIB (default 16).
. "$(dirname "$0")/cache-lib.sh"
need_root
need_cmd python3
setup_tmp
mib=${STAGEFS_CHECKSUM_MIB:-16}
verified=0

for kind in $(backends); do
	[[ $kind == nfs ]] && need_nfs
	make_backend "$kind"
	mnt=$TEST_TMP/mnt.$kind
	cache=$TEST_TMP/cache.$kind
	head -c $((mib << 20)) /dev/urandom >"$BACKEND_DIR/f"
	sum=$(xxh "$BACKEND_DIR/f")

	# 1. cached clean, corrupted while unmounted
	mount_stagefs "$BACKEND" "$mnt" "$cache" passthrough=off
	[[ $(xxh "$mnt/f") == "$sum" ]] || fail "$kind: first read differs"
	[[ $(ctr "$mnt" checksum_errors) -eq 0 ]] || fail "$kind: checksum errors on a cold read"
	data=$(cache_data_file "$cache" "$mnt/f")
	unmount_stagefs "$mnt" || fail "$kind: daemon exit status $?"
	flip "$data" $(( (5 << 20) + 12345 ))
	drop_caches
	mount_stagefs "$BACKEND" "$mnt" "$cache" passthrough=off
	be0=$(ctr "$mnt" bytes_read_backend)
	got=$(xxh "$mnt/f")
	errs=$(ctr "$mnt" checksum_errors)
	be1=$(ctr "$mnt" bytes_read_backend)
	[[ $got == "$sum" ]] || fail "$kind: read after flipping a byte of the cache returned wrong data"
	[[ $errs -eq 1 ]] || fail "$kind: checksum_errors is $errs after one flipped byte, expected 1"
	# The clean data was kept over the remount: only the bad part is fetched.
	[[ $((be1 - be0)) -lt $((mib << 20)) ]] \
		|| info "$kind: note: the remount fetched the whole file again ($((be1 - be0)) bytes)"
	verified=$((verified + (mib << 20)))
	info "$kind: part 1 ok (flipped byte while unmounted: right data, checksum_errors=1)"

	# 2. corrupted under a running daemon
	flip "$data" $(( (9 << 20) + 7 ))
	drop_caches
	got=$(xxh "$mnt/f")
	errs=$(ctr "$mnt" checksum_errors)
	[[ $got == "$sum" ]] || fail "$kind: read after flipping a byte under the running daemon returned wrong data"
	[[ $errs -eq 2 ]] || fail "$kind: checksum_errors is $errs after a second flipped byte, expected 2"
	verified=$((verified + (mib << 20)))
	info "$kind: part 2 ok (flipped byte while mounted: right data, checksum_errors=2)"
	unmount_stagefs "$mnt" || fail "$kind: daemon exit status $?"
done

# 3. a corrupted dirty block: EIO, counted, not uploaded
if [[ " $(backends) " == *" nfs "* ]]; then
	make_backend nfs
	mnt=$TEST_TMP/mnt.dirty
	cache=$TEST_TMP/cache.dirty
	head -c $((8 << 20)) /dev/urandom >"$TEST_TMP/d"
	head -c $((8 << 20)) /dev/zero >"$BACKEND_DIR/d"
	mount_stagefs "$BACKEND" "$mnt" "$cache" flush_on_close=async,passthrough=off
	# Open both handles before the freeze (open asks the backend).  The
	# reader uses O_DIRECT so that every read reaches the daemon.
	python3 - "$mnt/d" "$TEST_TMP/d" "$TEST_TMP/go3" "$TEST_TMP/done3" >"$TEST_TMP/w3.out" 2>&1 <<'PY' &
import mmap, os, sys, time
path, src, go, done = sys.argv[1:5]
w = os.open(path, os.O_WRONLY)
r = os.open(path, os.O_RDONLY | os.O_DIRECT)
print("READY", flush=True)
while not os.path.exists(go):
    time.sleep(0.05)
os.pwrite(w, open(src, "rb").read(), 0)
print("WRITTEN", flush=True)
while not os.path.exists(done):
    time.sleep(0.05)
buf = mmap.mmap(-1, 1 << 20)
try:
    n = os.preadv(r, [buf], 3 << 20)
    print("READ", n, flush=True)
except OSError as e:
    print("ERR", e.errno, flush=True)
PY
	wpid=$!
	at_exit "kill $wpid 2>/dev/null || true"
	release_frozen "$TEST_TMP/w3.out" "$TEST_TMP/go3" dirty
	wait_secs 30 grep -q WRITTEN "$TEST_TMP/w3.out" || fail "dirty: write did not return with the server frozen"
	[[ $(ctr "$mnt" dirty_bytes) -gt 0 ]] || fail "dirty: nothing dirty after the write"
	data=$(ls "$cache"/data/* | head -n1)
	flip "$data" $(( (3 << 20) + 100 ))
	drop_caches
	touch "$TEST_TMP/done3"
	wait_secs 30 grep -qE '^(READ [0-9]|ERR )' "$TEST_TMP/w3.out" || fail "dirty: O_DIRECT read did not return"
	wait "$wpid" || true
	res=$(grep -E '^(READ [0-9]|ERR )' "$TEST_TMP/w3.out")
	[[ $res == "ERR 5" ]] || fail "dirty: read of a corrupted dirty block gave '$res', expected EIO (ERR 5)"
	errs=$(ctr "$mnt" checksum_errors)
	[[ $errs -ge 1 ]] || fail "dirty: checksum_errors is $errs after reading a corrupted dirty block"
	grep -q "checksum" "$(stagefs_log "$mnt")" || fail "dirty: no log line about the checksum"
	thaw_nfs
	# The flusher must not upload the bad block: give it a few seconds.
	# The backend may hold the block as it was before the flip (an
	# upload that started while the server was frozen carries the bytes
	# it read then), or nothing of it; never the flipped byte.
	sleep 3
	out=$(python3 - "$BACKEND_DIR/d" "$TEST_TMP/d" <<'PY'
import sys
be = open(sys.argv[1], "rb").read()[3 << 20:4 << 20]
good = open(sys.argv[2], "rb").read()[3 << 20:4 << 20]
if be == good:
    print("good")
elif be.count(0) == len(be):
    print("zeros")
else:
    print("bad")
PY
)
	[[ $out != bad ]] || fail "dirty: the corrupted dirty block was uploaded to the backend"
	info "dirty: ok (EIO, checksum_errors=$errs, bad block not uploaded)"
	# Its data cannot be trusted and stays dirty (unless an upload that
	# read it before the flip has landed).  The unmount gives up on it in
	# seconds (it waited a minute without progress before), and the exit
	# status and the log say that data stayed behind.
	left=$(ctr "$mnt" dirty_bytes)
	log=$(stagefs_log "$mnt")
	t0=$SECONDS
	if unmount_stagefs "$mnt" 2>/dev/null; then
		[[ $left -eq 0 ]] || fail "dirty: the daemon exited 0 with $left corrupt dirty bytes left"
	else
		[[ $left -gt 0 ]] || fail "dirty: the daemon failed with nothing dirty left"
		grep -q "could not be uploaded" "$log" || fail "dirty: no log line about the data left behind"
	fi
	(( SECONDS - t0 < 30 )) || fail "dirty: the unmount took $((SECONDS - t0)) s with only a corrupt dirty block left"
	info "dirty: unmount with $left dirty bytes left took $((SECONDS - t0)) s"
fi
# 4. A dirty block the export refused (EPERM: the backend file was made
#    immutable) and that is then corrupted in the cache (posix only): the
#    retry finds the bad checksum and never uploads it (the rest of its
#    chunk goes); the unmount gives
#    up on it within seconds (a minute without progress before), exits
#    non-zero and says so; the next start on the same cache dir keeps it
#    dirty, and so does its unmount.
if [[ " $(backends) " == *" posix "* ]]; then
	make_backend posix
	mnt=$TEST_TMP/mnt.left
	cache=$TEST_TMP/cache.left
	head -c $((8 << 20)) /dev/urandom >"$TEST_TMP/e"
	head -c $((8 << 20)) /dev/zero >"$BACKEND_DIR/e"
	at_exit "chattr -i '$BACKEND_DIR/e' 2>/dev/null || true"
	mount_stagefs "$BACKEND" "$mnt" "$cache" flush_on_close=async,passthrough=off
	python3 - "$mnt/e" "$TEST_TMP/e" "$BACKEND_DIR/e" <<'PY' || fail "left: write through the mount failed"
import os, subprocess, sys
path, src, be = sys.argv[1:4]
fd = os.open(path, os.O_WRONLY)
subprocess.run(["chattr", "+i", be], check=True)
os.pwrite(fd, open(src, "rb").read(), 0)
os.close(fd)
PY
	wait_secs 30 grep -q "Operation not permitted" "$(stagefs_log "$mnt")" || fail "left: no upload refused by the immutable backend file"
	data=$(ls "$cache"/data/* | head -n1)
	flip "$data" $(( (3 << 20) + 100 ))
	drop_caches
	chattr -i "$BACKEND_DIR/e"
	wait_secs 30 grep -q "fails its checksum" "$(stagefs_log "$mnt")" || fail "left: the retry did not find the bad checksum"
	left=$(ctr "$mnt" dirty_bytes)
	[[ $left -gt 0 ]] || fail "left: nothing dirty after the corrupt block's retry"
	log=$(stagefs_log "$mnt")
	t0=$SECONDS
	if unmount_stagefs "$mnt" 2>/dev/null; then
		fail "left: the daemon exited 0 with $left dirty bytes it could not upload"
	fi
	took=$((SECONDS - t0))
	(( took < 30 )) || fail "left: the unmount took $took s with only a corrupt dirty block left"
	grep -q "could not be uploaded" "$log" || fail "left: no log line about the data left behind"
	# The bad 64 KiB block (chunk_size / 64) is not on the backend; every
	# other byte, its chunk's included, is.
	python3 - "$BACKEND_DIR/e" "$TEST_TMP/e" <<'PY' || fail "left: the backend does not hold what it should"
import sys
be = open(sys.argv[1], "rb").read()
src = open(sys.argv[2], "rb").read()
lo, hi = 3 << 20, (3 << 20) + (64 << 10)
if be[lo:hi] != bytes(hi - lo):
    sys.exit("the corrupted block reached the backend")
if be[:lo] != src[:lo] or be[hi:] != src[hi:]:
    sys.exit("the good blocks around the corrupted one did not reach it")
PY
	mount_stagefs "$BACKEND" "$mnt" "$cache" flush_on_close=async,passthrough=off
	again=$(ctr "$mnt" dirty_bytes)
	[[ $again -gt 0 ]] || fail "left: the next start lost the $left dirty bytes left behind"
	t0=$SECONDS
	unmount_stagefs "$mnt" 2>/dev/null && fail "left: the second daemon exited 0 with $again dirty bytes left"
	(( SECONDS - t0 < 30 )) || fail "left: the second unmount took $((SECONDS - t0)) s"
	info "left: unmount gave up on $left corrupt dirty bytes in $took s (exit status non-zero); the next start kept $again dirty"
fi
info "ok: $verified bytes verified through corrupted caches"
