"""The documentation holds together: every "THEORY §N" cited in the code, the tests and
the docs names a numbered section of docs/theory.md, and every relative link or
repository path in README.md and docs/*.md points to a file that exists."""

import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
THEORY = ROOT / "docs" / "theory.md"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_NUMBER = r"\d+(?:\.\d+)*"
#: A run of section references after "THEORY": "§3", "§3.2", "§3–4", "§7, §8", "§7-9".
#: Between "THEORY" and "§" a line break may fall, inside a docstring or a comment.
#: After a comma or "and" the next reference needs its own "§" ("§3, 4096 samples" is
#: one reference); a range may omit it ("§7–9").
_RUN = rf"§\s*{_NUMBER}(?:\s*[–—-]\s*§?\s*{_NUMBER}|\s*(?:,|\band\b)\s*§\s*{_NUMBER})*"
_CITATION = re.compile(rf"THEORY(?:\s|#)*({_RUN})")
#: A run of section references without the "THEORY" prefix (inside docs/theory.md).
_INTERNAL = re.compile(rf"({_RUN})")
#: A numbered heading: "## 3. MCBE ..." (a section) or "### 3.2 Domain reductions".
_HEADING = re.compile(rf"^(#{{2,6}})\s+({_NUMBER})\.?\s+(\S.*)$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def _without_fences(text):
    """The lines of a Markdown text outside fenced code blocks (other lines blanked, so
    that line numbers stay)."""
    lines, inside = [], False
    for line in text.splitlines():
        if _FENCE.match(line):
            inside = not inside
            lines.append("")
        else:
            lines.append("" if inside else line)
    return lines


def _headings(text):
    """``[(level, number, title)]`` of the numbered headings, in order."""
    found = []
    for line in _without_fences(text):
        match = _HEADING.match(line)
        if match:
            found.append((len(match.group(1)), match.group(2), match.group(3).strip()))
    return found


def _sections():
    """Section number -> heading title, for every numbered heading of docs/theory.md."""
    return {number: title for _, number, title in _headings(THEORY.read_text(encoding="utf-8"))}


def _expand(run):
    """The section numbers a reference run names: ``"§7–9"`` gives 7, 8, 9; ``"§3.2-3.4"``
    gives 3.2, 3.3, 3.4; ``"§7, §8"`` gives 7, 8."""
    numbers = []
    for item in re.split(r",|\band\b", run):
        ends = re.findall(_NUMBER, item)
        if len(ends) == 1:
            numbers.append(ends[0])
        elif len(ends) == 2:
            low, high = (end.split(".") for end in ends)
            if len(low) == len(high) and low[:-1] == high[:-1] and int(low[-1]) <= int(high[-1]):
                prefix = ".".join(low[:-1])
                numbers += [f"{prefix}.{k}" if prefix else str(k)
                            for k in range(int(low[-1]), int(high[-1]) + 1)]
            else:
                numbers += ends
    return numbers


def _citations(path, pattern=_CITATION):
    """``[(line, cited text, section number)]`` for every reference in a file."""
    text = path.read_text(encoding="utf-8")
    found = []
    for match in pattern.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        cited = " ".join(match.group(0).split())
        found += [(line, cited, number) for number in _expand(match.group(1))]
    return found


def _code_files():
    package = ROOT / "fastrelu"
    return sorted(p for ext in ("*.py", "*.pyx", "*.pxd", "*.h") for p in package.rglob(ext)
                  if "__pycache__" not in p.parts)


def _shown(path):
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _unresolved(paths, pattern=_CITATION):
    sections = _sections()
    return [f"{_shown(path)}:{line}: {cited!r} names no section {number} of docs/theory.md"
            for path in paths for line, cited, number in _citations(path, pattern)
            if number not in sections]


# --------------------------------------------------------------------------- the parser itself


def test_the_reference_parser_reads_every_form():
    assert _expand("§3") == ["3"]
    assert _expand("§3.2") == ["3.2"]
    assert _expand("§3–4") == ["3", "4"]
    assert _expand("§7-9") == ["7", "8", "9"]
    assert _expand("§7, §8") == ["7", "8"]
    assert _expand("§3.2–3.4") == ["3.2", "3.3", "3.4"]
    text = ("see (THEORY\n    §3). and THEORY §7, §8; # THEORY\n# §12.1 end; THEORY §2-§4 "
            "and THEORY §3, 4096 samples")
    runs = [_expand(m.group(1)) for m in _CITATION.finditer(text)]
    assert runs == [["3"], ["7", "8"], ["12.1"], ["2", "3", "4"], ["3"]]


def test_the_heading_parser_reads_sections_and_subsections():
    text = "# Title\n## 1. Conventions\n```\n## 9. inside a fence\n```\n### 1.2 Sub part\n## Other\n"
    assert _headings(text) == [(2, "1", "Conventions"), (3, "1.2", "Sub part")]


def test_an_unknown_section_is_reported(tmp_path):
    source = tmp_path / "module.py"
    source.write_text('"""Known (THEORY §3), unknown (THEORY §99, §3.99)."""\n', encoding="utf-8")
    assert _unresolved([source]) == [
        f"{source}:1: 'THEORY §99, §3.99' names no section 99 of docs/theory.md",
        f"{source}:1: 'THEORY §99, §3.99' names no section 3.99 of docs/theory.md"]


# --------------------------------------------------------------------------- docs/theory.md


def test_theory_has_numbered_sections_in_order():
    headings = _headings(THEORY.read_text(encoding="utf-8"))
    top = [number for level, number, _ in headings if "." not in number]
    assert top == [str(k) for k in range(1, len(top) + 1)], top
    assert len(top) >= 11
    for level, number, _ in headings:
        depth = number.count(".")
        assert level == 2 + depth, f"heading {number} at level {'#' * level}"
    # a subsection N.k lies inside section N and follows N.(k-1) (or N itself for k = 1)
    open_at = {}  # depth -> the number of the last heading of that depth
    for _, number, _ in headings:
        parts = number.split(".")
        depth = len(parts) - 1
        if depth:
            parent = ".".join(parts[:-1])
            assert open_at.get(depth - 1) == parent, f"subsection {number} outside section {parent}"
            previous = open_at.get(depth, "")
            expected = 1 if not previous.startswith(parent + ".") else int(previous.split(".")[-1]) + 1
            assert int(parts[-1]) == expected, f"subsection {number} out of order"
        open_at[depth] = number
        for deeper in [d for d in open_at if d > depth]:
            del open_at[deeper]


@pytest.mark.parametrize("number, words", [
    ("1", ["conventions"]),
    ("2", ["injectivity", "domain"]),
    ("3", ["mcbe"]),
    ("4", ["pbe"]),
    ("5", ["exact injectivity", "zero-bias"]),
    ("6", ["reconstruction"]),
    ("7", ["singular values"]),
    ("8", ["gaussian mean width"]),
    ("9", ["double layers", "harmonic pruning"]),
    ("10", ["networks"]),
    ("11", ["training"]),
])
def test_theory_sections_hold_what_the_code_cites_them_for(number, words):
    # The code cites the sections by these numbers (§3 for MCBE, §5 for verify_injective,
    # §7 for the ReLU singular values, ...): the headings must carry those topics.
    title = _sections().get(number)
    assert title is not None, f"docs/theory.md has no section {number}"
    for word in words:
        assert word in title.lower(), f"section {number} is {title!r}, expected {word!r}"


def test_sections_not_built_yet_say_so():
    text = THEORY.read_text(encoding="utf-8")
    for number, built in (("10", True), ("11", True)):
        body = re.search(rf"^## {number}\. .*?(?=^## |\Z)", text, flags=re.M | re.S).group(0)
        body = " ".join(body.split())
        unavailable = "not yet available" in body or "none of it is available" in body
        assert unavailable != built, number


# --------------------------------------------------------------------------- citations


def test_the_code_cites_theory_sections():
    # guards the search itself: a move of the modules must not make it find nothing
    assert sum(len(_citations(path)) for path in _code_files()) >= 20


def test_every_theory_citation_in_the_code_names_a_section():
    assert _unresolved(_code_files()) == []


def test_every_section_sign_in_the_code_is_a_theory_citation():
    # "§" anywhere in the code belongs to a "THEORY §N" reference that the test above
    # checked (a reference without the prefix, or one it cannot parse, would escape it)
    stray = []
    for path in _code_files():
        text = path.read_text(encoding="utf-8")
        covered = set()
        for match in _CITATION.finditer(text):
            covered.update(range(match.start(1), match.end(1)))
        stray += [f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, i) + 1}"
                  for i, char in enumerate(text) if char == "§" and i not in covered]
    assert stray == []


