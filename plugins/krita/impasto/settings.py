"""The plugin's settings, kept in Krita's config (kritarc, group "impasto") through two callables so this
module needs no Krita."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace

from impasto_common import DEFAULT_ADDRESS, DEFAULT_FACTOR, FACTORS, REFINE, SCALE, STRENGTH

GROUP = "impasto"

Read = Callable[[str, str, str], str]  # (group, name, default) -> value
Write = Callable[[str, str, str], None]


@dataclass(frozen=True)
class StyleOptions:
    style: str = ""
    strength: float = STRENGTH.default
    preserve_colors: bool = False
    refine: int = REFINE.default
    scale: float = SCALE.default  # processing scale; the docker shows its inverse as "brush size"


@dataclass(frozen=True)
class Settings:
    address: str = DEFAULT_ADDRESS
    token: str = ""
    interpreter: str = ""  # the Python with `impasto` installed, for the Start button
    setup_python: str = ""  # the system Python that makes the backend's environment ("" = look for one)
    install_source: str = ""  # where "Install backend" gets Impasto: "" = the package index, or a wheel/folder
    style: str = ""
    strength: float = STRENGTH.default
    preserve_colors: bool = False
    refine: int = REFINE.default
    upscale: int = DEFAULT_FACTOR
    last_style: str = ""  # what "Apply last Impasto style again" repeats; empty until a style ran
    scale: float = SCALE.default
    from_source: bool = True  # Apply on an Impasto result stylizes the layer it was made from
    live_preview: bool = True

    @property
    def options(self) -> StyleOptions:
        return StyleOptions(self.style, self.strength, self.preserve_colors, self.refine, self.scale)

    def with_options(self, options: StyleOptions) -> Settings:
        return replace(self, style=options.style, strength=options.strength,
                       preserve_colors=options.preserve_colors, refine=options.refine, scale=options.scale)

    @classmethod
    def load(cls, read: Read) -> Settings:
        values: dict[str, object] = {}
        for f in fields(cls):
            default = getattr(cls(), f.name)
            raw = read(GROUP, f.name, str(default))
            try:
                if isinstance(default, bool):
                    values[f.name] = raw.strip().lower() in ("1", "true", "yes")
                elif isinstance(default, int):
                    values[f.name] = int(raw)
                elif isinstance(default, float):
                    values[f.name] = float(raw)
                else:
                    values[f.name] = raw
            except ValueError:  # a hand-edited kritarc should not stop the plugin loading
                values[f.name] = default
        for name, limits in _RANGES.items():  # nor send the backend values it refuses
            values[name] = limits.clamp(values[name])  # type: ignore[arg-type]
        if values.get("upscale") not in FACTORS:
            values["upscale"] = DEFAULT_FACTOR
        return cls(**values)  # type: ignore[arg-type]

    def save(self, write: Write) -> None:
        for name, value in asdict(self).items():
            write(GROUP, name, str(value))


_RANGES = {"strength": STRENGTH, "refine": REFINE, "scale": SCALE}
