/**
 * The CLLM extension: starts `cllm lsp` for C files and presents it. All model logic stays in Python.
 *
 * Palette commands use their own ids (cllm.startTraining, cllm.stopTraining, cllm.toggleSuggestions, cllm.showStatus,
 * cllm.openDashboard, cllm.restartServer, cllm.reinstallServer; cllm.acceptNextWord and cllm.acceptNextLine for
 * keys): vscode-languageclient already registers the server's own commands (cllm.trainWorkspace, cllm.cancelTraining,
 * cllm.status, cllm.dashboard, cllm.accepted, cllm.partiallyAccepted), and registering an id twice fails.
 */
import * as vscode from "vscode";

import { PARTIAL_COMMAND, PartialAccepts } from "./acceptance";
import { firstOffered, registerPartialAccepts } from "./accepting";
import { CopyStatus } from "./copyStatus";
import { PrivateServer } from "./privateServer";
import { onInterpreterChange } from "./pythonExtension";
import { CllmServer, isExecutable, suggestionsOn } from "./server";
import { Activity, isTraining, mergeActivity, parseStatus, stateFromStatus } from "./status";
import { ENABLE_KEY, toggleTarget } from "./suggestions";
import { SHOW_STATUS, StatusUi, TOGGLE_SUGGESTIONS } from "./ui";

const SERVER_TRAIN = "cllm.trainWorkspace";
const SERVER_CANCEL = "cllm.cancelTraining";
const SERVER_STATUS = "cllm.status";
const SERVER_DASHBOARD = "cllm.dashboard";

let server: CllmServer | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const output = vscode.window.createOutputChannel("CLLM", { log: true });
  const ui = new StatusUi(() => void stopTraining());
  ui.setEnabled(suggestionsOn());
  const copies = new CopyStatus();
  context.subscriptions.push(copies);
  let wasTraining = false;
  const partialAccepts = new PartialAccepts();

  const cllm = new CllmServer(output, {
    activity: (activity: Activity) => {
      if (isTraining(activity.state)) {
        wasTraining = true;
        ui.set(mergeActivity(ui.view, activity));
      } else {
        void refreshStatus();
      }
    },
    started: () => void refreshStatus(),
    failed: (problem) => ui.set({ kind: "error", message: `${problem.problem} ${problem.fix}` }),
    offered: (document, position, result) => partialAccepts.offered(firstOffered(document, position, result)),
    suggested: (source, document, position) => copies.show(source, document, position),
  }, new PrivateServer(context, output, isExecutable));
  server = cllm;

  /** Ask the server for its status and show it; a failed training run is reported once. */
  async function refreshStatus(): Promise<void> {
    if (!cllm.running) return;
    try {
      const status = parseStatus(await cllm.execute(SERVER_STATUS, folderArgs()));
      if (!status) return;
      ui.set(status.enabled === false ? { kind: "disabled" } : stateFromStatus(status), status);
      if (wasTraining && !isTraining(status.training.state)) {
        wasTraining = false;
        if (status.training.state === "failed") {
          void vscode.window.showWarningMessage(`CLLM: training failed: ${status.training.reason ?? "see Output \u203a CLLM"}`);
        }
      }
      wasTraining = wasTraining || isTraining(status.training.state);
    } catch (error) {
      output.warn(`cllm.status failed: ${String(error)}`);
    }
  }

  async function startTraining(): Promise<void> {
    if (!(await cllm.ensureRunning())) return;
    const result = (await cllm.execute(SERVER_TRAIN, folderArgs())) as { started?: boolean } | undefined;
    if (result?.started) {
      wasTraining = true;
      ui.set(mergeActivity(ui.view, { state: "training" }));
    }
  }

  async function stopTraining(): Promise<void> {
    if (!cllm.running) return;
    const result = (await cllm.execute(SERVER_CANCEL, folderArgs())) as { cancelled?: boolean } | undefined;
    if (!result?.cancelled) void vscode.window.showInformationMessage("CLLM: no training is running.");
  }

  async function showStatus(): Promise<void> {
    await refreshStatus();
    ui.showPanel();
  }

  /** The server starts the folder's HTTP face on a free loopback port (training carries on) and returns its link. */
  async function openDashboard(): Promise<void> {
    if (!(await cllm.ensureRunning())) return;
    if (!cllm.offers(SERVER_DASHBOARD)) {
      void vscode.window.showErrorMessage(`CLLM: this cllm language server has no ${SERVER_DASHBOARD} command; update cllm.`);
      return;
    }
    const answer = (await cllm.execute(SERVER_DASHBOARD, folderArgs())) as { url?: string; error?: string } | undefined;
    if (answer?.url) {
      await showDashboard(answer.url);
    } else {
      void vscode.window.showErrorMessage(`CLLM: the dashboard is not available: ${answer?.error ?? "no address"}`);
    }
  }

  context.subscriptions.push(
    output,
    ui,
    vscode.commands.registerCommand("cllm.startTraining", startTraining),
    vscode.commands.registerCommand("cllm.stopTraining", stopTraining),
    vscode.commands.registerCommand(TOGGLE_SUGGESTIONS, toggleSuggestions),
    vscode.commands.registerCommand(SHOW_STATUS, showStatus),
    vscode.commands.registerCommand("cllm.openDashboard", openDashboard),
    ...registerPartialAccepts(partialAccepts, (report) =>
      cllm.execute(PARTIAL_COMMAND, [report]).catch((error) => output.warn(`${PARTIAL_COMMAND} failed: ${String(error)}`))),
    vscode.commands.registerCommand("cllm.restartServer", async () => {
      ui.set({ kind: "starting" });
      await cllm.restart();
    }),
    vscode.commands.registerCommand("cllm.reinstallServer", async () => {
      ui.set({ kind: "starting" });
      await cllm.reinstall();
    }),
    vscode.workspace.onDidChangeConfiguration(async (event) => {
      if (event.affectsConfiguration("cllm.server") || event.affectsConfiguration("cllm.python")) {
        output.info("The server settings changed: restarting the language server.");
        ui.set({ kind: "starting" });
        await cllm.restart();
      } else if (event.affectsConfiguration("cllm")) {
        ui.setEnabled(suggestionsOn());
  const copies = new CopyStatus();
  context.subscriptions.push(copies);
        await cllm.sendSettings();
        await refreshStatus();
      }
    }),
  );
  const interpreterWatch = await onInterpreterChange(async () => {
    output.info("The Python extension's interpreter changed: restarting the language server.");
    ui.set({ kind: "starting" });
    await cllm.restart();
  });
  if (interpreterWatch) context.subscriptions.push(interpreterWatch);
  // Not awaited: a first start may install the server for minutes, and commands wait for activation to end.
  void cllm.start();
}

