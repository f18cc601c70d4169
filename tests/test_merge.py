"""EvMergeNet and the gradient-energy merge: weights, masking, slice-order equivariance, sharp picks."""

from __future__ import annotations

import kornia
import pytest
import torch

from evfocus.models.merge import EvMergeNet, gradient_energy_merge

BINS = 4


def inputs(num_samples: int, num_slices: int, height: int = 13, width: int = 17, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    stack = torch.rand(num_samples, num_slices, 3, height, width, generator=gen)
    events = torch.randn(num_samples, num_slices, BINS, height, width, generator=gen)
    return stack, events


@pytest.fixture(scope="module")
def net() -> EvMergeNet:
    torch.manual_seed(0)
    return EvMergeNet(BINS, width=8, depth=2).eval()


def test_weights_are_a_softmax_over_valid_slices_only(net: EvMergeNet) -> None:
    stack, events = inputs(2, 5)
    valid = torch.tensor([[True, False, True, True, False], [False, False, False, True, True]])
    with torch.no_grad():
        out = net(stack, events, valid)
        garbage = stack.clone()
        garbage[~valid] = float("nan")  # padded slices must not reach the output, even via context
        padded = net(garbage, events.masked_fill(~valid[:, :, None, None, None], 1e6), valid)
    assert out.image.shape == (2, 3, 13, 17) and out.weights.shape == (2, 5, 13, 17)
    torch.testing.assert_close(out.weights.sum(dim=1), torch.ones(2, 13, 17))
    assert (out.weights[~valid] == 0).all() and (out.weights[valid] > 0).all()
    torch.testing.assert_close(padded.image, out.image)
    expected = (out.weights[:, :, None] * stack).sum(dim=1)
    torch.testing.assert_close(out.image, expected)


def test_mixed_precision_keeps_fp32_weights(net: EvMergeNet) -> None:
    """bf16 autocast (the GPU configs' precision) gives bf16 logits; the softmax stays fp32 and sums to 1."""
    stack, events = inputs(2, 3)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(stack, events)
    assert out.weights.dtype == torch.float32
    torch.testing.assert_close(out.weights.sum(dim=1), torch.ones(2, 13, 17))
    with torch.no_grad():
        full = net(stack, events)
    assert (out.weights - full.weights).abs().max() < 0.05  # bf16 logits: close, not equal


def test_single_slice_passes_through(net: EvMergeNet) -> None:
    stack, events = inputs(2, 1)
    with torch.no_grad():
        out = net(stack, events)
    assert torch.equal(out.weights, torch.ones(2, 1, 13, 17))
    torch.testing.assert_close(out.image, stack[:, 0], rtol=0, atol=0)


def test_permuting_slices_permutes_weights(net: EvMergeNet) -> None:
    stack, events = inputs(2, 6)
    order = torch.tensor([3, 0, 5, 1, 4, 2])
    with torch.no_grad():
        out, shuffled = net(stack, events), net(stack[:, order], events[:, order])
    torch.testing.assert_close(shuffled.weights, out.weights[:, order], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(shuffled.image, out.image, rtol=1e-4, atol=1e-6)


def test_odd_sizes_are_padded_and_cropped_back(net: EvMergeNet) -> None:
    stack, events = inputs(1, 3, height=13, width=17)
    by_hand_stack = torch.nn.functional.pad(stack[0], (0, 3, 0, 3), mode="replicate")[None]  # to 16×20
    by_hand_events = torch.nn.functional.pad(events[0], (0, 3, 0, 3), mode="replicate")[None]
    with torch.no_grad():
        out, by_hand = net(stack, events), net(by_hand_stack, by_hand_events)
    torch.testing.assert_close(out.weights, by_hand.weights[..., :13, :17])
    torch.testing.assert_close(out.image, by_hand.image[..., :13, :17])


def test_one_network_merges_stacks_of_any_size_and_trains() -> None:
    torch.manual_seed(0)
    net = EvMergeNet(BINS, width=8, depth=3, norm="group")
    for num_slices in (3, 7):
        stack, events = inputs(1, num_slices, height=21, width=30, seed=num_slices)
        out = net(stack, events)
        assert out.image.shape == (1, 3, 21, 30) and out.weights.shape == (1, num_slices, 21, 30)
        out.image.mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_paper_width_matches_the_reference_budget() -> None:
    params = sum(p.numel() for p in EvMergeNet(16, width=47).parameters())
    assert abs(params - 5.68e6) / 5.68e6 < 0.03


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda net, s, e: net(s[:, :, :1], e), r"stack must be \(N, S, 3"),
        (lambda net, s, e: net(s, e[:, :, :2]), "events must be"),
        (lambda net, s, e: net(s, e, torch.tensor([[True, False], [False, False]])), r"samples \[1\]"),
        (lambda net, s, e: net(s, e, torch.ones(2, 2)), "bool"),
    ],
)
def test_bad_inputs_raise(net: EvMergeNet, call, message: str) -> None:
    stack, events = inputs(2, 2)
    with pytest.raises(ValueError, match=message):
        call(net, stack, events)


