"""Retrain an extracted subnet: fine-tune its inherited weights, or train it from scratch.

The same machinery as the supernet (:class:`gen5nas.train.trainer.Trainer`): DDP under
torchrun, SGD + warmup/cosine, tqdm and rate/ETA log lines, ``epoch_N.pth`` +
``last_checkpoint`` (rerunning the same command resumes, mid-epoch too with
``retrain.checkpoint.intervalIters``), ``metrics.jsonl``. The one-step strategy is
:class:`~gen5nas.train.sandwich.PlainStep` (cross entropy on the static model), validation is
:class:`~gen5nas.train.evaluate.StaticValidator`.

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
from gen5nas.train.trainer import StepHook, TrainResult

log = logging.getLogger(__name__)

RETRAIN_DIR = "retrain"
REPORT_FILE = "retrain_report.json"
BEST_PREFIX = "best_subnet.accuracy_top1_epoch_"


@dataclass
class RetrainOutcome:
    prepared: PreparedSubnet  # the subnet as inherited (its metrics: ``inherited``)
    model: nn.Module  # the retrained static subnet, eval mode
    result: TrainResult
    work_dir: Path
    from_scratch: bool
    is_main: bool

    @property
    def retrained(self) -> dict[str, float]:
        return dict(self.result.metrics)

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
            "gain_top1": self.retrained.get("accuracy_top1", float("nan"))
            - self.prepared.inherited["accuracy_top1"],
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
    from gen5nas.supernet import Supernet, extract_subnet
    from gen5nas.train.checkpoint import make_meta
    from gen5nas.train.distributed import env_from_torchrun, unwrap
    from gen5nas.train.evaluate import StaticValidator
    from gen5nas.train.sandwich import PlainStep
    from gen5nas.train.trainer import Trainer, TrainerConfig, seed_everything

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
    num_classes = int(meta["num_classes"])
    activation = str(meta.get("activation", "relu6"))
    dropout = float(meta.get("dropout", 0.2))
    model = prepared.model
    if r.from_scratch:
        torch.manual_seed(r.seed)  # the same initial weights on every rank
        model = extract_subnet(Supernet(space, num_classes, activation, dropout), arch)
    seed_everything(r.seed, env.rank)
    loaders = prepared.loaders
    assert loaders.train is not None and loaders.val is not None
    batch = spec.dataset.batch_size if spec.dataset else 1
    trainer = Trainer(
        model,
        PlainStep(label_smoothing=r.label_smoothing),
        StaticValidator(loaders.val, env.device),
        loaders.train,
        loaders.train_sampler,
        config=TrainerConfig(
            work_dir=out_dir,
            schedule=schedule_for(r),
            optimizer=optimizer_for(r, batch * env.world_size),
            checkpoint=r.checkpoint,
            elastic=False,
            score_key="accuracy_top1",
            best_prefix=BEST_PREFIX,
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
            task=str(meta.get("task", "classification")),
            model_kind="static",
            arch=arch.to_yaml_dict(),
        ),
    )
    if env.is_main:
        log.info(
            "retraining %s (%s) in %s: %d epoch(s) x %d iterations, %d process(es), lr %.4g; "
            "inherited top-1 %.2f%%",
            arch.summary(),
            "from scratch" if r.from_scratch else "fine-tune",
            out_dir,
            r.epochs,
            trainer.iters_per_epoch,
            env.world_size,
            trainer.optimizer.param_groups[0]["lr"],
            prepared.inherited["accuracy_top1"],
        )
    result = trainer.fit()
    trained = unwrap(trainer.model).eval()
    outcome = RetrainOutcome(prepared, trained, result, out_dir, r.from_scratch, env.is_main)
    if env.is_main:
        write_json_atomic(outcome.record(), out_dir / REPORT_FILE)
        log.info(
            "retrained top-1 %.2f%% (inherited %.2f%%): report %s",
            outcome.retrained.get("accuracy_top1", float("nan")),
            prepared.inherited["accuracy_top1"],
            out_dir / REPORT_FILE,
        )
    return outcome
