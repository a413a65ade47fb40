"""The PPA estimator: a gRPC service (``gen5nas.ppa.v1``) that turns an ONNX model (or an arch of
a named search space) and a hardware profile into latency, energy and a per-layer breakdown.

Backends: ``analytical`` (a roofline accelerator model with named profiles, calibratable) and
``onnxruntime`` (measured on the server's CPU). Heavy imports stay in the submodules:
``server.start_server``, ``client.EstimatorClient``, ``engine.EstimatorEngine``.

Where each concern lives:

- serving: ``server`` (gRPC server, health), ``service`` (requests to answers), ``engine``
  (backends, caches), ``errors`` (request errors, deadlines), ``result`` (``Estimate``);
- ONNX analysis: ``onnx_graph`` (``analyze``: the walk), ``onnx_checks`` (parse, schema and
  wiring checks, request limits), ``shape_infer`` (shape inference, shapes past unknown ops),
  ``op_kinds`` (cost classes and per-op tables), ``node_count`` (per-node MACs, vector ops,
  tensors; fusion tags), ``graph_work`` (the counted work), ``arch_graph`` (an arch's graph);
- costing: ``analytical`` (roofline model), ``profiles`` (hardware profiles), ``calibrate``,
  ``measured`` (onnxruntime backend), ``fidelity``, ``synthetic`` (test models);
- client: ``client`` (``EstimatorClient``: retries, cache), ``endpoints`` (servers setting to
  gRPC targets, retryable failures), ``estimate_proto`` (a response read back);
- ``cli``: the ``gen5nas estimator`` commands.
"""

from gen5nas.estimator.errors import EstimatorRequestError, EstimatorUnavailable
from gen5nas.estimator.result import Estimate, LayerEstimate

__all__ = [
    "Estimate",
    "EstimatorClient",
    "EstimatorRequestError",
    "EstimatorUnavailable",
    "LayerEstimate",
    "start_server",
]


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    # Lazy: importing the package (e.g. for the CLI's --help) must not pull in grpc/onnx.
    if name == "EstimatorClient":
        from gen5nas.estimator.client import EstimatorClient

        return EstimatorClient
    if name == "start_server":
        from gen5nas.estimator.server import start_server

        return start_server
    raise AttributeError(name)
