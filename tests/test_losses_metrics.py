"""ReconstructionLoss and ImageQualityMetrics against hand computations, plus LPIPS availability handling."""

import math
import warnings

import pytest
import torch
from torchvision.models import alexnet

from evfocus import metrics as metrics_module
from evfocus.metrics import ImageQualityMetrics, lpips_backbone_available, lpips_backbone_path
from evfocus.training.losses import ReconstructionLoss

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"  # torchvision AlexNet_Weights.IMAGENET1K_V1


def rand_images(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(metrics_module, "_warned_lpips_missing", False)
    return tmp_path


@pytest.fixture
def random_alexnet_home(empty_torch_home):
    """A torch hub cache holding a *random* AlexNet under the real file name, to test LPIPS plumbing.

    Only the conv features matter to LPIPS; the classifier is a zero-stride view, so the file is ~10 MB.
    """
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in alexnet().state_dict().items()}
    g = torch.Generator().manual_seed(0)
    state = {k: torch.randn(s, generator=g) * 0.05 if k.startswith("features.") else torch.zeros(()).expand(s)
             for k, s in shapes.items()}
    checkpoints = empty_torch_home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(state, checkpoints / ALEXNET_FILE)
    return empty_torch_home


# ---- metrics ------------------------------------------------------------------------------------


def test_backbone_paths_are_the_torchvision_file_names(empty_torch_home):
    assert lpips_backbone_path("alex") == empty_torch_home / "hub" / "checkpoints" / ALEXNET_FILE
    assert lpips_backbone_path("vgg").name == "vgg16-397923af.pth"
    assert not lpips_backbone_available("alex")
    with pytest.raises(ValueError, match="LPIPS net"):
        lpips_backbone_path("resnet")


def test_psnr_is_per_image_mean_of_known_mse(empty_torch_home):
    target = torch.full((2, 3, 16, 16), 0.5)
    offsets = torch.tensor([0.1, 0.02])
    pred = target + offsets.view(2, 1, 1, 1)
    expected = sum(10 * math.log10(1 / d**2) for d in offsets.tolist()) / 2
    m = ImageQualityMetrics(lpips=False)
    m.update(pred[:1], target[:1])
    m.update(pred[1:], target[1:])
    assert m.compute()["psnr"] == pytest.approx(expected, rel=1e-5)


def test_ssim_of_identical_images_is_one_and_reset_forgets(empty_torch_home):
    m = ImageQualityMetrics(lpips=False)
    image = rand_images(2, 3, 32, 32)
    m.update(image, rand_images(2, 3, 32, 32, seed=1))
    assert m.compute()["ssim"] < 0.5
    m.reset()
    m.update(image, image)
    values = m.compute()
    assert values["ssim"] == pytest.approx(1.0, abs=1e-5)
    assert math.isinf(values["psnr"]) or values["psnr"] > 80


def test_grey_images_score_like_their_rgb_copies(empty_torch_home):
    grey, noisy = rand_images(2, 1, 24, 24), rand_images(2, 1, 24, 24, seed=1)
    as_grey, as_rgb = ImageQualityMetrics(lpips=False), ImageQualityMetrics(lpips=False)
    as_grey.update(grey, noisy)
    as_rgb.update(grey.repeat(1, 3, 1, 1), noisy.repeat(1, 3, 1, 1))
    assert as_grey.compute() == pytest.approx(as_rgb.compute())


def test_missing_lpips_weights_give_none_and_exactly_one_warning(empty_torch_home):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first, second = ImageQualityMetrics(), ImageQualityMetrics(lpips="auto")
    lpips_warnings = [w for w in caught if ALEXNET_FILE in str(w.message)]
    assert len(lpips_warnings) == 1
    assert str(empty_torch_home) in str(lpips_warnings[0].message)
    for m in (first, second):
        image = rand_images(1, 3, 16, 16)
        m.update(image, image.flip(-1))
        values = m.compute()
        assert set(values) == {"psnr", "ssim", "lpips"}
        assert values["lpips"] is None and isinstance(values["psnr"], float)


