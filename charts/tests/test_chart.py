"""Tests of charts/psql-fleet through a real Helm engine (python3 -m unittest).

The engine is PyPI `helm-python-sdk`: Helm v4's own Go library, loaded in-process. It lints
(`helm lint --strict`, with values), renders, validates values against values.schema.json and
runs `helm install --dry-run=client` without a cluster. PyPI `helm-sdkpy`, when installed, lints
the chart with its default values as a second engine (it offers neither values for lint nor
template nor a dry run, so it cannot do the rest).
"""

import json
import os
import unittest
from pathlib import Path

import helm_python as helm

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "psql-fleet"
EXAMPLE = ROOT / "examples" / "helm-values.yaml"
# The chart's defaults plus the two values that have none (a Git URL and a Secret name).
REQUIRED = {
    "source": {"url": "https://git.example.com/fleet.git"},
    "credentials": {"existingSecret": "fleet-kubeconfigs"},
}
RBAC_KINDS = {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}


def example_values():
    return helm.values_from_yaml(EXAMPLE.read_text())


def merge(base, over):
    out = json.loads(json.dumps(base))
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def install_dry_run(values):
    """`helm install psql-fleet charts/psql-fleet -n psql-fleet --dry-run=client`: the objects."""
    config = helm.Config(namespace="psql-fleet")
    release = config.install(str(CHART), "psql-fleet", values, namespace="psql-fleet", dry_run="client")
    docs = []
    for doc in release["manifest"].split("\n---"):
        obj = helm.values_from_yaml(doc)
        if obj:
            docs.append(obj)
    return docs, release


def one(objects, kind):
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"{len(found)} objects of kind {kind}"
    return found[0]


def lint_problems(values):
    report = helm.lint(str(CHART), values, strict=True, namespace="psql-fleet")
    return [m for m in report["messages"] if m["severity"] >= 2] + report.get("errors", [])


class Lint(unittest.TestCase):
    def test_the_chart_lints_strictly_with_its_default_values(self):
        self.assertEqual(lint_problems(None), [])

    def test_the_chart_lints_strictly_with_the_required_values(self):
        self.assertEqual(lint_problems(REQUIRED), [])

    def test_the_chart_lints_strictly_with_the_example_values(self):
        self.assertEqual(lint_problems(example_values()), [])

    @unittest.skipUnless(__import__("importlib").util.find_spec("helm_sdkpy"), "helm-sdkpy not installed")
    def test_helm_sdkpy_lints_the_chart_too(self):
        import asyncio

        import helm_sdkpy

        result = asyncio.run(helm_sdkpy.Lint(helm_sdkpy.Configuration()).run(str(CHART)))
        # Its messages lose their text ("Err": {}); severities remain: 1 info, 2 warning, 3 error.
        self.assertEqual([m for m in result["Messages"] if m["Severity"] >= 2], [], result)
        self.assertFalse(result["Errors"], result)


