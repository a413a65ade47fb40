"""Retrain an extracted subnet: fine-tune its inherited weights, or train it from scratch.

The same machinery as the supernet (:class:`gen5nas.train.trainer.Trainer`): DDP under
torchrun, SGD + warmup/cosine, tqdm and rate/ETA log lines, ``epoch_N.pth`` +
``last_checkpoint`` (rerunning the same command resumes, mid-epoch too with
``retrain.checkpoint.intervalIters``), ``metrics.jsonl``. The one-step strategy is
:class:`~gen5nas.train.sandwich.PlainStep` (the task's ground truth loss on the static model),
validation is :class:`~gen5nas.train.evaluate.StaticValidator` (the task's evaluator); the
task is the supernet checkpoint's.

Outputs, in ``<work dir>/retrain/``: the checkpoints (``model_kind: static`` with the arch in
their meta, so a retrain dir is never resumed for another subnet) and ``retrain_report.json``
with the inherited accuracy (supernet weights, BN recalibrated) next to the retrained one.
Fine-tuning defaults to a tenth of the from-scratch learning rate (0.01 x global batch / 256).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gen5nas.export.prepare import PreparedSubnet, Resolved, load_and_resolve, prepare_subnet
from gen5nas.spec.export import RetrainSpec, SubnetExportSpec
from gen5nas.spec.training import OptimizerSpec, ScheduleSpec
from gen5nas.tasks.base import Task
from gen5nas.train.checkpoint import best_prefix
from gen5nas.train.trainer import StepHook, TrainResult

log = logging.getLogger(__name__)

RETRAIN_DIR = "retrain"
REPORT_FILE = "retrain_report.json"
RETRAIN_BEST_STEM = "best_subnet"  # best_subnet.<the task's metric key>_epoch_N.pth


@dataclass
class RetrainOutcome:
    prepared: PreparedSubnet  # the subnet as inherited (its metrics: ``inherited``)
    model: nn.Module  # the retrained static subnet, eval mode
    result: TrainResult
    work_dir: Path
    from_scratch: bool
    is_main: bool
    task: Task

    @property
    def retrained(self) -> dict[str, float]:
        return dict(self.result.metrics)

    @property
    def gain(self) -> float:
        """Retrained minus inherited headline metric (NaN before the first validation)."""
        key = self.task.metric.key
        return self.retrained.get(key, float("nan")) - self.prepared.inherited[key]

    def record(self) -> dict[str, Any]:
        return {
            "from_scratch": self.from_scratch,
            "epochs_completed": self.result.epochs_completed,
            "iterations": self.result.iterations,
            "work_dir": str(self.work_dir),
            "checkpoint": str(self.result.last_checkpoint) if self.result.last_checkpoint else None,
            "arch_summary": self.prepared.choice.arch.summary(),
            "inherited": self.prepared.inherited,
            "retrained": self.retrained,
            f"gain_{self.task.metric.short}": self.gain,
        }


def schedule_for(retrain: RetrainSpec) -> ScheduleSpec:
    return ScheduleSpec(
        epochs=retrain.epochs,
        warmup_epochs=retrain.warmup_epochs,
        max_iters_per_epoch=retrain.max_iters_per_epoch,
        num_random_subnets=0,
    )


def optimizer_for(retrain: RetrainSpec, global_batch: int) -> OptimizerSpec:
    from gen5nas.train.optim import default_lr

    lr = retrain.lr
    if lr is None:
        lr = default_lr(global_batch) * (1.0 if retrain.from_scratch else 0.1)
    return OptimizerSpec(
        lr=lr, weight_decay=retrain.weight_decay, label_smoothing=retrain.label_smoothing
    )


def run_retrain(
    spec: SubnetExportSpec,
    work_dir: str | Path,
    *,
    resolved: Resolved | None = None,
    checkpoint: str | Path | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    device: str | None = None,
    config_file: str | Path | None = None,
    hooks: Sequence[StepHook] = (),
) -> RetrainOutcome:
    """Retrain (or resume retraining) the spec's subnet in ``work_dir/retrain``."""
    from gen5nas.export.onnx_card import write_json_atomic
    from gen5nas.tasks.base import get_task
    from gen5nas.train.checkpoint import make_meta
    from gen5nas.train.distributed import env_from_torchrun, unwrap
    from gen5nas.train.evaluate import StaticValidator
    from gen5nas.train.sandwich import PlainStep
    from gen5nas.train.seeding import seed_everything
    from gen5nas.train.trainer import Trainer, TrainerConfig

    r = spec.retrain
    work_dir = Path(work_dir)
    out_dir = work_dir / RETRAIN_DIR
    env = env_from_torchrun(device)
    seed_everything(r.seed, env.rank)
    resolved = resolved or load_and_resolve(
        spec, checkpoint=checkpoint, storage=storage, study_name=study_name
    )
    prepared = prepare_subnet(spec, work_dir, resolved, device=env.device, seed=r.seed)
    arch, meta, space = prepared.choice.arch, prepared.meta, prepared.space
    task = get_task(str(meta.get("task", "classification")), field="checkpoint")
    num_classes = int(meta["num_classes"])
    activation = str(meta.get("activation", "relu6"))
    dropout = float(meta.get("dropout", 0.2))
    model = prepared.model
    if r.from_scratch:
        torch.manual_seed(r.seed)  # the same initial weights on every rank
        supernet = task.build_supernet(space, num_classes, activation=activation, dropout=dropout)
        model = task.extract(supernet, arch)
    seed_everything(r.seed, env.rank)
    loaders = prepared.loaders
    assert loaders.train is not None and loaders.val is not None
    batch = spec.dataset.batch_size if spec.dataset else 1
    trainer = Trainer(
        model,
        PlainStep(label_smoothing=r.label_smoothing, task=task),
        StaticValidator(loaders.val, env.device, task=task),
        loaders.train,
        loaders.train_sampler,
        config=TrainerConfig(
            work_dir=out_dir,
            schedule=schedule_for(r),
            optimizer=optimizer_for(r, batch * env.world_size),
            checkpoint=r.checkpoint,
            elastic=False,
            task=task,
            score_key=task.metric.key,
            best_prefix=best_prefix(task.metric.key, RETRAIN_BEST_STEM),
            config_file=Path(config_file) if config_file else None,
            resolved_config=spec.model_dump(mode="json", by_alias=True),
            hooks=tuple(hooks),
        ),
        env=env,
        meta=make_meta(
            space,
            num_classes,
            classes=meta.get("classes"),
            activation=activation,
            dropout=dropout,
            task=task.name,
            model_kind="static",
            arch=arch.to_yaml_dict(),
        ),
    )
    if env.is_main:
        log.info(
            "retraining %s (%s) in %s: %d epoch(s) x %d iterations, %d process(es), lr %.4g; "
            "inherited %s %s",
            arch.summary(),
            "from scratch" if r.from_scratch else "fine-tune",
            out_dir,
            r.epochs,
            trainer.iters_per_epoch,
            env.world_size,
            trainer.optimizer.param_groups[0]["lr"],
            task.metric.title,
            task.metric.format(prepared.inherited[task.metric.key]),
        )
    result = trainer.fit()
    trained = unwrap(trainer.model).eval()
    outcome = RetrainOutcome(prepared, trained, result, out_dir, r.from_scratch, env.is_main, task)
    if env.is_main:
        write_json_atomic(outcome.record(), out_dir / REPORT_FILE)
        key = task.metric.key
        log.info(
            "retrained %s %s (inherited %s): report %s",
            task.metric.title,
            task.metric.format(outcome.retrained.get(key, float("nan"))),
            task.metric.format(prepared.inherited[key]),
            out_dir / REPORT_FILE,
        )
    return outcome
