/**
 * Acceptance of suggestions: which part of the suggestion on screen a partial accept took, and the status view's
 * rows of the server's counts. No `vscode` import: unit-tested directly.
 *
 * The server counts a suggestion as shown when it returns it and puts on each one the command `cllm.accepted`, which
 * VS Code runs when the suggestion is taken whole (Tab). VS Code 1.99's stable API reports no partial accept (the
 * provider's handleDidPartiallyAcceptCompletionItem is the proposed API `inlineCompletionsAdditions`), so the
 * extension's own "accept next word / line" commands (accepting.ts) run VS Code's and tell the server, through
 * `cllm.partiallyAccepted`, how many characters of the suggestion they inserted (docs/protocol.md).
 */
import { formatCount } from "./format";
import type { Row } from "./report";

export const ACCEPTED_COMMAND = "cllm.accepted";
export const PARTIAL_COMMAND = "cllm.partiallyAccepted";

/** The argument of `cllm.accepted` and `cllm.partiallyAccepted`: which suggestion, and how many characters. */
export interface AcceptReport {
  workspace?: string;
  id: string;
  chars: number;
}

/** A suggestion as VS Code received it: where it starts, its text and the command run when it is taken whole. */
export interface Offered {
  uri: string;
  /** The document offset of the cursor the suggestion continues. */
  offset: number;
  text: string;
  command?: { command: string; arguments?: unknown[] };
}

/** `status().acceptance`: the server's counts for the workspace (server/acceptance.py). */
export interface AcceptanceCounts {
  shown: number;
  accepted: number;
  partiallyAccepted: number;
  /** (accepted + partiallyAccepted) / shown, null before anything was shown. */
  acceptanceRate: number | null;
  charactersAccepted: number;
  charactersToday: number;
}

/** The report carried by a suggestion's command, or undefined when the command is not cllm's accept command. */
export function reportOf(command: Offered["command"]): AcceptReport | undefined {
  const argument = command?.command === ACCEPTED_COMMAND ? command.arguments?.[0] : undefined;
  if (typeof argument !== "object" || argument === null) return undefined;
  const { id, chars, workspace } = argument as Record<string, unknown>;
  if (typeof id !== "string" || typeof chars !== "number") return undefined;
  return typeof workspace === "string" ? { workspace, id, chars } : { id, chars };
}

/** Characters as the server counts them (code points, a line break as one). */
export function characterCount(text: string): number {
  return [...text.replace(/\r\n/g, "\n")].length;
}

/** The newest cllm suggestion VS Code received, and how much of it partial accepts took so far. */
export class PartialAccepts {
  private current: { uri: string; at: number; rest: string; report: AcceptReport } | undefined;

  /** A new inline completion answer: its suggestion is the one partial accepts take from (none: forget). */
  offered(offered: Offered | undefined): void {
    const report = offered && reportOf(offered.command);
    this.current = offered && report ? { uri: offered.uri, at: offered.offset, rest: offered.text, report } : undefined;
  }

  /**
   * A partial accept inserted `inserted` at `offset` of `uri`: the `cllm.partiallyAccepted` report to send, or
   * undefined when that text is not the next piece of the suggestion (another provider's ghost text, a moved cursor).
   */
  took(uri: string, offset: number, inserted: string): AcceptReport | undefined {
    const current = this.current;
    const piece = inserted.replace(/\r\n/g, "\n");
    if (!current || current.uri !== uri || current.at !== offset || !piece || !current.rest.startsWith(piece)) return undefined;
    current.at += inserted.length;
    current.rest = current.rest.slice(piece.length);
    return { ...current.report, chars: characterCount(piece) };
  }
}

/** The status view's rows of the counts; none before the server reports them. */
export function acceptanceRows(counts: AcceptanceCounts | undefined): Row[] {
  if (!counts || typeof counts.shown !== "number") return [];
  const rows: Row[] = [
    ["Shown", formatCount(counts.shown)],
    ["Accepted whole", formatCount(counts.accepted)],
    ["Accepted in part", formatCount(counts.partiallyAccepted)],
  ];
  if (typeof counts.acceptanceRate === "number") rows.push(["Acceptance rate", `${Math.round(100 * counts.acceptanceRate)} %`]);
  rows.push(["Characters accepted", formatCount(counts.charactersAccepted)]);
  rows.push(["Characters typed by cllm today", formatCount(counts.charactersToday)]);
  return rows;
}