def test_every_theory_citation_in_the_tests_and_docs_names_a_section():
    # (this file's own examples of citations aside)
    tests = sorted(p for p in (ROOT / "tests").glob("*.py") if p.name != Path(__file__).name)
    assert _unresolved([*tests, *PAGES]) == []


def test_every_section_reference_inside_theory_exists():
    assert _unresolved([THEORY], _INTERNAL) == []


# --------------------------------------------------------------------------- links

#: Inline links and images ``[text](target "title")``; reference definitions ``[id]: target``.
_INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'(][^)]*)?\)")
_REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
#: A repository path written out in the text: ``docs/scale.md``, ``docs/examples/tour.py``.
_REPO_PATH = re.compile(r"(?<![\w./:-])((?:docs|tests|bench|fastrelu|\.ci|\.github)/[\w./-]*[\w/])")


def _slug(title):
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    title = re.sub(r"[`*_]", "", title.strip().lower())
    return re.sub(r"[^\w\- ]", "", title).replace(" ", "-")


def _anchors(path):
    anchors = set()
    for line in _without_fences(path.read_text(encoding="utf-8")):
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            anchors.add(_slug(match.group(1)))
    return anchors


def _links_in(text):
    """``[(line, target)]`` of the Markdown links of a text, outside fenced code."""
    text = "\n".join(_without_fences(text))
    return [(text.count("\n", 0, match.start()) + 1, match.group(1))
            for pattern in (_INLINE_LINK, _REFERENCE_LINK) for match in pattern.finditer(text)]


