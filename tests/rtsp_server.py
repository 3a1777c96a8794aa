#!/usr/bin/python3
"""A GStreamer RTSP server for the camera tests: serves an MP4 file's H.264 or
H.265 track without re-encoding (filesrc ! qtdemux ! h264parse ! rtph264pay, or
h265parse ! rtph265pay), in real time.

Run it with Debian's /usr/bin/python3 (it needs `gi` and the packages
gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-{base,good,bad}).

    rtsp_server.py --port 8554 --file clip.mp4 --mount /cam
        [--codec auto|h264|h265] [--user U --password P] [--exit-on-eos]

--codec auto (the default) reads the codec from the file's first video sample
entry (`avc1`/`avc3`: H.264, `hvc1`/`hev1`: H.265).

Every new RTSP session plays the file from its start, once (a fresh pipeline per
session; TCP-interleaved and UDP transports are both allowed). With
--exit-on-eos the server exits as soon as the first session reaches the end of
the file, so a client sees the camera vanish. With --user/--password the mount
requires digest authentication (this server serves nothing else, so
unauthenticated clients get 401, not 404). Prints `READY rtsp://127.0.0.1:PORT/MOUNT`
once listening, `PLAYING` when a session starts streaming and `EOS` when the
file ends.
"""

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402


def say(line):
    print(line, flush=True)


CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl"}


def sample_entries(data, start, end):
    """Yields the types of the sample entries under the boxes in data[start:end]."""
    pos = start
    while pos + 8 <= end:
        size = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        header = 8
        if size == 1:
            size, header = int.from_bytes(data[pos + 8:pos + 16], "big"), 16
        elif size == 0:
            size = end - pos
        if size < header:
            return
        if kind in CONTAINERS:
            yield from sample_entries(data, pos + header, pos + size)
        elif kind == b"stsd" and pos + header + 16 <= end:
            # version/flags, entry count, then the first entry's size and type.
            yield data[pos + header + 12:pos + header + 16]
        pos += size


def codec_of(path):
    with open(path, "rb") as f:
        data = f.read()
    for entry in sample_entries(data, 0, len(data)):
        if entry in (b"avc1", b"avc3"):
            return "h264"
        if entry in (b"hvc1", b"hev1"):
            return "h265"
    sys.exit(f"{path}: no H.264/H.265 video track")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--file", required=True)
    ap.add_argument("--mount", default="/stream")
    ap.add_argument("--address", default="127.0.0.1")
    ap.add_argument("--codec", choices=["auto", "h264", "h265"], default="auto")
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--exit-on-eos", action="store_true", help="exit when the first session reaches the end of the file")
    args = ap.parse_args()
    if bool(args.user) != bool(args.password):
        ap.error("--user and --password go together")
    mount = args.mount if args.mount.startswith("/") else "/" + args.mount

    Gst.init(None)
    loop = GLib.MainLoop()

    server = GstRtspServer.RTSPServer()
    server.set_address(args.address)
    server.set_service(str(args.port))

    factory = GstRtspServer.RTSPMediaFactory()
    location = args.file.replace("\\", "\\\\").replace('"', '\\"')
    codec = codec_of(args.file) if args.codec == "auto" else args.codec
    factory.set_launch(
        f'( filesrc location="{location}" ! qtdemux ! {codec}parse config-interval=-1 '
        f"! rtp{codec}pay name=pay0 pt=96 config-interval=-1 )"
    )
    factory.set_shared(False)
    factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP | GstRtsp.RTSPLowerTrans.UDP)

    def on_eos_idle():
        say("EOS")
        if args.exit_on_eos:
            loop.quit()
        return False

    def on_pay_event(_pad, info):
        event = info.get_event()
        if event is not None and event.type == Gst.EventType.EOS:
            GLib.idle_add(on_eos_idle)
        return Gst.PadProbeReturn.OK

    def on_media_configure(_factory, media):
        pay = media.get_element().get_by_name("pay0")
        if pay is not None:
            pay.get_static_pad("src").add_probe(Gst.PadProbeType.EVENT_DOWNSTREAM, on_pay_event)
        media.connect("new-state", lambda _m, state: say("PLAYING") if state == Gst.State.PLAYING else None)

    factory.connect("media-configure", on_media_configure)

    if args.user:
        auth = GstRtspServer.RTSPAuth()
        auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", args.user)
        auth.add_digest(args.user, args.password, token)
        server.set_auth(auth)
        factory.add_role_from_structure(
            Gst.Structure.from_string(
                f"{args.user}, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
            )[0]
        )

    server.get_mount_points().add_factory(mount, factory)
    if server.attach(None) == 0:
        say(f"ERROR cannot listen on {args.address}:{args.port}")
        sys.exit(1)

    def stop(*_):
        loop.quit()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    GLib.timeout_add(200, lambda: True)  # lets Python see signals while in the main loop
    say(f"READY rtsp://{args.address}:{args.port}{mount}")
    loop.run()


if __name__ == "__main__":
    main()
