"""`gen5nas search` end to end on a real (freshly initialised) supernet, real digits data and a
real in-process gRPC estimator; and the bad inputs it must refuse before touching the study."""

from __future__ import annotations

import socket
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState
from support.search import check_outputs, fresh_checkpoint, read_csv, write_search_manifest

from gen5nas.cli import main
from gen5nas.data.imagefolder import Batch
from gen5nas.search.cost import make_client, make_cost_fn
from gen5nas.search.evaluate import Evaluator, TrialFailed
from gen5nas.spec import load_space
from gen5nas.spec.search import NASSearchSpec
from gen5nas.supernet import Supernet


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fresh_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pth")


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("data") / "digits")  # generated once, by the first run


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _manifest(tmp_path: Path, digits: str, **spec: object) -> Path:
    return write_search_manifest(
        tmp_path / "nassearch.yaml",
        dataset={"kind": "digits", "path": digits, "batchSize": 64, "numWorkers": 0},
        **spec,
    )


def _complete(storage: str, name: str = "t") -> list[tuple[int, list[float]]]:
    study = optuna.load_study(study_name=name, storage=storage)
    return [(t.number, t.values) for t in study.get_trials(states=[TrialState.COMPLETE])]


def test_search_writes_consistent_outputs_and_resumes(
    tmp_path: Path, ckpt: Path, digits: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = _manifest(tmp_path, digits)
    work = tmp_path / "work"
    monkeypatch.chdir(tmp_path)  # a relative --work-dir: the recorded outputs are absolute
    argv = ["search", "-f", str(manifest), "--checkpoint", str(ckpt), "--work-dir", "work"]
    assert main([*argv, "--max-trials", "5"]) == 0
    storage = f"sqlite:///{work / 'study.db'}"
    study = optuna.load_study(study_name="t", storage=storage)
    rows = check_outputs(work, study, "latency")
    assert sum(r["state"] == "COMPLETE" for r in rows) == 5
    # What was written is recorded in the study, as the operator's status.outputs reads it.
    assert study.user_attrs["outputs"] == {
        "paretoHtml": str(work / "pareto_front.html"),
        "paretoPng": str(work / "pareto_front.png"),
        "subnetsCsv": str(work / "subnets.csv"),
        "studyPkl": str(work / "study.pkl"),
        "fixSubnets": f"{work / 'fix_subnets'}/",
    }
    assert all(Path(p).exists() for p in study.user_attrs["outputs"].values())
    assert (work / "nassearch.yaml").is_file()  # the config copy
    logs = list(work.glob("*/search.log"))
    assert logs and "search done" in logs[0].read_text()
    done = study.get_trials(states=[TrialState.COMPLETE])
    for t in done:  # the estimator's numbers and the evaluation's timings are recorded
        assert t.user_attrs["latency_ms"] > 0 and t.user_attrs["energy_mj"] > 0
        assert 0.0 <= t.user_attrs["accuracy_top1"] <= 100.0
        assert t.user_attrs["calib_s"] > 0 and t.user_attrs["eval_s"] > 0
    # The largest and the smallest subnets were evaluated first.
    space = load_space("mobilenetv2_tiny")
    assert rows[0]["resolution"] == "32x32" and rows[1]["resolution"] == "24x24"
    assert [d.num_out_channels for d in space.max().stages] == [
        int(rows[0][f"stage{i}_num_out_channels"]) for i in range(7)
    ]

    before = _complete(storage)
    assert main([*argv, "--max-trials", "7"]) == 0  # the same command resumes the study
    after = _complete(storage)
    assert len(after) == 7 and after[:5] == before
    assert len(read_csv(work / "subnets.csv")) == 7


@pytest.mark.slow  # two spawned processes each import torch and build the evaluator
def test_two_worker_processes_share_one_sqlite_study(
    tmp_path: Path, ckpt: Path, digits: str
) -> None:
    manifest = _manifest(tmp_path, digits, maxTrials=6)
    work = tmp_path / "work"
    assert (
        main(
            [
                "search",
                "-f",
                str(manifest),
                "--checkpoint",
                str(ckpt),
                "--work-dir",
                str(work),
                "--workers",
                "2",
            ]
        )
        == 0
    )
    study = optuna.load_study(study_name="t", storage=f"sqlite:///{work / 'study.db'}")
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers))
    assert len(study.get_trials(states=[TrialState.COMPLETE])) == 6
    assert not study.get_trials(states=[TrialState.RUNNING, TrialState.WAITING])
    assert {t.user_attrs["worker"] for t in study.get_trials(states=[TrialState.COMPLETE])} == {
        "worker-0",
        "worker-1",
    }
    check_outputs(work, study, "latency")
    (log,) = work.glob("*/search.log")  # both workers' progress lines are in the run's log
    text = log.read_text()
    assert "worker-0: trial" in text and "worker-1: trial" in text


