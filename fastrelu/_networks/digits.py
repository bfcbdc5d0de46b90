"""A small real model, offline: an MLP trained on scikit-learn's bundled digits data.

Needs scikit-learn (in the ``test`` extra); nothing is downloaded: the 1,797 8x8 digit
images ship with scikit-learn.
"""

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from fastrelu._core.errors import MissingDependencyError

if TYPE_CHECKING:  # for the annotations only: scikit-learn is imported when a model is trained
    from sklearn.neural_network import MLPClassifier

    from fastrelu._networks.network import Network

DEFAULT_HIDDEN = (128, 256)


@dataclass(frozen=True, eq=False)
class DigitsModel:
    """A ReLU MLP trained on the digits data, with its split.

    Attributes
    ----------
    network : Network
        The trained network (hidden ReLU layers, affine output of 10 logits).
    model : sklearn.neural_network.MLPClassifier
    X_train, X_test : ndarray, shape (N, 64)
        Pixel intensities scaled to [0, 1].
    y_train, y_test : ndarray of int64
    accuracy : float
        Test accuracy.
    """

    network: "Network"
    model: "MLPClassifier" = field(repr=False)
    X_train: np.ndarray = field(repr=False)
    X_test: np.ndarray = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    accuracy: float


def digits_model(*, hidden=DEFAULT_HIDDEN, seed=0, test_fraction=0.3, max_iter=300, l2=1e-4):
    """Train an ``MLPClassifier`` with ReLU hidden layers on the digits data.

    Deterministic for a seed: the split (stratified) and the training both use it.

    Parameters
    ----------
    hidden : tuple of int, default=(128, 256)
        Hidden layer widths (the default's redundancies are 2 and 2).
    seed : int, default=0
        Seed of the split and of the training (``random_state``).
    test_fraction : float, default=0.3
        Fraction of the 1,797 images held out for testing.
    max_iter : int, default=300
        Training epochs (Adam) at most.
    l2 : float, default=1e-4
        The L2 penalty (scikit-learn's ``alpha``, at scikit-learn's default).
        With Adam it drives the weights of inputs that never vary (blank border pixels,
        neurons dead on all training data) towards zero, so the layers stay injective
        but barely: see ``LayerReport.stable_fraction``. ``l2=0`` leaves them as
        initialised.

    Returns
    -------
    DigitsModel

    Raises
    ------
    MissingDependencyError
        When scikit-learn is not installed.
    """
    X_train, X_test, y_train, y_test = digits_split(seed=seed, test_fraction=test_fraction)
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    from fastrelu._networks.network import Network

    model = MLPClassifier(hidden_layer_sizes=tuple(hidden), activation="relu",
                          alpha=l2, max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X_train, y_train)
    network = Network.from_sklearn(model)
    accuracy = float(np.mean(model.predict(X_test) == y_test))
    return DigitsModel(network=network, model=model, X_train=X_train, X_test=X_test,
                       y_train=y_train, y_test=y_test, accuracy=accuracy)


@dataclass(frozen=True, eq=False)
class DigitsCNN:
    """A small convolutional network trained on the digits data, with its split.

    Attributes
    ----------
    model : torch.nn.Module
        ``Conv2d(1, c1, 3, padding=1)``, ``BatchNorm2d``, ReLU, ``Conv2d(c1, c2, 3,
        padding=1)``, ``BatchNorm2d``, ReLU, ``MaxPool2d(2)``, ``Flatten``,
        ``Linear(16 c2, 10)``, in eval mode, float32 on the CPU.
    X_train, X_test : ndarray, shape (N, 1, 8, 8), float32
        Pixel intensities scaled to [0, 1].
    y_train, y_test : ndarray of int64
    accuracy : float
        Test accuracy.
    """

    model: object = field(repr=False)
    X_train: np.ndarray = field(repr=False)
    X_test: np.ndarray = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    accuracy: float


