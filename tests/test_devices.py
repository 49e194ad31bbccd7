"""Devices: the default device, and the check that tensors share one (CPU-only, no GPU needed)."""

from __future__ import annotations

import pytest
import torch

from tflib.checks import check_same_device
from tflib.devices import default_device


def set_availability(monkeypatch, *, cuda: bool, mps: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


def test_default_device_is_cpu_without_accelerators(monkeypatch):
    set_availability(monkeypatch, cuda=False, mps=False)
    assert default_device() == torch.device("cpu")


def test_default_device_prefers_cuda(monkeypatch):
    set_availability(monkeypatch, cuda=True, mps=True)
    assert default_device() == torch.device("cuda")


def test_default_device_takes_mps_without_cuda(monkeypatch):
    set_availability(monkeypatch, cuda=False, mps=True)
    assert default_device() == torch.device("mps")


def test_default_device_on_this_machine_holds_tensors():
    device = default_device()
    if not torch.cuda.is_available() and not torch.backends.mps.is_available():
        assert device == torch.device("cpu")
    assert (torch.ones(3, device=device) * 2).sum().item() == 6.0


def test_check_same_device_accepts_one_device():
    check_same_device(a=torch.ones(2), b=torch.zeros(3), c=torch.ones(1, dtype=torch.int64))


def test_check_same_device_names_every_tensor_and_device():
    with pytest.raises(ValueError, match=r"\(model on cpu, indices on meta\); move them"):
        check_same_device(model=torch.ones(2), indices=torch.ones(2, device="meta"))
