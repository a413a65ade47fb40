"""The hardware cost of an arch: its cost scope, the estimator servers, their client, and the
``CostFn``.

A search costs every arch through the gRPC estimator (``gen5nas.estimator``): by name when the
servers know the search space, else by the arch's ONNX graph built here without torch. With no
``estimator.servers`` in the spec, ``estimator_servers`` starts one in this process. What of
the arch is costed (the whole network, its backbone, or a detector's whole static detector) is
decided once, by :func:`cost_scope`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from gen5nas.errors import Gen5NasError, SpecError
from gen5nas.estimator.client import EstimatorClient
from gen5nas.estimator.errors import EstimatorRequestError, EstimatorUnavailable
from gen5nas.search.checkpoint_space import SupernetInfo
from gen5nas.search.evaluate import CostFn
from gen5nas.search.settings import Servers
from gen5nas.spec.search import NASSearchSpec
from gen5nas.spec.space import Arch, SearchSpace
from gen5nas.tasks.base import Task, checkpoint_task

log = logging.getLogger(__name__)


def cost_scope(spec: NASSearchSpec, task: Task) -> str:
    """What the search costs of each arch: ``spec.costScope``, else the task's
    (:attr:`Task.cost_scope`; classification ``network``, detection ``backbone``). A scope the
    task's subnets cannot be costed in (:attr:`Task.cost_scopes`: a classifier has no
    detector) is refused here, before the study is touched."""
    scope = spec.cost_scope.value if spec.cost_scope is not None else str(task.cost_scope)
    if scope not in task.cost_scopes:
        raise SpecError(
            f"costScope {scope}: task {task.name} has no {scope} graph for the estimator; "
            f"allowed for {task.name}: {', '.join(task.cost_scopes)}",
            field="costScope",
        )
    return scope


def supernet_cost_scope(spec: NASSearchSpec, supernet: SupernetInfo) -> str:
    """:func:`cost_scope` for the supernet's task (checked against the spec's ``task`` and
    dataset: :func:`gen5nas.tasks.base.checkpoint_task`)."""
    return cost_scope(spec, checkpoint_task(supernet.task, spec.task, spec.dataset))


def server_list(servers: Servers) -> list[dict[str, Any]]:
    """``servers`` as ``EstimatorClient`` takes them: ``[{"host": ..., "ports": [...]}]``."""
    return [{"host": host, "ports": list(ports)} for host, ports in servers]


@contextlib.contextmanager
def estimator_servers(spec: NASSearchSpec, ports: int = 1) -> Iterator[Servers]:
    """The spec's servers; when it names none, an estimator server started in this process on
    ``ports`` free loopback ports (one per search worker), stopped on exit."""
    if spec.estimator.servers:
        yield tuple((s.host, tuple(s.ports)) for s in spec.estimator.servers)
        return
    # The server (engine, profiles: ~0.5 s to import) only when this process starts one:
    # spawned workers import this module and never do.
    from gen5nas.estimator.server import start_server

    server = start_server([0] * max(1, ports), host="127.0.0.1")
    log.info("estimator: started in-process on %s", ", ".join(server.addresses))
    try:
        yield (("127.0.0.1", tuple(server.ports)),)
    finally:
        server.stop(grace=1.0)


def make_client(spec: NASSearchSpec, servers: list[dict[str, Any]]) -> EstimatorClient:
    est = spec.estimator
    return EstimatorClient(
        servers,
        est.profile,
        dict(est.hw_config),
        timeout_s=est.timeout_s,
        retries=est.retries,
        with_layers=False,
    )


def make_cost_fn(
    client: EstimatorClient,
    space: SearchSpace,
    name: str | None,
    num_classes: int,
    activation: str,
    scope: str = "network",
    task: str = "classification",
) -> CostFn:
    """arch -> (latency_ms, energy_mj) of its graph in ``scope`` (``task``'s): by name when the
    server knows the space, else the ONNX of the arch (built here; without torch but for the
    detector scope)."""

    def cost(arch: Arch) -> tuple[float, float]:
        if name is not None:
            est = client.estimate_arch(
                name, arch, num_classes=num_classes, activation=activation, scope=scope,
                task=task,
            )  # fmt: skip
        else:
            # onnx (~0.4 s to import) only for a custom space: a shipped one is costed by name.
            from gen5nas.estimator.arch_graph import arch_onnx

            est = client.estimate(
                arch_onnx(
                    space, arch, num_classes=num_classes, activation=activation, scope=scope,
                    task=task,
                )
            )  # fmt: skip
        if est.latency_ms is None or est.energy_mj is None:
            raise Gen5NasError(f"the estimator answered without latency/energy: {est}")
        return float(est.latency_ms), float(est.energy_mj)

    return cost


def supernet_cost_fn(client: EstimatorClient, supernet: SupernetInfo, scope: str) -> CostFn:
    """The cost in ``scope`` of the archs of ``supernet`` (its space, classes, activation)."""
    return make_cost_fn(
        client,
        supernet.space,
        supernet.space_name,
        supernet.num_classes,
        supernet.activation,
        scope,
        supernet.task,
    )


def check_estimator(
    spec: NASSearchSpec, servers: Servers, supernet: SupernetInfo, scope: str
) -> None:
    """Cost the smallest subnet once through a client of its own (closed again)."""
    client = make_client(spec, server_list(servers))
    try:
        cost_fn = supernet_cost_fn(client, supernet, scope)
        probe_estimator(cost_fn, supernet.space, server_list(servers))
    finally:
        client.close()


def probe_estimator(cost_fn: CostFn, space: SearchSpace, servers: list[dict[str, Any]]) -> None:
    """One request before any trial: an unreachable or misconfigured estimator is reported
    now, and the study is left untouched."""
    where = ", ".join(f"{s['host']}:{p}" for s in servers for p in s["ports"])
    try:
        cost_fn(space.min())
    except EstimatorUnavailable as exc:
        raise Gen5NasError(
            f"estimator.servers: no estimator answers at {where}: {exc}. Start one "
            "(`gen5nas estimator serve --port ...`) or leave estimator.servers empty to start "
            "one in-process"
        ) from None
    except EstimatorRequestError as exc:
        raise Gen5NasError(
            f"estimator (at {where}) refused the request: {exc}; check "
            "estimator.profile and estimator.hwConfig"
        ) from None
