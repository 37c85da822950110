"""What a readout head is: its architecture numbers and the metadata the pack needs.

`HeadInfo` is built either from a published checkpoint's training config
(`info_from_published_config`) or from the metadata stored in the pack's own
`.safetensors` files (`HeadInfo.from_json`).
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from ..errors import HeadConfigError
from ..safe_json import read_json

FAMILIES = ("sd15", "sdxl")
SPATIAL_KINDS = ("spatial", "keypoint")
RELATIVE_KINDS = ("appearance", "correspondence", "identity")
KINDS = SPATIAL_KINDS + RELATIVE_KINDS
TRAINABLE_KINDS = ("spatial", "appearance", "identity", "correspondence")
"""The kinds the pack's trainer makes (keypoint heads are only loaded)."""

# Control ranges the released trainer uses (readout_training/dataset.py): pose and edge
# targets live in (-0.5, 0.5), everything else (depth, user controls) in (-1, 1).
CONTROL_RANGE_BY_TYPE: dict[str, tuple[float, float]] = {
    "pose": (-0.5, 0.5),
    "edge": (-0.5, 0.5),
    "depth": (-1.0, 1.0),
}
DEFAULT_CONTROL_RANGE = (-1.0, 1.0)
KEYPOINT_CONTROL_RANGE = (0.0, 1.0)
SPARSE_CONTROL_TYPES = ("pose", "edge")

MAX_LAYERS = 64
"""Most decoder layers a head may read (SD1.5 heads read 12, SDXL 9)."""
MAX_CHANNELS = 8192
"""Widest layer, projection or timestep embedding accepted (published heads: 1280 at most)."""
MAX_OUTPUT_CHANNELS = 256
"""Most output channels (published: 3 for spatial control, 18 keypoint heatmaps)."""
MAX_NAME_CHARS = 512
"""Longest control type, base model name or training-fact name."""
MAX_TRAINING_FACTS = 64
"""Most entries in ``training``."""
MAX_METADATA_CHARS = 64 * 1024
"""Longest head metadata JSON read from a ``.safetensors`` file."""


