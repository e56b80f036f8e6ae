#!/usr/bin/env bash
# Tests of the alert rules and Grafana dashboards, with the real tools:
#   1. promtool check rules + promtool test rules (every alert fires and does not fire);
#   2. the sample exposition passes promtool check metrics;
#   3. check_dashboards.py: structure, variables, datasource, metric names against METRICS.md;
#   4. a real Prometheus on 127.0.0.1 scrapes the sample exposition and every dashboard query
#      must parse, return data and use only metric names it has; the checker's own tests
#      (tests/test_check_dashboards.py) show it rejects bad dashboards and bad queries;
#   5. the copies the Helm chart carries are identical to these files.
# Needs: bash, python3 (3.11, stdlib), promtool and prometheus (Debian package `prometheus`).
# Without promtool/prometheus: prints SKIP and exits 0, unless $CI is set (then it fails).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$here"

missing=()
for tool in promtool prometheus python3; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
  if [[ -n "${CI:-}" ]]; then
    echo "FAIL dashboards: ${missing[*]} not found (CI is set; install the Debian package prometheus)" >&2
    exit 1
  fi
  echo "SKIP dashboards/test.sh: ${missing[*]} not found (apt-get install -y prometheus)"
  exit 0
fi

passed=0
step() { [[ -n "${current:-}" ]] && passed=$((passed + 1)); current="$*"; printf '\n== %s\n' "$*"; }

step "promtool check rules alerts.yaml"
promtool check rules alerts.yaml

step "promtool test rules tests/*.yaml"
promtool test rules tests/*_test.yaml

step "promtool check metrics on the sample exposition"
python3 - "$here/tests/fixtures/sample-metrics.txt" <<'PY' | promtool check metrics
import sys
sys.path.insert(0, "tests")
import serve_metrics
print(serve_metrics.render(open(sys.argv[1]).read(), 1, 1.7e9), end="")
PY
echo "clean"

step "promtool check config examples/prometheus/prometheus.yml"
promtool check config "$root/examples/prometheus/prometheus.yml"

step "check_dashboards.py (static)"
python3 check_dashboards.py

step "check_dashboards.py against a real Prometheus scraping the sample exposition"
tmp="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
metrics_port="$(free_port)"
prom_port="$(free_port)"
python3 tests/serve_metrics.py tests/fixtures/sample-metrics.txt --port "$metrics_port" &
pids+=($!)
cat >"$tmp/prometheus.yml" <<YML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $here/alerts.yaml
scrape_configs:
  - job_name: psql-fleet
    static_configs:
      - targets: ["127.0.0.1:$metrics_port"]
YML
promtool check config "$tmp/prometheus.yml"
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/data" \
  --web.listen-address="127.0.0.1:$prom_port" --log.level=warn >"$tmp/prometheus.log" 2>&1 &
pids+=($!)
url="http://127.0.0.1:$prom_port"
python3 check_dashboards.py --prometheus "$url" --wait 60 || {
  echo "--- prometheus log" >&2
  tail -n 30 "$tmp/prometheus.log" >&2
  exit 1
}

step "the alert rules evaluate cleanly on the sample series"
python3 check_rules.py "$url"

step "check_dashboards.py catches what it must (static and live)"
PROMETHEUS_URL="$url" python3 -m unittest tests/test_check_dashboards.py

step "the Helm chart carries identical copies"
chart="$root/charts/psql-fleet"
if [[ -d "$chart" ]]; then
  diff -u alerts.yaml "$chart/files/alerts.yaml"
  for f in *.json; do diff -u "$f" "$chart/files/dashboards/$f"; done
  extra="$(cd "$chart/files/dashboards" && ls *.json)"
  [[ "$extra" == "$(ls *.json)" ]] || { echo "chart dashboards differ from dashboards/*.json" >&2; exit 1; }
  echo "identical"
else
  echo "no chart at $chart"
fi

passed=$((passed + 1))
echo
echo "PASS dashboards/test.sh"
echo "dashboards: $passed passed, 0 failed"
