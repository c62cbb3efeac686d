"""Parse a JAAS login configuration, as ZooKeeper's SASL DIGEST-MD5 setup reads it.

ZooKeeper points the JVM at a file with ``-Djava.security.auth.login.config=...`` and
takes the users of its DIGEST-MD5 server from the section named by
``zookeeper.sasl.serverconfig`` (default ``Server``)::

    Server {
        org.apache.zookeeper.server.auth.DigestLoginModule required
        user_super="adminsecret"
        user_bob="bobsecret";
    };

Every option whose key starts with ``user_`` in any login module of that section is a
user (the rest of the key) with its password (the value); later ones win.

The grammar follows the JDK's ConfigFile: ``Name { Module Flag key=value ... ; ... };``
with ``//`` and ``/* */`` comments (``#`` line comments are also accepted), values quoted
with ``"`` or ``'`` or bare words, and ``${name}`` expanded from a property mapping when
one is given. Pure: the caller reads the file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "DEFAULT_SECTION",
    "DIGEST_USER_PREFIX",
    "JaasError",
    "LoginModuleEntry",
    "parse_jaas",
    "server_credentials",
]

DEFAULT_SECTION = "Server"
DIGEST_USER_PREFIX = "user_"
_FLAGS = frozenset({"required", "requisite", "sufficient", "optional"})
_WORD = re.compile(r"[A-Za-z0-9_$\-*.]+")
_PROPERTY = re.compile(r"\$\{([^}]*)\}")


class JaasError(ValueError):
    """The configuration text is malformed; the message gives the line."""


@dataclass(frozen=True, slots=True)
class LoginModuleEntry:
    """One ``Module Flag options;`` line of a section."""

    module: str
    flag: str
    # Values may be passwords: keep them out of reprs.
    options: Mapping[str, str] = field(repr=False)


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "word", "string" or the punctuation character itself
    text: str
    line: int


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    pos, line, end = 0, 1, len(text)
    while pos < end:
        ch = text[pos]
        if ch == "\n":
            line += 1
            pos += 1
        elif ch.isspace():
            pos += 1
        elif text.startswith("//", pos) or ch == "#":
            nl = text.find("\n", pos)
            pos = end if nl < 0 else nl
        elif text.startswith("/*", pos):
            close = text.find("*/", pos + 2)
            if close < 0:
                raise JaasError(f"line {line}: unterminated comment")
            line += text.count("\n", pos, close)
            pos = close + 2
        elif ch in "\"'":
            buf: list[str] = []
            start_line = line
            pos += 1
            while True:
                if pos >= end:
                    raise JaasError(f"line {start_line}: unterminated string")
                c = text[pos]
                if c == ch:
                    pos += 1
                    break
                if c == "\\" and pos + 1 < end:
                    pos += 1
                    c = text[pos]
                if c == "\n":
                    line += 1
                buf.append(c)
                pos += 1
            out.append(_Token("string", "".join(buf), start_line))
        elif ch in "{};=":
            out.append(_Token(ch, ch, line))
            pos += 1
        else:
            m = _WORD.match(text, pos)
            if m is None:
                raise JaasError(f"line {line}: unexpected character {ch!r}")
            out.append(_Token("word", m.group(), line))
            pos = m.end()
    return out


class _Parser:
    def __init__(self, tokens: list[_Token], properties: Mapping[str, str] | None) -> None:
        self._toks = tokens
        self._i = 0
        self._props = properties

    def _peek(self) -> _Token | None:
        return self._toks[self._i] if self._i < len(self._toks) else None

    def _take(self, what: str, *kinds: str) -> _Token:
        tok = self._peek()
        if tok is None:
            raise JaasError(f"expected {what}, found end of file")
        if tok.kind not in kinds:
            raise JaasError(f"line {tok.line}: expected {what}, found {tok.text!r}")
        self._i += 1
        return tok

    def _expand(self, tok: _Token) -> str:
        if self._props is None:
            return tok.text
        props = self._props

        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in props:
                raise JaasError(f"line {tok.line}: unable to expand ${{{name}}}")
            return props[name]

        return _PROPERTY.sub(sub, tok.text)

    def parse(self) -> dict[str, tuple[LoginModuleEntry, ...]]:
        sections: dict[str, tuple[LoginModuleEntry, ...]] = {}
        while self._peek() is not None:
            name_tok = self._take("section name", "word", "string")
            if name_tok.text in sections:
                raise JaasError(
                    f"line {name_tok.line}: can not specify multiple entries for {name_tok.text}"
                )
            self._take("'{'", "{")
            entries: list[LoginModuleEntry] = []
            while (tok := self._peek()) is not None and tok.kind != "}":
                entries.append(self._entry())
            self._take("'}'", "}")
            self._take("';'", ";")
            sections[name_tok.text] = tuple(entries)
        return sections

    def _entry(self) -> LoginModuleEntry:
        module = self._take("login module class", "word").text
        flag_tok = self._take("control flag", "word")
        flag = flag_tok.text.lower()
        if flag not in _FLAGS:
            raise JaasError(f"line {flag_tok.line}: invalid control flag {flag_tok.text!r}")
        options: dict[str, str] = {}
        while (tok := self._peek()) is not None and tok.kind != ";":
            key = self._take("option key", "word").text
            self._take("'='", "=")
            options[key] = self._expand(self._take("option value", "word", "string"))
        self._take("';'", ";")
        return LoginModuleEntry(module, flag, options)


def parse_jaas(
    text: str, properties: Mapping[str, str] | None = None
) -> dict[str, tuple[LoginModuleEntry, ...]]:
    """Parse a whole JAAS file into section name -> login module entries.

    ``properties`` (e.g. the Java system properties given to Corral) enables ``${name}``
    expansion in option values; without it values are taken literally.
    """
    return _Parser(_tokens(text), properties).parse()


def server_credentials(
    text: str,
    section: str = DEFAULT_SECTION,
    properties: Mapping[str, str] | None = None,
) -> dict[str, str] | None:
    """DIGEST-MD5 users of ``section``: user -> password, as ZooKeeper collects them; None
    when the file has no such section. Raises :class:`JaasError` when the text is malformed.

    That is how ZooKeeper's server takes it: a well-formed JAAS file without the server
    section (one with only QuorumServer/QuorumLearner sections for quorum SASL, say) leaves
    client SASL off; only a malformed file stops the server.
    """
    sections = parse_jaas(text, properties)
    entries = sections.get(section)
    if entries is None:
        return None
    users: dict[str, str] = {}
    for entry in entries:
        for key, value in entry.options.items():
            if key.startswith(DIGEST_USER_PREFIX):
                users[key[len(DIGEST_USER_PREFIX) :]] = value
    return users
