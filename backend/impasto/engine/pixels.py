"""Editor pixel buffers <-> network tensors, exactly.

Editors hand us interleaved buffers: channel order RGBA/BGRA/RGB/BGR, depth u8/u16/f16/f32, values
sRGB-encoded or linear (Krita's float layers are linear). The networks work on sRGB values in 0-255,
so `to_network` decodes to a float32 (1, 3, H, W) tensor plus the alpha plane untouched, and
`from_network` encodes back to the input's own format. Integer round trips are exact (u16 maps to
0-255 by /257, which is invertible)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from impasto.errors import InvalidArgument, ResourceExhausted

if TYPE_CHECKING:  # torch only where tensors are made: reading files and the CLI's front door stay light
    import torch

_DEPTHS: dict[str, np.dtype] = {
    "U8": np.dtype(np.uint8),
    "U16": np.dtype("<u2"),
    "F16": np.dtype("<f2"),
    "F32": np.dtype("<f4"),
}
_ORDERS = ("RGBA", "BGRA", "RGB", "BGR")


@dataclass(frozen=True)
class PixelFormat:
    """An interleaved pixel layout, named on the wire like `RGBA_U8`, `BGRA_U16`, `RGBA_F32_LINEAR`."""

    order: str = "RGBA"
    depth: str = "U8"
    linear: bool = False

    def __post_init__(self) -> None:
        if self.order not in _ORDERS:
            raise InvalidArgument(f"unknown channel order {self.order!r}; expected one of {', '.join(_ORDERS)}")
        if self.depth not in _DEPTHS:
            raise InvalidArgument(f"unknown depth {self.depth!r}; expected one of {', '.join(_DEPTHS)}")

    @classmethod
    def parse(cls, name: str) -> PixelFormat:
        parts = name.strip().upper().split("_")
        linear = parts[-1] == "LINEAR"
        if linear:
            parts = parts[:-1]
        if len(parts) != 2 or parts[0] not in _ORDERS or parts[1] not in _DEPTHS:
            raise InvalidArgument(
                f"unknown pixel format {name!r}",
                hint="use ORDER_DEPTH[_LINEAR] with ORDER in RGBA, BGRA, RGB, BGR and DEPTH in U8, U16, F16, F32",
            )
        return cls(parts[0], parts[1], linear)

    @property
    def name(self) -> str:
        return f"{self.order}_{self.depth}" + ("_LINEAR" if self.linear else "")

    @property
    def channels(self) -> int:
        return len(self.order)

    @property
    def has_alpha(self) -> bool:
        return self.order.endswith("A")

    @property
    def dtype(self) -> np.dtype:
        return _DEPTHS[self.depth]

    @property
    def bytes_per_channel(self) -> int:
        return self.dtype.itemsize

    @property
    def is_float(self) -> bool:
        return self.depth.startswith("F")

    def buffer_size(self, width: int, height: int) -> int:
        return width * height * self.channels * self.bytes_per_channel


@dataclass
class PixelBuffer:
    """An image in an editor's layout: `array` is (H, W, C) in the format's dtype."""

    array: np.ndarray
    format: PixelFormat

    @property
    def width(self) -> int:
        return int(self.array.shape[1])

    @property
    def height(self) -> int:
        return int(self.array.shape[0])

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, width: int, height: int, fmt: PixelFormat) -> PixelBuffer:
        if width <= 0 or height <= 0:
            raise InvalidArgument(f"image size must be positive, got {width}x{height}")
        expected = fmt.buffer_size(width, height)
        if len(data) != expected:
            raise InvalidArgument(
                f"pixel buffer has {len(data)} bytes but {width}x{height} {fmt.name} needs {expected} "
                f"({width} x {height} x {fmt.channels} channels x {fmt.bytes_per_channel} bytes)"
            )
        arr = np.frombuffer(data, dtype=fmt.dtype).reshape(height, width, fmt.channels)
        return cls(arr, fmt)

    @classmethod
    def from_array(cls, array: np.ndarray, *, order: str | None = None, linear: bool = False) -> PixelBuffer:
        """Wrap a (H, W, C) or (H, W) numpy array; the depth is taken from its dtype."""
        if array.ndim == 2:
            array = array[:, :, None]
        if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
            raise InvalidArgument(f"expected an (H, W, 3|4) image array, got shape {array.shape}")
        if array.shape[2] == 1:
            array = np.repeat(array, 3, axis=2)
        depth = {np.dtype(np.uint8): "U8", np.dtype(np.uint16): "U16", np.dtype(np.float16): "F16",
                 np.dtype(np.float32): "F32"}.get(array.dtype)
        if depth is None:
            raise InvalidArgument(f"unsupported array dtype {array.dtype}; use uint8, uint16, float16 or float32")
        order = order or ("RGBA" if array.shape[2] == 4 else "RGB")
        fmt = PixelFormat(order, depth, linear)
        if fmt.channels != array.shape[2]:
            raise InvalidArgument(f"order {order} needs {fmt.channels} channels, the array has {array.shape[2]}")
        return cls(np.ascontiguousarray(array.astype(fmt.dtype, copy=False)), fmt)

    def tobytes(self) -> bytes:
        return np.ascontiguousarray(self.array, dtype=self.format.dtype).tobytes()


def _srgb_encode(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def _srgb_decode(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.04045, x / 12.92, np.power((x + 0.055) / 1.055, 2.4))


def _rgb_index(order: str) -> list[int]:
    return [order.index(c) for c in "RGB"]


# The conversions run in bands of rows: at 8192x8192 a whole-image float32 temporary is 805 MB, and each step of
# a conversion made one (issue 13: an 8192x8192 stylize within 3 GB). Every element sees the same operations.
BAND_ROWS = 256


def decode_rgb(pixels: np.ndarray, fmt: PixelFormat) -> np.ndarray:
    """(rows, columns, 3) float32 sRGB 0-255 of part of a buffer's array in `fmt` (any rows and columns)."""
    rgb = pixels[:, :, _rgb_index(fmt.order)]
    if fmt.depth == "U8":
        return rgb.astype(np.float32)
    if fmt.depth == "U16":
        return rgb.astype(np.float32) / np.float32(257.0)
    f = rgb.astype(np.float32)
    if fmt.linear:
        f = _srgb_encode(f)
    return np.clip(np.nan_to_num(f, nan=0.0), 0.0, 1.0).astype(np.float32) * np.float32(255.0)


