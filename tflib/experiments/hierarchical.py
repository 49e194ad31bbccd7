"""The hierarchical experiment: tensor completion by a hierarchical tensor factorization from a
small initialization (Razin, Maman & Cohen, 2022), tracking the local component norms of every
node, the effective ranks of the matricizations at the tree's nodes and the reconstruction error.

Explained in the "Beyond CP: hierarchical tensor factorization" chapter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from tflib.data import random_hierarchical_tensor
from tflib.experiments import dynamics
from tflib.experiments.cli import Command, save_figure
from tflib.experiments.results import (
    INIT,
    TARGET,
    Results,
    check_config,
    config_at_scale,
    fit_options,
    resolve_device,
    run_keys,
    seed_for,
)
from tflib.hierarchical import HierarchicalFactorization, matricization, mode_tree
from tflib.metrics import effective_rank, normalized_reconstruction_error
from tflib.train import History, fit


@dataclass(frozen=True)
class HierarchicalConfig:
    """Settings; the defaults are the follow-up's. The target is a
    :func:`~tflib.data.random_hierarchical_tensor` of ``target_ranks`` on the mode tree of
    ``target_pool`` (one level: a CP tensor), with entries of mean square one."""

    shape: tuple[int, ...] = (8, 8, 8, 8)
    target_ranks: tuple[int, ...] = (5, 5)
    target_pool: int = 2
    n_observations: int = 2048
    widths: tuple[int, ...] = (512, 512)
    init_std: float = 1e-2
    lr: float = 1e-2
    optimizer: str = "adaptive_gd"
    max_steps: int = 500_000
    loss_tol: float = 5e-5
    track_every: int = 25
    n_tracked: int = 10
    seeds: tuple[int, ...] = (0,)

    def __post_init__(self) -> None:
        positive = ("shape", "target_ranks", "target_pool", "n_observations", "widths", "lr")
        check_config(self, positive=positive)
        if self.n_observations > math.prod(self.shape):
            raise ValueError(f"n_observations exceeds the {math.prod(self.shape)} entries")


#: "book": a 6 x 6 x 6 x 6 tensor of CP rank 3, widths 16 (about 20 s on 2 CPU cores); "paper":
#: the follow-up's setting, a target of hierarchical rank (5, 5), for five seeds.
SCALES = {
    "book": HierarchicalConfig((6, 6, 6, 6), (3,), 4, 800, (16, 16), 3e-2, max_steps=30_000),
    "paper": HierarchicalConfig(seeds=(0, 1, 2, 3, 4)),
}


def hierarchical_config(scale: str = "book", seed: int = 0, **overrides) -> HierarchicalConfig:
    """The configuration at a scale, its seeds counted from ``seed``, any field overridden."""
    return config_at_scale(SCALES, scale, seed, **overrides)


@dataclass
class HierarchicalResult(Results):
    """Histories keyed by (seed,), tracking "norms" (per pooling node, level by level and the root
    last, its largest local component norms), "singular_values" (the largest) and
    "effective_ranks" of the matricizations at the nodes below the root, and "error"."""

    config_type: ClassVar[type] = HierarchicalConfig
    key_names: ClassVar[tuple[str, ...]] = ("seed",)

    def history(self, seed: int | None = None) -> History:
        return self.runs[(self.config.seeds[0] if seed is None else seed,)]


def problem(config: HierarchicalConfig, seed: int, device=None, dtype=torch.float32):
    """The target tensor (entries of mean square one), observed indices and observed values of one
    seed, drawn with the seeds of :func:`~tflib.experiments.dynamics.run_dynamics`: a target of one
    level is the dynamics experiment's, scaled.

    Explained in the "Beyond CP: hierarchical tensor factorization" chapter.
    """
    size, ranks = math.prod(config.shape) ** 0.5, config.target_ranks
    options = {"pool": config.target_pool, "seed": seed_for(seed, TARGET)}
    options |= {"device": device, "dtype": dtype}
    target = random_hierarchical_tensor(config.shape, ranks, size, **options)
    return dynamics.problem(config, seed, device, dtype, target=target)


def run_hierarchical(
    config: HierarchicalConfig,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
    **loop,
) -> HierarchicalResult:
    """Run every seed through :func:`~tflib.experiments.results.run_keys` (``loop``: its
    ``out_dir``, ``shard``, ``force``).

    Explained in the "Beyond CP: hierarchical tensor factorization" chapter.
    """
    device = resolve_device(device)
    result = HierarchicalResult(config, settings={"dtype": str(dtype)})
    top = min(config.n_tracked, *config.widths)
    nodes = [node for level in mode_tree(len(config.shape))[:-1] for node in level]
    rows = [math.prod(config.shape[n] for n in node) for node in nodes]
    spectrum = min(config.n_tracked, *rows, *(math.prod(config.shape) // r for r in rows))

    def spectra(m: HierarchicalFactorization) -> list[torch.Tensor]:
        """The singular values of the matricizations at the tree's nodes below the root."""
        return [torch.linalg.svdvals(matricization(m.full(), node)) for node in nodes]

    def run(key: tuple, checkpoint) -> History:
        (seed,) = key
        target, indices, targets = problem(config, seed, device, dtype)
        model = HierarchicalFactorization(
            config.shape, config.widths, config.init_std, seed=seed_for(seed, INIT), device=device
        ).to(dtype)
        track = {
            "norms": lambda m: torch.cat([n.topk(top).values for n in m.local_component_norms()]),
            "singular_values": lambda m: torch.stack([s[:spectrum] for s in spectra(m)]),
            "effective_ranks": lambda m: torch.tensor([effective_rank(s) for s in spectra(m)]),
            "error": lambda m: normalized_reconstruction_error(m.full(), target),
        }
        run = {"track": track, "progress": progress, "description": f"seed {seed}"}
        options = run | {"checkpoint": checkpoint()} | fit_options(config)
        return fit(model, indices, targets, steps=config.max_steps, **options)

    keys = [(seed,) for seed in config.seeds]
    return run_keys(result, keys, run, **loop)


def report(result: HierarchicalResult, out: Path) -> None:
    """Print each seed's final error and draw its root's local component norms."""
    from tflib.plots import plot_component_norms

    for seed in result.config.seeds:
        history = result.history(seed)
        ax = plot_component_norms(history["steps"], history["norms"][:, -1], title="root")
        path = save_figure(ax.figure, out, seed)
        print(f"seed {seed}: final error {history['error'][-1]:.3g}, local component norms {path}")


COMMAND = Command(
    "hierarchical",
    "local component norms (Beyond CP)",
    SCALES,
    hierarchical_config,
    HierarchicalResult,
    run_hierarchical,
    report,
)
