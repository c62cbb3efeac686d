"""Differential conformance machinery: a recorder that runs a generated sequence (see
support/diffgen.py) against one server and writes a normalised transcript, and a comparator.

A sequence runs in its own subtree `/<tag><seed>` over three connections: A and B
do everything (a session closed there is replaced by a new one, labelled s3, s4, ...; a
reconnect resumes the same session on a new connection and re-sends its watches), W holds
persistent watches. After every operation each connection sends a ping: replies are ordered
per connection, so every watch notification the operation caused has arrived when the pings
are answered; they are recorded with it.

Normalisation is the minimum that two correct servers must be allowed to differ in:
- zxids are made relative to the zxid of the sequence's root create ("+N"), so a sequence
  can run on a server with any history;
- session ids become labels (s1, s2, ...) wherever they appear (ephemeralOwner);
- ctime and mtime (wall clock) are dropped;
- children lists, getEphemerals lists and whoAmI's ids are sorted, and so are the
  notifications caused by closing a session (ZooKeeper's order for all of them is a Java
  hash order, which no client can rely on).
Everything else is compared as is: error codes, every other Stat field, data, ACLs,
sub-results of multi, and the notifications with their order and zxids.

Version-specific differences (ZooKeeper 3.8 against 3.9) are not handled here: the test
lists them and passes them to `compare` as `Difference` rewrites.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from corral.proto.codes import Err, OpCode
from corral.proto.records import (
    ACL,
    CheckVersionRequest,
    CreateRequest,
    CreateTTLRequest,
    DeleteRequest,
    GetChildrenRequest,
    GetDataRequest,
    SetDataRequest,
    Stat,
)
from support.diffgen import CREATE_MODES, WATCHER, Op
from support.rawclient import ConnectionClosed, MultiResult, RawClient, Reply

Address = tuple[str, int]


# --- the recorder ---


@dataclasses.dataclass
class Entry:
    """One step of a transcript: what was sent, and everything observed because of it."""

    index: int
    op: str
    outcome: Any
    events: dict[str, list[tuple[Any, ...]]]
    reply_zxid: Any = None
    # Extra observations for the version-difference rewrites (e.g. a READ probe after exists).
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def key(self) -> tuple[Any, ...]:
        return (self.op, self.outcome, self.events, self.reply_zxid)


class Recorder:
    """Runs sequences against one server and records normalised transcripts."""

    def __init__(self, address: Address, tag: str, io_timeout_s: float = 10.0) -> None:
        self.address = address
        self.tag = tag
        self.io_timeout_s = io_timeout_s

    def run(self, seed: int, ops: Sequence[Op]) -> list[Entry]:
        return _Run(self, seed).execute(ops)


class _Run:
    def __init__(self, recorder: Recorder, seed: int) -> None:
        self.recorder = recorder
        self.root = f"/{recorder.tag}{seed}"
        self.base = 0
        self.labels: dict[int, str] = {}
        self.slots: list[RawClient | None] = [None, None, None]
        self.slot_labels: list[str] = ["", "", ""]
        self.created_seq: list[str] = []
        # Per session label: its persistent watches (template path -> AddWatchMode).
        self.persistent: dict[str, dict[str, int]] = {}
        # Per session label: its standard watches as a client knows them (path -> kinds
        # "data", "exist", "child"), from its requests, their replies and its events.
        self.standard: dict[str, dict[str, set[str]]] = {}
        self.session_count = 0

    # --- sessions ---

    def open_slot(self, slot: int) -> None:
        client = RawClient.connect(self.recorder.address, io_timeout_s=self.recorder.io_timeout_s)
        if slot == WATCHER:
            label = "w1"
        else:
            self.session_count += 1
            label = f"s{self.session_count}"
        self.labels[client.session_id] = label
        self.slots[slot] = client
        self.slot_labels[slot] = label

    def close_all(self) -> None:
        for client in self.slots:
            if client is not None:
                client.close()

    # --- normalisation ---

    def z(self, zxid: int) -> Any:
        if zxid == -1:
            return -1
        if zxid >= self.base > 0:
            return f"+{zxid - self.base}"
        return f"abs:{zxid}"

    def stat(self, s: Stat | None) -> Any:
        if s is None:
            return None
        owner: Any = s.ephemeral_owner
        if owner:
            owner = self.labels.get(owner, "foreign")
        return (
            ("czxid", self.z(s.czxid)),
            ("mzxid", self.z(s.mzxid)),
            ("version", s.version),
            ("cversion", s.cversion),
            ("aversion", s.aversion),
            ("owner", owner),
            ("dataLength", s.data_length),
            ("numChildren", s.num_children),
            ("pzxid", self.z(s.pzxid)),
        )

    def acl(self, acl: Sequence[ACL]) -> Any:
        return tuple((a.perms, a.id.scheme, a.id.id) for a in acl)

    def body(self, value: Any) -> Any:
        """A decoded reply body as a comparable, readable structure."""
        if value is None:
            return None
        if isinstance(value, list):  # multi results
            return tuple(self.multi_result(r) for r in value)
        name = type(value).__name__
        out: list[tuple[str, Any]] = []
        for field in dataclasses.fields(value):
            v = getattr(value, field.name)
            if isinstance(v, Stat):
                v = self.stat(v)
            elif field.name in ("children", "ephemerals"):
                v = tuple(sorted(v))
            elif field.name == "acl":
                v = self.acl(v)
            elif field.name == "client_info":
                # ZooKeeper's hash-set order, which Corral reproduces (auth_order.py).
                v = tuple((c.auth_scheme, c.user) for c in v)
            out.append((field.name, v))
        return (name, *out)

    def multi_result(self, r: MultiResult) -> Any:
        return (
            r.type,
            Err(r.err).name if r.err in Err._value2member_map_ else r.err,
            self.body(r.body),
        )

    def outcome(self, reply: Reply) -> Any:
        err = Err(reply.err).name if reply.err in Err._value2member_map_ else reply.err
        return (err, self.body(reply.result))

    # --- paths ---

    def resolve(self, path: str) -> str:
        if path.startswith("@seq"):
            if not self.created_seq:
                return self.root + "/a"
            return self.created_seq[int(path[4:]) % len(self.created_seq)]
        return path.replace("{root}", self.root)

    def note_created(self, path: str, flags: int) -> None:
        if flags in (2, 3, 6):
            self.created_seq.append(path)

    # --- execution ---

    def execute(self, ops: Sequence[Op]) -> list[Entry]:
        try:
            for slot in range(len(self.slots)):
                self.open_slot(slot)
            first = self.slots[0]
            assert first is not None
            reply = first.create2(self.root, b"root")
            if reply.err != 0:
                raise AssertionError(f"cannot create sequence root {self.root}: {reply.err}")
            self.base = reply.zxid
            transcript = []
            for index, op in enumerate(ops):
                transcript.append(self.step(index, op))
            return transcript
        finally:
            self.close_all()

    def step(self, index: int, op: Op) -> Entry:
        client = self.slots[op.session]
        assert client is not None
        extra: dict[str, Any] = {}
        reply_zxid: Any = None
        try:
            outcome, reply_zxid = self.perform(client, op, extra)
        except ConnectionClosed:
            outcome = ("CONNECTION_CLOSED",)
            client.abort()
            self.open_slot(op.session)
        events = self.barrier()
        if op.kind == "new_session":
            # Closing a session deletes its ephemerals in one txn, in the order ZooKeeper
            # keeps them (a Java HashSet's): which deletion's events come first means nothing.
            events = {label: sorted(evs) for label, evs in events.items()}
        return Entry(index, op.describe(), outcome, events, reply_zxid, extra)

    # --- client-side bookkeeping of standard watches ---

    def watch_added(self, slot: int, path: str, kind: str) -> None:
        self.standard.setdefault(self.slot_labels[slot], {}).setdefault(path, set()).add(kind)

    def watches_dropped(self, slot: int, path: str, kinds: set[str]) -> None:
        held = self.standard.get(self.slot_labels[slot], {}).get(path)
        if held is not None:
            held -= kinds

    def holds_watch(self, slot: int, path: str, watcher_type: int) -> bool:
        held = self.standard.get(self.slot_labels[slot], {}).get(path, set())
        wanted = {1: {"child"}, 2: {"data", "exist"}, 3: {"child", "data", "exist"}}
        return bool(held & wanted.get(watcher_type, set()))

    # What a notification consumes: one-shot watches fire once.
    FIRED: ClassVar[dict[int, set[str]]] = {
        1: {"data", "exist"},
        2: {"data", "exist", "child"},
        3: {"data", "exist"},
        4: {"child"},
    }
    REMOVED: ClassVar[dict[int, set[str]]] = {
        1: {"child"},
        2: {"data", "exist"},
        3: {"child", "data", "exist"},
    }

    def barrier(self) -> dict[str, list[tuple[Any, ...]]]:
        """Ping every session; collect the notifications each received, in order."""
        events: dict[str, list[tuple[Any, ...]]] = {}
        for slot, client in enumerate(self.slots):
            if client is None:
                continue
            client.ping()
            got = client.take_events()
            for e in got:
                self.watches_dropped(slot, e.path, self.FIRED.get(e.type, set()))
            if got:
                events[self.slot_labels[slot]] = [
                    (e.type, e.state, e.path.replace(self.root, "{root}"), self.z(e.zxid))
                    for e in got
                ]
        return events

    def perform(self, client: RawClient, op: Op, extra: dict[str, Any]) -> tuple[Any, Any]:
        kind, a = op.kind, op.args
        reply: Reply
        if kind == "create":
            code, path, data, acl, flags = a
            reply = client.create(self.resolve(path), data, acl, flags, code)
            if reply.err == 0:
                self.note_created(reply.result.path, flags)
        elif kind == "create_container":
            path, data, acl = a
            reply = client.create_container(self.resolve(path), data, acl)
        elif kind == "create_ttl":
            path, data, acl, flags, ttl = a
            reply = client.create_ttl(self.resolve(path), ttl, data, acl, flags)
            if reply.err == 0:
                self.note_created(reply.result.path, flags)
        elif kind == "set_data":
            reply = client.set_data(self.resolve(a[0]), a[1], a[2])
        elif kind == "delete":
            reply = client.delete(self.resolve(a[0]), a[1])
        elif kind == "exists":
            path = self.resolve(a[0])
            reply = client.exists(path, a[1])
            if a[1] and reply.err in (Err.OK, Err.NONODE):
                self.watch_added(op.session, path, "data" if reply.err == Err.OK else "exist")
            # Whether this session may READ the node: what 3.9's exists checks and 3.8's
            # does not. A plain getData is a read: it changes nothing.
            probe = client.get_data(path, False)
            extra["read_probe"] = Err(probe.err).name
        elif kind == "get_data":
            reply = client.get_data(self.resolve(a[0]), a[1])
            if a[1] and reply.err == Err.OK:
                self.watch_added(op.session, self.resolve(a[0]), "data")
        elif kind in ("get_children", "get_children2"):
            method = client.get_children if kind == "get_children" else client.get_children2
            reply = method(self.resolve(a[0]), a[1])
            if a[1] and reply.err == Err.OK:
                self.watch_added(op.session, self.resolve(a[0]), "child")
        elif kind == "get_acl":
            reply = client.get_acl(self.resolve(a[0]))
        elif kind == "set_acl":
            reply = client.set_acl(self.resolve(a[0]), a[1], a[2])
        elif kind == "sync":
            reply = client.sync(self.resolve(a[0]))
        elif kind == "add_watch":
            reply = client.add_watch(self.resolve(a[0]), a[1])
            if reply.err == Err.OK:
                self.persistent.setdefault(self.slot_labels[op.session], {})[a[0]] = a[1]
        elif kind == "remove_watches":
            reply = client.remove_watches(self.resolve(a[0]), a[1])
            if reply.err == Err.OK:
                self.watches_dropped(op.session, self.resolve(a[0]), self.REMOVED.get(a[1], set()))
        elif kind == "check_watches":
            extra["own_watch"] = self.holds_watch(op.session, self.resolve(a[0]), a[1])
            extra["path"] = self.resolve(a[0])
            reply = client.check_watches(self.resolve(a[0]), a[1])
        elif kind == "get_all_children_number":
            reply = client.get_all_children_number(self.resolve(a[0]))
        elif kind == "get_ephemerals":
            reply = client.get_ephemerals(self.resolve(a[0]))
        elif kind == "auth":
            reply = client.auth(a[0], f"{a[1]}:{a[2]}".encode())
            if reply.err == Err.AUTHFAILED:
                # The server closes the connection; the session lives on: resume it on a new
                # connection (no watches re-sent: the recorded ones went with the old one).
                extra["closed"] = client.connection_closed()
                self.resume(op.session)
        elif kind == "who_am_i":
            reply = client.who_am_i()
        elif kind == "reconnect":
            reply = self.reconnect(op.session, *a)
        elif kind == "new_session":
            reply = client.request(OpCode.CLOSE_SESSION, None)
            client.abort()
            self.open_slot(op.session)
        elif kind == "multi":
            subs_sent = [self.multi_sub(s) for s in a]
            extra["sub_ops"] = tuple(int(code) for code, _ in subs_sent)
            reply = client.multi(subs_sent)
            if reply.err == 0:
                for sub, res in zip(a, reply.result, strict=False):
                    if sub[0] == "create" and res.type != OpCode.ERROR and res.body is not None:
                        self.note_created(res.body.path, sub[5])
        elif kind == "multi_read":
            subs: list[tuple[int, Any]] = []
            for sub_kind, path in a:
                if sub_kind == "get_data":
                    subs.append((OpCode.GET_DATA, GetDataRequest(self.resolve(path), False)))
                else:
                    subs.append(
                        (OpCode.GET_CHILDREN, GetChildrenRequest(self.resolve(path), False))
                    )
            reply = client.multi_read(subs)
        else:
            raise AssertionError(f"unknown op kind {kind}")
        outcome = self.outcome(reply)
        if "closed" in extra:
            # In place of the (empty) body, so the outcome stays an (err, body) pair.
            outcome = (outcome[0], "connection closed" if extra["closed"] else "connection open")
        return outcome, self.z(reply.zxid)

    def resume(self, slot: int) -> None:
        """Open a new connection for the slot's session, as a client does after losing one
        (watches are not re-sent, so the session holds none any more)."""
        self._reopen(slot)
        label = self.slot_labels[slot]
        self.standard.pop(label, None)
        self.persistent.pop(label, None)

    def _reopen(self, slot: int) -> RawClient:
        """Drop the slot's connection and open a new one to its session."""
        old = self.slots[slot]
        assert old is not None
        old.abort()
        client = RawClient.connect(
            self.recorder.address,
            session_id=old.session_id,
            passwd=old.passwd,
            last_zxid_seen=old.last_zxid,
            io_timeout_s=self.recorder.io_timeout_s,
        )
        client.last_zxid = old.last_zxid
        self.slots[slot] = client
        return client

    def reconnect(
        self,
        slot: int,
        stale: bool,
        use2: bool,
        extra_data: tuple[str, ...],
        extra_exist: tuple[str, ...],
        extra_child: tuple[str, ...],
    ) -> Reply:
        client = self._reopen(slot)
        label = self.slot_labels[slot]
        held = self.standard.setdefault(label, {})
        for kind, extra in (("data", extra_data), ("exist", extra_exist), ("child", extra_child)):
            for path in extra:
                held.setdefault(self.resolve(path), set()).add(kind)

        def having(kind: str) -> list[str]:
            return sorted(p for p, kinds in held.items() if kind in kinds)

        modes = self.persistent.get(label, {})
        persistent = sorted(self.resolve(p) for p, m in modes.items() if m == 0)
        recursive = sorted(self.resolve(p) for p, m in modes.items() if m == 1)
        relative = self.base if stale else client.last_zxid
        if use2 or persistent or recursive:
            return client.set_watches2(
                relative, having("data"), having("exist"), having("child"), persistent, recursive
            )
        return client.set_watches(relative, having("data"), having("exist"), having("child"))

    def multi_sub(self, sub: tuple[Any, ...]) -> tuple[int, Any]:
        kind = sub[0]
        if kind == "create":
            _, code, path, data, acl, flags = sub
            if code == OpCode.CREATE_TTL:
                return (code, CreateTTLRequest(self.resolve(path), data, acl, flags, 3_600_000))
            return (code, CreateRequest(self.resolve(path), data, acl, flags))
        if kind == "delete":
            return (OpCode.DELETE, DeleteRequest(self.resolve(sub[1]), sub[2]))
        if kind == "set":
            return (OpCode.SET_DATA, SetDataRequest(self.resolve(sub[1]), sub[2], sub[3]))
        return (OpCode.CHECK, CheckVersionRequest(self.resolve(sub[1]), sub[2]))


