"""The CRDs in crds/ (and the chart's copy) are what crdgen makes from the spec models now,
and they are structural: only keywords the API server accepts."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from gen5nas_operator import crdgen
from gen5nas_operator.kinds import KINDS_BY_NAME

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"$ref", "$defs", "anyOf", "oneOf", "allOf", "prefixItems", "title", "default", "const"}


def _walk(node: Any, where: str = ""):
    if isinstance(node, dict):
        yield where, node
        for key, value in node.items():
            yield from _walk(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{where}[{i}]")


@pytest.mark.parametrize("folder", ["crds", "charts/gen5nas/crds"])
def test_generated_crds_match_the_spec_models(folder: str) -> None:
    expected = crdgen.rendered()
    found = {p.name: p.read_text() for p in (ROOT / folder).glob("*.yaml")}
    assert sorted(found) == sorted(expected), f"{folder}: files differ from crdgen's"
    for name, text in expected.items():
        assert found[name] == text, (
            f"{folder}/{name} is stale: run `python -m gen5nas_operator.crdgen --out crds/`"
        )


@pytest.mark.parametrize("kind", crdgen.KINDS, ids=lambda k: k.kind)
def test_schema_is_structural(kind: crdgen.Kind) -> None:
    crd = crdgen.build_crd(kind)
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for where, node in _walk(schema["properties"]["spec"]):
        if where.endswith(".properties") or where.endswith("x-kubernetes-validations"):
            continue
        if "type" in node or "properties" in node or "items" in node:
            assert not FORBIDDEN & set(node), f"{kind.kind}{where}: {FORBIDDEN & set(node)}"
            assert "type" in node, f"{kind.kind}{where}: structural schemas need a type"
            if node.get("type") == "object":
                assert node.get("additionalProperties") is not False
            if "exclusiveMinimum" in node:
                assert node["exclusiveMinimum"] is True and "minimum" in node


def _spec_props(kind_name: str) -> dict[str, Any]:
    crd = crdgen.build_crd(KINDS_BY_NAME[kind_name])
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]


def test_validation_carried_over() -> None:
    search = _spec_props("NASSearch")
    props = search["properties"]
    assert props["costKey"]["enum"] == ["latency", "energy"]
    assert props["maxTrials"]["minimum"] == 1
    assert props["parallelism"]["minimum"] == 1
    assert "dataset" in search["required"]
    assert props["estimator"]["properties"]["timeoutS"] == {
        **props["estimator"]["properties"]["timeoutS"],
        "minimum": 0,
        "exclusiveMinimum": True,
    }
    # Optional[X] becomes a nullable X
    assert props["checkpoint"]["type"] == "string" and props["checkpoint"]["nullable"] is True
    # dict -> additionalProperties; tolerations keep their pattern
    assert props["estimator"]["properties"]["hwConfig"]["additionalProperties"] == {
        "type": "number"
    }
    tol = props["runtime"]["properties"]["tolerations"]["items"]["properties"]
    assert tol["effect"]["pattern"].startswith("^(")

    training = _spec_props("SupernetTraining")["properties"]
    arch = training["searchSpace"]["properties"]["archSetting"]["properties"]
    # tuples [min, max, step] -> arrays of exactly 3 integers
    depths = arch["numBlocks"]["items"]
    assert {k: depths[k] for k in ("type", "items", "minItems", "maxItems")} == {
        "type": "array",
        "items": {"type": "integer", "minimum": 1, "maximum": 64},
        "minItems": 3,
        "maxItems": 3,
    }
    # the models' cross-field rules become CEL rules with messages
    rules = {r["rule"]: r["message"] for r in depths["x-kubernetes-validations"]}
    assert "min must not be greater than max" in rules["self[0] <= self[1]"]
    assert "default: 0.2" in training["model"]["properties"]["dropout"]["description"]


def test_immutable_fields_have_cel_rules_with_messages() -> None:
    for kind in crdgen.KINDS:
        spec = _spec_props(kind.kind)
        for path in kind.immutable:
            node = spec
            for part in path.split("."):
                node = node["properties"][part]
            rules = [r for r in node["x-kubernetes-validations"] if r["rule"] == "self == oldSelf"]
            assert len(rules) == 1
            assert f"spec.{path} is immutable" in rules[0]["message"]


def test_references_are_fixed_only_once_the_resource_left_waiting() -> None:
    """A rule at the object's root (a field's rule cannot see status): the reference may change
    while Waiting, and the message says why it cannot after, at the field's path."""
    for kind, fields in (("NASSearch", {"supernetTraining", "maxTrials"}),
                         ("SubnetExport", {"supernetTraining", "nasSearch"})):  # fmt: skip
        crd = crdgen.build_crd(KINDS_BY_NAME[kind])
        root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        rules = {r["fieldPath"]: r for r in root["x-kubernetes-validations"]}
        assert set(rules) == {f".spec.{f}" for f in fields}
        for f in fields:
            rule = rules[f".spec.{f}"]
            assert "oldSelf.status.phase == 'Waiting'" in rule["rule"]
            assert (
                f"spec.{f} is immutable once the {kind} has left Waiting"
                in (rule["messageExpression"])
            )
            assert rule["reason"] == "FieldValueForbidden"
            assert f not in KINDS_BY_NAME[kind].immutable  # no field rule fixing it for good


