"""The order in which ZooKeeper lists a connection's authenticated ids.

ZooKeeper keeps a connection's ids (its `authInfo`) in a set backed by a Java
ConcurrentHashMap, and copies them into a list in that map's iteration order wherever the
order shows: the whoAmI reply, and the expansion of an `auth` ACL entry into one entry per
id (so the order of a node's ACL as getACL returns it). That order comes from the ids'
Java hash codes, not from when they were added. To answer as ZooKeeper does, Corral keeps
the ids in the same order, by replaying what the map does on each insertion.

The map's rules (OpenJDK's ConcurrentHashMap, as ZooKeeper's default table starts):
- 16 bins at first; an id goes to bin `spread(hash) & (bins - 1)`, at the end of that bin's
  chain; iteration walks bins in index order, each chain from its head.
- Once it holds 3/4 of its bin count it doubles. A bin's chain splits into a low and a high
  chain: the longest tail of the chain whose nodes all go the same way is moved as it is,
  and the nodes before that tail are pushed, one by one, onto the front of their new chain.
  (Chains long enough for the map to turn them into trees take 8 colliding ids: ignored.)
- An Id's hash is the one jute generates for records: 37 * (37 * 17 + hash(scheme)) +
  hash(id), with Java's String hash over UTF-16 code units, all in 32-bit ints.

The order of a list is enough to rebuild the map: bins follow from the hashes and the size,
chains from the order. So `insert` takes the ids in ZooKeeper's order and returns the order
after one more id, with no other state.
"""

from __future__ import annotations

from collections.abc import Sequence

from corral.proto.records import Id

__all__ = ["id_hash", "insert", "java_string_hash"]

_INITIAL_BINS = 16
_MASK32 = 0xFFFFFFFF


def java_string_hash(text: str) -> int:
    """Java's String.hashCode (over UTF-16 code units), as an unsigned 32-bit value."""
    h = 0
    units = text.encode("utf-16-be", "surrogatepass")
    for i in range(0, len(units), 2):
        h = (31 * h + (units[i] << 8 | units[i + 1])) & _MASK32
    return h


def id_hash(ident: Id) -> int:
    """The jute-generated Id.hashCode, as an unsigned 32-bit value."""
    h = (37 * 17 + java_string_hash(ident.scheme)) & _MASK32
    return (37 * h + java_string_hash(ident.id)) & _MASK32


def _spread(h: int) -> int:
    return (h ^ (h >> 16)) & 0x7FFFFFFF


def _bins_for(count: int) -> int:
    """The table size after `count` insertions (it doubles when it reaches 3/4 full)."""
    bins = _INITIAL_BINS
    while count >= bins - (bins >> 2):
        bins *= 2
    return bins


def _table(ordered: Sequence[Id], bins: int) -> list[list[tuple[int, Id]]]:
    table: list[list[tuple[int, Id]]] = [[] for _ in range(bins)]
    for ident in ordered:
        h = _spread(id_hash(ident))
        table[h & (bins - 1)].append((h, ident))
    return table


def _double(table: list[list[tuple[int, Id]]]) -> list[list[tuple[int, Id]]]:
    bins = len(table)
    out: list[list[tuple[int, Id]]] = [[] for _ in range(2 * bins)]
    for i, chain in enumerate(table):
        if not chain:
            continue
        # The longest tail whose nodes all go to the same half keeps its order.
        run_bit = chain[0][0] & bins
        last_run = 0
        for j in range(1, len(chain)):
            bit = chain[j][0] & bins
            if bit != run_bit:
                run_bit, last_run = bit, j
        low: list[tuple[int, Id]] = []
        high: list[tuple[int, Id]] = []
        (high if run_bit else low).extend(chain[last_run:])
        # The nodes before it are pushed onto the front, so they come out reversed.
        for node in chain[:last_run]:
            (high if node[0] & bins else low).insert(0, node)
        out[i], out[i + bins] = low, high
    return out


def insert(ordered: Sequence[Id], new: Id) -> tuple[Id, ...]:
    """The ids in ZooKeeper's order after adding `new` to `ordered` (already in its order);
    unchanged if `new` is there already."""
    if not ordered:
        return (new,)  # every connection's first id (its ip): no table to replay
    if new in ordered:
        return tuple(ordered)
    table = _table(ordered, _bins_for(len(ordered)))
    h = _spread(id_hash(new))
    table[h & (len(table) - 1)].append((h, new))
    count = len(ordered) + 1
    if count >= len(table) - (len(table) >> 2):
        table = _double(table)
    return tuple(ident for chain in table for _, ident in chain)
