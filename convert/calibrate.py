"""Temperature calibration of the int8 model, fitted on held-out drawings of the training
sources after quantization (so it corrects what is served, not the float model).

Belongs here: the fit. numpy only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

DIGITS = 10


def digit_nll(logits: npt.NDArray[Any], labels: npt.NDArray[Any], temperature: float) -> float:
    """Mean negative log-likelihood of the true digit under softmax(digit logits / T), the
    distribution the server reports."""
    z = logits[:, :DIGITS] / temperature
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: npt.NDArray[Any], labels: npt.NDArray[Any]) -> float:
    """The temperature in [0.25, 10] (log grid, then refined) minimising `digit_nll`."""
    if len(labels) == 0:
        return 1.0
    labels = np.asarray(labels, np.intp)
    grid = np.geomspace(0.25, 10.0, 161)
    best = min(grid, key=lambda t: digit_nll(logits, labels, float(t)))
    fine = np.linspace(best / 1.03, best * 1.03, 41)
    return round(float(min(fine, key=lambda t: digit_nll(logits, labels, float(t)))), 4)
