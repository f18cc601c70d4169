"""Experiment configuration: compose YAML files, validate against a typed schema, derive values.

A config file may list other files under ``defaults:`` (paths relative to the ``configs/``
folder that holds it); they are merged first, in order, then the file itself, then the
command-line ``dotted.key=value`` overrides. Every layer is merged onto the typed schema
below, so an unknown key, a wrong type or a missing file fails with a message that names
the key and the file it came from. ``trainer`` is the one free-form section: it goes to
``lightning.Trainer`` unchanged, after its names and values are checked against the Trainer's
signature (``evfocus.trainer_options``). Every ``${...}`` interpolation is resolved at load time,
so a broken one stops here, naming its key and the file that set it.

Every layer of the package reads this module, so it imports none of them (docs/architecture.md):
where a setting mirrors a class elsewhere (``sim.scene.SceneConfig`` extends ``SceneSettings``), the
other side imports this one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from evfocus.trainer_options import TrainerOptionError, check_trainer_options

# Each stage (the LightningModules of training/stages.py) → the validation metrics it logs, which
# ``monitor`` may name. A new stage adds its line here.
STAGE_METRICS: dict[str, tuple[str, ...]] = {
    "refocus": ("val/psnr", "val/ssim", "val/lpips", "val/loss"),
    "merge": ("val/psnr", "val/ssim", "val/lpips", "val/depth_abs_rel"),
    "joint": ("val/psnr", "val/ssim", "val/lpips", "val/depth_abs_rel"),
    "baseline": ("val/psnr", "val/ssim", "val/lpips"),
}
STAGES = tuple(STAGE_METRICS)
Layers = list[tuple[str, DictConfig]]  # (where it came from, what it set), in merge order


class ConfigError(ValueError):
    """A config file or override is invalid (message names the key and the source)."""


# ----------------------------------------------------------------------------- schema
@dataclass
class SceneSettings:
    """sim.scene: ranges for random layered scenes (``sim.scene.sample_scene`` draws them).

    ``min_layers``/``max_layers`` count the *occluding* layers drawn on top of the always-present opaque
    background (which is not counted), so 0 is valid: a sweep of the background alone. The focus range
    is not here: each sweep draws it from ``sim.near_m_range``/``sim.far_m_range``.
    """

    min_layers: int = 2
    max_layers: int = 6
    slant_probability: float = 0.3
    min_size_fraction: float = 0.1  # occluder radius / min(H, W)
    max_size_fraction: float = 0.45
    max_feather_px: float = 2.0  # largest Gaussian sigma softening an occluder's edge


def check_scene_settings(settings: Any, where: str) -> None:
    """Raise ValueError naming ``where.<field>`` when scene settings (the config section or
    ``sim.scene.SceneConfig``, which extends them) are out of range."""
    for name in (f.name for f in fields(SceneSettings)):
        value = getattr(settings, name)
        if not math.isfinite(value):
            raise ValueError(f"{where}.{name} must be finite, got {value}")
    if settings.min_layers < 0:
        raise ValueError(f"{where}.min_layers must be >= 0, got {settings.min_layers}")
    if settings.max_layers < settings.min_layers:
        raise ValueError(f"{where}.max_layers={settings.max_layers} < min_layers={settings.min_layers}")
    if not 0.0 <= settings.slant_probability <= 1.0:
        raise ValueError(f"{where}.slant_probability must be in [0, 1], got {settings.slant_probability}")
    if not 0.0 < settings.min_size_fraction <= settings.max_size_fraction:
        raise ValueError(f"{where}: need 0 < min_size_fraction <= max_size_fraction, got "
                         f"{settings.min_size_fraction}, {settings.max_size_fraction}")
    if settings.max_feather_px < 0:
        raise ValueError(f"{where}.max_feather_px must be >= 0, got {settings.max_feather_px}")


@dataclass
class VoltmeterConfig:
    spread: float = 0.3
    k1_scale_range: list[float] = field(default_factory=lambda: [1.0, 4.0])


@dataclass
class IdealConfig:
    """The ideal event model's draws: a threshold range per sweep, the rest as ``sim.dvs.IdealParams``."""

    threshold_range: list[float] = field(default_factory=lambda: [0.15, 0.35])
    threshold_sigma: float = 0.03  # these four: the defaults of sim.dvs.IdealParams (a test keeps them equal)
    refractory_us: int = 0
    shot_noise_hz: float = 0.0
    leak_hz: float = 0.0


