/**
 * Finding the command that starts the language server (`cllm lsp`), in this order:
 *
 *   1. the `cllm.server.path` setting (the `cllm` executable),
 *   2. the `cllm.python` setting, when cllm is installed in it (`python -m cllm.server.cli lsp`),
 *   3. the interpreter selected in the Python extension, when cllm is installed beside it,
 *   4. `cllm` on PATH.
 *
 * Nothing configured or found (or a `cllm.python` without cllm): the extension installs its own server
 * (install.ts). No `vscode` import and no file access of its own (the caller passes `isExecutable`): unit-tested directly.
 */
import * as path from "node:path";

import { expandPath } from "./settings";

/** The process to start, and which rule found it (shown in the log and in Show Status). */
export interface ServerCommand {
  command: string;
  args: string[];
  source: string;
}

/** Why no server command was found, and what the user can do about it. */
export interface DiscoveryProblem {
  problem: string;
  fix: string;
}

/** Found a server; or none configured or found (`missing`: install the extension's own); or a wrong setting. */
export type Discovery =
  | { kind: "found"; server: ServerCommand }
  | { kind: "missing" }
  | ({ kind: "invalid" } & DiscoveryProblem);

export interface DiscoveryInput {
  serverPath?: string;
  python?: string;
  /** The Python extension's interpreter for the workspace, if that extension is installed. */
  pythonExtensionInterpreter?: string;
  pathEnv?: string;
  platform: NodeJS.Platform;
  home: string;
  workspaceFolder?: string;
  isExecutable: (file: string) => boolean;
  /** True when cllm is installed in this interpreter (asked of `cllm.python` only). */
  hasCllm: (python: string) => boolean;
}

const LSP_ARGS = ["lsp"];
const MODULE_ARGS = ["-m", "cllm.server.cli", "lsp"];

/** The server command, `missing`, or the problem with a setting and its fix. */
export function discoverServer(input: DiscoveryInput): Discovery {
  const paths = { home: input.home, workspaceFolder: input.workspaceFolder };
  const serverPath = input.serverPath?.trim() ? expandPath(input.serverPath, paths) : undefined;
  if (serverPath) {
    if (!input.isExecutable(serverPath)) {
      return { kind: "invalid", problem: `cllm.server.path is set to ${serverPath}, which is not an executable file.`, fix: "Correct cllm.server.path, or clear it to let CLLM search for the server." };
    }
    return { kind: "found", server: { command: serverPath, args: [...LSP_ARGS], source: "setting cllm.server.path" } };
  }
  const python = input.python?.trim() ? expandPath(input.python, paths) : undefined;
  if (python) {
    if (!input.isExecutable(python)) {
      return { kind: "invalid", problem: `cllm.python is set to ${python}, which is not an executable file.`, fix: "Correct cllm.python, or clear it to let CLLM search for the server." };
    }
    if (input.hasCllm(python)) {
      return { kind: "found", server: { command: python, args: [...MODULE_ARGS], source: "setting cllm.python" } };
    }
  }
  const beside = besideInterpreter(input);
  if (beside) return { kind: "found", server: beside };
  const onPath = searchPath("cllm", input);
  if (onPath) return { kind: "found", server: { command: onPath, args: [...LSP_ARGS], source: "cllm on PATH" } };
  return { kind: "missing" };
}

/** `cllm` in the same folder as the Python extension's interpreter (the environment's scripts folder). */
function besideInterpreter(input: DiscoveryInput): ServerCommand | undefined {
  const interpreter = input.pythonExtensionInterpreter?.trim();
  if (!interpreter) return undefined;
  const pathApi = input.platform === "win32" ? path.win32 : path.posix;
  const folder = pathApi.dirname(interpreter);
  for (const name of executableNames("cllm", input.platform)) {
    const candidate = pathApi.join(folder, name);
    if (input.isExecutable(candidate)) {
      return { command: candidate, args: [...LSP_ARGS], source: `the Python extension's interpreter (${interpreter})` };
    }
  }
  return undefined;
}

/** The first executable called `name` on PATH. */
export function searchPath(name: string, input: Pick<DiscoveryInput, "pathEnv" | "platform" | "isExecutable">): string | undefined {
  const pathApi = input.platform === "win32" ? path.win32 : path.posix;
  const separator = input.platform === "win32" ? ";" : ":";
  for (const folder of (input.pathEnv ?? "").split(separator)) {
    if (!folder) continue;
    for (const file of executableNames(name, input.platform)) {
      const candidate = pathApi.join(folder, file);
      if (input.isExecutable(candidate)) return candidate;
    }
  }
  return undefined;
}

function executableNames(name: string, platform: NodeJS.Platform): string[] {
  return platform === "win32" ? [`${name}.exe`, `${name}.cmd`, name] : [name];
}
