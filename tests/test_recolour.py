"""pipeline/recolour.py: the all-in-focus image's chroma refitted from the frame's colour lines on its sharp luma."""

import kornia
import pytest
import skimage
import torch
from tiny import tiny_overrides

from evfocus.config import load_config
from evfocus.events.integration import EventIntegrator
from evfocus.image_scores import image_quality
from evfocus.pipeline.aif import AIFPipeline
from evfocus.pipeline.recolour import recolour
from evfocus.pipeline.settings import pipeline_config
from evfocus.sim.simulator import SweepSimulator


def photograph(name: str) -> torch.Tensor:
    """(3, 96, 128) sRGB in [0, 1]: one of the photographs that ship with scikit-image."""
    image = torch.from_numpy(getattr(skimage.data, name)()).permute(2, 0, 1).float() / 255
    return torch.nn.functional.interpolate(image[None], size=(96, 128), mode="area")[0]


def blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    return kornia.filters.gaussian_blur2d(image[None], (13, 13), (sigma, sigma), border_type="reflect")[0]


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
@pytest.mark.parametrize("sigma", [1.5, 3.0])
def test_a_frame_refocused_by_one_gain_per_pixel_gets_closer_to_the_truths_colour(name, sigma):
    truth = photograph(name)
    frame = blur(truth, sigma)
    # the refocus net's composition: every channel of a pixel scaled by one gain, here the ideal one
    gain = (truth.mean(dim=0, keepdim=True) + 0.01) / (frame.mean(dim=0, keepdim=True) + 0.01)
    refocused = (frame * gain).clamp(0, 1)
    fixed = recolour(refocused, frame)
    before, after = image_quality(refocused, truth)["psnr"], image_quality(fixed, truth)["psnr"]
    assert after > before + 1.5, (before, after)
    luma = kornia.color.rgb_to_ycbcr(torch.stack([refocused, fixed]))[:, 0]
    assert float((luma[0] - luma[1]).abs().mean()) < 2e-3  # the brightness stays the pipeline's


def test_a_sharp_frame_recoloured_by_itself_barely_moves_and_grey_stays_grey():
    truth = photograph("coffee")
    assert image_quality(recolour(truth, truth), truth)["psnr"] > 40
    grey = truth.mean(dim=0, keepdim=True).expand(3, -1, -1)
    recoloured = recolour(grey, blur(grey, 2.0))
    assert float((recoloured - recoloured.mean(dim=0, keepdim=True)).abs().max()) < 2e-3


@pytest.mark.parametrize("aif, frame, kwargs, message", [
    (torch.rand(1, 8, 8), torch.rand(1, 8, 8), {}, "RGB images"),
    (torch.rand(3, 8, 8), torch.rand(3, 8, 9), {}, "one size"),
    (torch.rand(3, 8, 8), torch.rand(3, 8, 8), {"window_px": 4}, "odd"),
    (torch.rand(3, 8, 8), torch.rand(3, 8, 8), {"eps": 0.0}, "eps > 0"),
])
def test_bad_inputs_are_named(aif, frame, kwargs, message):
    with pytest.raises(ValueError, match=message):
        recolour(aif, frame, **kwargs)


def test_the_pipeline_recolours_its_all_in_focus_image_and_keeps_its_brightness(tmp_path):
    cfg = load_config(None, tiny_overrides(tmp_path))
    sweep = SweepSimulator(cfg.sim, "val").simulate(1)
    on = AIFPipeline(EventIntegrator(0.1), None, pipeline_config(cfg, sweep))(sweep, "cpu")
    off_cfg = load_config(None, tiny_overrides(tmp_path, "pipeline.recolour=false"))
    off = AIFPipeline(EventIntegrator(0.1), None, pipeline_config(off_cfg, sweep))(sweep, "cpu")
    assert torch.equal(on.stack, off.stack) and torch.equal(on.weights, off.weights)
    assert torch.allclose(on.aif, recolour(off.aif, sweep.image))
    assert not torch.allclose(on.aif, off.aif)
