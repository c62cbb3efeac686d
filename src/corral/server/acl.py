"""ACL checks and ACL fix-up, as ZooKeeper's checkACL, fixupACL and auth providers do them.

ZooKeeper decides permissions per scheme through its ProviderRegistry: by default only the
`ip` and `digest` providers exist; `sasl`, `x509` (and `ensemble`) exist only when configured.
`world:anyone` and the `super` id are handled before any provider is asked, and the `auth`
scheme is a placeholder that fixupACL expands into the caller's authenticated ids. An ACL
entry whose scheme has no provider never matches and is rejected by fixupACL (INVALIDACL).
`AuthProviders` says which providers this server has; the defaults are ZooKeeper's.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache

from corral.proto.codes import Perm
from corral.proto.records import ACL, Id
from corral.server import auth_order

__all__ = [
    "CREATOR_ALL_ACL",
    "DEFAULT_PROVIDERS",
    "OPEN_ACL_UNSAFE",
    "READ_ACL_UNSAFE",
    "SUPER_ID",
    "WORLD_ANYONE",
    "AuthIds",
    "AuthProviders",
    "InvalidACL",
    "check",
    "digest_authenticate",
    "digest_id",
    "fix_acl",
    "ip_auth_id",
    "ip_matches",
    "is_valid_id",
    "mask_digests",
]

WORLD_ANYONE = Id("world", "anyone")
# The id ZooKeeper adds for a super user (superDigest, x509 superUser); it bypasses every ACL.
SUPER_ID = Id("super", "")
OPEN_ACL_UNSAFE: tuple[ACL, ...] = (ACL(int(Perm.ALL), WORLD_ANYONE),)
READ_ACL_UNSAFE: tuple[ACL, ...] = (ACL(int(Perm.READ), WORLD_ANYONE),)
CREATOR_ALL_ACL: tuple[ACL, ...] = (ACL(int(Perm.ALL), Id("auth", "")),)


class InvalidACL(Exception):
    """An ACL list that fixupACL rejects: the request fails with INVALIDACL."""


@dataclass(frozen=True, slots=True)
class AuthIds:
    """The ids a connection has authenticated as (ZooKeeper's `authInfo`), in the order
    ZooKeeper lists them (its hash set's order, see auth_order): whoAmI shows it, and so does
    the ACL an `auth` entry expands into.

    `is_super` is true when any id has the `super` scheme; build with `AuthIds.of` or
    `AuthIds.added` so the two agree. Every connection carries at least its `ip` id.
    """

    ids: tuple[Id, ...] = ()
    is_super: bool = False

    @classmethod
    def of(cls, ids: tuple[Id, ...] | list[Id]) -> AuthIds:
        """Ids already in ZooKeeper's order (e.g. as a follower forwards them), kept so."""
        ids = tuple(ids)
        return cls(ids, any(i.scheme == "super" for i in ids))

    @classmethod
    def added(cls, ids: tuple[Id, ...] | list[Id]) -> AuthIds:
        """The ids a connection gets by adding these, one after the other."""
        out = cls()
        for ident in ids:
            out = out.with_id(ident)
        return out

    def with_id(self, new: Id) -> AuthIds:
        """These ids plus `new` (ZooKeeper's addAuthInfo: no duplicates)."""
        if new in self.ids:
            return self
        return AuthIds(auth_order.insert(self.ids, new), self.is_super or new.scheme == "super")


@dataclass(frozen=True, slots=True)
class AuthProviders:
    """The server's auth providers (ZooKeeper's ProviderRegistry) and their settings.

    `schemes`: schemes with a provider; ZooKeeper always has `ip`, and `digest` unless
    zookeeper.DigestAuthenticationProvider.enabled=false. Add `sasl` / `x509` when configured.
    `x509_super_user`: zookeeper.X509AuthenticationProvider.superUser.
    `sasl_any_user`: zookeeper.letAnySaslUserDoX (an ACL id every SASL user matches).
    """

    schemes: frozenset[str] = frozenset({"ip", "digest"})
    x509_super_user: str | None = None
    sasl_any_user: str | None = None


DEFAULT_PROVIDERS = AuthProviders()

# Providers whose ids count as "authenticated" for the `auth` scheme expansion (ip does not).
_AUTHENTICATED_SCHEMES = frozenset({"digest", "sasl", "x509"})


def check(
    acl: tuple[ACL, ...] | list[ACL],
    perm: Perm | int,
    auth: AuthIds,
    skip_acl: bool = False,
    providers: AuthProviders = DEFAULT_PROVIDERS,
) -> bool:
    """ZooKeeper's checkACL: may a caller with `auth` do `perm` on a node with `acl`?

    An empty ACL is open; the super id passes everything; otherwise some entry granting one of
    the requested bits must be world:anyone or match one of the caller's ids of its scheme.
    """
    if skip_acl or not acl or auth.is_super:
        return True
    perm = int(perm)
    for entry in acl:
        if not entry.perms & perm:
            continue
        eid = entry.id
        scheme = eid.scheme
        if scheme == "world" and eid.id == "anyone":
            return True
        if scheme not in providers.schemes:
            continue
        for caller in auth.ids:
            if caller.scheme == scheme and _matches(scheme, caller.id, eid.id, providers):
                return True
    return False


def _matches(scheme: str, caller_id: str, acl_id: str, providers: AuthProviders) -> bool:
    if scheme == "digest":
        return caller_id == acl_id
    if scheme == "ip":
        return ip_matches(caller_id, acl_id)
    if scheme == "sasl":
        if caller_id in ("super", acl_id):
            return True
        return providers.sasl_any_user is not None and acl_id == providers.sasl_any_user
    if scheme == "x509":
        if providers.x509_super_user is not None and caller_id == providers.x509_super_user:
            return True
        return caller_id == acl_id
    # ensemble (and anything else): never matches.
    return False


def fix_acl(
    acl: tuple[ACL, ...] | list[ACL],
    auth: AuthIds,
    providers: AuthProviders = DEFAULT_PROVIDERS,
) -> tuple[ACL, ...]:
    """ZooKeeper's fixupACL for create and setACL; raises InvalidACL.

    Duplicates are dropped (first kept); an empty list is invalid; `auth` entries become one
    entry per authenticated caller id (ip ids do not count; none at all is invalid); any other
    entry must be world:anyone or valid for its scheme's provider.
    """
    # The common case, an open ACL, needs no work.
    if len(acl) == 1 and acl[0].id == WORLD_ANYONE:
        return tuple(acl)
    uniq: list[ACL] = []
    for entry in acl:
        if entry not in uniq:
            uniq.append(entry)
    if not uniq:
        raise InvalidACL("empty ACL")
    out: list[ACL] = []
    for entry in uniq:
        eid = entry.id
        if eid.scheme == "world" and eid.id == "anyone":
            out.append(entry)
        elif eid.scheme == "auth":
            expanded = False
            for caller in auth.ids:
                if caller.scheme in _AUTHENTICATED_SCHEMES and caller.scheme in providers.schemes:
                    expanded = True
                    out.append(ACL(entry.perms, caller))
            if not expanded:
                raise InvalidACL("auth scheme without an authenticated id")
        elif not is_valid_id(eid.scheme, eid.id, providers):
            raise InvalidACL(f"invalid ACL id {eid.scheme}:{eid.id}")
        else:
            out.append(entry)
    return tuple(out)


def is_valid_id(scheme: str, id_: str, providers: AuthProviders = DEFAULT_PROVIDERS) -> bool:
    """The provider's isValid for an ACL id; False when the scheme has no provider."""
    if scheme not in providers.schemes:
        return False
    if scheme == "digest":
        return len(_java_split(id_, ":")) == 2
    if scheme == "ip":
        return _ip_valid(id_)
    if scheme == "sasl":
        return _kerberos_name_valid(id_)
    if scheme == "x509":
        return _x500_name_valid(id_)
    return False


# --- digest ---


def digest_id(user_password: str) -> str:
    """The digest ACL id for "user:password": "user:" + base64(sha1("user:password"))."""
    user = user_password.split(":", 1)[0]
    sha = hashlib.sha1(user_password.encode("utf-8")).digest()
    return user + ":" + base64.b64encode(sha).decode("ascii")


def digest_authenticate(auth_data: bytes, super_digest: str | None = None) -> tuple[Id, ...]:
    """The ids a digest AuthPacket grants: the digest id, preceded by the super id when the
    digest equals zookeeper.DigestAuthenticationProvider.superDigest. Never fails."""
    did = digest_id(auth_data.decode("utf-8", errors="replace"))
    if super_digest is not None and did == super_digest:
        return (SUPER_ID, Id("digest", did))
    return (Id("digest", did),)


# Java's `.` does not match these line terminators; getACL masking uses ":.*".
_DIGEST_SECRET = re.compile(":[^\n\r\u0085\u2028\u2029]*")


def mask_digests(acl: tuple[ACL, ...]) -> tuple[ACL, ...]:
    """getACL's answer for a caller without ADMIN: digest ids lose their hash ("user:x")."""
    if not any(a.id.scheme == "digest" for a in acl):
        return acl
    return tuple(
        ACL(a.perms, Id("digest", _DIGEST_SECRET.sub(":x", a.id.id)))
        if a.id.scheme == "digest"
        else a
        for a in acl
    )


# --- ip ---


def ip_auth_id(host: str) -> Id:
    """The implicit `ip` id of a connection from `host`, spelled as Java's getHostAddress does
    (IPv6 as eight uncompressed hex groups, IPv4-mapped IPv6 as IPv4, scope id kept)."""
    addr, sep, scope = host.partition("%")
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return Id("ip", host)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return Id("ip", str(ip.ipv4_mapped))
        groups = ":".join(f"{int(g, 16):x}" for g in ip.exploded.split(":"))
        return Id("ip", groups + sep + scope)
    return Id("ip", str(ip))


_DEC = re.compile(r"[+-]?[0-9]+")
_HEX = re.compile(r"[+-]?[0-9a-fA-F]+")


def _java_int(text: str, hex_: bool = False) -> int | None:
    """Integer.parseInt's accepted syntax (ASCII digits); None where Java would throw."""
    if not (_HEX if hex_ else _DEC).fullmatch(text):
        return None
    value = int(text, 16 if hex_ else 10)
    if not -(2**31) <= value < 2**31:
        return None
    return value


def _v4_bytes(addr: str) -> bytes | None:
    parts = addr.split(".")
    if len(parts) != 4:
        return None
    out = bytearray()
    for part in parts:
        v = _java_int(part)
        if v is None or not 0 <= v <= 255:
            return None
        out.append(v)
    return bytes(out)


def _v6_segments(out: bytearray, segments: list[str]) -> bool:
    for seg in segments:
        if not seg or len(seg) > 4:
            return False
        v = _java_int(seg, hex_=True)
        if v is None:
            return False
        out.append((v >> 8) & 0xFF)
        out.append(v & 0xFF)
    return True


def _v6_bytes(addr: str) -> bytes | None:
    halves = addr.split("::")
    if len(halves) == 1:
        head = halves[0].split(":")
        if len(head) != 8:
            return None
        tail: list[str] = []
    elif len(halves) == 2:
        head = halves[0].split(":") if halves[0] else []
        tail = halves[1].split(":") if halves[1] else []
        if len(head) + len(tail) >= 8:
            return None
    else:
        return None
    first = bytearray()
    last = bytearray()
    if not (_v6_segments(first, head) and _v6_segments(last, tail)):
        return None
    return bytes(first) + bytes(16 - len(first) - len(last)) + bytes(last)


@lru_cache(maxsize=1024)
def _addr_bytes(addr: str) -> bytes | None:
    if ":" in addr:
        return _v6_bytes(addr)
    if "." in addr:
        return _v4_bytes(addr)
    return None


def _masked(raw: bytes, bits: int) -> bytes:
    whole, rest = divmod(bits, 8)
    out = bytearray(raw[:whole])
    if whole < len(raw):
        out.append(raw[whole] & (0xFF << (8 - rest)) & 0xFF)
        out.extend(bytes(len(raw) - whole - 1))
    return bytes(out)


def _ip_pattern(expr: str) -> tuple[bytes, int] | None:
    addr, slash, bits_text = expr.partition("/")
    raw = _addr_bytes(addr)
    if raw is None:
        return None
    bits = len(raw) * 8
    if slash:
        b = _java_int(bits_text)
        if b is None or not 0 <= b <= len(raw) * 8:
            return None
        bits = b
    return raw, bits


def ip_matches(caller_ip: str, acl_expr: str) -> bool:
    """IPAuthenticationProvider.matches: `acl_expr` is an address or address/bits (IPv4 or IPv6);
    an address of the other family never matches."""
    pattern = _ip_pattern(acl_expr)
    if pattern is None:
        return False
    raw, bits = pattern
    remote = _addr_bytes(caller_ip)
    if remote is None or len(remote) != len(raw):
        return False
    return _masked(remote, bits) == _masked(raw, bits)


def _ip_valid(expr: str) -> bool:
    return _ip_pattern(expr) is not None


# --- sasl, x509 ---


_KERBEROS_NAME = re.compile(r"([^/@]*)(/([^/@]*))?@([^/@]*)")


def _kerberos_name_valid(name: str) -> bool:
    # KerberosName accepts "service/host@REALM" forms and anything without '@'.
    return _KERBEROS_NAME.fullmatch(name) is not None or "@" not in name


_DN_ATTR = re.compile(r"\s*([A-Za-z][A-Za-z0-9-]*|(?:OID\.|oid\.)?[0-9]+(?:\.[0-9]+)*)\s*=")
_DN_HEX = re.compile(r"#(?:[0-9A-Fa-f]{2})+")
_DN_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_DN_PLAIN = re.compile(r'(?:[^,;+"\\<>]|\\[,=+<>#;"\\ ]|\\[0-9A-Fa-f]{2})*')


def _x500_name_valid(name: str) -> bool:
    """An approximation of `new X500Principal(name)` (RFC 2253/1779 distinguished names)."""
    if not name.strip():
        return True
    pos = 0
    end = len(name)
    while True:
        m = _DN_ATTR.match(name, pos)
        if m is None:
            return False
        pos = m.end()
        while pos < end and name[pos] == " ":
            pos += 1
        for value in (_DN_HEX, _DN_QUOTED, _DN_PLAIN):
            v = value.match(name, pos)
            if v is not None and (v.end() > pos or value is _DN_PLAIN):
                pos = v.end()
                break
        while pos < end and name[pos] == " ":
            pos += 1
        if pos == end:
            return True
        if name[pos] not in ",;+":
            return False
        pos += 1


def _java_split(text: str, sep: str) -> list[str]:
    """Java's String.split(sep) for a literal separator: trailing empty strings removed."""
    if sep not in text:
        return [text]
    parts = text.split(sep)
    while parts and not parts[-1]:
        parts.pop()
    return parts
