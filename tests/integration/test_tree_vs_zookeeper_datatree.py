"""Differential tests: corral.tree against Apache ZooKeeper's own DataTree and WatchManager.

Small Java harnesses run ZooKeeper's classes in-process: TreeHarness reads framed log entries
(TxnHeader + txn, as in a txn log), applies each with DataTree.processTxn, prints every
result, then dumps the tree; WatchHarness also sets, checks and removes watches and prints
every notification. The same random txns and watch operations go through corral.tree;
results, stats, data, ACLs, ephemerals, containers, TTL nodes, mntr counts and watch events
(with the ACL they are filtered by) must agree.

Two ZooKeepers: Debian's 3.8 jars as installed, and ZooKeeper 3.9.5's DataTree, DataNode,
Watcher and watch package compiled from the source mirror over those jars (a few source
edits, listed in PATCHES, make them compile against 3.8; they touch nothing compared here).
Against 3.8 the generator avoids what 3.8 applies differently from 3.9: a create2 inside a
multi (3.8 cannot apply it) and replaying a create over a node with another ACL (3.9 gives
the node the txn's ACL). The sequences include such replays, as recovery over a fuzzy
snapshot produces them.
"""

import random
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from corral.proto import jute
from corral.proto.codes import Err, OpCode, WatcherType
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
    TxnHeader,
)
from corral.tree.datatree import OPEN_ACL_UNSAFE, DataTree
from corral.tree.txn import encode_sub_txns
from corral.tree.watches import WatchKind

pytestmark = pytest.mark.zookeeper

JARS = ["zookeeper.jar", "zookeeper-jute.jar", "slf4j-api.jar", "slf4j-nop.jar"]
JAVA_DIR = Path("/usr/share/java")

HARNESS = r"""
import java.io.*;
import java.util.*;
import org.apache.zookeeper.data.ACL;
import org.apache.zookeeper.data.Stat;
import org.apache.zookeeper.server.DataNode;
import org.apache.zookeeper.server.DataTree;
import org.apache.zookeeper.server.TxnLogEntry;
import org.apache.zookeeper.server.util.SerializeUtils;

public class TreeHarness {
    public static void main(String[] args) throws Exception {
        DataInputStream in = new DataInputStream(new BufferedInputStream(System.in));
        PrintStream out = new PrintStream(new BufferedOutputStream(System.out), false, "UTF-8");
        DataTree dt = new DataTree();
        while (true) {
            int len;
            try { len = in.readInt(); } catch (EOFException e) { break; }
            byte[] buf = new byte[len];
            in.readFully(buf);
            TxnLogEntry e = SerializeUtils.deserializeTxn(buf);
            DataTree.ProcessTxnResult rc = dt.processTxn(e.getHeader(), e.getTxn());
            StringBuilder sb = new StringBuilder("R ").append(rc.err);
            if (rc.multiResult != null) {
                for (DataTree.ProcessTxnResult s : rc.multiResult) {
                    sb.append(' ').append(s.type).append(':').append(s.err);
                }
            }
            out.println(sb);
        }
        dump(dt, "/", out);
        out.println("COUNT " + dt.getNodeCount() + " " + dt.cachedApproximateDataSize());
        TreeMap<Long, TreeSet<String>> eph = new TreeMap<>();
        for (Map.Entry<Long, Set<String>> en : dt.getEphemerals().entrySet()) {
            if (!en.getValue().isEmpty()) eph.put(en.getKey(), new TreeSet<>(en.getValue()));
        }
        for (Map.Entry<Long, TreeSet<String>> en : eph.entrySet()) {
            out.println("E " + en.getKey() + " " + String.join(" ", en.getValue()));
        }
        out.println("C " + String.join(" ", new TreeSet<>(dt.getContainers())));
        out.println("T " + String.join(" ", new TreeSet<>(dt.getTtls())));
        out.flush();
    }

    static void dump(DataTree dt, String path, PrintStream out) {
        DataNode n = dt.getNode(path);
        Stat s = new Stat();
        n.copyStat(s);
        StringBuilder sb = new StringBuilder("N ").append(path);
        long[] f = {s.getCzxid(), s.getMzxid(), s.getCtime(), s.getMtime(), s.getVersion(),
            s.getCversion(), s.getAversion(), s.getEphemeralOwner(), s.getDataLength(),
            s.getNumChildren(), s.getPzxid(), n.stat.getEphemeralOwner(), n.stat.getCversion()};
        for (long v : f) sb.append(' ').append(v);
        byte[] d = n.getData();
        sb.append(' ').append(d == null ? "null" : ("x" + hex(d))).append(' ');
        for (ACL a : dt.getACL(n)) {
            sb.append(a.getPerms()).append(':').append(a.getId().getScheme()).append(':')
              .append(a.getId().getId()).append(',');
        }
        out.println(sb);
        for (String k : new TreeSet<>(n.getChildren())) {
            dump(dt, path.equals("/") ? "/" + k : path + "/" + k, out);
        }
    }

    static String hex(byte[] d) {
        StringBuilder sb = new StringBuilder();
        for (byte b : d) sb.append(String.format("%02x", b));
        return sb.toString();
    }
}
"""


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    javac, java = shutil.which("javac"), shutil.which("java")
    jars = [JAVA_DIR / j for j in JARS]
    if not javac or not java or not all(j.exists() for j in jars):
        pytest.skip("needs javac/java and Debian's ZooKeeper jars")
    work = tmp_path_factory.mktemp("treeharness")
    (work / "TreeHarness.java").write_text(HARNESS)
    cp = ":".join(str(j) for j in jars)
    subprocess.run([javac, "-cp", cp, "TreeHarness.java"], cwd=work, check=True, timeout=120)
    return [java, "-Dzookeeper.extendedTypesEnabled=true", "-cp", f"{work}:{cp}", "TreeHarness"]


