"""Java's `.properties` syntax and `-Dkey=value` JVM flags, as ZooKeeper's users write them.

zoo.cfg is read by `java.util.Properties.load`, so a config that works with ZooKeeper must mean
the same here: `key=value`, `key:value` and `key value` separators, `#` and `!` comment lines,
a trailing odd run of backslashes continuing the line (leading blanks of the continuation are
dropped), escapes (`\\t`, `\\n`, `\\r`, `\\f`, `\\uXXXX`, `\\x` for any other x), and the last
duplicate winning. Pure: text in, dicts out.
"""

from __future__ import annotations

import re

__all__ = ["PropertiesSyntaxError", "jvm_flag_properties", "parse_properties"]

# Java's line terminators; str.splitlines would also split on \v, \x1c, \u2028 and friends.
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# Java's Properties whitespace: space, tab and form feed (not \v, not non-ASCII spaces).
_BLANKS = " \t\f"
_SIMPLE_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


class PropertiesSyntaxError(ValueError):
    """A malformed `\\uXXXX` escape: the one syntax error Java's loader reports."""


def parse_properties(text: str) -> dict[str, str]:
    """Parse `.properties` text into an ordered dict (later duplicates replace earlier ones)."""
    result: dict[str, str] = {}
    for number, line in _logical_lines(text):
        raw_key, raw_value = _split_key_value(line)
        try:
            key = _unescape(raw_key)
            value = _unescape(raw_value)
        except PropertiesSyntaxError as exc:
            raise PropertiesSyntaxError(f"line {number}: {exc}") from None
        result[key] = value
    return result


def jvm_flag_properties(flags: str) -> dict[str, str]:
    """The `-Dkey=value` system properties in a JVMFLAGS-style string.

    Split on whitespace only, as zkServer.sh expands `$JVMFLAGS` unquoted (quotes inside the
    variable are literal characters there, so they are here too). `-Dkey` alone sets "" as Java
    does; other flags (-Xmx, -XX:...) are not properties and are ignored.
    """
    props: dict[str, str] = {}
    for token in flags.split():
        if token.startswith("-D") and len(token) > 2:
            key, _, value = token[2:].partition("=")
            if key:
                props[key] = value
    return props


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Join continued natural lines; drop blank and comment lines. Yields (line number, text)."""
    out: list[tuple[int, str]] = []
    current: str | None = None
    start = 0
    for number, natural in enumerate(_LINE_BREAK.split(text), start=1):
        stripped = natural.lstrip(_BLANKS)
        if current is None:
            # Comment markers only count at the start of a logical line, never on a continuation.
            if not stripped or stripped[0] in "#!":
                continue
            current, start = "", number
        trailing = len(stripped) - len(stripped.rstrip("\\"))
        if trailing % 2 == 1:
            current += stripped[:-1]
            continue
        out.append((start, current + stripped))
        current = None
    if current is not None:
        # A continuation at end of input: Java drops the dangling backslash and keeps the line.
        out.append((start, current))
    return out


def _split_key_value(line: str) -> tuple[str, str]:
    """Split at the first unescaped `=`, `:` or blank, then skip blanks and one separator."""
    limit = len(line)
    key_end = 0
    value_start = limit
    has_separator = False
    escaped = False
    while key_end < limit:
        char = line[key_end]
        if not escaped and char in "=:":
            value_start, has_separator = key_end + 1, True
            break
        if not escaped and char in _BLANKS:
            value_start = key_end + 1
            break
        escaped = (not escaped) if char == "\\" else False
        key_end += 1
    while value_start < limit:
        char = line[value_start]
        if char not in _BLANKS:
            if has_separator or char not in "=:":
                break
            has_separator = True
        value_start += 1
    return line[:key_end], line[value_start:]


def _unescape(text: str) -> str:
    """Java's loadConvert: backslash escapes, including exactly-four-hex-digit `\\u`."""
    if "\\" not in text:
        return text
    parts: list[str] = []
    i, end = 0, len(text)
    while i < end:
        char = text[i]
        i += 1
        if char != "\\":
            parts.append(char)
            continue
        if i >= end:
            break  # a dangling backslash means nothing
        char = text[i]
        i += 1
        if char == "u":
            digits = text[i : i + 4]
            if len(digits) != 4 or any(d not in "0123456789abcdefABCDEF" for d in digits):
                raise PropertiesSyntaxError("malformed \\uxxxx encoding")
            parts.append(chr(int(digits, 16)))
            i += 4
        else:
            parts.append(_SIMPLE_ESCAPES.get(char, char))
    return "".join(parts)
