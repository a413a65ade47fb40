"""Elastic (dynamic) layers of the supernet, Once-for-All style.

Each dynamic op wraps the full-size static layer and uses a slice of it. The *input* width is
read from the incoming tensor, so ops compose without bookkeeping; only the *output* width
(and the kernel size) is set from outside, explicitly, by :meth:`Supernet.set_active` from the
arch's plan (:mod:`gen5nas.spec.plan`). There are no class-level flags: every bit of context
lives on the instance or is an argument. The torch module of each activation name is here too.

Each op has ``to_static(...)`` (mmrazor's idea) returning a plain ``nn.Conv2d`` /
``nn.BatchNorm2d`` / ``nn.Linear`` with copied weights, so extracting a subnet is a walk of the
same tree that runs the supernet, not a second model definition that could drift from it.

Elastic kernel: the centre crop of the largest kernel (BigNAS). Once-for-All learns a small
transform matrix per kernel size to map the centre of the large kernel to the small one; BigNAS
showed that plain centre cropping trains as well under sandwich training, needs no extra
parameters, and keeps the extracted subnet's weights a literal sub-tensor of the supernet's.

Elastic channels: the *first* k channels. Importance ordering needs no re-sorting: the sandwich
rule trains the smallest subnet every step, so the leading channels take part in every subnet
and learn the most important features; :func:`l1_channel_order` is available for a one-off
re-ordering (OFA's progressive shrinking sorts by L1 norm) but nothing depends on it.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gen5nas.spec.plan import Activation, check_activation

T = TypeVar("T")


class _SliceCache(Generic[T]):
    """The slices an op uses for its active config, reused while nothing they derive from changes.

    Slicing costs a few microseconds of Python per tensor per call, and a strided weight slice
    such as ``weight[:out, :in, s:e, s:e]`` is copied by the convolution kernel on every call:
    for a small subnet that overhead is a sizeable share of an eval forward. The cache keeps
    the (contiguous) slices, valid while the config is the same and every source tensor is the
    same object, with the same storage pointer and version counter (bumped by every in-place
    change: optimizer steps, ``load_state_dict``, ``copy_``), so a stale slice is never used.
    Callers use it only when autograd is off: a cached tensor is cut from the graph.
    """

    def __init__(self) -> None:
        self.config: object = None
        self.sources: tuple[weakref.ref[Tensor], ...] = ()
        self.stamps: tuple[tuple[int, int], ...] = ()
        self.value: T | None = None

    def get(self, config: object, sources: tuple[Tensor, ...], make: Callable[[], T]) -> T:
        # Tensors made under inference_mode cannot be used where autograd records: refill.
        config = (config, torch.is_inference_mode_enabled())
        stamps = tuple((t._version, t.data_ptr()) for t in sources)
        if (
            self.value is None
            or config != self.config
            or stamps != self.stamps
            or any(ref() is not t for ref, t in zip(self.sources, sources, strict=True))
        ):
            self.value = make()
            self.config = config
            self.sources = tuple(weakref.ref(t) for t in sources)
            self.stamps = stamps
        return self.value

    def __reduce__(self) -> tuple[type[_SliceCache[Any]], tuple[()]]:
        # Copies and pickles of a module start with an empty cache (a weakref cannot be pickled).
        return (_SliceCache, ())


def _contiguous(t: Tensor) -> Tensor:
    return t if t.is_contiguous() else t.contiguous()


def _caching(weight: Tensor) -> bool:
    return not (torch.is_grad_enabled() and weight.requires_grad)


class DynamicConv2d(nn.Module):
    """A conv whose output width and (odd, square) kernel size are elastic.

    ``depthwise=True`` makes it a depthwise conv: groups = active channels = input width, and the
    output width follows the input (``active_out`` is unused).
    """

    def __init__(
        self,
        max_in: int,
        max_out: int,
        max_kernel: int,
        stride: int = 1,
        depthwise: bool = False,
    ) -> None:
        super().__init__()
        if max_kernel % 2 == 0:
            raise ValueError(f"kernel size must be odd, got {max_kernel}")
        if depthwise and max_in != max_out:
            raise ValueError(f"a depthwise conv needs max_in == max_out, got {max_in}, {max_out}")
        self.depthwise = depthwise
        self.stride = stride
        self.max_kernel = max_kernel
        self.conv = nn.Conv2d(
            max_in,
            max_out,
            max_kernel,
            stride=stride,
            padding=max_kernel // 2,
            groups=max_in if depthwise else 1,
            bias=False,
        )
        self.active_out = max_out
        self.active_kernel = max_kernel
        self._cache: _SliceCache[Tensor] = _SliceCache()

    def set_active(self, out_channels: int | None = None, kernel_size: int | None = None) -> None:
        if out_channels is not None:
            if not 1 <= out_channels <= self.conv.out_channels:
                raise ValueError(f"out_channels {out_channels} not in 1..{self.conv.out_channels}")
            self.active_out = out_channels
        if kernel_size is not None:
            if kernel_size % 2 == 0 or not 1 <= kernel_size <= self.max_kernel:
                raise ValueError(f"kernel_size {kernel_size} must be odd and <= {self.max_kernel}")
            self.active_kernel = kernel_size

    def _index(self, in_channels: int) -> tuple[slice, ...]:
        start = (self.max_kernel - self.active_kernel) // 2  # centre crop
        end = start + self.active_kernel
        if self.depthwise:
            return (slice(0, in_channels), slice(0, 1), slice(start, end), slice(start, end))
        return (
            slice(0, self.active_out),
            slice(0, in_channels),
            slice(start, end),
            slice(start, end),
        )

    def forward(self, x: Tensor) -> Tensor:
        in_channels = x.shape[1]
        weight = self.conv.weight
        if _caching(weight):
            config = (in_channels, self.active_out, self.active_kernel)
            weight = self._cache.get(
                config, (weight,), lambda: _contiguous(self.conv.weight[self._index(in_channels)])
            )
        else:
            weight = weight[self._index(in_channels)]
        return F.conv2d(
            x,
            weight,
            None,
            self.stride,
            self.active_kernel // 2,
            1,
            in_channels if self.depthwise else 1,
        )

    def out_channels_for(self, in_channels: int) -> int:
        return in_channels if self.depthwise else self.active_out

    def to_static(self, in_channels: int) -> nn.Conv2d:
        """A plain ``nn.Conv2d`` for the active config fed ``in_channels``, weights copied."""
        out = self.out_channels_for(in_channels)
        static = nn.Conv2d(
            in_channels,
            out,
            self.active_kernel,
            stride=self.stride,
            padding=self.active_kernel // 2,
            groups=in_channels if self.depthwise else 1,
            bias=False,
            device=self.conv.weight.device,
            dtype=self.conv.weight.dtype,
        )
        with torch.no_grad():
            static.weight.copy_(self.conv.weight[self._index(in_channels)])
        return static

    def extra_repr(self) -> str:
        return f"active_out={self.active_out}, active_kernel={self.active_kernel}"


class DynamicBatchNorm2d(nn.Module):
    """BatchNorm over the first C channels, C = the input's width.

    Weight, bias and running statistics are sliced. In training mode the batch statistics update
    only the active slice of the running statistics: the slice is cloned, ``F.batch_norm``
    updates the clone, and the result is written back with ``copy_``. Passing the view itself
    would rely on the backend updating a non-owning view in place, which not every kernel (or
    a functionalised / compiled graph) honours; the explicit write-back always does.
    ``momentum=None`` (cumulative average, used for BN recalibration) works as in ``nn.BatchNorm2d``.
    Statistics are per process: ``nn.SyncBatchNorm.convert_sync_batchnorm`` would only reach the
    full-width case, so multi-GPU training keeps per-GPU statistics (as BigNAS does).
    """

    def __init__(self, max_features: int, eps: float = 1e-5, momentum: float | None = 0.1) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(max_features, eps=eps, momentum=momentum)
        self._cache: _SliceCache[tuple[Tensor, ...]] = _SliceCache()

    def forward(self, x: Tensor) -> Tensor:
        bn = self.bn
        c = x.shape[1]
        if c == bn.num_features:
            return bn(x)
        use_batch_stats = bn.training or bn.running_mean is None
        if not use_batch_stats:
            assert bn.running_mean is not None and bn.running_var is not None
            sources = (bn.running_mean, bn.running_var, bn.weight, bn.bias)
            if _caching(bn.weight):
                mean, var, weight, bias = self._cache.get(
                    c, sources, lambda: tuple(t[:c] for t in sources)
                )
            else:
                mean, var, weight, bias = (t[:c] for t in sources)
            return F.batch_norm(x, mean, var, weight, bias, False, 0.0, bn.eps)
        if bn.running_mean is None or bn.running_var is None or not bn.track_running_stats:
            return F.batch_norm(x, None, None, bn.weight[:c], bn.bias[:c], True, 0.0, bn.eps)
        momentum = self._momentum()
        mean = bn.running_mean[:c].clone()
        var = bn.running_var[:c].clone()
        out = F.batch_norm(x, mean, var, bn.weight[:c], bn.bias[:c], True, momentum, bn.eps)
        with torch.no_grad():
            bn.running_mean[:c].copy_(mean)
            bn.running_var[:c].copy_(var)
        return out

    def _momentum(self) -> float:
        # Same bookkeeping as nn.BatchNorm2d.forward (num_batches_tracked is shared by slices).
        bn = self.bn
        assert bn.num_batches_tracked is not None
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:
            return 1.0 / float(bn.num_batches_tracked)
        return bn.momentum

    def to_static(self, num_features: int) -> nn.BatchNorm2d:
        """A plain ``nn.BatchNorm2d`` over the first ``num_features`` channels, state copied."""
        bn = self.bn
        static = nn.BatchNorm2d(
            num_features,
            eps=bn.eps,
            momentum=bn.momentum,
            device=bn.weight.device,
            dtype=bn.weight.dtype,
        )
        with torch.no_grad():
            static.weight.copy_(bn.weight[:num_features])
            static.bias.copy_(bn.bias[:num_features])
            assert bn.running_mean is not None and bn.running_var is not None
            assert static.running_mean is not None and static.running_var is not None
            static.running_mean.copy_(bn.running_mean[:num_features])
            static.running_var.copy_(bn.running_var[:num_features])
            if bn.num_batches_tracked is not None and static.num_batches_tracked is not None:
                static.num_batches_tracked.copy_(bn.num_batches_tracked)
        static.train(bn.training)
        return static


class DynamicLinear(nn.Module):
    """A linear layer whose input width is elastic (the output, the classes, is fixed)."""

    def __init__(self, max_in: int, out_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(max_in, out_features)
        self._cache: _SliceCache[Tensor] = _SliceCache()

    def forward(self, x: Tensor) -> Tensor:
        in_features = x.shape[-1]
        weight = self.linear.weight
        if _caching(weight):
            weight = self._cache.get(
                in_features, (weight,), lambda: _contiguous(self.linear.weight[:, :in_features])
            )
        else:
            weight = weight[:, :in_features]
        return F.linear(x, weight, self.linear.bias)

    def to_static(self, in_features: int) -> nn.Linear:
        w = self.linear.weight
        static = nn.Linear(in_features, w.shape[0], device=w.device, dtype=w.dtype)
        with torch.no_grad():
            static.weight.copy_(self.linear.weight[:, :in_features])
            static.bias.copy_(self.linear.bias)
        return static


DYNAMIC_OPS: tuple[type[nn.Module], ...] = (DynamicConv2d, DynamicBatchNorm2d, DynamicLinear)


def drop_path(x: Tensor, p: float) -> Tensor:
    """Stochastic depth on a residual branch: zero whole samples with probability ``p`` and
    scale the rest by ``1 / (1 - p)`` (the expectation is unchanged, so eval needs nothing)."""
    if p <= 0.0:
        return x
    keep = 1.0 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    return x * mask.div_(keep)


_ACTIVATION_MODULES: dict[Activation, type[nn.Module]] = {
    Activation.relu6: nn.ReLU6,
    Activation.relu: nn.ReLU,
    Activation.hswish: nn.Hardswish,
    Activation.silu: nn.SiLU,
}


def make_activation(name: str) -> nn.Module:
    """A fresh activation module by name (one of :data:`gen5nas.spec.plan.ACTIVATIONS`)."""
    return _ACTIVATION_MODULES[check_activation(name)](inplace=True)


def copy_activation(act: nn.Module) -> nn.Module:
    """A new instance of the same (parameter-free) activation."""
    return type(act)(inplace=getattr(act, "inplace", False))


def l1_channel_order(weight: Tensor) -> Tensor:
    """Output-channel indices of a conv/linear weight by descending L1 norm.

    For an optional one-off re-ordering (OFA's progressive shrinking): permute a layer's output
    channels, its BN, and the next layer's input channels with the same index. Not needed under
    sandwich training, which keeps the leading channels the most trained ones.
    """
    return weight.detach().abs().flatten(1).sum(1).argsort(descending=True)
