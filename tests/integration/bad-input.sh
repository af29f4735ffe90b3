#!/usr/bin/env bash
# Bad input stops the mount with one line naming the problem, a non-zero
# exit, and nothing mounted.
. "$(dirname "$0")/lib.sh"
setup_tmp
make_backend posix
mnt=$TEST_TMP/mnt
cache=$TEST_TMP/cache
mkdir -p "$mnt" "$cache"

# expect_refusal PATTERN BACKEND MNT CACHE [OPTS...]
expect_refusal() {
	local pattern=$1
	shift
	mount_should_fail "$@"
	local lines
	lines=$(printf '%s\n' "$MOUNT_ERR" | grep -c . || true)
	[[ $lines -eq 1 ]] || fail "expected one line for [$*], got $lines: $MOUNT_ERR"
	[[ $MOUNT_ERR == *$pattern* ]] \
		|| fail "expected '$pattern' for [$*], got: $MOUNT_ERR"
	info "refused as expected: $MOUNT_ERR"
}

expect_refusal "No such file" /nonexistent/backend "$mnt" "$cache"
expect_refusal "not an nfs:// URL or an absolute directory" relative/dir "$mnt" "$cache"
expect_refusal "nfs://" "nfs://" "$mnt" "$cache"
expect_refusal "nfs://127.0.0.1:1/x" "nfs://127.0.0.1:1/x" "$mnt" "$cache"
expect_refusal "cache dir $TEST_TMP/nocache" "$BACKEND" "$mnt" "$TEST_TMP/nocache"
touch "$TEST_TMP/afile"
expect_refusal "not a directory" "$BACKEND" "$mnt" "$TEST_TMP/afile"
# a mountpoint that does not exist (mount_should_fail would make it)
out=$(timeout 20 "$STAGEFS_BIN" -f -o cache_dir="$cache" "$BACKEND" "$TEST_TMP/nomnt" 2>&1) \
	&& fail "stagefs accepted a missing mountpoint"
[[ $out == "stagefs: mountpoint $TEST_TMP/nomnt: No such file or directory" ]] \
	|| fail "missing mountpoint: $out"
expect_refusal "unknown option" "$BACKEND" "$mnt" "$cache" frobnicate=1
expect_refusal "cache_size" "$BACKEND" "$mnt" "$cache" cache_size=12Q
expect_refusal "chunk_size" "$BACKEND" "$mnt" "$cache" chunk_size=3M
expect_refusal "writeback" "$BACKEND" "$mnt" "$cache" writeback=maybe
expect_refusal "fsync" "$BACKEND" "$mnt" "$cache" fsync=disk
expect_refusal "nconnect" "$BACKEND" "$mnt" "$cache" nconnect=0

# a read-only cache dir
mkdir -p "$TEST_TMP/ro"
mount -t tmpfs -o ro,size=1m tmpfs "$TEST_TMP/ro"
at_exit "umount '$TEST_TMP/ro'"
expect_refusal "not writable" "$BACKEND" "$mnt" "$TEST_TMP/ro"

# a cache dir in use by another daemon
mount_stagefs "$BACKEND" "$TEST_TMP/mnt1" "$cache"
expect_refusal "in use by another stagefs" "$BACKEND" "$mnt" "$cache"
unmount_stagefs "$TEST_TMP/mnt1" || fail "daemon exit status $?"

if [[ -n "${STAGEFS_TEST_NFS_URL:-}" ]]; then
	expect_refusal "not found" "${STAGEFS_TEST_NFS_URL%/}/no-such-dir-here" "$mnt" "$cache"
fi
info "ok"
