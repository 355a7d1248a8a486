/**
 * Where the ghost text shown was copied from. The server marks an inline item copied from the workspace in its
 * command (`cllm.accepted`), whose argument has `source: "path:line"` (docs/protocol.md); these functions read it
 * and say it for the status bar. No `vscode` import: unit-tested directly.
 */

/** A copy's place: the path relative to the workspace folder and the line, from 1. */
export interface CopySource {
  path: string;
  line: number;
}

/** "src/x.c:120" as a CopySource; undefined for anything else. */
export function parseSource(value: unknown): CopySource | undefined {
  if (typeof value !== "string") return undefined;
  const match = /^(.+):([1-9][0-9]*)$/.exec(value);
  return match ? { path: match[1], line: Number(match[2]) } : undefined;
}

interface ItemLike {
  command?: { arguments?: unknown[] };
}

/** The source of the first inline item (VS Code shows the first), from a provider's answer (a list or an array). */
export function copiedFrom(answer: unknown): CopySource | undefined {
  const items = Array.isArray(answer) ? answer : (answer as { items?: unknown } | null | undefined)?.items;
  const first = Array.isArray(items) ? (items[0] as ItemLike | undefined) : undefined;
  const argument = first?.command?.arguments?.[0] as { source?: unknown } | undefined;
  return parseSource(argument?.source);
}

/** The status bar's text and tooltip for a copy. */
export function sourceLabel(source: CopySource): { text: string; tooltip: string } {
  const place = `${source.path}:${source.line}`;
  return { text: `$(references) ${place}`, tooltip: `The suggestion shown was copied from ${place}: click to open it` };
}
