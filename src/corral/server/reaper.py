"""Which containers and TTL nodes are due for deletion (ZooKeeper's ContainerManager rules).

- A container with no children is deleted once it has had a child (stored cversion > 0), or,
  with znode.container.maxNeverUsedIntervalMs set, once it is older than that unused.
- A TTL node with no children is deleted once its mtime is more than its TTL ago.

The core turns each candidate into a deleteContainer txn (session 0), as the leader's
ContainerManager does; prep re-checks the node when the txn is prepped.
"""

from __future__ import annotations

from corral.tree.datatree import DataTree
from corral.tree.znode import ttl_of


def reap_candidates(tree: DataTree, wall_ms: int, max_never_used_ms: int = 0) -> list[str]:
    """The paths to delete now, containers first, each group sorted (deterministic)."""
    nodes = tree.nodes
    out: list[str] = []
    for path in sorted(tree.containers()):
        node = nodes.get(path)
        if node is None or node.child_paths:
            continue
        if node.cversion > 0 or (max_never_used_ms and wall_ms - node.mtime > max_never_used_ms):
            out.append(path)
    for path in sorted(tree.ttl_nodes()):
        node = nodes.get(path)
        if node is None or node.child_paths:
            continue
        ttl = ttl_of(node.ephemeral_owner)
        if ttl and wall_ms - node.mtime > ttl:
            out.append(path)
    return out
