"""NC block maths, NC placement, the CIFAR ResNet and the architecture registry."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nc_viz.models import (
    CifarResNet,
    NCBlock,
    NCWrapper,
    add_nc_blocks,
    build_model,
    count_parameters,
    describe_archs,
    get_arch,
    list_archs,
    target_layer,
)
from nc_viz.models import nc_block as nc_block_module

RESNETS = {f"resnet{d}{s}" for d in (18, 34, 50, 101, 152, 20, 32, 44, 56, 110) for s in ("", "_nc")}
WIDER_RESNETS = {f"{n}{s}" for n in ("resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2",
                                      "wide_resnet101_2") for s in ("", "_nc")}


def _block(channels: int = 16, spatial: tuple[int, int] = (4, 4), reduction: int = 2, seed: int = 0) -> NCBlock:
    torch.manual_seed(seed)
    return NCBlock(channels, spatial, reduction).double().eval()


def _mlp_by_hand(seq: nn.Sequential, v: torch.Tensor) -> torch.Tensor:
    """Conv1d(k=1) -> ReLU -> Conv1d(k=1) written as matrix products over the A axis of (N, A, L)."""
    w1, b1 = seq[0].weight[:, :, 0], seq[0].bias
    w2, b2 = seq[2].weight[:, :, 0], seq[2].bias
    hidden = torch.relu(torch.einsum("ha,nal->nhl", w1, v) + b1[None, :, None])
    return torch.einsum("ah,nhl->nal", w2, hidden) + b2[None, :, None]


def _message_by_hand(block: NCBlock, x: torch.Tensor) -> torch.Tensor:
    """The NC block's message for one group (C <= 1023) at the nominal size, as the published layer
    code computes it: encode, channel attention softmax_i(-(m_i - m_j)^2), decode: D (B, C, h, w)."""
    b, c, h, w = x.shape
    v = x.reshape(b, c, h * w).transpose(1, 2)                 # (B, A, C): column k = channel k
    e = _mlp_by_hand(block.fc_in, v)
    m = e.mean(dim=1)                                          # (B, C)
    a = torch.empty(b, c, c, dtype=x.dtype)
    for j in range(c):
        scores = -(m - m[:, j : j + 1]) ** 2                   # over sources i
        a[:, :, j] = torch.softmax(scores, dim=1)
    g = torch.zeros_like(e)
    for j in range(c):
        for i in range(c):
            g[:, :, j] += a[:, i, j, None] * e[:, :, i]
    d = _mlp_by_hand(block.fc_out, g)                          # (B, A, C)
    return d.transpose(1, 2).reshape(b, c, h, w)


def _nc_by_hand(block: NCBlock, x: torch.Tensor) -> torch.Tensor:
    """The NC block at the nominal size: ReLU(X + D)."""
    return torch.relu(x + _message_by_hand(block, x))


# ----------------------------------------------------------------------------- NC block


def test_nc_block_matches_design_by_hand() -> None:
    block = _block()
    x = torch.randn(3, 16, 4, 4, dtype=torch.float64)
    with torch.no_grad():
        y = block(x)
        expected = _nc_by_hand(block, x)
    assert y.shape == x.shape
    torch.testing.assert_close(y, expected)


def test_attention_is_a_distribution_over_sources() -> None:
    block = _block()
    x = torch.randn(2, 16, 4, 4, dtype=torch.float64) * 3
    with torch.no_grad():
        a = block.attention(x)
    assert a.shape == (2, 16, 16)
    assert (a >= 0).all()
    torch.testing.assert_close(a.sum(dim=1), torch.ones(2, 16, dtype=torch.float64))


def test_groups_of_512_channels_do_not_mix() -> None:
    block = _block(channels=1024, spatial=(2, 2), reduction=1)
    assert block.groups == 2
    x = torch.randn(2, 1024, 2, 2, dtype=torch.float64)
    x2 = x.clone()
    x2[:, 512:] += torch.randn(2, 512, 2, 2, dtype=torch.float64) * 5
    with torch.no_grad():
        y, y2 = block(x), block(x2)
        assert block.attention(x).shape == (4, 512, 512)
    torch.testing.assert_close(y[:, :512], y2[:, :512])
    assert not torch.allclose(y[:, 512:], y2[:, 512:])


def test_group_split_must_be_even() -> None:
    with pytest.raises(ValueError, match="1025 channels"):
        NCBlock(1025, (2, 2), 1)


@pytest.mark.parametrize("spatial, reduction, reason", [
    ((2, 2), 8, r"2x2 .*too small for reduction 8"),   # A // r = 0: no hidden unit
    ((0, 4), 1, r"spatial size must be positive.*\(0, 4\)"),
])
def test_too_small_maps_are_rejected(spatial: tuple[int, int], reduction: int, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        NCBlock(8, spatial, reduction)


def test_wrong_channel_count_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"\(B, 16, H, W\)"):
        _block()(torch.zeros(1, 8, 4, 4, dtype=torch.float64))


def test_resize_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Off the nominal size: D at (h0, w0), resized back (nearest), added to the ORIGINAL X."""
    calls = []
    real = F.interpolate

    def spy(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        calls.append(kwargs.get("mode"))
        return real(x, *args, **kwargs)

    monkeypatch.setattr(nc_block_module.F, "interpolate", spy)
    block = _block(channels=6, spatial=(8, 8), reduction=4)
    x = torch.randn(2, 6, 12, 10, dtype=torch.float64)
    with torch.no_grad():
        y = block(x)
        assert y.shape == (2, 6, 12, 10)
        assert calls == ["nearest", "nearest"]
        d = _message_by_hand(block, real(x, size=(8, 8), mode="nearest"))
        torch.testing.assert_close(y, torch.relu(x + real(d, size=(12, 10), mode="nearest")))
        calls.clear()
        block(torch.randn(2, 6, 8, 8, dtype=torch.float64))
    assert calls == []


def test_double_size_input_equals_relu_of_x_plus_upsampled_message() -> None:
    """A block built for 4x4 fed 8x8 (the published CIFAR case): ReLU(X + nearest_up(D)), by hand."""
    block = _block(channels=12, spatial=(4, 4), reduction=2, seed=3)
    x = torch.randn(2, 12, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        d = _message_by_hand(block, x[:, :, ::2, ::2])          # nearest 8 -> 4 keeps every other pixel
        up = d.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
        y = block(x)
    torch.testing.assert_close(y, torch.relu(x + up))
    assert not torch.allclose(y, torch.relu(x[:, :, ::2, ::2] + d).repeat_interleave(2, 2).repeat_interleave(2, 3))


@pytest.mark.parametrize("size", [(4, 4), (8, 8), (6, 10), (3, 3)])
def test_zero_message_gives_relu_of_input_at_any_size(size: tuple[int, int]) -> None:
    """With fc_out's last layer zeroed, D = 0 and the block is exactly ReLU(X), whatever the input size."""
    block = _block(channels=8, spatial=(4, 4), reduction=2)
    with torch.no_grad():
        block.fc_out[2].weight.zero_()
        block.fc_out[2].bias.zero_()
        x = torch.randn(3, 8, *size, dtype=torch.float64)
        torch.testing.assert_close(block(x), torch.relu(x), rtol=0, atol=0)


@pytest.mark.parametrize("reduction", [1, 2, 4, 8, 16])
def test_nc_block_parameter_count(reduction: int) -> None:
    area, hidden = 64, 64 // reduction
    expected = 2 * ((area * hidden + hidden) + (hidden * area + area))
    assert count_parameters(NCBlock(32, (8, 8), reduction)) == expected


def test_wrapper_runs_block_after_nc() -> None:
    block = _block(channels=4, spatial=(2, 2), reduction=1)
    conv = nn.Conv2d(4, 5, 1).double()
    wrapper = NCWrapper(block, conv)
    x = torch.randn(1, 4, 2, 2, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(wrapper(x), conv(block(x)))
    assert {name for name, _ in wrapper.named_children()} == {"cn", "block"}


# ----------------------------------------------------------------------------- placement


def _nc_keys(model: nn.Module) -> list[str]:
    return [k[: -len(".fc_in.0.weight")] for k in model.state_dict() if k.endswith("cn.fc_in.0.weight")]


@pytest.fixture(scope="module")
def resnet50_stages() -> nn.Module:
    torch.manual_seed(0)
    return build_model("resnet50_nc", 7, input_size=64).eval()


@pytest.fixture(scope="module")
def resnet50_blocks() -> nn.Module:
    torch.manual_seed(0)
    return build_model("resnet50_nc", 5, input_size=64, placement="blocks").eval()


def test_stages_placement_keys_and_forward(resnet50_stages: nn.Module) -> None:
    model = resnet50_stages
    keys = model.state_dict()
    assert _nc_keys(model) == ["layer1.cn", "layer2.cn", "layer3.cn", "layer4.cn"]
    assert "layer1.block.0.conv1.weight" in keys
    assert "layer4.block.2.conv3.weight" in keys
    assert model.layer1.cn.spatial == (16, 16) and model.layer4.cn.spatial == (4, 4)
    assert model.layer3.cn.channels == 512 and model.layer4.cn.groups == 2
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 7)
        assert model(torch.randn(1, 3, 48, 56)).shape == (1, 7)


def test_blocks_placement_keys_and_forward(resnet50_blocks: nn.Module) -> None:
    model = resnet50_blocks
    assert _nc_keys(model) == ["layer1.0.cn", "layer2.0.cn", "layer3.0.cn", "layer3.4.cn", "layer4.0.cn"]
    keys = model.state_dict()
    assert "layer3.4.block.conv1.weight" in keys
    assert not any(k.startswith(("layer3.1.cn", "layer4.1.cn", "layer4.2.cn")) for k in keys)
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 5)


def test_blocks_placement_every_fourth_block() -> None:
    model = build_model("resnet56_nc", 3, placement="blocks")  # 9 blocks per stage
    assert _nc_keys(model) == ["layer1.0.cn", "layer1.4.cn", "layer1.8.cn",
                               "layer2.0.cn", "layer2.4.cn", "layer2.8.cn", "layer3.0.cn"]
    assert model.layer2[4].cn.spatial == (16, 16) and model.layer3[0].cn.spatial == (16, 16)


def test_cifar_stages_placement() -> None:
    model = build_model("resnet20_nc", 10)
    assert _nc_keys(model) == ["layer1.cn", "layer2.cn", "layer3.cn"]
    assert [getattr(model, s).cn.spatial for s in ("layer1", "layer2", "layer3")] == [(32, 32), (32, 32), (16, 16)]


def test_unknown_placement() -> None:
    with pytest.raises(ValueError, match="placement 'everywhere'"):
        build_model("resnet20_nc", 10, placement="everywhere")


def test_add_nc_blocks_keeps_training_mode_and_refuses_twice() -> None:
    model = CifarResNet(20, 10).train()
    stages = ("layer1", "layer2", "layer3")
    add_nc_blocks(model, stages, 32)
    assert model.training and isinstance(model.layer1, NCWrapper)
    for placement in ("stages", "blocks"):
        with pytest.raises(ValueError, match="already has NC blocks"):
            add_nc_blocks(model, stages, 32, placement=placement)
    with pytest.raises(ValueError, match="no stage layer4"):
        add_nc_blocks(CifarResNet(20, 10), (*stages, "layer4"), 32)


def test_nc_reduction_changes_parameter_count_as_expected() -> None:
    base = count_parameters(build_model("resnet20", 10))
    for r in (4, 16):
        extra = 0
        for area in (1024, 1024, 256):  # layer1..3 inputs at 32 px: 32x32, 32x32, 16x16
            h = area // r
            extra += 2 * ((area * h + h) + (h * area + area))
        assert count_parameters(build_model("resnet20_nc", 10, reduction=r)) == base + extra


# ----------------------------------------------------------------------------- CIFAR ResNet


def test_resnet20_parameter_count() -> None:
    # He et al. report 0.27M with option-A (parameter-free) shortcuts: 269,722 here.
    # Option B adds the two projection shortcuts: 16*32 + 2*32 (layer2.0) and 32*64 + 2*64
    # (layer3.0), i.e. 576 + 2,176 = 2,752 more: 272,474.
    # By hand: stem 432 + 32; layer1 3 * 2 * (2304 + 32) = 14,016; layer2 14,528 + 2 * 18,560
    # = 51,648; layer3 57,728 + 2 * 73,984 = 205,696; fc 64*10 + 10 = 650.
    model = build_model("resnet20", 10)
    assert count_parameters(model) == 272_474
    assert isinstance(model.fc, nn.Linear) and isinstance(model.avgpool, nn.AdaptiveAvgPool2d)
    assert not hasattr(model, "maxpool")
    assert "layer2.0.downsample.0.weight" in model.state_dict()
    assert "layer1.0.downsample.0.weight" not in model.state_dict()


@pytest.mark.parametrize("depth, blocks", [(32, 5), (56, 9)])
def test_cifar_depths(depth: int, blocks: int) -> None:
    model = build_model(f"resnet{depth}", 10)
    assert [len(getattr(model, f"layer{i}")) for i in (1, 2, 3)] == [blocks] * 3
    assert get_arch(f"resnet{depth}").block_counts == (blocks,) * 3


def _avgpool_input(model: nn.Module, x: torch.Tensor) -> torch.Size:
    seen = []
    handle = model.avgpool.register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape))
    with torch.no_grad():
        model.eval()(x)
    handle.remove()
    return seen[0]