@dataclass
class SimConfig:
    """Ranges the simulator draws from, per sweep (wide, so models survive real optics)."""

    height: int = 128
    width: int = 128
    num_frames: int = 120
    near_m_range: list[float] = field(default_factory=lambda: [0.25, 0.5])
    far_m_range: list[float] = field(default_factory=lambda: [3.0, 10.0])
    max_blur_radius_px_range: list[float] = field(default_factory=lambda: [2.0, 12.0])
    duration_us_range: list[int] = field(default_factory=lambda: [300_000, 2_000_000])
    event_model: str = "voltmeter"
    event_response: str = "random"
    voltmeter: VoltmeterConfig = field(default_factory=VoltmeterConfig)
    ideal: IdealConfig = field(default_factory=IdealConfig)
    image_noise_std: float = 0.005
    scene: SceneSettings = field(default_factory=SceneSettings)
    # bundled photographs no split draws (sim/textures.py PHOTO_NAMES), e.g. those an evaluation's captures show
    excluded_photos: list[str] = field(default_factory=list)


@dataclass
class CapturesConfig:
    """Real captures for the test and predict loaders (data/capture_set.py); empty: none."""

    # capture folders (every capture in each) or capture files (ROOT/blurry/<name>.png, ROOT/events/<name>.<ext>)
    root: list[str] = field(default_factory=list)
    on_error: str = "stop"  # "skip": report a bad capture and go on with the rest
    event_format: str | None = None  # events.formats.FORMATS name for every capture (None: detected)


@dataclass
class ShardsConfig:
    """Pre-rendered training sweeps (``python -m evfocus.data.export``), streamed with litdata."""

    dir: str | None = None  # the export's --out: a local folder or s3://bucket/prefix
    shuffle: bool = True
    cache_dir: str | None = None  # where litdata caches remote chunks (None: its default)
    max_cache_size: str = "50GB"


@dataclass
class DataConfig:
    crop_size: int = 96
    num_bins: int = 16
    efs_fine_bins: int = 240
    samples_per_sweep: int = 8
    shuffle_buffer: int = 32
    flip: bool = True
    batch_size: int = 8
    num_workers: int = 1
    persistent_workers: bool = True
    train_sweeps_per_epoch: int = 64
    val_sweeps: int = 8
    test_sweeps: int = 16
    eval_pairs_per_sweep: int = 4
    cache_dir: str = ".cache/evfocus"
    # model.contrast: train on each sweep's true best contrast × exp(jitter·N(0,1)) instead of the
    # self-calibration's estimate (data/contrast_fields.teach_contrast); null: the estimate itself
    contrast_teacher_jitter: float | None = None
    # the training stream: "simulate" renders sweeps on the fly; "shards" streams data.shards.dir
    source: str = "simulate"
    shards: ShardsConfig = field(default_factory=ShardsConfig)
    captures: CapturesConfig = field(default_factory=CapturesConfig)


@dataclass
class ModelConfig:
    name: str = "evrefocusnet"  # a network of models.registry.MODELS (checked when the stage is built)
    # stage baseline: a size of models.baselines.BASELINES[name] ("cpu", "paper", ...; null: the constructor's
    # defaults) and constructor arguments overriding it; width, depth, norm and the rest size EvRefocusNet only
    preset: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    width: int = 16
    depth: int = 3
    norm: str = "group"
    # start as event integration log I0 + c·Σevents with a learned c (None: the reference's plain residual)
    event_gain_init: float | None = 0.05
    # per-sweep event contrast instead of one global gain: "prior" = the non-learned self-calibration
    # (events/contrast.py), "learned" = that prior corrected by models/refocus.ContrastEstimator; the
    # events are scaled by it and event_gain_init multiplies it (1.0 = plain integration at the start)
    contrast: str | None = None
    # each sweep's events in the log its sensor responds to (its event_response, events/integration.py): the
    # integration start and the contrast taught, estimated and scaled by; false: the frame's log for every
    # sensor (what checkpoints saved before 2026-12-02 did, and get when loaded)
    event_response_aware: bool = True


