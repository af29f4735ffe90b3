#!/usr/bin/env bash
# Many small files through a daemon with few descriptors (issue 14, "A
# cache the size of a node's NVMe", found first): the daemon runs with
# RLIMIT_NOFILE at 1024 (soft and hard, so raising it at start does not
# help), and STAGEFS_MANY_FILES files (default 20000, 200000 in the soak
# run) are created in 100 directories, each written with a few bytes and
# closed at once, one after another, on both backends.
# Closes do not wait for each upload (flush_on_close=async), so that CI
# gets through 20,000 files in about a minute per backend: the descriptor
# paths are the same, and the flushers' read-backs open cache files whose
# descriptors were closed.  STAGEFS_MANY_FILES_OPTS replaces the mount
# options (empty: the default, sync close); STAGEFS_MANY_FILES_NOFILE
# changes the limit, for measurements by hand.
#
# Before the descriptor LRU, every file the daemon had written kept its
# cache data and index files open (and, on the posix backend, its O_PATH
# and read-write backend descriptors): creates failed with EIO (nfs) or
# EMFILE (posix) after a few hundred files at this limit.
#
# Asserted, per backend:
#  - every create, write and close succeeds;
#  - the daemon's descriptor count, sampled every 1000 files and at the
#    end, stays below the limit;
#  - every file is on the backend with its bytes (after the unmount, which
#    uploads what is left), and a sample of them (spread over the whole
#    run, so most have had their cache descriptors closed) reads back
#    right through the mount;
#  - nothing was counted as a flush error;
#  - the daemon's table of files in memory keeps to mem_files (2000 here):
#    the files written and let go move to the cold list (files_unloaded),
#    `stagefsctl evict` of one of them drops its data, and the sample read
#    back above is read from their cache files;
#  - the running daemon compacted its journal (journal_compact=256K here:
#    every file leaves about 250 bytes of records), and it is killed -9
#    right after the last file and started again on its cache dir, which
#    replays the compacted journal.  (The uploads mostly keep up, so few
#    files are dirty at the kill; test_journal_compacted_while_running in
#    test_cache.c holds uploads back and checks every dirty file comes back.)
. "$(dirname "$0")/cache-lib.sh"
need_root
need_cmd python3
setup_tmp

NFILES=${STAGEFS_MANY_FILES:-20000}
NDIRS=100
LIMIT=${STAGEFS_MANY_FILES_NOFILE:-1024}
MEMFILES=2000	# files whose cache state stays in memory once unused
((NFILES >= NDIRS)) || fail "STAGEFS_MANY_FILES=$NFILES: at least $NDIRS"

# Everything this shell starts from here, the daemons too, has 1024.
ulimit -n "$LIMIT" || skip "cannot set RLIMIT_NOFILE to $LIMIT"

# table_small MNT: the daemon's cache table is within mem_files.
table_small() { (($(ctr "$1" files) <= MEMFILES)); }

# fd_count PID: open descriptors of PID.
fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }

for kind in $(backends); do
	make_backend "$kind"
	mnt=$TEST_TMP/mnt.$kind
	opts=${STAGEFS_MANY_FILES_OPTS-flush_on_close=async}
	opts=${opts:+$opts,}journal_compact=256K,mem_files=$MEMFILES
	mount_stagefs "$BACKEND" "$mnt" "$TEST_TMP/cache.$kind" "$opts"
	pid=$(stagefs_pid "$mnt")
	lim=$(awk '/Max open files/ { print $4 " " $5 }' "/proc/$pid/limits")
	assert_eq "$LIMIT $LIMIT" "$lim" "the daemon's RLIMIT_NOFILE (soft hard)"
	info "$kind: daemon has $(fd_count "$pid") descriptors before"

	start=$SECONDS
	# One writer, file after file; samples the daemon's descriptors.
	python3 - "$mnt" "$NFILES" "$NDIRS" "$pid" "$LIMIT" <<'PY' ||
import os, sys
mnt, n, ndirs, pid, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
per = n // ndirs
def fds():
    return len(os.listdir(f"/proc/{pid}/fd"))
peak = 0
for d in range(ndirs):
    os.mkdir(f"{mnt}/d{d:03}")
