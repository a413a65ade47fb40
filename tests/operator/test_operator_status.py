"""Status from child Jobs and from an Optuna study: pure functions."""

from __future__ import annotations

import json
import re

import optuna
import pytest
from optuna.trial import TrialState, create_trial
from support.operator_e2e import argocd_health
from support.operator_study import sample_arch, trial_user_attrs

from gen5nas.spec.search import NASSearchSpec
from gen5nas.spec.space import parse_model
from gen5nas_operator.common.child_state import job_state
from gen5nas_operator.common.conditions import (
    FAILED,
    PENDING,
    RUNNING,
    SUCCEEDED,
    WAITING,
    invalid_spec,
    phase_status,
    set_condition,
)
from gen5nas_operator.kinds.export.status import export_report
from gen5nas_operator.kinds.search.status import study_status
from gen5nas_operator.kinds.training.status import pytorchjob_state, training_progress
from gen5nas_operator.settings import Settings


def _job(**st: object) -> dict:
    return {"status": st}


def test_job_state_phases() -> None:
    assert job_state(None).phase == PENDING
    assert job_state(_job(active=2, ready=0)).phase == PENDING
    assert job_state(_job(active=2, ready=1)).phase == RUNNING
    assert job_state(_job(active=1)).phase == RUNNING  # clusters without `ready`
    done = _job(conditions=[{"type": "Complete", "status": "True"}], completionTime="t")
    assert job_state(done).phase == SUCCEEDED and job_state(done).completion_time == "t"
    failed = job_state(_job(conditions=[
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "boom"}
    ]))  # fmt: skip
    assert (failed.phase, failed.reason, failed.message) == (
        FAILED,
        "BackoffLimitExceeded",
        "boom",
    )
    pj = {"status": {"conditions": [{"type": "Created", "status": "True"},
                                    {"type": "Running", "status": "True"}]}}  # fmt: skip
    assert pytorchjob_state(pj).phase == RUNNING


def test_conditions_keep_transition_time_until_status_flips() -> None:
    c1 = set_condition([], "Ready", True, "A", now="t1")
    c2 = set_condition(c1, "Ready", True, "B", now="t2")
    assert c2[0]["lastTransitionTime"] == "t1" and c2[0]["reason"] == "B"
    c3 = set_condition(c2, "Ready", False, "C", now="t3")
    assert c3[0]["lastTransitionTime"] == "t3" and c3[0]["status"] == "False"


def test_invalid_spec_condition() -> None:
    st = invalid_spec(None, "spec.dataset.kind: bad", generation=3)
    ready = {c["type"]: c for c in st["conditions"]}["Ready"]
    assert st["phase"] == FAILED and ready["status"] == "False"
    assert ready["reason"] == "InvalidSpec" and "dataset.kind" in ready["message"]
    assert st["observedGeneration"] == 3


def _spec(**extra: object) -> NASSearchSpec:
    return parse_model(
        NASSearchSpec, {"checkpoint": "/c", "dataset": {"kind": "digits"}, "maxTrials": 10, **extra},
        source="t",
    )  # fmt: skip


def _trial(
    acc: float, lat: float, state: TrialState = TrialState.COMPLETE
) -> optuna.trial.FrozenTrial:
    values = [acc, lat] if state == TrialState.COMPLETE else None
    arch = sample_arch(int(acc))
    # params name the arch (repeats of one arch are duplicates, off the front)
    return create_trial(
        state=state,
        values=values,
        params={"arch": int(acc)},
        distributions={"arch": optuna.distributions.IntDistribution(0, 1000)},
        user_attrs=trial_user_attrs(arch, acc, lat, 3 * lat),
    )


