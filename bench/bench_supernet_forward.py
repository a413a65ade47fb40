"""Supernet set to arch A versus the extracted static subnet A: eval-mode forward time.

Measured side by side in one run, interleaved (supernet, static, supernet, ...) after a warm-up,
median of the repeats, on the default space at each arch's own resolution (no resize), for the
max, the min, and the arch of median MACs among 50 random samples.

    .venv/bin/python bench/bench_supernet_forward.py [--batch 8] [--repeats 15] [--threads 2]
        [--clock wall|cpu]

On a machine shared with other jobs, wall time swings by 2x or more; ``--threads 1 --clock cpu``
gives steady figures. glibc's malloc returns the large activation buffers to the OS after each
layer and page-faults them back in (up to half of a batch-8 forward on CPU); its variance hides
small differences: ``MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=17179869184
MALLOC_TOP_PAD_=1073741824`` (or jemalloc) removes it for both sides alike.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch
from torch import nn

from gen5nas.spec import Arch, load_space
from gen5nas.supernet import Supernet, count_macs, extract_subnet

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def _time_once(model: nn.Module, x: torch.Tensor, clock: str) -> float:
    now = CLOCKS[clock]
    start = now()
    model(x)
    return now() - start


def _median_macs_arch(net: Supernet, samples: int, seed: int) -> Arch:
    rng = random.Random(seed)
    scored = []
    for _ in range(samples):
        arch = net.space.sample(rng)
        net.set_active(arch)
        scored.append((count_macs(net, (1, 3, *arch.resolution)), arch.key(), arch))
    scored.sort(key=lambda t: (t[0], t[1]))
    return scored[len(scored) // 2][2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="mobilenetv2_sample1")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="cpu: this process's CPU time, steadier than wall time on a machine shared with "
        "other jobs (use it with --threads 1: idle worker threads spin and count as CPU time)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    space = load_space(args.space)
    net = Supernet(space, num_classes=1000).eval()
    archs = {
        "max": space.max(),
        "median": _median_macs_arch(net, samples=50, seed=0),
        "min": space.min(),
    }
    print(
        f"space {args.space}, batch {args.batch}, {args.threads} threads, "
        f"{args.clock} clock, eval + no_grad, median of {args.repeats} interleaved runs; "
        "ratio = median of paired supernet/static"
    )
    header = f"{'arch':7} {'resolution':>10} {'MMACs':>7} {'supernet ms':>12} {'static ms':>10} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    with torch.no_grad():
        for name, arch in archs.items():
            net.set_active(arch)
            static = extract_subnet(net, arch).eval()
            x = torch.randn(args.batch, 3, *arch.resolution)
            for _ in range(args.warmup):
                net(x)
                static(x)
            sup_t, sta_t = [], []
            for i in range(args.repeats):
                # Alternate which goes first, so neither always follows the other's cache state.
                if i % 2:
                    sta_t.append(_time_once(static, x, args.clock))
                    sup_t.append(_time_once(net, x, args.clock))
                else:
                    sup_t.append(_time_once(net, x, args.clock))
                    sta_t.append(_time_once(static, x, args.clock))
            sup, sta = statistics.median(sup_t) * 1e3, statistics.median(sta_t) * 1e3
            # Ratio of adjacent pairs: robust to other load on the machine drifting over the run.
            ratio = statistics.median(a / b for a, b in zip(sup_t, sta_t, strict=True))
            macs = count_macs(static, (1, 3, *arch.resolution)) / 1e6
            res = f"{arch.resolution[0]}x{arch.resolution[1]}"
            print(f"{name:7} {res:>10} {macs:7.1f} {sup:12.2f} {sta:10.2f} {ratio:6.3f}")


if __name__ == "__main__":
    main()
