"""Parameter and multiply-accumulate counts (conv and linear layers, via forward hooks)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from gen5nas.supernet.ops import DynamicConv2d, DynamicLinear


def count_params(model: nn.Module) -> int:
    """Number of parameters (for a :class:`Supernet`: all of them; see ``num_active_params``)."""
    return sum(p.numel() for p in model.parameters())


def _conv_macs(output: Tensor, in_channels: int, groups: int, kh: int, kw: int) -> int:
    # Each output element: (in_channels / groups) * kh * kw multiply-accumulates.
    return output[0].numel() * (in_channels // groups) * kh * kw


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """MACs of one forward pass of a single sample (the batch dimension of ``input_shape`` is
    ignored) through conv and linear layers, static or elastic (for a supernet: the active
    subnet's). Runs the model once in eval mode on zeros; its train/eval mode is restored."""
    total = 0

    def hook(module: nn.Module, inputs: tuple[Any, ...], output: Tensor) -> None:
        nonlocal total
        x = inputs[0]
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total += _conv_macs(output, module.in_channels, module.groups, kh, kw)
        elif isinstance(module, DynamicConv2d):
            groups = x.shape[1] if module.depthwise else 1
            k = module.active_kernel
            total += _conv_macs(output, x.shape[1], groups, k, k)
        elif isinstance(module, nn.Linear | DynamicLinear):
            total += output[0].numel() * x.shape[-1]

    # The static layers inside an elastic op are never called, so nothing is counted twice.
    kinds = (nn.Conv2d, nn.Linear, DynamicConv2d, DynamicLinear)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    was_training = model.training
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape[1:], device=device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return total
