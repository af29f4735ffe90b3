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
# Then two nodes (issue 11): two stagefs mounts of one nfs export, each
# with its own cache dir, and one native directory (difftest -M).  Besides
# the same op mix through mount A, both mounts write shared files at once,
# each only its own seeded byte ranges (1 byte, unaligned sizes such as
# 47,008, whole 64 KiB blocks; ranges of both nodes in one block), through
# descriptors of its own; reads compare what close-to-open promises (own
# ranges always, the other node's after its close or fsync and an open
# here); and at each checkpoint (all descriptors closed) the tree through
# A, through B and the export directory itself equal the native one.
# Once with flush_on_close=sync, once with async and `stagefsctl MNT
# flush` on both mounts before each checkpoint.  B is mounted with
# entry_timeout=0,attr_timeout=0.  After unmounting both, the export is
# compared once more.
#
# Environment:
#   DIFFTEST_OPS      ops per single-mount run (default 20000, about a
#                     minute each)
#   DIFFTEST_TWO_OPS  ops per two-mount run (default 6000: the two runs
#                     take about a minute together on 2 cores)
#   DIFFTEST_RUNS     the runs (default "posix nfs posix+direct nfs+nopt
#                     nfs2 nfs2+async nfs2+async+pt@31415926:5300"; the
#                     single-mount ones follow STAGEFS_TEST_BACKENDS; +nopt
#                     mounts with passthrough=off, the two-mount runs too
#                     unless +pt: nfs2+pt and nfs2+async+pt exist;
#                     RUN@SEED[:OPS] runs at that seed, OPS ops)
#   DIFFTEST_SEED     the seed (default: a new one each run, printed)
#   DIFFTEST_ARGS     more difftest arguments for every run, to shrink a
#                     failure: e.g. "-O 12,40-44 -v"
#   DIFFTEST_BIN      the difftest program (meson passes it)
#   DIFFTEST_MOUNT_OPTS  more mount options for every run (e.g.
#                     passthrough=off, to tell a passthrough bug from others)
# With a Root_Squash export (tests/run starts one), it runs once more there
# as the unprivileged user stagefs-alice, in a directory she owns: every
# request carries her credentials, and the server checks them (issue 16).
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
need_stagefsctl
ops=${DIFFTEST_OPS:-20000}
two_ops=${DIFFTEST_TWO_OPS:-6000}
seed=${DIFFTEST_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}

# Each backend with the default options; then the posix backend once more
# with the other read and write paths: O_DIRECT cache I/O and, with
# verify=off, hits spliced from the cache file; and as a user (alice, in
# her own directory), whose ids the daemon takes on the backend.  Then the
# two-mount runs.
runs=$(backends)
[[ " $runs " == *" posix "* ]] && runs="$runs posix+direct posix+user"
if [[ " $runs " == *" nfs "* && -n "${STAGEFS_TEST_NFS_SQUASH_URL:-}" ]]; then
	runs="$runs nfs+squash"
fi
# The default (passthrough=auto) is the passthrough path where the kernel
# offers it (issue 12); nfs+nopt runs the daemon's own path, which every
# kernel older than 6.9 takes.  The two-mount runs are passthrough=off:
# their single-byte ranges of one file interleaved between two nodes are
# what only the daemon's path keeps exact (a passthrough writer's runs are
# found by content, docs/consistency.md; nfs2+pt and nfs2+async+pt by name).
[[ " $runs " == *" nfs "* ]] && runs="$runs nfs+nopt"
# Two nodes on the passthrough path, at a seed that found a bug there: a
# refresh took the bytes between a writer's runs for its own (fixed in
# session 17; the build before fails at op 5221).
runs="${DIFFTEST_RUNS:-$runs nfs2 nfs2+async nfs2+async+pt@31415926:5300}"
info "seed $seed, $ops ops per single-mount run, $two_ops per two-mount run;" \
	"runs: $runs (DIFFTEST_SEED=$seed DIFFTEST_OPS=$ops DIFFTEST_TWO_OPS=$two_ops" \
	"DIFFTEST_RUNS='$runs' to rerun)"

