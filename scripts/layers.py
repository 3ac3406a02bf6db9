#!/usr/bin/env python3
"""The shape of core/src, checked: which top-level modules refer to which (`crate::name` in
code, comments and test modules left out), and fails on

  - a module cycle (the layers must form a stack: each imports only those below it);
  - a file over 800 lines, its `#[cfg(test)]` module aside;
  - a type with inherent methods (`impl Type {`) in more than one file;
  - a folder whose mod.rs does not open with a `//!` header.

    python3 scripts/layers.py            prints the graph, then the verdict
    python3 scripts/layers.py --graph    only the graph
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "core", "src")
MAX_LINES = 800


def strip(src: str) -> str:
    """Source without comments, string literals and `#[cfg(test)]` modules."""
    src = re.sub(r"/\*.*?\*/", "", src, flags=re.S)
    src = re.sub(r"//[^\n]*", "", src)
    src = re.sub(r'r#*"(?:.|\n)*?"#*', '""', src)
    src = re.sub(r'"(?:\\.|[^"\\])*"', '""', src)
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{", src):
        if m.start() < i:
            continue
        out.append(src[i:m.start()])
        depth, j = 1, m.end()
        while j < len(src) and depth:
            depth += {"{": 1, "}": -1}.get(src[j], 0)
            j += 1
        i = j
    out.append(src[i:])
    return "".join(out)


def modules():
    """{top-level module: [its files]} (a folder `x/` or a file `x.rs`)."""
    mods = {}
    for entry in sorted(os.listdir(ROOT)):
        path = os.path.join(ROOT, entry)
        if entry.endswith(".rs") and entry != "lib.rs":
            mods.setdefault(entry[:-3], []).append(path)
        elif os.path.isdir(path):
            for dirpath, _, files in os.walk(path):
                mods.setdefault(entry, []).extend(os.path.join(dirpath, f) for f in files if f.endswith(".rs"))
    return mods


def graph():
    mods = modules()
    g = {}
    for name, files in mods.items():
        deps = set()
        for f in files:
            code = strip(open(f, encoding="utf-8").read())
            deps.update(re.findall(r"\bcrate::(\w+)", code))
            # `use crate::{a::x, b}`: the names right inside the braces.
            for group in re.findall(r"\bcrate::\{([^;]*?)\}\s*;", code, flags=re.S):
                depth, item = 0, ""
                for ch in group + ",":
                    if ch == "{":
                        depth += 1
                    elif ch == "}":
                        depth -= 1
                    if ch == "," and depth == 0:
                        head = re.match(r"\s*(\w+)", item)
                        if head:
                            deps.add(head.group(1))
                        item = ""
                    else:
                        item += ch
        g[name] = sorted(d for d in deps if d in mods and d != name)
    return g


def cycles(g):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(" ".join(sorted(comp)))

    sys.setrecursionlimit(10000)
    for v in sorted(g):
        if v not in index:
            visit(v)
    return sorted(out)


def rust_files():
    for dirpath, _, files in os.walk(ROOT):
        for f in sorted(files):
            if f.endswith(".rs"):
                yield os.path.join(dirpath, f)


def shape_problems():
    """Files too long, types whose inherent methods are spread, folders without a header."""
    problems, owners = [], {}
    for path in rust_files():
        rel = os.path.relpath(path, ROOT)
        src = open(path, encoding="utf-8").read()
        lines = strip_keep_lines(src).count("\n")
        if lines > MAX_LINES:
            problems.append(f"{rel}: {lines} lines outside tests (at most {MAX_LINES})")
        for m in re.finditer(r"^impl(?:<[^>{]*>)?\s+([A-Z]\w*)(?:<[^>{]*>)?\s*\{", strip(src), flags=re.M):
            owners.setdefault(m.group(1), set()).add(rel)
        if os.path.basename(path) == "mod.rs" and not src.lstrip().startswith("//!"):
            problems.append(f"{rel}: a folder's mod.rs opens with a //! header saying what lives there")
    for ty, files in sorted(owners.items()):
        if len(files) > 1:
            problems.append(f"type {ty} has inherent methods in {len(files)} files: {', '.join(sorted(files))}")
    return problems


def strip_keep_lines(src: str) -> str:
    """Source without its `#[cfg(test)]` modules (comments kept: they are part of a file's size)."""
    m = re.search(r"^#\[cfg\(test\)\]\s*mod\s+\w+\s*\{", src, flags=re.M)
    return src[: m.start()] if m else src


def main():
    g = graph()
    for name in sorted(g):
        print(f"{name} -> {' '.join(g[name])}")
    if "--graph" in sys.argv:
        return 0
    failed = False
    for c in cycles(g):
        print(f"module cycle: {c}")
        failed = True
    for p in shape_problems():
        print(p)
        failed = True
    if failed:
        return 1
    print("no module cycle; no file over the limit; every type's methods in one file")
    return 0


if __name__ == "__main__":
    sys.exit(main())
