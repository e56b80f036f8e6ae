#!/usr/bin/env bash
# The dashboards and the metrics against the real thing: `psql-fleet sim` with 6 clusters, the
# agent (`psql-fleet run`) on a fleet where
#   sim-000, sim-004        become ready,
#   sim-001                 is drifted and stays so (drift policy report, a hand edit),
#   sim-002                 is drifted and corrected (policy correct, a hand edit),
#   sim-003                 is unreachable from the start (sim fault down),
#   sim-005                 fails: the simulator answers 60% of its requests with 500,
# and a real Prometheus scraping the agent on loopback. Then:
#   1. promtool check metrics on a real scrape of the agent's /metrics, failing on any complaint;
#   2. check_dashboards.py --prometheus: every panel and variable query of every dashboard
#      parses, returns data and uses only metrics Prometheus has;
#   3. every alert rule evaluates without error on the agent's series.
# Metrics of the catalog that this build does not export yet are listed in PENDING below:
# queries naming them are skipped (and named), and the test fails once the agent exports one,
# so the list must shrink as they land.
# Needs: a built psql-fleet ($PSQL_FLEET, default target/debug/psql-fleet, built if absent),
# python3, promtool and prometheus (Debian package `prometheus`). Without prometheus: SKIP,
# unless $CI is set (then it fails).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"

PENDING=()

missing=()
for tool in promtool prometheus python3 curl; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
  if [[ -n "${CI:-}" ]]; then
    echo "FAIL dashboards/e2e.sh: ${missing[*]} not found (CI is set; apt-get install prometheus)" >&2
    exit 1
  fi
  echo "SKIP dashboards/e2e.sh: ${missing[*]} not found (apt-get install -y prometheus)"
  exit 0
fi
bin="${PSQL_FLEET:-$root/target/debug/psql-fleet}"
[[ -x "$bin" ]] || cargo build --quiet
passed=0
step() { [[ -n "${current:-}" ]] && passed=$((passed + 1)); current="$*"; printf '\n== %s\n' "$*"; }

