#!/usr/bin/env python3
"""Check the Grafana dashboards of psql-fleet; Python 3.11 standard library only.

Without --prometheus: every dashboard in the directory parses, uses the current schema, has a
`datasource` variable (type datasource, prometheus) that every panel and query uses as
`${datasource}` (no hard-coded UID anywhere), `cluster` and `claim` query variables (multi,
include All, label_values of a psql_fleet metric), and every PromQL expression names only
metrics of the catalog (dashboards/METRICS.md, plus SPEC 2.6 names with --spec) and filters
by `$cluster` whenever it reads a metric that has a cluster label.

With --prometheus URL: additionally every panel expression and variable query is run through
that Prometheus' HTTP API (/api/v1/query) with the Grafana variables set to "All"; each must
parse, return data, and use only metric names Prometheus has (/api/v1/label/__name__/values).
--wait SECONDS retries failing queries until they pass or the time is up (a fresh
Prometheus needs a few scrapes before rate() has data).

Exit status 0 when everything passes, 1 otherwise; each failure names dashboard and panel.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
MIN_SCHEMA = 39
DS_REFS = {"${datasource}", "$datasource"}

# What Grafana would put in a query when every variable is at "All" (allValue ".*").
SUBSTITUTIONS = {
    "cluster": ".*",
    "claim": ".*",
    "__rate_interval": "1m",
    "__interval": "30s",
    "__range": "5m",
    "__range_s": "300",
    "__range_ms": "300000",
    "__interval_ms": "30000",
}
VAR_RE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")

KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
    "and", "or", "unless", "atan2", "inf", "nan", "start", "end",
}
CLAUSE_RE = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
IDENT_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


@dataclass
class Query:
    dashboard: str
    where: str
    expr: str


@dataclass
class Report:
    failures: list[str] = field(default_factory=list)
    checked: int = 0

    def fail(self, msg: str) -> None:
        self.failures.append(msg)


# ------------------------------------------------------------------ catalog

@dataclass
class Metric:
    name: str
    kind: str
    labels: set[str]


def load_catalog(metrics_md: Path, spec: Path | None) -> dict[str, Metric]:
    """The first column of every table row of METRICS.md that names a psql_fleet_ metric."""
    catalog: dict[str, Metric] = {}
    row = re.compile(r"^\|\s*`(psql_fleet_\w+)`\s*\|\s*(\w+)\s*\|([^|]*)\|")
    for line in metrics_md.read_text(encoding="utf-8").splitlines():
        m = row.match(line)
        if m and m[2] in {"gauge", "counter", "histogram", "summary"}:
            labels = set(re.findall(r"`(\w+)`", m[3]))
            catalog[m[1]] = Metric(m[1], m[2], labels)
    if spec is not None:
        text = spec.read_text(encoding="utf-8")
        section = text.split("### 2.6", 1)[1].split("\n### ", 1)[0] if "### 2.6" in text else text
        for name in sorted(set(re.findall(r"`(psql_fleet_\w+)", section))):
            if name not in catalog:
                raise SystemExit(f"{spec}: SPEC 2.6 names {name}, which {metrics_md} lacks")
    return catalog


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (heuristic lexer, good for dashboard queries)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    s = re.sub(r"\{[^}]*\}", "", s)
    s = re.sub(r"\[[^\]]*\]", "", s)
    s = CLAUSE_RE.sub("", s)
    s = re.sub(r"#.*", "", s)
    names = set()
    for m in IDENT_RE.finditer(s):
        word = m.group(0)
        rest = s[m.end():].lstrip()
        if rest.startswith("("):  # a function or aggregation
            continue
        if word.lower() in KEYWORDS:
            continue
        before = s[: m.start()].rstrip()
        if before and (before[-1].isdigit() or before[-1] == "."):
            continue  # part of a number such as 1e9
        names.add(word)
    return names


def base_name(name: str, catalog: dict[str, Metric]) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        base = name.removesuffix(suffix)
        if base != name and catalog.get(base, Metric("", "", set())).kind in {"histogram", "summary"}:
            return base
    return name


def substitute(expr: str) -> tuple[str, list[str]]:
    unknown: list[str] = []

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name in SUBSTITUTIONS:
            return SUBSTITUTIONS[name]
        unknown.append(name)
        return m.group(0)

    return VAR_RE.sub(repl, expr), unknown


def label_values_query(query: str) -> str | None:
    """`label_values(expr, label)` as a PromQL query that returns one series per value."""
    m = re.fullmatch(r"\s*label_values\(\s*(.+?)\s*,\s*(\w+)\s*\)\s*", query, re.S)
    return f"count by ({m[2]}) ({m[1]})" if m else None


# ------------------------------------------------------------------ structure

def is_ds_ref(value: object) -> bool:
    if isinstance(value, str):
        return value in DS_REFS
    if isinstance(value, dict):
        return value.get("uid") in DS_REFS and value.get("type", "prometheus") == "prometheus"
    return False


def walk(node: object, path: str = ""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield path, k, v
            yield from walk(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, f"{path}[{i}]")


def all_panels(panels: list[dict]) -> list[dict]:
    out = []
    for p in panels:
        out.append(p)
        out.extend(all_panels(p.get("panels", [])))
    return out


def check_dashboard(path: Path, catalog: dict[str, Metric], report: Report, uids: set[str]) -> list[Query]:
    name = path.name
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        report.fail(f"{name}: does not parse: {e}")
        return []
    fail = lambda msg: report.fail(f"{name}: {msg}")  # noqa: E731

    if not isinstance(d.get("schemaVersion"), int) or d["schemaVersion"] < MIN_SCHEMA:
        fail(f"schemaVersion {d.get('schemaVersion')!r} is older than {MIN_SCHEMA}")
    for key in ("uid", "title"):
        if not d.get(key):
            fail(f"no {key}")
    if d.get("uid") in uids:
        fail(f"uid {d['uid']!r} is used by another dashboard")
    uids.add(d.get("uid"))
    if d.get("id") is not None:
        fail("id must be null so that provisioning and import assign one")
    if "__inputs" in d:
        fail("__inputs (an export for sharing with a fixed datasource) is not allowed")

    # Every "datasource" anywhere refers to the variable: no hard-coded UID.
    for where, key, value in walk(d):
        if key == "datasource":
            if not is_ds_ref(value):
                fail(f"{where}.datasource is {value!r}, not ${{datasource}}")
        if key == "uid" and isinstance(value, str) and where and value not in DS_REFS:
            fail(f"{where}.uid is {value!r}: a hard-coded datasource UID")
        if isinstance(value, str) and "${DS_" in value:
            fail(f"{where}.{key} uses an import input {value!r}")

    # Variables.
    variables = {v.get("name"): v for v in d.get("templating", {}).get("list", [])}
    ds = variables.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        fail("no variable `datasource` of type datasource with query prometheus")
    queries: list[Query] = []
    for var in ("cluster", "claim"):
        v = variables.get(var)
        if not v:
            fail(f"no variable `{var}`")
            continue
        if v.get("type") != "query":
            fail(f"variable `{var}` is of type {v.get('type')!r}, not query")
        if not v.get("multi") or not v.get("includeAll"):
            fail(f"variable `{var}` must be multi-value with include All")
        if not is_ds_ref(v.get("datasource")):
            fail(f"variable `{var}` does not use ${{datasource}}")
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        lv = label_values_query(q or "")
        if not lv or not re.search(r"\bpsql_fleet_\w+", q) or not q.rstrip().endswith(f"{var})"):
            fail(f"variable `{var}` query {q!r} is not label_values(<psql_fleet metric>, {var})")
        else:
            queries.append(Query(name, f"variable {var}", lv))
    used = {m.group(1) or m.group(2) for m in VAR_RE.finditer(json.dumps(d.get("panels", [])))}
    for var in variables:
        if var not in used and var != "datasource":
            fail(f"variable `{var}` is used by no panel")

    # Panels.
    ids = set()
    for p in all_panels(d.get("panels", [])):
        title = p.get("title") or f"panel {p.get('id')}"
        where = f"panel {title!r}"
        if p.get("id") in ids:
            fail(f"{where}: duplicate id {p.get('id')}")
        ids.add(p.get("id"))
        if "gridPos" not in p:
            fail(f"{where}: no gridPos")
        if p.get("type") in {"row", "text"}:
            continue
        if not is_ds_ref(p.get("datasource")):
            fail(f"{where}: datasource is not ${{datasource}}")
        targets = p.get("targets") or []
        if not targets:
            fail(f"{where}: no queries")
        refs = [t.get("refId") for t in targets]
        if len(set(refs)) != len(refs):
            fail(f"{where}: duplicate refId")
        for t in targets:
            expr = (t.get("expr") or "").strip()
            twhere = f"{where} query {t.get('refId')}"
            if not expr:
                fail(f"{twhere}: no expr")
                continue
            if not is_ds_ref(t.get("datasource", "${datasource}")):
                fail(f"{twhere}: datasource is not ${{datasource}}")
            _, unknown = substitute(expr)
            for u in unknown:
                if u not in variables:
                    fail(f"{twhere}: unknown variable ${u}")
            has_cluster = False
            for metric in sorted(metric_names(expr)):
                base = base_name(metric, catalog)
                if base in catalog:
                    has_cluster |= "cluster" in catalog[base].labels
                else:
                    fail(f"{twhere}: metric {metric} is not in the catalog (METRICS.md)")
            if has_cluster and "$cluster" not in expr and "${cluster" not in expr:
                fail(f"{twhere}: reads a metric with a cluster label but ignores $cluster")
            queries.append(Query(name, twhere, expr))
    return queries


# ------------------------------------------------------------------ Prometheus

def api(url: str, path: str, params: dict[str, str] | None = None) -> dict:
    full = url.rstrip("/") + path + ("?" + urllib.parse.urlencode(params) if params else "")
    try:
        with urllib.request.urlopen(full, timeout=10) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:  # 400/422 carry a JSON error body
        try:
            return json.load(e)
        except json.JSONDecodeError:
            return {"status": "error", "error": f"HTTP {e.code}"}
    except (urllib.error.URLError, OSError) as e:
        return {"status": "error", "error": str(e)}


def run_query(url: str, q: Query, names: set[str]) -> str | None:
    """None when the query passes, else why not."""
    expr, unknown = substitute(q.expr)
    if unknown:
        return f"unknown variables {unknown}"
    missing = sorted(m for m in metric_names(expr) if m not in names)
    if missing:
        return f"Prometheus has no metric {', '.join(missing)}"
    body = api(url, "/api/v1/query", {"query": expr})
    if body.get("status") != "success":
        return f"{body.get('errorType', 'error')}: {body.get('error')}"
    if not body["data"]["result"]:
        return "returned no data"
    return None


def check_prometheus(url: str, queries: list[Query], wait: float, report: Report) -> None:
    deadline = time.monotonic() + wait
    pending = list(queries)
    while True:
        body = api(url, "/api/v1/label/__name__/values")
        names = set(body.get("data") or []) if body.get("status") == "success" else set()
        why = {id(q): run_query(url, q, names) for q in pending} if names else {id(q): "no metric names yet" for q in pending}
        pending = [q for q in pending if why[id(q)]]
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(2)
    for q in pending:
        report.fail(f"{q.dashboard}: {q.where}: {why[id(q)]}\n    {q.expr}")
    report.checked += len(queries)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=HERE, help="directory of the dashboard JSON files")
    parser.add_argument("--catalog", type=Path, default=HERE / "METRICS.md")
    parser.add_argument("--spec", type=Path, help="SPEC.md whose section 2.6 names must all be in the catalog")
    parser.add_argument("--prometheus", metavar="URL", help="run every query against this Prometheus")
    parser.add_argument("--wait", type=float, default=0, metavar="SECONDS", help="retry failing queries this long")
    parser.add_argument("--skip-metric", action="append", default=[], metavar="NAME",
                        help="with --prometheus: do not run queries naming this metric (one the agent does not export yet); they are listed")
    args = parser.parse_args()

    catalog = load_catalog(args.catalog, args.spec)
    if not catalog:
        print(f"FAIL: no metrics found in {args.catalog}", file=sys.stderr)
        return 1
    report = Report()
    paths = sorted(args.dir.glob("*.json"))
    if not paths:
        report.fail(f"no dashboards in {args.dir}")
    uids: set[str] = set()
    queries: list[Query] = []
    for path in paths:
        queries += check_dashboard(path, catalog, report, uids)
    if args.prometheus:
        skipped = [q for q in queries if metric_names(substitute(q.expr)[0]) & set(args.skip_metric)]
        for q in skipped:
            print(f"SKIP {q.dashboard}: {q.where}: names {', '.join(sorted(metric_names(q.expr) & set(args.skip_metric)))}")
        queries = [q for q in queries if q not in skipped]
        check_prometheus(args.prometheus, queries, args.wait, report)

    for f in report.failures:
        print(f"FAIL {f}", file=sys.stderr)
    mode = f"against {args.prometheus}" if args.prometheus else "static"
    print(f"{len(paths)} dashboards, {len(queries)} queries ({mode}): "
          f"{'FAILED, ' + str(len(report.failures)) + ' problems' if report.failures else 'ok'}")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