class Defaults(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.objects, cls.release = install_dry_run(REQUIRED)
        cls.deploy = one(cls.objects, "Deployment")
        cls.pod = cls.deploy["spec"]["template"]["spec"]
        cls.container = cls.pod["containers"][0]
        cls.args = cls.container["args"]

    def test_without_a_source_url_the_install_fails_and_says_why(self):
        with self.assertRaisesRegex(helm.HelmError, "source.url is required"):
            install_dry_run({"credentials": {"existingSecret": "k"}})

    def test_without_the_kubeconfig_secret_the_install_fails_and_says_why(self):
        with self.assertRaisesRegex(helm.HelmError, "credentials.existingSecret is required"):
            install_dry_run({"source": {"url": "https://git.example.com/fleet.git"}})

    def test_it_renders_the_agent_its_account_and_service_the_leader_role_and_a_budget(self):
        self.assertEqual(sorted(o["kind"] for o in self.objects),
                         ["Deployment", "PodDisruptionBudget", "Role", "RoleBinding", "Service", "ServiceAccount"])

    def test_the_pod_runs_as_non_root_with_runtime_default_seccomp(self):
        psc = self.pod["securityContext"]
        self.assertIs(psc["runAsNonRoot"], True)
        self.assertNotEqual(psc["runAsUser"], 0)
        self.assertEqual(psc["seccompProfile"], {"type": "RuntimeDefault"})

    def test_the_container_has_a_read_only_root_and_drops_every_capability(self):
        sc = self.container["securityContext"]
        self.assertIs(sc["readOnlyRootFilesystem"], True)
        self.assertIs(sc["allowPrivilegeEscalation"], False)
        self.assertEqual(sc["capabilities"], {"drop": ["ALL"]})

    def test_probes_hit_livez_and_readyz_on_the_listen_port(self):
        self.assertEqual(self.container["livenessProbe"]["httpGet"], {"path": "/livez", "port": "http"})
        self.assertEqual(self.container["readinessProbe"]["httpGet"], {"path": "/readyz", "port": "http"})
        self.assertEqual(self.container["ports"], [{"name": "http", "containerPort": 9464, "protocol": "TCP"}])
        self.assertIn("--listen=0.0.0.0:9464", self.args)

    def test_args_run_the_agent_on_the_source_with_the_kubeconfigs_read_only(self):
        self.assertEqual(self.args[0], "run")
        self.assertIn("--source=https://git.example.com/fleet.git", self.args)
        self.assertIn("--branch=main", self.args)
        self.assertIn("--interval=1m", self.args)
        self.assertIn("--resync-interval=10m", self.args)
        self.assertIn("--credentials-dir=/etc/psql-fleet/clusters", self.args)
        self.assertIn("--log-format=json", self.args)
        self.assertFalse([a for a in self.args if a.startswith(("--dry-run", "--allow-mass-prune", "--webhook", "--control", "--status-requires"))])
        mount = next(m for m in self.container["volumeMounts"] if m["name"] == "credentials")
        self.assertEqual(mount, {"name": "credentials", "mountPath": "/etc/psql-fleet/clusters", "readOnly": True})
        volume = next(v for v in self.pod["volumes"] if v["name"] == "credentials")
        self.assertEqual(volume["secret"]["secretName"], "fleet-kubeconfigs")

    def test_the_git_cache_is_an_empty_dir_where_cache_dir_points(self):
        self.assertIn("--cache-dir=/var/cache/psql-fleet", self.args)
        mount = next(m for m in self.container["volumeMounts"] if m["name"] == "git-cache")
        self.assertEqual(mount["mountPath"], "/var/cache/psql-fleet")
        volume = next(v for v in self.pod["volumes"] if v["name"] == "git-cache")
        self.assertIn("emptyDir", volume)

    def test_resources_are_set(self):
        self.assertTrue(self.container["resources"]["requests"])
        self.assertTrue(self.container["resources"]["limits"]["memory"])

    def test_the_service_selects_the_pods(self):
        service = one(self.objects, "Service")
        labels = self.deploy["spec"]["template"]["metadata"]["labels"]
        self.assertTrue(service["spec"]["selector"].items() <= labels.items())
        self.assertEqual([p["port"] for p in service["spec"]["ports"]], [9464])

    def test_two_replicas_one_leading_rolled_without_losing_the_standby(self):
        self.assertEqual(self.deploy["spec"]["replicas"], 2)
        self.assertIn("--leader-elect", self.pod["containers"][0]["args"])
        self.assertEqual(self.deploy["spec"]["strategy"],
                         {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}})

    def test_replicas_spread_over_nodes_and_one_survives_a_drain(self):
        selector = self.deploy["spec"]["selector"]["matchLabels"]
        spread = self.pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        self.assertEqual(spread, [{"weight": 100, "podAffinityTerm": {
            "topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": selector}}}])
        budget = one(self.objects, "PodDisruptionBudget")
        self.assertEqual(budget["spec"], {"minAvailable": 1, "selector": {"matchLabels": selector}})

    def test_notes_tell_how_to_see_the_status(self):
        self.assertIn("psql-fleet status --server", self.release["notes"])


