# shellcheck shell=bash disable=SC2034  # variables are for the sourcing test
# Helpers for stagefs integration tests. Source it from a bash test script:
#
#   #!/usr/bin/env bash
#   . "$(dirname "$0")/lib.sh"
#   setup_tmp                                   # sets $TEST_TMP
#   for kind in $(backends); do
#       make_backend "$kind"                     # sets $BACKEND, $BACKEND_DIR
#       mount_stagefs "$BACKEND" "$TEST_TMP/mnt.$kind" "$TEST_TMP/cache.$kind"
#       ...
#       unmount_stagefs "$TEST_TMP/mnt.$kind" || fail "daemon exited with $?"
#   done
#
# Rules the helpers rely on:
# - Call setup_tmp, mount_stagefs, nfs_subdir and make_backend as plain
#   commands, never inside $(...): they record what to clean up in variables
#   of this shell, and a subshell would lose that.
# - Do not set your own EXIT trap; register extra cleanup with at_exit "cmd".
#   The EXIT trap unmounts every mount this script made (also on failure and
#   on SIGINT/SIGTERM), stops their daemons, and removes the temp dirs.
# - A daemon that exits non-zero (e.g. a sanitizer report) fails the test even
#   if the script does not check unmount_stagefs's status. To kill one on
#   purpose, use crash_stagefs.
# - Exit codes: 0 pass, 77 skip (meson: SKIP), anything else fail. With
#   STAGEFS_NO_SKIP=1 (CI) a skip is a failure.
#
# Environment: STAGEFS_BIN, STAGEFSCTL_BIN (set by meson), STAGEFS_TEST_NFS_URL
# and STAGEFS_TEST_NFS_DIR (set by tests/run: the ganesha export's URL and its
# local directory), STAGEFS_NO_SKIP, STAGEFS_KEEP_TMP=1 (keep temp dirs),
# STAGEFS_TEST_BACKENDS (default "posix nfs").

set -euo pipefail

LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC_ROOT=$(cd "$LIB_DIR/../.." && pwd)
TEST_NAME=$(basename "$0")
TEST_NAME=${TEST_NAME%.sh}

# Binaries: meson passes them; a fallback helps when a test is run by hand.
if [[ -z "${STAGEFS_BIN:-}" ]]; then
	for _c in "$SRC_ROOT/build/fs/stagefs" "$SRC_ROOT/build/stagefs"; do
		if [[ -x "$_c" ]]; then STAGEFS_BIN=$_c; break; fi
	done
fi
if [[ -z "${STAGEFSCTL_BIN:-}" ]]; then
	for _c in "$SRC_ROOT/build/tools/stagefsctl" "$SRC_ROOT/build/stagefsctl"; do
		if [[ -x "$_c" ]]; then STAGEFSCTL_BIN=$_c; break; fi
	done
fi
unset _c
: "${STAGEFS_BIN:=}" "${STAGEFSCTL_BIN:=}"

MOUNT_TIMEOUT=20     # seconds for a mount to show up in /proc/mounts
UNMOUNT_TIMEOUT=60   # seconds for a daemon to exit after unmount (it flushes)

# State owned by this shell (never modify from a subshell).
declare -a _LIB_MOUNTS=()        # mountpoints, in mount order
declare -A _LIB_MNT_PID=()       # mountpoint -> daemon pid
declare -A _LIB_MNT_LOG=()       # mountpoint -> daemon log file
declare -a _LIB_TMPDIRS=()       # dirs to remove at exit
declare -a _LIB_AT_EXIT=()       # extra cleanup commands
declare -a _LIB_BAD_EXITS=()     # "mnt status" of daemons that exited non-zero
_LIB_MOUNT_SEQ=0
_LIB_RC=0
_LIB_ERR_REPORTED=

# ---------------------------------------------------------------- results

# skip REASON: exit 77, or fail if skips are not allowed (CI).
skip() {
	if [[ "${STAGEFS_NO_SKIP:-0}" == 1 ]]; then
		echo "FAIL: $TEST_NAME: required test skipped: $*" >&2
		exit 1
	fi
	echo "SKIP: $TEST_NAME: $*"
	exit 77
}

