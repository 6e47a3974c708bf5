#!/usr/bin/env bash
# The whole test suite: lint, format check, strict typing, then pytest. Sets itself up first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff"
ruff check .
ruff format --check .
echo "== mypy"
mypy
# tests/deploy need promtool and prometheus (Debian's `prometheus` package); they skip without.
if ! command -v promtool >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "== apt-get install prometheus (promtool and server for tests/deploy)"
  log="$(mktemp)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends prometheus; } >"$log" 2>&1 || { cat "$log"; exit 1; }
fi
# tests/loadtest/test_crosscheck.py runs AIPerf from its own venv, cached between runs
# (~/.cache/turnout/crosscheck, or TURNOUT_CROSSCHECK_CACHE): 1-3 minutes the first time.
echo "== AIPerf for the cross-check"
python bench/crosscheck.py --install-only
echo "== pytest"
pytest "$@"
