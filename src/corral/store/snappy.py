"""Reading snappy-compressed snapshots (ZooKeeper's `snapshot.compression.method=snappy`).

ZooKeeper writes them through snappy-java's SnappyOutputStream: a 16-byte header (the magic
0x82 "SNAPPY" 0x00, then two big-endian ints, the format version and the oldest compatible
one, both 1), then blocks, each a big-endian int length and that many bytes of one raw snappy
block. SnappyInputStream also accepts a stream without the header as one raw block, and so does
this reader.

A raw block is the uncompressed length as a varint, then elements: a literal (tag low bits 00;
its length is in the tag, or in the 1-4 little-endian bytes after it) or a copy of earlier
output (01: 3-bit length and 11-bit offset; 10: 6-bit length and 2-byte offset; 11: 6-bit
length and 4-byte offset; a copy may overlap the bytes it produces). Pure Python, decoding
only: a rare path (moving a compressed data directory over), not a hot one.
"""

from __future__ import annotations

import struct

__all__ = ["SnappyError", "decompress_block", "decompress_stream"]

MAGIC = b"\x82SNAPPY\x00"
_HEADER = struct.Struct(">8sii")
_BLOCK_LEN = struct.Struct(">i")


class SnappyError(ValueError):
    """The bytes are not a well-formed snappy stream or block."""


def decompress_stream(data: bytes) -> bytes:
    """The bytes a SnappyOutputStream (or one raw block without the header) holds."""
    if not data.startswith(MAGIC):
        return decompress_block(data)
    if len(data) < _HEADER.size:
        raise SnappyError("snappy stream header torn")
    _magic, _version, compatible = _HEADER.unpack_from(data)
    if compatible != 1:
        raise SnappyError(f"snappy stream format {compatible} is not supported")
    out = bytearray()
    pos = _HEADER.size
    while pos < len(data):
        if pos + _BLOCK_LEN.size > len(data):
            raise SnappyError(f"snappy block length torn at offset {pos}")
        (length,) = _BLOCK_LEN.unpack_from(data, pos)
        pos += _BLOCK_LEN.size
        if length < 0 or pos + length > len(data):
            raise SnappyError(f"snappy block of {length} bytes at offset {pos} is torn")
        out += decompress_block(data[pos : pos + length])
        pos += length
    return bytes(out)


def decompress_block(block: bytes) -> bytes:
    """One raw snappy block."""
    size, pos = _varint(block, 0)
    out = bytearray()
    end = len(block)
    try:
        while pos < end:
            tag = block[pos]
            pos += 1
            kind = tag & 3
            if kind == 0:  # literal
                length = tag >> 2
                if length >= 60:
                    extra = length - 59
                    length = int.from_bytes(block[pos : pos + extra], "little")
                    pos += extra
                length += 1
                if pos + length > end:
                    raise SnappyError("snappy literal runs past the block")
                out += block[pos : pos + length]
                pos += length
                continue
            if kind == 1:
                length = ((tag >> 2) & 7) + 4
                offset = ((tag >> 5) << 8) | block[pos]
                pos += 1
            elif kind == 2:
                length = (tag >> 2) + 1
                offset = int.from_bytes(block[pos : pos + 2], "little")
                pos += 2
            else:
                length = (tag >> 2) + 1
                offset = int.from_bytes(block[pos : pos + 4], "little")
                pos += 4
            _copy(out, offset, length)
    except IndexError:
        raise SnappyError("snappy element torn at the end of the block") from None
    if pos != end or len(out) != size:
        raise SnappyError(f"snappy block gave {len(out)} bytes, its header says {size}")
    return bytes(out)


def _copy(out: bytearray, offset: int, length: int) -> None:
    if offset <= 0 or offset > len(out):
        raise SnappyError(f"snappy copy offset {offset} outside the {len(out)} bytes so far")
    start = len(out) - offset
    if offset >= length:
        out += out[start : start + length]
        return
    # Overlapping: the copy repeats the last `offset` bytes.
    pattern = bytes(out[start:])
    repeats, rest = divmod(length, offset)
    out += pattern * repeats + pattern[:rest]


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 28:
            raise SnappyError("bad snappy length varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
