"""The training loop shared by supernet training and retraining of a static subnet.

API (what the retrain step reuses)::

    seed_everything(seed, rank, deterministic)        # before building the model
    trainer = Trainer(
        model,                       # an nn.Module, unwrapped, on CPU or its device
        step,                        # TrainStep: SandwichStep(space, ...) or PlainStep(...)
        validator,                   # model -> {metric: value}: SupernetValidator/StaticValidator
        train_loader, sampler,       # from gen5nas.data.build_loaders (sampler: .train_sampler)
        config=TrainerConfig(...),   # schedule, optimizer, checkpoint specs + work dir + score key
        env=env,                     # DistEnv from distributed.env_from_torchrun()
        meta=make_meta(...),         # stored in every checkpoint; checked on resume
    )
    result = trainer.fit()           # resumes from work_dir/last_checkpoint if there is one

What ``fit`` does: wraps the model in DDP when distributed (``elastic`` finds unused
parameters), builds SGD + warmup/cosine, resumes (model, optimizer, scheduler, epoch and
iteration, per-rank RNG states, best score; :mod:`gen5nas.train.resume` finds the point, the
same on every rank), then per epoch: zero grads, ``step(...)``, clip, optimizer and LR step for
every batch; a tqdm bar and periodic log lines on rank 0 (images/s, per-pass losses, ETA);
validation every ``valIntervalEpochs`` and at the end; checkpoints ``epoch_N.pth``,
``last_checkpoint`` and the best file (``best_prefix`` + epoch) through
:class:`~gen5nas.train.checkpoint_store.CheckpointStore`; the log file, the config copies and
``metrics.jsonl`` (+ TensorBoard) through :class:`~gen5nas.run_outputs.RunOutputs`; and
(``config.progress``) rank 0's progress on its pod for ``kubectl get`` (``progress_report``).
Rank 0 writes files; every rank takes part in gathering a checkpoint's state.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from gen5nas.data.imagefolder import Batch, batch_to
from gen5nas.data.loaders import ShardSampler
from gen5nas.errors import Gen5NasError
from gen5nas.run_outputs import RunOutputs
from gen5nas.spec.training import CheckpointSpec, OptimizerSpec, ScheduleSpec
from gen5nas.tasks.base import Task
from gen5nas.tasks.classification import CLASSIFICATION
from gen5nas.train.checkpoint import best_prefix, rng_state, set_rng_state
from gen5nas.train.checkpoint_store import CheckpointStore
from gen5nas.train.distributed import DistEnv, all_reduce_sum, barrier, unwrap, wrap_ddp
from gen5nas.train.epoch_stats import EpochStats
from gen5nas.train.evaluate import Validator
from gen5nas.train.finite import check_finite_step
from gen5nas.train.metrics import TrainingMetrics
from gen5nas.train.optim import build_optimizer, build_scheduler
from gen5nas.train.progress_report import ProgressReporter
from gen5nas.train.resume import check_meta, read_resume_state
from gen5nas.train.sandwich import StepContext, StepOutput, TrainStep

log = logging.getLogger(__name__)

StepHook = Callable[[StepContext, StepOutput], None]


@dataclass
class TrainerConfig:
    work_dir: Path
    schedule: ScheduleSpec
    optimizer: OptimizerSpec
    checkpoint: CheckpointSpec
    elastic: bool = True  # a supernet: DDP must tolerate unused parameters
    task: Task = CLASSIFICATION  # its metric ranks the checkpoints and is reported
    score_key: str | None = None  # higher is better; picks the best checkpoint (max/<metric>)
    best_prefix: str | None = None  # None: best_max_subnet.<the task's metric key>_epoch_
    precision: str = "fp32"
    channels_last: bool = False
    config_file: Path | None = None  # copied into the work dir (the seed does)
    resolved_config: dict[str, Any] | None = None  # written to the log folder
    hooks: Sequence[StepHook] = field(default_factory=tuple)
    progress: ProgressReporter | None = None  # rank 0's progress on its pod (kubectl get)
    metrics: TrainingMetrics | None = None  # rank 0's Prometheus gauges (each record)


@dataclass
class TrainResult:
    epochs_completed: int
    iterations: int
    best_score: float | None
    best_epoch: int | None
    best_checkpoint: Path | None
    last_checkpoint: Path | None
    metrics: dict[str, float]  # the last validation's
    log_dir: Path | None
    model: nn.Module | None = None  # the trained model (unwrapped, still on its device)


class Trainer:
    def __init__(
        self,
        model: nn.Module,
        step: TrainStep,
        validator: Validator | None,
        train_loader: Iterable[Batch],
        sampler: ShardSampler | None,
        *,
        config: TrainerConfig,
        env: DistEnv,
        meta: dict[str, Any],
    ) -> None:
        self.cfg = config
        self.env = env
        self.meta = meta
        self.step = step
        self.validator = validator
        self.loader = train_loader
        self.sampler = sampler
        self.work_dir = Path(config.work_dir)
        self.model = model.to(env.device)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        batch = int(getattr(train_loader, "batch_size", None) or 1)
        self.batch_size = batch
        full = len(train_loader)  # type: ignore[arg-type]
        cap = config.schedule.max_iters_per_epoch
        self.iters_per_epoch = min(full, cap) if cap else full
        if self.iters_per_epoch < 1:
            raise Gen5NasError("the training loader yields no batch: nothing to train")
        self.optimizer = build_optimizer(self.model, config.optimizer, batch * env.world_size)
        self.scheduler = build_scheduler(self.optimizer, config.schedule, self.iters_per_epoch)
        self.epoch = 0  # epochs completed
        self.iteration = 0  # optimizer steps completed
        self.iter_in_epoch = 0  # steps completed in the current (unfinished) epoch
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.last_metrics: dict[str, float] = {}
        self.log_dir: Path | None = None
        self.outputs: RunOutputs | None = None  # rank 0's
        self.checkpoints = CheckpointStore(
            self.work_dir,
            config.checkpoint.keep_last,
            config.best_prefix or best_prefix(config.task.metric.key),
        )
        self._ddp: nn.Module = self.model

    # ---- resume -------------------------------------------------------------------------------
    def _resume(self) -> Path | None:
        path, state = read_resume_state(self.work_dir, self.env)
        if path is None or state is None:
            return None
        check_meta(self.meta, state.get("meta") or {}, str(path))
        unwrap(self.model).load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        sched = dict(state["scheduler"])
        # The schedule's shape follows the current spec (e.g. a longer --epochs), not the file.
        sched["lr_lambdas"] = [None] * len(self.scheduler.lr_lambdas)
        self.scheduler.load_state_dict(sched)
        self.epoch = int(state["epoch"])
        self.iteration = int(state["iteration"])
        self.iter_in_epoch = int(state.get("iter_in_epoch", 0))
        best = state.get("best") or {}
        self.best_score, self.best_epoch = best.get("score"), best.get("epoch")
        self.last_metrics = dict(state.get("metrics") or {})
        if self.env.is_main:
            self.checkpoints.repair_best(self.best_epoch)
        rngs = state.get("rng") or []
        if len(rngs) == self.env.world_size:
            set_rng_state(rngs[self.env.rank])
        else:
            log.warning(
                "checkpoint has RNG states of %d process(es), this run has %d: dropout and "
                "augmentation RNGs start fresh (data order and archs are unaffected)",
                len(rngs),
                self.env.world_size,
            )
        if self.env.is_main:
            log.info(
                "resuming from %s: %d epoch(s) + %d iteration(s) done, best %s",
                path,
                self.epoch,
                self.iter_in_epoch,
                self.best_score,
            )
        return path

    # ---- outputs ------------------------------------------------------------------------------
    def _open_outputs(self, resumed_from: Path | None) -> None:
        if not self.env.is_main:
            return
        self.outputs = RunOutputs(
            self.work_dir,
            "train",
            config_file=self.cfg.config_file,
            resolved_config=self.cfg.resolved_config,
        )
        self.log_dir = self.outputs.log_dir
        self.outputs.start_metrics(self.iteration, resumed=resumed_from is not None)

    def _record(self, kind: str, values: dict[str, float], epoch: int) -> None:
        if self.outputs is not None:
            self.outputs.record(kind, values, epoch, self.iteration)
        if self.cfg.metrics is not None:
            self.cfg.metrics.on_record(kind, values, epoch, self.iteration)

    def _close_outputs(self) -> None:
        if self.outputs is not None:
            self.outputs.close()

    # ---- checkpoints --------------------------------------------------------------------------
    def _state(self, iter_in_epoch: int) -> dict[str, Any]:
        rngs: list[Any] = [rng_state()]
        if self.env.distributed:  # every rank's RNG, so that each resumes its own streams
            buf = io.BytesIO()
            torch.save(rngs[0], buf)
            blobs: list[Any] = [None] * self.env.world_size
            dist.all_gather_object(blobs, buf.getvalue())
            rngs = [torch.load(io.BytesIO(b), weights_only=True) for b in blobs]
        return {
            "model": unwrap(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "iteration": self.iteration,
            "iter_in_epoch": iter_in_epoch,
            "rng": rngs,
            "best": {"score": self.best_score, "epoch": self.best_epoch},
            "metrics": self.last_metrics,
            "meta": self.meta,
        }

    def _save(self, name: str, iter_in_epoch: int = 0, best: bool = False) -> Path:
        state = self._state(iter_in_epoch)  # collective: every rank takes part
        path = self.work_dir / name
        if self.env.is_main:
            self.checkpoints.save(
                state, name, epoch=self.epoch, best=best, best_epoch=self.best_epoch
            )
        barrier()
        return path

    def _save_best_state(self) -> Path:
        state = self._state(0)  # collective
        best = self.checkpoints.best_path(self.epoch)
        if self.env.is_main:
            self.checkpoints.save_best_state(state, self.epoch)
        barrier()
        return best

    # ---- the loop -----------------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager[None]:
        if self.cfg.precision == "bf16":
            return torch.autocast(self.env.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def fit(self) -> TrainResult:
        resumed_from = self._resume()
        self._ddp = wrap_ddp(self.model, self.env, self.cfg.elastic)
        self._open_outputs(resumed_from)
        epochs = self.cfg.schedule.epochs
        best_file: Path | None = None
        last_file = resumed_from
        try:
            if self.epoch >= epochs and self.env.is_main:
                log.info("all %d epochs are already done in %s", epochs, self.work_dir)
            self._report_progress(force=True)
            while self.epoch < epochs:
                self._train_epoch()
                self.epoch += 1
                self.iter_in_epoch = 0
                last_epoch = self.epoch == epochs
                if self.validator is not None and (
                    last_epoch or self.epoch % self.cfg.schedule.val_interval_epochs == 0
                ):
                    new_best = self._validate()
                else:
                    new_best = False
                if last_epoch or self.epoch % self.cfg.checkpoint.interval_epochs == 0:
                    last_file = self._save(f"epoch_{self.epoch}.pth", best=new_best)
                    if new_best:
                        best_file = self.checkpoints.best_path(self.epoch)
                elif new_best:
                    best_file = self._save_best_state()
                self._report_progress(force=True)
        finally:
            self._close_outputs()
        if best_file is None:
            best_file = self.checkpoints.existing_best(self.best_epoch)
        return TrainResult(
            self.epoch,
            self.iteration,
            self.best_score,
            self.best_epoch,
            best_file,
            last_file,
            self.last_metrics,
            self.log_dir,
            self.model,
        )

    def _report_progress(self, force: bool = False) -> None:
        if self.cfg.progress is None or not self.env.is_main:
            return
        self.cfg.progress.report(
            self.epoch,
            self.cfg.schedule.epochs,
            self.iteration,
            self.last_metrics.get(f"max/{self.cfg.task.metric.key}"),
            self.last_metrics.get(f"min/{self.cfg.task.metric.key}"),
            self.cfg.task.metric.label,
            force=force,
        )

    def _validate(self) -> bool:
        started = time.perf_counter()
        assert self.validator is not None
        metrics = self.validator(self._ddp)
        self.last_metrics = metrics
        self._record("val", metrics, self.epoch)
        score = metrics.get(self.cfg.score_key or f"max/{self.cfg.task.metric.key}")
        new_best = score is not None and (self.best_score is None or score > self.best_score)
        if new_best:
            self.best_score, self.best_epoch = score, self.epoch
        if self.env.is_main:
            task = self.cfg.task
            scores = {task.metric.key, *task.extra_metrics}  # in the metric's unit
            shown = [
                f"{k} {task.metric.format(v) if name in scores else f'{v:.4g}'}"
                for k, v in metrics.items()
                if (name := k.rsplit("/", 1)[-1]) in scores or name == "loss"
            ]
            log.info(
                "epoch %d validation (%.1f s): %s%s",
                self.epoch,
                time.perf_counter() - started,
                ", ".join(shown),
                " (new best)" if new_best else "",
            )
        return new_best

    def _train_epoch(self) -> None:
        cfg, env = self.cfg, self.env
        epoch, start = self.epoch, self.iter_in_epoch
        if self.sampler is not None:
            self.sampler.set_epoch(epoch, start * self.batch_size)
        self._ddp.train()
        progress = EpochStats()
        total_iters = cfg.schedule.epochs * self.iters_per_epoch
        bar = tqdm(
            total=self.iters_per_epoch,
            initial=start,
            desc=f"epoch {epoch + 1}/{cfg.schedule.epochs}",
            disable=not env.is_main,
            dynamic_ncols=True,
            mininterval=1.0,
            leave=False,
        )
        it = start
        clip = cfg.optimizer.grad_clip_norm
        try:
            for raw in self.loader:
                if it >= self.iters_per_epoch:
                    break
                batch = batch_to(raw, env.device, cfg.channels_last)
                self.optimizer.zero_grad(set_to_none=True)
                ctx = StepContext(epoch, self.iteration, self._autocast)
                out = self.step(self._ddp, batch, ctx)
                check_finite_step(out.losses, epoch + 1, self.iteration + 1)  # before the step
                if clip is not None:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
                self.optimizer.step()
                self.scheduler.step()
                self.iteration += 1
                it += 1
                progress.add(out, len(batch) * env.world_size, raw.skipped)
                for hook in cfg.hooks:
                    hook(ctx, out)
                if it % cfg.schedule.log_interval_iters == 0 or it == self.iters_per_epoch:
                    self._log_progress(progress, it, total_iters, bar)
                bar.update(1)
                every = cfg.checkpoint.interval_iters
                if every and self.iteration % every == 0 and it < self.iters_per_epoch:
                    self.iter_in_epoch = it
                    self._save(f"iter_{self.iteration}.pth", iter_in_epoch=it)
        finally:
            bar.close()
        skipped = torch.tensor(float(progress.skipped), device=env.device)
        all_reduce_sum(skipped)
        if skipped.item() and env.is_main:
            log.warning(
                "epoch %d: %d unreadable training image(s) skipped", epoch + 1, int(skipped)
            )
        self._record(
            "epoch",
            {"images_per_s": progress.rate(), "skipped_images": float(skipped)},
            epoch + 1,
        )

    def _log_progress(self, progress: EpochStats, it: int, total_iters: int, bar: tqdm) -> None:
        # Non-finite losses stop the run at their step (check_finite_step), before this line.
        lr = self.optimizer.param_groups[0]["lr"]
        values = {f"loss/{k}": v for k, v in progress.mean_losses().items()}
        values.update({"lr": lr, "images_per_s": progress.rate()})
        self._record("train", values, self.epoch + 1)
        self._report_progress()  # throttled: at most every few seconds mid-epoch
        if self.env.is_main:
            bar.set_postfix(progress.postfix(), refresh=False)
            log.info(
                "epoch %d/%d iter %d/%d | %s",
                self.epoch + 1,
                self.cfg.schedule.epochs,
                it,
                self.iters_per_epoch,
                progress.line(lr, self.iters_per_epoch - it, total_iters - self.iteration),
            )
