#!/usr/bin/env bash
# Read path with prefetch (issue 5 "read path", done-when 3), nfs backend:
#
# 1. A file that exists only on the backend (made directly in the export
#    directory) is read cold and sequentially through the mount: the bytes
#    are right, prefetch_chunks > 0, and the backend was read about once.
# 2. After drop_caches, a second read is served from the cache:
#    bytes_read_backend does not grow and bytes_read_cache grows by the
#    whole file size.
# 3. Random 4 KiB reads of another cold file do not trigger a prefetch
#    storm: no prefetch, and at most one chunk fetched per read.
# 4. With verify=on (the default) no byte was spliced: each was checked
#    on its way through the daemon.  Remounted on the same cache with
#    verify=off, a third read is served from the cache by splice (the
#    cache file's pages go to the kernel without a copy through the
#    daemon): bytes_read_splice grows by at least half the file (a
#    kernel read that spans two chunks is copied), the backend is not read.
# Size: STAGEFS_PREFETCH_MIB (CI default 256; done-when by hand: 2048).
. "$(dirname "$0")/cache-lib.sh"
need_root
need_nfs
need_cmd python3
setup_tmp
mib=${STAGEFS_PREFETCH_MIB:-256}
size=$((mib << 20))

make_backend nfs
mnt=$TEST_TMP/mnt
cache=$TEST_TMP/cache
dd if=/dev/urandom of="$BACKEND_DIR/big" bs=1M count="$mib" status=none
sum=$(xxh "$BACKEND_DIR/big")
dd if=/dev/urandom of="$BACKEND_DIR/rand" bs=1M count=64 status=none
drop_caches

# Prefetch and the daemon's read counters: the daemon path.
mount_stagefs "$BACKEND" "$mnt" "$cache" passthrough=off
# 1. cold sequential read
be0=$(ctr "$mnt" bytes_read_backend)
pf0=$(ctr "$mnt" prefetch_chunks)
t0=$(date +%s.%N)
got=$(xxh "$mnt/big")
t1=$(date +%s.%N)
be1=$(ctr "$mnt" bytes_read_backend)
pf1=$(ctr "$mnt" prefetch_chunks)
rc1=$(ctr "$mnt" bytes_read_cache)
[[ $got == "$sum" ]] || fail "cold read: data differs from the backend file"
[[ $((pf1 - pf0)) -gt 0 ]] || fail "cold read of ${mib} MiB: prefetch_chunks did not grow ($pf0 -> $pf1)"
[[ $((be1 - be0)) -ge $size ]] || fail "cold read: bytes_read_backend grew by $((be1 - be0)), less than the file ($size)"
# Prefetch must not fetch much more than the file (one readahead window).
[[ $((be1 - be0)) -le $((size + (64 << 20))) ]] \
	|| fail "cold read: bytes_read_backend grew by $((be1 - be0)) for a $size-byte file"
info "cold read ok: ${mib} MiB in $(python3 -c "print(round(float('$t1') - float('$t0'), 2))") s, $((pf1 - pf0)) chunks prefetched, $((be1 - be0)) bytes from the backend"

# 2. second read, page cache dropped
drop_caches
got=$(xxh "$mnt/big")
be2=$(ctr "$mnt" bytes_read_backend)
rc2=$(ctr "$mnt" bytes_read_cache)
[[ $got == "$sum" ]] || fail "second read: data differs"
[[ $be2 -eq $be1 ]] || fail "second read: bytes_read_backend grew by $((be2 - be1)) (expected 0: all in the cache)"
[[ $((rc2 - rc1)) -ge $size ]] \
	|| fail "second read: bytes_read_cache grew by $((rc2 - rc1)), expected the file size $size"
info "second read ok: bytes_read_cache +$((rc2 - rc1)), bytes_read_backend +0"

# 3. random reads: no prefetch storm
pf3=$(ctr "$mnt" prefetch_chunks)
be3=$(ctr "$mnt" bytes_read_backend)
nreads=40
python3 - "$mnt/rand" "$BACKEND_DIR/rand" "$nreads" <<'PY' || fail "random reads returned wrong data"
import os, random, sys
path, ref, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
r = random.Random(7)
fd = os.open(path, os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
rf = os.open(ref, os.O_RDONLY)
size = os.fstat(fd).st_size
for _ in range(n):
    off = r.randrange(0, size - 4096) & ~4095
    if os.pread(fd, 4096, off) != os.pread(rf, 4096, off):
        sys.exit(f"random read at {off} differs")
PY
pf4=$(ctr "$mnt" prefetch_chunks)
be4=$(ctr "$mnt" bytes_read_backend)
[[ $((pf4 - pf3)) -eq 0 ]] || fail "random reads: $((pf4 - pf3)) chunks prefetched (a prefetch storm)"
[[ $((be4 - be3)) -le $((nreads * (4 << 20))) ]] \
	|| fail "random reads: $nreads reads of 4 KiB fetched $((be4 - be3)) bytes (more than one chunk each)"
info "random reads ok: $nreads reads, 0 prefetched, $((be4 - be3)) bytes from the backend"
# 4. splice
sp=$(ctr "$mnt" bytes_read_splice)
[[ $sp -eq 0 ]] || fail "verify=on: bytes_read_splice is $sp (expected 0: every byte is checked)"
unmount_stagefs "$mnt" || fail "daemon exit status $?"
mount_stagefs "$BACKEND" "$mnt" "$cache" verify=off passthrough=off
drop_caches
got=$(xxh "$mnt/big")
be5=$(ctr "$mnt" bytes_read_backend)
sp5=$(ctr "$mnt" bytes_read_splice)
rc5=$(ctr "$mnt" bytes_read_cache)
[[ $got == "$sum" ]] || fail "third read (verify=off, spliced): data differs"
[[ $be5 -eq 0 ]] || fail "third read: bytes_read_backend is $be5 (expected 0: the cache was kept)"
# A READ that crosses a chunk boundary is copied, not spliced: how many do
# depends on the kernel's read-ahead requests, which a slow daemon (the
# TSan build) makes smaller and less aligned: 74.9 % were spliced there
# once (CI of df57536).  Half is still most of the file.
[[ $sp5 -ge $((size / 2)) && $sp5 -le $rc5 ]] \
	|| fail "third read: bytes_read_splice $sp5 of bytes_read_cache $rc5 (expected at least half of $size)"
info "third read ok: verify=off, $sp5 of $rc5 bytes spliced from the cache file"
unmount_stagefs "$mnt" || fail "daemon exit status $?"
info "ok: $((3 * size)) bytes verified"
