"""Where computations run: the best available device."""

from __future__ import annotations

import torch


def default_device() -> torch.device:
    """The fastest device this machine offers: CUDA, then Apple's MPS, then the CPU.

    Every ``tflib`` function works on any device; chapters call this once and pass the result on.
    """
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
