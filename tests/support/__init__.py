"""Test helpers: server processes (Apache ZooKeeper, Corral), a raw protocol client, and the
differential conformance machinery.

Everything a helper starts is registered in `support.procs`, so the fixtures in
tests/conftest.py can check that no process or port outlives the test that made it.
"""
