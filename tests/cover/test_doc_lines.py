"""The replay lines the README and docs/ print are what a user pastes: each must
decode to a scenario of a known area and property, in its canonical spelling (the
one a failure prints), or the command they copy fails before it runs anything."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from properties.areas import of_line
from properties.scenario import decode_any

ROOT = Path(__file__).resolve().parents[2]
_REPLAY = re.compile(r"nox -s replay -- ('[^']+'|\"[^\"]+\")")


def _doc_lines() -> list[tuple[str, str]]:
    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for m in _REPLAY.finditer(doc.read_text()):
            line = shlex.split(m.group(1))[0]
            if not line.startswith("<"):  # the usage line's placeholder
                found.append((str(doc.relative_to(ROOT)), line))
    return found


LINES = _doc_lines()


def test_the_docs_hold_replay_lines() -> None:
    # The README's safe-setups tables alone hold more than twenty; none found means
    # the pattern above no longer matches how the docs spell the command.
    assert len(LINES) >= 20


@pytest.mark.parametrize(("doc", "line"), LINES, ids=[f"{d}:{i}" for i, (d, _) in enumerate(LINES)])
def test_a_doc_replay_line_decodes(doc: str, line: str) -> None:
    scenario = decode_any(line)
    assert scenario.encode() == line, f"{doc}: not the spelling a failure prints"
    area = of_line(scenario)
    assert scenario.prop in area.properties, f"{doc}: {area.name} has no {scenario.prop!r}"
