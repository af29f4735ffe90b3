#!/usr/bin/env bash
# The backend conformance suite (issue 3) on both backends: the conformance
# program drives the be_ops table directly (no FUSE) and runs the same
# checks against posix (a temporary directory) and nfs (a subdirectory of
# the test ganesha export).  It prints TAP and exits non-zero on a failure.
#
# Environment: CONFORMANCE_BIN (meson passes it).
. "$(dirname "$0")/lib.sh"
setup_tmp

if [[ -z "${CONFORMANCE_BIN:-}" ]]; then
	c=$SRC_ROOT/build/tests/backend/conformance
	[[ -x "$c" ]] && CONFORMANCE_BIN=$c
fi
[[ -n "${CONFORMANCE_BIN:-}" && -x "$CONFORMANCE_BIN" ]] \
	|| fail "CONFORMANCE_BIN is not set or not executable (${CONFORMANCE_BIN:-unset}); build with meson"

failed=()
for kind in $(backends); do
	[[ $kind == nfs ]] && need_nfs
	make_backend "$kind"
	info "$kind: conformance $BACKEND"
	if ! timeout 240 "$CONFORMANCE_BIN" "$BACKEND"; then
		failed+=("$kind")
	fi
done
[[ ${#failed[@]} -eq 0 ]] || fail "conformance failed on: ${failed[*]}"
info "conformance passed on: $(backends)"
