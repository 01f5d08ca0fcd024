from fedsys.wire.protos import common_pb2 as _common_pb2
from fedsys.wire.protos import secure_pb2 as _secure_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RegisterRequest(_message.Message):
    __slots__ = ("fedsys_version",)
    FEDSYS_VERSION_FIELD_NUMBER: _ClassVar[int]
    fedsys_version: str
    def __init__(self, fedsys_version: _Optional[str] = ...) -> None: ...

class RegisterReply(_message.Message):
    __slots__ = ("client_id", "session_id", "run_config_json", "layout")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_FIELD_NUMBER: _ClassVar[int]
    client_id: int
    session_id: str
    run_config_json: str
    layout: _common_pb2.Layout
    def __init__(self, client_id: _Optional[int] = ..., session_id: _Optional[str] = ..., run_config_json: _Optional[str] = ..., layout: _Optional[_Union[_common_pb2.Layout, _Mapping]] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("session_id", "num_samples", "device", "session_remaining_s")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    NUM_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    SESSION_REMAINING_S_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    num_samples: int
    device: DeviceSpeed
    session_remaining_s: float
    def __init__(self, session_id: _Optional[str] = ..., num_samples: _Optional[int] = ..., device: _Optional[_Union[DeviceSpeed, _Mapping]] = ..., session_remaining_s: _Optional[float] = ...) -> None: ...

class DeviceSpeed(_message.Message):
    __slots__ = ("compute_s_per_sample", "down_bytes_per_s", "up_bytes_per_s")
    COMPUTE_S_PER_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    DOWN_BYTES_PER_S_FIELD_NUMBER: _ClassVar[int]
    UP_BYTES_PER_S_FIELD_NUMBER: _ClassVar[int]
    compute_s_per_sample: float
    down_bytes_per_s: float
    up_bytes_per_s: float
    def __init__(self, compute_s_per_sample: _Optional[float] = ..., down_bytes_per_s: _Optional[float] = ..., up_bytes_per_s: _Optional[float] = ...) -> None: ...

class Instruction(_message.Message):
    __slots__ = ("train", "ping", "finish", "secure")
    TRAIN_FIELD_NUMBER: _ClassVar[int]
    PING_FIELD_NUMBER: _ClassVar[int]
    FINISH_FIELD_NUMBER: _ClassVar[int]
    SECURE_FIELD_NUMBER: _ClassVar[int]
    train: TrainTask
    ping: Ping
    finish: Finish
    secure: SecureStep
    def __init__(self, train: _Optional[_Union[TrainTask, _Mapping]] = ..., ping: _Optional[_Union[Ping, _Mapping]] = ..., finish: _Optional[_Union[Finish, _Mapping]] = ..., secure: _Optional[_Union[SecureStep, _Mapping]] = ...) -> None: ...

class Ping(_message.Message):
    __slots__ = ("server_time_s",)
    SERVER_TIME_S_FIELD_NUMBER: _ClassVar[int]
    server_time_s: float
    def __init__(self, server_time_s: _Optional[float] = ...) -> None: ...

class Finish(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class TrainTask(_message.Message):
    __slots__ = ("task_id", "round_idx", "model_version", "model_sha256", "model_bytes", "train_config_json", "codec", "codec_json", "expected_update_bytes", "seed", "deadline_s", "secure", "local_steps", "upload_fraction")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_IDX_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_SHA256_FIELD_NUMBER: _ClassVar[int]
    MODEL_BYTES_FIELD_NUMBER: _ClassVar[int]
    TRAIN_CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    CODEC_JSON_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_UPDATE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_S_FIELD_NUMBER: _ClassVar[int]
    SECURE_FIELD_NUMBER: _ClassVar[int]
    LOCAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_FRACTION_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    round_idx: int
    model_version: int
    model_sha256: str
    model_bytes: int
    train_config_json: str
    codec: str
    codec_json: str
    expected_update_bytes: int
    seed: int
    deadline_s: float
    secure: SecureTask
    local_steps: int
    upload_fraction: float
    def __init__(self, task_id: _Optional[str] = ..., round_idx: _Optional[int] = ..., model_version: _Optional[int] = ..., model_sha256: _Optional[str] = ..., model_bytes: _Optional[int] = ..., train_config_json: _Optional[str] = ..., codec: _Optional[str] = ..., codec_json: _Optional[str] = ..., expected_update_bytes: _Optional[int] = ..., seed: _Optional[int] = ..., deadline_s: _Optional[float] = ..., secure: _Optional[_Union[SecureTask, _Mapping]] = ..., local_steps: _Optional[int] = ..., upload_fraction: _Optional[float] = ...) -> None: ...

class SecureTask(_message.Message):
    __slots__ = ("setup", "weighted", "clip_norm", "max_weight", "step_timeout_s")
    SETUP_FIELD_NUMBER: _ClassVar[int]
    WEIGHTED_FIELD_NUMBER: _ClassVar[int]
    CLIP_NORM_FIELD_NUMBER: _ClassVar[int]
    MAX_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    STEP_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    setup: _secure_pb2.RoundSetup
    weighted: bool
    clip_norm: float
    max_weight: float
    step_timeout_s: float
    def __init__(self, setup: _Optional[_Union[_secure_pb2.RoundSetup, _Mapping]] = ..., weighted: _Optional[bool] = ..., clip_norm: _Optional[float] = ..., max_weight: _Optional[float] = ..., step_timeout_s: _Optional[float] = ...) -> None: ...

class SecureStep(_message.Message):
    __slots__ = ("task_id", "keys", "shares", "unmask", "abort")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    SHARES_FIELD_NUMBER: _ClassVar[int]
    UNMASK_FIELD_NUMBER: _ClassVar[int]
    ABORT_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    keys: NeighbourKeys
    shares: ShareDelivery
    unmask: _secure_pb2.UnmaskRequest
    abort: str
    def __init__(self, task_id: _Optional[str] = ..., keys: _Optional[_Union[NeighbourKeys, _Mapping]] = ..., shares: _Optional[_Union[ShareDelivery, _Mapping]] = ..., unmask: _Optional[_Union[_secure_pb2.UnmaskRequest, _Mapping]] = ..., abort: _Optional[str] = ...) -> None: ...

class NeighbourKeys(_message.Message):
    __slots__ = ("adverts",)
    ADVERTS_FIELD_NUMBER: _ClassVar[int]
    adverts: _containers.RepeatedCompositeFieldContainer[_secure_pb2.KeyAdvert]
    def __init__(self, adverts: _Optional[_Iterable[_Union[_secure_pb2.KeyAdvert, _Mapping]]] = ...) -> None: ...

class ShareDelivery(_message.Message):
    __slots__ = ("shares",)
    SHARES_FIELD_NUMBER: _ClassVar[int]
    shares: _containers.RepeatedCompositeFieldContainer[_secure_pb2.EncryptedShare]
    def __init__(self, shares: _Optional[_Iterable[_Union[_secure_pb2.EncryptedShare, _Mapping]]] = ...) -> None: ...

class SecureMessage(_message.Message):
    __slots__ = ("task_id", "round_idx", "keys", "shares", "unmask")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_IDX_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    SHARES_FIELD_NUMBER: _ClassVar[int]
    UNMASK_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    round_idx: int
    keys: _secure_pb2.KeyAdvert
    shares: ShareDelivery
    unmask: _secure_pb2.UnmaskReply
    def __init__(self, task_id: _Optional[str] = ..., round_idx: _Optional[int] = ..., keys: _Optional[_Union[_secure_pb2.KeyAdvert, _Mapping]] = ..., shares: _Optional[_Union[ShareDelivery, _Mapping]] = ..., unmask: _Optional[_Union[_secure_pb2.UnmaskReply, _Mapping]] = ...) -> None: ...

class SecureAck(_message.Message):
    __slots__ = ("accepted", "reason")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    reason: str
    def __init__(self, accepted: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class MaskedInputHeader(_message.Message):
    __slots__ = ("task_id", "round_idx", "num_samples", "mean_loss", "sum_sq_loss", "samples_seen", "train_s")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_IDX_FIELD_NUMBER: _ClassVar[int]
    NUM_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    MEAN_LOSS_FIELD_NUMBER: _ClassVar[int]
    SUM_SQ_LOSS_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_SEEN_FIELD_NUMBER: _ClassVar[int]
    TRAIN_S_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    round_idx: int
    num_samples: int
    mean_loss: float
    sum_sq_loss: float
    samples_seen: int
    train_s: float
    def __init__(self, task_id: _Optional[str] = ..., round_idx: _Optional[int] = ..., num_samples: _Optional[int] = ..., mean_loss: _Optional[float] = ..., sum_sq_loss: _Optional[float] = ..., samples_seen: _Optional[int] = ..., train_s: _Optional[float] = ...) -> None: ...

class MaskedUpload(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: MaskedInputHeader
    chunk: _common_pb2.Chunk
    def __init__(self, header: _Optional[_Union[MaskedInputHeader, _Mapping]] = ..., chunk: _Optional[_Union[_common_pb2.Chunk, _Mapping]] = ...) -> None: ...

class ModelRequest(_message.Message):
    __slots__ = ("model_version",)
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    model_version: int
    def __init__(self, model_version: _Optional[int] = ...) -> None: ...

class UpdateHeader(_message.Message):
    __slots__ = ("task_id", "round_idx", "model_version", "num_samples", "mean_loss", "sum_sq_loss", "samples_seen", "train_s", "download_s", "codec", "payload_bytes", "sha256")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_IDX_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    NUM_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    MEAN_LOSS_FIELD_NUMBER: _ClassVar[int]
    SUM_SQ_LOSS_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_SEEN_FIELD_NUMBER: _ClassVar[int]
    TRAIN_S_FIELD_NUMBER: _ClassVar[int]
    DOWNLOAD_S_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    round_idx: int
    model_version: int
    num_samples: int
    mean_loss: float
    sum_sq_loss: float
    samples_seen: int
    train_s: float
    download_s: float
    codec: str
    payload_bytes: _containers.RepeatedScalarFieldContainer[int]
    sha256: str
    def __init__(self, task_id: _Optional[str] = ..., round_idx: _Optional[int] = ..., model_version: _Optional[int] = ..., num_samples: _Optional[int] = ..., mean_loss: _Optional[float] = ..., sum_sq_loss: _Optional[float] = ..., samples_seen: _Optional[int] = ..., train_s: _Optional[float] = ..., download_s: _Optional[float] = ..., codec: _Optional[str] = ..., payload_bytes: _Optional[_Iterable[int]] = ..., sha256: _Optional[str] = ...) -> None: ...

class UploadMessage(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: UpdateHeader
    chunk: _common_pb2.Chunk
    def __init__(self, header: _Optional[_Union[UpdateHeader, _Mapping]] = ..., chunk: _Optional[_Union[_common_pb2.Chunk, _Mapping]] = ...) -> None: ...

class UploadReply(_message.Message):
    __slots__ = ("grant", "verdict")
    GRANT_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    grant: Grant
    verdict: UpdateVerdict
    def __init__(self, grant: _Optional[_Union[Grant, _Mapping]] = ..., verdict: _Optional[_Union[UpdateVerdict, _Mapping]] = ...) -> None: ...

class Grant(_message.Message):
    __slots__ = ("max_chunk_bytes",)
    MAX_CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    max_chunk_bytes: int
    def __init__(self, max_chunk_bytes: _Optional[int] = ...) -> None: ...

class UpdateVerdict(_message.Message):
    __slots__ = ("accepted", "reason")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    reason: str
    def __init__(self, accepted: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ClientStatus(_message.Message):
    __slots__ = ("client_id", "name", "state", "last_seen_s")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_S_FIELD_NUMBER: _ClassVar[int]
    client_id: int
    name: str
    state: str
    last_seen_s: float
    def __init__(self, client_id: _Optional[int] = ..., name: _Optional[str] = ..., state: _Optional[str] = ..., last_seen_s: _Optional[float] = ...) -> None: ...

class StatusReply(_message.Message):
    __slots__ = ("round_idx", "rounds", "phase", "assigned", "received", "accuracy", "clients", "peak_rss_bytes", "baseline_rss_bytes")
    ROUND_IDX_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    ASSIGNED_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    CLIENTS_FIELD_NUMBER: _ClassVar[int]
    PEAK_RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    BASELINE_RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    round_idx: int
    rounds: int
    phase: str
    assigned: int
    received: int
    accuracy: float
    clients: _containers.RepeatedCompositeFieldContainer[ClientStatus]
    peak_rss_bytes: int
    baseline_rss_bytes: int
    def __init__(self, round_idx: _Optional[int] = ..., rounds: _Optional[int] = ..., phase: _Optional[str] = ..., assigned: _Optional[int] = ..., received: _Optional[int] = ..., accuracy: _Optional[float] = ..., clients: _Optional[_Iterable[_Union[ClientStatus, _Mapping]]] = ..., peak_rss_bytes: _Optional[int] = ..., baseline_rss_bytes: _Optional[int] = ...) -> None: ...
