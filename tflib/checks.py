"""Checks at the boundary of the library: index lists, devices and scalar settings.

Every public function and model validates its arguments once, with a message that says what was
expected and what arrived, before any work is done.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch


def check_number(
    name: str, value: object, *, low: float = -math.inf, strict: bool = False, integer=False
) -> None:
    """Raise unless ``value`` is a finite number (an integer if ``integer``) at least ``low``
    (above ``low`` if ``strict``): ``TypeError`` for a non-number, ``ValueError`` otherwise."""
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        expected = "an integer" if integer else "a number"
        raise TypeError(f"{name} must be {expected}, got {value!r}")
    if not math.isfinite(value) or value < low or (strict and value == low):
        bound = "" if low == -math.inf else f" {'>' if strict else '>='} {low:g}"
        raise ValueError(f"{name} must be a finite number{bound}, got {value!r}")


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


def check_indices(indices: torch.Tensor, shape: Sequence[int]) -> None:
    """Validate an ``(M, N)`` integer tensor of indices into a tensor of the given shape."""
    if not isinstance(indices, torch.Tensor):
        raise TypeError(f"indices must be a torch.Tensor of shape (M, N), got {type(indices)}")
    if indices.dtype.is_floating_point or indices.dtype.is_complex or indices.dtype == torch.bool:
        raise TypeError(f"indices must have an integer dtype, got {indices.dtype}")
    if indices.ndim != 2:
        raise ValueError(f"indices must have shape (M, N), got shape {tuple(indices.shape)}")
    if indices.shape[1] != len(shape):
        raise ValueError(
            f"indices has {indices.shape[1]} columns but the tensor has order {len(shape)}"
        )
    if indices.shape[0] == 0:
        return
    low, high = indices.amin(dim=0), indices.amax(dim=0)
    dims = torch.tensor(shape, device=indices.device)
    bad = ((low < 0) | (high >= dims)).nonzero()
    if len(bad):
        n = int(bad[0])
        lo, hi, d = int(low[n]), int(high[n]), shape[n]
        raise IndexError(
            f"indices out of range in mode {n}: values span [{lo}, {hi}] "
            f"but the mode has dimension {d} (valid: 0 to {d - 1})"
        )
