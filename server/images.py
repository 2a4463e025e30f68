"""Image bytes (PNG, JPEG, WebP) -> the 28x28 model input, following MNIST conventions.

Belongs here: decoding with limits checked before any pixel is decoded, telling ink from
background, dropping specks, cropping, fitting 20x20 with anti-aliasing and a pen width like
server.raster's, centring by mass. Pure (Pillow, scikit-image, numpy); no I/O, no model, no
server. Every fault of the input is an ImageError with a stable code.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image as PILImage
from PIL import ImageChops, UnidentifiedImageError
from skimage.measure import label
from skimage.morphology import dilation, disk, skeletonize

from protocol import Code, ProtocolError
from server.raster import BOX, CANVAS, Image, centre_one

#: Media types accepted, and the Pillow decoder each one may use (nothing else is tried).
MEDIA_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}

_WORK = 64  # the ink is found on a block-averaged copy whose longer side is about this
_FINE = 4  # the crop is fitted at FINE x the final 20x20 box to measure and set the pen width
_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"RIFF")
_DETAIL = 160  # larger images are box-reduced by a whole factor to at most this side first:
# the model sees 20x20, and Pillow's box average is cheap and averages sensor noise away
#: `quick_open`'s limits: a 320x320 picture is prepared in about a millisecond.
QUICK_BYTES, QUICK_PIXELS = 65536, 320 * 320
_INFLATED_AT_OPEN = (b"zTXt", b"iTXt", b"iCCP")  # PNG chunks Pillow inflates in open()
_MIN_CONTRAST = 0.08  # ink must differ from the background by this much (0..1) to be ink
_SPECK = 0.04  # a blob with less than this share of the largest blob's area is noise
#: Pen width of server.raster's output, measured as ink area / skeleton length at the
#: 20-pixel box scale (see tests/test_images.py, which checks it against rasterize).
PEN_WIDTH = 2.75


class ImageError(ProtocolError):
    """An image the server cannot read or finds no digit in."""


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """What one image may cost: checked on the header, before decoding."""

    max_pixels: int = 16_000_000


def preprocess(data: bytes, limits: ImageLimits = ImageLimits()) -> Image:
    """Decode an image and turn it into a 28x28 float32 model input in [0, 1] (1 = ink).

    Raises ImageError: not an image or not PNG/JPEG/WebP (NOT_AN_IMAGE), truncated or
    corrupt (BAD_IMAGE), zero-sized (BAD_IMAGE), more than `limits.max_pixels` pixels
    (IMAGE_TOO_BIG), or no ink: all one colour (NO_INK).
    """
    return prepare(open_image(data, limits))


def prepare(picture: PILImage.Image) -> Image:
    """`preprocess` for a picture from `open_image` (its header read, no pixel decoded)."""
    return fit(find_ink(ink_map(decode(picture))))


def quick_open(data: bytes, limits: ImageLimits = ImageLimits()) -> PILImage.Image | None:
    """`open_image` when preparing the picture is about a millisecond of work, else None:
    a body of at most QUICK_BYTES with no chunk that Pillow inflates while reading the
    header (compressed text, an ICC profile: a small body could hide megabytes there),
    and at most QUICK_PIXELS pixels. Raises ImageError as `open_image` does."""
    if len(data) > QUICK_BYTES or any(name in data for name in _INFLATED_AT_OPEN):
        return None
    picture = open_image(data, limits)
    width, height = picture.size
    return picture if width * height <= QUICK_PIXELS else None


# ---- decoding ---------------------------------------------------------------------------


def open_image(data: bytes, limits: ImageLimits = ImageLimits()) -> PILImage.Image:
    """The picture with only its header read: its size is known and within `limits`, and
    no pixel is decoded yet (so a caller can choose where to decode it by its size)."""
    if not data:
        raise ImageError(Code.BAD_IMAGE, "the image is empty (zero bytes)")
    return _open(data, limits)


def decode(picture: PILImage.Image) -> PILImage.Image:
    """The decoded picture in mode "L" (grey) or "RGB"; transparency is flattened onto a
    background that contrasts with the opaque pixels, 16-bit grey scaled to 8 bits."""
    if picture.format == "JPEG":  # let the decoder scale by 1/2, 1/4 or 1/8 on the way
        width, height = picture.size
        factor = max(1, max(width, height) // _DETAIL)
        picture.draft(None, (max(1, width // factor), max(1, height // factor)))
    try:
        picture.load()
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageError(Code.BAD_IMAGE, f"the image is truncated or corrupt ({exc})") from None
    picture = _plain(picture)
    factor = -(-max(picture.size) // _DETAIL)
    return picture.reduce(factor) if factor > 1 else picture


def _open(data: bytes, limits: ImageLimits) -> PILImage.Image:
    """Read the header only; refuse anything too big before a pixel is decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            picture = PILImage.open(io.BytesIO(data), formats=tuple(MEDIA_TYPES.values()))
    except (PILImage.DecompressionBombWarning, PILImage.DecompressionBombError):
        raise ImageError(Code.IMAGE_TOO_BIG, _too_big(None, limits)) from None
    except UnidentifiedImageError:
        if data.startswith(_SIGNATURES) or data[8:12] == b"WEBP":  # ours, but unreadable
            raise ImageError(Code.BAD_IMAGE, "the image is corrupt or zero-sized") from None
        raise ImageError(Code.NOT_AN_IMAGE, "not a PNG, JPEG or WebP image") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageError(Code.BAD_IMAGE, f"the image is truncated or corrupt ({exc})") from None
    width, height = picture.size
    if width <= 0 or height <= 0:
        raise ImageError(Code.BAD_IMAGE, f"the image is zero-sized ({width}x{height})")
    if width * height > limits.max_pixels:
        raise ImageError(Code.IMAGE_TOO_BIG, _too_big(picture.size, limits))
    return picture


