"""The frozen description of one integration, shared by both engines."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class IntegrationSpec:
    """Everything an engine needs to integrate a block of frames, validated once by
    :func:`xrdflow.integrate` (see its parameters). Hashable and cheap to ship in a graph."""

    npt: int
    unit: str
    radial_range: tuple[float, float] | None
    method: tuple[str, str, str]
    polarization_factor: float | None
    correct_solid_angle: bool
    mask_negative: bool
    error_model: str | None
    engine: str  #: "xrdflow" (fused) or "pyfai": never "auto" once resolved
    #: key of this integration's matrix in the per-process cache (fused engine only)
    engine_key: Any = None

    def replace(self, **changes) -> "IntegrationSpec":
        return replace(self, **changes)

    def pyfai_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of pyFAI's ``integrate1d`` that the spec fixes."""
        return dict(unit=self.unit, method=self.method, correctSolidAngle=self.correct_solid_angle,
                    polarization_factor=self.polarization_factor)