@dataclass
class LossConfig:
    l1: float = 1.0
    ssim: float = 0.2
    lpips: float = 0.0
    gradient: float = 0.0
    contrast: float = 0.1  # weight of the contrast estimator's log error (model.contrast=learned)
    # stage baseline, the papers' own terms: IFAN's reblurring MSE and defocus MSE (both at 1/8), APL's
    # adversarial BCE (docs/baselines.md)
    reblur: float = 1.0
    defocus: float = 1.0
    adversarial: float = 1.0


@dataclass
class OptimConfig:
    lr: float = 5e-4
    weight_decay: float = 1e-4
    scheduler: str = "cosine"
    milestones_epochs: list[int] = field(default_factory=lambda: [50, 70, 90])
    gamma: float = 0.1
    warmup_steps: int = 0
    grad_clip_norm: float = 1.0


@dataclass
class WandbConfig:
    enabled: bool = True
    mode: str = "offline"
    project: str | None = None
    entity: str | None = None
    tags: list[str] = field(default_factory=list)


@dataclass
class LoggingConfig:
    image_every_n_steps: int = 200
    num_panel_images: int = 4
    wandb: WandbConfig = field(default_factory=WandbConfig)


@dataclass
class EvalConfig:
    lpips: str = "auto"


@dataclass
class MergeModelConfig:
    """EvMergeNet size (stages merge and joint); width 47, depth 3 is the reference's budget."""

    width: int = 16
    depth: int = 3
    norm: str = "group"
    prior: str = "none"  # "sobel": start as the Sobel-energy merge and learn a correction (models/merge.py)


@dataclass
class SearchSettings:
    """Golden-section focus search (pipeline/search.py); pipeline/settings.py scales it to each sweep."""

    grid_size: int = 8
    margin_px: int = 8
    domain: str = "time"
    sharpness: str = "variance"
    # the search's resolution as a fraction of the sweep: the time domain's bracket tolerance and, in both
    # domains, the separation below which found times are one slice (the reference: 1/64)
    tolerance_fraction: float = 0.015625
    # event domain: bracket tolerance in events of the patch (None: tolerance_fraction of the mean
    # events per patch; the reference uses 1000 at ~15 k events per patch)
    tolerance_events: float | None = None
    max_iters: int = 30
    max_crops_per_call: int | None = None  # patch crops per network call; None: 8 on CPU, all on a GPU
    min_events_per_px: float = 0.2  # patches with fewer events keep the input frame (efs_dev: 0.44-1.45/px)
    probe_scale: int = 1  # search probes on crops averaged down by this factor: faster, moves decisions (search.py)
    # what refocuses the search's probes: event integration at the net's contrast for the sweep (no network:
    # the search 15-60x faster; other patch times for ~40% of the patches, but the same all-in-focus image
    # within 0.03 dB on average, as the merge picks each pixel's sharpest slice; docs/results.md,
    # "Network-free search probes by default"), or the refocus net itself (the former default)
    probe: str = "integration"


