"""A corpus of hostile and careless inputs to the spec readers: manifests, arch files, space
ranges, YAML bombs, deep nesting, non-UTF-8 bytes, empty and huge files, names, storage URLs
and output paths. Each must end in a SpecError that names the field (or file) at fault and what
is allowed: never a traceback, an OverflowError, a hang or a memory blow-up."""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from gen5nas.errors import SpecError
from gen5nas.spec import load_arch
from gen5nas.spec.common import load_spec
from gen5nas.spec.export import KIND as EXPORT_KIND
from gen5nas.spec.export import SubnetExportSpec
from gen5nas.spec.output_paths import check_writable_dir, check_writable_file
from gen5nas.spec.search import KIND as SEARCH_KIND
from gen5nas.spec.search import NASSearchSpec
from gen5nas.spec.training import KIND as TRAINING_KIND
from gen5nas.spec.training import SupernetTrainingSpec
from gen5nas.spec.yaml_input import MAX_BYTES, MAX_DEPTH, MAX_NODES

ROOT = Path(__file__).resolve().parents[2]
TRAINING = {
    "searchSpace": {"name": "mobilenetv2_tiny"},
    "dataset": {"kind": "imagefolder", "path": "/data/x", "batchSize": 8},
    "optimizer": {"lr": 0.05},
    "schedule": {"epochs": 3, "warmupEpochs": 1},
}
SEARCH = {"checkpoint": "/ckpt.pth", "dataset": {"kind": "digits"}}
COCO = {"kind": "coco", "path": "/data/coco"}
EXPORT = {"checkpoint": "/ckpt.pth", "trial": 3}
INLINE_SPACE = {
    "archSetting": {
        "numBlocks": [[1, 2, 1]],
        "kernelSize": [[3, 5, 2]],
        "numOutChannels": [[8, 16, 8]],
        "expandRatio": [{1: 1, 2: 4}],
        "stride": [1],
        "firstNumOutChannels": [8, 16, 8],
        "lastNumOutChannels": [64, 64, 1],
    },
    "inputResizerCfg": [[32, 32]],
}
ARCH = {
    "resolution": [32, 32],
    "first_num_out_channels": 8,
    "last_num_out_channels": 64,
    "stages": [{"num_blocks": 1, "kernel_size": 3, "expand_ratio": 1, "num_out_channels": 8}],
}
MODELS = {
    TRAINING_KIND: (SupernetTrainingSpec, TRAINING),
    SEARCH_KIND: (NASSearchSpec, SEARCH),
    EXPORT_KIND: (SubnetExportSpec, EXPORT),
}


def manifest_text(kind: str, spec: dict[str, Any], name: str = "case") -> str:
    doc = {"apiVersion": "gen5nas.io/v1alpha1", "kind": kind, "metadata": {"name": name}}
    return yaml.safe_dump({**doc, "spec": spec}, sort_keys=False)


def _with(kind: str, path: str, value: Any) -> Callable[[], str]:
    """The kind's good spec with spec.<path> (dotted) set to ``value``."""

    def text() -> str:
        spec = copy.deepcopy(MODELS[kind][1])
        node = spec
        parts = path.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
        return manifest_text(kind, spec)

    return text


def _space_range(key: str, value: Any) -> Callable[[], str]:
    def text() -> str:
        space = copy.deepcopy(INLINE_SPACE)
        space["archSetting"][key] = [value] if key not in ("firstNumOutChannels",) else value
        return manifest_text(TRAINING_KIND, {**TRAINING, "searchSpace": space})

    return text


def _raw(kind: str, text: str) -> Callable[[], str]:
    return lambda: text


def _named(name: Any) -> Callable[[], str]:
    return lambda: manifest_text(TRAINING_KIND, TRAINING, name=name)


def _alias_bomb_in_name() -> str:
    """The 1.4 KB "billion laughs": nine levels of nine aliases, 9^9 strings in metadata.name."""
    lines = ["apiVersion: gen5nas.io/v1alpha1", f"kind: {TRAINING_KIND}"]
    lines.append('a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]')
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    lines += ["metadata: {name: *a9}", "spec: {}"]
    return "\n".join(lines) + "\n"


