#!/usr/bin/env bash
# The naive way to roll a fleet out, the baseline psql-fleet is compared with: one cluster
# after another, render its manifests, server-side apply them, wait for the Releases to be
# Ready, then apply again with the Usage (which belongs only after both Releases are Ready).
#
#   kubectl-loop.sh PSQL_FLEET_BIN FLEET_DIR CREDENTIALS_DIR WORK_DIR CLUSTER...
set -euo pipefail
bin=$1 fleet=$2 creds=$3 work=$4
shift 4
mkdir -p "$work"
for c in "$@"; do
  kc="$creds/$c.yaml"
  "$bin" render "$fleet" --cluster "$c" >"$work/$c.yaml"
  kubectl --kubeconfig "$kc" apply --server-side --field-manager=psql-fleet -f "$work/$c.yaml" >/dev/null
  kubectl --kubeconfig "$kc" wait --for=condition=Ready --timeout=120s -f "$work/$c.yaml" >/dev/null
  "$bin" render "$fleet" --cluster "$c" --assume-ready >"$work/$c-ready.yaml"
  kubectl --kubeconfig "$kc" apply --server-side --field-manager=psql-fleet -f "$work/$c-ready.yaml" >/dev/null
done