@dataclass
class PipelineSettings:
    """Search → stack → merge at evaluation and in src/aif.py."""

    search: SearchSettings = field(default_factory=SearchSettings)
    max_slices: int = 8
    merge_window_fraction: float = 0.015625  # merge events: ± this fraction of the sweep per slice
    slices_per_batch: int | None = None  # full-image refocus batch; None: 1 on CPU, 8 on a GPU
    tile_px: int | None = None  # full-image nets on tiles of at most this size; None: 512 on CPU, whole on a GPU
    # how the nets run (models/runtime.py): channels_last (float32 on every machine, so evaluations compare
    # across machines), torch, bf16_stack, bf16, or auto (src/aif.py's default: bf16_stack on a CPU with bf16
    # instructions, else channels_last)
    runtime: str = "channels_last"
    # how a sweep's event contrast is self-calibrated for per-sweep-contrast nets and the integration
    # reference (events/contrast.py): the overshoot kink refined by a blur fit (blur_fit), or the kink alone
    # (shipped model: sim x3 +4.45 dB against +1.75, efs_dev 0.25 dB lower; docs/results.md)
    contrast_estimator: str = "blur_fit"
    # the sensor's event contrast when it is known (calibrated: the log step per event, in the log the sensor
    # responds to), used by per-sweep-contrast nets and integration probes instead of the estimate above; the
    # integration reference of evaluations stays self-calibrated; null: estimated per sweep
    event_contrast: float | None = None
    # a per-sweep-contrast net is given event_contrast times this: trained by frame against a jittered contrast, the
    # shipped net refocuses too timidly for the merge's choice of sharp slices, and makes its best all-in-focus
    # image at about 1.3 times a sweep's true contrast (chosen on validation sweeps given their true contrast,
    # docs/results.md "The net given its sweep's true contrast"); the self-calibrated estimate is never scaled (it
    # reads high on our sweeps already, and on validation end to end a factor on it does not pay)
    given_contrast_gain: float = 1.0
    # every refocused slice keeps the frame's local mean light (pipeline/anchor.py): the Gaussian window's σ as
    # a fraction of the image's longer side (chosen on validation sweeps from 0.025 / 0.05 / 0.1); null: off
    anchor_sigma_fraction: float | None = 0.05
    # the all-in-focus image's colour refitted from the frame's local colour lines on its sharp luma
    # (pipeline/recolour.py; events see brightness only); false: the merged slices' colour, the frame's
    recolour: bool = True
    # the image's weights are the merge's × each slice's focus energy ** this, renormalised (pipeline/focus.py):
    # the sharpest slice where focus is decisive, the merge's blend where slices tie; 0: the merge's weights
    focus_sharpness: float = 32.0
    # the merge net sees the stack and its events averaged down by this factor and its weights are upsampled:
    # its blend is smooth, so at 2 the image stays within 0.04 dB and the depth within 0.02 AbsRel (chosen on
    # validation sweeps), for a quarter of the merge's cost (docs/results.md, "The merge at half resolution");
    # 1: full resolution
    merge_scale: int = 2
    eval_sweeps: int | None = None  # AIF-evaluate the first N test sweeps only (None: all)


@dataclass
class StackConfig:
    """Focal-stack training (stages merge and joint)."""

    max_slices: int = 6
    oracle_grid: int = 4  # oracle slices: in-focus times of a grid over each crop's true depth
    teacher_forcing: bool = False  # merge: ground-truth frames as the stack instead of refocused ones
    slice_source: str = "oracle"  # merge and joint: "search" runs the focus search on every crop
    refocus_loss_weight: float = 0.5  # joint: keep refocusing honest at the oracle slices
    search_tolerance_fraction: float = 0.0625  # joint: coarser than at test time (a search per crop per step)
    # refocus-stage checkpoint, run folder or shipped weights: the refocus net of merge and joint; the refocus
    # stage starts from it (fine-tuning)
    refocus_ckpt: str | None = None
    merge_ckpt: str | None = None  # merge-stage checkpoint or run folder (joint)