# two_mounts RUN: the two-mount mode (nfs2: flush_on_close=sync;
# nfs2+async: async and a flush before each checkpoint).  Returns 1 on a
# difference.
two_mounts() {
	local run=$1 mode=sync ma mb ref args=() opts=() rc=0 seed=$seed
	local two_ops=$two_ops pin
	# RUN@SEED[:OPS]: a seed that found a bug, kept as a regression run
	if [[ $run == *@* ]]; then
		pin=${run#*@}
		run=${run%@*}
		seed=${pin%%:*}
		[[ $pin == *:* ]] && two_ops=${pin#*:}
	fi
	[[ $run == *+async* ]] && mode=async
	opts=(passthrough=off)
	[[ $run == *+pt ]] && opts=(passthrough=auto)
	need_nfs
	make_backend nfs
	ma=$TEST_TMP/mnt.$run.A
	mb=$TEST_TMP/mnt.$run.B
	ref=$TEST_TMP/ref.$run
	mkdir "$ref"
	mount_stagefs "$BACKEND" "$ma" "$TEST_TMP/cache.$run.A" flush_on_close=$mode "${opts[@]}"
	mount_stagefs "$BACKEND" "$mb" "$TEST_TMP/cache.$run.B" flush_on_close=$mode \
		entry_timeout=0 attr_timeout=0 "${opts[@]}"
	chmod "$(stat -c %a "$ma")" "$ref"
	args=(-s "$seed" -n "$two_ops" -c 500 -M "$mb" -E "$BACKEND_DIR")
	[[ $mode == async ]] && args+=(-F "$STAGEFSCTL_BIN")
	# shellcheck disable=SC2206  # split on purpose
	args+=(${DIFFTEST_ARGS:-})
	info "$run: difftest ${args[*]} $ref $ma"
	if ! "$DIFFTEST_BIN" "${args[@]}" "$ref" "$ma"; then
		echo "FAIL: $TEST_NAME: $run: two mounts differ from a native directory" \
			"(seed $seed; DIFFTEST_SEED=$seed DIFFTEST_TWO_OPS=$two_ops" \
			"DIFFTEST_RUNS=$run to rerun)" >&2
		echo "mount A:" >&2
		log_tail "$ma" 40
		echo "mount B:" >&2
		log_tail "$mb" 40
		rc=1
	fi
	unmount_stagefs "$ma" || { echo "FAIL: $TEST_NAME: $run: daemon A exit status $?" >&2; rc=1; }
	unmount_stagefs "$mb" || { echo "FAIL: $TEST_NAME: $run: daemon B exit status $?" >&2; rc=1; }
	[[ $rc -eq 0 ]] || return 1
	info "$run: comparing the native directory with the export after unmounting both"
	if ! "$DIFFTEST_BIN" -C "$ref" "$BACKEND_DIR"; then
		echo "FAIL: $TEST_NAME: $run: the export differs from the native directory" \
			"after unmount (seed $seed)" >&2
		return 1
	fi
}

rc=0
for run in $runs; do
	if [[ $run == nfs2* ]]; then
		two_mounts "$run" || rc=1
		continue
	fi
	kind=${run%%+*}
	opts=()
	[[ $run == *+direct ]] && opts=(cache_direct=on verify=off)
	[[ $run == *+pt ]] && opts=(passthrough=auto)
	[[ $run == *+nopt ]] && opts=(passthrough=off)
	[[ -z "${DIFFTEST_MOUNT_OPTS:-}" ]] || opts+=("$DIFFTEST_MOUNT_OPTS")
	[[ $kind == nfs ]] && need_nfs
	runas=()
	if [[ $run == nfs+squash || $run == posix+user ]]; then
		# As alice, in her own directory: of the Root_Squash export,
		# or of a posix backend.
		test_users
		chmod 0755 "$TEST_TMP"
		if [[ $run == nfs+squash ]]; then
			nfs_squash_subdir difftest
			mkdir -m 0755 "$SQ_PATH/alice"
			chown stagefs-alice "$SQ_PATH/alice"
			BACKEND_DIR=$SQ_PATH/alice
			BACKEND=$SQ_URL/alice
		else
			make_backend posix
			chmod 0755 "$BACKEND_DIR"
			chown stagefs-alice "$BACKEND_DIR"
		fi
		runas=(as_user stagefs-alice)
		# where alice may run it from, whatever the build dir's modes
		cp "$DIFFTEST_BIN" "$TEST_TMP/difftest"
		chmod 0755 "$TEST_TMP/difftest"
	else
		make_backend "$kind"
	fi
	mnt=$TEST_TMP/mnt.$run
	ref=$TEST_TMP/ref.$run
	mkdir "$ref"
	[[ ${#runas[@]} -eq 0 ]] || chown stagefs-alice "$ref"
	mount_stagefs "$BACKEND" "$mnt" "$TEST_TMP/cache.$run" "${opts[@]}"
	# The mount root is the backend dir (mode 0777); give the reference
	# root the same mode so root's stat of both agrees.
	chmod "$(stat -c %a "$mnt")" "$ref"
	info "$run: ${runas[*]} difftest -s $seed -n $ops $ref $mnt ${opts[*]}"
	bin=$DIFFTEST_BIN
	[[ ${#runas[@]} -eq 0 ]] || bin=$TEST_TMP/difftest
	# shellcheck disable=SC2086  # split on purpose
	if ! "${runas[@]}" "$bin" -s "$seed" -n "$ops" ${DIFFTEST_ARGS:-} "$ref" "$mnt"; then
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
