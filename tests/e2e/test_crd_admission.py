"""The generated CRDs on a real kube-apiserver refuse, at admission, what the operator's spec
models refuse: bounds (OpenAPI minimum/maximum/maxLength/pattern/maxItems) and the models'
cross-field rules (CEL ``x-kubernetes-validations``), each with a message naming the field.
A URL with a password is refused too, so it never reaches etcd. The shipped examples (the good
resources) are accepted. Creates are server-side dry runs: admission runs in full, nothing is
stored, so the cases stay independent."""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from gen5nas.errors import SpecError
from gen5nas.spec.export import SubnetExportSpec
from gen5nas.spec.search import NASSearchSpec
from gen5nas.spec.space import parse_model
from gen5nas.spec.training import SupernetTrainingSpec

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "crds"
EXAMPLES = ROOT / "examples"
NAMESPACE = "admission"
MODELS = {
    "SupernetTraining": SupernetTrainingSpec,
    "NASSearch": NASSearchSpec,
    "SubnetExport": SubnetExportSpec,
}
FILES = {
    "SupernetTraining": "supernettraining.yaml",
    "NASSearch": "nassearch.yaml",
    "SubnetExport": "subnetexport.yaml",
}
DETECTION = {kind: f"detection/{name}" for kind, name in FILES.items()}
INLINE_SPACE = {
    "archSetting": {
        "numBlocks": [[1, 2, 1], [1, 3, 1]],
        "kernelSize": [[3, 5, 2], [3, 3, 1]],
        "numOutChannels": [[8, 16, 8], [16, 24, 8]],
        "expandRatio": [{"1": 1, "2": 4}, {"1": 4, "2": 6, "3": 6}],
        "stride": [1, 2],
        "firstNumOutChannels": [8, 16, 8],
        "lastNumOutChannels": [64, 64, 1],
    },
    "inputResizerCfg": [[32, 32], [48, 48]],
}


def example(kind: str, files: dict[str, str] = FILES) -> dict[str, Any]:
    doc = yaml.safe_load((EXAMPLES / files[kind]).read_text())
    doc["metadata"] = {"name": f"{kind.lower()}-case", "namespace": NAMESPACE}
    return doc


