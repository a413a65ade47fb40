"""Generate the CustomResourceDefinitions from the pydantic spec models the CLI uses.

The spec schema is ``model_json_schema(by_alias=True)`` rewritten into the *structural*
OpenAPI v3 subset the API server accepts: ``$ref`` inlined, ``Optional[X]`` as ``X`` with
``nullable``, tuples as arrays with min/maxItems, ``exclusiveMinimum: n`` as OpenAPI 3.0's
boolean form, no titles/defaults/``additionalProperties: false`` (the API server prunes unknown
fields and kubectl's strict field validation rejects them). Defaults stay in the models (the
CLI applies them) and are shown in descriptions so ``kubectl explain`` tells them.

Run ``python -m gen5nas_operator.crdgen --out crds/`` after changing a spec model; it also
syncs ``charts/gen5nas/crds/``. ``tests/operator/test_operator_crdgen.py`` fails when either drifts. What each kind contributes
(names, spec model, immutable fields, printer columns, status schema) is its row in
``gen5nas_operator.kinds``; this module only translates and renders.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from gen5nas.spec.bounds import MAX_STRING
from gen5nas.spec.common import API_GROUP, API_VERSION
from gen5nas_operator.common.kind import Kind
from gen5nas_operator.common.status_schema import COMMON_STATUS
from gen5nas_operator.kinds import KINDS

CATEGORY = "gen5nas"
# Arrays/maps with no bound in the models get one here: the API server's CEL cost estimator
# needs bounds to accept ``self == oldSelf`` on them, and nothing sane comes near these.
DEFAULT_MAX_ITEMS = 256
DEFAULT_MAX_PROPERTIES = 256
# OpenAPI keywords a structural schema may carry (everything else from JSON Schema is dropped
# or translated; an unknown one is an error so a new model feature never slips through silently).
_KEEP = {
    "type", "description", "properties", "required", "items", "enum", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "minItems", "maxItems", "minLength", "maxLength",
    "pattern", "additionalProperties", "nullable", "format", "minProperties", "maxProperties",
    "multipleOf", "uniqueItems", "x-kubernetes-validations",
}  # fmt: skip
_DROP = {"title", "default", "examples", "propertyNames", "readOnly", "writeOnly", "deprecated"}
_FORMATS = {"date-time", "date", "int32", "int64", "float", "double", "byte", "uri"}


# ---- JSON Schema (pydantic) -> structural OpenAPI v3 ----------------------------------------
class SchemaError(ValueError):
    """A spec model uses a JSON Schema construct that a CRD cannot express."""


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _resolve(merged, defs)
    return node


def _fmt_default(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def to_openapi(node: dict[str, Any], defs: dict[str, Any], where: str = "spec") -> dict[str, Any]:
    """Translate one pydantic JSON Schema node (and its children) into a structural schema."""
    node = _resolve(node, defs)
    out: dict[str, Any] = {}
    description = node.get("description")
    if "default" in node and node["default"] is not None and node["default"] not in ([], {}):
        dflt = f"default: {_fmt_default(node['default'])}"
        description = f"{description} ({dflt})" if description else dflt

    if "anyOf" in node:
        options = [_resolve(o, defs) for o in node["anyOf"]]
        non_null = [o for o in options if o.get("type") != "null"]
        if len(non_null) != 1:
            raise SchemaError(f"{where}: unions other than Optional[X] are not supported")
        inner = to_openapi(
            {**non_null[0], **{k: v for k, v in node.items() if k not in ("anyOf", "default")}},
            defs,
            where,
        )
        inner.pop("description", None)
        if description:
            inner["description"] = description
        if len(non_null) < len(options):
            inner["nullable"] = True
        return inner
    for bad in ("oneOf", "allOf", "not", "const", "discriminator", "if"):
        if bad in node:
            raise SchemaError(f"{where}: JSON Schema '{bad}' has no structural CRD equivalent")

    type_ = node.get("type")
    if isinstance(type_, list):
        raise SchemaError(f"{where}: multi-type {type_} is not supported")
    for key, value in node.items():
        if key in _DROP or key in ("anyOf", "$defs", "prefixItems", "description"):
            continue
        if key not in _KEEP:
            raise SchemaError(f"{where}: JSON Schema keyword {key!r} is not handled")
        if key in ("exclusiveMinimum", "exclusiveMaximum"):
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            out[bound] = value
            out[key] = True
        elif key == "x-kubernetes-validations":
            out[key] = copy.deepcopy(value)  # the models' CEL rules (gen5nas.spec.bounds.Cel)
        elif key == "format":
            if value in _FORMATS:
                out[key] = value
        elif key == "properties":
            out[key] = {
                name: to_openapi(sub, defs, f"{where}.{name}") for name, sub in value.items()
            }
        elif key == "items":
            out[key] = to_openapi(value, defs, f"{where}[]")
        elif key == "additionalProperties":
            if value is False:
                continue  # pruning + strict field validation do this job in a CRD
            out[key] = to_openapi(value, defs, f"{where}.*") if isinstance(value, dict) else value
        else:
            out[key] = copy.deepcopy(value)
    if "prefixItems" in node:
        items = [to_openapi(i, defs, f"{where}[]") for i in node["prefixItems"]]
        if any(i != items[0] for i in items):
            raise SchemaError(f"{where}: tuples of mixed element types are not supported")
        out["items"] = items[0]
        out.setdefault("minItems", len(items))
        out.setdefault("maxItems", len(items))
    if "enum" in node and "type" not in out:
        out["type"] = "string" if all(isinstance(v, str) for v in node["enum"]) else "integer"
    if out.get("type") == "array":
        out.setdefault("maxItems", DEFAULT_MAX_ITEMS)
    if out.get("type") == "string" and "enum" not in out and "format" not in out:
        out.setdefault("maxLength", MAX_STRING)  # the models' str_max_length
    if out.get("type") == "object" and "additionalProperties" in out:
        out.setdefault("maxProperties", DEFAULT_MAX_PROPERTIES)
    if (
        out.get("type") == "object"
        and "properties" not in out
        and "additionalProperties" not in out
    ):
        raise SchemaError(f"{where}: an object needs properties or additionalProperties")
    if description:
        out["description"] = description.strip()
    first = [k for k in ("type", "description") if k in out]
    return {**{k: out[k] for k in first}, **{k: v for k, v in out.items() if k not in first}}


def spec_schema(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True)
    return to_openapi(raw, raw.get("$defs", {}))


def _add_immutability(spec: dict[str, Any], paths: list[str], kind: str) -> None:
    for path in paths:
        parts = path.split(".")
        parent = spec
        for part in parts[:-1]:
            parent = parent["properties"][part]
        leaf = parts[-1]
        if leaf not in parent.get("properties", {}):
            raise SchemaError(f"{kind}: immutable path spec.{path} is not a field of the spec")
        parent["properties"][leaf].setdefault("x-kubernetes-validations", []).append(
            {
                "rule": "self == oldSelf",
                "message": f"spec.{path} is immutable: it cannot change once the {kind} exists "
                f"(create a new {kind} instead)",
            }
        )
        # A transition rule on a field only runs when old and new both have it; adding or
        # removing an optional immutable field is caught on the parent.
        if leaf not in parent.get("required", []):
            parent.setdefault("x-kubernetes-validations", []).append(
                {
                    "rule": f"has(self.{leaf}) == has(oldSelf.{leaf})",
                    "message": f"spec.{path} is immutable: it cannot be added or removed once "
                    f"the {kind} exists",
                }
            )


def build_crd(kind: Kind) -> dict[str, Any]:
    spec = spec_schema(kind.spec_model)
    _add_immutability(spec, kind.immutable, kind.kind)
    status = {
        "type": "object",
        "description": "written by the gen5nas operator",
        "properties": {**copy.deepcopy(COMMON_STATUS), **copy.deepcopy(kind.status_extra)},
    }
    schema = {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": kind.crd_name,
            "labels": {"app.kubernetes.io/part-of": "gen5nas"},
        },
        "spec": {
            "group": API_GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.singular,
                "shortNames": kind.short_names,
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": kind.columns,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


HEADER = (
    "# Generated by `python -m gen5nas_operator.crdgen --out crds/` from {model}; do not edit.\n"
)


def render(kind: Kind) -> str:
    crd = build_crd(kind)
    model = f"{kind.spec_model.__module__}.{kind.spec_model.__name__}"
    return HEADER.format(model=model) + yaml.safe_dump(crd, sort_keys=False, width=100)


def rendered() -> dict[str, str]:
    """File name -> YAML text for every CRD."""
    return {f"{kind.crd_name}.yaml": render(kind) for kind in KINDS}


REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_CRDS = REPO_ROOT / "charts" / "gen5nas" / "crds"


def write(out: Path, also: list[Path]) -> list[Path]:
    written = []
    for folder in [out, *also]:
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in rendered().items():
            path = folder / name
            if not path.exists() or path.read_text() != text:
                path.write_text(text)
                written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gen5nas_operator.crdgen", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "crds")
    parser.add_argument(
        "--no-chart", action="store_true", help=f"do not sync {CHART_CRDS.relative_to(REPO_ROOT)}"
    )
    args = parser.parse_args(argv)
    written = write(args.out, [] if args.no_chart else [CHART_CRDS])
    for path in written:
        print(f"wrote {path}")
    if not written:
        print("CRDs are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