# fail MSG: print and exit 1 (the EXIT trap still cleans up).
fail() {
	echo "FAIL: $TEST_NAME: $*" >&2
	exit 1
}

# info MSG: progress line on stdout (meson keeps it in the test log).
info() { echo "[$TEST_NAME] $*"; }

# at_exit CMD...: run CMD (as one string, eval'd) at exit, before unmounting.
at_exit() { _LIB_AT_EXIT+=("$*"); }

_lib_err() {
	local rc=$1 line=$2 cmd=$3
	if [[ -z "$_LIB_ERR_REPORTED" ]]; then
		_LIB_ERR_REPORTED=1
		echo "FAIL: $TEST_NAME: line $line: '$cmd' exited with $rc" >&2
	fi
}

# ---------------------------------------------------------------- needs

need_nfs() {
	[[ -n "${STAGEFS_TEST_NFS_URL:-}" && -n "${STAGEFS_TEST_NFS_DIR:-}" ]] \
		|| skip "no test NFS server (STAGEFS_TEST_NFS_URL/STAGEFS_TEST_NFS_DIR unset; tests/run starts one)"
	[[ -d "$STAGEFS_TEST_NFS_DIR" ]] \
		|| fail "STAGEFS_TEST_NFS_DIR=$STAGEFS_TEST_NFS_DIR is not a directory"
}

need_fuse() {
	[[ -c /dev/fuse ]] || skip "/dev/fuse missing"
	command -v fusermount3 >/dev/null 2>&1 || skip "fusermount3 missing (package fuse3)"
}

need_root() { [[ $(id -u) -eq 0 ]] || skip "needs root"; }

need_cmd() {
	command -v "$1" >/dev/null 2>&1 || skip "'$1' not installed${2:+ (package $2)}"
}

need_stagefs() {
	[[ -n "$STAGEFS_BIN" ]] || fail "STAGEFS_BIN is not set and no build/fs/stagefs was found"
	[[ -x "$STAGEFS_BIN" ]] || fail "STAGEFS_BIN=$STAGEFS_BIN is not executable"
}

need_stagefsctl() {
	[[ -n "$STAGEFSCTL_BIN" && -x "$STAGEFSCTL_BIN" ]] \
		|| fail "STAGEFSCTL_BIN is not set or not executable (${STAGEFSCTL_BIN:-unset})"
}

# ---------------------------------------------------------------- temp dirs

# setup_tmp: make $TEST_TMP, a fresh dir under ${TMPDIR:-/tmp}, removed at exit.
setup_tmp() {
	if [[ -n "${TEST_TMP:-}" && -d "$TEST_TMP" ]]; then
		return 0
	fi
	TEST_TMP=$(mktemp -d "${TMPDIR:-/tmp}/stagefs-$TEST_NAME.XXXXXX")
	_LIB_TMPDIRS+=("$TEST_TMP")
}

# nfs_export_dir: print the local directory ganesha exports.
nfs_export_dir() {
	need_nfs
	echo "$STAGEFS_TEST_NFS_DIR"
}

# nfs_subdir [NAME]: make a fresh, empty, mode 0777 directory directly in the
# export dir (on local disk) and set NFS_SUBDIR_PATH (its local path) and
# NFS_SUBDIR_URL (nfs://127.0.0.1/<export>/<subdir>, which libnfs can mount
# as is: ganesha accepts a MOUNT of any existing directory below an export).
# Removed at exit.
# shellcheck disable=SC2120  # NAME is optional
nfs_subdir() {
	need_nfs
	local name=${1:-$TEST_NAME}
	NFS_SUBDIR_PATH=$(mktemp -d "$STAGEFS_TEST_NFS_DIR/$name.XXXXXX")
	chmod 0777 "$NFS_SUBDIR_PATH"
	NFS_SUBDIR_URL="${STAGEFS_TEST_NFS_URL%/}/${NFS_SUBDIR_PATH##*/}"
	_LIB_TMPDIRS+=("$NFS_SUBDIR_PATH")
}

