# Thin wrappers; see README.md.
CARGO ?= cargo
CONFIG ?= config/demo.yaml

.PHONY: run test fetch build lint bench

## Fetch ONNX Runtime and the detector model into .homesec/ (idempotent).
fetch:
	models/fetch-onnxruntime.sh
	models/fetch.sh yolox_nano_416

## Run the daemon on the demo config (watched folder .homesec/demo/inbox → MQTT on 127.0.0.1:1883).
run: fetch
	mkdir -p .homesec/demo/inbox
	$(CARGO) run --release -- run --config $(CONFIG)

## Lint and run every test (needs Mosquitto on 127.0.0.1:1883; see .ci/run).
test: fetch
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	@if command -v cargo-nextest >/dev/null 2>&1; then \
		$(CARGO) nextest run --no-fail-fast; \
	else \
		$(CARGO) test -j2 --no-fail-fast; \
	fi

build:
	$(CARGO) build --release

bench: fetch
	$(CARGO) bench --bench detector
