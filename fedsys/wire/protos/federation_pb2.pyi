from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class QueryRequest(_message.Message):
    __slots__ = ("sql", "epsilon", "delta", "mechanism", "secure", "parts", "bounds_json", "domains_json", "dataset", "on_site_failure")
    SQL_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    MECHANISM_FIELD_NUMBER: _ClassVar[int]
    SECURE_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    BOUNDS_JSON_FIELD_NUMBER: _ClassVar[int]
    DOMAINS_JSON_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    ON_SITE_FAILURE_FIELD_NUMBER: _ClassVar[int]
    sql: str
    epsilon: float
    delta: float
    mechanism: str
    secure: bool
    parts: int
    bounds_json: str
    domains_json: str
    dataset: str
    on_site_failure: str
    def __init__(self, sql: _Optional[str] = ..., epsilon: _Optional[float] = ..., delta: _Optional[float] = ..., mechanism: _Optional[str] = ..., secure: _Optional[bool] = ..., parts: _Optional[int] = ..., bounds_json: _Optional[str] = ..., domains_json: _Optional[str] = ..., dataset: _Optional[str] = ..., on_site_failure: _Optional[str] = ...) -> None: ...

class TrainingRequest(_message.Message):
    __slots__ = ("config_yaml", "on_site_failure")
    CONFIG_YAML_FIELD_NUMBER: _ClassVar[int]
    ON_SITE_FAILURE_FIELD_NUMBER: _ClassVar[int]
    config_yaml: str
    on_site_failure: str
    def __init__(self, config_yaml: _Optional[str] = ..., on_site_failure: _Optional[str] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("all_analysts",)
    ALL_ANALYSTS_FIELD_NUMBER: _ClassVar[int]
    all_analysts: bool
    def __init__(self, all_analysts: _Optional[bool] = ...) -> None: ...

class JobRef(_message.Message):
    __slots__ = ("job_id", "wait_s")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    WAIT_S_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    wait_s: float
    def __init__(self, job_id: _Optional[str] = ..., wait_s: _Optional[float] = ...) -> None: ...

class JobInfo(_message.Message):
    __slots__ = ("job_id", "analyst", "kind", "state", "submitted_s", "started_s", "finished_s", "error", "refused", "summary", "position", "progress")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ANALYST_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_S_FIELD_NUMBER: _ClassVar[int]
    STARTED_S_FIELD_NUMBER: _ClassVar[int]
    FINISHED_S_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    analyst: str
    kind: str
    state: str
    submitted_s: float
    started_s: float
    finished_s: float
    error: str
    refused: _containers.RepeatedScalarFieldContainer[str]
    summary: str
    position: int
    progress: str
    def __init__(self, job_id: _Optional[str] = ..., analyst: _Optional[str] = ..., kind: _Optional[str] = ..., state: _Optional[str] = ..., submitted_s: _Optional[float] = ..., started_s: _Optional[float] = ..., finished_s: _Optional[float] = ..., error: _Optional[str] = ..., refused: _Optional[_Iterable[str]] = ..., summary: _Optional[str] = ..., position: _Optional[int] = ..., progress: _Optional[str] = ...) -> None: ...

class JobList(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[JobInfo]
    def __init__(self, jobs: _Optional[_Iterable[_Union[JobInfo, _Mapping]]] = ...) -> None: ...

class LogLines(_message.Message):
    __slots__ = ("lines",)
    LINES_FIELD_NUMBER: _ClassVar[int]
    lines: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, lines: _Optional[_Iterable[str]] = ...) -> None: ...

class RunFile(_message.Message):
    __slots__ = ("name", "data")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    data: bytes
    def __init__(self, name: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class ResultReply(_message.Message):
    __slots__ = ("info", "result_json", "files")
    INFO_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    info: JobInfo
    result_json: str
    files: _containers.RepeatedCompositeFieldContainer[RunFile]
    def __init__(self, info: _Optional[_Union[JobInfo, _Mapping]] = ..., result_json: _Optional[str] = ..., files: _Optional[_Iterable[_Union[RunFile, _Mapping]]] = ...) -> None: ...
