"""The dashboard in Debian's headless Chromium (Playwright, never a downloaded browser) during a real training run:
the token hand-over, the Train button, the loss curve gaining points, the spheres' activity changing, the time
left while training, and the held-out exact match and the skipped files once done; which model serves (the base
before the workspace has its own) and which base a fine-tuned model came from.

On a Ray cluster (step events whose spheres name two nodes) the sphere tiles are grouped by node, with a row per node.
A screenshot is kept in test-artifacts/dashboard.png (and dashboard-nodes.png)."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest
from conftest import require_program, write_c_workspace
from playwright.async_api import Page, async_playwright

from cllm.engine.model.checkpoint import load_checkpoint, save_checkpoint
from cllm.engine.events import SphereRecord, StepEvent, to_wire
from cllm.engine.paths import default_base_path

from cllm.server.acceptance import Report
from cllm.server.http.app import serve_http
from cllm.server.workspace import Workspace

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# A small model trained for ~100 steps: a few seconds, several step events (4 per second) and validation. The
# editors' default time budget (600 s) leaves a cold numba cache (first compile) time enough.
TRAINING = {"epochs": 6, "batchSize": 24, "seqLen": 32, "gradAccum": 1, "vocabSize": 300,
            "dModel": 32, "layers": 1, "heads": 2, "ffn": 64, "spheres": 12, "threads": 1}
SLOW = 240_000  # ms: the trainer child compiles or loads numba kernels before its first step


async def loss_points(page: Page) -> int:
    return int(await page.get_attribute("#loss-chart", "data-points"))


async def sphere_activity(page: Page) -> list[tuple[str, str]]:
    return await page.eval_on_selector_all("#spheres g.sphere", "gs => gs.map(g => [g.dataset.busy, g.dataset.tokens])")


async def watch_until_ready(page: Page) -> list[tuple[int, list, str]]:
    """(loss points, sphere activity, progress line) sampled every 100 ms while the page says "training"."""
    samples = []
    deadline = time.monotonic() + SLOW / 1000
    while await page.text_content("#state-badge") == "training" and time.monotonic() < deadline:
        samples.append((await loss_points(page), await sphere_activity(page), await page.text_content("#progress-text")))
        await page.wait_for_timeout(100)
    badge, reason = await page.text_content("#state-badge"), await page.text_content("#progress-text")
    assert badge == "ready", f"training ended {badge}: {reason}"
    return samples


async def follow_a_training_run(page: Page, url: str) -> None:
    """Open the dashboard link, press Train and check what the page shows while the run goes on."""
    await page.goto(url)
    await page.wait_for_function("() => !document.getElementById('train-button').disabled")
    assert "token" not in page.url, "the page strips the token from the address bar"
    assert await page.get_attribute('meta[name="cllm-token"]', "content") == ""
    assert await page.text_content("#state-badge") == "untrained"
    assert len(await sphere_activity(page)) == 12

    await page.click("#train-button")
    await page.wait_for_function("() => document.getElementById('state-badge').textContent !== 'untrained'")
    samples = await watch_until_ready(page)
    points = [p for p, _, _ in samples]
    activity = {tuple(map(tuple, a)) for _, a, _ in samples if any(tokens != "0" for _, tokens in a)}
    assert points == sorted(points) and len(set(points)) >= 3, f"the loss curve gains points: {points}"
    assert len(activity) >= 2, "the spheres' activity changes with the steps"
    progress = [line for _, _, line in samples]
    assert any(re.search(r"(<1|~\d+) min left", line) for line in progress), f"the time left is shown: {progress}"
    assert int(await page.get_attribute("#loss-chart", "data-val-points")) >= 1
    facts = await page.text_content("#facts")
    assert "validation bits/byte" in facts and "none yet" not in facts
    assert "origin" not in facts, "a model trained from scratch names no base"
    assert re.search(r"held-out line completion\d+ % lines exact", facts), facts
    assert "skipped files" in facts and "skipped 1: 1 binary" in facts
    assert await page.is_hidden("#sphere-nodes"), "on threads the spheres name no node"


async def check_read_only(page: Page, url: str) -> None:
    """Without the token link the page shows the status but offers no buttons and says how to get them."""
    await page.goto(f"{url}/?token=stale")
    await page.wait_for_function("() => document.getElementById('state-badge').textContent === 'ready'")
    assert await page.is_disabled("#train-button") and await page.is_disabled("#cancel-button")
    assert "out of date" in await page.text_content("#notice")
    assert "validation bits/byte" in await page.text_content("#facts")


async def test_dashboard_follows_a_training_run(tmp_path: Path):
    chromium = require_program("chromium")
    root = write_c_workspace(tmp_path / "ws", files=20)
    (root / "blob.h").write_bytes(b"\x00\x01\x02 not text")  # skipped as binary: the facts summarise it
    workspace = Workspace(root, settings={"training": TRAINING}, model_dir=tmp_path / "model")
    server = await serve_http(workspace, "127.0.0.1", 0)
    errors: list[str] = []
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = await browser.new_page(viewport={"width": 1360, "height": 900})
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            try:
                await follow_a_training_run(page, server.dashboard_url)
            except Exception:
                await page.screenshot(path=str(ARTIFACTS / "dashboard-failure.png"), full_page=True)
                raise
            await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            await check_read_only(await browser.new_page(), server.url)
            await browser.close()
    finally:
        await server.close()
        workspace.close()
    assert not errors, errors
    assert workspace.status()["model"]["present"]


async def test_dashboard_says_which_model_serves_and_its_base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             tiny_base_path: Path):
    """Before the workspace has a model the base serves, and the facts say so; a fine-tuned model names its base.
    The acceptance counts show under Suggestions."""
    chromium = require_program("chromium")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    default_base_path().parent.mkdir(parents=True)
    shutil.copyfile(tiny_base_path, default_base_path())
    workspace = Workspace(write_c_workspace(tmp_path / "ws", files=2), model_dir=tmp_path / "model")
    tuned = load_checkpoint(tiny_base_path)
    tuned.metadata["base"] = {"path": "/cache/cllm/base.cllm", "weights_sha256": "ab" * 32}
    workspace.acceptance.accepted(Report(workspace.acceptance.shown(12), 12))
    workspace.acceptance.shown(5)
    server = await serve_http(workspace, "127.0.0.1", 0)
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = await browser.new_page()
            await page.goto(server.dashboard_url)
            await page.wait_for_function("() => document.getElementById('facts').textContent.includes('origin')")
            facts = await page.text_content("#facts")
            assert "originserving: base model (fine-tune with Train on Workspace)" in facts, facts
            counts = await page.text_content("#acceptance")
            assert "shown2accepted whole1accepted in part0acceptance rate50 %characters accepted12" in counts, counts
            assert counts.endswith("characters typed by cllm today12"), counts
            (tmp_path / "model").mkdir(exist_ok=True)  # the index of the base may have made it
            save_checkpoint(tmp_path / "model" / "model.cllm", tuned)
            workspace.load()
            await page.reload()
            await page.wait_for_function("() => document.getElementById('facts').textContent.includes('fine-tuned')")
            assert "originfine-tuned from /cache/cllm/base.cllm" in await page.text_content("#facts")
            await browser.close()
    finally:
        await server.close()
        workspace.close()


def _two_node_step() -> dict:
    """A step event (wire form) of 12 spheres placed alternately on two Ray nodes, as Ray's SPREAD places them."""
    spheres = [SphereRecord(id=k, sequences=2, tokens=64, busy=0.02, wait=0.005, loss=3.0,
                            node="10.0.0.1" if k % 2 == 0 else "10.0.0.2", transfer=0.001 if k % 2 == 0 else 0.003)
               for k in range(12)]
    return to_wire(StepEvent(epoch=1, epochs=2, step=3, total_steps=10, loss=3.0, lr=1e-3, tokens=768,
                             tokens_per_second=500.0, load_imbalance=0.1, sync_overhead=0.2, threads=12,
                             spheres=spheres, seconds_remaining=30.0).to_json())