def _merge_key_bomb() -> str:
    lines = ["x0: &x0 {a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8}"]
    for i in range(1, 9):
        lines.append(f"x{i}: &x{i} [" + ",".join([f"*x{i - 1}"] * 8) + "]")
    lines.append("spec: {<<: *x0, deep: *x8}")
    return "\n".join(lines) + "\n"


def _cat(text: str) -> Callable[[], str]:
    return lambda: text


# (id, the manifest text, the words the error must hold: the field and what is allowed)
MANIFESTS: list[tuple[str, Callable[[], str], str, list[str]]] = [
    ("lr inf", _with(TRAINING_KIND, "optimizer.lr", float("inf")), TRAINING_KIND,
     ["optimizer.lr", "finite"]),
    ("lr nan", _raw(TRAINING_KIND, manifest_text(TRAINING_KIND, TRAINING).replace(
        "lr: 0.05", "lr: .nan")), TRAINING_KIND, ["optimizer.lr", "finite"]),
    ("lr huge", _with(TRAINING_KIND, "optimizer.lr", 1e300), TRAINING_KIND,
     ["optimizer.lr", "less than or equal to 100"]),
    ("epochs huge", _with(TRAINING_KIND, "schedule.epochs", 10**30), TRAINING_KIND,
     ["schedule.epochs", "less than or equal to 10000"]),
    ("seed past 2^64", _with(TRAINING_KIND, "seed", 2**64), TRAINING_KIND,
     ["seed", "less than or equal to 2147483647"]),
    ("seed negative", _with(SEARCH_KIND, "sampler.seed", -5), SEARCH_KIND,
     ["sampler.seed", "greater than or equal to 0"]),
    ("warmup 1e308", _with(TRAINING_KIND, "schedule.warmupEpochs", 1e308), TRAINING_KIND,
     ["schedule.warmupEpochs", "less than or equal to 10000"]),
    ("warmup past epochs", _with(TRAINING_KIND, "schedule.warmupEpochs", 7), TRAINING_KIND,
     ["schedule", "warmupEpochs (7.0) must not exceed epochs (3)"]),
    ("retrain warmup past epochs", _with(EXPORT_KIND, "retrain.warmupEpochs", 11), EXPORT_KIND,
     ["retrain", "must not exceed epochs"]),
    ("momentum 1", _with(TRAINING_KIND, "optimizer.momentum", 1.0), TRAINING_KIND,
     ["optimizer.momentum", "less than 1"]),
    ("hwConfig inf", _with(SEARCH_KIND, "estimator.hwConfig", {"clock_mhz": float("inf")}),
     SEARCH_KIND, ["estimator.hwConfig.clock_mhz", "finite"]),
    ("parityAtol nan", _with(EXPORT_KIND, "parityAtol", float("nan")), EXPORT_KIND,
     ["parityAtol", "finite"]),
    ("maxTrials huge", _with(SEARCH_KIND, "maxTrials", 10**12), SEARCH_KIND,
     ["maxTrials", "less than or equal to 1000000"]),
    ("port zero", _with(SEARCH_KIND, "estimator.ports", [0]), SEARCH_KIND,
     ["estimator.ports[0]", "greater than or equal to 1"]),
    ("grace not after heartbeat", _with(SEARCH_KIND, "storage",
     {"heartbeatIntervalS": 30, "gracePeriodS": 30}), SEARCH_KIND,
     ["storage", "gracePeriodS (30) must be longer than heartbeatIntervalS (30)"]),
    ("batch size huge", _with(TRAINING_KIND, "dataset.batchSize", 10**9), TRAINING_KIND,
     ["dataset.batchSize", "less than or equal to 65536"]),
    ("memory not a quantity", _with(TRAINING_KIND, "runtime.memory", "1 GB"), TRAINING_KIND,
     ["runtime.memory", "should match pattern"]),
    ("workers huge", _with(TRAINING_KIND, "runtime.workers", 10**6), TRAINING_KIND,
     ["runtime.workers", "less than or equal to 1024"]),
    ("opset huge", _with(EXPORT_KIND, "opset", 10**9), EXPORT_KIND,
     ["opset", "less than or equal to 30"]),
    ("input shape side huge", _with(EXPORT_KIND, "inputShape", [1, 3, 10**7, 32]), EXPORT_KIND,
     ["inputShape[2]", "less than or equal to 4096"]),
    ("string 100 KB", _with(TRAINING_KIND, "dataset.path", "x" * 100_000), TRAINING_KIND,
     ["dataset.path", "at most 4096 characters"]),
    ("pvc with a slash", _with(TRAINING_KIND, "runtime.datasetPvc", "team-b/data"),
     TRAINING_KIND, ["runtime.datasetPvc", "not a DNS-1123 name"]),
    ("range expands to 10^12 values", _space_range("numOutChannels", [1, 10**12, 1]),
     TRAINING_KIND, ["archSetting.numOutChannels[0]", "at most 16384"]),
    ("range expands past the cap", _space_range("numOutChannels", [1, 16384, 1]),
     TRAINING_KIND, ["archSetting.numOutChannels[0]", "16384 values", "at most 4096"]),
    ("range step 0", _space_range("numBlocks", [1, 2, 0]), TRAINING_KIND,
     ["archSetting.numBlocks[0]", "step must be positive"]),
    ("range step off max, huge", _space_range("numOutChannels", [1, 16000, 7]), TRAINING_KIND,
     ["archSetting.numOutChannels[0]", "step 7 does not land on max"]),
    ("depth huge", _space_range("numBlocks", [1, 10**6, 1]), TRAINING_KIND,
     ["archSetting.numBlocks[0]", "at most 64"]),
    ("even kernel", _space_range("kernelSize", [2, 4, 2]), TRAINING_KIND,
     ["archSetting.kernelSize[0]", "must be odd"]),
    ("expand ratio inf", _space_range("expandRatio", {1: float("inf"), 2: 4}), TRAINING_KIND,
     ["archSetting.expandRatio[0][1]", "finite"]),
    ("name with ..", _named("../../etc"), TRAINING_KIND, ["metadata.name", "DNS-1123"]),
    ("name with a slash", _named("a/b"), TRAINING_KIND, ["metadata.name", "DNS-1123"]),
    ("name in capitals", _named("MyRun"), TRAINING_KIND, ["metadata.name", "DNS-1123"]),
    ("name too long", _named("a" * 300), TRAINING_KIND, ["metadata.name", "at most 253"]),
    ("name a number", _named(123), TRAINING_KIND, ["metadata.name", "valid string"]),
    ("alias bomb in metadata.name", _alias_bomb_in_name, TRAINING_KIND,
     [f"more than {MAX_NODES} nodes"]),
    ("merge-key bomb", _merge_key_bomb, TRAINING_KIND, [f"more than {MAX_NODES} nodes"]),
    ("recursive alias", _cat("spec: &s {spec: *s}\n"), TRAINING_KIND, ["recursive alias *s"]),
    ("deep nesting", _cat("spec: " + "[" * 10_000 + "]" * 10_000 + "\n"), TRAINING_KIND,
     [f"nesting deeper than {MAX_DEPTH}"]),
    ("integer of 5000 digits", _cat("spec: {seed: " + "9" * 5000 + "}\n"), TRAINING_KIND,
     ["not valid YAML", "digits"]),
    ("python tag", _cat("spec: !!python/object/apply:os.system ['true']\n"), TRAINING_KIND,
     ["not valid YAML"]),
    ("coco for classification", _with(TRAINING_KIND, "dataset", COCO), TRAINING_KIND,
     ["dataset.kind", "kind coco is for task detection", "set task: detection"]),
    ("coco for a search without a task", _with(SEARCH_KIND, "dataset", COCO), SEARCH_KIND,
     ["dataset.kind", "kind coco is for task detection"]),
    ("detection without boxes", _with(TRAINING_KIND, "task", "detection"), TRAINING_KIND,
     ["task", "detection needs dataset.kind coco or scenes", "not imagefolder"]),
    ("detection search on digits", _with(SEARCH_KIND, "task", "detection"), SEARCH_KIND,
     ["task", "coco or scenes", "not digits"]),
    ("detection export on imagefolder", _raw(EXPORT_KIND, manifest_text(EXPORT_KIND, {
        **EXPORT, "task": "detection", "dataset": TRAINING["dataset"]})), EXPORT_KIND,
     ["task", "coco or scenes"]),
    ("unknown task", _with(TRAINING_KIND, "task", "segmentation"), TRAINING_KIND,
     ["task", "'classification' or 'detection'"]),
    ("coco settings on imagefolder", _with(TRAINING_KIND, "dataset.coco", {}), TRAINING_KIND,
     ["dataset.coco", "for kind coco, not imagefolder"]),
    ("coco path leaves the root", _with(TRAINING_KIND, "dataset", {
        **COCO, "coco": {"valAnnotations": "../other/instances_val.json"}}), TRAINING_KIND,
     ["dataset.coco.valAnnotations", "relative to dataset.path", "'..'"]),
    ("coco path absolute", _with(TRAINING_KIND, "dataset", {
        **COCO, "coco": {"trainImages": "/etc"}}), TRAINING_KIND,
     ["dataset.coco.trainImages", "no leading '/'"]),
    ("coco path huge", _with(TRAINING_KIND, "dataset", {
        **COCO, "coco": {"trainImages": "x" * 5000}}), TRAINING_KIND,
     ["dataset.coco.trainImages", "at most 4096 characters"]),
    ("coco without path", _with(TRAINING_KIND, "dataset", {"kind": "coco"}), TRAINING_KIND,
     ["path is required for dataset kind coco"]),
    ("cost scope unknown", _with(SEARCH_KIND, "costScope", "head"), SEARCH_KIND,
     ["costScope", "'network', 'backbone' or 'detector'"]),
    ("unknown field", _with(TRAINING_KIND, "schedule.epochz", 3), TRAINING_KIND,
     ["schedule.epochz", "unknown field"]),
    ("wrong apiVersion", _cat(manifest_text(TRAINING_KIND, TRAINING).replace(
        "gen5nas.io/v1alpha1", "gen5nas.io/v9")), TRAINING_KIND, ["apiVersion", "v1alpha1"]),
]  # fmt: skip


