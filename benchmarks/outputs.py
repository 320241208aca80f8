"""The outputs of `duplicates`, `search` and `evaluate` on ../shared/data/dups, through the CLI, for
checking that a change which should not alter behaviour does not: run it before and after, and compare.

Usage: python benchmarks/outputs.py OUT.json [--index DIR]   (DIR: reuse an index built by an earlier run)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from click.testing import CliRunner
from common import require_dups

from simsearch.cli import main as cli

QUERIES = ("skimage_data/chelsea.png", "imagededup_berlin_airbnb/berlin_37004_1.jpg",
           "imagededup_tests/mixed_images/ukbench00120_rotation.jpg")
COMMANDS = [["duplicates", "--by", by, "--format", "json"] for by in ("exact", "phash", "dhash", "embedding", "auto")] + [
    ["duplicates", "--format", "csv", "--by", "phash", "--max-distance", "6"],
] + [["search", q, "--by", by, "-k", "8", "--format", "json"] for q in QUERIES for by in ("embedding", "phash")]


def run(args: list[str]) -> str:
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    if result.exit_code:
        sys.exit(f"{' '.join(args)} failed: {result.output}")
    return result.output


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--index", required=True, help="index folder (built here if absent)")
    opts = parser.parse_args()
    dups = require_dups()
    images = dups / "images"
    if not Path(opts.index).exists():
        run(["index", str(images), "--index", opts.index, "--embed", "--no-progress"])
    outputs = {}
    for command in COMMANDS:
        args = [a if a not in QUERIES else str(images / a) for a in command] + ["--index", opts.index]
        outputs[" ".join(command)] = run(args)
    outputs["evaluate"] = run(["evaluate", "--ground-truth", str(dups / "ground_truth.json"), "--exclude",
                               str(dups / "unlabeled_exclude.txt"), "--format", "json", "--index", opts.index])
    digests = {k: hashlib.sha256(v.encode()).hexdigest()[:16] for k, v in outputs.items()}
    Path(opts.out).write_text(json.dumps({"digests": digests, "outputs": outputs}, indent=1))
    print(json.dumps(digests, indent=1))


if __name__ == "__main__":
    main()