def encode_rgb(val: np.ndarray, fmt: PixelFormat) -> np.ndarray:
    """(rows, columns, 3) sRGB 0-255 values in `fmt`'s dtype (clamped; integers rounded to nearest)."""
    val = np.clip(val, 0.0, 255.0)
    if fmt.depth == "U8":
        return np.rint(val).astype(np.uint8)
    if fmt.depth == "U16":
        return np.rint(val * np.float32(257.0)).astype(np.uint16)
    f = val / np.float32(255.0)
    if fmt.linear:
        f = _srgb_decode(f)
    return f.astype(fmt.dtype)


def to_network(buf: PixelBuffer) -> tuple[torch.Tensor, np.ndarray | None]:
    import torch

    """(1, 3, H, W) float32 sRGB 0-255, and the alpha plane (H, W) in the buffer's own dtype (or None)."""
    h, w = buf.array.shape[:2]
    tensor = torch.empty((1, 3, h, w), dtype=torch.float32)
    dst = tensor[0].numpy()
    for r0 in range(0, h, BAND_ROWS):
        dst[:, r0 : r0 + BAND_ROWS] = decode_rgb(buf.array[r0 : r0 + BAND_ROWS], buf.format).transpose(2, 0, 1)
    return tensor, alpha_of(buf)


def alpha_of(buf: PixelBuffer) -> np.ndarray | None:
    """The alpha plane (H, W), copied, in the buffer's own dtype; None without one."""
    return buf.array[:, :, buf.format.order.index("A")].copy() if buf.format.has_alpha else None


def new_buffer(h: int, w: int, alpha: np.ndarray | None, fmt: PixelFormat) -> PixelBuffer:
    """An (h, w) buffer in `fmt` with its alpha (opaque without one) in place, for `put_rgb` to fill."""
    result = np.empty((h, w, fmt.channels), dtype=fmt.dtype)
    if fmt.has_alpha:
        if alpha is None:
            alpha = np.full((h, w), 1.0 if fmt.is_float else np.iinfo(fmt.dtype).max, dtype=fmt.dtype)
        if alpha.shape != (h, w):
            raise ValueError(f"alpha plane {alpha.shape} does not match the image {(h, w)}")
        result[:, :, fmt.order.index("A")] = alpha
    return PixelBuffer(result, fmt)


def put_rgb(buf: PixelBuffer, r0: int, rgb: torch.Tensor) -> None:
    """Write a (1, 3, rows, W) sRGB 0-255 tensor into `buf` from row r0, encoded in the buffer's format."""
    import torch

    val = rgb.detach().to("cpu", torch.float32)[0].permute(1, 2, 0).numpy()
    buf.array[r0 : r0 + val.shape[0], :, _rgb_index(buf.format.order)] = encode_rgb(val, buf.format)


def from_network(rgb: torch.Tensor, alpha: np.ndarray | None, fmt: PixelFormat) -> PixelBuffer:
    """Encode a (1, 3, H, W) sRGB 0-255 tensor (plus an alpha plane of the same size) in `fmt`."""
    h, w = rgb.shape[2:]
    result = new_buffer(h, w, alpha, fmt)
    for r0 in range(0, h, BAND_ROWS):
        put_rgb(result, r0, rgb[:, :, r0 : r0 + BAND_ROWS])
    return result


def resize_alpha(alpha: np.ndarray, height: int, width: int) -> np.ndarray:
    """Upscale an alpha plane on its own (bicubic, clamped), keeping its dtype."""
    import torch

    dtype = alpha.dtype
    a = torch.from_numpy(alpha.astype(np.float32))[None, None]
    r = torch.nn.functional.interpolate(a, size=(height, width), mode="bicubic", align_corners=False)[0, 0]
    out = r.numpy()
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(dtype)
    return np.clip(out, 0.0, 1.0).astype(dtype)


def check_pixel_limit(width: int, height: int, max_pixels: int | None, what: str = "the image") -> None:
    """Refuse `what` (an image, a file, an upscaled result) over `max_pixels` (None: no limit): one wording for the
    engine's size checks and the file reader's header check."""
    if max_pixels is not None and width * height > max_pixels:
        raise ResourceExhausted(
            f"{what} is {width}x{height} = {width * height:,} pixels, over the limit of {max_pixels:,}",
            hint="raise the limit with --max-pixels, or work on a smaller image",
        )
