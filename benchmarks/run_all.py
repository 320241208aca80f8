"""Run every benchmark; results land in benchmarks/results/*.json."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# (calibrate.py is not here: it refits the models shipped in simsearch/data, on purpose only)
for script in ("hash_throughput.py", "embed_throughput.py", "quality.py", "acceptance.py", "duplicates_scale.py",
               "keepers.py", "matching.py", "matching_scale.py", "sparse.py", "small.py", "marks.py", "harsh.py",
               "shots.py", "grouping.py", "ann.py", "clustering.py", "tagging.py", "stages.py"):
    print(f"== {script}", flush=True)
    subprocess.run([sys.executable, str(HERE / script)], check=True, cwd=HERE)