# --- comparison ---


@dataclasses.dataclass(frozen=True)
class Difference:
    """A known, accepted difference between two ZooKeeper versions, as a rewrite.

    `applies(ref_version, target_version)` says whether the two servers straddle it;
    `rewrite(older_entry, newer_entry)` (the entries of the server with the lower and the
    higher version) changes either in place so that they compare equal exactly when the
    only difference between them is this one.
    """

    name: str
    reason: str
    applies: Callable[[tuple[int, ...], tuple[int, ...]], bool]
    rewrite: Callable[[Entry, Entry], None]


def compare(
    seed: int,
    ref: list[Entry],
    target: list[Entry],
    differences: Sequence[Difference],
    ref_version: tuple[int, ...],
    target_version: tuple[int, ...],
) -> str | None:
    """None when the transcripts agree; else a readable report of the first divergence."""
    active = [d for d in differences if d.applies(ref_version, target_version)]
    for r, t in zip(ref, target, strict=False):
        older, newer = (r, t) if ref_version <= target_version else (t, r)
        for d in active:
            d.rewrite(older, newer)
        if r.key() != t.key():
            return _report(seed, ref, target, r.index)
    if len(ref) != len(target):
        return f"seed {seed}: transcripts have {len(ref)} and {len(target)} steps"
    return None


