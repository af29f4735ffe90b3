#!/usr/bin/env bash
# The differential test (issue 4), on both backends: difftest runs one
# seeded random sequence of file system calls (open with O_CREAT, O_TRUNC,
# O_APPEND, O_EXCL; pwrite at random and sparse offsets; read, truncate,
# rename, link, unlink, mkdir, rmdir, symlink, chmod, fsync, close and
# reopen, stat, readdir) against a native directory and against the mount,
# call by call, and compares return values, errno, contents and attributes.
# After unmounting it compares the native directory with the backend
# directory too: what the mount showed is what the backend got.
#
# Environment:
#   DIFFTEST_OPS    ops per backend (default 20000, about a minute each)
#   DIFFTEST_SEED   the seed (default: a new one each run, printed)
#   DIFFTEST_BIN    the difftest program (meson passes it)
# A failure prints the seed, the op index, both results and the last ops;
# rerun with DIFFTEST_SEED=<seed> tests/run integration-posix-difftest, or
# run the difftest binary by hand (-v prints every op, -O keeps only some
# ops of the sequence to shrink a failure, -X leaves ops out).
. "$(dirname "$0")/lib.sh"
setup_tmp

if [[ -z "${DIFFTEST_BIN:-}" ]]; then
	for c in "$SRC_ROOT/build/tests/integration/difftest"; do
		[[ -x "$c" ]] && DIFFTEST_BIN=$c
	done
fi
[[ -n "${DIFFTEST_BIN:-}" && -x "$DIFFTEST_BIN" ]] \
	|| fail "DIFFTEST_BIN is not set or not executable (${DIFFTEST_BIN:-unset}); build with meson"
ops=${DIFFTEST_OPS:-20000}
seed=${DIFFTEST_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
info "seed $seed, $ops ops per backend (DIFFTEST_SEED=$seed DIFFTEST_OPS=$ops to rerun)"

# Each backend with the default options; then the posix backend once more
# with the other read and write paths: O_DIRECT cache I/O and, with
# verify=off, hits spliced from the cache file.
runs=$(backends)
[[ " $runs " == *" posix "* ]] && runs="$runs posix+direct"
rc=0
for run in $runs; do
	kind=${run%%+*}
	opts=()
	[[ $run == *+direct ]] && opts=(cache_direct=on verify=off)
	[[ $kind == nfs ]] && need_nfs
	make_backend "$kind"
	mnt=$TEST_TMP/mnt.$run
	ref=$TEST_TMP/ref.$run
	mkdir "$ref"
	mount_stagefs "$BACKEND" "$mnt" "$TEST_TMP/cache.$run" "${opts[@]}"
	# The mount root is the backend dir (mode 0777); give the reference
	# root the same mode so root's stat of both agrees.
	chmod "$(stat -c %a "$mnt")" "$ref"
	info "$run: difftest -s $seed -n $ops $ref $mnt ${opts[*]}"
	if ! "$DIFFTEST_BIN" -s "$seed" -n "$ops" "$ref" "$mnt"; then
		echo "FAIL: $TEST_NAME: $run: the mount differs from a native directory" \
			"(seed $seed; DIFFTEST_SEED=$seed DIFFTEST_OPS=$ops to rerun)" >&2
		log_tail "$mnt" 40
		rc=1
		unmount_stagefs "$mnt" || echo "$run: daemon exit status $?" >&2
		continue
	fi
	unmount_stagefs "$mnt" || { echo "FAIL: $TEST_NAME: $run: daemon exit status $?" >&2; rc=1; continue; }
	info "$run: comparing the native directory with the backend after unmount"
	if ! "$DIFFTEST_BIN" -C "$ref" "$BACKEND_DIR"; then
		echo "FAIL: $TEST_NAME: $run: the backend differs from the native directory after unmount" \
			"(seed $seed)" >&2
		rc=1
	fi
done
[[ $rc -eq 0 ]] || fail "difference found (seed $seed)"
info "ok"
