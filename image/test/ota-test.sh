#!/usr/bin/env bash
# A/B update test on one disk (x86_64, TCG, OVMF; each guest reboot is a power cycle, see qemu.sh):
#   1. slot A boots image v1 and confirms itself
#   2. a bundle signed by a foreign CA is refused (state failed, signature error), still slot A
#   3. a signed v2 bundle: installed into B, the box reboots by itself, slot B runs v2, confirmed
#   4. a v3 bundle whose daemon fails its health check (only camera: an unreachable
#      RTSP URL, update.confirm_timeout_s 30): installed into A, boots, is marked bad,
#      the box reboots -> slot B with v2 again
# Every step has a deadline; the serial console goes to .homesec/image/x86_64/ota/serial.log.
BOARD=x86_64
. "$(dirname "$0")/../lib.sh"
. "$image_dir/test/qemu.sh"
trap qemu_stop EXIT

work="$out_dir/ota"
rm -rf "$work"
mkdir -p "$work"
serial_log="$work/serial.log"
stamp="$(date +%Y%m%d%H%M%S)"
v1="ota-v1-$stamp" v2="ota-v2-$stamp" v3="ota-v3-broken-$stamp"
key="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"

# ---- build ----------------------------------------------------------------------
stage "build image $v1"
OUT_DIR="$work/v1" VERSION="$v1" API_KEY="$key" NO_COMPRESS=1 "$image_dir/build-image.sh" >/dev/null
stage "build bundle $v2"
b2="$(OUT_DIR="$work/v2" VERSION="$v2" "$image_dir/build-bundle.sh")"

stage "build bundle $v3 (daemon cannot become healthy)"
ovl="$work/broken-overlay"
mkdir -p "$ovl/etc/systemd/system/homesec.service.d" "$ovl/usr/share/homesec"
cat > "$ovl/etc/systemd/system/homesec.service.d/broken.conf" <<'EOF'
# ota-test: this image's daemon watches only an RTSP camera that does not exist.
[Service]
ExecStart=
ExecStart=/usr/bin/homesec run --config /usr/share/homesec/broken.yaml
EOF
cat > "$ovl/usr/share/homesec/broken.yaml" <<'EOF'
version: 1
data_dir: /var/lib/homesec
cameras:
  - name: nowhere
    source:
      backend: rtsp
      config:
        url: rtsp://127.0.0.1:9/none
filter:
  backend: yolo
  config:
    model_path: /usr/share/homesec/models/yolox_nano_416.onnx
    ort_library: /usr/lib/homesec/libonnxruntime.so.1.31.1
server:
  enabled: true
  host: 0.0.0.0
  port: 8081
  api_key_env: HOMESEC_API_KEY
update:
  confirm_timeout_s: 30
EOF
b3="$(OUT_DIR="$work/v3" VERSION="$v3" ROOTFS_OVERLAY="$ovl" "$image_dir/build-bundle.sh")"

stage "build a bundle signed by a foreign CA"
foreign="$("$image_dir/pki.sh" "$work/pki-foreign")"
# Not a file system at all: the signature check comes first. Random bytes, so
# that the squashfs is not too small for RAUC.
head -c 1048576 /dev/urandom > "$work/tiny.ext4"
bf="$(OUT_DIR="$work/foreign" VERSION="ota-foreign-$stamp" ROOTFS_IMAGE="$work/tiny.ext4" \
    RAUC_KEY="$foreign/signing.key.pem" RAUC_CERT="$foreign/signing.cert.pem" RAUC_KEYRING="$foreign/ca.cert.pem" \
    "$image_dir/build-bundle.sh")"

# ---- helpers --------------------------------------------------------------------------
api() { curl -fsS --max-time 20 -H "X-API-Key: $key" "$@"; }
system_json() { api "http://127.0.0.1:$port/api/v1/system" 2>/dev/null; }
# jget JSON PYTHON-EXPR (d = the parsed JSON)
jget() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"; }

# wait_system EXPR TIMEOUT: polls /api/v1/system until EXPR (python, d = JSON) is true.
wait_system() {
    local expr="$1" end=$(( $(date +%s) + $2 )) s=""
    while [ "$(date +%s)" -lt "$end" ]; do
        s="$(system_json)" || s=""
        if [ -n "$s" ] && [ "$(jget "$s" "bool($expr)" 2>/dev/null)" = True ]; then
            echo "$s"
            return 0
        fi
        kill -0 "$qemu_pid" 2>/dev/null || { echo "QEMU exited" >&2; return 1; }
        sleep 3
    done
    echo "timed out waiting for: $expr (last: ${s:-no answer})" >&2
    return 1
}

