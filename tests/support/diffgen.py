"""The differential test's operation generator: seeded random operation sequences.

A sequence is made from its seed alone (never from replies), so the same operations go to
every server; see support/difftest.py for how they are run, recorded and compared, and the
`Generator` docstring for what is generated and what is avoided.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from typing import Any

from corral.proto.codes import OpCode
from corral.proto.records import ACL, Id
from support.rawclient import OPEN_ACL_UNSAFE, digest

SUPER_PASSWORD = "superpw"
SUPER_DIGEST = digest("super", SUPER_PASSWORD)

R, W, C, D, A = 1, 2, 4, 8, 16
ALL = 31
WORLD = Id("world", "anyone")
U1 = Id("digest", digest("u1", "pw1"))
U2 = Id("digest", digest("u2", "pw2"))

# ACLs every session may READ (any path may get them).
READABLE_ACLS: list[tuple[int, tuple[ACL, ...]]] = [
    (50, OPEN_ACL_UNSAFE),
    (12, (ACL(R, WORLD), ACL(ALL, U1))),
    (8, (ACL(R, WORLD), ACL(R | W | C | D, U2))),
    (5, (ACL(R | A, WORLD), ACL(ALL, Id("auth", "")))),
    (4, (ACL(ALL, Id("ip", "127.0.0.1")),)),
    (3, (ACL(R, WORLD), ACL(ALL, Id("ip", "10.0.0.0/8")))),
    (2, (ACL(ALL, WORLD), ACL(ALL, WORLD))),  # duplicates (ZooKeeper removes them)
    # Invalid ones: INVALIDACL.
    (2, ()),
    (1, (ACL(ALL, Id("bogus", "x")),)),
    (1, (ACL(ALL, Id("digest", "nocolon")),)),
    (1, (ACL(ALL, Id("ip", "300.1.1.1")),)),
    (1, (ACL(ALL, Id("world", "someone")),)),
]
# ACLs that deny READ to some sessions: only for nodes named "x" (see `Generator`).
UNREADABLE_ACLS: list[tuple[int, tuple[ACL, ...]]] = [
    (10, (ACL(ALL, U1),)),
    (8, (ACL(ALL, Id("auth", "")),)),
    (4, (ACL(W | C | D | A, WORLD),)),
    (3, (ACL(ALL, Id("ip", "10.0.0.0/8")),)),
]

BAD_PATHS = [
    "",
    "relative",
    "{root}/",
    "{root}//a",
    "{root}/./a",
    "{root}/a/..",
    "{root}/a\x00b",
]
# Nodes outside the sequence's subtree: only for deletes and creates, which must refuse
# them (anything that could change them, or read state other sequences change, would make
# a sequence depend on what ran before it).
SPECIAL_PATHS = ["/zookeeper/quota", "/zookeeper", "/zookeeper/config", "/"]

NAMES = ["a", "b", "c", "x"]

# Connection slots as operations name them; sessions are labelled separately, in the order
# they are opened (A starts as s1, B as s2, W is w1; a new session in A or B is s3, ...).
SLOT_NAMES = ("A", "B", "W")


@dataclasses.dataclass(frozen=True)
class Op:
    """One generated operation: its kind, the connection slot (0 A, 1 B, 2 W), its arguments.

    Paths are templates: "{root}" is the sequence's subtree, "@seqN" the N-th sequential
    path created so far (modulo their number; the root's "a" if none exists).
    """

    kind: str
    session: int
    args: tuple[Any, ...]

    def describe(self) -> str:
        args = ", ".join(_short(a) for a in self.args)
        return f"{SLOT_NAMES[self.session]}.{self.kind}({args})"


def _short(value: Any) -> str:
    if isinstance(value, tuple) and value and isinstance(value[0], ACL):
        return "[" + ",".join(f"{a.perms}:{a.id.scheme}:{a.id.id[:12]}" for a in value) + "]"
    if isinstance(value, tuple) and value and isinstance(value[0], Op):
        return "[" + "; ".join(o.describe() for o in value) + "]"
    return repr(value)


def _weighted(rng: random.Random, table: Sequence[tuple[int, Any]]) -> Any:
    total = sum(w for w, _ in table)
    pick = rng.randrange(total)
    for w, value in table:
        if pick < w:
            return value
        pick -= w
    raise AssertionError("unreachable")


WATCHER = 2  # the slot whose session holds persistent watches (only those, in compat)


class Generator:
    """Random operation sequences from one seed.

    Sessions: slots 0 and 1 do everything; slot 2 (labelled w1) only holds persistent and
    recursive watches (addWatch), so its notifications show what those watches deliver.

    Nodes whose name is "x" are the only ones that may get an ACL denying READ; no exists
    with a watch is ever sent for them. That keeps the 3.8/3.9 exists-needs-READ difference
    to a reply code (normalised by the test) instead of a watch one side has and the other
    has not.

    `compat=True` (for servers of different versions) avoids the watch constructs whose
    3.8 and 3.9 semantics diverge in ways no rewrite of a transcript can undo
    (ZOOKEEPER-4466/4471/4472): addWatch only from the watcher session, one mode per path,
    no standard watches for the watcher session (not even re-sent on a reconnect), and
    removeWatches/checkWatches only with the types 1-3 from the other sessions.
    `compat=False` uses everything (for servers of the same version).
    """

    def __init__(self, seed: int, *, compat: bool = True) -> None:
        self.rng = random.Random(seed)
        # Choices added after the first version draw from here, so that `rng`'s stream (and
        # with it every sequence generated before them) stays as it was.
        self.aux = random.Random(f"aux{seed}")
        self.compat = compat
        # Paths this sequence has sent a create for (an optimistic guess at what exists,
        # from the seed alone, so that most operations hit real nodes).
        self.known: list[str] = []
        self.watch_modes: dict[str, int] = {}
        # Per slot: the paths it sent a read with watch=true for (removeWatches/checkWatches
        # aim at them half the time, drawn from `aux`).
        self.watched: dict[int, list[str]] = {}
        self.slot = 0  # the session slot of the operation being generated

    def path(self, *, read: bool = False, allow_seq: bool = True) -> str:
        """A path for an operation. Reads never get "": ZooKeeper reads it as "/", whose
        children and Stat depend on every other sequence."""
        rng = self.rng
        roll = rng.random()
        if roll < 0.04:
            return rng.choice(BAD_PATHS[1:] if read else BAD_PATHS)
        if allow_seq and roll < 0.12:
            return f"@seq{rng.randrange(8)}"
        if roll < 0.17:
            return "{root}"
        if self.known and roll < 0.80:
            path = rng.choice(self.known)
            if roll < 0.25 and path.count("/") < 4:
                path = f"{path}/{rng.choice(NAMES)}"
            return path
        depth = _weighted(rng, [(60, 1), (30, 2), (10, 3)])
        return "{root}/" + "/".join(rng.choice(NAMES) for _ in range(depth))

    def create_path(self, flags: int = 0) -> str:
        """Mostly a new child of the root or of a path created before, so creates succeed."""
        rng = self.rng
        roll = rng.random()
        if roll < 0.02:
            path = rng.choice(SPECIAL_PATHS)
        elif roll < 0.25:
            path = self.path()
        elif self.known and roll < 0.75:
            parent = rng.choice(self.known)
            path = f"{parent}/{rng.choice(NAMES)}" if parent.count("/") < 4 else parent
        else:
            path = "{root}/" + rng.choice(NAMES)
        sequential = flags in (2, 3, 6)
        if sequential and (path == "{root}" or path in SPECIAL_PATHS):
            # A sequential name is appended to the path: this would create a node next to
            # the sequence's root, numbered by the parent's counter all sequences share.
            path = "{root}/"
        parent = path.rsplit("/", 1)[0]
        new = path not in self.known and not sequential
        if new and (parent == "{root}" or parent in self.known):
            self.known.append(path)
        return path

    def acl(self, path: str) -> tuple[ACL, ...]:
        if path.endswith("/x") and self.rng.random() < 0.5:
            return tuple(_weighted(self.rng, UNREADABLE_ACLS))
        return tuple(_weighted(self.rng, READABLE_ACLS))

    def data(self) -> bytes | None:
        roll = self.rng.random()
        if roll < 0.05:
            return None
        if roll < 0.15:
            return b""
        return bytes(self.rng.randrange(256) for _ in range(self.rng.randrange(1, 12)))

    def version(self) -> int:
        return _weighted(self.rng, [(45, -1), (25, 0), (15, 1), (8, 2), (4, 3), (3, 1000)])

    def watchable(self, path: str) -> bool:
        return not path.endswith("/x") and not path.startswith("@")

    def watcher_types(self) -> list[int]:
        return [1, 2, 3] if self.compat else [1, 2, 3, 4, 5]

    # One method per operation kind (g_<kind>); each returns the Op's args.

    def g_create(self) -> tuple[Any, ...]:
        op = self.rng.choice([OpCode.CREATE, OpCode.CREATE2])
        flags = _weighted(self.rng, [(45, 0), (20, 1), (12, 2), (12, 3), (3, 4), (2, 5), (2, 7)])
        path = self.create_path(flags)
        return (int(op), path, self.data(), self.acl(path), flags)

    def g_create_container(self) -> tuple[Any, ...]:
        path = self.create_path()
        return (path, self.data(), self.acl(path))

    def g_create_ttl(self) -> tuple[Any, ...]:
        flags = _weighted(self.rng, [(45, 5), (45, 6), (5, 0), (5, 4)])
        path = self.create_path(flags)
        ttl = _weighted(self.rng, [(80, 3_600_000), (5, 0), (5, -1), (5, 1 << 40), (5, 1)])
        if flags not in (5, 6) and ttl < 0:
            # ZooKeeper (3.8.0 to 3.9.5) accepts this and then dies applying the txn
            # ("ttl must be positive", SyncThread exits): nothing to compare with.
            ttl = 3_600_000
        return (path, self.data(), self.acl(path), flags, ttl)

    def g_set_data(self) -> tuple[Any, ...]:
        return (self.path(), self.data(), self.version())

    def g_delete(self) -> tuple[Any, ...]:
        path = self.rng.choice(SPECIAL_PATHS) if self.rng.random() < 0.03 else self.path()
        return (path, self.version())

    def _read_watch(self) -> tuple[Any, ...]:
        path = self.path(read=True)
        watch = self.watchable(path) and self.rng.random() < 0.75
        if watch:
            self.watched.setdefault(self.slot, []).append(path)
        return (path, watch)

    def _watched_path(self) -> str:
        """A path for removeWatches/checkWatches: from the main stream as always, replaced
        half the time by one this slot asked to watch."""
        path = self.path(read=True, allow_seq=False)
        mine = self.watched.get(self.slot)
        if mine and self.aux.random() < 0.5:
            path = self.aux.choice(mine)
        return path

    def g_exists(self) -> tuple[Any, ...]:
        return self._read_watch()

    def g_get_data(self) -> tuple[Any, ...]:
        return self._read_watch()

    def g_get_children(self) -> tuple[Any, ...]:
        return self._read_watch()

    def g_get_children2(self) -> tuple[Any, ...]:
        return self._read_watch()

    def g_get_acl(self) -> tuple[Any, ...]:
        return (self.path(read=True),)

    def g_set_acl(self) -> tuple[Any, ...]:
        path = self.path()
        return (path, self.acl(path), self.version())

    def g_sync(self) -> tuple[Any, ...]:
        return (self.path(read=True),)

    def g_add_watch(self) -> tuple[Any, ...]:
        path = self.path(read=True, allow_seq=False)
        mode = self.rng.choice([0, 1])
        if self.compat:
            mode = self.watch_modes.setdefault(path, mode)
        return (path, mode)

    def g_remove_watches(self) -> tuple[Any, ...]:
        return (self._watched_path(), self.rng.choice(self.watcher_types()))

    def g_check_watches(self) -> tuple[Any, ...]:
        return (self._watched_path(), self.rng.choice(self.watcher_types()))

    def g_get_all_children_number(self) -> tuple[Any, ...]:
        return (self.path(read=True),)

    def g_get_ephemerals(self) -> tuple[Any, ...]:
        return (self.rng.choice(["{root}", "{root}/", "{root}/a", "{root}/a/"]),)

    def g_auth(self) -> tuple[Any, ...]:
        """(scheme, user, password). Digest auth never fails (a wrong password is another id);
        an unknown scheme is AUTHFAILED, and the server closes the connection."""
        user, password = self.rng.choice(
            [("u1", "pw1"), ("u2", "pw2"), ("super", SUPER_PASSWORD), ("u1", "wrong")]
        )
        scheme = "bogus" if self.aux.random() < 0.15 else "digest"
        return (scheme, user, password)

    def g_who_am_i(self) -> tuple[Any, ...]:
        return ()

    def g_new_session(self) -> tuple[Any, ...]:
        return ()

    def g_reconnect(self) -> tuple[Any, ...]:
        """Drop the connection and resume the session on a new one, re-sending its watches
        (setWatches2, or setWatches like an old client) plus a few it never had. A stale
        client (relative zxid = the root's create) makes the server fire what changed."""
        rng = self.rng
        stale = rng.random() < 0.4
        use2 = rng.random() < 0.7
        extras = tuple(
            tuple(self.path(read=True, allow_seq=False) for _ in range(rng.randrange(3)))
            for _ in range(3)
        )
        if self.compat and self.slot == WATCHER:
            # The watcher session holds persistent watches only: a standard one next to a
            # persistent one on the same path is ZOOKEEPER-4466 (see the class docstring).
            extras = ((), (), ())
        return (stale, use2, *extras)

    def g_multi(self) -> tuple[Any, ...]:
        subs: list[tuple[Any, ...]] = []
        for _ in range(self.rng.randint(1, 4)):
            kind = _weighted(self.rng, [(35, "create"), (20, "delete"), (25, "set"), (20, "check")])
            if kind == "create":
                op = _weighted(
                    self.rng,
                    [
                        (40, OpCode.CREATE),
                        (30, OpCode.CREATE2),
                        (15, OpCode.CREATE_CONTAINER),
                        (15, OpCode.CREATE_TTL),
                    ],
                )
                if op == OpCode.CREATE_CONTAINER:
                    flags = 4
                elif op == OpCode.CREATE_TTL:
                    flags = self.rng.choice([5, 6])
                else:
                    flags = _weighted(self.rng, [(50, 0), (20, 1), (15, 2), (15, 3)])
                path = self.create_path(flags)
                subs.append(("create", int(op), path, self.data(), self.acl(path), flags))
            elif kind == "delete":
                subs.append(("delete", self.path(), self.version()))
            elif kind == "set":
                subs.append(("set", self.path(), self.data(), self.version()))
            else:
                subs.append(("check", self.path(), self.version()))
        return tuple(subs)

    def g_multi_read(self) -> tuple[Any, ...]:
        subs = []
        for _ in range(self.rng.randint(1, 4)):
            subs.append((self.rng.choice(["get_data", "get_children"]), self.path(read=True)))
        return tuple(subs)

    WEIGHTS: tuple[tuple[int, str], ...] = (
        (20, "create"),
        (4, "create_container"),
        (4, "create_ttl"),
        (12, "set_data"),
        (8, "delete"),
        (6, "exists"),
        (6, "get_data"),
        (4, "get_children"),
        (4, "get_children2"),
        (3, "get_acl"),
        (4, "set_acl"),
        (1, "sync"),
        (6, "multi"),
        (2, "multi_read"),
        (4, "add_watch"),
        (2, "remove_watches"),
        (2, "check_watches"),
        (2, "get_all_children_number"),
        (2, "get_ephemerals"),
        (3, "auth"),
        (1, "who_am_i"),
        (1, "new_session"),
        (2, "reconnect"),
    )

    def session_for(self, kind: str) -> int:
        if kind == "add_watch" and (self.compat or self.rng.random() < 0.5):
            return WATCHER
        if kind == "reconnect" and self.rng.random() < 0.25:
            return WATCHER
        return self.rng.randrange(2)

    def prologue(self) -> list[Op]:
        """A few plain creates first, so that the random part finds a tree to work on."""
        ops = []
        for _ in range(self.rng.randint(2, 5)):
            parent = self.rng.choice(["{root}", *self.known])
            path = f"{parent}/{self.rng.choice(NAMES[:3])}"
            if path not in self.known:
                self.known.append(path)
            ops.append(
                Op("create", self.rng.randrange(2), (1, path, self.data(), OPEN_ACL_UNSAFE, 0))
            )
        # The watcher session starts with a watch on the whole subtree, most of the time.
        roll = self.rng.random()
        if roll < 0.75:
            mode = 1 if roll < 0.5 else 0
            self.watch_modes["{root}"] = mode
            ops.append(Op("add_watch", WATCHER, ("{root}", mode)))
        return ops

    def sequence(self, length: tuple[int, int] = (20, 40)) -> list[Op]:
        total = self.rng.randint(*length)
        ops = self.prologue()
        while len(ops) < total:
            kind = _weighted(self.rng, self.WEIGHTS)
            self.slot = self.session_for(kind)
            args = getattr(self, f"g_{kind}")()
            ops.append(Op(kind, self.slot, args))
        return ops


def generate(seed: int, *, compat: bool = True) -> list[Op]:
    """The operation sequence of a seed (the same on every machine and Python 3.11+)."""
    return Generator(seed, compat=compat).sequence()


# --- coverage: what a set of sequences exercises (the differential test records the counts) ---

CREATE_MODES = {
    0: "persistent",
    1: "ephemeral",
    2: "persistent_sequential",
    3: "ephemeral_sequential",
    4: "container",
    5: "ttl",
    6: "ttl_sequential",
}
# What the issue asks the sequences to cover, as coverage() names it.
LISTED_KINDS = (
    *(f"create:{mode}" for mode in CREATE_MODES.values()),
    "create:invalid_mode",
    "set_data:any_version",
    "set_data:versioned",
    "delete:any_version",
    "delete:versioned",
    "set_acl:versioned",
    "multi",
    "multi:check",
    "multi:versioned",
    "multi_read",
    "watch:data",
    "watch:exist",
    "watch:child",
    "watch:persistent",
    "watch:persistent_recursive",
    "remove_watches",
    "check_watches",
    "reconnect:setWatches",
    "reconnect:setWatches2",
    "reconnect:stale",
    "acl:unreadable",
    "acl:invalid",
    "auth:digest",
    "auth:super",
    "auth:wrong_password",
    "auth:unknown_scheme",
    "who_am_i",
    "new_session",
    "bad_path",
    "special_path",
)


# The standard watch a read with watch=true sets.
WATCH_OF = {
    "exists": "exist",
    "get_data": "data",
    "get_children": "child",
    "get_children2": "child",
}


def _path_kind(path: str, flags: int = 0) -> str | None:
    if path == "{root}/" and flags in (2, 3, 6):
        return None  # a sequential create under the root: the server appends the number
    if path in BAD_PATHS:
        return "bad_path"
    if path in SPECIAL_PATHS:
        return "special_path"
    return None


def coverage(ops: Sequence[Op]) -> dict[str, int]:
    """How often each listed kind (LISTED_KINDS) and each operation kind ("op:<kind>") occurs
    in `ops`, counted from the operations alone (what was asked, not what was answered)."""
    counts: dict[str, int] = {}

    def add(name: str | None) -> None:
        if name is not None:
            counts[name] = counts.get(name, 0) + 1

    def acl_kind(acl: tuple[ACL, ...]) -> None:
        if any(acl == a for _, a in UNREADABLE_ACLS):
            add("acl:unreadable")
        if any(acl == a for _, a in READABLE_ACLS[-5:]):  # the invalid ones
            add("acl:invalid")

    def create(code: int, path: str, acl: tuple[ACL, ...], flags: int) -> None:
        add(_path_kind(path, flags))
        acl_kind(acl)
        if code == OpCode.CREATE_CONTAINER:
            add("create:container")
        elif code == OpCode.CREATE_TTL and flags not in (5, 6):
            add("create:invalid_mode")  # createTTL with a mode that has no TTL: refused
        elif flags in CREATE_MODES and flags != 4:
            add(f"create:{CREATE_MODES[flags]}")
        else:
            add("create:invalid_mode")  # 4 (container) and 7 through create/create2

    for op in ops:
        add(f"op:{op.kind}")
        a = op.args
        if op.kind == "create":
            create(a[0], a[1], a[3], a[4])
        elif op.kind == "create_container":
            create(int(OpCode.CREATE_CONTAINER), a[0], a[2], 4)
        elif op.kind == "create_ttl":
            create(int(OpCode.CREATE_TTL), a[0], a[2], a[3])
        elif op.kind in ("set_data", "delete"):
            add(_path_kind(a[0]))
            add(f"{op.kind}:{'any_version' if a[-1] == -1 else 'versioned'}")
        elif op.kind == "set_acl":
            add(_path_kind(a[0]))
            acl_kind(a[1])
            if a[2] != -1:
                add("set_acl:versioned")
        elif op.kind == "multi":
            add("multi")
            for sub in a:
                if sub[0] == "create":
                    create(sub[1], sub[2], sub[4], sub[5])
                    continue
                add(_path_kind(sub[1]))
                if sub[0] == "check":
                    add("multi:check")
                if sub[-1] != -1:
                    add("multi:versioned")
        elif op.kind == "multi_read":
            add("multi_read")
            for _sub_kind, path in a:
                add(_path_kind(path))
        elif op.kind in ("exists", "get_data", "get_children", "get_children2"):
            add(_path_kind(a[0]))
            if a[1]:
                add(f"watch:{WATCH_OF[op.kind]}")
        elif op.kind in ("get_acl", "sync", "get_all_children_number"):
            add(_path_kind(a[0]))
        elif op.kind == "add_watch":
            add(_path_kind(a[0]))
            add("watch:persistent_recursive" if a[1] == 1 else "watch:persistent")
        elif op.kind in ("remove_watches", "check_watches"):
            add(_path_kind(a[0]))
            add(op.kind)
            add(f"{op.kind}:type{a[1]}")
        elif op.kind == "reconnect":
            stale, use2 = a[0], a[1]
            add("reconnect:setWatches2" if use2 else "reconnect:setWatches")
            if stale:
                add("reconnect:stale")
        elif op.kind == "auth":
            scheme, user, password = a
            if scheme != "digest":
                add("auth:unknown_scheme")
            elif user == "super":
                add("auth:super")
            elif password.startswith("pw"):
                add("auth:digest")
            else:
                add("auth:wrong_password")
        elif op.kind in ("who_am_i", "new_session"):
            add(op.kind)
    return counts
