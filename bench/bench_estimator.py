"""Benchmark of the PPA estimator, measured side by side in one run.

1. Analytical estimates/s in one server process, for random subnets of the default space:
   cold (first sight of a model: parse + shape inference + counting + costing) and warm (graph
   analysis cached, a new hw_config each time, as a hardware sweep or another profile does).
2. Latency p50/p99 of one estimate through gRPC (loopback) versus the same call in-process, and
   their ratio (what the service boundary costs).
3. Arch requests on a cold server (each arch new to it), side by side: the former path (a
   random static subnet built with torch and traced by ``torch.onnx.export``, then analysed)
   against ``gen5nas.estimator.arch_graph`` (the same graph written with onnx.helper), as the
   engine now does; per arch, with and without the per-layer breakdown.
4. Fidelity of the analytical cpu-ort profile against onnxruntime measurements, before and after
   calibration: held-out subnets, and torchvision networks exported locally (no weights).

Usage: .venv/bin/python bench/bench_estimator.py [--subnets 24] [--requests 300] [--arch-cold 12]
       [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from gen5nas.spec import Arch


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def build_subnets(n: int, seed: int) -> list[tuple[str, bytes, Arch]]:
    from gen5nas.spec import load_space
    from gen5nas.supernet import arch_onnx_bytes

    space = load_space("mobilenetv2_sample1")
    rng = random.Random(seed)
    out: list[tuple[str, bytes, Arch]] = []
    seen: set[str] = set()
    while len(out) < n:
        arch = space.sample(rng)
        if arch.key() not in seen:
            seen.add(arch.key())
            out.append((arch.summary(), arch_onnx_bytes(space, arch), arch))
    return out


def torchvision_models(names: list[str]) -> list[tuple[str, bytes]]:
    import torchvision

    from gen5nas.supernet.onnx_export import onnx_bytes

    out = []
    for name in names:
        model = getattr(torchvision.models, name)(weights=None).eval()
        out.append((name, onnx_bytes(model, (1, 3, 224, 224), opset=17)))
    return out


def bench_throughput(models: list[tuple[str, bytes, Arch]], requests: int) -> dict:
    import grpc

    from gen5nas.estimator._proto import estimator_pb2 as pb
    from gen5nas.estimator._proto import estimator_pb2_grpc as pb_grpc
    from gen5nas.estimator.engine import EstimatorEngine
    from gen5nas.estimator.server import start_server

    res: dict = {}
    datas = [m[1] for m in models]
    arch_yamls = [m[2].to_yaml() for m in models]
    # -- in-process --------------------------------------------------------------------------
    engine = EstimatorEngine()
    t0 = time.perf_counter()
    for d in datas:
        engine.estimate(d, with_layers=False)
    res["inproc_cold_per_s"] = len(datas) / (time.perf_counter() - t0)
    inproc: list[float] = []
    for i in range(requests):
        t = time.perf_counter()
        engine.estimate(datas[i % len(datas)], hw_config={"clock_ghz": 1 + i * 1e-6},
                        with_layers=False)  # fmt: skip
        inproc.append((time.perf_counter() - t) * 1e3)
    res["inproc_warm_per_s"] = 1e3 / statistics.mean(inproc)
    res["inproc_p50_ms"], res["inproc_p99_ms"] = pct(inproc, 50), pct(inproc, 99)
    inproc_layers = []
    for i in range(min(requests, 100)):
        t = time.perf_counter()
        engine.estimate(datas[i % len(datas)], hw_config={"clock_ghz": 2 + i * 1e-6})
        inproc_layers.append((time.perf_counter() - t) * 1e3)
    res["inproc_layers_p50_ms"] = pct(inproc_layers, 50)

    # -- through gRPC (a fresh server: cold means cold) ------------------------------------------
    server = start_server(0, max_workers=8)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.ports[0]}",
                                    options=[("grpc.max_send_message_length", 2**28)])  # fmt: skip
    stub = pb_grpc.EstimatorStub(channel)

    def call(i: int, clock: float, layers: bool = False) -> float:
        req = pb.EstimateRequest(onnx=datas[i % len(datas)], hw_config={"clock_ghz": clock},
                                 omit_layers=not layers)  # fmt: skip
        t = time.perf_counter()
        stub.Estimate(req, timeout=60)
        return (time.perf_counter() - t) * 1e3

    t0 = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: call(i, 1.0), range(len(datas))))
    res["grpc_cold_per_s_4clients"] = len(datas) / (time.perf_counter() - t0)
    rpc = [call(i, 1 + i * 1e-6) for i in range(requests)]
    res["grpc_p50_ms"], res["grpc_p99_ms"] = pct(rpc, 50), pct(rpc, 99)
    res["grpc_layers_p50_ms"] = pct([call(i, 2 + i * 1e-6, True) for i in range(100)], 50)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: call(i, 3 + i * 1e-6), range(requests)))
    res["grpc_warm_per_s_4clients"] = requests / (time.perf_counter() - t0)

    # -- the search's path: an arch (YAML) instead of ONNX bytes; the server builds/caches ------
    def call_arch(i: int, clock: float) -> float:
        req = pb.EstimateRequest(
            arch=pb.ArchRef(space="mobilenetv2_sample1", arch_yaml=arch_yamls[i % len(datas)]),
            hw_config={"clock_ghz": clock}, omit_layers=True,
        )  # fmt: skip
        t = time.perf_counter()
        stub.Estimate(req, timeout=120)
        return (time.perf_counter() - t) * 1e3

    t0 = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: call_arch(i, 1.0), range(len(datas))))
    res["grpc_arch_cold_per_s_4clients"] = len(datas) / (time.perf_counter() - t0)
    arch_rpc = [call_arch(i, 1 + i * 1e-6) for i in range(requests)]
    res["grpc_arch_p50_ms"], res["grpc_arch_p99_ms"] = pct(arch_rpc, 50), pct(arch_rpc, 99)
    arch_in = []
    for i in range(requests):
        t = time.perf_counter()
        server.servicer.engine.estimate(
            arch=("mobilenetv2_sample1", arch_yamls[i % len(datas)], 0),
            hw_config={"clock_ghz": 5 + i * 1e-6}, with_layers=False,
        )  # fmt: skip
        arch_in.append((time.perf_counter() - t) * 1e3)
    res["inproc_arch_p50_ms"], res["inproc_arch_p99_ms"] = pct(arch_in, 50), pct(arch_in, 99)
    res["overhead_ratio_arch_p50"] = res["grpc_arch_p50_ms"] / res["inproc_arch_p50_ms"]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: call_arch(i, 7 + i * 1e-6), range(requests)))
    res["grpc_arch_warm_per_s_4clients"] = requests / (time.perf_counter() - t0)
    res["overhead_ratio_p50"] = res["grpc_p50_ms"] / res["inproc_p50_ms"]
    res["overhead_ratio_p99"] = res["grpc_p99_ms"] / res["inproc_p99_ms"]
    res["overhead_ratio_layers_p50"] = res["grpc_layers_p50_ms"] / res["inproc_layers_p50_ms"]
    channel.close()
    server.stop(grace=1)
    return res


def bench_arch_cold(n: int, seed: int) -> dict:
    """Estimates/s for archs never seen before, old path vs new, interleaved arch by arch so
    that load from other processes hits both alike; the equality of the answers is checked."""
    from gen5nas.estimator import analytical
    from gen5nas.estimator.arch_graph import arch_onnx
    from gen5nas.estimator.engine import EstimatorEngine
    from gen5nas.estimator.onnx_graph import analyze
    from gen5nas.spec import load_space
    from gen5nas.supernet import arch_onnx_bytes

    name = "mobilenetv2_sample1"
    space = load_space(name)
    rng = random.Random(seed + 1000)  # other archs than the throughput section's
    archs = [space.sample(rng) for _ in range(n)]
    arch_onnx_bytes(space, space.min())  # builds the random supernet once, as a server does
    engine = EstimatorEngine()  # a fresh one: every arch is cold to it
    hw = engine.registry.get("")
    times: dict[str, list[float]] = {"torch": [], "arch_graph": [], "arch_graph_layers": [],
                                     "arch_graph_zero_weights": []}  # fmt: skip
    worst = 0.0
    for arch in archs:
        t = time.perf_counter()
        old = analytical.estimate(analyze(arch_onnx_bytes(space, arch)), hw, with_layers=False)
        times["torch"].append(time.perf_counter() - t)
        t = time.perf_counter()
        new = engine.estimate(arch=(name, arch.to_yaml(), 0), with_layers=False)
        times["arch_graph"].append(time.perf_counter() - t)
        t = time.perf_counter()
        EstimatorEngine().estimate(arch=(name, arch.to_yaml(), 0), with_layers=True)
        times["arch_graph_layers"].append(time.perf_counter() - t)
        t = time.perf_counter()  # the zero-weight bytes (the measured backend's input)
        analytical.estimate(analyze(arch_onnx(space, arch)), hw, with_layers=False)
        times["arch_graph_zero_weights"].append(time.perf_counter() - t)
        assert old.latency_ms and new.latency_ms
        worst = max(worst, abs(new.latency_ms / old.latency_ms - 1))
    res = {f"{k}_per_s": len(v) / sum(v) for k, v in times.items()}
    res |= {f"{k}_p50_ms": statistics.median(v) * 1e3 for k, v in times.items()}
    res["speedup_arch_graph_vs_torch"] = res["arch_graph_per_s"] / res["torch_per_s"]
    # Fresh-init torch weights de-duplicate equal initializers (Identity nodes): a small bias.
    res["max_rel_latency_diff_vs_fresh_init_torch"] = worst
    return res


def bench_fidelity(subnets, extra, held_fraction: float, seed: int) -> dict:
    from gen5nas.estimator.calibrate import calibrate, measure
    from gen5nas.estimator.engine import EstimatorEngine
    from gen5nas.estimator.fidelity import fidelity

    engine = EstimatorEngine()
    subnets = [(m[0], m[1]) for m in subnets]
    samples = measure(subnets, engine, "cpu-ort")
    repeat = measure(subnets, engine, "cpu-ort")  # the noise floor: the same models again
    noise = fidelity([s.measured_ms for s in repeat], [s.measured_ms for s in samples])
    extra_samples = measure(extra, engine, "cpu-ort") if extra else []
    rng = random.Random(seed)
    order = list(range(len(samples)))
    rng.shuffle(order)
    n_held = round(len(samples) * held_fraction)
    held = [samples[i] for i in order[:n_held]]
    train = [samples[i] for i in order[n_held:]]
    report = calibrate(engine.registry.get("cpu-ort"), train, held)
    p = report.after.params
    out: dict[str, Any] = {
        "fitted": report.fitted,
        "notes": report.notes,
        "fitted_values": {k: p[k] for k in [*report.fitted, "mac_units", "dram_bandwidth_gbs"]},
        "measurement_repeatability": noise.as_dict(),
        "train_before": report.train[0].as_dict(),
        "train_after": report.train[1].as_dict(),
    }
    assert report.held_out is not None
    out["heldout_subnets_before"] = report.held_out[0].as_dict()
    out["heldout_subnets_after"] = report.held_out[1].as_dict()
    from gen5nas.estimator.calibrate import predict

    if extra_samples:
        meas = [s.measured_ms for s in extra_samples]
        out["torchvision_before"] = fidelity(predict(report.before, extra_samples), meas).as_dict()
        out["torchvision_after"] = fidelity(predict(report.after, extra_samples), meas).as_dict()
        out["torchvision_rows"] = [
            (s.name, s.measured_ms, b, a)
            for s, b, a in zip(
                extra_samples,
                predict(report.before, extra_samples),
                predict(report.after, extra_samples),
                strict=True,
            )
        ]
    out["table"] = report.table()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--subnets", type=int, default=24)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--held-out", type=float, default=0.33)
    ap.add_argument("--arch-cold", type=int, default=12, help="new archs, old vs new path")
    ap.add_argument("--torchvision", nargs="*",
                    default=["resnet18", "mobilenet_v3_small", "mobilenet_v2"])  # fmt: skip
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    t0 = time.perf_counter()
    subnets = build_subnets(args.subnets, args.seed)
    print(
        f"built {len(subnets)} subnets of mobilenetv2_sample1 in {time.perf_counter() - t0:.1f} s"
    )
    thr = bench_throughput(subnets, args.requests)
    print("\n== throughput and latency (analytical backend, rcar-gen5-npu, omit_layers) ==")
    for k, v in thr.items():
        print(f"  {k:28s} {v:10.3f}")
    if args.arch_cold:
        cold = bench_arch_cold(args.arch_cold, args.seed)
        print(f"\n== arch requests, cold ({args.arch_cold} new archs of mobilenetv2_sample1, "
              "in-process, rcar-gen5-npu): torch export vs arch_graph ==")  # fmt: skip
        for k, v in cold.items():
            print(f"  {k:42s} {v:10.4g}")
        thr["arch_cold"] = cold
    extra = torchvision_models(args.torchvision) if args.torchvision else []
    fid = bench_fidelity(subnets, extra, args.held_out, args.seed)
    print("\n== fidelity: analytical cpu-ort vs onnxruntime on this CPU (1 thread) ==")
    print(f"  fitted: {', '.join(fid['fitted'])}")
    print("  " + "  ".join(f"{k}={v:.4g}" for k, v in fid["fitted_values"].items()))
    for note in fid["notes"]:
        print(f"  note: {note}")
    print(fid["table"])
    rows = [("measurement repeatability", "measurement_repeatability")]
    rows += [
        ("torchvision, before", "torchvision_before"),
        ("torchvision, after", "torchvision_after"),
    ]
    for label, key in rows:
        if key in fid:
            f = fid[key]
            print(f"{label:32s} {f['n']:4d} {f['mape']:8.1f} {f['within_10pct'] * 100:8.0f}% "
                  f"{f['kendall_tau']:6.3f} {f['spearman_rho']:6.3f}")  # fmt: skip
    for name, meas, before, after in fid.get("torchvision_rows", []):
        print(f"  {name:20s} measured {meas:8.3f} ms  before {before:8.3f}  after {after:8.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"throughput": thr, "fidelity": fid}, f, indent=1, default=str)


if __name__ == "__main__":
    main()