export async function deactivate(): Promise<void> {
  await server?.stop();
  server = undefined;
}

/**
 * Open the dashboard link in the user's browser. The dashboard listens on the loopback address of the machine
 * that runs the language server; in a browser-based or remote VS Code, `openExternal` would send a loopback
 * link through the editor's port forwarding, which the dashboard refuses (its Host check), so the link is
 * offered for copying instead.
 */
async function showDashboard(url: string): Promise<void> {
  if (vscode.env.uiKind === vscode.UIKind.Desktop && !vscode.env.remoteName) {
    await vscode.env.openExternal(vscode.Uri.parse(url, true));
    return;
  }
  const where = new URL(url).host;
  const choice = await vscode.window.showInformationMessage(
    `CLLM: the dashboard listens on ${where} on the machine that runs the language server. Open its link in a browser there (or forward the port).`,
    "Copy Link",
  );
  if (choice === "Copy Link") await vscode.env.clipboard.writeText(url);
}

/** Flip `cllm.enable` where it is set (suggestions.ts); the configuration handler in `activate` tells the server. */
async function toggleSuggestions(): Promise<void> {
  const config = vscode.workspace.getConfiguration("cllm");
  const workspace = toggleTarget(config.inspect(ENABLE_KEY)) === "workspace";
  await config.update(ENABLE_KEY, !suggestionsOn(), workspace ? vscode.ConfigurationTarget.Workspace : vscode.ConfigurationTarget.Global);
}

/** The server command argument naming the workspace folder of the active editor (else the first folder). */
function folderArgs(): unknown[] {
  const active = vscode.window.activeTextEditor?.document.uri;
  const folder = (active && vscode.workspace.getWorkspaceFolder(active)) ?? vscode.workspace.workspaceFolders?.[0];
  return folder ? [folder.uri.toString()] : [];
}
