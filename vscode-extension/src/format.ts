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

/** An estimate of the time left, as every progress surface says it: "<1 min left", "~7 min left", "~2 h 5 min left". */
export function formatTimeLeft(seconds: unknown): string | undefined {
  if (typeof seconds !== "number" || !Number.isFinite(seconds)) return undefined;
  if (seconds < 60) return "<1 min left";
  const minutes = Math.ceil(seconds / 60);
  return minutes < 60 ? `~${minutes} min left` : `~${Math.floor(minutes / 60)} h ${minutes % 60} min left`;
}

/** The held-out line exact match as people read it: 0.38 -> "38 % lines exact". */
export function formatExactMatch(share: unknown): string | undefined {
  return typeof share === "number" && Number.isFinite(share) ? `${Math.round(100 * share)} % lines exact` : undefined;
}

/** A count and its noun: (1, "node") -> "1 node", (12, "sphere") -> "12 spheres". */
export function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}
