"""Tests that check_dashboards.py catches what it must (python3 -m unittest, stdlib only).

The live cases run when PROMETHEUS_URL names a Prometheus that scrapes the sample
exposition (dashboards/test.sh sets it); otherwise they are skipped with a reason.
"""

import copy
import io
import json
import os
import sys
import tempfile
import unittest
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import check_dashboards as cd  # noqa: E402

CATALOG = cd.load_catalog(HERE.parent / "METRICS.md", None)
GOOD = json.loads((HERE.parent / "drift.json").read_text())
URL = os.environ.get("PROMETHEUS_URL")


def first_target(d):
    return next(p for p in cd.all_panels(d["panels"]) if p.get("targets"))["targets"][0]


def problems(d, prometheus=None):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.json"
        path.write_text(json.dumps(d))
        report = cd.Report()
        queries = cd.check_dashboard(path, CATALOG, report, set())
        if prometheus:
            cd.check_prometheus(prometheus, queries, 0, report)
        return "\n".join(report.failures)


class Static(unittest.TestCase):
    def test_a_good_dashboard_has_no_problem(self):
        self.assertEqual(problems(GOOD), "")

    def test_a_hard_coded_datasource_uid_is_rejected(self):
        d = copy.deepcopy(GOOD)
        first_target(d)["datasource"] = {"type": "prometheus", "uid": "P1809F7CD0C75ACF3"}
        self.assertIn("hard-coded datasource UID", problems(d))

    def test_an_old_schema_is_rejected(self):
        d = copy.deepcopy(GOOD)
        d["schemaVersion"] = 27
        self.assertIn("schemaVersion 27", problems(d))

    def test_a_missing_claim_variable_is_rejected(self):
        d = copy.deepcopy(GOOD)
        d["templating"]["list"] = [v for v in d["templating"]["list"] if v["name"] != "claim"]
        self.assertIn("no variable `claim`", problems(d))

    def test_a_single_value_cluster_variable_is_rejected(self):
        d = copy.deepcopy(GOOD)
        d["templating"]["list"][1]["multi"] = False
        self.assertIn("`cluster` must be multi-value", problems(d))

    def test_a_metric_outside_the_catalog_is_rejected(self):
        d = copy.deepcopy(GOOD)
        first_target(d)["expr"] = 'sum(psql_fleet_drifted{cluster=~"$cluster"})'
        self.assertIn("psql_fleet_drifted is not in the catalog", problems(d))

    def test_a_query_that_ignores_the_cluster_variable_is_rejected(self):
        d = copy.deepcopy(GOOD)
        first_target(d)["expr"] = "sum(psql_fleet_drift_detected)"
        self.assertIn("ignores $cluster", problems(d))

    def test_an_unknown_grafana_variable_is_rejected(self):
        d = copy.deepcopy(GOOD)
        first_target(d)["expr"] = 'sum(psql_fleet_drift_detected{cluster=~"$cluster",wave=~"$wave"})'
        self.assertIn("unknown variable $wave", problems(d))

    def test_metric_names_skip_functions_labels_and_keywords(self):
        expr = ('histogram_quantile(0.99, sum by (cluster, le) (rate(a_bucket{x="y z"}[5m])))'
                ' / on (cluster) group_left (wave) b_info * 1e3 or vector(0)')
        self.assertEqual(cd.metric_names(expr), {"a_bucket", "b_info"})

    def test_histogram_series_map_to_their_catalog_metric(self):
        self.assertEqual(cd.base_name("psql_fleet_reconcile_duration_seconds_bucket", CATALOG),
                         "psql_fleet_reconcile_duration_seconds")
        self.assertEqual(cd.base_name("psql_fleet_drift_corrections_total", CATALOG),
                         "psql_fleet_drift_corrections_total")


@unittest.skipUnless(URL, "PROMETHEUS_URL not set (dashboards/test.sh sets it)")
class Live(unittest.TestCase):
    def live(self, expr):
        d = copy.deepcopy(GOOD)
        first_target(d)["expr"] = expr
        return problems(d, URL)

    def test_a_query_that_does_not_parse_fails(self):
        self.assertIn("bad_data", self.live('sum(psql_fleet_drift_detected{cluster=~"$cluster"}'))

    def test_a_query_without_data_fails(self):
        self.assertIn("returned no data", self.live('psql_fleet_drift_detected{cluster=~"$cluster"} > 5'))

    def test_a_metric_prometheus_does_not_have_fails(self):
        d = copy.deepcopy(GOOD)
        first_target(d)["expr"] = 'psql_fleet_drift_detected{cluster=~"$cluster"} or up_nonexistent'
        self.assertIn("no metric up_nonexistent", problems(d, URL))

    def test_the_shipped_dashboards_pass(self):
        out, err = io.StringIO(), io.StringIO()
        argv = sys.argv
        sys.argv = ["check_dashboards.py", "--prometheus", URL, "--wait", "30"]
        try:
            with redirect_stdout(out), redirect_stderr(err):
                code = cd.main()
        finally:
            sys.argv = argv
        self.assertEqual(code, 0, err.getvalue())


if __name__ == "__main__":
    unittest.main()
