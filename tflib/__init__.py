"""tflib: the PyTorch library behind the course *Implicit Regularization in Tensor Factorization*.

Each module holds one concept of the book: :mod:`tflib.cp` (CP tensors), :mod:`tflib.matrix`
(deep matrix factorization), :mod:`tflib.network` (CP as a network), :mod:`tflib.hierarchical`
(hierarchical tensor factorization), :mod:`tflib.data` (targets, observations, data sets),
:mod:`tflib.mnist` (the MNIST files), :mod:`tflib.train` (gradient descent with a history),
:mod:`tflib.metrics`, :mod:`tflib.theory` (what the theorems predict), :mod:`tflib.plots` (the
figures) and :mod:`tflib.experiments` (the paper's experiments).
"""

#: The course's version (``pyproject.toml``'s): the chapters' install cells check for it.
__version__ = "0.2.0"

from tflib import data, metrics, mnist, theory
from tflib.cp import CPFactorization, component_norms, cp_entries, cp_to_tensor, khatri_rao
from tflib.devices import default_device
from tflib.hierarchical import HierarchicalFactorization
from tflib.matrix import DeepMatrixFactorization
from tflib.network import CPNetwork
from tflib.train import DivergenceError, History, fit

__all__ = [
    "CPFactorization",
    "CPNetwork",
    "DeepMatrixFactorization",
    "DivergenceError",
    "HierarchicalFactorization",
    "History",
    "component_norms",
    "cp_entries",
    "cp_to_tensor",
    "data",
    "default_device",
    "fit",
    "khatri_rao",
    "metrics",
    "mnist",
    "theory",
]
