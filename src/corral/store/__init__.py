"""Durable storage in ZooKeeper's own formats: txn logs, snapshots, epochs, recovery, purge."""
