"""Every record of ZooKeeper's `zookeeper.jute`, declared once.

Each dataclass's fields, in order, are the jute field list (names in snake_case); the codec
in jute.py is derived from them. Vectors are tuples; a null buffer is None.
"""

from dataclasses import dataclass

from corral.proto.jute import Buffer, Int, Long, record

# --- Data records (org.apache.zookeeper.data) ---


@record
@dataclass(frozen=True, slots=True)
class Id:
    scheme: str
    id: str


@record
@dataclass(frozen=True, slots=True)
class ACL:
    perms: Int
    id: Id


@record
@dataclass(frozen=True, slots=True)
class Stat:
    czxid: Long
    mzxid: Long
    ctime: Long
    mtime: Long
    version: Int
    cversion: Int
    aversion: Int
    ephemeral_owner: Long
    data_length: Int
    num_children: Int
    pzxid: Long


@record
@dataclass(frozen=True, slots=True)
class StatPersisted:
    czxid: Long
    mzxid: Long
    ctime: Long
    mtime: Long
    version: Int
    cversion: Int
    aversion: Int
    ephemeral_owner: Long
    pzxid: Long


@record
@dataclass(frozen=True, slots=True)
class ClientInfo:
    auth_scheme: str
    user: str


# --- Client protocol (org.apache.zookeeper.proto) ---


@record
@dataclass(frozen=True, slots=True)
class ConnectRequest:
    protocol_version: Int
    last_zxid_seen: Long
    timeout: Int
    session_id: Long
    passwd: Buffer
    read_only: bool


@record
@dataclass(frozen=True, slots=True)
class ConnectResponse:
    protocol_version: Int
    timeout: Int
    session_id: Long
    passwd: Buffer
    read_only: bool


@record
@dataclass(frozen=True, slots=True)
class SetWatches:
    relative_zxid: Long
    data_watches: tuple[str, ...]
    exist_watches: tuple[str, ...]
    child_watches: tuple[str, ...]


@record
@dataclass(frozen=True, slots=True)
class SetWatches2:
    relative_zxid: Long
    data_watches: tuple[str, ...]
    exist_watches: tuple[str, ...]
    child_watches: tuple[str, ...]
    persistent_watches: tuple[str, ...]
    persistent_recursive_watches: tuple[str, ...]


@record
@dataclass(frozen=True, slots=True)
class RequestHeader:
    xid: Int
    type: Int


@record
@dataclass(frozen=True, slots=True)
class MultiHeader:
    type: Int
    done: bool
    err: Int


@record
@dataclass(frozen=True, slots=True)
class AuthPacket:
    type: Int
    scheme: str
    auth: Buffer


@record
@dataclass(frozen=True, slots=True)
class ReplyHeader:
    xid: Int
    zxid: Long
    err: Int


@record
@dataclass(frozen=True, slots=True)
class GetDataRequest:
    path: str
    watch: bool


@record
@dataclass(frozen=True, slots=True)
class SetDataRequest:
    path: str
    data: Buffer
    version: Int


@record
@dataclass(frozen=True, slots=True)
class ReconfigRequest:
    joining_servers: str
    leaving_servers: str
    new_members: str
    cur_config_id: Long


@record
@dataclass(frozen=True, slots=True)
class SetDataResponse:
    stat: Stat


@record
@dataclass(frozen=True, slots=True)
class GetSASLRequest:
    token: Buffer


@record
@dataclass(frozen=True, slots=True)
class SetSASLRequest:
    token: Buffer


@record
@dataclass(frozen=True, slots=True)
class SetSASLResponse:
    token: Buffer


@record
@dataclass(frozen=True, slots=True)
class CreateRequest:
    path: str
    data: Buffer
    acl: tuple[ACL, ...]
    flags: Int


@record
@dataclass(frozen=True, slots=True)
class CreateTTLRequest:
    path: str
    data: Buffer
    acl: tuple[ACL, ...]
    flags: Int
    ttl: Long


@record
@dataclass(frozen=True, slots=True)
class DeleteRequest:
    path: str
    version: Int


@record
@dataclass(frozen=True, slots=True)
class GetChildrenRequest:
    path: str
    watch: bool


@record
@dataclass(frozen=True, slots=True)
class GetAllChildrenNumberRequest:
    path: str


@record
@dataclass(frozen=True, slots=True)
class GetChildren2Request:
    path: str
    watch: bool


@record
@dataclass(frozen=True, slots=True)
class CheckVersionRequest:
    path: str
    version: Int


@record
@dataclass(frozen=True, slots=True)
class GetMaxChildrenRequest:
    path: str


@record
@dataclass(frozen=True, slots=True)
class GetMaxChildrenResponse:
    max: Int


@record
@dataclass(frozen=True, slots=True)
class SetMaxChildrenRequest:
    path: str
    max: Int


@record
@dataclass(frozen=True, slots=True)
class SyncRequest:
    path: str


@record
@dataclass(frozen=True, slots=True)
class SyncResponse:
    path: str


@record
@dataclass(frozen=True, slots=True)
class GetACLRequest:
    path: str


