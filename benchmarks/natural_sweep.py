"""How long the natural-vs-random sweep takes at the paper's scale, projected from one epoch.

The paper's setting (``natural_config("paper")``): 60,000 binary training images of 784 pixels,
10,000 test images, ranks 1 to 15 side by side in one CP network, Adam, batches of 5,000
(12 steps per epoch), 10,000 epochs, errors on train and test every 100 epochs; 2 data sets x
3 variants x 3 seeds = 18 runs. The real MNIST files are not needed: synthetic binary images of
MNIST's ink density (13% of pixels on) cost the same. Timed: a few epochs through ``fit`` (the
loop the experiment uses) and one evaluation of the train and test errors, both with all factors
positive (the start) and with some negative (the sign columns then double the table's width).

Run: ``python benchmarks/natural_sweep.py`` (``--threads 1`` on a busy machine,
``--device cuda`` on a GPU).
"""

from __future__ import annotations

import argparse
import math
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
    parser.add_argument("--epochs", type=int, default=3, help="epochs timed per case")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    config = natural_config("paper")
    train, test = synthetic(60_000, 0, device), synthetic(10_000, 1, device)
    per_epoch = math.ceil(len(train.targets) / config.batch_size)
    runs = len(config.datasets) * len(config.variants) * len(config.seeds)
    evaluations = config.epochs // config.track_every + 1
    print(f"threads: {torch.get_num_threads()}, device: {device}, {per_epoch} steps per epoch")
    for case in ("positive factors", "some negative"):
        model = CPNetwork(
            train.shape, config.ranks, config.init_std, config.init_mean, seed=0, device=device
        )
        if case == "some negative":
            with torch.no_grad():
                model.weight[::50, ::7] *= -1
        options = dict(optimizer="adam", lr=config.lr, batch_size=config.batch_size)
        fit(model, train.indices, train.targets, steps=2, progress=False, **options)  # warm up
        sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
        sync()
        start = time.perf_counter()
        steps = args.epochs * per_epoch
        fit(model, train.indices, train.targets, steps=steps, progress=False, **options)
        sync()
        epoch = (time.perf_counter() - start) / args.epochs
        start = time.perf_counter()
        with torch.no_grad():
            mean_errors(model, train, config.value)
            mean_errors(model, test, config.value, config.test_cap)
        sync()
        evaluation = time.perf_counter() - start
        total = runs * (config.epochs * epoch + evaluations * evaluation)
        print(
            f"{case}: {epoch:.2f} s per epoch, {evaluation:.2f} s per evaluation; "
            f"one run {config.epochs * epoch / 3600:.1f} h, the sweep of {runs} runs "
            f"{total / 3600:.0f} h ({total / 86400:.1f} days)"
        )


if __name__ == "__main__":
    main()