@dataclass(frozen=True)
class HeadInfo:
    """Architecture and metadata of one readout head.

    Attributes:
        kind: spatial, keypoint, appearance, correspondence or identity.
        family: base model family the head reads, ``sd15`` or ``sdxl``.
        dims: channels of each decoder layer the head reads, in layer order.
        projection_dim: width P of the aggregated feature map (bottleneck width P/4).
        emb_dim: width E of the timestep embedding the bottlenecks take (0: none).
        output_channels: channels of the output head, or None for relative heads.
        output_activation: whether the output head ends with Tanh.
        sequential: released ``bottleneck_sequential`` layout (keys gain ``.0.``,
            the timestep embedding is ignored).
        control_type: pose, depth, edge, ... for spatial heads; None otherwise.
        control_range: value range of the head's output / targets (spatial heads).
        sparse_loss: whether training re-weights background vs foreground.
        num_groups: GroupNorm groups in every bottleneck norm.
        base_model: the base model named in the training config, if any.
        training: free-form training facts (steps, dataset size, ...).
    """

    kind: str
    family: str
    dims: tuple[int, ...]
    projection_dim: int = 384
    emb_dim: int = 1280
    output_channels: int | None = None
    output_activation: bool = True
    sequential: bool = False
    control_type: str | None = None
    control_range: tuple[float, float] | None = None
    sparse_loss: bool = False
    num_groups: int = 32
    base_model: str = ""
    training: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._check_types()
        object.__setattr__(self, "dims", tuple(int(d) for d in self.dims))
        if self.control_range is not None:
            object.__setattr__(self, "control_range", tuple(float(v) for v in self.control_range))
        object.__setattr__(self, "training", dict(self.training))
        self.validate()

    def _check_types(self) -> None:
        """Raise `HeadConfigError` naming the first field whose value has the wrong type."""
        _expect(self.kind, str, "kind", "a string")
        _expect(self.family, str, "family", "a string")
        if not isinstance(self.dims, (list, tuple)) or not all(_is_int(d) for d in self.dims):
            raise HeadConfigError(f"dims must be a list of integers (channels per decoder layer), got {_short(self.dims)}.")
        for name in ("projection_dim", "emb_dim", "num_groups"):
            if not _is_int(getattr(self, name)):
                raise HeadConfigError(f"{name} must be an integer, got {_short(getattr(self, name))}.")
        if self.output_channels is not None and not _is_int(self.output_channels):
            raise HeadConfigError(f"output_channels must be an integer or null, got {_short(self.output_channels)}.")
        for name in ("output_activation", "sequential", "sparse_loss"):
            _expect(getattr(self, name), bool, name, "true or false")
        if self.control_type is not None:
            _expect(self.control_type, str, "control_type", "a string or null")
        if self.control_range is not None and not (
                isinstance(self.control_range, (list, tuple)) and len(self.control_range) == 2
                and all(_is_real(v) and math.isfinite(v) for v in self.control_range)):
            raise HeadConfigError(f"control_range must be two finite numbers (low, high), got {_short(self.control_range)}.")
        _expect(self.base_model, str, "base_model", "a string")
        if not isinstance(self.training, Mapping) or len(self.training) > MAX_TRAINING_FACTS or not all(
                isinstance(k, str) and len(k) <= MAX_NAME_CHARS and _is_fact(v) for k, v in self.training.items()):
            raise HeadConfigError(f"training must map at most {MAX_TRAINING_FACTS} names to numbers, strings, "
                                  f"booleans or null, got {_short(self.training)}.")

    @property
    def is_relative(self) -> bool:
        """True for heads whose readout is a feature map compared with a reference."""
        return self.kind in RELATIVE_KINDS

    @property
    def bottleneck_dim(self) -> int:
        """Width of each bottleneck's inner convolutions (P / 4)."""
        return self.projection_dim // 4

    @property
    def in_channels(self) -> int:
        """Channels of the concatenated feature tensor the head takes."""
        return sum(self.dims)

    def validate(self) -> None:
        """Raise `HeadConfigError` naming the field if the numbers cannot describe a working head."""
        if self.kind not in KINDS:
            raise HeadConfigError(f"Unknown head kind {_short(self.kind)}; expected one of {', '.join(KINDS)}.")
        if self.family not in FAMILIES:
            raise HeadConfigError(
                f"Unknown base model family {_short(self.family)}; expected one of {', '.join(FAMILIES)}."
            )
        if not 1 <= len(self.dims) <= MAX_LAYERS or not all(1 <= d <= MAX_CHANNELS for d in self.dims):
            raise HeadConfigError(f"dims must list 1 to {MAX_LAYERS} layer widths, each 1 to {MAX_CHANNELS} channels; "
                                  f"got {_short(list(self.dims))}.")
        if not 4 <= self.projection_dim <= MAX_CHANNELS or self.projection_dim % 4:
            raise HeadConfigError(f"projection_dim must be a multiple of 4 from 4 to {MAX_CHANNELS}, got "
                                  f"{self.projection_dim}.")
        if not 1 <= self.num_groups <= self.bottleneck_dim or self.bottleneck_dim % self.num_groups:
            raise HeadConfigError(
                f"num_groups must divide the bottleneck width (projection_dim / 4 = {self.bottleneck_dim}), got "
                f"{self.num_groups}."
            )
        if not 0 <= self.emb_dim <= MAX_CHANNELS:
            raise HeadConfigError(f"emb_dim must be from 0 to {MAX_CHANNELS}, got {self.emb_dim}.")
        if self.output_channels is not None and not 1 <= self.output_channels <= MAX_OUTPUT_CHANNELS:
            raise HeadConfigError(f"output_channels must be from 1 to {MAX_OUTPUT_CHANNELS}, got {self.output_channels}.")
        if self.kind in SPATIAL_KINDS and not self.output_channels:
            raise HeadConfigError(f"A {self.kind} head needs an output head (output_channels), got none.")
        if self.kind in RELATIVE_KINDS and self.output_channels:
            raise HeadConfigError(
                f"A {self.kind} head outputs its feature map; it cannot have an output head "
                f"({self.output_channels} channels)."
            )
        for name in ("control_type", "base_model"):
            if len(getattr(self, name) or "") > MAX_NAME_CHARS:
                raise HeadConfigError(f"{name} must be at most {MAX_NAME_CHARS} characters long.")
        if self.control_range is not None:
            low, high = self.control_range
            if not low < high:
                raise HeadConfigError(f"control_range must be (low, high) with low < high, got {self.control_range}.")

    def to_json(self) -> str:
        """Serialise to the JSON string stored in `.safetensors` metadata."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "HeadInfo":
        """Parse the JSON written by `to_json`; unknown keys are an error."""
        data = read_json(text, "The head metadata", HeadConfigError, MAX_METADATA_CHARS)
        if not isinstance(data, dict):
            raise HeadConfigError("Head metadata must be a JSON object.")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise HeadConfigError(f"Head metadata has unknown fields {unknown}; was it written by a newer pack?")
        try:
            return cls(**data)
        except TypeError as exc:
            raise HeadConfigError(f"Head metadata is incomplete: {exc}.") from exc

    def describe(self) -> str:
        """One line for users: kind, family, control and layer count."""
        parts = [f"{self.kind} head for {self.family.upper()}"]
        if self.control_type:
            parts.append(f"control {self.control_type} in {self.control_range}")
        parts.append(f"{len(self.dims)} decoder layers")
        return ", ".join(parts)


def family_from_model_id(model_id: str) -> str:
    """The released code treats any model id containing ``xl`` as SDXL."""
    return "sdxl" if "xl" in model_id.lower() else "sd15"


def kind_from_published(config: Mapping[str, Any], file_stem: str = "") -> str:
    """Infer the head kind from a released training config (and file name as a fallback)."""
    agg = _section(config, "aggregation_kwargs")
    if _flag(agg, "use_output_head", False, "aggregation_kwargs"):
        # Keypoint heads regress heatmaps without the final Tanh; every other head with an
        # output head is a spatial control head.
        return "spatial" if _flag(agg, "output_head_act", True, "aggregation_kwargs") else "keypoint"
    run_name = _text(_section(config, "wandb_kwargs"), "name", "wandb_kwargs")
    dataset_args = _section(config, "dataset_args")
    hints = f"{run_name} {file_stem}".lower()
    for kind in ("identity", "appearance", "correspondence"):
        if kind in hints:
            return kind
    if "sdedit_root" in dataset_args:
        return "appearance"
    if "points_root" in dataset_args:
        return "correspondence"
    raise HeadConfigError(
        "Cannot tell whether this relative head is an appearance or a correspondence head: "
        "its config names neither. Rename the file to contain 'appearance' or 'correspondence', "
        "or convert it with `python -m readout_core convert --kind ...`."
    )


def info_from_published_config(config: Mapping[str, Any], file_stem: str = "", kind: str | None = None) -> HeadInfo:
    """Build a `HeadInfo` from the ``config`` dict inside a released ``.pt`` head.

    Every field read is type-checked; `HeadConfigError` names the config field at fault.
    Fields the config leaves out keep the released defaults (``projection_dim`` 384,
    3 output channels); `head_weights.reconcile` then takes them from the weights.
    """
    if "dims" not in config:
        raise HeadConfigError("The checkpoint's config lacks 'dims'; it is not a readout head checkpoint.")
    agg = _section(config, "aggregation_kwargs")
    kind = kind or kind_from_published(config, file_stem)
    model_id = _text(config, "model_id", "config") or _text(config, "model_path", "config")
    family = family_from_model_id(model_id or file_stem)
    dataset_args = _section(config, "dataset_args")
    control_type: str | None = None
    control_range: Any = None
    sparse = False
    if kind == "spatial":
        control_type = _text(dataset_args, "control_type", "dataset_args") or _control_type_from_stem(file_stem) or "custom"
        if control_type in CONTROL_RANGE_BY_TYPE and control_type != "depth":
            control_range = CONTROL_RANGE_BY_TYPE[control_type]
            sparse = True
        else:
            control_range = dataset_args.get("control_range", DEFAULT_CONTROL_RANGE)
            sparse = _flag(dataset_args, "sparse_loss", False, "dataset_args")
    elif kind == "keypoint":
        control_type, control_range = "pose_keypoint", KEYPOINT_CONTROL_RANGE
    output_channels = agg.get("output_head_channels", 3)
    if not _is_int(output_channels):
        raise HeadConfigError(f"aggregation_kwargs.output_head_channels must be an integer, got {_short(output_channels)}.")
    training = {key: config[key] for key in ("step", "max_steps", "lr") if _is_fact(config.get(key, ()))}
    return HeadInfo(
        kind=kind,
        family=family,
        dims=config["dims"],
        projection_dim=config.get("projection_dim", 384),
        output_channels=output_channels if _flag(agg, "use_output_head", False, "aggregation_kwargs") else None,
        output_activation=_flag(agg, "output_head_act", True, "aggregation_kwargs"),
        sequential=_flag(agg, "bottleneck_sequential", True, "aggregation_kwargs"),
        control_type=control_type,
        control_range=control_range,
        sparse_loss=sparse,
        base_model=model_id,
        training=training,
    )


def _section(config: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """A nested dict of the config (absent or null: empty)."""
    value = config.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise HeadConfigError(f"The config's {name} must be a dict, got {_short(value)}.")
    return value


def _flag(section: Mapping[str, Any], name: str, default: bool, where: str) -> bool:
    value = section.get(name, default)
    if not isinstance(value, bool):
        raise HeadConfigError(f"{where}.{name} must be true or false, got {_short(value)}.")
    return value


def _text(section: Mapping[str, Any], name: str, where: str) -> str:
    """A string field ('' when absent or null)."""
    value = section.get(name)
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_NAME_CHARS:
        raise HeadConfigError(f"{where}.{name} must be a string of at most {MAX_NAME_CHARS} characters, got "
                              f"{_short(value)}.")
    return value


def _control_type_from_stem(stem: str) -> str | None:
    for name in CONTROL_RANGE_BY_TYPE:
        if name in stem.lower():
            return name
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_fact(value: Any) -> bool:
    """A training fact: null, a boolean, a finite number or a short string."""
    if value is None or isinstance(value, bool):
        return True
    if _is_real(value):
        return math.isfinite(value)
    return isinstance(value, str) and len(value) <= MAX_NAME_CHARS


def _expect(value: Any, kind: type, name: str, description: str) -> None:
    if not isinstance(value, kind):
        raise HeadConfigError(f"{name} must be {description}, got {_short(value)}.")


def _short(value: Any, limit: int = 60) -> str:
    """A bounded description of any value for error messages (never the whole of a huge or deep one)."""
    if value is None or isinstance(value, (bool, float)):
        return repr(value)
    if isinstance(value, numbers.Integral):
        bits = int(value).bit_length()
        return str(int(value)) if bits <= 64 else f"an integer of {bits} bits"
    if isinstance(value, str):
        return repr(value[:limit]) + ("…" if len(value) > limit else "")
    if isinstance(value, (list, tuple)) and len(value) <= 8 and all(
            v is None or isinstance(v, (bool, numbers.Number, str)) for v in value):
        text = "[" + ", ".join(_short(v, 20) for v in value) + "]"
        return text if len(text) <= limit else text[: limit - 1] + "…"
    size = f" of {len(value)} entries" if isinstance(value, (list, tuple, dict)) else ""
    return f"a {type(value).__name__}{size}"
