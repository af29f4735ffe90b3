#!/usr/bin/env bash
# cache_direct=on (issue 5 "O_DIRECT as an option"), nfs backend: chunk
# fills, flusher read-backs and checked reads of the cache file go around
# the page cache; unaligned writes and tails still go through it.
#
# 1. A backend-only file of an unaligned size is read cold: the bytes are
#    right, and of the cache's data files only the file's unaligned tail
#    (one page, written buffered) is in the page cache afterwards
#    (fincore), where a buffered cache holds all 40 MiB.
# 2. A file of an unaligned size written through the mount and closed
#    reaches the backend byte for byte (the flusher read it back with
#    O_DIRECT), and reads back right.
# 3. Restarted on the same cache dir, page cache dropped: both files are
#    read from the cache (bytes_read_backend stays 0), right, and the
#    checksums held (checksum_errors 0).
# 4. A flipped byte in the cache file is still caught with O_DIRECT reads.
# 5. posix backend: a file written through the mount (default options) and
#    flushed is on the backend byte for byte, and of the backend file only
#    its last, unaligned write is in the page cache: uploads are O_DIRECT
#    where they are 4 KiB aligned (a buffered upload leaves all 24 MiB).
#    Evicted and read again cold through the mount, the same: fetches
#    are O_DIRECT too.
#    Skipped where the backend dir is on tmpfs, whose pages are its data.
# The mounts of cases 1 to 4 are passthrough=off: this is the daemon's own
# I/O path (a passthrough open reads and writes the data file through the
# kernel).
. "$(dirname "$0")/cache-lib.sh"
need_root
need_nfs
need_cmd fincore
need_cmd python3
setup_tmp

make_backend nfs
mnt=$TEST_TMP/mnt
cache=$TEST_TMP/cache
src=$TEST_TMP/src
head -c $(((40 << 20) + 777)) /dev/urandom >"$BACKEND_DIR/cold"
head -c $(((24 << 20) + 12345)) /dev/urandom >"$src"
cold_sum=$(xxh "$BACKEND_DIR/cold")
src_sum=$(xxh "$src")

# resident_bytes FILE...: bytes of the files in the page cache.
resident_bytes() {
	fincore -b -n "$@" | awk '{ s += $1 } END { print s + 0 }'
}
# cached_bytes: bytes of the cache's data files in the page cache.
cached_bytes() { resident_bytes "$cache"/data/*; }

# 1. cold read
mount_stagefs "$BACKEND" "$mnt" "$cache" cache_direct=on passthrough=off
drop_caches
[[ $(xxh "$mnt/cold") == "$cold_sum" ]] || fail "cold read with cache_direct=on: data differs"
pc=$(cached_bytes)
[[ $pc -le 4096 ]] || fail "cold read with cache_direct=on: $pc bytes of the cache files are in the page cache (expected at most the 4096-byte tail page)"
info "cold read ok: $pc bytes of the cache files in the page cache (the tail page)"

# 2. write through the mount, close flushes
cp "$src" "$mnt/written"
[[ $(xxh "$BACKEND_DIR/written") == "$src_sum" ]] || fail "written file: the backend copy differs"
[[ $(xxh "$mnt/written") == "$src_sum" ]] || fail "written file: read back differs"
unmount_stagefs "$mnt" || fail "daemon exit status $?"
info "write ok: the backend holds the $(stat -c %s "$src") bytes written"

# 3. restart on the same cache, read from it
mount_stagefs "$BACKEND" "$mnt" "$cache" cache_direct=on passthrough=off
drop_caches
[[ $(xxh "$mnt/cold") == "$cold_sum" ]] || fail "after restart: cold file differs"
[[ $(xxh "$mnt/written") == "$src_sum" ]] || fail "after restart: written file differs"
be=$(ctr "$mnt" bytes_read_backend)
[[ $be -eq 0 ]] || fail "after restart: bytes_read_backend is $be (expected 0: both files in the cache)"
[[ $(ctr "$mnt" checksum_errors) -eq 0 ]] || fail "after restart: checksum errors"
info "restart ok: both files served from the cache"

# 4. a flipped byte is caught
data=$(cache_data_file "$cache" "$mnt/cold")
python3 - "$data" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
b = os.pread(fd, 1, 4096)
os.pwrite(fd, bytes([b[0] ^ 0xff]), 4096)
os.fsync(fd)
PY
[[ $(xxh "$mnt/cold") == "$cold_sum" ]] || fail "flipped byte: wrong data served"
ce=$(ctr "$mnt" checksum_errors)
[[ $ce -eq 1 ]] || fail "flipped byte: checksum_errors is $ce (expected 1)"
unmount_stagefs "$mnt" || fail "daemon exit status $?"
info "ok: a flipped byte refetched, checksum_errors 1"

# 5. posix backend: uploads around the backend's page cache
make_backend posix
pmnt=$TEST_TMP/pmnt
if [[ $(stat -f -c %T "$BACKEND_DIR") == tmpfs ]]; then
	info "posix upload: skipped, $BACKEND_DIR is on tmpfs"
else
	mount_stagefs "$BACKEND" "$pmnt" "$TEST_TMP/pcache"
	cp "$src" "$pmnt/up"
	ctl "$pmnt" flush >/dev/null || fail "posix upload: stagefsctl flush failed"
	pc=$(resident_bytes "$BACKEND_DIR/up")
	[[ $pc -le 65536 ]] || fail "posix upload: $pc bytes of the backend file are in the page cache (expected at most the last, unaligned write of 12,345 bytes)"
	[[ $(xxh "$BACKEND_DIR/up") == "$src_sum" ]] || fail "posix upload: the backend copy differs"
	info "posix upload ok: $pc bytes of the backend file in the page cache"
	ctl "$pmnt" evict "$pmnt/up" >/dev/null || fail "posix fetch: stagefsctl evict failed"
	drop_caches
	[[ $(xxh "$pmnt/up") == "$src_sum" ]] || fail "posix fetch: the file read through the mount differs"
	pc=$(resident_bytes "$BACKEND_DIR/up")
	[[ $pc -le 65536 ]] || fail "posix fetch: $pc bytes of the backend file are in the page cache (expected at most its unaligned tail)"
	unmount_stagefs "$pmnt" || fail "daemon exit status $?"
	info "posix fetch ok: $pc bytes of the backend file in the page cache"
fi
