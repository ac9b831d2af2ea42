"""Labelled image grids (PIL): rows = variants, columns = prompts, images at full resolution."""

from __future__ import annotations

import textwrap
from pathlib import Path

from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont

MARGIN = 8  # pixels between cells
MIN_CELL = 128  # pixels: the narrowest column (images are never scaled)
BACKGROUND = (255, 255, 255)
MISSING = (225, 225, 225)  # a cell without an image file
TEXT = (20, 20, 20)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _text_size(draw: ImageDraw.ImageDraw, text: str, font) -> tuple[int, int]:
    left, top, right, bottom = draw.multiline_textbbox((0, 0), text, font=font)
    return right - left, bottom - top


def grid_image(
    title: str,
    rows: list[str],
    columns: list[str],
    cells: dict[tuple[str, str], Path | None],
) -> PILImage.Image:
    """A grid with `title` on top, a row label before each row and a wrapped column header.

    `cells[(row, column)]` is an image file (pasted at its own size, top-left of a cell as large
    as the largest image) or None/absent (a grey "missing" cell of that size).
    """
    # 1. Images and the cell size (the largest image; 64x64 when there is none)
    images: dict[tuple[str, str], PILImage.Image] = {}
    for key, path in cells.items():
        if path is not None and Path(path).is_file():
            with PILImage.open(path) as image:
                images[key] = image.convert("RGB")
    # cells at least MIN_CELL wide so that prompts stay legible above small images
    cell_w = max([MIN_CELL, *(i.width for i in images.values())])
    cell_h = max((i.height for i in images.values()), default=64)

    # 2. Label sizes
    font = _font(max(12, min(24, cell_w // 16)))
    probe = ImageDraw.Draw(PILImage.new("RGB", (1, 1)))
    chars = max(8, cell_w // max(1, _text_size(probe, "m", font)[0]))
    headers = ["\n".join(textwrap.wrap(c, chars, break_long_words=False)[:4]) for c in columns]
    header_h = max((_text_size(probe, h, font)[1] for h in headers), default=0) + MARGIN
    label_w = max((_text_size(probe, r, font)[0] for r in rows), default=0) + 2 * MARGIN
    title_h = _text_size(probe, title, font)[1] + 2 * MARGIN

    # 3. Canvas, labels, cells
    width = label_w + len(columns) * (cell_w + MARGIN) + MARGIN
    width = max(width, _text_size(probe, title, font)[0] + 2 * MARGIN)
    height = title_h + header_h + len(rows) * (cell_h + MARGIN) + MARGIN
    canvas = PILImage.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    draw.text((MARGIN, MARGIN), title, fill=TEXT, font=font)
    for j, header in enumerate(headers):
        draw.multiline_text(
            (label_w + j * (cell_w + MARGIN), title_h), header, fill=TEXT, font=font
        )
    for i, row in enumerate(rows):
        top = title_h + header_h + i * (cell_h + MARGIN)
        draw.text((MARGIN, top + cell_h // 2), row, fill=TEXT, font=font, anchor="lm")
        for j, column in enumerate(columns):
            left = label_w + j * (cell_w + MARGIN)
            image = images.get((row, column))
            if image is None:
                draw.rectangle((left, top, left + cell_w - 1, top + cell_h - 1), fill=MISSING)
                draw.text(
                    (left + cell_w // 2, top + cell_h // 2),
                    "missing",
                    fill=TEXT,
                    font=font,
                    anchor="mm",
                )
            else:
                canvas.paste(image, (left, top))
    return canvas