@pytest.mark.parametrize("case", [c[0] for c in MANIFESTS])
def test_a_bad_manifest_names_the_field(tmp_path: Path, case: str) -> None:
    _, text, kind, words = next(c for c in MANIFESTS if c[0] == case)
    path = tmp_path / "manifest.yaml"
    path.write_text(text())
    model = MODELS[kind][0]
    with pytest.raises(SpecError) as info:
        load_spec(path, kind, model)
    message = str(info.value)
    assert str(path) in message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize("kind", list(MODELS))
def test_the_good_manifests_load(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "manifest.yaml"
    path.write_text(manifest_text(kind, MODELS[kind][1], name="my-run.v2"))
    manifest, _ = load_spec(path, kind, MODELS[kind][0])
    assert manifest.name == "my-run.v2"


@pytest.mark.parametrize("kind", list(MODELS))
def test_detection_on_coco_loads_with_the_coco_layout(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "manifest.yaml"
    spec = {**MODELS[kind][1], "task": "detection", "dataset": COCO}
    path.write_text(manifest_text(kind, spec))
    _, loaded = load_spec(path, kind, MODELS[kind][0])
    assert loaded.task == "detection" and loaded.dataset is not None
    coco = loaded.dataset.coco
    assert coco is not None  # always set for kind coco: the data reader needs no defaults
    assert (coco.train_images, coco.train_annotations, coco.val_images, coco.val_annotations) == (
        "train", "annotations/instances_train.json", "val", "annotations/instances_val.json",
    )  # fmt: skip
    layout = {"trainImages": "images/train2017", "valImages": "images/val2017",
              "trainAnnotations": "annotations/instances_train2017.json"}  # fmt: skip
    path.write_text(manifest_text(kind, {**spec, "dataset": {**COCO, "coco": layout}}))
    _, loaded = load_spec(path, kind, MODELS[kind][0])
    assert loaded.dataset is not None and loaded.dataset.coco is not None
    assert loaded.dataset.coco.train_images == "images/train2017"
    assert loaded.dataset.coco.val_annotations == "annotations/instances_val.json"
    # scenes has boxes too; a search or an export without a task follows its checkpoint
    path.write_text(manifest_text(kind, {**spec, "dataset": {"kind": "scenes"}}))
    assert load_spec(path, kind, MODELS[kind][0])[1].task == "detection"


# ---- files: arch files and whatever the readers are pointed at -------------------------------
FILES: list[tuple[str, Callable[[Path], None], list[str]]] = [
    ("empty arch file", lambda p: p.write_text(""), ["empty file", "expected an arch"]),
    ("only a comment", lambda p: p.write_text("# nothing\n"), ["empty file"]),
    ("non-UTF-8 bytes", lambda p: p.write_bytes(b"resolution: [32, 32]\nname: \xff\xfe\n"),
     ["not UTF-8", "0xff", "offset 27"]),
    ("a PNG", lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64)), ["not UTF-8"]),
    ("huge file", lambda p: p.write_text("a: " + "x" * (MAX_BYTES + 10) + "\n"),
     [f"larger than {MAX_BYTES} bytes"]),
    ("many nodes", lambda p: p.write_text("[" + ",".join(["1"] * (MAX_NODES + 5)) + "]\n"),
     [f"more than {MAX_NODES} nodes"]),
    ("two documents", lambda p: p.write_text(yaml.safe_dump(ARCH) + "---\n" +
     yaml.safe_dump(ARCH)), ["2 YAML documents"]),
    ("kernel huge", lambda p: p.write_text(yaml.safe_dump({**ARCH, "stages": [
        {**ARCH["stages"][0], "kernel_size": 10**9}]})),
     ["stages[0].kernel_size", "less than or equal to 31"]),
    ("resolution huge", lambda p: p.write_text(yaml.safe_dump({**ARCH,
     "resolution": [10**6, 32]})), ["resolution[0]", "less than or equal to 4096"]),
    ("expand ratio nan", lambda p: p.write_text(yaml.safe_dump(ARCH).replace(
        "expand_ratio: 1", "expand_ratio: .nan")), ["stages[0].expand_ratio", "finite"]),
    ("a directory", lambda p: p.mkdir(), ["is a directory"]),
    ("missing", lambda p: None, ["arch file not found"]),
]  # fmt: skip


