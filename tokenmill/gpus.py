"""Known accelerators: dense bf16 peak FLOP/s, a rough price and memory, in one table.

The trainer's MFU, ``tokenmill plan`` and the pre-flight estimate all read
this table, so the three never disagree. Peaks are the vendors' dense
tensor-core figures without sparsity (fp16 on the V100, which has no bf16).
Pure Python: no heavy imports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Gpu:
    peak_flops: float  # dense bf16 (fp16 on V100) tensor FLOP/s, no sparsity
    usd_per_hour: float  # rough on-demand price; override with --usd-per-gpu-hour
    memory_gb: float  # device memory, for the pre-flight memory check


GPUS: dict[str, Gpu] = {
    "v100": Gpu(125e12, 2.5, 32),
    "a10g": Gpu(125e12, 1.2, 24),  # AWS A10G datasheet: 125 TF bf16 dense (250 with sparsity)
    "l4": Gpu(121e12, 0.8, 24),
    "l40s": Gpu(362e12, 2.0, 48),
    "a100": Gpu(312e12, 4.0, 80),
    "h100-pcie": Gpu(756e12, 5.0, 80),
    "h100": Gpu(989e12, 7.0, 80),  # SXM; $7/hour is the published figure's rate
    "h200": Gpu(989e12, 8.0, 141),
    "b200": Gpu(2250e12, 12.0, 180),
    "gb200": Gpu(2500e12, 14.0, 186),
    "mi250x": Gpu(383e12, 3.0, 128),
    "mi300x": Gpu(1307e12, 6.0, 192),
}


def gpu_for_device(device_name: str) -> Optional[str]:
    """The table's key for a device name as the driver reports it, e.g.
    ``NVIDIA H100 PCIe`` -> ``h100-pcie``, ``NVIDIA L40S`` -> ``l40s``; None if unknown.

    Names are matched word by word, so ``L4`` does not match an L40S nor
    ``A10G`` an A100.
    """
    words = re.findall(r"[a-z0-9]+", device_name.lower())
    for key in sorted(GPUS, key=lambda k: -len(k.split("-"))):  # "h100-pcie" before "h100"
        if all(part in words for part in key.split("-")):
            return key
    return None


def peak_flops(device_name: str) -> Optional[float]:
    """Dense bf16 peak FLOP/s of a device by its reported name, or None when unknown."""
    key = gpu_for_device(device_name)
    return GPUS[key].peak_flops if key else None
