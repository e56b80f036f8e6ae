#!/usr/bin/env python3
"""Wait until every alert rule loaded by the Prometheus at URL evaluates with health "ok"
(30 s at most), then say which alerts are pending or firing. Exit 1 naming the unhealthy
rules (or "none loaded") otherwise. Python 3.11 standard library only.

Usage: check_rules.py URL
"""

import json
import sys
import time
import urllib.request


def main(url: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        groups = json.load(urllib.request.urlopen(url + "/api/v1/rules"))["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        bad = [r for r in rules if r.get("health") != "ok"]
        if rules and not bad:
            break
        if time.monotonic() > deadline:
            unhealthy = [(r["name"], r.get("health"), r.get("lastError")) for r in bad]
            sys.exit(f"rules not healthy: {unhealthy or 'none loaded'}")
        time.sleep(1)
    active = sorted({a["labels"]["alertname"] for r in rules for a in r.get("alerts", [])})
    print(f"{len(rules)} rules healthy; pending or firing: {', '.join(active) or 'none'}")


if __name__ == "__main__":
    main(sys.argv[1])
