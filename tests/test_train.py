"""Training: update rules, the history, stopping, divergence, Ctrl-C and resuming."""

from __future__ import annotations

import os
import re
import signal

import numpy as np
import pytest
import torch
from conftest import raising_handler, random_indices

from tflib.cp import CPFactorization
from tflib.train import AdaptiveStepGD, DivergenceError, History, fit

SHAPE, RANK = (3, 4, 5), 4


def problem(seed=0, n=30):
    """Observed indices (some repeated) and targets of a random tensor, in float64."""
    generator = torch.Generator().manual_seed(seed)
    indices = random_indices(SHAPE, n, seed=seed)
    targets = torch.randn(n, dtype=torch.float64, generator=generator)
    return indices, targets


def model(seed=0, init_std=0.5, dtype=torch.float64):
    return CPFactorization(SHAPE, RANK, init_std, seed=seed, dtype=dtype)


def reference_loss(factors, indices, targets):
    """Mean squared error written out with explicit row products: no tflib code."""
    product = factors[0][indices[:, 0]]
    for n in range(1, len(factors)):
        product = product * factors[n][indices[:, n]]
    return ((product.sum(dim=1) - targets) ** 2).mean()


def sum_of_squares(m):
    return sum(float(p.detach().pow(2).sum()) for p in m.parameters())


def interrupting_metric(at_step_call, signum=signal.SIGINT):
    """A metric that sends ``signum`` to this process on its ``at_step_call``-th call (from 0)."""
    calls = {"n": 0}

    def metric(m):
        if calls["n"] == at_step_call:
            os.kill(os.getpid(), signum)
        calls["n"] += 1
        return sum_of_squares(m)

    return metric


def same_parameters(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))


def same_history(a: History, b: History):
    return (a.steps, a.loss, a.metrics, a.status) == (b.steps, b.loss, b.metrics, b.status)


# --- update rules ---------------------------------------------------------------------------------


def test_gd_matches_a_hand_written_gradient_descent_loop():
    indices, targets = problem()
    trained, lr, steps = model(), 0.05, 25
    factors = [f.detach().clone().requires_grad_() for f in trained.factors]
    fit(trained, indices, targets, steps=steps, optimizer="gd", lr=lr, progress=False)
    for _ in range(steps):
        grads = torch.autograd.grad(reference_loss(factors, indices, targets), factors)
        with torch.no_grad():
            for f, g in zip(factors, grads):
                f -= lr * g
    for p, f in zip(trained.factors, factors):
        torch.testing.assert_close(p.detach(), f.detach(), rtol=1e-12, atol=1e-14)


def hand_written_adaptive_gd(factors, loss_fn, steps, lr, beta=0.99, eps=1e-6):
    v = 0.0
    for t in range(1, steps + 1):
        grads = torch.autograd.grad(loss_fn(factors), factors)
        v = beta * v + (1 - beta) * sum(float((g.double() ** 2).sum()) for g in grads)
        step = lr / ((v / (1 - beta**t)) ** 0.5 + eps)
        with torch.no_grad():
            for f, g in zip(factors, grads):
                f -= step * g
    return factors


def test_adaptive_gd_optimizer_follows_its_rule():
    target = torch.linspace(-1, 1, 7, dtype=torch.float64)
    start = [torch.randn(7, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64)]

    def loss_fn(params):
        return ((params[0] - target) ** 4).sum() + params[1].pow(2).sum() * params[0].sum() ** 2

    params = [p.clone().requires_grad_() for p in start]
    optimizer = AdaptiveStepGD(params, lr=0.03, beta=0.9, eps=1e-3)
    for _ in range(15):
        optimizer.zero_grad()
        loss_fn(params).backward()
        optimizer.step()
    expected = hand_written_adaptive_gd(
        [p.clone().requires_grad_() for p in start], loss_fn, 15, 0.03, beta=0.9, eps=1e-3
    )
    for p, e in zip(params, expected):
        torch.testing.assert_close(p.detach(), e.detach(), rtol=1e-12, atol=1e-14)


def test_fit_adaptive_gd_matches_the_hand_written_rule():
    indices, targets = problem(seed=1)
    trained, lr, steps = model(seed=1, init_std=0.1), 0.01, 30
    factors = [f.detach().clone().requires_grad_() for f in trained.factors]
    fit(trained, indices, targets, steps=steps, optimizer="adaptive_gd", lr=lr, progress=False)
    expected = hand_written_adaptive_gd(
        factors, lambda fs: reference_loss(fs, indices, targets), steps, lr
    )
    for p, e in zip(trained.factors, expected):
        torch.testing.assert_close(p.detach(), e.detach(), rtol=1e-10, atol=1e-13)


