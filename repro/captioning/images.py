"""Reading an image file for a captioner, with one clear error for a file that is not an image."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from repro.errors import UserError


class ImageLoadError(UserError):
    """An image file that is missing, truncated or not an image; the message names the file."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def load_image(path: Path) -> Image.Image:
    """The image as RGB, fully decoded (so a truncated JPEG fails here, not later in a transform)."""
    path = Path(path)
    if not path.is_file():
        raise ImageLoadError(path, "image file not found")
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except UnidentifiedImageError:
        raise ImageLoadError(path, "not an image (PIL cannot identify it)") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise ImageLoadError(path, f"corrupt or truncated image ({error})") from None
