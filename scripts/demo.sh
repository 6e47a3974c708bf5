#!/usr/bin/env bash
# The main job: compare the baseline and managed fleets on simulated replicas. Sets itself up first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/loadtest compare baseline managed "$@"
