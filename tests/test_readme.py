"""The README's Python examples run as written (executed in order, one namespace)."""

from __future__ import annotations

import pathlib
import re


def test_readme_python_blocks_run():
    text = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 3
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102
    assert namespace["y"].shape == (16, 10)
    assert namespace["report"].total.energy_j > 0
    assert set(namespace["rates"]) == {"0", "3"}
