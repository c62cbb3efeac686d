"""The jute binary codec, derived from record declarations.

A record is a frozen, slotted dataclass whose annotated fields, in order, are its jute
field list (the same order as in zookeeper.jute). `@record` reads the annotations once and
compiles an encoder and a bounded decoder for the class; runs of fixed-size fields become
one `struct` call, which is most of the speed on the hot records.

Jute types and their Python annotations:

    int      Int (Annotated[int, ...])      long     Long
    boolean  bool                           buffer   Buffer (bytes | None; -1 is None)
    ustring  str (-1 decodes as "")         record   the record class
    vector<T> tuple[T, ...] (-1 decodes as an empty tuple)
"""

from __future__ import annotations

import dataclasses
import struct
import typing
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from corral import limits


class ProtocolError(Exception):
    """Bytes that are not a valid frame or record. The connection that sent them is closed."""


class DecodeError(ProtocolError):
    """A record could not be decoded: too short, a bad length, or an unreasonable size."""


class _Int:
    """Marks an int field as jute `int` (4 bytes)."""


class _Long:
    """Marks an int field as jute `long` (8 bytes)."""


class _Buffer:
    """Marks a bytes field as jute `buffer`."""


Int = Annotated[int, _Int]
Long = Annotated[int, _Long]
Buffer = Annotated[bytes | None, _Buffer]

T = TypeVar("T")

Encoder = Callable[[bytearray, Any], None]
Decoder = Callable[[bytes, int], tuple[Any, int]]


@dataclasses.dataclass(frozen=True, slots=True)
class _Codec:
    encode: Encoder
    decode: Decoder


_CODECS: dict[type, _Codec] = {}

# The largest length a buffer or string may claim (ZooKeeper's "Unreasonable length" check).
_LEN_MAX = limits.jute_maxbuffer_bytes + limits.jute_maxbuffer_extrasize_bytes


def _read_buffer(data: bytes, pos: int) -> tuple[bytes | None, int]:
    (n,) = _INT.unpack_from(data, pos)
    pos += 4
    if n == -1:
        return None, pos
    if n < -1 or n > _LEN_MAX or pos + n > len(data):
        raise DecodeError(f"bad buffer length {n} at offset {pos - 4}")
    return bytes(data[pos : pos + n]), pos + n


def _read_ustring(data: bytes, pos: int) -> tuple[str, int]:
    (n,) = _INT.unpack_from(data, pos)
    pos += 4
    if n == -1:
        return "", pos
    if n < -1 or n > _LEN_MAX or pos + n > len(data):
        raise DecodeError(f"bad string length {n} at offset {pos - 4}")
    return str(data[pos : pos + n], "utf-8", "replace"), pos + n


def _read_count(data: bytes, pos: int) -> tuple[int, int]:
    (n,) = _INT.unpack_from(data, pos)
    pos += 4
    if n == -1:
        return 0, pos
    # Every element takes at least one byte, so a count beyond the bytes left is a lie.
    if n < -1 or n > len(data) - pos:
        raise DecodeError(f"bad vector length {n} at offset {pos - 4}")
    return n, pos


def _write_buffer(out: bytearray, value: bytes | None) -> None:
    if value is None:
        out += b"\xff\xff\xff\xff"
    else:
        out += _INT.pack(len(value))
        out += value


def _write_ustring(out: bytearray, value: str) -> None:
    raw = value.encode("utf-8", "surrogatepass")
    out += _INT.pack(len(raw))
    out += raw


_INT = struct.Struct(">i")

_FIXED = {"int": ("i", 4), "long": ("q", 8), "boolean": ("?", 1)}


def _kind(hint: Any) -> tuple[str, Any]:
    """Classify one annotation as (jute kind, element or record type)."""
    origin = typing.get_origin(hint)
    if origin is Annotated:
        base, *marks = typing.get_args(hint)
        if _Int in marks:
            return "int", None
        if _Long in marks:
            return "long", None
        if _Buffer in marks:
            return "buffer", None
        raise TypeError(f"unknown jute annotation {hint!r}")
    if hint is bool:
        return "boolean", None
    if hint is str:
        return "ustring", None
    if origin is tuple:
        elem, ellipsis = typing.get_args(hint)
        if ellipsis is not Ellipsis:
            raise TypeError(f"vectors are tuple[T, ...], not {hint!r}")
        return "vector", elem
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return "record", hint
    raise TypeError(f"unsupported jute field type {hint!r}")


