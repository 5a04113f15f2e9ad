"""The bilinear resize of the slow references, one pixel at a time (not a test module): shared
by the tests whose paper resizes a map bilinearly (SAM, SISE-style maps, LIME's patch means)."""

import math


def bilinear(image: list[list[float]], height: int, width: int) -> list[list[float]]:
    """``image`` (rows of floats) resized to ``height`` x ``width``, ``align_corners=False``:
    output pixel ``i`` samples the input at ``(i + 0.5) * in / out - 0.5``, clamped at the
    border, between its two neighbouring rows (columns)."""
    in_h, in_w = len(image), len(image[0])

    def source(dst: int, size_in: int, size_out: int) -> tuple[int, int, float]:
        src = max((dst + 0.5) * size_in / size_out - 0.5, 0.0)
        low = min(math.floor(src), size_in - 1)
        return low, min(low + 1, size_in - 1), src - low

    out = []
    for r in range(height):
        r0, r1, fr = source(r, in_h, height)
        row = []
        for c in range(width):
            c0, c1, fc = source(c, in_w, width)
            top = image[r0][c0] * (1 - fc) + image[r0][c1] * fc
            bottom = image[r1][c0] * (1 - fc) + image[r1][c1] * fc
            row.append(top * (1 - fr) + bottom * fr)
        out.append(row)
    return out
