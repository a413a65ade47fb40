"""The seed's search outputs, written atomically so that a reader never sees half a file:

``fix_subnets/trial_N.yaml`` (one arch file per trial with an arch, readable by
``gen5nas.spec.load_arch`` and the export step), ``subnets.csv`` (one row per trial, its score
in the column named by the task's metric key: ``accuracy_top1``, ``bbox_mAP``; a trial that
repeats an arch already scored names that trial in ``duplicate_of``),
``pareto_front.html`` (plotly, self-contained: opens with no internet), ``pareto_front.png``
(matplotlib), ``study.pkl`` (an in-memory copy of the study: ``pickle.load`` needs no database).

``StudyOutputs`` writes them all from a search's study, ``OutputRefresher`` every few trials
while it runs, and ``record_outputs`` stores their paths in the study for the operator. What
the numbers are comes from the study too: the task's metric names the accuracy axis, and the
cost scope (``network``, ``backbone``, ``detector``) the ``cost_scope`` column and the cost
axis ("latency (backbone, ms)"). Torch-free to import: the operator imports this module.
"""

from __future__ import annotations

import csv
import io
import logging
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from gen5nas.atomic import atomic_write_bytes
from gen5nas.search.results import TrialRecord, collect, pareto_front
from gen5nas.search.study import study_cost_scope
from gen5nas.spec.space import SearchSpace, save_arch
from gen5nas.tasks.base import Metric

log = logging.getLogger(__name__)

FIX_SUBNETS = "fix_subnets"
CSV_NAME = "subnets.csv"
HTML_NAME = "pareto_front.html"
PNG_NAME = "pareto_front.png"
PICKLE_NAME = "study.pkl"
COST_UNITS = {"latency": "ms", "energy": "mJ"}
OUTPUTS_EVERY = 10  # trials between refreshes of the output files while a search runs

# What a finished search records in its study, for the operator: the study user attr
# OUTPUTS_ATTR maps each status.outputs key to the absolute path written (keys of write_all's
# result -> the operator's status names).
OUTPUTS_ATTR = "outputs"
OUTPUT_STATUS_KEYS = {
    "html": "paretoHtml",
    "png": "paretoPng",
    "csv": "subnetsCsv",
    "pickle": "studyPkl",
    "fix_subnets": "fixSubnets",
}


def arch_file(work_dir: Path, number: int) -> Path:
    return work_dir / FIX_SUBNETS / f"trial_{number}.yaml"


def write_arch_files(records: Sequence[TrialRecord], work_dir: Path) -> list[Path]:
    """``fix_subnets/trial_N.yaml`` for every trial with an arch (unchanged files are kept)."""
    written = []
    for r in records:
        if r.arch is None:
            continue
        path = arch_file(work_dir, r.number)
        if not path.exists() or path.read_text() != r.arch.to_yaml():
            save_arch(r.arch, path)
        written.append(path)
    return written


def cost_label(cost_key: str, cost_scope: str) -> str:
    """The cost axis: ``latency (backbone, ms)``."""
    return f"{cost_key} ({cost_scope}, {COST_UNITS[cost_key]})"


def metric_label(metric: Metric) -> str:
    """The accuracy axis: ``top-1 (%)``, ``bbox mAP``."""
    return f"{metric.title} (%)" if metric.unit == "percent" else metric.title


@dataclass(frozen=True)
class Labels:
    """What a study's numbers are: its task's metric and its cost scope."""

    metric: Metric
    cost_scope: str

    @classmethod
    def of(cls, study: optuna.Study) -> Labels:
        from gen5nas.tasks.base import get_task  # the registry imports the tasks (torch)

        task = get_task(str(study.user_attrs.get("task", "classification")), field="task")
        return cls(task.metric, study_cost_scope(study))


def csv_columns(num_stages: int, metric: Metric) -> list[str]:
    cols = ["trial", "state", "resolution", "first_num_out_channels", "last_num_out_channels"]
    for i in range(num_stages):
        cols += [
            f"stage{i}_{k}"
            for k in ("num_blocks", "kernel_size", "expand_ratio", "num_out_channels")
        ]
    cols += [
        metric.key,
        "latency_ms",
        "energy_mj",
        "cost_scope",
        "feasible",
        "pareto",
        "duplicate_of",
        "duration_s",
        "reason",
        "arch_file",
    ]
    return cols


