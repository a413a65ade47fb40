from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Metric(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    METRIC_UNSPECIFIED: _ClassVar[Metric]
    METRIC_LATENCY: _ClassVar[Metric]
    METRIC_ENERGY: _ClassVar[Metric]

class Bound(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BOUND_UNSPECIFIED: _ClassVar[Bound]
    BOUND_COMPUTE: _ClassVar[Bound]
    BOUND_MEMORY: _ClassVar[Bound]
    BOUND_NONE: _ClassVar[Bound]
METRIC_UNSPECIFIED: Metric
METRIC_LATENCY: Metric
METRIC_ENERGY: Metric
BOUND_UNSPECIFIED: Bound
BOUND_COMPUTE: Bound
BOUND_MEMORY: Bound
BOUND_NONE: Bound

class ArchRef(_message.Message):
    __slots__ = ("space", "arch_yaml", "num_classes", "activation", "scope", "task")
    SPACE_FIELD_NUMBER: _ClassVar[int]
    ARCH_YAML_FIELD_NUMBER: _ClassVar[int]
    NUM_CLASSES_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    space: str
    arch_yaml: str
    num_classes: int
    activation: str
    scope: str
    task: str
    def __init__(self, space: _Optional[str] = ..., arch_yaml: _Optional[str] = ..., num_classes: _Optional[int] = ..., activation: _Optional[str] = ..., scope: _Optional[str] = ..., task: _Optional[str] = ...) -> None: ...

class InputShape(_message.Message):
    __slots__ = ("name", "dims")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DIMS_FIELD_NUMBER: _ClassVar[int]
    name: str
    dims: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, name: _Optional[str] = ..., dims: _Optional[_Iterable[int]] = ...) -> None: ...

class EstimateRequest(_message.Message):
    __slots__ = ("onnx", "arch", "profile", "hw_config", "metrics", "backend", "input_shapes", "omit_layers")
    class HwConfigEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ONNX_FIELD_NUMBER: _ClassVar[int]
    ARCH_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    HW_CONFIG_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    INPUT_SHAPES_FIELD_NUMBER: _ClassVar[int]
    OMIT_LAYERS_FIELD_NUMBER: _ClassVar[int]
    onnx: bytes
    arch: ArchRef
    profile: str
    hw_config: _containers.ScalarMap[str, float]
    metrics: _containers.RepeatedScalarFieldContainer[Metric]
    backend: str
    input_shapes: _containers.RepeatedCompositeFieldContainer[InputShape]
    omit_layers: bool
    def __init__(self, onnx: _Optional[bytes] = ..., arch: _Optional[_Union[ArchRef, _Mapping]] = ..., profile: _Optional[str] = ..., hw_config: _Optional[_Mapping[str, float]] = ..., metrics: _Optional[_Iterable[_Union[Metric, str]]] = ..., backend: _Optional[str] = ..., input_shapes: _Optional[_Iterable[_Union[InputShape, _Mapping]]] = ..., omit_layers: _Optional[bool] = ...) -> None: ...

class LayerCost(_message.Message):
    __slots__ = ("name", "op_type", "op_kind", "macs", "vector_ops", "bytes_read", "bytes_written", "dram_bytes", "compute_cycles", "memory_cycles", "cycles", "bound", "latency_ms", "energy_mj", "unsupported")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OP_TYPE_FIELD_NUMBER: _ClassVar[int]
    OP_KIND_FIELD_NUMBER: _ClassVar[int]
    MACS_FIELD_NUMBER: _ClassVar[int]
    VECTOR_OPS_FIELD_NUMBER: _ClassVar[int]
    BYTES_READ_FIELD_NUMBER: _ClassVar[int]
    BYTES_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    DRAM_BYTES_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_CYCLES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_CYCLES_FIELD_NUMBER: _ClassVar[int]
    CYCLES_FIELD_NUMBER: _ClassVar[int]
    BOUND_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    ENERGY_MJ_FIELD_NUMBER: _ClassVar[int]
    UNSUPPORTED_FIELD_NUMBER: _ClassVar[int]
    name: str
    op_type: str
    op_kind: str
    macs: int
    vector_ops: int
    bytes_read: int
    bytes_written: int
    dram_bytes: int
    compute_cycles: float
    memory_cycles: float
    cycles: float
    bound: Bound
    latency_ms: float
    energy_mj: float
    unsupported: bool
    def __init__(self, name: _Optional[str] = ..., op_type: _Optional[str] = ..., op_kind: _Optional[str] = ..., macs: _Optional[int] = ..., vector_ops: _Optional[int] = ..., bytes_read: _Optional[int] = ..., bytes_written: _Optional[int] = ..., dram_bytes: _Optional[int] = ..., compute_cycles: _Optional[float] = ..., memory_cycles: _Optional[float] = ..., cycles: _Optional[float] = ..., bound: _Optional[_Union[Bound, str]] = ..., latency_ms: _Optional[float] = ..., energy_mj: _Optional[float] = ..., unsupported: _Optional[bool] = ...) -> None: ...

class EstimateResponse(_message.Message):
    __slots__ = ("latency_ms", "energy_mj", "layers", "backend", "profile", "estimator_version", "total_macs", "total_bytes", "unsupported_ops", "model_sha256", "hw_config", "notes")
    class HwConfigEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    ENERGY_MJ_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    ESTIMATOR_VERSION_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MACS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    UNSUPPORTED_OPS_FIELD_NUMBER: _ClassVar[int]
    MODEL_SHA256_FIELD_NUMBER: _ClassVar[int]
    HW_CONFIG_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    latency_ms: float
    energy_mj: float
    layers: _containers.RepeatedCompositeFieldContainer[LayerCost]
    backend: str
    profile: str
    estimator_version: str
    total_macs: int
    total_bytes: int
    unsupported_ops: _containers.RepeatedScalarFieldContainer[str]
    model_sha256: str
    hw_config: _containers.ScalarMap[str, float]
    notes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, latency_ms: _Optional[float] = ..., energy_mj: _Optional[float] = ..., layers: _Optional[_Iterable[_Union[LayerCost, _Mapping]]] = ..., backend: _Optional[str] = ..., profile: _Optional[str] = ..., estimator_version: _Optional[str] = ..., total_macs: _Optional[int] = ..., total_bytes: _Optional[int] = ..., unsupported_ops: _Optional[_Iterable[str]] = ..., model_sha256: _Optional[str] = ..., hw_config: _Optional[_Mapping[str, float]] = ..., notes: _Optional[_Iterable[str]] = ...) -> None: ...

class ListHardwareRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HardwareProfile(_message.Message):
    __slots__ = ("name", "description", "default_backend", "backends", "parameters", "sources", "path")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class SourcesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_BACKEND_FIELD_NUMBER: _ClassVar[int]
    BACKENDS_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    default_backend: str
    backends: _containers.RepeatedScalarFieldContainer[str]
    parameters: _containers.ScalarMap[str, float]
    sources: _containers.ScalarMap[str, str]
    path: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., default_backend: _Optional[str] = ..., backends: _Optional[_Iterable[str]] = ..., parameters: _Optional[_Mapping[str, float]] = ..., sources: _Optional[_Mapping[str, str]] = ..., path: _Optional[str] = ...) -> None: ...

class ListHardwareResponse(_message.Message):
    __slots__ = ("profiles", "default_profile", "estimator_version")
    PROFILES_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_PROFILE_FIELD_NUMBER: _ClassVar[int]
    ESTIMATOR_VERSION_FIELD_NUMBER: _ClassVar[int]
    profiles: _containers.RepeatedCompositeFieldContainer[HardwareProfile]
    default_profile: str
    estimator_version: str
    def __init__(self, profiles: _Optional[_Iterable[_Union[HardwareProfile, _Mapping]]] = ..., default_profile: _Optional[str] = ..., estimator_version: _Optional[str] = ...) -> None: ...
