"""The configuration reference, generated from the typed config (edge/config.py: keys, types, defaults,
ranges, choices) and the shipped file's comments (deploy/config.toml), as the Markdown table in
docs/configuration.md. A test fails when the page drifts from the code.

    .venv/bin/python scripts/config_reference.py            # print the table
    .venv/bin/python scripts/config_reference.py --write    # replace it in docs/configuration.md
"""
from __future__ import annotations

import dataclasses
import json
import re
import sys
import typing
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge import config  # noqa: E402

BEGIN, END = "<!-- config reference: begin (scripts/config_reference.py) -->", "<!-- config reference: end -->"
PAGE = ROOT / "docs" / "configuration.md"


def comments() -> dict[tuple[str, str], str]:
    """(section, key) -> the comment above the key in deploy/config.toml (its first sentences, up to ~200
    characters); keys written together under one comment share it."""
    out, section, block, last, prev = {}, "", [], "", ""
    for line in (ROOT / "deploy" / "config.toml").read_text().splitlines():
        s = line.strip()
        if s.startswith("[") and s.endswith("]"):
            section, block, last = s[1:-1], [], ""
        elif s.startswith("#"):
            block.append(s.lstrip("# ").strip())
        elif "=" in s:
            key = s.split("=", 1)[0].strip()
            if block:
                text, short = " ".join(b for b in block if b), ""
                for sentence in re.split(r"(?<=\.)\s", text):
                    if short and len(short) + len(sentence) > 200:
                        break
                    short = f"{short} {sentence}".strip()
                last = short
            elif not _pair(prev, key):
                last = ""
            inline = s.split("  #", 1)[1].strip() if "  #" in s else ""
            out[(section, key)] = last or inline
            block, prev = [], key
        else:
            block, last = [], ""
    return out


def _pair(a: str, b: str) -> bool:
    """Keys written together under one comment: width and height, lores_width and lores_height, ..."""
    return {a, b} == {"width", "height"} or ("_" in a and a.rsplit("_", 1)[0] == b.rsplit("_", 1)[0])


def table() -> str:
    notes = comments()
    rows = ["| key | type | default | allowed | what |", "|---|---|---|---|---|"]
    for sec in dataclasses.fields(config.Config):
        cls = sec.type if isinstance(sec.type, type) else typing.get_type_hints(config.Config)[sec.name]
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            lo_hi = f.metadata.get("range")
            choices = config._CHOICES.get((sec.name, f.name))
            allowed = (f"{lo_hi[0]} … {lo_hi[1]}" if lo_hi else " \\| ".join(choices) if choices else
                       "polygons of [x, y] fractions" if hints[f.name] is tuple else "")
            what = notes.get((sec.name, f.name), "").replace("|", "\\|")
            rows.append(f"| `{sec.name}.{f.name}` | {hints[f.name].__name__} | `{json.dumps(default)}` | {allowed} | {what} |")
    return "\n".join(rows)


def main() -> int:
    text = PAGE.read_text()
    block = f"{BEGIN}\n{table()}\n{END}"
    if "--write" in sys.argv:
        if BEGIN in text:
            text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
        else:
            text = text.rstrip() + "\n\n## Every key\n\n" + block + "\n"
        PAGE.write_text(text)
    else:
        print(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
