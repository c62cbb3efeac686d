"""Reconfig's pure parts: server statements and config text, the leader's checks
(quorum/reconfig.py) and prep (server/prep_reconfig.py), with ZooKeeper's errors and order."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.config import parse_config
from corral.proto.codes import Err, OpCode, Perm
from corral.proto.records import ACL, Id, ReconfigRequest, SetDataTxn
from corral.quorum.reconfig import ReconfigAsk, plan_reconfig
from corral.quorum.verifier import (
    ConfigTextError,
    QuorumServer,
    QuorumVerifier,
    dynamic_file_text,
    parse_server_spec,
)
from corral.server.acl import AuthIds
from corral.server.pending import PendingChanges
from corral.server.prep import PrepConfig, prep_write
from corral.store.dynamic_config import (
    read_next_config,
    remove_next_config,
    write_active_config,
    write_next_config,
)
from corral.tree.datatree import DataTree

H = "127.0.0.1"


def server(sid: int, role: str = "participant", base: int = 10) -> str:
    return f"server.{sid}={H}:{base * 1000 + sid}:{base * 1000 + 100 + sid}:{role};{H}:{2180 + sid}"


def three(version: int = 0x100000000) -> QuorumVerifier:
    return QuorumVerifier.from_config_string(
        "\n".join(server(s) for s in (1, 2, 3)) + f"\nversion={version:x}"
    )


def plan(ask: ReconfigAsk, *, synced: bool = True, standalone: bool = True, seen=None):  # type: ignore[no-untyped-def]
    active = three()
    return plan_reconfig(
        ask,
        0x100000005,
        active=active,
        last_seen=seen or active,
        standalone_enabled=standalone,
        quorum_synced=lambda v: synced,
    )


# -- server statements and text --------------------------------------------------------------


def test_server_spec_as_quorum_server_reads_it() -> None:
    s = parse_server_spec(5, "h:1:2;3")
    assert s == QuorumServer(5, "h", 1, 2, observer=False, client=("0.0.0.0", 3))
    assert parse_server_spec(5, "h:1:2:observer;h:3").config_value() == "h:1:2:observer;h:3"
    assert (
        parse_server_spec(5, "[::1]:1:2;[::1]:3").config_value() == "[::1]:1:2:participant;[::1]:3"
    )
    assert parse_server_spec(5, "h:1:2").client is None
    for bad in (
        "h:1",
        "h:1:2:3:4",
        "h:1:1;3",
        "h:x:2;3",
        "h:1:2:boss;3",
        "a:1:2|b:3:4;5",
        "h:1:2;a:b:c",
    ):
        with pytest.raises(ConfigTextError):
            parse_server_spec(5, bad)


def test_config_text_and_dynamic_file() -> None:
    v = QuorumVerifier.from_config_string(f"{server(2)}\n{server(10, 'observer')}\nversion=1f")
    assert v.config_string() == f"{server(2)}\n{server(10, 'observer')}\nversion=1f"
    # writeDynamicConfig sorts the lines as strings and leaves the version to the file name.
    assert dynamic_file_text(v) == f"{server(10, 'observer')}\n{server(2)}"
    assert dynamic_file_text(v, keep_version=True).endswith("\nversion=1f")


def test_dynamic_file_version_comes_from_its_name(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "myid").write_text("1\n")
    dyn = tmp_path / "zoo.cfg.dynamic.10000002d"
    dyn.write_text("\n".join(server(s) for s in (1, 2, 3)))
    cfg = {"tickTime": "2000", "dataDir": str(data), "dynamicConfigFile": str(dyn)}
    config = parse_config(cfg, {})
    assert config.ensemble.config_version == 0x10000002D
    assert config.client_port == 2181
    plain = tmp_path / "zoo.cfg.dynamic"
    plain.write_text(dyn.read_text())
    assert parse_config({**cfg, "dynamicConfigFile": str(plain)}, {}).ensemble.config_version == 0


def test_dynamic_files_written_as_zookeeper_writes_them(tmp_path: Path) -> None:
    cfg = tmp_path / "zoo.cfg"
    cfg.write_text(
        "tickTime=2000\nclientPort=2181\npeerType=participant\n"
        + "\n".join(server(s) for s in (1, 2, 3))
        + "\n"
    )
    v = three(0x100000000)
    path = write_active_config(cfg, v, 1)
    assert path == tmp_path / "zoo.cfg.dynamic.100000000"
    assert path.read_text() == dynamic_file_text(v)
    assert (tmp_path / "zoo.cfg.bak").read_text().count("server.") == 3
    # Our line carries the client address, so clientPort leaves zoo.cfg with the servers.
    assert cfg.read_text() == f"tickTime=2000\ndynamicConfigFile={path.resolve()}\n"
    again = write_active_config(cfg, v.with_version(0x100000009), 1)
    assert cfg.read_text() == f"tickTime=2000\ndynamicConfigFile={again.resolve()}\n"
    assert path.exists()  # older versions are kept
    write_next_config(cfg, v.with_version(0x10000000A))
    got = read_next_config(cfg)
    assert got is not None and got.version == 0x10000000A and got.same_members(v)
    remove_next_config(cfg)
    assert read_next_config(cfg) is None


# -- the leader's checks ---------------------------------------------------------------------


def test_incremental_add_and_remove() -> None:
    p = plan(ReconfigAsk(joining=server(4, "observer"), leaving="3"))
    assert p.err is Err.OK and p.verifier is not None
    assert p.verifier.version == 0x100000005
    assert sorted(p.verifier.voters) == [1, 2] and sorted(p.verifier.observers) == [4]
    # `N=` is shorthand for `server.N=`; re-adding with new parameters updates a server.
    p = plan(ReconfigAsk(joining=f"2={H}:20002:20102:observer;{H}:2182"))
    assert p.verifier is not None and sorted(p.verifier.observers) == [2]


def test_bulk_members() -> None:
    members = ",".join([server(1), server(2), server(5, "observer")]) + ",version=99"
    p = plan(ReconfigAsk(new_members=members))
    assert p.err is Err.OK and p.verifier is not None
    assert p.verifier.version == 0x100000005
    assert [s.sid for s in p.verifier.servers] == [1, 2, 5]
    p = plan(ReconfigAsk(new_members="\n".join([server(1), server(2)])))
    assert p.err is Err.OK


@pytest.mark.parametrize(
    ("ask", "err"),
    [
        (ReconfigAsk(leaving="3", cur_config_id=0x100000001), Err.BADVERSION),
        (ReconfigAsk(joining="server.9=nonsense"), Err.BADARGUMENTS),
        (ReconfigAsk(joining=f"server.9={H}:1:2"), Err.BADARGUMENTS),  # no client port
        (ReconfigAsk(joining="server.9"), Err.BADARGUMENTS),
        (ReconfigAsk(joining=f"server.9={H}:10001:9:participant;{H}:9"), Err.BADARGUMENTS),
        (ReconfigAsk(leaving="2,3"), Err.BADARGUMENTS),  # one voter left (standaloneEnabled)
        (ReconfigAsk(leaving="x"), Err.MARSHALLINGERROR),  # NumberFormatException escapes
        (ReconfigAsk(joining=f"server.x={H}:1:2;3"), Err.MARSHALLINGERROR),
        (ReconfigAsk(new_members=f"foo=1,{server(1)}"), Err.BADARGUMENTS),
        (ReconfigAsk(new_members=f"{server(1)},group.1=1:2"), Err.BADARGUMENTS),
        (ReconfigAsk(new_members=server(1, "observer")), Err.MARSHALLINGERROR),
        (ReconfigAsk(new_members=f"{server(1)},{server(2, 'observer')}"), Err.MARSHALLINGERROR),
        (ReconfigAsk(new_members=server(1)), Err.BADARGUMENTS),
    ],
)
def test_errors(ask: ReconfigAsk, err: Err) -> None:
    assert plan(ask).err is err


def test_error_order_and_quorum() -> None:
    pending = three().with_version(0x100000003)
    # In progress beats a bad version and bad arguments.
    assert (
        plan(ReconfigAsk(joining="x", cur_config_id=7), seen=pending).err is Err.RECONFIGINPROGRESS
    )
    assert plan(ReconfigAsk(joining="x", cur_config_id=7)).err is Err.BADVERSION
    assert plan(ReconfigAsk(leaving="3"), synced=False).err is Err.NEWCONFIGNOQUORUM
    assert plan(ReconfigAsk(leaving="2,3"), synced=False).err is Err.BADARGUMENTS
    # Without standaloneEnabled one voter is enough.
    assert plan(ReconfigAsk(leaving="2,3"), standalone=False).err is Err.OK
    assert plan(ReconfigAsk(leaving="1,2,3"), standalone=False).err is Err.BADARGUMENTS
    assert plan(ReconfigAsk(cur_config_id=0x100000000)).err is Err.OK


# -- prep ------------------------------------------------------------------------------------


def _prep(config: PrepConfig, *, auth: AuthIds | None = None, session_error: Err = Err.OK):  # type: ignore[no-untyped-def]
    tree = DataTree()
    req = ReconfigRequest("", "3", "", -1)
    return prep_write(
        tree,
        PendingChanges(),
        OpCode.RECONFIG,
        req,
        session_id=5,
        cxid=1,
        zxid=0x100000007,
        time_ms=1,
        auth=auth or AuthIds(),
        config=config,
        session_error=session_error,
    )


def _planner(err: int, text: bytes = b"server.1=a:1:2:participant\nversion=1"):  # type: ignore[no-untyped-def]
    calls: list[tuple[ReconfigRequest, int]] = []

    def planner(req: ReconfigRequest, zxid: int) -> tuple[int, bytes]:
        calls.append((req, zxid))
        return err, text

    return planner, calls


def test_prep_disabled_standalone_and_session() -> None:
    hdr, txn = _prep(PrepConfig())
    assert (hdr.type, txn) == (OpCode.ERROR, txn) and txn.err == Err.RECONFIGDISABLED  # type: ignore[union-attr]
    hdr, txn = _prep(PrepConfig(reconfig_enabled=True), session_error=Err.SESSIONEXPIRED)
    assert txn.err == Err.SESSIONEXPIRED  # type: ignore[union-attr]
    hdr, txn = _prep(PrepConfig(reconfig_enabled=True))
    assert txn.err == Err.UNIMPLEMENTED  # type: ignore[union-attr]


def test_prep_planner_errors_then_acl() -> None:
    planner, calls = _planner(int(Err.BADVERSION))
    _, txn = _prep(PrepConfig(reconfig_enabled=True, reconfig=planner))
    assert txn.err == Err.BADVERSION and calls[0][1] == 0x100000007  # type: ignore[union-attr]
    planner, _ = _planner(int(Err.MARSHALLINGERROR))
    _, txn = _prep(PrepConfig(reconfig_enabled=True, reconfig=planner))
    assert txn.err == Err.MARSHALLINGERROR  # type: ignore[union-attr]
    # The ACL check comes last: without WRITE on /zookeeper/config (super only), NOAUTH.
    planner, _ = _planner(0)
    _, txn = _prep(PrepConfig(reconfig_enabled=True, reconfig=planner))
    assert txn.err == Err.NOAUTH  # type: ignore[union-attr]


def test_prep_success_is_a_setdata_of_the_config_node() -> None:
    planner, _ = _planner(0, b"server.1=a:1:2:participant\nversion=100000007")
    hdr, txn = _prep(PrepConfig(reconfig_enabled=True, reconfig=planner, skip_acl=True))
    assert hdr.type == OpCode.RECONFIG
    assert txn == SetDataTxn(
        "/zookeeper/config", b"server.1=a:1:2:participant\nversion=100000007", -1
    )
    tree = DataTree()
    res = tree.apply_txn(hdr, txn)
    node = tree.nodes["/zookeeper/config"]
    assert res.stat is not None and res.stat.version == -1 and node.mzxid == 0x100000007


def test_prep_with_write_on_the_config_node() -> None:
    planner, _ = _planner(0)
    tree = DataTree()
    who = Id("digest", "admin:x")
    tree.nodes["/zookeeper/config"].acl = (ACL(int(Perm.WRITE | Perm.READ), who),)
    hdr, _ = prep_write(
        tree,
        PendingChanges(),
        OpCode.RECONFIG,
        ReconfigRequest("", "3", "", -1),
        session_id=5,
        cxid=1,
        zxid=9,
        time_ms=1,
        auth=AuthIds.of((who,)),
        config=PrepConfig(reconfig_enabled=True, reconfig=planner),
    )
    assert hdr.type == OpCode.RECONFIG


def test_init_config_node() -> None:
    tree = DataTree()
    text = three(0).config_string().encode()
    tree.init_config(text, 0, 123)
    node = tree.nodes["/zookeeper/config"]
    assert (node.data, node.version, node.mzxid, node.mtime) == (text, -1, 0, 123)
    assert tree.last_zxid == 0
