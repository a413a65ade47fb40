"""``gen5nas estimator serve|estimate|profiles|calibrate`` (heavy imports inside handlers)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gen5nas.errors import Gen5NasError, SpecError

if TYPE_CHECKING:
    from gen5nas.estimator.calibrate import Sample
    from gen5nas.estimator.engine import EstimatorEngine

log = logging.getLogger("gen5nas.estimator")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "estimator",
        help="the PPA estimator: serve it over gRPC, query it, calibrate a profile",
        description="Latency/energy estimator for ONNX models (gRPC service gen5nas.ppa.v1).",
    )
    sub = p.add_subparsers(dest="estimator_cmd", metavar="CMD")

    s = sub.add_parser("serve", help="run the gRPC server on one or more ports")
    s.add_argument("--port", type=int, nargs="+", default=[50051], help="ports (0 = any free)")
    s.add_argument("--host", default="0.0.0.0", help="address to bind (default: all)")
    s.add_argument("--profiles", action="append", default=[], metavar="DIR",
                   help="extra directory of profile YAML files (repeatable)")  # fmt: skip
    s.add_argument("--max-workers", type=int, default=8, help="request threads")
    s.add_argument("--max-concurrent", type=int, default=None,
                   help="requests in progress at most (more get RESOURCE_EXHAUSTED)")  # fmt: skip
    s.add_argument("--max-model-mb", type=float, default=256, help="largest model accepted")
    s.add_argument("--grace", type=float, default=10.0, help="drain time on shutdown, s")
    s.add_argument("--drain-delay", type=float, default=0.0,
                   help="seconds NOT_SERVING before draining (let probes notice)")  # fmt: skip
    s.add_argument("--max-request-s", type=float, default=600.0,
                   help="longest a request may take when its client sets no shorter deadline")  # fmt: skip
    s.add_argument("--measure-memory-mb", type=int, default=8192,
                   help="memory of the onnxruntime worker process (a model needing more fails)")  # fmt: skip
    s.add_argument("--metrics-port", type=int, default=None,
                   help="serve Prometheus /metrics on this port (0 = any free; default: off)")  # fmt: skip
    s.set_defaults(func=_serve)

    e = sub.add_parser("estimate", help="estimate one model (in-process, or via --server)")
    e.add_argument("model", nargs="?", help="an ONNX file")
    e.add_argument("--arch", help="an arch YAML (fix_subnets/trial_N.yaml) instead of a model")
    e.add_argument("--space", default="mobilenetv2_sample1", help="search space of --arch")
    e.add_argument("--profile", default="", help="hardware profile (default: rcar-gen5-npu)")
    e.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="hw_config override, e.g. --set clock_ghz=1.2 (repeatable)")  # fmt: skip
    e.add_argument("--backend", default="", help="analytical | onnxruntime")
    e.add_argument("--input-shape", action="append", default=[], metavar="NAME=D0,D1,...")
    e.add_argument("--server", help="host:port of a server (default: in-process)")
    e.add_argument("--profiles", action="append", default=[], metavar="DIR")
    e.add_argument("--layers", type=int, default=10, help="print the N costliest layers")
    e.add_argument("--json", action="store_true", help="print the whole answer as JSON")
    e.set_defaults(func=_estimate)

    ls = sub.add_parser("profiles", help="list hardware profiles and their parameters")
    ls.add_argument("--profiles", action="append", default=[], metavar="DIR")
    ls.add_argument("--server", help="ask a server instead")
    ls.set_defaults(func=_profiles)

    c = sub.add_parser(
        "calibrate",
        help="fit a profile's efficiencies/overheads to measured latencies; print fidelity",
    )
    c.add_argument("--profile", default="cpu-ort", help="the analytical profile to calibrate")
    c.add_argument("--measure-profile", default="cpu-ort",
                   help="profile whose onnxruntime backend measures the models")  # fmt: skip
    c.add_argument("--space", default="mobilenetv2_sample1",
                   help="random subnets of this space are the models")  # fmt: skip
    c.add_argument("--models", type=int, default=16, help="random subnets to use (0 = none)")
    c.add_argument("--synthetic", type=int, default=0,
                   help="add N small synthetic convnets (no torch needed)")  # fmt: skip
    c.add_argument("--onnx", nargs="*", default=[], help="more ONNX files to use")
    c.add_argument("--held-out-onnx", nargs="*", default=[],
                   help="ONNX files used only to test (with --measurements: CSV rows to hold "
                   "out)")  # fmt: skip
    c.add_argument("--measurements", help="CSV of model,latency_ms measured elsewhere (e.g. on "
                   "the target board); model = path to its ONNX file. Replaces measuring here.")  # fmt: skip
    c.add_argument("--held-out", type=float, default=0.3, help="fraction of models held out")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--profiles", action="append", default=[], metavar="DIR")
    c.add_argument("--out", help="calibrated profile file (default: ./<profile>-calibrated.yaml)")
    c.add_argument("--name", help="name of the calibrated profile (default: the same name)")
    c.add_argument("--keep-peaks", action="store_true",
                   help="never raise mac_units/vector_ops_per_cycle/dram_bandwidth_gbs (datasheet "
                   "figures): efficiencies stop at 1 instead")  # fmt: skip
    c.set_defaults(func=_calibrate)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _parse_overrides(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise SpecError(f"expected KEY=NUMBER, got {item!r}", "--set")
    return out


def _parse_shapes(items: list[str]) -> dict[str, list[int]]:
    out = {}
    for item in items:
        name, sep, dims = item.partition("=")
        try:
            out[name] = [int(d) for d in dims.split(",")]
        except ValueError:
            sep = ""
        if not sep:
            raise SpecError(f"expected NAME=D0,D1,..., got {item!r}", "--input-shape")
    return out


def _serve(args: argparse.Namespace) -> int:
    import signal
    import threading

    from gen5nas.estimator.server import start_server

    for flag, value, zero_ok in (("--max-request-s", args.max_request_s, False),
                                 ("--grace", args.grace, True),  # 0: stop at once
                                 ("--measure-memory-mb", args.measure_memory_mb, False)):  # fmt: skip
        if not (value >= 0 if zero_ok else value > 0) or value == float("inf"):
            bound = "0 or more" if zero_ok else "more than 0"
            raise SpecError(f"must be a finite number {bound}, got {value}", flag)
    server = start_server(
        args.port,
        args.profiles,
        host=args.host,
        max_workers=args.max_workers,
        max_concurrent_rpcs=args.max_concurrent,
        max_model_mb=args.max_model_mb,
        max_request_s=args.max_request_s,
        measure_memory_mb=args.measure_memory_mb,
        metrics_port=args.metrics_port,
    )
    # One line a wrapper can parse for the ports (0 asks for a free one).
    print(
        f"estimator listening on {' '.join(f'{args.host}:{p}' for p in server.ports)}", flush=True
    )
    if server.metrics is not None and server.metrics.endpoint is not None:
        print(f"estimator metrics on {server.metrics.endpoint.url}", flush=True)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        if stop.is_set():  # a second signal: no more draining
            log.warning("signal %d again: exiting now", signum)
            os._exit(0)
        log.info("signal %d: NOT_SERVING, draining for up to %.0f s", signum, args.grace)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stop.wait()
    server.stop(args.grace, drain_delay=args.drain_delay)
    return 0


def _estimate(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    overrides = _parse_overrides(args.set)
    shapes = _parse_shapes(args.input_shape)
    if bool(args.model) == bool(args.arch):
        raise SpecError("give exactly one of MODEL (an .onnx file) or --arch FILE", "model")
    if args.server:
        from gen5nas.estimator.client import EstimatorClient
        from gen5nas.spec import load_arch

        with EstimatorClient(args.server, args.profile, overrides, backend=args.backend) as client:
            if args.arch:
                est = client.estimate_arch(args.space, load_arch(args.arch))
            else:
                est = client.estimate(_read(args.model), shapes)
    else:
        from gen5nas.estimator.engine import EstimatorEngine
        from gen5nas.estimator.profiles import ProfileRegistry

        engine = EstimatorEngine(ProfileRegistry(args.profiles))
        arch = None
        if args.arch:
            arch = (args.space, Path(args.arch).read_text(), 0)
        est = engine.estimate(
            None if arch else _read(args.model),
            arch=arch,
            profile=args.profile,
            hw_config=overrides,
            backend=args.backend,
            input_shapes=shapes,
        )
    if args.json:
        json.dump(asdict(est), sys.stdout, indent=1)
        print()
        return 0
    print(f"profile {est.profile}  backend {est.backend}  ({est.estimator_version})")
    print(f"latency {est.latency_ms:.4f} ms   energy {est.energy_mj:.4f} mJ   "
          f"MACs {est.total_macs / 1e6:.1f} M   bytes {est.total_bytes / 1e6:.2f} MB")  # fmt: skip
    if est.unsupported_ops:
        print(f"costed by bytes only (unknown ops): {', '.join(est.unsupported_ops)}")
    for note in est.notes:
        print(f"note: {note}")
    top = sorted(est.layers, key=lambda x: -x.latency_ms)[: args.layers]
    if top:
        print(f"{'layer':40s} {'op':14s} {'MACs':>10s} {'bytes':>10s} {'bound':>8s} {'ms':>9s}")
        for x in top:
            print(f"{x.name[-40:]:40s} {x.op_type:14s} {x.macs:10d} "
                  f"{x.bytes_read + x.bytes_written:10d} {x.bound:>8s} {x.latency_ms:9.4f}")  # fmt: skip
    return 0


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise Gen5NasError(f"cannot read model {path}: {exc.strerror}") from None


def _profiles(args: argparse.Namespace) -> int:
    if args.server:
        from gen5nas.estimator.client import EstimatorClient

        with EstimatorClient(args.server, "") as client:
            resp = client.list_hardware()
        for p in resp.profiles:
            print(f"{p.name}  (default backend {p.default_backend}; {', '.join(p.backends)})")
            for k in sorted(p.parameters):
                print(f"  {k:24s} {p.parameters[k]:<12g} {p.sources.get(k, '')[:70]}")
        return 0
    from gen5nas.estimator.profiles import ProfileRegistry

    for prof in ProfileRegistry(args.profiles).all():
        print(f"{prof.name}  (default backend {prof.default_backend}; "
              f"{', '.join(prof.backends)})  {prof.path}")  # fmt: skip
        for k, v in prof.params.items():
            print(f"  {k:24s} {v:<12g} {prof.sources.get(k, '')[:70]}")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    import random

    from gen5nas.estimator.calibrate import calibrate, measure
    from gen5nas.estimator.engine import EstimatorEngine
    from gen5nas.estimator.profiles import ProfileRegistry, save_profile

    engine = EstimatorEngine(ProfileRegistry(args.profiles))
    profile = engine.registry.get(args.profile)
    if args.measurements:
        samples, held_samples = _measured_samples(args, engine)
    else:
        models = calibration_models(args.space, args.models, args.synthetic, args.seed)
        models += [(Path(f).name, _read(f)) for f in args.onnx]
        if len(models) < 2:
            raise SpecError(
                "need at least 2 models: raise --models/--synthetic or add --onnx", "--models"
            )
        held_only = [(Path(f).name, _read(f)) for f in args.held_out_onnx]
        samples = measure(models, engine, args.measure_profile, progress=log.info)
        held_samples = measure(held_only, engine, args.measure_profile, progress=log.info)
    rng = random.Random(args.seed)
    rng.shuffle(samples)
    n_held = min(len(samples) - 1, round(len(samples) * args.held_out))
    held = samples[:n_held] + held_samples
    train = samples[n_held:]
    report = calibrate(profile, train, held, name=args.name, keep_peaks=args.keep_peaks)
    out = Path(args.out or f"{report.after.name}-calibrated.yaml")
    save_profile(
        report.after,
        out,
        header=f"Calibrated by `gen5nas estimator calibrate` from profile {profile.name}.\n"
        + report.table(),
    )
    print(f"calibrated {profile.name}: fitted {', '.join(report.fitted)}")
    for note in report.notes:
        print(f"note: {note}")
    print(report.table())
    print(f"wrote {out}  (serve it with: gen5nas estimator serve --profiles {out.parent})")
    return 0


def _measured_samples(
    args: argparse.Namespace, engine: EstimatorEngine
) -> tuple[list[Sample], list[Sample]]:
    """(train-or-held-out samples, held-out-only samples) from the --measurements CSV: its rows
    naming a --held-out-onnx file are held out (their latencies were measured elsewhere, like
    the rest: measuring them here would compare two machines)."""
    import csv

    from gen5nas.estimator.calibrate import Sample

    if args.onnx:
        raise SpecError(
            "--onnx adds models measured on this machine, which --measurements replaces; "
            "add them as rows of the CSV instead",
            "--onnx",
        )
    held_paths = {Path(f).resolve(): f for f in args.held_out_onnx}
    samples: list[Sample] = []
    held: list[Sample] = []
    with open(args.measurements, newline="") as f:
        for row in csv.DictReader(f):
            if "model" not in row or "latency_ms" not in row:
                raise SpecError("needs columns model,latency_ms", "--measurements")
            data = _read(row["model"])
            sample = Sample(row["model"], engine.analyze(data), float(row["latency_ms"]))
            is_held = held_paths.pop(Path(row["model"]).resolve(), None) is not None
            (held if is_held else samples).append(sample)
    if held_paths:
        raise SpecError(
            f"{sorted(held_paths.values())} have no row in {args.measurements}: with "
            f"--measurements, a held-out model needs its measured latency in the CSV too",
            "--held-out-onnx",
        )
    if len(samples) < 2:
        raise SpecError(
            f"{args.measurements} has {len(samples)} rows to fit on (held-out ones aside); "
            f"need at least 2",
            "--measurements",
        )
    return samples, held


def calibration_models(
    space_name: str, n_subnets: int, n_synthetic: int, seed: int
) -> list[tuple[str, bytes]]:
    """Random subnets of a search space (zero-weight graphs: onnxruntime's timing does not
    depend on the values) plus synthetic convnets."""
    import random

    from gen5nas.estimator.arch_graph import arch_onnx
    from gen5nas.estimator.synthetic import random_convnets

    models: list[tuple[str, bytes]] = []
    if n_subnets:
        from gen5nas.spec import load_space

        space = load_space(space_name)
        rng = random.Random(seed)
        seen = set()
        while len(models) < n_subnets:
            arch = space.sample(rng)
            if arch.key() in seen:
                continue
            seen.add(arch.key())
            models.append((arch.summary(), arch_onnx(space, arch)))
            log.info("built subnet %d/%d: %s", len(models), n_subnets, arch.summary())
    for i, data in enumerate(random_convnets(n_synthetic, seed=seed)):
        models.append((f"synthetic-{i}", data))
    return models
