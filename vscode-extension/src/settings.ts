/**
 * The VS Code `cllm.*` settings turned into the server's `cllm` settings object (server/settings.py):
 *
 *   {"enable", "maxTokens", "multiline", "modelDir", "indexMemoryMB", "learnWhileIdle", "idleSeconds", "eagerness",
 *    "training": {"epochs", "timeBudget", "spheres", "threads", "fresh", "base", "baseCorpus", ...}}
 *
 * Settings left empty go as null: the server lays this object over its initializationOptions key by key
 * (server/settings.py layer_settings), where a null key goes back to the engine's default (engine/config.py) but an
 * omitted key would keep the value sent at start-up, so a setting the user cleared would stay in force. The
 * extension's own keys (server path, python) stay on this side. No `vscode` import: unit-tested directly.
 *
 * The training keys and their types are the server's option schema (engine/config.py), written to
 * trainingOptions.json at build time by scripts/training-options.mjs. `training.base` and `training.baseCorpus`
 * are the server's own (server/settings.py): what training does while no base model exists at all.
 */

import trainingOptions from "./trainingOptions.json";

/** Reads one setting of the `cllm` section by its dotted key ("training.epochs"). */
export type ReadSetting = (key: string) => unknown;

/** The server's settings object, as sent in initializationOptions and didChangeConfiguration. */
export interface ServerSettings {
  enable: boolean;
  maxTokens: number | null;
  multiline: boolean | null;
  modelDir: string | null;
  indexMemoryMB: number | null;
  learnWhileIdle: boolean | null;
  idleSeconds: number | null;
  eagerness: string | null;
  training: Record<string, TrainingValue>;
}

/** A value of the `training` object: an option of the schema, the base choice or the base corpus folders. */
export type TrainingValue = number | boolean | string | string[] | null;

/** One training setting of the schema: its JSON type ("integer", "number" or "boolean"), bounds and help. */
export interface TrainingOption {
  type: string;
  description: string;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
}

/** Every training setting the server takes, by key (the advanced ones too). */
export const TRAINING_OPTIONS: Record<string, TrainingOption> = trainingOptions.settings;

/** The server's `eagerness` choices (engine/complete/confidence.py EAGERNESS): which suggestions are shown. */
export const EAGERNESS = ["low", "normal", "high"] as const;

/** Training settings with their own entry in the settings UI; `training.advanced` may add the others. */
export const TRAINING_KEYS = ["epochs", "timeBudget", "spheres", "threads", "fresh"] as const;

/** The server's `training.base` answers (server/settings.py BASE_CHOICES). */
export const BASE_CHOICES = ["ask", "prepare", "scratch"] as const;

/** The base settings (server/settings.py), each with its own entry in the settings UI. */
export const BASE_KEYS = ["base", "baseCorpus"] as const;

/** Where relative paths and `~` in path settings point. */
export interface PathContext {
  home: string;
  workspaceFolder?: string;
}

/** Build the server's settings from the editor's; `paths` expands `~` and `${workspaceFolder}` in modelDir. */
export function serverSettings(read: ReadSetting, paths: PathContext): ServerSettings {
  const multiline = read("multiline");
  const learn = read("learnWhileIdle");
  const modelDir = text(read("modelDir"));
  const settings: ServerSettings = {
    enable: read("enable") !== false,
    maxTokens: number(read("maxTokens")) ?? null,
    multiline: typeof multiline === "boolean" ? multiline : null,
    modelDir: modelDir ? expandPath(modelDir, paths) : null,
    indexMemoryMB: number(read("indexMemoryMB")) ?? null,
    learnWhileIdle: typeof learn === "boolean" ? learn : null,
    idleSeconds: number(read("idleSeconds")) ?? null,
    eagerness: (EAGERNESS as readonly unknown[]).includes(read("eagerness")) ? (read("eagerness") as string) : null,
    training: {},
  };
  const advanced = read("training.advanced");
  if (advanced && typeof advanced === "object" && !Array.isArray(advanced)) {
    for (const [key, value] of Object.entries(advanced)) {
      const checked = trainingValue(key, value);
      if (checked !== undefined) settings.training[key] = checked;
    }
  }
  for (const key of TRAINING_KEYS) {
    const value = trainingValue(key, read(`training.${key}`));
    if (value !== undefined) settings.training[key] = value;
    else if (!(key in settings.training)) settings.training[key] = null;
  }
  const base = read("training.base");
  settings.training.base = (BASE_CHOICES as readonly unknown[]).includes(base) ? (base as string) : null;
  const corpus = folders(read("training.baseCorpus")).map((folder) => expandPath(folder, paths));
  settings.training.baseCorpus = corpus.length ? corpus : null;
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

/**
 * A training value of the JSON type the schema gives `key`: true or false for a switch (fresh, noGitignore), else a
 * number. A key the schema does not know keeps a number or true/false, so that the server names it in a warning.
 */
function trainingValue(key: string, value: unknown): number | boolean | undefined {
  const option = TRAINING_OPTIONS[key];
  if (typeof value === "boolean" && (option === undefined || option.type === "boolean")) return value;
  return option?.type === "boolean" ? undefined : number(value);
}

function number(value: unknown): number | undefined {
  return typeof value === "number" && Number.isFinite(value) ? value : undefined;
}

/** The non-empty strings of a list setting (none when it is not a list). */
function folders(value: unknown): string[] {
  return Array.isArray(value) ? value.map(text).filter((folder): folder is string => folder !== undefined) : [];
}

function text(value: unknown): string | undefined {
  return typeof value === "string" && value.trim() ? value.trim() : undefined;
}
