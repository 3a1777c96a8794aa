# Firmware image, signed OTA bundle and their QEMU tests; see image/README.md.
# Included by the top-level Makefile.
BOARD ?= x86_64
# Image/bundle version (os-release IMAGE_VERSION, bundle manifest); default: git describe --always --dirty
VERSION ?=
# Pre-seeded HOMESEC_API_KEY of the image (default: generated and printed on first boot)
API_KEY ?=
# Production signing: key (file or PKCS#11 URI), certificate, and the CA the image trusts
# (default: the development PKI in .homesec/pki/, made by image/pki.sh)
RAUC_KEY ?=
RAUC_CERT ?=
RAUC_KEYRING ?=

IMAGE_ENV = BOARD="$(BOARD)" VERSION="$(VERSION)" API_KEY="$(API_KEY)" \
	RAUC_KEY="$(RAUC_KEY)" RAUC_CERT="$(RAUC_CERT)" RAUC_KEYRING="$(RAUC_KEYRING)"
board_rust_target = $(shell . ./board/$(1)/board.conf && echo $$RUST_TARGET)

.PHONY: image-bin image bundle pki image-test image-test-arm64 ota-test

## The daemon for BOARD's architecture (release).
image-bin:
	@if [ "$(call board_rust_target,$(BOARD))" = "$$(rustc -vV | sed -n 's/^host: //p')" ]; then \
		$(CARGO) build --release; \
	else \
		$(MAKE) --no-print-directory build-arm64; \
	fi

## Flashable image: .homesec/image/$(BOARD)/homesec-$(BOARD).img{,.zst,.bmap}
image: image-bin
	$(IMAGE_ENV) image/build-image.sh

## Signed RAUC bundle: .homesec/image/$(BOARD)/homesec-$(BOARD)-<version>.raucb
bundle: image-bin
	$(IMAGE_ENV) image/build-bundle.sh

## Development PKI for bundles (.homesec/pki/)
pki:
	image/pki.sh

## Boot the x86_64 image in QEMU: homesec READY, /health, data partition grown.
image-test:
	$(MAKE) --no-print-directory image BOARD=x86_64
	BOARD=x86_64 timeout 900 image/test/boot-test.sh

## The same for arm64 (rpi4 image on QEMU virt + AAVMF).
image-test-arm64:
	$(MAKE) --no-print-directory image BOARD=rpi4
	BOARD=rpi4 BOOT_TIMEOUT=900 timeout 1200 image/test/boot-test.sh

## A/B update in one VM: foreign-signed bundle refused, v1 -> v2 (slot B, confirmed),
## v3 that fails its health check -> back to v2.
ota-test: image-bin
	BOARD=x86_64 timeout 2700 image/test/ota-test.sh
