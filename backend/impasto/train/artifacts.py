"""Measures of two artifacts feed-forward style networks leave (`impasto eval style`), in grey levels (0-255).

* **4-pixel grid.** Two stride-2 upsampling layers make a texture that repeats every 4 pixels, seen as a fine mesh
  or dotting in flat areas. Measure: the detail layer (the image's grey values minus a Gaussian-blurred copy,
  σ = 2 px, which keeps 99% of a period-4 pattern and removes shading) averaged separately at each of the 16
  positions (y mod 4, x mod 4), away from a 16 px border; the spread (max - min) of those 16 means. A photo's
  texture has no fixed phase, so its means agree (well under 2 levels); a grid the network adds at a fixed phase
  moves them apart by its amplitude.
* **Local grid.** The spread above is of means over the whole image, so a grid whose sign or phase changes
  with the content (one way in the light areas, the other in the dark) can cancel in it and stay visible.
  Measure: the same phase means in each 16 x 16 block (16 pixels per phase), their variance less what the
  block's own texture at no fixed phase gives it (15/16 of the within-phase variance / 16), clamped at 0;
  the square root of its mean over the blocks: the RMS amplitude, in grey levels, of a period-4 pattern
  however it varies from block to block (a photo: about 0.5).
* **Edge band.** Zero padding lets a network treat the image border differently: a dark or light frame, or marks
  along one side. Measure, per edge (top, bottom, left, right): the mean of the outer 3 rows (columns) minus the
  mean of the rows (columns) 8 to 15 in from that edge (0 = the outermost). Compare the stylized image with its
  photo: the photo's own value is the gradient that was there already.
"""

from __future__ import annotations

import numpy as np

EDGES = ("top", "bottom", "left", "right")


def _grey(img: np.ndarray) -> np.ndarray:
    """(H, W) float64 grey levels: the channel mean of (H, W, C), or (H, W) as is."""
    x = np.asarray(img, dtype=np.float64)
    return x.mean(-1) if x.ndim == 3 else x


def gaussian_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of a 2-D array (kernel radius 3σ), mirrored at the borders."""
    r = max(1, int(np.ceil(3 * sigma)))
    t = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-(t**2) / (2 * sigma**2))
    k /= k.sum()
    pad = np.pad(x, r, mode="reflect")
    rows = sum(k[i] * pad[:, i : i + x.shape[1]] for i in range(2 * r + 1))
    return sum(k[i] * rows[i : i + x.shape[0], :] for i in range(2 * r + 1))  # type: ignore[return-value]


def detail_layer(img: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    g = _grey(img)
    return g - gaussian_blur(g, sigma)


def grid_means(img: np.ndarray, period: int = 4, margin: int = 16, sigma: float = 2.0) -> np.ndarray:
    """(period, period) mean detail at each (y mod period, x mod period), phases counted from the image origin."""
    if margin % period:
        raise ValueError("the margin must be a multiple of the period, so the phases stay those of the image")
    d = detail_layer(img, sigma)
    if margin:
        d = d[margin:-margin, margin:-margin]
    if min(d.shape) < 2 * period:
        raise ValueError(f"image too small for the grid measure ({img.shape[:2]}, margin {margin})")
    return np.array([[d[i::period, j::period].mean() for j in range(period)] for i in range(period)])


def grid_spread(img: np.ndarray, period: int = 4, margin: int = 16, sigma: float = 2.0) -> float:
    """The 4-pixel grid measure: max - min of :func:`grid_means`, in grey levels."""
    m = grid_means(img, period, margin, sigma)
    return float(m.max() - m.min())


def local_grid(img: np.ndarray, block: int = 16, period: int = 4, margin: int = 16, sigma: float = 2.0) -> float:
    """The local grid measure (module docstring): RMS period-`period` pattern over `block`-pixel blocks."""
    if block % period or margin % period:
        raise ValueError("the block and margin must be multiples of the period")
    d = detail_layer(img, sigma)
    if margin:
        d = d[margin:-margin, margin:-margin]
    h, w, c = d.shape[0] // block * block, d.shape[1] // block * block, block // period
    if not h or not w:
        raise ValueError(f"image too small for the local grid measure ({img.shape[:2]}, margin {margin})")
    t = d[:h, :w].reshape(h // block, c, period, w // block, c, period)  # block y, cell y, phase y, ... x
    between = t.mean(axis=(1, 4)).var(axis=(1, 3))  # per block: variance of its period x period phase means
    within = t.var(axis=(1, 4), ddof=1).mean(axis=(1, 3))  # per block: the texture's variance at one phase
    excess = between - (1 - 1 / period**2) * within / c**2  # what a pattern at no fixed phase leaves
    return float(np.sqrt(np.maximum(excess, 0.0).mean()))


def edge_bands(img: np.ndarray, outer: int = 3, inner: tuple[int, int] = (8, 16)) -> dict[str, float]:
    """Per edge: mean of the outer `outer` rows/columns minus mean of rows/columns inner[0] .. inner[1]-1 in."""
    g = _grey(img)
    a, b = inner
    if min(g.shape) < 2 * b:
        raise ValueError(f"image too small for the edge measure ({g.shape})")
    views = {"top": g, "bottom": g[::-1], "left": g.T, "right": g.T[::-1]}  # edge first along axis 0
    return {e: float(v[:outer].mean() - v[a:b].mean()) for e, v in views.items()}


def artifact_measures(img: np.ndarray) -> dict[str, float]:
    """The measures of one image: {"grid": spread, "local": local grid, "top": band, "bottom": ..., ...}."""
    return {"grid": grid_spread(img), "local": local_grid(img), **edge_bands(img)}


def summarize(rows: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Mean over photos of {photo: {"output": measures, "photo": measures}} -> {"output": ..., "photo": ...}."""
    out: dict[str, dict[str, float]] = {}
    for side in ("output", "photo"):
        keys = next(iter(rows.values()))[side].keys()
        out[side] = {k: float(np.mean([r[side][k] for r in rows.values()])) for k in keys}
    return out


def format_table(title: str, rows: dict[str, dict[str, dict[str, float]]]) -> str:
    """A text table: one row per photo and the mean; each cell 'stylized (photo)'."""
    cols = ("grid", "local", *EDGES)
    lines = [title, f"{'photo':16s}" + "".join(f"{c:>18s}" for c in cols)]
    for name, r in [*rows.items(), ("mean", summarize(rows))]:
        lines.append(f"{name:16s}" + "".join(f"{r['output'][c]:9.2f} ({r['photo'][c]:6.2f})" for c in cols))
    return "\n".join(lines)
