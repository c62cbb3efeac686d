"""server/acl.py: ZooKeeper's checkACL, fixupACL, auth providers and getACL masking.

Golden values marked "ZooKeeper 3.8.0" were produced by running Debian's zookeeper.jar
(DigestAuthenticationProvider, IPAuthenticationProvider, X500Principal, String.replaceAll).
"""

import pytest

from corral.proto.codes import Perm
from corral.proto.records import ACL, Id
from corral.server import acl, auth_order
from corral.server.acl import (
    CREATOR_ALL_ACL,
    OPEN_ACL_UNSAFE,
    READ_ACL_UNSAFE,
    AuthIds,
    AuthProviders,
    InvalidACL,
    check,
    digest_authenticate,
    digest_id,
    fix_acl,
    ip_auth_id,
    ip_matches,
    is_valid_id,
    mask_digests,
)

ALL_PROVIDERS = AuthProviders(frozenset({"ip", "digest", "sasl", "x509"}))
IP = Id("ip", "127.0.0.1")


def ids(*extra: Id) -> AuthIds:
    return AuthIds.of((IP, *extra))


# --- digest ---


@pytest.mark.parametrize(
    ("user_password", "expected"),
    [  # ZooKeeper 3.8.0
        ("user:pass", "user:smGaoVKd/cQkjm7b88GyorAUz20="),
        ("super:test", "super:D/InIHSb7yEEbrWz8b9l71RjZJU="),
        ("bob:", "bob:tK1fpNO1hB0F++FhHpSq0Fa4tv0="),
        ("nocolon", "nocolon:Ra+cHr2ZoHvBjtNArFGNGlVie4g="),
        ("a:b:c", "a:cLzgnoJ6mP5qz3w+mwvPE2vDgu0="),
        ("", ":2jmj7l5rSw0yVb/vlWAYkK/YBwk="),
        ("üser:päss", "üser:vded1Ovo1VwX+Ij5npqXFLuyBs4="),
    ],
)
def test_digest_id_matches_zookeeper(user_password: str, expected: str) -> None:
    assert digest_id(user_password) == expected


def test_digest_authenticate_adds_super_for_the_super_digest() -> None:
    super_digest = digest_id("super:test")
    assert digest_authenticate(b"super:test", super_digest) == (
        acl.SUPER_ID,
        Id("digest", super_digest),
    )
    assert digest_authenticate(b"user:pass", super_digest) == (
        Id("digest", digest_id("user:pass")),
    )
    assert digest_authenticate(b"user:pass") == (Id("digest", digest_id("user:pass")),)


@pytest.mark.parametrize(
    ("id_", "valid"),
    [  # ZooKeeper 3.8.0: Java's split(":") drops trailing empty strings
        ("a:b", True),
        ("a:b:", True),
        ("a::", False),
        (":b", True),
        ("a", False),
        ("a:b:c", False),
        ("", False),
        (":", False),
        ("a:", False),
    ],
)
def test_digest_is_valid(id_: str, valid: bool) -> None:
    assert is_valid_id("digest", id_) is valid


# --- ip ---


@pytest.mark.parametrize(
    ("id_", "valid"),
    [  # ZooKeeper 3.8.0
        ("1.2.3.4", True),
        ("1.2.3.4/32", True),
        ("1.2.3.4/0", True),
        ("1.2.3.4/33", False),
        ("1.2.3.4/-1", False),
        ("1.2.3.4/", False),
        ("1.2.3", False),
        ("1.2.3.4.5", False),
        ("256.1.1.1", False),
        ("+1.2.3.4", True),
        ("-0.1.2.3", True),
        ("a.b.c.d", False),
        ("10.0.0.0/8", True),
        ("1.2.3.4/+8", True),
        ("1.2.3.4/08", True),
        ("localhost", False),
        ("", False),
        ("1..2.3", False),
        # IPv6 (3.9.4+ parser, from its source)
        ("::1", True),
        ("::", True),
        ("fe80::1/64", True),
        ("fe80::1/129", False),
        ("2001:db8:0:0:0:0:0:1", True),
        ("2001:db8:0:0:0:0:1", False),
        ("1:2:3:4:5:6:7::8", False),
        ("1::2::3", False),
        ("12345::1", False),
        ("::ffff:1.2.3.4", False),
        ("g::1", False),
    ],
)
def test_ip_is_valid(id_: str, valid: bool) -> None:
    assert is_valid_id("ip", id_) is valid


