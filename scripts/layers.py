#!/usr/bin/env python3
"""Checks the include graph against the layers docs/architecture.md draws.

The drawing is the block between the lines `<!-- layers -->` and
`<!-- /layers -->` of docs/architecture.md; each line of it that starts
with a number reads `N  NAME  FOLDER...`: the folders of layer N. A
source file may include headers of its own folder and of lower layers
only; two folders on the same layer do not include each other. Programs
(every src/*/main.c) stand above all layers. A line `apps-only FOLDER`
limits a folder to its own files and include/hopwire/.

Prints each include that runs up or sideways, and exits 1 if any does."""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "architecture.md"
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def read_layers():
    text = DOC.read_text()
    m = re.search(r"<!-- layers -->(.*?)<!-- /layers -->", text, re.S)
    if not m:
        sys.exit(f"{DOC}: no <!-- layers --> block")
    layer_of, only_public = {}, set()
    for line in m.group(1).splitlines():
        words = line.split()
        if len(words) >= 3 and words[0].isdigit():
            for folder in words[2:]:
                if not folder.endswith("/"):
                    break
                layer_of[folder.rstrip("/")] = int(words[0])
        elif len(words) == 2 and words[0] == "apps-only":
            only_public.add(words[1].rstrip("/"))
    return layer_of, only_public


def folder_of(path, layer_of):
    """The longest layered folder holding path (relative to ROOT)."""
    best = None
    for folder in layer_of:
        if path == folder or path.startswith(folder + "/"):
            if best is None or len(folder) > len(best):
                best = folder
    return best


def header_path(src, inc):
    """Where an include resolves: beside the file, under src/ or include/."""
    for base in (src.parent, ROOT / "src", ROOT / "include"):
        p = base / inc
        if p.exists():
            return p.relative_to(ROOT).as_posix()
    return None


def main():
    layer_of, only_public = read_layers()
    bad = []
    files = sorted(p for p in (ROOT / "src").rglob("*.[ch]"))
    for src in files:
        rel = src.relative_to(ROOT).as_posix()
        is_program = src.name == "main.c"
        home = folder_of(rel, layer_of)
        if home is None:
            bad.append(f"{rel}: in no layer of {DOC.name}")
            continue
        for inc in INCLUDE.findall(src.read_text()):
            target = header_path(src, inc)
            if target is None:
                bad.append(f"{rel}: includes \"{inc}\", which is not here")
                continue
            there = folder_of(target, layer_of)
            if there == home:
                continue
            restricted = next((f for f in only_public
                               if rel.startswith(f + "/")), None)
            if restricted:
                if not target.startswith("include/hopwire/"):
                    bad.append(f"{rel}: includes {target}; {restricted}/ "
                               "uses the public SDK (include/hopwire/) only")
                continue
            if there is None:
                bad.append(f"{rel}: includes {target}, in no layer")
            elif is_program:
                continue
            elif layer_of[there] > layer_of[home]:
                bad.append(f"{rel} (layer {layer_of[home]}, {home}/) "
                           f"includes {target} (layer {layer_of[there]}): "
                           "runs up")
            elif layer_of[there] == layer_of[home]:
                bad.append(f"{rel} ({home}/) includes {target} "
                           f"({there}/, the same layer): sideways")
    for b in bad:
        print(b)
    n = len(files)
    if bad:
        print(f"layers: {len(bad)} include(s) against the layers of "
              f"docs/architecture.md")
        return 1
    print(f"layers: {n} files, every include runs down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
