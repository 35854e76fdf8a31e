"""Reference models: sized from the dataset shape, trainable, convertible to analog."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import aimc
from experiments.models import MLP, VGG8, LeNet5, ResNet20, build_model

SMALL = {
    MLP: {"hidden": [16]},
    LeNet5: {},
    ResNet20: {"width": 4, "blocks": 1},
    VGG8: {"width": 4, "hidden": 16},
}


@pytest.mark.parametrize("cls", list(SMALL), ids=lambda c: c.__name__)
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)], ids=str)
def test_output_shape_and_gradients(cls, shape):
    torch.manual_seed(0)
    model = cls(shape, 7, **SMALL[cls])
    out = model(torch.rand(3, *shape))
    assert out.shape == (3, 7) and bool(torch.isfinite(out).all())
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_full_size_parameter_counts():
    # ResNet-20 has 0.27 M parameters on CIFAR-10 (He et al., 2016, Table 6).
    n = sum(p.numel() for p in ResNet20((3, 32, 32), 10).parameters())
    assert 0.26e6 < n < 0.28e6
    lenet = LeNet5((1, 32, 32), 10)
    assert lenet.classifier[0].in_features == 16 * 5 * 5  # the classic 32x32 LeNet-5


def test_mlp_layer_names_are_stable():
    names = [
        n
        for n, m in MLP((1, 8, 8), 10, hidden=[32, 16]).named_modules()
        if isinstance(m, nn.Linear)
    ]
    assert names == ["fc1", "fc2", "fc3"]


@pytest.mark.parametrize("cls", list(SMALL), ids=lambda c: c.__name__)
def test_models_convert_to_analog(cls):
    torch.manual_seed(0)
    model = cls((1, 8, 8), 10, **SMALL[cls]).eval()
    analog = aimc.convert_to_analog(model, aimc.AnalogConfig.ideal())
    assert len(list(aimc.analog_layers(analog))) >= 2
    x = torch.rand(4, 1, 8, 8)
    # ideal tiles rescale weights to conductances and back: a few float32 ulps per product,
    # summed over up to 576 rows, hence looser than the float32 defaults.
    torch.testing.assert_close(analog(x), model(x), rtol=1e-4, atol=1e-5)


def test_build_model_passes_only_accepted_facts():
    def fixed():  # a user model that knows its own shape
        return nn.Linear(64, 10)

    def sized(in_shape, num_classes, width=3):
        return nn.Linear(int(torch.tensor(in_shape).prod()), num_classes * width)

    assert build_model(fixed, (1, 8, 8), 10).out_features == 10
    assert build_model(sized, (1, 8, 8), 10, width=2).out_features == 20
    with pytest.raises(TypeError, match="nn.Module"):
        build_model(lambda **kw: 3, (1, 8, 8), 10)


def test_vgg8_refuses_tiny_images():
    with pytest.raises(ValueError, match="8x8"):
        VGG8((1, 4, 4), 10)