@record
@dataclass(frozen=True, slots=True)
class SetACLRequest:
    path: str
    acl: tuple[ACL, ...]
    version: Int


@record
@dataclass(frozen=True, slots=True)
class SetACLResponse:
    stat: Stat


@record
@dataclass(frozen=True, slots=True)
class AddWatchRequest:
    path: str
    mode: Int


@record
@dataclass(frozen=True, slots=True)
class WatcherEvent:
    type: Int
    state: Int
    path: str


@record
@dataclass(frozen=True, slots=True)
class ErrorResponse:
    err: Int


@record
@dataclass(frozen=True, slots=True)
class CreateResponse:
    path: str


@record
@dataclass(frozen=True, slots=True)
class Create2Response:
    path: str
    stat: Stat


@record
@dataclass(frozen=True, slots=True)
class ExistsRequest:
    path: str
    watch: bool


@record
@dataclass(frozen=True, slots=True)
class ExistsResponse:
    stat: Stat


@record
@dataclass(frozen=True, slots=True)
class GetDataResponse:
    data: Buffer
    stat: Stat


@record
@dataclass(frozen=True, slots=True)
class GetChildrenResponse:
    children: tuple[str, ...]


@record
@dataclass(frozen=True, slots=True)
class GetAllChildrenNumberResponse:
    total_number: Int


@record
@dataclass(frozen=True, slots=True)
class GetChildren2Response:
    children: tuple[str, ...]
    stat: Stat


@record
@dataclass(frozen=True, slots=True)
class GetACLResponse:
    acl: tuple[ACL, ...]
    stat: Stat


@record
@dataclass(frozen=True, slots=True)
class CheckWatchesRequest:
    path: str
    type: Int


@record
@dataclass(frozen=True, slots=True)
class RemoveWatchesRequest:
    path: str
    type: Int


@record
@dataclass(frozen=True, slots=True)
class GetEphemeralsRequest:
    prefix_path: str


@record
@dataclass(frozen=True, slots=True)
class GetEphemeralsResponse:
    ephemerals: tuple[str, ...]


@record
@dataclass(frozen=True, slots=True)
class WhoAmIResponse:
    client_info: tuple[ClientInfo, ...]


# --- Quorum (org.apache.zookeeper.server.quorum) ---


@record
@dataclass(frozen=True, slots=True)
class LearnerInfo:
    serverid: Long
    protocol_version: Int
    config_version: Long


@record
@dataclass(frozen=True, slots=True)
class QuorumPacket:
    type: Int
    zxid: Long
    data: Buffer
    authinfo: tuple[Id, ...]


@record
@dataclass(frozen=True, slots=True)
class QuorumAuthPacket:
    magic: Long
    status: Int
    token: Buffer


# --- Persistence (org.apache.zookeeper.server.persistence) ---


@record
@dataclass(frozen=True, slots=True)
class FileHeader:
    magic: Int
    version: Int
    dbid: Long


# --- Transactions (org.apache.zookeeper.txn) ---


@record
@dataclass(frozen=True, slots=True)
class TxnDigest:
    version: Int
    tree_digest: Long


@record
@dataclass(frozen=True, slots=True)
class TxnHeader:
    client_id: Long
    cxid: Int
    zxid: Long
    time: Long
    type: Int


@record
@dataclass(frozen=True, slots=True)
class CreateTxnV0:
    path: str
    data: Buffer
    acl: tuple[ACL, ...]
    ephemeral: bool


@record
@dataclass(frozen=True, slots=True)
class CreateTxn:
    path: str
    data: Buffer
    acl: tuple[ACL, ...]
    ephemeral: bool
    parent_cversion: Int


@record
@dataclass(frozen=True, slots=True)
class CreateTTLTxn:
    path: str
    data: Buffer
    acl: tuple[ACL, ...]
    parent_cversion: Int
    ttl: Long


@record
@dataclass(frozen=True, slots=True)
class CreateContainerTxn:
    path: str
    data: Buffer
    acl: tuple[ACL, ...]
    parent_cversion: Int


@record
@dataclass(frozen=True, slots=True)
class DeleteTxn:
    path: str


@record
@dataclass(frozen=True, slots=True)
class SetDataTxn:
    path: str
    data: Buffer
    version: Int


@record
@dataclass(frozen=True, slots=True)
class CheckVersionTxn:
    path: str
    version: Int


@record
@dataclass(frozen=True, slots=True)
class SetACLTxn:
    path: str
    acl: tuple[ACL, ...]
    version: Int


@record
@dataclass(frozen=True, slots=True)
class SetMaxChildrenTxn:
    path: str
    max: Int


@record
@dataclass(frozen=True, slots=True)
class CreateSessionTxn:
    timeout: Int


@record
@dataclass(frozen=True, slots=True)
class CloseSessionTxn:
    paths_to_delete: tuple[str, ...]


@record
@dataclass(frozen=True, slots=True)
class ErrorTxn:
    err: Int


@record
@dataclass(frozen=True, slots=True)
class Txn:
    type: Int
    data: Buffer


@record
@dataclass(frozen=True, slots=True)
class MultiTxn:
    txns: tuple[Txn, ...]