ACLS = [
    OPEN_ACL_UNSAFE,
    (ACL(1, Id("world", "anyone")),),
    (ACL(31, Id("digest", "u:abc")), ACL(1, Id("ip", "10.0.0.0/8"))),
]
SESSIONS = [0x100, 0x200, -0x7E00000000000001]
NAMES = ["a", "b", "c"]


class Generator:
    """Random txns, valid the way prep makes them, judged against our own tree."""

    def __init__(self, rnd: random.Random, zookeeper_38: bool = True) -> None:
        self.rnd = rnd
        # Avoid what ZooKeeper 3.8 applies differently from 3.9 (see the module docstring).
        self.zookeeper_38 = zookeeper_38
        self.partial_close = True
        self.view = DataTree()
        self.zxid = 0
        self.log: list[tuple[TxnHeader, Any]] = []
        self.on_apply: Any = None

    def hdr(self, type_: int, session: int | None = None) -> TxnHeader:
        self.zxid += 1
        sid = self.rnd.choice(SESSIONS) if session is None else session
        return TxnHeader(sid, self.zxid, self.zxid, 1_700_000_000_000 + self.zxid, type_)

    def user_nodes(self) -> list[str]:
        """Nodes outside /zookeeper (ZooKeeper itself crashes on some writes under quota)."""
        return sorted(p for p in self.view.nodes if not p.startswith("/zookeeper") and p != "/")

    def create_sub(self, session: int, in_multi: bool = False) -> tuple[int, Any] | None:
        rnd = self.rnd
        parent = rnd.choice(["/", *self.user_nodes()])
        pnode = self.view.nodes[parent]
        if pnode.ephemeral_owner not in (0,) and pnode.stat().ephemeral_owner != 0:
            return None
        path = ("" if parent == "/" else parent) + "/" + rnd.choice(NAMES)
        if rnd.random() < 0.3:
            path += f"{pnode.cversion:010d}"
        if path in self.view.nodes:
            return None
        pcv = pnode.cversion + 1
        data = rnd.choice([None, b"", b"x", b"hello", bytes(range(7))])
        acl = rnd.choice(ACLS)
        kind = rnd.choice(["plain", "plain", "create2", "ephemeral", "container", "ttl"])
        if kind == "container":
            return OpCode.CREATE_CONTAINER, CreateContainerTxn(path, data, acl, pcv)
        if kind == "ttl":
            return OpCode.CREATE_TTL, CreateTTLTxn(path, data, acl, pcv, rnd.randint(1, 10**6))
        # ZooKeeper never logs create2 inside a multi (3.8 cannot even apply it).
        type_ = (
            OpCode.CREATE2
            if kind == "create2" and not (in_multi and self.zookeeper_38)
            else OpCode.CREATE
        )
        return type_, CreateTxn(path, data, acl, kind == "ephemeral", pcv)

    def step(self) -> None:
        rnd = self.rnd
        nodes = self.user_nodes()
        op = rnd.choice(
            ["create"] * 4 + ["delete", "set", "set", "acl", "session", "close", "error"]
            + ["multi", "badmulti", "quota", "replay"]
        )  # fmt: skip
        session = rnd.choice(SESSIONS)
        txn: Any
        if op == "create" or not nodes:
            sub = self.create_sub(session)
            if sub is None:
                hdr, txn = self.hdr(OpCode.ERROR, session), ErrorTxn(Err.NODEEXISTS)
            else:
                hdr, txn = self.hdr(sub[0], session), sub[1]
        elif op == "delete":
            path = rnd.choice(nodes)
            if self.view.nodes[path].children:
                hdr, txn = self.hdr(OpCode.ERROR), ErrorTxn(Err.NOTEMPTY)
            else:
                kind = OpCode.DELETE_CONTAINER if rnd.random() < 0.2 else OpCode.DELETE
                hdr, txn = self.hdr(kind), DeleteTxn(path)
        elif op == "set":
            path = rnd.choice([*nodes, "/", "/zookeeper"])
            version = self.view.nodes[path].version + 1
            data = rnd.choice([None, b"", b"abc", b"\x00" * 9])
            hdr, txn = self.hdr(OpCode.SET_DATA), SetDataTxn(path, data, version)
        elif op == "acl":
            path = rnd.choice(nodes)
            version = self.view.nodes[path].aversion + 1
            hdr, txn = self.hdr(OpCode.SET_ACL), SetACLTxn(path, rnd.choice(ACLS), version)
        elif op == "session":
            hdr, txn = self.hdr(OpCode.CREATE_SESSION), CreateSessionTxn(rnd.randint(1, 60000))
        elif op == "close":
            mine = sorted(self.view.ephemerals(session))
            # Unlisted ephemerals are deleted too, in ZooKeeper in HashSet order: only the
            # tree comparison (no event order) lets the txn leave some out.
            listed = mine[: rnd.randint(0, len(mine))] if self.partial_close else mine
            hdr, txn = self.hdr(OpCode.CLOSE_SESSION, session), CloseSessionTxn(tuple(listed))
        elif op == "error":
            hdr, txn = self.hdr(OpCode.ERROR), ErrorTxn(rnd.choice([-101, -103, -110, -111]))
        elif op in ("multi", "badmulti"):
            sub = self.create_sub(session, in_multi=True)
            if sub is None:
                return
            new = sub[1].path
            subs: list[tuple[int, Any]] = [
                sub,
                (OpCode.CHECK, CheckVersionTxn(new, 0)),
                (OpCode.SET_DATA, SetDataTxn(new, b"m", 1)),
            ]
            if op == "badmulti":
                cut = rnd.randint(0, len(subs) - 1)
                subs = subs[:cut] + [(OpCode.ERROR, ErrorTxn(Err.BADVERSION))]
                subs += [(OpCode.ERROR, ErrorTxn(Err.RUNTIMEINCONSISTENCY))] * rnd.randint(0, 2)
            hdr, txn = self.hdr(OpCode.MULTI, session), encode_sub_txns(subs)
        elif op == "quota":
            # A quota on an existing user node, as zkCli's setquota builds it.
            target = rnd.choice(nodes)
            base = "/zookeeper/quota" + target
            chain = []
            p = base
            while p not in self.view.nodes:
                chain.append(p)
                p = p.rsplit("/", 1)[0]
            for path in reversed([base + "/zookeeper_stats", base + "/zookeeper_limits"]):
                chain.insert(0, path)
            for path in reversed(chain):
                if path in self.view.nodes:
                    continue
                parent = self.view.nodes.get(path.rsplit("/", 1)[0])
                if parent is None or parent.ephemeral_owner:
                    return
                data = b"count=5,bytes=50" if path.endswith("limits") else b"count=0,bytes=0"
                hdr = self.hdr(OpCode.CREATE, session)
                self.emit(hdr, CreateTxn(path, data, OPEN_ACL_UNSAFE, False, parent.cversion + 1))
            return
        else:  # replay an earlier txn, as recovery over a fuzzy snapshot does
            if not self.log:
                return
            hdr, txn = rnd.choice(self.log)
            if hdr.type == OpCode.MULTI and self.zookeeper_38:
                return  # its creates could hit the 3.8/3.9 ACL difference
            if hdr.type == OpCode.CLOSE_SESSION and not self.partial_close:
                return  # it may leave ephemerals unlisted (see above)
            path = getattr(txn, "path", None)
            if isinstance(txn, CreateTxn | CreateContainerTxn | CreateTTLTxn):
                node = self.view.nodes.get(path or "")
                if node is not None and node.acl != txn.acl and self.zookeeper_38:
                    return  # 3.8 and 3.9 differ here (see the module docstring)
        self.emit(hdr, txn)

    def emit(self, hdr: TxnHeader, txn: Any) -> None:
        self.log.append((hdr, txn))
        res = self.view.apply_txn(hdr, txn)
        if self.on_apply is not None:
            self.on_apply(hdr, txn, res)


