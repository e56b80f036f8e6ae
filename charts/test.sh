#!/usr/bin/env bash
# Tests of charts/psql-fleet through a real Helm engine (Helm v4's Go library, in-process):
# strict lint with default, required and example values, `helm install --dry-run=client` with
# assertions on the objects, values.schema.json rejecting bad values, and the chart's copies of
# dashboards/alerts.yaml and dashboards/*.json being identical to the originals; and the
# manifests applied to `psql-fleet sim` with kubectl apply --server-side --dry-run=server for
# the kinds the simulator serves (tests/test_chart_sim.py; needs kubectl and a built binary).
# Needs: python3 (3.11) and PyPI helm-python-sdk; PyPI helm-sdkpy (optional) lints as a second engine.
#   pip install helm-python-sdk && pip install --ignore-requires-python helm-sdkpy
# Without helm-python-sdk: prints SKIP and exits 0, unless $CI is set (then it fails).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if ! python3 -c 'import helm_python' >/dev/null 2>&1; then
  if [[ -n "${CI:-}" ]]; then
    echo "FAIL charts: python module helm_python not found (CI is set; pip install helm-python-sdk)" >&2
    exit 1
  fi
  echo "SKIP charts/test.sh: python module helm_python not found (pip install helm-python-sdk)"
  exit 0
fi
python3 -c 'import helm_python as h; print("Helm engine: helm-python-sdk", h.__version__, "with Helm", h.helm_sdk_version())'

# Helm's Go logger warns on stderr about `required` values during lint; the tests assert
# on lint reports themselves.
python3 - 2> >(grep -v ' WARN missing required values' >&2) <<'PY'
import sys, unittest
suite = unittest.defaultTestLoader.loadTestsFromNames(["charts.tests.test_chart", "charts.tests.test_chart_sim"])
result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
skipped = len(result.skipped)
print(f"charts: {result.testsRun - failed - skipped} passed, {failed} failed, {skipped} skipped")
sys.exit(0 if result.wasSuccessful() else 1)
PY
