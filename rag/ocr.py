"""Text from pictures: a scanned PDF page, a photographed price sheet, a WeChat screenshot.

RapidOCR (rapidocr-onnxruntime) reads Chinese and English with the detection, angle and recognition
models shipped inside its wheel: nothing is downloaded at run time. It runs where the parsers run, in
the sandboxed parse process (rag.sandbox) under its CPU, memory and wall-clock limits, and is loaded
only when a file needs it. Boxes are put back into reading order: lines top to bottom (boxes whose
vertical centres lie within half a line height of each other form one line), left to right in a line.
"""
from __future__ import annotations

import io
from functools import lru_cache

from rag.limits import IngestError

MAX_PIXELS = 40_000_000  # a decompression bomb claims a huge canvas in a few bytes
MAX_SIDE = 2400  # larger pictures are scaled down first: OCR time grows with the area
MIN_SCORE = 0.5


@lru_cache(maxsize=1)
def _engine():
    from rapidocr_onnxruntime import RapidOCR

    return RapidOCR(intra_op_num_threads=1, inter_op_num_threads=1)  # few threads: few malloc arenas under the sandbox's RLIMIT_AS


def image_lines(data: bytes) -> list[str]:
    """The lines of text in an image (PNG, JPEG, …), in reading order; [] when it shows none."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > MAX_PIXELS:
                raise IngestError(f"the image is {im.width}×{im.height} pixels (at most {MAX_PIXELS // 1_000_000} million)", "too_large")
            im = im.convert("RGB")
            if max(im.size) > MAX_SIDE:
                im.thumbnail((MAX_SIDE, MAX_SIDE))
            pixels = np.asarray(im)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise IngestError(f"the image is damaged or not a picture ({type(exc).__name__})", "damaged") from exc
    result, _ = _engine()(pixels)
    return reading_order([(box, text) for box, text, score in (result or []) if text.strip() and float(score) >= MIN_SCORE])


def reading_order(boxes: list[tuple[list, str]]) -> list[str]:
    """OCR boxes ([[x, y] × 4], text) as lines: grouped by vertical overlap, each read left to right."""
    items = []
    for box, text in boxes:
        ys = [p[1] for p in box]
        xs = [p[0] for p in box]
        items.append(((min(ys) + max(ys)) / 2, max(max(ys) - min(ys), 1.0), min(xs), text.strip()))
    items.sort()
    lines: list[list[tuple[float, float, float, str]]] = []
    for it in items:
        if lines and abs(it[0] - lines[-1][0][0]) <= 0.5 * max(it[1], lines[-1][0][1]):
            lines[-1].append(it)
        else:
            lines.append([it])
    return [" ".join(t for _, _, _, t in sorted(line, key=lambda i: i[2])) for line in lines]
