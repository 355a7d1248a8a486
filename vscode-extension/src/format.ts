/** Short human-readable numbers and ages for the status bar and the status view (no `vscode` import). */

/** 950 -> "950", 3140 -> "3.1k", 2_500_000 -> "2.5M". */
export function formatCount(value: number): string {
  const abs = Math.abs(value);
  if (abs >= 1e9) return `${trim(value / 1e9)}G`;
  if (abs >= 1e6) return `${trim(value / 1e6)}M`;
  if (abs >= 1e3) return `${trim(value / 1e3)}k`;
  return Number.isInteger(value) ? String(value) : value.toFixed(1);
}

function trim(value: number): string {
  return Math.abs(value) >= 100 ? value.toFixed(0) : value.toFixed(1).replace(/\.0$/, "");
}

/** How long ago an ISO time was: "just now", "5 min ago", "3 h ago", "2 days ago"; undefined if unreadable. */
export function formatAge(iso: string | undefined | null, now: Date): string | undefined {
  if (!iso) return undefined;
  const then = Date.parse(iso);
  if (Number.isNaN(then)) return undefined;
  const seconds = Math.max(0, (now.getTime() - then) / 1000);
  if (seconds < 60) return "just now";
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ago`;
  return `${Math.floor(hours / 24)} days ago`;
}

/** A number with `digits` decimals, or undefined when it is not a finite number. */
export function fixed(value: unknown, digits: number): string | undefined {
  return typeof value === "number" && Number.isFinite(value) ? value.toFixed(digits) : undefined;
}
