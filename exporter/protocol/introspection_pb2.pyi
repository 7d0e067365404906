from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTIVE: _ClassVar[Status]
    CLOSED: _ClassVar[Status]
    OPENING: _ClassVar[Status]
    CLOSING: _ClassVar[Status]
    ERROR: _ClassVar[Status]

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INITIATOR: _ClassVar[Role]
    RESPONDER: _ClassVar[Role]
ACTIVE: Status
CLOSED: Status
OPENING: Status
CLOSING: Status
ERROR: Status
INITIATOR: Role
RESPONDER: Role

class Version(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    def __init__(self, version: _Optional[int] = ...) -> None: ...

class ResultCounter(_message.Message):
    __slots__ = ("total", "ok", "err")
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    ERR_FIELD_NUMBER: _ClassVar[int]
    total: int
    ok: int
    err: int
    def __init__(self, total: _Optional[int] = ..., ok: _Optional[int] = ..., err: _Optional[int] = ...) -> None: ...

class SlidingCounter(_message.Message):
    __slots__ = ("over_1m", "over_5m", "over_15m", "over_30m", "over_1hr", "over_2hr", "over_4hr", "over_8hr", "over_12hr", "over_24hr")
    OVER_1M_FIELD_NUMBER: _ClassVar[int]
    OVER_5M_FIELD_NUMBER: _ClassVar[int]
    OVER_15M_FIELD_NUMBER: _ClassVar[int]
    OVER_30M_FIELD_NUMBER: _ClassVar[int]
    OVER_1HR_FIELD_NUMBER: _ClassVar[int]
    OVER_2HR_FIELD_NUMBER: _ClassVar[int]
    OVER_4HR_FIELD_NUMBER: _ClassVar[int]
    OVER_8HR_FIELD_NUMBER: _ClassVar[int]
    OVER_12HR_FIELD_NUMBER: _ClassVar[int]
    OVER_24HR_FIELD_NUMBER: _ClassVar[int]
    over_1m: int
    over_5m: int
    over_15m: int
    over_30m: int
    over_1hr: int
    over_2hr: int
    over_4hr: int
    over_8hr: int
    over_12hr: int
    over_24hr: int
    def __init__(self, over_1m: _Optional[int] = ..., over_5m: _Optional[int] = ..., over_15m: _Optional[int] = ..., over_30m: _Optional[int] = ..., over_1hr: _Optional[int] = ..., over_2hr: _Optional[int] = ..., over_4hr: _Optional[int] = ..., over_8hr: _Optional[int] = ..., over_12hr: _Optional[int] = ..., over_24hr: _Optional[int] = ...) -> None: ...

class DataGauge(_message.Message):
    __slots__ = ("cum_bytes", "cum_packets", "inst_bw")
    CUM_BYTES_FIELD_NUMBER: _ClassVar[int]
    CUM_PACKETS_FIELD_NUMBER: _ClassVar[int]
    INST_BW_FIELD_NUMBER: _ClassVar[int]
    cum_bytes: int
    cum_packets: int
    inst_bw: int
    def __init__(self, cum_bytes: _Optional[int] = ..., cum_packets: _Optional[int] = ..., inst_bw: _Optional[int] = ...) -> None: ...

class EventType(_message.Message):
    __slots__ = ("name", "property_types")
    class EventProperty(_message.Message):
        __slots__ = ("name", "type", "has_multiple")
        class PropertyType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
            __slots__ = ()
            STRING: _ClassVar[EventType.EventProperty.PropertyType]
            NUMBER: _ClassVar[EventType.EventProperty.PropertyType]
            TIME: _ClassVar[EventType.EventProperty.PropertyType]
            PEERID: _ClassVar[EventType.EventProperty.PropertyType]
            MULTIADDR: _ClassVar[EventType.EventProperty.PropertyType]
            JSON: _ClassVar[EventType.EventProperty.PropertyType]
        STRING: EventType.EventProperty.PropertyType
        NUMBER: EventType.EventProperty.PropertyType
        TIME: EventType.EventProperty.PropertyType
        PEERID: EventType.EventProperty.PropertyType
        MULTIADDR: EventType.EventProperty.PropertyType
        JSON: EventType.EventProperty.PropertyType
        NAME_FIELD_NUMBER: _ClassVar[int]
        TYPE_FIELD_NUMBER: _ClassVar[int]
        HAS_MULTIPLE_FIELD_NUMBER: _ClassVar[int]
        name: str
        type: EventType.EventProperty.PropertyType
        has_multiple: bool
        def __init__(self, name: _Optional[str] = ..., type: _Optional[_Union[EventType.EventProperty.PropertyType, str]] = ..., has_multiple: bool = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROPERTY_TYPES_FIELD_NUMBER: _ClassVar[int]
    name: str
    property_types: _containers.RepeatedCompositeFieldContainer[EventType.EventProperty]
    def __init__(self, name: _Optional[str] = ..., property_types: _Optional[_Iterable[_Union[EventType.EventProperty, _Mapping]]] = ...) -> None: ...

class Runtime(_message.Message):
    __slots__ = ("implementation", "version", "platform", "peer_id", "event_types")
    IMPLEMENTATION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    PEER_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPES_FIELD_NUMBER: _ClassVar[int]
    implementation: str
    version: str
    platform: str
    peer_id: str
    event_types: _containers.RepeatedCompositeFieldContainer[EventType]
    def __init__(self, implementation: _Optional[str] = ..., version: _Optional[str] = ..., platform: _Optional[str] = ..., peer_id: _Optional[str] = ..., event_types: _Optional[_Iterable[_Union[EventType, _Mapping]]] = ...) -> None: ...

class EndpointPair(_message.Message):
    __slots__ = ("src_multiaddr", "dst_multiaddr")
    SRC_MULTIADDR_FIELD_NUMBER: _ClassVar[int]
    DST_MULTIADDR_FIELD_NUMBER: _ClassVar[int]
    src_multiaddr: str
    dst_multiaddr: str
    def __init__(self, src_multiaddr: _Optional[str] = ..., dst_multiaddr: _Optional[str] = ...) -> None: ...

class Traffic(_message.Message):
    __slots__ = ("traffic_in", "traffic_out")
    TRAFFIC_IN_FIELD_NUMBER: _ClassVar[int]
    TRAFFIC_OUT_FIELD_NUMBER: _ClassVar[int]
    traffic_in: DataGauge
    traffic_out: DataGauge
    def __init__(self, traffic_in: _Optional[_Union[DataGauge, _Mapping]] = ..., traffic_out: _Optional[_Union[DataGauge, _Mapping]] = ...) -> None: ...

class StreamList(_message.Message):
    __slots__ = ("stream_ids", "streams")
    STREAM_IDS_FIELD_NUMBER: _ClassVar[int]
    STREAMS_FIELD_NUMBER: _ClassVar[int]
    stream_ids: _containers.RepeatedScalarFieldContainer[bytes]
    streams: _containers.RepeatedCompositeFieldContainer[Stream]
    def __init__(self, stream_ids: _Optional[_Iterable[bytes]] = ..., streams: _Optional[_Iterable[_Union[Stream, _Mapping]]] = ...) -> None: ...

class Connection(_message.Message):
    __slots__ = ("id", "peer_id", "status", "transport_id", "endpoints", "timeline", "role", "traffic", "attribs", "latency_ns", "streams", "conn_id", "conn", "user_provided_tags")
    class Timeline(_message.Message):
        __slots__ = ("open_ts", "upgraded_ts", "close_ts")
        OPEN_TS_FIELD_NUMBER: _ClassVar[int]
        UPGRADED_TS_FIELD_NUMBER: _ClassVar[int]
        CLOSE_TS_FIELD_NUMBER: _ClassVar[int]
        open_ts: int
        upgraded_ts: int
        close_ts: int
        def __init__(self, open_ts: _Optional[int] = ..., upgraded_ts: _Optional[int] = ..., close_ts: _Optional[int] = ...) -> None: ...
    class Attributes(_message.Message):
        __slots__ = ("multiplexer", "encryption")
        MULTIPLEXER_FIELD_NUMBER: _ClassVar[int]
        ENCRYPTION_FIELD_NUMBER: _ClassVar[int]
        multiplexer: str
        encryption: str
        def __init__(self, multiplexer: _Optional[str] = ..., encryption: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    PEER_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TRANSPORT_ID_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    TIMELINE_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TRAFFIC_FIELD_NUMBER: _ClassVar[int]
    ATTRIBS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_NS_FIELD_NUMBER: _ClassVar[int]
    STREAMS_FIELD_NUMBER: _ClassVar[int]
    CONN_ID_FIELD_NUMBER: _ClassVar[int]
    CONN_FIELD_NUMBER: _ClassVar[int]
    USER_PROVIDED_TAGS_FIELD_NUMBER: _ClassVar[int]
    id: bytes
    peer_id: str
    status: Status
    transport_id: bytes
    endpoints: EndpointPair
    timeline: Connection.Timeline
    role: Role
    traffic: Traffic
    attribs: Connection.Attributes
    latency_ns: int
    streams: StreamList
    conn_id: bytes
    conn: Connection
    user_provided_tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[bytes] = ..., peer_id: _Optional[str] = ..., status: _Optional[_Union[Status, str]] = ..., transport_id: _Optional[bytes] = ..., endpoints: _Optional[_Union[EndpointPair, _Mapping]] = ..., timeline: _Optional[_Union[Connection.Timeline, _Mapping]] = ..., role: _Optional[_Union[Role, str]] = ..., traffic: _Optional[_Union[Traffic, _Mapping]] = ..., attribs: _Optional[_Union[Connection.Attributes, _Mapping]] = ..., latency_ns: _Optional[int] = ..., streams: _Optional[_Union[StreamList, _Mapping]] = ..., conn_id: _Optional[bytes] = ..., conn: _Optional[_Union[Connection, _Mapping]] = ..., user_provided_tags: _Optional[_Iterable[str]] = ...) -> None: ...

class Stream(_message.Message):
    __slots__ = ("id", "protocol", "role", "traffic", "conn", "timeline", "status", "latency_ns", "user_provided_tags")
    class ConnectionRef(_message.Message):
        __slots__ = ("conn", "conn_id")
        CONN_FIELD_NUMBER: _ClassVar[int]
        CONN_ID_FIELD_NUMBER: _ClassVar[int]
        conn: Connection
        conn_id: bytes
        def __init__(self, conn: _Optional[_Union[Connection, _Mapping]] = ..., conn_id: _Optional[bytes] = ...) -> None: ...
    class Timeline(_message.Message):
        __slots__ = ("open_ts", "close_ts")
        OPEN_TS_FIELD_NUMBER: _ClassVar[int]
        CLOSE_TS_FIELD_NUMBER: _ClassVar[int]
        open_ts: int
        close_ts: int
        def __init__(self, open_ts: _Optional[int] = ..., close_ts: _Optional[int] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TRAFFIC_FIELD_NUMBER: _ClassVar[int]
    CONN_FIELD_NUMBER: _ClassVar[int]
    TIMELINE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_NS_FIELD_NUMBER: _ClassVar[int]
    USER_PROVIDED_TAGS_FIELD_NUMBER: _ClassVar[int]
    id: bytes
    protocol: str
    role: Role
    traffic: Traffic
    conn: Stream.ConnectionRef
    timeline: Stream.Timeline
    status: Status
    latency_ns: int
    user_provided_tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[bytes] = ..., protocol: _Optional[str] = ..., role: _Optional[_Union[Role, str]] = ..., traffic: _Optional[_Union[Traffic, _Mapping]] = ..., conn: _Optional[_Union[Stream.ConnectionRef, _Mapping]] = ..., timeline: _Optional[_Union[Stream.Timeline, _Mapping]] = ..., status: _Optional[_Union[Status, str]] = ..., latency_ns: _Optional[int] = ..., user_provided_tags: _Optional[_Iterable[str]] = ...) -> None: ...

class DHT(_message.Message):
    __slots__ = ("protocol", "enabled", "start_ts", "params", "buckets", "incoming_queries", "outgoing_queries")
    class Params(_message.Message):
        __slots__ = ("k", "alpha", "disjoint_paths", "beta")
        K_FIELD_NUMBER: _ClassVar[int]
        ALPHA_FIELD_NUMBER: _ClassVar[int]
        DISJOINT_PATHS_FIELD_NUMBER: _ClassVar[int]
        BETA_FIELD_NUMBER: _ClassVar[int]
        k: int
        alpha: int
        disjoint_paths: int
        beta: int
        def __init__(self, k: _Optional[int] = ..., alpha: _Optional[int] = ..., disjoint_paths: _Optional[int] = ..., beta: _Optional[int] = ...) -> None: ...
    class PeerInDHT(_message.Message):
        __slots__ = ("peer_id", "status", "age_in_bucket")
        class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
            __slots__ = ()
            ACTIVE: _ClassVar[DHT.PeerInDHT.Status]
            MISSING: _ClassVar[DHT.PeerInDHT.Status]
            REJECTED: _ClassVar[DHT.PeerInDHT.Status]
            CANDIDATE: _ClassVar[DHT.PeerInDHT.Status]
        ACTIVE: DHT.PeerInDHT.Status
        MISSING: DHT.PeerInDHT.Status
        REJECTED: DHT.PeerInDHT.Status
        CANDIDATE: DHT.PeerInDHT.Status
        PEER_ID_FIELD_NUMBER: _ClassVar[int]
        STATUS_FIELD_NUMBER: _ClassVar[int]
        AGE_IN_BUCKET_FIELD_NUMBER: _ClassVar[int]
        peer_id: str
        status: DHT.PeerInDHT.Status
        age_in_bucket: int
        def __init__(self, peer_id: _Optional[str] = ..., status: _Optional[_Union[DHT.PeerInDHT.Status, str]] = ..., age_in_bucket: _Optional[int] = ...) -> None: ...
    class Bucket(_message.Message):
        __slots__ = ("cpl", "peers")
        CPL_FIELD_NUMBER: _ClassVar[int]
        PEERS_FIELD_NUMBER: _ClassVar[int]
        cpl: int
        peers: _containers.RepeatedCompositeFieldContainer[DHT.PeerInDHT]
        def __init__(self, cpl: _Optional[int] = ..., peers: _Optional[_Iterable[_Union[DHT.PeerInDHT, _Mapping]]] = ...) -> None: ...
    class QueryGauge(_message.Message):
        __slots__ = ("success", "error", "timeout")
        SUCCESS_FIELD_NUMBER: _ClassVar[int]
        ERROR_FIELD_NUMBER: _ClassVar[int]
        TIMEOUT_FIELD_NUMBER: _ClassVar[int]
        success: int
        error: int
        timeout: int
        def __init__(self, success: _Optional[int] = ..., error: _Optional[int] = ..., timeout: _Optional[int] = ...) -> None: ...
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    START_TS_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    INCOMING_QUERIES_FIELD_NUMBER: _ClassVar[int]
    OUTGOING_QUERIES_FIELD_NUMBER: _ClassVar[int]
    protocol: str
    enabled: bool
    start_ts: int
    params: DHT.Params
    buckets: _containers.RepeatedCompositeFieldContainer[DHT.Bucket]
    incoming_queries: DHT.QueryGauge
    outgoing_queries: DHT.QueryGauge
    def __init__(self, protocol: _Optional[str] = ..., enabled: bool = ..., start_ts: _Optional[int] = ..., params: _Optional[_Union[DHT.Params, _Mapping]] = ..., buckets: _Optional[_Iterable[_Union[DHT.Bucket, _Mapping]]] = ..., incoming_queries: _Optional[_Union[DHT.QueryGauge, _Mapping]] = ..., outgoing_queries: _Optional[_Union[DHT.QueryGauge, _Mapping]] = ...) -> None: ...

class PeerStore(_message.Message):
    __slots__ = ("known_peers", "peers_with_addrs", "peers_with_keys", "peers_with_records", "peers_with_protocols", "addrs_per_peer", "addrs_total", "protocols", "protocols_other", "agents", "agents_other", "latency_ewma", "latency_ewma_sum_seconds", "max_peers", "max_records", "evicted_peers")
    class NameCount(_message.Message):
        __slots__ = ("name", "peers")
        NAME_FIELD_NUMBER: _ClassVar[int]
        PEERS_FIELD_NUMBER: _ClassVar[int]
        name: str
        peers: int
        def __init__(self, name: _Optional[str] = ..., peers: _Optional[int] = ...) -> None: ...
    KNOWN_PEERS_FIELD_NUMBER: _ClassVar[int]
    PEERS_WITH_ADDRS_FIELD_NUMBER: _ClassVar[int]
    PEERS_WITH_KEYS_FIELD_NUMBER: _ClassVar[int]
    PEERS_WITH_RECORDS_FIELD_NUMBER: _ClassVar[int]
    PEERS_WITH_PROTOCOLS_FIELD_NUMBER: _ClassVar[int]
    ADDRS_PER_PEER_FIELD_NUMBER: _ClassVar[int]
    ADDRS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    PROTOCOLS_FIELD_NUMBER: _ClassVar[int]
    PROTOCOLS_OTHER_FIELD_NUMBER: _ClassVar[int]
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    AGENTS_OTHER_FIELD_NUMBER: _ClassVar[int]
    LATENCY_EWMA_FIELD_NUMBER: _ClassVar[int]
    LATENCY_EWMA_SUM_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_PEERS_FIELD_NUMBER: _ClassVar[int]
    MAX_RECORDS_FIELD_NUMBER: _ClassVar[int]
    EVICTED_PEERS_FIELD_NUMBER: _ClassVar[int]
    known_peers: int
    peers_with_addrs: int
    peers_with_keys: int
    peers_with_records: int
    peers_with_protocols: int
    addrs_per_peer: _containers.RepeatedScalarFieldContainer[int]
    addrs_total: int
    protocols: _containers.RepeatedCompositeFieldContainer[PeerStore.NameCount]
    protocols_other: int
    agents: _containers.RepeatedCompositeFieldContainer[PeerStore.NameCount]
    agents_other: int
    latency_ewma: _containers.RepeatedScalarFieldContainer[int]
    latency_ewma_sum_seconds: float
    max_peers: int
    max_records: int
    evicted_peers: int
    def __init__(self, known_peers: _Optional[int] = ..., peers_with_addrs: _Optional[int] = ..., peers_with_keys: _Optional[int] = ..., peers_with_records: _Optional[int] = ..., peers_with_protocols: _Optional[int] = ..., addrs_per_peer: _Optional[_Iterable[int]] = ..., addrs_total: _Optional[int] = ..., protocols: _Optional[_Iterable[_Union[PeerStore.NameCount, _Mapping]]] = ..., protocols_other: _Optional[int] = ..., agents: _Optional[_Iterable[_Union[PeerStore.NameCount, _Mapping]]] = ..., agents_other: _Optional[int] = ..., latency_ewma: _Optional[_Iterable[int]] = ..., latency_ewma_sum_seconds: _Optional[float] = ..., max_peers: _Optional[int] = ..., max_records: _Optional[int] = ..., evicted_peers: _Optional[int] = ...) -> None: ...

class Subsystems(_message.Message):
    __slots__ = ("connections", "dht", "peerstore")
    CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    DHT_FIELD_NUMBER: _ClassVar[int]
    PEERSTORE_FIELD_NUMBER: _ClassVar[int]
    connections: _containers.RepeatedCompositeFieldContainer[Connection]
    dht: DHT
    peerstore: PeerStore
    def __init__(self, connections: _Optional[_Iterable[_Union[Connection, _Mapping]]] = ..., dht: _Optional[_Union[DHT, _Mapping]] = ..., peerstore: _Optional[_Union[PeerStore, _Mapping]] = ...) -> None: ...

class State(_message.Message):
    __slots__ = ("subsystems", "traffic", "instant_ts", "start_ts", "snapshot_duration_ms")
    SUBSYSTEMS_FIELD_NUMBER: _ClassVar[int]
    TRAFFIC_FIELD_NUMBER: _ClassVar[int]
    INSTANT_TS_FIELD_NUMBER: _ClassVar[int]
    START_TS_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    subsystems: Subsystems
    traffic: Traffic
    instant_ts: int
    start_ts: int
    snapshot_duration_ms: int
    def __init__(self, subsystems: _Optional[_Union[Subsystems, _Mapping]] = ..., traffic: _Optional[_Union[Traffic, _Mapping]] = ..., instant_ts: _Optional[int] = ..., start_ts: _Optional[int] = ..., snapshot_duration_ms: _Optional[int] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("type", "ts", "content")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    type: EventType
    ts: int
    content: str
    def __init__(self, type: _Optional[_Union[EventType, _Mapping]] = ..., ts: _Optional[int] = ..., content: _Optional[str] = ...) -> None: ...

class ServerMessage(_message.Message):
    __slots__ = ("version", "state", "runtime", "event", "response", "notice")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    NOTICE_FIELD_NUMBER: _ClassVar[int]
    version: Version
    state: State
    runtime: Runtime
    event: Event
    response: CommandResponse
    notice: ServerNotice
    def __init__(self, version: _Optional[_Union[Version, _Mapping]] = ..., state: _Optional[_Union[State, _Mapping]] = ..., runtime: _Optional[_Union[Runtime, _Mapping]] = ..., event: _Optional[_Union[Event, _Mapping]] = ..., response: _Optional[_Union[CommandResponse, _Mapping]] = ..., notice: _Optional[_Union[ServerNotice, _Mapping]] = ...) -> None: ...

class Configuration(_message.Message):
    __slots__ = ("retention_period_ms", "state_snapshot_interval_ms")
    RETENTION_PERIOD_MS_FIELD_NUMBER: _ClassVar[int]
    STATE_SNAPSHOT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    retention_period_ms: int
    state_snapshot_interval_ms: int
    def __init__(self, retention_period_ms: _Optional[int] = ..., state_snapshot_interval_ms: _Optional[int] = ...) -> None: ...

class ClientCommand(_message.Message):
    __slots__ = ("version", "id", "command", "source", "config")
    class Source(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE: _ClassVar[ClientCommand.Source]
        RUNTIME: _ClassVar[ClientCommand.Source]
        EVENTS: _ClassVar[ClientCommand.Source]
    STATE: ClientCommand.Source
    RUNTIME: ClientCommand.Source
    EVENTS: ClientCommand.Source
    class Command(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        HELLO: _ClassVar[ClientCommand.Command]
        REQUEST: _ClassVar[ClientCommand.Command]
        PUSH_ENABLE: _ClassVar[ClientCommand.Command]
        PUSH_DISABLE: _ClassVar[ClientCommand.Command]
        PUSH_PAUSE: _ClassVar[ClientCommand.Command]
        PUSH_RESUME: _ClassVar[ClientCommand.Command]
        UPDATE_CONFIG: _ClassVar[ClientCommand.Command]
    HELLO: ClientCommand.Command
    REQUEST: ClientCommand.Command
    PUSH_ENABLE: ClientCommand.Command
    PUSH_DISABLE: ClientCommand.Command
    PUSH_PAUSE: ClientCommand.Command
    PUSH_RESUME: ClientCommand.Command
    UPDATE_CONFIG: ClientCommand.Command
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    version: Version
    id: int
    command: ClientCommand.Command
    source: ClientCommand.Source
    config: Configuration
    def __init__(self, version: _Optional[_Union[Version, _Mapping]] = ..., id: _Optional[int] = ..., command: _Optional[_Union[ClientCommand.Command, str]] = ..., source: _Optional[_Union[ClientCommand.Source, str]] = ..., config: _Optional[_Union[Configuration, _Mapping]] = ...) -> None: ...

class CommandResponse(_message.Message):
    __slots__ = ("id", "result", "error", "effective_config")
    class Result(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OK: _ClassVar[CommandResponse.Result]
        ERR: _ClassVar[CommandResponse.Result]
    OK: CommandResponse.Result
    ERR: CommandResponse.Result
    ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_CONFIG_FIELD_NUMBER: _ClassVar[int]
    id: int
    result: CommandResponse.Result
    error: str
    effective_config: Configuration
    def __init__(self, id: _Optional[int] = ..., result: _Optional[_Union[CommandResponse.Result, str]] = ..., error: _Optional[str] = ..., effective_config: _Optional[_Union[Configuration, _Mapping]] = ...) -> None: ...

class ServerNotice(_message.Message):
    __slots__ = ("kind",)
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        DISCARDING_EVENTS: _ClassVar[ServerNotice.Kind]
    DISCARDING_EVENTS: ServerNotice.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    kind: ServerNotice.Kind
    def __init__(self, kind: _Optional[_Union[ServerNotice.Kind, str]] = ...) -> None: ...
