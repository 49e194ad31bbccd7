"""Per-step time of training at the paper's dynamics setting, measured as ``fit`` runs it.

The setting: an order-4 tensor with 10 entries per mode, 2,000 observed entries, a CP
factorization with R = 1,000 components, the paper's adaptive step, the reconstruction error
tracked every 25 steps. Three things are timed side by side, in short alternating rounds so that
machine noise hits all alike:

* **tflib**: ``fit`` on :class:`tflib.CPFactorization` (the fused dense loss and gradient);
* **dense observation**: ``fit`` on a model computing the observed entries as the original research
  code did, a one-hot tensor of shape (M, d_1, ..., d_N) marking the observed entries, multiplied
  by the full tensor and summed;
* **floor**: the three 100 x 1000 x 100 matrix products no method of this kind avoids (the full
  tensor as L R^T and the gradients G R and G^T L), and the floor plus the Khatri–Rao products'
  own passes over the 100 x 1000 matrices (forward and backward), which are memory-bound.

Both models' gradients are checked to agree before timing.

Run: ``python benchmarks/dynamics_step.py``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

import tflib
from tflib.cp import _khatri_rao_backward, khatri_rao
from tflib.data import observe, random_cp_tensor, sample_entries
from tflib.metrics import normalized_reconstruction_error

SHAPE, TARGET_RANK, N_OBSERVED, RANK = (10, 10, 10, 10), 5, 2000, 1000
#: Steps the paper-scale figure takes for its three init scales (seed 0, measured): 3,758 + 4,947
#: + 17,121, rounded up.
FIGURE_STEPS = 26_000


class DenseObservationCP(tflib.CPFactorization):
    """The research code's method: a one-hot tensor marking each observation times the tensor."""

    def __init__(self, *args, one_hot: torch.Tensor, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.one_hot = one_hot

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        full = torch.einsum("ar,br,cr,dr->abcd", *self.factors)
        return (self.one_hot * full).flatten(start_dim=1).sum(dim=1)

    loss_and_gradients = None  # fit differentiates forward by autograd, as the research code did


def seconds_per_step(model: nn.Module, indices, targets, target, steps: int) -> float:
    track = {"error": lambda m: normalized_reconstruction_error(m.full(), target)}
    start = time.perf_counter()
    tflib.fit(
        model, indices, targets, steps=steps, optimizer="adaptive_gd", track=track, progress=False
    )
    return (time.perf_counter() - start) / steps


def floor_seconds(repeats: int, with_khatri_rao: bool) -> float:
    """Median time of the three matrix products (and optionally the Khatri–Rao passes)."""
    factors = [torch.randn(d, RANK) for d in SHAPE]
    left, right = khatri_rao(factors[:2]), khatri_rao(factors[2:])
    scattered = torch.randn(100, 100)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        if with_khatri_rao:
            left, right = khatri_rao(factors[:2]), khatri_rao(factors[2:])
        _ = left @ right.T
        grad_left, grad_right = scattered @ right, scattered.T @ left
        if with_khatri_rao:
            _khatri_rao_backward(grad_left, factors[:2])
            _khatri_rao_backward(grad_right, factors[2:])
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="alternations of the methods")
    args = parser.parse_args()

    target = random_cp_tensor(SHAPE, TARGET_RANK, seed=0)
    indices = sample_entries(SHAPE, N_OBSERVED, seed=1)
    targets = observe(target, indices)
    one_hot = torch.zeros(N_OBSERVED, *SHAPE)
    one_hot[(torch.arange(N_OBSERVED), *indices.T)] = 1.0
    ours = tflib.CPFactorization(SHAPE, RANK, init_std=1e-2, seed=2)
    theirs = DenseObservationCP(SHAPE, RANK, init_std=1e-2, seed=2, one_hot=one_hot)

    grads = []
    for model in (ours, theirs):
        grads.append(tflib.train.loss_and_gradients(model, indices, targets)[1])
    worst = max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(*grads))
    assert worst < 1e-4, f"the two methods disagree on the gradient (relative {worst:.1e})"

    rounds = {"tflib": [], "dense": [], "floor": [], "floor_kr": []}
    for _ in range(args.rounds):  # short alternating rounds: a burst of load hits every method
        rounds["tflib"].append(seconds_per_step(ours, indices, targets, target, steps=100))
        rounds["dense"].append(seconds_per_step(theirs, indices, targets, target, steps=3))
        rounds["floor"].append(floor_seconds(100, with_khatri_rao=False))
        rounds["floor_kr"].append(floor_seconds(100, with_khatri_rao=True))
    median = {name: statistics.median(times) for name, times in rounds.items()}
    speedups = sorted(d / t for d, t in zip(rounds["dense"], rounds["tflib"]))
    over_floor = sorted(t / f for t, f in zip(rounds["tflib"], rounds["floor"]))
    print(f"threads: {torch.get_num_threads()}, gradients agree to {worst:.1e} (relative)")
    print(f"tflib fit step:             {median['tflib'] * 1e3:7.3f} ms  (median of rounds)")
    print(f"dense-observation fit step: {median['dense'] * 1e3:7.3f} ms")
    print(f"floor, 3 matrix products:   {median['floor'] * 1e3:7.3f} ms")
    print(f"floor + Khatri-Rao passes:  {median['floor_kr'] * 1e3:7.3f} ms")
    print(
        f"speed-up over dense observation: {statistics.median(speedups):6.1f}x "
        f"(rounds ranged {speedups[0]:.0f}x to {speedups[-1]:.0f}x)"
    )
    print(
        f"tflib step / floor:               {statistics.median(over_floor):6.2f}x "
        f"(rounds ranged {over_floor[0]:.2f}x to {over_floor[-1]:.2f}x)"
    )
    print(
        f"projected figure ({FIGURE_STEPS:,} steps): tflib {FIGURE_STEPS * median['tflib']:.0f} s,"
        f" dense observation {FIGURE_STEPS * median['dense'] / 60:.0f} min"
    )


if __name__ == "__main__":
    main()
