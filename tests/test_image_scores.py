"""The kornia scores of single images equal the torchmetrics ones training logs."""

import kornia
import pytest
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from evfocus.image_scores import image_quality


@pytest.mark.parametrize("shape", [(3, 260, 346), (3, 96, 96), (1, 40, 57)])
@pytest.mark.parametrize("smooth", [False, True])
def test_image_quality_matches_torchmetrics(shape, smooth):
    generator = torch.Generator().manual_seed(sum(shape))
    target = torch.rand(shape, generator=generator)
    image = target + 0.1 * torch.randn(shape, generator=generator)  # overshoots [0, 1]: the clamp counts
    if smooth:
        target, image = (kornia.filters.gaussian_blur2d(x[None], (9, 9), (3.0, 3.0))[0] for x in (target, image))
    scores = image_quality(image, target)
    pair = image.clamp(0, 1)[None], target[None]
    assert scores["psnr"] == pytest.approx(float(peak_signal_noise_ratio(*pair, data_range=1.0)), abs=1e-4)
    assert scores["ssim"] == pytest.approx(float(structural_similarity_index_measure(*pair, data_range=1.0)),
                                           abs=1e-5)


def test_image_quality_names_mismatched_shapes():
    with pytest.raises(ValueError, match=r"\(3, 8, 8\).*\(3, 8, 9\)"):
        image_quality(torch.rand(3, 8, 8), torch.rand(3, 8, 9))
