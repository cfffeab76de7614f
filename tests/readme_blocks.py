"""Extract the fenced code blocks of the README (and ``docs/*.md``) with their run markers.

A block is run by ``tests/test_readme.py``. What it needs is said by HTML comments on the lines
right above its opening fence (invisible on GitHub), one directive per comment:

    <!-- readme: skip (why: needs the network / a GPU / hours of CPU) -->
    <!-- readme: setup demo-data reef.jpg -->   fixtures prepared in its working folder
    <!-- readme: continue -->                   run after the previous block, same process/folder
    <!-- readme: tiny -->                       apply the substitution list (small sizes)
    <!-- readme: env NAME=VALUE ... -->         extra environment variables
    <!-- readme: expect-error NAME (why) -->    must exit non-zero with NAME in its output
    <!-- readme: xfail (why: package bug ...) -->  known failure; an unexpected pass fails the test
    <!-- readme: timeout SECONDS -->            default 300
    <!-- readme: files PATH ... -->             outputs the block documents; each must exist afterwards

Only ```python, ```bash and ```sh blocks are code; other fences (layout trees, plain text) are
counted as "not code" so that nothing is silently left out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

CODE_LANGS = {"python": "python", "py": "python", "bash": "bash", "sh": "bash", "shell": "bash"}
DIRECTIVES = {"skip", "setup", "continue", "tiny", "env", "expect-error", "xfail", "timeout", "files"}
_FENCE = re.compile(r"^(?P<ticks>`{3,})(?P<lang>[\w+-]*)\s*$")
_MARKER = re.compile(r"^\s*<!--\s*readme:\s*(?P<name>[\w-]+)\s*(?P<arg>.*?)\s*-->\s*$")
_REASON = re.compile(r"^\((?P<reason>[^()].*)\)$")


class ReadmeMarkupError(ValueError):
    """A marker or fence the runner cannot interpret; the message names file and line."""


@dataclass
class Block:
    """One fenced block: ``line`` is the 1-based line of its opening fence."""

    file: str
    line: int
    lang: str  # "python", "bash", or the raw fence language ("" for none) when not code
    code: str
    directives: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def is_code(self) -> bool:
        return self.lang in ("python", "bash")

    @property
    def skip_reason(self) -> str | None:
        return reason_of(self, "skip") if "skip" in self.directives else None

    @property
    def setups(self) -> list[str]:
        return self.directives.get("setup", "").split()


def reason_of(block: Block, name: str) -> str:
    """The parenthesised reason after a directive, e.g. ``skip (needs the network)``; required."""
    arg = block.directives[name]
    match = _REASON.search(arg[arg.find("("):] if "(" in arg else "")
    if not match or not match["reason"].strip():
        raise ReadmeMarkupError(f"{block.id}: '{name}' needs a reason in parentheses, got {arg!r}")
    return match["reason"].strip()


def _parse_marker(text: str, file: str, lineno: int) -> tuple[str, str] | None:
    match = _MARKER.match(text)
    if match is None:
        if "readme:" in text and "<!--" in text:
            raise ReadmeMarkupError(f"{file}:{lineno}: malformed readme marker {text.strip()!r}")
        return None
    name = match["name"]
    if name not in DIRECTIVES:
        raise ReadmeMarkupError(f"{file}:{lineno}: unknown readme directive {name!r} "
                                f"(known: {', '.join(sorted(DIRECTIVES))})")
    return name, match["arg"]


def extract_blocks(text: str, file: str) -> list[Block]:
    """Every fenced block of a Markdown text, in order, with the markers right above it.

    A marker that is not directly followed (through other markers only) by a fence is an error, as is
    an unclosed fence: a typo must not make a block silently run without its setup.
    """
    lines = text.splitlines()
    blocks: list[Block] = []
    pending: dict[str, str] = {}
    pending_line = 0
    i = 0
    while i < len(lines):
        marker = _parse_marker(lines[i], file, i + 1)
        if marker is not None:
            if marker[0] in pending:
                raise ReadmeMarkupError(f"{file}:{i + 1}: directive {marker[0]!r} given twice")
            pending[marker[0]] = marker[1]
            pending_line = pending_line or i + 1
            i += 1
            continue
        fence = _FENCE.match(lines[i])
        if fence is None:
            if pending:
                raise ReadmeMarkupError(f"{file}:{pending_line}: readme marker not directly above a code fence")
            i += 1
            continue
        close = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == fence["ticks"]), None)
        if close is None:
            raise ReadmeMarkupError(f"{file}:{i + 1}: code fence never closed")
        raw = fence["lang"].lower()
        blocks.append(Block(file, i + 1, CODE_LANGS.get(raw, raw), "\n".join(lines[i + 1:close]) + "\n",
                            pending))
        pending, pending_line = {}, 0
        i = close + 1
    if pending:
        raise ReadmeMarkupError(f"{file}:{pending_line}: readme marker at the end of the file")
    return blocks


def chain_of(blocks: list[Block], index: int) -> list[Block]:
    """The block at ``index`` preceded by the blocks it continues (``continue`` markers, transitively)."""
    chain, k = [blocks[index]], index
    while "continue" in chain[0].directives:
        k = next((j for j in range(k - 1, -1, -1) if blocks[j].is_code), -1)
        prev = blocks[k] if k >= 0 and blocks[k].file == chain[0].file else None
        if prev is None or prev.lang != chain[0].lang:
            raise ReadmeMarkupError(f"{chain[0].id}: 'continue' needs a previous {chain[0].lang} block")
        if prev.skip_reason is not None:
            raise ReadmeMarkupError(f"{chain[0].id}: continues {prev.id}, which is skipped")
        chain.insert(0, prev)
    return chain


def apply_substitutions(code: str, substitutions: dict[str, str]) -> tuple[str, list[str]]:
    """Apply each ``regex -> replacement`` in order; returns the new code and the patterns that matched."""
    used = []
    for pattern, replacement in substitutions.items():
        code, n = re.subn(pattern, replacement, code)
        if n:
            used.append(pattern)
    return code, used


def markdown_files(root: Path) -> list[Path]:
    """README.md plus ``docs/*.md`` when that folder exists (sorted, so ids are stable)."""
    files = [root / "README.md"]
    if (root / "docs").is_dir():
        files += sorted((root / "docs").glob("*.md"))
    return files


def all_blocks(root: Path) -> list[Block]:
    """Every fenced block of every documentation file, ids relative to ``root``."""
    out: list[Block] = []
    for path in markdown_files(root):
        out += extract_blocks(path.read_text(encoding="utf-8"), path.relative_to(root).as_posix())
    return out
