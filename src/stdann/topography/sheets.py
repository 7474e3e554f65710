"""Cortical-sheet presets: the side of each block's square sheet and its neighborhood width.

Default values follow the papers (as summarised from Margalit et al. 2024, "A unifying framework
for functional organization in early and higher ventral visual cortex", Neuron — the TDANN paper —
and its video extension):

==================  ============  ==========  ==================
block(s)            model area    sheet side  neighborhood width
==================  ============  ==========  ==================
layer1.0, layer1.1  retina-like   2.4 mm      0.0475 mm
layer2.0, layer2.1  V1            34.4 mm     2.7 mm
layer3.0            V2            30.7 mm     4.2 mm
layer3.1            MT            7.07 mm     2.1 mm
layer4.0, layer4.1  LIP/MST       7.48 mm     2.7 mm
==================  ============  ==========  ==================

The millimetre values do not change with the model width or the clip size: a smaller network puts
fewer units on the same sheet. When that leaves too few units in a neighborhood window, the
position initialisation (:func:`stdann.topography.init.init_positions`) widens the window and
records the width it really used in the positions file.

Overrides come from ``TopographyConfig.sheets`` (``{block: {sheet_side: .., neighborhood_width:
.., area: ..}}``) through :func:`resolve_sheets`.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Any, Mapping

from stdann.models.r3d import BLOCK_NAMES
from stdann.topography.positions import PositionsError


@dataclass(frozen=True)
class SheetSpec:
    """One block's square cortical sheet.

    sheet_side: side of the square sheet in mm (units are placed in [0, side]²).
    neighborhood_width: side in mm of the square windows that define the spatial-loss
        neighborhoods.
    area: the cortical area this block stands for (a label only).
    """

    sheet_side: float
    neighborhood_width: float
    area: str = ""

    def __post_init__(self) -> None:
        for key in ("sheet_side", "neighborhood_width"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 or v != v or v == float("inf"):
                raise PositionsError(f"sheet {key} must be a positive finite number of mm, got {v!r}")
            object.__setattr__(self, key, float(v))

    @property
    def area_mm2(self) -> float:
        return self.sheet_side**2


_DEFAULTS: dict[str, SheetSpec] = {
    "layer1.0": SheetSpec(2.4, 0.0475, "retina-like"),
    "layer1.1": SheetSpec(2.4, 0.0475, "retina-like"),
    "layer2.0": SheetSpec(34.4, 2.7, "V1"),
    "layer2.1": SheetSpec(34.4, 2.7, "V1"),
    "layer3.0": SheetSpec(30.7, 4.2, "V2"),
    "layer3.1": SheetSpec(7.07, 2.1, "MT"),
    "layer4.0": SheetSpec(7.48, 2.7, "LIP/MST"),
    "layer4.1": SheetSpec(7.48, 2.7, "LIP/MST"),
}

_FIELDS = tuple(f.name for f in dataclasses.fields(SheetSpec))


def area_block(area: str) -> str:
    """The block whose default sheet stands for ``area`` (the last of them, a stage's output block)."""
    blocks = [b for b, sheet in _DEFAULTS.items() if sheet.area == area]
    if not blocks:
        raise ValueError(f"no block stands for {area!r}; areas are {sorted({s.area for s in _DEFAULTS.values()})}")
    return blocks[-1]


MT_BLOCK = area_block("MT")  # the block compared with macaque MT


def default_sheets() -> dict[str, SheetSpec]:
    """The default sheet of every block (a fresh dict; SheetSpec itself is immutable)."""
    return dict(_DEFAULTS)


def _flatten_overrides(overrides: Mapping[Any, Any]) -> dict[str, Any]:
    """Accept ``{"layer3.1": {...}}`` and the nested form ``{"layer3": {1: {...}}}`` that a dotted
    ``--set topography.sheets.layer3.1.sheet_side=5`` produces."""
    flat: dict[str, Any] = {}
    for key, value in overrides.items():
        key = str(key)
        if key not in BLOCK_NAMES and isinstance(value, Mapping) and value and all(
            f"{key}.{k}" in BLOCK_NAMES for k in value
        ):
            for sub, v in value.items():
                flat[f"{key}.{sub}"] = v
        else:
            flat[key] = value
    return flat


def resolve_sheets(overrides: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, SheetSpec]:
    """Default sheets with per-block overrides applied.

    ``overrides`` maps a block name to a mapping with any of ``sheet_side``,
    ``neighborhood_width`` (mm) and ``area``. Unknown blocks or fields raise PositionsError with the
    valid names.
    """
    sheets = default_sheets()
    if not overrides:
        return sheets
    if not isinstance(overrides, Mapping):
        raise PositionsError(f"topography.sheets must be a mapping block -> {{sheet_side, neighborhood_width}}, got {overrides!r}")
    for block, change in _flatten_overrides(overrides).items():
        if block not in sheets:
            close = difflib.get_close_matches(block, BLOCK_NAMES, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise PositionsError(f"topography.sheets: unknown block {block!r}.{hint} Blocks are {list(BLOCK_NAMES)}")
        if not isinstance(change, Mapping):
            raise PositionsError(
                f"topography.sheets.{block} must be a mapping like {{sheet_side: 7.0, neighborhood_width: 2.1}}, got {change!r}"
            )
        bad = [k for k in change if k not in _FIELDS]
        if bad:
            raise PositionsError(f"topography.sheets.{block}: unknown field(s) {bad}; valid fields are {list(_FIELDS)}")
        try:
            sheets[block] = dataclasses.replace(sheets[block], **dict(change))
        except PositionsError as e:
            raise PositionsError(f"topography.sheets.{block}: {e}") from None
    return sheets


def sheets_from_config(cfg: Any) -> dict[str, SheetSpec]:
    """Sheets of a ``TopographyConfig`` (or a full ``Config``)."""
    topo = getattr(cfg, "topography", cfg)
    return resolve_sheets(getattr(topo, "sheets", None) or {})
