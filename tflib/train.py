r"""Fitting observed entries by gradient descent, with a recorded history.

The loss is the mean squared error over the M observed entries,

.. math:: \mathcal{L} = \frac{1}{M} \sum_{m=1}^{M} \big(\mathcal{W}_{i^{(m)}} - y_m\big)^2 ,

where :math:`\mathcal{W}_{i^{(m)}}` is the model's entry at the m-th observed multi-index.

Explained in the CP dynamics chapter.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import pickle
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from tflib.checks import check_number, check_same_device


class DivergenceError(RuntimeError):
    """The loss became NaN or infinite. ``history`` holds everything recorded before that step."""

    def __init__(self, message: str, history: History) -> None:
        super().__init__(message)
        self.history = history


@dataclass
class History:
    """What :func:`fit` recorded: the loss and every tracked metric at ``steps``.

    ``status`` is "running", "converged" (loss below the tolerance), "budget" (ran all steps),
    "interrupted" (stopped by Ctrl-C; the history up to then is kept) or "diverged".
    """

    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    metrics: dict[str, list] = field(default_factory=dict)
    status: str = "running"

    def __getitem__(self, name: str) -> np.ndarray:
        """``history["loss"]``, ``history["steps"]`` or a tracked metric, as a NumPy array."""
        if name in ("steps", "loss"):
            return np.asarray(getattr(self, name))
        return np.asarray(self.metrics[name])

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> History:
        return cls(**data)


class AdaptiveStepGD(torch.optim.Optimizer):
    r"""Gradient descent with one scalar step size that adapts, as in the paper's experiments.

    The direction is plain gradient descent's; the step is rescaled by a bias-corrected moving
    average of the squared gradient norm over all parameters:

    .. math::
        v_t = \beta v_{t-1} + (1 - \beta) \|g_t\|^2, \qquad
        \theta_{t+1} = \theta_t - \frac{\eta}{\sqrt{v_t / (1 - \beta^t)} + \epsilon}\, g_t .

    On the long plateaus of small initialization the gradient is tiny and the step grows, so the
    plateaus are crossed in fewer iterations; the trajectory is still one of gradient descent.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float = 1e-2,
        beta: float = 0.99,
        eps: float = 1e-6,
    ) -> None:
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if not 0 <= beta < 1:
            raise ValueError(f"beta must lie in [0, 1), got {beta}")
        super().__init__(params, {"lr": lr, "beta": beta, "eps": eps})

    @torch.no_grad()
    def step(self, closure: Callable | None = None) -> None:
        params = [p for group in self.param_groups for p in group["params"] if p.grad is not None]
        if not params:
            return
        group, grads = self.param_groups[0], [p.grad for p in params]
        state = self.state[group["params"][0]]  # one scalar state for all parameters
        if not state:
            state["t"], state["v"] = 0, 0.0
        state["t"] += 1
        squared_norm = float(torch.stack(torch._foreach_norm(grads)).double().square().sum())
        state["v"] = group["beta"] * state["v"] + (1 - group["beta"]) * squared_norm
        v_hat = state["v"] / (1 - group["beta"] ** state["t"])
        torch._foreach_add_(params, grads, alpha=-group["lr"] / (math.sqrt(v_hat) + group["eps"]))


