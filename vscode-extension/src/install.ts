/**
 * The extension's own server. The .vsix carries the project's wheel (bundled/cllm-VERSION-py3-none-any.whl, built
 * by `make vscode` with the extension's version); when no server is configured or found, the extension installs
 * it into a private virtual environment in its global storage and runs that environment's `cllm lsp`.
 *
 * This module holds the policy: which Python makes the environment (Python 3.11 or newer with its venv module:
 * `cllm.python`, the Python extension's interpreter, `python3` or `python` on PATH), where the environment lives,
 * when it must be installed again (its marker file names another wheel: the extension was updated), the commands
 * that install it, and the messages when that cannot work. No `vscode` import and no process or file access of
 * its own: unit-tested directly.
 */
import * as path from "node:path";

import { DiscoveryProblem, ServerCommand, searchPath } from "./discovery";

export const MIN_PYTHON: readonly [number, number] = [3, 11];

/** Run as `python -c PROBE_SCRIPT`: prints one JSON line with what `parseProbe` reads. */
export const PROBE_SCRIPT =
  "import importlib.util as u, json, sys; print(json.dumps({'version': list(sys.version_info[:2]), " +
  "'venv': all(u.find_spec(m) is not None for m in ('venv', 'ensurepip')), " +
  "'cllm': u.find_spec('cllm') is not None and u.find_spec('cllm.server') is not None}))";

/** What a probed interpreter offers. */
export interface PythonInfo {
  version: [number, number];
  /** `venv` and `ensurepip` are importable (Debian ships them apart, in python3-venv). */
  venv: boolean;
  /** cllm is installed in it. */
  cllm: boolean;
}

/** An interpreter that might make the environment, and where it came from (for messages). */
export interface PythonCandidate {
  python: string;
  source: string;
}

/** The private environment's files. */
export interface PrivateEnvironment {
  dir: string;
  python: string;
  cllm: string;
  /** Records the installed wheel; written last, so its presence means a complete install. */
  marker: string;
}

/** One command of the install. */
export interface InstallStep {
  title: string;
  command: string;
  args: string[];
}

/** The installed wheel as the marker records it. */
export interface WheelId {
  name: string;
  sha256: string;
}

/** The interpreter's answer to PROBE_SCRIPT, or undefined when it is not that. */
export function parseProbe(stdout: string): PythonInfo | undefined {
  try {
    const value = JSON.parse(stdout.trim().split("\n").pop() ?? "") as Partial<PythonInfo>;
    const version = value.version;
    if (!Array.isArray(version) || version.length !== 2 || !version.every(Number.isInteger)) return undefined;
    return { version: [version[0], version[1]], venv: value.venv === true, cllm: value.cllm === true };
  } catch {
    return undefined;
  }
}

/** Where to look for an interpreter, in order, without duplicates. */
export function pythonCandidates(input: {
  configured?: string;
  pythonExtension?: string;
  pathEnv?: string;
  platform: NodeJS.Platform;
  isExecutable: (file: string) => boolean;
}): PythonCandidate[] {
  const found: PythonCandidate[] = [];
  const add = (python: string | undefined, source: string) => {
    if (python && !found.some((candidate) => candidate.python === python)) found.push({ python, source });
  };
  add(input.configured?.trim(), "setting cllm.python");
  add(input.pythonExtension?.trim(), "the Python extension's interpreter");
  for (const name of ["python3", "python"]) add(searchPath(name, input), `${name} on PATH`);
  return found;
}

/** Python 3.11 or newer with its venv module. */
export function suitable(info: PythonInfo | undefined): boolean {
  if (!info?.venv) return false;
  const [major, minor] = info.version;
  return major > MIN_PYTHON[0] || (major === MIN_PYTHON[0] && minor >= MIN_PYTHON[1]);
}

/** The file name of the wheel a .vsix of this version carries, if `files` (its bundled folder) holds it. */
export function bundledWheel(files: string[], version: string): string | undefined {
  const name = `cllm-${version}-py3-none-any.whl`;
  return files.includes(name) ? name : undefined;
}

/** The private environment inside the extension's global storage folder. */
export function privateEnvironment(storage: string, platform: NodeJS.Platform): PrivateEnvironment {
  const pathApi = platform === "win32" ? path.win32 : path.posix;
  const dir = pathApi.join(storage, "server");
  const bin = platform === "win32" ? pathApi.join(dir, "Scripts") : pathApi.join(dir, "bin");
  const exe = platform === "win32" ? ".exe" : "";
  return {
    dir,
    python: pathApi.join(bin, `python${exe}`),
    cllm: pathApi.join(bin, `cllm${exe}`),
    marker: pathApi.join(dir, "cllm-installed.json"),
  };
}

