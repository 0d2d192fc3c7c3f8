"""Model families: config validation, shapes, CIFAR ResNet structure, seeded construction."""

import pytest
import torch

from kd_envs.tasks.models import (
    CIFAR_RESNET_DEPTHS,
    BasicBlock,
    CifarResNet,
    ModelConfig,
    build_model,
    count_parameters,
)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"family": "transformer"}, "ModelConfig.family='transformer'"),
        ({"family": "mlp", "width": 0}, "ModelConfig.width=0"),
        ({"family": "cnn1d", "depth": 0}, "ModelConfig.depth=0"),
        ({"family": "resnet", "depth": 18}, "ModelConfig.depth=18"),
        ({"family": "resnet1d", "depth": 12}, "ModelConfig.depth=12"),
    ],
)
def test_model_config_errors_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ModelConfig(**kwargs)


def test_mlp_shapes_and_features():
    model = build_model(ModelConfig("mlp", width=8, depth=3), (4, 4), num_classes=5)
    x = torch.randn(2, 4, 4)
    logits, features = model(x, return_features=True)
    assert logits.shape == (2, 5)
    assert isinstance(features, list) and [f.shape for f in features] == [(2, 8)] * 3
    assert all((f >= 0).all() for f in features)  # post-ReLU activations
    torch.testing.assert_close(model(x), logits)
    assert count_parameters(model) == (16 * 8 + 8) + 2 * (8 * 8 + 8) + (8 * 5 + 5)


def test_cnn1d_shapes_and_features():
    model = build_model(ModelConfig("cnn1d", width=6, depth=3), (40,), num_classes=10).eval()
    x = torch.randn(4, 40)
    logits, features = model(x, return_features=True)
    assert logits.shape == (4, 10)
    # each stride-2 block halves the length: 40 -> 20 -> 10 -> 5
    assert [f.shape for f in features] == [(4, 6, 20), (4, 6, 10), (4, 6, 5)]
    torch.testing.assert_close(model(x), logits)
    torch.testing.assert_close(model(x[:, None, :]), logits)  # (B, 1, L) is accepted too


def test_build_model_rejects_inputs_of_the_wrong_rank():
    with pytest.raises(ValueError, match="cnn1d expects 1-D samples"):
        build_model(ModelConfig("cnn1d"), (3, 8), num_classes=10)
    with pytest.raises(ValueError, match="resnet expects"):
        build_model(ModelConfig("resnet", depth=8), (40,), num_classes=10)
    with pytest.raises(ValueError, match="depth=12"):
        CifarResNet(12, num_classes=10)


def test_cifar_resnet20_stages():
    model = build_model(ModelConfig("resnet", depth=20), (3, 32, 32), num_classes=100).eval()
    logits, features = model(torch.randn(2, 3, 32, 32), return_features=True)
    assert logits.shape == (2, 100)
    assert [f.shape for f in features] == [(2, 16, 32, 32), (2, 32, 16, 16), (2, 64, 8, 8)]


@pytest.mark.parametrize("depth", [20, 110])
def test_cifar_resnet_blocks_per_stage(depth):
    model = CifarResNet(depth, num_classes=10)
    assert len(model.stages) == 3
    for stage, planes in zip(model.stages, (16, 32, 64), strict=True):
        blocks = [m for m in stage if isinstance(m, BasicBlock)]
        assert len(blocks) == len(stage) == (depth - 2) // 6
        assert all(b.conv2.out_channels == planes for b in blocks)
    # conv1 + 2 convs per block + fc: the depth the name promises (shortcuts don't count)
    assert 1 + 2 * sum(len(s) for s in model.stages) + 1 == depth
    assert sorted(CIFAR_RESNET_DEPTHS) == [8, 14, 20, 32, 44, 56, 110]


def _cifar_resnet_parameters(depth: int, num_classes: int) -> int:
    """He et al.'s CIFAR ResNet with 1x1-conv (+BN) shortcuts where the shape changes."""
    bn = lambda c: 2 * c  # noqa: E731 (weight and bias)
    total = 3 * 16 * 9 + bn(16)
    in_planes = 16
    for planes in (16, 32, 64):
        for _ in range((depth - 2) // 6):
            total += in_planes * planes * 9 + bn(planes) + planes * planes * 9 + bn(planes)
            if in_planes != planes:
                total += in_planes * planes + bn(planes)
            in_planes = planes
    return total + 64 * num_classes + num_classes


def test_cifar_resnet20_parameter_count():
    expected = _cifar_resnet_parameters(20, 100)
    # 269,722 for the classic 10-class ResNet-20 with parameter-free (option A) shortcuts,
    # + 2,752 for the two 1x1-conv + BN shortcuts, + 90 more classes x (64 weights + 1 bias)
    assert expected == 269_722 + 2_752 + 90 * 65 == 278_324
    assert count_parameters(build_model(ModelConfig("resnet", depth=20), (3, 32, 32), 100)) == expected


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize(
    "config", [ModelConfig("mlp", 8, 2), ModelConfig("cnn1d", 8, 2), ModelConfig("resnet", depth=8)]
)
def test_build_model_is_seeded_by_the_generator_alone(config):
    shape = (3, 8, 8) if config.family == "resnet" else (40,)
    rng_before = torch.get_rng_state()
    a = build_model(config, shape, 10, torch.Generator().manual_seed(7))
    b = build_model(config, shape, 10, torch.Generator().manual_seed(7))
    c = build_model(config, shape, 10, torch.Generator().manual_seed(8))
    assert torch.equal(torch.get_rng_state(), rng_before)
    sa, sb, sc = _state(a), _state(b), _state(c)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    weights = [k for k in sa if k.endswith("weight") and sa[k].dim() > 1]
    assert weights and all(not torch.equal(sa[k], sc[k]) for k in weights)


def test_build_model_without_generator_uses_the_global_one():
    torch.manual_seed(123)
    a = build_model(ModelConfig("mlp", 8, 1), (5,), 3)
    torch.manual_seed(123)
    b = build_model(ModelConfig("mlp", 8, 1), (5,), 3)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))


def test_resnet1d_hand_count_and_shape():
    # Stem conv 1->16 (k5) + BN; stage 1: four 16->16 k3 convs + BN; stage 2: 16->32 then three 32->32,
    # a 1x1 16->32 projection; stage 3 likewise at 64; head 64 -> 10.
    stem = 16 * 5 + 32
    stage1 = 4 * (16 * 16 * 3 + 32)
    stage2 = (32 * 16 * 3 + 64) + 3 * (32 * 32 * 3 + 64) + (32 * 16 + 64)
    stage3 = (64 * 32 * 3 + 128) + 3 * (64 * 64 * 3 + 128) + (64 * 32 + 128)
    model = build_model(ModelConfig("resnet1d", width=16, depth=14), (40,), num_classes=10)
    assert count_parameters(model) == stem + stage1 + stage2 + stage3 + 64 * 10 + 10 == 61242
    logits, features = model(torch.randn(3, 40), return_features=True)
    assert logits.shape == (3, 10) and len(features) == 7  # the stem and six residual blocks
    assert [tuple(f.shape[1:]) for f in features] == [(16, 40)] * 3 + [(32, 20)] * 2 + [(64, 10)] * 2
    with pytest.raises(ValueError, match="1-D samples"):
        build_model(ModelConfig("resnet1d", width=4, depth=8), (3, 8, 8), num_classes=10)
