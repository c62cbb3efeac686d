"""Every bound Corral enforces, as a named constant with its unit last."""

# jute.maxbuffer default: the largest frame and the largest buffer/string inside one.
jute_maxbuffer_bytes = 0xFFFFF
# ZooKeeper's extra allowance for a buffer or string read from the txn log, snapshots and
# quorum packets (zookeeper.jute.maxbuffer.extrasize): jute.maxbuffer itself by default, at
# least 1024. Prep keeps a txn within jute.maxbuffer plus it, so every reader takes it.
jute_maxbuffer_extrasize_bytes = jute_maxbuffer_bytes
# Session passwords are always this long (the C client reads a fixed-size field).
session_password_bytes = 16
# Requests a connection may have in flight before we stop reading from it.
outstanding_requests_per_connection_max = 1000
# Bytes of replies queued for a slow reader before we stop processing its requests.
connection_send_buffer_bytes_max = 16 * 1024 * 1024
# Longest TTL a TTL node may have (ZooKeeper's EphemeralType limit, 2^40 - 1).
ttl_max_ms = (1 << 40) - 1
# Bytes of received but unprocessed requests a connection may hold while over its outstanding
# bound (the runner pauses reading then; a connection that keeps sending anyway is closed).
connection_backlog_bytes_max = 16 * 1024 * 1024