def _report(seed: int, ref: list[Entry], target: list[Entry], index: int) -> str:
    lines = [
        f"seed {seed}: first divergence at step {index}",
        "(A, B, W: connection slots; s1, s2, w1, ...: sessions in the order opened)",
        "steps before it (reference):",
    ]
    for e in ref[max(0, index - 8) : index]:
        lines.append(f"  {e.index:3} {e.op} -> {e.outcome} {e.events or ''}")
    r, t = ref[index], target[index]
    lines.append(f"step {index}: {r.op}")
    for name, a, b in (
        ("outcome", r.outcome, t.outcome),
        ("events", r.events, t.events),
        ("reply zxid", r.reply_zxid, t.reply_zxid),
    ):
        mark = "  " if a == b else "!!"
        lines.append(f"{mark} {name}:\n     reference: {a}\n     target:    {b}")
    return "\n".join(lines)


# --- coverage of outcomes ---

EVENT_NAMES = {1: "NodeCreated", 2: "NodeDeleted", 3: "NodeDataChanged", 4: "NodeChildrenChanged"}
# What the issue asks the sequences to provoke, as outcome_coverage() names it.
LISTED_OUTCOMES = (
    *(f"create:{mode}:OK" for mode in CREATE_MODES.values()),
    "reply:BADVERSION",
    "set_data:versioned:OK",
    "delete:versioned:OK",
    "multi:ok",
    "multi:failed",
    "multi_read:OK",
    "reply:NOAUTH",
    "reply:INVALIDACL",
    "auth:OK",
    "auth:AUTHFAILED",
    "auth:AUTHFAILED:closed",
    "reply:BADARGUMENTS",
    *(f"event:standard:{name}" for name in EVENT_NAMES.values()),
    *(f"event:persistent:{name}" for name in EVENT_NAMES.values()),
    "event:on_reconnect",
    "remove_watches:OK",
    "remove_watches:NOWATCHER",
    "check_watches:OK",
    "check_watches:NOWATCHER",
)


