"""The supernet (elastic MobileNetV2 of MBConv blocks), subnet extraction, and ONNX export."""

from gen5nas.supernet.extract import extract_subnet
from gen5nas.supernet.model import Supernet
from gen5nas.supernet.onnx_export import arch_onnx_bytes, export_onnx, onnx_bytes
from gen5nas.supernet.profile import count_macs, count_params
from gen5nas.supernet.static import StaticSubnet

__all__ = [
    "StaticSubnet",
    "Supernet",
    "arch_onnx_bytes",
    "count_macs",
    "count_params",
    "export_onnx",
    "extract_subnet",
    "onnx_bytes",
]
