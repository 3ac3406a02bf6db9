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


def blank(src: str) -> str:
    """Source with comments removed and string and char literals emptied, in one pass (a `//`
    inside a string is not a comment; a quote inside a comment opens no string)."""
    out, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
        elif src.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if src.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif src.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c == "r" and re.match(r'r#*"', src[i:]) and not (i and (src[i - 1].isalnum() or src[i - 1] == "_")):
            hashes = re.match(r"r(#*)\"", src[i:]).group(1)
            end = src.find('"' + hashes, i + 2 + len(hashes))
            out.append('""')
            i = n if end < 0 else end + 1 + len(hashes)
        elif c == '"':
            i += 1
            while i < n and src[i] != '"':
                i += 2 if src[i] == "\\" else 1
            out.append('""')
            i += 1
        elif c == "'" and (src.startswith("\\", i + 1) or (i + 2 < n and src[i + 2] == "'")):
            j = i + 1
            while j < n and src[j] != "'":
                j += 2 if src[j] == "\\" else 1
            out.append("' '")
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def strip(src: str) -> str:
    """Source without comments, string literals and `#[cfg(test)]` modules."""
    src = blank(src)
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
            deps.update(braced_heads(code, "crate::"))
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


def braced_heads(code: str, prefix: str):
    """The first name of each item inside `prefix{...}` groups (`use super::{a::x, b}` -> a, b)."""
    names = set()
    for group in re.findall(re.escape(prefix) + r"\{([^;]*?)\}\s*;", code, flags=re.S):
        depth, item = 0, ""
        for ch in group + ",":
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            if ch == "," and depth == 0:
                head = re.match(r"\s*(\w+)", item)
                if head:
                    names.add(head.group(1))
                item = ""
            else:
                item += ch
    return names


def folder_graphs():
    """{folder: {file: [sibling files it refers to]}} for every folder of core/src and for
    edge/src, the folder's root (mod.rs, lib.rs) left out: a file refers to a sibling by
    `super::name`, `crate::<folder path>::name` (or, in edge/src, `crate::name`)."""
    out = {}
    roots = [(ROOT, False), (os.path.join(ROOT, "..", "..", "edge", "src"), True)]
    for base, crate_root in roots:
        for dirpath, _, files in os.walk(base):
            stems = {f[:-3] for f in files if f.endswith(".rs") and f not in ("mod.rs", "lib.rs", "main.rs")}
            if len(stems) < 2:
                continue
            rel = os.path.relpath(dirpath, base)
            path = "" if rel == "." else rel.replace(os.sep, "::")
            g = {}
            for stem in sorted(stems):
                code = strip(open(os.path.join(dirpath, stem + ".rs"), encoding="utf-8").read())
                refs = set(re.findall(r"\bsuper::(\w+)", code)) | braced_heads(code, "super::")
                if path:
                    refs |= set(re.findall(r"\bcrate::" + re.escape(path) + r"::(\w+)", code))
                    refs |= braced_heads(code, "crate::" + path + "::")
                elif crate_root:
                    refs |= set(re.findall(r"\bcrate::(\w+)", code)) | braced_heads(code, "crate::")
                g[stem] = sorted(r for r in refs if r in stems and r != stem)
            label = os.path.relpath(dirpath, os.path.join(ROOT, "..", ".."))
            out[label] = g
    return out


# Every MCP method name (requests and notifications, both directions, both eras).
MCP_METHODS = {
    "initialize", "ping", "server/discover", "subscriptions/listen",
    "tools/list", "tools/call", "resources/list", "resources/templates/list", "resources/read",
    "resources/subscribe", "resources/unsubscribe", "prompts/list", "prompts/get",
    "completion/complete", "logging/setLevel", "sampling/createMessage", "elicitation/create",
    "roots/list", "tasks/get", "tasks/result", "tasks/cancel", "tasks/list",
    "notifications/initialized", "notifications/cancelled", "notifications/progress",
    "notifications/message", "notifications/resources/updated",
    "notifications/resources/list_changed", "notifications/tools/list_changed",
    "notifications/prompts/list_changed", "notifications/roots/list_changed",
    "notifications/subscriptions/acknowledged", "notifications/elicitation/complete",
    "notifications/tasks/status",
}


def method_names_outside_proto():
    """Each MCP method name written as a string in core/src outside proto/ (tests aside):
    proto/ owns every MCP word; everything else names methods through it."""
    found = []
    for path in rust_files():
        rel = os.path.relpath(path, ROOT)
        if rel.startswith("proto" + os.sep) or rel == "fuzzing.rs":
            continue
        src = strip_keep_strings(open(path, encoding="utf-8").read())
        for lineno, line in enumerate(src.split("\n"), 1):
            for lit in re.findall(r'"((?:\\.|[^"\\])*)"', line):
                if lit in MCP_METHODS:
                    found.append(f"{rel}:{lineno}: \"{lit}\"")
    return found


def strip_keep_strings(src: str) -> str:
    """Source without comments and `#[cfg(test)]` modules, string literals kept, lines kept."""
    out, i, n = [], 0, len(src)
    while i < n:
        if src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
        elif src[i] == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            out.append(src[i : j + 1])
            i = j + 1
        else:
            out.append(src[i])
            i += 1
    text = "".join(out)
    m = re.search(r"^#\[cfg\(test\)\]\s*mod\s+\w+\s*\{", text, flags=re.M)
    return text[: m.start()] if m else text


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
    for folder, fg in sorted(folder_graphs().items()):
        for c in cycles(fg):
            print(f"file cycle in {folder}: {c}")
            failed = True
    names = method_names_outside_proto()
    if "--methods" in sys.argv:
        print("\n".join(names))
    if names:
        print(f"{len(names)} MCP method names written outside proto/ (name them through proto::method)")
        failed = True
    for p in shape_problems():
        print(p)
        failed = True
    if failed:
        return 1
    print("no module or file cycle; no file over the limit; every type's methods in one file")
    return 0


if __name__ == "__main__":
    sys.exit(main())
