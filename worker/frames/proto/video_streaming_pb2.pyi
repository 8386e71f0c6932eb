from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AnnotateRequest(_message.Message):
    __slots__ = ("device_name", "remote_stream_id", "type", "start_timestamp", "end_timestamp", "object_type", "object_id", "object_tracking_id", "confidence", "object_bouding_box", "location", "object_coordinate", "mask", "object_signature", "ml_model", "ml_model_version", "width", "height", "is_keyframe", "video_type", "offset_timestamp", "offset_duration", "offset_frame_id", "offset_packet_id", "custom_meta_1", "custom_meta_2", "custom_meta_3", "custom_meta_4", "custom_meta_5")
    DEVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    REMOTE_STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    START_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    END_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    OBJECT_TYPE_FIELD_NUMBER: _ClassVar[int]
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    OBJECT_TRACKING_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    OBJECT_BOUDING_BOX_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    OBJECT_COORDINATE_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    OBJECT_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    ML_MODEL_FIELD_NUMBER: _ClassVar[int]
    ML_MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    IS_KEYFRAME_FIELD_NUMBER: _ClassVar[int]
    VIDEO_TYPE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    OFFSET_DURATION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_PACKET_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_META_1_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_META_2_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_META_3_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_META_4_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_META_5_FIELD_NUMBER: _ClassVar[int]
    device_name: str
    remote_stream_id: str
    type: str
    start_timestamp: int
    end_timestamp: int
    object_type: str
    object_id: str
    object_tracking_id: str
    confidence: float
    object_bouding_box: BoudingBox
    location: Location
    object_coordinate: Coordinate
    mask: _containers.RepeatedCompositeFieldContainer[Coordinate]
    object_signature: _containers.RepeatedScalarFieldContainer[float]
    ml_model: str
    ml_model_version: str
    width: int
    height: int
    is_keyframe: bool
    video_type: str
    offset_timestamp: int
    offset_duration: int
    offset_frame_id: int
    offset_packet_id: int
    custom_meta_1: str
    custom_meta_2: str
    custom_meta_3: str
    custom_meta_4: str
    custom_meta_5: str
    def __init__(self, device_name: _Optional[str] = ..., remote_stream_id: _Optional[str] = ..., type: _Optional[str] = ..., start_timestamp: _Optional[int] = ..., end_timestamp: _Optional[int] = ..., object_type: _Optional[str] = ..., object_id: _Optional[str] = ..., object_tracking_id: _Optional[str] = ..., confidence: _Optional[float] = ..., object_bouding_box: _Optional[_Union[BoudingBox, _Mapping]] = ..., location: _Optional[_Union[Location, _Mapping]] = ..., object_coordinate: _Optional[_Union[Coordinate, _Mapping]] = ..., mask: _Optional[_Iterable[_Union[Coordinate, _Mapping]]] = ..., object_signature: _Optional[_Iterable[float]] = ..., ml_model: _Optional[str] = ..., ml_model_version: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., is_keyframe: _Optional[bool] = ..., video_type: _Optional[str] = ..., offset_timestamp: _Optional[int] = ..., offset_duration: _Optional[int] = ..., offset_frame_id: _Optional[int] = ..., offset_packet_id: _Optional[int] = ..., custom_meta_1: _Optional[str] = ..., custom_meta_2: _Optional[str] = ..., custom_meta_3: _Optional[str] = ..., custom_meta_4: _Optional[str] = ..., custom_meta_5: _Optional[str] = ...) -> None: ...

class AnnotateResponse(_message.Message):
    __slots__ = ("device_name", "remote_stream_id", "type", "start_timestamp")
    DEVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    REMOTE_STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    START_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    device_name: str
    remote_stream_id: str
    type: str
    start_timestamp: int
    def __init__(self, device_name: _Optional[str] = ..., remote_stream_id: _Optional[str] = ..., type: _Optional[str] = ..., start_timestamp: _Optional[int] = ...) -> None: ...

class Location(_message.Message):
    __slots__ = ("lat", "lon")
    LAT_FIELD_NUMBER: _ClassVar[int]
    LON_FIELD_NUMBER: _ClassVar[int]
    lat: float
    lon: float
    def __init__(self, lat: _Optional[float] = ..., lon: _Optional[float] = ...) -> None: ...

