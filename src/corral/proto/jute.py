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


# Per record class made only of fixed-size fields, strings and such records: a function
# `(data, pos) -> end` that steps over one encoded record without building it.
_SKIPS: dict[type, Callable[[bytes, int], int]] = {}

# Vectors of such records (ACL lists above all) repeat the same bytes request after request;
# each vector field keeps the tuples it decoded by their bytes (and the bytes it encoded
# by the tuple), at most this many, each at most this long (a bound on what a client's
# odd requests can pin in memory: 64 x 512 B per field).
_VECTOR_MEMO_MAX = 64
_VECTOR_MEMO_BYTES_MAX = 512

# Decoding one string or buffer field, inlined into the generated decoders (a call per field
# was a fifth of a small record's decode). Same checks and results as _read_ustring /
# _read_buffer; `{f}` is the target variable, `{empty}` what -1 decodes to.
_INLINE_READ = """\
    (n,) = _INT.unpack_from(data, pos)
    pos += 4
    if n == -1:
        {f} = {empty}
    elif n < -1 or n > _LEN_MAX or pos + n > len(data):
        raise DecodeError(f"bad {what} length {{n}} at offset {{pos - 4}}")
    else:
        {f} = {conv}(data[pos : pos + n]{args})
        pos += n"""


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
        "_bytes": bytes,
        "_str": str,
        "_tuple": tuple,
        "_LEN_MAX": _LEN_MAX,
        "DecodeError": DecodeError,
        "_MEMO_MAX": _VECTOR_MEMO_MAX,
        "_MEMO_BYTES_MAX": _VECTOR_MEMO_BYTES_MAX,
    }
    enc = ["def encode(out, r):"]
    dec = ["def decode(data, pos):"]
    # The skip function, while every field so far can be skipped (see _SKIPS).
    skip: list[str] | None = ["def skip(data, pos):"]
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
            if skip is not None:
                skip.append(f"    pos += {env[sname].size}")
            names.extend(n for n, _ in run)
            continue
        i += 1
        names.append(name)
        if kind == "buffer":
            enc.append(f"    v = r.{name}")
            enc.append("    if v is None:")
            enc.append('        out += b"\\xff\\xff\\xff\\xff"')
            enc.append("    else:")
            enc.append("        out += _INT.pack(len(v))")
            enc.append("        out += v")
            dec.append(
                _INLINE_READ.format(
                    f=f"f_{name}", empty="None", what="buffer", conv="_bytes", args=""
                )
            )
            skip = None
        elif kind == "ustring":
            enc.append(f'    v = r.{name}.encode("utf-8", "surrogatepass")')
            enc.append("    out += _INT.pack(len(v))")
            enc.append("    out += v")
            dec.append(
                _INLINE_READ.format(
                    f=f"f_{name}",
                    empty='""',
                    what="string",
                    conv="_str",
                    args=', "utf-8", "replace"',
                )
            )
            if skip is not None:
                skip.append("    (n,) = _INT.unpack_from(data, pos)")
                skip.append("    pos += 4 + n if n > 0 else 4")
        elif kind == "record":
            cname = f"_C{len(env)}"
            env[cname] = sub
            enc.append(f"    _CODECS[{cname}].encode(out, r.{name})")
            dname = f"_D{len(env)}"
            codec = _CODECS.get(sub)
            env[dname] = codec.decode if codec is not None else None
            dec.append(f"    f_{name}, pos = ({dname} or _CODECS[{cname}].decode)(data, pos)")
            if skip is not None and sub in _SKIPS:
                kname = f"_K{len(env)}"
                env[kname] = _SKIPS[sub]
                skip.append(f"    pos = {kname}(data, pos)")
            else:
                skip = None
        else:  # vector
            skip = None
            ekind, esub = _kind(sub)
            enc.append(f"    out += _INT.pack(len(r.{name}))")
            enc.append(f"    for e in r.{name}:")
            memo = ekind == "record" and esub in _SKIPS and esub in _CODECS
            if memo:
                # Step over the elements to find the vector's bytes; decode them only when
                # those bytes were not seen lately (decoding is a function of the bytes).
                mname = f"_M{len(env)}"
                env[mname] = {}
                kname = f"_K{len(env)}"
                env[kname] = _SKIPS[esub]
                dname = f"_D{len(env)}"
                env[dname] = _CODECS[esub].decode
                dec.append("    start = pos")
                dec.append("    n, pos = _rc(data, pos)")
                dec.append("    end = pos")
                dec.append("    for _ in range(n):")
                dec.append(f"        end = {kname}(data, end)")
                dec.append("    key = data[start:end]")
                dec.append("    if type(key) is not _bytes:")
                dec.append("        key = _bytes(key)")
                dec.append(f"    f_{name} = {mname}.get(key)")
                dec.append(f"    if f_{name} is None:")
                dec.append("        items = []")
                dec.append("        for _ in range(n):")
                dec.append(f"            e, pos = {dname}(data, pos)")
                dec.append("            items.append(e)")
                dec.append(f"        f_{name} = tuple(items)")
                dec.append("        if len(key) <= _MEMO_BYTES_MAX:")
                dec.append(f"            if len({mname}) >= _MEMO_MAX:")
                dec.append(f"                {mname}.clear()")
                dec.append(f"            {mname}[key] = f_{name}")
                dec.append("    else:")
                dec.append("        pos = end")
                # Encoding: the same tuple object (an ACL shared by many nodes and
                # requests) encodes to the same bytes; the memo holds the tuple itself, so
                # its id cannot be reused while the entry lives.
                ename = f"_E{len(env)}"
                env[ename] = {}
                cname = f"_C{len(env)}"
                env[cname] = esub
                enc.pop()
                enc.pop()
                enc.append(f"    v = r.{name}")
                enc.append(f"    hit = {ename}.get(id(v))")
                enc.append("    if hit is not None and hit[0] is v:")
                enc.append("        out += hit[1]")
                enc.append("    else:")
                enc.append("        start = len(out)")
                enc.append("        out += _INT.pack(len(v))")
                enc.append("        for e in v:")
                enc.append(f"            _CODECS[{cname}].encode(out, e)")
                enc.append("        if type(v) is _tuple and len(out) - start <= _MEMO_BYTES_MAX:")
                enc.append(f"            if len({ename}) >= _MEMO_MAX:")
                enc.append(f"                {ename}.clear()")
                enc.append(f"            {ename}[id(v)] = (v, _bytes(out[start:]))")
                continue
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
    src = "\n".join(enc) + "\n\n" + "\n".join(dec)
    if skip is not None:
        skip.append("    return pos")
        src += "\n\n" + "\n".join(skip)
    exec(src, env)
    if skip is not None:
        _SKIPS[cls] = env["skip"]
    return _Codec(env["encode"], env["decode"])