def test_adaptive_gd_skips_parameters_without_gradient():
    used, unused = torch.ones(3, requires_grad=True), torch.ones(3, requires_grad=True)
    optimizer = AdaptiveStepGD([used, unused], lr=0.1)
    used.sum().backward()
    optimizer.step()
    assert torch.equal(unused.detach(), torch.ones(3))
    assert not torch.equal(used.detach(), torch.ones(3))


@pytest.mark.parametrize(("kwargs", "message"), [({"lr": 0.0}, "lr"), ({"beta": 1.0}, "beta")])
def test_adaptive_gd_rejects_bad_hyperparameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AdaptiveStepGD([torch.zeros(1, requires_grad=True)], **kwargs)


def test_adam_runs_and_lowers_the_loss():
    indices, targets = problem(seed=2)
    history = fit(
        model(seed=2), indices, targets, steps=200, optimizer="adam", lr=0.05, progress=False
    )
    assert history.status == "budget"
    assert history.loss[-1] < 0.5 * history.loss[0]


# --- the history ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "every", "expected"),
    [(23, 5, [0, 5, 10, 15, 20, 23]), (20, 5, [0, 5, 10, 15, 20]), (3, 10, [0, 3]), (0, 4, [0])],
)
def test_history_records_every_k_steps_and_the_last(steps, every, expected):
    indices, targets = problem()
    history = fit(
        model(),
        indices,
        targets,
        steps=steps,
        lr=0.01,
        track={"size": sum_of_squares},
        track_every=every,
        progress=False,
    )
    assert history.steps == expected
    assert len(history.loss) == len(history["size"]) == len(expected)
    assert history["steps"].tolist() == expected


def test_history_loss_is_the_mean_squared_error_at_each_recorded_step():
    indices, targets = problem(seed=3)
    trained, snapshots = model(seed=3), []
    track = {"snapshot": lambda m: snapshots.append([f.detach().clone() for f in m.factors]) or 0}
    history = fit(
        trained, indices, targets, steps=6, lr=0.05, track=track, track_every=2, progress=False
    )
    expected = [float(reference_loss(s, indices, targets)) for s in snapshots]
    assert history.loss == pytest.approx(expected, rel=1e-12)


def test_tensor_valued_metrics_are_recorded_as_lists():
    indices, targets = problem()
    history = fit(
        model(),
        indices,
        targets,
        steps=4,
        track={"norms": lambda m: m.component_norms()},
        track_every=2,
        progress=False,
    )
    assert history["norms"].shape == (3, RANK)
    assert isinstance(history.metrics["norms"][0], list)


def test_fit_stops_at_loss_tol_with_status_converged():
    # a reachable target: a rank-one tensor observed at 20 distinct entries
    target = torch.einsum("i,j,k->ijk", *(torch.linspace(0.5, 1.5, d) for d in SHAPE)).double()
    flat = torch.randperm(60, generator=torch.Generator().manual_seed(4))[:20]
    indices = torch.stack(torch.unravel_index(flat, SHAPE), dim=1)
    targets = target[tuple(indices.T)]
    history = fit(
        model(seed=4),
        indices,
        targets,
        steps=2000,
        optimizer="adam",
        lr=0.05,
        loss_tol=1e-3,
        track_every=1,
        progress=False,
    )
    assert history.status == "converged"
    assert history.loss[-1] < 1e-3
    assert all(loss >= 1e-3 for loss in history.loss[:-1])
    assert history.steps[-1] < 2000


class ScriptedLoss(torch.nn.Module):
    """A model whose loss at step t is ``losses[t]`` (its gradient is zero): the stopping rule
    alone decides when training ends."""

    def __init__(self, losses):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.losses, self.calls = losses, 0

    def loss_and_gradients(self, indices, targets):
        loss = torch.tensor(self.losses[self.calls])
        self.calls += 1
        return loss, [torch.zeros(1)]


# evaluated every 2 steps: 0:1, 2:below, 4:above (resets), 6, 8, 10: below -> stops at 10
DIP_AND_RETURN = [1.0, 1.0, 1e-9, 1.0, 1.0, 1e-9, 1e-9, 1.0, 1e-9, 1.0, 1e-9] + [1e-9] * 9