def _links(path):
    return _links_in(path.read_text(encoding="utf-8"))


def _is_relative(target):
    return not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) and not target.startswith("//")


def test_the_link_parser_reads_links_images_and_references():
    page = "\n".join([
        "See [the scale model](scale.md) and ![a figure](figures/x.png \"title\").",
        "An [anchor](theory.md#3-mcbe), a [site](https://example.org) and [a ref][r].",
        "```", "[not a link](inside.md)", "```",
        "[r]: batch.md",
    ])
    targets = [target for _, target in _links_in(page)]
    assert sorted(targets) == sorted(["scale.md", "figures/x.png", "theory.md#3-mcbe",
                                      "https://example.org", "batch.md"])
    assert _slug("3. MCBE: Monte Carlo (`fastrelu.mcbe`)") == "3-mcbe-monte-carlo-fastrelumcbe"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_to_an_existing_file(page):
    broken = []
    for line, target in _links(page):
        if not _is_relative(target):
            continue
        file_part, _, anchor = unquote(target).partition("#")
        destination = (page.parent / file_part).resolve() if file_part else page
        if not destination.exists():
            broken.append(f"{_shown(page)}:{line}: {target!r} does not exist")
        elif anchor and destination.suffix == ".md" and anchor not in _anchors(destination):
            broken.append(f"{_shown(page)}:{line}: {target!r} has no heading #{anchor}")
    assert broken == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_repository_path_named_in_the_text_exists(page):
    # paths written out ("see docs/scale.md", `docs/examples/tour.py`) are relative to the
    # repository's root
    text = "\n".join(_without_fences(page.read_text(encoding="utf-8")))
    missing = sorted({match.group(1) for match in _REPO_PATH.finditer(text)
                      if not (ROOT / match.group(1)).exists()})
    assert missing == [], f"{page.relative_to(ROOT)} names {missing}"


def test_distributed_and_batch_link_the_scale_model():
    for name in ("distributed.md", "batch.md"):
        targets = [target for _, target in _links(ROOT / "docs" / name)]
        assert "scale.md" in targets, name


def test_the_api_reference_builds_without_warnings(tmp_path):
    # from a copy, so that autosummary's generated pages stay out of the checkout, and
    # from another directory, so that the installed package is documented
    source = tmp_path / "api"
    shutil.copytree(ROOT / "docs" / "api", source, ignore=shutil.ignore_patterns("_build", "generated"))
    result = subprocess.run([sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html", str(source),
                             str(tmp_path / "html")], cwd=tmp_path, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    page = (tmp_path / "html" / "generated" / "fastrelu.mcbe.html").read_text(encoding="utf-8")
    assert "Parameters" in page and "n_samples" in page
    import fastrelu

    index = (tmp_path / "html" / "index.html").read_text(encoding="utf-8")
    missing = [name for name in fastrelu.__all__ if f"fastrelu.{name}" not in index]
    assert missing == []  # every public name is in the reference
