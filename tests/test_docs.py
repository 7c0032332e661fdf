"""The code blocks of README.md and the pages of docs/ run as written, in order, in one
namespace (a fresh interpreter each, as a reader's session)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PAGES = ["README.md"] + sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))

RUNNER = """
import re, sys, textwrap
text = open(sys.argv[1], encoding="utf-8").read()
namespace = {}
# blocks inside list items are indented: dedented as a reader would paste them
for k, block in enumerate(re.findall(r"^[ \\t]*```python\\n(.*?)^[ \\t]*```", text, re.S | re.M)):
    exec(compile(textwrap.dedent(block), f"{sys.argv[1]}, block {k}", "exec"), namespace)
"""


@pytest.mark.parametrize("page", PAGES)
def test_code_blocks_run(page):
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONWARNINGS="ignore")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(ROOT / page)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{page} failed:\n{proc.stderr[-3000:]}"
