"""The order-784 CP network: tflib's log-domain engine against the research code's method.

The setting of the natural-vs-random chapter at the paper's scale: binary images of 784 pixels
(an order-784 tensor with modes of dimension 2), a batch of 5,000, R = 15 components, one
forward and backward pass of the mean squared error.

* **tflib**: :class:`tflib.network.CPNetwork` (encoded inputs times a table of log-magnitudes,
  one matrix product forward and one backward, closed-form gradient);
* **einsum**: the research code's method: one-hot inputs of shape (B, 784, 2) contracted with the
  factors by einsum into (B, 784, R), a product over the positions, a sum; autograd for the
  gradient.

Both start from the same factors (mean 1, std 1e-3, so the products stay finite for einsum too)
and their gradients are checked to agree first. Time: short alternating rounds, median ratio.
Memory: each method runs in a fresh process, and the peak resident memory during its step is
compared with the memory held before it (data and parameters).

Run: ``python benchmarks/cp_network.py`` (``--threads 1`` on a busy machine).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import torch

from tflib.network import CPNetwork

BATCH, ORDER, RANK = 5000, 784, 15


def setup():
    generator = torch.Generator().manual_seed(0)
    inputs = (torch.rand(BATCH, ORDER, generator=generator) < 0.2).to(torch.uint8)
    targets = 2.0 * (torch.rand(BATCH, generator=generator) < 0.1)
    model = CPNetwork((2,) * ORDER, RANK, init_std=1e-3, init_mean=1.0, seed=1)
    return inputs, targets, model


def einsum_step(model: CPNetwork, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """One forward and backward pass the research code's way; returns the gradient."""
    weight = model.weight.detach().requires_grad_()
    factors = weight.reshape(ORDER, 2, -1)
    one_hot = torch.nn.functional.one_hot(inputs.long(), 2).to(weight.dtype)
    outputs = torch.einsum("bnd,ndr->bnr", one_hot, factors).prod(dim=1).sum(dim=1)
    ((outputs - targets) ** 2).mean().backward()
    return weight.grad


def tflib_step(model: CPNetwork, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return model.loss_and_gradients(inputs, targets)[1][0]


STEPS = {"tflib": tflib_step, "einsum": einsum_step}


def peak_rss_mb() -> float:
    """This process's peak resident memory. Read from /proc (Linux), not ``ru_maxrss``: a child
    started by ``subprocess`` inherits its parent's ``ru_maxrss`` across exec, so a parent that
    has already run the einsum step would hide the child's own peak."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


def peak_memory_mb(method: str) -> float:
    """Run in this process (a fresh one): the step's peak resident memory above what setup held."""
    inputs, targets, model = setup()
    before = peak_rss_mb()
    STEPS[method](model, inputs, targets)
    return peak_rss_mb() - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="alternations of the two methods")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--memory-of", choices=sorted(STEPS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_of:
        print(peak_memory_mb(args.memory_of))
        return

    inputs, targets, model = setup()
    ours, theirs = tflib_step(model, inputs, targets), einsum_step(model, inputs, targets)
    worst = float((ours - theirs).abs().max() / theirs.abs().max())
    assert worst < 1e-3, f"the two methods disagree on the gradient (relative {worst:.1e})"

    times = {name: [] for name in STEPS}
    for _ in range(args.rounds):
        for name, step in STEPS.items():
            repeats = 10 if name == "tflib" else 1
            start = time.perf_counter()
            for _ in range(repeats):
                step(model, inputs, targets)
            times[name].append((time.perf_counter() - start) / repeats)
    ratios = sorted(e / t for e, t in zip(times["einsum"], times["tflib"]))
    memory = {}
    for name in STEPS:
        command = [sys.executable, __file__, "--memory-of", name]
        command += ["--threads", str(args.threads)] if args.threads else []
        memory[name] = float(subprocess.check_output(command, text=True))
    print(f"threads: {torch.get_num_threads()}, gradients agree to {worst:.1e} (relative)")
    for name in STEPS:
        print(
            f"{name:>6}: {statistics.median(times[name]) * 1e3:8.1f} ms per forward+backward, "
            f"peak {memory[name]:7.1f} MB above the data"
        )
    print(
        f"speed-up {statistics.median(ratios):.0f}x (rounds ranged {ratios[0]:.0f}x to "
        f"{ratios[-1]:.0f}x); memory {memory['einsum'] / max(memory['tflib'], 1e-3):.0f}x less"
    )


if __name__ == "__main__":
    main()
