"""The English and Japanese tutorial pages run the same code (issue 22).

Each tutorial exists as docs/tutorials/NAME.md and docs/ja/tutorials/NAME.md.  The docs
harness runs every python block of both, so the two must hold identical code blocks (same
language, same code, same ``<!-- docs-test: skip -->`` markers, same order): then a fix to one
page that is not made to the other fails here, not silently in one language.  The pictures a
page shows must be ones its own code saves, and the Japanese quick start's commands must be
the README's.
"""
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
TUTORIALS = ["convolution", "cifar10", "distributed", "onnx"]
SKIP = "<!-- docs-test: skip -->"
_FENCE = re.compile(r"^(`{3,})(\S*)\s*$")
_FIGURE = re.compile(r"!\[[^\]]*\]\(/_generated/figures/[\w.-]+/([\w.-]+\.png)\)")
_KANA = re.compile(r"[\u3040-\u30ff]")


def code_blocks(text):
    """[(language, code, skipped)] of the fenced blocks of a Markdown page, in order.

    `skipped` is True when the last non-blank line before the fence is the skip marker.
    """
    blocks, lines, i, before = [], text.splitlines(), 0, ""
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening and opening.group(2):
            fence, end = opening.group(1), i + 1
            while end < len(lines) and lines[end].rstrip() != fence:
                end += 1
            if end == len(lines):
                raise ValueError(f"the code block opened on line {i + 1} is never closed")
            blocks.append((opening.group(2), "\n".join(lines[i + 1:end]),
                           before.strip() == SKIP))
            i, before = end + 1, ""
            continue
        if lines[i].strip():
            before = lines[i]
        i += 1
    return blocks


def prose(text):
    """The page without its fenced code blocks."""
    return re.sub(r"^(`{3,})\S+\s*$.*?^\1\s*$", "", text, flags=re.S | re.M)


def page(*parts):
    path = DOCS.joinpath(*parts)
    assert path.is_file(), f"{path.relative_to(REPO)} is missing"
    return path.read_text(encoding="utf-8")


def test_code_blocks_are_read_with_their_skip_markers():
    text = ("intro\n\n```python\nx = 1\n```\n\n" + SKIP + "\n```python\nrun_for_hours()\n```\n"
            "\n```bash\ncnnframe layers\n```\n\n````md\n```python\nnested\n```\n````\n")
    assert code_blocks(text) == [("python", "x = 1", False), ("python", "run_for_hours()", True),
                                 ("bash", "cnnframe layers", False),
                                 ("md", "```python\nnested\n```", False)]
    with pytest.raises(ValueError, match="line 1 is never closed"):
        code_blocks("```python\nx = 1\n")


@pytest.mark.parametrize("name", TUTORIALS)
def test_japanese_page_has_the_english_code_blocks(name):
    english = code_blocks(page("tutorials", f"{name}.md"))
    japanese = code_blocks(page("ja", "tutorials", f"{name}.md"))
    assert any(lang == "python" and not skipped for lang, _, skipped in english), \
        f"{name}.md has no python block that runs"
    for index, (en, ja) in enumerate(zip(english, japanese)):
        assert en == ja, f"{name}.md: code block {index + 1} differs between English and Japanese"
    assert len(english) == len(japanese), (f"{name}.md: {len(english)} code blocks in English, "
                                           f"{len(japanese)} in Japanese")


@pytest.mark.parametrize("parts", [("tutorials",), ("ja", "tutorials")])
@pytest.mark.parametrize("name", TUTORIALS)
def test_every_picture_shown_is_saved_by_the_page_code(name, parts):
    text = page(*parts, f"{name}.md")
    code = "\n".join(c for lang, c, skipped in code_blocks(text)
                     if lang == "python" and not skipped)
    shown = _FIGURE.findall(prose(text))
    missing = [f for f in shown if f'"{f}"' not in code]
    assert not missing, f"{'/'.join(parts)}/{name}.md shows pictures its code never saves: {missing}"


@pytest.mark.parametrize("name", TUTORIALS)
def test_both_languages_show_the_same_pictures(name):
    english = _FIGURE.findall(prose(page("tutorials", f"{name}.md")))
    japanese = _FIGURE.findall(prose(page("ja", "tutorials", f"{name}.md")))
    assert english and english == japanese


@pytest.mark.parametrize("parts", [("ja", "tutorials", f"{n}.md") for n in TUTORIALS]
                         + [("ja", "quickstart.md")])
def test_japanese_pages_are_written_in_japanese(parts):
    words = prose(page(*parts))
    assert len(_KANA.findall(words)) > 0.2 * len(re.findall(r"[A-Za-z]", words)), \
        f"{'/'.join(parts)} reads as mostly untranslated"


def test_japanese_quick_start_commands_are_the_readme_commands():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    readme_blocks = {code for _, code, _ in code_blocks(readme)}
    blocks = code_blocks(page("ja", "quickstart.md"))
    assert blocks
    stale = [code.splitlines()[0] for _, code, _ in blocks if code not in readme_blocks]
    assert not stale, ("docs/ja/quickstart.md has code blocks that are not in README.md "
                       f"(update the Japanese page): {stale}")
