"""Per-step time of tflib's training step against the dense-observation method, side by side.

The setting is the paper's dynamics experiment: an order-4 tensor with 10 entries per mode,
2,000 observed entries, a CP factorization with R = 1,000 components. The dense-observation
method (the one the original research code used) builds a one-hot tensor of shape
(M, d_1, ..., d_N) marking the observed entries, multiplies it by the full tensor and sums.

Both methods take the same gradient-descent step on the same loss; their gradients are checked to
agree before timing. Timings alternate between the methods, so machine noise hits both alike.

Run: ``python benchmarks/dynamics_step.py``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import tflib
from tflib.data import observe, random_cp_tensor, sample_entries

SHAPE, TARGET_RANK, N_OBSERVED, RANK = (10, 10, 10, 10), 5, 2000, 1000
#: Steps the paper-scale figure takes for its three init scales (seed 0, measured): 3,758 + 4,947
#: + 17,121, rounded up.
FIGURE_STEPS = 26_000


def dense_observation_entries(factors, one_hot: torch.Tensor) -> torch.Tensor:
    """Observed entries as the research code computed them: one-hot mask times the full tensor."""
    full = torch.einsum("ar,br,cr,dr->abcd", *factors)
    return (one_hot * full).flatten(start_dim=1).sum(dim=1)


def gd_step(model, entries, targets, lr: float = 1e-2) -> None:
    model.zero_grad(set_to_none=True)
    loss = (entries() - targets).pow(2).mean()
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(p.grad, alpha=-lr)


def time_steps(step, repeats: int) -> float:
    """Median over ``repeats`` of the wall time of one call of ``step``, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="alternations of the two methods")
    args = parser.parse_args()

    target = random_cp_tensor(SHAPE, TARGET_RANK, seed=0)
    indices = sample_entries(SHAPE, N_OBSERVED, seed=1)
    targets = observe(target, indices)
    one_hot = torch.zeros(N_OBSERVED, *SHAPE)
    one_hot[(torch.arange(N_OBSERVED), *indices.T)] = 1.0

    model = tflib.CPFactorization(SHAPE, RANK, init_std=1e-2, seed=2)
    ours = lambda: model(indices)  # noqa: E731
    theirs = lambda: dense_observation_entries(list(model.factors), one_hot)  # noqa: E731

    grads = []
    for entries in (ours, theirs):
        model.zero_grad()
        (entries() - targets).pow(2).mean().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    worst = max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(*grads))
    assert worst < 1e-4, f"the two methods disagree on the gradient (relative {worst:.1e})"

    tflib_times, dense_times = [], []
    for _ in range(args.rounds):  # short alternating rounds: a burst of load hits both methods
        tflib_times.append(time_steps(lambda: gd_step(model, ours, targets), repeats=60))
        dense_times.append(time_steps(lambda: gd_step(model, theirs, targets), repeats=3))
    ratios = sorted(d / t for d, t in zip(dense_times, tflib_times))
    ours_s, theirs_s = statistics.median(tflib_times), statistics.median(dense_times)
    print(f"threads: {torch.get_num_threads()}, gradients agree to {worst:.1e} (relative)")
    print(f"tflib step:             {ours_s * 1e3:7.2f} ms  (median of {args.rounds} rounds)")
    print(f"dense-observation step: {theirs_s * 1e3:7.2f} ms")
    print(
        f"speed-up:               {statistics.median(ratios):7.1f}x  "
        f"(rounds ranged {ratios[0]:.0f}x to {ratios[-1]:.0f}x)"
    )
    print(
        f"projected figure ({FIGURE_STEPS:,} steps): tflib {FIGURE_STEPS * ours_s:.0f} s, "
        f"dense-observation {FIGURE_STEPS * theirs_s / 60:.0f} min"
    )


if __name__ == "__main__":
    main()