def write_csv(
    records: Sequence[TrialRecord], work_dir: Path, num_stages: int, labels: Labels
) -> Path:
    buf = io.StringIO()
    columns = csv_columns(num_stages, labels.metric)
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for r in records:
        row: dict[str, Any] = {
            "trial": r.number,
            "state": r.state,
            labels.metric.key: _num(r.accuracy),
            "latency_ms": _num(r.latency_ms),
            "energy_mj": _num(r.energy_mj),
            "cost_scope": labels.cost_scope,
            "feasible": r.feasible,
            "pareto": r.pareto,
            "duplicate_of": "" if r.duplicate_of is None else r.duplicate_of,
            "duration_s": _num(r.duration_s),
            "reason": r.reason,
        }
        if r.arch is not None:
            h, w = r.arch.resolution
            row.update(
                resolution=f"{h}x{w}",
                first_num_out_channels=r.arch.first_num_out_channels,
                last_num_out_channels=r.arch.last_num_out_channels,
                arch_file=f"{FIX_SUBNETS}/trial_{r.number}.yaml",
            )
            for i, s in enumerate(r.arch.stages):
                row[f"stage{i}_num_blocks"] = s.num_blocks
                row[f"stage{i}_kernel_size"] = s.kernel_size
                row[f"stage{i}_expand_ratio"] = _num(s.expand_ratio)
                row[f"stage{i}_num_out_channels"] = s.num_out_channels
        writer.writerow(row)
    return atomic_write_bytes(work_dir / CSV_NAME, buf.getvalue().encode())


def _num(value: float | None) -> str:
    # repr round-trips floats exactly, so numbers read back from the CSV equal the study's.
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _split(records: Sequence[TrialRecord], cost_key: str) -> dict[str, list[TrialRecord]]:
    # A duplicate is drawn once, as the trial that scored its arch.
    done = [
        r
        for r in records
        if r.state == "COMPLETE"
        and r.duplicate_of is None
        and r.accuracy is not None
        and r.cost(cost_key) is not None
    ]
    return {
        "front": pareto_front(done, cost_key),
        "other": [r for r in done if not r.pareto and r.feasible],
        "infeasible": [r for r in done if not r.feasible],
    }


def _label(r: TrialRecord, labels: Labels) -> str:
    summary = r.arch.summary() if r.arch else "?"
    return (
        f"trial {r.number}<br>{summary}<br>{labels.metric.title} "
        f"{labels.metric.format(r.accuracy or 0.0)}<br>{labels.cost_scope}: latency "
        f"{r.latency_ms} ms, energy {r.energy_mj} mJ"
    )


def write_html(
    records: Sequence[TrialRecord], work_dir: Path, cost_key: str, title: str, labels: Labels
) -> Path:
    # The plotting libraries only when a plot is drawn: the operator imports this module for
    # its names and paths, and draws none.
    import plotly.graph_objects as go

    groups = _split(records, cost_key)
    fig = go.Figure()
    styles = {
        "other": ("evaluated", {"color": "#9aa5b1", "size": 7}, "markers"),
        "infeasible": (
            "violates constraints",
            {"color": "#e8a33d", "size": 7, "symbol": "x"},
            "markers",
        ),
        "front": ("Pareto front", {"color": "#d62728", "size": 10}, "lines+markers"),
    }
    for key, (name, marker, mode) in styles.items():
        rs = groups[key]
        fig.add_trace(
            go.Scatter(
                x=[r.cost(cost_key) for r in rs],
                y=[r.accuracy for r in rs],
                mode=mode,
                name=name,
                marker=marker,
                line={"shape": "hv"} if key == "front" else None,
                text=[_label(r, labels) for r in rs],
                hoverinfo="text",
            )
        )
    fig.update_layout(
        title=title,
        xaxis_title=cost_label(cost_key, labels.cost_scope),
        yaxis_title=metric_label(labels.metric),
        template="plotly_white",
    )
    html = fig.to_html(include_plotlyjs=True, full_html=True)
    return atomic_write_bytes(work_dir / HTML_NAME, html.encode())


