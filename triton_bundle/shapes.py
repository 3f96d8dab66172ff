"""One input's shape range: the min / opt / max shapes an engine profile (or a Triton config) covers."""

from __future__ import annotations

from typing import NamedTuple


class ShapeRange(NamedTuple):
    """(min, opt, max) shapes of one input, each a full shape (batch first). A named tuple: it reads
    `r.max[0]` and unpacks as `low, opt, high = r`; in JSON it stays `[[min], [opt], [max]]`."""

    min: list[int]
    opt: list[int]
    max: list[int]


Profile = dict[str, ShapeRange]  # input name -> its shape range
