"""Pictures for people: masks over images, labelled grids, atomic PNG writes."""

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from beau_tf.common import files

_CAPTION_HEIGHT = 14


def overlay_mask(
    image: np.ndarray,
    mask: np.ndarray,
    colour: tuple[int, int, int] = (255, 0, 200),
    opacity: float = 0.3,
) -> np.ndarray:
    """Tints the masked region and outlines its boundary.

    Args:
      image: `(H, W, 3)` uint8.
      mask: `(H, W)` or `(H, W, 1)`, values in [0, 1]; > 0.5 is foreground.
      colour: tint and outline colour.
      opacity: tint strength inside the mask.

    Returns:
      `(H, W, 3)` uint8.
    """
    inside = np.asarray(mask).reshape(image.shape[:2]) > 0.5
    tinted = image.astype(np.float32)
    tinted[inside] = (1 - opacity) * tinted[inside] + opacity * np.array(colour)
    # The boundary: foreground pixels with a background 4-neighbour.
    padded = np.pad(inside, 1, mode="edge")
    interior = (
        padded[:-2, 1:-1]
        & padded[2:, 1:-1]
        & padded[1:-1, :-2]
        & padded[1:-1, 2:]
    )
    tinted[inside & ~interior] = colour
    return tinted.round().astype(np.uint8)


def draw_boxes(
    image: np.ndarray,
    boxes: np.ndarray,
    colour: tuple[int, int, int] = (255, 190, 0),
    width: int = 2,
) -> np.ndarray:
    """Draws rectangles, e.g. the views a query was cut into.

    Args:
      image: `(H, W, 3)` uint8.
      boxes: `(P, 4)` `(y0, x0, y1, x1)` as fractions of the image; a side
        past the image is drawn at its edge.
      colour: the rectangles' colour.
      width: their line width in pixels.

    Returns:
      `(H, W, 3)` uint8, a copy.
    """
    height, side_width = image.shape[:2]
    picture = Image.fromarray(np.asarray(image, np.uint8))
    draw = ImageDraw.Draw(picture)
    for y0, x0, y1, x1 in np.clip(np.asarray(boxes, np.float64), 0.0, 1.0):
        draw.rectangle(
            [
                round(x0 * (side_width - 1)),
                round(y0 * (height - 1)),
                round(x1 * (side_width - 1)),
                round(y1 * (height - 1)),
            ],
            outline=colour,
            width=width,
        )
    return np.asarray(picture)


def fit_text(text: str, width: int, font) -> str:
    """`text`, cut and ended with "..." where it is wider than `width` px."""
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "...") > width:
        text = text[:-1]
    return text + "..."


def image_grid(
    cells: list[np.ndarray],
    captions: list[str] | None = None,
    columns: int = 4,
    gap: int = 4,
) -> Image.Image:
    """Lays equally sized `(H, W, 3)` uint8 images out in rows, captioned."""
    if not cells:
        raise ValueError("image_grid needs at least one image.")
    height, width = cells[0].shape[:2]
    columns = max(1, min(columns, len(cells)))
    rows = -(-len(cells) // columns)
    caption_h = _CAPTION_HEIGHT if captions else 0
    sheet = Image.new(
        "RGB",
        (
            columns * (width + gap) + gap,
            rows * (height + caption_h + gap) + gap,
        ),
        "white",
    )
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for index, cell in enumerate(cells):
        row, column = divmod(index, columns)
        x = gap + column * (width + gap)
        y = gap + row * (height + caption_h + gap)
        sheet.paste(Image.fromarray(cell), (x, y))
        if captions:
            draw.text(
                (x, y + height + 1),
                fit_text(captions[index], width, font),
                fill="black",
                font=font,
            )
    return sheet


def save_png(image: Image.Image, path: str) -> str:
    """Writes a PNG atomically (a reader never sees half a file); returns path."""
    with files.atomic_path(path, ".png") as temporary:
        image.save(temporary, format="PNG")
    return path
