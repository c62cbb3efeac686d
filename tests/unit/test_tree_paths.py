"""corral.tree.paths against ZooKeeper's PathUtils.validatePath rules."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.tree.paths import InvalidPath, basename, join, parent_of, validate_path

VALID = [
    "/",
    "/a",
    "/a/b",
    "/zookeeper",
    "/a.b",
    "/...",
    "/a/...",
    "/.a",
    "/a./b",
    "/..a",
    "/a/b..",
    "/ ",
    "/a b",
    "/\u00a0",
    "/\u00e9t\u00e9",
    "/\u4e2d\u6587",
    "/\uf900",
    "/\uffef",
    "/a-b_c:d@e",
]

INVALID = [
    "",
    "a",
    "a/b",
    "/a/",
    "//",
    "//a",
    "/a//b",
    "/.",
    "/..",
    "/a/.",
    "/a/..",
    "/./a",
    "/../a",
    "/a/./b",
    "/a/../b",
    "/a\x00b",
    "/\x01",
    "/\x1f",
    "/\x7f",
    "/\x9f",
    "/\ud800",
    "/\ue000",
    "/\uf8ff",
    "/\ufff0",
    "/\ufffd",
    "/\uffff",
    "/\U0001f600",  # a surrogate pair in Java
]


@pytest.mark.parametrize("path", VALID)
def test_valid_paths(path: str) -> None:
    validate_path(path)


@pytest.mark.parametrize("path", INVALID)
def test_invalid_paths(path: str) -> None:
    with pytest.raises(InvalidPath):
        validate_path(path)


def test_sequential_paths_are_checked_with_a_digit_appended() -> None:
    # The parent's own path plus "/" is a valid sequential prefix.
    validate_path("/a/", sequential=True)
    validate_path("/", sequential=True)
    validate_path("/a/.", sequential=True)  # becomes "/a/.1"
    with pytest.raises(InvalidPath):
        validate_path("", sequential=True)  # "1" is not absolute
    with pytest.raises(InvalidPath):
        validate_path("/a//", sequential=True)
    with pytest.raises(InvalidPath):
        validate_path("/./x", sequential=True)


def _java_validate(path: str) -> bool:
    """A literal transcription of PathUtils.validatePath over UTF-16 code units."""
    units = path.encode("utf-16-be", "surrogatepass")
    chars = [int.from_bytes(units[i : i + 2], "big") for i in range(0, len(units), 2)]
    if not chars or chars[0] != ord("/"):
        return False
    if len(chars) == 1:
        return True
    if chars[-1] == ord("/"):
        return False
    lastc = ord("/")
    dot, slash = ord("."), ord("/")
    for i in range(1, len(chars)):
        c = chars[i]
        end_or_slash = i + 1 == len(chars) or chars[i + 1] == slash
        if c == 0:
            return False
        if c == slash and lastc == slash:
            return False
        if c == dot and lastc == dot:
            if chars[i - 2] == slash and end_or_slash:
                return False
        elif c == dot:
            if chars[i - 1] == slash and end_or_slash:
                return False
        elif 0 < c <= 0x1F or 0x7F <= c <= 0x9F or 0xD800 <= c <= 0xF8FF or c >= 0xFFF0:
            return False
        lastc = c
    return True


@given(
    st.lists(
        st.sampled_from(["/", ".", "a", "\x00", "\x1f", " ", "\x7f", "\ue000", "\U0001f600", "é"]),
        max_size=8,
    )
)
def test_matches_a_transcription_of_pathutils(parts: list[str]) -> None:
    path = "".join(parts)
    try:
        validate_path(path)
        ok = True
    except InvalidPath:
        ok = False
    assert ok == _java_validate(path), path


def test_parent_and_basename() -> None:
    assert parent_of("/a") == "/"
    assert parent_of("/a/b") == "/a"
    assert parent_of("/a/b/c") == "/a/b"
    assert basename("/a/b") == "b"
    assert basename("/a") == "a"
    assert basename("/") == ""
    assert join("/", "a") == "/a"
    assert join("/a", "b") == "/a/b"
    with pytest.raises(ValueError):
        parent_of("/")
