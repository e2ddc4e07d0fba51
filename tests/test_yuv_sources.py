"""Sources deliver limited-range I420: MJPEG decoding (libyuv and its fallback), raw camera
buffers, and video files of every layout and range, checked against the BGR decoders."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest
import simplejpeg

from conftest import write_clip
from mattecam.errors import SourceError
from mattecam.imaging import libyuv
from mattecam.imaging.video import to_bgr, to_i420
from mattecam.imaging.yuv import I420
from mattecam.sources import CameraSource, FileSource
from mattecam.sources import camera as camera_mod
from mattecam.sources.camera import raw_to_i420
from mattecam.sources.mjpeg import JpegReplaySource, decode_jpeg, decode_jpeg_bgr, encode_jpeg

#: Flat BGR patches: the extremes, primaries, two skin tones and orange.
PATCHES = {
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "grey": (128, 128, 128),
    "red": (0, 0, 255),
    "green": (0, 255, 0),
    "blue": (255, 0, 0),
    "light skin": (105, 172, 224),
    "mid skin": (84, 128, 186),
    "dark skin": (36, 85, 141),
    "orange": (0, 165, 255),
}
SIDE = 32  # patch side: a multiple of JPEG's 16-pixel MCU, so blocks never straddle two
MARGIN = 8  # compared inside each patch, away from borders (chroma is shared across them)


def patch_image(cols: int = 5) -> np.ndarray:
    """The patches in a grid, SIDE pixels each, as a BGR image."""
    rows = -(-len(PATCHES) // cols)
    img = np.zeros((rows * SIDE, cols * SIDE, 3), np.uint8)
    for i, colour in enumerate(PATCHES.values()):
        r, c = divmod(i, cols)
        img[r * SIDE : (r + 1) * SIDE, c * SIDE : (c + 1) * SIDE] = colour
    return img


def patch_errors(got: np.ndarray, want: np.ndarray, cols: int = 5) -> dict[str, int]:
    """Largest difference per patch, inside it."""
    out = {}
    for i, name in enumerate(PATCHES):
        r, c = divmod(i, cols)
        ys = slice(r * SIDE + MARGIN, (r + 1) * SIDE - MARGIN)
        xs = slice(c * SIDE + MARGIN, (c + 1) * SIDE - MARGIN)
        out[name] = int(np.abs(got[ys, xs].astype(int) - want[ys, xs].astype(int)).max())
    return out


@pytest.fixture(params=["libyuv", "fallback"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Each test twice: with libyuv (skipped where it is not installed) and with the OpenCV
    and simplejpeg fallback (``MATTECAM_LIBYUV=0``)."""
    monkeypatch.setenv("MATTECAM_LIBYUV", "1" if request.param == "libyuv" else "0")
    libyuv.load.cache_clear()
    try:
        if request.param == "libyuv" and libyuv.load() is None:
            pytest.skip("libyuv is not installed")
        if request.param == "fallback":
            assert libyuv.load() is None
        yield request.param
    finally:
        libyuv.load.cache_clear()  # the next test reads the restored environment


def assert_i420(pic: object, size: tuple[int, int]) -> I420:
    assert isinstance(pic, I420)
    assert not pic.full_range
    assert pic.size == size
    assert pic.data.flags.c_contiguous and pic.data.flags.writeable
    return pic


# MJPEG


@pytest.mark.parametrize("subsampling", ["422", "420"])
def test_jpeg_patches_decode_like_simplejpeg(backend: str, subsampling: str) -> None:
    img = patch_image()
    jpg = simplejpeg.encode_jpeg(img, quality=95, colorspace="BGR", colorsubsampling=subsampling)
    pic = assert_i420(decode_jpeg(jpg), (img.shape[1], img.shape[0]))
    want = simplejpeg.decode_jpeg(jpg, colorspace="BGR")
    errors = patch_errors(pic.to_bgr(), want)
    assert max(errors.values()) <= 2, errors
    # Limited range: white and black are at BT.601's nominal levels, not JPEG's 255 and 0.
    assert abs(int(pic.y[MARGIN, SIDE + MARGIN]) - 235) <= 1  # white
    assert abs(int(pic.y[MARGIN, MARGIN]) - 16) <= 1  # black


def test_jpeg_from_a_camera_buffer(backend: str) -> None:
    """A raw MJPEG buffer: one row of uint8, with padding after the end marker."""
    img = patch_image()
    jpg = encode_jpeg(img, 95)
    raw = np.concatenate([np.frombuffer(jpg, np.uint8), np.zeros(1000, np.uint8)])[None, :]
    assert np.array_equal(decode_jpeg(raw).data, decode_jpeg(jpg).data)
    assert np.array_equal(decode_jpeg(memoryview(jpg)).data, decode_jpeg(jpg).data)