def test_stem_stride_2_at_64_px_gives_8x8_features() -> None:
    model = build_model("resnet20", 10, input_size=64, stem_stride=2)
    assert _avgpool_input(model, torch.randn(2, 3, 64, 64)) == (2, 64, 8, 8)
    nc = build_model("resnet20_nc", 10, input_size=64, stem_stride=2)
    assert nc.layer1.cn.spatial == (32, 32) and nc.layer3.cn.spatial == (16, 16)
    assert _avgpool_input(nc, torch.randn(1, 3, 64, 64)) == (1, 64, 8, 8)


def test_stem_stride_is_cifar_only() -> None:
    with pytest.raises(ValueError, match="stem_stride"):
        build_model("resnet18", 10, stem_stride=2)


# ----------------------------------------------------------------------------- registry


def test_list_archs_has_the_resnet_families() -> None:
    assert RESNETS | WIDER_RESNETS <= set(list_archs())
    assert set(list_archs("cifar_resnet")) == {f"resnet{d}{s}" for d in (20, 32, 44, 56, 110) for s in ("", "_nc")}


def test_unknown_arch_suggests_close_name() -> None:
    with pytest.raises(ValueError, match=r"unknown architecture 'resnet100'.*did you mean .*'resnet101'"):
        get_arch("resnet100")
    with pytest.raises(ValueError, match=r"known: .*\bresnet18\b"):
        build_model("vgg16")


