#!/usr/bin/env bash
# Runs systemd/homesec.service under a real systemd on a machine where systemd is
# installed but not PID 1 (CI, containers): systemd boots as PID 1 of a throwaway
# container (pid/mount/net/... namespaces, root = an overlay of this machine's /
# with its writes on a tmpfs; nothing on the host changes) and the script checks
# the unit as shipped: sysusers user, Type=notify start (READY=1), the API and a
# clip through the real detector inside the sandbox, the watchdog being fed,
# a clean stop (STOPPING=1), and the exposure score.
#
# Usage (root): systemd/try-unit.sh [path/to/homesec]   (default target/release/homesec)
# Needs: systemd, util-linux (unshare, nsenter), curl, overlayfs; the ONNX Runtime
# library (models/fetch-onnxruntime.sh or ORT_DYLIB_PATH) and the test data
# (HOMESEC_TESTDATA, default ../shared/testdata).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
bin=$(realpath "${1:-$repo/target/release/homesec}")
ort=$(realpath "${ORT_DYLIB_PATH:-$(ls "$repo"/.homesec/lib/libonnxruntime.so.* | head -n1)}")
testdata=$(realpath "${HOMESEC_TESTDATA:-$repo/../shared/testdata}")
model=$testdata/models/yolox_nano_416.onnx
clip=$testdata/footage/scene_empty_people_empty.mp4
for f in "$bin" "$ort" "$model" "$clip"; do [ -f "$f" ] || { echo "missing: $f" >&2; exit 1; }; done
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }

t0=$(date +%s)
step() { echo "== $1 (+$(($(date +%s) - t0)) s)"; }
fail() { echo "FAIL: $1" >&2; exit 1; }

work=$(mktemp -d /tmp/homesec-unit.XXXXXX)
cat >"$work/config.yaml" <<'EOF'
device_id: unit-test
data_dir: /var/lib/homesec
cameras:
  - name: porch
    source:
      backend: folder
      config:
        path: /var/lib/homesec/inbox
        poll_interval_s: 0.5
        settle_s: 0.5
storage:
  backend: local
filter:
  backend: yolo
  config:
    model_path: /usr/share/homesec/models/yolox_nano_416.onnx
    ort_library: /usr/lib/homesec/libonnxruntime.so
    classes: [person, car]
alert_policy:
  backend: default
  config:
    notify_on_classes: [person]
server:
  port: 8081
