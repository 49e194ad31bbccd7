"""How long the natural-vs-random sweep takes at the paper's scale, against its floor.

The paper's setting (``natural_config("paper")``): 60,000 binary training images of 784 pixels,
10,000 test images, ranks 1 to 15 side by side in one CP network (120 components), Adam, batches
of 5,000 (12 steps per epoch), 10,000 epochs, errors on train and test every 100 epochs;
2 data sets x 3 variants x 3 seeds = 18 runs. The real MNIST files are not needed: synthetic
binary images of MNIST's ink density (13% of pixels on) cost the same.

Measured side by side, in alternating rounds (the median ratio is reported):

* **an epoch as ``fit`` runs it**: 12 steps of the loop the experiment uses (batch selection,
  encoding, forward, gradient, Adam), with all factors positive (the start) and with some
  negative (then the signs of the products must be counted too). What ``fit`` does once per call
  (checks, a digest of the data for its checkpoints) is left out: it is timed with 0 steps and
  subtracted;
* **the floor**: for each of an epoch's 12 batches, already encoded as floats (5,000 x 784), the
  three matrix products with 120 columns that a method of this kind computes per step
  (log-magnitudes forward, signs forward, the gradient back), and nothing else.

Then both are projected to the whole sweep, adding the measured cost of the evaluations. With
``--threads 1`` on the CPU the clock is the thread's CPU time, which other processes on a busy
machine do not inflate; otherwise it is wall-clock time.

Run: ``python benchmarks/natural_sweep.py`` (``--threads 1`` on a busy machine,
``--device cuda`` on a GPU).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from tflib.data import CompletionData
from tflib.experiments import natural_config
from tflib.experiments.natural import mean_errors
from tflib.network import CPNetwork
from tflib.train import fit


def synthetic(n: int, seed: int, device: torch.device) -> CompletionData:
    generator = torch.Generator().manual_seed(seed)
    images = (torch.rand(n, 784, generator=generator) < 0.13).to(torch.uint8)
    targets = 2.0 * (torch.rand(n, generator=generator) < 0.1)
    return CompletionData(images.to(device), targets.to(device), (2,) * 784)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=5, help="alternations of epoch and floor")
    parser.add_argument("--epochs", type=int, default=2, help="epochs timed per round")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    config = natural_config("paper")
    train, test = synthetic(60_000, 0, device), synthetic(10_000, 1, device)
    per_epoch = math.ceil(len(train.targets) / config.batch_size)
    runs = len(config.datasets) * len(config.variants) * len(config.seeds)
    evaluations = config.epochs // config.track_every + 1
    components = sum(config.ranks)
    print(f"threads: {torch.get_num_threads()}, device: {device}, {per_epoch} steps per epoch")

    size = config.batch_size
    batches = [train.indices[k * size : (k + 1) * size].float() for k in range(per_epoch)]
    table = torch.randn(784, components, device=device)
    upstream = torch.randn(config.batch_size, components, device=device)

    def floor_epochs() -> None:
        for _ in range(args.epochs):
            for batch in batches:
                batch @ table, batch @ table, upstream.T @ batch

    cpu_time = device.type == "cpu" and torch.get_num_threads() == 1
    clock = time.thread_time if cpu_time else time.perf_counter
    print(f"clock: {'CPU time of the thread' if cpu_time else 'wall-clock time'}")

    def timed(work, *args, **kwargs) -> float:
        sync()
        start = clock()
        work(*args, **kwargs)
        sync()
        return clock() - start

    def evaluate(model: CPNetwork) -> None:
        with torch.no_grad():
            mean_errors(model, train, config.value)
            mean_errors(model, test, config.value, config.test_cap)

    options = dict(optimizer="adam", lr=config.lr, batch_size=config.batch_size, progress=False)
    for case in ("positive factors", "some negative"):
        model = CPNetwork(
            train.shape, config.ranks, config.init_std, config.init_mean, seed=0, device=device
        )
        if case == "some negative":
            with torch.no_grad():
                model.weight[::50, ::7] *= -1
        fit(model, train.indices, train.targets, steps=2, **options)  # warm up
        floor_epochs()
        epochs, floors = [], []
        for _ in range(args.rounds):
            whole = timed(fit, model, *train[:2], steps=args.epochs * per_epoch, **options)
            setup = timed(fit, model, *train[:2], steps=0, **options)
            epochs.append((whole - setup) / args.epochs)
            floors.append(timed(floor_epochs) / args.epochs)
        ratios = sorted(e / f for e, f in zip(epochs, floors))
        epoch, floor = statistics.median(epochs), statistics.median(floors)
        evaluation = timed(evaluate, model)
        print(
            f"{case}: an epoch as fit runs it {epoch:.3f} s, the floor {floor:.3f} s: "
            f"{statistics.median(ratios):.2f}x (rounds {ratios[0]:.2f}x to {ratios[-1]:.2f}x); "
            f"an evaluation {evaluation:.2f} s"
        )
        for name, seconds in (("measured", epoch), ("floor", floor)):
            total = runs * (config.epochs * seconds + evaluations * evaluation)
            print(
                f"  {name:>8}: one run {config.epochs * seconds / 3600:.1f} h, the sweep of "
                f"{runs} runs {total / 3600:.0f} h ({total / 86400:.1f} days)"
            )


if __name__ == "__main__":
    main()