def outcome_coverage(ops: Sequence[Op], transcript: Sequence[Entry]) -> dict[str, int]:
    """What the servers answered to a sequence: error codes per operation kind ("<kind>:<err>"
    and "reply:<err>"), creates that succeeded per mode, failed and successful multis,
    notifications by type for standard and persistent watchers, events fired by a reconnect."""
    counts: dict[str, int] = {}

    def add(name: str) -> None:
        counts[name] = counts.get(name, 0) + 1

    for op, entry in zip(ops, transcript, strict=True):
        err = entry.outcome[0]
        add(f"{op.kind}:{err}")
        add(f"reply:{err}")
        if err == "OK" and op.kind in ("create", "create_container", "create_ttl"):
            # The mode: create's args end with flags, create_ttl's with (flags, ttl).
            flags = {"create": op.args[-1], "create_container": 4}.get(op.kind, op.args[-2])
            add(f"create:{CREATE_MODES[flags]}:OK")
        if err == "OK" and op.kind in ("set_data", "delete") and op.args[-1] != -1:
            add(f"{op.kind}:versioned:OK")
        if op.kind == "auth" and err == "AUTHFAILED" and entry.extra.get("closed"):
            add("auth:AUTHFAILED:closed")
        if op.kind == "multi" and err == "OK":
            subs = entry.outcome[1]
            failed = [sub_err for _type, sub_err, _body in subs if sub_err != "OK"]
            add("multi:failed" if failed else "multi:ok")
            if failed:
                # The failing op has its own code; the rest are OK (before) or -2 (after).
                first = next(e for e in failed if e != "RUNTIMEINCONSISTENCY")
                add(f"multi:failed:{first}")
            else:
                for _type, _err, body in subs:
                    if body is not None and body[0] in ("CreateResponse", "Create2Response"):
                        add("multi:created")
        for label, events in entry.events.items():
            watcher = "persistent" if label == "w1" else "standard"
            for event in events:
                add(f"event:{watcher}:{EVENT_NAMES.get(event[0], event[0])}")
                if op.kind == "reconnect":
                    add("event:on_reconnect")
    return counts
