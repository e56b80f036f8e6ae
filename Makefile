# psql-fleet: the two commands a newcomer needs are `make demo` and `make test`.
CARGO ?= cargo

.PHONY: all build demo test lint unit bench clean

all: build

build:
	$(CARGO) build --release

# The main job on an embedded default: validate and render the example fleet in fleet/.
demo: build
	./target/release/psql-fleet validate fleet
	./target/release/psql-fleet render fleet --assume-ready -o summary

# Formatting, lints and every test; what CI runs.
test: lint unit

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --all-targets -- -D warnings

unit:
	$(CARGO) test --all-targets

# Speed figures (not part of `make test`; about 10 minutes): see README "Performance".
# The fleet benchmark runs the release binary as separate simulator and agent processes
# and writes BENCHMARKS.md.
bench:
	mkdir -p target
	$(CARGO) bench --bench render > target/bench-render.md
	cat target/bench-render.md
	$(CARGO) bench --bench fleet

clean:
	$(CARGO) clean