@pytest.mark.parametrize(
    ("caller", "expr", "match"),
    [  # ZooKeeper 3.8.0 for IPv4
        ("10.1.2.3", "10.0.0.0/8", True),
        ("11.1.2.3", "10.0.0.0/8", False),
        ("1.2.3.4", "1.2.3.4", True),
        ("1.2.3.5", "1.2.3.4", False),
        ("1.2.3.5", "1.2.3.4/31", True),
        ("1.2.3.6", "1.2.3.4/31", False),
        ("1.2.3.4", "0.0.0.0/0", True),
        ("1.2.3.4", "1.2.3.4/33", False),
        ("0:0:0:0:0:0:0:1", "::1", True),
        ("::1", "::1/128", True),
        ("2001:db8::5", "2001:db8::/32", True),
        ("2001:db9::5", "2001:db8::/32", False),
        ("2001:db8::5", "2001:db8::4/127", True),
        ("2001:db8::6", "2001:db8::4/127", False),
        # different families never match, even with /0
        ("1.2.3.4", "::/0", False),
        ("::1", "0.0.0.0/0", False),
        ("1.2.3.4", "garbage", False),
    ],
)
def test_ip_matches(caller: str, expr: str, match: bool) -> None:
    assert ip_matches(caller, expr) is match


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("::1", "0:0:0:0:0:0:0:1"),
        ("2001:db8::ab", "2001:db8:0:0:0:0:0:ab"),
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("fe80::1%eth0", "fe80:0:0:0:0:0:0:1%eth0"),
    ],
)
def test_ip_auth_id_spells_addresses_as_java(host: str, expected: str) -> None:
    assert ip_auth_id(host) == Id("ip", expected)


# --- sasl, x509 ---


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("zookeeper/host@REALM", True),
        ("user@REALM", True),
        ("plain", True),
        ("a@b@c", False),
        ("a/b/c@R", False),
    ],
)
def test_sasl_ids_must_be_kerberos_names(name: str, valid: bool) -> None:
    assert is_valid_id("sasl", name, ALL_PROVIDERS) is valid


@pytest.mark.parametrize(
    ("name", "valid"),
    [  # ZooKeeper 3.8.0's JVM (new X500Principal)
        ("CN=foo", True),
        ("CN=foo,O=bar", True),
        ("cn=a+ou=b,c=US", True),
        ("", True),
        ("CN=", True),
        ('CN="quoted, x"', True),
        ("CN=a\\,b", True),
        ("foo", False),
        ("CN=foo,", False),
        ("=x", False),
        ("1.2.3=x", True),
        ("OID.1.2.3=x", True),
        ("CN=#0403616263", True),
        ("CN=a;O=b", True),
        (" CN = a , O = b ", True),
    ],
)
def test_x509_ids_must_be_distinguished_names(name: str, valid: bool) -> None:
    assert is_valid_id("x509", name, ALL_PROVIDERS) is valid


def test_schemes_without_a_provider_are_invalid() -> None:
    for scheme in ("sasl", "x509", "world", "super", "ensemble", "nosuch"):
        assert not is_valid_id(scheme, "anything")


# --- check ---


def test_open_and_empty_acls_allow_everything() -> None:
    for perm in Perm:
        assert check(OPEN_ACL_UNSAFE, perm, ids())
        assert check((), perm, AuthIds())


def test_perm_bits_must_overlap() -> None:
    assert check(READ_ACL_UNSAFE, Perm.READ, ids())
    assert not check(READ_ACL_UNSAFE, Perm.WRITE, ids())
    # getACL asks for READ|ADMIN: either bit suffices.
    assert check(READ_ACL_UNSAFE, Perm.READ | Perm.ADMIN, ids())


def test_super_and_skip_acl_pass_everything() -> None:
    closed = (ACL(int(Perm.ALL), Id("digest", "x:y")),)
    assert not check(closed, Perm.READ, ids())
    assert check(closed, Perm.READ, ids(acl.SUPER_ID))
    assert check(closed, Perm.READ, ids(), skip_acl=True)


