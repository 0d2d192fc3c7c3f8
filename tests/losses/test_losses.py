"""Distillation losses checked against hand computations on tiny inputs."""

import math

import pytest
import torch
from torch.nn import functional as F

from kd_envs.losses import (
    LossWeights,
    attention_loss,
    attention_map,
    distillation_losses,
    hint_loss,
    hint_regressors,
    kd_loss,
    logit_l2_loss,
    manifold_geometry,
    manifold_projection,
    nmd_loss,
)


def _randn(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _orthogonal(n, seed):
    q, r = torch.linalg.qr(_randn(n, n, seed=seed))
    return q * torch.sign(torch.diagonal(r))  # a proper random orthogonal matrix


# --- kd_loss -------------------------------------------------------------------------------------


def test_kd_loss_two_classes_by_hand():
    student, teacher, temperature = [1.0, -0.5], [2.0, 0.0], 2.0

    def softmax(z):
        e = [math.exp(v / temperature) for v in z]
        return [v / sum(e) for v in e]

    p_s, p_t = softmax(student), softmax(teacher)
    expected = temperature**2 * sum(pt * math.log(pt / ps) for pt, ps in zip(p_t, p_s, strict=True))
    got = kd_loss(torch.tensor([student]), torch.tensor([teacher]), temperature)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    assert expected > 0.01  # the example is not degenerate


def test_kd_loss_per_instance_temperature_equals_loop_over_instances():
    student, teacher = _randn(5, 7, seed=1), _randn(5, 7, seed=2)
    temperatures = torch.tensor([0.5, 1.0, 2.0, 4.0, 8.0], dtype=torch.float64)
    per_instance = kd_loss(student, teacher, temperatures, reduction="none")
    # Hinton's loss with one scalar T at a time, written the usual (mdistiller) way.
    loop = torch.stack(
        [
            F.kl_div(
                F.log_softmax(student[i : i + 1] / t, dim=1),
                F.softmax(teacher[i : i + 1] / t, dim=1),
                reduction="batchmean",
            )
            * t**2
            for i, t in enumerate(temperatures.tolist())
        ]
    )
    torch.testing.assert_close(per_instance, loop)
    torch.testing.assert_close(kd_loss(student, teacher, temperatures), loop.mean())
    single = [kd_loss(student[i : i + 1], teacher[i : i + 1], t) for i, t in enumerate(temperatures.tolist())]
    torch.testing.assert_close(per_instance, torch.stack(single))


def test_kd_loss_scalar_temperature_broadcasts():
    student, teacher = _randn(4, 3, seed=3), _randn(4, 3, seed=4)
    as_tensor = kd_loss(student, teacher, torch.full((4,), 3.0, dtype=torch.float64), reduction="none")
    torch.testing.assert_close(kd_loss(student, teacher, 3.0, reduction="none"), as_tensor)
    torch.testing.assert_close(kd_loss(student, teacher, torch.tensor(3.0), reduction="none"), as_tensor)
    assert kd_loss(student, teacher, 3.0, reduction="none").shape == (4,)
    assert kd_loss(student, teacher, 3.0).shape == ()


@pytest.mark.parametrize("temperature", [torch.ones(5), torch.ones(4, 1), torch.ones(2, 2)])
def test_kd_loss_rejects_wrong_temperature_shape(temperature):
    with pytest.raises(ValueError, match="temperature has shape"):
        kd_loss(torch.zeros(4, 3), torch.zeros(4, 3), temperature)


def test_kd_loss_rejects_unknown_reduction():
    with pytest.raises(ValueError, match="reduction='sum'"):
        kd_loss(torch.zeros(4, 3), torch.zeros(4, 3), 1.0, reduction="sum")


def test_kd_loss_is_zero_when_student_matches_teacher():
    logits = _randn(6, 10, seed=5) * 5
    values = kd_loss(logits, logits.clone(), torch.linspace(0.5, 6.0, 6, dtype=torch.float64), reduction="none")
    torch.testing.assert_close(values, torch.zeros(6, dtype=torch.float64))
    assert kd_loss(logits, _randn(6, 10, seed=6), 2.0) > 0


def test_kd_loss_gradcheck():
    student = _randn(3, 4, seed=7).requires_grad_()
    teacher = _randn(3, 4, seed=8).requires_grad_()
    temperature = torch.tensor([0.7, 1.5, 3.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s, t, T: kd_loss(s, t, T), (student, teacher, temperature))
    assert torch.autograd.gradcheck(lambda s, t, T: kd_loss(s, t, T, reduction="none"), (student, teacher, temperature))


# --- logit_l2_loss -------------------------------------------------------------------------------


def test_logit_l2_loss_by_hand():
    student = torch.tensor([[1.0, 2.0], [0.0, 0.0], [3.0, -1.0]])
    teacher = torch.tensor([[0.0, 0.0], [1.0, 1.0], [3.0, 1.0]])
    # squared distances: 1 + 4 = 5, 1 + 1 = 2, 0 + 4 = 4
    assert logit_l2_loss(student, teacher).item() == pytest.approx(11 / 3)
    assert logit_l2_loss(teacher, teacher).item() == 0


# --- manifold losses -----------------------------------------------------------------------------


def test_manifold_geometry_of_a_3_4_5_triangle_by_hand():
    points = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]], dtype=torch.float64)
    projected = manifold_projection(points, dim=2)
    assert projected.shape == (3, 2)
    torch.testing.assert_close(projected.mean(dim=0), torch.zeros(2, dtype=torch.float64))
    distances = torch.tensor([[0.0, 3.0, 4.0], [3.0, 0.0, 5.0], [4.0, 5.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(torch.cdist(projected, projected), distances)
    off_diagonal_mean = 2 * (3 + 4 + 5) / 6  # = 4
    torch.testing.assert_close(manifold_geometry(projected), distances / off_diagonal_mean)


def test_manifold_projection_keeps_the_top_directions():
    # Collinear points along (1, 1): one direction carries everything.
    points = torch.tensor([[0.0, 0.0], [1.0, 1.0], [3.0, 3.0]], dtype=torch.float64)
    projected = manifold_projection(points, dim=1)
    assert projected.shape == (3, 1)
    along = (torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64) - 4 / 3) * math.sqrt(2)
    torch.testing.assert_close(projected[:, 0].abs(), along.abs())
    # width is capped by the batch size and the feature width: min(dim, B, D)
    assert manifold_projection(_randn(3, 5, seed=9), dim=8).shape == (3, 3)
    assert manifold_projection(_randn(10, 2, 3, seed=9), dim=4).shape == (10, 4)


def test_nmd_loss_by_hand():
    triangle = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]], dtype=torch.float64)
    line = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]], dtype=torch.float64)
    # geometries: triangle 3,4,5 / 4 -> .75, 1, 1.25; line 1,2,1 / (4/3) -> .75, 1.5, .75
    # differences 0, -.5, .5 on each side of the diagonal: 2 * (.25 + .25) / 9 entries
    assert nmd_loss([triangle], [line], dim=2).item() == pytest.approx(1 / 9)


