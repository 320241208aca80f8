"""Run every benchmark; results land in benchmarks/results/*.json."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for script in ("hash_throughput.py", "embed_throughput.py", "quality.py", "grouping.py", "ann.py", "clustering.py",
               "tagging.py"):
    print(f"== {script}", flush=True)
    subprocess.run([sys.executable, str(HERE / script)], check=True, cwd=HERE)
