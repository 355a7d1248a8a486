"""Fetch the demo corpus: the C sources bundled in the brotli 1.2.1 source distribution from PyPI.

Pinned recipe: `pip download` the sdist (or reuse the cached tarball beside this script), check its sha256 against
the value pinned below, extract only its *.c / *.h files (and its LICENSE) into training_data/brotli/, then write
the consolidated corpus training_data/repo_code.txt and print its statistics. Running it again does nothing but
print the statistics. Usage: python training_data/fetch_demo.py
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from cllm.engine.data.corpus import format_stats, scan, stats, write_consolidated

PACKAGE = "brotli"
VERSION = "1.2.1"
SDIST = f"{PACKAGE}-{VERSION}.tar.gz"
SDIST_SHA256 = "02b2f7b5a83485efe448a44ddf7983def05c3bb1dcf917d4f7154070260e13de"
HERE = Path(__file__).resolve().parent
KEEP_SUFFIXES = (".c", ".h")


class FetchError(Exception):
    """The demo corpus could not be fetched; the message says why and what to try."""


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def obtain_sdist(cache_dir: Path) -> Path:
    """The verified sdist: the cached copy if it is intact, else a fresh `pip download` (then cached)."""
    cached = cache_dir / SDIST
    if cached.is_file() and sha256_of(cached) == SDIST_SHA256:
        return cached
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                   f"{PACKAGE}=={VERSION}", "--dest", tmp, "--quiet"]
        print(f"downloading {SDIST} from PyPI ...", flush=True)
        done = subprocess.run(command, capture_output=True, text=True)
        downloaded = Path(tmp) / SDIST
        if done.returncode != 0 or not downloaded.is_file():
            raise FetchError(f"pip download failed (is the network up?):\n{done.stderr.strip()}")
        digest = sha256_of(downloaded)
        if digest != SDIST_SHA256:
            raise FetchError(f"{SDIST} has sha256 {digest}, expected {SDIST_SHA256}: refusing an unpinned file")
        shutil.copyfile(downloaded, cached.with_suffix(".part"))
        cached.with_suffix(".part").replace(cached)
    return cached


def wanted(member: tarfile.TarInfo) -> PurePosixPath | None:
    """The path inside the output folder for a C source (or the license), None for anything else."""
    parts = PurePosixPath(member.name).parts
    if not member.isfile() or len(parts) < 2 or ".." in parts or parts[0].startswith("/"):
        return None
    inner = PurePosixPath(*parts[1:])  # drop the "brotli-1.2.1/" top folder
    if inner.suffix in KEEP_SUFFIXES or inner == PurePosixPath("LICENSE"):
        return inner
    return None


def extract_sources(sdist: Path, out_dir: Path) -> int:
    """Extract the wanted members into a staging folder, then move it into place (never a half folder)."""
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    count = 0
    try:
        with tarfile.open(sdist, "r:gz") as tar:
            for member in tar:
                inner = wanted(member)
                if inner is None:
                    continue
                target = staging / inner
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as src:
                    target.write_bytes(src.read())
                count += 1
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return count


def fetch(dest: Path) -> dict[str, int]:
    """Make sure dest/brotli/ and dest/repo_code.txt exist; return the corpus statistics."""
    out_dir, consolidated = dest / PACKAGE, dest / "repo_code.txt"
    if out_dir.is_dir():
        print(f"{out_dir} already present")
    else:
        count = extract_sources(obtain_sdist(dest), out_dir)
        print(f"extracted {count} files into {out_dir}")
    result = scan(out_dir)
    if not consolidated.is_file():
        write_consolidated(result.documents, consolidated)
        print(f"wrote {consolidated}")
    for path, reason in result.skipped:
        print(f"  skipped {path}: {reason}")
    return stats(result.documents)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=HERE, help="folder receiving brotli/ and repo_code.txt")
    args = parser.parse_args(argv)
    try:
        numbers = fetch(args.dest)
    except (FetchError, OSError, tarfile.TarError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"demo corpus: {format_stats(numbers)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