def test_specs() -> None:
    spec = get_arch("resnet101_nc")
    assert (spec.base, spec.family, spec.nc, spec.default_input_size, spec.stages) == (
        "resnet101", "resnet", True, 224, ("layer1", "layer2", "layer3", "layer4"))
    assert spec.block_counts == (3, 4, 23, 3) and spec.bottleneck
    cifar = get_arch("resnet56")
    assert (cifar.family, cifar.nc, cifar.default_input_size, cifar.block_counts) == ("cifar_resnet", False, 32, (9, 9, 9))
    assert not get_arch("resnet34").bottleneck


def test_describe_archs_counts_on_the_meta_device() -> None:
    rows = {r["name"]: r for r in describe_archs(num_classes=10)}
    assert RESNETS | WIDER_RESNETS <= set(rows)
    assert rows["resnet20"]["parameters"] == 272_474 and rows["resnet20"]["family"] == "cifar_resnet"
    assert rows["resnet20_nc"]["parameters"] == count_parameters(build_model("resnet20_nc", 10))
    assert rows["resnet101"]["parameters"] == 44_549_160 - 990 * 2049  # fc: 2048 * 10 + 10
    assert rows["resnet101_nc"]["input_size"] == 224


def test_plain_arch_ignores_nc_options() -> None:
    model = build_model("resnet18", 10, reduction=3, placement="nonsense")
    assert not _nc_keys(model) and count_parameters(model) == 11_181_642


