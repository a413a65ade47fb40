"""The cost of weight sharing in one BigNAS training iteration.

Side by side, in one run, on the same batch and the same four archs (max, min, 2 random):

- sandwich: one SandwichStep over the supernet (4 forward/backward passes through the elastic
  layers, in-place distillation, gradients accumulated) + one optimizer step;
- static: the same four subnets extracted as plain static networks, each trained one step
  (forward/backward with the same losses, the max's soft output as the others' target, and its
  own optimizer step).

Prints the ratio sandwich / sum(static) (aim <= 1.10) and the images/s of supernet training.
Rounds alternate between the two so that machine noise hits both alike; medians are reported.

    python bench/bench_train_sandwich.py                       # CPU, tiny space
    python bench/bench_train_sandwich.py --space mobilenetv2_sample1 --resolution-cap 160 \
        --device cuda --batch 128 --bf16 --channels-last      # a GPU
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch
import torch.nn.functional as F

from gen5nas.data import Batch
from gen5nas.spec import SearchSpace, load_space
from gen5nas.supernet import Supernet, extract_subnet
from gen5nas.tasks.classification import distillation_loss
from gen5nas.train.sandwich import SandwichStep, StepContext


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="mobilenetv2_tiny")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--resolution-cap",
        type=int,
        default=None,
        metavar="PX",
        help="clamp the space's input resolutions to at most PX in height and width "
        "(a smaller batch footprint on a GPU)",
    )
    args = parser.parse_args()
    if args.resolution_cap is not None and args.resolution_cap < 1:
        parser.error(f"--resolution-cap must be >= 1 pixel, got {args.resolution_cap}")
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    space = load_space(args.space)
    if args.resolution_cap is not None:
        cap = args.resolution_cap
        capped = sorted({(min(h, cap), min(w, cap)) for h, w in space.input_resizer_cfg})
        data = space.model_dump(mode="json")
        data["input_resizer_cfg"] = [list(r) for r in capped]
        space = SearchSpace.model_validate(data)
    torch.manual_seed(0)
    net = Supernet(space, num_classes=1000 if "sample1" in args.space else 10, dropout=0.0)
    step = SandwichStep(space, num_random=2, seed=0)
    archs = step.archs_for(0, 0)
    statics = [extract_subnet(net, arch).train() for _, arch in archs]
    net.to(device).train()
    statics = [s.to(device) for s in statics]
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt)
    statics = [s.to(memory_format=fmt) for s in statics]
    h, w = space.max_resolution()
    images = torch.randn(args.batch, 3, h, w, device=device).contiguous(memory_format=fmt)
    targets = torch.randint(0, net.num_classes, (args.batch,), device=device)
    batch = Batch(images, targets, 0)
    # Each static subnet is fed its resolution, resized inside the step as the supernet does.
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9, nesterov=True)
    static_opts = [
        torch.optim.SGD(s.parameters(), lr=1e-3, momentum=0.9, nesterov=True) for s in statics
    ]

    def autocast() -> contextlib.AbstractContextManager[None]:
        if args.bf16:
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # Fixed archs: override the sampler so both sides train exactly the same four subnets.
    step.archs_for = lambda epoch, iteration: archs  # type: ignore[method-assign]

    def sandwich_iter() -> None:
        opt.zero_grad(set_to_none=True)
        step(net, batch, StepContext(0, 0, autocast))
        opt.step()

    def static_iter() -> None:
        teacher = None
        for (name, arch), model, sopt in zip(archs, statics, static_opts, strict=True):
            sopt.zero_grad(set_to_none=True)
            with autocast():
                x = images
                if tuple(x.shape[-2:]) != tuple(arch.resolution):
                    x = F.interpolate(x, size=tuple(arch.resolution), mode="bilinear")
                logits = model(x)
                if teacher is None:
                    loss = F.cross_entropy(logits.float(), targets, label_smoothing=0.1)
                else:
                    loss = distillation_loss(logits, teacher)
            loss.backward()
            if name == "max":
                teacher = logits.detach()
            sopt.step()

    def timed(fn) -> float:  # type: ignore[no-untyped-def]
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        return time.perf_counter() - start

    for _ in range(args.warmup):
        sandwich_iter()
        static_iter()
    sandwich_times, static_times = [], []
    for _ in range(args.rounds):
        sandwich_times.append(timed(sandwich_iter))
        static_times.append(timed(static_iter))
    sandwich = statistics.median(sandwich_times)
    static = statistics.median(static_times)
    print(
        f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}"
        f", {torch.get_num_threads()} threads), space {args.space}, batch {args.batch}, "
        f"bf16 {args.bf16}, channels_last {args.channels_last}, "
        f"resolutions {[list(r) for r in space.input_resizer_cfg]}"
    )
    print("archs: " + " | ".join(f"{n} {a.summary()}" for n, a in archs))
    print(f"sandwich iteration (median of {args.rounds}): {sandwich * 1e3:.1f} ms")
    print(f"sum of 4 static subnet steps (median):      {static * 1e3:.1f} ms")
    print(f"ratio sandwich / static: {sandwich / static:.3f}  (aim <= 1.10)")
    print(
        f"supernet training throughput: {args.batch / sandwich:.0f} images/s "
        f"({4 * args.batch / sandwich:.0f} subnet-images/s)"
    )


if __name__ == "__main__":
    main()
