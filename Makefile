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

# Speed figures (not part of `make test`): see README "Performance".
bench:
	$(CARGO) bench --bench render
	$(CARGO) bench --bench webhook

clean:
	$(CARGO) clean