class Coordinate(_message.Message):
    __slots__ = ("x", "y", "z")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    Z_FIELD_NUMBER: _ClassVar[int]
    x: float
    y: float
    z: float
    def __init__(self, x: _Optional[float] = ..., y: _Optional[float] = ..., z: _Optional[float] = ...) -> None: ...

class BoudingBox(_message.Message):
    __slots__ = ("top", "left", "width", "height")
    TOP_FIELD_NUMBER: _ClassVar[int]
    LEFT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    top: int
    left: int
    width: int
    height: int
    def __init__(self, top: _Optional[int] = ..., left: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class ShapeProto(_message.Message):
    __slots__ = ("dim",)
    class Dim(_message.Message):
        __slots__ = ("size", "name")
        SIZE_FIELD_NUMBER: _ClassVar[int]
        NAME_FIELD_NUMBER: _ClassVar[int]
        size: int
        name: str
        def __init__(self, size: _Optional[int] = ..., name: _Optional[str] = ...) -> None: ...
    DIM_FIELD_NUMBER: _ClassVar[int]
    dim: _containers.RepeatedCompositeFieldContainer[ShapeProto.Dim]
    def __init__(self, dim: _Optional[_Iterable[_Union[ShapeProto.Dim, _Mapping]]] = ...) -> None: ...

class VideoFrame(_message.Message):
    __slots__ = ("width", "height", "data", "timestamp", "is_keyframe", "pts", "dts", "frame_type", "is_corrupt", "time_base", "shape", "device_id", "packet", "keyframe", "extradata", "codec_name", "pix_fmt")
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    IS_KEYFRAME_FIELD_NUMBER: _ClassVar[int]
    PTS_FIELD_NUMBER: _ClassVar[int]
    DTS_FIELD_NUMBER: _ClassVar[int]
    FRAME_TYPE_FIELD_NUMBER: _ClassVar[int]
    IS_CORRUPT_FIELD_NUMBER: _ClassVar[int]
    TIME_BASE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    PACKET_FIELD_NUMBER: _ClassVar[int]
    KEYFRAME_FIELD_NUMBER: _ClassVar[int]
    EXTRADATA_FIELD_NUMBER: _ClassVar[int]
    CODEC_NAME_FIELD_NUMBER: _ClassVar[int]
    PIX_FMT_FIELD_NUMBER: _ClassVar[int]
    width: int
    height: int
    data: bytes
    timestamp: int
    is_keyframe: bool
    pts: int
    dts: int
    frame_type: str
    is_corrupt: bool
    time_base: float
    shape: ShapeProto
    device_id: str
    packet: int
    keyframe: int
    extradata: bytes
    codec_name: str
    pix_fmt: str
    def __init__(self, width: _Optional[int] = ..., height: _Optional[int] = ..., data: _Optional[bytes] = ..., timestamp: _Optional[int] = ..., is_keyframe: _Optional[bool] = ..., pts: _Optional[int] = ..., dts: _Optional[int] = ..., frame_type: _Optional[str] = ..., is_corrupt: _Optional[bool] = ..., time_base: _Optional[float] = ..., shape: _Optional[_Union[ShapeProto, _Mapping]] = ..., device_id: _Optional[str] = ..., packet: _Optional[int] = ..., keyframe: _Optional[int] = ..., extradata: _Optional[bytes] = ..., codec_name: _Optional[str] = ..., pix_fmt: _Optional[str] = ...) -> None: ...

class VideoFrameRequest(_message.Message):
    __slots__ = ("key_frame_only", "device_id")
    KEY_FRAME_ONLY_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    key_frame_only: bool
    device_id: str
    def __init__(self, key_frame_only: _Optional[bool] = ..., device_id: _Optional[str] = ...) -> None: ...

class VideoFrameBufferedRequest(_message.Message):
    __slots__ = ("device_id", "timestamp_from", "timestamp_to")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FROM_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_TO_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    timestamp_from: int
    timestamp_to: int
    def __init__(self, device_id: _Optional[str] = ..., timestamp_from: _Optional[int] = ..., timestamp_to: _Optional[int] = ...) -> None: ...

class ListStream(_message.Message):
    __slots__ = ("name", "status", "failing_streak", "health_status", "dead", "exit_code", "pid", "running", "paused", "restarting", "oomkilled", "error")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FAILING_STREAK_FIELD_NUMBER: _ClassVar[int]
    HEALTH_STATUS_FIELD_NUMBER: _ClassVar[int]
    DEAD_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    RESTARTING_FIELD_NUMBER: _ClassVar[int]
    OOMKILLED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    name: str
    status: str
    failing_streak: int
    health_status: str
    dead: bool
    exit_code: int
    pid: int
    running: bool
    paused: bool
    restarting: bool
    oomkilled: bool
    error: str
    def __init__(self, name: _Optional[str] = ..., status: _Optional[str] = ..., failing_streak: _Optional[int] = ..., health_status: _Optional[str] = ..., dead: _Optional[bool] = ..., exit_code: _Optional[int] = ..., pid: _Optional[int] = ..., running: _Optional[bool] = ..., paused: _Optional[bool] = ..., restarting: _Optional[bool] = ..., oomkilled: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class ListStreamRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ProxyRequest(_message.Message):
    __slots__ = ("device_id", "passthrough")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    PASSTHROUGH_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    passthrough: bool
    def __init__(self, device_id: _Optional[str] = ..., passthrough: _Optional[bool] = ...) -> None: ...

class ProxyResponse(_message.Message):
    __slots__ = ("device_id", "passthrough")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    PASSTHROUGH_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    passthrough: bool
    def __init__(self, device_id: _Optional[str] = ..., passthrough: _Optional[bool] = ...) -> None: ...

class StorageRequest(_message.Message):
    __slots__ = ("device_id", "start")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    start: bool
    def __init__(self, device_id: _Optional[str] = ..., start: _Optional[bool] = ...) -> None: ...

class StorageResponse(_message.Message):
    __slots__ = ("device_id", "start")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    start: bool
    def __init__(self, device_id: _Optional[str] = ..., start: _Optional[bool] = ...) -> None: ...

class VideoCodec(_message.Message):
    __slots__ = ("name", "width", "height", "pix_fmt", "extradata", "extradata_size", "long_name")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    PIX_FMT_FIELD_NUMBER: _ClassVar[int]
    EXTRADATA_FIELD_NUMBER: _ClassVar[int]
    EXTRADATA_SIZE_FIELD_NUMBER: _ClassVar[int]
    LONG_NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    width: int
    height: int
    pix_fmt: str
    extradata: bytes
    extradata_size: int
    long_name: str
    def __init__(self, name: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., pix_fmt: _Optional[str] = ..., extradata: _Optional[bytes] = ..., extradata_size: _Optional[int] = ..., long_name: _Optional[str] = ...) -> None: ...

class VideoBuffer(_message.Message):
    __slots__ = ("start_time", "end_time", "duration_seconds", "approximate_fps", "frames")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    APPROXIMATE_FPS_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    start_time: int
    end_time: int
    duration_seconds: int
    approximate_fps: int
    frames: int
    def __init__(self, start_time: _Optional[int] = ..., end_time: _Optional[int] = ..., duration_seconds: _Optional[int] = ..., approximate_fps: _Optional[int] = ..., frames: _Optional[int] = ...) -> None: ...

class VideoProbeRequest(_message.Message):
    __slots__ = ("device_id",)
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    def __init__(self, device_id: _Optional[str] = ...) -> None: ...

class VideoProbeResponse(_message.Message):
    __slots__ = ("video_codec", "buffer")
    VIDEO_CODEC_FIELD_NUMBER: _ClassVar[int]
    BUFFER_FIELD_NUMBER: _ClassVar[int]
    video_codec: VideoCodec
    buffer: VideoBuffer
    def __init__(self, video_codec: _Optional[_Union[VideoCodec, _Mapping]] = ..., buffer: _Optional[_Union[VideoBuffer, _Mapping]] = ...) -> None: ...

class SystemTimeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SystemTimeResponse(_message.Message):
    __slots__ = ("current_time",)
    CURRENT_TIME_FIELD_NUMBER: _ClassVar[int]
    current_time: int
    def __init__(self, current_time: _Optional[int] = ...) -> None: ...
