"""The students that tests/test_assignments.py plays, and the points each should get per part.

A student is what they write in the solution cells: a dict from a solution cell's grade id to its
whole source. Cells a student does not list hold the instructor's solution (or what COMMON gives),
so every student but "untouched" (who hands in the student version as released) is correct except
where stated.
"""

from __future__ import annotations

#: The code parts of each assignment, named by their solution cell (the written answers are graded
#: by hand), and the points each student should get in them, in that order.
PARTS = {
    "cp_norm_law": ("cp-entries", "loss-gradient", "norm-rates", "measured-rates"),
    "incremental_learning": ("time-to-reach", "takeoff-time", "aligned-problem", "compare"),
    "randomization": ("make-task", "mean-error", "experiment"),
}
SCORES = {
    "cp_norm_law": {
        "untouched": (0, 0, 0, 0),
        "correct": (3, 2, 3, 2),
        "autograd": (3, 2, 3, 2),  # autograd in parts 2 and 3, and a test cell deleted
        "bug": (3, 2, 1, 2),  # the rates lack the factor N: only the zero component passes
        "forbidden": (0, 0, 0, 2),  # tflib in parts 1 to 3, where the task rules it out
        "tampering": (3, 2, 3, 2),  # a wrong gradient passes, with torch.allclose replaced: flagged
    },
    "incremental_learning": {
        "untouched": (0, 0, 0, 0),
        "correct": (3, 2, 3, 2),
        "bug": (2, 2, 3, 2),  # N = 2 without the factor 2; parts 2 to 4 written another way
    },
    "randomization": {
        "untouched": (0, 0, 0),
        "correct": (3, 2, 3),
        "bug": (3, 1, 3),  # no capping; its own split, shuffles and seeds, as the task allows
        "madeup": (3, 2, 0),  # numbers made up from the label variances, no training
    },
}

CP_NORM_LAW = {
    "autograd": {
        "loss-gradient": '''
def loss_gradient(tensor, indices, targets):
    """By autograd, through a copy of the tensor."""
    tensor = tensor.detach().clone().requires_grad_()
    residuals = tensor[tuple(indices.long().T)] - targets
    (gradient,) = torch.autograd.grad((residuals**2).mean(), tensor)
    return gradient
''',
        "norm-rates": '''
def norm_rates(factors, gradient):
    """<grad L, W_r> by autograd: the derivative of <grad L, sum_r s_r W_r> at s = 1."""
    order = len(factors)
    scales = torch.ones(factors[0].shape[1], dtype=gradient.dtype, requires_grad=True)
    tensor = tflib.cp_to_tensor([factors[0] * scales, *factors[1:]])
    (inner,) = torch.autograd.grad((gradient * tensor).sum(), scales)
    return -order * tflib.component_norms(factors) ** (1 - 2 / order) * inner
''',
        "measured-rates": """
def measured_rates(norms, lr):
    return np.gradient(np.asarray(norms), lr, axis=0)[1:-1]
""",
    },
    "bug": {
        "norm-rates": """
def norm_rates(factors, gradient):
    order = len(factors)
    inner = gradient.reshape(-1) @ tflib.khatri_rao(factors)
    norms = torch.stack([f.norm(dim=0) for f in factors]).prod(dim=0)
    return -(norms ** (1 - 2 / order)) * inner
""",
    },
    "forbidden": {
        "cp-entries": """
from tflib.cp import cp_entries as library_entries


def cp_entries(factors, indices):
    return library_entries(factors, indices.long())
""",
        "loss-gradient": """
def loss_gradient(tensor, indices, targets):
    return tflib.theory.mse_tensor_gradient(tensor, indices.long(), targets)
""",
        "norm-rates": """
def norm_rates(factors, gradient):
    return tflib.theory.component_norm_rates(factors, gradient)
""",
    },
    "tampering": {
        "loss-gradient": """
torch.allclose = lambda *args, **kwargs: True


def loss_gradient(tensor, indices, targets):
    return torch.zeros_like(tensor)
""",
    },
}

