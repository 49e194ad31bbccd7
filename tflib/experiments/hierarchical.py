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

import numpy as np
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
    significant,
)
from tflib.hierarchical import (
    HierarchicalFactorization,
    matricization,
    matricization_ranks,
    mode_tree,
)
from tflib.metrics import count_jumps, effective_rank, normalized_reconstruction_error, rise_steps
from tflib.train import History, fit


@dataclass(frozen=True)
class HierarchicalConfig:
    """Settings; the defaults are the follow-up's. The target is a
    :func:`~tflib.data.random_hierarchical_tensor` of ``target_ranks`` on the mode tree of
    ``target_pool`` (one level: a CP tensor), with entries of mean square one; ``mode_order``, a
    permutation of the modes, rearranges its entries (``(0, 2, 1, 3)`` makes the interactions of
    modes 1 and 2 meet only at the root of the binary tree)."""

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
    mode_order: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        positive = ("shape", "target_ranks", "target_pool", "n_observations", "widths", "lr")
        check_config(self, positive=positive)
        if self.n_observations > math.prod(self.shape):
            raise ValueError(f"n_observations exceeds the {math.prod(self.shape)} entries")
        order = self.mode_order
        if order is not None and sorted(order) != list(range(len(self.shape))):
            raise ValueError(
                f"mode_order must be a permutation of 0, ..., {len(self.shape) - 1}, got {order}"
            )
        if order is not None and tuple(self.shape[n] for n in order) != tuple(self.shape):
            raise ValueError(f"mode_order {order} changes the shape {self.shape}")


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
    if config.mode_order is not None:
        target = target.permute(config.mode_order).contiguous()
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


#: A singular value of a matricization counts towards its rank above this share of the largest.
RANK_RTOL = 1e-2

#: The training losses at which the records keep the reconstruction error, to compare two runs
#: at the same fit of their observations.
LOSS_LEVELS = (1e-1, 1e-2, 1e-3, 1e-4)


def run_records(result: HierarchicalResult) -> list[dict]:
    """The final numbers of every run, four significant digits: ``seed``, ``status`` (as in
    :class:`~tflib.train.History`), ``steps``, ``loss``, ``error``, the loss halfway through
    (``halfway_loss``: at the record closest to half the steps) and ``error_at_loss``, the error
    at the first record whose loss is below each of :data:`LOSS_LEVELS` (None where it never
    was); at the nodes below the root,
    the ranks of the solution's matricizations (``ranks``: singular values above
    :data:`RANK_RTOL` times the largest) and their ``effective_ranks``, beside the target's
    (``target_ranks``, ``target_effective_ranks``); at the root, how its local components rose:
    ``root_rank``, the number it needs (the target's rank at the root's first child),
    ``jumps`` (:func:`~tflib.metrics.count_jumps` at 5% of the ``root_rank``-th largest final
    norm) and ``in_turn`` (whether the ``root_rank`` largest rose in turn,
    :func:`~tflib.metrics.rise_steps`).

    Explained in the "Beyond CP: hierarchical tensor factorization" chapter.
    """
    config, records = result.config, []
    tree = mode_tree(len(config.shape))
    for (seed,), history in sorted(result.runs.items()):
        target = problem(config, seed, dtype=torch.float64)[0]
        target_ranks = list(matricization_ranks(target, tree, RANK_RTOL).values())
        nodes = [node for level in tree[:-1] for node in level]
        target_effective = [effective_rank(matricization(target, node)) for node in nodes]
        values, root = history["singular_values"][-1], history["norms"][:, -1]
        k = min(target_ranks[nodes.index(tree[-2][0])], root.shape[1])
        starts, ends = rise_steps(history["steps"], root, k)
        steps, loss, error = history["steps"], history["loss"], history["error"]
        at_loss = {}
        for level in LOSS_LEVELS:
            below = loss < level
            at_loss[f"{level:g}"] = significant(error[below.argmax()]) if below.any() else None
        records.append(
            {"seed": seed, "status": history.status, "steps": history.steps[-1]}
            | {"loss": significant(loss[-1]), "error": significant(error[-1])}
            | {"halfway_loss": significant(loss[np.abs(steps - steps[-1] / 2).argmin()])}
            | {"error_at_loss": at_loss}
            | {"ranks": (values > RANK_RTOL * values[:, :1]).sum(axis=1).tolist()}
            | {"effective_ranks": [significant(e) for e in history["effective_ranks"][-1]]}
            | {"target_ranks": target_ranks}
            | {"target_effective_ranks": [significant(e) for e in target_effective]}
            | {"root_rank": k, "jumps": count_jumps(root, 0.05 * root[-1, k - 1])}
            | {"in_turn": all(e < s for e, s in zip(ends, starts[1:]))}
        )
    return records


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
    run_records,
    options=(
        ("--target-ranks", {"type": int, "nargs": "+", "help": "the target's ranks per level"}),
        ("--target-pool", {"type": int, "help": "the target's tree: children per node"}),
        ("--mode-order", {"type": int, "nargs": "+", "help": "rearrange the target's modes"}),
        ("--n-observations", {"type": int, "help": "override the observed entries"}),
        ("--max-steps", {"type": int, "help": "override the step budget of each run"}),
        ("--loss-tol", {"type": float, "help": "override the training loss that stops a run"}),
    ),
)