def test_a_seed_style_manifest_parses_to_the_same_spec(tmp_path: Path) -> None:
    """The seed's snake_case names (and max_epochs for the trial budget) are accepted."""
    from gen5nas.spec.common import load_spec
    from gen5nas.spec.search import KIND, CostKey

    seed = tmp_path / "seed.yaml"
    seed.write_text(
        """
apiVersion: gen5nas.io/v1alpha1
kind: NASSearch
metadata: {name: seed}
spec:
  dataset: {kind: digits}
  max_epochs: 300
  cost_key: energy
  estimator:
    servers: [{host: est.local, ports: [50051, 50052]}]
    hw_config: {clock_mhz: 1000, sram_kib: 2048}
  constraints: {max_latency_ms: 4.5}
"""
    )
    _, spec = load_spec(seed, KIND, NASSearchSpec)
    assert spec.max_trials == 300
    assert spec.cost_key == CostKey.energy
    assert spec.estimator.hw_config == {"clock_mhz": 1000.0, "sram_kib": 2048.0}
    assert [(s.host, s.ports) for s in spec.estimator.servers] == [("est.local", [50051, 50052])]
    assert spec.constraints.max_latency_ms == 4.5 and spec.constraints.max_energy_mj is None
    # The same search in the operator's camelCase names is the same spec.
    camel = tmp_path / "camel.yaml"
    camel.write_text(
        seed.read_text()
        .replace("max_epochs", "maxTrials")
        .replace("cost_key", "costKey")
        .replace("hw_config", "hwConfig")
        .replace("max_latency_ms", "maxLatencyMs")
    )
    assert load_spec(camel, KIND, NASSearchSpec)[1] == spec


