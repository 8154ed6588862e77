"""Every benchmark in one run; figures only, nothing fails on a time."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for script in ("ingest.py", "latency.py"):
    print(f"\n### bench/{script}", flush=True)
    subprocess.run([sys.executable, str(HERE / script)], check=True)
