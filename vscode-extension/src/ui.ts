/**
 * What the user sees: the status-bar item (a click toggles suggestions; its tooltip links to the status), the
 * training progress notification (with Cancel) and the "Show Status" webview. The words come from the plain modules
 * status.ts, suggestions.ts and report.ts.
 */
import * as vscode from "vscode";

import { renderStatusPage } from "./report";
import { Activity, ServerStatus, ViewState, isTraining, progressMessage, progressPercent, statusText } from "./status";
import { shownState } from "./suggestions";

export const SHOW_STATUS = "cllm.showStatus";
export const TOGGLE_SUGGESTIONS = "cllm.toggleSuggestions";

/** Holds the current view state and keeps every surface in step with it. */
export class StatusUi implements vscode.Disposable {
  private state: ViewState = { kind: "starting" };
  private enabled = true;
  private status: ServerStatus | undefined;
  private problem: string | undefined;
  private readonly item: vscode.StatusBarItem;
  private panel: vscode.WebviewPanel | undefined;
  private progress: { report: vscode.Progress<{ message?: string; increment?: number }>; done: () => void; shown: number } | undefined;
  private progressOpening = false;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly cancelTraining: () => void) {
    this.item = vscode.window.createStatusBarItem("cllm.status", vscode.StatusBarAlignment.Right, 100);
    this.item.name = "CLLM";
    this.item.command = TOGGLE_SUGGESTIONS;
    this.render();
    this.item.show();
    this.timer = setInterval(() => this.render(), 60_000); // the model's age
  }

  get view(): ViewState {
    return this.state;
  }

  /** Show a new state (and the status object it came from, when there is one). */
  set(state: ViewState, status?: ServerStatus): void {
    this.state = state;
    if (status) this.status = status;
    this.problem = state.kind === "error" ? state.message : undefined;
    this.render();
  }

  /** Whether suggestions are on (the `cllm.enable` setting): while off the status bar says so. */
  setEnabled(enabled: boolean): void {
    this.enabled = enabled;
    this.render();
  }

  dispose(): void {
    clearInterval(this.timer);
    this.endProgress();
    this.panel?.dispose();
    this.item.dispose();
  }

  /** Open (or reveal) the status view. */
  showPanel(): void {
    if (this.panel) {
      this.panel.reveal(vscode.ViewColumn.Beside, true);
    } else {
      this.panel = vscode.window.createWebviewPanel("cllmStatus", "CLLM Status", { viewColumn: vscode.ViewColumn.Beside, preserveFocus: true }, { enableScripts: false });
      this.panel.onDidDispose(() => (this.panel = undefined));
    }
    this.render();
  }

  private render(): void {
    const words = statusText(shownState(this.state, this.enabled), new Date());
    this.item.text = words.text;
    const tooltip = new vscode.MarkdownString().appendText(words.tooltip).appendMarkdown(`\n\n[Show Status](command:${SHOW_STATUS})`);
    tooltip.isTrusted = { enabledCommands: [SHOW_STATUS] };
    this.item.tooltip = tooltip;
    this.item.backgroundColor = words.error ? new vscode.ThemeColor("statusBarItem.errorBackground") : undefined;
    const activity = this.state.kind === "training" ? this.state.activity : undefined;
    if (activity) this.reportProgress(activity);
    else this.endProgress();
    if (this.panel) this.panel.webview.html = renderStatusPage(this.status, activity, new Date(), this.problem);
  }

  private reportProgress(activity: Activity): void {
    if (!isTraining(activity.state)) return;
    if (!this.progress) {
      if (this.progressOpening) return;
      this.progressOpening = true;
      void vscode.window.withProgress(
        { location: vscode.ProgressLocation.Notification, title: "CLLM training", cancellable: true },
        (report, token) =>
          new Promise<void>((resolve) => {
            this.progressOpening = false;
            if (this.state.kind !== "training") return resolve();
            token.onCancellationRequested(() => this.cancelTraining());
            this.progress = { report, done: resolve, shown: 0 };
            this.reportProgress(this.state.activity);
          }),
      );
      return;
    }
    const percent = progressPercent(activity);
    const increment = percent !== undefined && percent > this.progress.shown ? percent - this.progress.shown : undefined;
    if (increment) this.progress.shown += increment;
    this.progress.report.report({ message: progressMessage(activity), increment });
  }

  private endProgress(): void {
    this.progress?.done();
    this.progress = undefined;
  }
}
