"""The command table's index (handlers/commands.py) against the use cases'
own declarations, and what a single command loads."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from handlers import commands

ROOT = Path(__file__).resolve().parents[2]


def test_the_index_names_every_command_each_module_declares_and_nothing_else():
    declared = {}
    for name in commands._ORDER:
        for spec in importlib.import_module(f"handlers.{name}").SPECS:
            assert spec.path not in declared, f"{spec.path} declared twice"
            declared[spec.path] = name
    assert declared == commands._MODULES


def test_table_lists_every_command_once_in_the_help_order():
    table = commands.table()
    assert sorted(spec.path for spec in table) == sorted(commands._MODULES)
    assert len({spec.path for spec in table}) == len(table)
    for spec in table:
        assert commands.spec_for(spec.path) is spec


@pytest.mark.parametrize("line, module", [
    ("pull busybox", "handlers.pull"),
    ("images", "handlers.images"),
    ("rmi busybox", "handlers.rmi"),
    ("version", "handlers.system"),
])
def test_a_command_loads_its_own_use_case_and_not_the_others(line, module):
    use_cases = ["handlers." + n for n in commands._ORDER if n != "audit"]  # bot.audit_log reads handlers.audit
    code = (
        "import json, sys\n"
        "from handlers.dispatch import parse_command\n"
        f"parse_command({line!r})\n"
        f"print(json.dumps([m for m in {use_cases!r} if m in sys.modules]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout)
    assert module in loaded
    # run uses pull's flags and rmi lists images: a use case may load another on purpose
    allowed = {"handlers.pull": {"handlers.pull"}, "handlers.images": {"handlers.images"},
               "handlers.rmi": {"handlers.rmi", "handlers.images"}, "handlers.system": {"handlers.system"}}[module]
    assert set(loaded) <= allowed, loaded


def test_unknown_commands_still_get_suggestions_from_the_index():
    err = commands.unknown_command(["imagse"])
    assert "docker images" in err.hint
    err = commands.unknown_command(["image", "lss"])
    assert "docker image ls" in err.hint
