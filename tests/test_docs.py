"""The pages of docs/ whose code blocks are meant to run as written do, in order, in one
namespace (a fresh interpreter each, as a reader's session)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PAGES = ["ml_workflow.md", "counts.md", "outgrowing_memory.md"]

RUNNER = """
import re, sys
text = open(sys.argv[1], encoding="utf-8").read()
namespace = {}
for k, block in enumerate(re.findall(r"```python\\n(.*?)```", text, re.S)):
    exec(compile(block, f"{sys.argv[1]}, block {k}", "exec"), namespace)
"""


@pytest.mark.parametrize("page", PAGES)
def test_code_blocks_run(page):
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONWARNINGS="ignore")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(ROOT / "docs" / page)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{page} failed:\n{proc.stderr[-3000:]}"
