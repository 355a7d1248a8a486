"""The demo corpus recipe: only C sources (and the license) leave the sdist; reruns change nothing."""

import hashlib
import importlib.util
import io
import tarfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "training_data" / "fetch_demo.py"


@pytest.fixture
def fetch_demo():
    spec = importlib.util.spec_from_file_location("fetch_demo", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_sdist(path: Path, top: str) -> None:
    """A small stand-in for the brotli sdist, with members that must not be extracted."""
    with tarfile.open(path, "w:gz") as tar:
        for name, text in {
            f"{top}/c/enc/encode.c": "int encode(void) { return 0; }\n",
            f"{top}/c/include/brotli/encode.h": "int encode(void);\n",
            f"{top}/LICENSE": "MIT\n",
            f"{top}/setup.py": "print('not C')\n",
            f"{top}/../escape.c": "int escape;\n",
        }.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo(f"{top}/c/link.c")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)


def test_fetch_extracts_only_sources_and_is_idempotent(fetch_demo, tmp_path, monkeypatch, capsys):
    sdist = tmp_path / fetch_demo.SDIST
    make_sdist(sdist, f"{fetch_demo.PACKAGE}-{fetch_demo.VERSION}")
    monkeypatch.setattr(fetch_demo, "SDIST_SHA256", hashlib.sha256(sdist.read_bytes()).hexdigest())

    assert fetch_demo.main(["--dest", str(tmp_path)]) == 0
    out_dir = tmp_path / fetch_demo.PACKAGE
    files = sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*") if p.is_file())
    assert files == ["LICENSE", "c/enc/encode.c", "c/include/brotli/encode.h"]
    assert not (tmp_path / "escape.c").exists()
    consolidated = (tmp_path / "repo_code.txt").read_text()
    assert "// ===== FILE: c/enc/encode.c =====\nint encode(void) { return 0; }\n" in consolidated
    assert "demo corpus: 2 files (1 .c, 1 .h), 2 lines" in capsys.readouterr().out

    sdist.unlink()  # a rerun needs neither the tarball nor the network
    assert fetch_demo.main(["--dest", str(tmp_path)]) == 0
    assert "already present" in capsys.readouterr().out
    assert (tmp_path / "repo_code.txt").read_text() == consolidated


def test_tampered_cache_is_not_used(fetch_demo, tmp_path, monkeypatch):
    """A cached tarball whose sha256 is not the pinned one is never extracted."""
    make_sdist(tmp_path / fetch_demo.SDIST, "brotli-1.2.1")

    def no_network(*args, **kwargs):
        raise fetch_demo.FetchError("offline")

    monkeypatch.setattr(fetch_demo.subprocess, "run", no_network)
    assert fetch_demo.main(["--dest", str(tmp_path)]) == 1
    assert not (tmp_path / fetch_demo.PACKAGE).exists()