def digits_cnn(*, channels=(8, 16), seed=0, test_fraction=0.3, epochs=12, batch_size=64, lr=0.01):
    """Train a Conv–BN–ReLU, Conv–BN–ReLU, pooling, Linear network on the digits data.

    The split is the one of :func:`digits_model` for the same ``seed``; the
    initialisation and the batches come from the seed too (PyTorch's global random
    state is left as it was). Training takes a few seconds on a CPU.

    Parameters
    ----------
    channels : tuple of two ints, default=(8, 16)
        Output channels of the two convolutions.
    seed : int, default=0
    test_fraction : float, default=0.3
    epochs : int, default=12
        Passes of Adam over the training images.
    batch_size : int, default=64
    lr : float, default=0.01
        Adam's learning rate.

    Returns
    -------
    DigitsCNN

    Raises
    ------
    MissingDependencyError
        When scikit-learn or torch is not installed.
    """
    X_train, X_test, y_train, y_test = digits_split(seed=seed, test_fraction=test_fraction, images=True)
    from fastrelu._networks.network import _import_torch

    torch = _import_torch()
    nn = torch.nn
    order = np.random.default_rng(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = digits_cnn_module(channels)
        optimiser = torch.optim.Adam(model.parameters(), lr=lr)
        inputs, targets = torch.from_numpy(X_train), torch.from_numpy(y_train)
        model.train()
        for _ in range(epochs):
            for batch in digits_batches(order, len(X_train), batch_size):
                index = torch.from_numpy(batch)
                optimiser.zero_grad()
                loss = nn.functional.cross_entropy(model(inputs[index]), targets[index])
                loss.backward()
                optimiser.step()
    model.eval()
    with torch.no_grad():
        accuracy = float((model(torch.from_numpy(X_test)).argmax(1).numpy() == y_test).mean())
    return DigitsCNN(model=model, X_train=X_train, X_test=X_test, y_train=y_train, y_test=y_test,
                     accuracy=accuracy)


def digits_split(*, seed=0, test_fraction=0.3, images=False):
    """The stratified split of scikit-learn's digits data used by the digits models.

    Parameters
    ----------
    seed : int, default=0
        ``random_state`` of ``train_test_split``.
    test_fraction : float, default=0.3
    images : bool, default=False
        ``False``: float64 rows of 64 pixels; ``True``: float32 images ``(N, 1, 8, 8)``
        (the same split and the same values, rounded to float32).

    Returns
    -------
    X_train, X_test, y_train, y_test : ndarray
        Pixel intensities scaled to [0, 1]; labels int64.

    Raises
    ------
    MissingDependencyError
        When scikit-learn is not installed.
    """
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise MissingDependencyError('The digits model needs scikit-learn: pip install scikit-learn (it is in the "test" extra).', name="sklearn") from None
    digits = load_digits()
    X = digits.data / 16.0
    if images:
        X = X.astype(np.float32).reshape(-1, 1, 8, 8)
    y = digits.target.astype(np.int64)
    return tuple(train_test_split(X, y, test_size=test_fraction, random_state=seed, stratify=y))


def digits_cnn_module(channels=(8, 16)):
    """The untrained module of :func:`digits_cnn`, initialised from torch's global
    random state: ``Conv2d(1, c1, 3, padding=1)``, ``BatchNorm2d``, ReLU,
    ``Conv2d(c1, c2, 3, padding=1)``, ``BatchNorm2d``, ReLU, ``MaxPool2d(2)``,
    ``Flatten``, ``Linear(16 c2, 10)`` for 8x8 inputs."""
    from fastrelu._networks.network import _import_torch

    nn = _import_torch().nn
    c1, c2 = channels
    return nn.Sequential(nn.Conv2d(1, c1, 3, padding=1), nn.BatchNorm2d(c1), nn.ReLU(),
                         nn.Conv2d(c1, c2, 3, padding=1), nn.BatchNorm2d(c2), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * c2, 10))


def digits_batches(order, count, batch_size):
    """One epoch's mini-batches of :func:`digits_cnn`: a permutation of ``range(count)``
    drawn from the generator ``order``, cut into ``max(1, count // batch_size)`` nearly
    equal parts (``numpy.array_split``)."""
    return np.array_split(order.permutation(count), max(1, count // batch_size))
