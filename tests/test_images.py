"""server/images.py with literal and rendered inputs, no server: what the model sees from an
image must look like what server.raster makes from the same strokes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from protocol import Code
from server import images
from server.images import PEN_WIDTH, ImageError, ImageLimits, preprocess, stroke_width
from server.raster import CANVAS, centre_by_mass, centre_one, rasterize
from tests.imagekit import Style, digit_file, encoded, plain_png, png_header_only
from tests.serverkit import bundled_model, unipen_digits


def _centre(image: np.ndarray) -> tuple[float, float]:
    grid = np.arange(28)
    mass = image.sum()
    return float(image.sum(axis=1) @ grid / mass), float(image.sum(axis=0) @ grid / mass)


def _similar(a: np.ndarray, b: np.ndarray) -> bool:
    """Close as 28x28 inputs (refitting a 19-20 px digit into 20x20 moves it by subpixels)
    and read alike by the model."""
    close = np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.85 and np.abs(a - b).mean() < 0.08
    digits = bundled_model().predict_batch(np.stack([a, b]).astype(np.float32)).argmax(1)
    return bool(close and digits[0] == digits[1])


def test_images_look_like_the_rasterized_strokes() -> None:
    """The same UNIPEN strokes drawn as a picture and as ink give close 28x28 inputs: same
    box, centre of mass, pen width and overall ink, and the model reads both alike."""
    digits = unipen_digits()
    pairs = [(rasterize(d.strokes), preprocess(digit_file(d))) for d in digits]
    corr = [np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in pairs]
    assert min(corr) > 0.7 and np.median(corr) > 0.85
    for a, b in pairs:
        assert b.shape == (28, 28) and b.dtype == np.float32
        assert b.min() >= 0.0 and b.max() == pytest.approx(1.0)
        assert 0.65 < b.sum() / a.sum() < 1.3  # a thin-inked digit among these is at 0.70
        assert np.allclose(_centre(a), _centre(b), atol=1.0)  # both cut on whole pixels
        rows, cols = np.nonzero(b > 0.05)
        assert 18 <= max(np.ptp(rows), np.ptp(cols)) + 1 <= 22  # fitted into 20x20
    model = bundled_model()
    raster = model.predict_batch(np.stack([a for a, _ in pairs])).argmax(1)
    pictured = model.predict_batch(np.stack([b for _, b in pairs])).argmax(1)
    assert (raster == pictured).mean() >= 0.95


def test_pen_width_matches_the_rasterizer() -> None:
    """PEN_WIDTH is what stroke_width measures on rasterize output at the 20 px box scale."""
    widths = []
    for d in unipen_digits():
        image = rasterize(d.strokes)
        rows, cols = np.nonzero(image)
        widths.append(stroke_width(image[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]))
    assert np.median(widths) == pytest.approx(PEN_WIDTH, rel=0.2)


@pytest.mark.parametrize(
    "style",
    [
        Style(ink=(255, 255, 255), paper=(0, 0, 0)),  # light on dark
        Style(ink=(200, 0, 0), paper=(250, 245, 230)),  # colour ink
        Style(ink=(255, 200, 0), paper=(20, 20, 60)),  # light colour on dark colour
        Style(size=64, width=0.05),  # small and thin
        Style(size=600, height=0.4, offset=(0.9, -0.9)),  # small digit in a corner
        Style(width=0.025),  # a fine pen: thickened to the raster's width
    ],
)
def test_polarity_colour_size_and_position_do_not_matter(style: Style) -> None:
    digit = unipen_digits()[7]
    reference = preprocess(digit_file(digit))
    styled = preprocess(digit_file(digit, **vars(style) | {"fmt": "PNG"}))
    assert np.corrcoef(reference.ravel(), styled.ravel())[0, 1] > 0.8
    assert bundled_model().predict_batch(styled[None])[0].argmax() == digit.label


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_large_photos(fmt: str) -> None:
    """A 2000x2000 picture (JPEG decodes it at a reduced scale straight away)."""
    digit = unipen_digits()[21]
    small = Image.open(io.BytesIO(digit_file(digit, size=400, height=0.5, noise=0.05)))
    data = encoded(np.asarray(small.resize((2000, 2000), Image.Resampling.BICUBIC)), fmt)
    assert bundled_model().predict_batch(preprocess(data)[None])[0].argmax() == digit.label


def test_noise_and_specks_are_ignored() -> None:
    digit = unipen_digits()[12]
    clean = preprocess(digit_file(digit))
    dirty = preprocess(digit_file(digit, noise=0.1, specks=12))
    assert np.corrcoef(clean.ravel(), dirty.ravel())[0, 1] > 0.8
    assert bundled_model().predict_batch(dirty[None])[0].argmax() == digit.label


def test_mnist_sized_input_is_kept_as_it_is() -> None:
    """A 28x28 MNIST-style digit comes back nearly unchanged, in either polarity."""
    original = rasterize(unipen_digits()[3].strokes)
    pixels = np.rint(original * 255).astype(np.uint8)
    for stored in (pixels, 255 - pixels):
        again = preprocess(encoded(stored))
        assert _similar(again, original)


def test_transparent_canvas_snapshot() -> None:
    """Dark ink on a transparent background (a canvas snapshot) reads as ink on white."""
    ink = np.rint(rasterize(unipen_digits()[5].strokes) * 255).astype(np.uint8)
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., 3] = ink  # black pixels, opacity = ink
    assert _similar(preprocess(encoded(rgba)), ink / 255.0)


def test_sixteen_bit_grey() -> None:
    ink = rasterize(unipen_digits()[9].strokes)
    out = io.BytesIO()
    Image.fromarray(np.rint(ink * 65535).astype(np.uint16)).save(out, "PNG")
    assert _similar(preprocess(out.getvalue()), ink)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", Code.BAD_IMAGE),
        (b"hello, this is text", Code.NOT_AN_IMAGE),
        (b"GIF89a" + bytes(40), Code.NOT_AN_IMAGE),  # a real format, not one we take
        (plain_png(50, 50)[:60], Code.BAD_IMAGE),  # truncated
        (png_header_only(0, 10), Code.BAD_IMAGE),  # zero-sized
        (plain_png(50, 50), Code.NO_INK),  # all one colour
        (plain_png(50, 50, (10, 120, 200)), Code.NO_INK),
        (png_header_only(5000, 5000), Code.IMAGE_TOO_BIG),  # above our limit
        (png_header_only(60000, 60000), Code.IMAGE_TOO_BIG),  # above Pillow's bomb limit
    ],
)
def test_bad_images_raise_a_named_error(data: bytes, code: Code) -> None:
    with pytest.raises(ImageError) as caught:
        preprocess(data, ImageLimits(max_pixels=1_000_000))
    assert caught.value.code is code


def test_the_lean_helpers_compute_what_numpy_and_raster_do() -> None:
    """images.py replaces numpy's median and percentile, and uses raster's one-canvas
    centring, helpers of less overhead: same values, on odd and even sizes and on ties."""
    rng = np.random.default_rng(4)
    for n in (1, 2, 3, 4, 7, 276, 555):
        for values in (rng.random(n), rng.random(n).astype(np.float32), rng.integers(0, 4, n) / 3):
            assert images._median(values) == np.median(values)
            assert images._upper_quartile(values) == pytest.approx(np.percentile(values, 75))
    colours = rng.integers(0, 256, (9, 3)).astype(np.float64)
    assert np.array_equal(images._median(colours), np.median(colours, axis=0))
    for _ in range(50):
        canvas = np.zeros((CANVAS, CANVAS), np.float32)
        top, left = rng.integers(0, CANVAS - 20, 2)
        canvas[top : top + 20, left : left + 20] = rng.random((20, 20)) ** 4
        assert np.array_equal(centre_one(canvas), centre_by_mass(canvas[None])[0])


def test_quick_open_takes_only_pictures_that_are_cheap_to_prepare() -> None:
    """What the HTTP endpoint may prepare on its event loop: small in bytes and pixels, and
    nothing that Pillow inflates while reading the header; the rest goes to a thread."""
    digit = unipen_digits()[2]
    small = digit_file(digit, size=280)
    picture = images.quick_open(small)
    assert picture is not None
    assert np.array_equal(images.prepare(picture), preprocess(small))
    assert images.quick_open(digit_file(digit, size=400)) is None  # 160,000 pixels
    noisy = digit_file(digit, size=300, noise=0.3)
    assert len(noisy) > images.QUICK_BYTES and images.quick_open(noisy) is None
    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "x" * 100_000, zip=True)  # a zTXt chunk: a few hundred bytes
    out = io.BytesIO()
    Image.open(io.BytesIO(small)).save(out, "PNG", pnginfo=info)
    assert len(out.getvalue()) < images.QUICK_BYTES and images.quick_open(out.getvalue()) is None
    with pytest.raises(ImageError) as caught:
        images.quick_open(b"hello, this is text")
    assert caught.value.code is Code.NOT_AN_IMAGE
