#!/usr/bin/env python3
"""Module cycles in core: which top-level modules of core/src refer to which (`crate::name`
in code, comments and test modules left out), and the cycles among them.

    python3 scripts/layers.py            prints the graph and the cycles; fails on a cycle
                                         that scripts/layer-cycles.txt does not list
    python3 scripts/layers.py --graph    only the graph

scripts/layer-cycles.txt lists the cycles that exist today, one per line (the modules of one
strongly connected component, sorted, space-separated). It may only shrink: a cycle that is
not listed fails, and so does a listed one that no longer exists (take it off the list).
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "core", "src")
KNOWN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "layer-cycles.txt")


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


def main():
    g = graph()
    for name in sorted(g):
        print(f"{name} -> {' '.join(g[name])}")
    if "--graph" in sys.argv:
        return 0
    found = set(cycles(g))
    known = set()
    if os.path.exists(KNOWN):
        known = {l.strip() for l in open(KNOWN, encoding="utf-8") if l.strip() and not l.startswith("#")}
    new, gone = found - known, known - found
    for c in sorted(found):
        print(f"cycle: {c}" + ("" if c in known else "   <- NEW"))
    for c in sorted(gone):
        print(f"listed but gone (take it off {os.path.basename(KNOWN)}): {c}")
    if new or gone:
        return 1
    print(f"{len(found)} known cycle(s), no new one")
    return 0


if __name__ == "__main__":
    sys.exit(main())
