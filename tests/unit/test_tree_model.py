"""Model-based test: DataTree.apply_txn and its watches against a plain-dict reference model.

The model keeps each znode as a dict of what clients can observe, with ZooKeeper's rules
stated directly (cversion = child creations + deletions, pzxid = zxid of the last child
change, ...), and the watches as a set of (watcher, path, kind). It plays prep's part too:
it turns random requests into the txns ZooKeeper's PrepRequestProcessor would log (an
ErrorTxn for a failing request, a MultiTxn of ErrorTxns for a failing multi), applies them
to the tree, and checks every result, every watch event and the whole tree after each step.
"""

import copy
from collections import defaultdict
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from corral.proto.codes import Err, EventType, OpCode, WatcherType
from corral.proto.records import (
    ACL,
    CheckVersionTxn,
    CloseSessionTxn,
    CreateContainerTxn,
    CreateSessionTxn,
    CreateTTLTxn,
    CreateTxn,
    DeleteTxn,
    ErrorTxn,
    Id,
    SetACLTxn,
    SetDataTxn,
    Stat,
    TxnHeader,
)
from corral.tree.datatree import OPEN_ACL_UNSAFE, READ_ACL_UNSAFE, SPECIAL_PATHS, DataTree
from corral.tree.txn import encode_sub_txns
from corral.tree.watches import WatchKind

NAMES = ["a", "b", "c"]
SESSIONS = [0x100, 0x200, -0x7E00000000000001]
WATCHERS = [1, 2, 3]
ACLS = [OPEN_ACL_UNSAFE, READ_ACL_UNSAFE, (ACL(31, Id("digest", "u:p")),)]
CONTAINER = -0x8000000000000000
KINDS = ["persistent", "ephemeral", "container", "ttl"]
CREATED = EventType.NODE_CREATED
DELETED = EventType.NODE_DELETED
CHANGED = EventType.NODE_DATA_CHANGED
CHILDREN = EventType.NODE_CHILDREN_CHANGED

Node = dict[str, Any]
Events = dict[int, list[tuple[EventType, str]]]