class SingleAgent(unittest.TestCase):
    """leaderElection off: one writer, no RBAC, no token, state in the emptyDir."""

    @classmethod
    def setUpClass(cls):
        cls.objects, _ = install_dry_run(merge(REQUIRED, {"replicaCount": 1, "leaderElection": {"enabled": False}}))
        cls.deploy = one(cls.objects, "Deployment")
        cls.pod = cls.deploy["spec"]["template"]["spec"]

    def test_it_grants_no_rbac_and_mounts_no_service_account_token(self):
        self.assertEqual(sorted(o["kind"] for o in self.objects), ["Deployment", "Service", "ServiceAccount"])
        self.assertFalse(RBAC_KINDS & {o["kind"] for o in self.objects})
        self.assertIs(self.pod["automountServiceAccountToken"], False)
        self.assertIs(one(self.objects, "ServiceAccount")["automountServiceAccountToken"], False)

    def test_one_writer_per_fleet(self):
        self.assertEqual(self.deploy["spec"]["replicas"], 1)
        self.assertEqual(self.deploy["spec"]["strategy"], {"type": "Recreate"})
        self.assertNotIn("affinity", self.pod)

    def test_more_replicas_without_leader_election_fail_the_install_and_say_why(self):
        with self.assertRaisesRegex(helm.HelmError, "replicaCount above 1 needs leaderElection.enabled"):
            install_dry_run(merge(REQUIRED, {"replicaCount": 2, "leaderElection": {"enabled": False}}))


class SshSource(unittest.TestCase):
    """An SSH URL: the deploy key and known_hosts from the Secret, no token file."""

    SECRET = {"existingSecret": "fleet-git"}

    def render(self, url, credentials):
        values = merge(REQUIRED, {"source": {"url": url, "credentials": credentials}})
        objects, _ = install_dry_run(values)
        deploy = one(objects, "Deployment")
        return deploy, deploy["spec"]["template"]["spec"]["containers"][0]["args"]

    def test_the_key_and_known_hosts_come_from_the_secret_and_no_token_file(self):
        for url in ["ssh://git@git.example.com:2222/org/fleet.git", "git@git.example.com:org/fleet.git"]:
            deploy, args = self.render(url, self.SECRET)
            self.assertIn(f"--source={url}", args)
            self.assertIn("--git-ssh-key=/etc/psql-fleet/git/ssh-privatekey", args)
            self.assertIn("--git-known-hosts=/etc/psql-fleet/git/known_hosts", args)
            self.assertFalse([a for a in args if a.startswith(("--git-token-file", "--git-ssh-key-passphrase-file"))])
            volume = next(v for v in deploy["spec"]["template"]["spec"]["volumes"] if v["name"] == "git-credentials")
            self.assertEqual(volume["secret"], {"secretName": "fleet-git", "defaultMode": 0o400})
            container = deploy["spec"]["template"]["spec"]["containers"][0]
            mount = next(m for m in container["volumeMounts"] if m["name"] == "git-credentials")
            self.assertEqual((mount["mountPath"], mount["readOnly"]), ("/etc/psql-fleet/git", True))

    def test_a_passphrase_and_other_key_names_are_passed_as_files(self):
        ssh = {"privateKeyKey": "identity", "knownHostsKey": "hosts", "passphraseKey": "passphrase"}
        _, args = self.render("ssh://git.example.com/fleet.git", {**self.SECRET, "ssh": ssh})
        self.assertIn("--git-ssh-key=/etc/psql-fleet/git/identity", args)
        self.assertIn("--git-known-hosts=/etc/psql-fleet/git/hosts", args)
        self.assertIn("--git-ssh-key-passphrase-file=/etc/psql-fleet/git/passphrase", args)

    def test_without_the_secret_or_known_hosts_the_install_fails_and_says_why(self):
        with self.assertRaisesRegex(Exception, "existingSecret is required for an SSH source"):
            self.render("git@git.example.com:org/fleet.git", {})
        with self.assertRaisesRegex(Exception, "knownHostsKey is required"):
            self.render("ssh://git.example.com/fleet.git", {**self.SECRET, "ssh": {"knownHostsKey": ""}})

    def test_https_sources_get_no_ssh_flags(self):
        _, args = self.render("https://git.example.com/fleet.git", self.SECRET)
        self.assertIn("--git-token-file=/etc/psql-fleet/git/token", args)
        self.assertFalse([a for a in args if a.startswith(("--git-ssh", "--git-known-hosts"))])