async def test_dashboard_groups_the_spheres_by_node(tmp_path: Path):
    """The event stream (routed in the browser) carries a Ray run's step: each node's spheres sit together on the
    ring, and the table under it names the nodes with their spheres and mean busy, wait and transfer times."""
    chromium = require_program("chromium")
    workspace = Workspace(write_c_workspace(tmp_path / "ws", files=2), model_dir=tmp_path / "model")
    server = await serve_http(workspace, "127.0.0.1", 0)
    status = {**workspace.status(), "training": {"state": "training"}}
    stream = "".join(f"data: {json.dumps(event)}\n\n" for event in ({"event": "status", "status": status},
                                                                     _two_node_step()))
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = await browser.new_page()
            await page.route("**/v1/events", lambda route: route.fulfill(
                status=200, content_type="text/event-stream", body=stream))
            await page.goto(server.dashboard_url)
            await page.wait_for_function("() => !document.getElementById('sphere-nodes').hidden")
            rows = await page.eval_on_selector_all("#sphere-nodes tbody tr",
                                                   "rows => rows.map(r => [...r.cells].map(c => c.textContent))")
            ring = await page.eval_on_selector_all("#spheres g.sphere", "gs => gs.map(g => [g.id, g.dataset.node])")
            title = await page.text_content("#sphere-1 title")
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "dashboard-nodes.png"), full_page=True)
            await browser.close()
    finally:
        await server.close()
        workspace.close()
    assert [row[:2] for row in rows] == [["10.0.0.1", "6 (1, 3, 5, 7, 9, 11)"], ["10.0.0.2", "6 (2, 4, 6, 8, 10, 12)"]]
    assert all(re.fullmatch(r"20(\.0)? ms", row[2]) and re.fullmatch(r"5(\.0)? ms", row[3]) for row in rows), rows
    assert re.fullmatch(r"1(\.0)? ms", rows[0][4]) and re.fullmatch(r"3(\.0)? ms", rows[1][4]), rows
    assert [node for _, node in ring] == ["10.0.0.1"] * 6 + ["10.0.0.2"] * 6
    assert [sphere for sphere, _ in ring[:3]] == ["sphere-0", "sphere-2", "sphere-4"]
    assert title.startswith("sphere 2 on 10.0.0.2:")
