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
    assert cols[:5] == ["Phase", "Trials", "Front", "Best-Acc", "Min-Cost"] and cols[-1] == "Age"
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    for key in ("phase", "conditions", "trials", "front", "outputs", "studyName", "progress"):
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
        ("Epoch", ".status.progress.epoch"),
        ("Epochs", ".spec.schedule.epochs"),
        ("Max-Top1", ".status.progress.maxTop1"),
        ("Min-Top1", ".status.progress.minTop1"),
        ("Age", ".metadata.creationTimestamp"),
    ]
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    progress = status["progress"]["properties"]  # in the schema: pruning keeps what it names
    assert {k: v["type"] for k, v in progress.items()} == {
        "epoch": "integer", "epochs": "integer", "iteration": "integer",
        "maxTop1": "number", "minTop1": "number", "updated": "string",
    }  # fmt: skip


def test_crdgen_cli_writes_into_a_folder(tmp_path: Path) -> None:
    assert crdgen.main(["--out", str(tmp_path), "--no-chart"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(crdgen.rendered())