# Frozen dataclasses with fewer fields gain too little from fast_frozen_init to bother.
_FAST_INIT_FIELDS_MIN = 3


def fast_frozen_init(cls: type[T]) -> type[T]:
    """Give a frozen, slotted dataclass a faster `__init__` with the same signature.

    The generated frozen `__init__` sets each field with `object.__setattr__`, a call per
    field, which made constructing Stat, TxnHeader and the like a tenth of the write path's
    own time. Instead the new instance briefly takes a plain slotted class with the same
    slots (so fields are set by ordinary attribute stores), then gets its class back. The
    instance is frozen as before once `__init__` returns; subclasses keep the original
    `__init__`. Classes this does not fit (defaults from factories, too few fields, an
    `__post_init__`) are returned unchanged.
    """
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in cls.__dict__:
        return cls
    if hasattr(cls, "__post_init__"):
        return cls
    all_fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    fields = [f for f in all_fields if f.init]
    if len(fields) < _FAST_INIT_FIELDS_MIN or len(fields) != len(all_fields):
        return cls
    slots = cls.__dict__["__slots__"]
    if tuple(slots) != tuple(f.name for f in fields):
        return cls
    mutable = type(f"_{cls.__name__}Builder", (), {"__slots__": tuple(slots)})
    env: dict[str, Any] = {
        "_cls": cls,
        "_mutable": mutable,
        "_frozen_init": cls.__init__,
        "_osa": object.__setattr__,
    }
    params_src = []
    for f in fields:
        if f.default_factory is not dataclasses.MISSING:
            return cls
        if f.default is dataclasses.MISSING:
            params_src.append(f.name)
        else:
            env[f"_d_{f.name}"] = f.default
            params_src.append(f"{f.name}=_d_{f.name}")
    names = ", ".join(f.name for f in fields)
    body = [
        f"def __init__(self, {', '.join(params_src)}):",
        "    if type(self) is not _cls:",
        f"        _frozen_init(self, {names})",
        "        return",
        "    _osa(self, '__class__', _mutable)",
        *(f"    self.{f.name} = {f.name}" for f in fields),
        "    self.__class__ = _cls",
    ]
    exec("\n".join(body), env)
    init = env["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = cls.__init__.__doc__
    original = cls.__init__
    cls.__init__ = init  # type: ignore[method-assign]
    try:
        # CPython refuses the class swap when the layouts differ: keep the original then.
        probe = cls(*(f"probe{i}" for i in range(len(fields))))
        ok = type(probe) is cls and all(
            getattr(probe, f.name) == f"probe{i}" for i, f in enumerate(fields)
        )
    except TypeError:
        ok = False
    if not ok:
        cls.__init__ = original  # type: ignore[method-assign]
    return cls


def record(cls: type[T]) -> type[T]:
    """Class decorator: compile the jute codec for a record dataclass (and a fast init)."""
    _CODECS[cls] = _compile(cls)
    return fast_frozen_init(cls)


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
    except DECODER_ERRORS as exc:
        raise DecodeError(f"truncated or malformed {cls.__name__}: {exc}") from None
    return typing.cast(T, rec), end


def raw_decoder(cls: type[T]) -> Callable[[bytes, int], tuple[T, int]]:
    """The compiled decoder of `cls`, for loops that decode many records: `(data, pos) ->
    (record, end)`. Unlike `decode` it lets struct.error, ValueError, IndexError, TypeError
    and OverflowError escape on bad input; the caller must turn them into DecodeError."""
    return _CODECS[cls].decode


# What a compiled decoder raises on bad input besides DecodeError (see `decode`).
DECODER_ERRORS = (struct.error, ValueError, IndexError, TypeError, OverflowError)


def decode_exact(cls: type[T], data: bytes) -> T:
    """Decode a record that must fill `data` exactly (used for stored formats)."""
    rec, end = decode(cls, data)
    if end != len(data):
        raise DecodeError(f"{len(data) - end} trailing bytes after {cls.__name__}")
    return rec
