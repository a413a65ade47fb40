"""The interface a task implements, and the registry the steps look tasks up in.

A task is everything that differs between, say, classification and detection on the same
elastic MBConv backbone; the steps (supernet training, search, retraining, export, the local
pipeline) take a :class:`Task` and call it, never asking for its name:

- data: :meth:`Task.build_loaders` (train/val loaders with the task's collate; the calibration
  batches for BN recalibration come from the same object);
- the model: :meth:`Task.build_supernet` puts the task's head on the elastic backbone,
  :meth:`Task.extract` cuts a static subnet out of it;
- the sandwich step's losses: :meth:`Task.ground_truth_loss` (the largest subnet) and
  :meth:`Task.distillation_loss` (the others, against the largest one's detached output);
- evaluation: :meth:`Task.evaluate` and :attr:`Task.metric` (a :class:`Metric`, higher is better: it ranks
  the checkpoints, is the search's accuracy objective and the card's headline figure);
- export: :meth:`Task.export_wrapper` is what torch.onnx and the parity check are fed, with
  the post-processing of one of :attr:`Task.postprocess_modes` (``raw``: none, the model's own
  outputs; ``nms``: a detector's boxes after NMS); :meth:`Task.postprocess_card` documents how
  to read the exported outputs (the card's ``postprocess`` section);
- cost: :attr:`Task.cost_scope` names the subgraph the estimator costs (``network``,
  ``backbone`` or ``detector``), one of :attr:`Task.cost_scopes` (those the task's subnets can
  be costed in): a search's default, ``NASSearch.costScope`` overrides it
  (:func:`gen5nas.search.cost.cost_scope` decides), and the export card's ``cost``.

Tasks are keyed by the value of the specs' ``task`` field (:class:`gen5nas.spec.common.Task`);
:func:`get_task` refuses a name no task is registered for, with the names that are.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from gen5nas.errors import SpecError

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

    from gen5nas.data import Batch, DataLoaders
    from gen5nas.spec import Arch, SearchSpace
    from gen5nas.spec.common import DatasetSpec

CostScope = Literal["network", "backbone", "detector"]
Postprocess = Literal["raw", "nms"]


@dataclass(frozen=True)
class Metric:
    """A task's headline metric (higher is better) and how outputs name it.

    Outputs are named by it: classification's are the seed's names (the ``accuracy_top1``
    column, ``best_max_subnet.accuracy_top1_epoch_N.pth``, ``gen5nas_train_val_accuracy_ratio``),
    detection's ``bbox_mAP``, ``best_max_subnet.bbox_mAP_epoch_N.pth``,
    ``gen5nas_train_val_bbox_map_ratio``."""

    key: str  # evaluator metrics, trial attrs, subnets.csv, checkpoints: ``accuracy_top1``
    label: str  # in the card and the search's outputs: ``accuracy/top1``
    title: str  # in log lines and command output: ``top-1``
    short: str  # in file and record names: ``top1`` (``gain_top1``)
    unit: str  # ``percent`` or ``fraction``
    prometheus: str = ""  # the word in Prometheus metric names; default: the key, lowercased

    @property
    def prometheus_name(self) -> str:
        """``accuracy`` in ``gen5nas_train_val_accuracy_ratio`` (``bbox_map`` for detection)."""
        return self.prometheus or self.key.lower()

    def format(self, value: float) -> str:
        return format_score(value, self.unit)

    def ratio(self, value: float) -> float:
        """``value`` as a fraction (0-1 for an accuracy), what the Prometheus gauges carry."""
        return value / 100 if self.unit == "percent" else value


def format_score(value: float, unit: str) -> str:
    """A metric's value for people: ``71.23%`` (percent), ``0.1234`` (a fraction)."""
    return f"{value:.2f}%" if unit == "percent" else f"{value:.4g}"


@runtime_checkable
class Task(Protocol):
    name: str  # the spec's ``task`` value
    metric: Metric  # the evaluator's headline figure
    extra_metrics: Sequence[str]  # other evaluator keys the search records per trial
    cost_scope: CostScope  # the default, one of cost_scopes
    cost_scopes: Sequence[CostScope]
    postprocess_modes: Sequence[Postprocess]  # what export_wrapper offers; "raw" first

    def build_loaders(
        self,
        dataset: DatasetSpec,
        resolution: tuple[int, int],
        *,
        work_dir: str | Path | None = None,
        seed: int = 0,
    ) -> DataLoaders: ...

    def build_supernet(
        self,
        space: SearchSpace,
        num_classes: int,
        *,
        activation: str = "relu6",
        dropout: float = 0.2,
        drop_path: float = 0.0,
    ) -> nn.Module: ...

    def extract(self, supernet: nn.Module, arch: Arch) -> nn.Module: ...

    def ground_truth_loss(self, output: Any, batch: Batch, label_smoothing: float) -> Tensor: ...

    def distillation_loss(self, student: Any, teacher: Any, temperature: float) -> Tensor: ...

    def detach(self, output: Any) -> Any: ...

    def evaluate(
        self,
        model: nn.Module,
        loader: Iterable[Batch],
        device: torch.device,
        channels_last: bool = False,
    ) -> dict[str, float]:
        """The metrics over every rank's share of ``loader`` (all-reduced); they include
        :attr:`metric`, ``images`` (scored) and ``skipped`` (unreadable)."""
        ...

    def export_wrapper(self, model: nn.Module, postprocess: Postprocess = "raw") -> nn.Module:
        """The module exported for ``model`` (a static subnet): its outputs are the ONNX
        outputs, and onnxruntime must agree with it on real images."""
        ...

    def postprocess_card(
        self, model: nn.Module, image_hw: tuple[int, int], postprocess: Postprocess = "raw"
    ) -> dict[str, Any]:
        """The card's ``postprocess`` section for ``model`` exported at ``image_hw``: its
        outputs, what they mean and how to decode them."""
        ...


_TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    """Make ``task`` available under ``task.name`` (a second task of that name replaces it)."""
    _TASKS[task.name] = task
    return task


def task_names() -> list[str]:
    _load_builtin()
    return sorted(_TASKS)


def get_task(name: str, field: str = "task") -> Task:
    """The task registered as ``name``; :class:`SpecError` on ``field`` naming those that are."""
    _load_builtin()
    try:
        return _TASKS[str(name)]
    except KeyError:
        raise SpecError(
            f"task {str(name)!r} is not implemented; available: {', '.join(sorted(_TASKS))}",
            field=field,
        ) from None


def checkpoint_task(
    trained_for: str, spec_task: str | None, dataset: DatasetSpec | None = None
) -> Task:
    """The task of a checkpoint trained for ``trained_for``, for a step that reads it (search,
    export): registered (else :func:`get_task`'s refusal, on ``checkpoint``), the spec's
    ``task`` when it names one, and served by the spec's dataset."""
    from gen5nas.spec.common import task_dataset_error

    task = get_task(trained_for, field="checkpoint")
    if spec_task is not None and str(spec_task) != task.name:
        raise SpecError(
            f"task {str(spec_task)!r}: the checkpoint was trained for {task.name!r}; give "
            f"task: {task.name} or leave task out (it follows the checkpoint)",
            field="task",
        )
    if problem := task_dataset_error(task.name, dataset):
        # The task is the checkpoint's: the dataset is what can change.
        raise SpecError(f"{problem[1]} (the checkpoint's task)", field="dataset.kind")
    return task


def _load_builtin() -> None:
    # The built-in tasks register on import; imported here so that a caller needs only base.
    import gen5nas.tasks.classification
    import gen5nas.tasks.detection  # noqa: F401
