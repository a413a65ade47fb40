"""The seed's outputs, checked against each other and against the study."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.search import FailingFor, check_outputs, tiny_space

from gen5nas.search.outputs import write_all
from gen5nas.search.results import collect
from gen5nas.search.runner import Worker, seed_extremes
from gen5nas.search.sampler import build_sampler
from gen5nas.search.study import default_storage_url, open_storage, open_study
from gen5nas.spec.search import SamplerSpec


@pytest.mark.parametrize("cost_key", ["latency", "energy"])
def test_outputs_are_consistent(tmp_path: Path, cost_key: str) -> None:
    space = tiny_space()
    study = open_study(
        open_storage(default_storage_url(tmp_path)),
        "s",
        build_sampler(SamplerSpec(population_size=6)),
        {"space": "tiny", "cost_key": cost_key, "task": "classification"},
    )
    seed_extremes(study, space)
    evaluate = FailingFor(lambda a: a.first_num_out_channels == 8 and a.stages[2].num_blocks == 2)
    Worker(study, space, evaluate, cost_key, 14, max_consecutive_failures=50).run()
    records = collect(study.trials, space, cost_key)
    out_dir = tmp_path / "out"
    write_all(study, records, out_dir, cost_key=cost_key, num_stages=7)
    rows = check_outputs(out_dir, study, cost_key)
    assert sum(r["state"] == "COMPLETE" for r in rows) == 14
    failed = [r for r in rows if r["state"] == "FAIL"]
    assert all(r["reason"] == "bad subnet" and r["arch_file"] for r in failed)


def test_rewriting_outputs_keeps_unchanged_arch_files(tmp_path: Path) -> None:
    space = tiny_space()
    study = open_study(
        open_storage(default_storage_url(tmp_path)),
        "s",
        build_sampler(SamplerSpec(population_size=4)),
        {"space": "tiny", "cost_key": "latency", "task": "classification"},
    )
    Worker(study, space, FailingFor(lambda a: False), "latency", 3).run()
    write_all(
        study, collect(study.trials, space, "latency"), tmp_path, cost_key="latency", num_stages=7
    )
    first = tmp_path / "fix_subnets" / "trial_0.yaml"
    mtime = first.stat().st_mtime_ns
    Worker(study, space, FailingFor(lambda a: False), "latency", 5).run()
    write_all(
        study, collect(study.trials, space, "latency"), tmp_path, cost_key="latency", num_stages=7
    )
    assert first.stat().st_mtime_ns == mtime
    assert len(list((tmp_path / "fix_subnets").glob("trial_*.yaml"))) == 5
    assert not list(tmp_path.glob(".*.tmp"))