def make_optimizer(name: str, params: Iterable[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    """An optimizer by name: "gd" (plain), "adaptive_gd" (:class:`AdaptiveStepGD`) or "adam"."""
    if name == "gd":
        return torch.optim.SGD(params, lr=lr)
    if name == "adaptive_gd":
        return AdaptiveStepGD(params, lr=lr)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    raise ValueError(f'optimizer must be "gd", "adaptive_gd" or "adam", got {name!r}')


def _check_targets(targets: torch.Tensor, indices: torch.Tensor) -> None:
    if targets.ndim != 1 or targets.shape[0] != indices.shape[0]:
        raise ValueError(
            f"targets must have shape (M,) = ({indices.shape[0]},) to match indices, "
            f"got {tuple(targets.shape)}"
        )
    bad = ~torch.isfinite(targets)
    if bad.any():
        where = bad.nonzero().flatten()[:5].tolist()
        raise ValueError(
            f"targets contain {int(bad.sum())} NaN or infinite values (first at positions "
            f"{where}); drop those observations or fill them in before fitting"
        )


def _save(path: Path, payload: dict) -> None:
    """Write a checkpoint atomically, so an interruption never leaves a broken file; the partial
    file is named for this process, so two writers never share one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    torch.save(payload, partial)
    os.replace(partial, path)


def digest(*tensors: torch.Tensor) -> str:
    """A short fingerprint of the values, shapes and dtypes of tensors (SHA-256, 16 hex digits)."""
    hasher = hashlib.sha256()
    for t in tensors:
        hasher.update(f"{tuple(t.shape)} {t.dtype};".encode())
        hasher.update(t.detach().cpu().contiguous().numpy().tobytes())
    return hasher.hexdigest()[:16]


def check_settings(what: str, stored: dict | None, expected: dict) -> None:
    """Refuse to resume ``what`` (a checkpoint or a results folder) that other settings made:
    a ``ValueError`` names each differing setting, its stored value and the new one."""
    if stored == expected:
        return
    if stored is None:
        raise ValueError(
            f"{what} carries no record of the settings that made it (an older tflib?); "
            "delete it, or write to another place"
        )
    changed = [
        f"{name}: {stored.get(name)!r} there, {expected.get(name)!r} now"
        for name in sorted({*stored, *expected}, key=str)
        if stored.get(name) != expected.get(name)
    ]
    raise ValueError(
        f"{what} was made with other settings ({'; '.join(changed)}); resuming it would mix "
        "two experiments: write to another place, or discard it (--force at the command line)"
    )


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint written by :func:`fit`, with a clear error if it is damaged.

    Only tensors and plain data are read (``weights_only=True``): a file that carries any other
    pickled object is refused, so opening a checkpoint from elsewhere cannot run code.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise RuntimeError(
            f"checkpoint {path} holds objects other than tensors and plain data, so it was not "
            "loaded (it may not come from tflib); delete it to start that run afresh"
        ) from error
    except Exception as error:  # a truncated or foreign file: say which and what to do
        raise RuntimeError(
            f"checkpoint {path} cannot be read ({error}); delete it to start that run afresh"
        ) from error


@contextlib.contextmanager
def _interrupt_between_steps() -> Iterator[dict]:
    """Turn Ctrl-C (SIGINT) and a job scheduler's SIGTERM into a flag checked between steps, so
    a step is never left half done and the run is checkpointed before it stops."""
    flag = {"raised": False}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: object) -> None:
        flag["raised"] = True

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def epoch_order(n: int, seed: int, epoch: int, device: torch.device) -> torch.Tensor:
    """The order in which epoch ``epoch`` visits the ``n`` observations: a permutation that depends
    only on ``(seed, epoch)``, so a resumed run visits them exactly as an uninterrupted one."""
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return torch.from_numpy(order).to(device)


def _evaluations_below(history: History, loss_tol: float, track_every: int) -> int:
    """How many evaluations (records at multiples of ``track_every``) at the end of ``history``
    had a loss below ``loss_tol`` in a row: the count a resumed run continues from."""
    count = 0
    for step, loss in zip(reversed(history.steps), reversed(history.loss)):
        if step % track_every == 0:
            if not loss < loss_tol:
                break
            count += 1
    return count


def loss_and_gradients(
    model: nn.Module, indices: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
    """The mean squared error of ``model`` on observations and its gradient for every parameter.

    A model that defines ``loss_and_gradients(indices, targets)`` computes both itself (in closed
    form, say, as :class:`~tflib.CPFactorization` does); otherwise autograd differentiates the
    error of its predicted entries.
    """
    own = getattr(model, "loss_and_gradients", None)
    if own is not None:
        return own(indices, targets)
    loss = nn.functional.mse_loss(model(indices), targets)
    return loss.detach(), list(
        torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
    )


def fit(
    model: nn.Module,
    indices: torch.Tensor,
    targets: torch.Tensor,
    *,
    steps: int,
    optimizer: str = "gd",
    lr: float = 1e-2,
    loss_tol: float = 0.0,
    patience: int | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    track: dict[str, Callable[[nn.Module], float | torch.Tensor]] | None = None,
    track_every: int = 25,
    progress: bool = True,
    description: str | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 1000,
    after_step: Callable[[torch.optim.Optimizer], None] | None = None,
) -> History:
    r"""Minimize the mean squared error over observed entries and record how training went.

    Explained in the CP dynamics chapter.

    Parameters
    ----------
    model : maps an ``(M, N)`` tensor of multi-indices to the ``(M,)`` predicted entries
        (:class:`~tflib.CPFactorization`, :class:`~tflib.DeepMatrixFactorization`, ...). A model
        may also compute its loss and gradients itself (see :func:`loss_and_gradients`).
    indices, targets : the observed multi-indices, shape (M, N), and their values, shape (M,)
    steps : the step budget; a step is one update of the parameters
    optimizer : "gd", "adaptive_gd" (the paper's, :class:`AdaptiveStepGD`) or "adam"
    lr : learning rate
    loss_tol : the loss below which training stops (see ``patience``)
    patience : None: stop at the first step whose loss is below ``loss_tol``. An integer k: the
        research code's rule; the loss is evaluated every ``track_every`` steps and training stops
        once it has been below ``loss_tol`` at k consecutive evaluations (with ``track_every=25``
        and ``patience=50``, about 1,250 steps after it first falls below)
    batch_size : None for full-batch gradient descent; else each step uses the next
        ``batch_size`` observations of a random order that is drawn afresh every epoch (an epoch
        is ``ceil(M / batch_size)`` steps), and the recorded loss is that batch's
    seed : seeds the order of the observations in each epoch (with ``batch_size``)
    track : functions of the model evaluated every ``track_every`` steps, e.g.
        ``{"error": lambda m: normalized_reconstruction_error(m.full(), target)}``
    progress : show a progress bar
    checkpoint : a file to save the state to every ``checkpoint_every`` steps and on Ctrl-C; if it
        exists, training resumes from it (and returns at once if that run had finished)
    after_step : called with the optimizer after every step (the dynamics experiment's clock
        reads the step size there)

    Returns
    -------
    History: the loss and the tracked metrics at steps 0, k, 2k, ... and at the last step.
    Ctrl-C stops training and returns the history so far (``status == "interrupted"``).

    Raises
    ------
    DivergenceError : the loss became NaN or infinite; it names the step and carries the history.
    """
    check_number("steps", steps, low=0, integer=True)
    check_number("lr", lr, low=0, strict=True)
    check_number("loss_tol", loss_tol, low=0)
    for name, value in [("track_every", track_every), ("checkpoint_every", checkpoint_every)]:
        check_number(name, value, low=1, integer=True)
    for name, value in [("patience", patience), ("batch_size", batch_size)]:
        if value is not None:
            check_number(name, value, low=1, integer=True)
    parameters = list(model.parameters())
    check_same_device(model=parameters[0], indices=indices, targets=targets)
    _check_targets(targets, indices)
    if targets.dtype != parameters[0].dtype:
        targets = targets.to(parameters[0].dtype)
    opt = make_optimizer(optimizer, parameters, lr)
    track = track or {}
    history = History(metrics={name: [] for name in track})
    step = 0
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    n_batches = 1 if batch_size is None else math.ceil(len(targets) / batch_size)
    order: dict[int, torch.Tensor] = {}  # the current epoch's order of the observations

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        if n_batches == 1:
            return indices, targets
        epoch, k = divmod(step, n_batches)
        if epoch not in order:
            order.clear()
            order[epoch] = epoch_order(len(targets), seed, epoch, targets.device)
        rows = order[epoch][k * batch_size : (k + 1) * batch_size]
        return indices.index_select(0, rows), targets.index_select(0, rows)

    settings = {  # what a checkpoint must have been made with to be resumed
        "data": digest(indices, targets) if checkpoint is not None else None,
        "optimizer": optimizer,
        "lr": lr,
        "loss_tol": loss_tol,
        "patience": patience,
        "batch_size": batch_size,
        "seed": seed,
        "track_every": track_every,
        "track": sorted(track),
    }

    def save() -> None:
        if checkpoint is not None:
            payload = {"model": model.state_dict(), "optimizer": opt.state_dict()}
            state = {"history": history.to_dict(), "step": step, "settings": settings}
            _save(checkpoint, payload | state)

    if checkpoint is not None and checkpoint.is_dir():
        raise ValueError(f"checkpoint {checkpoint} is a folder; give the path of a file in it")
    if checkpoint is not None and checkpoint.exists():
        state = load_checkpoint(checkpoint)
        check_settings(f"checkpoint {checkpoint}", state.get("settings"), settings)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        history, step = History.from_dict(state["history"]), state["step"]
        if history.status == "converged" or (history.status == "budget" and step >= steps):
            return history
        if history.steps and history.steps[-1] == step:  # the final record is made again below
            for series in (history.steps, history.loss, *history.metrics.values()):
                series.pop()

    def record(loss_value: float) -> None:
        with torch.no_grad():
            values = {name: metric(model) for name, metric in track.items()}
        history.steps.append(step)
        history.loss.append(loss_value)
        for name, value in values.items():
            history.metrics[name].append(
                value.tolist() if isinstance(value, torch.Tensor) else float(value)
            )

    below = _evaluations_below(history, loss_tol, track_every)
    bar = tqdm(total=steps, initial=step, disable=not progress, desc=description, leave=False)
    history.status = "running"
    with _interrupt_between_steps() as interrupt, contextlib.closing(bar):
        while not interrupt["raised"]:
            loss, gradients = loss_and_gradients(model, *batch())
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                history.status = "diverged"
                raise DivergenceError(
                    f"the loss became {loss_value} at step {step} (optimizer {optimizer!r}, "
                    f"lr={lr}); lower the learning rate or the initialization scale. "
                    "The history up to this step is in the error's .history",
                    history,
                )
            evaluated = step % track_every == 0
            if evaluated and patience is not None:
                below = below + 1 if loss_value < loss_tol else 0
            converged = below >= patience if patience is not None else loss_value < loss_tol
            if evaluated or converged or step >= steps:
                record(loss_value)
                bar.set_postfix(loss=f"{loss_value:.2e}", refresh=False)
            if converged or step >= steps:
                history.status = "converged" if converged else "budget"
                break
            for parameter, gradient in zip(parameters, gradients):
                parameter.grad = gradient
            opt.step()
            if after_step is not None:
                after_step(opt)
            step += 1
            if step % track_every == 0:
                bar.update(step - bar.n)
            if step % checkpoint_every == 0:
                save()
        if interrupt["raised"]:
            history.status = "interrupted"
    save()
    return history
