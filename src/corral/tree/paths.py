"""Znode path rules, exactly as ZooKeeper's PathUtils enforces them.

A valid path is absolute, `/`-separated, has no trailing `/` (except the root itself), no
empty, `.` or `..` component, and none of the characters PathUtils forbids. Java checks
UTF-16 code units, so every character outside the Basic Multilingual Plane (a surrogate
pair in Java) is invalid too; the regex below covers that by extending the last forbidden
range to the top of Unicode.
"""

import re

# U+0000, U+0001-U+001F, U+007F-U+009F, U+D800-U+F8FF, U+FFF0-U+FFFF, and (as surrogate
# pairs in Java) everything above U+FFFF.
_BAD_CHAR = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\uf8ff\ufff0-\U0010ffff]")


class InvalidPath(Exception):
    """A path PathUtils.validatePath rejects; the server answers BADARGUMENTS."""


def validate_path(path: str, sequential: bool = False) -> None:
    """Raise InvalidPath where ZooKeeper's PathUtils.validatePath would throw.

    With `sequential`, the path is checked as ZooKeeper does for sequential creates: with a
    digit appended, so a trailing `/` (the parent's own path) is allowed.
    """
    if sequential:
        path += "1"
    if not path:
        raise InvalidPath("Path length must be > 0")
    if path[0] != "/":
        raise InvalidPath("Path must start with / character")
    if len(path) == 1:
        return
    if path[-1] == "/":
        raise InvalidPath("Path must not end with / character")
    bad = _BAD_CHAR.search(path)
    if bad is not None:
        what = "null character" if bad.group() == "\x00" else "invalid character"
        raise InvalidPath(f"Invalid path string {path!r} caused by {what} @{bad.start()}")
    if "//" in path:
        raise InvalidPath(f"Invalid path string {path!r} caused by empty node name specified")
    if "/." in path:
        # Only the slow path pays for splitting; "/." is rare in real paths.
        for name in path.split("/"):
            if name in (".", ".."):
                raise InvalidPath(
                    f"Invalid path string {path!r} caused by relative paths not allowed"
                )


def parent_of(path: str) -> str:
    """The parent's path of a valid non-root path ("/a" -> "/", "/a/b" -> "/a")."""
    if path == "/":
        raise ValueError("the root has no parent")
    cut = path.rfind("/")
    return path[:cut] if cut > 0 else "/"


def basename(path: str) -> str:
    """The last component of a valid path ("" for the root)."""
    return path[path.rfind("/") + 1 :]


def join(parent: str, name: str) -> str:
    """The path of child `name` of `parent`."""
    return "/" + name if parent == "/" else parent + "/" + name