def setting(doc: dict[str, Any]) -> dict[str, Any]:
    doc["spec"]["searchSpace"] = copy.deepcopy(INLINE_SPACE)
    return doc["spec"]["searchSpace"]["archSetting"]


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A change setting spec.<path> (dots; [i] for list entries) to value."""

    def change(doc: dict[str, Any]) -> None:
        parts = path.replace("[", ".[").split(".")
        node: Any = doc["spec"]
        for part in parts[:-1]:
            node = node[int(part[1:-1])] if part.startswith("[") else node.setdefault(part, {})
        last = parts[-1]
        if last.startswith("["):
            node[int(last[1:-1])] = value
        else:
            node[last] = value

    return change


def _in_space(key: str, index: int, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        setting(doc)[key][index] = value

    return change


def _drop_table_entry(doc: dict[str, Any]) -> None:
    setting(doc)["expandRatio"][1].pop("3")


def _short_stride(doc: dict[str, Any]) -> None:
    setting(doc)["stride"] = [1]


def _name_and_inline(doc: dict[str, Any]) -> None:
    doc["spec"]["searchSpace"] = {"name": "mobilenetv2_sample1", **copy.deepcopy(INLINE_SPACE)}


def _no_space_source(doc: dict[str, Any]) -> None:
    doc["spec"]["searchSpace"] = {"archSetting": INLINE_SPACE["archSetting"]}


def _two_subnets(doc: dict[str, Any]) -> None:
    doc["spec"]["archFile"] = "/results/fix_subnets/trial_1.yaml"


def _no_subnet(doc: dict[str, Any]) -> None:
    doc["spec"].pop("trial")


def _update(**fields: Any) -> Callable[[dict[str, Any]], None]:
    """A change setting several spec fields at once."""

    def change(doc: dict[str, Any]) -> None:
        doc["spec"].update(fields)

    return change


def _duplicate_resolution(doc: dict[str, Any]) -> None:
    setting(doc)
    doc["spec"]["searchSpace"]["inputResizerCfg"] = [[32, 32], [32, 32]]


def _no_path(doc: dict[str, Any]) -> None:
    doc["spec"]["dataset"].pop("path")


def _coco(task: str | None = None, **coco: str) -> Callable[[dict[str, Any]], None]:
    """A change to a kind coco dataset (with ``coco`` settings), and ``task`` when given."""

    def change(doc: dict[str, Any]) -> None:
        doc["spec"]["dataset"] = {"kind": "coco", "path": "/data/coco"}
        if coco:
            doc["spec"]["dataset"]["coco"] = coco
        if task:
            doc["spec"]["task"] = task

    return change


# (id, kind, change, what the API server's message must name, words of the message)
CASES: list[tuple[str, str, Callable[[dict[str, Any]], None], str, str]] = [
    ("epochs huge", "SupernetTraining", _set("schedule.epochs", 10**12), "spec.schedule.epochs",
     "less than or equal to 10000"),
    ("epochs zero", "SupernetTraining", _set("schedule.epochs", 0), "spec.schedule.epochs",
     "greater than or equal to 1"),
    ("seed huge", "SupernetTraining", _set("seed", 2**40), "spec.seed", "less than or equal"),
    ("seed negative", "NASSearch", _set("sampler.seed", -1), "spec.sampler.seed",
     "greater than or equal to 0"),
    ("lr huge", "SupernetTraining", _set("optimizer.lr", 1e30), "spec.optimizer.lr",
     "less than or equal to 100"),
    ("lr zero", "SupernetTraining", _set("optimizer.lr", 0), "spec.optimizer.lr",
     "greater than 0"),
    ("warmup past epochs", "SupernetTraining", _set("schedule.warmupEpochs", 400),
     "spec.schedule", "warmupEpochs must not exceed epochs"),
    ("retrain warmup past epochs", "SubnetExport", _set("retrain.warmupEpochs", 31),
     "spec.retrain", "warmupEpochs must not exceed epochs"),
    ("range min above max", "SupernetTraining", _in_space("numOutChannels", 0, [16, 8, 8]),
     "spec.searchSpace.archSetting.numOutChannels[0]", "min must not be greater than max"),
    ("range step off max", "SupernetTraining", _in_space("numOutChannels", 0, [8, 16, 3]),
     "spec.searchSpace.archSetting.numOutChannels[0]", "step must land on max"),
    ("range too many values", "SupernetTraining", _in_space("numOutChannels", 0, [1, 16384, 1]),
     "spec.searchSpace.archSetting.numOutChannels[0]", "at most 4096 values"),
    ("range value huge", "SupernetTraining", _in_space("numBlocks", 0, [1, 10**9, 1]),
     "spec.searchSpace.archSetting.numBlocks[0][1]", "less than or equal to 64"),
    ("range step zero", "SupernetTraining", _in_space("numBlocks", 0, [1, 2, 0]),
     "spec.searchSpace.archSetting.numBlocks[0][2]", "greater than or equal to 1"),
    ("even kernel", "SupernetTraining", _in_space("kernelSize", 0, [3, 7, 1]),
     "spec.searchSpace.archSetting.kernelSize[0]", "kernel sizes must be odd"),
    ("stages disagree", "SupernetTraining", _short_stride, "spec.searchSpace.archSetting",
     "stride needs one entry per stage"),
    ("expand table misses a depth", "SupernetTraining", _drop_table_entry,
     "spec.searchSpace.archSetting", "expandRatio needs a ratio for every numBlocks value"),
    ("expand ratio below 1", "SupernetTraining", _in_space("expandRatio", 0, {"1": 0.5, "2": 4}),
     "spec.searchSpace.archSetting.expandRatio[0]", "a ratio is a number >= 1"),
    ("duplicate resolutions", "SupernetTraining", _duplicate_resolution,
     "spec.searchSpace.inputResizerCfg", "duplicate resolutions"),
    ("name and inline space", "SupernetTraining", _name_and_inline, "spec.searchSpace",
     "not both"),
    ("neither name nor full inline space", "NASSearch", _no_space_source, "spec.searchSpace",
     "give name"),
    ("imagefolder without path", "SupernetTraining", _no_path, "spec.dataset",
     "dataset.path is required"),
    ("grace not after heartbeat", "NASSearch", _set("storage.gracePeriodS", 10), "spec.storage",
     "gracePeriodS must be longer than storage.heartbeatIntervalS"),
    ("grace below default heartbeat", "NASSearch",
     _set("storage", {"secretName": "db", "gracePeriodS": 5}), "spec.storage", "gracePeriodS"),
    ("password in storage url", "NASSearch",
     _set("storage.url", "postgresql://optuna:s3cret@db:5432/optuna"), "spec.storage.url",
     "must not hold a password"),
    ("password parameter in storage url", "NASSearch",
     _set("storage.url", "postgresql://db/optuna?user=u&password=s3cret"), "spec.storage.url",
     "must not hold a password"),
    ("two subnets", "SubnetExport", _two_subnets, "spec", "name exactly one subnet"),
    ("no subnet", "SubnetExport", _no_subnet, "spec", "name exactly one subnet"),
    ("port out of range", "NASSearch", _set("estimator.ports", [70000]),
     "spec.estimator.ports[0]", "less than or equal to 65535"),
    ("too many ports", "NASSearch", _set("estimator.ports", list(range(1000, 1100))),
     "spec.estimator.ports", "must have at most 64 items"),
    ("bad memory quantity", "SupernetTraining", _set("runtime.memory", "lots"),
     "spec.runtime.memory", "should match"),
    ("bad pvc name", "SupernetTraining", _set("runtime.datasetPvc", "../etc"),
     "spec.runtime.datasetPvc", "should match"),
    ("huge string", "SupernetTraining", _set("dataset.path", "/d" * 5000), "spec.dataset.path",
     "may not be more than 4096"),
    ("opset huge", "SubnetExport", _set("opset", 10**6), "spec.opset", "less than or equal to 30"),
    ("parallelism huge", "NASSearch", _set("parallelism", 10**6), "spec.parallelism",
     "less than or equal to 1024"),
    ("input shape side huge", "SubnetExport", _set("inputShape", [1, 3, 10**6, 224]),
     "spec.inputShape[2]", "less than or equal to 4096"),
    ("coco for classification", "SupernetTraining", _coco(), "spec.dataset.kind",
     "dataset.kind coco is for task detection"),
    ("coco for a search without a task", "NASSearch", _coco(), "spec.dataset.kind",
     "set task: detection"),
    ("detection without boxes", "SupernetTraining", _set("task", "detection"), "spec.task",
     "task detection needs dataset.kind coco or scenes"),
    ("detection search on imagefolder", "NASSearch", _set("task", "detection"), "spec.task",
     "coco or scenes"),
    ("detection export on imagefolder", "SubnetExport", _set("task", "detection"), "spec.task",
     "coco or scenes"),
    ("unknown task", "SupernetTraining", _set("task", "segmentation"), "spec.task",
     'supported values: "classification", "detection"'),
    ("coco settings on imagefolder", "SupernetTraining", _set("dataset.coco", {}),
     "spec.dataset.coco", "is for kind coco only"),
    ("coco path leaves the root", "SupernetTraining", _coco("detection", valImages="../other"),
     "spec.dataset.coco.valImages", "relative to dataset.path"),
    ("coco path absolute", "NASSearch", _coco("detection", trainAnnotations="/etc/passwd"),
     "spec.dataset.coco.trainAnnotations", "no leading '/'"),
    ("cost scope unknown", "NASSearch", _set("costScope", "head"), "spec.costScope",
     'supported values: "network", "backbone", "detector"'),
    ("detector of a classifier", "NASSearch",
     _update(task="classification", costScope="detector"), "spec.costScope",
     "costScope detector is for task detection"),
    ("nms with a dynamic batch", "SubnetExport", _update(postprocess="nms", dynamicBatch=True),
     "spec.postprocess", "postprocess nms exports one image at a time"),
    ("nms of a classifier", "SubnetExport",
     _update(postprocess="nms", task="classification", dynamicBatch=False), "spec.postprocess",
     "postprocess nms is for task detection"),
    ("postprocess unknown", "SubnetExport", _set("postprocess", "softmax"), "spec.postprocess",
     'supported values: "raw", "nms"'),
]  # fmt: skip


# A password in a URL is fine in a local file (the CLI takes it); only a custom resource, which
# etcd stores and `kubectl get` shows, must not carry one.
ADMISSION_ONLY = {"password in storage url", "password parameter in storage url"}


@pytest.fixture(scope="module")
def cluster(kube_cluster: Any) -> Any:
    kube_cluster.kubectl("apply", "--server-side", "-f", str(CRDS))
    kube_cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    kube_cluster.kubectl("create", "namespace", NAMESPACE, check=False)
    return kube_cluster


def dry_run_create(cluster: Any, doc: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl(
        "create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(doc), check=False
    )


@pytest.mark.parametrize("files", [FILES, DETECTION], ids=["classification", "detection"])
@pytest.mark.parametrize("kind", list(FILES))
def test_the_examples_are_admitted(cluster: Any, kind: str, files: dict[str, str]) -> None:
    doc = example(kind, files)
    res = dry_run_create(cluster, doc)
    assert res.returncode == 0, res.stderr
    parse_model(MODELS[kind], json.loads(res.stdout)["spec"])  # the operator accepts it too


def test_explicit_nulls_count_as_absent(cluster: Any) -> None:
    doc = example("SubnetExport")
    doc["spec"].update(archFile=None, arch=None)
    parse_model(SubnetExportSpec, doc["spec"])
    res = dry_run_create(cluster, doc)
    assert res.returncode == 0, res.stderr


def test_an_inline_space_is_admitted(cluster: Any) -> None:
    doc = example("SupernetTraining")
    setting(doc)
    res = dry_run_create(cluster, doc)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("case", [c[0] for c in CASES])
def test_admission_refuses_what_the_operator_refuses(cluster: Any, case: str) -> None:
    _, kind, change, field, words = next(c for c in CASES if c[0] == case)
    doc = example(kind)
    change(doc)
    if case not in ADMISSION_ONLY:  # the operator's model refuses the same spec
        with pytest.raises(SpecError):
            parse_model(MODELS[kind], doc["spec"], source="spec")
    res = dry_run_create(cluster, doc)
    assert res.returncode != 0, f"admitted: {res.stdout[:300]}"
    message = res.stderr
    assert field in message and words in message, message


def test_a_password_in_the_url_never_reaches_etcd(cluster: Any) -> None:
    doc = example("NASSearch")
    doc["spec"]["storage"] = {"url": "postgresql://optuna:s3cret@db:5432/optuna"}
    res = cluster.kubectl("create", "-f", "-", input=json.dumps(doc), check=False)
    assert res.returncode != 0 and "must not hold a password" in res.stderr
    got = cluster.kubectl("-n", NAMESPACE, "get", "nassearches", "-o", "json")
    assert "s3cret" not in got.stdout


def test_a_url_without_a_password_is_admitted(cluster: Any) -> None:
    doc = example("NASSearch")
    doc["spec"]["storage"] = {"url": "postgresql://optuna@db:5432/optuna"}
    assert dry_run_create(cluster, doc).returncode == 0


@pytest.mark.parametrize("name", ["../escape", "a/b", "Upper", "x" * 300])
def test_a_non_dns_name_is_refused(cluster: Any, name: str) -> None:
    doc = example("SupernetTraining")
    doc["metadata"]["name"] = name
    res = dry_run_create(cluster, doc)
    assert res.returncode != 0
    assert "metadata.name" in res.stderr or "name" in res.stderr.lower()
