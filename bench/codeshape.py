"""Code shape: median module length and median function length of some packages.

Module length: lines of each .py file. Function length: lines from `def` (decorators
excluded) to the function's last line, for every function and method, nested ones included.

    .venv/bin/python bench/codeshape.py [--root DIR] server client protocol
"""

from __future__ import annotations

import argparse
import ast
import statistics
from pathlib import Path


def shape(root: Path, package: str) -> tuple[list[int], list[int]]:
    """(module lengths, function lengths) of the .py files under root/package."""
    modules, functions = [], []
    for path in sorted((root / package).rglob("*.py")):
        text = path.read_text()
        modules.append(len(text.splitlines()))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                functions.append((node.end_lineno or node.lineno) - node.lineno + 1)
    return modules, functions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path("."))
    ap.add_argument("packages", nargs="*", default=["server", "client"])
    args = ap.parse_args()
    print("| package | modules | median module lines | functions | median function lines |")
    print("|---|---:|---:|---:|---:|")
    rows = {p: shape(args.root, p) for p in args.packages if (args.root / p).is_dir()}
    rows["all"] = (
        [m for ms, _ in rows.values() for m in ms],
        [f for _, fs in rows.values() for f in fs],
    )
    for name, (mods, funcs) in rows.items():
        print(
            f"| {name} | {len(mods)} | {statistics.median(mods):g} | {len(funcs)} "
            f"| {statistics.median(funcs):g} |"
        )


if __name__ == "__main__":
    main()
