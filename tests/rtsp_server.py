"""Serve a video file, looped, as rtsp://127.0.0.1:PORT/live with GStreamer's RTSP server.

Runs under Debian's /usr/bin/python3 (python3-gi), not the project's venv:
    /usr/bin/python3 tests/rtsp_server.py VIDEO PORT
    /usr/bin/python3 tests/rtsp_server.py VIDEO PORT tcp      # RTP over the RTSP connection only
    /usr/bin/python3 tests/rtsp_server.py --check     # exit 0 when the packages are present
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402 - after gi.require_version, as PyGObject asks

PIPELINE = (
    "( filesrc location={video} ! decodebin ! videoconvert ! "
    "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10 ! rtph264pay name=pay0 pt=96 )"
)


def main(argv):
    Gst.init(None)
    missing = [
        name for name in ("x264enc", "rtph264pay", "decodebin", "avdec_h264") if Gst.ElementFactory.find(name) is None
    ]
    if missing:
        sys.exit(f"missing GStreamer elements: {', '.join(missing)}")
    if argv[1:] == ["--check"]:
        return
    video, port = argv[1], argv[2]
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(PIPELINE.format(video=video))
    factory.set_shared(True)
    if argv[3:] == ["tcp"]:  # a client asking for UDP transport is refused (461 Unsupported transport)
        factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP)
    server.get_mount_points().add_factory("/live", factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{port}")
    GLib.MainLoop().run()


if __name__ == "__main__":
    main(sys.argv)
