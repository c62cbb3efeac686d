"""DESIGN.md's layering rule: dependencies point down, and the cores below the IO line are pure."""

import ast
import pathlib

import corral

PACKAGE = pathlib.Path(corral.__file__).parent

# Top to bottom; a layer may import itself and anything listed after it.
LAYERS = ["cli", "admin", "client", "net", "store", "quorum", "server", "tree", "proto", "limits"]
PURE = {"quorum", "server", "tree", "proto", "limits"}
# What a pure module may not touch: IO, clocks, randomness, threads, processes.
IMPURE_MODULES = {
    "asyncio", "socket", "ssl", "os", "time", "random", "threading", "subprocess",
    "selectors", "signal", "multiprocessing", "shutil", "tempfile", "io", "pathlib",
    "datetime", "uuid", "secrets",
}  # fmt: skip


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "corral" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in LAYERS else None


def _imports(path: pathlib.Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return found


def test_dependencies_point_down_and_cores_stay_pure() -> None:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        own = rel.parts[0].removesuffix(".py")
        if own not in LAYERS:
            continue
        allowed = set(LAYERS[LAYERS.index(own) :])
        for module in _imports(path):
            target = _layer(module)
            if target is not None and target not in allowed:
                problems.append(f"{rel}: {own} imports {module} (a layer above it)")
            if own in PURE and module.split(".")[0] in IMPURE_MODULES:
                problems.append(f"{rel}: pure layer {own} imports {module}")
    assert not problems, "\n".join(problems)


def test_every_package_has_a_docstring() -> None:
    for init in PACKAGE.rglob("__init__.py"):
        assert ast.get_docstring(ast.parse(init.read_text())), f"{init} has no docstring"


def test_test_modules_have_unique_basenames() -> None:
    # pytest imports test files by basename (rootdir-relative, no packages), so two
    # test_x.py files in different folders collide at collection time.
    tests = pathlib.Path(__file__).resolve().parents[1]
    names = [p.name for p in tests.rglob("test_*.py")]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
