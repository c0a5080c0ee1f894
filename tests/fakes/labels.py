"""Product labels drawn with known serial numbers, IMEIs and model numbers, as a phone camera
would see them: a sticker on a coloured surface, then turned, blurred, caught in a lamp's glare
or shot from further away.

The IMEIs carry a valid Luhn check digit (3GPP TS 23.003). Serials use capitals and digits
without O and I, as most makers' serials do (a photographed O and 0 cannot be told apart).
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

__all__ = ["VARIANTS", "Label", "draw_label", "imei_with_check_digit"]

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"  # Debian fonts-dejavu-core
FONT_BOLD = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
SERIAL_ALPHABET = "".join(c for c in string.ascii_uppercase + string.digits if c not in "OI")
VARIANTS = ("clean", "rotated+8", "rotated-8", "blur", "glare", "far")


@dataclass(frozen=True, slots=True)
class Label:
    image: np.ndarray[Any, Any]  # H x W x 3 uint8 RGB
    serial: str
    imei: str
    model: str
    variant: str


def imei_with_check_digit(body: str) -> str:
    """``body`` (14 digits) with its Luhn check digit appended."""
    total = 0
    for index, char in enumerate(reversed(body)):
        value = int(char) * (2 if index % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return body + str((10 - total % 10) % 10)


def _sticker(rng: random.Random, serial: str, imei: str, model: str) -> Image.Image:
    surface = tuple(rng.randint(40, 120) for _ in range(3))
    canvas = Image.new("RGB", (900, 560), surface)  # type: ignore[arg-type]
    sticker = Image.new("RGB", (720, 400), (250, 250, 247))
    draw = ImageDraw.Draw(sticker)
    draw.rectangle((2, 2, 717, 397), outline=(60, 60, 60), width=2)
    text, bold = ImageFont.truetype(FONT, 30), ImageFont.truetype(FONT_BOLD, 30)
    draw.text((28, 20), "ACME Devices Inc.", font=bold, fill=(10, 10, 10))
    draw.text((28, 80), f"MODEL: {model}", font=text, fill=(10, 10, 10))
    draw.text((28, 140), f"S/N: {serial}", font=text, fill=(10, 10, 10))
    x = 28
    while x < 448:  # a barcode-like strip between the lines
        width = rng.choice((2, 3, 4, 6))
        if rng.random() < 0.55:
            draw.rectangle((x, 185, x + width - 1, 230), fill=(0, 0, 0))
        x += width
    draw.text((28, 250), f"IMEI: {imei}", font=text, fill=(10, 10, 10))
    draw.text((28, 320), "Made in XX", font=ImageFont.truetype(FONT, 22), fill=(40, 40, 40))
    canvas.paste(sticker, (90, 80))
    return canvas


def _variant(image: Image.Image, variant: str, rng: random.Random) -> Image.Image:
    if variant.startswith("rotated"):
        angle = float(variant.removeprefix("rotated"))
        return image.rotate(
            angle, resample=Image.Resampling.BICUBIC, fillcolor=image.getpixel((0, 0))
        )
    if variant == "blur":
        return image.filter(ImageFilter.GaussianBlur(1.0))
    if variant == "glare":
        glare = Image.new("L", image.size, 0)
        x, y = rng.randint(500, 640), rng.randint(60, 140)
        ImageDraw.Draw(glare).ellipse((x, y, x + 260, y + 170), fill=235)
        glare = glare.filter(ImageFilter.GaussianBlur(25))
        return Image.composite(Image.new("RGB", image.size, (255, 255, 255)), image, glare)
    if variant == "far":
        return image.resize((image.width // 2, image.height // 2), Image.Resampling.LANCZOS)
    if variant != "clean":
        raise ValueError(f"no label variant {variant!r}")
    return image


def draw_label(seed: int, variant: str = "clean") -> Label:
    """The label of ``seed`` (the same values for every variant of one seed)."""
    rng = random.Random(seed)
    serial = "".join(rng.choice(SERIAL_ALPHABET) for _ in range(12))
    imei = imei_with_check_digit("".join(rng.choice(string.digits) for _ in range(14)))
    model = rng.choice(("SM-", "XT", "TX-", "RM-", "HW-")) + str(rng.randint(100, 9999))
    image = _variant(_sticker(rng, serial, imei, model), variant, rng)
    return Label(np.asarray(image.convert("RGB"), dtype=np.uint8), serial, imei, model, variant)
