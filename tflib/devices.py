"""Where computations run: the best available device, and checks that tensors share one."""

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


def check_same_device(**tensors: torch.Tensor) -> None:
    """Raise a ``ValueError`` naming the tensors if they do not all live on one device."""
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) > 1:
        listing = ", ".join(f"{name} on {device}" for name, device in devices.items())
        raise ValueError(
            f"tensors are on different devices ({listing}); move them to one with .to(device)"
        )
