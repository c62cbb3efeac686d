"""Requests answered from the tree without a txn (FinalRequestProcessor's read side).

Each handler gets the whole frame (RequestHeader + body) and returns the complete reply
frame. A body that does not decode raises DecodeError, and so does an op that is not a read
(the core routes an undecodable write here): the core answers MARSHALLINGERROR.
ACL checks follow ZooKeeper 3.9: READ for exists (3.9.2+), getData, getChildren(2),
getAllChildrenNumber; READ or ADMIN for getACL (digest ids masked without ADMIN); none for
sync, ping, watch management, getEphemerals and whoAmI.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from corral.proto import jute
from corral.proto.codes import AddWatchMode, Err, OpCode, Perm, WatcherType
from corral.proto.jute import DecodeError
from corral.proto.records import (
    ACL,
    AddWatchRequest,
    CheckWatchesRequest,
    ClientInfo,
    ErrorResponse,
    ExistsRequest,
    GetACLRequest,
    GetACLResponse,
    GetAllChildrenNumberRequest,
    GetAllChildrenNumberResponse,
    GetChildrenRequest,
    GetDataRequest,
    GetDataResponse,
    GetEphemeralsRequest,
    GetEphemeralsResponse,
    Id,
    RemoveWatchesRequest,
    SetWatches,
    SetWatches2,
    SyncRequest,
    SyncResponse,
    WhoAmIResponse,
)
from corral.server import acl
from corral.server.replies import (
    data_stat_frame,
    decode_multi,
    header_frame,
    multi_header,
    raw_frame,
    record_frame,
)
from corral.tree.watches import WatchEvent, WatchKind
from corral.tree.znode import ZNode

if TYPE_CHECKING:
    from corral.server.connection import Connection
    from corral.tree.datatree import DataTree

_NOAUTH = int(Err.NOAUTH)
_NONODE = int(Err.NONODE)
_READ = int(Perm.READ)


def _lookup(tree: DataTree, path: str) -> ZNode | None:
    """The node at `path`. ZooKeeper's tree also keeps the root under "", so reads of ""
    answer for "/" there; we match that here rather than storing the root twice."""
    node = tree.nodes.get(path)
    if node is None and path == "":
        return tree.nodes.get("/")
    return node


def user_of(ident: Id) -> str:
    """AuthUtil.getUser: the provider's user name for an id ("" without a provider)."""
    if ident.scheme == "digest":
        return ident.id.split(":", 1)[0]
    if ident.scheme in ("ip", "sasl", "x509"):
        return ident.id
    return ""


