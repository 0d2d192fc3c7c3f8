"""Calibration and selective prediction, against hand-computed cases."""

import math

import pytest
import torch

from kd_envs.metrics import (
    area_under_risk_coverage,
    confident_prediction_report,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    reliability_bins,
    risk_coverage_curve,
    selective_accuracy,
)


def two_class(confidence: float, n: int, correct: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` instances predicting class 0 with top-1 probability ``confidence``; the first ``correct``
    are labelled 0, the rest 1."""
    p = torch.tensor([[confidence, 1.0 - confidence]]).repeat(n, 1)
    labels = torch.tensor([0] * correct + [1] * (n - correct))
    return p, labels


def test_perfectly_calibrated_toy_has_zero_ece():
    probs, labels = two_class(0.8, 10, 8)
    assert expected_calibration_error(probs, labels) == pytest.approx(0.0, abs=1e-6)  # float32 0.8


def test_over_confident_toy():
    # 0.9 confident, half right: |0.5 - 0.9| = 0.4 in the one bin used.
    probs, labels = two_class(0.9, 10, 5)
    assert expected_calibration_error(probs, labels) == pytest.approx(0.4)
    # Two bins: 4 instances at 0.95 all right (gap 0.05), 6 at 0.55 with 3 right (gap 0.05).
    a, la = two_class(0.95, 4, 4)
    b, lb = two_class(0.55, 6, 3)
    assert expected_calibration_error(torch.cat([a, b]), torch.cat([la, lb])) == pytest.approx(0.4 * 0.05 + 0.6 * 0.05)


def test_bin_edges_belong_to_the_bin_they_close():
    # Confidence exactly 2/3 = 10/15 closes bin 10: alone there, gap |1 - 2/3|.
    probs, labels = two_class(2 / 3, 3, 3)
    assert expected_calibration_error(probs, labels) == pytest.approx(1 / 3)


def test_negative_log_likelihood_by_hand():
    logits = torch.tensor([[math.log(4.0), 0.0], [math.log(4.0), 0.0]])
    assert negative_log_likelihood(logits, torch.tensor([0, 1])) == pytest.approx((-math.log(0.8) - math.log(0.2)) / 2)


def test_temperature_scaling_recovers_the_scale():
    # 80% of labels agree with a 0.8-confident prediction: T = 1 is optimal, and 3x the logits need T = 3.
    logits = torch.tensor([[math.log(4.0), 0.0]]).repeat(10, 1)
    labels = torch.tensor([0] * 8 + [1] * 2)
    assert fit_temperature(logits, labels) == pytest.approx(1.0, rel=1e-4)
    assert fit_temperature(3 * logits, labels) == pytest.approx(3.0, rel=1e-4)


def test_risk_coverage_by_hand():
    confidence = torch.tensor([0.6, 0.9, 0.7, 0.8])
    correct = torch.tensor([1, 1, 1, 0])  # by confidence: right, wrong, right, right
    coverage, risk = risk_coverage_curve(confidence, correct)
    torch.testing.assert_close(coverage, torch.tensor([0.25, 0.5, 0.75, 1.0], dtype=torch.float64))
    torch.testing.assert_close(risk, torch.tensor([0.0, 0.5, 1 / 3, 0.25], dtype=torch.float64))
    assert area_under_risk_coverage(confidence, correct) == pytest.approx((0 + 0.5 + 1 / 3 + 0.25) / 4)
    # Tied confidences are kept or dropped together.
    tied = area_under_risk_coverage(torch.tensor([0.9, 0.9, 0.5]), torch.tensor([1, 0, 1]))
    assert tied == pytest.approx(2 / 3 * 1 / 2 + 1 / 3 * 1 / 3)


def test_selective_accuracy_takes_its_threshold_from_validation():
    val = torch.linspace(0.1, 1.0, 10)  # 90% coverage keeps the 9 largest: threshold 0.2
    test = torch.tensor([0.15, 0.2, 0.5, 0.95])
    correct = torch.tensor([0, 0, 1, 1])
    accuracy, reached, threshold = selective_accuracy(val, test, correct, coverage=0.9)
    assert threshold == pytest.approx(0.2)
    assert reached == pytest.approx(0.75) and accuracy == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="coverage=0"):
        selective_accuracy(val, test, correct, coverage=0)


def test_report_names_its_numbers_and_scaling_helps_an_over_confident_model():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(4000, 10, generator=generator) * 2
    labels = torch.multinomial(torch.softmax(logits, 1), 1, generator=generator).squeeze(1)  # calibrated at T = 1
    report = confident_prediction_report(3 * logits[:2000], labels[:2000], 3 * logits[2000:], labels[2000:])
    assert report["calibration_temperature"] == pytest.approx(3.0, rel=0.1)
    assert report["test_ece_scaled"] < 0.03 < report["test_ece"]
    assert report["test_nll_scaled"] < report["test_nll"]
    assert 0.85 < report["selective_coverage_90"] < 0.95
    error = (logits[2000:].argmax(1) != labels[2000:]).double().mean().item()
    assert 0 < report["test_aurc"] < error  # confidence ranks errors last: below the risk at full coverage
    assert report["selective_accuracy_90"] > 1 - error


def test_reliability_bins_by_hand():
    a, la = two_class(0.95, 4, 3)
    b, lb = two_class(0.55, 2, 2)
    bins = reliability_bins(torch.cat([a, b]), torch.cat([la, lb]), bins=10)
    assert bins["count"] == [0, 0, 0, 0, 0, 2, 0, 0, 0, 4]
    assert bins["accuracy"][9] == pytest.approx(0.75) and bins["accuracy"][5] == pytest.approx(1.0)
    assert bins["confidence"][9] == pytest.approx(0.95) and bins["confidence"][5] == pytest.approx(0.55)
    assert math.isnan(bins["accuracy"][0]) and len(bins["edges"]) == 11
    # The ECE is the count-weighted gap of these bins.
    gaps = sum(c * abs(acc - conf) for c, acc, conf in zip(bins["count"], bins["accuracy"], bins["confidence"]) if c)
    assert expected_calibration_error(torch.cat([a, b]), torch.cat([la, lb]), bins=10) == pytest.approx(gaps / 6)
