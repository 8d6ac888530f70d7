#!/usr/bin/env python3
"""Lists non-test Rust source files over 600 lines and functions over 80 lines.

A function may stay longer when one of the eight lines before its signature carries
`// size: <reason>`; a file, when one of its first 30 lines does. Test code (files under tests/ or named tests.rs, and `#[cfg(test)]`
modules at the end of a file) is not counted. Exit status 1 when anything is listed.
"""
import pathlib
import re
import sys

MAX_FILE, MAX_FN = 600, 80
ROOTS = ["src", "crates", "bench/loadgen/src"]
FN = re.compile(r"^(\s*)(pub(\([a-z]+\))? )?(async )?(unsafe )?(const )?fn \w+")


def source_lines(text):
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line.startswith("#[cfg(test)]"):
            return lines[:i]
    return lines


def check(path, report):
    lines = source_lines(path.read_text())
    if len(lines) > MAX_FILE and "// size:" not in "\n".join(lines[:30]):
        report.append(f"{path}: {len(lines)} lines")
    for i, line in enumerate(lines):
        m = FN.match(line)
        if not m or line.rstrip().endswith(";"):
            continue
        indent = m.group(1)
        end = next(
            (j for j in range(i + 1, len(lines)) if lines[j] == indent + "}"),
            None,
        )
        if end is None or end - i + 1 <= MAX_FN:
            continue
        before = "\n".join(lines[max(0, i - 8):i])
        if "// size:" in before:
            continue
        name = re.sub(r"^pub(\([a-z]+\))? ", "", line.strip()).split("(")[0]
        report.append(f"{path}:{i + 1}: {name} is {end - i + 1} lines")


def main():
    report = []
    for root in ROOTS:
        for path in sorted(pathlib.Path(root).rglob("*.rs")):
            parts = path.parts
            if "tests" in parts or path.name == "tests.rs" or "target" in parts:
                continue
            check(path, report)
    print("\n".join(report))
    return 1 if report else 0


if __name__ == "__main__":
    sys.exit(main())
