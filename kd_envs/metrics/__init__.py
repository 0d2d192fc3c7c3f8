"""Confident prediction: how far a classifier's confidence can be trusted (pure functions of tensors).

* :func:`expected_calibration_error`: ECE over equal-width confidence bins (Guo et al., 2017, eq. 3), and
  :func:`reliability_bins`, what its reliability diagram draws;
* :func:`negative_log_likelihood`: mean NLL of the labels;
* :func:`fit_temperature`: the post-hoc temperature scaling a deployment would do: one scalar T that
  minimises the NLL of ``logits / T`` on held-out (validation) data (Guo et al., 2017, §4.2);
* :func:`risk_coverage_curve` and :func:`area_under_risk_coverage`: selective prediction, abstaining on
  the least confident instances first (Geifman & El-Yaniv, 2017);
* :func:`selective_accuracy`: accuracy at a target coverage, with the confidence threshold chosen on
  validation and applied to test;
* :func:`confident_prediction_report`: all of them for one model, validation and test logits in, named
  numbers out (what TemperatureKD-v0's final info reports).

Confidence is the top-1 softmax probability throughout.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

ECE_BINS = 15
TARGET_COVERAGE = 0.9


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, bins: int = ECE_BINS) -> float:
    """Σ_b (|B_b| / n)·|accuracy(B_b) − mean confidence(B_b)| over ``bins`` equal-width bins of the top-1
    probability on (0, 1]; a confidence of exactly k/bins falls in the bin that ends there."""
    confidence, prediction = probs.max(dim=1)
    correct = (prediction == labels).double()
    confidence = confidence.double()
    index = (torch.ceil(confidence * bins).long() - 1).clamp(0, bins - 1)
    n = len(labels)
    ece = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            ece += mask.sum().item() / n * abs(correct[mask].mean().item() - confidence[mask].mean().item())
    return ece


def reliability_bins(probs: torch.Tensor, labels: torch.Tensor, bins: int = ECE_BINS) -> dict[str, list[float]]:
    """What a reliability diagram draws, per equal-width confidence bin (the bins of
    :func:`expected_calibration_error`): its ``count``, mean ``confidence`` and ``accuracy`` (NaN for an
    empty bin), and the bins' ``edges``."""
    confidence, prediction = probs.double().max(dim=1)
    correct = (prediction == labels).double()
    index = (torch.ceil(confidence * bins).long() - 1).clamp(0, bins - 1)
    count = torch.bincount(index, minlength=bins).double()
    mean = lambda values: (torch.bincount(index, values, minlength=bins) / count).tolist()  # noqa: E731
    return {"edges": torch.linspace(0, 1, bins + 1).tolist(), "count": count.tolist(),
            "confidence": mean(confidence), "accuracy": mean(correct)}  # fmt: skip


def negative_log_likelihood(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return F.cross_entropy(logits.double(), labels).item()


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, low: float = 0.05, high: float = 20.0,
                    iterations: int = 60) -> float:  # fmt: skip
    """The T in [``low``, ``high``] minimising NLL(logits / T, labels), by golden-section search on log T
    (the NLL of temperature-scaled logits is unimodal in log T). Deterministic, no optimiser state."""
    logits = logits.double()

    def nll(log_t: float) -> float:
        return F.cross_entropy(logits / math.exp(log_t), labels).item()

    a, b = math.log(low), math.log(high)
    ratio = (math.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = nll(c), nll(d)
    for _ in range(iterations):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = nll(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = nll(d)
    return math.exp((a + b) / 2)


def risk_coverage_curve(confidence: torch.Tensor, correct: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(coverage, risk) when the k most confident instances are kept, k = 1..n (ties in confidence are
    kept or dropped together: the curve has one point per distinct confidence)."""
    order = confidence.double().argsort(descending=True, stable=True)
    conf, errors = confidence.double()[order], 1.0 - correct.double()[order]
    n = len(conf)
    kept = torch.arange(1, n + 1, dtype=torch.float64)
    risk = errors.cumsum(0) / kept
    last_of_tie = torch.ones(n, dtype=torch.bool)
    last_of_tie[:-1] = conf[1:] != conf[:-1]
    return kept[last_of_tie] / n, risk[last_of_tie]


def area_under_risk_coverage(confidence: torch.Tensor, correct: torch.Tensor) -> float:
    """AURC: the mean selective risk over coverages 1/n, 2/n, …, 1 (each distinct confidence a step),
    i.e. the area under the step risk–coverage curve. 0 for a perfect ranking of an error-free model."""
    coverage, risk = risk_coverage_curve(confidence, correct)
    widths = torch.diff(coverage, prepend=torch.zeros(1, dtype=torch.float64))
    return float((widths * risk).sum())


def selective_accuracy(val_confidence: torch.Tensor, test_confidence: torch.Tensor, test_correct: torch.Tensor,
                       coverage: float = TARGET_COVERAGE) -> tuple[float, float, float]:  # fmt: skip
    """Accuracy on the test instances whose confidence reaches the threshold that keeps ``coverage`` of
    the *validation* instances (the ⌈coverage·n⌉-th largest validation confidence). Returns (accuracy,
    the coverage actually reached on test, the threshold)."""
    if not 0.0 < coverage <= 1.0:
        raise ValueError(f"coverage={coverage}: expected a fraction in (0, 1]")
    k = math.ceil(coverage * len(val_confidence) - 1e-9)
    threshold = val_confidence.double().sort(descending=True).values[k - 1].item()
    kept = test_confidence.double() >= threshold
    accuracy = test_correct.double()[kept].mean().item() if kept.any() else float("nan")
    return accuracy, kept.double().mean().item(), threshold


def confident_prediction_report(val_logits: torch.Tensor, val_labels: torch.Tensor, test_logits: torch.Tensor,
                                test_labels: torch.Tensor) -> dict[str, float]:  # fmt: skip
    """Calibration and selective prediction of one model on the test split, with everything that needs
    choosing (the scaling temperature, the coverage threshold) chosen on validation."""
    temperature = fit_temperature(val_logits, val_labels)
    probs = F.softmax(test_logits.double(), dim=1)
    scaled = F.softmax(test_logits.double() / temperature, dim=1)
    confidence, prediction = probs.max(dim=1)
    correct = prediction == test_labels
    accuracy, reached, _ = selective_accuracy(F.softmax(val_logits.double(), dim=1).max(dim=1).values,
                                              confidence, correct)  # fmt: skip
    return {
        "test_ece": expected_calibration_error(probs, test_labels),
        "test_nll": negative_log_likelihood(test_logits, test_labels),
        "calibration_temperature": temperature,
        "test_ece_scaled": expected_calibration_error(scaled, test_labels),
        "test_nll_scaled": negative_log_likelihood(test_logits / temperature, test_labels),
        "selective_accuracy_90": accuracy,
        "selective_coverage_90": reached,
        "test_aurc": area_under_risk_coverage(confidence, correct),
    }
