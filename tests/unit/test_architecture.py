"""handlers/ stays platform-neutral: no Slack, no Docker, no bot/ imports."""

import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
FORBIDDEN = ("slack_bolt", "slack_sdk", "docker", "aiohttp", "requests", "bot")


def imported_modules(path: pathlib.Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def test_handlers_import_nothing_platform_specific():
    offenders = []
    for path in sorted((ROOT / "handlers").rglob("*.py")):
        for module in imported_modules(path):
            if module.split(".")[0] in FORBIDDEN:
                offenders.append(f"{path.relative_to(ROOT)} imports {module}")
    assert offenders == []


def test_importing_every_handler_loads_no_platform_module():
    code = ("import sys, handlers, handlers.dispatch, handlers.commands;"
            f"bad = [m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}];"
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
