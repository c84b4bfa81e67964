#!/usr/bin/env bash
# Smoke check of the four service images (docs/adr/0002-oci-images.md): build each
# //services/<svc>:image, require skopeo to accept the layout, unpack it, and in a chroot of its
# root filesystem, as the image's user and with only the image's environment:
#   1. import every module the service's code imports, lazy ones included
#      (tools/oci/image_imports.py): pip_packages and the base layer hold what the binary needs;
#   2. find the executables the service runs (git for the deployer; bwrap, setpriv and prlimit
#      for the validator's sandbox);
#   3. run the entrypoint with a bad setting (PORT=not-a-port): it must exit 2 with the service's
#      configuration error naming it — what a misconfigured pod shows — not a traceback. (Without
#      any settings the registry would start: its defaults are the embedded single-machine mode.)
#
#   tools/oci/check_service_images.sh [registry validator gpu_runner deployer]
#
# Needs root (or user namespaces) for the chroot, like check_reproducible.sh.
set -euo pipefail

ROOT="$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)"
SERVICES=("$@")
[[ ${#SERVICES[@]} -gt 0 ]] || SERVICES=(registry validator gpu_runner deployer)

declare -A TOOLS=(
  [deployer]="/usr/bin/git"
  [validator]="/usr/bin/bwrap /usr/bin/setpriv /usr/bin/prlimit"
)

TMP="$(mktemp -d /tmp/causeway-images.XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
log() { echo "check_service_images: $*" >&2; }

targets=()
for svc in "${SERVICES[@]}"; do targets+=("//services/$svc:image"); done
t0="$(date +%s)"
(cd "$ROOT" && bazel build "${targets[@]}")
log "built ${#targets[@]} image(s) in $(($(date +%s) - t0)) s"

CHROOT=(/usr/sbin/chroot)
[[ "$(id -u)" == 0 ]] || CHROOT=(unshare --user --map-root-user /usr/sbin/chroot)

for svc in "${SERVICES[@]}"; do
  layout="$ROOT/bazel-bin/services/$svc/image"
  digest="$(cat "$ROOT/bazel-bin/services/$svc/image.digest")"
  skopeo inspect "oci:$layout:latest" >"$TMP/$svc.inspect.json"
  grep -q "\"Digest\": \"$digest\"" "$TMP/$svc.inspect.json" || { log "FAIL $svc: skopeo reports another digest"; exit 1; }
  config="$(skopeo inspect --config "oci:$layout:latest")"
  field() { /usr/bin/python3.11 -c 'import json,sys; c=json.loads(sys.argv[1])["config"]; v=c.get(sys.argv[2]); print("\n".join(v) if isinstance(v, list) else v)' "$config" "$1"; }
  mapfile -t ENTRYPOINT < <(field Entrypoint)
  mapfile -t ENV < <(field Env)
  user="$(field User)"
  workdir="$(field WorkingDir)"

  bundle="$TMP/$svc"
  umoci unpack --rootless --image "$layout:latest" "$bundle" >/dev/null
  rootfs="$bundle/rootfs"
  # What a container runtime provides and an unpacked layer lacks: the basic device nodes.
  mkdir -p "$rootfs/dev"
  for node in "null 1 3" "zero 1 5" "random 1 8" "urandom 1 9"; do
    set -- $node
    [[ -e "$rootfs/dev/$1" ]] || mknod -m 666 "$rootfs/dev/$1" c "$2" "$3"
  done
  run() { env -i "${ENV[@]}" "${CHROOT[@]}" --userspec="$user" "$rootfs" /bin/sh -c "cd '$workdir' && exec \"\$@\"" sh "$@"; }

  # 1. Every import resolves inside the image.
  if ! run "${ENTRYPOINT[0]}" - "$workdir" <"$ROOT/tools/oci/image_imports.py" >"$TMP/$svc.imports"; then
    cat "$TMP/$svc.imports" >&2
    log "FAIL $svc: modules the code imports are missing from the image"
    exit 1
  fi
  log "$svc: $(head -1 "$TMP/$svc.imports")"

  # 2. The executables the service runs.
  for tool in ${TOOLS[$svc]:-}; do
    [[ -x "$rootfs$tool" ]] || { log "FAIL $svc: $tool is not in the image"; exit 1; }
    run "$tool" --version >/dev/null 2>&1 || { log "FAIL $svc: $tool does not run in the image"; exit 1; }
  done

  # 3. A bad setting: a clear configuration error, exit code 2.
  bad="CAUSEWAY_${svc^^}_PORT"
  set +e
  ENV+=("$bad=not-a-port")
  run "${ENTRYPOINT[@]}" >"$TMP/$svc.out" 2>&1
  code=$?
  set -e
  if [[ $code -ne 2 ]] || ! grep -q '"level": "error"' "$TMP/$svc.out" || ! grep -q "$bad" "$TMP/$svc.out" \
    || grep -q "Traceback" "$TMP/$svc.out"; then
    cat "$TMP/$svc.out" >&2
    log "FAIL $svc: the entrypoint with $bad=not-a-port exited $code, expected 2 with a configuration error naming it"
    exit 1
  fi
  log "$svc: $digest; with a bad setting: $(head -c 300 "$TMP/$svc.out")"
  rm -rf "$bundle"
done
log "OK: ${SERVICES[*]} in $(($(date +%s) - t0)) s"
