"""Small files whose headers declare huge images: decompression bombs for the limits' tests."""

from __future__ import annotations

import struct
import zlib


def png_declaring(width: int, height: int) -> bytes:
    """A small, valid-looking PNG whose header declares width × height pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = zlib.compress(bytes(1000))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body)


def jpeg_declaring(width: int, height: int) -> bytes:
    frame = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + frame + bytes(64) + b"\xff\xd9"


def hdr_declaring(width: int, height: int) -> bytes:
    """A Radiance HDR of width × height black pixels, every row run-length coded: 3 MB for
    7000 × 7000, which decoded would be 588 MB of float32 and more than 2 GB in the pipeline."""
    runs = b"".join(bytes([128 + min(127, width - x), 128]) for x in range(0, width, 127))
    row = b"\x02\x02" + struct.pack(">H", width) + runs * 4
    return b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y %d +X %d\n" % (height, width) + row * height


def bigtiff_declaring(width: int, height: int) -> bytes:
    """A little-endian BigTIFF whose one directory declares a width × height 8-bit gray strip."""
    tags = [(256, width), (257, height), (258, 8), (259, 1), (262, 1), (273, 0)]
    tags += [(277, 1), (278, height), (279, width * height)]
    entries = b"".join(struct.pack("<HHQQ", tag, 16, 1, value) for tag, value in tags)
    return b"II+\x00" + struct.pack("<HHQQ", 8, 0, 16, len(tags)) + entries + bytes(8 + 4096)


def sun_declaring(width: int, height: int) -> bytes:
    """A Sun raster header declaring width × height 8-bit pixels."""
    return struct.pack(">8I", 0x59A66A95, width, height, 8, width * height, 1, 0, 0) + bytes(4096)
