"""The supernet (an elastic MobileNetV2 of MBConv blocks), subnet extraction, and ONNX export.

Where things live: the search space and an arch are in :mod:`gen5nas.spec.space`; the plan of
a subnet's layers (widths, kernels, strides, skips, activations, ``make_divisible``) in
:mod:`gen5nas.spec.plan`, torch-free. Here: the elastic ops (conv, BN, linear, activation
modules, drop-path) in :mod:`.ops`; the elastic blocks built from the plan in :mod:`.blocks`;
the model in :mod:`.model` (:class:`Supernet` on its :class:`ElasticBackbone`, the stem and
stages every task shares); the extracted static network (or its backbone alone) in
:mod:`.static` and :mod:`.extract`; ONNX export in :mod:`.onnx_export`; parameter/MAC counts
in :mod:`.profile`.
"""

from gen5nas.supernet.extract import extract_backbone, extract_subnet
from gen5nas.supernet.model import ElasticBackbone, Supernet
from gen5nas.supernet.onnx_export import arch_onnx_bytes, export_onnx, onnx_bytes
from gen5nas.supernet.profile import count_macs, count_params
from gen5nas.supernet.static import StaticBackbone, StaticSubnet

__all__ = [
    "ElasticBackbone",
    "StaticBackbone",
    "StaticSubnet",
    "Supernet",
    "arch_onnx_bytes",
    "count_macs",
    "count_params",
    "export_onnx",
    "extract_backbone",
    "extract_subnet",
    "onnx_bytes",
]