@dataclass
class ExperimentConfig:
    stage: str = "refocus"
    seed: int = 0
    project: str = "evfocus"
    run_name: str | None = None
    runs_dir: str = "runs"
    ckpt_path: str | None = None
    # test these weights (a checkpoint file or a run folder) without training, in a new run folder
    test_ckpt: str | None = None
    monitor: str = "val/psnr"
    monitor_mode: str = "max"
    checkpoint_every_n_steps: int = 100
    sim: SimConfig = field(default_factory=SimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    merge_model: MergeModelConfig = field(default_factory=MergeModelConfig)
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)
    stack: StackConfig = field(default_factory=StackConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    trainer: dict[str, Any] = field(default_factory=dict)


CHOICES: dict[str, tuple[str, ...]] = {
    "stage": STAGES,
    "monitor_mode": ("min", "max"),
    "sim.event_model": ("voltmeter", "ideal"),
    "sim.event_response": ("linear", "gamma", "random"),
    "model.contrast": (None, "prior", "learned"),
    "model.norm": ("group", "batch", "none"),
    "optim.scheduler": ("cosine", "step", "none"),
    "logging.wandb.mode": ("offline", "online", "disabled"),
    "eval.lpips": ("auto", "on", "off"),
    "merge_model.norm": ("group", "batch", "none"),
    "pipeline.search.domain": ("time", "events"),
    "pipeline.search.sharpness": ("variance", "gradient"),
    "pipeline.search.probe": ("net", "integration"),
    "pipeline.contrast_estimator": ("kink", "blur_fit"),
    "merge_model.prior": ("none", "sobel"),
    "pipeline.runtime": ("auto", "torch", "channels_last", "bf16_stack", "bf16"),
    "stack.slice_source": ("oracle", "search"),
    "data.source": ("simulate", "shards"),
    "data.captures.on_error": ("stop", "skip"),
}

RANGES = (
    "sim.near_m_range", "sim.far_m_range", "sim.max_blur_radius_px_range", "sim.duration_us_range",
    "sim.voltmeter.k1_scale_range", "sim.ideal.threshold_range",
)

POSITIVE = (
    "sim.height", "sim.width", "data.crop_size", "data.num_bins", "data.efs_fine_bins",
    "data.samples_per_sweep", "data.batch_size", "data.train_sweeps_per_epoch", "data.val_sweeps",
    "data.test_sweeps", "data.eval_pairs_per_sweep", "model.width", "model.depth", "optim.lr",
    "merge_model.width", "merge_model.depth", "pipeline.search.grid_size", "pipeline.search.tolerance_fraction",
    "pipeline.search.max_iters", "pipeline.search.probe_scale", "pipeline.max_slices",
    "pipeline.merge_window_fraction", "stack.max_slices", "stack.oracle_grid",
    "stack.search_tolerance_fraction",
)


# ----------------------------------------------------------------------------- loading
def _merge_layer(base: DictConfig, layer: DictConfig | dict, source: str) -> DictConfig:
    try:
        return OmegaConf.merge(base, layer)
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None) or "?"
        reason = str(error).splitlines()[0]
        raise ConfigError(f"{source}: invalid key '{key}': {reason}") from None


def _read_yaml(path: Path) -> DictConfig:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        loaded = OmegaConf.load(path)
    except Exception as error:  # yaml.YAMLError and friends: report the file, keep the reason
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(loaded, DictConfig):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(loaded).__name__}")
    return loaded


def _compose(path: Path, schema: DictConfig, seen: tuple[Path, ...], layers: Layers) -> DictConfig:
    """Merge ``defaults:`` (recursively, in order) and then the file body onto ``schema``; ``layers``
    collects each file's body, so errors found later can name the file that set a key."""
    path = path.resolve()
    if path in seen:
        chain = " -> ".join(p.name for p in (*seen, path))
        raise ConfigError(f"{path}: circular defaults: {chain}")
    body = _read_yaml(path)
    defaults = body.pop("defaults", [])
    if not OmegaConf.is_list(defaults) and not isinstance(defaults, list):
        raise ConfigError(f"{path}: 'defaults' must be a list of config file names")
    merged = schema
    for entry in defaults:
        if not isinstance(entry, str):
            raise ConfigError(f"{path}: 'defaults' entries must be file names, got {entry!r}")
        name = entry if entry.endswith((".yaml", ".yml")) else f"{entry}.yaml"
        if not (path.parent / name).is_file():
            raise ConfigError(f"{path}: defaults entry '{entry}': config file not found: {path.parent / name}")
        merged = _compose(path.parent / name, merged, (*seen, path), layers)
    layers.append((str(path), body))
    return _merge_layer(merged, body, str(path))


