#!/usr/bin/env bash
# Checks that every C++ file follows .clang-format (Google style, 120 columns); with --fix, rewrites them.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files --cached --others --exclude-standard -- '*.h' '*.cc' '*.cpp' | grep -v '^tests/install/seed_samples/')
if [[ "${1:-}" == --fix ]]; then
  clang-format -i "${files[@]}"
  exit 0
fi
if ! clang-format --dry-run --Werror "${files[@]}" 2>/tmp/moe_ep_format.$$; then
  head -40 /tmp/moe_ep_format.$$
  rm -f /tmp/moe_ep_format.$$
  echo "format check failed: run 'bash scripts/check_format.sh --fix'" >&2
  exit 1
fi
rm -f /tmp/moe_ep_format.$$
echo "format: ${#files[@]} files follow .clang-format"
