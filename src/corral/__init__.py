"""Corral: a ZooKeeper-compatible coordination service.

The pure cores (proto, tree, server, quorum) sit below the IO layers (net, store, cli,
admin); see DESIGN.md for the layering rule that tests/unit/test_layers.py enforces.
"""

__version__ = "0.1.0"

# The Apache ZooKeeper release whose client protocol and formats Corral matches.
ZOOKEEPER_COMPAT_VERSION = "3.9.5"
