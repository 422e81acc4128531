#!/usr/bin/env python3
"""Import cycles between the agent's top-level modules (the storage modules count as one, `storage`).

Reads agent/src: a file's top-level module is the first path component under src/ (`wipe/engine.rs`
belongs to `wipe`); an edge A -> B is any `crate::B` path in A's files (tests and `#[cfg(test)]`
files excluded, as they may reach anywhere). Prints every strongly connected set of more than one
module and exits 1 when there is one; with --edges, prints the whole graph.
Usage: scripts/module-cycles.py [--edges] [SRC_DIR]
"""
import os
import re
import sys


def graph(root):
    mods = {f[:-3] if f.endswith(".rs") else f for f in os.listdir(root)} - {"lib", "main"}
    # `pub use storage::{disk, drive, ...}` in lib.rs: those short names belong to `storage`.
    alias = {}
    lib = open(os.path.join(root, "lib.rs"), encoding="utf-8").read()
    for owner, names in re.findall(r"pub use ([a-z_]+)::\{([^}]*)\}", lib):
        for n in re.findall(r"[a-z_]+", names):
            alias[n] = owner
    edges = {m: set() for m in mods}
    for dirpath, _, files in os.walk(root):
        for f in files:
            if not f.endswith(".rs") or f == "tests.rs" or f.endswith("_tests.rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), root)
            top = rel.split(os.sep)[0]
            top = top[:-3] if top.endswith(".rs") else top
            if top not in mods:
                continue
            text = open(os.path.join(dirpath, f), encoding="utf-8").read()
            # Code under #[cfg(test)] may use anything.
            text = text.split("#[cfg(test)]")[0]
            # Comments and doc links are not imports.
            text = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("//"))
            names = set(re.findall(r"crate::([a-z_]+)", text))
            for group in re.findall(r"crate::\{([^}]*)\}", text):
                names |= set(re.findall(r"\b([a-z_]+)\b", group))
            names = {alias.get(n, n) for n in names}
            edges[top] |= {n for n in names if n in mods and n != top}
    return edges


def cycles(edges):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1:
                out.append(sorted(scc))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    root = args[0] if args else os.path.join(os.path.dirname(__file__), "..", "agent", "src")
    edges = graph(root)
    if "--edges" in sys.argv:
        for m in sorted(edges):
            print(f"{m} -> {', '.join(sorted(edges[m])) or '-'}")
    found = cycles(edges)
    for c in found:
        print("cycle:", " <-> ".join(c))
    if not found:
        print("no import cycle between the agent's modules")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