def test_nmd_loss_is_zero_for_identical_features():
    features = [_randn(12, 4, 10, seed=10), _randn(12, 16, seed=11)]
    assert nmd_loss(features, [f.clone() for f in features]).item() == pytest.approx(0, abs=1e-12)


@pytest.mark.parametrize("dim", [3, 8])
def test_nmd_loss_ignores_rotation_scale_and_offset_of_the_student(dim):
    teacher = _randn(12, 16, seed=12)
    student = 3.7 * teacher @ _orthogonal(16, seed=13) + 2.0
    assert nmd_loss([student], [teacher], dim=dim).item() == pytest.approx(0, abs=1e-12)
    assert nmd_loss([_randn(12, 16, seed=14)], [teacher], dim=dim).item() > 1e-3


@pytest.mark.parametrize("dim", [4, 8])
def test_nmd_loss_ignores_width(dim):
    student = _randn(10, 8, seed=15)  # width 8
    # the same points isometrically embedded in width 32: pad with zeros, then rotate
    teacher = F.pad(student, (0, 24)) @ _orthogonal(32, seed=16)
    assert teacher.shape == (10, 32)
    assert nmd_loss([student], [teacher], dim=dim).item() == pytest.approx(0, abs=1e-12)
    torch.testing.assert_close(
        manifold_geometry(manifold_projection(student, dim)),
        manifold_geometry(manifold_projection(teacher, dim)),
    )


