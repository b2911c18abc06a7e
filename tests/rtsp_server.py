"""A real RTSP server for the camera-source tests: GStreamer's gst-rtsp-server serving a recorded clip.

Run by Debian's python3 (packages python3-gi, gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-base/good/ugly;
the Makefile's ``rtsp-server`` target installs them), not by the project's virtualenv:
``/usr/bin/python3 tests/rtsp_server.py PORT CLIP [USER PASSWORD]``. The clip (a Motion-JPEG .avi, such as
cv2.VideoWriter writes) is played at its own rate and sent as H.264 (what IP cameras send) on
``rtsp://127.0.0.1:PORT/cam``, to a client that gives USER and PASSWORD (RTSP basic authentication) when they
are given. It prints ``ready`` once it listens. ``--check`` only checks that everything it needs is installed.
"""

import sys

ELEMENTS = ("filesrc", "avidemux", "jpegdec", "videoconvert", "x264enc", "rtph264pay")


def main() -> None:
    import gi  # Debian's python3-gi: not in the project's virtualenv, which imports this file for its doctests

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    missing = [e for e in ELEMENTS if Gst.ElementFactory.find(e) is None]
    if missing:
        sys.exit(f"GStreamer elements missing: {', '.join(missing)} (gstreamer1.0-plugins-base/good/ugly)")
    if sys.argv[1] == "--check":
        return
    port, clip = sys.argv[1], sys.argv[2]
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f'( filesrc location="{clip}" ! avidemux ! jpegdec ! videoconvert ! x264enc tune=zerolatency '
        "speed-preset=ultrafast key-int-max=10 ! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    factory.set_shared(True)
    if len(sys.argv) > 4:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "viewer")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(sys.argv[3], sys.argv[4]), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role("viewer", "media.factory.access", True)
        permissions.add_permission_for_role("viewer", "media.factory.construct", True)
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        sys.exit(f"could not listen on port {port}")
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