def _too_big(size: tuple[int, int] | None, limits: ImageLimits) -> str:
    given = "" if size is None else f"{size[0]}x{size[1]} = {size[0] * size[1]} pixels; "
    return f"the image is too large ({given}at most {limits.max_pixels} pixels)"


def _plain(picture: PILImage.Image) -> PILImage.Image:
    mode = picture.mode
    if mode.startswith(("I", "F")):  # 16/32-bit grey
        grey = np.asarray(picture, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") else max(float(grey.max()), 1.0)
        return PILImage.fromarray(np.rint(np.clip(grey / top, 0, 1) * 255).astype(np.uint8))
    if mode in ("L", "RGB"):
        return picture
    if mode == "1":
        return picture.convert("L")
    if not (mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in picture.info):
        return picture.convert("RGB")
    rgba = picture.convert("RGBA")
    pixels = np.asarray(rgba, dtype=np.float64)
    opacity = pixels[..., 3].sum()
    mean = (pixels[..., :3].mean(axis=2) * pixels[..., 3]).sum() / opacity if opacity else 0.0
    behind = (255, 255, 255, 255) if mean < 127.5 else (0, 0, 0, 255)  # dark ink: on white
    return PILImage.alpha_composite(PILImage.new("RGBA", rgba.size, behind), rgba).convert("RGB")


# ---- ink --------------------------------------------------------------------------------


def ink_map(picture: PILImage.Image) -> PILImage.Image:
    """How far each pixel is from the background colour (mode "L", 255 = farthest): the
    largest difference over the colour channels. The background is the median colour of
    the border, so dark ink on light paper, light ink on dark, and colour ink on any plain
    background all come out the same way."""
    background = _median(_border(np.asarray(picture)).astype(np.float64)).round().astype(int)
    if picture.mode == "L":
        return ImageChops.difference(picture, PILImage.new("L", picture.size, int(background)))
    plain = PILImage.new("RGB", picture.size, tuple(int(v) for v in background))
    red, green, blue = ImageChops.difference(picture, plain).split()
    return ImageChops.lighter(ImageChops.lighter(red, green), blue)


def find_ink(ink: PILImage.Image) -> npt.NDArray[np.float32]:
    """The digit cropped to its bounding box, in [0, 1] (1 = full ink), with the noise
    floor subtracted and specks and background noise outside the digit set to zero.
    Raises ImageError(NO_INK) when nothing stands out from the background."""
    k = max(1, max(ink.size) // _WORK)
    coarse = _unit(np.asarray(ink.reduce(k) if k > 1 else ink))
    floor = _noise_floor(_border(coarse))
    peak = float(coarse.max())
    if peak - floor < _MIN_CONTRAST / k:
        raise ImageError(Code.NO_INK, "no ink: the image is all one colour")
    keep = _grown(_digit_blobs(coarse > floor + 0.25 * (peak - floor)))
    top, bottom, left, right = _bounds(keep)
    fine = np.asarray(ink)
    crop = _unit(fine[top * k : bottom * k, left * k : right * k])
    # the coarse map's last row and column may stand for fewer than k fine ones
    crop *= keep[top:bottom, left:right].repeat(k, 0).repeat(k, 1)[: len(crop), : crop.shape[1]]
    fine_floor = _noise_floor(_border(fine) / 255.0)
    strong = crop[crop > fine_floor + 0.5 * (float(crop.max()) - fine_floor)]
    full = _upper_quartile(strong)
    scaled = (crop - fine_floor) * np.float32(1.0 / max(full - fine_floor, 1e-6))
    return _tight(np.clip(scaled, 0.0, 1.0, out=scaled))


# The helpers below compute what numpy's median, percentile and isin would, without their
# per-call overhead: the arrays here are small (a border of a few hundred pixels, a map of
# at most 64x64), so that overhead was most of find_ink's time.


def _unit(pixels: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    return pixels.astype(np.float32) * np.float32(1.0 / 255.0)


def _border(values: npt.NDArray[Any]) -> npt.NDArray[Any]:
    return np.concatenate([values[0], values[-1], values[1:-1, 0], values[1:-1, -1]])


def _median(values: npt.NDArray[Any]) -> Any:
    """np.median of a 1-D array (or of each column of a 2-D one), in its dtype."""
    ordered = np.sort(values, axis=0)
    half = len(ordered) // 2
    return ordered[half] if len(ordered) % 2 else (ordered[half - 1] + ordered[half]) / 2


def _noise_floor(border: npt.NDArray[Any]) -> float:
    """Background level plus four robust standard deviations of the border's noise."""
    level = float(_median(border))
    spread = 1.4826 * float(_median(np.abs(border - level)))
    return level + 4.0 * spread


def _upper_quartile(values: npt.NDArray[np.float32]) -> float:
    """np.percentile(values, 75) (linear interpolation) of a non-empty 1-D array."""
    ordered = np.sort(values)
    at = 0.75 * (len(ordered) - 1)
    below = int(at)
    low, high = float(ordered[below]), float(ordered[min(below + 1, len(ordered) - 1)])
    return low + (high - low) * (at - below)


def _bounds(values: npt.NDArray[Any]) -> tuple[int, int, int, int]:
    """Top, bottom, left, right (one past the last) of the nonzero values (there are some)."""
    rows, cols = np.flatnonzero(values.any(axis=1)), np.flatnonzero(values.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _grown(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """The mask grown by one pixel in all eight directions."""
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    wide = out.copy()
    out[:, 1:] |= wide[:, :-1]
    out[:, :-1] |= wide[:, 1:]
    return out


def _digit_blobs(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """The mask without specks: blobs far smaller than the largest one."""
    labels, count = label(mask, connectivity=2, return_num=True)  # type: ignore[no-untyped-call]
    if count <= 1:
        return mask
    areas = np.bincount(labels.ravel())
    areas[0] = 0  # the background
    kept: npt.NDArray[np.bool_] = areas >= _SPECK * areas.max()
    blobs: npt.NDArray[np.bool_] = kept[labels]
    return blobs


def _tight(values: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    top, bottom, left, right = _bounds(values)
    return values[top:bottom, left:right]


# ---- fitting ----------------------------------------------------------------------------


def fit(crop: npt.NDArray[np.float32]) -> Image:
    """The cropped ink scaled to fit BOX x BOX keeping its aspect ratio (anti-aliased), its
    pen width brought to server.raster's, centred by mass in 28x28."""
    fine = _scaled(crop, _FINE * BOX)
    fine = _tight(_with_pen_width(fine))
    small = _scaled(fine, BOX)
    canvas = np.zeros((CANVAS, CANVAS), dtype=np.float32)
    h, w = small.shape
    top, left = (CANVAS - h) // 2, (CANVAS - w) // 2
    canvas[top : top + h, left : left + w] = small / max(float(small.max()), 1e-6)
    return centre_one(canvas)


def _scaled(values: npt.NDArray[np.float32], side: float) -> npt.NDArray[np.float32]:
    """Resize so that the longer side is `side` pixels (at least 1 pixel each way). Pillow's
    bilinear filter widens with the reduction, so shrinking is anti-aliased (an area
    average); it is several times faster here than skimage.transform.resize."""
    h, w = values.shape
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    picture = PILImage.frombuffer("F", (w, h), np.ascontiguousarray(values), "raw", "F", 0, 1)
    return np.asarray(picture.resize(size, PILImage.Resampling.BILINEAR), dtype=np.float32)


def stroke_width(values: npt.NDArray[np.float32]) -> float:
    """Mean pen width of the ink, in pixels: ink area over skeleton length."""
    bones = int(skeletonize(values > 0.5).sum())  # type: ignore[no-untyped-call]
    return float(values.sum()) / max(bones, 1)


def _with_pen_width(fine: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Thicken thin strokes to the raster pen's width (a grey dilation with a disk)."""
    width = stroke_width(fine)
    if width > 0.75 * _FINE * PEN_WIDTH:  # within the spread of the raster's own widths
        return fine
    radius = max(1, round((_FINE * PEN_WIDTH - width) / 2.0))
    padded = np.pad(fine, radius)
    pen = disk(radius)  # type: ignore[no-untyped-call]
    return np.asarray(dilation(padded, pen), dtype=np.float32)
