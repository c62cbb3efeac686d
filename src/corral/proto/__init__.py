"""ZooKeeper's client wire protocol: jute records, their codec, opcodes and error codes.

Pure: bytes in, records out, and back. Decoders are total and bounded: the only exception
they raise is a ProtocolError subclass.
"""