def test_target_layer(tiny_net: nn.Module, resnet50_stages: nn.Module, resnet50_blocks: nn.Module) -> None:
    cifar = build_model("resnet20", 10)
    assert target_layer(cifar) is cifar.layer3
    cifar_nc = build_model("resnet20_nc", 10)
    assert isinstance(target_layer(cifar_nc), NCWrapper) and target_layer(cifar_nc) is cifar_nc.layer3
    assert target_layer(resnet50_stages) is resnet50_stages.layer4
    assert isinstance(target_layer(resnet50_stages), NCWrapper)
    assert isinstance(target_layer(resnet50_blocks), nn.Sequential)
    assert target_layer(tiny_net) is tiny_net.layer4
    with pytest.raises(ValueError, match="no known classifier head"):
        target_layer(nn.Linear(2, 2))


@pytest.mark.slow
def test_resnet101_at_224() -> None:
    plain = build_model("resnet101")
    assert count_parameters(plain) == 44_549_160
    nc = build_model("resnet101_nc").eval()
    # stage inputs at 224: 56x56 (layer1, layer2), 28x28, 14x14; reduction 8.
    extra = sum(2 * ((a * (a // 8) + a // 8) + (a // 8 * a + a)) for a in (3136, 3136, 784, 196))
    assert count_parameters(nc) == 44_549_160 + extra
    with torch.no_grad():
        assert nc(torch.randn(1, 3, 224, 224)).shape == (1, 1000)
    blocks = build_model("resnet101_nc", 3, placement="blocks")
    layer3 = [k for k in _nc_keys(blocks) if k.startswith("layer3.")]
    assert layer3 == [f"layer3.{i}.cn" for i in (0, 4, 8, 12, 16, 20)]
