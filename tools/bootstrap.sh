#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to build and test Causeway. Idempotent: installs
# only missing packages, and runs `apt-get update` only when something is missing.
set -euo pipefail

# Debian packages, one per line: package [command-or-file that proves it is installed]
DEBIAN_PACKAGES=(
  "bazel-bootstrap /usr/bin/bazel"
  "python3.11 /usr/bin/python3.11"
  "python3.11-venv /usr/lib/python3.11/ensurepip/__init__.py"
  "git /usr/bin/git"
  "skopeo /usr/bin/skopeo"
  "umoci /usr/bin/umoci"
  "npm /usr/bin/npm"
  "postgresql /usr/lib/postgresql/15/bin/postgres"
  "util-linux /usr/bin/setpriv"
  "bubblewrap /usr/bin/bwrap"
  "libseccomp2 /usr/lib/x86_64-linux-gnu/libseccomp.so.2"
)

missing=()
for entry in "${DEBIAN_PACKAGES[@]}"; do
  read -r pkg probe <<<"$entry"
  if [ ! -e "$probe" ] && ! command -v "$(basename "$probe")" >/dev/null 2>&1; then
    missing+=("$pkg")
  fi
done
# npm may come with a non-Debian Node.js already on PATH; Debian's would conflict with it.
if command -v npm >/dev/null 2>&1; then
  missing=("${missing[@]/npm/}")
fi

want=()
for pkg in "${missing[@]}"; do [ -n "$pkg" ] && want+=("$pkg"); done
if [ "${#want[@]}" -gt 0 ]; then
  echo "bootstrap: installing Debian packages: ${want[*]}" >&2
  sudo_cmd=()
  [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${want[@]}" >&2
fi

# Third-party Python is not installed here: Bazel builds the venv from the lock file on first use
# (tools/bazel/python/venv.bzl). torch is the CPU build; outside machines that carry the wheel,
# point pip at https://download.pytorch.org/whl/cpu (README, "Third-party Python").
