"""gen5nas: hardware-aware neural architecture search (BigNAS + CompOFA supernets)."""

__version__ = "0.1.0"
