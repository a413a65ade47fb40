"""The graph analysis is linear in its nodes: a chain of unknown (custom) ops, each one fed
through a known op by the one before, costs a fixed number of whole-graph shape inferences and
one single-node inference per node, however long the chain (one whole-graph inference per unknown
op made 20k such nodes take the better part of an hour)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from estimator_helpers import chain_of_unknown_ops
from onnx import shape_inference

from gen5nas.estimator import onnx_graph


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    counted: Counter[str] = Counter()

    def counting(name: str, real: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            counted[name] += 1
            return real(*args, **kwargs)

        return wrapper

    for name in ("infer_shapes", "infer_node_outputs"):
        monkeypatch.setattr(shape_inference, name, counting(name, getattr(shape_inference, name)))
    return counted


def test_a_chain_of_20k_unknown_ops_costs_linear_work(calls: Counter[str]) -> None:
    per_size = {}
    for n in (2_000, 20_000):
        calls.clear()
        work = onnx_graph.analyze(chain_of_unknown_ops(n))
        per_size[n] = dict(calls)
        # Every tensor got a shape: each unknown op assumed its input's, each Relu inferred.
        assert len(work.nodes) == n
        assert all(node.elems_written() == 8 for node in work.nodes)
        assumed = [note for note in work.notes if "assumed its first input's shape" in note]
        assert len(assumed) == 20
        assert any(f"({n // 2} in all)" in note for note in work.notes)  # short, yet counted
        assert not any("unknown shape" in note for note in work.notes)
    # Whole-graph inferences: a constant (one, plus one after the assumptions) ...
    assert per_size[2_000]["infer_shapes"] == per_size[20_000]["infer_shapes"] == 2
    # ... and single-node inferences: one per known op after an assumed shape, so 10x the
    # nodes is 10x the calls (quadratic work would be 100x).
    assert per_size[20_000]["infer_node_outputs"] == 20_000 // 2
    assert per_size[20_000]["infer_node_outputs"] == 10 * per_size[2_000]["infer_node_outputs"]