def test_patience_stops_after_consecutive_evaluations_below_tolerance():
    indices, targets = torch.zeros(1, 1, dtype=torch.long), torch.zeros(1)
    history = fit(
        ScriptedLoss(DIP_AND_RETURN),
        indices,
        targets,
        steps=100,
        loss_tol=1e-8,
        patience=3,
        track_every=2,
        progress=False,
    )
    # the dip at step 2 does not count once step 4 is above; steps 6, 8, 10 are three in a row
    # (the losses between evaluations, such as step 7's, are not looked at)
    assert history.status == "converged"
    assert history.steps[-1] == 10


def test_without_patience_fit_stops_at_the_first_step_below_tolerance():
    indices, targets = torch.zeros(1, 1, dtype=torch.long), torch.zeros(1)
    history = fit(
        ScriptedLoss(DIP_AND_RETURN), indices, targets, steps=100, loss_tol=1e-8, progress=False
    )
    assert (history.status, history.steps[-1]) == ("converged", 2)


def test_patience_counts_on_across_a_resume(tmp_path):
    indices, targets = torch.zeros(1, 1, dtype=torch.long), torch.zeros(1)
    options = dict(loss_tol=1e-8, patience=3, track_every=2, progress=False)
    path = tmp_path / "run.pt"
    model = ScriptedLoss(DIP_AND_RETURN)
    first = fit(model, indices, targets, steps=8, checkpoint=path, **options)
    assert first.status == "budget"  # steps 6 and 8 below, two of three
    model.calls = 8  # the resumed model continues the script where the first run stopped
    resumed = fit(model, indices, targets, steps=100, checkpoint=path, **options)
    assert (resumed.status, resumed.steps[-1]) == ("converged", 10)


def test_patience_must_be_positive():
    with pytest.raises(ValueError, match="patience"):
        fit(model(), *problem(), steps=1, patience=0, progress=False)


def test_fit_runs_the_budget_with_status_budget():
    indices, targets = problem()
    history = fit(model(), indices, targets, steps=12, lr=0.01, loss_tol=1e-30, progress=False)
    assert history.status == "budget"
    assert history.steps[-1] == 12


def test_fit_converts_targets_to_the_model_dtype():
    indices, targets = problem()
    a = fit(model(), indices, targets, steps=3, progress=False)
    b = fit(model(), indices, targets.float(), steps=3, progress=False)
    assert a.loss[0] == pytest.approx(b.loss[0], rel=1e-6)


def test_identical_seeds_give_identical_runs():
    runs = []
    for _ in range(2):
        trained = model(seed=5, dtype=torch.float32)
        indices, targets = problem(seed=5)
        history = fit(
            trained,
            indices,
            targets,
            steps=30,
            optimizer="adaptive_gd",
            track={"size": sum_of_squares},
            track_every=3,
            progress=False,
        )
        runs.append((trained, history))
    assert same_parameters(runs[0][0], runs[1][0])
    assert same_history(runs[0][1], runs[1][1])


# --- divergence -----------------------------------------------------------------------------------


def test_diverging_run_raises_naming_the_step_and_keeping_the_history():
    indices, targets = problem(seed=6)
    with pytest.raises(DivergenceError, match=r"the loss became (nan|inf) at step \d+") as caught:
        fit(
            model(seed=6, init_std=1.0),
            indices,
            targets,
            steps=1000,
            lr=1e4,
            track={"size": sum_of_squares},
            track_every=1,
            progress=False,
        )
    step = int(re.search(r"at step (\d+)", str(caught.value)).group(1))
    history = caught.value.history
    assert isinstance(caught.value, RuntimeError)
    assert history.status == "diverged"
    assert history.steps == list(range(step))
    assert len(history["size"]) == step
    assert all(loss == loss and abs(loss) != float("inf") for loss in history.loss)


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_fit_rejects_non_finite_targets(bad):
    indices, targets = problem()
    targets[2] = bad
    with pytest.raises(ValueError, match=r"1 NaN or infinite values \(first at positions \[2\]\)"):
        fit(model(), indices, targets, steps=1, progress=False)


@pytest.mark.parametrize("targets_shape", [(29,), (31,), (30, 1)])
def test_fit_rejects_targets_of_the_wrong_shape(targets_shape):
    indices, _ = problem()
    with pytest.raises(ValueError, match=r"targets must have shape \(M,\) = \(30,\)"):
        fit(model(), indices, torch.zeros(targets_shape), steps=1, progress=False)


