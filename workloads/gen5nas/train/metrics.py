"""Prometheus metrics of a supernet training (``gen5nas train --metrics-port``), on rank 0.

The trainer hands every record it writes to ``metrics.jsonl`` to ``TrainingMetrics.on_record``
(the "train" records every ``schedule.logIntervalIters``, "epoch" at each epoch's end, "val"
after each validation), so the gauges show what the log shows, with no extra device sync.

==============================================  =======  ====================================
name                                            type     labels
==============================================  =======  ====================================
``gen5nas_train_epoch``                         gauge    epochs completed
``gen5nas_train_epochs``                        gauge    epochs the schedule asks for
``gen5nas_train_iteration``                     gauge    optimizer steps completed
``gen5nas_train_images_per_second``             gauge    throughput (all ranks), last logged
``gen5nas_train_loss``                          gauge    pass: max, min, random0... (the
                                                         sandwich's passes; mean since the
                                                         epoch began)
``gen5nas_train_learning_rate``                 gauge
``gen5nas_train_val_<metric>_ratio``            gauge    subnet: max, min; the task's metric
                                                         as a fraction (0-1)
``gen5nas_train_skipped_images_total``          counter  unreadable training images skipped
==============================================  =======  ====================================

``<metric>`` is the task's :attr:`~gen5nas.tasks.base.Metric.prometheus_name`: ``accuracy``
for classification (top-1; the seed's ``gen5nas_train_val_accuracy_ratio``), ``bbox_map``
for detection (COCO bbox mAP), so a series never mixes two tasks' metrics.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from gen5nas.metrics_http import MetricsEndpoint
from gen5nas.tasks.base import Metric
from gen5nas.tasks.classification import CLASSIFICATION

LOSS_PREFIX = "loss/"


class TrainingMetrics:
    def __init__(self, epochs: int | None = None, metric: Metric = CLASSIFICATION.metric) -> None:
        self.metric = metric
        self.registry = CollectorRegistry()
        r = self.registry
        self.epoch = Gauge("gen5nas_train_epoch", "Epochs completed.", registry=r)
        self.epochs = Gauge("gen5nas_train_epochs", "Epochs the schedule asks for.", registry=r)
        self.iteration = Gauge("gen5nas_train_iteration", "Optimizer steps completed.", registry=r)
        self.images_per_second = Gauge(
            "gen5nas_train_images_per_second",
            "Training images per second over all ranks, since the epoch began.",
            registry=r,
        )
        self.loss = Gauge(
            "gen5nas_train_loss",
            "Mean training loss of each pass of the sandwich rule since the epoch began.",
            ["pass"],
            registry=r,
        )
        self.lr = Gauge("gen5nas_train_learning_rate", "Learning rate.", registry=r)
        self.val_score = Gauge(
            f"gen5nas_train_val_{metric.prometheus_name}_ratio",
            f"Validation {metric.label} (0-1) of the largest and smallest subnets.",
            ["subnet"],
            registry=r,
        )
        self.skipped = Counter(
            "gen5nas_train_skipped_images",
            "Unreadable training images skipped.",
            registry=r,
        )
        if epochs is not None:
            self.epochs.set(epochs)
        self.endpoint: MetricsEndpoint | None = None

    def on_record(self, kind: str, values: dict[str, float], epoch: int, iteration: int) -> None:
        """One record the trainer wrote (``kind``: train, epoch, val)."""
        self.iteration.set(iteration)
        if kind == "train":
            for key, value in values.items():
                if key.startswith(LOSS_PREFIX):
                    self.loss.labels(key[len(LOSS_PREFIX) :]).set(value)
            if "lr" in values:
                self.lr.set(values["lr"])
            if "images_per_s" in values:
                self.images_per_second.set(values["images_per_s"])
        elif kind == "epoch":
            self.epoch.set(epoch)
            if "images_per_s" in values:
                self.images_per_second.set(values["images_per_s"])
            if values.get("skipped_images"):
                self.skipped.inc(values["skipped_images"])
        elif kind == "val":
            suffix = f"/{self.metric.key}"  # the validator's "max/<key>", "min/<key>"
            for key, value in values.items():
                if key.endswith(suffix):
                    self.val_score.labels(key[: -len(suffix)]).set(self.metric.ratio(value))

    def serve(self, port: int, host: str = "0.0.0.0") -> MetricsEndpoint:
        self.endpoint = MetricsEndpoint(self.registry, port, host)
        return self.endpoint

    def close(self) -> None:
        if self.endpoint is not None:
            self.endpoint.close()
