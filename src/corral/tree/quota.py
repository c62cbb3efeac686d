"""Quota bookkeeping nodes under /zookeeper/quota (ZooKeeper's Quotas and StatsTrack).

A quota on path P lives in two nodes: /zookeeper/quota/P/zookeeper_limits (the limits,
written by clients) and /zookeeper/quota/P/zookeeper_stats (the current usage, which the
tree keeps up to date on every create, delete and setData under P). Both hold StatsTrack
text: "count=N,bytes=M" optionally followed by "=;key=value;..." (sorted extra keys, the
leading "=" hides them from old parsers).
"""

import re

PROC_PATH = "/zookeeper"
QUOTA_PATH = "/zookeeper/quota"
CONFIG_PATH = "/zookeeper/config"
LIMIT_NODE = "zookeeper_limits"
STAT_NODE = "zookeeper_stats"

_PAIR_SEPARATOR = re.compile("[,;]+")
_JAVA_LONG = re.compile("[+-]?[0-9]+")


def quota_path(path: str) -> str:
    return QUOTA_PATH + path


def limit_path(path: str) -> str:
    return QUOTA_PATH + path + "/" + LIMIT_NODE


def stat_path(path: str) -> str:
    return QUOTA_PATH + path + "/" + STAT_NODE


def parse_stats(data: bytes | None) -> dict[str, int]:
    """StatsTrack's parser: key=value pairs separated by any run of ',' and ';'.

    ZooKeeper throws on a pair without '=' or a non-numeric value (and then fails the
    whole txn); we skip such pairs instead. An empty value reads as -1, as in ZooKeeper.
    """
    stats: dict[str, int] = {}
    if not data:
        return stats
    text = data.decode("utf-8", "replace")
    for pair in _PAIR_SEPARATOR.split(text):
        kv = pair.split("=")
        while kv and not kv[-1]:  # Java's split drops trailing empty strings
            kv.pop()
        if len(kv) < 2:
            continue
        value = kv[1] or "-1"
        if _JAVA_LONG.fullmatch(value):
            stats[kv[0]] = int(value)
    return stats


def format_stats(stats: dict[str, int]) -> bytes:
    """StatsTrack.toString: count and bytes first (-1 when absent), then the rest sorted."""
    text = f"count={stats.get('count', -1)},bytes={stats.get('bytes', -1)}"
    extra = sorted(k for k in stats if k not in ("count", "bytes"))
    if extra:
        text += "=" + "".join(f";{k}={stats[k]}" for k in extra)
    return text.encode()


def add_usage(data: bytes | None, count_diff: int, bytes_diff: int) -> bytes:
    """A stats node's new text after adding to its count and bytes."""
    stats = parse_stats(data)
    stats["count"] = stats.get("count", -1) + count_diff
    stats["bytes"] = stats.get("bytes", -1) + bytes_diff
    return format_stats(stats)
