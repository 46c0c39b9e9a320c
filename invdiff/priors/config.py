"""Frozen configuration of a VDM prior (parsed at the boundary, stored in checkpoints)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from invdiff.priors.schedules import SCHEDULES


@dataclass(frozen=True)
class VDMConfig:
    """Architecture, schedule and loss settings of a :class:`~invdiff.priors.vdm.VDM`.

    Attributes:
        image_size: side ``S`` of the square images ``(C, S, S)``.
        channels: image channels ``C`` (1 for magnitude MRI).
        unet_channels: U-Net feature channels per resolution level.
        num_res_blocks: residual blocks per level.
        attn_resolutions: resolutions with self-attention (the middle always has it).
        dropout: dropout rate in residual blocks.
        schedule: ``"learned"`` (monotone network, Kingma et al. 2021) or fixed
            ``"linear"`` (DDPM) / ``"cosine"``.
        gamma_min, gamma_max: ``gamma(0)``, ``gamma(1)`` (initial values when learned).
        timesteps: ``T`` of the discrete-time loss; ``0`` for continuous time.
        fourier_features: concatenate Fourier features of the input to the network input.
        fourier_exponents: the ``n`` of ``sin/cos(2^n pi z)`` (``{7, 8}`` in the paper).
        antithetic: antithetic (stratified) sampling of ``t`` over the batch.
        vocab_size: discretisation levels of the data for the reconstruction term.
        minimise_variance: train the learned schedule's shape to minimise the variance of the
            diffusion loss (Kingma et al. 2021, Sec. 5 / Appendix I.2) rather than the bound.
        schedule_features: hidden width of the learned schedule network.
    """

    image_size: int = 128
    channels: int = 1
    unet_channels: tuple[int, ...] = (16, 32, 64, 128)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = (16,)
    dropout: float = 0.0
    schedule: str = "learned"
    gamma_min: float = -13.3
    gamma_max: float = 5.0
    timesteps: int = 1000
    fourier_features: bool = True
    fourier_exponents: tuple[int, ...] = (7, 8)
    antithetic: bool = True
    vocab_size: int = 256
    minimise_variance: bool = True
    schedule_features: int = 1024

    def __post_init__(self) -> None:
        for name in ("unet_channels", "attn_resolutions", "fourier_exponents"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if not self.gamma_min < self.gamma_max:
            raise ValueError(
                f"need gamma_min < gamma_max, got {self.gamma_min} and {self.gamma_max}"
            )
        positive = ("image_size", "channels", "num_res_blocks", "vocab_size", "schedule_features")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.timesteps < 0:
            raise ValueError(f"timesteps must be >= 0 (0 = continuous), got {self.timesteps}")
        if not self.unet_channels or min(self.unet_channels) < 1:
            raise ValueError(f"unet_channels must be positive, got {self.unet_channels}")
        if self.unet_channels[0] < 4:  # the sinusoidal time embedding has that many features
            raise ValueError(f"unet_channels must start at >= 4 (the time embedding's width), "
                             f"got {self.unet_channels}")
        factor = 2 ** (len(self.unet_channels) - 1)
        if self.image_size % factor:
            raise ValueError(
                f"image_size must be divisible by {factor} for {len(self.unet_channels)} "
                f"U-Net levels (unet_channels {self.unet_channels}), got {self.image_size}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, S, S)``."""
        return (self.channels, self.image_size, self.image_size)

    def differences(self, other: VDMConfig, ignore: tuple[str, ...] = ()) -> list[str]:
        """Names of the settings (outside ``ignore``) in which ``other`` differs."""
        return [f.name for f in dataclasses.fields(self)
                if f.name not in ignore and getattr(self, f.name) != getattr(other, f.name)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        items = dataclasses.asdict(self).items()
        return {k: list(v) if isinstance(v, tuple) else v for k, v in items}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VDMConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown VDMConfig fields {unknown}; known: {sorted(known)}")
        return cls(**data)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> VDMConfig:
        """Named size: ``"default"`` (CPU, 3.9 M params), ``"large"`` (GPU, 27 M), ``"tiny"``."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
        return dataclasses.replace(cls(**PRESETS[name]), **overrides)


#: Named model sizes for :meth:`VDMConfig.preset`.
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "large": {
        "unet_channels": (64, 128, 256, 256),
        "num_res_blocks": 2,
        "attn_resolutions": (32, 16),
        "dropout": 0.1,
    },
    "tiny": {
        "image_size": 16,
        "unet_channels": (8, 16),
        "num_res_blocks": 1,
        "attn_resolutions": (8,),
        "schedule_features": 16,
    },
}
