"""The order of a connection's auth ids, against Debian's Apache ZooKeeper 3.8.

ZooKeeper keeps a connection's ids in a hash set, so whoAmI lists them, and an `auth` ACL
entry expands into them, in the set's order rather than the order they were added in
(server/auth_order.py). Seeded random sequences of addauth (digest users, the super user,
repeats), then whoAmI and a create with [auth, world:anyone READ] read back with getACL,
must give the same lists, in the same order, on both servers.
"""

from __future__ import annotations

import random

import pytest

from conftest import ServerPool
from corral.proto.records import ACL, Id
from support.procs import ServerProcess, ServerSettings
from support.rawclient import RawClient, digest

SETTINGS = ServerSettings(super_digest=digest("super", "superpw"))
SEEDS = range(12)


def transcript(server: ServerProcess, seed: int) -> list[object]:
    rng = random.Random(seed)
    # Up to 30 ids: the set's table doubles at 12 and 24 entries.
    count = rng.choice([1, 2, 3, 5, 8, 11, 12, 13, 20, 24, 30])
    users = [(f"u{rng.randrange(10_000)}", f"pw{rng.randrange(100)}") for _ in range(count)]
    if rng.random() < 0.3:
        users.insert(rng.randrange(len(users) + 1), ("super", "superpw"))
    if rng.random() < 0.3:
        users.append(rng.choice(users))  # a repeat adds nothing
    out: list[object] = []
    with RawClient.connect(server.address) as client:
        for user, password in users:
            assert client.add_digest(user, password).err == 0
        infos = client.who_am_i().result.client_info
        out.append([(i.auth_scheme, i.user) for i in infos])
        path = f"/order-{seed}"
        acl = (ACL(31, Id("auth", "")), ACL(1, Id("world", "anyone")))
        assert client.create(path, b"", acl).err == 0
        out.append([(a.perms, a.id.scheme, a.id.id) for a in client.get_acl(path).result.acl])
        assert client.delete(path).err == 0
    return out


@pytest.mark.parametrize("seed", SEEDS, ids=lambda s: f"seed={s}")
def test_auth_ids_in_zookeepers_order(
    seed: int, zookeeper_pool: ServerPool, corral_pool: ServerPool
) -> None:
    print(f"auth order seed {seed}")
    zookeeper = transcript(zookeeper_pool.get(SETTINGS), seed)
    corral = transcript(corral_pool.get(SETTINGS), seed)
    assert corral == zookeeper