def test_a_stopped_search_still_writes_what_it_scored(
    tmp_path: Path, ckpt: Path, digits: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gen5nas.search.workers as workers

    real_build = workers.build_evaluator

    def failing_after_three(*args: object, **kwargs: object) -> Evaluator:
        evaluator = real_build(*args, **kwargs)
        evaluate, calls = evaluator.evaluate, [0]

        def evaluate_or_fail(arch: object) -> object:
            calls[0] += 1
            if calls[0] > 3:  # the estimator went away for good, say
                raise TrialFailed("estimator unreachable")
            return evaluate(arch)

        evaluator.evaluate = evaluate_or_fail  # type: ignore[method-assign]
        return evaluator

    monkeypatch.setattr(workers, "build_evaluator", failing_after_three)
    manifest = _manifest(tmp_path, digits, maxTrials=10, evaluation={"maxConsecutiveFailures": 2})
    work = tmp_path / "work"
    argv = ["search", "-f", str(manifest), "--checkpoint", str(ckpt), "--work-dir", str(work)]
    assert main(argv) == 2  # stopped: two failures in a row
    study = optuna.load_study(study_name="t", storage=f"sqlite:///{work / 'study.db'}")
    assert len(study.get_trials(states=[TrialState.COMPLETE])) == 3
    rows = read_csv(work / "subnets.csv")  # written although the search stopped
    assert sorted(int(r["trial"]) for r in rows if r["state"] == "COMPLETE") == sorted(
        t.number for t in study.get_trials(states=[TrialState.COMPLETE])
    )
    assert (work / "pareto_front.html").exists()


def _run_bad(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


def test_bad_inputs_are_refused_and_the_study_is_kept(
    tmp_path: Path, ckpt: Path, digits: str, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = _manifest(tmp_path, digits, maxTrials=3)
    work = tmp_path / "work"
    base = ["search", "-f", str(manifest), "--work-dir", str(work)]
    assert main([*base, "--checkpoint", str(ckpt)]) == 0
    storage = f"sqlite:///{work / 'study.db'}"
    kept = _complete(storage)
    assert len(kept) == 3

    err = _run_bad(capsys, [*base, "--checkpoint", str(tmp_path / "nope.pth")])
    assert "checkpoint not found" in err and "nope.pth" in err

    other = fresh_checkpoint(tmp_path / "sample1.pth", "mobilenetv2_sample1")
    err = _run_bad(capsys, [*base, "--checkpoint", str(other), "--max-trials", "5"])
    assert "studyName" in err and "another space" in err

    err = _run_bad(capsys, [*base, "--checkpoint", str(ckpt), "--storage", "mysql+nope://x/y"])
    assert "storage.url" in err

    bad_space = _manifest(
        tmp_path, digits, maxTrials=5, searchSpace={"name": "mobilenetv2_sample1"}
    )
    err = _run_bad(
        capsys, ["search", "-f", str(bad_space), "--work-dir", str(work), "--checkpoint", str(ckpt)]
    )
    assert "spec.searchSpace" in err and "different search space" in err

    unreachable = _manifest(
        tmp_path,
        digits,
        maxTrials=5,
        estimator={
            "servers": [{"host": "127.0.0.1", "ports": [_closed_port()]}],
            "retries": 1,
            "timeoutS": 2,
        },
    )
    err = _run_bad(
        capsys,
        ["search", "-f", str(unreachable), "--work-dir", str(work), "--checkpoint", str(ckpt)],
    )
    assert "estimator.servers" in err and "no estimator answers" in err

    study = optuna.load_study(study_name="t", storage=storage)
    assert _complete(storage) == kept  # nothing lost, nothing added
    assert len(study.trials) == 3


def _costs_by_resolution(work: Path) -> dict[str, tuple[float, float]]:
    rows = read_csv(work / "subnets.csv")
    return {r["resolution"]: (float(r["latency_ms"]), float(r["energy_mj"])) for r in rows}


def test_the_cost_scope_is_the_tasks_unless_the_spec_names_one(
    tmp_path: Path, ckpt: Path, digits: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Classification costs the whole network by default; costScope backbone costs its stem
    and stages only (less, arch for arch). The scope is in every output and in the study, where
    the operator's status reads it; a study is not resumed with another scope."""
    runs = {}
    for scope in ("network", "backbone"):
        spec = {"maxTrials": 2} if scope == "network" else {"maxTrials": 2, "costScope": scope}
        (tmp_path / scope).mkdir()
        manifest = _manifest(tmp_path / scope, digits, **spec)
        work = tmp_path / scope / "work"
        argv = ["search", "-f", str(manifest), "--checkpoint", str(ckpt), "--work-dir", str(work)]
        assert main(argv) == 0
        study = optuna.load_study(study_name="t", storage=f"sqlite:///{work / 'study.db'}")
        assert study.user_attrs["cost_scope"] == scope  # -> NASSearch status.costScope
        assert study.user_attrs["metric"] == "accuracy/top1"  # -> status.metric
        cost_name = "latency_ms" if scope == "network" else f"{scope}/latency_ms"
        assert study.metric_names == ["accuracy/top1", cost_name]  # optuna-dashboard's labels
        assert {r["cost_scope"] for r in read_csv(work / "subnets.csv")} == {scope}
        html = (work / "pareto_front.html").read_text()
        assert f"latency ({scope}, ms)" in html and "top-1 (%)" in html  # the axis titles
        resolved = next(work.glob("*/resolved_config.yaml")).read_text()
        assert f"costScope: {scope}" in resolved
        runs[scope] = work
    network, backbone = (_costs_by_resolution(runs[s]) for s in ("network", "backbone"))
    assert set(network) == set(backbone) == {"32x32", "24x24"}  # the max and min subnets
    for res in network:
        assert backbone[res][0] < network[res][0] and backbone[res][1] < network[res][1]

    # Resuming the network study with the backbone scope would mix costs: refused.
    resume = _manifest(tmp_path / "network", digits, maxTrials=3, costScope="backbone")
    argv = ["search", "-f", str(resume), "--checkpoint", str(ckpt), "--work-dir"]
    err = _run_bad(capsys, [*argv, str(runs["network"])])
    assert "studyName" in err and "another cost_scope" in err
    detector = _manifest(tmp_path / "network", digits, costScope="detector")
    err = _run_bad(capsys, [*argv[:2], str(detector), *argv[3:], str(tmp_path / "det")])
    assert "costScope" in err and "no detector graph" in err and "network, backbone" in err
    assert not (tmp_path / "det" / "study.db").exists()
    # A task given must be the checkpoint's (which was trained for classification).
    other = write_search_manifest(
        tmp_path / "detection.yaml",
        task="detection",
        dataset={"kind": "scenes", "path": str(tmp_path / "scenes"), "numWorkers": 0},
    )
    err = _run_bad(capsys, [*argv[:2], str(other), *argv[3:], str(tmp_path / "det")])
    assert "task" in err and "trained for 'classification'" in err, err
    assert not (tmp_path / "det" / "study.db").exists()


def _batches(n: int, seed: int) -> list[Batch]:
    g = torch.Generator().manual_seed(seed)
    return [
        Batch(torch.randn(16, 3, 32, 32, generator=g), torch.randint(0, 10, (16,), generator=g), 0)
        for _ in range(n)
    ]


def test_evaluator_is_repeatable_leaves_the_supernet_alone_and_reports_estimator_failures() -> None:
    from gen5nas.estimator.server import start_server

    space = load_space("mobilenetv2_tiny")
    torch.manual_seed(0)
    supernet = Supernet(space, 10).eval()
    weights = {k: v.clone() for k, v in supernet.state_dict().items()}
    server = start_server([0])
    try:
        spec = NASSearchSpec.model_validate({"dataset": {"kind": "digits"}})
        client = make_client(spec, [{"host": "127.0.0.1", "ports": server.ports}])
        cost = make_cost_fn(client, space, "mobilenetv2_tiny", 10, "relu6")
        evaluator = Evaluator(supernet, _batches(2, 0), _batches(2, 1), cost)
        arch = space.sample(__import__("random").Random(4))
        first, second = evaluator.evaluate(arch), evaluator.evaluate(arch)
        assert first.accuracy == second.accuracy
        assert (first.latency_ms, first.energy_mj) == (second.latency_ms, second.energy_mj)
        assert first.latency_ms > 0
        for k, v in supernet.state_dict().items():
            assert torch.equal(v, weights[k]), k  # BN recalibration worked on a copy
        # The smallest subnet costs less than the largest, as the estimator says.
        assert (
            evaluator.evaluate(space.min()).latency_ms < evaluator.evaluate(space.max()).latency_ms
        )
        client.close()
    finally:
        server.stop(grace=0.5)

    dead_spec = NASSearchSpec.model_validate(
        {"dataset": {"kind": "digits"}, "estimator": {"retries": 0, "timeoutS": 1}}
    )
    dead = make_client(dead_spec, [{"host": "127.0.0.1", "ports": [_closed_port()]}])
    evaluator = Evaluator(
        supernet,
        _batches(1, 0),
        _batches(1, 1),
        make_cost_fn(dead, space, "mobilenetv2_tiny", 10, "relu6"),
    )
    with pytest.raises(TrialFailed, match=r"^estimator: "):
        evaluator.evaluate(space.min())
    dead.close()
