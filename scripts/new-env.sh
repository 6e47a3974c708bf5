#!/usr/bin/env bash
# Create .env from .env.example with a freshly generated GATEWAY_ADMIN_KEY and
# GRAFANA_ADMIN_PASSWORD (40 hex characters each), readable by its owner only.
#   bash scripts/new-env.sh [PATH]     # default PATH: .env at the repository root
# Never overwrites an existing file. Fill in HF_TOKEN afterwards for the GPU stacks.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${1:-$root/.env}"
if [ -e "$target" ]; then
    echo "new-env: $target exists; not overwriting it (delete it first to start over)" >&2
    exit 1
fi

secret() { od -An -tx1 -N20 /dev/urandom | tr -d ' \n'; }
admin_key="$(secret)"
grafana_password="$(secret)"

umask 077
sed -e "s/^GATEWAY_ADMIN_KEY=\$/GATEWAY_ADMIN_KEY=$admin_key/" \
    -e "s/^GRAFANA_ADMIN_PASSWORD=\$/GRAFANA_ADMIN_PASSWORD=$grafana_password/" \
    "$root/.env.example" >"$target"

for name in GATEWAY_ADMIN_KEY GRAFANA_ADMIN_PASSWORD; do
    if ! grep -Eq "^$name=[0-9a-f]{40}\$" "$target"; then
        rm -f "$target"
        echo "new-env: .env.example has no empty '$name=' line to fill" >&2
        exit 1
    fi
done
echo "new-env: wrote $target with a generated GATEWAY_ADMIN_KEY and GRAFANA_ADMIN_PASSWORD"
echo "new-env: for the GPU stacks, set HF_TOKEN in it"
