"""MkDocs hook: fills docs/reference.md with the configuration reference, generated from the typed
schemas' attribute docstrings when the site is built (mnist_sweep/config/reference.py)."""

from __future__ import annotations

from typing import Any

from mnist_sweep.config import reference

PLACEHOLDER = "<!-- generated: mnist_sweep.config.reference -->"


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    if page.file.src_uri != "reference.md":
        return markdown
    if PLACEHOLDER not in markdown:
        raise ValueError(f"docs/reference.md lost its placeholder {PLACEHOLDER}")
    return markdown.replace(PLACEHOLDER, reference.markdown())
