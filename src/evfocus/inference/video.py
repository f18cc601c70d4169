"""The refocus video: the frame refocused at times spread over the sweep, written as a looping GIF.

Two ways to make its frames (``VIDEO_MODES``): ``slices`` blends the focal stack the pipeline already
refocused (no network call; the default, since refocusing every frame with the net cost more than the
whole pipeline: 32 full-image passes, ~70 s of a ~100 s command on 2 CPU cores), ``refocus`` runs the
refocus net at every frame time (exact, one full-image pass per frame).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from evfocus.optics import FocusSchedule
from evfocus.pipeline.aif import AIFResult, PipelineConfig, configured_stack
from evfocus.visualize import colour_map, to_uint8

GIF_FRAME_MS = 80  # 12.5 frames/s: 32 frames loop in about 2.6 s
MAX_GIF_FRAMES = 500
VideoMode = Literal["slices", "refocus"]
VIDEO_MODES: tuple[VideoMode, ...] = ("slices", "refocus")


def slice_frames(result: AIFResult, image: Tensor, image_time_us: float, times_us: Tensor) -> np.ndarray:
    """Frames (F, H, W, 3) uint8 at ``times_us`` (F,), blended from images already refocused: the input
    frame at ``image_time_us`` and the pipeline's stack at its slice times.

    Each frame is the linear cross-fade of the two key images whose times bracket it (the nearest one
    outside their span). Between two slices the focus moves from one in-focus depth to the next, so a
    cross-fade shows what a viewer looks for — which parts come into focus, and when — at no network cost;
    the in-between frames are blends, not refocused images (``refocus_frames`` renders those).
    """
    device = result.stack.device
    key_times = torch.cat([torch.tensor([float(image_time_us)], dtype=torch.float64, device=device),
                           result.slice_times_us.to(device, torch.float64)])
    keys = torch.cat([image.to(device, result.stack.dtype)[None], result.stack])
    order = key_times.argsort(stable=True)
    key_times, keys = key_times[order], keys[order]
    times = times_us.to(device, torch.float64)
    upper = torch.searchsorted(key_times, times).clamp(max=len(key_times) - 1)  # first key at or after t
    lower = (upper - 1).clamp_min(0)
    span = (key_times[upper] - key_times[lower]).clamp_min(1e-9)
    weight = ((times - key_times[lower]) / span).clamp(0, 1).to(keys.dtype)[:, None, None, None]
    frames = []
    for index in range(len(times)):  # one frame at a time: a long GIF never holds F float images
        frames.append(to_uint8(keys[lower[index]].lerp(keys[upper[index]], weight[index])[None]))
    return np.concatenate(frames)


@torch.no_grad()
def refocus_frames(result: AIFResult, image: Tensor, image_time_us: float, times_us: Tensor,
                   config: PipelineConfig) -> np.ndarray:
    """The frame (C, H, W) refocused at each time (F,), batched and tiled like the stack: (F, H, W, 3) uint8.

    It reuses what the pipeline built for this sweep (its focal stack, its refocus function at the
    sweep's contrast), so the events are neither binned nor moved again. Chunks are converted to uint8
    at once, so a long GIF of a large frame never holds F float images.
    """
    focal_stack = result.focal_stack
    image = image.to(focal_stack.device)
    frames = []
    for chunk in times_us.to(focal_stack.device).split(config.slices_per_batch):
        stack, _ = configured_stack(result.refocus, image, image_time_us, focal_stack, chunk, config)
        frames.append(to_uint8(stack))
    return np.concatenate(frames)


def position_strip(frames: np.ndarray, times_us: Tensor, schedule: FocusSchedule) -> np.ndarray:
    """Frames with a strip underneath: its filled length and colour mark the sweep position.

    It tells a viewer where in the sweep a frame sits, in the depth map's colours; it also keeps
    consecutive GIF frames distinct (Pillow's GIF writer drops a frame identical to the previous
    one, which would shorten the video where a patch of the sweep has no events).
    """
    count, height, width = frames.shape[:3]
    strip = np.full((count, max(3, height // 60), width, 3), 40, dtype=np.uint8)
    fraction = ((times_us.double() - schedule.t_start_us) / schedule.duration_us).clamp(0, 1)
    colours = to_uint8(colour_map(1.0 - fraction.float()[None, None], "turbo"))[0]  # (F, 3): near = warm
    for index in range(count):
        filled = max(1, round(float(fraction[index]) * width))
        strip[index, :, :filled] = colours[index]
    return np.concatenate([frames, strip], axis=1)


def write_gif(path: Path, frames: np.ndarray) -> None:
    """(F, H, W, 3) uint8 → a looping GIF with one median-cut palette for all frames, dithered.

    Pillow's default quantises every frame by median cut on its own: 0.8 s per 346×260 frame on a
    busy 2-core machine (longer than refocusing it), and colour gradients band. One palette from
    a sample of the frames, then Floyd–Steinberg onto it, costs ~0.01 s a frame and looks smooth.
    """
    sample = frames[:: max(1, len(frames) // 8)][:8, ::2, ::2]
    palette = Image.fromarray(np.concatenate(list(sample), axis=0)).quantize(255, method=Image.Quantize.MEDIANCUT)
    images = [Image.fromarray(frame).quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG)
              for frame in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=GIF_FRAME_MS, loop=0)
