"""Event-camera models: frames of one focal sweep in, an ``EventStream`` out.

Two models, one contract:

* ``simulate_voltmeter`` — DVS-Voltmeter (Lin et al., ECCV 2022): the pixel voltage is a
  Brownian motion with drift between two thresholds, so event polarity and timing are
  random the way real sensors are (the model the training data use).
* ``simulate_ideal`` — ESIM-style ideal log-threshold crossings with per-pixel threshold
  mismatch, a refractory period and optional shot/leak noise (a clean reference and an
  alternative sensor draw).

Both work on all pixels at once (CPU or GPU, same code); the only Python loops are over
frame intervals and over "rounds" of several events of the same pixel.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor

from evfocus.events.stream import EventStream

# Below this drift rate 2|μ|/σ² (per unit voltage) the gambler's-ruin probability is its
# driftless limit; clamping there keeps expm1 ratios away from 0/0 (float32-safe).
_MIN_RUIN_RATE = 1e-30
# Per-pixel ideal thresholds are clipped at this fraction of the nominal threshold, so a
# mismatch draw can never make a pixel fire on every tiny change.
_MIN_THRESHOLD_FRACTION = 0.1


# ---------------------------------------------------------------------------- validation
def _check_sweep(frames: Tensor, times_us: Tensor, name: str) -> None:
    """Reject inputs the models cannot make sense of, naming the broken part."""
    if not isinstance(frames, Tensor) or frames.ndim != 3 or not frames.is_floating_point():
        shape = tuple(frames.shape) if isinstance(frames, Tensor) else type(frames).__name__
        raise ValueError(f"{name} must be a float tensor (F, H, W), got {shape}")
    num_frames, height, width = frames.shape
    if num_frames < 2:
        raise ValueError(f"{name} needs at least 2 frames to make events, got {num_frames}")
    if height == 0 or width == 0:
        raise ValueError(f"{name} has an empty image ({height}x{width})")
    if not isinstance(times_us, Tensor) or times_us.ndim != 1 or times_us.dtype != torch.int64:
        raise ValueError("times_us must be a 1-D int64 tensor of microseconds")
    if times_us.numel() != num_frames:
        raise ValueError(f"times_us has {times_us.numel()} entries but {name} has {num_frames} frames")
    if times_us.device != frames.device:
        raise ValueError(f"times_us is on {times_us.device} but {name} is on {frames.device}")
    steps_us = times_us[1:] - times_us[:-1]
    if bool((steps_us <= 0).any()):
        k = int(torch.nonzero(steps_us <= 0)[0, 0]) + 1
        raise ValueError(
            f"times_us must be strictly increasing: frame {k} at {int(times_us[k])} µs follows "
            f"{int(times_us[k - 1])} µs"
        )
    low, high = float(frames.amin()), float(frames.amax())  # NaN and ±inf propagate to these
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"{name} contains NaN or infinite intensities")
    if low < 0:
        raise ValueError(f"{name} contains negative intensities (min {low:.4g})")


def _check_generator(generator: torch.Generator, device: torch.device) -> None:
    if torch.device(generator.device).type != device.type:
        raise ValueError(f"the generator is on {generator.device} but the frames are on {device}")


# ---------------------------------------------------------------------------- DVS-Voltmeter
@dataclass(frozen=True)
class VoltmeterParams:
    """DVS-Voltmeter constants for grey levels 0–255 and time in µs.

    drift μ = k1·(ΔL/Δt)/(L̄+k2) + k4 + k5·L̄ (k1: sensitivity, k4/k5: leak and
    photo-current drift); scale σ = k3·√L̄/(L̄+k2) + k6 (shot noise and a noise floor).
    """

    k1: float
    k2: float
    k3: float
    k4: float
    k5: float
    k6: float

    def __post_init__(self) -> None:
        for f in fields(self):
            if not math.isfinite(getattr(self, f.name)):
                raise ValueError(f"VoltmeterParams.{f.name} must be finite, got {getattr(self, f.name)}")
        if self.k1 <= 0 or self.k2 <= 0:
            raise ValueError(f"VoltmeterParams k1 and k2 must be positive, got k1={self.k1}, k2={self.k2}")
        if self.k3 < 0:
            raise ValueError(f"VoltmeterParams.k3 must be >= 0, got {self.k3}")
        if self.k6 <= 0:
            raise ValueError(f"VoltmeterParams.k6 (noise floor) must be positive so σ > 0, got {self.k6}")


DAVIS346 = VoltmeterParams(5.265, 20.0, 1e-4, 1e-7, 5e-9, 1e-5)
DAVIS240 = VoltmeterParams(4.424, 23.0, 2e-4, 1e-7, 5e-8, 1e-5)


def sample_voltmeter_params(
    generator: torch.Generator, spread: float, k1_scale_range: tuple[float, float] = (1.0, 4.0)
) -> VoltmeterParams:
    """A random sensor around DAVIS346, so models trained on it survive real sensors.

    Every k is scaled log-uniformly within ×/÷(1+spread); k1 is further multiplied by a
    log-uniform factor from ``k1_scale_range`` (more sensitive sensors, several times the events).
    """
    if not math.isfinite(spread) or spread < 0:
        raise ValueError(f"spread must be a finite number >= 0, got {spread}")
    low, high = (float(v) for v in k1_scale_range)
    if not (0 < low <= high and math.isfinite(high)):
        raise ValueError(f"k1_scale_range must satisfy 0 < low <= high, got {k1_scale_range}")
    u = torch.rand(7, generator=generator, dtype=torch.float64, device=generator.device).tolist()
    scaled = [getattr(DAVIS346, f.name) * (1.0 + spread) ** (2.0 * u[i] - 1.0)
              for i, f in enumerate(fields(VoltmeterParams))]
    scaled[0] *= math.exp(math.log(low) + u[6] * (math.log(high) - math.log(low)))
    return VoltmeterParams(*scaled)


def voltmeter_drift_and_variance(
    grey_prev: Tensor, grey_new: Tensor, dt_us: float | Tensor, params: VoltmeterParams
) -> tuple[Tensor, Tensor]:
    """Drift μ (voltage/µs) and variance rate σ² (voltage²/µs) of frame intervals.

    ``dt_us`` is one float or a tensor that broadcasts against the frames (several
    intervals at once). Written on S = L_prev + L_new = 2·L̄ with in-place updates of
    temporaries: this runs on every pixel of every interval, so each saved pass counts.
    """
    total = grey_prev + grey_new
    inv = (total + 2.0 * params.k2).reciprocal_()  # 1 / (2(L̄ + k2))
    drift = (grey_new - grey_prev).mul_(inv).mul_(2.0 * params.k1 / dt_us)
    drift.add_(total.mul(0.5 * params.k5).add_(params.k4))
    sigma = torch.sqrt(total).mul_(inv).mul_(math.sqrt(2.0) * params.k3).add_(params.k6)  # √S/(S+2k2)·√2k3
    return drift, sigma.square_()


def _neg_ruin_rate(drift_abs: Tensor, sigma2: Tensor, out: Tensor | None = None) -> Tensor:
    """−2|μ|/σ², kept below −_MIN_RUIN_RATE so the expm1 ratios never become 0/0."""
    return torch.div(drift_abs, sigma2, out=out).mul_(-2.0).clamp_(max=-_MIN_RUIN_RATE)


def _ruin_denominator(neg_rate: Tensor, span: Tensor | float, out: Tensor | None = None) -> Tensor:
    """expm1(−r·(A+B)); exp below −60 is 0 in float32 and float64 alike, and takes a slow path."""
    return torch.mul(neg_rate, span, out=out).clamp_(min=-60.0).expm1_()


def _p_toward(neg_rate: Tensor, dist_away: Tensor, denominator: Tensor) -> Tensor:
    """P(reaching the barrier the drift points to first), given the distance to the other one."""
    return torch.expm1((neg_rate * dist_away).clamp_(min=-60.0)).div_(denominator)


def gamblers_ruin_p_up(drift: Tensor, sigma2: Tensor, dist_up: Tensor, dist_down: Tensor) -> Tensor:
    """P(a Brownian motion with drift reaches +dist_up before -dist_down).

    The textbook (exp(2μB/σ²) − 1)/(exp(2μB/σ²) − exp(−2μA/σ²)) overflows for the large
    |μ|/σ² of real sensors. Written for the barrier the drift points to, it needs only
    expm1 of non-positive arguments: P_toward = expm1(−r·D_away)/expm1(−r·(A+B)), r = 2|μ|/σ².
    At μ → 0 it tends to B/(A+B) (0.5 at zero residual voltage). Selections are arithmetic
    with s = ±1: on CPU ``torch.where`` costs as much as several elementwise operations.
    """
    s = torch.copysign(torch.ones((), dtype=drift.dtype, device=drift.device), drift)
    span = dist_up + dist_down
    dist_away = torch.addcmul(span, s, dist_down - dist_up).mul_(0.5)
    neg_rate = _neg_ruin_rate(drift.abs(), sigma2)
    p_toward = _p_toward(neg_rate, dist_away, _ruin_denominator(neg_rate, span))
    return p_toward.sub_(0.5).mul_(s).add_(0.5)


def _first_passage_from(dist: Tensor, drift_abs: Tensor, inv_drift_abs2: Tensor, half_sigma2: Tensor,
                        normal: Tensor, uniform: Tensor) -> Tensor:
    """Time for drift ``drift_abs`` and variance rate σ² to travel ``dist``: IG, or Lévy at zero drift.

    Michael–Schucany–Haas for IG(mean m = dist/|μ|, shape λ = dist²/σ²) from one normal ν
    and one uniform, rewritten with c = ν²σ²/(2·dist) so that no term cancels or overflows:
    the near root is dist/(|μ| + c + √(c(c + 2|μ|))), picked with probability m/(m + near),
    the far one m²/near. At |μ| = 0 (1/|μ|² = inf) the near root is λ/ν² (the Lévy 1/Z²
    draw) and is always picked, so the Lévy limit needs no separate branch or threshold.
    The caller passes 1/|μ|² and σ²/2, which the simulator computes once per interval.
    """
    c = normal.square().mul_(half_sigma2).div_(dist)
    den = torch.add(c, drift_abs, alpha=2.0).mul_(c).sqrt_().add_(c).add_(drift_abs)
    near = dist / den
    far = (dist * den).mul_(inv_drift_abs2)
    return torch.where(uniform * (drift_abs + den) <= den, near, far)


def sample_inverse_gaussian(mean: Tensor, shape: Tensor, generator: torch.Generator) -> Tensor:
    """Inverse-Gaussian draws (one per element of the broadcast ``mean``, ``shape``)."""
    mean, shape = torch.broadcast_tensors(mean, shape)
    normal = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    uniform = torch.rand(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    return _first_passage_from(torch.ones_like(mean), 1.0 / mean, mean.square(), 0.5 / shape, normal, uniform)


def sample_levy(scale: Tensor, generator: torch.Generator) -> Tensor:
    """Lévy draws scale/Z² (the zero-drift first-passage time), one per element of ``scale``."""
    normal = torch.randn(scale.shape, generator=generator, device=scale.device, dtype=scale.dtype)
    ones = torch.ones_like(scale)
    return _first_passage_from(ones, torch.zeros_like(scale), torch.full_like(scale, math.inf), 0.5 / scale,
                               normal, ones)


# Rows of the per-interval pixel constants (one tensor, so a round gathers them in one call).
_SIGN, _DRIFT_ABS, _INV_DRIFT_ABS2, _HALF_SIGMA2, _NEG_RATE, _RUIN_DEN = range(6)
# Intervals whose constants and first-round random draws are made in one batch (bounded memory).
_BATCH_ELEMENTS = 2**20
# Below this many pixels a frame interval's elementwise passes run faster on one CPU thread.
_SINGLE_THREAD_PIXELS = 2**18


@contextmanager
def _one_cpu_thread(enabled: bool) -> Iterator[None]:
    """Run the block with one intra-op thread, then restore the count.

    An interval's rounds are dozens of small elementwise passes over one frame. Waking a
    second OpenMP thread costs more than it saves at that size: a 65k-element multiply takes
    17 µs on one thread and 31 µs on two (with OMP_WAIT_POLICY=PASSIVE, which a shared machine
    needs), and a 256×256 sweep's events come out 14% faster. Larger frames keep all threads.
    """
    previous = torch.get_num_threads()
    if not enabled or previous == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _interval_constants(grey_prev: Tensor, grey_new: Tensor, dts_us: Tensor, params: VoltmeterParams) -> Tensor:
    """(6, K, P) per-pixel constants of K intervals: what every round of an interval reuses.

    Between the thresholds at ±1 the two barrier distances always add up to 2, so the
    gambler's-ruin denominator expm1(−2r) depends on the interval only, not on the voltage.
    """
    drift, sigma2 = voltmeter_drift_and_variance(grey_prev, grey_new, dts_us.view(-1, 1), params)
    out = torch.empty((6, *drift.shape), dtype=drift.dtype, device=drift.device)  # written in place: no stack copy
    torch.copysign(torch.ones((), dtype=drift.dtype, device=drift.device), drift, out=out[_SIGN])
    torch.abs(drift, out=out[_DRIFT_ABS])
    torch.square(out[_DRIFT_ABS], out=out[_INV_DRIFT_ABS2]).reciprocal_()
    torch.mul(sigma2, 0.5, out=out[_HALF_SIGMA2])
    _neg_ruin_rate(out[_DRIFT_ABS], sigma2, out=out[_NEG_RATE])
    _ruin_denominator(out[_NEG_RATE], 2.0, out=out[_RUIN_DEN])
    return out


def _draw_crossing(volt: Tensor, constants: Tensor, uniform: Tensor, normal: Tensor) -> tuple[Tensor, Tensor]:
    """Polarity (±1) and first-passage time (µs) of each pixel's next crossing from voltage ``volt``.

    One uniform serves both draws: it picks the side (towards the drift with probability
    P_toward), and its position within the chosen side's share of [0, 1) is again uniform
    and independent of that choice, so it also drives the inverse-Gaussian root pick. The
    random draws cost several times an elementwise pass on CPU, so this saves a third of them.
    """
    sign = constants[_SIGN]
    one = torch.ones((), dtype=volt.dtype, device=volt.device)  # 0-d operands broadcast: no filled tensors
    p_toward = _p_toward(constants[_NEG_RATE], torch.addcmul(one, sign, volt), constants[_RUIN_DEN])
    margin = p_toward - uniform  # >= 0: the crossing goes the way the drift points
    side = torch.copysign(one, margin)
    rescaled = margin.abs_().div_(torch.addcmul(0.5 * one, p_toward.sub_(0.5), side))
    polarity = side.mul_(sign)
    dist = torch.addcmul(one, polarity, volt, value=-1.0)
    tau = _first_passage_from(dist, constants[_DRIFT_ABS], constants[_INV_DRIFT_ABS2], constants[_HALF_SIGMA2],
                              normal, rescaled)
    return polarity, tau


def _voltmeter_interval(
    voltage: Tensor, constants: Tensor, uniform: Tensor, normal: Tensor, dt_us: float,
    generator: torch.Generator
) -> tuple[Tensor, list[tuple[Tensor, Tensor, Tensor]]]:
    """One frame interval for all pixels: the residual voltages and each round's (pixel, t_rel_us, p).

    Each round, every still-active pixel picks a polarity by gambler's ruin from its current
    voltage and draws the first-passage time to that barrier. A pixel whose crossing
    falls inside the interval fires, resets to 0 and stays active; the others stop and
    keep a residual voltage (see ``simulate_voltmeter`` for what that residual is).
    Every active pixel writes its residual each round: a pixel that fired overwrites it
    in the round where it stops. ``uniform`` and ``normal`` are the first round's draws.
    """
    active: Tensor | None = None  # None: all pixels (the first round needs no gathers)
    volt, t_rel, remaining = voltage, None, dt_us
    rounds = []
    while True:
        polarity, tau = _draw_crossing(volt, constants, uniform, normal)
        residual = torch.addcdiv(volt, (polarity - volt).mul_(remaining), tau)  # polarity·dist = polarity − volt
        if active is None:
            voltage = residual
        else:
            voltage.index_copy_(0, active, residual)
        fired = torch.nonzero(tau < remaining).squeeze(1)
        if fired.numel() == 0:
            return voltage, rounds
        active = fired if active is None else active.index_select(0, fired)
        tau_fired = tau.index_select(0, fired)
        t_rel = tau_fired if t_rel is None else t_rel.index_select(0, fired).add_(tau_fired)
        constants = constants.index_select(1, fired)
        rounds.append((active, t_rel, polarity.index_select(0, fired)))
        volt = torch.zeros_like(t_rel)
        remaining = dt_us - t_rel
        uniform = torch.rand(volt.shape, generator=generator, device=volt.device)
        normal = torch.randn(volt.shape, generator=generator, device=volt.device)


def simulate_voltmeter(
    frames_grey: Tensor, times_us: Tensor, params: VoltmeterParams, generator: torch.Generator
) -> EventStream:
    """DVS-Voltmeter events of a frame sequence (grey 0–255, gamma or linear: the caller's choice).

    Per pixel and frame interval the voltage drifts with μ and diffuses with σ (see
    ``VoltmeterParams``) between thresholds at ±1 around its reset level.

    Residual voltage: when a pixel's next crossing falls after the interval, we carry a
    *voltage* to the next interval, not a time. The drift changes from frame to frame, so a
    left-over time would mean nothing under the next frame's μ, while the voltage is the
    pixel's physical state. Its value is v + s·a·(time left)/τ: the mean position at the end
    of the interval of a Brownian bridge from v that reaches the chosen barrier (sign s,
    distance a) at the drawn time τ — the same carry as the reference implementation.
    """
    _check_sweep(frames_grey, times_us, "frames_grey")
    _check_generator(generator, frames_grey.device)
    num_frames, height, width = frames_grey.shape
    grey = frames_grey.reshape(num_frames, -1).to(torch.float32)
    steps_us = times_us[1:] - times_us[:-1]
    dts_us, dts_tensor = steps_us.tolist(), steps_us.to(torch.float32)
    starts_us = times_us[:-1].tolist()
    num_pixels = height * width
    device = grey.device
    voltage = torch.zeros(num_pixels, dtype=torch.float32, device=device)
    batch = max(1, _BATCH_ELEMENTS // num_pixels)
    # The batches' first-round draws come from their own generator, seeded from the caller's:
    # the same events whether the batches are prepared in order here or ahead on a helper thread.
    batch_generator = torch.Generator(device).manual_seed(
        int(torch.randint(0, 2**62, (1,), generator=generator, device=device)))

    def prepare(first: int) -> tuple[Tensor, Tensor, Tensor]:
        last = min(first + batch, num_frames - 1)
        constants = _interval_constants(grey[first:last], grey[first + 1:last + 1], dts_tensor[first:last], params)
        uniform = torch.rand((last - first, num_pixels), generator=batch_generator, device=device)
        normal = torch.randn((last - first, num_pixels), generator=batch_generator, device=device)
        return constants, uniform, normal

    small_cpu_frames = device.type == "cpu" and num_pixels < _SINGLE_THREAD_PIXELS
    starts = list(range(0, num_frames - 1, batch))
    pixels, stamps, polarities = [], [], []
    # With a spare core, the next batch's constants and random draws (a third of the work, and
    # the draws run on one thread anyway) are made while this batch's intervals run on one thread.
    overlap = small_cpu_frames and torch.get_num_threads() > 1 and len(starts) > 1
    with ThreadPoolExecutor(max_workers=1) if overlap else nullcontext() as helper:
        submit = helper.submit if helper is not None else _run_now
        pending = submit(prepare, starts[0])
        for index, first in enumerate(starts):
            constants, uniform, normal = pending.result()
            if index + 1 < len(starts):
                pending = submit(prepare, starts[index + 1])
            with _one_cpu_thread(small_cpu_frames):
                for k in range(first, first + len(uniform)):
                    voltage, rounds = _voltmeter_interval(voltage, constants[:, k - first], uniform[k - first],
                                                          normal[k - first], float(dts_us[k]), generator)
                    for pixel, t_rel_us, polarity in rounds:
                        pixels.append(pixel)
                        stamps.append(starts_us[k] + torch.round(t_rel_us).to(torch.int64))
                        polarities.append(polarity)
    return _assemble(pixels, stamps, polarities, width, height, "simulator:voltmeter")


def _run_now(work: Callable[..., Any], *args: Any) -> Future:
    """``Executor.submit`` without an executor: run now, hand back a finished future."""
    done: Future = Future()
    done.set_result(work(*args))
    return done


# ---------------------------------------------------------------------------- ideal (ESIM-style)
@dataclass(frozen=True)
class IdealParams:
    """Ideal log-intensity threshold crossings (threshold in log units, rates per pixel)."""

    threshold: float = 0.2
    threshold_sigma: float = 0.03
    refractory_us: int = 0
    shot_noise_hz: float = 0.0
    leak_hz: float = 0.0
    log_eps: float = 1e-3

    def __post_init__(self) -> None:
        for f in fields(self):
            if not math.isfinite(getattr(self, f.name)):
                raise ValueError(f"IdealParams.{f.name} must be finite, got {getattr(self, f.name)}")
        if self.threshold <= 0:
            raise ValueError(f"IdealParams.threshold must be positive, got {self.threshold}")
        if self.log_eps <= 0:
            raise ValueError(f"IdealParams.log_eps must be positive, got {self.log_eps}")
        for name in ("threshold_sigma", "refractory_us", "shot_noise_hz", "leak_hz"):
            if getattr(self, name) < 0:
                raise ValueError(f"IdealParams.{name} must be >= 0, got {getattr(self, name)}")
        if self.refractory_us != int(self.refractory_us):
            raise ValueError(f"IdealParams.refractory_us must be whole µs, got {self.refractory_us}")


def _pixel_thresholds(params: IdealParams, num_pixels: int, generator: torch.Generator,
                      device: torch.device) -> tuple[Tensor, Tensor]:
    """Per-pixel ON and OFF thresholds ~ N(C, σ_C), clipped at a positive minimum."""
    draw = torch.randn((2, num_pixels), generator=generator, device=device)
    thresholds = (params.threshold + params.threshold_sigma * draw).clamp(
        min=_MIN_THRESHOLD_FRACTION * params.threshold)
    return thresholds[0], thresholds[1]


def _crossings(ref: Tensor, log_prev: Tensor, log_new: Tensor, c_on: Tensor, c_off: Tensor,
               dt_us: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Crossings of one interval with log-intensity linear in time: new reference and (pixel, t_rel, p).

    Within an interval the signal is monotone, so a pixel crosses only one way; its n-th
    crossing sits at level ref + n·step and is timestamped by linear interpolation.
    """
    diff = log_new - ref
    sign = torch.sign(diff)
    step = torch.where(diff > 0, c_on, c_off)
    count = torch.floor(diff.abs() / step)
    pixel = torch.nonzero(count > 0).squeeze(1)
    per_pixel = count[pixel].to(torch.int64)
    event_pixel = torch.repeat_interleave(pixel, per_pixel)
    first_of_pixel = torch.repeat_interleave(torch.cumsum(per_pixel, 0) - per_pixel, per_pixel)
    nth = (torch.arange(event_pixel.numel(), device=ref.device) - first_of_pixel + 1).to(ref.dtype)
    signed_step = (sign * step)[event_pixel]
    level = ref[event_pixel] + nth * signed_step
    frac = (level - log_prev[event_pixel]) / (log_new - log_prev)[event_pixel]
    t_rel_us = torch.nan_to_num(frac, nan=1.0).clamp(0.0, 1.0) * dt_us
    return ref + count * sign * step, event_pixel, t_rel_us, torch.sign(signed_step)


def _poisson_events(rate_hz: float, t_first_us: int, t_last_us: int, num_pixels: int,
                    generator: torch.Generator, device: torch.device,
                    on_only: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Independent Poisson events per pixel over the sweep (random polarity unless ``on_only``)."""
    expected = rate_hz * (t_last_us - t_first_us) * 1e-6 * num_pixels
    expected_t = torch.tensor(expected, dtype=torch.float64, device=device)
    count = int(torch.poisson(expected_t, generator=generator))
    pixel = torch.randint(0, num_pixels, (count,), generator=generator, device=device)
    t_us = torch.randint(t_first_us, t_last_us + 1, (count,), generator=generator, device=device)
    polarity = (torch.ones(count, device=device) if on_only else
                2.0 * torch.randint(0, 2, (count,), generator=generator, device=device) - 1.0)
    return pixel, t_us, polarity


def refractory_keep(pixel: Tensor, t_us: Tensor, refractory_us: int) -> Tensor:
    """Mask of events kept when a pixel ignores events closer than ``refractory_us`` to its last kept one.

    Greedy per pixel, vectorised over pixels: each round, every pixel jumps (binary search
    on a (pixel, time) key) from its last kept event to its first event ``refractory_us`` later.
    """
    if pixel.numel() == 0 or refractory_us <= 0:
        return torch.ones_like(pixel, dtype=torch.bool)
    order = torch.argsort(t_us, stable=True)
    order = order[torch.argsort(pixel[order], stable=True)]
    pix, t_rel = pixel[order].to(torch.int64), t_us[order] - t_us.min()
    refractory_us = int(refractory_us)
    key = pix * (int(t_rel.max()) + refractory_us + 1) + t_rel  # pixel-major, time-minor, no overlap
    new_pixel = torch.ones_like(pix, dtype=torch.bool)
    new_pixel[1:] = pix[1:] != pix[:-1]
    current = torch.nonzero(new_pixel).squeeze(1)
    keep_sorted = torch.zeros_like(new_pixel)
    while current.numel() > 0:
        keep_sorted[current] = True
        following = torch.searchsorted(key, key[current] + refractory_us)
        inside = following < key.numel()
        following, current = following[inside], current[inside]
        current = following[pix[following] == pix[current]]
    keep = torch.empty_like(keep_sorted)
    keep[order] = keep_sorted
    return keep


def simulate_ideal(
    frames_lin: Tensor, times_us: Tensor, params: IdealParams, generator: torch.Generator
) -> EventStream:
    """Ideal events of linear-intensity frames (values in [0, 1]); log uses log(I + log_eps).

    The pixel's reference level moves by whole thresholds, so without mismatch and noise
    Σp·C equals the log change to within one threshold. Shot noise and leak are Poisson
    (leak ON only) and, like the signal, pass the refractory filter, which masks output only:
    a dropped crossing still moves the reference level.
    """
    _check_sweep(frames_lin, times_us, "frames_lin")
    _check_generator(generator, frames_lin.device)
    num_frames, height, width = frames_lin.shape
    num_pixels = height * width
    device = frames_lin.device
    intensity = frames_lin.reshape(num_frames, -1).to(torch.float32)
    c_on, c_off = _pixel_thresholds(params, num_pixels, generator, device)
    dts_us = (times_us[1:] - times_us[:-1]).tolist()
    starts_us = times_us[:-1].tolist()
    log_prev = torch.log(intensity[0] + params.log_eps)
    ref = log_prev
    pixels, stamps, polarities = [], [], []
    with _one_cpu_thread(device.type == "cpu" and num_pixels < _SINGLE_THREAD_PIXELS):
        for k in range(num_frames - 1):
            log_new = torch.log(intensity[k + 1] + params.log_eps)
            ref, pixel, t_rel_us, polarity = _crossings(ref, log_prev, log_new, c_on, c_off, float(dts_us[k]))
            pixels.append(pixel)
            stamps.append(starts_us[k] + torch.round(t_rel_us).to(torch.int64))
            polarities.append(polarity)
            log_prev = log_new
    t_first_us, t_last_us = int(times_us[0]), int(times_us[-1])
    for rate_hz, on_only in ((params.shot_noise_hz, False), (params.leak_hz, True)):
        if rate_hz > 0:
            pixel, t_us, polarity = _poisson_events(rate_hz, t_first_us, t_last_us, num_pixels,
                                                    generator, device, on_only)
            pixels.append(pixel)
            stamps.append(t_us)
            polarities.append(polarity)
    return _assemble(pixels, stamps, polarities, width, height, "simulator:ideal", params.refractory_us)


# ---------------------------------------------------------------------------- output
def _assemble(pixels: list[Tensor], stamps_us: list[Tensor], polarities: list[Tensor], width: int,
              height: int, source: str, refractory_us: int = 0) -> EventStream:
    """Concatenate per-round events, sort by time (stable: ties keep a fixed order), filter, wrap."""
    if not pixels:
        return EventStream.empty(width, height, source)
    pixel, t_us, polarity = torch.cat(pixels), torch.cat(stamps_us), torch.cat(polarities)
    order = torch.argsort(t_us, stable=True)
    pixel, t_us, polarity = pixel[order], t_us[order], polarity[order]
    if refractory_us > 0:
        keep = refractory_keep(pixel, t_us, refractory_us)
        pixel, t_us, polarity = pixel[keep], t_us[keep], polarity[keep]
    return EventStream.from_arrays(t_us, pixel % width, torch.div(pixel, width, rounding_mode="floor"),
                                   polarity, width, height, source)