def test_bad_construction_raises() -> None:
    with pytest.raises(ValueError, match="norm"):
        EvMergeNet(BINS, norm="layer")
    with pytest.raises(ValueError, match="num_bins"):
        EvMergeNet(0)


# ---------------------------------------------------------------------------------------- ablation
def two_plane_stack() -> tuple[torch.Tensor, torch.Tensor]:
    """Slice 0 sharp on the left half, slice 1 sharp on the right half (blurred elsewhere)."""
    sharp = torch.rand(1, 3, 48, 96, generator=torch.Generator().manual_seed(3))
    blurred = kornia.filters.gaussian_blur2d(sharp, (15, 15), (4.0, 4.0))
    left = torch.zeros(1, 1, 48, 96, dtype=torch.bool)
    left[..., :48] = True
    near = torch.where(left, sharp, blurred)
    far = torch.where(left, blurred, sharp)
    return torch.stack([near, far], dim=1), sharp


def test_gradient_merge_picks_the_sharp_slice() -> None:
    stack, sharp = two_plane_stack()
    out = gradient_energy_merge(stack)
    torch.testing.assert_close(out.weights.sum(dim=1), torch.ones(1, 48, 96))
    assert (out.weights[0, 0, :, :24] > 0.9).all() and (out.weights[0, 1, :, 72:] > 0.9).all()
    error = (out.image - sharp).abs().mean()
    assert error < 0.5 * min((stack[:, 0] - sharp).abs().mean(), (stack[:, 1] - sharp).abs().mean())


def test_gradient_merge_masks_invalid_slices_and_flat_regions() -> None:
    stack, _ = two_plane_stack()
    stack = torch.cat([stack, torch.rand(1, 1, 3, 48, 96)], dim=1)
    out = gradient_energy_merge(stack, torch.tensor([[True, True, False]]))
    assert (out.weights[:, 2] == 0).all()
    torch.testing.assert_close(out.weights.sum(dim=1), torch.ones(1, 48, 96))
    flat = gradient_energy_merge(torch.full((1, 2, 3, 9, 11), 0.25))
    torch.testing.assert_close(flat.weights, torch.full((1, 2, 9, 11), 0.5))
    torch.testing.assert_close(flat.image, torch.full((1, 3, 9, 11), 0.25))


# ------------------------------------------------------------------------------------ Sobel prior
def test_the_untrained_sobel_prior_net_is_the_gradient_merge() -> None:
    stack, _ = two_plane_stack()
    stack = torch.cat([stack, torch.rand(1, 1, 3, 48, 96)], dim=1)
    valid = torch.tensor([[True, True, False]])
    events = torch.randn(1, 3, BINS, 48, 96)
    torch.manual_seed(0)
    net = EvMergeNet(BINS, width=8, depth=2, prior="sobel").eval()
    with torch.no_grad():
        learned = net(stack, events, valid)
    reference = gradient_energy_merge(stack, valid)
    torch.testing.assert_close(learned.weights, reference.weights, rtol=0, atol=1e-5)
    torch.testing.assert_close(learned.image, reference.image, rtol=0, atol=1e-5)


def test_the_sobel_prior_net_learns_a_correction() -> None:
    """From the Sobel merge, a few steps towards a target the Sobel merge misses lower the loss."""
    stack, _ = two_plane_stack()
    target = stack[:, 1]  # the far slice everywhere: not what the Sobel energy picks on the left
    events = torch.zeros(1, 2, BINS, 48, 96)
    torch.manual_seed(0)
    net = EvMergeNet(BINS, width=8, depth=2, prior="sobel")
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = (net(stack, events).image - target).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert losses[-1] < 0.7 * losses[0]
    assert net.prior_scale.grad is not None and float(net.head.weight.abs().sum()) > 0


def test_an_unknown_merge_prior_is_named() -> None:
    with pytest.raises(ValueError, match="prior must be one of"):
        EvMergeNet(BINS, prior="laplacian")
