"""The house's layout: three wings, no import circle, `telecmi/` never importing the engine or the top, at most
9 modules from main.py down (issue 22). Read from the code's own imports."""

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def modules() -> dict[str, Path]:
    found = {"main": ROOT / "main.py"}
    for path in (ROOT / "source_telecmi").rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


MODULES = modules()


@functools.cache
def imports(name: str) -> frozenset[str]:
    """The connector's modules `name` imports, TYPE_CHECKING imports included."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("source_telecmi"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in MODULES)
    return frozenset(found - {name, "source_telecmi"})


@functools.cache
def longest(name: str) -> tuple[str, ...]:
    chains = [(name, *longest(other)) for other in imports(name)]
    return max(chains, key=len, default=(name,))


def test_no_import_circle():
    def reach(name: str, seen: frozenset[str]) -> None:
        for other in imports(name):
            assert other not in seen, f"an import circle: {' -> '.join([*seen, other])}"
            reach(other, seen | {other})

    for name in MODULES:
        reach(name, frozenset({name}))


def test_at_most_nine_modules_from_main_down():
    chain = longest("main")
    assert len(chain) <= 9, " -> ".join(chain)


def test_the_telecmi_wing_imports_neither_the_engine_nor_the_connector_rooms_but_shared_leaves():
    leaves = {"source_telecmi.secrets"}
    for name in MODULES:
        if name.startswith("source_telecmi.telecmi."):
            outside = {m for m in imports(name) if not m.startswith("source_telecmi.telecmi.")} - leaves
            assert outside == set(), f"{name} imports {sorted(outside)}"


def test_the_engine_holds_no_client():
    for name in MODULES:
        if name.startswith("source_telecmi.engine."):
            assert "source_telecmi.telecmi.client" not in imports(name), name


def test_no_room_is_over_300_lines():
    sizes = {name: len(path.read_text().splitlines()) for name, path in MODULES.items()}
    assert {name: n for name, n in sizes.items() if n > 300} == {}
