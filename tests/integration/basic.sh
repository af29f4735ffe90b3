#!/usr/bin/env bash
# The skeleton slice, on both backends: create, write, read, list, rename
# and remove through the mount, and the bytes land on the backend.  On nfs
# a 512 MiB file written through the mount has the same checksum on the
# export as the source.
. "$(dirname "$0")/lib.sh"
setup_tmp

big_mib=${STAGEFS_TEST_BIG_MIB:-512}
dd if=/dev/urandom of="$TEST_TMP/src" bs=1M count="$big_mib" status=none
src_sum=$(xxh "$TEST_TMP/src")

for kind in $(backends); do
	[[ $kind == nfs ]] && need_nfs
	make_backend "$kind"
	mnt=$TEST_TMP/mnt.$kind
	mount_stagefs "$BACKEND" "$mnt" "$TEST_TMP/cache.$kind"

	# create, write, read
	echo "hello $kind" >"$mnt/a.txt"
	[[ $(cat "$mnt/a.txt") == "hello $kind" ]] || fail "$kind: read back a.txt"
	# directories, listing
	mkdir "$mnt/dir" "$mnt/dir/sub"
	touch "$mnt/dir/f1" "$mnt/dir/f2"
	[[ $(ls "$mnt/dir" | tr '\n' ' ') == "f1 f2 sub " ]] \
		|| fail "$kind: listing of dir: $(ls "$mnt/dir")"
	# rename of a file and of a directory
	mv "$mnt/a.txt" "$mnt/dir/sub/b.txt"
	[[ ! -e "$mnt/a.txt" ]] || fail "$kind: a.txt still there after rename"
	mv "$mnt/dir/sub" "$mnt/sub2"
	[[ $(cat "$mnt/sub2/b.txt") == "hello $kind" ]] || fail "$kind: read after renames"
	# remove
	rm "$mnt/dir/f1"
	rmdir "$mnt/dir/sub" 2>/dev/null && fail "$kind: rmdir of a renamed-away dir succeeded"
	rm "$mnt/dir/f2"
	rmdir "$mnt/dir"
	[[ ! -e "$mnt/dir" ]] || fail "$kind: dir still there after rmdir"
	# a rmdir of a non-empty directory is refused with ENOTEMPTY
	err=$(rmdir "$mnt/sub2" 2>&1) && fail "$kind: rmdir of a non-empty dir succeeded"
	[[ $err == *"not empty"* ]] || fail "$kind: rmdir error was: $err"

	# the big file
	dd if="$TEST_TMP/src" of="$mnt/big" bs=1M status=none conv=fsync
	[[ $(xxh "$mnt/big") == "$src_sum" ]] || fail "$kind: big file read back differs"

	unmount_stagefs "$mnt" || fail "$kind: daemon exit status $?"

	# after unmount, everything is on the backend
	[[ $(cat "$BACKEND_DIR/sub2/b.txt") == "hello $kind" ]] \
		|| fail "$kind: b.txt on the backend"
	[[ ! -e "$BACKEND_DIR/dir" ]] || fail "$kind: dir still on the backend"
	if [[ $(xxh "$BACKEND_DIR/big") != "$src_sum" ]]; then
		fail "$kind: big file on the backend differs from the source: $(python3 - "$TEST_TMP/src" "$BACKEND_DIR/big" <<'PY'
import sys
a, b = (open(p, "rb").read() for p in sys.argv[1:3])
bad = [i for i in range(0, max(len(a), len(b)), 4 << 20)
       if a[i:i + (4 << 20)] != b[i:i + (4 << 20)]]
print(f"{len(b)} bytes, {len(bad)} 4 MiB pieces differ, the first at {bad[0] if bad else -1}")
PY
)"
	fi
	info "$kind: ${big_mib} MiB file on the backend matches the source ($src_sum)"
done
info "ok"
