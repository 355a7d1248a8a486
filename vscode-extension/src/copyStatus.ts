/**
 * The status-bar item that says, while ghost text copied from the workspace is shown, where it came from
 * (copySource.ts); a click opens that file at that line. It hides when the next suggestion is no copy, or the
 * cursor or the editor moves on.
 */
import * as vscode from "vscode";

import { CopySource, sourceLabel } from "./copySource";

export class CopyStatus implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem("cllm.copySource", vscode.StatusBarAlignment.Right, 99);
  private readonly watches: vscode.Disposable[];
  private shownAt: { uri: string; position: vscode.Position } | undefined;

  constructor() {
    this.item.name = "CLLM: where the suggestion was copied from";
    this.watches = [
      vscode.window.onDidChangeActiveTextEditor(() => this.hide()),
      vscode.window.onDidChangeTextEditorSelection((event) => {
        const here = event.selections[0]?.active;
        const shown = this.shownAt;
        if (!shown || event.textEditor.document.uri.toString() !== shown.uri || !here?.isEqual(shown.position)) {
          this.hide();
        }
      }),
    ];
  }

  /** The answer at `position` of `document` was copied from `source` (undefined: it was not a copy). */
  show(source: CopySource | undefined, document: vscode.TextDocument, position: vscode.Position): void {
    if (!source) return this.hide();
    const folder = vscode.workspace.getWorkspaceFolder(document.uri);
    const label = sourceLabel(source);
    this.item.text = label.text;
    this.item.tooltip = label.tooltip;
    if (folder) {
      const line = new vscode.Position(source.line - 1, 0);
      this.item.command = { title: "Open", command: "vscode.open",
        arguments: [vscode.Uri.joinPath(folder.uri, source.path), { selection: new vscode.Range(line, line) }] };
    }
    this.shownAt = { uri: document.uri.toString(), position };
    this.item.show();
  }

  hide(): void {
    this.shownAt = undefined;
    this.item.hide();
  }

  dispose(): void {
    this.watches.forEach((watch) => watch.dispose());
    this.item.dispose();
  }
}
