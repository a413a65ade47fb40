"""What the benches that score subnets of a trained supernet share (not a bench itself).

:func:`search_scorer` scores archs exactly as a search does: the search's own evaluator
(``gen5nas.search.job.build_evaluator``: the spec's calibration and validation batches, BN
recalibration, the inherited headline metric of the checkpoint's task) and its own cost path
(an estimator started in-process, as ``gen5nas search`` does when the spec names no servers).
Only the wiring is here; what is scored, and how, is the search's code.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("bench")


@dataclass
class Scorer:
    space: Any  # SearchSpace
    supernet: Any
    meta: dict[str, Any]
    spec: Any  # NASSearchSpec, the dataset as scored
    checkpoint: Path
    evaluate: Callable[[Any], Any]  # arch -> gen5nas.search.evaluate.Outcome


def search_spec(config: str | Path, dataset: str | None = None) -> Any:
    """The NASSearch spec of ``config``; ``dataset`` (a dataset kind) replaces its dataset's
    kind (and drops its path and generator settings: a generated kind writes its tree)."""
    from gen5nas.spec.common import DatasetKind, load_spec
    from gen5nas.spec.search import NASSearchSpec

    _, spec = load_spec(config, "NASSearch", NASSearchSpec)
    if dataset is not None:
        kinds = [k.value for k in DatasetKind]
        if dataset not in kinds:
            raise SystemExit(f"--dataset: {dataset!r} is not a dataset kind; one of {kinds}")
        raw = spec.dataset.model_dump(by_alias=True, exclude={"path", "scenes"})
        spec = spec.model_copy(
            update={"dataset": type(spec.dataset).model_validate({**raw, "kind": dataset})}
        )
    return spec


@contextlib.contextmanager
def search_scorer(checkpoint: str | Path, spec: Any, work_dir: Path) -> Iterator[Scorer]:
    """A :class:`Scorer` for the supernet at ``checkpoint`` (a .pth or a training work dir),
    wired as ``gen5nas.search.workers.run_worker`` wires a search worker."""
    from gen5nas.search.checkpoint_space import read_supernet
    from gen5nas.search.cost import (
        estimator_servers,
        make_client,
        server_list,
        supernet_cost_fn,
        supernet_cost_scope,
    )
    from gen5nas.search.evaluate import build_evaluator
    from gen5nas.search.settings import SearchSettings
    from gen5nas.train.checkpoint import supernet_checkpoint

    path = supernet_checkpoint(checkpoint)
    supernet = read_supernet(spec, path)
    settings = SearchSettings(
        spec=spec, checkpoint=str(path), work_dir=str(work_dir), storage_url="", study_name=""
    )
    with estimator_servers(spec) as servers:
        client = make_client(spec, server_list(servers))
        evaluator = None
        try:
            evaluator = build_evaluator(
                settings,
                supernet.space,
                supernet.meta,
                supernet_cost_fn(client, supernet, supernet_cost_scope(spec, supernet)),
            )
            yield Scorer(
                supernet.space, evaluator.supernet, supernet.meta, spec, path, evaluator.evaluate
            )
        finally:
            if evaluator is not None:
                evaluator.close()
            client.close()


def subnet_macs(supernet: Any, arch: Any, task: Any = None) -> int:
    """Multiply-accumulates of ``arch``'s static subnet at its own resolution: the whole
    network ``task.extract`` cuts out (a detector: backbone, neck and head); no task: a
    classifier's."""
    from gen5nas.supernet import count_macs, extract_subnet

    static = task.extract(supernet, arch) if task is not None else extract_subnet(supernet, arch)
    return int(count_macs(static, (1, 3, *arch.resolution)))


def spread_indices(values: Sequence[float], n: int) -> list[int]:
    """Indices of ``n`` distinct items of ``values`` spread over their range: for each of the
    quantiles 0, 1/(n-1), ..., 1 of the values, the nearest item not taken yet (by rank)."""
    if n > len(values):
        raise ValueError(f"{n} items asked of {len(values)}")
    order = sorted(range(len(values)), key=lambda i: (values[i], i))
    taken: list[int] = []
    for q in range(n):
        target = round(q * (len(order) - 1) / max(1, n - 1))
        for offset in range(len(order)):
            for pos in (target - offset, target + offset):
                if 0 <= pos < len(order) and order[pos] not in taken:
                    taken.append(order[pos])
                    break
            else:
                continue
            break
    return taken


def cost_groups(values: Sequence[float], levels: int, size: int) -> list[list[int]]:
    """``levels`` groups of ``size`` distinct items each, at equal cost: the levels are the inner
    quantiles of ``values`` (as :func:`spread_indices` picks them, both ends left out), and each
    group is the ``size`` items nearest its level's value. Within a group the cost hardly differs,
    so a cost proxy cannot order it: what a supernet adds beyond MACs shows there."""
    if levels * size > len(values):
        raise ValueError(f"{levels} x {size} items asked of {len(values)}")
    centres = spread_indices(values, levels + 2)[1:-1]
    taken = set(centres)
    groups = []
    for centre in centres:
        nearest = sorted(
            (i for i in range(len(values)) if i not in taken),
            key=lambda i: (abs(values[i] - values[centre]), i),
        )[: size - 1]
        taken.update(nearest)
        groups.append(sorted([centre, *nearest], key=lambda i: (values[i], i)))
    return groups


def grouped_tau(x: Sequence[float], y: Sequence[float], groups: Sequence[Sequence[int]]) -> float:
    """Kendall's tau over the pairs within each group only, pooled: (concordant - discordant)
    / pairs, a pair tied in ``x`` or ``y`` counting neither. 1: every within-group pair ordered
    as ``y`` orders it; 0: no better than a coin."""
    score = pairs = 0
    for group in groups:
        for a, b in itertools.combinations(group, 2):
            pairs += 1
            sign = (x[a] - x[b]) * (y[a] - y[b])
            score += (sign > 0) - (sign < 0)
    if not pairs:
        raise ValueError("no group has two items")
    return score / pairs
