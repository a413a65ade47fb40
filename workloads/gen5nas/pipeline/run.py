"""``gen5nas run``: train the supernet, search it, export the best trade-off, on this machine.

Work dir layout: ``train/`` (the SupernetTraining outputs), ``search/`` (the NASSearch outputs,
its SQLite ``study.db``), ``export/`` (``trial_N.onnx`` + its card), and ``pipeline.json``
recording each finished step with a fingerprint of what it was run with.

Resuming: a step whose fingerprint matches a finished record is skipped; an unfinished step
resumes (training from ``last_checkpoint``, the search from its study; a larger ``maxTrials``
resumes the study too). A search whose inputs changed (its spec, or the checkpoint it searches)
starts a new study; the earlier outputs are moved aside (``search.<old id>``), never deleted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gen5nas.errors import Gen5NasError
from gen5nas.pipeline.spec import Pipeline

log = logging.getLogger(__name__)

STATE_FILE = "pipeline.json"


@dataclass
class PipelineResult:
    work_dir: Path
    checkpoint: Path
    search_dir: Path
    best_trial: int | None
    onnx: Path | None
    ran: list[str] = field(default_factory=list)  # steps run this time (others were skipped)


def fingerprint(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_fingerprint(path: Path) -> str:
    stat = path.stat()
    return fingerprint(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


class State:
    """``pipeline.json``: one record per finished step, rewritten atomically."""

    def __init__(self, work_dir: Path) -> None:
        self.path = work_dir / STATE_FILE
        self.data: dict[str, Any] = {}
        if self.path.exists():
            try:
                self.data = json.loads(self.path.read_text())
            except json.JSONDecodeError:
                log.warning("%s is unreadable; every step is checked again", self.path)

    def done(self, step: str, fp: str) -> dict[str, Any] | None:
        record = self.data.get(step)
        if isinstance(record, dict) and record.get("fingerprint") == fp and record["finished"]:
            return record
        return None

    def start(self, step: str, fp: str, **values: Any) -> None:
        """Note what a step is being run with (an interrupted run is recognised later)."""
        self._write(step, {"fingerprint": fp, "finished": None, **values})

    def record(self, step: str, fp: str, **values: Any) -> None:
        self._write(
            step, {"fingerprint": fp, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), **values}
        )

    def _write(self, step: str, record: dict[str, Any]) -> None:
        self.data[step] = record
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str) + "\n")
        tmp.replace(self.path)


def run_pipeline(
    pipeline: Pipeline,
    work_dir: str | Path,
    *,
    epochs: int | None = None,
    max_trials: int | None = None,
    workers: int = 1,
) -> PipelineResult:
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    state = State(work_dir)
    ran: list[str] = []
    t0 = time.monotonic()

    # ---- 1. train ------------------------------------------------------------------------------
    train_spec = pipeline.train
    if epochs is not None:
        train_spec = train_spec.model_copy(
            update={"schedule": train_spec.schedule.model_copy(update={"epochs": epochs})}
        )
    train_dir = work_dir / "train"
    fp = fingerprint(train_spec.model_dump(mode="json"))
    record = state.done("train", fp)
    if record and Path(record["checkpoint"]).is_file():
        checkpoint = Path(record["checkpoint"])
        log.info("[1/3] train: done before (%s); skipped", checkpoint)
    else:
        from gen5nas.train.checkpoint import supernet_checkpoint
        from gen5nas.train.job import run_supernet_training

        log.info("[1/3] train: supernet training in %s", train_dir)
        run_supernet_training(train_spec, train_dir, config_file=pipeline.train_file, device="cpu")
        checkpoint = supernet_checkpoint(train_dir)
        state.record("train", fp, checkpoint=str(checkpoint))
        ran.append("train")
    log.info("[1/3] train: %.0f s so far", time.monotonic() - t0)

    # ---- 2. search ---------------------------------------------------------------------------
    from gen5nas.search.job import SearchSettings, run_search
    from gen5nas.search.study import default_storage_url

    search_spec = pipeline.search
    if max_trials is not None:
        search_spec = search_spec.model_copy(update={"max_trials": max_trials})
    if search_spec.search_space is None:
        search_spec = search_spec.model_copy(update={"search_space": train_spec.search_space})
    search_dir = work_dir / "search"
    # The study's identity leaves out the budget: more trials resume the same study.
    identity = fingerprint(
        search_spec.model_dump(mode="json", exclude={"max_trials"}), file_fingerprint(checkpoint)
    )
    fp = fingerprint(identity, search_spec.max_trials)
    record = state.done("search", fp)
    if record and (search_dir / "subnets.csv").is_file():
        best = record.get("best_trial")
        log.info("[2/3] search: done before (best trade-off: trial %s); skipped", best)
    else:
        _move_aside_if_stale(state, "search", search_dir, identity)
        state.start("search", fp, identity=identity)
        log.info("[2/3] search: %d trials in %s", search_spec.max_trials, search_dir)
        result = run_search(
            SearchSettings(
                spec=search_spec,
                checkpoint=str(checkpoint),
                work_dir=str(search_dir),
                storage_url=search_spec.storage.url or default_storage_url(search_dir),
                study_name=search_spec.study_name or pipeline.name,
                workers=workers,
                config_file=str(pipeline.search_file),
            )
        )
        chosen = result.best_tradeoff()
        best = chosen.number if chosen else None
        state.record(
            "search",
            fp,
            identity=identity,
            best_trial=best,
            study=result.study_name,
            storage=str(search_spec.storage.url or default_storage_url(search_dir)),
            complete=result.completed,
            front=[r.number for r in result.front],
        )
        ran.append("search")
    log.info("[2/3] search: %.0f s so far", time.monotonic() - t0)

    # ---- 3. export -----------------------------------------------------------------------------
    onnx: Path | None = None
    if not pipeline.spec.export:
        log.info("[3/3] export: disabled (spec.export: false)")
    elif best is None:
        raise Gen5NasError(
            "the search has no COMPLETE trial to export; see search/subnets.csv "
            "for the failure reasons, fix them and rerun to resume"
        )
    else:
        onnx = _export(
            pipeline, state, work_dir, checkpoint, search_dir, search_spec, int(best), ran
        )
    log.info(
        "pipeline done in %.0f s: checkpoint %s, search %s, onnx %s",
        time.monotonic() - t0,
        checkpoint,
        search_dir,
        onnx,
    )
    return PipelineResult(work_dir, checkpoint, search_dir, best, onnx, ran)


def _export(
    pipeline: Pipeline,
    state: State,
    work_dir: Path,
    checkpoint: Path,
    search_dir: Path,
    search_spec: Any,
    best: int,
    ran: list[str],
) -> Path:
    from gen5nas.spec.export import SubnetExportSpec

    search_record = state.data["search"]
    if pipeline.export is not None:
        spec = pipeline.export.model_copy(update={"trial": best, "arch_file": None, "arch": None})
    else:
        spec = SubnetExportSpec(
            trial=best,
            dataset=search_spec.dataset,
            profile=search_spec.estimator.profile,
            hw_config=dict(search_spec.estimator.hw_config),
            # The search's calibration, so that the exported score is the one it reported.
            bn_calibration_batches=search_spec.evaluation.calib_batches,
        )
    export_dir = work_dir / "export"
    fp = fingerprint(spec.model_dump(mode="json"), search_record["fingerprint"])
    record = state.done("export", fp)
    if record and Path(record["onnx"]).is_file():
        log.info("[3/3] export: done before (%s); skipped", record["onnx"])
        return Path(record["onnx"])
    try:
        from gen5nas.export.export import export_subnet
    except ImportError as exc:
        raise Gen5NasError(
            f"the export step is not available in this install ({exc}); the "
            f"best trade-off is {search_dir}/fix_subnets/trial_{best}.yaml"
        ) from None
    log.info("[3/3] export: trial %d to ONNX in %s", best, export_dir)
    result = export_subnet(
        spec,
        export_dir,
        checkpoint=checkpoint,
        storage=search_record["storage"],
        study_name=search_record["study"],
        device="cpu",
    )
    state.record("export", fp, onnx=str(result.onnx_path), card=str(result.card_path), trial=best)
    ran.append("export")
    return Path(result.onnx_path)


def _move_aside_if_stale(state: State, step: str, out_dir: Path, identity: str) -> None:
    """A step rerun with other inputs keeps the earlier outputs, renamed, rather than mixing
    them with the new ones (the search's study.db, trial files)."""
    old = state.data.get(step)
    if not isinstance(old, dict) or old.get("identity") == identity or not out_dir.exists():
        return
    tag = str(old.get("identity", "old"))[:8]
    aside = out_dir.with_name(f"{out_dir.name}.{tag}")
    n = 1
    while aside.exists():
        aside = out_dir.with_name(f"{out_dir.name}.{tag}.{n}")
        n += 1
    out_dir.rename(aside)
    log.info("%s: inputs changed since the last run; earlier outputs moved to %s", step, aside)
