from __future__ import annotations

import numpy as np
import pytest
from impasto.engine.pixels import PixelBuffer, PixelFormat, from_network, resize_alpha, to_network
from impasto.errors import InvalidArgument

ORDERS = ["RGBA", "BGRA", "RGB", "BGR"]


def _random(fmt: PixelFormat, h: int = 7, w: int = 5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if fmt.is_float:
        return rng.random((h, w, fmt.channels)).astype(fmt.dtype)
    return rng.integers(0, np.iinfo(fmt.dtype).max + 1, (h, w, fmt.channels)).astype(fmt.dtype)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("depth", ["U8", "U16"])
def test_integer_round_trip_is_exact(order: str, depth: str) -> None:
    fmt = PixelFormat(order, depth)
    arr = _random(fmt)
    buf = PixelBuffer.from_bytes(arr.tobytes(), 5, 7, fmt)
    rgb, alpha = to_network(buf)
    assert rgb.shape == (1, 3, 7, 5) and float(rgb.max()) <= 255.0
    back = from_network(rgb, alpha, fmt)
    assert back.tobytes() == arr.tobytes()


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("depth", ["F16", "F32"])
@pytest.mark.parametrize("linear", [False, True])
def test_float_round_trip(order: str, depth: str, linear: bool) -> None:
    fmt = PixelFormat(order, depth, linear)
    arr = _random(fmt)
    back = from_network(*to_network(PixelBuffer(arr, fmt)), fmt).array.astype(np.float32)
    tol = 2e-3 if depth == "F16" else 1e-5
    np.testing.assert_allclose(back, arr.astype(np.float32), atol=tol)
    if fmt.has_alpha:  # alpha passes through untouched, bit for bit
        a = fmt.order.index("A")
        assert (back[:, :, a] == arr[:, :, a].astype(np.float32)).all()


def test_channel_order_is_respected() -> None:
    px = np.array([[[10, 20, 30, 40]]], dtype=np.uint8)  # B=10 G=20 R=30 A=40
    rgb, alpha = to_network(PixelBuffer(px, PixelFormat("BGRA", "U8")))
    assert rgb[0, :, 0, 0].tolist() == [30.0, 20.0, 10.0]
    assert alpha is not None and alpha.tolist() == [[40]]


def test_linear_values_are_encoded_to_srgb() -> None:
    px = np.array([[[0.5, 0.5, 0.5, 1.0]]], dtype=np.float32)
    rgb, _ = to_network(PixelBuffer(px, PixelFormat("RGBA", "F32", linear=True)))
    assert abs(float(rgb[0, 0, 0, 0]) - 0.7354 * 255) < 0.05  # sRGB(0.5 linear) = 0.7354


def test_wrong_buffer_length_names_both_numbers() -> None:
    with pytest.raises(InvalidArgument) as err:
        PixelBuffer.from_bytes(b"\0" * 10, 4, 4, PixelFormat("RGBA", "U16"))
    assert "10" in err.value.message and "128" in err.value.message


@pytest.mark.parametrize("name", ["RGBA_U7", "XYZ_U8", "", "RGBA", "RGBA_U8_SRGB"])
def test_unknown_format(name: str) -> None:
    with pytest.raises(InvalidArgument):
        PixelFormat.parse(name)


def test_format_names_parse_back() -> None:
    for name in ["RGBA_U8", "bgra_u16", "RGBA_F32_LINEAR", "RGB_F16"]:
        assert PixelFormat.parse(name).name == name.upper()


def test_alpha_resize_keeps_dtype_and_range() -> None:
    a = np.array([[0, 65535], [65535, 0]], dtype=np.uint16)
    r = resize_alpha(a, 8, 8)
    assert r.dtype == np.uint16 and r.shape == (8, 8) and r.min() >= 0 and r.max() <= 65535
