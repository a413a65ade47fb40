"""The ranges every numeric spec field lives in, and the CEL rules the CRDs carry.

One home for the limits, so the CLI's validation (pydantic) and the API server's admission
(the CRDs that ``gen5nas_operator.crdgen`` generates from the same models) refuse the same
inputs. The bounds are generous (no real run comes near them) but finite: a value past one
would end in an OverflowError, a memory blow-up or a run that never ends, not in a result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import ConfigDict, Field, GetJsonSchemaHandler, JsonValue
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

# Strings without a tighter bound (paths, images, URLs): the API server's CEL cost estimator
# needs a maxLength on every string a rule reads, and 4 KiB is the longest Linux path.
MAX_STRING = 4096
# Kubernetes object names (metadata.name, a PVC, a Secret, a referenced resource).
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
MAX_NAME = 253
# A Kubernetes resource quantity (cpu: "500m", memory: "32Gi"), the API server's own grammar.
QUANTITY = (
    r"^[+]?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)

MAX_SEED = 2**31 - 1  # numpy and torch seeds, plus a rank offset, stay below 2**32
MAX_EPOCHS = 10_000
MAX_ITERS = 10**9
MAX_BATCHES = 100_000
MAX_BATCH_SIZE = 65_536
MAX_CLASSES = 100_000
MAX_SAMPLES = 10**9
MAX_LR = 100.0
MAX_TRIALS = 1_000_000
MAX_WORKERS = 1024
MAX_SECONDS = 86_400
MAX_LIST = 64  # servers, ports, tolerations, node selector entries
MAX_SPACE_VALUES = 4096
"""Most values one ``[min, max, step]`` range may expand to; refused before expanding."""
MAX_STAGES = 32
MAX_DEPTH = 64  # num_blocks of a stage
MAX_KERNEL = 31
MAX_CHANNELS = 16_384
MAX_RESOLUTION = 4096
MAX_EXPAND_RATIO = 64.0

Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
Epochs = Annotated[int, Field(ge=1, le=MAX_EPOCHS)]
Port = Annotated[int, Field(ge=1, le=65_535)]
K8sName = Annotated[str, Field(min_length=1, max_length=MAX_NAME, pattern=DNS1123_SUBDOMAIN)]
Quantity = Annotated[str, Field(max_length=64, pattern=QUANTITY)]
PathStr = Annotated[str, Field(min_length=1, max_length=MAX_STRING)]


@dataclass(frozen=True)
class Cel:
    """A CEL rule (``x-kubernetes-validations``) on a type: the API server's copy of a check
    its pydantic validator makes. ``message`` names the field and what is allowed;
    ``field_path`` (e.g. ``.dataset.kind``) is where the API server reports a rule on an object."""

    rule: str
    message: str
    field_path: str | None = None

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema.setdefault("x-kubernetes-validations", []).append(self.as_dict())
        return schema

    def as_dict(self) -> dict[str, str]:
        out = {"rule": self.rule, "message": self.message}
        if self.field_path:
            out["fieldPath"] = self.field_path
        return out


def cel_rules(*rules: Cel) -> ConfigDict:
    """A model's ``model_config`` carrying CEL rules on the model's object (cross-field rules)."""
    validations: list[JsonValue] = [dict(r.as_dict()) for r in rules]
    return ConfigDict(json_schema_extra={"x-kubernetes-validations": validations})


def check_flag(value: int, flag: str, high: int, low: int = 1) -> int:
    """A command-line override of a bounded spec field (model_copy does not validate)."""
    from gen5nas.errors import SpecError

    if not low <= value <= high:
        raise SpecError(f"must be in {low}..{high}, got {value}", field=flag)
    return value
