"""The jute codec: every record round-trips, golden bytes match ZooKeeper's, decoding is total."""

import contextlib
import dataclasses
import typing

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.proto import jute, records
from corral.proto.jute import DecodeError, ProtocolError

ALL_RECORDS = [
    obj
    for obj in vars(records).values()
    if isinstance(obj, type)
    and dataclasses.is_dataclass(obj)
    and obj.__module__ == records.__name__
]

_INT = st.integers(-(2**31), 2**31 - 1)
_LONG = st.integers(-(2**63), 2**63 - 1)


def _strategy(hint: typing.Any) -> st.SearchStrategy[typing.Any]:
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        _base, *marks = typing.get_args(hint)
        if jute._Int in marks:
            return _INT
        if jute._Long in marks:
            return _LONG
        return st.none() | st.binary(max_size=64)
    if hint is bool:
        return st.booleans()
    if hint is str:
        return st.text(max_size=20)
    if origin is tuple:
        return st.lists(_strategy(typing.get_args(hint)[0]), max_size=4).map(tuple)
    return _record_strategy(hint)


def _record_strategy(cls: type) -> st.SearchStrategy[typing.Any]:
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name: _strategy(hints[f.name]) for f in dataclasses.fields(cls)}
    return st.builds(cls, **fields)


def test_every_record_of_zookeeper_jute_is_declared() -> None:
    assert len(ALL_RECORDS) == 72


@pytest.mark.parametrize("cls", ALL_RECORDS, ids=lambda c: c.__name__)
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_record_round_trips(cls: type, data: st.DataObject) -> None:
    rec = data.draw(_record_strategy(cls))
    raw = jute.encode(rec)
    assert jute.decode_exact(cls, raw) == rec


@pytest.mark.parametrize("cls", ALL_RECORDS, ids=lambda c: c.__name__)
@settings(max_examples=30, deadline=None)
@given(raw=st.binary(max_size=80))
def test_decoding_arbitrary_bytes_raises_only_protocol_errors(cls: type, raw: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        jute.decode(cls, raw)


@pytest.mark.parametrize("cls", ALL_RECORDS, ids=lambda c: c.__name__)
def test_every_truncation_is_a_decode_error(cls: type) -> None:
    hints = typing.get_type_hints(cls, include_extras=True)
    values = {f.name: _sample(hints[f.name]) for f in dataclasses.fields(cls)}
    rec = cls(**values)
    raw = jute.encode(rec)
    for cut in range(len(raw)):
        with pytest.raises(DecodeError):
            jute.decode_exact(cls, raw[:cut])


def _sample(hint: typing.Any) -> typing.Any:
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        _base, *marks = typing.get_args(hint)
        return 7 if (jute._Int in marks or jute._Long in marks) else b"xy"
    if hint is bool:
        return True
    if hint is str:
        return "/a"
    if origin is tuple:
        return (_sample(typing.get_args(hint)[0]),)
    sub_hints = typing.get_type_hints(hint, include_extras=True)
    return hint(**{f.name: _sample(sub_hints[f.name]) for f in dataclasses.fields(hint)})


def test_golden_connect_request_bytes() -> None:
    # A 45-byte ConnectRequest as ZooKeeper's Java client sends it for a new session.
    req = records.ConnectRequest(0, 0, 30000, 0, b"\x00" * 16, False)
    assert jute.encode(req).hex() == (
        "00000000" "0000000000000000" "00007530" "0000000000000000" "00000010" + "00" * 16 + "00"
    )
    assert len(jute.encode(req)) == 45


def test_golden_reply_header_and_stat() -> None:
    assert (
        jute.encode(records.ReplyHeader(-1, -1, 0)).hex() == "ffffffff"
        "ffffffffffffffff"
        "00000000"
    )
    stat = records.Stat(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)
    assert len(jute.encode(stat)) == 68


def test_null_buffer_and_vector_encodings() -> None:
    assert jute.encode(records.GetSASLRequest(None)) == b"\xff\xff\xff\xff"
    assert jute.decode_exact(records.GetChildrenResponse, b"\xff\xff\xff\xff").children == ()
    assert jute.decode_exact(records.CreateResponse, b"\xff\xff\xff\xff").path == ""


def test_unreasonable_lengths_are_refused_before_allocating() -> None:
    with pytest.raises(DecodeError):
        jute.decode(records.GetSASLRequest, b"\x7f\xff\xff\xff")
    with pytest.raises(DecodeError):
        jute.decode(records.GetChildrenResponse, b"\x10\x00\x00\x00")
    with pytest.raises(DecodeError):
        jute.decode(records.GetSASLRequest, b"\xff\xff\xff\xfe")
