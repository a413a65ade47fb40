"""Hardware profiles: named parameter sets of the analytical model, read from YAML files.

Shipped profiles live next to this module (``profiles/*.yaml``); ``--profiles DIR`` adds more
(a file whose name clashes with a shipped one replaces it, so a calibrated profile can be served
under the same name). Every parameter carries the source of its number.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gen5nas.errors import SpecError
from gen5nas.estimator.errors import InvalidRequest, NotFound
from gen5nas.spec.space import read_yaml

BUILTIN_DIR = Path(__file__).with_name("profiles")
DEFAULT_PROFILE = "rcar-gen5-npu"

# Every analytical parameter, its unit, and what it means (README-grade help for users).
PARAMETERS: dict[str, str] = {
    "clock_ghz": "accelerator clock, GHz",
    "mac_units": "MACs per cycle of the MAC array",
    "vector_ops_per_cycle": "elementwise/pooling ops per cycle (vector unit)",
    "bytes_per_element": "bytes per tensor element (1 = INT8, 4 = FP32)",
    "sram_kib": "on-chip SRAM, KiB: a tensor that fits stays on chip",
    "sram_bytes_per_cycle": "on-chip SRAM bandwidth, bytes per cycle",
    "dram_bandwidth_gbs": "peak DRAM bandwidth, GB/s",
    "dram_efficiency": "achievable fraction of the peak DRAM bandwidth",
    "layer_overhead_us": "fixed cost per layer (dispatch, DMA setup), microseconds",
    "e_mac_pj": "energy per MAC, pJ",
    "e_vector_op_pj": "energy per vector op, pJ",
    "e_sram_pj_per_byte": "energy per byte of on-chip SRAM traffic, pJ",
    "e_dram_pj_per_byte": "energy per byte of DRAM traffic, pJ",
    "static_power_w": "static power while the model runs, W (x latency = static energy)",
}
# Optional parameters: absent = 0 (the model of profiles written before them, unchanged).
OPTIONAL_PARAMETERS: dict[str, str] = {
    "output_overhead_macs": (
        "fixed work per output element of a conv/gemm, in MAC-equivalents (accumulator "
        "init, bias, store): shallow reductions (a 3-channel stem, depthwise) use the MAC "
        "array less well"
    ),
}
# Op kinds whose compute-unit utilisation is a parameter ("efficiency.<kind>"). A profile without
# "pwconv" (1x1 dense conv) uses its "conv" value: profiles written before the split keep meaning.
EFFICIENCY_KINDS = ("conv", "pwconv", "dwconv", "gemm", "elementwise", "pool", "resize")
EFFICIENCY_FALLBACK = {"pwconv": "conv"}
# Ops a runtime folds into the Conv/Gemm producing their input ("fusion:" in a profile): an
# activation right after it, a residual Add onto its output. A folded op moves no bytes and
# costs no cycles of its own (onnxruntime's CPU provider does both; NPUs do it in the output
# stage). Tagged per node by node_count.py.
FUSION_RULES = ("activation", "residual_add")
MEASURED_KEYS = {"warmup": 3, "repeats": 10, "threads": 0}
BACKENDS = ("analytical", "onnxruntime")


def efficiency_of(params: Mapping[str, float], kind: str) -> float:
    key = f"efficiency.{kind}"
    if key not in params and kind in EFFICIENCY_FALLBACK:
        key = f"efficiency.{EFFICIENCY_FALLBACK[kind]}"
    return params.get(key, 1.0)


def all_parameter_keys() -> list[str]:
    return [*PARAMETERS, *OPTIONAL_PARAMETERS, *(f"efficiency.{k}" for k in EFFICIENCY_KINDS)]


def describe(key: str) -> str:
    if key in PARAMETERS or key in OPTIONAL_PARAMETERS:
        return {**PARAMETERS, **OPTIONAL_PARAMETERS}[key]
    return "utilisation of the compute units, (0, 1]"


@dataclass(frozen=True)
class HardwareProfile:
    name: str
    description: str
    default_backend: str
    backends: tuple[str, ...]
    params: dict[str, float]
    sources: dict[str, str] = field(default_factory=dict)
    measured: dict[str, int] = field(default_factory=lambda: dict(MEASURED_KEYS))
    path: str = ""
    fusion: tuple[str, ...] = ()  # FUSION_RULES this hardware/runtime applies

    def efficiency(self, kind: str) -> float:
        return efficiency_of(self.params, kind)

    def with_overrides(self, overrides: Mapping[str, float] | None) -> HardwareProfile:
        """This profile with ``hw_config`` overrides applied; refuses unknown keys and values
        that are not positive finite numbers (a zero clock or bandwidth would divide by 0)."""
        if not overrides:
            return self
        allowed = all_parameter_keys()
        params = dict(self.params)
        for key, value in overrides.items():
            if key not in allowed:
                raise InvalidRequest(
                    f"hw_config: unknown parameter {key!r}; allowed: {', '.join(allowed)}"
                )
            v = float(value)
            if not math.isfinite(v) or v <= 0:
                raise InvalidRequest(
                    f"hw_config.{key}: must be a positive number, got {value} ({describe(key)})"
                )
            params[key] = v
        sources = {**self.sources, **{k: "hw_config override" for k in overrides}}
        return HardwareProfile(
            name=self.name,
            description=self.description,
            default_backend=self.default_backend,
            backends=self.backends,
            params=params,
            sources=sources,
            measured=self.measured,
            path=self.path,
            fusion=self.fusion,
        )

    def to_yaml_dict(self) -> dict[str, Any]:
        def entry(key: str) -> dict[str, Any]:
            value = self.params[key]
            return {
                "value": int(value) if float(value).is_integer() else value,
                "source": self.sources.get(key, ""),
            }

        return {
            "name": self.name,
            "description": self.description,
            "default_backend": self.default_backend,
            "backends": list(self.backends),
            "parameters": {
                k: entry(k) for k in [*PARAMETERS, *OPTIONAL_PARAMETERS] if k in self.params
            },
            "efficiency": {
                k: entry(f"efficiency.{k}")
                for k in EFFICIENCY_KINDS
                if f"efficiency.{k}" in self.params
            },
            "measured": dict(self.measured),
            **({"fusion": list(self.fusion)} if self.fusion else {}),
        }


def _entry(raw: Any, where: str) -> tuple[float, str]:
    if isinstance(raw, dict):
        if "value" not in raw:
            raise SpecError("missing 'value' (format {value: N, source: '...'})", where)
        value, source = raw["value"], str(raw.get("source", ""))
    else:
        value, source = raw, ""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise SpecError(f"not a number: {value!r}", where) from None
    if not math.isfinite(v) or v <= 0:
        raise SpecError(f"must be a positive number, got {value}", where)
    return v, source


def parse_profile(data: Any, path: str = "<inline>") -> HardwareProfile:
    """A profile from its YAML document; errors name the file and the field."""
    if not isinstance(data, dict):
        raise SpecError("a profile is a mapping with name, parameters, efficiency", path)
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise SpecError("missing 'name'", f"{path}: name")
    raw_params = data.get("parameters") or {}
    unknown = sorted(set(raw_params) - set(PARAMETERS) - set(OPTIONAL_PARAMETERS))
    if unknown:
        allowed = [*PARAMETERS, *OPTIONAL_PARAMETERS]
        raise SpecError(f"unknown {unknown}; allowed: {allowed}", f"{path}: parameters")
    missing = [k for k in PARAMETERS if k not in raw_params]
    if missing:
        raise SpecError(f"missing {missing}", f"{path}: parameters")
    params: dict[str, float] = {}
    sources: dict[str, str] = {}
    for key, raw in raw_params.items():
        params[key], sources[key] = _entry(raw, f"{path}: parameters.{key}")
    raw_eff = data.get("efficiency") or {}
    unknown = sorted(set(raw_eff) - set(EFFICIENCY_KINDS))
    if unknown:
        raise SpecError(
            f"unknown op kinds {unknown}; allowed: {list(EFFICIENCY_KINDS)}", f"{path}: efficiency"
        )
    for kind, raw in raw_eff.items():
        key = f"efficiency.{kind}"
        params[key], sources[key] = _entry(raw, f"{path}: efficiency.{kind}")
    backends = tuple(data.get("backends") or ["analytical"])
    bad = [b for b in backends if b not in BACKENDS]
    if bad:
        raise SpecError(f"unknown backends {bad}; allowed: {list(BACKENDS)}", f"{path}: backends")
    default_backend = str(data.get("default_backend") or backends[0])
    if default_backend not in backends:
        raise SpecError(f"{default_backend!r} is not in backends {list(backends)}", path)
    measured = dict(MEASURED_KEYS)
    for key, value in (data.get("measured") or {}).items():
        if key not in MEASURED_KEYS:
            raise SpecError(
                f"unknown key; allowed: {list(MEASURED_KEYS)}", f"{path}: measured.{key}"
            )
        measured[key] = int(value)
    fusion = data.get("fusion") or []
    if not isinstance(fusion, list) or any(r not in FUSION_RULES for r in fusion):
        raise SpecError(
            f"{fusion!r}: give a list of fusion rules from {list(FUSION_RULES)}", f"{path}: fusion"
        )
    return HardwareProfile(
        name=name,
        description=str(data.get("description", "")).strip(),
        default_backend=default_backend,
        backends=backends,
        params=params,
        sources=sources,
        measured=measured,
        path=path,
        fusion=tuple(dict.fromkeys(fusion)),
    )


def load_profile_file(path: str | Path) -> HardwareProfile:
    return parse_profile(read_yaml(path, "profile file"), str(path))


def save_profile(profile: HardwareProfile, path: str | Path, header: str = "") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(profile.to_yaml_dict(), sort_keys=False, width=100)
    if header:
        text = "".join(f"# {line}\n" for line in header.splitlines()) + text
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


class ProfileRegistry:
    """The profiles a server knows: the shipped ones, then each extra directory's (later wins)."""

    def __init__(self, extra_dirs: Iterable[str | Path] = (), include_builtin: bool = True) -> None:
        self._profiles: dict[str, HardwareProfile] = {}
        dirs = [BUILTIN_DIR] if include_builtin else []
        for d in extra_dirs:
            d = Path(d)
            if not d.is_dir():
                raise SpecError(f"profiles directory not found: {d}", "--profiles")
            dirs.append(d)
        for d in dirs:
            for f in sorted([*d.glob("*.yaml"), *d.glob("*.yml")]):
                profile = load_profile_file(f)
                self._profiles[profile.name] = profile

    def add(self, profile: HardwareProfile) -> None:
        self._profiles[profile.name] = profile

    def names(self) -> list[str]:
        return sorted(self._profiles)

    def all(self) -> list[HardwareProfile]:
        return [self._profiles[n] for n in self.names()]

    def get(self, name: str) -> HardwareProfile:
        name = name or DEFAULT_PROFILE
        try:
            return self._profiles[name]
        except KeyError:
            raise NotFound(
                f"unknown hardware profile {name!r}; this server knows: {', '.join(self.names())} "
                f"(add more with --profiles DIR)"
            ) from None