def parent_of(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"


def ancestors_or_self(path: str) -> list[str]:
    out = [path]
    while path != "/":
        path = parent_of(path)
        out.append(path)
    return out


def ttl_owner(ttl: int) -> int:
    return ttl - 0x0100000000000000  # 0xFF00000000000000 | ttl as a signed long


class Model:
    """What the tree should look like, in plain dicts."""

    def __init__(self) -> None:
        def special(acl: tuple[ACL, ...] = OPEN_ACL_UNSAFE, aversion: int = 0) -> Node:
            return {
                "data": b"",
                "acl": acl,
                "owner": 0,
                "czxid": 0,
                "mzxid": 0,
                "pzxid": 0,
                "ctime": 0,
                "mtime": 0,
                "version": 0,
                "aversion": aversion,
                "creations": 0,
                "deletions": 0,
                "offset": 0,
            }

        self.nodes: dict[str, Node] = {p: special() for p in SPECIAL_PATHS}
        self.nodes["/zookeeper/config"] = special(READ_ACL_UNSAFE, -1)
        # ZooKeeper builds these with children but no counted creations, and clients see
        # 2 * creations - children: the root shows cversion -1 and /zookeeper -2.
        self.nodes["/"]["offset"] = -1
        self.nodes["/zookeeper"]["offset"] = -2
        self.sessions: dict[int, int] = {}
        # (watcher, path, kind) with kind in data | child | persistent | recursive
        self.watches: set[tuple[int, str, str]] = set()

    def children(self, path: str) -> set[str]:
        return {p.rsplit("/", 1)[1] for p in self.nodes if p != "/" and parent_of(p) == path}

    def stat(self, path: str) -> Stat:
        n = self.nodes[path]
        owner = n["owner"]
        visible = 0 if owner == CONTAINER or (owner < 0 and owner >> 56 == -1) else owner
        return Stat(
            n["czxid"],
            n["mzxid"],
            n["ctime"],
            n["mtime"],
            n["version"],
            n["creations"] + n["deletions"] + n["offset"],
            n["aversion"],
            visible,
            len(n["data"] or b""),
            len(self.children(path)),
            n["pzxid"],
        )

    # --- prep: the error a request gets, or None ---

    def create_error(self, path: str, session: int, kind: str) -> Err | None:
        parent = self.nodes.get(parent_of(path))
        if parent is None:
            return Err.NONODE
        if parent["owner"] not in (0, CONTAINER) and parent["owner"] >> 56 != -1:
            return Err.NOCHILDRENFOREPHEMERALS
        if path in self.nodes:
            return Err.NODEEXISTS
        return None

    def delete_error(self, path: str) -> Err | None:
        if path in SPECIAL_PATHS:
            return Err.BADARGUMENTS
        if path not in self.nodes:
            return Err.NONODE
        if self.children(path):
            return Err.NOTEMPTY
        return None

    # --- effects, with the watch events they fire ---

    def fire(self, events: Events, path: str, type_: EventType) -> None:
        """One trigger: each matching watcher gets one event; one-shot watches go."""
        got: list[int] = []
        if type_ == CHILDREN:
            for w in WATCHERS:
                if (w, path, "child") in self.watches or (w, path, "persistent") in self.watches:
                    got.append(w)
            self.watches -= {(w, path, "child") for w in WATCHERS}
        else:
            for w in WATCHERS:
                mine = {(w, path, "data"), (w, path, "persistent")}
                if type_ == DELETED:
                    mine.add((w, path, "child"))
                if mine & self.watches or any(
                    (w, p, "recursive") in self.watches for p in ancestors_or_self(path)
                ):
                    got.append(w)
            self.watches -= {(w, path, "data") for w in WATCHERS}
            if type_ == DELETED:
                self.watches -= {(w, path, "child") for w in WATCHERS}
        for w in got:
            events[w].append((type_, path))

    def create(
        self,
        events: Events,
        path: str,
        data: bytes | None,
        acl: Any,
        owner: int,
        zxid: int,
        time: int,
    ) -> None:
        parent = self.nodes[parent_of(path)]
        parent["creations"] += 1
        parent["pzxid"] = zxid
        self.nodes[path] = {
            "data": data,
            "acl": acl,
            "owner": owner,
            "czxid": zxid,
            "mzxid": zxid,
            "pzxid": zxid,
            "ctime": time,
            "mtime": time,
            "version": 0,
            "aversion": 0,
            "creations": 0,
            "deletions": 0,
            "offset": 0,
        }
        self.fire(events, path, CREATED)
        self.fire(events, parent_of(path), CHILDREN)

    def delete(self, events: Events, path: str, zxid: int) -> None:
        del self.nodes[path]
        parent = self.nodes[parent_of(path)]
        parent["deletions"] += 1
        parent["pzxid"] = zxid
        self.fire(events, path, DELETED)
        self.fire(events, parent_of(path), CHILDREN)

    def set_data(self, events: Events, path: str, data: bytes | None, zxid: int, time: int) -> None:
        n = self.nodes[path]
        n.update(data=data, mzxid=zxid, mtime=time, version=n["version"] + 1)
        self.fire(events, path, CHANGED)

    def ephemerals(self, session: int) -> set[str]:
        return {p for p, n in self.nodes.items() if n["owner"] == session}


paths = st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map(lambda ns: "/" + "/".join(ns))
payloads = st.one_of(st.none(), st.binary(max_size=6))


class TreeMachine(RuleBasedStateMachine):
    """Random txns applied to both the DataTree and the model."""

    @initialize()
    def start(self) -> None:
        self.tree = DataTree()
        self.model = Model()
        self.zxid = 0
        # A few nodes to start from, so that most random ops find something to act on.
        for path in ("/a", "/b", "/a/b"):
            hdr = self.hdr(OpCode.CREATE, SESSIONS[0])
            pcv = self.model.nodes[parent_of(path)]["creations"] + 1
            self.tree.apply_txn(hdr, CreateTxn(path, b"", OPEN_ACL_UNSAFE, False, pcv))
            self.model.create(defaultdict(list), path, b"", OPEN_ACL_UNSAFE, 0, hdr.zxid, hdr.time)

    def hdr(self, type_: int, session: int) -> TxnHeader:
        self.zxid += 1
        return TxnHeader(session, 0, self.zxid, 5000 + self.zxid * 3, type_)

    def check_events(self, got: Any, want: Events, zxid: int | None = None) -> None:
        by_watcher: Events = defaultdict(list)
        for e in got:
            by_watcher[e.watcher].append((e.type, e.path))
            if zxid is not None:
                assert e.zxid == zxid
        assert dict(by_watcher) == {w: evs for w, evs in want.items() if evs}

    def existing(self, data: st.DataObject) -> str:
        """Mostly a node that exists (not a special one), sometimes any path."""
        mine = sorted(set(self.model.nodes) - SPECIAL_PATHS) or ["/"]
        return data.draw(st.one_of(st.sampled_from(mine), st.sampled_from(mine), paths))

    def fresh(self, data: st.DataObject) -> str:
        """Mostly a new child of an existing node, sometimes any path."""
        parent = data.draw(st.sampled_from(["/", *sorted(set(self.model.nodes) - SPECIAL_PATHS)]))
        child = ("" if parent == "/" else parent) + "/" + data.draw(st.sampled_from(NAMES))
        return data.draw(st.one_of(st.just(child), st.just(child), paths))

    def create_txn(
        self, path: str, data: bytes | None, acl: Any, kind: str, session: int, seq: bool
    ) -> tuple[int, Any, str, int]:
        """(type, txn, final path, raw owner) for a create, as prep would log it."""
        parent = self.model.nodes.get(parent_of(path))
        if seq and parent is not None:
            path = f"{path}{parent['creations']:010d}"
        pcv = parent["creations"] + 1 if parent is not None else 0
        if kind == "container":
            return (
                OpCode.CREATE_CONTAINER,
                CreateContainerTxn(path, data, acl, pcv),
                path,
                CONTAINER,
            )
        if kind == "ttl":
            return OpCode.CREATE_TTL, CreateTTLTxn(path, data, acl, pcv, 77), path, ttl_owner(77)
        owner = session if kind == "ephemeral" else 0
        type_ = OpCode.CREATE2 if seq else OpCode.CREATE
        return type_, CreateTxn(path, data, acl, kind == "ephemeral", pcv), path, owner

    # --- single writes ---

    @rule(
        draw=st.data(),
        data=payloads,
        acl=st.sampled_from(ACLS),
        kind=st.sampled_from(KINDS),
        session=st.sampled_from(SESSIONS),
        seq=st.booleans(),
    )
    def create(
        self,
        draw: st.DataObject,
        data: bytes | None,
        acl: Any,
        kind: str,
        session: int,
        seq: bool,
    ) -> None:
        path = self.fresh(draw)
        type_, txn, path, owner = self.create_txn(path, data, acl, kind, session, seq)
        err = self.model.create_error(path, session, kind)
        hdr = self.hdr(type_ if err is None else OpCode.ERROR, session)
        events: Events = defaultdict(list)
        if err is not None:
            res = self.tree.apply_txn(hdr, ErrorTxn(err))
            assert res.err == err
        else:
            res = self.tree.apply_txn(hdr, txn)
            self.model.create(events, path, data, acl, owner, hdr.zxid, hdr.time)
            assert (res.err, res.path) == (Err.OK, path)
            assert res.stat == self.model.stat(path)
        self.check_events(res.events, events, hdr.zxid)

    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        path = self.existing(data)
        err = self.model.delete_error(path)
        hdr = self.hdr(OpCode.DELETE if err is None else OpCode.ERROR, SESSIONS[0])
        events: Events = defaultdict(list)
        if err is None:
            res = self.tree.apply_txn(hdr, DeleteTxn(path))
            self.model.delete(events, path, hdr.zxid)
        else:
            res = self.tree.apply_txn(hdr, ErrorTxn(err))
        assert res.err == (err or Err.OK)
        self.check_events(res.events, events, hdr.zxid)

    @rule(data=st.data(), payload=payloads)
    def set_data(self, data: st.DataObject, payload: bytes | None) -> None:
        path = data.draw(st.sampled_from(sorted(self.model.nodes)))
        version = self.model.nodes[path]["version"] + 1
        hdr = self.hdr(OpCode.SET_DATA, SESSIONS[0])
        res = self.tree.apply_txn(hdr, SetDataTxn(path, payload, version))
        events: Events = defaultdict(list)
        self.model.set_data(events, path, payload, hdr.zxid, hdr.time)
        assert res.err == Err.OK and res.stat == self.model.stat(path)
        self.check_events(res.events, events, hdr.zxid)

    @rule(data=st.data(), acl=st.sampled_from(ACLS))
    def set_acl(self, data: st.DataObject, acl: Any) -> None:
        path = data.draw(st.sampled_from(sorted(self.model.nodes)))
        n = self.model.nodes[path]
        n.update(acl=acl, aversion=n["aversion"] + 1)
        res = self.tree.apply_txn(
            self.hdr(OpCode.SET_ACL, SESSIONS[0]), SetACLTxn(path, acl, n["aversion"])
        )
        assert res.err == Err.OK and res.stat == self.model.stat(path) and res.events == ()

    @rule(session=st.sampled_from(SESSIONS), timeout=st.integers(1000, 40000))
    def create_session(self, session: int, timeout: int) -> None:
        self.tree.apply_txn(self.hdr(OpCode.CREATE_SESSION, session), CreateSessionTxn(timeout))
        self.model.sessions[session] = timeout

    @rule(session=st.sampled_from(SESSIONS), listed=st.integers(0, 8))
    def close_session(self, session: int, listed: int) -> None:
        mine = sorted(self.model.ephemerals(session))
        # Normally prep lists them all; a shorter list must still delete the rest.
        in_txn = mine[:listed]
        hdr = self.hdr(OpCode.CLOSE_SESSION, session)
        res = self.tree.apply_txn(hdr, CloseSessionTxn(tuple(in_txn)))
        events: Events = defaultdict(list)
        for path in in_txn + sorted(set(mine) - set(in_txn)):
            self.model.delete(events, path, hdr.zxid)
        self.model.sessions.pop(session, None)
        assert res.err == Err.OK
        self.check_events(res.events, events, hdr.zxid)

    # --- multi ---

    @rule(
        data=st.data(),
        ops=st.lists(
            st.tuples(st.sampled_from(["create", "delete", "set", "check"]), payloads),
            min_size=1,
            max_size=4,
        ),
        kind=st.sampled_from(KINDS),
        session=st.sampled_from(SESSIONS),
    )
    def multi(
        self, data: st.DataObject, ops: list[tuple[str, bytes | None]], kind: str, session: int
    ) -> None:
        # Prep runs the ops against a scratch copy; the first failure fails the multi.
        scratch = copy.deepcopy(self.model)
        saved_model = self.model
        self.model = scratch
        zxid = self.zxid + 1
        time = 5000 + zxid * 3
        subs: list[tuple[int, Any]] = []
        expect: list[tuple[Err, int]] = []
        events: Events = defaultdict(list)
        failed: Err | None = None
        for op, payload in ops:
            path = self.fresh(data) if op == "create" else self.existing(data)
            if failed is not None:
                subs.append((OpCode.ERROR, ErrorTxn(Err.RUNTIMEINCONSISTENCY)))
                continue
            err: Err | None
            if op == "create":
                type_, txn, path, owner = self.create_txn(
                    path, payload, OPEN_ACL_UNSAFE, kind, session, data.draw(st.booleans())
                )
                err = scratch.create_error(path, session, kind)
                if err is None:
                    scratch.create(events, path, payload, OPEN_ACL_UNSAFE, owner, zxid, time)
            elif op == "delete":
                type_, txn, err = OpCode.DELETE, DeleteTxn(path), scratch.delete_error(path)
                if err is None:
                    scratch.delete(events, path, zxid)
            elif op == "set":
                version = scratch.nodes[path]["version"] + 1 if path in scratch.nodes else 0
                type_, txn = OpCode.SET_DATA, SetDataTxn(path, payload, version)
                err = None if path in scratch.nodes else Err.NONODE
                if err is None:
                    scratch.set_data(events, path, payload, zxid, time)
            else:
                want = data.draw(st.sampled_from([-1, 0, 1]))
                type_, txn = OpCode.CHECK, CheckVersionTxn(path, want)
                node = scratch.nodes.get(path)
                err = (
                    Err.NONODE
                    if node is None
                    else None
                    if want in (-1, node["version"])
                    else Err.BADVERSION
                )
            if err is None:
                subs.append((type_, txn))
                expect.append((Err.OK, type_))
            else:
                failed = err
                subs.append((OpCode.ERROR, ErrorTxn(err)))
        self.model = saved_model if failed is not None else scratch
        if failed is not None:
            events = defaultdict(list)
        res = self.tree.apply_txn(self.hdr(OpCode.MULTI, session), encode_sub_txns(subs))
        assert self.zxid == zxid
        if failed is None:
            assert res.err == Err.OK
            assert [(r.err, r.type) for r in res.multi] == expect
        else:
            assert res.err == failed
            n_ok = len(expect)
            assert [r.err for r in res.multi] == (
                [Err.OK] * n_ok + [failed] + [Err.RUNTIMEINCONSISTENCY] * (len(ops) - n_ok - 1)
            )
            assert all(r.type == OpCode.ERROR for r in res.multi)
        self.check_events(res.events, events, zxid)

    # --- watches ---

    @rule(watcher=st.sampled_from(WATCHERS), data=st.data(), kind=st.sampled_from(list(WatchKind)))
    def add_watch(self, watcher: int, data: st.DataObject, kind: WatchKind) -> None:
        # Mostly existing nodes (their changes are what fires), sometimes future ones.
        path = self.existing(data)
        name = {
            WatchKind.DATA: "data",
            WatchKind.EXIST: "data",
            WatchKind.CHILD: "child",
            WatchKind.PERSISTENT: "persistent",
            WatchKind.PERSISTENT_RECURSIVE: "recursive",
        }[kind]
        new = (watcher, path, name) not in self.model.watches
        assert self.tree.watches.add(path, watcher, kind) == new
        self.model.watches.add((watcher, path, name))

    @rule(
        watcher=st.sampled_from(WATCHERS),
        path=st.one_of(paths, st.just("/")),
        wtype=st.sampled_from(list(WatcherType)),
    )
    def remove_watch(self, watcher: int, path: str, wtype: WatcherType) -> None:
        kinds = {
            WatcherType.DATA: {"data"},
            WatcherType.CHILDREN: {"child"},
            WatcherType.PERSISTENT: {"persistent"},
            WatcherType.PERSISTENT_RECURSIVE: {"recursive"},
            WatcherType.ANY: {"data", "child", "persistent", "recursive"},
        }[wtype]
        mine = {(watcher, path, k) for k in kinds} & self.model.watches
        assert self.tree.watches.has(path, watcher, wtype) == bool(mine)
        assert self.tree.watches.remove(path, watcher, wtype) == bool(mine)
        self.model.watches -= mine

    @rule(watcher=st.sampled_from(WATCHERS))
    def connection_closed(self, watcher: int) -> None:
        self.tree.watches.remove_watcher(watcher)
        self.model.watches = {w for w in self.model.watches if w[0] != watcher}

    @rule(
        watcher=st.sampled_from(WATCHERS),
        data=st.data(),
        lists=st.lists(st.tuples(st.sampled_from(["data", "exist", "child"]), paths), max_size=4),
    )
    def set_watches(self, watcher: int, data: st.DataObject, lists: list[tuple[str, str]]) -> None:
        relative = data.draw(st.integers(0, self.zxid))
        # The client reconnects without the watches it re-sends.
        self.connection_closed(watcher)
        want: list[tuple[EventType, str]] = []
        for kind in ("data", "exist", "child"):
            for k, path in lists:
                if k != kind:
                    continue
                node = self.model.nodes.get(path)
                if kind == "exist":
                    if node is not None:
                        want.append((CREATED, path))
                    else:
                        self.model.watches.add((watcher, path, "data"))
                elif node is None:
                    want.append((DELETED, path))
                elif node["mzxid" if kind == "data" else "pzxid"] > relative:
                    want.append((CHANGED if kind == "data" else CHILDREN, path))
                else:
                    self.model.watches.add((watcher, path, kind))
        got = self.tree.watches.set_watches(
            watcher,
            relative,
            [p for k, p in lists if k == "data"],
            [p for k, p in lists if k == "exist"],
            [p for k, p in lists if k == "child"],
        )
        assert [(e.type, e.path) for e in got] == want
        assert all(e.watcher == watcher and e.zxid == -1 for e in got)

    # --- the whole tree ---

    @invariant()
    def tree_matches_model(self) -> None:
        tree, model = self.tree, self.model
        assert set(tree.nodes) == set(model.nodes)
        for path, node in tree.nodes.items():
            m = model.nodes[path]
            assert node.stat() == model.stat(path), path
            assert node.data == m["data"] and node.acl == m["acl"]
            assert node.ephemeral_owner == m["owner"]
            assert set(node.children) == model.children(path)
        for session in SESSIONS:
            assert tree.ephemerals(session) == model.ephemerals(session)
        assert tree.containers() == {p for p, n in model.nodes.items() if n["owner"] == CONTAINER}
        assert tree.ttl_nodes() == {p for p, n in model.nodes.items() if n["owner"] >> 56 == -1}
        assert tree.sessions == model.sessions
        assert tree.last_zxid == self.zxid
        assert tree.count_nodes() == len(model.nodes) + 1
        # The root's data never changes here, so ZooKeeper's counter is this sum.
        assert tree.approximate_data_size() == sum(
            len(p) + len(n["data"] or b"") for p, n in model.nodes.items()
        )
        in_data = {(w, p) for w, p, k in model.watches if k != "child"}
        in_child = {(w, p) for w, p, k in model.watches if k in ("child", "persistent")}
        assert tree.watches.watch_count() == len(in_data) + len(in_child)
        assert next(p for p, _ in tree.iter_preorder()) == "/"
        assert len(list(tree.iter_preorder())) == len(model.nodes)


TreeMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
TestTree = TreeMachine.TestCase
