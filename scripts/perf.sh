#!/usr/bin/env bash
# Reproduce the tables in docs/performance.md (about 12 minutes on 2 cores); the before/after
# comparison is scripts/bench_against.sh.
#   bash scripts/perf.sh > /tmp/perf.txt
# The main input is a real clip from ../shared/data (a person at a desk, encoded to MJPEG
# quality 85 first, as a webcam sends it); without it, the generated clip is used.
set -euo pipefail
cd "$(dirname "$0")/.."
mc=.venv/bin/mattecam
clip=../shared/data/videos/speed/s18_1280x720.mp4
in=()
[ -f "$clip" ] && in=(--input "$clip")
echo "## main: MJPEG in, YUYV out, landscape, image background, guided+temporal"
"$mc" bench "${in[@]}" --size 640x480 --size 1280x720 --size 1920x1080 --frames 300 --live-seconds 15
echo "## 1080p alone (peak RSS of a 1080p run)"
"$mc" bench "${in[@]}" --size 1920x1080 --frames 300 --live-seconds 10
echo "## blur background, 720p"
"$mc" bench "${in[@]}" --size 1280x720 --frames 300 --no-live -b blur
echo "## image background again, 720p (same run conditions as the blur line above)"
"$mc" bench "${in[@]}" --size 1280x720 --frames 300 --no-live
echo "## H.264 file input, 720p"
"$mc" bench "${in[@]}" --size 1280x720 --frames 300 --codec h264 --live-seconds 10
echo "## competing load: one core kept busy by another process, 720p"
"$mc" bench "${in[@]}" --size 1280x720 --frames 300 --live-seconds 10 --load
echo "## single-thread figure for comparison: stages in one thread, 720p"
.venv/bin/python scripts/single_thread.py 1280x720 "${in[@]:1}"
echo "## webcam-like MJPEG 4:2:2, 720p"
"$mc" bench "${in[@]}" --size 1280x720 --frames 300 --live-seconds 10 --chroma 422
echo "## without libyuv (the OpenCV fallbacks), 720p"
MATTECAM_LIBYUV=0 "$mc" bench "${in[@]}" --size 1280x720 --frames 300 --live-seconds 10
echo "## the generated clip (noise texture: harder to decode than a real picture)"
"$mc" bench --size 640x480 --size 1280x720 --size 1920x1080 --frames 300 --live-seconds 10
echo "## soak: 20000 frames at 640x480, memory growth"
"$mc" bench "${in[@]}" --size 640x480 --frames 200 --no-live --no-batch --soak 20000
