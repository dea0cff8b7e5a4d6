"""README.md and docs/*.md as written: every command parses, every link resolves.

Each ``python experiments/X.py ...``, ``python -m studies.X ...`` (or ``speed.X``),
``jaxad-run ...``, ``jaxad-score ...`` and ``jaxad-redraw ...`` command in a code block or an
inline code span is parsed by its program's own argument parser, which is
stopped right after parsing: nothing trains, nothing is read. The commands that made the
committed tables (the READMEs under results/) are held to the same. The README's Python example
runs in ``test_readme.py``; here every Python block must at least compile.
"""

import argparse
import importlib
import re
import runpy
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# The pages that record how the committed results and studies were made.
RESULTS_PAGES = [ROOT / "results" / "README.md", ROOT / "results" / "ablations" / "README.md",
                 ROOT / "studies" / "README.md", ROOT / "speed" / "README.md"]
RUN_AS_MODULES = ("studies", "speed")  # folders whose programs run as `python -m FOLDER.NAME`
PROGRAMS = {"jaxad-run": "jaxad/commands/run.py", "jaxad-score": "jaxad/commands/score.py",
            "jaxad-redraw": "jaxad/commands/redraw.py"}


def code_blocks(text: str) -> list[tuple[str, str]]:
    """``(language, body)`` of every fenced block, and of every indented block as ``("", body)``."""
    fenced = [(lang, body) for lang, body in re.findall(r"^```(\w*)\n(.*?)^```", text, re.S | re.M)]
    unfenced = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    indented = re.findall(r"(?:^(?: {4}|\t).*\n?)+", unfenced, re.M)
    return fenced + [("", re.sub(r"^(?: {4}|\t)", "", block, flags=re.M)) for block in indented]


def command_lines(text: str) -> list[tuple[str, bool]]:
    """``(line, inline)``: the shell lines of the page's shell blocks (continuations joined),
    then its inline code spans."""
    lines = []
    for lang, body in code_blocks(text):
        if lang in ("", "bash", "sh", "shell", "console"):
            lines += [(line, False) for line in body.replace("\\\n", " ").splitlines()]
    spans = re.findall(r"`([^`\n]+)`", re.sub(r"^```.*?^```", "", text, flags=re.S | re.M))
    return lines + [(span, True) for span in spans]


def program_calls(line: str) -> list[tuple[str, list[str]]]:
    """``(program path, argv)`` for each call of a jaxad program in a shell line."""
    try:
        words = shlex.split(line, comments=True)
    except ValueError:  # prose in backticks, not a command
        return []
    calls, command = [], []
    for word in words + [";"]:
        if word in ("&&", "||", ";", "|", "&"):
            calls.append(command)
            command = []
        else:
            command.append(word)
    found = []
    for command in calls:
        while command and (re.fullmatch(r"\w+=.*", command[0]) or command[0] in ("time", "nice")):
            command = command[1:]
        if command[:1] == ["timeout"]:
            command = command[2:]
        python = command[:1] in (["python"], ["python3"])
        if python and len(command) > 1 and command[1].startswith("experiments/"):
            found.append((command[1], command[2:]))
        elif python and command[1:2] == ["-m"] and len(command) > 2 and command[2].split(".")[0] in RUN_AS_MODULES:
            found.append((command[2].replace(".", "/") + ".py", command[3:]))
        elif command[:1] and command[0] in PROGRAMS:
            found.append((PROGRAMS[command[0]], command[1:]))
    return found


def documented_calls() -> list[tuple[str, str, list[str]]]:
    # An inline span naming a program alone (`jaxad-score`) names it; it is not a command.
    return [(page.relative_to(ROOT).as_posix(), program, argv)
            for page in PAGES + RESULTS_PAGES for line, inline in command_lines(page.read_text())
            for program, argv in program_calls(line) if argv or not inline]


class Parsed(Exception):
    """Raised right after a program's parser accepted its command line."""


def load_program(path: str):
    """The module of a program file: a script of experiments/ loaded from its file, any other
    imported by its module name (the repository's root is on the tests' path)."""
    if path.startswith("experiments/"):
        return runpy.run_path(str(ROOT / path))["main"]
    return importlib.import_module(path.removesuffix(".py").replace("/", ".")).main


CALLS = documented_calls()


def test_the_pages_show_the_programs():
    programs = {program for _, program, _ in CALLS}
    assert {"experiments/run.py", "experiments/score.py", "speed/bench.py", "studies/ablation_table.py",
            "jaxad/commands/score.py", "jaxad/commands/redraw.py"} <= programs


@pytest.mark.parametrize("page, program, argv", CALLS, ids=[f"{p}: {Path(g).name} {' '.join(a)}"[:100]
                                                          for p, g, a in CALLS])
def test_each_documented_command_parses(page, program, argv, monkeypatch):
    assert (ROOT / program).exists(), f"{page} runs {program}, which does not exist"
    main = load_program(program)
    parse_args = argparse.ArgumentParser.parse_args

    def parse_then_stop(parser, args=None, namespace=None):
        raise Parsed(parse_args(parser, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    try:
        main(argv)
    except Parsed:
        return
    except SystemExit as exit:  # --help, or a refusal by the parser (its message is on stderr)
        assert exit.code == 0, f"{page}: {program} {shlex.join(argv)} does not parse"
        return
    pytest.fail(f"{page}: {program} {shlex.join(argv)} returned before parsing its arguments")


def test_every_python_block_compiles():
    for page in PAGES:
        for lang, body in code_blocks(page.read_text()):
            if lang == "python":
                compile(body, str(page), "exec")


def test_the_readme_test_command_is_what_ci_runs():
    readme = ROOT / "README.md"
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    as_in_readme = ci.replace("python3 -m pip install -q", "pip install").replace("python3", "python")
    assert as_in_readme in readme.read_text()
    assert "pip install -e . && python experiments/run.py" in readme.read_text()


def anchors(text: str) -> set[str]:
    """GitHub's anchors of a page's headings."""
    headings = re.findall(r"^#+ (.*)$", re.sub(r"^```.*?^```", "", text, flags=re.S | re.M), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("page", [*PAGES, ROOT / "BUILD_NOTES.md"], ids=lambda p: p.name)
def test_every_link_resolves(page):
    text = page.read_text()
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"\w+://", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name} links to {target}, which does not exist"
        if anchor:
            assert anchor in anchors(linked.read_text()), f"{page.name} links to {target}: no such heading"


def test_nothing_points_outside_the_repository():
    sources = [*sorted((ROOT / "jaxad").rglob("*.py")),
               *(path for folder in ("experiments", "studies", "speed") for path in sorted((ROOT / folder).glob("*.py")))]
    for path in [*PAGES, *RESULTS_PAGES, ROOT / "BUILD_NOTES.md", ROOT / "CHANGELOG.md", *sources]:
        text = path.read_text()
        assert "../shared" not in text and "/work/" not in text, path.relative_to(ROOT)


def test_the_library_explains_itself_without_the_study_log():
    # Why a default is as it is lives in docs/; code and --help point there, not to findings.
    for path in sorted((ROOT / "jaxad").rglob("*.py")):
        text = path.read_text()
        assert "BUILD_NOTES" not in text, path.relative_to(ROOT)
        assert not re.search(r"[Ff]indings? \d", text), path.relative_to(ROOT)
        assert not re.search(r"20\d\d-\d\d-\d\d", text), path.relative_to(ROOT)


def test_the_readme_fits_one_screen_of_text():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 150
