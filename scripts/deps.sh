#!/usr/bin/env bash
# Installs the Debian 12 packages moe_ep needs to build and test, plus any named as arguments (only those
# missing; needs root).
set -euo pipefail
packages=(g++ cmake ninja-build libgtest-dev libgmock-dev libbenchmark-dev clang-format libopenmpi-dev openmpi-bin "$@")
missing=()
for p in "${packages[@]}"; do
  # Installed (held or not, for one architecture or more), not merely known: a package removed but not purged still
  # has a status ("config-files"). grep reads it all (no -q): an early exit would fail the pipe under pipefail.
  dpkg-query -W -f='${db:Status-Status}\n' "$p" 2>/dev/null | grep -x installed >/dev/null || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