# nfs_server CMD: run tests/nfs-server on the test server (tests/run exports
# STAGEFS_NFS_STATE so this reaches the same instance). For fault tests:
#   nfs_server restart   ganesha stops and starts again (same export, same
#                        URL; libnfs reconnects and its file handles stay valid)
#   nfs_server freeze    SIGSTOP: the server hangs, calls do not return
#   nfs_server thaw      SIGCONT
# Such a test disturbs every other test using the server at the same time:
# mark it is_parallel: false in meson.build. The EXIT trap thaws a frozen
# server.
nfs_server() {
	need_nfs
	case "${1:-}" in
	freeze) at_exit "\"$SRC_ROOT/tests/nfs-server\" thaw >/dev/null 2>&1 || true" ;;
	esac
	"$SRC_ROOT/tests/nfs-server" "$@"
}

# ---------------------------------------------------------------- users

# test_users: make the unprivileged users stagefs-alice and stagefs-bob if
# they are missing (idempotent; they stay for the next run), alice with the
# supplementary group stagefs-g. Sets ALICE_UID, BOB_UID, USERS_GID (their
# primary group, "users") and SHARE_GID.
test_users() {
	need_root
	need_cmd useradd passwd
	need_cmd setpriv util-linux
	getent group stagefs-g >/dev/null || groupadd stagefs-g 2>/dev/null \
		|| getent group stagefs-g >/dev/null || fail "groupadd stagefs-g failed"
	id stagefs-alice >/dev/null 2>&1 \
		|| useradd -M -N -g users -G stagefs-g -s /usr/sbin/nologin stagefs-alice 2>/dev/null \
		|| id stagefs-alice >/dev/null 2>&1 || fail "useradd stagefs-alice failed"
	id stagefs-bob >/dev/null 2>&1 \
		|| useradd -M -N -g users -s /usr/sbin/nologin stagefs-bob 2>/dev/null \
		|| id stagefs-bob >/dev/null 2>&1 || fail "useradd stagefs-bob failed"
	ALICE_UID=$(id -u stagefs-alice)
	BOB_UID=$(id -u stagefs-bob)
	USERS_GID=$(id -g stagefs-alice)
	SHARE_GID=$(getent group stagefs-g | cut -d: -f3)
	id -G stagefs-alice | tr ' ' '\n' | grep -qx "$SHARE_GID" \
		|| usermod -a -G stagefs-g stagefs-alice || fail "usermod stagefs-alice failed"
}

# as_user USER CMD...: run CMD as USER, with its primary and supplementary
# groups, as a login would.
as_user() {
	local u=$1
	shift
	setpriv --reuid="$u" --regid="$(id -g "$u")" --init-groups -- "$@"
}

# nfs_squash_subdir [NAME]: a fresh, empty, mode 1777 directory in the
# Root_Squash export (tests/run starts one; tests/nfs-server): sets
# SQ_PATH (its local path) and SQ_URL. Removed at exit.
# shellcheck disable=SC2120  # NAME is optional
nfs_squash_subdir() {
	[[ -n "${STAGEFS_TEST_NFS_SQUASH_URL:-}" && -d "${STAGEFS_TEST_NFS_SQUASH_DIR:-}" ]] \
		|| skip "no Root_Squash export (STAGEFS_TEST_NFS_SQUASH_URL/_DIR unset; tests/run starts one)"
	SQ_PATH=$(mktemp -d "$STAGEFS_TEST_NFS_SQUASH_DIR/${1:-$TEST_NAME}.XXXXXX")
	chmod 1777 "$SQ_PATH"
	SQ_URL="${STAGEFS_TEST_NFS_SQUASH_URL%/}/${SQ_PATH##*/}"
	_LIB_TMPDIRS+=("$SQ_PATH")
}

# backends: the kinds of backend a test should loop over.
backends() { echo "${STAGEFS_TEST_BACKENDS:-posix nfs}"; }

