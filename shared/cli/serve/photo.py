"""Checks of an uploaded photo before anything decodes it, and the placeholder photo of an
estimate without one.

An upload is accepted when it is at most :data:`MAX_PHOTO_BYTES`, Pillow recognises it as a
JPEG or a PNG from its header, and it declares at most :data:`MAX_PIXELS` pixels (a
decompression bomb is refused before its pixels are decoded). The full decode, which finds
truncated or corrupt files, is the loader's own photo check
(:func:`shared.data.dataset.check_photo`), run on the one-listing dataset as on any other.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

from shared.cli.serve.form import FormError

MAX_PHOTO_BYTES = 10 * 2**20
MAX_PIXELS = 50_000_000
FORMATS = ("JPEG", "PNG")
FIELD = "photo"


def check_upload(data: bytes) -> str:
    """Pillow's format name of the upload (``"JPEG"`` or ``"PNG"``); :class:`FormError` (field
    ``photo``) when it is too large, not a JPEG or PNG image, or declares too many pixels."""
    if len(data) > MAX_PHOTO_BYTES:
        raise FormError(FIELD, f"Photo: {len(data) / 2**20:.1f} MB is over the "
                               f"{MAX_PHOTO_BYTES // 2**20} MB limit")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:  # reads the header only
                fmt, (width, height) = image.format, image.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise FormError(FIELD, f"Photo: declares more than {MAX_PIXELS // 10**6} megapixels "
                               "(a decompression bomb?)") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        raise FormError(FIELD, "Photo: not an image Pillow can read (upload a JPEG or PNG)") from None
    if fmt not in FORMATS:
        raise FormError(FIELD, f"Photo: a {fmt} image; upload a JPEG or PNG")
    if width * height > MAX_PIXELS:
        raise FormError(FIELD, f"Photo: {width} x {height} pixels is over the "
                               f"{MAX_PIXELS // 10**6}-megapixel limit")
    return fmt


def decode_failure(reason: str) -> FormError:
    """The page's message for the loader's drop ``reason`` of the uploaded photo."""
    text = {"photo truncated or corrupt": "the file is truncated or corrupt",
            "photo is not an image": "not an image that can be decoded",
            "photo is empty": "the image has no pixels"}.get(reason, reason)
    return FormError(FIELD, f"Photo: {text}")


def placeholder_jpeg() -> bytes:
    """An 8 x 8 grey JPEG: the photo file of an estimate without a photo, so that the listing is
    read as any other (the loader keeps only listings with a photo); models that use no photo
    never read it, and models that do are not asked without a photo."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (128, 128, 128)).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()
