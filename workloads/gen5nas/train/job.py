"""The SupernetTraining step: a validated spec in, a trained supernet in the work dir out.

``run_supernet_training`` assembles the pieces: the torchrun environment, seeds, the loaders
(at the space's largest resolution; the supernet resizes per subnet) and the supernet of the
spec's task (:func:`gen5nas.tasks.base.get_task`), the sandwich step on the task's losses,
the min/max validator with BN recalibration, and the :class:`Trainer`.
Everything that can be wrong with the spec or the data is raised before the first step.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from gen5nas.spec.training import StepResolution, SupernetTrainingSpec
from gen5nas.train.metrics import TrainingMetrics
from gen5nas.train.trainer import StepHook, TrainResult

log = logging.getLogger(__name__)


def run_supernet_training(
    spec: SupernetTrainingSpec,
    work_dir: str | Path,
    *,
    config_file: str | Path | None = None,
    hooks: tuple[StepHook, ...] = (),
    device: str | None = None,
    metrics: TrainingMetrics | None = None,
) -> TrainResult:
    """Train (or resume training) the supernet of ``spec`` in ``work_dir``.

    Under torchrun every process calls this; rank 0 writes the outputs. ``hooks`` are called
    after every optimizer step with (StepContext, StepOutput) (tests, custom logging).
    ``metrics``: rank 0's Prometheus gauges (``train.metrics``; the caller serves them).
    """
    import torch

    from gen5nas.errors import SpecError
    from gen5nas.tasks.base import get_task
    from gen5nas.train.arch_sampling import arch_sampler
    from gen5nas.train.checkpoint import make_meta
    from gen5nas.train.distributed import env_from_torchrun
    from gen5nas.train.evaluate import SupernetValidator
    from gen5nas.train.progress_report import ProgressReporter
    from gen5nas.train.sandwich import SandwichStep
    from gen5nas.train.seeding import seed_everything
    from gen5nas.train.trainer import Trainer, TrainerConfig

    task = get_task(spec.task.value)
    work_dir = Path(work_dir)
    space = spec.search_space.resolve()
    env = env_from_torchrun(device)
    seed_everything(spec.seed, env.rank, spec.deterministic)
    loaders = task.build_loaders(
        spec.dataset, space.max_resolution(), work_dir=work_dir, seed=spec.seed
    )
    num_classes = spec.model.num_classes or loaders.num_classes
    if num_classes != loaders.num_classes:
        raise SpecError(
            f"{num_classes} given, but the dataset has {loaders.num_classes} classes",
            field="model.numClasses",
        )
    if (
        spec.precision == "bf16"
        and env.device.type == "cuda"
        and not torch.cuda.is_bf16_supported()
    ):
        raise SpecError("this GPU has no bf16 support; use fp32", field="precision")
    torch.manual_seed(spec.seed)  # the same initial weights on every rank and every run
    model = task.build_supernet(
        space,
        num_classes,
        activation=spec.model.activation.value,
        dropout=spec.model.dropout,
        drop_path=spec.model.drop_path,
    )
    seed_everything(spec.seed, env.rank, spec.deterministic)  # per-rank dropout streams
    step = SandwichStep(
        space,
        num_random=spec.schedule.num_random_subnets,
        label_smoothing=spec.optimizer.label_smoothing,
        distill=spec.distillation.enabled,
        temperature=spec.distillation.temperature,
        seed=spec.seed,
        task=task,
        sampler=arch_sampler(spec.schedule.arch_sampling.value),
        candidates=spec.schedule.arch_candidates,
        choice=spec.schedule.arch_choice.value,
        shared_resolution=spec.schedule.step_resolution == StepResolution.shared,
        min_weight=spec.schedule.min_subnet_weight,
    )
    assert loaders.val is not None
    val_loader = loaders.val
    validator = SupernetValidator(
        space,
        val_loader,
        lambda: loaders.calibration(spec.bn_calibration_batches, seed=spec.seed),
        env.device,
        spec.channels_last,
        task=task,
    )
    meta = make_meta(
        space,
        num_classes,
        classes=loaders.classes,
        activation=spec.model.activation.value,
        dropout=spec.model.dropout,
        task=task.name,
    )
    resolved: dict[str, Any] = spec.model_dump(mode="json", by_alias=True)
    assert loaders.train is not None
    trainer = Trainer(
        model,
        step,
        validator,
        loaders.train,
        loaders.train_sampler,
        config=TrainerConfig(
            work_dir=work_dir,
            schedule=spec.schedule,
            optimizer=spec.optimizer,
            checkpoint=spec.checkpoint,
            elastic=True,
            task=task,
            precision=spec.precision,
            channels_last=spec.channels_last,
            config_file=Path(config_file) if config_file else None,
            resolved_config=resolved,
            hooks=hooks,
            progress=ProgressReporter.from_env() if env.is_main else None,
            metrics=metrics if env.is_main else None,
        ),
        env=env,
        meta=meta,
    )
    if env.is_main:
        log.info(
            "supernet training: space %s (%d subnets), %d classes, %d train / %d val images, "
            "%d process(es) x batch %d, %d iterations/epoch, %d epochs, work dir %s",
            spec.search_space.name or "inline",
            space.size(),
            num_classes,
            len(loaders.train.dataset),  # type: ignore[arg-type]
            len(val_loader.dataset),  # type: ignore[arg-type]
            env.world_size,
            spec.dataset.batch_size,
            trainer.iters_per_epoch,
            spec.schedule.epochs,
            work_dir,
        )
    return trainer.fit()