for i in range(per * ndirs):
    name = f"d{i % ndirs:03}/f{i:07}"
    try:
        with open(f"{mnt}/{name}", "x") as f:
            f.write(name + "\n")
    except OSError as e:
        sys.exit(f"file {i} ({name}): {e}; the daemon has {fds()} descriptors")
    if i % 1000 == 999:
        k = fds()
        peak = max(peak, k)
        if k >= limit:
            sys.exit(f"after file {i}: the daemon has {k} descriptors, limit {limit}")
print(f"{per * ndirs} files written; peak descriptors sampled {peak}")
PY
		fail "$kind: writing the files failed (above)"
	info "$kind: $NFILES files created in $((SECONDS - start)) s"
	# The table keeps to mem_files: the files written and let go leave
	# it (those still dirty stay until uploaded).
	wait_secs 60 table_small "$mnt" \
		|| fail "$kind: $(ctr "$mnt" files) files in the table, mem_files $MEMFILES"
	unl=$(ctr "$mnt" files_unloaded)
	((unl >= NFILES - MEMFILES)) || fail "$kind: $unl files unloaded of $NFILES (mem_files $MEMFILES)"
	info "$kind: $(ctr "$mnt" files) files in the table, $unl unloaded, $(awk '/VmRSS/ { print $2 " " $3 }' "/proc/$pid/status") resident"
	# The first file left memory long ago and is cached all the same:
	# `stagefsctl evict` finds it and drops its data.
	used=$(ctr "$mnt" cache_used_bytes)
	out=$(ctl "$mnt" evict "$mnt/d000/f0000000" 2>&1) \
		|| fail "$kind: stagefsctl evict of an unloaded file: $out"
	[[ $out != *"not cached"* ]] || fail "$kind: stagefsctl evict of an unloaded file: $out"
	after=$(ctr "$mnt" cache_used_bytes)
	((after < used)) || fail "$kind: evict of an unloaded file left cache_used_bytes at $after (was $used)"
	jc=$(ctr "$mnt" journal_compactions)
	info "$kind: journal $(ctr "$mnt" journal_bytes) bytes after $jc compactions; $(ctr "$mnt" dirty_bytes) dirty bytes; kill -9"
	((jc >= 1)) || fail "$kind: the journal was never compacted while $NFILES files were written"
	crash_stagefs "$mnt"
	mount_stagefs "$BACKEND" "$mnt" "$TEST_TMP/cache.$kind" "$opts"
	pid=$(stagefs_pid "$mnt")
	start=$SECONDS
	sfs_flush "$mnt" 3600
	info "$kind: the rest uploaded in $((SECONDS - start)) s"
	after=$(fd_count "$pid")
	info "$kind: daemon has $after descriptors after, $(awk '/VmRSS/ { print $2 " " $3 }' "/proc/$pid/status") resident"
	((after < LIMIT)) || fail "$kind: $after descriptors after the run (limit $LIMIT)"

	# A sample spread over the run: the early ones lost their cache
	# descriptors long ago and are opened again to be read.
	python3 - "$mnt" "$NFILES" "$NDIRS" <<'PY' || fail "$kind: read-back through the mount"
import sys
mnt, n, ndirs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
per = n // ndirs
total = per * ndirs
sample = sorted(set(list(range(0, total, max(1, total // 500))) + list(range(max(0, total - 50), total))))
for i in sample:
    name = f"d{i % ndirs:03}/f{i:07}"
    with open(f"{mnt}/{name}") as f:
        got = f.read()
    if got != name + "\n":
        sys.exit(f"{name} reads {got!r} through the mount")
print(f"{len(sample)} files read back right through the mount")
PY
	flush_errors=$(ctr "$mnt" flush_errors)
	assert_eq 0 "$flush_errors" "$kind: flush_errors"
	peak=$(fd_count "$pid")
	((peak < LIMIT)) || fail "$kind: $peak descriptors after the read-back"
	unmount_stagefs "$mnt" || fail "$kind: daemon exited with $?"

	# Every file on the backend, with its bytes.
	python3 - "$BACKEND_DIR" "$NFILES" "$NDIRS" <<'PY' || fail "$kind: files on the backend"
import sys
root, n, ndirs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
per = n // ndirs
for i in range(per * ndirs):
    name = f"d{i % ndirs:03}/f{i:07}"
    with open(f"{root}/{name}") as f:
        got = f.read()
    if got != name + "\n":
        sys.exit(f"{name} holds {got!r} on the backend")
print(f"all {per * ndirs} files right on the backend")
PY
done
info "PASS"