def test_unknown_immutable_path_is_an_error() -> None:
    bad = dataclasses.replace(KINDS_BY_NAME["NASSearch"], immutable=["noSuchField"], columns=[])
    with pytest.raises(crdgen.SchemaError, match="noSuchField"):
        crdgen.build_crd(bad)


def test_names_columns_and_status() -> None:
    docs = {name: yaml.safe_load(text) for name, text in crdgen.rendered().items()}
    nas = docs["nassearches.gen5nas.io.yaml"]
    names = nas["spec"]["names"]
    assert names["shortNames"] == ["nas"] and names["categories"] == ["gen5nas"]
    version = nas["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    cols = [c["name"] for c in version["additionalPrinterColumns"]]
    assert cols[:9] == [
        "Phase", "Ready", "Trials", "Front", "Best-Score", "Metric", "Min-Cost", "Unit", "Scope",
    ]  # fmt: skip
    assert cols[-1] == "Age"
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    for key in ("phase", "conditions", "trials", "front", "outputs", "studyName", "progress",
                "metric", "costScope"):  # fmt: skip
        assert key in status
    assert status["conditions"]["x-kubernetes-list-map-keys"] == ["type"]
    assert {d["spec"]["names"]["kind"] for d in docs.values()} == {
        "SupernetTraining",
        "NASSearch",
        "SubnetExport",
    }


def test_training_shows_its_progress() -> None:
    crd = yaml.safe_load(crdgen.rendered()["supernettrainings.gen5nas.io.yaml"])
    version = crd["spec"]["versions"][0]
    default = [
        (c["name"], c["jsonPath"])
        for c in version["additionalPrinterColumns"]
        if not c.get("priority")
    ]
    assert default == [
        ("Phase", ".status.phase"),
        ("Ready", '.status.conditions[?(@.type=="Ready")].status'),
        ("Epoch", ".status.progress.epoch"),
        ("Epochs", ".status.epochs"),
        ("Metric", ".status.progress.metric"),
        ("Max-Score", ".status.progress.maxScore"),
        ("Min-Score", ".status.progress.minScore"),
        ("Age", ".metadata.creationTimestamp"),
    ]
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    progress = status["progress"]["properties"]  # in the schema: pruning keeps what it names
    assert {k: v["type"] for k, v in progress.items()} == {
        "epoch": "integer", "epochs": "integer", "iteration": "integer",
        "metric": "string", "maxScore": "number", "minScore": "number", "updated": "string",
    }  # fmt: skip


def test_columns_show_effective_values_from_status() -> None:
    """A column on a spec field with a default would show blank where the default applies: the
    operator writes the effective value into status and the column reads that. Only spec fields
    without a default (what a SubnetExport names) are read from the spec."""
    no_default = {".spec.nasSearch", ".spec.trial"}
    for kind in crdgen.KINDS:
        for c in kind.columns:
            path = c["jsonPath"]
            assert path.startswith((".status.", ".metadata.")) or path in no_default, (kind, c)
        status = crdgen.build_crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        props = status["properties"]["status"]["properties"]
        for c in kind.columns:  # what a column reads is in the status schema (not pruned)
            if c["jsonPath"].startswith(".status.") and "[" not in c["jsonPath"]:
                node = props
                *parents, leaf = c["jsonPath"].removeprefix(".status.").split(".")
                for part in parents:
                    node = node[part]["properties"]
                assert leaf in node, (kind.kind, c)


def test_crdgen_cli_writes_into_a_folder(tmp_path: Path) -> None:
    assert crdgen.main(["--out", str(tmp_path), "--no-chart"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(crdgen.rendered())