def test_odd_sized_jpeg_is_cropped_to_even(backend: str) -> None:
    img = np.full((47, 63, 3), 200, np.uint8)
    img[:, 40:] = (0, 0, 255)
    jpg = encode_jpeg(img, 95, "420")
    pic = assert_i420(decode_jpeg(jpg), (62, 46))
    want = decode_jpeg_bgr(jpg)[:46, :62]
    diff = np.abs(pic.to_bgr().astype(int) - want.astype(int))
    assert diff[4:-4, 4:34].max() <= 2 and diff[4:-4, 46:-4].max() <= 2


def test_grey_jpeg(backend: str) -> None:
    img = np.full((32, 48), 128, np.uint8)
    jpg = simplejpeg.encode_jpeg(img[:, :, None], quality=95, colorspace="GRAY")
    pic = assert_i420(decode_jpeg(jpg), (48, 32))
    assert abs(int(pic.y.mean()) - 126) <= 2  # 16 + 128 * 219 / 255
    assert np.abs(pic.chroma.astype(int) - 128).max() <= 1


@pytest.mark.parametrize(
    "damage",
    [
        lambda j: j[: len(j) // 2],  # cut short, as a camera frame lost on the bus
        lambda j: b"not a jpeg at all" * 20,
        lambda j: b"",
        lambda j: j[:300],  # the headers only
    ],
    ids=["truncated", "garbage", "empty", "header-only"],
)
def test_corrupt_jpeg_raises_source_error(backend: str, damage: Any) -> None:
    jpg = encode_jpeg(patch_image(), 85)
    with pytest.raises(SourceError, match="corrupt MJPEG frame"):
        decode_jpeg(damage(jpg))


def test_jpeg_replay_source_yields_i420(backend: str) -> None:
    jpgs = [encode_jpeg(patch_image(), 85) for _ in range(3)]
    src = JpegReplaySource(jpgs, fps=30)
    with src:
        assert src.size == (160, 64)
        frames = []
        while (f := src.read()) is not None:
            frames.append(f)
    assert len(frames) == 3
    for f in frames:
        assert_i420(f.image, (160, 64))
        assert f.timings["decode"] >= 0


def test_encode_jpeg_takes_either_picture() -> None:
    img = patch_image()
    a = simplejpeg.decode_jpeg(encode_jpeg(img, 95), colorspace="BGR")
    b = simplejpeg.decode_jpeg(encode_jpeg(I420.from_bgr(img), 95), colorspace="BGR")
    assert max(patch_errors(a, img).values()) <= 4
    assert max(patch_errors(b, img).values()) <= 4
    assert simplejpeg.decode_jpeg_header(encode_jpeg(img))[3] == "422"  # as webcams send


# Raw camera buffers


def test_yuyv_buffer_gives_the_patches(backend: str) -> None:
    img = patch_image()
    h, w = img.shape[:2]
    yuyv = cv2.cvtColor(img, cv2.COLOR_BGR2YUV_YUYV)
    assert yuyv.shape == (h, w, 2)
    for raw in (yuyv, yuyv.reshape(-1)):
        pic = assert_i420(raw_to_i420(raw, "YUYV", w, h), (w, h))
        errors = patch_errors(pic.to_bgr(), img)
        assert max(errors.values()) <= 2, errors


def test_mjpeg_buffer(backend: str) -> None:
    img = patch_image()
    h, w = img.shape[:2]
    raw = np.frombuffer(encode_jpeg(img, 95) + bytes(64), np.uint8)[None, :]
    pic = assert_i420(raw_to_i420(raw, "MJPG", w, h), (w, h))
    assert max(patch_errors(pic.to_bgr(), img).values()) <= 4


def test_raw_buffers_that_are_not_the_frame(backend: str) -> None:
    img = patch_image()
    h, w = img.shape[:2]
    yuyv = cv2.cvtColor(img, cv2.COLOR_BGR2YUV_YUYV)
    with pytest.raises(SourceError, match="bytes for a"):
        raw_to_i420(yuyv.reshape(-1)[:-2], "YUYV", w, h)
    with pytest.raises(SourceError, match="JPEG for a"):
        raw_to_i420(np.frombuffer(encode_jpeg(img), np.uint8), "MJPG", w * 2, h)
    with pytest.raises(SourceError, match="corrupt MJPEG"):
        raw_to_i420(np.zeros(5000, np.uint8), "MJPG", w, h)
    with pytest.raises(SourceError, match="not read here"):
        raw_to_i420(yuyv, "NV12", w, h)


class FakeCapture:
    """OpenCV's V4L2 capture as CameraSource uses it: raw buffers while
    ``CAP_PROP_CONVERT_RGB`` is 0, BGR frames otherwise."""

    def __init__(self, fourcc: str, size: tuple[int, int], raw: list[np.ndarray], bgr: np.ndarray):
        self.fourcc, self.size, self.raw, self.bgr = fourcc, size, list(raw), bgr
        self.convert = True
        self.raw_reads = self.bgr_reads = 0

    def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
        return True

    def set(self, prop: int, value: float) -> bool:
        if prop == cv2.CAP_PROP_CONVERT_RGB:
            self.convert = bool(value)
        return True

    def get(self, prop: int) -> float:
        if prop == cv2.CAP_PROP_FRAME_WIDTH:
            return self.size[0]
        if prop == cv2.CAP_PROP_FRAME_HEIGHT:
            return self.size[1]
        if prop == cv2.CAP_PROP_FPS:
            return 30.0
        if prop == cv2.CAP_PROP_FOURCC:
            return float(cv2.VideoWriter.fourcc(*self.fourcc))
        return 0.0

    def read(self) -> tuple[bool, np.ndarray]:
        if self.convert:
            self.bgr_reads += 1
            return True, self.bgr.copy()
        self.raw_reads += 1
        return True, self.raw[(self.raw_reads - 1) % len(self.raw)].copy()

    def release(self) -> None:
        pass


@pytest.fixture
def fake_device(tmp_path: Path) -> Path:
    dev = tmp_path / "video0"
    dev.write_bytes(b"")
    return dev


def fake_camera(monkeypatch: pytest.MonkeyPatch, cap: FakeCapture) -> None:
    monkeypatch.setattr(cv2, "VideoCapture", lambda *a: cap)


@pytest.mark.parametrize("fourcc", ["MJPG", "YUYV"])
def test_camera_decodes_raw_buffers(
    backend: str,
    fourcc: str,
    fake_device: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    img = patch_image()
    h, w = img.shape[:2]
    if fourcc == "MJPG":
        raw = np.frombuffer(encode_jpeg(img, 95) + bytes(100), np.uint8)[None, :]
    else:
        raw = cv2.cvtColor(img, cv2.COLOR_BGR2YUV_YUYV)
    cap = FakeCapture(fourcc, (w, h), [raw], np.zeros_like(img))
    fake_camera(monkeypatch, cap)
    with caplog.at_level(logging.INFO, logger="mattecam"):
        src = CameraSource(fake_device, size=(w, h), pixel_format="mjpeg")
        src.open()
    try:
        assert src.raw and src.size == (w, h)
        assert f"raw {fourcc} frames decoded to I420" in caplog.text
        f = src.read()
        assert f is not None
        pic = assert_i420(f.image, (w, h))
        assert max(patch_errors(pic.to_bgr(), img).values()) <= 4
        assert cap.bgr_reads == 0
    finally:
        src.close()


def test_camera_falls_back_to_bgr(
    fake_device: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A camera whose raw buffers are not JPEGs (here: wrong bytes) is read as BGR."""
    img = patch_image()
    h, w = img.shape[:2]
    cap = FakeCapture("MJPG", (w, h), [np.zeros((1, 4000), np.uint8)], img)
    fake_camera(monkeypatch, cap)
    with caplog.at_level(logging.INFO, logger="mattecam"):
        src = CameraSource(fake_device, size=(w, h))
        src.open()
    try:
        assert not src.raw
        assert "frames unusable (corrupt MJPEG frame" in caplog.text
        assert cap.raw_reads == camera_mod.RAW_TRIES
        f = src.read()
        assert f is not None
        pic = assert_i420(f.image, (w, h))
        assert max(patch_errors(pic.to_bgr(), img).values()) <= 2
    finally:
        src.close()


def test_camera_drops_corrupt_frames_and_scales(
    backend: str,
    fake_device: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    img = patch_image()
    h, w = img.shape[:2]
    good = np.frombuffer(encode_jpeg(img, 95), np.uint8)
    bad = good[: good.size // 3]
    cap = FakeCapture("MJPG", (w, h), [good, bad, bad, good], img)
    fake_camera(monkeypatch, cap)
    src = CameraSource(fake_device, size=(w // 2, h // 2))  # the camera keeps its size
    src.open()
    try:
        assert src.raw and src.size == (w // 2, h // 2)
        with caplog.at_level(logging.WARNING, logger="mattecam"):
            frames = [src.read() for _ in range(2)]
        assert [f.seq for f in frames if f] == [0, 1]
        for f in frames:
            assert f is not None
            assert_i420(f.image, (w // 2, h // 2))
        assert cap.raw_reads == 5  # the first at open, then good, bad, bad, good
        assert caplog.text.count("dropped an undecodable frame") == 1
        cap.raw = [bad]
        with pytest.raises(SourceError, match="undecodable frames in a row"):
            src.read()
    finally:
        src.close()


# Video files


def read_all(src: FileSource) -> list[I420]:
    out = []
    while (f := src.read()) is not None:
        assert isinstance(f.image, I420)
        out.append(f.image)
    return out


def decoded(path: Path) -> list[Any]:
    with av.open(str(path)) as c:
        return list(c.decode(video=0))


def test_h264_file_gives_the_decoder_planes(clip: Path) -> None:
    with FileSource(clip) as src:
        pics = read_all(src)
    frames = decoded(clip)
    assert len(pics) == len(frames) == 12
    for pic, vf in zip(pics, frames, strict=True):
        assert vf.format.name == "yuv420p"
        assert_i420(pic, (160, 96))
        assert np.array_equal(pic.data, vf.to_ndarray())
        diff = np.abs(pic.to_bgr().astype(int) - to_bgr(vf).astype(int))
        assert diff.mean() <= 2


def test_real_clip_gives_the_decoder_planes(shared_data: Path) -> None:
    path = shared_data / "videos" / "speed" / "s18_640x480.mp4"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    with av.open(str(path)) as c:
        want = [vf.to_ndarray() for _, vf in zip(range(5), c.decode(video=0), strict=False)]
    with FileSource(path) as src:
        got = [src.read() for _ in range(5)]
    for f, planes in zip(got, want, strict=True):
        assert f is not None and isinstance(f.image, I420)
        assert np.array_equal(f.image.data, planes)


def white_and_black(i: int, img: np.ndarray) -> None:
    w = img.shape[1]
    img[:, : w // 2] = 255
    img[:, w // 2 :] = 0


def write_video(path: Path, codec: str, pix_fmt: str, size: tuple[int, int], **opts: Any) -> Path:
    """Three frames, white left half and black right half, written in ``pix_fmt``."""
    w, h = size
    full = opts.pop("color_range", None)
    img = np.zeros((h, w, 3), np.uint8)
    white_and_black(0, img)
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=24)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        s.options = {k: str(v) for k, v in opts.items()}
        if full is not None:
            s.codec_context.color_range = full
        for i in range(3):
            vf = av.VideoFrame.from_ndarray(img, format="bgr24")
            if full is not None:
                vf.color_range = full
            vf.pts = i
            for p in s.encode(vf):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


@pytest.mark.parametrize(
    "case",
    [
        ("mjpeg420.avi", "mjpeg", "yuvj420p", {}),
        ("mjpeg422.avi", "mjpeg", "yuvj422p", {}),
        ("fullrange.mp4", "libx264", "yuv420p", {"qp": 0, "color_range": 2}),
    ],
    ids=lambda c: c[0],
)
def test_full_range_file_is_made_limited(
    backend: str, tmp_path: Path, case: tuple[str, str, str, dict[str, Any]]
) -> None:
    name, codec, pix_fmt, opts = case
    path = write_video(tmp_path / name, codec, pix_fmt, (96, 64), **opts)
    vf = decoded(path)[0]
    assert vf.format.name.startswith("yuvj") or vf.color_range == 2
    assert int(np.frombuffer(vf.planes[0], np.uint8)[4]) >= 250  # full range in the file
    with FileSource(path) as src:
        pics = read_all(src)
    assert len(pics) == 3
    for pic in pics:
        assert_i420(pic, (96, 64))
        assert abs(float(pic.y[8:-8, 8:40].mean()) - 235) <= 2  # white
        assert abs(float(pic.y[8:-8, 56:-8].mean()) - 16) <= 2  # black
        assert np.abs(pic.chroma.astype(int) - 128).max() <= 3
        white = pic.to_bgr()[8:-8, 8:40]
        assert white.min() >= 250


def test_other_layouts() -> None:
    """4:2:2, 4:4:4, NV12 and RGB frames come out as the same picture within a level or two."""
    img = patch_image()
    h, w = img.shape[:2]
    ref = av.VideoFrame.from_ndarray(img, format="bgr24").reformat(format="yuv420p")
    want = to_i420(ref)
    assert np.array_equal(want.data, ref.to_ndarray())
    for fmt in ("yuv422p", "yuv444p", "nv12", "yuv420p10le", "rgb24", "bgr24", "bgra"):
        vf = av.VideoFrame.from_ndarray(img, format="bgr24").reformat(format=fmt)
        pic = assert_i420(to_i420(vf), (w, h))
        errors = patch_errors(pic.to_bgr(), img)
        assert max(errors.values()) <= 2, (fmt, errors)
        assert np.abs(pic.y.astype(int) - want.y.astype(int)).max() <= 1, fmt


@pytest.mark.parametrize(
    ("name", "codec", "pix_fmt"),
    [
        ("odd.mkv", "ffv1", "yuv420p"),  # 4:2:0 with chroma planes of (side + 1) / 2
        ("odd.avi", "mjpeg", "yuvj420p"),
        ("odd.mp4", "libx264", "yuv444p"),
    ],
)
def test_odd_sized_file_is_cropped_to_even(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str, codec: str, pix_fmt: str
) -> None:
    path = write_video(tmp_path / name, codec, pix_fmt, (97, 65))
    vf = decoded(path)[0]
    assert (vf.width, vf.height) == (97, 65)
    with caplog.at_level(logging.WARNING, logger="mattecam"), FileSource(path) as src:
        assert src.size == (96, 64)
        pics = read_all(src)
    assert len(pics) == 3
    for pic in pics:
        assert_i420(pic, (96, 64))
        assert abs(float(pic.y[8:-8, 8:40].mean()) - 235) <= 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"{path}: 97x65 is odd; processing 96x64 (4:2:0 needs even sizes)"]
    if codec == "ffv1":  # lossless: exactly the decoder's planes, cropped
        y = np.frombuffer(vf.planes[0], np.uint8).reshape(65, -1)[:64, :96]
        u = np.frombuffer(vf.planes[1], np.uint8).reshape(33, -1)[:32, :48]
        assert np.array_equal(pics[0].y, y) and np.array_equal(pics[0].u, u)


def test_odd_requested_size_is_rounded(clip: Path, caplog: pytest.LogCaptureFixture) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="mattecam"),
        FileSource(clip, size=(81, 49)) as src,
    ):
        assert src.size == (80, 48)
        f = src.read()
    assert f is not None
    assert_i420(f.image, (80, 48))
    assert "the requested size 81x49 is odd; delivering 80x48" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mattecam"), FileSource(clip, size=(81, 0)) as src:
        assert src.size == (80, 48)
    assert "the requested size 81xauto is odd" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mattecam"), FileSource(clip, size=(64, 64)):
        pass
    assert not caplog.records


def test_even_file_of_another_size_is_fit(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "c.mp4", n=2, size=(160, 96), draw=white_and_black)
    with FileSource(path, size=(64, 64)) as src:
        pics = read_all(src)
    for pic in pics:
        assert_i420(pic, (64, 64))
        assert abs(float(pic.y[20:44, 4:24].mean()) - 235) <= 3
        assert abs(float(pic.y[20:44, 40:60].mean()) - 16) <= 3


@pytest.mark.parametrize("backend", ["libyuv"], indirect=True)
def test_libyuv_decodes_even_jpegs_itself(backend: str) -> None:
    """With libyuv, MJPGToI420 does the work (no silent fall back to simplejpeg)."""
    from mattecam.sources import mjpeg

    jpg = encode_jpeg(patch_image(), 95)
    pic = mjpeg._decode_libyuv(libyuv.load(), np.frombuffer(jpg, np.uint8))
    assert pic is not None and not pic.full_range
    assert np.array_equal(pic.data, decode_jpeg(jpg).data)


def test_jpeg_claiming_a_huge_size_is_corrupt(backend: str) -> None:
    """A damaged header must not make the decoder allocate gigabytes."""
    jpg = bytearray(encode_jpeg(patch_image(), 85))
    sof = jpg.index(b"\xff\xc0")  # baseline frame header: length, precision, height, width
    jpg[sof + 5 : sof + 9] = b"\x75\x30\x75\x30"  # 30000 x 30000
    with pytest.raises(SourceError, match="corrupt MJPEG frame: its header claims 30000x30000"):
        decode_jpeg(bytes(jpg))
