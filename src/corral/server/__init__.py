"""Request processing: prep (request to txn), sessions, connections, the standalone core.

Pure state machines: inputs are decoded records and the time as a number; outputs are
effects (bytes to send, txns to persist, connections to close) for net/ to perform.
"""
