"""Write the example notebooks (``examples/<name>.ipynb``) from their sources (``examples/<name>.py``).

The Python scripts are the source of truth. They use the jupytext "percent" format, which is also plain
Python (every example runs as a script):

* ``# %%`` starts a code cell (text after it on the same line is ignored);
* ``# %% [markdown]`` starts a markdown cell; its lines are comments, ``# `` is removed from each
  (a lone ``#`` is an empty line).

Everything before the first ``# %%`` (e.g. a ``#!`` line) is left out of the notebook. The notebooks are
written without outputs and with fixed cell ids (``cell-0``, ``cell-1``, ...), so the same source always
gives the same file and ``git diff`` shows only real changes. Only ``nbformat`` is needed (no jupytext).

Usage::

    python examples/make_notebooks.py            # (re)write every notebook whose source changed
    python examples/make_notebooks.py --check    # exit 1 if a notebook is missing or out of date (for CI)
    python examples/make_notebooks.py n2v_2d     # only examples/n2v_2d.ipynb
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

EXAMPLES = Path(__file__).resolve().parent
#: Scripts in examples/ that are not notebook sources.
NOT_NOTEBOOKS = {"make_notebooks.py"}
_MARKER = re.compile(r"^# %%(.*)$")

KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}
LANGUAGE_INFO = {"name": "python", "file_extension": ".py", "mimetype": "text/x-python"}


def sources(names: list[str] | None = None) -> list[Path]:
    """The notebook sources: ``examples/*.py`` that contain ``# %%`` cells (or the given names)."""
    if names:
        paths = [EXAMPLES / (n if n.endswith(".py") else f"{n}.py") for n in names]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise SystemExit(f"no such example script: {', '.join(missing)}")
        return paths
    return [p for p in sorted(EXAMPLES.glob("*.py"))
            if p.name not in NOT_NOTEBOOKS and any(_MARKER.match(line) for line in p.read_text().splitlines())]


def _strip_blank(lines: list[str]) -> list[str]:
    while lines and not lines[0].strip():
        lines = lines[1:]
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return lines


def _markdown_line(line: str, path: Path, lineno: int) -> str:
    if line.strip() == "#":
        return ""
    if line.startswith("# "):
        return line[2:]
    if not line.strip():
        return ""
    raise ValueError(f"{path}:{lineno}: a markdown cell may only hold comment lines ('# text'), got {line!r}")


def parse(path: Path) -> list[tuple[str, str]]:
    """Split a percent-format script into ``[(cell_type, source), ...]``."""
    cells: list[tuple[str, list[str]]] = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        m = _MARKER.match(line)
        if m:
            kind = "markdown" if m.group(1).strip().startswith("[markdown]") else "code"
            cells.append((kind, []))
        elif cells:
            kind, body = cells[-1]
            body.append(_markdown_line(line, path, lineno) if kind == "markdown" else line)
    if not cells:
        raise ValueError(f"{path}: no '# %%' cell markers")
    out = []
    for kind, body in cells:
        body = _strip_blank(body)
        if body:                                   # empty cells are dropped
            out.append((kind, "\n".join(body)))
    return out


def to_notebook(path: Path) -> nbformat.NotebookNode:
    """The notebook of a percent-format script: no outputs, fixed ids, Python 3 kernel."""
    nb = nbformat.v4.new_notebook()
    nb.nbformat, nb.nbformat_minor = 4, 5
    nb.metadata = {"kernelspec": dict(KERNELSPEC), "language_info": dict(LANGUAGE_INFO)}
    if path.stem.startswith("colab"):
        nb.metadata["colab"] = {"provenance": [], "toc_visible": True}
        nb.metadata["accelerator"] = "GPU"          # Colab: ask for a GPU runtime
    for i, (kind, source) in enumerate(parse(path)):
        cell = nbformat.v4.new_markdown_cell(source) if kind == "markdown" else nbformat.v4.new_code_cell(source)
        cell.id = f"cell-{i}"
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def render(path: Path) -> str:
    """The notebook of ``path`` as the exact text written to disk."""
    return nbformat.writes(to_notebook(path)) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("names", nargs="*", help="example names (default: all notebook sources in examples/)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a notebook is missing or differs from its source")
    args = parser.parse_args(argv)
    stale = []
    for src in sources(args.names):
        nb_path = src.with_suffix(".ipynb")
        text = render(src)
        current = nb_path.read_text() if nb_path.exists() else None
        if current == text:
            continue
        stale.append(nb_path)
        if not args.check:
            nb_path.write_text(text)
            print(f"wrote {nb_path.relative_to(EXAMPLES.parent)}")
    if not args.names:                            # notebooks whose source is gone
        orphans = [p for p in sorted(EXAMPLES.glob("*.ipynb")) if not p.with_suffix(".py").exists()]
        for p in orphans:
            print(f"{p.relative_to(EXAMPLES.parent)} has no source script {p.with_suffix('.py').name}")
        if orphans:
            return 1
    if args.check and stale:
        for p in stale:
            print(f"{p.relative_to(EXAMPLES.parent)} is missing or out of date: "
                  f"run python examples/make_notebooks.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
