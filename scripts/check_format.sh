#!/usr/bin/env bash
# Checks that every C++ file follows .clang-format (Google style, 120 columns); with --fix, rewrites them. The
# seed samples (tests/install/seed_samples/) are left as the operator documents print them.
set -euo pipefail
cd "$(dirname "$0")/.."
# The file list comes from git (tracked and new files, ignored ones left out); a tree git cannot read is an
# error, not an empty list that would pass.
listed=$(git -c safe.directory="$PWD" ls-files --cached --others --exclude-standard -- '*.h' '*.cc' '*.cpp') ||
  { echo "check_format: git cannot list the files of $PWD (install git; run it in a clone)" >&2; exit 1; }
mapfile -t files < <(grep -v '^tests/install/seed_samples/' <<<"$listed")
((${#files[@]})) || { echo "check_format: git lists no C++ files in $PWD" >&2; exit 1; }
case "${1:-}" in
  "" | --fix) ;;
  *) echo "usage: $0 [--fix]" >&2; exit 2 ;;
esac
if [[ "${1:-}" == --fix ]]; then
  clang-format -i "${files[@]}"
  exit 0
fi
report=$(mktemp)
trap 'rm -f "$report"' EXIT
if ! clang-format --dry-run --Werror "${files[@]}" 2>"$report"; then
  head -40 "$report"
  echo "format check failed: run 'bash scripts/check_format.sh --fix'" >&2
  exit 1
fi
echo "format: ${#files[@]} files follow .clang-format"
