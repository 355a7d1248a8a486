/**
 * The VS Code `cllm.*` settings turned into the server's `cllm` settings object (server/settings.py):
 *
 *   {"enable", "maxTokens", "multiline", "modelDir", "training": {"epochs", "timeBudget", "spheres", "threads", ...}}
 *
 * Settings left empty (null) are not sent, so the server uses the engine's defaults (engine/config.py); the
 * extension's own keys (server path, python) stay on this side. No `vscode` import: unit-tested directly.
 */

/** Reads one setting of the `cllm` section by its dotted key ("training.epochs"). */
export type ReadSetting = (key: string) => unknown;

/** The server's settings object, as sent in initializationOptions and didChangeConfiguration. */
export interface ServerSettings {
  enable: boolean;
  maxTokens?: number;
  multiline?: boolean;
  modelDir?: string;
  training: Record<string, number>;
}

/** Training settings with their own entry in the settings UI; `training.advanced` may add more. */
export const TRAINING_KEYS = ["epochs", "timeBudget", "spheres", "threads"] as const;

/** Where relative paths and `~` in path settings point. */
export interface PathContext {
  home: string;
  workspaceFolder?: string;
}

/** Build the server's settings from the editor's; `paths` expands `~` and `${workspaceFolder}` in modelDir. */
export function serverSettings(read: ReadSetting, paths: PathContext): ServerSettings {
  const settings: ServerSettings = { enable: read("enable") !== false, training: {} };
  const maxTokens = number(read("maxTokens"));
  if (maxTokens !== undefined) settings.maxTokens = maxTokens;
  const multiline = read("multiline");
  if (typeof multiline === "boolean") settings.multiline = multiline;
  const modelDir = text(read("modelDir"));
  if (modelDir) settings.modelDir = expandPath(modelDir, paths);
  const advanced = read("training.advanced");
  if (advanced && typeof advanced === "object" && !Array.isArray(advanced)) {
    for (const [key, value] of Object.entries(advanced)) {
      const checked = number(value);
      if (checked !== undefined) settings.training[key] = checked;
    }
  }
  for (const key of TRAINING_KEYS) {
    const value = number(read(`training.${key}`));
    if (value !== undefined) settings.training[key] = value;
  }
  return settings;
}

/** `~` and `${workspaceFolder}` expanded; other text unchanged. */
export function expandPath(value: string, paths: PathContext): string {
  let result = value.trim();
  if (paths.workspaceFolder) result = result.split("${workspaceFolder}").join(paths.workspaceFolder);
  if (result === "~") return paths.home;
  if (result.startsWith("~/")) return paths.home + result.slice(1);
  return result;
}

function number(value: unknown): number | undefined {
  return typeof value === "number" && Number.isFinite(value) ? value : undefined;
}

function text(value: unknown): string | undefined {
  return typeof value === "string" && value.trim() ? value.trim() : undefined;
}
