"""The natural-vs-random experiment: can predictors of low tensor rank fit natural data?

A one-vs-all task on binarized images is tensor completion (an image of N pixels indexes an
order-N tensor with modes of dimension 2; its label is that entry). CP networks of ranks
R = 1, ..., 15 fit it, and two randomized variants of it: shuffled labels and noise images.
Recorded: the train and test *mean error* of every rank (the paper's complexity figure).

Explained in the "Natural vs. random data" chapter.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from tflib.data import (
    IDX_FILES,
    completion_data,
    load_digits,
    load_mnist,
    one_vs_all,
    quantize,
    random_images,
    random_labels,
)
from tflib.devices import default_device
from tflib.experiments.results import (
    Results,
    add_common_options,
    cli_overrides,
    config_at_scale,
    in_shard,
    run_options,
)
from tflib.network import CPNetwork
from tflib.train import fit

VARIANTS = ("natural", "random_labels", "random_images")
DATASETS = ("digits", *IDX_FILES)


@dataclass(frozen=True)
class NaturalConfig:
    """Settings of the natural-vs-random experiment; the defaults are the paper's
    (paper-settings.md). ``n_train`` splits the digits (the first ``n_train`` of a fixed shuffle
    train, the rest test); MNIST has its own split. ``track_every`` counts epochs."""

    datasets: tuple[str, ...] = ("mnist", "fashion_mnist")
    n_train: int = 1200
    positive: int = 6
    value: float = 2.0
    ranks: tuple[int, ...] = tuple(range(1, 16))
    variants: tuple[str, ...] = VARIANTS
    seeds: tuple[int, ...] = (0, 1, 2)
    init_mean: float = 1.0
    init_std: float = 1e-3
    normalize_init: bool = False
    optimizer: str = "adam"
    lr: float = 5e-4
    batch_size: int = 5000
    epochs: int = 10_000
    loss_tol: float = 1e-8
    test_cap: float = 4.0
    track_every: int = 100


#: "book": the bundled 8 x 8 digits (order 64), three seeds, about a minute on 2 CPU cores. Its
#: init divides each component by R (``normalize_init``) so an untrained model outputs about 1,
#: not R: the paper's 120,000 steps outlast the plateau that an output of R causes, a few
#: thousand do not. "paper": MNIST and Fashion-MNIST as the paper ran them (a GPU, hours).
SCALES = {
    "book": NaturalConfig(
        datasets=("digits",),
        normalize_init=True,
        lr=5e-3,
        batch_size=100,
        epochs=350,
        track_every=25,
    ),
    "paper": NaturalConfig(),
}


def natural_config(scale: str = "book", seed: int = 0, **overrides) -> NaturalConfig:
    """The configuration at a scale ("book" or "paper"), its seeds counted from ``seed``, with any
    other field overridden."""
    return config_at_scale(SCALES, scale, seed, **overrides)


@dataclass
class NaturalResult(Results):
    """Histories keyed by (dataset, variant, seed). Each tracks "train" and "test", the mean
    errors of every rank, and holds "variance", the variances of the 0/1 train and test labels."""

    config_type: ClassVar[type] = NaturalConfig

    def final_errors(self, dataset: str, variant: str, split: str = "train") -> np.ndarray:
        """Shape (seeds run, ranks): the final mean error of every rank, one row per seed."""
        keys = [(dataset, variant, seed) for seed in self.config.seeds]
        return np.array([self.runs[key][split][-1] for key in keys if key in self.runs])

    def variance(self, dataset: str, split: str = "train") -> float:
        """The variance of the 0/1 labels of ``dataset``, the error of the best constant."""
        run = next(h for (name, _, _), h in self.runs.items() if name == dataset)
        return run.metrics["variance"][("train", "test").index(split)]


def load_task(name: str, config: NaturalConfig, data_dir=None) -> list[tuple[torch.Tensor, ...]]:
    """[(train images, targets), (test images, targets)], the images binarized."""
    if name == "digits":
        images, labels = load_digits()
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
        images, labels, n = images[order], labels[order], config.n_train
        parts = [(images[:n], labels[:n]), (images[n:], labels[n:])]
    else:
        parts = [load_mnist(name, split, data_dir) for split in ("train", "test")]
    return [(quantize(x, 2), one_vs_all(y, config.positive, config.value)) for x, y in parts]


def variant_data(features, targets, variant: str, seed: int, device=None, dtype=None):
    """The task as tensor completion (:class:`~tflib.data.CompletionData`) on ``device``, its
    labels shuffled or its images replaced by noise."""
    if variant == "random_labels":
        targets = random_labels(targets, seed)
    elif variant == "random_images":
        features = random_images(features, 2, seed)
    task = completion_data(features, targets, 2)
    return task._replace(
        indices=task.indices.to(device), targets=task.targets.to(device=device, dtype=dtype)
    )


def mean_errors(model: CPNetwork, task, value: float, cap: float | None = None) -> torch.Tensor:
    """Mean squared error of each of the model's ranks divided by ``value**2`` (the error on 0/1
    labels), each sample's squared error capped at ``cap`` first (the paper's test error)."""
    chunks = range(0, len(task.targets), 5000)
    outputs = torch.cat([model(task.indices[i : i + 5000]) for i in chunks])
    squared = (outputs - task.targets[:, None]) ** 2
    return (squared if cap is None else squared.clamp(max=cap)).mean(dim=0) / value**2


def run_natural(
    config: NaturalConfig,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    out_dir: str | Path | None = None,
    progress: bool = True,
    shard: tuple[int, int] | None = None,
    data_dir: str | Path | None = None,
) -> NaturalResult:
    """Fit every (dataset, variant, seed) of the experiment: one CP network per run holding all
    the ranks side by side (Adam updates each parameter on its own, so this equals one run per
    rank). With ``out_dir`` each run checkpoints there and the results so far are written after
    every run, so calling again resumes; ``shard=(k, n)`` runs every n-th run from the k-th and
    writes ``results-shard{k}of{n}.json`` (join the shards with ``NaturalResult.merge``).

    Explained in the "Natural vs. random data" chapter.
    """
    unknown = sorted({*config.variants} - {*VARIANTS}) + sorted({*config.datasets} - {*DATASETS})
    if unknown:
        raise ValueError(f"unknown {unknown}: variants are {VARIANTS}, data sets {DATASETS}")
    device = torch.device(device) if device is not None else default_device()
    out_dir = Path(out_dir) if out_dir is not None else None
    name = "results.json" if shard is None else f"results-shard{shard[0]}of{shard[1]}.json"
    runs = [(d, v, s) for d in config.datasets for v in config.variants for s in config.seeds]
    mine = [key for position, key in enumerate(runs) if in_shard(position, shard)]
    result = NaturalResult(config)
    for dataset in dict.fromkeys(key[0] for key in mine):
        parts = load_task(dataset, config, data_dir)
        variance = [float((y / config.value).var(unbiased=False)) for _, y in parts]
        for key in [key for key in mine if key[0] == dataset]:
            _, variant, seed = key
            train, test = (
                variant_data(x, y, variant, 1000 * seed + i, device, dtype)
                for i, (x, y) in enumerate(parts)
            )
            model = CPNetwork(
                train.shape,
                config.ranks,
                config.init_std,
                config.init_mean,
                seed=1000 * seed + 2,
                device=device,
                dtype=dtype,
            )
            if config.normalize_init:  # R^(-1/N) on each of N factors: each component over R
                scale = [r ** (-1 / len(train.shape)) for r in config.ranks for _ in range(r)]
                with torch.no_grad():
                    model.weight.mul_(torch.tensor(scale).to(model.weight))
            per_epoch = math.ceil(len(train.targets) / config.batch_size)
            errors = {
                "train": lambda m, task=train: mean_errors(m, task, config.value),
                "test": lambda m, task=test: mean_errors(m, task, config.value, config.test_cap),
            }
            history = fit(
                model,
                train.indices,
                train.targets,
                steps=config.epochs * per_epoch,
                optimizer=config.optimizer,
                lr=config.lr,
                loss_tol=config.loss_tol,
                batch_size=config.batch_size,
                seed=seed,
                track=errors,
                track_every=config.track_every * per_epoch,
                progress=progress,
                description=f"{dataset} {variant} seed {seed}",
                checkpoint=out_dir / f"{dataset}_{variant}_seed{seed}.pt" if out_dir else None,
                checkpoint_every=10 * per_epoch,  # a killed run loses at most 10 epochs
            )
            history.metrics["variance"] = variance
            result.runs[key] = history
            if history.status == "interrupted":
                return result
            if out_dir is not None:
                result.save(out_dir / name)
    return result


def run_command(args: argparse.Namespace) -> None:
    """``python -m tflib.experiments natural``: run (or merge shards), write results and figure."""
    from tflib.plots import natural_result_figure

    out = Path(args.out)
    if args.merge:
        result = NaturalResult.merge(NaturalResult.load(path) for path in args.merge)
        result.save(out / "results.json")
    else:
        config = natural_config(args.scale, **cli_overrides(args, "epochs"))
        print(f"natural vs random, scale {args.scale!r}, {config.datasets}, writing to {out}")
        options = run_options(args) | {"shard": args.shard, "data_dir": args.data_dir}
        result = run_natural(config, **options)
        if result.interrupted:
            return print("interrupted: run the same command again to resume")
    if args.shard is not None:
        print(f"shard done; when all are, merge them: --merge {out}/results-shard*.json")
        return
    natural_result_figure(result).savefig(out / "natural.png", bbox_inches="tight")
    print(f"results in {out / 'results.json'}, figure in {out / 'natural.png'}")


def add_command(commands) -> None:
    """Add the ``natural`` subcommand to the command line's subparsers."""
    command = commands.add_parser("natural", help="natural vs random data (tensor rank)")
    add_common_options(command, SCALES, "results/natural", run_command)
    command.add_argument("--epochs", type=int, help="override the epochs of each run")
    command.add_argument("--data-dir", help="folder of the MNIST files (default $TFLIB_DATA)")
    command.add_argument(
        "--shard",
        type=lambda text: tuple(map(int, text.split("/"))),
        help="run shard k/n only (k < n)",
    )
    command.add_argument("--merge", nargs="+", help="merge these shard results into --out")
