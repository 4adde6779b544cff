"""Window presets per modality, read from ``resources/window_presets.toml``."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache

from viewer.io.image import Window
from viewer.resources import resource_path


@dataclass(frozen=True)
class Preset:
    window: Window
    key: int | None = None


@dataclass(frozen=True)
class PresetTable:
    by_modality: dict[str, tuple[Preset, ...]]
    defaults: dict[str, str]
    low_percentile: float
    high_percentile: float

    def presets(self, modality: str) -> tuple[Preset, ...]:
        return self.by_modality.get(modality.upper(), ())

    def default(self, modality: str) -> Window | None:
        name = self.defaults.get(modality.upper())
        for preset in self.presets(modality):
            if preset.window.name == name:
                return preset.window
        return None


@cache
def load_presets() -> PresetTable:
    with resource_path("window_presets.toml").open("rb") as f:
        data = tomllib.load(f)
    by_modality: dict[str, tuple[Preset, ...]] = {}
    defaults: dict[str, str] = {}
    for modality, table in data.get("modality", {}).items():
        by_modality[modality.upper()] = tuple(
            Preset(
                Window(
                    float(p["center"]), float(p["width"]), p.get("function", "LINEAR"), p["name"], "preset"
                ),
                p.get("key"),
            )
            for p in table.get("presets", [])
        )
        if "default" in table:
            defaults[modality.upper()] = table["default"]
    auto = data.get("auto", {})
    return PresetTable(
        by_modality,
        defaults,
        float(auto.get("low_percentile", 0.5)),
        float(auto.get("high_percentile", 99.5)),
    )