@pytest.mark.parametrize("name", ["sgd", "GD", "adamw"])
def test_fit_rejects_an_unknown_optimizer(name):
    indices, targets = problem()
    with pytest.raises(ValueError, match='optimizer must be "gd", "adaptive_gd" or "adam"'):
        fit(model(), indices, targets, steps=1, optimizer=name, progress=False)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"steps": -1}, ValueError, "steps must be a finite number >= 0"),
        ({"steps": float("nan")}, TypeError, "steps must be an integer, got nan"),
        ({"steps": 2.5}, TypeError, "steps must be an integer, got 2.5"),
        ({"steps": 5, "track_every": 0}, ValueError, "track_every must be a finite number >= 1"),
        ({"steps": 5, "checkpoint_every": 0}, ValueError, "checkpoint_every must be"),
        ({"steps": 5, "lr": 0}, ValueError, "lr must be a finite number > 0, got 0"),
        ({"steps": 5, "lr": float("nan")}, ValueError, "lr must be a finite number > 0"),
        ({"steps": 5, "loss_tol": float("nan")}, ValueError, "loss_tol must be a finite number"),
        ({"steps": 5, "batch_size": 0}, ValueError, "batch_size must be a finite number >= 1"),
    ],
)
def test_fit_rejects_bad_settings_before_any_step(kwargs, error, message):
    indices, targets = problem()
    trained = model()
    before = [p.detach().clone() for p in trained.parameters()]
    with pytest.raises(error, match=message):
        fit(trained, indices, targets, progress=False, **kwargs)
    assert all(torch.equal(a, b) for a, b in zip(before, trained.parameters()))


def test_fit_rejects_targets_on_another_device_than_indices():
    indices, targets = problem()
    with pytest.raises(ValueError, match="different devices.*targets on meta"):
        fit(model(), indices, targets.to("meta"), steps=1, progress=False)


def test_fit_rejects_data_on_another_device_than_the_model():
    indices, targets = problem()
    with pytest.raises(ValueError, match="different devices.*model on cpu.*indices on meta"):
        fit(model(), indices.to("meta"), targets.to("meta"), steps=1, progress=False)


# --- Ctrl-C, checkpoints and resuming -------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_sigint_or_sigterm_stops_training_with_status_interrupted(sigint_guard, signum):
    previous_sigterm = signal.signal(signal.SIGTERM, raising_handler)
    indices, targets = problem()
    history = fit(
        model(),
        indices,
        targets,
        steps=40,
        track={"size": interrupting_metric(at_step_call=2, signum=signum)},
        track_every=5,
        progress=False,
    )
    assert history.status == "interrupted"
    assert history.steps == [0, 5, 10]
    assert len(history["size"]) == 3
    assert signal.getsignal(signal.SIGINT) is sigint_guard
    assert signal.signal(signal.SIGTERM, previous_sigterm) is raising_handler


@pytest.mark.parametrize("optimizer", ["gd", "adaptive_gd", "adam"])
def test_resuming_an_interrupted_run_gives_the_uninterrupted_result(
    tmp_path, sigint_guard, optimizer
):
    indices, targets = problem(seed=7)
    options = dict(steps=40, optimizer=optimizer, lr=0.02, track_every=5, progress=False)
    straight = model(seed=7)
    expected = fit(straight, indices, targets, track={"size": sum_of_squares}, **options)

    checkpoint = tmp_path / "run.pt"
    first = fit(
        model(seed=7),
        indices,
        targets,
        track={"size": interrupting_metric(at_step_call=3)},
        checkpoint=checkpoint,
        **options,
    )
    assert first.status == "interrupted"
    assert checkpoint.exists()
    resumed = model(seed=99)  # the checkpoint, not the init, must decide where training resumes
    history = fit(
        resumed, indices, targets, track={"size": sum_of_squares}, checkpoint=checkpoint, **options
    )
    assert same_history(history, expected)
    assert same_parameters(resumed, straight)


