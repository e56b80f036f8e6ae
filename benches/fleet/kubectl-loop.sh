#!/usr/bin/env bash
# The naive way to roll a fleet out, the baseline psql-fleet is compared with: for each
# cluster, render its manifests, server-side apply them, wait for the Releases to be Ready,
# then apply again with the Usage (which belongs only after both Releases are Ready). One
# cluster after another, or LOOP_PARALLEL clusters at a time (xargs -P), as a script a
# platform team writes first would.
#
#   [LOOP_PARALLEL=N] kubectl-loop.sh PSQL_FLEET_BIN FLEET_DIR CREDENTIALS_DIR WORK_DIR CLUSTER...
set -euo pipefail
bin=$1 fleet=$2 creds=$3 work=$4
shift 4
mkdir -p "$work"
one() {
  local c=$1 kc="$creds/$1.yaml"
  "$bin" render "$fleet" --cluster "$c" >"$work/$c.yaml"
  kubectl --kubeconfig "$kc" apply --server-side --field-manager=psql-fleet -f "$work/$c.yaml" >/dev/null
  kubectl --kubeconfig "$kc" wait --for=condition=Ready --timeout=120s -f "$work/$c.yaml" >/dev/null
  "$bin" render "$fleet" --cluster "$c" --assume-ready >"$work/$c-ready.yaml"
  kubectl --kubeconfig "$kc" apply --server-side --field-manager=psql-fleet -f "$work/$c-ready.yaml" >/dev/null
}
parallel=${LOOP_PARALLEL:-1}
if [[ $parallel -le 1 ]]; then
  for c in "$@"; do one "$c"; done
else
  export -f one
  export bin fleet creds work
  printf '%s\n' "$@" | xargs -P "$parallel" -n 1 bash -c 'one "$1"' _
fi