def frame(hdr: TxnHeader, txn: Any) -> bytes:
    body = jute.encode(hdr) + jute.encode(txn)
    return struct.pack(">i", len(body)) + body


def our_lines(log: list[tuple[TxnHeader, Any]]) -> list[str]:
    tree = DataTree()
    lines = []
    for hdr, txn in log:
        res = tree.apply_txn(hdr, txn)
        line = f"R {int(res.err)}"
        if hdr.type == OpCode.MULTI:
            line += "".join(f" {r.type}:{int(r.err)}" for r in res.multi)
        lines.append(line)
    for path, node in sorted(tree.iter_preorder()):
        st = node.stat()
        fields = [
            st.czxid,
            st.mzxid,
            st.ctime,
            st.mtime,
            st.version,
            st.cversion,
            st.aversion,
            st.ephemeral_owner,
            st.data_length,
            st.num_children,
            st.pzxid,
            node.ephemeral_owner,
            node.cversion,
        ]
        data = "null" if node.data is None else "x" + node.data.hex()
        acl = "".join(f"{a.perms}:{a.id.scheme}:{a.id.id}," for a in node.acl)
        lines.append(f"N {path} {' '.join(map(str, fields))} {data} {acl}")
    lines.append(f"COUNT {tree.count_nodes()} {tree.approximate_data_size()}")
    eph = tree.ephemerals_by_session()
    for sid in sorted(eph):
        lines.append(f"E {sid} {' '.join(sorted(eph[sid]))}")
    lines.append(f"C {' '.join(sorted(tree.containers()))}")
    lines.append(f"T {' '.join(sorted(tree.ttl_nodes()))}")
    return lines


