"""training_data/build_base.py: the NOTICE names every project of the corpus manifest with its licence."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "training_data" / "build_base.py"
MANIFEST = SCRIPT.parent / "base_corpus" / "MANIFEST.md"


def load_script():
    spec = importlib.util.spec_from_file_location("build_base", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_notice_lists_every_manifest_entry_with_its_licence():
    rows = [line for line in MANIFEST.read_text().splitlines() if line.split("|")[1:2] and line.split("|")[1].strip().isdigit()]
    text = load_script().notice(MANIFEST.read_text())
    entries = [line for line in text.splitlines() if line.startswith("- ")]
    assert len(entries) == len(rows) == 50
    assert "- LZFSE reference implementation (Apple) (lzfse==0.4.2.post1): BSD-3-Clause" in entries
    assert all(": " in entry for entry in entries)
