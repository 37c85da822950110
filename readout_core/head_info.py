"""What a readout head is: its architecture numbers and the metadata the pack needs.

`HeadInfo` is built either from a published checkpoint's training config
(`info_from_published_config`) or from the metadata stored in the pack's own
`.safetensors` files (`HeadInfo.from_json`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping

from .errors import HeadConfigError

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
        object.__setattr__(self, "dims", tuple(int(d) for d in self.dims))
        if self.control_range is not None:
            object.__setattr__(self, "control_range", tuple(float(v) for v in self.control_range))
        self.validate()

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
        """Raise `HeadConfigError` if the numbers cannot describe a working head."""
        if self.kind not in KINDS:
            raise HeadConfigError(f"Unknown head kind {self.kind!r}; expected one of {', '.join(KINDS)}.")
        if self.family not in FAMILIES:
            raise HeadConfigError(
                f"Unknown base model family {self.family!r}; expected one of {', '.join(FAMILIES)}."
            )
        if not self.dims or any(d <= 0 for d in self.dims):
            raise HeadConfigError(f"Head layer channels must be positive, got dims={list(self.dims)}.")
        if self.projection_dim <= 0 or self.projection_dim % 4:
            raise HeadConfigError(f"projection_dim must be a positive multiple of 4, got {self.projection_dim}.")
        if self.bottleneck_dim % self.num_groups:
            raise HeadConfigError(
                f"GroupNorm with {self.num_groups} groups needs the bottleneck width (projection_dim / 4 = "
                f"{self.bottleneck_dim}) to be divisible by {self.num_groups}."
            )
        if self.emb_dim < 0:
            raise HeadConfigError(f"emb_dim must be >= 0, got {self.emb_dim}.")
        if self.kind in SPATIAL_KINDS and not self.output_channels:
            raise HeadConfigError(f"A {self.kind} head needs an output head (output_channels), got none.")
        if self.kind in RELATIVE_KINDS and self.output_channels:
            raise HeadConfigError(
                f"A {self.kind} head outputs its feature map; it cannot have an output head "
                f"({self.output_channels} channels)."
            )
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
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise HeadConfigError(f"Head metadata is not valid JSON: {exc}.") from exc
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

    def with_weights_shapes(self, emb_dim: int, output_channels: int | None) -> "HeadInfo":
        """Return a copy whose widths come from the weights themselves."""
        return replace(self, emb_dim=emb_dim, output_channels=output_channels)

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
    agg = config.get("aggregation_kwargs") or {}
    if agg.get("use_output_head", False):
        # Keypoint heads regress heatmaps without the final Tanh; every other head with an
        # output head is a spatial control head.
        return "spatial" if agg.get("output_head_act", True) else "keypoint"
    run_name = str((config.get("wandb_kwargs") or {}).get("name", ""))
    dataset_args = config.get("dataset_args") or {}
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
    """Build a `HeadInfo` from the ``config`` dict inside a released ``.pt`` head."""
    missing = [key for key in ("dims",) if key not in config]
    if missing:
        raise HeadConfigError(f"The checkpoint's config lacks {missing}; it is not a readout head checkpoint.")
    agg = config.get("aggregation_kwargs") or {}
    kind = kind or kind_from_published(config, file_stem)
    model_id = str(config.get("model_id") or config.get("model_path") or "")
    family = family_from_model_id(model_id or file_stem)
    dataset_args = config.get("dataset_args") or {}
    control_type: str | None = None
    control_range: tuple[float, float] | None = None
    sparse = False
    if kind == "spatial":
        control_type = str(dataset_args.get("control_type") or _control_type_from_stem(file_stem) or "custom")
        if control_type in CONTROL_RANGE_BY_TYPE and control_type != "depth":
            control_range = CONTROL_RANGE_BY_TYPE[control_type]
            sparse = True
        else:
            control_range = tuple(dataset_args.get("control_range", DEFAULT_CONTROL_RANGE))  # type: ignore[assignment]
            sparse = bool(dataset_args.get("sparse_loss", False))
    elif kind == "keypoint":
        control_type, control_range = "pose_keypoint", KEYPOINT_CONTROL_RANGE
    training = {key: config[key] for key in ("step", "max_steps", "lr") if key in config}
    return HeadInfo(
        kind=kind,
        family=family,
        dims=tuple(config["dims"]),
        projection_dim=int(config.get("projection_dim", 384)),
        output_channels=int(agg.get("output_head_channels", 3)) if agg.get("use_output_head", False) else None,
        output_activation=bool(agg.get("output_head_act", True)),
        sequential=bool(agg.get("bottleneck_sequential", True)),
        control_type=control_type,
        control_range=control_range,
        sparse_loss=sparse,
        base_model=model_id,
        training=training,
    )


def _control_type_from_stem(stem: str) -> str | None:
    for name in CONTROL_RANGE_BY_TYPE:
        if name in stem.lower():
            return name
    return None
