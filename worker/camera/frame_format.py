"""Pixel layouts of the ``data`` field of the frame hashes (``frame:latest``, ``frame:keyframe``).

``meta.data_format`` says which (absent = ``bgr24``, what camera processes wrote before the field):

* ``i420``: planar YUV 4:2:0, the decoder's own output: the Y plane (``height`` rows of ``width``
  bytes), then U, then V (``height/2`` rows of ``width/2`` bytes each), no padding;
  ``width * height * 3 / 2`` bytes. Published for ``yuv420p`` / ``yuvj420p`` frames of even size
  (no colour conversion in the camera; ``meta.pix_fmt`` tells the range: ``yuvj420p`` is full range).
* ``bgr24``: ``height x width x 3`` bytes, BGR, row after row, no padding (every other pixel format,
  or when the camera runs with ``EDGEPROXY_PUBLISH_FORMAT=bgr24``).

Readers call ``to_bgr(meta, data)`` (the frame server does, once per published frame).
"""

from __future__ import annotations

import numpy as np

I420 = "i420"
BGR24 = "bgr24"
FORMATS = (I420, BGR24)
# Decoder pixel formats published as I420 (when width and height are even).
I420_SOURCES = ("yuv420p", "yuvj420p")


class FrameFormatError(ValueError):
    """A frame record whose data does not match its meta."""


def data_format(meta: dict) -> str:
    return str(meta.get("data_format") or BGR24).lower()


def data_size(meta: dict) -> int:
    """Bytes ``data`` must have for this meta."""
    width, height = int(meta.get("width") or 0), int(meta.get("height") or 0)
    if data_format(meta) == I420:
        return width * height * 3 // 2
    return width * height * 3


_FULL_TO_VIDEO_RANGE = None


def _video_range(yuv: np.ndarray, width: int, height: int) -> np.ndarray:
    """Full-range (JPEG, ``yuvj420p``) I420 to video range, which OpenCV's conversion expects."""
    import cv2

    global _FULL_TO_VIDEO_RANGE
    if _FULL_TO_VIDEO_RANGE is None:
        levels = np.arange(256, dtype=np.float64)
        _FULL_TO_VIDEO_RANGE = (np.round(16 + levels * 219 / 255).astype(np.uint8),
                                np.round(128 + (levels - 128) * 224 / 255).astype(np.uint8))
    luma, chroma = _FULL_TO_VIDEO_RANGE
    out = np.empty_like(yuv)
    cv2.LUT(yuv[:height], luma, dst=out[:height])
    cv2.LUT(yuv[height:], chroma, dst=out[height:])
    return out


def to_bgr(meta: dict, data) -> np.ndarray:
    """The frame as an ``height x width x 3`` uint8 BGR array (read-only when no conversion was needed).

    Raises ``FrameFormatError`` when ``data`` does not fit the meta."""
    fmt = data_format(meta)
    width, height = int(meta.get("width") or 0), int(meta.get("height") or 0)
    size = data_size(meta)
    if fmt not in FORMATS:
        raise FrameFormatError(f"unknown data_format {fmt!r}")
    if width <= 0 or height <= 0 or len(data) != size:
        raise FrameFormatError(f"frame of {len(data)} bytes for {width}x{height} {fmt} (expected {size})")
    buf = np.frombuffer(data, np.uint8)
    if fmt == BGR24:
        return buf.reshape(height, width, 3)
    if width % 2 or height % 2:
        raise FrameFormatError(f"i420 frame of odd size {width}x{height}")
    import cv2

    yuv = buf.reshape(height * 3 // 2, width)
    if str(meta.get("pix_fmt") or "") == "yuvj420p":
        yuv = _video_range(yuv, width, height)
    return cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR_I420)


def bgr_bytes(meta: dict, data) -> bytes:
    """``data`` as BGR24 bytes (as is when it already is BGR24)."""
    if data_format(meta) == BGR24 and isinstance(data, bytes):
        if len(data) != data_size(meta):
            raise FrameFormatError(f"frame of {len(data)} bytes for {meta.get('width')}x{meta.get('height')} "
                                   f"bgr24 (expected {data_size(meta)})")
        return data
    return to_bgr(meta, data).tobytes()


__all__ = ["BGR24", "FORMATS", "I420", "I420_SOURCES", "FrameFormatError", "bgr_bytes", "data_format",
           "data_size", "to_bgr"]
