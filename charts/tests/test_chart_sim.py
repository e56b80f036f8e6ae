"""The chart's manifests applied to `psql-fleet sim` with `kubectl apply --server-side
--dry-run=server`, for the kinds the simulator serves (python3 -m unittest).

The simulator serves Namespace, Event, ConfigMap, Lease, Deployment, CustomResourceDefinition
and the Crossplane kinds psql-fleet writes; it does not serve ServiceAccount, Service, Secret,
Role, RoleBinding, PodDisruptionBudget, ServiceMonitor or PrometheusRule, so objects of those
kinds are skipped and named. Each served
object must be accepted by the server's validation and server-side apply as a dry run, and
afterwards must not exist and must not be in the simulator's audit log (a dry run changes
nothing).

Needs kubectl and a built psql-fleet ($PSQL_FLEET, default target/debug/psql-fleet); without
them the tests are skipped, unless $CI is set (then they fail).
"""

import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest
from pathlib import Path

from charts.tests.test_chart import REQUIRED, ROOT, example_values, install_dry_run, merge

BINARY = Path(os.environ.get("PSQL_FLEET", ROOT / "target" / "debug" / "psql-fleet"))
NAMESPACE = "psql-fleet"


def missing_tools():
    missing = [] if shutil.which("kubectl") else ["kubectl"]
    if not BINARY.is_file():
        missing.append(str(BINARY))
    return missing


class ChartOnTheSimulator(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        missing = missing_tools()
        if missing:
            if os.environ.get("CI"):
                raise AssertionError(f"{', '.join(missing)} not found (CI is set)")
            raise unittest.SkipTest(f"{', '.join(missing)} not found")
        cls.tmp = tempfile.TemporaryDirectory()
        out = Path(cls.tmp.name)
        cls.audit = out / "audit.log"
        cls.sim = subprocess.Popen(
            [str(BINARY), "sim", "--clusters", "1", "--out", str(out / "sim"), "--audit-log", str(cls.audit)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        cls.kubeconfig = out / "sim" / "sim-000.yaml"
        deadline = time.monotonic() + 30
        while not (out / "sim" / "ca.crt").is_file():
            if time.monotonic() > deadline or cls.sim.poll() is not None:
                cls.tearDownClass()
                raise AssertionError("the simulator did not start")
            time.sleep(0.1)
        resources = cls.kubectl("api-resources", "--no-headers", "-o", "wide").stdout
        cls.served = set()
        for line in resources.splitlines():
            parts = line.split()
            # NAME [SHORTNAMES] APIVERSION NAMESPACED KIND VERBS...: find APIVERSION by position of NAMESPACED.
            i = next(i for i, p in enumerate(parts) if p in ("true", "false"))
            cls.served.add((parts[i - 1], parts[i + 1]))
        # What `helm install --create-namespace` does first.
        ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
        cls.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(ns))

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "sim", None):
            cls.sim.terminate()
            cls.sim.wait(timeout=30)
        if getattr(cls, "tmp", None):
            cls.tmp.cleanup()

    @classmethod
    def kubectl(cls, *args, input=None, check=True):
        result = subprocess.run(
            ["kubectl", "--kubeconfig", str(cls.kubeconfig), *args],
            input=input, capture_output=True, text=True, timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
        return result

    def audited(self, kind, name):
        if not self.audit.is_file():
            return []
        entries = [json.loads(line) for line in self.audit.read_text().splitlines() if line.strip()]
        plural = {"Deployment": "deployments.apps"}.get(kind, kind.lower() + "s")
        return [e for e in entries if e["resource"] == plural and e.get("name") == name]

    def dry_run_apply(self, values):
        objects, _ = install_dry_run(values)
        applied, skipped = [], []
        for obj in objects:
            if (obj["apiVersion"], obj["kind"]) not in self.served:
                skipped.append(obj["kind"])
                continue
            name = obj["metadata"]["name"]
            # The dashboards may go to Grafana's namespace (dashboards.namespace).
            namespace = obj["metadata"].get("namespace", NAMESPACE)
            ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
            self.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(ns))
            result = self.kubectl(
                "apply", "--server-side", "--dry-run=server", "--field-manager=helm",
                "-n", namespace, "-f", "-", input=json.dumps(obj),
            )
            self.assertIn("serverside-applied (server dry run)", result.stdout, result.stdout)
            gone = self.kubectl("get", obj["kind"].lower(), name, "-n", namespace, check=False)
            self.assertNotEqual(gone.returncode, 0, f"{obj['kind']} {name} exists after a dry run")
            self.assertIn("NotFound", gone.stderr)
            self.assertEqual(self.audited(obj["kind"], name), [], "a dry run is in the audit log")
            applied.append(obj["kind"])
        print(f"\n  applied (server dry run): {', '.join(sorted(applied))}; "
              f"not served by the simulator, skipped: {', '.join(sorted(skipped)) or 'none'}")
        self.assertIn("Deployment", applied)
        return applied

    def test_the_default_manifests_apply_as_a_server_dry_run(self):
        self.dry_run_apply(REQUIRED)

    def test_three_replicas_apply_as_a_server_dry_run(self):
        self.dry_run_apply(merge(REQUIRED, {"replicaCount": 3}))

    def test_the_example_values_manifests_apply_as_a_server_dry_run(self):
        self.dry_run_apply(merge(REQUIRED, example_values()))


if __name__ == "__main__":
    unittest.main()