def test_required_lpips_without_weights_is_an_error(empty_torch_home):
    with pytest.raises(FileNotFoundError, match="checkpoints"):
        ImageQualityMetrics(lpips=True)
    with pytest.raises(ValueError, match="lpips must be"):
        ImageQualityMetrics(lpips="yes")


def test_lpips_plumbing_with_a_random_backbone(random_alexnet_home):
    assert lpips_backbone_available("alex")
    m = ImageQualityMetrics()  # "auto" finds the weights
    image = rand_images(2, 3, 64, 64)
    m.update(image, image)
    assert m.compute()["lpips"] == pytest.approx(0.0, abs=1e-6)
    m.reset()
    m.update(image, rand_images(2, 3, 64, 64, seed=1))
    assert m.compute()["lpips"] > 0
    assert isinstance(m, torch.nn.Module) and m.metrics["lpips"] in list(m.modules())


def test_metrics_reject_mismatched_shapes(empty_torch_home):
    with pytest.raises(ValueError, match="pred and target"):
        ImageQualityMetrics(lpips=False).update(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9))


# ---- losses -------------------------------------------------------------------------------------


def test_parts_weighted_sum_is_the_total():
    weights = {"l1": 1.0, "ssim": 0.2, "gradient": 0.5}
    loss = ReconstructionLoss(l1_weight=1.0, ssim_weight=0.2, gradient_weight=0.5, ssim_window=7)
    pred, target = rand_images(2, 3, 20, 20), rand_images(2, 3, 20, 20, seed=1)
    total, parts = loss(pred, target)
    assert set(parts) == set(weights)
    assert total.item() == pytest.approx(sum(weights[k] * parts[k].item() for k in weights), rel=1e-6)
    assert parts["l1"].item() == pytest.approx((pred - target).abs().mean().item(), rel=1e-6)
    assert 0 < parts["ssim"].item() <= 1


def test_gradient_loss_zero_for_identical_positive_for_shifted():
    loss = ReconstructionLoss(l1_weight=0.0, ssim_weight=0.0, gradient_weight=1.0)
    image = rand_images(1, 3, 24, 24)
    assert loss(image, image)[1]["gradient"].item() == 0.0
    assert loss(torch.roll(image, 1, dims=-1), image)[1]["gradient"].item() > 0.01


def test_losses_are_float32_under_autocast():
    loss = ReconstructionLoss(gradient_weight=0.1)
    pred, target = rand_images(2, 3, 16, 16).bfloat16(), rand_images(2, 3, 16, 16, seed=1).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        total, parts = loss(pred, target)
    assert total.dtype == torch.float32 and all(v.dtype == torch.float32 for v in parts.values())
    reference, _ = loss(pred.float(), target.float())
    assert total.item() == pytest.approx(reference.item(), rel=1e-6)


def test_lpips_loss_without_weights_says_where_to_put_them(empty_torch_home):
    with pytest.raises(FileNotFoundError, match="hub/checkpoints") as error:
        ReconstructionLoss(lpips_weight=0.1, lpips_net="vgg")
    assert "vgg16-397923af.pth" in str(error.value)


def test_lpips_loss_with_a_random_backbone_is_frozen_and_differentiable(random_alexnet_home):
    loss = ReconstructionLoss(l1_weight=0.0, ssim_weight=0.0, lpips_weight=1.0, lpips_net="alex")
    loss.train()
    assert not loss.lpips.training
    assert not any(p.requires_grad for p in loss.parameters())
    image = rand_images(1, 3, 64, 64)
    assert loss(image, image)[0].item() == pytest.approx(0.0, abs=1e-6)
    pred = rand_images(1, 3, 64, 64, seed=1).requires_grad_()
    total, parts = loss(pred, image)
    total.backward()
    assert parts["lpips"].item() > 0 and pred.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"l1_weight": -1.0}, "l1_weight"), ({"ssim_weight": float("nan")}, "ssim_weight"),
     ({"l1_weight": 0.0, "ssim_weight": 0.0}, "all loss weights"), ({"ssim_window": 8}, "ssim_window")],
)
def test_bad_loss_configuration_is_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ReconstructionLoss(**kwargs)


def test_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="pred and target"):
        ReconstructionLoss()(torch.rand(1, 3, 8, 8), torch.rand(1, 1, 8, 8))
