"""The import graph of src/evfocus: dependencies point down the layers of docs/architecture.md, never in a circle.

Every ``import`` of an evfocus module (at module level or inside a function) is an edge. A *unit* is a
package (``events``, ``pipeline``, …) or a top-level module (``config``, ``sweep``, …); ``MAY_IMPORT``
lists, per unit, the units below it that it may use. Lightning and wandb belong to ``training/``, the
DataModule (``data/datamodule.py``), the Trainer-signature check of the config (``trainer_options``) and the
sweep runner (``sweeps/``, which speaks wandb's sweep format) and the notebooks' ``analysis`` (it can pull runs
from the wandb API).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "src" / "evfocus"
LEAVES = {"golden": set(), "optics": set(), "colour": set(), "trainer_options": set(), "metrics": set(),
          "image_scores": set()}
MAY_IMPORT: dict[str, set[str]] = {
    **LEAVES,
    "config": {"trainer_options"},
    "events": {"golden", "colour"},
    "sweep": {"events", "optics"},
    "sim": {"config", "events", "sweep", "optics", "colour"},
    "data": {"config", "events", "sweep", "optics", "sim"},
    "models": {"config", "events"},
    "pipeline": {"config", "events", "sweep", "optics", "golden", "models", "colour"},
    "checkpoints": {"config", "models"},
    "visualize": {"pipeline", "sweep", "optics"},
    "inference": {"config", "events", "sweep", "optics", "sim", "data", "models", "pipeline", "checkpoints",
                  "visualize", "image_scores"},
    "training": {"config", "events", "sweep", "optics", "sim", "data", "models", "pipeline", "checkpoints",
                 "visualize", "metrics", "golden"},
    # the top floor, beside the entry points: offline wandb sweeps run src/train.py, notebooks read run folders
    "sweeps": {"config", "training"},
    "analysis": {"config", "events", "sweep", "optics", "sim", "data", "models", "pipeline", "checkpoints",
                 "visualize", "metrics", "sweeps"},
    "figures": {"analysis", "events", "sweep", "optics", "pipeline", "visualize"},
}
LIGHTNING = ("lightning", "pytorch_lightning", "wandb")
LIGHTNING_ALLOWED = ("evfocus.training", "evfocus.data.datamodule", "evfocus.trainer_options", "evfocus.sweeps",
                     "evfocus.analysis")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_names(path: Path) -> set[str]:
    """Every module name ``path`` imports, resolving ``from a import b`` to ``a.b`` when that is a module."""
    known = modules()
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            assert node.level == 0, f"{path}: relative import of {node.module}"
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                names.add(full if full in known else node.module)
    return names


def unit(module: str) -> str:
    return module.split(".")[1] if module.count(".") else "evfocus"


def internal_edges() -> dict[str, set[str]]:
    return {name: {target for target in imported_names(path) if target.startswith("evfocus.")}
            for name, path in modules().items()}


def test_every_unit_is_placed_in_the_layers():
    units = {unit(name) for name in modules()} - {"evfocus"}
    assert units == set(MAY_IMPORT), "a new package or top-level module needs its row in MAY_IMPORT and the docs"


def test_imports_point_down_the_layers():
    upward = [f"{source} imports {target}" for source, targets in internal_edges().items() for target in targets
              if unit(target) != unit(source) and unit(target) not in MAY_IMPORT[unit(source)]]
    assert not upward, "imports against the layers (docs/architecture.md):\n" + "\n".join(sorted(upward))


def test_the_layers_and_the_modules_have_no_cycles():
    def cycle(graph: dict[str, set[str]]) -> list[str] | None:
        state: dict[str, int] = {}  # 1: on the current path, 2: done

        def visit(node: str, path: list[str]) -> list[str] | None:
            state[node] = 1
            for target in sorted(graph.get(node, ())):
                if state.get(target) == 1:
                    return [*path[path.index(target):], target] if target in path else [node, target]
                if target not in state and (found := visit(target, [*path, target])):
                    return found
            state[node] = 2
            return None

        return next((found for node in sorted(graph) if node not in state and (found := visit(node, [node]))), None)

    assert cycle(MAY_IMPORT) is None
    found = cycle(internal_edges())
    assert found is None, "circular import: " + " -> ".join(found or [])


def test_only_training_and_the_datamodule_import_lightning():
    offenders = [f"{name} imports {target}" for name, path in modules().items() for target in imported_names(path)
                 if target.split(".")[0] in LIGHTNING and not name.startswith(LIGHTNING_ALLOWED)]
    assert not offenders, "\n".join(offenders)


def test_inference_loads_neither_lightning_nor_training():
    """The issue's own check, then every inference module, in one fresh interpreter."""
    code = ("import sys\n"
            "def heavy(): return sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'lightning', 'pytorch_lightning', 'wandb'} or m.startswith('evfocus.training'))\n"
            "import evfocus.pipeline, evfocus.checkpoints\n"
            "print(heavy())\n"
            "import evfocus.pipeline.aif, evfocus.pipeline.settings, evfocus.pipeline.references, evfocus.visualize\n"
            "import evfocus.inference.run\n"
            "print(heavy())\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={"PYTHONPATH": str(PACKAGE.parent), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split("\n")[:2] == ["[]", "[]"], result.stdout