def write_png(
    records: Sequence[TrialRecord], work_dir: Path, cost_key: str, title: str, labels: Labels
) -> Path:
    import matplotlib  # see write_html

    matplotlib.use("Agg")  # no display; kaleido would need a browser
    import matplotlib.pyplot as plt

    groups = _split(records, cost_key)
    fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
    try:
        for key, color, marker, label in (
            ("other", "#9aa5b1", "o", "evaluated"),
            ("infeasible", "#e8a33d", "x", "violates constraints"),
            ("front", "#d62728", "o", "Pareto front"),
        ):
            rs = groups[key]
            if not rs:
                continue
            xs = [r.cost(cost_key) or 0.0 for r in rs]  # _split kept only scored trials
            ys = [r.accuracy or 0.0 for r in rs]
            if key == "front":
                ax.step(xs, ys, where="post", color=color, linewidth=1)
                for r, x, y in zip(rs, xs, ys, strict=True):
                    ax.annotate(
                        str(r.number), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7
                    )
            ax.scatter(xs, ys, c=color, marker=marker, label=label, s=25, zorder=3)
        ax.set_xlabel(cost_label(cost_key, labels.cost_scope))
        ax.set_ylabel(metric_label(labels.metric))
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if any(groups.values()):
            ax.legend(loc="lower right")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", bbox_inches="tight")
    finally:
        plt.close(fig)
    return atomic_write_bytes(work_dir / PNG_NAME, buf.getvalue())


def write_pickle(study: optuna.Study, work_dir: Path) -> Path:
    """An in-memory copy of ``study`` (trials, attrs), picklable without a database."""
    copy = optuna.create_study(directions=study.directions, study_name=study.study_name)
    for key, value in study.user_attrs.items():
        copy.set_user_attr(key, value)
    copy.add_trials(study.get_trials(deepcopy=False))
    return atomic_write_bytes(work_dir / PICKLE_NAME, pickle.dumps(copy))


def write_all(
    study: optuna.Study,
    records: Sequence[TrialRecord],
    work_dir: Path,
    *,
    cost_key: str,
    num_stages: int,
) -> dict[str, Path]:
    """Every output file; returns their paths by name. The task and cost scope are the
    study's (:class:`Labels`)."""
    labels = Labels.of(study)
    title = f"{study.study_name}: {labels.metric.title} vs {cost_key} ({labels.cost_scope})"
    out = {
        "csv": write_csv(records, work_dir, num_stages, labels),
        "html": write_html(records, work_dir, cost_key, title, labels),
        "png": write_png(records, work_dir, cost_key, title, labels),
        "pickle": write_pickle(study, work_dir),
    }
    write_arch_files(records, work_dir)
    out["fix_subnets"] = work_dir / FIX_SUBNETS
    return out


def record_outputs(study: optuna.Study, paths: Mapping[str, Path]) -> None:
    """Store the absolute paths written in the study's ``outputs`` user attr: the operator
    reports them (and takes their presence as the search having written its outputs)."""
    outputs = {key: str(paths[name].resolve()) for name, key in OUTPUT_STATUS_KEYS.items()}
    outputs["fixSubnets"] += "/"  # a directory, as the operator's default shows it
    study.set_user_attr(OUTPUTS_ATTR, outputs)


@dataclass(frozen=True)
class StudyOutputs:
    """The output files of one search, written from its study into ``work_dir``."""

    study: optuna.Study
    space: SearchSpace
    work_dir: Path
    cost_key: str
    limits: dict[str, float]  # the constraints (``results.constraint_limits``)

    def write(
        self, records: list[TrialRecord] | None = None
    ) -> tuple[list[TrialRecord], dict[str, Path]]:
        """Every output file, from ``records`` or else the study's trials as they stand."""
        if records is None:
            records = collect(
                self.study.get_trials(deepcopy=False), self.space, self.cost_key, self.limits
            )
        paths = write_all(
            self.study,
            records,
            self.work_dir,
            cost_key=self.cost_key,
            num_stages=self.space.arch_setting.num_stages,
        )
        return records, paths

    def write_before_leaving(self) -> None:
        """Outputs from whatever the study holds, on the way out of a stopped search; a failure
        here is logged, not raised over the reason the search stopped."""
        try:
            self.write()
            log.info("outputs written from the study as it stands; rerun the command to resume")
        except Exception as exc:
            log.warning("could not write the outputs on the way out: %s", exc)


class OutputRefresher:
    """Rewrites the outputs every ``OUTPUTS_EVERY`` finished trials, so a long search can be
    inspected (and nothing is lost) before it ends (a worker's ``on_progress``)."""

    def __init__(self, outputs: StudyOutputs) -> None:
        self.outputs = outputs
        self.seen = 0

    def __call__(self, records: list[TrialRecord]) -> None:
        self.seen += 1
        if self.seen % OUTPUTS_EVERY == 0:
            self.outputs.write(records)