def test_nmd_loss_stage_weights():
    student = [_randn(8, 6, seed=s) for s in (20, 21, 22)]
    teacher = [_randn(8, 12, seed=s) for s in (23, 24, 25)]
    per_stage = [nmd_loss([s], [t], stage_weights=[1.0]) for s, t in zip(student, teacher, strict=True)]
    assert all(v > 1e-3 for v in per_stage)
    default = per_stage[0] + per_stage[1] / 2 + per_stage[2] / 4
    torch.testing.assert_close(nmd_loss(student, teacher), default)
    custom = 0.2 * per_stage[0] + 3.0 * per_stage[2]
    torch.testing.assert_close(nmd_loss(student, teacher, stage_weights=[0.2, 0.0, 3.0]), custom)


def test_nmd_loss_rejects_mismatched_stages():
    features = [_randn(8, 6, seed=s) for s in (30, 31)]
    with pytest.raises(ValueError, match="2 student stages and 1 teacher stages"):
        nmd_loss(features, features[:1])
    with pytest.raises(ValueError, match="stage_weights has 3 entries for 2 stages"):
        nmd_loss(features, features, stage_weights=[1.0, 1.0, 1.0])


def test_nmd_loss_gradient_flows_to_the_student_only():
    student = _randn(8, 3, 5, seed=32, dtype=torch.float32).requires_grad_()
    teacher = _randn(8, 20, seed=33, dtype=torch.float32).requires_grad_()
    nmd_loss([student], [teacher], dim=4).backward()
    assert student.grad is not None and torch.isfinite(student.grad).all()
    assert student.grad.abs().sum() > 0
    assert teacher.grad is None  # the teacher's features are a fixed target


# --- distillation_losses -------------------------------------------------------------------------


def _step_inputs():
    student_logits = _randn(6, 5, seed=40).requires_grad_()
    teacher_logits = _randn(6, 5, seed=41)
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    student_features = [_randn(6, 8, seed=42), _randn(6, 4, seed=43)]
    teacher_features = [_randn(6, 16, seed=44), _randn(6, 8, seed=45)]
    return student_logits, teacher_logits, labels, student_features, teacher_features


def test_distillation_losses_total_is_the_weighted_sum():
    s, t, y, fs, ft = _step_inputs()
    weights = LossWeights(ce=1.0, kd=0.5, l2=0.25, nmd=2.0)
    temperature = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], dtype=torch.float64)
    terms = distillation_losses(s, t, y, weights, temperature, fs, ft, nmd_dim=4)
    assert set(terms) == {"ce", "kd", "l2", "nmd", "total"}
    torch.testing.assert_close(terms["ce"], F.cross_entropy(s, y))
    torch.testing.assert_close(terms["kd"], kd_loss(s, t, temperature))
    torch.testing.assert_close(terms["l2"], logit_l2_loss(s, t))
    torch.testing.assert_close(terms["nmd"], nmd_loss(fs, ft, dim=4))
    expected = terms["ce"] + 0.5 * terms["kd"] + 0.25 * terms["l2"] + 2.0 * terms["nmd"]
    torch.testing.assert_close(terms["total"], expected)
    terms["total"].backward()
    assert torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0


def test_distillation_losses_skips_zero_weight_terms():
    s, t, y, _, _ = _step_inputs()
    terms = distillation_losses(s, t, y, LossWeights(ce=0.0, kd=2.0), temperature=3.0)
    assert set(terms) == {"kd", "total"}
    torch.testing.assert_close(terms["total"], 2.0 * kd_loss(s, t, 3.0))
    assert set(distillation_losses(s, t, y, LossWeights())) == {"ce", "total"}


