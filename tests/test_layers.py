"""The package's layer order (DESIGN §2): a lower layer never imports a higher one.

Every module of ``eideploy`` is parsed (``ast``, no import runs), and every import is collected:
module level, inside functions (the lazy imports that keep start-up fast), under
``if TYPE_CHECKING:``, and the names a package's ``lazy_exports`` table loads on first use. Each
import of an ``eideploy`` module must go to the same layer or a lower one.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "eideploy"

#: Lowest first. Modules in one layer may import each other (nn and data, quant and sim).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("eideploy", "eideploy.atomic", "eideploy._lazy"),
    ("eideploy.nn", "eideploy.data"),
    ("eideploy.networks",),
    ("eideploy.graph",),
    ("eideploy.quant", "eideploy.sim"),
    ("eideploy.targets",),
    ("eideploy.train",),
    # eideploy.export and eideploy.validate: deprecated thin re-exports of pipeline (and of the
    # target's mapping plot), kept for one release; they sit at the pipeline's level
    ("eideploy.pipeline", "eideploy.export", "eideploy.validate"),
    ("eideploy.cli",),
)
DEPRECATED = ("eideploy.export", "eideploy.validate")

#: Known violations in modules owned by work in progress elsewhere: (module, imported) -> why.
#: The layer test skips them; each has an xfail test of its own that passes once it is gone
#: (then delete its entry here).
KNOWN: dict[tuple[str, str], str] = {}

#: The package's public facade: names the root package loads on first use (PEP 562, its
#: ``lazy_exports`` table) for users (``eideploy.deploy``). Allowed to reach any layer because
#: no module of the package goes through the root for them (checked below).
FACADE: dict[tuple[str, str], str] = {
    ("eideploy", "eideploy.pipeline.deploy"): "eideploy.deploy, eideploy.Deployment"}


def layer_of(module: str) -> int:
    """The layer of a dotted module name: its longest prefix listed in ``LAYERS``."""
    best, depth = -1, -1
    for index, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and name.count(".") > depth:
                best, depth = index, name.count(".")
    if best < 0:
        raise AssertionError(f"{module}: in no layer; add its package to LAYERS")
    return best


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(dotted: str) -> bool:
    path = PACKAGE.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports_of(path: Path) -> list[tuple[str, int]]:
    """``(imported eideploy module, line)`` for every import in ``path``, wherever it stands."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from eideploy import pipeline` imports the subpackage, not the root
            subs = [f"{target}.{a.name}" for a in node.names if is_module(f"{target}.{a.name}")]
            found += [(name, node.lineno) for name in subs] or [(target, node.lineno)]
        elif (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "lazy_exports"
              and len(node.args) >= 3 and isinstance(node.args[2], ast.Dict)):
            found += [(f"{module}.{key.value}", node.lineno) for key in node.args[2].keys
                      if isinstance(key, ast.Constant)]
        elif isinstance(node, ast.Assign) and any(
                getattr(t, "id", None) == "_EXPORTS" for t in node.targets) and isinstance(
                node.value, ast.Dict):  # the table a lazy_exports call reads
            found += [(f"{module}.{key.value}", node.lineno) for key in node.value.keys
                      if isinstance(key, ast.Constant) and isinstance(key.value, str)]
    return [(name, line) for name, line in found
            if name == "eideploy" or name.startswith("eideploy.")]


def all_imports() -> list[tuple[str, str, int, Path]]:
    return [(module_name(path), imported, line, path)
            for path in sorted(PACKAGE.rglob("*.py"))
            for imported, line in imports_of(path)]


def test_the_walk_finds_lazy_and_type_checking_imports():
    # guards the walker itself: a function-level import, a TYPE_CHECKING import and a lazy table
    edges = {(m, i) for m, i, _, _ in all_imports()}
    assert ("eideploy.pipeline.export", "eideploy.targets.dynapse2.compile") in edges
    assert ("eideploy.cli", "eideploy.pipeline.export") in edges
    assert any(m == "eideploy.graph" and i.startswith("eideploy.graph.") for m, i in edges)
    assert len(edges) > 100


def test_no_module_imports_a_higher_layer():
    violations = []
    for module, imported, line, path in all_imports():
        if layer_of(imported) > layer_of(module) and (module, imported) not in KNOWN \
                and (module, imported) not in FACADE:
            violations.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {module} "
                              f"(layer {layer_of(module)}) imports {imported} "
                              f"(layer {layer_of(imported)})")
    assert not violations, "\n".join(violations)


def test_nothing_imports_the_deprecated_re_exports():
    users = [f"{path.relative_to(PACKAGE.parent)}:{line}: {imported}"
             for module, imported, line, path in all_imports()
             if layer_of(imported) == layer_of("eideploy.export")
             and imported.startswith(DEPRECATED) and not module.startswith(DEPRECATED)]
    assert not users, "\n".join(users)


def test_no_module_of_the_package_uses_the_root_facade():
    names = {name for value in FACADE.values()
             for name in value.replace("eideploy.", "").split(", ")}
    users = [f"{path.relative_to(PACKAGE.parent)}:{line}: {imported}"
             for module, imported, line, path in all_imports()
             if module != "eideploy" and imported in {f"eideploy.{n}" for n in names}]
    assert not users, "\n".join(users)