class LeaderElection(unittest.TestCase):
    """leaderElection.enabled (the default): the flag, a Role for Leases and the rollout
    state's ConfigMaps in the release namespace only, and the token that reads them."""

    @classmethod
    def setUpClass(cls):
        cls.objects, _ = install_dry_run(merge(REQUIRED, {"replicaCount": 3}))
        cls.deploy = one(cls.objects, "Deployment")
        cls.pod = cls.deploy["spec"]["template"]["spec"]
        cls.args = cls.pod["containers"][0]["args"]

    def test_the_agent_elects_a_leader_on_a_lease_named_after_the_release_in_its_namespace(self):
        self.assertIn("--leader-elect", self.args)
        self.assertIn("--leader-elect-namespace=psql-fleet", self.args)
        self.assertIn("--leader-elect-lease-name=psql-fleet", self.args)

    def test_three_replicas_are_three(self):
        self.assertEqual(self.deploy["spec"]["replicas"], 3)

    def test_the_role_grants_leases_and_config_maps_in_the_release_namespace_only(self):
        self.assertFalse({"ClusterRole", "ClusterRoleBinding"} & {o["kind"] for o in self.objects})
        role = one(self.objects, "Role")
        self.assertEqual(role["rules"], [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                                          "verbs": ["get", "create", "update"]},
                                         {"apiGroups": [""], "resources": ["configmaps"],
                                          "verbs": ["get", "list", "create", "update", "delete"]}])
        binding = one(self.objects, "RoleBinding")
        self.assertEqual(binding["roleRef"], {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                              "name": role["metadata"]["name"]})
        account = one(self.objects, "ServiceAccount")
        self.assertEqual(binding["subjects"], [{"kind": "ServiceAccount", "name": account["metadata"]["name"],
                                                "namespace": "psql-fleet"}])

    def test_the_service_account_token_is_mounted_to_read_the_lease(self):
        self.assertIs(self.pod["automountServiceAccountToken"], True)
        self.assertIs(one(self.objects, "ServiceAccount")["automountServiceAccountToken"], True)

    def test_without_it_there_is_no_flag(self):
        objects, _ = install_dry_run(merge(REQUIRED, {"replicaCount": 1, "leaderElection": {"enabled": False}}))
        args = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
        self.assertFalse([a for a in args if a.startswith("--leader-elect")])

    def test_a_wrong_type_is_refused_by_the_schema(self):
        with self.assertRaisesRegex(helm.HelmError, "leaderElection"):
            install_dry_run(merge(REQUIRED, {"leaderElection": {"enabled": "yes"}}))

    def test_by_default_there_is_no_sharding(self):
        self.assertFalse([a for a in self.args if a.startswith("--shards")])

    def test_shards_pass_the_flag_and_let_the_agent_list_the_leases(self):
        objects, _ = install_dry_run(merge(REQUIRED, {"replicaCount": 3, "leaderElection": {"shards": 6}}))
        args = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
        self.assertIn("--shards=6", args)
        self.assertEqual(one(objects, "Role")["rules"][0]["verbs"], ["get", "list", "create", "update"])
        with self.assertRaisesRegex(helm.HelmError, "shards"):
            install_dry_run(merge(REQUIRED, {"leaderElection": {"shards": 0}}))