def _numbered(trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    for i, t in enumerate(trials):
        t.number = i
    return trials


def test_study_status_counts_and_front() -> None:
    trials = _numbered([
        _trial(70, 2.0), _trial(60, 1.0), _trial(65, 3.0), _trial(80, 4.0),
        _trial(0, 0, TrialState.RUNNING), _trial(0, 0, TrialState.FAIL),
    ])  # fmt: skip
    st = study_status(trials, _spec(), top=10)
    assert "metric" not in st and "costScope" not in st  # the study names them once made
    assert st["trials"] == {
        "complete": 4, "running": 1, "failed": 1, "pruned": 0, "waiting": 0, "total": 6, "target": 10,
    }  # fmt: skip
    assert st["progress"] == "5/10"
    front = st["front"]
    assert [e["trial"] for e in front["top"]] == [1, 0, 3]  # by cost; trial 2 is dominated
    assert front["size"] == 3 and front["bestScore"] == 80 and front["lowestCost"] == 1.0
    assert front["top"][0]["score"] == 60
    # the runner's one-line summary, not its arch dict
    assert front["top"][0]["arch"] == sample_arch(60).summary()
    json.dumps(st)  # status must be JSON
    # what the search records in its study: the task's metric and the cost scope
    attrs = {"metric": "coco/bbox_mAP", "cost_scope": "backbone", "task": "detection"}
    labelled = study_status(trials, _spec(), top=10, attrs=attrs)
    assert (labelled["metric"], labelled["costScope"]) == ("coco/bbox_mAP", "backbone")


def test_front_cap_keeps_both_ends_and_constraints_filter() -> None:
    trials = _numbered([_trial(50 + i, 1.0 + i) for i in range(20)])
    st = study_status(trials, _spec(), top=Settings().front_top // 2)
    top = [e["trial"] for e in st["front"]["top"]]
    assert len(top) == 5 and top[0] == 0 and top[-1] == 19 and st["front"]["size"] == 20
    capped = study_status(trials, _spec(constraints={"maxLatencyMs": 5.5}), top=10)
    assert capped["front"]["size"] == 5 and capped["front"]["bestScore"] == 54
    energy = study_status(trials, _spec(costKey="energy"), top=10)
    assert energy["front"]["lowestCost"] == 3.0 and energy["front"]["costKey"].startswith("energy")


def test_export_report_from_the_onnx_card() -> None:
    card = {
        "format": "gen5nas.onnx-card/v1",
        "onnx": {"path": "/results/ns/sx/model.onnx", "sha256": "ab" * 32, "bytes": 123,
                 "parity": {"max_abs_diff": 2e-6, "tolerance": 1e-4}},
        "cost": {"latency_ms": 1.5, "energy_mj": 3.0, "profile": "rcar-gen5-npu",
                 "scope": "backbone"},
        "arch_summary": "32x32 f16",
    }  # fmt: skip
    out = export_report(json.dumps(card))
    assert out is not None
    assert out["onnx"] == {
        "path": "/results/ns/sx/model.onnx",
        "sha256": "ab" * 32,
        "sizeBytes": 123,
    }
    assert out["parity"] == {"passed": True, "maxAbsDiff": 2e-6}
    assert out["cost"]["latencyMs"] == 1.5 and out["arch"] == "32x32 f16"
    assert out["cost"]["scope"] == "backbone"  # what the latency is of
    assert export_report("Traceback: boom") is None and export_report(None) is None


def test_termination_message_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from gen5nas_operator import termination

    card = {
        "onnx": {"file": "subnet.onnx", "sha256": "cd" * 32, "bytes": 99, "opset": 17,
                 "inputs": [{"name": "x", "shape": [1, 3, 32, 32]}] * 50,
                 "parity": {"max_abs_diff": 0.5, "tolerance": 1e-4}},
        "cost": {"latency_ms": 2.0, "profile": "cpu-ort", "layers": list(range(2000))},
        "arch": {"stages": list(range(500))}, "arch_summary": "32x32 f8",
    }  # fmt: skip
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "subnet.card.json").write_text(json.dumps(card))
    msg = tmp_path / "termination-log"
    assert termination.main([str(tmp_path), str(msg)]) == 0
    assert len(msg.read_text()) < 4096  # the kubelet's cap
    out = export_report(msg.read_text())
    assert out is not None
    assert out["onnx"]["path"] == str(tmp_path / "out" / "subnet.onnx")
    assert out["parity"] == {"passed": False, "maxAbsDiff": 0.5}  # the check failed
    assert out["cost"] == {"latencyMs": 2.0, "profile": "cpu-ort"}
    assert termination.main([str(tmp_path / "out" / "none"), str(msg)]) == 1


@pytest.mark.parametrize(
    ("annotation", "error"),
    [
        ("epoch 3", "not JSON"),
        ("[1, 2]", "a JSON object is expected"),
        ('{"epochs": 5, "iteration": 1}', "epoch: a whole number >= 0 is required, got None"),
        ('{"epoch": -1, "epochs": 5, "iteration": 1}', "epoch: a whole number >= 0"),
        ('{"epoch": 1, "epochs": true, "iteration": 1}', "epochs: a whole number >= 0"),
        ('{"epoch": 1, "epochs": 5, "iteration": 1, "maxScore": NaN}', "maxScore: a finite number"),
        (
            '{"epoch": 1, "epochs": 5, "iteration": 1, "minScore": "60"}',
            "minScore: a finite number",
        ),
        ('{"epoch": 1, "epochs": 5, "iteration": 1, "metric": 3}', "metric: a metric name"),
        ('{"epoch": 1, "epochs": 5, "iteration": 1, "metric": "a b"}', "metric: a metric name"),
        ('{"epoch": 1, "epochs": 5, "iteration": 1, "updated": "yesterday"}', "updated: a UTC"),
    ],
)
def test_training_progress_refuses_what_the_status_schema_would(
    annotation: str, error: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(error)):
        training_progress(annotation)


def test_training_progress_keeps_known_fields_only() -> None:
    doc = {
        "epoch": 1,
        "epochs": 5,
        "iteration": 7,
        "metric": "coco/bbox_mAP",
        "maxScore": 0.3125,
        "updated": "2025-01-01T00:00:00Z",
    }
    assert training_progress(json.dumps({**doc, "extra": "x"})) == doc


@pytest.mark.parametrize(
    ("phase", "ready", "health"),
    [
        (WAITING, None, "Progressing"), (PENDING, None, "Progressing"),
        (RUNNING, False, "Progressing"), (RUNNING, None, "Healthy"),
        (SUCCEEDED, None, "Healthy"), (FAILED, None, "Degraded"),
    ],
)  # fmt: skip
def test_argocd_health_follows_phase_ready_and_generation(
    phase: str, ready: bool | None, health: str
) -> None:
    """The Argo CD script on statuses as phase_status writes them (the e2e tests run it on the
    operator's own); a status behind the spec's generation is still Progressing."""
    st = phase_status(None, phase, "Why", "the message", generation=2, ready=ready)
    obj = {"metadata": {"generation": 2}, "status": st}
    out = argocd_health(obj)
    assert out["status"] == health
    if health != "Healthy":
        assert "the message" in out["message"]
    behind = {"metadata": {"generation": 3}, "status": st}
    assert argocd_health(behind) == {
        "status": "Progressing", "message": "the operator has not reconciled generation 3 yet",
    }  # fmt: skip
    assert argocd_health({"metadata": {"generation": 1}})["status"] == "Progressing"


def test_pending_pods_counted_by_reason() -> None:
    pods = [
        {"status": {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": "0/2 nodes are available"}]}},
        {"status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}],
                    "containerStatuses": [{"state": {"waiting": {"reason": "ErrImagePull",
                                                                 "message": "not found"}}}]}},
        {"status": {"phase": "Pending"}},
        {"status": {"phase": "Running"}},
    ]  # fmt: skip
    state = job_state(_job(active=3, ready=0), pods)
    assert state.phase == PENDING and state.reason == "PodsPending"
    assert state.message == (
        "3 pod(s) waiting to start: ErrImagePull: 1 (not found); NotScheduledYet: 1; "
        "Unschedulable: 1 (0/2 nodes are available)"
    )


def test_a_repeated_arch_is_on_the_front_once() -> None:
    # two workers that scored the same arch at once: the same values, one front point
    trials = _numbered([_trial(70, 2.0), _trial(60, 1.0), _trial(70, 2.0)])
    front = study_status(trials, _spec(), top=10)["front"]
    assert [e["trial"] for e in front["top"]] == [1, 0]
