# Thin wrappers; see README.md.
CARGO ?= cargo
CONFIG ?= config/demo.yaml

.PHONY: run test fetch build lint bench bench-quality bench-live bench-capacity bench-soak bench-sync bench-outage build-arm64 test-arm64

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

## Alert quality on the real footage: precision/recall of "alert or not" with zones and stationary-object
## tracking, and the time tracking adds per detected frame (~1 min).
bench-quality: fetch
	$(CARGO) bench --bench quality

## Live cameras end to end (release daemon, GStreamer RTSP servers, Mosquitto, a fake VLM):
## early/final alert latency, VLM request preparation, CPU per camera, 8 cameras at once (~3 min).
bench-live: fetch
	$(CARGO) bench --bench live

## Capacity: HomeSec with N cameras (1080p20 main + 360p20 sub-stream each, idle scene) against per-camera
## ffmpeg recorder + grey-frame decoder processes on the same streams: CPU and RSS per camera, context
## switches, N from HOMESEC_CAPACITY_CAMERAS (default 8,16) (~3 min; the first run also encodes the streams).
bench-capacity: fetch
	$(CARGO) bench --bench capacity

## 20,000 clips on a simulated clock through store, pipeline writes and retention: redb size, RSS, list/recovery/pass latency (~3 min).
bench-soak:
	$(CARGO) bench --bench soak

## Postgres sync drain throughput into the local PostgreSQL (127.0.0.1:5432): events per second.
bench-sync:
	$(CARGO) bench --bench sync

## Postgres down 10 minutes then up: clip latency with and without sync, time until every state is synced (~13 min;
## HOMESEC_OUTAGE_S shortens it).
bench-outage: fetch
	$(CARGO) bench --bench outage

## Cross-compile the daemon for arm64 (Raspberry Pi 4/5, Jetson) without Docker:
## rustup's aarch64 standard library + Debian's cross gcc/g++ (installed if missing)
## as linker and as C/C++ compiler for the C deps (FFmpeg's decoders with their NEON code, built by
## build.rs through vendor/ffmpeg/build.sh; openh264's C++/NEON encoder, ring, v4l's bindgen, which
## finds the arm64 headers through the cross gcc's sysroot):
##   CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER  links the final binary
##   CC_/CXX_/AR_aarch64_unknown_linux_gnu           used by the cc crate in build scripts
## Output: target/aarch64-unknown-linux-gnu/release/homesec (needs glibc >= 2.34 on the device).
ARM64 := aarch64-unknown-linux-gnu
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
ARM64_ENV := CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
	CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
	CXX_aarch64_unknown_linux_gnu=aarch64-linux-gnu-g++ \
	AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar

# Installs the Debian packages named in $(1) that are missing.
apt_need = @missing=; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi

build-arm64:
	rustup target add $(ARM64)
	$(call apt_need,gcc-aarch64-linux-gnu g++-aarch64-linux-gnu)
	$(ARM64_ENV) $(CARGO) build --release --target $(ARM64)
	@ls -l "$${CARGO_TARGET_DIR:-target}/$(ARM64)/release/homesec"

## The unit tests, cross-compiled for arm64 and run under qemu-user: binfmt_misc
## (mounted if it is not) hands every arm64 executable to qemu-aarch64-static, which
## finds the arm64 libc in the cross toolchain's sysroot (QEMU_LD_PREFIX).
test-arm64:
	rustup target add $(ARM64)
	$(call apt_need,gcc-aarch64-linux-gnu g++-aarch64-linux-gnu qemu-user-static binfmt-support)
	@[ -e /proc/sys/fs/binfmt_misc/status ] || $(SUDO) mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
	@[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || $(SUDO) update-binfmts --enable qemu-aarch64
	$(ARM64_ENV) QEMU_LD_PREFIX=/usr/aarch64-linux-gnu $(CARGO) test --target $(ARM64) --lib -- --test-threads 2

# Firmware image, OTA bundle, QEMU tests (BOARD=x86_64 | rpi4): image/image.mk, image/README.md
include image/image.mk
