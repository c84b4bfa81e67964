#!/usr/bin/env bash
# Re-solve third_party/python/requirements.in into the one hash-locked lock file.
#   tools/lock/update.sh                 # re-solve, keeping pins where possible
#   tools/lock/update.sh --upgrade       # move everything to the newest allowed versions
#   tools/lock/update.sh --upgrade-package mlflow
# Then it builds a throwaway venv from the new lock exactly as the build does, so a lock that would
# not install (a missing dependency, a bad hash) fails here, not in CI.
# torch stays on the CPU build (torch==2.13.0+cpu): on these machines pip's find-links folder holds
# the wheel; elsewhere pass PIP_FIND_LINKS or UV_FIND_LINKS=https://download.pytorch.org/whl/cpu.
set -euo pipefail
cd "$(dirname "$0")/../.."

UV_VERSION=0.13.9
tool_venv="${XDG_CACHE_HOME:-$HOME/.cache}/causeway/uv-${UV_VERSION}"
if [ ! -x "$tool_venv/bin/uv" ]; then
  python3 -m venv "$tool_venv"
  "$tool_venv/bin/pip" install -q "uv==${UV_VERSION}"
fi

find_links=()
for dir in ${PIP_FIND_LINKS:-} ${UV_FIND_LINKS:-} /opt/wheels; do
  [ -e "$dir" ] || [[ "$dir" == http* ]] && find_links+=(--find-links "$dir")
done

"$tool_venv/bin/uv" pip compile \
  --python-version 3.11 \
  --python-platform x86_64-manylinux_2_28 \
  --generate-hashes \
  --only-binary :all: \
  --no-emit-find-links \
  "${find_links[@]}" \
  --custom-compile-command "tools/lock/update.sh" \
  -o third_party/python/requirements_lock.txt \
  third_party/python/requirements.in "$@"

# The new lock must install the way the build installs it (tools/bazel/python/make_venv.py): exactly
# the pinned wheels, hash-checked, no resolver, and closed (every dependency, extras included, locked).
check_root="$(mktemp -d /tmp/causeway-lock-check.XXXXXX)"
trap 'rm -rf "$check_root"' EXIT
echo "lock: checking that the new lock installs exactly and is closed (builds a throwaway venv)" >&2
/usr/bin/python3.11 tools/bazel/python/make_venv.py --lock third_party/python/requirements_lock.txt \
  --python /usr/bin/python3.11 --root "$check_root" >/dev/null
echo "lock: third_party/python/requirements_lock.txt installs with --no-deps and is closed" >&2
