"""The replicated state: the znode tree, Stats, ACL storage and watches.

apply_txn is the one way the tree changes, in every role and in recovery. Pure.
"""
