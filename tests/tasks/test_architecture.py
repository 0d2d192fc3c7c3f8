import numpy as np
import pytest
import torch

from kd_envs.tasks import ModelConfig, architecture_of, build_model, count_parameters
from kd_envs.tasks.architecture import (
    DESCRIPTOR_FIELDS,
    Architecture,
    ArchitectureNet,
    InvalidArchitecture,
    LayerSpec,
    build_architecture,
)

FAMILIES = [
    (ModelConfig("mlp", width=32, depth=2), (64,)),
    (ModelConfig("cnn1d", width=64, depth=3), (40,)),
    (ModelConfig("vgg", width=8, depth=3), (40,)),
    (ModelConfig("vgg", width=8, depth=2), (3, 16, 16)),
    (ModelConfig("resnet", depth=20), (3, 32, 32)),
    (ModelConfig("resnet", depth=8), (3, 32, 32)),
    (ModelConfig("resnet1d", width=4, depth=8), (40,)),
]


@pytest.mark.parametrize("config, shape", FAMILIES, ids=lambda v: getattr(v, "family", ""))
def test_spec_matches_the_model_family(config, shape):
    model = build_model(config, shape, 10)
    arch = architecture_of(config, shape, 10)
    assert arch.num_parameters() == count_parameters(model)
    # Same parameter tensors in the same order, shape by shape.
    spec_shapes = sorted(tuple(p.shape) for p in ArchitectureNet(arch).parameters())
    assert spec_shapes == sorted(tuple(p.shape) for p in model.parameters())
    assert ArchitectureNet(arch)(torch.randn(2, *shape)).shape == (2, 10)


def test_cnn1d_spec_hand_count():
    # conv 1->64 k5 (320) + BN (128); two convs 64->64 k3 (12,288 + 128 each); head 64*10+10.
    arch = architecture_of(ModelConfig("cnn1d", width=64, depth=3), (40,), 10)
    assert arch.num_parameters() == 320 + 128 + 2 * (12288 + 128) + 650
    assert arch.layer_shapes() == [(64, 20), (64, 10), (64, 5)]


def test_descriptors_follow_the_paper():
    arch = architecture_of(ModelConfig("resnet", depth=8), (3, 32, 32), 10)
    d = arch.descriptors()
    assert d.shape == (len(arch.layers), len(DESCRIPTOR_FIELDS))
    # stem conv, then blocks (1,2), (3,4), (5,6): skip start on the first, skip end on the last layer.
    np.testing.assert_array_equal(d[:, DESCRIPTOR_FIELDS.index("skip_start")], [0, 1, 0, 1, 0, 1, 0])
    np.testing.assert_array_equal(d[:, DESCRIPTOR_FIELDS.index("skip_end")], [0, 0, 1, 0, 1, 0, 1])
    np.testing.assert_array_equal(d[:, DESCRIPTOR_FIELDS.index("outputs")], [16, 16, 16, 32, 32, 64, 64])
    np.testing.assert_array_equal(d[:, DESCRIPTOR_FIELDS.index("stride")], [1, 1, 1, 2, 1, 2, 1])
    assert set(d[:, 0]) == {1.0}  # all convs


def test_removal_rewires_widths_and_keeps_blocks():
    arch = architecture_of(ModelConfig("resnet", depth=8), (3, 32, 32), 10)
    # Remove the second conv of the first block and the whole second block.
    student = arch.remove_layers([True, True, False, False, False, True, True])
    assert student.residual_blocks == ((1, 1), (2, 3))
    assert [layer.outputs for layer in student.layers] == [16, 16, 64, 64]
    net = ArchitectureNet(student)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    # The last block now goes 16 -> 64 channels: its shortcut became a projection.
    assert net.units[-1].shortcut is not None
    assert net.units[1].shortcut is None  # 16 -> 16, stride 1: identity


def test_shrink_rounds_and_adds_projections_where_widths_differ():
    arch = architecture_of(ModelConfig("resnet", depth=8), (3, 32, 32), 10)
    student = arch.shrink([1.0, 0.5, 0.25, 1.0, 1.0, 1.0, 0.6])
    assert [layer.outputs for layer in student.layers] == [16, 8, 4, 32, 32, 64, 38]
    net = ArchitectureNet(student)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert net.units[1].shortcut is not None  # 16 in, 4 out
    assert student.num_parameters() < arch.num_parameters()


