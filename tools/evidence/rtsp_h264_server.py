"""N H.264 cameras on rtsp://127.0.0.1:PORT/cam0 .. camN-1, from one MP4 file, without re-encoding.

Each mount is a non-shared media factory, so every client gets its own pipeline that plays the
file from its start in real time: the RTP payloader repackages the file's H.264 as it is, and
re-encoding 1080p would cost more CPU than the cameras' client. Used by tools.evidence.camera_capacity.

    python tools/evidence/rtsp_h264_server.py VIDEO PORT N
    python tools/evidence/rtsp_h264_server.py --check          # exit 0 when GStreamer and its RTSP server are here

Needs PyGObject with the GStreamer RTSP server typelib (gir1.2-gst-rtsp-server-1.0) and the
qtdemux, h264parse and rtph264pay elements (gstreamer1.0-plugins-good and -bad).
"""

import sys

PIPELINE = '( filesrc location="{video}" ! qtdemux ! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 )'
ELEMENTS = ("filesrc", "qtdemux", "h264parse", "rtph264pay")


def load_gstreamer():
    try:
        import gi

        gi.require_version("Gst", "1.0")
        gi.require_version("GstRtspServer", "1.0")
        from gi.repository import GLib, Gst, GstRtspServer
    except (ImportError, ValueError) as err:
        sys.exit(f"GStreamer RTSP server not available: {err}")
    Gst.init(None)
    missing = [name for name in ELEMENTS if Gst.ElementFactory.find(name) is None]
    if missing:
        sys.exit(f"missing GStreamer elements: {', '.join(missing)}")
    return GLib, GstRtspServer


def main(argv: list[str]) -> None:
    GLib, GstRtspServer = load_gstreamer()
    if argv[1:] == ["--check"]:
        return
    if len(argv) != 4:
        sys.exit("usage: rtsp_h264_server.py VIDEO PORT N")
    video, port, count = argv[1], argv[2], int(argv[3])
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    mounts = server.get_mount_points()
    for i in range(count):
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(PIPELINE.format(video=video))
        factory.set_shared(False)
        mounts.add_factory(f"/cam{i}", factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{port}")
    GLib.MainLoop().run()


if __name__ == "__main__":
    main(sys.argv)
