"""Model families: config validation, shapes, CIFAR ResNet structure, seeded construction, the layer spec
read off a module, and the seeded weights published results start from."""

import pytest
import torch

from kd_envs.tasks.architecture import ArchitectureNet
from kd_envs.tasks.models import (
    CIFAR_RESNET_DEPTHS,
    BasicBlock,
    CifarResNet,
    ModelConfig,
    architecture_of,
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


def test_vgg_hand_count_and_shape():
    # Three stages of two 3x3 convs (16, 32, 64 channels) + BN, a 2x max pool after each; head 64 -> 10.
    convs = [(1, 16), (16, 16), (16, 32), (32, 32), (32, 64), (64, 64)]
    expected = sum(i * o * 3 + 2 * o for i, o in convs) + 64 * 10 + 10
    model = build_model(ModelConfig("vgg", width=16, depth=3), (40,), num_classes=10)
    assert count_parameters(model) == expected == 24954
    logits, features = model(torch.randn(2, 40), return_features=True)
    assert logits.shape == (2, 10)
    assert [tuple(f.shape[1:]) for f in features] == [(16, 40), (16, 20), (32, 20), (32, 10), (64, 10), (64, 5)]


# One config per family, small: the module families read their spec off the module.
SPEC_CASES = [
    (ModelConfig("mlp", width=12, depth=2), (20,)),
    (ModelConfig("cnn1d", width=6, depth=3), (40,)),
    (ModelConfig("resnet", depth=8), (3, 16, 16)),
]


@pytest.mark.parametrize("config, shape", SPEC_CASES, ids=lambda v: getattr(v, "family", ""))
def test_the_spec_read_off_a_module_computes_the_same_function(config, shape):
    # The spec compiled by ArchitectureNet, given the module's weights (same tensors, same order), is
    # the same network: what N2NCompress edits is the teacher it was given.
    model = build_model(config, shape, 10, torch.Generator().manual_seed(0))
    arch = architecture_of(config, shape, 10)
    net = ArchitectureNet(arch)
    source, target = model.state_dict(), net.state_dict()
    assert [v.shape for v in source.values()] == [v.shape for v in target.values()]
    net.load_state_dict(dict(zip(target, source.values(), strict=True)))
    x = torch.randn(6, *shape)
    for train in (True, False):  # batch statistics, then running statistics
        model.train(train), net.train(train)
        with torch.no_grad():
            torch.testing.assert_close(net(x), model(x))


def test_architecture_of_reads_the_module_without_drawing_or_allocating():
    rng = torch.get_rng_state()
    arch = architecture_of(ModelConfig("resnet", depth=110), (3, 32, 32), 100)
    assert torch.equal(torch.get_rng_state(), rng)
    assert len(arch.layers) == 109 and len(arch.residual_blocks) == 54
    assert arch.num_parameters() == _cifar_resnet_parameters(110, 100)
    cnn = architecture_of(ModelConfig("cnn1d", width=64, depth=3), (40,), 10)
    assert [(s.outputs, s.kernel_size, s.stride, s.padding) for s in cnn.layers] == [
        (64, 5, 2, 2), (64, 3, 2, 1), (64, 3, 2, 1)
    ]  # fmt: skip


# sha256 (names, dtypes, shapes, bytes: kd_envs.tasks.task.tensors_sha256) of every named task's teacher
# and student as built from torch.Generator().manual_seed(0). Teachers trained at run time and cached,
# and the students of published entries, start from these weights: a change here means published
# results no longer replay (bump task.CACHE_VERSION and say so).
SEEDED_WEIGHTS = {
    ("cnn1d", 32, 3, (40,), 10): "f2bdbaa1ede26dcb5551c1542f6f21710067ebbfb344d41b59cbf6138861ecbb",
    ("cnn1d", 64, 3, (40,), 10): "e1c9e16508e012788a257d6be092da17a2904ca33687df9766437ef7e9aaadf6",
    ("cnn1d", 8, 2, (40,), 10): "37cfd8fab2f629a2b89ac1b1406dbe544fd990ff977db7bf3f6b28ab48907bf0",
    ("mlp", 16, 1, (64,), 10): "ca3e7ed171e9ed3a6e7000f8486581ee167129335ad61270fb9b374bde01c03d",
    ("mlp", 256, 2, (64,), 10): "04ec735eab73e09e5dec5d7e71d8732bf3e4c5072b9a80245f80fe7c66c1be82",
    ("resnet", 16, 110, (3, 32, 32), 100): "4add68baa1451c4e89d51b2de36c6013e1ed38d26e3abcc1f91414128bcc79db",
    ("resnet", 16, 20, (3, 32, 32), 10): "b37f573a0e823b0b19c1d3bbedcaab0e31c6da62787c59783aeb81a4ba186a04",
    ("resnet", 16, 20, (3, 32, 32), 100): "2f69a9274fe44708a7dfae2d6820ef6828878e2d68da565c4ba2e8fd91a76746",
    ("resnet", 16, 56, (3, 32, 32), 10): "82bdddc61796e3407dce22563d89ad454b8dc22bd95e346c41068cbceaa79e2a",
    ("resnet1d", 16, 14, (40,), 10): "90aaebbf407aaefa5c7e66ef4ac8abeba7d2c7840e9b2fd085bbb596c6477e89",
    ("vgg", 16, 3, (40,), 10): "60de9a53982f41b967ea5d3e31fcf125609df6efa998908f3e0b231a46919736",
}
_TASK_SHAPES = {"mnist1d": ((40,), 10), "digits": ((64,), 10), "cifar10": ((3, 32, 32), 10),
                "cifar100": ((3, 32, 32), 100)}  # fmt: skip


def test_every_named_task_model_has_pinned_seeded_weights():
    from kd_envs.tasks import TASKS

    used = set()
    for config in TASKS.values():
        shape, num_classes = _TASK_SHAPES[config.dataset.name]
        for model in (config.teacher, config.student):
            used.add((model.family, model.width, model.depth, shape, num_classes))
    assert used == set(SEEDED_WEIGHTS)


@pytest.mark.parametrize("case", sorted(SEEDED_WEIGHTS, key=str), ids=lambda c: "-".join(map(str, c[:3])))
def test_seeded_weights_are_those_published_results_start_from(case):
    from kd_envs.tasks.task import tensors_sha256

    family, width, depth, shape, num_classes = case
    model = build_model(ModelConfig(family, width, depth), shape, num_classes, torch.Generator().manual_seed(0))
    assert tensors_sha256(model.state_dict()) == SEEDED_WEIGHTS[case]