class ClusterApi(unittest.TestCase):
    def rbac(self, objects):
        return sorted((o["kind"], o["metadata"].get("namespace", "")) for o in objects if o["kind"] in RBAC_KINDS
                      and o["metadata"]["name"].endswith("-cluster-api"))

    def test_off_by_default_with_no_flag_and_no_access(self):
        objects, _ = install_dry_run(REQUIRED)
        args = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
        self.assertFalse([a for a in args if a.startswith("--cluster-api")])
        self.assertEqual(self.rbac(objects), [])

    def test_namespaces_named_get_a_read_only_role_each_and_a_flag_each(self):
        values = merge(REQUIRED, {"leaderElection": {"enabled": False}, "replicaCount": 1,
                                  "clusterApi": {"enabled": True, "namespaces": ["capi-a", "capi-b"]}})
        objects, _ = install_dry_run(values)
        pod = one(objects, "Deployment")["spec"]["template"]["spec"]
        args = pod["containers"][0]["args"]
        self.assertIn("--cluster-api", args)
        self.assertEqual([a for a in args if a.startswith("--cluster-api-namespace")],
                         ["--cluster-api-namespace=capi-a", "--cluster-api-namespace=capi-b"])
        self.assertIs(pod["automountServiceAccountToken"], True)
        self.assertEqual(self.rbac(objects), [("Role", "capi-a"), ("Role", "capi-b"),
                                              ("RoleBinding", "capi-a"), ("RoleBinding", "capi-b")])
        role = [o for o in objects if o["kind"] == "Role" and o["metadata"]["name"].endswith("-cluster-api")][0]
        for rule in role["rules"]:
            self.assertEqual(rule["verbs"], ["get", "list", "watch"])
        self.assertEqual({r["resources"][0] for r in role["rules"]}, {"clusters", "secrets"})

    def test_no_namespace_named_is_every_namespace_through_a_cluster_role(self):
        objects, _ = install_dry_run(merge(REQUIRED, {"clusterApi": {"enabled": True}}))
        self.assertEqual(self.rbac(objects), [("ClusterRole", ""), ("ClusterRoleBinding", "")])
        binding = [o for o in objects if o["kind"] == "ClusterRoleBinding"][0]
        self.assertEqual(binding["subjects"][0]["namespace"], "psql-fleet")

    def test_a_namespace_that_is_not_a_name_is_refused_by_the_schema(self):
        with self.assertRaisesRegex(helm.HelmError, "clusterApi"):
            install_dry_run(merge(REQUIRED, {"clusterApi": {"enabled": True, "namespaces": ["Not A Name"]}}))


