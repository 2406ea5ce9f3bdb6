"""The heuristic's text layout, made here and nowhere else.

The compiler used to run ``ruff format`` when ruff happened to be installed, so the same study
gave two different files on two machines. The layout is now the compiler's own: PEP 8 blank
lines around top-level functions and data tables that wrap long values one item a line.
"""

from __future__ import annotations

import ast

WIDTH = 100


def table(name: str, rows: dict[object, object], comment: str = "") -> list[str]:
    """``NAME = {...}`` one key a line; a value too long for the line lists one item a line."""
    if not rows:
        return [f"{name} = {{}}" + (f"  # {comment}" if comment else "")]
    out = [f"{name} = {{" + (f"  # {comment}" if comment else "")]
    for k, v in rows.items():
        line = f"    {k!r}: {v!r},"
        if len(line) > WIDTH and isinstance(v, list | tuple | set):
            items = sorted(v) if isinstance(v, set) else list(v)
            out += [f"    {k!r}: {'[' if not isinstance(v, tuple) else '('}"]
            out += [f"        {x!r}," for x in items]
            out += [f"    {']' if not isinstance(v, tuple) else ')'},"]
        else:
            out.append(line)
    return [*out, "}"]


def blank_lines(source: str) -> str:
    """Two blank lines before and after every top-level ``def``/``class``, none doubled
    elsewhere than the source had them; positions come from the syntax tree, so nothing inside a
    string is touched."""
    tree = ast.parse(source)
    lines = source.split("\n")
    starts: set[int] = set()
    ends: set[int] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            starts.add(first - 1)
            ends.add((node.end_lineno or node.lineno) - 1)
    out: list[str] = []
    after_def = False
    for i, line in enumerate(lines):
        boundary = i in starts or (after_def and line.strip() and not line[:1].isspace())
        if boundary and any(x.strip() for x in out):
            while out and not out[-1].strip():
                out.pop()
            out += ["", ""]
            after_def = False
        out.append(line)
        if i in ends:
            after_def = True
    return "\n".join(out)