def _source_of(key: str, layers: Layers) -> str:
    """The last layer that set the dotted ``key`` (where its value, e.g. a broken interpolation, came from)."""
    parts = key.split("[")[0].split(".")  # sim.near_m_range[0] → the list's key
    for source, layer in reversed(layers):
        node: Any = OmegaConf.to_container(layer, resolve=False)
        for part in parts:
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            return source
    return "config"


def _check_interpolations(cfg: DictConfig, layers: Layers) -> None:
    """Resolve every ``${...}`` now: a broken one stops here, not in --print-config or mid-run."""
    try:
        OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None) or "?"
        raise ConfigError(f"{_source_of(key, layers)}: key '{key}': {str(error).splitlines()[0]}") from None


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """Compose, override, validate and return the experiment config (a typed, read-only DictConfig)."""
    cfg = OmegaConf.structured(ExperimentConfig)
    layers: Layers = []
    if path is not None:
        cfg = _compose(Path(path), cfg, (), layers)
    for override in overrides:
        if "=" not in override:
            raise ConfigError(f"command line: override '{override}' must look like dotted.key=value")
        layer = OmegaConf.from_dotlist([override])
        layers.append((f"command line '{override}'", layer))
        cfg = _merge_layer(cfg, layer, f"command line '{override}'")
    _check_interpolations(cfg, layers)
    validate(cfg)
    OmegaConf.set_readonly(cfg, True)
    return cfg


def _check_finite(values: Any, key: str) -> None:
    """Every float of the schema must be finite: NaN passes every ``<=`` check, inf is never a setting."""
    if isinstance(values, dict):
        for name, value in values.items():
            _check_finite(value, f"{key}.{name}" if key else name)
    elif isinstance(values, list):
        for index, value in enumerate(values):
            _check_finite(value, f"{key}[{index}]")
    elif isinstance(values, float) and not math.isfinite(values):
        raise ConfigError(f"{key}: must be a finite number, got {values}")


def with_pipeline_changes(cfg: DictConfig, items: list[str]) -> DictConfig:
    """``cfg`` with ``key=value`` items (dotted keys, values parsed as YAML: ``null`` is None) applied under its
    ``pipeline`` section, type-checked by the schema (an unknown key raises OmegaConf's error); not validated."""
    for item in items:
        if "=" not in item:
            raise ConfigError(f"pipeline setting {item!r}: expected KEY=VALUE, e.g. given_contrast_gain=1.3")
        cfg = OmegaConf.merge(cfg, {"pipeline": OmegaConf.from_dotlist([item])})
    return cfg