class Example(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.objects, _ = install_dry_run(example_values())
        cls.deploy = one(cls.objects, "Deployment")
        cls.container = cls.deploy["spec"]["template"]["spec"]["containers"][0]
        cls.args = cls.container["args"]

    def test_it_grants_nothing_beyond_the_release_namespace(self):
        self.assertFalse({"ClusterRole", "ClusterRoleBinding"} & {o["kind"] for o in self.objects})

    def test_the_webhook_listens_with_its_secret_from_a_secret(self):
        self.assertIn("--webhook-listen=0.0.0.0:9465", self.args)
        self.assertIn("--webhook-secret-file=/etc/psql-fleet/webhook/secret", self.args)
        volume = next(v for v in self.deploy["spec"]["template"]["spec"]["volumes"] if v["name"] == "webhook-secret")
        self.assertEqual(volume["secret"]["secretName"], "fleet-webhook")
        service = one(self.objects, "Service")
        self.assertEqual(sorted(p["port"] for p in service["spec"]["ports"]), [9464, 9465])

    def test_the_control_tokens_come_from_a_secret_file(self):
        self.assertIn("--control-token-file=/etc/psql-fleet/control/tokens", self.args)
        self.assertIn("--status-requires-token", self.args)
        volume = next(v for v in self.deploy["spec"]["template"]["spec"]["volumes"] if v["name"] == "control-token")
        self.assertEqual(volume["secret"]["secretName"], "fleet-control")
        mount = next(m for m in self.container["volumeMounts"] if m["name"] == "control-token")
        self.assertIs(mount["readOnly"], True)

    def test_git_credentials_come_from_a_secret_file(self):
        self.assertIn("--git-token-file=/etc/psql-fleet/git/token", self.args)
        mount = next(m for m in self.container["volumeMounts"] if m["name"] == "git-credentials")
        self.assertIs(mount["readOnly"], True)

    def test_extra_args_and_values_reach_the_agent(self):
        self.assertEqual(self.args[-2:], ["--max-concurrency", "16"])
        self.assertIn("--interval=2m", self.args)
        self.assertEqual(self.container["image"], "registry.example.com/platform/psql-fleet:0.1.0")

    def test_the_service_monitor_scrapes_the_metrics_port(self):
        sm = one(self.objects, "ServiceMonitor")
        self.assertEqual(sm["spec"]["endpoints"], [{"port": "http", "path": "/metrics", "interval": "30s"}])
        self.assertEqual(sm["metadata"]["labels"]["release"], "kube-prometheus-stack")

    def test_the_prometheus_rule_is_dashboards_alerts_yaml(self):
        rule = one(self.objects, "PrometheusRule")
        alerts = helm.values_from_yaml((ROOT / "dashboards" / "alerts.yaml").read_text())
        self.assertEqual(rule["spec"], alerts)
        self.assertEqual(len(rule["spec"]["groups"][0]["rules"]), 13, "thirteen alerts")

    def test_the_dashboards_are_config_maps_for_the_grafana_sidecar(self):
        maps = [o for o in self.objects if o["kind"] == "ConfigMap"]
        shipped = sorted(p.name for p in (ROOT / "dashboards").glob("*.json"))
        self.assertEqual(sorted(k for m in maps for k in m["data"]), shipped)
        for m in maps:
            self.assertEqual(m["metadata"]["labels"]["grafana_dashboard"], "1")
            self.assertEqual(m["metadata"]["namespace"], "monitoring")
            self.assertEqual(m["metadata"]["annotations"], {"grafana_folder": "psql-fleet"})
            (name, body), = m["data"].items()
            self.assertEqual(json.loads(body), json.loads((ROOT / "dashboards" / name).read_text()))


class Copies(unittest.TestCase):
    def test_the_chart_carries_byte_identical_copies_of_the_alerts_and_dashboards(self):
        self.assertEqual((CHART / "files" / "alerts.yaml").read_bytes(), (ROOT / "dashboards" / "alerts.yaml").read_bytes())
        ours = sorted(p.name for p in (CHART / "files" / "dashboards").glob("*.json"))
        self.assertEqual(ours, sorted(p.name for p in (ROOT / "dashboards").glob("*.json")))
        for name in ours:
            self.assertEqual((CHART / "files" / "dashboards" / name).read_bytes(),
                             (ROOT / "dashboards" / name).read_bytes(), name)


class Schema(unittest.TestCase):
    BAD = {
        "replicaCount is a number": ({"replicaCount": "two"}, "/replicaCount"),
        "replicas not negative": ({"replicaCount": -1}, "/replicaCount"),
        "anti-affinity from a fixed set": ({"antiAffinity": "maybe"}, "/antiAffinity"),
        "log format from a fixed set": ({"log": {"format": "xml"}}, "/log/format"),
        "no unknown top-level key": ({"replicas": 1}, "replicas"),
        "no unknown nested key": ({"source": {"revision": "abc"}}, "revision"),
        "interval is a duration": ({"source": {"interval": "soon"}}, "/source/interval"),
        "resync interval is a duration": ({"resyncInterval": "often"}, "/resyncInterval"),
        "root filesystem stays read-only": ({"securityContext": {"readOnlyRootFilesystem": False}}, "readOnlyRootFilesystem"),
        "pod stays non-root": ({"podSecurityContext": {"runAsNonRoot": False}}, "runAsNonRoot"),
        "webhook needs its secret": ({"webhook": {"enabled": True}}, "existingSecret"),
        "port in range": ({"port": 70000}, "/port"),
        "no switch to skip host key checks": ({"source": {"credentials": {"ssh": {"insecureSkipVerify": True}}}}, "insecureSkipVerify"),
    }

    def test_bad_values_fail_the_install_naming_the_field(self):
        for case, (bad, field) in self.BAD.items():
            with self.subTest(case):
                with self.assertRaises(helm.HelmError) as raised:
                    install_dry_run(merge(REQUIRED, bad))
                self.assertIn("schema", str(raised.exception))
                self.assertIn(field, str(raised.exception))

    def test_the_example_values_pass_the_schema(self):
        helm.Chart.load(str(CHART)).validate_schema(example_values())


if __name__ == "__main__":
    os.chdir(ROOT)
    unittest.main()