def test_digest_matches_exact_id_only() -> None:
    me = Id("digest", digest_id("user:pass"))
    node = (ACL(int(Perm.READ | Perm.WRITE), me),)
    assert check(node, Perm.WRITE, ids(me))
    assert not check(node, Perm.WRITE, ids(Id("digest", digest_id("user:other"))))
    assert not check(node, Perm.DELETE, ids(me))
    # A caller id of another scheme with the same text does not match.
    assert not check(node, Perm.READ, ids(Id("sasl", me.id)))


def test_world_only_matches_anyone() -> None:
    assert not check((ACL(31, Id("world", "someone")),), Perm.READ, ids())


def test_ip_acl_uses_cidr() -> None:
    node = (ACL(int(Perm.READ), Id("ip", "127.0.0.0/8")),)
    assert check(node, Perm.READ, AuthIds.of((Id("ip", "127.9.9.9"),)))
    assert not check(node, Perm.READ, AuthIds.of((Id("ip", "10.0.0.1"),)))


def test_sasl_needs_its_provider() -> None:
    node = (ACL(int(Perm.READ), Id("sasl", "alice")),)
    alice = ids(Id("sasl", "alice"))
    assert not check(node, Perm.READ, alice)
    assert check(node, Perm.READ, alice, providers=ALL_PROVIDERS)
    # The sasl user "super" matches every sasl entry; letAnySaslUserDoX names an entry
    # every sasl user matches.
    assert check(node, Perm.READ, ids(Id("sasl", "super")), providers=ALL_PROVIDERS)
    anyone = AuthProviders(frozenset({"ip", "sasl"}), sasl_any_user="alice")
    assert check(node, Perm.READ, ids(Id("sasl", "bob")), providers=anyone)


def test_x509_super_user() -> None:
    node = (ACL(int(Perm.READ), Id("x509", "CN=alice")),)
    admin = ids(Id("x509", "CN=admin"))
    assert not check(node, Perm.READ, admin, providers=ALL_PROVIDERS)
    with_super = AuthProviders(frozenset({"ip", "x509"}), x509_super_user="CN=admin")
    assert check(node, Perm.READ, admin, providers=with_super)


def test_auth_ids_of_sets_is_super() -> None:
    assert not ids().is_super
    assert ids(acl.SUPER_ID).is_super
    a = ids()
    assert a.with_id(IP) is a
    assert a.with_id(acl.SUPER_ID).is_super


# --- the order of a connection's ids (ZooKeeper's ConcurrentHashMap order) ---

# ZooKeeper 3.8.0's whoAmI after `addauth digest userN:pw` for N = 0, 1, ... in turn: the
# order of its auth id set, not the order they were added in. 14 and 26 ids make the map
# double once and twice.
ZK_WHOAMI_ORDER = {
    5: "user2 user1 user3 127.0.0.1 user0 user4",
    14: "user5 user2 user8 user9 user12 user3 user10 127.0.0.1 user7 user11 user13 user1 "
    "user0 user4 user6",
    26: "user25 user2 user10 127.0.0.1 user18 user11 user13 user15 user22 user19 user4 user6 "
    "user23 user5 user8 user9 user24 user12 user3 user14 user20 user21 user7 user16 user1 "
    "user17 user0",
}


def test_java_hashes() -> None:
    assert auth_order.java_string_hash("hello") == 99162322  # "hello".hashCode()
    assert auth_order.java_string_hash("") == 0
    assert auth_order.java_string_hash("Aa") == auth_order.java_string_hash("BB") == 2112
    # Over UTF-16 code units: a character beyond the BMP counts as its two surrogates.
    assert auth_order.java_string_hash("\U0001f600") == (0xD83D * 31 + 0xDE00)
    # Wrapping into 32 bits (Java ints): "polygenelubricants".hashCode() == Integer.MIN_VALUE.
    assert auth_order.java_string_hash("polygenelubricants") == 0x80000000


@pytest.mark.parametrize("count", sorted(ZK_WHOAMI_ORDER))
def test_auth_ids_are_kept_in_zookeepers_order(count: int) -> None:
    users = [Id("digest", digest_id(f"user{n}:pw")) for n in range(count)]
    got = AuthIds.added([IP, *users])
    names = [i.id.split(":")[0] for i in got.ids]
    assert names == ZK_WHOAMI_ORDER[count].split()
    assert got.with_id(users[0]) is got  # adding an id twice changes nothing


