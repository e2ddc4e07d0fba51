#!/usr/bin/env bash
# Set up mattecam on a fresh machine: a virtual environment in .venv with the package
# installed, and the segmentation models fetched into the user's cache.
#   bash scripts/setup.sh          # to run mattecam
#   bash scripts/setup.sh --dev    # also test tools, and the system packages tests use
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
[ "${1:-}" = "--dev" ] && dev=1

if [ "$dev" = 1 ]; then
    # Xvfb and xdotool: the preview window is tested in a real (virtual) X server.
    # chromium: the control page is tested in a real headless browser (driven by playwright,
    # which never downloads a browser of its own here).
    need=()
    command -v Xvfb >/dev/null || need+=(xvfb)
    command -v xdotool >/dev/null || need+=(xdotool)
    command -v chromium >/dev/null || need+=(chromium)
    # The PipeWire camera (-o pipewire) is tested in a private PipeWire session read by
    # GStreamer's pipewiresrc.
    command -v pipewire >/dev/null || need+=(pipewire pipewire-bin libpipewire-0.3-0)
    command -v wireplumber >/dev/null || need+=(wireplumber)
    command -v dbus-daemon >/dev/null || need+=(dbus-daemon)
    command -v gst-launch-1.0 >/dev/null || need+=(gstreamer1.0-tools gstreamer1.0-plugins-base)
    [ -e /usr/lib/"$(uname -m)"-linux-gnu/gstreamer-1.0/libgstpipewire.so ] \
        || need+=(gstreamer1.0-pipewire gstreamer1.0-plugins-base)
    # ...and by headless Chromium and Firefox ESR through xdg-desktop-portal's Camera portal,
    # with a fake Access backend run by the system Python (Debian's python3-gi).
    command -v pw-v4l2 >/dev/null || need+=(pipewire-v4l2)  # ffmpeg reads it through pw-v4l2
    [ -x /usr/libexec/xdg-desktop-portal ] || need+=(xdg-desktop-portal)
    /usr/bin/python3 -c "import gi; gi.require_version('Gio', '2.0')" 2>/dev/null \
        || need+=(python3-gi gir1.2-glib-2.0)
    command -v firefox-esr >/dev/null || command -v firefox >/dev/null || need+=(firefox-esr)
    # libyuv: the SIMD blend and packing (optional at run time: OpenCV does it otherwise).
    [ -e /usr/lib/"$(uname -m)"-linux-gnu/libyuv.so.0 ] || need+=(libyuv0)
    if [ ${#need[@]} -gt 0 ]; then
        if [ "$(id -u)" = 0 ]; then
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
        elif command -v sudo >/dev/null; then
            sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
        else
            echo "setup: cannot install ${need[*]} (not root); the preview, page and PipeWire tests will be skipped" >&2
        fi
    fi
fi

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if [ "$dev" = 1 ]; then
    .venv/bin/python -m pip install -q -e '.[dev]'
else
    .venv/bin/python -m pip install -q -e .
fi
.venv/bin/mattecam models fetch >/dev/null
echo "setup: done; run .venv/bin/mattecam --help"