@pytest.mark.parametrize("case", [c[0] for c in FILES])
def test_a_bad_arch_file_names_the_problem(tmp_path: Path, case: str) -> None:
    _, write, words = next(c for c in FILES if c[0] == case)
    path = tmp_path / "trial_1.yaml"
    write(path)
    with pytest.raises(SpecError) as info:
        load_arch(path)
    message = str(info.value)
    assert str(path) in message
    for word in words:
        assert word in message, message


def test_a_good_arch_file_with_a_bom_loads(tmp_path: Path) -> None:
    path = tmp_path / "trial_1.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + yaml.safe_dump(ARCH).encode())
    assert load_arch(path).resolution == (32, 32)


def test_legitimate_aliases_still_work(tmp_path: Path) -> None:
    path = tmp_path / "trial_1.yaml"
    path.write_text(
        "resolution: [32, 32]\nfirst_num_out_channels: &w 8\nlast_num_out_channels: 64\n"
        "stages:\n- &s {num_blocks: 1, kernel_size: 3, expand_ratio: 1, num_out_channels: *w}\n"
        "- *s\n"
    )
    arch = load_arch(path)
    assert len(arch.stages) == 2 and arch.stages[1].num_out_channels == 8


# ---- storage URLs -------------------------------------------------------------------------------
URLS: list[tuple[str, list[str]]] = [
    ("mongodb://db/x", ["storage.url", "unsupported database 'mongodb'", "sqlite:///"]),
    ("not a url", ["storage.url", "is not a database URL", "postgresql://"]),
    ("postgresql+psycopg://u@db/x", ["storage.url", "no driver", "accepted forms"]),
    ("sqlite://", ["storage.url", "in-memory SQLite"]),
]


