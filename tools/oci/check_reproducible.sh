#!/usr/bin/env bash
# Reproducibility check for py_oci_image (docs/adr/0002-oci-images.md): build an image here, then
# again from a second checkout at another path with its own output base, and require the same
# manifest digest; skopeo must accept the layout and the image's python must run in a chroot.
#
#   tools/oci/check_reproducible.sh [//label:of_a_py_oci_image]   (default //tools/oci/example:hello_image)
#
# The second checkout is a `git clone` of this repository plus this working tree's uncommitted
# changes (modified, deleted and untracked files), so a dirty tree is compared with itself, not
# with HEAD. Its Bazel server is a temporary one that shuts down and is deleted at the end; the
# shared server of this workspace is left alone. Needs root (or user namespaces) for the chroot.
set -euo pipefail

TARGET="${1:-//tools/oci/example:hello_image}"
ROOT="$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)"
PKG="${TARGET#//}"
PKG="${PKG%%:*}"
NAME="${TARGET##*:}"
REL="${PKG}/${NAME}"

TMP="$(mktemp -d /tmp/causeway-repro.XXXXXX)"
CLONE="$TMP/another/path/causeway"
OUTPUT_BASE="$TMP/output_base"
second_bazel() { (cd "$CLONE" && bazel --output_base="$OUTPUT_BASE" --max_idle_secs=60 "$@"); }
cleanup() {
  if [[ -d "$OUTPUT_BASE" ]]; then
    # Our own temporary server only (its own output base); never the shared one.
    second_bazel shutdown >/dev/null 2>&1 || true
    chmod -R u+w "$OUTPUT_BASE" 2>/dev/null || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }
log() { echo "check_reproducible: $*" >&2; }

# 1. This workspace, shared server.
t0="$(now)"
(cd "$ROOT" && bazel build "$TARGET")
DIGEST_HERE="$(cat "$ROOT/bazel-bin/$REL.digest")"
log "built here in $(since "$t0"): $DIGEST_HERE"

# 2. A second checkout at another path: the repository plus this tree's uncommitted changes.
t1="$(now)"
git clone --quiet --no-hardlinks "$ROOT" "$CLONE"
(
  cd "$ROOT"
  git ls-files -z --deleted | (cd "$CLONE" && xargs -0 -r rm -f --)
  # Modified and untracked (not ignored) files that still exist; deleted ones are gone above.
  git ls-files -z --modified --others --exclude-standard \
    | while IFS= read -r -d '' f; do [[ -e "$f" || -L "$f" ]] && printf '%s\0' "$f"; done \
    | tar --null -T - -cf - | tar -xf - -C "$CLONE"
)
second_bazel build "$TARGET"
DIGEST_THERE="$(cat "$CLONE/bazel-bin/$REL.digest")"
log "built in $CLONE (output base $OUTPUT_BASE) in $(since "$t1"): $DIGEST_THERE"

if [[ "$DIGEST_HERE" != "$DIGEST_THERE" ]]; then
  log "FAIL: digests differ ($DIGEST_HERE vs $DIGEST_THERE)"
  diff <(cd "$ROOT/bazel-bin/$REL" && find . -type f | sort) <(cd "$CLONE/bazel-bin/$REL" && find . -type f | sort) >&2 || true
  exit 1
fi

# 3. The OCI tools accept the layout, and the image runs.
skopeo inspect "oci:$CLONE/bazel-bin/$REL:latest" >"$TMP/inspect.json"
grep -q "\"Digest\": \"$DIGEST_HERE\"" "$TMP/inspect.json" || { log "FAIL: skopeo reports another digest"; exit 1; }
umoci unpack --rootless --image "$ROOT/bazel-bin/$REL:latest" "$TMP/bundle" >/dev/null
mapfile -t ENTRYPOINT < <(skopeo inspect --config "oci:$ROOT/bazel-bin/$REL:latest" \
  | /usr/bin/python3.11 -c 'import json,sys; print("\n".join(json.load(sys.stdin)["config"]["Entrypoint"]))')
mapfile -t ENV < <(skopeo inspect --config "oci:$ROOT/bazel-bin/$REL:latest" \
  | /usr/bin/python3.11 -c 'import json,sys; print("\n".join(json.load(sys.stdin)["config"]["Env"]))')
CHROOT=(/usr/sbin/chroot)
[[ "$(id -u)" == 0 ]] || CHROOT=(unshare --user --map-root-user /usr/sbin/chroot)
env -i "${ENV[@]}" "${CHROOT[@]}" "$TMP/bundle/rootfs" "${ENTRYPOINT[@]}" >"$TMP/run.out"
log "image output: $(cat "$TMP/run.out")"
log "OK: $TARGET is reproducible ($DIGEST_HERE), total $(since "$t0")"