# make_backend KIND: set BACKEND (what to give stagefs) and BACKEND_DIR (the
# local directory where the files land), fresh and empty.
#   posix: a directory under $TEST_TMP, BACKEND is its absolute path
#   nfs:   a subdirectory of the ganesha export, BACKEND is its nfs:// URL
make_backend() {
	case "$1" in
	posix)
		setup_tmp
		BACKEND_DIR=$(mktemp -d "$TEST_TMP/backend.XXXXXX")
		chmod 0777 "$BACKEND_DIR"
		BACKEND=$BACKEND_DIR
		;;
	nfs)
		nfs_subdir
		BACKEND_DIR=$NFS_SUBDIR_PATH
		BACKEND=$NFS_SUBDIR_URL
		;;
	*) fail "make_backend: unknown backend kind '$1' (posix|nfs)" ;;
	esac
}

# ---------------------------------------------------------------- mounts

_lib_abs() {
	local p=$1
	[[ "$p" == /* ]] || p="$PWD/$p"
	realpath -m -- "$p"
}

# is_fuse_mounted MNT: MNT is a fuse mount point now.
is_fuse_mounted() {
	local mnt dev mp type rest
	mnt=$(_lib_abs "$1")
	while read -r dev mp type rest; do
		# /proc/mounts escapes blanks as \040; test paths have none.
		if [[ "$mp" == "$mnt" && "$type" == fuse* ]]; then
			return 0
		fi
	done </proc/mounts
	return 1
}

# is_mounted MNT: anything is mounted on MNT.
is_mounted() {
	local mnt dev mp rest
	mnt=$(_lib_abs "$1")
	while read -r dev mp rest; do
		[[ "$mp" == "$mnt" ]] && return 0
	done </proc/mounts
	return 1
}

# _lib_state PID: process state letter, or nothing if gone.
_lib_state() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
	stat=${stat##*) }
	echo "${stat%% *}"
}

_lib_pid_running() {
	local st
	st=$(_lib_state "$1")
	[[ -n "$st" && "$st" != Z && "$st" != X ]]
}

# log_tail MNT [N]: the last N (30) lines of the daemon log of MNT.
log_tail() {
	local mnt log
	mnt=$(_lib_abs "$1")
	log=${_LIB_MNT_LOG[$mnt]:-}
	if [[ -n "$log" && -s "$log" ]]; then
		echo "--- last lines of $log ---" >&2
		tail -n "${2:-30}" "$log" >&2
		echo "---" >&2
	fi
}

# stagefs_log MNT: path of the daemon log of MNT.
stagefs_log() { echo "${_LIB_MNT_LOG[$(_lib_abs "$1")]:-}"; }

# stagefs_pid MNT: pid of the daemon serving MNT.
stagefs_pid() { echo "${_LIB_MNT_PID[$(_lib_abs "$1")]:-}"; }

_lib_join_opts() {
	local IFS=,
	echo "$*"
}

# mount_stagefs BACKEND MNT CACHE_DIR [OPT[,OPT]...]...
# Start "$STAGEFS_BIN" -f -o cache_dir=CACHE_DIR[,OPTS] BACKEND MNT in the
# background (log: $TEST_TMP/stagefs.N.log, also in $STAGEFS_LOG), wait up to
# 20 s for MNT to be a fuse mount. MNT and CACHE_DIR are created if missing.
# Fails the test if the daemon exits or the mount does not appear.
mount_stagefs() {
	[[ $# -ge 3 ]] || fail "usage: mount_stagefs BACKEND MNT CACHE_DIR [OPTS...]"
	local backend=$1 mnt cache=$2 opts pid log i st rc
	mnt=$(_lib_abs "$2")
	cache=$(_lib_abs "$3")
	shift 3
	need_fuse
	need_stagefs
	setup_tmp
	if is_mounted "$mnt"; then
		fail "mount_stagefs: $mnt is already a mount point"
	fi
	mkdir -p "$mnt" "$cache"
	opts="cache_dir=$cache"
	# STAGEFS_TEST_MOUNT_OPTS: options for every mount of a run (e.g.
	# passthrough=on to run a suite on the passthrough path); a test's
	# own options come after them and win.
	[[ -z "${STAGEFS_TEST_MOUNT_OPTS:-}" ]] || opts="$opts,$STAGEFS_TEST_MOUNT_OPTS"
	if [[ $# -gt 0 ]]; then
		opts="$opts,$(_lib_join_opts "$@")"
	fi
	_LIB_MOUNT_SEQ=$((_LIB_MOUNT_SEQ + 1))
	log="$TEST_TMP/stagefs.$_LIB_MOUNT_SEQ.log"
	echo "+ $STAGEFS_BIN -f -o $opts $backend $mnt" >"$log"
	"$STAGEFS_BIN" -f -o "$opts" "$backend" "$mnt" </dev/null >>"$log" 2>&1 &
	pid=$!
	_LIB_MOUNTS+=("$mnt")
	_LIB_MNT_PID[$mnt]=$pid
	_LIB_MNT_LOG[$mnt]=$log
	STAGEFS_LOG=$log
	for ((i = 0; i < MOUNT_TIMEOUT * 10; i++)); do
		if is_fuse_mounted "$mnt"; then
			info "mounted $backend on $mnt (pid $pid, log $log)"
			return 0
		fi
		st=$(_lib_state "$pid")
		if [[ -z "$st" || "$st" == Z ]]; then
			rc=0
			wait "$pid" || rc=$?
			_LIB_MNT_PID[$mnt]=
			log_tail "$mnt"
			fail "stagefs exited with status $rc before $mnt was mounted"
		fi
		sleep 0.1
	done
	log_tail "$mnt"
	fail "$mnt did not appear as a fuse mount within ${MOUNT_TIMEOUT}s (stagefs pid $pid)"
}

# mount_should_fail BACKEND MNT CACHE_DIR [OPTS...]: run stagefs expecting it
# to refuse the mount. Sets MOUNT_ERR (its output) and MOUNT_RC (its exit
# status). Fails the test if it mounted or exited 0.
mount_should_fail() {
	[[ $# -ge 3 ]] || fail "usage: mount_should_fail BACKEND MNT CACHE_DIR [OPTS...]"
	local backend=$1 mnt cache opts out
	mnt=$(_lib_abs "$2")
	cache=$(_lib_abs "$3")
	shift 3
	need_fuse
	need_stagefs
	setup_tmp
	mkdir -p "$mnt"
	opts="cache_dir=$cache"
	# STAGEFS_TEST_MOUNT_OPTS: options for every mount of a run (e.g.
	# passthrough=on to run a suite on the passthrough path); a test's
	# own options come after them and win.
	[[ -z "${STAGEFS_TEST_MOUNT_OPTS:-}" ]] || opts="$opts,$STAGEFS_TEST_MOUNT_OPTS"
	if [[ $# -gt 0 ]]; then
		opts="$opts,$(_lib_join_opts "$@")"
	fi
	out="$TEST_TMP/mount-fail.$((++_LIB_MOUNT_SEQ)).log"
	MOUNT_RC=0
	# Not in the background: a correct stagefs exits at once. The timeout
	# covers one that mounts and serves instead.
	timeout 20 "$STAGEFS_BIN" -f -o "$opts" "$backend" "$mnt" </dev/null >"$out" 2>&1 \
		|| MOUNT_RC=$?
	MOUNT_ERR=$(cat "$out")
	if is_mounted "$mnt"; then
		fusermount3 -uz "$mnt" 2>/dev/null || true
		fail "stagefs mounted $mnt although it should have refused (-o $opts $backend)"
	fi
	[[ $MOUNT_RC -ne 124 ]] || fail "stagefs neither mounted nor exited within 20 s (-o $opts $backend)"
	[[ $MOUNT_RC -ne 0 ]] || fail "stagefs exited 0 for a mount it should refuse (-o $opts $backend): $MOUNT_ERR"
}

# _lib_wait_exit PID SECS: wait for our child PID to exit and set _LIB_RC to
# its status. Returns 1 (after SIGKILL, _LIB_RC=137) if it did not exit in
# time. Must run in this shell (not in $(...)): only it can reap the child.
_lib_wait_exit() {
	local pid=$1 secs=$2 i
	_LIB_RC=0
	for ((i = 0; i < secs * 10; i++)); do
		_lib_pid_running "$pid" || break
		sleep 0.1
	done
	if _lib_pid_running "$pid"; then
		# A hang explains itself: every thread's stack before the kill.
		if command -v gdb >/dev/null; then
			echo "--- threads of stagefs (pid $pid), which did not exit ---" >&2
			timeout 60 gdb -p "$pid" -batch -nx -ex 'thread apply all bt' \
				2>/dev/null | grep -E '^(Thread|#)' >&2 || true
		fi
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		_LIB_RC=137
		return 1
	fi
	wait "$pid" 2>/dev/null || _LIB_RC=$?
}

# _lib_fusermount_u MNT: fusermount3 -u with retries, then lazy. Returns 1
# if it had to unmount lazily (the daemon then only exits once the last user
# of the mount lets go).
_lib_fusermount_u() {
	local mnt=$1 i
	for ((i = 0; i < 10; i++)); do
		is_mounted "$mnt" || return 0
		fusermount3 -u "$mnt" 2>/dev/null && return 0
		sleep 0.5
	done
	echo "warning: $mnt still busy after 5 s; lazy unmount" >&2
	fusermount3 -uz "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
	return 1
}

_lib_forget() {
	local mnt=$1 m
	local -a keep=()
	for m in "${_LIB_MOUNTS[@]}"; do
		[[ "$m" == "$mnt" ]] || keep+=("$m")
	done
	_LIB_MOUNTS=("${keep[@]+"${keep[@]}"}")
	_LIB_MNT_PID[$mnt]=
}

# unmount_stagefs MNT: unmount, wait (up to 60 s) for the daemon to flush and
# exit; return the daemon's exit status (137 if it had to be killed).
unmount_stagefs() {
	local mnt pid rc
	mnt=$(_lib_abs "$1")
	pid=${_LIB_MNT_PID[$mnt]:-}
	[[ -n "$pid" ]] || fail "unmount_stagefs: $mnt was not mounted by mount_stagefs"
	_lib_fusermount_u "$mnt" || true
	_lib_wait_exit "$pid" "$UNMOUNT_TIMEOUT" \
		|| echo "stagefs (pid $pid) did not exit within ${UNMOUNT_TIMEOUT}s of unmounting $mnt; killed" >&2
	rc=$_LIB_RC
	_lib_forget "$mnt"
	if is_mounted "$mnt"; then
		fusermount3 -uz "$mnt" 2>/dev/null || true
	fi
	if [[ "$rc" -ne 0 ]]; then
		log_tail "$mnt"
	fi
	return "$rc"
}

# crash_stagefs MNT [SIGNAL]: kill the daemon (default KILL) as a crash test
# would, clear the dead mount, and forget it. Returns nothing useful.
crash_stagefs() {
	local mnt pid sig=${2:-KILL}
	mnt=$(_lib_abs "$1")
	pid=${_LIB_MNT_PID[$mnt]:-}
	[[ -n "$pid" ]] || fail "crash_stagefs: $mnt was not mounted by mount_stagefs"
	kill "-$sig" "$pid" 2>/dev/null || true
	_lib_wait_exit "$pid" 30 || true
	_lib_forget "$mnt"
	# A dead daemon leaves "Transport endpoint is not connected" behind.
	fusermount3 -uz "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
}

# ---------------------------------------------------------------- tools

# xxh FILE: print the XXH3-128 checksum of FILE ('-' for stdin).
# (Debian's xxhash ships xxh128sum; `xxhsum -H2` is the same algorithm.
# `xxhsum -H3` would be XXH3-64 in BSD tag format.)
xxh() {
	local out
	if command -v xxh128sum >/dev/null 2>&1; then
		out=$(xxh128sum -q "$1") || return 1
	else
		out=$(xxhsum -q -H2 "$1") || return 1
	fi
	echo "${out%% *}"
}

# same_file A B: fail unless A and B have the same size and checksum.
same_file() {
	local a=$1 b=$2 sa sb
	sa=$(stat -c %s "$a") || fail "cannot stat $a"
	sb=$(stat -c %s "$b") || fail "cannot stat $b"
	[[ "$sa" == "$sb" ]] || fail "size differs: $a=$sa $b=$sb"
	[[ "$(xxh "$a")" == "$(xxh "$b")" ]] || fail "content differs: $a $b"
}

# assert_eq EXPECTED ACTUAL [MSG]
assert_eq() {
	[[ "$1" == "$2" ]] || fail "${3:-assert_eq}: expected '$1', got '$2'"
}

# wait_until SECS CMD...: retry CMD every 0.1 s until it succeeds or SECS pass.
wait_until() {
	local secs=$1 i
	shift
	for ((i = 0; i < secs * 10; i++)); do
		"$@" && return 0
		sleep 0.1
	done
	return 1
}

# ctl MNT ARGS...: run stagefsctl.
ctl() {
	need_stagefsctl
	"$STAGEFSCTL_BIN" "$@"
}

# stat_counter MNT NAME: one counter from `stagefsctl MNT stats --json`.
stat_counter() {
	local json
	json=$(ctl "$1" stats --json) || fail "stagefsctl $1 stats --json failed"
	python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$json" "$2" \
		|| fail "stats --json has no counter '$2': $json"
}

# ---------------------------------------------------------------- cleanup

_lib_cleanup() {
	local rc=$? cmd i mnt pid st d m keep secs
	set +e
	trap - ERR
	cd / # a test that cd'ed into a mount must not keep it busy
	for cmd in "${_LIB_AT_EXIT[@]+"${_LIB_AT_EXIT[@]}"}"; do
		eval "$cmd" || echo "warning: at_exit '$cmd' failed" >&2
	done
	# Unmount in reverse order (a mount may sit inside another).
	for ((i = ${#_LIB_MOUNTS[@]} - 1; i >= 0; i--)); do
		mnt=${_LIB_MOUNTS[i]}
		pid=${_LIB_MNT_PID[$mnt]:-}
		if [[ -n "$pid" ]] && _lib_pid_running "$pid"; then
			secs=$UNMOUNT_TIMEOUT
			_lib_fusermount_u "$mnt" || secs=10
			_lib_wait_exit "$pid" "$secs" \
				|| echo "stagefs (pid $pid) did not exit within ${secs}s of unmounting $mnt; killed" >&2
			st=$_LIB_RC
		elif [[ -n "$pid" ]]; then
			st=0
			wait "$pid" 2>/dev/null || st=$?
			fusermount3 -uz "$mnt" 2>/dev/null
		else
			st=0
		fi
		if is_mounted "$mnt"; then
			fusermount3 -uz "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null
		fi
		if [[ "$st" -ne 0 ]]; then
			_LIB_BAD_EXITS+=("$mnt $st")
		fi
		if [[ $rc -ne 0 && $rc -ne 77 || "$st" -ne 0 ]]; then
			log_tail "$mnt"
		fi
	done
	if [[ ${#_LIB_BAD_EXITS[@]} -gt 0 && ( $rc -eq 0 || $rc -eq 77 ) ]]; then
		for m in "${_LIB_BAD_EXITS[@]}"; do
			echo "FAIL: $TEST_NAME: stagefs for ${m% *} exited with status ${m##* } at cleanup" >&2
		done
		rc=1
	fi
	for ((i = ${#_LIB_TMPDIRS[@]} - 1; i >= 0; i--)); do
		d=${_LIB_TMPDIRS[i]}
		[[ -d "$d" ]] || continue
		# Never rm -rf through a mount that is still there.
		keep=
		while read -r _ m _; do
			if [[ "$m" == "$d" || "$m" == "$d"/* ]]; then keep=$m; fi
		done </proc/mounts
		if [[ -n "$keep" ]]; then
			echo "warning: not removing $d: $keep is still mounted" >&2
		elif [[ "${STAGEFS_KEEP_TMP:-0}" == 1 ]]; then
			echo "keeping $d (STAGEFS_KEEP_TMP=1)" >&2
		else
			rm -rf -- "$d"
		fi
	done
	exit "$rc"
}

set -E
trap '_lib_err $? $LINENO "$BASH_COMMAND"' ERR
trap _lib_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