class Reads:
    """The read handlers, bound to one tree and the server's ACL settings."""

    def __init__(self, tree: DataTree, skip_acl: bool, providers: acl.AuthProviders) -> None:
        self.tree = tree
        self.skip_acl = skip_acl
        self.providers = providers
        # Events a setWatches produced; the core delivers them before the reply.
        self.events: list[WatchEvent] = []

    def _allowed(self, node_acl: tuple[ACL, ...], perm: int, auth: acl.AuthIds) -> bool:
        return acl.check(node_acl, perm, auth, self.skip_acl, self.providers)

    def answer(self, conn: Connection, xid: int, op: int, frame: bytes, auth: acl.AuthIds) -> bytes:
        """The reply frame to a read request (the header already split into xid, op).

        `auth` is the connection's auth ids when the request arrived (ZooKeeper captures
        them in the Request), which an auth packet answered meanwhile does not change.
        """
        tree = self.tree
        if op == OpCode.GET_DATA:
            req, _ = jute.decode(GetDataRequest, frame, 8)
            path = req.path
            node = tree.nodes.get(path)
            if node is None:
                node = _lookup(tree, path)  # only "" finds something here
                if node is None:
                    return header_frame(xid, tree.last_zxid, _NONODE)
            if node.acl and not self._allowed(node.acl, _READ, auth):
                return header_frame(xid, tree.last_zxid, _NOAUTH)
            if req.watch:
                tree.watches.add(path, conn.conn_id, WatchKind.DATA)
            return data_stat_frame(xid, tree.last_zxid, node.data, node.stat_bytes())
        if op == OpCode.EXISTS:
            ereq, _ = jute.decode(ExistsRequest, frame, 8)
            path = ereq.path
            if "\x00" in path:
                return header_frame(xid, tree.last_zxid, int(Err.BADARGUMENTS))
            node = tree.nodes.get(path)
            if node is None:
                node = _lookup(tree, path)  # only "" finds something here
            if node is None:
                # The watch is armed even though the node is missing (fires NodeCreated).
                if ereq.watch:
                    tree.watches.add(path, conn.conn_id, WatchKind.EXIST)
                return header_frame(xid, tree.last_zxid, _NONODE)
            if node.acl and not self._allowed(node.acl, _READ, auth):
                return header_frame(xid, tree.last_zxid, _NOAUTH)
            if ereq.watch:
                tree.watches.add(path, conn.conn_id, WatchKind.DATA)
            return raw_frame(xid, tree.last_zxid, 0, node.stat_bytes())
        if op == OpCode.PING:
            # ZooKeeper answers with the ping xid whatever the client sent.
            return header_frame(-2, tree.last_zxid, 0)
        handler = self._handlers.get(op)
        if handler is None:
            raise DecodeError(f"not a read op: {op}")
        return handler(self, conn, xid, frame, auth)

    # --- the less frequent reads ---

    def _children(
        self, conn: Connection, xid: int, frame: bytes, auth: acl.AuthIds, with_stat: bool
    ) -> bytes:
        # GetChildrenRequest and GetChildren2Request share one layout (path, watch).
        req, _ = jute.decode(GetChildrenRequest, frame, 8)
        tree = self.tree
        node = _lookup(tree, req.path)
        if node is None:
            return header_frame(xid, tree.last_zxid, _NONODE)
        if not self._allowed(node.acl, _READ, auth):
            return header_frame(xid, tree.last_zxid, _NOAUTH)
        if req.watch:
            tree.watches.add(req.path, conn.conn_id, WatchKind.CHILD)
        # The names' vector is kept encoded by the tree; GetChildren2Response adds the Stat.
        body = tree.children_bytes(req.path, node)
        if with_stat:
            body += node.stat_bytes()
        return raw_frame(xid, tree.last_zxid, 0, body)

    def _get_children(self, conn: Connection, xid: int, frame: bytes, auth: acl.AuthIds) -> bytes:
        return self._children(conn, xid, frame, auth, with_stat=False)

    def _get_children2(self, conn: Connection, xid: int, frame: bytes, auth: acl.AuthIds) -> bytes:
        return self._children(conn, xid, frame, auth, with_stat=True)

    def _get_acl(self, conn: Connection, xid: int, frame: bytes, auth: acl.AuthIds) -> bytes:
        req, _ = jute.decode(GetACLRequest, frame, 8)
        tree = self.tree
        node = _lookup(tree, req.path)
        if node is None:
            return header_frame(xid, tree.last_zxid, _NONODE)
        if not self._allowed(node.acl, _READ | int(Perm.ADMIN), auth):
            return header_frame(xid, tree.last_zxid, _NOAUTH)
        node_acl = node.acl
        if not self._allowed(node_acl, int(Perm.ADMIN), auth):
            node_acl = acl.mask_digests(node_acl)
        return record_frame(xid, tree.last_zxid, 0, GetACLResponse(node_acl, node.stat()))

    def _get_all_children_number(
        self, conn: Connection, xid: int, frame: bytes, auth: acl.AuthIds
    ) -> bytes:
        req, _ = jute.decode(GetAllChildrenNumberRequest, frame, 8)
        tree = self.tree
        node = _lookup(tree, req.path)
        if node is None:
            return header_frame(xid, tree.last_zxid, _NONODE)
        if not self._allowed(node.acl, _READ, auth):
            return header_frame(xid, tree.last_zxid, _NOAUTH)
        if req.path == "":
            # ZooKeeper counts the keys starting with path + "/": for "" that is every node,
            # the root included (verified against 3.8: one more than for "/").
            return record_frame(
                xid, tree.last_zxid, 0, GetAllChildrenNumberResponse(len(tree.nodes))
            )
        count = 0
        stack = [req.path]
        nodes = tree.nodes
        while stack:
            kids = nodes[stack.pop()].child_paths
            count += len(kids)
            stack.extend(k for k in kids if nodes[k].child_paths)
        return record_frame(xid, tree.last_zxid, 0, GetAllChildrenNumberResponse(count))

    def _get_ephemerals(self, conn: Connection, xid: int, frame: bytes, auth: acl.AuthIds) -> bytes:
        req, _ = jute.decode(GetEphemeralsRequest, frame, 8)
        prefix = req.prefix_path
        mine = self.tree.ephemerals(conn.session_id)
        if prefix.strip() in ("", "/"):
            found = sorted(mine)
        else:
            found = sorted(p for p in mine if p.startswith(prefix))
        return record_frame(xid, self.tree.last_zxid, 0, GetEphemeralsResponse(tuple(found)))

    def _sync(self, conn: Connection, xid: int, frame: bytes, auth: acl.AuthIds) -> bytes:
        req, _ = jute.decode(SyncRequest, frame, 8)
        return record_frame(xid, self.tree.last_zxid, 0, SyncResponse(req.path))

    def _who_am_i(self, conn: Connection, xid: int, frame: bytes, auth: acl.AuthIds) -> bytes:
        infos = tuple(ClientInfo(i.scheme, user_of(i)) for i in auth.ids)
        return record_frame(xid, self.tree.last_zxid, 0, WhoAmIResponse(infos))

    def _check_watches(self, conn: Connection, xid: int, frame: bytes, auth: acl.AuthIds) -> bytes:
        req, _ = jute.decode(CheckWatchesRequest, frame, 8)
        wtype = _watcher_type(req.type)
        found = self.tree.watches.has(req.path, conn.conn_id, wtype)
        return header_frame(xid, self.tree.last_zxid, 0 if found else int(Err.NOWATCHER))

    def _remove_watches(self, conn: Connection, xid: int, frame: bytes, auth: acl.AuthIds) -> bytes:
        req, _ = jute.decode(RemoveWatchesRequest, frame, 8)
        wtype = _watcher_type(req.type)
        removed = self.tree.watches.remove(req.path, conn.conn_id, wtype)
        return header_frame(xid, self.tree.last_zxid, 0 if removed else int(Err.NOWATCHER))

    def _add_watch(self, conn: Connection, xid: int, frame: bytes, auth: acl.AuthIds) -> bytes:
        req, _ = jute.decode(AddWatchRequest, frame, 8)
        if req.mode == AddWatchMode.PERSISTENT:
            kind = WatchKind.PERSISTENT
        elif req.mode == AddWatchMode.PERSISTENT_RECURSIVE:
            kind = WatchKind.PERSISTENT_RECURSIVE
        else:
            raise DecodeError(f"unsupported addWatch mode {req.mode}")
        self.tree.watches.add(req.path, conn.conn_id, kind)
        return record_frame(xid, self.tree.last_zxid, 0, ErrorResponse(0))

    def _set_watches(self, conn: Connection, xid: int, frame: bytes, auth: acl.AuthIds) -> bytes:
        req, _ = jute.decode(SetWatches, frame, 8)
        self.events = self.tree.watches.set_watches(
            conn.conn_id, req.relative_zxid, req.data_watches, req.exist_watches, req.child_watches
        )
        return header_frame(xid, self.tree.last_zxid, 0)

    def _set_watches2(self, conn: Connection, xid: int, frame: bytes, auth: acl.AuthIds) -> bytes:
        req, _ = jute.decode(SetWatches2, frame, 8)
        self.events = self.tree.watches.set_watches(
            conn.conn_id,
            req.relative_zxid,
            req.data_watches,
            req.exist_watches,
            req.child_watches,
            req.persistent_watches,
            req.persistent_recursive_watches,
        )
        return header_frame(xid, self.tree.last_zxid, 0)

    def _multi_read(self, conn: Connection, xid: int, frame: bytes, auth: acl.AuthIds) -> bytes:
        ops = decode_multi(frame, 8, read=True)
        tree = self.tree
        nodes = tree.nodes
        body = bytearray()
        for op, rec in ops:
            path: str = rec.path  # type: ignore[attr-defined]
            node = nodes.get(path)
            err = 0
            if node is None:
                err = _NONODE
            elif not self._allowed(node.acl, _READ, auth):
                err = _NOAUTH
            if err:
                multi_header(body, -1, False, err)
                jute.encode_into(body, ErrorResponse(err))
            elif node is not None and op == OpCode.GET_DATA:
                multi_header(body, op, False, 0)
                jute.encode_into(body, GetDataResponse(node.data, node.stat()))
            elif node is not None:
                multi_header(body, op, False, 0)
                body += tree.children_bytes(path, node)  # a GetChildrenResponse
        multi_header(body, -1, True, -1)
        return raw_frame(xid, tree.last_zxid, 0, body)

    _handlers: dict[int, Callable[[Reads, Connection, int, bytes, acl.AuthIds], bytes]] = {
        OpCode.GET_CHILDREN: _get_children,
        OpCode.GET_CHILDREN2: _get_children2,
        OpCode.GET_ACL: _get_acl,
        OpCode.GET_ALL_CHILDREN_NUMBER: _get_all_children_number,
        OpCode.GET_EPHEMERALS: _get_ephemerals,
        OpCode.SYNC: _sync,
        OpCode.WHO_AM_I: _who_am_i,
        OpCode.CHECK_WATCHES: _check_watches,
        OpCode.REMOVE_WATCHES: _remove_watches,
        OpCode.ADD_WATCH: _add_watch,
        OpCode.SET_WATCHES: _set_watches,
        OpCode.SET_WATCHES2: _set_watches2,
        OpCode.MULTI_READ: _multi_read,
    }


def _watcher_type(value: int) -> WatcherType:
    try:
        return WatcherType(value)
    except ValueError:
        raise DecodeError(f"invalid watcher type {value}") from None