def test_ids_sharing_a_bin_keep_the_order_they_came_in() -> None:
    # The ip id and user0's digest land in one bin of the 16 (see the order above).
    user0 = Id("digest", digest_id("user0:pw"))
    assert AuthIds.added([IP, user0]).ids == (IP, user0)
    assert AuthIds.added([user0, IP]).ids == (user0, IP)


def test_forwarded_ids_keep_their_order() -> None:
    """AuthIds.of keeps a list already in ZooKeeper's order (as a follower forwards it); to
    rebuild it by adding the ids in that order could reorder a doubled map's chains."""
    users = [Id("digest", digest_id(f"user{n}:pw")) for n in range(26)]
    order = AuthIds.added([IP, *users]).ids
    assert AuthIds.of(order).ids == order


def test_auth_acl_expands_in_zookeepers_order() -> None:
    """ZooKeeper 3.8.0: alice, u1, u2 added in either order, then create with
    [auth:ALL, world:anyone READ], getACL lists alice, u1, u2, world:anyone."""
    people = [Id("digest", digest_id(up)) for up in ("u1:pw1", "u2:pw2", "alice:a")]
    for added in (people, people[::-1]):
        auth = AuthIds.added([IP, *added])
        fixed = fix_acl((ACL(31, Id("auth", "")), ACL(1, acl.WORLD_ANYONE)), auth)
        assert [a.id.id.split(":")[0] for a in fixed] == ["alice", "u1", "u2", "anyone"]


# --- fix_acl ---


def test_fix_acl_keeps_open_acl_and_drops_duplicates() -> None:
    assert fix_acl(OPEN_ACL_UNSAFE, ids()) == OPEN_ACL_UNSAFE
    dup = (ACL(1, Id("digest", "a:b")), ACL(1, Id("digest", "a:b")), ACL(2, Id("digest", "a:b")))
    assert fix_acl(dup, ids()) == (dup[0], dup[2])


def test_fix_acl_rejects_empty() -> None:
    with pytest.raises(InvalidACL):
        fix_acl((), ids())


def test_auth_scheme_expands_to_authenticated_ids_but_not_ip() -> None:
    me = Id("digest", digest_id("u:p"))
    other = Id("digest", digest_id("v:p"))
    got = fix_acl(CREATOR_ALL_ACL, ids(me, other))
    assert got == (ACL(31, me), ACL(31, other))
    with pytest.raises(InvalidACL):
        fix_acl(CREATOR_ALL_ACL, ids())
    # super has no provider: it does not count either.
    with pytest.raises(InvalidACL):
        fix_acl(CREATOR_ALL_ACL, ids(acl.SUPER_ID))
    # sasl counts when its provider exists.
    sasl = Id("sasl", "alice")
    assert fix_acl(CREATOR_ALL_ACL, ids(sasl), ALL_PROVIDERS) == (ACL(31, sasl),)
    with pytest.raises(InvalidACL):
        fix_acl(CREATOR_ALL_ACL, ids(sasl))


def test_auth_scheme_id_text_is_ignored() -> None:
    me = Id("digest", digest_id("u:p"))
    assert fix_acl((ACL(1, Id("auth", "whatever")),), ids(me)) == (ACL(1, me),)


@pytest.mark.parametrize(
    "bad",
    [
        Id("world", "someone"),
        Id("digest", "nocolon"),
        Id("ip", "1.2.3.4/40"),
        Id("super", ""),
        Id("sasl", "alice"),
        Id("nosuch", "x"),
    ],
)
def test_fix_acl_rejects_invalid_ids(bad: Id) -> None:
    with pytest.raises(InvalidACL):
        fix_acl((ACL(31, Id("world", "anyone")), ACL(1, bad)), ids())


# --- getACL masking ---


def test_mask_digests() -> None:
    node = (
        ACL(1, Id("digest", "user:smGaoVKd/cQkjm7b88GyorAUz20=")),
        ACL(2, Id("ip", "1.2.3.4")),
        ACL(4, Id("digest", "u:a\n:b")),
    )
    assert mask_digests(node) == (
        ACL(1, Id("digest", "user:x")),
        ACL(2, Id("ip", "1.2.3.4")),
        ACL(4, Id("digest", "u:x\n:x")),  # ZooKeeper 3.8.0: "." stops at line ends
    )
    assert mask_digests(OPEN_ACL_UNSAFE) is OPEN_ACL_UNSAFE