def _sorted_nodes(lines: list[str]) -> list[str]:
    # Java dumps depth-first with sorted children; compare node lines as a sorted block.
    nodes = sorted(line for line in lines if line.startswith("N "))
    return [line for line in lines if not line.startswith("N ")] + nodes


def _compare_trees(harness: list[str], gen: Generator) -> None:
    for _ in range(400):
        gen.step()
    stream = b"".join(frame(h, t) for h, t in gen.log)
    proc = subprocess.run(harness, input=stream, capture_output=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    theirs = proc.stdout.decode().splitlines()
    ours = our_lines(gen.log)
    for i, (a, b) in enumerate(zip(ours, theirs, strict=False)):
        if a.startswith("R ") and a != b:
            raise AssertionError(f"txn {i}: {gen.log[i]}\n ours:   {a}\n theirs: {b}")
    assert _sorted_nodes(ours) == _sorted_nodes(theirs)


@pytest.mark.parametrize("seed", range(6))
def test_same_results_and_tree_as_zookeeper_3_8(harness: list[str], seed: int) -> None:
    _compare_trees(harness, Generator(random.Random(seed)))


@pytest.mark.parametrize("seed", range(6))
def test_same_results_and_tree_as_zookeeper_3_9(harness_39: list[str], seed: int) -> None:
    _compare_trees(harness_39, Generator(random.Random(500 + seed), zookeeper_38=False))


# --- watches, against ZooKeeper 3.9.5's DataTree and WatchManager ---

MIRROR = Path("/work/.mirror/apache+zookeeper/repo")
TAG = "release-3.9.5"
SOURCES = [
    "org/apache/zookeeper/Watcher.java",
    "org/apache/zookeeper/server/DataTree.java",
    "org/apache/zookeeper/server/DataNode.java",
    "org/apache/zookeeper/server/ServerWatcher.java",
    "org/apache/zookeeper/server/watch/WatchManager.java",
    "org/apache/zookeeper/server/watch/WatchStats.java",
    "org/apache/zookeeper/server/watch/WatcherMode.java",
    "org/apache/zookeeper/server/watch/PathParentIterator.java",
    "org/apache/zookeeper/server/watch/IWatchManager.java",
    "org/apache/zookeeper/server/watch/WatcherOrBitSet.java",
]
# Source edits so 3.9.5's classes compile against Debian's 3.8 jars (for what we use, the
# behaviour is unchanged: stat copies for snapshots, a zxid on WatchedEvent we do not read).
PATCHES = [
    ("to.copyFrom(from);", ""),
    ("statCopy.copyFrom(node.stat);", ""),
    ("!ZooKeeperServer.isSerializeLastProcessedZxidEnabled()", "true"),
    (
        "new WatchedEvent(type, KeeperState.SyncConnected, path, zxid)",
        "new WatchedEvent(type, KeeperState.SyncConnected, path)",
    ),
]

WATCH_HARNESS = r"""
import java.io.*;
import java.util.*;
import org.apache.zookeeper.WatchedEvent;
import org.apache.zookeeper.Watcher;
import org.apache.zookeeper.data.ACL;
import org.apache.zookeeper.data.Stat;
import org.apache.zookeeper.server.DataTree;
import org.apache.zookeeper.server.ServerWatcher;
import org.apache.zookeeper.server.TxnLogEntry;
import org.apache.zookeeper.server.util.SerializeUtils;

public class WatchHarness {
    static PrintStream out;

    static final class W implements ServerWatcher {
        final int id;
        W(int id) { this.id = id; }
        public void process(WatchedEvent e) { process(e, null); }
        public void process(WatchedEvent e, List<ACL> acl) {
            StringBuilder sb = new StringBuilder("V ").append(id).append(' ')
                .append(e.getType().getIntValue()).append(' ').append(e.getPath()).append(' ');
            if (acl != null) {
                for (ACL a : acl) {
                    sb.append(a.getPerms()).append(':').append(a.getId().getScheme())
                      .append(':').append(a.getId().getId()).append(',');
                }
            }
            out.println(sb);
        }
    }

    static List<String> list(String s) {
        return s.equals("-") ? new ArrayList<>() : new ArrayList<>(Arrays.asList(s.split(",")));
    }

    public static void main(String[] args) throws Exception {
        out = new PrintStream(new BufferedOutputStream(System.out), false, "UTF-8");
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, "UTF-8"));
        DataTree dt = new DataTree();
        Map<Integer, W> ws = new HashMap<>();
        String line;
        while ((line = in.readLine()) != null) {
            String[] p = line.split(" ");
            W w = null;
            if (!p[0].equals("T")) {
                w = ws.computeIfAbsent(Integer.parseInt(p[1]), W::new);
            }
            switch (p[0]) {
            case "T": {
                byte[] buf = new byte[p[1].length() / 2];
                for (int i = 0; i < buf.length; i++) {
                    buf[i] = (byte) Integer.parseInt(p[1].substring(2 * i, 2 * i + 2), 16);
                }
                TxnLogEntry e = SerializeUtils.deserializeTxn(buf);
                DataTree.ProcessTxnResult rc = dt.processTxn(e.getHeader(), e.getTxn());
                out.println("R " + rc.err);
                break;
            }
            case "A": {
                try {
                    switch (p[3]) {
                    case "data": dt.getData(p[2], new Stat(), w); break;
                    case "exist": dt.statNode(p[2], w); break;
                    case "child": dt.getChildren(p[2], null, w); break;
                    case "persistent": dt.addWatch(p[2], w, 0); break;
                    default: dt.addWatch(p[2], w, 1); break;
                    }
                } catch (Exception ex) {
                    // NoNode: the server answers the error, nothing else happens
                }
                out.println("A");
                break;
            }
            case "X": {
                Watcher.WatcherType t = Watcher.WatcherType.fromInt(Integer.parseInt(p[3]));
                boolean has = dt.containsWatcher(p[2], t, w);
                out.println("X " + has + " " + dt.removeWatch(p[2], t, w));
                break;
            }
            case "D":
                dt.removeCnxn(w);
                out.println("D");
                break;
            case "S":
                dt.setWatches(Long.parseLong(p[2]), list(p[3]), list(p[4]), list(p[5]),
                    list(p[6]), list(p[7]), w);
                out.println("S");
                break;
            default:
                out.println("C " + dt.getWatchCount() + " "
                    + dt.getWatchesSummary().getNumConnections() + " "
                    + dt.getWatchesSummary().getNumPaths() + " "
                    + dt.getWatchesSummary().getTotalWatches());
                break;
            }
        }
        out.flush();
    }
}
"""


@pytest.fixture(scope="module")
def zookeeper_39(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """ZooKeeper 3.9.5's DataTree and watch classes, compiled over Debian's 3.8 jars.

    Returns (work dir, classpath with the 3.9.5 classes first).
    """
    javac, git = shutil.which("javac"), shutil.which("git")
    jars = [JAVA_DIR / j for j in JARS]
    if not javac or not shutil.which("java") or not git or not all(j.exists() for j in jars):
        pytest.skip("needs javac/java, git and Debian's ZooKeeper jars")
    if not MIRROR.exists():
        pytest.skip(f"needs ZooKeeper's sources at {MIRROR}")
    work = tmp_path_factory.mktemp("zookeeper39")
    base = "zookeeper-server/src/main/java/"
    for rel in SOURCES:
        text = subprocess.run(
            [git, "-C", str(MIRROR), "show", f"{TAG}:{base}{rel}"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        for old, new in PATCHES:
            text = text.replace(old, new)
        (work / "src" / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / "src" / rel).write_text(text)
    (work / "WatchHarness.java").write_text(WATCH_HARNESS)
    (work / "TreeHarness.java").write_text(HARNESS)
    cp = ":".join(str(j) for j in jars)
    out = work / "classes"
    files = [str(p) for p in (work / "src").rglob("*.java")]
    files += [str(work / "WatchHarness.java"), str(work / "TreeHarness.java")]
    subprocess.run([javac, "-nowarn", "-d", str(out), "-cp", cp, *files], check=True, timeout=300)
    return work, f"{out}:{cp}"


@pytest.fixture(scope="module")
def watch_harness(zookeeper_39: tuple[Path, str]) -> list[str]:
    java = shutil.which("java") or "java"
    return [java, "-Dzookeeper.extendedTypesEnabled=true", "-cp", zookeeper_39[1], "WatchHarness"]


@pytest.fixture(scope="module")
def harness_39(zookeeper_39: tuple[Path, str]) -> list[str]:
    java = shutil.which("java") or "java"
    return [java, "-Dzookeeper.extendedTypesEnabled=true", "-cp", zookeeper_39[1], "TreeHarness"]


KINDS = {
    "data": WatchKind.DATA,
    "exist": WatchKind.EXIST,
    "child": WatchKind.CHILD,
    "persistent": WatchKind.PERSISTENT,
    "recursive": WatchKind.PERSISTENT_RECURSIVE,
}


def _event_lines(events: Any) -> list[str]:
    return [
        f"V {e.watcher} {int(e.type)} {e.path} "
        + "".join(f"{a.perms}:{a.id.scheme}:{a.id.id}," for a in e.acl)
        for e in events
    ]


def _canonical(lines: list[str]) -> list[str]:
    """Events of one command sorted by watcher: ZooKeeper notifies a HashSet in any order,
    and a watcher's own events keep their order under a stable sort."""
    out: list[str] = []
    block: list[str] = []
    for line in lines:
        if line.startswith("V "):
            block.append(line)
            continue
        out += sorted(block, key=lambda v: int(v.split(" ")[1]))
        block = []
        out.append(line)
    return out + sorted(block, key=lambda v: int(v.split(" ")[1]))


@pytest.mark.parametrize("seed", range(6))
def test_same_watch_events_as_zookeeper_3_9(watch_harness: list[str], seed: int) -> None:
    rnd = random.Random(1000 + seed)
    gen = Generator(rnd, zookeeper_38=False)
    gen.partial_close = False
    tree = gen.view
    commands: list[str] = []
    ours: list[str] = []

    def applied(hdr: TxnHeader, txn: Any, res: Any) -> None:
        commands.append("T " + (jute.encode(hdr) + jute.encode(txn)).hex())
        ours.extend([*_event_lines(res.events), f"R {int(res.err)}"])

    gen.on_apply = applied
    watchers = [1, 2, 3]
    for _ in range(600):
        op = rnd.choice(
            ["txn", "txn", "txn", "add", "add", "add", "remove", "gone", "set", "count"]
        )
        candidates = ["/", *gen.user_nodes(), "/a", "/b/c", "/a/b"]
        w = rnd.choice(watchers)
        if op == "txn":
            gen.step()
        elif op == "add":
            path, kind = rnd.choice(candidates), rnd.choice(list(KINDS))
            commands.append(f"A {w} {path} {kind}")
            # getData and getChildren fail with NONODE before arming anything.
            if kind not in ("data", "child") or path in tree.nodes:
                tree.watches.add(path, w, KINDS[kind])
            ours.append("A")
        elif op == "remove":
            path, wtype = rnd.choice(candidates), rnd.choice(list(WatcherType))
            commands.append(f"X {w} {path} {int(wtype)}")
            has = tree.watches.has(path, w, wtype)
            removed = tree.watches.remove(path, w, wtype)
            ours.append(f"X {str(has).lower()} {str(removed).lower()}")
        elif op == "gone":
            commands.append(f"D {w}")
            tree.watches.remove_watcher(w)
            ours.append("D")
        elif op == "set":
            lists = [rnd.sample(candidates, rnd.randint(0, 3)) for _ in range(5)]
            relative = rnd.randint(0, gen.zxid)
            commands.append(
                f"S {w} {relative} " + " ".join(",".join(ps) if ps else "-" for ps in lists)
            )
            ours.extend([*_event_lines(tree.watches.set_watches(w, relative, *lists)), "S"])
        else:
            s = tree.watches.summary()
            commands.append("C 0")
            ours.append(f"C {tree.watches.watch_count()} {s.connections} {s.paths} {s.watches}")
    stdin = ("\n".join(commands) + "\n").encode()
    proc = subprocess.run(watch_harness, input=stdin, capture_output=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    theirs = _canonical(proc.stdout.decode().splitlines())
    mine = _canonical(ours)
    for i, (a, b) in enumerate(zip(mine, theirs, strict=False)):
        assert a == b, f"line {i}: ours {a!r} theirs {b!r}\n" + "\n".join(mine[max(0, i - 8) : i])
    assert len(mine) == len(theirs)
