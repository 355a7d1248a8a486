/**
 * Partial accepts of cllm's suggestions, told to the server (acceptance.ts says why VS Code needs this): the
 * extension's "accept next word / line" commands, bound to VS Code's own key for the word (package.json), run VS
 * Code's command and report the characters it inserted when they are the next piece of cllm's suggestion.
 */
import * as vscode from "vscode";

import { AcceptReport, Offered, PartialAccepts } from "./acceptance";

export const ACCEPT_NEXT_WORD = "cllm.acceptNextWord";
export const ACCEPT_NEXT_LINE = "cllm.acceptNextLine";
const BUILT_IN: Record<string, string> = {
  [ACCEPT_NEXT_WORD]: "editor.action.inlineSuggest.acceptNextWord",
  [ACCEPT_NEXT_LINE]: "editor.action.inlineSuggest.acceptNextLine",
};

/** The first suggestion of an inline completion answer, as the tracker reads it. */
export function firstOffered(
  document: vscode.TextDocument,
  position: vscode.Position,
  result: vscode.InlineCompletionItem[] | vscode.InlineCompletionList | null | undefined,
): Offered | undefined {
  const item = Array.isArray(result) ? result[0] : result?.items[0];
  if (!item || typeof item.insertText !== "string") return undefined;
  return { uri: document.uri.toString(), offset: document.offsetAt(position), text: item.insertText, command: item.command };
}

/** Register the partial-accept commands; `send` passes a report to the server's `cllm.partiallyAccepted`. */
export function registerPartialAccepts(tracker: PartialAccepts, send: (report: AcceptReport) => Promise<unknown>): vscode.Disposable[] {
  return Object.entries(BUILT_IN).map(([ours, builtIn]) => vscode.commands.registerCommand(ours, () => acceptPart(builtIn, tracker, send)));
}

async function acceptPart(builtIn: string, tracker: PartialAccepts, send: (report: AcceptReport) => Promise<unknown>): Promise<void> {
  const editor = vscode.window.activeTextEditor;
  const before = editor && { version: editor.document.version, offset: editor.document.offsetAt(editor.selection.active) };
  await vscode.commands.executeCommand(builtIn);
  if (!editor || !before || editor.document.version === before.version) return;
  const document = editor.document;
  const after = document.offsetAt(editor.selection.active);
  if (after <= before.offset) return;
  const inserted = document.getText(new vscode.Range(document.positionAt(before.offset), document.positionAt(after)));
  const report = tracker.took(document.uri.toString(), before.offset, inserted);
  if (report) await send(report);
}
