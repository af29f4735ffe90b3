#!/usr/bin/env bash
# Issue 12 "The posix backend's warm reads": a warm read costs the daemon
# no memory-map and no statfs system call per READ, on either backend.
#
# Before the fix the posix backend's daemon made an mmap and a munmap for
# every 128 KiB READ (the read buffer was allocated and freed per READ, and
# glibc served it by mmap) and an fstatfs or two (the cache_min_free check
# after every read); it read at a tenth of the same read over nfs://.
#
# For each backend: write 128 MiB through the mount, flush, open it again
# (no keep_cache: every byte is a READ to the daemon) and read it whole
# under strace -f -c.  Then
#  - every byte came from the cache (bytes_read_backend 0, bytes_read_cache
#    grew by the file's size) and the bytes are right;
#  - mmap + munmap + madvise + brk: at most 64 in all (a worker's first
#    read makes its buffer; 1,024 READs made 2,048 before);
#  - fstatfs: at most 10 per second of the read plus 16 (the free-space
#    sample is at most every 100 ms), and at most one per 2 READs.
. "$(dirname "$0")/cache-lib.sh"
need_root
need_cmd strace
need_cmd python3
setup_tmp

SIZE_MIB=128
READS=$((SIZE_MIB * 1024 / 128))	# 128 KiB READs, the kernel's size here

# count FILE SYSCALL...: the calls strace -c counted of these syscalls.
count() {
	local file=$1
	shift
	awk -v want=" $* " '
		$NF ~ /^[a-z_0-9]+$/ && index(want, " " $NF " ") {
			# columns: %time seconds usecs/call calls [errors] syscall
			n += $4
		}
		END { print n + 0 }' "$file"
}

for kind in $(backends); do
	[[ $kind == nfs ]] && need_nfs
	make_backend "$kind"
	mnt=$TEST_TMP/mnt-$kind
	cache=$TEST_TMP/cache-$kind
	# The daemon's own read path is what this counts: no passthrough.
	# kernel_readahead=0: READs of the kernel's 128 KiB, a known count;
	# with the default 4M window the kernel sends up to 1 MiB and runs
	# more READs at once, so libfuse starts more workers, and each new
	# worker's stack, arena and buffers are mmaps that are not per READ.
	mount_stagefs "$BACKEND" "$mnt" "$cache" passthrough=off kernel_readahead=0
	pid=$(stagefs_pid "$mnt")
	head -c $((SIZE_MIB << 20)) /dev/urandom >"$TEST_TMP/src"
	sum=$(xxh "$TEST_TMP/src")
	cp "$TEST_TMP/src" "$mnt/f"
	sfs_flush "$mnt"
	before=$(ctr "$mnt" bytes_read_cache)
	be_before=$(ctr "$mnt" bytes_read_backend)

	out=$TEST_TMP/strace-$kind
	strace -f -c -o "$out" -e trace=mmap,munmap,madvise,brk,fstatfs,statfs \
		-p "$pid" 2>"$TEST_TMP/strace-$kind.err" &
	spid=$!
	at_exit "kill -INT $spid 2>/dev/null || true"
	# strace says 'attached' once it holds every thread.
	wait_secs 10 grep -q attached "$TEST_TMP/strace-$kind.err" \
		|| fail "$kind: strace did not attach to $pid: $(cat "$TEST_TMP/strace-$kind.err")"
	t0=$(date +%s.%N)
	got=$(xxh "$mnt/f")
	t1=$(date +%s.%N)
	kill -INT "$spid"
	wait "$spid" || true
	[[ "$got" == "$sum" ]] || fail "$kind: the bytes read differ from the bytes written"

	read_bytes=$(($(ctr "$mnt" bytes_read_cache) - before))
	be=$(($(ctr "$mnt" bytes_read_backend) - be_before))
	[[ $be -eq 0 ]] || fail "$kind: the warm read took $be bytes from the backend"
	[[ $read_bytes -ge $((SIZE_MIB << 20)) ]] \
		|| fail "$kind: the daemon served $read_bytes bytes of the $((SIZE_MIB << 20)) read (a page cache answered the rest?)"

	mm=$(count "$out" mmap munmap madvise brk)
	sf=$(count "$out" fstatfs statfs)
	secs=$(python3 -c "print(int(float('$t1') - float('$t0')) + 1)")
	info "$kind: $READS READs in ~${secs}s: $mm mmap/munmap/madvise/brk, $sf fstatfs"
	[[ $mm -le 64 ]] \
		|| fail "$kind: $mm mmap/munmap/madvise/brk calls for $READS READs (a buffer allocated per READ?): $(cat "$out")"
	[[ $sf -le $((secs * 10 + 16)) && $sf -le $((READS / 2)) ]] \
		|| fail "$kind: $sf fstatfs calls for $READS READs in ${secs}s (at most 10 per second expected): $(cat "$out")"
	unmount_stagefs "$mnt" || fail "$kind: daemon exit status $?"
done
info "ok"