def test_removing_everything_leaves_a_linear_head():
    arch = architecture_of(ModelConfig("mlp", width=16, depth=2), (64,), 10)
    empty = arch.remove_layers([False, False])
    assert empty.layers == () and empty.describe() == "(no layers)"
    assert empty.num_parameters() == 64 * 10 + 10


def test_spatial_extent_running_out_is_invalid():
    # Four 2x poolings on a length-8 signal: 8 -> 4 -> 2 -> 1 -> 0.
    layers = tuple(LayerSpec("conv", 4, 3, 1, 1, pool=2) for _ in range(4))
    arch = Architecture((8,), 10, layers)
    with pytest.raises(InvalidArchitecture, match="layer 3"):
        arch.layer_shapes()
    with pytest.raises(InvalidArchitecture):
        ArchitectureNet(arch)
    assert arch.remove_layers([True, True, True, False]).layer_shapes()[-1] == (4, 1)


def test_residual_block_whose_padding_breaks_the_shortcut_is_invalid():
    layers = (LayerSpec("conv", 4, 3, 1, 0), LayerSpec("conv", 4, 3, 1, 0))  # no padding: 10 -> 8 -> 6
    with pytest.raises(InvalidArchitecture, match="shortcut"):
        Architecture((10,), 2, layers, ((0, 1),)).layer_shapes()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(kind="pool", outputs=4), "kind"),
        (dict(kind="conv", outputs=0), "outputs"),
        (dict(kind="conv", outputs=4, padding=-1), "padding"),
        (dict(kind="linear", outputs=4, kernel_size=3), "linear layer"),
    ],
)
def test_layer_spec_errors_name_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LayerSpec(**kwargs)


def test_architecture_errors():
    conv, lin = LayerSpec("conv", 4, 3, 1, 1), LayerSpec("linear", 4)
    with pytest.raises(ValueError, match="conv after a linear"):
        Architecture((8,), 2, (lin, conv))
    with pytest.raises(ValueError, match="spans a linear"):
        Architecture((8,), 2, (conv, lin), ((0, 1),))
    with pytest.raises(ValueError, match="in order, disjoint"):
        Architecture((8,), 2, (conv, conv, conv), ((0, 1), (1, 2)))
    with pytest.raises(ValueError, match="factors has 1"):
        Architecture((8,), 2, (conv, conv)).shrink([0.5])
    with pytest.raises(ValueError, match="shrink factor 0"):
        Architecture((8,), 2, (conv,)).shrink([0.0])


def test_dict_round_trip():
    arch = architecture_of(ModelConfig("resnet", depth=8), (3, 32, 32), 10)
    assert Architecture.from_dict(arch.to_dict()) == arch
    assert Architecture.from_dict(arch.shrink([0.5] * 7).to_dict()) != arch


def test_build_is_seeded_and_leaves_the_global_generator_alone():
    arch = architecture_of(ModelConfig("cnn1d", width=8, depth=2), (40,), 10)
    state = torch.random.get_rng_state()
    a = build_architecture(arch, torch.Generator().manual_seed(3))
    b = build_architecture(arch, torch.Generator().manual_seed(3))
    assert torch.equal(torch.random.get_rng_state(), state)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_linear_after_convs_sees_pooled_channels():
    arch = Architecture((40,), 3, (LayerSpec("conv", 6, 3, 2, 1), LayerSpec("linear", 5)))
    net = ArchitectureNet(arch)
    logits, features = net(torch.randn(4, 40), return_features=True)
    assert logits.shape == (4, 3)
    assert [tuple(f.shape) for f in features] == [(4, 6, 20), (4, 5)]
    assert arch.num_parameters() == 18 + 12 + (6 * 5 + 5) + (5 * 3 + 3)


@pytest.mark.parametrize("config, shape", FAMILIES, ids=lambda v: getattr(v, "family", ""))
def test_parameter_count_is_the_compiled_networks(config, shape):
    # The spec's count against the module's, over random students of each family: removals rewire widths,
    # break residual shortcuts into projections and leave linear layers after pooled convs.
    teacher = architecture_of(config, shape, 10)
    rng = np.random.default_rng(0)
    for _ in range(30):
        keep = rng.random(len(teacher.layers)) < 0.6
        student = teacher.remove_layers(keep)
        student = student.shrink(rng.choice([0.25, 0.5, 0.7, 1.0], size=len(student.layers)))
        with torch.device("meta"):
            net = ArchitectureNet(student, check_shapes=False)
        assert student.num_parameters() == sum(p.numel() for p in net.parameters()), student.describe()