tmp="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  echo "FAIL dashboards/e2e.sh: $*" >&2
  for log in sim agent prometheus; do
    [[ -f "$tmp/$log.log" ]] && { echo "--- $log log (tail)" >&2; tail -n 20 "$tmp/$log.log" >&2; }
  done
  echo "dashboards-e2e: $passed passed, 1 failed"
  exit 1
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Polls a command until it succeeds or the deadline (seconds) passes.
eventually() {
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

step "simulator and agent: 6 clusters, one drifted, one corrected, one down, one failing"
"$bin" sim --clusters 6 --out "$tmp/sim" --ready-after 500ms >"$tmp/sim.log" 2>&1 &
pids+=($!)
eventually 30 grep -q 'admin API:' "$tmp/sim.log" || fail "the simulator did not start"
admin="$(sed -n 's/.*admin API: *\(https:[^ ]*\).*/\1/p' "$tmp/sim.log")"
fault() { "$bin" sim fault --admin "$admin" --dir "$tmp/sim" "$@"; }

fleet="$tmp/fleet"
mkdir -p "$fleet/clusters" "$fleet/claims"
cat >"$fleet/fleet.yaml" <<'YAML'
apiVersion: fleet.hops.ops.com.ai/v1alpha1
kind: Fleet
metadata: {name: e2e}
spec:
  drift: {policy: correct}
YAML
for i in 0 1 2 3 4 5; do
  c="sim-00$i"
  cp "$tmp/sim/clusters/$c.yaml" "$fleet/clusters/$c.yaml"
  printf 'apiVersion: stacks.hops.ops.com.ai/v1alpha1\nkind: Psql\nmetadata: {name: app}\nspec: {clusterName: %s}\n' "$c" \
    >"$fleet/claims/$c.yaml"
done
sed -i 's/^spec:$/spec:\n  drift: {policy: report}/' "$fleet/clusters/sim-001.yaml"
grep -q 'policy: report' "$fleet/clusters/sim-001.yaml" || fail "could not set the drift policy of sim-001"
"$bin" validate "$fleet"
fault down sim-003
fault errors sim-005 0.6

agent_port="$(free_port)"
agent="http://127.0.0.1:$agent_port"
"$bin" run --source "$fleet" --credentials-dir "$tmp/sim" --listen "127.0.0.1:$agent_port" \
  --interval 5s >"$tmp/agent.log" 2>&1 &
pids+=($!)
ready() { # cluster: every claim ready
  curl -sf "$agent/api/v1/status" | python3 -c '
import json, sys
c = json.load(sys.stdin)["clusters"].get(sys.argv[1])
sys.exit(0 if c and c["claims"] and all(x["ready"] for x in c["claims"]) else 1)' "$1"
}
for c in sim-000 sim-001 sim-002 sim-004; do
  eventually 60 ready "$c" || fail "$c did not become ready"
done
edit='{"spec":{"forProvider":{"chart":{"version":"9.9.9"}}}}'
fault edit sim-001 --name atlas-operator --patch "$edit" >/dev/null
# A removed field: drift the agent corrects without taking a field from another manager
# (a changed one would be a conflict, which the agent reports and does not force).
fault edit sim-002 --name atlas-operator --patch '{"spec":{"rollbackLimit":null}}' >/dev/null
# The scrape is read whole before it is searched: under pipefail, `curl | grep -q` fails
# whenever grep finds its line and exits while curl still writes (SIGPIPE, exit 23).
has() {
  local scrape
  scrape="$(curl -sf "$agent/metrics")" && grep -q "$1" <<<"$scrape"
}
eventually 30 has 'psql_fleet_drift_detected{claim="default/app",cluster="sim-001",component="atlas"} 1' \
  || fail "the drift on sim-001 is not reported"
eventually 30 has 'psql_fleet_drift_corrections_total{cluster="sim-002"} [1-9]' \
  || fail "the drift on sim-002 is not corrected"
eventually 30 has 'psql_fleet_cluster_reachable{cluster="sim-003"} 0' || fail "sim-003 is not unreachable"
eventually 30 has 'psql_fleet_reconcile_errors_total{cluster="sim-005",reason="[a-z_]*"} [1-9]' \
  || fail "sim-005 has no reconcile errors"
curl -sf "$agent/api/v1/status" | python3 -c '
import json, sys
for name, c in json.load(sys.stdin)["clusters"].items():
    print("  %s: reachable=%s ready=%s drift=%s" % (name, c["reachable"], [x["ready"] for x in c["claims"]], [x["drift"] for x in c["claims"]]))'

step "promtool check metrics on a real scrape of the agent"
curl -sf "$agent/metrics" >"$tmp/scrape.txt" || fail "cannot scrape $agent/metrics"
complaints="$(promtool check metrics <"$tmp/scrape.txt" 2>&1)" || true
[[ -z "$complaints" ]] || fail "promtool check metrics complains:
$complaints"
echo "clean ($(grep -c '^psql_fleet_' "$tmp/scrape.txt") samples)"
for m in "${PENDING[@]}"; do
  if grep -q "^$m" "$tmp/scrape.txt"; then
    fail "the agent now exports $m: remove it from PENDING in dashboards/e2e.sh"
  fi
done

step "every dashboard query returns data from a real Prometheus scraping the agent"
prom_port="$(free_port)"
cat >"$tmp/prometheus.yml" <<YML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $here/alerts.yaml
scrape_configs:
  - job_name: psql-fleet
    static_configs:
      - targets: ["127.0.0.1:$agent_port"]
YML
promtool check config "$tmp/prometheus.yml" >/dev/null
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/data" \
  --web.listen-address="127.0.0.1:$prom_port" --log.level=warn >"$tmp/prometheus.log" 2>&1 &
pids+=($!)
prom="http://127.0.0.1:$prom_port"
skips=()
for m in "${PENDING[@]}"; do skips+=(--skip-metric "$m"); done
python3 "$here/check_dashboards.py" --prometheus "$prom" --wait 90 "${skips[@]}" \
  || fail "dashboard queries against the agent"

step "the alert rules evaluate without error on the agent's series"
python3 "$here/check_rules.py" "$prom" || fail "alert rules"

passed=$((passed + 1))
echo
echo "PASS dashboards/e2e.sh"
echo "dashboards-e2e: $passed passed, 0 failed"
