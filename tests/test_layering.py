"""The package's rooms import only from the rooms below them (every import, module-level or inside functions)."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "xtremedistil_tf"
GROUND = {"io", "errors", "strategy", "config", "cli", "__init__"}
ALLOWED = {  # room -> the rooms it may import
    "ground": {"ground"},
    "models": {"ground", "models"},
    "data": {"ground", "data"},
    "metrics": {"ground", "metrics", "data"},
    "convert": {"ground", "convert", "models", "data", "deploy"},  # deploy: the CLI's --export_int8
    "deploy": {"ground", "deploy", "models", "data", "metrics"},
    "train": {"ground", "train", "models", "data", "metrics"},
    "distill": {"ground", "distill", "train", "models", "data", "metrics", "convert", "deploy"},
    "apps": {"ground", "apps", "distill", "train", "models", "data", "metrics", "convert", "deploy"},
}


def _room(parts: list[str]) -> str:
    return "ground" if len(parts) == 1 or parts[0] in GROUND else parts[0]


def _imports(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("xtremedistil_tf"):
            names = [node.module] if node.module != "xtremedistil_tf" else \
                [f"xtremedistil_tf.{a.name}" for a in node.names]
            for name in names:
                yield node.lineno, name
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("xtremedistil_tf."):
                    yield node.lineno, a.name


def test_no_room_imports_from_a_room_above_it():
    problems = []
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 30
    for path in files:
        rel = path.relative_to(PACKAGE).with_suffix("").parts
        room = _room(list(rel))
        assert room in ALLOWED, f"{path}: a room the layering rule does not know"
        for line, name in _imports(path):
            target = _room(name.split(".")[1:])
            if target not in ALLOWED[room]:
                problems.append(f"{path.relative_to(PACKAGE)}:{line} ({room}) imports {name} ({target})")
    assert not problems, "\n".join(problems)