@pytest.mark.parametrize("url", [u for u, _ in URLS])
def test_a_bad_storage_url_names_the_accepted_forms(url: str) -> None:
    from gen5nas.search.study import parse_storage_url

    words = dict(URLS)[url]
    with pytest.raises(SpecError) as info:
        parse_storage_url(url)
    for word in words:
        assert word in str(info.value)


def test_a_plain_postgresql_url_gets_the_installed_driver() -> None:
    from gen5nas.search.study import parse_storage_url

    assert parse_storage_url("postgresql://optuna@db:5432/x").drivername == "postgresql+psycopg2"
    kept = parse_storage_url("postgresql+psycopg2://optuna@db/x")
    assert kept.drivername == "postgresql+psycopg2"


@pytest.mark.e2e
def test_a_plain_postgresql_url_opens_a_real_study(postgres_server: Any) -> None:
    from gen5nas.search.study import open_storage

    url = postgres_server.new_database("plainurl").replace(
        "postgresql+psycopg2://", "postgresql://"
    )
    assert url.startswith("postgresql://")
    storage = open_storage(url)
    assert storage.get_all_studies() == []
    storage.engine.dispose()


# ---- output paths ---------------------------------------------------------------------------
def test_a_work_dir_below_a_file_is_refused_before_any_work(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(SpecError) as info:
        check_writable_dir(blocker / "run", "--work-dir")
    assert "--work-dir" in str(info.value) and "cannot write in" in str(info.value)
    with pytest.raises(SpecError, match=r"--work-dir: .* exists and is not a directory"):
        check_writable_dir(blocker, "--work-dir")


def test_an_output_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"output: .* is a directory; give a file path"):
        check_writable_file(tmp_path, "output")
    assert check_writable_file(tmp_path / "m.onnx", "output") == tmp_path / "m.onnx"
    assert not list(tmp_path.iterdir())  # the check leaves nothing behind


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    import os

    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'workloads'}", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "gen5nas", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_the_cli_refuses_an_unwritable_work_dir_and_huge_overrides(tmp_path: Path) -> None:
    manifest = tmp_path / "train.yaml"
    manifest.write_text(manifest_text(TRAINING_KIND, TRAINING))
    (tmp_path / "a-file").write_text("")
    res = _cli("train", "-f", str(manifest), "--work-dir", str(tmp_path / "a-file" / "w"),
               cwd=tmp_path)  # fmt: skip
    assert res.returncode != 0 and "--work-dir" in res.stderr and "Traceback" not in res.stderr
    res = _cli("train", "-f", str(manifest), "--epochs", str(10**15), cwd=tmp_path)
    assert res.returncode != 0 and "--epochs: must be in 1..10000" in res.stderr
    assert not (tmp_path / "work_dirs").exists()  # refused before anything was made


def test_default_warmup_fits_a_short_run() -> None:
    """The default warmup (5 epochs) is cut to a 2-epoch run, not refused; a written one is."""
    import torch

    from gen5nas.spec.space import parse_model
    from gen5nas.train.optim import build_scheduler

    doc = copy.deepcopy(TRAINING)
    doc["schedule"] = {"epochs": 2}
    spec = parse_model(SupernetTrainingSpec, doc, source="spec")
    assert spec.schedule.warmup_epochs > spec.schedule.epochs

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_scheduler(opt, spec.schedule, iters_per_epoch=10)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert max(lrs) == pytest.approx(1.0)  # the warmup ended inside the run
