"""EvRefocusNet and its blocks: shapes at any size, identity at init, size, trainability, precision."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from evfocus.models import EvRefocusNet, count_parameters
from evfocus.models.blocks import DenseBlock, pad_to_multiple
from evfocus.models.refocus import straight_through_clamp
from evfocus.training.losses import ReconstructionLoss

BINS = 4


def tiny_net(**kwargs) -> EvRefocusNet:
    torch.manual_seed(0)
    return EvRefocusNet(num_bins=BINS, width=8, **kwargs)


def inputs(n: int, h: int, w: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, h, w, generator=g), torch.randn(n, BINS, h, w, generator=g)


def perturb_head(net: EvRefocusNet) -> None:
    """Leave the identity initialisation so the output depends on the events."""
    torch.nn.init.normal_(net.to_residual.weight, std=0.1)


@pytest.mark.parametrize(("n", "h", "w"), [(2, 37, 53), (1, 260, 346), (1, 1, 5)])
def test_output_has_input_shape_for_any_size(n, h, w):
    net = tiny_net().eval()
    perturb_head(net)
    image, events = inputs(n, h, w)
    with torch.no_grad():
        out = net(image, events)
    assert out.shape == (n, 3, h, w)
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert not torch.equal(out, image)


@settings(max_examples=8, deadline=None)
@given(h=st.integers(1, 24), w=st.integers(1, 24), seed=st.integers(0, 2**16), random_events=st.booleans())
def test_identity_at_initialisation(h, w, seed, random_events):
    net = tiny_net()
    image, events = inputs(2, h, w, seed)
    if not random_events:
        events = torch.zeros_like(events)
    image[0, 0, 0, 0] = 0.0  # black and white pixels are returned exactly too
    image[1, 0, 0, 0] = 1.0
    with torch.no_grad():
        assert torch.equal(net(image, events), image)


def test_events_change_the_output_once_trained_away_from_identity():
    net = tiny_net().eval()
    perturb_head(net)
    image, events = inputs(1, 16, 16)
    with torch.no_grad():
        assert not torch.allclose(net(image, events), net(image, torch.zeros_like(events)))


def test_paper_size_matches_reference_parameter_count():
    # reference EvRefocusNet ("AddNet", 64 event chunks): 4.90 M parameters
    n = count_parameters(EvRefocusNet(num_bins=64, width=64, depth=3))
    assert abs(n - 4.9e6) / 4.9e6 < 0.10
    assert count_parameters(EvRefocusNet(num_bins=64)) < n / 3  # the default is the small CPU config


def test_count_parameters_counts_every_scalar():
    layer = torch.nn.Conv2d(3, 5, 3)  # 5·3·3·3 weights + 5 biases
    assert count_parameters(layer) == 140


def test_optimisation_step_reduces_loss_and_reaches_every_parameter():
    net = tiny_net()
    image, events = inputs(2, 16, 16)
    target = (image * torch.exp(0.2 * events.sum(1, keepdim=True))).clamp(0, 1)
    loss_fn = ReconstructionLoss(l1_weight=1.0, ssim_weight=0.2, gradient_weight=0.1)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(3):
        optimiser.zero_grad()
        loss, _ = loss_fn(net(image, events), target)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[2] < losses[1] < losses[0]
    # after the zero-initialised head moved, every weight gets a gradient (no dead or unused module)
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_straight_through_clamp_bounds_values_but_keeps_gradient():
    x = torch.tensor([-0.5, 0.25, 1.5], requires_grad=True)
    y = straight_through_clamp(x)
    assert y.tolist() == [0.0, 0.25, 1.0]
    y.sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 1.0]


def test_bf16_autocast_and_channels_last_on_cpu():
    net = tiny_net().to(memory_format=torch.channels_last)
    perturb_head(net)
    image, events = inputs(2, 21, 30)
    image = image.contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(image, events)
    assert out.shape == image.shape and out.dtype == torch.float32 and torch.isfinite(out).all()
    with torch.no_grad():
        reference = net(image, events)
    assert (out - reference).abs().max() < 0.1  # bf16 features, same function


@pytest.mark.parametrize("norm", ["batch", "none"])
def test_other_normalisations_run(norm):
    net = tiny_net(norm=norm)
    image, events = inputs(2, 12, 12)
    assert net(image, events).shape == image.shape


@pytest.mark.parametrize(
    ("image_shape", "events_shape", "match"),
    [
        ((1, 1, 8, 8), (1, BINS, 8, 8), "image must be"),
        ((1, 3, 8, 8), (1, BINS + 1, 8, 8), "bins"),
        ((1, 3, 8, 8), (1, BINS, 8), "events must be"),
        ((1, 3, 8, 8), (1, BINS, 8, 9), "differ"),
        ((2, 3, 8, 8), (1, BINS, 8, 8), "differ"),
    ],
)
def test_bad_input_shapes_are_named(image_shape, events_shape, match):
    with pytest.raises(ValueError, match=match):
        tiny_net()(torch.rand(image_shape), torch.zeros(events_shape))


def test_integer_image_is_rejected():
    with pytest.raises(ValueError, match="float"):
        tiny_net()(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), torch.zeros(1, BINS, 8, 8))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"width": 6}, "width"), ({"depth": 1}, "depth"), ({"norm": "layer"}, "norm"),
     ({"num_bins": 0}, "num_bins"), ({"log_eps": 0.0}, "log_eps")],
)
def test_bad_configuration_is_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EvRefocusNet(**{"num_bins": BINS, "width": 8, **kwargs})


def test_dense_block_doubles_channels_and_keeps_its_input():
    x = torch.randn(1, 8, 5, 5)
    y = DenseBlock(8)(x)
    assert y.shape == (1, 16, 5, 5)
    assert torch.equal(y[:, :8], x)  # dense connectivity: the input is passed on unchanged


def test_pad_to_multiple_keeps_content_top_left():
    x = torch.randn(1, 2, 5, 7)
    padded = pad_to_multiple(x, 4)
    assert padded.shape == (1, 2, 8, 8)
    assert torch.equal(padded[..., :5, :7], x)
    assert pad_to_multiple(padded, 4) is padded


def test_event_gain_starts_as_event_integration():
    from evfocus.events.integration import integrate_events

    image, events = inputs(2, 20, 28)
    net = EvRefocusNet(num_bins=BINS, width=8, event_gain_init=0.07)
    expected = integrate_events(image, events, 0.07, log_eps=net.log_eps)
    assert torch.allclose(net(image, events), expected, atol=1e-5)
    assert net.event_gain.requires_grad


def test_a_response_aware_net_starts_as_each_sensors_own_integration():
    """At initialisation the net is event integration in the log its ``linear`` flag names per sample; a net
    that is not response-aware integrates every sample in the frame's log."""
    from evfocus.events.integration import integrate_events

    image, events = inputs(2, 20, 28)
    image = 0.05 + 0.9 * image
    net = EvRefocusNet(num_bins=BINS, width=8, event_gain_init=0.07, response_aware=True)
    linear = torch.tensor([True, False])
    out = net(image, events, linear=linear)
    assert torch.allclose(out[:1], integrate_events(image[:1], events[:1], 0.07, response="linear"), atol=1e-4)
    assert torch.allclose(out[1:], integrate_events(image[1:], events[1:], 0.07, log_eps=net.log_eps), atol=1e-5)
    out.sum().backward()
    assert net.event_gain.grad is not None and torch.isfinite(net.event_gain.grad)
    unaware = EvRefocusNet(num_bins=BINS, width=8, event_gain_init=0.07)
    assert torch.allclose(unaware(image, events, linear=linear), integrate_events(image, events, 0.07), atol=1e-5)


def test_cached_image_features_give_the_same_output():
    net = tiny_net().eval()
    perturb_head(net)
    image, events = inputs(3, 21, 30)
    with torch.no_grad():
        direct = net(image, events)
        cached = net(image, events, image_features=net.encode_image(image))
    assert torch.allclose(direct, cached, atol=1e-6)