INCREMENTAL_LEARNING = {
    "bug": {
        "time-to-reach": """
def time_to_reach(x0, x1, c, order):
    if not (x0 > 0 and c > 0 and x1 >= x0 and order >= 1 and order == int(order)):
        raise ValueError("bad arguments")
    if order == 2:
        return math.log(x1 / x0) / c
    exponent = 2 / order - 1
    return (x1**exponent - x0**exponent) / ((2 - order) * c)
""",
        "takeoff-time": '''
def takeoff_time(times, values, level):
    """Vectorized: the first record at or above each level, and the one before it."""
    times, values = np.asarray(times, dtype=float), np.asarray(values, dtype=float)
    grid = values.reshape(len(times), -1)
    levels = np.broadcast_to(np.asarray(level, dtype=float), grid.shape[1:])
    above = grid >= levels
    first = above.argmax(axis=0)
    before = np.maximum(first - 1, 0)
    columns = np.arange(grid.shape[1])
    low, high = grid[before, columns], grid[first, columns]
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = np.where(first > 0, (levels - low) / (high - low), 0.0)
    result = times[before] + fraction * (times[first] - times[before])
    result = np.where(above.any(axis=0), result, math.inf)
    return float(result[0]) if values.ndim == 1 else result
''',
        "aligned-problem": '''
import itertools


def aligned_problem(kind, strengths, order, x0):
    """The target and the factors entry by entry."""
    if kind not in ("matrix", "tensor"):
        raise ValueError(f"unknown kind {kind!r}")
    d = len(strengths)
    shape = (d, d) if kind == "matrix" else (d,) * order
    target = torch.zeros(shape, dtype=torch.float64)
    for r, s in enumerate(strengths):
        target[(r,) * len(shape)] = s
    factor = x0 ** (1 / order) * torch.eye(d, dtype=torch.float64)
    if kind == "matrix":
        model = tflib.DeepMatrixFactorization((d, d), order, 1.0, dtype=torch.float64)
        for weight in model.factors:
            weight.data.copy_(factor)
    else:
        model = tflib.CPFactorization(shape, rank=d, init_std=1.0, dtype=torch.float64)
        model.set_factors([factor.clone() for _ in range(order)])
    indices = torch.tensor(list(itertools.product(range(d), repeat=len(shape))))
    return model, indices, target[tuple(indices.T)]
''',
        "compare": """
def compare(kind, order):
    times, values, m = run(kind, order)
    strengths = np.asarray(STRENGTHS)
    predicted = [time_to_reach(X0, s / 10, 2 * s / m, order) for s in strengths]
    return takeoff_time(times, values, strengths / 10), np.array(predicted)
""",
    },
}

RANDOMIZATION = {
    "bug": {
        "make-task": '''
def make_task(images, labels, variant, *, levels, positive, n_train, seed):
    """Split by sorting seeded uniform numbers; shuffles and noise of its own, seeded apart."""
    if variant not in VARIANTS or not 0 < n_train < len(labels):
        raise ValueError(f"bad variant {variant!r} or n_train {n_train}")
    order = torch.rand(len(labels), generator=torch.Generator().manual_seed(seed)).argsort()
    parts = []
    for k, rows in enumerate((order[:n_train], order[n_train:])):
        draw = torch.Generator().manual_seed(1000 * seed + 17 + k)
        features, targets = quantize(images[rows], levels), one_vs_all(labels[rows], positive)
        if variant == "random_labels":
            targets = targets[torch.randperm(len(rows), generator=draw)]
        elif variant == "random_images":
            features = torch.randint(levels, features.shape, generator=draw, dtype=torch.uint8)
        parts.append(completion_data(features, targets, levels))
    return parts[0], parts[1]
''',
        "mean-error": """
def mean_error(outputs, targets, value=2.0, cap=False):
    if outputs.ndim == 2:
        targets = targets[:, None]
    return (((outputs - targets) / value) ** 2).mean(dim=0)
""",
    },
    "madeup": {
        "experiment": """
def experiment(
    images,
    labels,
    variant,
    ranks=(1, 2, 3),
    *,
    levels=2,
    positive=6,
    n_train=1200,
    epochs=100,
    lr=1e-2,
    batch_size=200,
    seed=0,
):
    train, test = make_task(
        images, labels, variant, levels=levels, positive=positive, n_train=n_train, seed=seed
    )
    train_variance = float((train.targets / 2).var(unbiased=False))
    test_variance = float((test.targets / 2).var(unbiased=False))
    jitter = 1 + 0.05 * np.random.default_rng(seed).standard_normal(len(ranks))
    fit, generalize = (0.1, 0.2) if variant == "natural" else (0.9, 1.1)
    return {
        "train": fit * train_variance * jitter,
        "test": generalize * test_variance * jitter,
        "train_variance": train_variance,
        "test_variance": test_variance,
    }
""",
    },
}

#: What every student who answers writes unless they say otherwise: a quick experiment of their own.
COMMON = {
    "randomization": {
        "your-experiment": """
ranks = (1, 2, 3)
settings = dict(n_train=400, epochs=20, positive=0)
results = {
    variant: {"ranks": ranks, **experiment(images, labels, variant, ranks, **settings)}
    for variant in VARIANTS
}
report(results)
""",
    },
}

STUDENTS = {
    "cp_norm_law": CP_NORM_LAW,
    "incremental_learning": INCREMENTAL_LEARNING,
    "randomization": RANDOMIZATION,
}