def test_resuming_from_a_periodic_checkpoint_gives_the_uninterrupted_result(tmp_path):
    indices, targets = problem(seed=8)
    options = dict(steps=30, optimizer="adaptive_gd", track_every=4, progress=False)
    straight = model(seed=8)
    expected = fit(straight, indices, targets, track={"size": sum_of_squares}, **options)

    checkpoint = tmp_path / "run.pt"

    def crash_at_step_16(m):  # a crash that is not Ctrl-C: only the periodic checkpoint is left
        crash_at_step_16.calls += 1
        if crash_at_step_16.calls == 5:  # the record at step 16
            raise KeyError("crash")
        return sum_of_squares(m)

    crash_at_step_16.calls = 0
    with pytest.raises(KeyError):
        fit(
            model(seed=8),
            indices,
            targets,
            track={"size": crash_at_step_16},
            checkpoint=checkpoint,
            checkpoint_every=7,
            **options,
        )
    resumed = model(seed=8)
    history = fit(
        resumed,
        indices,
        targets,
        track={"size": sum_of_squares},
        checkpoint=checkpoint,
        checkpoint_every=7,
        **options,
    )
    assert same_history(history, expected)
    assert same_parameters(resumed, straight)


def test_a_finished_checkpoint_returns_at_once(tmp_path):
    indices, targets = problem(seed=9)
    checkpoint = tmp_path / "run.pt"
    trained = model(seed=9)
    options = dict(steps=12, track_every=5, progress=False, checkpoint=checkpoint)
    finished = fit(trained, indices, targets, track={"size": sum_of_squares}, **options)
    calls = []
    fresh = model(seed=1)
    again = fit(
        fresh, indices, targets, track={"size": lambda m: calls.append(1) or 0.0}, **options
    )
    assert calls == []
    assert same_history(again, finished)
    assert same_parameters(fresh, trained)


def test_a_finished_checkpoint_continues_when_the_budget_grows(tmp_path):
    indices, targets = problem(seed=10)
    options = dict(track={"size": sum_of_squares}, track_every=4, progress=False)
    straight = model(seed=10)
    expected = fit(straight, indices, targets, steps=22, **options)

    checkpoint = tmp_path / "run.pt"
    short = fit(model(seed=10), indices, targets, steps=10, checkpoint=checkpoint, **options)
    assert short.steps == [0, 4, 8, 10]
    longer = model(seed=10)
    history = fit(longer, indices, targets, steps=22, checkpoint=checkpoint, **options)
    assert same_history(history, expected)
    assert same_parameters(longer, straight)


def test_a_corrupt_checkpoint_raises_naming_the_file(tmp_path):
    indices, targets = problem()
    checkpoint = tmp_path / "broken.pt"
    checkpoint.write_bytes(b"this is not a checkpoint")
    with pytest.raises(RuntimeError, match=rf"checkpoint {re.escape(str(checkpoint))} cannot"):
        fit(model(), indices, targets, steps=5, checkpoint=checkpoint, progress=False)


def test_checkpoints_leave_no_partial_file(tmp_path):
    indices, targets = problem()
    checkpoint = tmp_path / "sub" / "run.pt"
    fit(
        model(),
        indices,
        targets,
        steps=5,
        checkpoint=checkpoint,
        checkpoint_every=2,
        progress=False,
    )
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["run.pt"]


def test_a_checkpoint_carrying_an_arbitrary_object_is_refused(tmp_path):
    indices, targets = problem()
    checkpoint = tmp_path / "foreign.pt"
    torch.save({"model": {}, "payload": CodeCarrier()}, checkpoint)
    with pytest.raises(RuntimeError, match=r"holds objects other than tensors and plain data"):
        fit(model(), indices, targets, steps=5, checkpoint=checkpoint, progress=False)
    assert CodeCarrier.unpickled == 0, "loading must not run the object's code"


class CodeCarrier:
    """An object whose unpickling runs code: what a malicious checkpoint would carry."""

    unpickled = 0

    def __reduce__(self):
        return (CodeCarrier._ran, ())

    @staticmethod
    def _ran():
        CodeCarrier.unpickled += 1
        return CodeCarrier


def test_checkpoints_are_plain_tensors_and_data(tmp_path):
    indices, targets = problem()
    checkpoint = tmp_path / "run.pt"
    options = dict(steps=6, optimizer="adaptive_gd", progress=False, checkpoint=checkpoint)
    fit(model(), indices, targets, track={"size": sum_of_squares}, **options)
    state = torch.load(checkpoint, weights_only=True)
    assert state["history"]["status"] == "budget" and state["step"] == 6


# --- mini-batches ---------------------------------------------------------------------------------


