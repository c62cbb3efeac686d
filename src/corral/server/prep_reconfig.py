"""Prep of a reconfig request (PrepRequestProcessor's reconfig case, the server's half).

In ZooKeeper's order: RECONFIGDISABLED without `reconfigEnabled`; the session check;
UNIMPLEMENTED where no leader can reconfigure (standalone); then the leader's planner
(quorum/reconfig.py, reached through `PrepConfig.reconfig`, since server/ may not import
quorum/) answers RECONFIGINPROGRESS, BADVERSION, BADARGUMENTS, MARSHALLINGERROR or
NEWCONFIGNOQUORUM, or gives the new config's text; last comes WRITE on /zookeeper/config
(NOAUTH; skipACL skips it), so an unauthorised client learns the other errors first, as in
ZooKeeper.

The txn is a RECONFIG-typed SetDataTxn of /zookeeper/config holding the new config's text,
with version -1 (the node's data version stays -1, as ZooKeeper keeps it).
"""

from __future__ import annotations

from corral.proto.codes import Err, OpCode, Perm
from corral.proto.records import ReconfigRequest, SetDataTxn
from corral.server.pending import ChangeRecord
from corral.server.prep_ops import MarshallingError, OpContext, PrepError
from corral.tree.quota import CONFIG_PATH

__all__ = ["prep_reconfig"]

_RECONFIG = int(OpCode.RECONFIG)


def prep_reconfig(ctx: OpContext, req: ReconfigRequest) -> tuple[int, SetDataTxn]:
    """The reconfig txn, or PrepError/MarshallingError with ZooKeeper's answer."""
    if not ctx.config.reconfig_enabled:
        raise PrepError(Err.RECONFIGDISABLED)
    ctx.check_session()
    planner = ctx.config.reconfig
    if planner is None:
        # A standalone server cannot reconfigure.
        raise PrepError(Err.UNIMPLEMENTED)
    err, text = planner(req, ctx.zxid)
    if err == Err.MARSHALLINGERROR:
        raise MarshallingError("reconfig request ZooKeeper fails with an unchecked exception")
    if err:
        raise PrepError(Err(err))
    node = ctx.get(CONFIG_PATH)
    ctx.require(node.acl, Perm.WRITE)
    rec = ChangeRecord.copy_of(node, CONFIG_PATH, ctx.zxid)
    rec.version = -1
    rec.data = text
    ctx.view.add(rec)
    return _RECONFIG, SetDataTxn(CONFIG_PATH, text, -1)