/** How the extension runs its own server. */
export function privateServerCommand(env: PrivateEnvironment): ServerCommand {
  return { command: env.cllm, args: ["lsp"], source: `the extension's own server (${env.dir})` };
}

/** The marker's text for an installed wheel. */
export function markerText(wheel: WheelId, python: string): string {
  return `${JSON.stringify({ wheel: wheel.name, sha256: wheel.sha256, python }, null, 2)}\n`;
}

/** True when the marker records this very wheel (another one, or none: install again). */
export function isInstalled(marker: string | undefined, wheel: WheelId): boolean {
  if (marker === undefined) return false;
  try {
    const recorded = JSON.parse(marker) as { wheel?: unknown; sha256?: unknown };
    return recorded.wheel === wheel.name && recorded.sha256 === wheel.sha256;
  } catch {
    return false;
  }
}

/** Make the environment afresh (`--clear` empties an old one), then install the wheel and its dependencies. */
export function installSteps(python: string, env: PrivateEnvironment, wheelPath: string): InstallStep[] {
  return [
    { title: "creating a virtual environment", command: python, args: ["-m", "venv", "--clear", env.dir] },
    {
      title: "installing cllm and its dependencies (numpy, numba, \u2026)",
      command: env.python,
      args: ["-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--progress-bar", "off", wheelPath],
    },
  ];
}

/**
 * After the install: compile the server's numba kernels into numba's cache, so that the first suggestion does not
 * wait for the compiler. A failure here is no failed install (the kernels then compile on first use).
 */
export function warmupStep(env: PrivateEnvironment): InstallStep {
  return { title: "compiling the completion kernels (once)", command: env.cllm, args: ["warmup", "--json"] };
}

/** The progress message for a line of `cllm warmup --json` ("12/40 kernels"), or undefined for other lines. */
export function warmupProgress(line: string): string | undefined {
  try {
    const event = JSON.parse(line) as { event?: unknown; ready?: unknown; kernels?: unknown };
    if (event.event !== "progress" || typeof event.ready !== "number" || typeof event.kernels !== "number") return undefined;
    return `${event.ready}/${event.kernels} kernels`;
  } catch {
    return undefined;
  }
}

/** The shell form of a step, for messages and the log. */
export function commandLine(step: Pick<InstallStep, "command" | "args">): string {
  return [step.command, ...step.args].map((word) => (/^[\w@%+=:,./-]+$/.test(word) ? word : `"${word}"`)).join(" ");
}

/** No interpreter fits: say what was tried and the command that fixes it. */
export function noPythonProblem(
  tried: { candidate: PythonCandidate; info: PythonInfo | undefined }[],
  wheelPath: string,
  platform: NodeJS.Platform,
): DiscoveryProblem {
  const seen = tried.map(({ candidate, info }) => `${candidate.python} (${candidate.source}): ${describeInfo(info)}`);
  const found = seen.length ? ` Tried ${seen.join("; ")}.` : " None is on PATH.";
  return {
    problem: `CLLM needs Python ${MIN_PYTHON.join(".")} or newer with its venv module to install its server.${found}`,
    fix:
      `Install one (${installPythonCommand(platform)}) or set cllm.python to one, then run \u201cCLLM: Reinstall Server\u201d. ` +
      `Or install the server yourself, which puts cllm on PATH: pipx install ${wheelPath}`,
  };
}

/** A step of the install failed. */
export function installFailedProblem(step: InstallStep, reason: string): DiscoveryProblem {
  return {
    problem: `Installing the CLLM server failed while ${step.title}: ${reason}.`,
    fix:
      "See Output \u203a CLLM for the messages (pip downloads the dependencies from PyPI), then run " +
      `\u201cCLLM: Reinstall Server\u201d, or run it yourself: ${commandLine(step)}`,
  };
}

function describeInfo(info: PythonInfo | undefined): string {
  if (!info) return "did not run";
  const version = `Python ${info.version.join(".")}`;
  if (!suitable({ ...info, venv: true })) return `${version} is too old`;
  return info.venv ? version : `${version} without the venv module`;
}

function installPythonCommand(platform: NodeJS.Platform): string {
  if (platform === "darwin") return "brew install python@3.12";
  if (platform === "win32") return "winget install Python.Python.3.12";
  return "Debian, Ubuntu: sudo apt install python3 python3-venv";
}