def test_mini_batch_steps_match_a_hand_written_loop():
    indices, targets = problem(seed=11, n=10)
    trained, lr, steps, batch = model(seed=11), 0.05, 7, 4  # batches of 4, 4, 2 per epoch
    factors = [f.detach().clone().requires_grad_() for f in trained.factors]
    history = fit(
        trained,
        indices,
        targets,
        steps=steps,
        lr=lr,
        batch_size=batch,
        seed=3,
        track_every=1,
        progress=False,
    )
    losses = []
    for step in range(steps + 1):
        epoch, k = divmod(step, 3)
        rows = torch.from_numpy(np.random.default_rng([3, epoch]).permutation(10))
        rows = rows[k * batch : (k + 1) * batch]
        loss = reference_loss(factors, indices[rows], targets[rows])
        losses.append(float(loss.detach()))
        if step < steps:
            grads = torch.autograd.grad(loss, factors)
            with torch.no_grad():
                for f, g in zip(factors, grads):
                    f -= lr * g
    assert history.loss == pytest.approx(losses, rel=1e-12)
    for p, f in zip(trained.factors, factors):
        torch.testing.assert_close(p.detach(), f.detach(), rtol=1e-12, atol=1e-14)


def test_every_epoch_visits_every_observation_once():
    seen = []

    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(()))

        def forward(self, indices):
            seen.append(indices[:, 0].tolist())
            return self.weight * indices[:, 0]

    indices = torch.arange(11)[:, None]
    fit(Recorder(), indices, torch.zeros(11), steps=8, batch_size=3, progress=False)
    epochs = [sum(seen[e * 4 : (e + 1) * 4], []) for e in range(2)]
    assert [sorted(e) for e in epochs] == [list(range(11))] * 2
    assert epochs[0] != epochs[1], "each epoch draws a new order"


def test_resuming_a_mini_batch_run_gives_the_uninterrupted_result(tmp_path, sigint_guard):
    indices, targets = problem(seed=12)
    options = dict(steps=40, optimizer="adam", lr=0.02, batch_size=7, seed=5, track_every=5)
    straight = model(seed=12)
    expected = fit(
        straight, indices, targets, track={"size": sum_of_squares}, progress=False, **options
    )
    checkpoint = tmp_path / "run.pt"
    first = fit(
        model(seed=12),
        indices,
        targets,
        track={"size": interrupting_metric(at_step_call=3)},
        checkpoint=checkpoint,
        progress=False,
        **options,
    )
    assert first.status == "interrupted"
    resumed = model(seed=99)
    history = fit(
        resumed,
        indices,
        targets,
        track={"size": sum_of_squares},
        checkpoint=checkpoint,
        progress=False,
        **options,
    )
    assert same_history(history, expected)
    assert same_parameters(resumed, straight)


@pytest.mark.parametrize(
    "change, named",
    [
        ({"targets": "other"}, "data"),
        ({"optimizer": "adam"}, "optimizer: 'gd' there, 'adam' now"),
        ({"lr": 0.5}, "lr: 0.01 there, 0.5 now"),
        ({"patience": 3}, "patience: None there, 3 now"),
    ],
)
def test_a_checkpoint_made_with_other_data_or_settings_is_refused(tmp_path, change, named):
    indices, targets = problem()
    path = tmp_path / "run.pt"
    fit(model(), indices, targets, steps=3, lr=0.01, checkpoint=path, progress=False)
    saved = path.read_bytes()
    options = {"steps": 6, "lr": 0.01, "checkpoint": path, "progress": False} | change
    if options.pop("targets", None):
        targets = targets + 1
    with pytest.raises(ValueError, match=f"made with other settings.*{re.escape(named)}"):
        fit(model(), indices, targets, **options)
    assert path.read_bytes() == saved  # refused before it was touched


def test_a_checkpoint_path_that_is_a_folder_is_refused(tmp_path):
    with pytest.raises(ValueError, match="is a folder; give the path of a file"):
        fit(model(), *problem(), steps=1, checkpoint=tmp_path, progress=False)


def test_a_batch_larger_than_the_data_is_full_batch_descent():
    indices, targets = problem(seed=13)
    a, b = model(seed=13), model(seed=13)
    fit(a, indices, targets, steps=5, lr=0.05, progress=False)
    fit(b, indices, targets, steps=5, lr=0.05, batch_size=1000, progress=False)
    assert same_parameters(a, b)


def test_history_round_trips_through_a_dict():
    history = History(
        steps=[0, 5], loss=[1.0, 0.5], metrics={"x": [[1, 2], [3, 4]]}, status="budget"
    )
    assert History.from_dict(history.to_dict()) == history