def test_distillation_losses_nmd_needs_features():
    s, t, y, _, _ = _step_inputs()
    with pytest.raises(ValueError, match="student_features"):
        distillation_losses(s, t, y, LossWeights(nmd=1.0))


@pytest.mark.parametrize("field, value", [("ce", -1.0), ("kd", float("nan")), ("l2", float("inf")), ("nmd", -0.1)])
def test_loss_weights_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=f"LossWeights.{field}="):
        LossWeights(**{field: value})


# --- FitNets hints and attention transfer ------------------------------------------------------------


def test_attention_map_by_hand():
    features = torch.tensor([[[1.0, 2.0], [3.0, 0.0]]])  # (B=1, C=2, L=2)
    expected = torch.tensor([[10.0, 4.0]]) / math.sqrt(116.0)  # Σ_c F², normalised over positions
    torch.testing.assert_close(attention_map(features), expected)


def test_attention_loss_by_hand_and_its_stage_weights():
    student = [torch.tensor([[[1.0, 0.0]]]), torch.tensor([[[0.0, 2.0]]])]  # maps (1, 0) and (0, 1)
    teacher = [torch.tensor([[[0.0, 5.0], [0.0, 1.0]]]), torch.tensor([[[0.0, 3.0]]])]  # maps (0, 1) and (0, 1)
    # Stage 1: ‖(1, 0) − (0, 1)‖ = √2, weight 1; stage 2: 0, weight 1/2.
    assert attention_loss(student, teacher).item() == pytest.approx(math.sqrt(2))
    assert attention_loss(student, teacher, stage_weights=[0.25, 1.0]).item() == pytest.approx(0.25 * math.sqrt(2))
    with pytest.raises(ValueError, match="same spatial extent"):
        attention_loss([torch.zeros(1, 2, 3)], [torch.zeros(1, 2, 4)])
    with pytest.raises(ValueError, match="2 student stages and 1 teacher"):
        attention_loss(student, teacher[:1])


def test_hint_loss_by_hand_and_regressor_shapes():
    teacher = [torch.zeros(4, 6, 5), torch.zeros(4, 6, 3)]
    regressed = [torch.ones(4, 6, 5), 2 * torch.ones(4, 6, 3)]
    assert hint_loss(regressed, teacher).item() == pytest.approx(1.0 + 0.5 * 4.0)
    with pytest.raises(ValueError, match="regressor must map to the teacher's shape"):
        hint_loss([torch.ones(4, 3, 5)], [torch.zeros(4, 6, 5)])
    student = [torch.randn(4, 2, 5), torch.randn(4, 2, 3)]
    regressors = hint_regressors(student, teacher, torch.Generator().manual_seed(0))
    assert [tuple(r(f).shape) for r, f in zip(regressors, student)] == [(4, 6, 5), (4, 6, 3)]
    again = hint_regressors(student, teacher, torch.Generator().manual_seed(0))
    assert all(torch.equal(a.weight, b.weight) for a, b in zip(regressors, again))  # seeded
    assert isinstance(hint_regressors([torch.zeros(2, 3)], [torch.zeros(2, 7)])[0], torch.nn.Linear)
    with pytest.raises(ValueError, match="differ in extent"):
        hint_regressors([torch.zeros(1, 2, 4)], [torch.zeros(1, 2, 5)])


def test_hint_loss_gradient_reaches_the_regressor_not_the_teacher():
    teacher = [torch.randn(4, 6, 5, requires_grad=True)]
    student = [torch.randn(4, 2, 5, requires_grad=True)]
    regressor = hint_regressors(student, teacher)[0]
    hint_loss([regressor(student[0])], teacher).backward()
    assert teacher[0].grad is None and student[0].grad.abs().sum() > 0 and regressor.weight.grad.abs().sum() > 0