def validate(cfg: DictConfig) -> None:
    """Checks the schema's types cannot express: choices, ranges, positivity, relations, trainer options."""
    for key, allowed in CHOICES.items():
        value = OmegaConf.select(cfg, key)
        if value not in allowed:
            raise ConfigError(f"{key}: '{value}' is not one of {list(allowed)}")
    if cfg.monitor not in STAGE_METRICS[cfg.stage]:
        raise ConfigError(f"monitor: '{cfg.monitor}' is not a metric stage '{cfg.stage}' logs; "
                          f"one of {list(STAGE_METRICS[cfg.stage])}")
    if cfg.stage == "merge" and cfg.stack.teacher_forcing and cfg.stack.slice_source == "search":
        raise ConfigError("stack.teacher_forcing=true takes the ground-truth frames at the oracle slice times; "
                          "it cannot be combined with stack.slice_source=search")
    for key in RANGES:
        low_high = OmegaConf.select(cfg, key)
        if len(low_high) != 2 or low_high[0] > low_high[1]:
            raise ConfigError(f"{key}: must be [low, high] with low <= high, got {list(low_high)}")
    for key in POSITIVE:
        if OmegaConf.select(cfg, key) <= 0:
            raise ConfigError(f"{key}: must be positive, got {OmegaConf.select(cfg, key)}")
    if cfg.sim.num_frames < 2:
        raise ConfigError(f"sim.num_frames: a sweep needs at least 2 frames, got {cfg.sim.num_frames}")
    if cfg.sim.near_m_range[0] <= 0:
        raise ConfigError(f"sim.near_m_range: focus distances must be positive, got {list(cfg.sim.near_m_range)}")
    if cfg.sim.near_m_range[1] >= cfg.sim.far_m_range[0]:
        raise ConfigError(
            f"sim.near_m_range {list(cfg.sim.near_m_range)} must lie below sim.far_m_range "
            f"{list(cfg.sim.far_m_range)}: the sweep goes near -> far"
        )
    if cfg.data.crop_size > min(cfg.sim.height, cfg.sim.width):
        raise ConfigError(
            f"data.crop_size={cfg.data.crop_size} is larger than the simulated image "
            f"{cfg.sim.height}x{cfg.sim.width} (sim.height x sim.width)"
        )
    try:
        check_scene_settings(cfg.sim.scene, "sim.scene")
    except ValueError as error:
        raise ConfigError(str(error)) from None
    if not cfg.pipeline.focus_sharpness >= 0:
        raise ConfigError(f"pipeline.focus_sharpness: must be >= 0 (0: off), got {cfg.pipeline.focus_sharpness}")
    if not cfg.pipeline.merge_scale >= 1:
        raise ConfigError(f"pipeline.merge_scale: must be >= 1 (1: full resolution), got {cfg.pipeline.merge_scale}")
    for key in ("pipeline.search.tolerance_events", "pipeline.search.max_crops_per_call", "pipeline.slices_per_batch",
                "pipeline.tile_px", "pipeline.anchor_sigma_fraction", "pipeline.event_contrast"):
        value = OmegaConf.select(cfg, key)
        if value is not None and value <= 0:
            raise ConfigError(f"{key}: must be positive (or null), got {value}")
    gain = cfg.pipeline.given_contrast_gain
    if not (math.isfinite(gain) and gain > 0):
        raise ConfigError(f"pipeline.given_contrast_gain: must be a positive number, got {gain}")
    if cfg.pipeline.event_contrast is not None and cfg.model.contrast is None:
        raise ConfigError("pipeline.event_contrast: model.contrast is null (one global event gain), so the refocus "
                          "net would ignore a given contrast: set model.contrast=prior, or leave event_contrast null")
    if cfg.test_ckpt is not None and cfg.ckpt_path is not None:
        raise ConfigError("test_ckpt tests a checkpoint without training and ckpt_path resumes training: set one")
    jitter = cfg.data.contrast_teacher_jitter
    if jitter is not None and jitter < 0:
        raise ConfigError(f"data.contrast_teacher_jitter: must be >= 0 (or null), got {jitter}")
    if cfg.stage == "baseline" and cfg.data.captures.root:
        raise ConfigError("data.captures.root: captures are evaluated by the event stages; score an image-only "
                          "baseline on captures with `python src/aif.py --ckpt RUN --input CAPTURES`")
    if cfg.stage == "baseline" and cfg.data.source == "shards":
        raise ConfigError("data.source=shards: shards hold event samples; stage 'baseline' simulates its own")
    if cfg.data.source == "shards" and not cfg.data.shards.dir:
        raise ConfigError("data.source=shards needs data.shards.dir (the folder or s3:// prefix "
                          "`python -m evfocus.data.export --out` wrote)")
    for name, weight in cfg.loss.items():
        if weight < 0:
            raise ConfigError(f"loss.{name}: a loss weight must be >= 0, got {weight}")
    if cfg.data.num_workers < 0:
        raise ConfigError(f"data.num_workers: must be >= 0, got {cfg.data.num_workers}")
    values = to_container(cfg)
    try:
        check_trainer_options(values.pop("trainer"))
    except TrainerOptionError as error:
        raise ConfigError(str(error)) from None
    _check_finite(values, "")


def to_container(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
