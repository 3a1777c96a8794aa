# QEMU helpers for the image tests (sourced after image/lib.sh).
# TCG only (no working KVM here); UEFI firmware: OVMF (x86_64), AAVMF (arm64).

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

stage_t0=$(date +%s)
stage() { local now; now=$(date +%s); echo "== $* (+$(( now - stage_t0 ))s)" >&2; }

# qemu_start DISK LOG PORT: boots DISK in the background, serial console appended
# to LOG, guest port 8081 on 127.0.0.1:PORT. Sets qemu_pid (a supervisor loop).
#
# A guest reboot is a power cycle: QEMU runs with -no-reboot, exits when the guest
# resets, and the loop starts it again on the same disk and firmware variables.
# (A warm reset of a TCG guest now and then hangs in QEMU itself, right after the
# kernel's "reboot: machine restart"; a fresh QEMU process does not.)
qemu_start() {
    local disk="$1" log="$2" port="$3" vars="$1.vars" code
    : > "$log"
    case "$DEB_ARCH" in
        amd64) cp /usr/share/OVMF/OVMF_VARS_4M.fd "$vars" ;;
        arm64) cp /usr/share/AAVMF/AAVMF_VARS.fd "$vars" ;;
        *) die "no QEMU set-up for $DEB_ARCH" ;;
    esac
    (
        child=
        trap '[ -n "$child" ] && kill "$child" 2>/dev/null; wait; exit 0' TERM
        while :; do
            qemu_run "$disk" "$vars" "$log" "$port" &
            child=$!
            code=0
            wait "$child" || code=$?
            child=
            [ "$code" = 0 ] || { echo "[qemu.sh] QEMU failed (exit $code)" >> "$log"; exit "$code"; }
            echo "[qemu.sh] the guest reset: power-cycling it" >> "$log"
        done
    ) &
    qemu_pid=$!
}

# qemu_run DISK VARS LOG PORT: one power-on, until the guest resets or powers off.
qemu_run() {
    local disk="$1" vars="$2" log="$3" port="$4"
    local common=(-smp 2 -m 2048 -no-reboot
        -drive file="$disk",format=raw,if=none,id=hd0,cache=unsafe -device virtio-blk-pci,drive=hd0
        -netdev user,id=n0,hostfwd=tcp:127.0.0.1:"$port"-:8081 -device virtio-net-pci,netdev=n0
        -chardev file,id=con0,path="$log",append=on -serial chardev:con0
        -display none -monitor none)
    case "$DEB_ARCH" in
        amd64)
            exec qemu-system-x86_64 -machine q35,accel=tcg -cpu max \
                -drive if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd \
                -drive if=pflash,format=raw,file="$vars" "${common[@]}" ;;
        arm64)
            exec qemu-system-aarch64 -machine virt -cpu cortex-a72 \
                -drive if=pflash,format=raw,readonly=on,file=/usr/share/AAVMF/AAVMF_CODE.fd \
                -drive if=pflash,format=raw,file="$vars" "${common[@]}" ;;
    esac
}

qemu_stop() {
    if [ -n "${qemu_pid:-}" ] && kill -0 "$qemu_pid" 2>/dev/null; then
        kill "$qemu_pid" 2>/dev/null || true
        wait "$qemu_pid" 2>/dev/null || true
    fi
    qemu_pid=
}

# wait_log LOG REGEX TIMEOUT [FROM_LINE]: waits until LOG (after line FROM_LINE)
# matches REGEX; fails when QEMU exits or the time is up.
wait_log() {
    local log="$1" re="$2" timeout="$3" from="${4:-0}" end=$(( $(date +%s) + $3 ))
    while [ "$(date +%s)" -lt "$end" ]; do
        if tail -n +"$(( from + 1 ))" "$log" | plain | grep -aEq -- "$re"; then return 0; fi
        kill -0 "$qemu_pid" 2>/dev/null || { echo "QEMU exited while waiting for: $re" >&2; return 1; }
        sleep 2
    done
    echo "timed out after ${timeout}s waiting for: $re" >&2
    return 1
}

log_lines() { wc -l < "$1"; }

# The console log without carriage returns and colour codes.
plain() { sed 's/\x1b\[[0-9;]*[A-Za-z]//g' | tr -d '\r'; }

fail() {
    echo "FAIL: $*" >&2
    if [ -n "${serial_log:-}" ] && [ -f "$serial_log" ]; then
        echo "---- last 60 lines of the serial console ($serial_log) ----" >&2
        tail -n 60 "$serial_log" | plain >&2
    fi
    qemu_stop
    exit 1
}
