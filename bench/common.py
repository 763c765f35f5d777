"""What the benchmarks share: the private stack, and how times are summed up."""

from __future__ import annotations

import importlib.util
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_stack():
    """Bring the private test stack up; (its module, its Paths, its state)."""
    spec = importlib.util.spec_from_file_location("dockhand_stack", ROOT / "tests" / "stack" / "stack.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    r = subprocess.run([sys.executable, str(ROOT / "tests" / "stack" / "stack.py"), "up"], capture_output=True,
                       text=True, stdin=subprocess.DEVNULL)
    if r.returncode:
        sys.exit(f"the private stack did not come up: {r.stderr.strip().splitlines()[-1:]}")
    paths = mod.Paths(mod.stack_dir())
    return mod, paths, mod.load_state(paths)


def ms(x: float) -> float:
    return round(x * 1000, 1)


def stats(values: list[float]) -> dict:
    return {"n": len(values), "median_ms": ms(statistics.median(values)), "min_ms": ms(min(values)),
            "max_ms": ms(max(values)), "all_ms": [ms(v) for v in values]}