def _compile(cls: type) -> _Codec:
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = [(f.name, _kind(hints[f.name])) for f in dataclasses.fields(cls)]
    env: dict[str, Any] = {
        "_cls": cls,
        "_rb": _read_buffer,
        "_rs": _read_ustring,
        "_rc": _read_count,
        "_wb": _write_buffer,
        "_ws": _write_ustring,
        "_INT": _INT,
        "_CODECS": _CODECS,
        "_bool": bool,
    }
    enc = ["def encode(out, r):"]
    dec = ["def decode(data, pos):"]
    names: list[str] = []
    i = 0
    while i < len(fields):
        name, (kind, sub) = fields[i]
        if kind in _FIXED:
            # Gather the run of fixed-size fields into one struct.
            run = []
            while i < len(fields) and fields[i][1][0] in _FIXED:
                run.append(fields[i])
                i += 1
            fmt = ">" + "".join(_FIXED[k][0] for _, (k, _s) in run)
            sname = f"_S{len(env)}"
            env[sname] = struct.Struct(fmt)
            args = ", ".join(f"r.{n}" for n, _ in run)
            enc.append(f"    out += {sname}.pack({args})")
            targets = ", ".join(f"f_{n}" for n, _ in run)
            dec.append(f"    ({targets},) = {sname}.unpack_from(data, pos)")
            dec.append(f"    pos += {env[sname].size}")
            names.extend(n for n, _ in run)
            continue
        i += 1
        names.append(name)
        if kind == "buffer":
            enc.append(f"    _wb(out, r.{name})")
            dec.append(f"    f_{name}, pos = _rb(data, pos)")
        elif kind == "ustring":
            enc.append(f"    _ws(out, r.{name})")
            dec.append(f"    f_{name}, pos = _rs(data, pos)")
        elif kind == "record":
            cname = f"_C{len(env)}"
            env[cname] = sub
            enc.append(f"    _CODECS[{cname}].encode(out, r.{name})")
            dec.append(f"    f_{name}, pos = _CODECS[{cname}].decode(data, pos)")
        else:  # vector
            ekind, esub = _kind(sub)
            enc.append(f"    out += _INT.pack(len(r.{name}))")
            enc.append(f"    for e in r.{name}:")
            dec.append("    n, pos = _rc(data, pos)")
            dec.append("    items = []")
            dec.append("    for _ in range(n):")
            if ekind == "ustring":
                enc.append("        _ws(out, e)")
                dec.append("        e, pos = _rs(data, pos)")
            elif ekind == "buffer":
                enc.append("        _wb(out, e)")
                dec.append("        e, pos = _rb(data, pos)")
            elif ekind == "record":
                cname = f"_C{len(env)}"
                env[cname] = esub
                enc.append(f"        _CODECS[{cname}].encode(out, e)")
                dec.append(f"        e, pos = _CODECS[{cname}].decode(data, pos)")
            else:
                sname = f"_S{len(env)}"
                env[sname] = struct.Struct(">" + _FIXED[ekind][0])
                enc.append(f"        out += {sname}.pack(e)")
                dec.append(f"        (e,) = {sname}.unpack_from(data, pos)")
                dec.append(f"        pos += {env[sname].size}")
            dec.append("        items.append(e)")
            dec.append(f"    f_{name} = tuple(items)")
    if len(enc) == 1:
        enc.append("    pass")
    ctor = ", ".join(f"f_{n}" for n in names)
    dec.append(f"    return _cls({ctor}), pos")
    exec("\n".join(enc) + "\n\n" + "\n".join(dec), env)
    return _Codec(env["encode"], env["decode"])


def record(cls: type[T]) -> type[T]:
    """Class decorator: compile the jute codec for a record dataclass."""
    _CODECS[cls] = _compile(cls)
    return cls


def encode(rec: object) -> bytes:
    """The jute bytes of one record."""
    out = bytearray()
    _CODECS[type(rec)].encode(out, rec)
    return bytes(out)


def encode_into(out: bytearray, rec: object) -> None:
    """Append the jute bytes of one record to `out`."""
    _CODECS[type(rec)].encode(out, rec)


def decode(cls: type[T], data: bytes, pos: int = 0) -> tuple[T, int]:
    """Decode one `cls` record at `pos`; return it and the offset just past it.

    Raises DecodeError (a ProtocolError) and nothing else on bad input.
    """
    try:
        rec, end = _CODECS[cls].decode(data, pos)
    except DecodeError:
        raise
    except (struct.error, ValueError, IndexError, TypeError, OverflowError) as exc:
        raise DecodeError(f"truncated or malformed {cls.__name__}: {exc}") from None
    return typing.cast(T, rec), end


def decode_exact(cls: type[T], data: bytes) -> T:
    """Decode a record that must fill `data` exactly (used for stored formats)."""
    rec, end = decode(cls, data)
    if end != len(data):
        raise DecodeError(f"{len(data) - end} trailing bytes after {cls.__name__}")
    return rec
