"""`make base`: rebuild the base model shipped in the package from the pinned corpus.

    python training_data/build_base.py [--work DIR] [--short SECONDS] [--long SECONDS]
    python training_data/build_base.py --from BASE.cllm      # ship a base pretrained beforehand (step 3 only)

1. training_data/base_corpus/get.sh fetches the pinned PyPI source distributions (sha256-checked) and keeps their
   C files (MANIFEST.md lists each project, version, path and licence).
2. `cllm pretrain` trains a base on them at 128-token windows for --short seconds, then continues it at the
   model's full 512-token context for --long seconds (rotary positions carry the shorter run over).
3. The result is written, as float16 weights and tokenizer only, to engine/train/shipped/base.cllm, with the
   corpus manifest and a NOTICE of the licences beside it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from cllm.engine.train.shipped import SHIPPED_BASE_ENV, SHIPPED_DIR, export_shipped

HERE = Path(__file__).resolve().parent
CORPUS_RECIPE = HERE / "base_corpus"


def notice(manifest: str) -> str:
    """The NOTICE of the shipped base: every project of the corpus table in MANIFEST.md with its licence."""
    lines = ["The base model in this folder (base.cllm) was trained on the C code of these projects, each under",
             "its own permissive licence (SPDX identifiers, read from each project's own files). The code itself is",
             "not shipped; MANIFEST.md says where every file came from.", ""]
    for row in manifest.splitlines():
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        if len(cells) >= 8 and cells[0].isdigit():
            lines.append(f"- {cells[2]} ({cells[3].strip('`')}): {cells[5]}")
    return "\n".join(lines) + "\n"


def pretrain(corpus: Path, out: Path, seconds: float, *extra: str) -> None:
    """One `cllm pretrain` run on `corpus` writing `out`, from random weights unless `extra` says otherwise (not
    from the base shipped now, which a rebuild replaces)."""
    command = ["cllm", "pretrain", str(corpus), "--out", str(out), "--time-budget", str(seconds), *extra]
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True, env={**os.environ, SHIPPED_BASE_ENV: ""})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=HERE / "base_build", help="folder for the corpus and the run")
    parser.add_argument("--short", type=float, default=4500, help="seconds of pretraining at 128-token windows")
    parser.add_argument("--long", type=float, default=1800, help="seconds of pretraining at 512-token windows")
    parser.add_argument("--from", dest="trained", type=Path, help="a base pretrained on the corpus beforehand")
    args = parser.parse_args()
    trained = args.trained
    if trained is None:
        corpus, trained = args.work / "corpus", args.work / "base.cllm"
        subprocess.run(["bash", str(CORPUS_RECIPE / "get.sh"), str(corpus), str(args.work / "sdists")], check=True)
        pretrain(corpus, trained, args.short)
        pretrain(corpus, trained, args.long, "--continue-from", str(trained), "--seq-len", "512")
    SHIPPED_DIR.mkdir(exist_ok=True)
    export_shipped(trained)
    manifest = (CORPUS_RECIPE / "MANIFEST.md").read_text()
    (SHIPPED_DIR / "MANIFEST.md").write_text(manifest)
    (SHIPPED_DIR / "NOTICE").write_text(notice(manifest))
    print(f"shipped base: {SHIPPED_DIR / 'base.cllm'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