# post_bundle FILE: POST /api/v1/update, expects 202.
post_bundle() {
    local code
    code="$(curl -sS --max-time 600 -o "$work/post.out" -w '%{http_code}' -H "X-API-Key: $key" \
        -H 'Content-Type: application/octet-stream' --data-binary @"$1" "http://127.0.0.1:$port/api/v1/update")" || true
    echo "POST /api/v1/update ($(basename "$1"), $(human "$(stat -c %s "$1")")) -> HTTP $code $(head -c 300 "$work/post.out")" >&2
    [ "$code" = 202 ]
}

# wait_boot SLOT FROM_LINE TIMEOUT: GRUB picks SLOT and homesec.service starts (serial console).
wait_boot() {
    wait_log "$serial_log" "HomeSec: booting slot $1" "$3" "$2" || return 1
    local at
    at="$(grep -an "HomeSec: booting slot $1" "$serial_log" | tail -n1 | cut -d: -f1)"
    wait_log "$serial_log" 'homesec-status: homesec.service is [a-z]+' "$3" "$at" || return 1
    plain < "$serial_log" | tail -n +"$at" | grep -a 'homesec-status:' | tail -n1 >&2
}

# ---- 1. v1 on slot A ------------------------------------------------------------------------
disk="$work/disk.raw"
cp --sparse=always "$work/v1/homesec-$BOARD.img" "$disk"
truncate -s +1G "$disk"
port="$(free_port)"
stage "boot $v1 (API on 127.0.0.1:$port, serial console $serial_log)"
qemu_start "$disk" "$serial_log" "$port"
wait_boot A 0 600 || fail "v1 did not boot to homesec.service on slot A"
s="$(wait_system "d['slot'] == 'A' and d['image_version'] == '$v1' and d['slot_confirmed']" 180)" \
    || fail "v1: /api/v1/system does not report slot A, $v1, confirmed"
stage "v1 runs on slot A, confirmed: $s"
code="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/api/v1/system")"
[ "$code" = 401 ] || fail "GET /api/v1/system without a key gave HTTP $code, expected 401"

# ---- 2. foreign signature ------------------------------------------------------------------
stage "install a bundle signed by a foreign CA"
post_bundle "$bf" || fail "the foreign bundle upload was not accepted for checking (expected 202)"
s="$(wait_system "d['update']['state'] == 'failed'" 300)" || fail "the foreign bundle did not end in state failed"
err="$(jget "$s" "d['update']['error']")"
echo "$err" | grep -qiE 'signature|verif|certificate|signer' || fail "the error does not name the signature: $err"
[ "$(jget "$s" "d['slot']")" = A ] || fail "slot changed after a refused bundle"
stage "refused: $err"

# ---- 3. v2 into slot B -------------------------------------------------------------------
stage "install $v2"
mark="$(log_lines "$serial_log")"
post_bundle "$b2" || fail "the v2 upload was not accepted"
wait_boot B "$mark" 900 || fail "the box did not reboot into slot B with homesec started"
stage "rebooted into slot B"
s="$(wait_system "d['slot'] == 'B' and d['image_version'] == '$v2' and d['slot_confirmed']" 400)" \
    || fail "v2: /api/v1/system does not report slot B, $v2, confirmed"
stage "v2 runs on slot B, confirmed: $s"

# ---- 4. v3 fails its health check -> back to B ----------------------------------------------
stage "install $v3 (must roll back)"
mark="$(log_lines "$serial_log")"
post_bundle "$b3" || fail "the v3 upload was not accepted"
wait_log "$serial_log" 'HomeSec: booting slot A' 900 "$mark" || fail "the box did not reboot into slot A for v3"
at="$(grep -an 'HomeSec: booting slot A' "$serial_log" | tail -n1 | cut -d: -f1)"
stage "v3 booting on slot A; waiting for it to be marked bad and the box to return to B"
wait_boot B "$at" 900 || fail "the box did not return to slot B after v3 failed"
s="$(wait_system "d['slot'] == 'B' and d['image_version'] == '$v2' and d['slot_confirmed']" 400)" \
    || fail "after the rollback /api/v1/system does not report slot B, $v2, confirmed"
stage "rolled back: $s"
plain < "$serial_log" | grep -a 'HomeSec: booting slot' >&2

qemu_stop
echo "PASS: foreign bundle refused; v1 (A) -> v2 (B, confirmed); broken v3 (A) marked bad -> back to v2 (B)" >&2
