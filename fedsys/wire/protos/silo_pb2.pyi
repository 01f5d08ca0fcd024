from fedsys.wire.protos import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SiteMessage(_message.Message):
    __slots__ = ("hello", "request", "done", "reclaimed", "pong")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    RECLAIMED_FIELD_NUMBER: _ClassVar[int]
    PONG_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    request: TaskRequest
    done: TaskDone
    reclaimed: Reclaimed
    pong: Pong
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., request: _Optional[_Union[TaskRequest, _Mapping]] = ..., done: _Optional[_Union[TaskDone, _Mapping]] = ..., reclaimed: _Optional[_Union[Reclaimed, _Mapping]] = ..., pong: _Optional[_Union[Pong, _Mapping]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("workers", "datasets", "tasks", "fedsys_version")
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    FEDSYS_VERSION_FIELD_NUMBER: _ClassVar[int]
    workers: int
    datasets: _containers.RepeatedScalarFieldContainer[str]
    tasks: _containers.RepeatedScalarFieldContainer[str]
    fedsys_version: str
    def __init__(self, workers: _Optional[int] = ..., datasets: _Optional[_Iterable[str]] = ..., tasks: _Optional[_Iterable[str]] = ..., fedsys_version: _Optional[str] = ...) -> None: ...

class TaskRequest(_message.Message):
    __slots__ = ("count", "job_id")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    count: int
    job_id: str
    def __init__(self, count: _Optional[int] = ..., job_id: _Optional[str] = ...) -> None: ...

class TaskDone(_message.Message):
    __slots__ = ("task_id", "attempt", "compute_s", "inline", "payload", "meta_json", "error", "payload_bytes", "start_s", "end_s", "job_id", "worker_pid", "refused")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_S_FIELD_NUMBER: _ClassVar[int]
    INLINE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    META_JSON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    START_S_FIELD_NUMBER: _ClassVar[int]
    END_S_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_PID_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    attempt: int
    compute_s: float
    inline: bool
    payload: bytes
    meta_json: str
    error: str
    payload_bytes: int
    start_s: float
    end_s: float
    job_id: str
    worker_pid: int
    refused: str
    def __init__(self, task_id: _Optional[str] = ..., attempt: _Optional[int] = ..., compute_s: _Optional[float] = ..., inline: _Optional[bool] = ..., payload: _Optional[bytes] = ..., meta_json: _Optional[str] = ..., error: _Optional[str] = ..., payload_bytes: _Optional[int] = ..., start_s: _Optional[float] = ..., end_s: _Optional[float] = ..., job_id: _Optional[str] = ..., worker_pid: _Optional[int] = ..., refused: _Optional[str] = ...) -> None: ...

class Reclaimed(_message.Message):
    __slots__ = ("task_ids", "job_id")
    TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    task_ids: _containers.RepeatedScalarFieldContainer[str]
    job_id: str
    def __init__(self, task_ids: _Optional[_Iterable[str]] = ..., job_id: _Optional[str] = ...) -> None: ...

class Pong(_message.Message):
    __slots__ = ("coordinator_time_s",)
    COORDINATOR_TIME_S_FIELD_NUMBER: _ClassVar[int]
    coordinator_time_s: float
    def __init__(self, coordinator_time_s: _Optional[float] = ...) -> None: ...

class CoordinatorMessage(_message.Message):
    __slots__ = ("welcome", "assign", "input", "reclaim", "ping", "mode", "evict", "end")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    ASSIGN_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    RECLAIM_FIELD_NUMBER: _ClassVar[int]
    PING_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    EVICT_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    welcome: Welcome
    assign: Assign
    input: InputPart
    reclaim: Reclaim
    ping: Ping
    mode: JobMode
    evict: Evict
    end: JobEnd
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., assign: _Optional[_Union[Assign, _Mapping]] = ..., input: _Optional[_Union[InputPart, _Mapping]] = ..., reclaim: _Optional[_Union[Reclaim, _Mapping]] = ..., ping: _Optional[_Union[Ping, _Mapping]] = ..., mode: _Optional[_Union[JobMode, _Mapping]] = ..., evict: _Optional[_Union[Evict, _Mapping]] = ..., end: _Optional[_Union[JobEnd, _Mapping]] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("site",)
    SITE_FIELD_NUMBER: _ClassVar[int]
    site: str
    def __init__(self, site: _Optional[str] = ...) -> None: ...

class JobMode(_message.Message):
    __slots__ = ("job_id", "late_binding", "coupled_output", "output_threshold_bytes", "analyst")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    LATE_BINDING_FIELD_NUMBER: _ClassVar[int]
    COUPLED_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_THRESHOLD_BYTES_FIELD_NUMBER: _ClassVar[int]
    ANALYST_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    late_binding: bool
    coupled_output: bool
    output_threshold_bytes: int
    analyst: str
    def __init__(self, job_id: _Optional[str] = ..., late_binding: _Optional[bool] = ..., coupled_output: _Optional[bool] = ..., output_threshold_bytes: _Optional[int] = ..., analyst: _Optional[str] = ...) -> None: ...

class JobEnd(_message.Message):
    __slots__ = ("job_id", "reason")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    reason: str
    def __init__(self, job_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class Assign(_message.Message):
    __slots__ = ("tasks",)
    TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[TaskAssignment]
    def __init__(self, tasks: _Optional[_Iterable[_Union[TaskAssignment, _Mapping]]] = ...) -> None: ...

class TaskAssignment(_message.Message):
    __slots__ = ("task_id", "attempt", "task", "params_json", "inputs", "inputs_pushed", "dataset", "job_id")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    PARAMS_JSON_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    INPUTS_PUSHED_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    attempt: int
    task: str
    params_json: str
    inputs: _containers.RepeatedScalarFieldContainer[str]
    inputs_pushed: bool
    dataset: str
    job_id: str
    def __init__(self, task_id: _Optional[str] = ..., attempt: _Optional[int] = ..., task: _Optional[str] = ..., params_json: _Optional[str] = ..., inputs: _Optional[_Iterable[str]] = ..., inputs_pushed: _Optional[bool] = ..., dataset: _Optional[str] = ..., job_id: _Optional[str] = ...) -> None: ...

class InputPart(_message.Message):
    __slots__ = ("job_id", "key", "meta_json", "chunk", "streamed", "sealed_sha256")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    META_JSON_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    STREAMED_FIELD_NUMBER: _ClassVar[int]
    SEALED_SHA256_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    key: str
    meta_json: str
    chunk: _common_pb2.Chunk
    streamed: bool
    sealed_sha256: str
    def __init__(self, job_id: _Optional[str] = ..., key: _Optional[str] = ..., meta_json: _Optional[str] = ..., chunk: _Optional[_Union[_common_pb2.Chunk, _Mapping]] = ..., streamed: _Optional[bool] = ..., sealed_sha256: _Optional[str] = ...) -> None: ...

class Reclaim(_message.Message):
    __slots__ = ("task_ids", "job_id")
    TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    task_ids: _containers.RepeatedScalarFieldContainer[str]
    job_id: str
    def __init__(self, task_ids: _Optional[_Iterable[str]] = ..., job_id: _Optional[str] = ...) -> None: ...

class Evict(_message.Message):
    __slots__ = ("keys", "job_id")
    KEYS_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedScalarFieldContainer[str]
    job_id: str
    def __init__(self, keys: _Optional[_Iterable[str]] = ..., job_id: _Optional[str] = ...) -> None: ...

class Ping(_message.Message):
    __slots__ = ("coordinator_time_s",)
    COORDINATOR_TIME_S_FIELD_NUMBER: _ClassVar[int]
    coordinator_time_s: float
    def __init__(self, coordinator_time_s: _Optional[float] = ...) -> None: ...

class OutputPart(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: OutputHeader
    chunk: _common_pb2.Chunk
    def __init__(self, header: _Optional[_Union[OutputHeader, _Mapping]] = ..., chunk: _Optional[_Union[_common_pb2.Chunk, _Mapping]] = ...) -> None: ...

class OutputHeader(_message.Message):
    __slots__ = ("task_id", "attempt", "meta_json", "job_id", "compute_s", "start_s", "end_s", "send_start_s", "worker_pid")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    META_JSON_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_S_FIELD_NUMBER: _ClassVar[int]
    START_S_FIELD_NUMBER: _ClassVar[int]
    END_S_FIELD_NUMBER: _ClassVar[int]
    SEND_START_S_FIELD_NUMBER: _ClassVar[int]
    WORKER_PID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    attempt: int
    meta_json: str
    job_id: str
    compute_s: float
    start_s: float
    end_s: float
    send_start_s: float
    worker_pid: int
    def __init__(self, task_id: _Optional[str] = ..., attempt: _Optional[int] = ..., meta_json: _Optional[str] = ..., job_id: _Optional[str] = ..., compute_s: _Optional[float] = ..., start_s: _Optional[float] = ..., end_s: _Optional[float] = ..., send_start_s: _Optional[float] = ..., worker_pid: _Optional[int] = ...) -> None: ...

class OutputAck(_message.Message):
    __slots__ = ("accepted",)
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    def __init__(self, accepted: _Optional[bool] = ...) -> None: ...

class InputRequest(_message.Message):
    __slots__ = ("key", "job_id")
    KEY_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    key: str
    job_id: str
    def __init__(self, key: _Optional[str] = ..., job_id: _Optional[str] = ...) -> None: ...
