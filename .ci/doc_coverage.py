#!/usr/bin/env python3
"""Counts shmem-core's public items and those whose docs hold an example.

Reads rustdoc's JSON (cargo +nightly rustdoc -p shmem-core --lib -- -Z
unstable-options --output-format json). Items: modules, types, traits,
functions, methods, constants and macros reachable as `pub` from the crate
(trait impl items and re-exports are not counted). Prints the totals and,
with --missing, the items without an example.
"""
import json, sys

path = sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("--") else "target/doc/shmem_core.json"
doc = json.load(open(path))
index = doc["index"]
crate_id = doc["root"]
kinds = {"module", "struct", "enum", "trait", "function", "constant", "macro", "type_alias", "static"}

counted, with_example, missing = 0, 0, []
seen = set()

def kind_of(item):
    inner = item.get("inner", {})
    return next(iter(inner)) if isinstance(inner, dict) and inner else None

def visit(item_id, path):
    global counted, with_example
    if item_id in seen:
        return
    seen.add(item_id)
    item = index.get(str(item_id))
    if item is None or item.get("crate_id") != 0:
        return
    if item.get("visibility") != "public" and kind_of(item) != "impl":
        return
    if any(a == "#[doc(hidden)]" or "hidden" in str(a) for a in item.get("attrs", [])):
        return
    k = kind_of(item)
    name = item.get("name") or ""
    here = f"{path}::{name}" if name else path
    if k in kinds or (k == "function"):
        counted += 1
        if "```" in (item.get("docs") or ""):
            with_example += 1
        else:
            missing.append(here)
    inner = item["inner"][k] if k else None
    if k == "module":
        for child in inner.get("items", []):
            visit(child, here)
    elif k in ("struct", "enum", "union"):
        for impl_id in inner.get("impls", []):
            impl = index.get(str(impl_id))
            if impl and impl["inner"]["impl"].get("trait") is None:
                for child in impl["inner"]["impl"].get("items", []):
                    visit(child, here)
    elif k == "trait":
        for child in inner.get("items", []):
            visit(child, here)

visit(crate_id, "shmem")
print(f"public items: {counted}, with an example: {with_example} ({100.0 * with_example / max(counted, 1):.1f}%)")
if "--missing" in sys.argv:
    for m in missing:
        print("  no example:", m)