EOF
# PID 1 of the container: mounts its root and API file systems, installs the
# payload the way the image does, boots systemd to basic.target.
cat >"$work/boot.sh" <<EOF
#!/bin/bash
set -e
mkdir -p $work/t $work/root
mount -t tmpfs -o size=2g tmpfs $work/t
mkdir -p $work/t/up $work/t/work
mount -t overlay overlay -o lowerdir=/,upperdir=$work/t/up,workdir=$work/t/work $work/root
R=$work/root
mount -t proc proc \$R/proc
mount -t sysfs -o ro sysfs \$R/sys
mount -t cgroup2 cgroup2 \$R/sys/fs/cgroup
mount -t tmpfs -o mode=755 tmpfs \$R/run
mount -t tmpfs -o mode=1777 tmpfs \$R/tmp
mount --rbind /dev \$R/dev
install -m 0755 $bin \$R/usr/bin/homesec
install -D -m 0644 $repo/systemd/homesec.service \$R/usr/lib/systemd/system/homesec.service
install -D -m 0644 $repo/systemd/homesec.sysusers \$R/usr/lib/sysusers.d/homesec.conf
install -D -m 0644 $ort \$R/usr/lib/homesec/libonnxruntime.so
install -D -m 0644 $model \$R/usr/share/homesec/models/yolox_nano_416.onnx
install -D -m 0640 $work/config.yaml \$R/etc/homesec/config.yaml
rm -f \$R/etc/systemd/system/multi-user.target.wants/*
echo homesec-unit-test > \$R/etc/hostname
export container=homesec-unit-test
exec chroot \$R /lib/systemd/systemd --unit=basic.target --log-target=kmsg
EOF
chmod +x "$work/boot.sh"

step "boot systemd in a throwaway container"
unshare --pid --fork --mount --uts --ipc --net --cgroup --propagation private "$work/boot.sh" >"$work/boot.log" 2>&1 &
upid=$!
ct=
cleanup() {
    if [ -n "$ct" ]; then
        nsenter -t "$ct" -a -r -w systemctl poweroff >/dev/null 2>&1 || kill -KILL "$ct" 2>/dev/null || true
    fi
    wait "$upid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 1 100); do ct=$(pgrep -P "$upid" || true); [ -n "$ct" ] && break; sleep 0.1; done
[ -n "$ct" ] || { cat "$work/boot.log"; fail "container did not start"; }
ns() { nsenter -t "$ct" -a -r -w "$@"; }
for _ in $(seq 1 120); do
    case $(ns systemctl is-system-running 2>/dev/null || true) in running|degraded) break ;; esac
    sleep 0.5
done
echo "systemd $(ns systemctl --version | head -n1 | cut -d' ' -f2) is PID 1 in the container"

step "install: sysusers, config ownership"
ns systemd-sysusers
ns id homesec
ns chown root:homesec /etc/homesec/config.yaml
ns systemctl daemon-reload
# StateDirectory= creates /var/lib/homesec at start; the watched folder is the config's.
ns install -d -o homesec -g homesec -m 0750 /var/lib/homesec /var/lib/homesec/inbox

step "start (Type=notify: returns once READY=1 arrives)"
ns timeout 120 systemctl start homesec || {
    ns systemctl status homesec --no-pager -l || true
    ns systemctl list-jobs --no-pager || true
    ns journalctl --no-pager -n 40 || true
    fail "homesec did not become ready"
}
ns systemctl show homesec -p ActiveState -p StatusText -p WatchdogUSec -p MainPID
status=$(ns systemctl show homesec -p StatusText --value)
[[ $status == running:* ]] || fail "STATUS=$status"
main=$(ns systemctl show homesec -p MainPID --value)
ns grep -E '^(Uid|Groups|CapEff|NoNewPrivs|Seccomp):' "/proc/$main/status"
ns curl -fsS localhost:8081/health >/dev/null || fail "/health is not healthy: $(ns curl -sS localhost:8081/health)"

step "a clip through the detector inside the sandbox"
ns install -o homesec -g homesec -m 0640 "$clip" /var/lib/homesec/inbox/.clip.tmp
ns mv /var/lib/homesec/inbox/.clip.tmp /var/lib/homesec/inbox/porch_1.mp4
result=
for _ in $(seq 1 120); do
    result=$(ns curl -fsS 'localhost:8081/api/v1/clips?limit=1' | tr -d ' \n' || true)
    [[ $result == *'"status":"done"'* ]] && break
    sleep 0.5
done
[[ $result == *'"detected_classes":["car","person"]'* || $result == *'"person"'* ]] || fail "no person detected: $result"
echo "clip done, person detected"
ns sh -c '[ ! -e /var/lib/homesec/.cache/Microsoft ]' || fail "ONNX Runtime telemetry store was created"

step "the watchdog is fed (every WatchdogSec/2 = 15 s)"
first=$(ns systemctl show homesec -p WatchdogTimestampMonotonic --value)
for _ in $(seq 1 40); do
    now=$(ns systemctl show homesec -p WatchdogTimestampMonotonic --value)
    [ "$now" != "$first" ] && break
    sleep 0.5
done
[ "$now" != "$first" ] || fail "no WATCHDOG=1 within 20 s"
echo "WATCHDOG=1 received ($(( (now - first) / 1000 )) ms after the previous)"

step "stop (SIGTERM; clean exit)"
ns systemctl stop homesec
[ "$(ns systemctl show homesec -p Result --value)" = success ] || fail "stop result: $(ns systemctl show homesec -p Result --value)"
ns journalctl -u homesec --no-pager -o cat | grep -qiE 'error|panick' &&
    { ns journalctl -u homesec --no-pager -o cat | grep -iE 'error|panick'; fail "errors in the journal"; }

step "exposure"
ns systemd-analyze security homesec.service --no-pager | tail -n1
echo "OK: homesec.service works under systemd with its hardening"
