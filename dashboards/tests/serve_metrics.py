#!/usr/bin/env python3
"""Serve a sample exposition at /metrics for a real Prometheus to scrape (dashboards/test.sh).

The file is served as written, except that `NOW` becomes the time of the scrape and every
counter and histogram series (`_total`, `_bucket`, `_count`, `_sum`) grows by one per scrape,
so that rate(), increase() and histogram_quantile() have something to compute.

    serve_metrics.py FILE --port PORT      (binds 127.0.0.1 only)
"""

import argparse
import http.server
import re
import threading
import time

SERIES = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?P<labels>\{[^}]*\})?\s+(?P<value>\S+)$")
GROWING = ("_total", "_bucket", "_count", "_sum")


def render(text: str, scrape: int, now: float) -> str:
    out = []
    for line in text.splitlines():
        m = SERIES.match(line)
        if m and not line.startswith("#"):
            value = m["value"]
            if value == "NOW":
                value = f"{now:.3f}"
            elif m["name"].endswith(GROWING):
                value = repr(float(value) + scrape)
            line = f"{m['name']}{m['labels'] or ''} {value}"
        out.append(line)
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    with open(args.file, encoding="utf-8") as f:
        text = f.read()
    scrapes = 0
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            nonlocal scrapes
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            with lock:
                scrapes += 1
                n = scrapes
            body = render(text, n, time.time()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args) -> None:
            pass

    http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
