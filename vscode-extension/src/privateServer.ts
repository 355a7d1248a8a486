/**
 * Installs the extension's own server (the wheel in the .vsix) into a private virtual environment in global
 * storage, with a progress notification and the commands' output in Output › CLLM, then compiles its kernels
 * (`cllm warmup`) so that the first suggestion is quick. The policy (which Python,
 * where, when again, which commands) is install.ts; this file runs it.
 */
import { spawn } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";

import * as vscode from "vscode";

import { DiscoveryProblem, ServerCommand } from "./discovery";
import {
  InstallStep,
  PROBE_SCRIPT,
  PythonCandidate,
  PrivateEnvironment,
  PythonInfo,
  bundledWheel,
  commandLine,
  installFailedProblem,
  installSteps,
  isInstalled,
  markerText,
  noPythonProblem,
  parseProbe,
  privateEnvironment,
  privateServerCommand,
  suitable,
  warmupProgress,
  warmupStep,
} from "./install";

export type PrivateServerResult = { ok: true; server: ServerCommand } | ({ ok: false } & DiscoveryProblem);

const PROBE_TIMEOUT_MS = 20_000;

export class PrivateServer {
  private pending: Promise<PrivateServerResult> | undefined;

  constructor(
    private readonly context: vscode.ExtensionContext,
    private readonly output: vscode.LogOutputChannel,
    private readonly isExecutable: (file: string) => boolean,
  ) {}

  /**
   * The command of the extension's own server, installed first when it is missing, was installed from another
   * wheel (the extension was updated) or `reinstall` asks. Calls during an install share it.
   */
  ensure(pythons: PythonCandidate[], reinstall = false): Promise<PrivateServerResult> {
    this.pending ??= this.ensureOnce(pythons, reinstall).finally(() => {
      this.pending = undefined;
    });
    return this.pending;
  }

  private async ensureOnce(pythons: PythonCandidate[], reinstall: boolean): Promise<PrivateServerResult> {
    const folder = path.join(this.context.extensionPath, "bundled");
    const version = String(this.context.extension.packageJSON.version);
    const name = bundledWheel(readDir(folder), version);
    if (!name) {
      return {
        ok: false,
        problem: `This build of the extension carries no server (${folder}/cllm-${version}-py3-none-any.whl).`,
        fix: "Install a .vsix built by make vscode, or install cllm yourself (pip install on a checkout) and set cllm.server.path.",
      };
    }
    const wheelPath = path.join(folder, name);
    const wheel = { name, sha256: crypto.createHash("sha256").update(fs.readFileSync(wheelPath)).digest("hex") };
    const env = privateEnvironment(this.context.globalStorageUri.fsPath, process.platform);
    if (!reinstall && isInstalled(readText(env.marker), wheel) && this.isExecutable(env.cllm)) {
      return { ok: true, server: privateServerCommand(env) };
    }

    const tried: { candidate: PythonCandidate; info: PythonInfo | undefined }[] = [];
    for (const candidate of pythons) {
      const info = await probePython(candidate.python);
      tried.push({ candidate, info });
      if (suitable(info)) break;
    }
    const chosen = tried.find(({ info }) => suitable(info));
    if (!chosen) return { ok: false, ...noPythonProblem(tried, wheelPath, process.platform) };

    this.output.info(`Installing ${name} with ${chosen.candidate.python} (${chosen.candidate.source}) into ${env.dir}`);
    fs.mkdirSync(path.dirname(env.dir), { recursive: true });
    const started = Date.now();
    const failed = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: "CLLM: installing the language server" },
      async (progress) => {
        for (const step of installSteps(chosen.candidate.python, env, wheelPath)) {
          progress.report({ message: step.title });
          const reason = await this.run(step, (line) => {
            const collecting = /^(Collecting|Installing collected packages:?) ?(.*)$/.exec(line);
            if (collecting) progress.report({ message: `${step.title}: ${collecting[1].toLowerCase()} ${collecting[2]}` });
          });
          if (reason) return installFailedProblem(step, reason);
        }
        await this.warmUp(env, progress);
        return undefined;
      },
    );
    if (failed) return { ok: false, ...failed };
    fs.writeFileSync(env.marker, markerText(wheel, chosen.candidate.python));
    this.output.info(`Installed the CLLM server in ${((Date.now() - started) / 1000).toFixed(0)} s`);
    return { ok: true, server: privateServerCommand(env) };
  }

  /** `cllm warmup` with its kernel count in the notification; a failure is logged, the install still stands. */
  private async warmUp(env: PrivateEnvironment, progress: vscode.Progress<{ message?: string }>): Promise<void> {
    const step = warmupStep(env);
    progress.report({ message: step.title });
    const reason = await this.run(step, (line) => {
      const counted = warmupProgress(line);
      if (counted) progress.report({ message: `${step.title}: ${counted}` });
    });
    if (reason) this.output.warn(`${reason}: the kernels compile on the first suggestion instead`);
  }

  /** Run one step, its output line by line into the log; the reason it failed, or undefined. */
  private run(step: InstallStep, onLine: (line: string) => void): Promise<string | undefined> {
    this.output.info(`$ ${commandLine(step)}`);
    return new Promise((resolve) => {
      const child = spawn(step.command, step.args, { env: process.env, stdio: ["ignore", "pipe", "pipe"] });
      const log = (chunk: Buffer) => {
        for (const line of chunk.toString("utf8").split(/\r?\n/)) {
          if (!line.trim()) continue;
          this.output.info(line);
          onLine(line);
        }
      };
      child.stdout.on("data", log);
      child.stderr.on("data", log);
      child.on("error", (error) => resolve(error.message));
      child.on("close", (code) => resolve(code === 0 ? undefined : `${path.basename(step.command)} exited with code ${code}`));
    });
  }
}

/** What `python` offers, or undefined when it does not run as a Python. */
export function probePython(python: string): Promise<PythonInfo | undefined> {
  return new Promise((resolve) => {
    const child = spawn(python, ["-c", PROBE_SCRIPT], { stdio: ["ignore", "pipe", "ignore"], timeout: PROBE_TIMEOUT_MS });
    let stdout = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString("utf8")));
    child.on("error", () => resolve(undefined));
    child.on("close", (code) => resolve(code === 0 ? parseProbe(stdout) : undefined));
  });
}

function readDir(folder: string): string[] {
  try {
    return fs.readdirSync(folder);
  } catch {
    return [];
  }
}

function readText(file: string): string | undefined {
  try {
    return fs.readFileSync(file, "utf8");
  } catch {
    return undefined;
  }
}
