"""A detection search's cost scope: the backbone by default, the whole static detector with
``costScope: detector`` (costlier, arch for arch), named in the outputs; a scope the task has no
graph for is refused before the study is touched."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from support.detection import save_detection_supernet, scenes_dataset
from support.search import read_csv, write_search_manifest

from gen5nas.cli import main
from gen5nas.errors import SpecError
from gen5nas.search.cost import cost_scope
from gen5nas.spec.search import NASSearchSpec
from gen5nas.tasks.classification import CLASSIFICATION
from gen5nas.tasks.detection import DETECTION


@pytest.fixture(scope="module")
def det_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_detection_supernet(tmp_path_factory.mktemp("det-ckpt") / "det.pth")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data") / "scenes"  # generated once, by the first run


def _spec(scope: str | None) -> NASSearchSpec:
    data = {"dataset": {"kind": "scenes"}, **({"costScope": scope} if scope else {})}
    return NASSearchSpec.model_validate(data)


def test_each_task_is_costed_in_its_own_scopes_only() -> None:
    assert cost_scope(_spec(None), DETECTION) == "backbone"
    assert cost_scope(_spec("detector"), DETECTION) == "detector"
    assert cost_scope(_spec("backbone"), CLASSIFICATION) == "backbone"
    for task, scope, allowed in (
        (CLASSIFICATION, "detector", "network, backbone"),
        (DETECTION, "network", "backbone, detector"),  # a detector has no classifier head
    ):
        with pytest.raises(
            SpecError, match=f"no {scope} graph.*allowed for {task.name}: {allowed}"
        ):
            cost_scope(_spec(scope), task)


def _costs_by_resolution(work: Path) -> dict[str, tuple[float, float]]:
    rows = read_csv(work / "subnets.csv")
    return {r["resolution"]: (float(r["latency_ms"]), float(r["energy_mj"])) for r in rows}


def test_a_detection_search_costs_the_backbone_or_the_whole_detector(
    tmp_path: Path, det_ckpt: Path, scenes: Path
) -> None:
    runs = {}
    for scope in ("backbone", "detector"):
        spec = {"maxTrials": 2, **({"costScope": scope} if scope == "detector" else {})}
        manifest = write_search_manifest(
            tmp_path / f"{scope}.yaml",
            task="detection",
            dataset=scenes_dataset(scenes),
            evaluation={"calibBatches": 1, "valBatches": 1},
            **spec,
        )
        work = tmp_path / scope
        argv = ["search", "-f", str(manifest), "--checkpoint", str(det_ckpt), "--work-dir"]
        assert main([*argv, str(work)]) == 0
        study = optuna.load_study(study_name="t", storage=f"sqlite:///{work / 'study.db'}")
        assert study.user_attrs["cost_scope"] == scope  # -> NASSearch status.costScope
        assert {r["cost_scope"] for r in read_csv(work / "subnets.csv")} == {scope}
        assert f"latency ({scope}, ms)" in (work / "pareto_front.html").read_text()
        runs[scope] = _costs_by_resolution(work)
    backbone, detector = runs["backbone"], runs["detector"]
    assert set(backbone) == set(detector) == {"64x64", "48x48"}  # the max and min subnets
    for res in backbone:
        assert detector[res][0] > backbone[res][0] and detector[res][1] > backbone[res][1]
