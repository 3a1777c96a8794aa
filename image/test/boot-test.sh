#!/usr/bin/env bash
# Boots the board's image under QEMU (TCG, UEFI) on a disk 2 GiB larger than the
# image and checks: homesec.service started (Type=notify, so "active" only after
# READY=1; homesec-status.service prints it on the serial console), GET /health
# answers JSON with a status, and the data partition and its file system grew to
# the end of the disk.
#   BOARD=x86_64 image/test/boot-test.sh [IMAGE]     (hard timeout BOOT_TIMEOUT, default 600 s)
. "$(dirname "$0")/../lib.sh"
. "$image_dir/test/qemu.sh"
trap qemu_stop EXIT

img="${1:-$out_dir/homesec-$BOARD.img}"
[ -s "$img" ] || die "no image at $img (make image BOARD=$BOARD)"
timeout_s="${BOOT_TIMEOUT:-600}"
work="$out_dir/test"
mkdir -p "$work"
disk="$work/boot-test.raw"
serial_log="$work/boot-test.serial.log"
grow_mb=2048

stage "disk: copy of $(basename "$img") + $grow_mb MiB"
cp --sparse=always "$img" "$disk"
truncate -s +"${grow_mb}M" "$disk"
disk_mb=$(( $(stat -c %s "$disk") / 1048576 ))

port="$(free_port)"
stage "boot ($DEB_ARCH, TCG), serial console: $serial_log, API on 127.0.0.1:$port"
t_boot=$(date +%s)
qemu_start "$disk" "$serial_log" "$port"
wait_log "$serial_log" 'homesec-status: homesec.service is [a-z]+' "$timeout_s" || fail "homesec.service did not finish starting"
plain < "$serial_log" | grep -a 'homesec-status:' | tail -n1 >&2
plain < "$serial_log" | grep -aq 'homesec-status: homesec.service is active' || fail "homesec.service is not active"
boot_s=$(( $(date +%s) - t_boot ))
stage "homesec.service is up after ${boot_s}s"
plain < "$serial_log" | grep -a 'HomeSec: booting slot' | tail -n1 >&2 || true

health=""
for _ in $(seq 1 30); do
    health="$(curl -fsS --max-time 5 "http://127.0.0.1:$port/health" 2>/dev/null)" && break
    sleep 2
done
echo "GET /health -> $health" >&2
python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert "status" in d, d; print("health status:", d["status"])' "$health" >&2 \
    || fail "/health did not answer JSON with a status"

# homesec-firstboot prints the sizes of the data partition and its file system.
line="$(plain < "$serial_log" | grep -a 'homesec-firstboot: data:' | tail -n1)"
echo "$line" >&2
part_mb="$(echo "$line" | sed -n 's/.*partition \([0-9]*\) MiB.*/\1/p')"
fs_mb="$(echo "$line" | sed -n 's/.*file system \([0-9]*\) MiB.*/\1/p')"
min_mb=$(( disk_mb - 1 - ESP_MB - 2 * ROOTFS_MB - 8 ))
[ -n "$part_mb" ] && [ "$part_mb" -ge "$min_mb" ] || fail "data partition is ${part_mb:-?} MiB, expected >= $min_mb MiB"
[ -n "$fs_mb" ] && [ "$fs_mb" -ge $(( min_mb * 9 / 10 )) ] || fail "data file system is ${fs_mb:-?} MiB, expected about $min_mb MiB"
stage "data partition grew: $part_mb MiB partition, $fs_mb MiB file system (disk $disk_mb MiB)"

qemu_stop
rm -f "$disk" "$disk.vars"
echo "PASS: $BOARD image boots to homesec READY in ${boot_s}s; /health answers; data partition grown" >&2
