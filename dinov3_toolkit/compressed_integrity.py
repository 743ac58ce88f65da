"""Whether jpeg/png bytes are a whole, consistent file, checked before they are decoded.

A decoder given a damaged file does not always fail: OpenCV 4's libjpeg decodes a truncated
JPEG into a picture whose missing lower part is grey or black, and says so only on the
process's stderr, where Python cannot catch it. A model then reports on a picture the camera
never took, and a robot must not act on that. So every jpeg/png that is decoded (still image
files in ``offline.sources.read_rgb``, ``CompressedImage`` messages in the node and in
``dinov3 bag``) is first checked here, and a damaged one is SKIPPED and counted, never
processed: a dropped frame is visible in the counts, a half-grey one is not.

What is checked is the container, without decoding (a walk over its markers or chunks):

- JPEG: it starts with the start-of-image marker; every segment's length stays inside the
  data; after the first scan only the markers that may stand between scans appear; and the
  end-of-image marker comes (truncated data has none).
- PNG: the signature, then every chunk's length and CRC, IHDR first, through IEND.

Bytes after the end (after JPEG's end-of-image marker or PNG's IEND) are accepted, whatever
they are: decoders never read them, so the picture is whole. Drivers pad frames to a fixed
buffer size with zeros, and phones append a preview image after the main one.

Not seen: a flipped bit inside JPEG image data, which no checksum covers (PNG's CRCs cover
every byte). Data that is neither JPEG nor PNG is left to the decoder.
"""

from __future__ import annotations

import zlib

import numpy as np

from .errors import Dinov3Error

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_START = b"\xff\xd8\xff"  # start-of-image, then the first marker (what decoders recognise a JPEG by)

_SOI, _EOI, _SOS = 0xD8, 0xD9, 0xDA
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM and RST0-7: no length; decoders skip them
# What may follow a scan: tables, restart interval, number of lines, comments, application data, the next scan.
_BETWEEN_SCANS = frozenset({0xC4, 0xCC, 0xDA, 0xDB, 0xDC, 0xDD, 0xFE, *range(0xE0, 0xF0)})
_NAMES = {0xC4: "DHT", 0xCC: "DAC", _SOI: "SOI", _EOI: "EOI", _SOS: "SOS", 0xDB: "DQT", 0xDC: "DNL", 0xDD: "DRI",
          0xFE: "COM"}


class CorruptImage(Dinov3Error, ValueError):
    """jpeg/png data whose container is damaged; the message says what is wrong and ends 'truncated' or 'corrupt'."""


def check_compressed(data: np.ndarray) -> None:
    """Raise ``CorruptImage`` when ``data`` (flat uint8) starts as a JPEG or PNG but is not a whole, consistent one."""
    head = data[:8].tobytes()
    if head.startswith(JPEG_START):
        _check_jpeg(data)
    elif head == PNG_SIGNATURE:
        _check_png(memoryview(np.ascontiguousarray(data)))


def _marker_name(code: int) -> str:
    if 0xC0 <= code <= 0xCF and code not in _NAMES:
        return f"SOF{code - 0xC0}"
    if 0xE0 <= code <= 0xEF:
        return f"APP{code - 0xE0}"
    return _NAMES.get(code, f"0xFF{code:02X}")


def _scan_markers(data: np.ndarray) -> np.ndarray:
    """Positions of the 0xFF bytes that start a marker, as seen from image data.

    Image data never holds one: an 0xFF there is followed by 0x00 (stuffing), and restart
    markers (0xFFD0-D7) belong to it. 0xFF 0xFF is fill before a marker.
    """
    ff = np.flatnonzero(data[:-1] == 0xFF)  # (k,)
    follow = data[ff + 1]
    return ff[(follow != 0x00) & (follow != 0xFF) & ((follow < 0xD0) | (follow > 0xD7))]


def _check_jpeg(data: np.ndarray) -> None:
    """Walk the segments from SOI to EOI; image data (after each SOS) is skipped to the next marker."""
    size = data.size
    pos, in_scan, scans = 2, False, 0
    markers: np.ndarray | None = None
    while True:
        if in_scan:
            markers = _scan_markers(data) if markers is None else markers
            i = int(np.searchsorted(markers, pos))
            if i == markers.size:
                raise CorruptImage("JPEG ends before its end-of-image marker: truncated")
            pos = int(markers[i])
        else:
            while pos + 1 < size and data[pos] == 0xFF and data[pos + 1] == 0xFF:
                pos += 1  # fill bytes
            if pos + 1 >= size:
                raise CorruptImage("JPEG ends before its end-of-image marker: truncated")
            if data[pos] != 0xFF:
                raise CorruptImage(f"JPEG has no marker at byte {pos}, where the previous segment ends: corrupt")
        code = int(data[pos + 1])
        if code == _EOI:
            if not scans:
                raise CorruptImage(f"JPEG ends (end-of-image marker at byte {pos}) before any image data: corrupt")
            return
        if code in _STANDALONE and not in_scan:
            pos += 2
            continue
        if code in (0x00, _SOI) or (scans and code not in _BETWEEN_SCANS):
            raise CorruptImage(f"JPEG has an unexpected {_marker_name(code)} marker at byte {pos}: corrupt")
        if pos + 4 > size:
            raise CorruptImage(f"JPEG ends inside its {_marker_name(code)} segment at byte {pos}: truncated")
        length = int(data[pos + 2]) << 8 | int(data[pos + 3])  # counts itself, not the marker
        if length < 2:
            raise CorruptImage(f"JPEG {_marker_name(code)} segment at byte {pos} declares {length} bytes "
                               "(at least 2): corrupt")
        if pos + 2 + length > size:
            raise CorruptImage(f"JPEG ends inside its {_marker_name(code)} segment at byte {pos}: truncated")
        pos += 2 + length
        in_scan = code == _SOS
        scans += in_scan


def _check_png(data: memoryview) -> None:
    """Walk the chunks from the signature to IEND, checking each one's CRC."""
    size, pos = len(data), len(PNG_SIGNATURE)
    while True:
        if pos + 8 > size:
            raise CorruptImage("PNG ends before its IEND chunk: truncated")
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8].tobytes()
        if not kind.isalpha() or length >= 2**31:
            raise CorruptImage(f"PNG has no chunk at byte {pos} (type {kind!r}, length {length}): corrupt")
        name = kind.decode("ascii")
        if pos == len(PNG_SIGNATURE) and name != "IHDR":
            raise CorruptImage(f"PNG starts with a {name} chunk instead of IHDR: corrupt")
        end = pos + 12 + length  # length, type, data, CRC
        if end > size:
            raise CorruptImage(f"PNG ends inside its {name} chunk at byte {pos}: truncated")
        if zlib.crc32(data[pos + 4:end - 4]) != int.from_bytes(data[end - 4:end], "big"):
            raise CorruptImage(f"PNG {name} chunk at byte {pos} fails its CRC check: corrupt")
        if name == "IEND":
            return
        pos = end
