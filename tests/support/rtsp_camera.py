#!/usr/bin/python3
"""A fake IP camera: Debian's GStreamer RTSP server with a moving test pattern.

Runs under Debian's /usr/bin/python3 (python3-gi), not the project venv:
    /usr/bin/python3 tests/support/rtsp_camera.py --port 8554 [--codec h265] [--user U --password P]
Prints one "serving rtsp://..." line when it listens.
"""

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402


def pipeline(args) -> str:
    source = (
        f"videotestsrc is-live=true pattern={args.pattern} "
        f"! video/x-raw,width={args.width},height={args.height},framerate={args.fps}/1 "
    )
    gop = args.gop or args.fps
    if args.codec == "h265":
        encode = (
            f"! x265enc tune=zerolatency speed-preset=ultrafast key-int-max={gop} bitrate={args.bitrate} "
            "! video/x-h265 ! rtph265pay name=pay0 pt=96 config-interval=1"
        )
    else:
        encode = (
            f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={gop} bitrate={args.bitrate} "
            "! video/x-h264,profile=baseline ! rtph264pay name=pay0 pt=96 config-interval=1"
        )
    return f"( {source}{encode} )"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", default="8554")
    parser.add_argument("--path", default="/test")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--gop", type=int, default=0, help="keyframe interval in frames (default: fps)")
    parser.add_argument("--bitrate", type=int, default=2000, help="kbit/s")
    parser.add_argument("--pattern", default="ball")
    parser.add_argument("--codec", choices=("h264", "h265"), default="h264")
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--digest", action="store_true")
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.address)
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(pipeline(args))
    factory.set_shared(True)
    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "viewer")
        if args.digest:
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
            auth.add_digest(args.user, args.password, token)
        else:
            auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_role_from_structure(
            Gst.Structure.new_from_string(
                "viewer, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
            )
        )
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on {args.address}:{args.port}", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, signum, lambda *_: (loop.quit(), False)[1])
    print(f"serving rtsp://{args.address}:{args.port}{args.path} {args.codec} "
          f"{args.width}x{args.height}@{args.fps}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
