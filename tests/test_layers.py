"""The codebase's shape, checked: the service's packages import one way (import-linter's contracts
in setup.cfg, run by `make lint` and here), and no project import hides in a function body to
dodge a cycle (the app factory's blueprint imports aside)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("api", "webhooks", "web", "sync", "jobqueue", "pluggy_client", "models", "observability", "config")
# The app factory registers blueprints and commands: importing them at the top of api/__init__
# would import every view whenever anything imports `api`.
ALLOWED = {("api/__init__.py", "create_app")}


def project_imports_in_function_bodies(path: Path) -> list[tuple[str, int, str]]:
    found = []
    tree = ast.parse(path.read_text(), filename=str(path))
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] if node.level == 0 else ["."]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            if any(name == "." or name.split(".")[0] in PACKAGES for name in names):
                found.append((function.name, node.lineno, ast.unparse(node)))
    return found


def test_no_project_import_hides_in_a_function_body():
    hidden = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            for function, line, statement in project_imports_in_function_bodies(path):
                if (relative, function) not in ALLOWED:
                    hidden.append(f"{relative}:{line} in {function}(): {statement}")
    assert not hidden, "\n".join(hidden)


def test_the_layers_import_one_way_without_cycles():
    linter = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(linter)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout
