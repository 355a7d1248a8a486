#!/usr/bin/env node
// End-to-end run of the packaged extension in a real VS Code: code-server driven by Debian's Chromium through
// playwright-core. Installs the .vsix, opens the workspace, runs "CLLM: Train on Workspace" from the command
// palette, follows the status bar through training to ready, types in a C file until ghost text appears, and
// saves a screenshot. Prints one JSON object (what was seen) on stdout; exits non-zero on any failure.
//
// Usage: node e2e-code-server.mjs --code-server DIR --vsix FILE --workspace DIR --file REL (--cllm PATH | --fresh)
//                                 --screenshot FILE --type TEXT [--timeout SECONDS] [--root DIR]
// TEXT is typed at the end of the file REL before waiting for ghost text. With --cllm the server is that
// executable (cllm.server.path), and the run goes on to accepting a word of the ghost text and then the rest (the
// Show Status counts after each), turning suggestions off and on by clicking the status bar,
// the dashboard and a wrong server path. With --fresh no server is configured: the extension installs its own; the
// run ends at the ghost text and records the times.
// DIR (default: a new temporary folder) holds the code-server profile and its log.
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";

import { chromium } from "playwright-core";

const { values: opts } = parseArgs({
  options: {
    "code-server": { type: "string" },
    vsix: { type: "string" },
    workspace: { type: "string" },
    file: { type: "string" },
    cllm: { type: "string" },
    fresh: { type: "boolean", default: false },
    screenshot: { type: "string" },
    type: { type: "string" },
    timeout: { type: "string", default: "240" },
    root: { type: "string" },
  },
});
for (const key of ["code-server", "vsix", "workspace", "file", "screenshot", "type"]) {
  if (!opts[key]) fail(`missing --${key}`);
}
if (!opts.cllm === !opts.fresh) fail("give one of --cllm and --fresh");
const started = Date.now();
const deadline = Date.now() + Number(opts.timeout) * 1000;
const entry = path.join(opts["code-server"], "out", "node", "entry.js");
const STATUS_ITEM = "#workbench\\.parts\\.statusbar [id$='cllm.status']";
const seen = { statusTexts: [], progressNotification: "", statusView: "", ghostText: "", suggestionsOff: null, dashboard: null, serverMissing: [], steps: [], installNotification: "", seconds: {}, acceptance: {} };

function fail(message) {
  process.stderr.write(`e2e-code-server: ${message}\n`);
  process.exit(1);
}

/** Seconds since the run started (before the extension is installed), recorded under `what`. */
function mark(what) {
  seen.seconds[what] = Math.round((Date.now() - started) / 100) / 10;
}

function step(message) {
  seen.steps.push(message);
  process.stderr.write(`e2e-code-server: ${message}\n`);
}

function remaining() {
  const ms = deadline - Date.now();
  if (ms <= 0) throw new Error("out of time");
  return ms;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

async function waitForHttp(url) {
  while (true) {
    try {
      const response = await fetch(url);
      if (response.ok) return;
    } catch {
      // not listening yet
    }
    if (remaining() < 0) return;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** A fresh profile (user data, extensions, config) for every run: no hot-exit backups or state carry over. */
function makeProfile(root) {
  const dirs = { userData: path.join(root, "user-data"), extensions: path.join(root, "extensions"), home: path.join(root, "home") };
  for (const dir of Object.values(dirs)) fs.mkdirSync(dir, { recursive: true });
  if (opts.cllm) {
    // cllm.server.path is machine-scoped: in code-server (a remote window) it belongs in the Machine settings.
    fs.mkdirSync(path.join(dirs.userData, "Machine"), { recursive: true });
    fs.writeFileSync(path.join(dirs.userData, "Machine", "settings.json"), JSON.stringify({ "cllm.server.path": opts.cllm }));
  }
  fs.mkdirSync(path.join(dirs.userData, "User"), { recursive: true });
  fs.writeFileSync(
    path.join(dirs.userData, "User", "settings.json"),
    JSON.stringify({
      "workbench.startupEditor": "none",
      "workbench.tips.enabled": false,
      "workbench.enableExperiments": false,
      "security.workspace.trust.enabled": false,
      "telemetry.telemetryLevel": "off",
      "extensions.autoCheckUpdates": false,
      "extensions.autoUpdate": false,
      "update.mode": "none",
      "files.hotExit": "off",
      "editor.inlineSuggest.enabled": true,
      "editor.quickSuggestions": { other: false, comments: false, strings: false },
      "editor.suggestOnTriggerCharacters": false,
      "editor.minimap.enabled": false,
      "editor.autoClosingBrackets": "never",
      "editor.autoClosingQuotes": "never",
      "editor.autoIndent": "none",
      "window.commandCenter": false,
      "chat.commandCenter.enabled": false,
    }, null, 2),
  );
  dirs.config = path.join(root, "config.yaml");
  fs.writeFileSync(dirs.config, "auth: none\ncert: false\n");
  return dirs;
}

async function main() {
  const root = opts.root ?? fs.mkdtempSync(path.join(os.tmpdir(), "cllm-vscode-e2e-"));
  fs.mkdirSync(root, { recursive: true });
  const profile = makeProfile(root);
  const env = { ...process.env, HOME: profile.home, XDG_CONFIG_HOME: path.join(profile.home, ".config"), XDG_DATA_HOME: path.join(profile.home, ".local", "share") };
  const common = ["--user-data-dir", profile.userData, "--extensions-dir", profile.extensions, "--config", profile.config];

  step("installing the extension");
  const install = spawnSync(process.execPath, [entry, ...common, "--install-extension", opts.vsix], { env, encoding: "utf8", timeout: 120_000 });
  if (install.status !== 0) throw new Error(`--install-extension failed: ${install.stdout}${install.stderr}`);

  const port = await freePort();
  step(`starting code-server on 127.0.0.1:${port}`);
  const server = spawn(process.execPath, [entry, ...common, "--bind-addr", `127.0.0.1:${port}`, "--auth", "none",
    "--disable-telemetry", "--disable-update-check", "--disable-workspace-trust", "--disable-getting-started-override",
    "--disable-proxy", opts.workspace], { env, stdio: ["ignore", "pipe", "pipe"], detached: true });
  const serverLog = fs.createWriteStream(path.join(root, "code-server.log"));
  server.stdout.pipe(serverLog);
  server.stderr.pipe(serverLog);
  let browser;
  try {
    await waitForHttp(`http://127.0.0.1:${port}/healthz`);
    browser = await chromium.launch({
      executablePath: "/usr/bin/chromium",
      headless: true,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
    });
    const context = await browser.newContext({ viewport: { width: 1400, height: 860 } });
    await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: `http://127.0.0.1:${port}` });
    const page = await context.newPage();
    await drive(page, port);
    if (!opts.fresh) {
      await acceptGhostText(page);
      await toggleSuggestions(page);
      await openDashboard(page);
      await breakServerPath(page);
    }
  } finally {
    await browser?.close().catch(() => undefined);
    try {
      process.kill(-server.pid, "SIGTERM");
    } catch {
      // already gone
    }
    process.stderr.write(`e2e-code-server: code-server log in ${path.join(root, "code-server.log")}\n`);
  }
}

async function statusText(page) {
  const item = page.locator(STATUS_ITEM).first();
  const text = ((await item.textContent({ timeout: 2000 }).catch(() => "")) ?? "").trim();
  if (text && seen.statusTexts[seen.statusTexts.length - 1] !== text) seen.statusTexts.push(text);
  return text;
}

/** The training progress notification's text, if one is showing. */
async function progressNotification(page) {
  const toast = page.locator(".notifications-toasts .notification-toast", { hasText: "CLLM training" }).first();
  const message = toast.locator(".notification-list-item-message");
  const text = ((await message.innerText({ timeout: 200 }).catch(() => "")) ?? "").trim();
  if (text) seen.progressNotification = text;
}

/** The server install's progress notification's title and message, if one is showing. */
async function installNotification(page) {
  const toast = page.locator(".notifications-toasts .notification-toast", { hasText: "installing the language server" }).first();
  const text = ((await toast.locator(".notification-list-item-message").innerText({ timeout: 200 }).catch(() => "")) ?? "").trim();
  if (text) seen.installNotification = text;
}

/** Poll the status-bar item (and the progress notification) until `predicate(text)` holds. */
async function waitForStatus(page, predicate, what) {
  while (true) {
    const text = await statusText(page);
    if (!seen.progressNotification) await progressNotification(page);
    if (!seen.installNotification) await installNotification(page);
    if (predicate(text)) return text;
    if (deadline - Date.now() <= 0) throw new Error(`status bar never showed ${what}; saw ${JSON.stringify(seen.statusTexts)}`);
    await page.waitForTimeout(100);
  }
}

async function runCommand(page, title) {
  await page.keyboard.press("F1");
  const input = page.locator(".quick-input-box input.input");
  await input.waitFor({ state: "visible", timeout: remaining() });
  await input.fill(`>${title}`);
  await page.locator(".quick-input-list .monaco-list-row", { hasText: title }).first().waitFor({ timeout: remaining() });
  await page.keyboard.press("Enter");
}

async function drive(page, port) {
  step("opening the workspace");
  await page.goto(`http://127.0.0.1:${port}/?folder=${encodeURIComponent(opts.workspace)}`);
  await page.locator(".monaco-workbench").waitFor({ timeout: remaining() });
  await waitForStatus(page, (text) => /untrained|CLLM ·/.test(text), "the server's first state");
  mark("serverRunning");

  step("running CLLM: Train on Workspace");
  await runCommand(page, "CLLM: Train on Workspace");
  await waitForStatus(page, (text) => /spheres/.test(text), "training");
  await waitForStatus(page, (text) => /^\u2b22 CLLM ·/.test(text), "ready");
  mark("trained");

  step(`opening ${opts.file}`);
  await page.keyboard.press("Control+P");
  const input = page.locator(".quick-input-box input.input");
  await input.waitFor({ state: "visible", timeout: remaining() });
  await input.fill(opts.file);
  await page.locator(".quick-input-list .monaco-list-row", { hasText: path.basename(opts.file) }).first().waitFor({ timeout: remaining() });
  await page.keyboard.press("Enter");
  const editor = page.locator(".editor-instance .monaco-editor textarea").first();
  await editor.waitFor({ state: "attached", timeout: remaining() });
  step("running CLLM: Show Status");
  await runCommand(page, "CLLM: Show Status");
  const view = page.frameLocator("iframe.webview.ready").frameLocator("#active-frame").locator("body");
  await view.getByText("Held-out bits per byte").waitFor({ timeout: remaining() });
  seen.statusView = (await view.innerText()).trim();

  await page.locator(".editor-instance .view-lines").first().click();
  await page.keyboard.press("Control+End");

  step("typing until ghost text appears");
  const ghost = page.locator(".ghost-text-decoration, .ghost-text-decoration-preview, .ghost-text");
  await page.keyboard.type(opts.type, { delay: 10 });
  for (let attempt = 0; !seen.ghostText; attempt++) {
    if (attempt % 2) {
      await page.keyboard.type(" ");
      await page.keyboard.press("Backspace");
    }
    await page.keyboard.press("Alt+\\"); // editor.action.inlineSuggest.trigger
    await ghost.first().waitFor({ state: "attached", timeout: 5000 }).catch(() => undefined);
    seen.ghostText = ((await ghost.allTextContents()).join("")).trim();
    if (deadline - Date.now() <= 0) throw new Error("no ghost text appeared");
  }
  mark("ghostText");
  step(`ghost text: ${JSON.stringify(seen.ghostText)}`);
  await statusText(page);
  fs.mkdirSync(path.dirname(opts.screenshot), { recursive: true });
  await page.screenshot({ path: opts.screenshot });
}

/** Ctrl+Right takes the ghost text's next word (cllm.acceptNextWord), Tab the rest: Show Status counts both. */
async function acceptGhostText(page) {
  const view = page.frameLocator("iframe.webview.ready").frameLocator("#active-frame").locator("body");
  const suggestions = async () => (await view.innerText()).split("Suggestions")[1]?.split("Spheres")[0]?.trim() ?? "";
  const before = await suggestions();
  const counts = async (label) => {
    const previous = seen.acceptance.afterWord ?? before;
    await runCommand(page, "CLLM: Show Status");
    await view.getByText("Characters typed by cllm today").waitFor({ timeout: remaining() });
    for (let tries = 0; tries < 50 && (seen.acceptance[label] = await suggestions()) === previous; tries++) {
      await page.waitForTimeout(200); // the view shows the new counts once the server has answered cllm.status
    }
    await page.keyboard.press("Control+1"); // back to the C file's editor group, the cursor where it was
  };
  step("accepting the ghost text's next word, then the rest");
  await page.keyboard.press("Control+ArrowRight");
  await page.waitForTimeout(1000);
  await counts("afterWord");
  const ghost = page.locator(".ghost-text-decoration, .ghost-text-decoration-preview, .ghost-text");
  for (let tries = 0; tries < 50 && !seen.acceptance.ghostBeforeTab; tries++) {
    if (tries % 10 === 0) {
      await page.keyboard.type(" ");
      await page.keyboard.press("Backspace");
      await page.keyboard.press("Alt+\\"); // editor.action.inlineSuggest.trigger
    }
    await page.waitForTimeout(200);
    seen.acceptance.ghostBeforeTab = (await ghost.allTextContents()).join("").trim();
  }
  await page.keyboard.press("Tab");
  await page.waitForTimeout(1000);
  await counts("afterTab");
}

/** A click on the status-bar item turns suggestions off (no ghost text however asked), a second one on again. */
async function toggleSuggestions(page) {
  step("clicking the status-bar item: suggestions off");
  const item = page.locator(STATUS_ITEM).first();
  await item.click();
  const off = await waitForStatus(page, (text) => /CLLM off/.test(text), "suggestions off");
  await page.locator(".editor-instance .view-lines").first().click();
  await page.keyboard.press("Control+End");
  const ghost = page.locator(".ghost-text-decoration, .ghost-text-decoration-preview, .ghost-text");
  await page.keyboard.type(" ");
  await page.keyboard.press("Backspace");
  await page.keyboard.press("Alt+\\");
  await page.waitForTimeout(3000);
  seen.suggestionsOff = { status: off, ghostText: (await ghost.allTextContents()).join("").trim() };
  step("clicking the status-bar item again: suggestions on");
  await item.click();
  seen.suggestionsOff.statusAfter = await waitForStatus(page, (text) => /^\u2b22 CLLM ·/.test(text), "ready again");
  // The item's tooltip (it holds a link, so it stays while the pointer is near) would cover the notifications.
  await page.mouse.move(10, 10);
  await page.keyboard.press("Escape");
  await page.locator(".context-view .monaco-hover").first().waitFor({ state: "hidden", timeout: 5000 }).catch(() => undefined);
}

async function openDashboard(page) {
  step("running CLLM: Open Dashboard");
  await runCommand(page, "CLLM: Open Dashboard");
  // In a browser-based VS Code the extension offers the link (it cannot open loopback links through the
  // editor's port forwarding); this browser runs on the server's machine, so the link works here.
  const copy = page.locator(".notification-toast", { hasText: "dashboard listens on" }).getByRole("button", { name: "Copy Link" });
  await copy.waitFor({ timeout: remaining() });
  await copy.click();
  let link = "";
  while (!link.startsWith("http")) {
    await page.waitForTimeout(200);
    link = await page.evaluate(() => navigator.clipboard.readText());
    remaining();
  }
  const dashboard = await page.context().newPage();
  await dashboard.goto(link);
  const state = await dashboard.locator("meta[name=cllm-token]").getAttribute("data-state", { timeout: remaining() });
  const url = new URL(link);
  seen.dashboard = { host: url.host, tokenState: state, title: await dashboard.title() };
  await dashboard.screenshot({ path: opts.screenshot.replace(/\.png$/, "-dashboard.png") });
}

/** A wrong cllm.server.path must give one notification with the fix and an error state, not a crash loop. */
async function breakServerPath(page) {
  step("pointing cllm.server.path at a missing file (workspace settings)");
  const file = path.join(opts.workspace, ".vscode", "settings.json");
  const settings = JSON.parse(fs.readFileSync(file, "utf8"));
  await page.keyboard.press("Control+P");
  const input = page.locator(".quick-input-box input.input");
  await input.waitFor({ state: "visible", timeout: remaining() });
  await input.fill(".vscode/settings.json");
  await page.locator(".quick-input-list .monaco-list-row", { hasText: "settings.json" }).first().waitFor({ timeout: remaining() });
  await page.keyboard.press("Enter");
  await page.locator(".tab.active", { hasText: "settings.json" }).waitFor({ timeout: remaining() });
  await page.waitForTimeout(500);
  await page.keyboard.press("Control+A");
  await page.keyboard.press("Backspace");
  await page.keyboard.insertText(JSON.stringify({ ...settings, "cllm.server.path": "/nonexistent/cllm" }, null, 2));
  await page.keyboard.press("Control+S");
  await page.waitForTimeout(500);
  if (JSON.parse(fs.readFileSync(file, "utf8"))["cllm.server.path"] !== "/nonexistent/cllm") throw new Error("settings not saved");
  const toast = page.locator(".notifications-toasts .notification-toast", { hasText: "not an executable file" });
  await toast.first().waitFor({ timeout: remaining() });
  await page.waitForTimeout(3000);
  seen.serverMissing = (await toast.locator(".notification-list-item-message").allInnerTexts()).map((text) => text.trim());
  const item = page.locator(STATUS_ITEM).first();
  seen.errorStatus = { text: await statusText(page), codicon: await item.locator(".codicon-error").count() };
}

main()
  .then(() => {
    process.stdout.write(`${JSON.stringify(seen)}\n`);
    process.exit(0);
  })
  .catch((error) => {
    process.stdout.write(`${JSON.stringify({ ...seen, error: String(error?.stack ?? error) })}\n`);
    process.exit(1);
  });
