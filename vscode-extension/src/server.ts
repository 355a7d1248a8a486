/**
 * The language server's life: find `cllm lsp` (or install the extension's own, privateServer.ts), start it through vscode-languageclient (which also provides the
 * inline completions), pass settings, relay `cllm/sphereActivity`, and stop cleanly. A server that cannot be
 * found or keeps dying produces one clear notification with the fix, never a crash loop.
 */
import * as fs from "node:fs";
import * as os from "node:os";

import * as vscode from "vscode";
import {
  CloseAction,
  ErrorAction,
  ExecuteCommandRequest,
  LanguageClient,
  LanguageClientOptions,
  ServerOptions,
  State,
} from "vscode-languageclient/node";

import { RestartPolicy } from "./crashes";
import { DiscoveryProblem, ServerCommand, discoverServer } from "./discovery";
import { pythonCandidates } from "./install";
import { PrivateServer, probePython } from "./privateServer";
import { activeInterpreter } from "./pythonExtension";
import { ServerSettings, expandPath, serverSettings } from "./settings";
import { CopySource, copiedFrom } from "./copySource";
import { Activity, parseActivity } from "./status";
import { suggestionsEnabled } from "./suggestions";

export const ACTIVITY_NOTIFICATION = "cllm/sphereActivity";

/** What the rest of the extension hears from the server. */
export interface ServerListener {
  activity(activity: Activity): void;
  started(): void;
  failed(problem: DiscoveryProblem): void;
  /** An inline completion answer VS Code received (for the partial-accept counts, accepting.ts). */
  offered(document: vscode.TextDocument, position: vscode.Position, result: vscode.InlineCompletionItem[] | vscode.InlineCompletionList | null | undefined): void;
  /** The inline suggestion just given at `position` was copied from `source` (undefined: it was not a copy). */
  suggested?(source: CopySource | undefined, document: vscode.TextDocument, position: vscode.Position): void;
}

/** Whether suggestions are on now (the `cllm.enable` setting, flipped by "CLLM: Toggle Suggestions"). */
export function suggestionsOn(): boolean {
  const config = vscode.workspace.getConfiguration("cllm");
  return suggestionsEnabled((key) => config.get(key));
}

/** The `cllm` settings of the editor as the server expects them. */
export function currentSettings(): ServerSettings {
  const config = vscode.workspace.getConfiguration("cllm");
  const folder = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  return serverSettings((key) => config.get(key), { home: os.homedir(), workspaceFolder: folder });
}

/** The language server process and its client. */
export class CllmServer {
  private client: LanguageClient | undefined;
  private stopping = false;
  private notified = false;
  private readonly restarts = new RestartPolicy();
  private starting: Promise<boolean> | undefined;
  /** How the server command was found (for the log and the status view). */
  command: ServerCommand | undefined;

  constructor(
    private readonly output: vscode.LogOutputChannel,
    private readonly listener: ServerListener,
    private readonly own: PrivateServer,
  ) {}

  get running(): boolean {
    return this.client?.state === State.Running;
  }

  /** True when the running server lists `command` among its executeCommand commands. */
  offers(command: string): boolean {
    const commands = this.client?.initializeResult?.capabilities.executeCommandProvider?.commands ?? [];
    return commands.includes(command);
  }

  /**
   * Find (or install) and start the server; false (after notifying the user once) when that fails. A call while
   * the server is starting (installing) waits for that start.
   */
  start(): Promise<boolean> {
    this.starting ??= this.startOnce(false).finally(() => {
      this.starting = undefined;
    });
    return this.starting;
  }

  /** The running server, started first when it is not (waits for a start under way). */
  async ensureRunning(): Promise<boolean> {
    if (this.starting) return this.starting;
    return this.running || this.restart();
  }

  /** Install the extension's own server again, then start the server. */
  async reinstall(): Promise<boolean> {
    await this.starting;
    await this.stop();
    this.restarts.reset();
    this.notified = false;
    this.starting = this.startOnce(true).finally(() => {
      this.starting = undefined;
    });
    return this.starting;
  }

  private async startOnce(reinstall: boolean): Promise<boolean> {
    const config = vscode.workspace.getConfiguration("cllm");
    const folder = vscode.workspace.workspaceFolders?.[0];
    const paths = { home: os.homedir(), workspaceFolder: folder?.uri.fsPath };
    const configuredPython = config.get<string>("python")?.trim() ? expandPath(config.get<string>("python") ?? "", paths) : undefined;
    const probed = configuredPython && isExecutable(configuredPython) ? await probePython(configuredPython) : undefined;
    const interpreter = await activeInterpreter(folder?.uri);
    const found = discoverServer({
      serverPath: config.get<string>("server.path"),
      python: configuredPython,
      pythonExtensionInterpreter: interpreter,
      pathEnv: process.env.PATH,
      platform: process.platform,
      ...paths,
      isExecutable,
      hasCllm: () => probed?.cllm === true,
    });
    if (found.kind === "invalid") {
      this.fail(found);
      return false;
    }
    let server = found.kind === "found" ? found.server : undefined;
    if (!server || reinstall) {
      const candidates = pythonCandidates({ configured: configuredPython, pythonExtension: interpreter, pathEnv: process.env.PATH, platform: process.platform, isExecutable });
      const own = await this.own.ensure(candidates, reinstall);
      if (!own.ok) this.fail(own);
      server ??= own.ok ? own.server : undefined;
      if (!server) return false;
    }
    return this.launch(server);
  }

  private async launch(server: ServerCommand): Promise<boolean> {
    this.command = server;
    const args = server.args;
    this.output.info(`Starting ${server.command} ${args.join(" ")} (found by ${server.source})`);
    const serverOptions: ServerOptions = { command: server.command, args, options: { env: process.env } };
    const client = new LanguageClient("cllm", "CLLM", serverOptions, this.clientOptions());
    client.onNotification(ACTIVITY_NOTIFICATION, (params: unknown) => {
      const activity = parseActivity(params);
      if (activity) this.listener.activity(activity);
    });
    this.client = client;
    this.stopping = false;
    try {
      await client.start();
    } catch (error) {
      this.client = undefined;
      await client.dispose().catch(() => undefined);
      this.fail({
        problem: `The CLLM language server (${server.command}) did not start: ${describe(error)}.`,
        fix: "See Output \u203a CLLM for its messages; check cllm.server.path / cllm.python.",
      });
      return false;
    }
    this.notified = false;
    this.listener.started();
    return true;
  }

  /** Stop the server (it cancels its training). */
  async stop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    if (!client) return;
    this.stopping = true;
    try {
      if (client.state === State.Running) await client.stop(5000);
    } catch (error) {
      this.output.warn(`Stopping the server: ${describe(error)}`);
    } finally {
      await client.dispose().catch(() => undefined);
    }
  }

  /** Stop and start again (after a settings change). */
  async restart(): Promise<boolean> {
    await this.starting;
    await this.stop();
    this.restarts.reset();
    this.notified = false;
    return this.start();
  }

  /** Run one of the server's workspace/executeCommand commands. */
  async execute(command: string, args: unknown[] = []): Promise<unknown> {
    if (!this.client || !this.running) throw new Error("the CLLM language server is not running");
    return this.client.sendRequest(ExecuteCommandRequest.type, { command, arguments: args });
  }

  /** Push the current settings (workspace/didChangeConfiguration, section `cllm`). */
  async sendSettings(): Promise<void> {
    if (!this.client || !this.running) return;
    await this.client.sendNotification("workspace/didChangeConfiguration", { settings: { cllm: currentSettings() } });
  }

  private clientOptions(): LanguageClientOptions {
    return {
      documentSelector: [
        { scheme: "file", language: "c" },
        { scheme: "untitled", language: "c" },
        { scheme: "file", pattern: "**/*.h" },
      ],
      initializationOptions: { cllm: currentSettings() },
      outputChannel: this.output,
      errorHandler: {
        error: () => ({ action: ErrorAction.Continue, handled: true }),
        closed: () => this.closed(),
      },
      initializationFailedHandler: () => false,
      middleware: {
        // VS Code shows the suggestion as ghost text; the same text as a list item would only duplicate it.
        provideCompletionItem: () => undefined,
        // Suggestions turned off: none, at once, without asking the server (which would answer none too).
        provideInlineCompletionItems: async (document, position, context, token, next) => {
          const answer = suggestionsOn() ? await next(document, position, context, token) : [];
          this.listener.offered(document, position, answer);
          this.listener.suggested?.(copiedFrom(answer), document, position);
          return answer;
        },
        workspace: {
          configuration: (params, token, next) =>
            params.items.every((item) => item.section === "cllm")
              ? params.items.map(() => currentSettings())
              : next(params, token),
        },
      },
    };
  }

  private closed(): { action: CloseAction; handled: boolean } {
    if (this.stopping) return { action: CloseAction.DoNotRestart, handled: true };
    if (this.restarts.shouldRestart(Date.now())) {
      this.output.warn("The CLLM language server stopped; restarting it.");
      return { action: CloseAction.Restart, handled: true };
    }
    this.fail({
      problem: "The CLLM language server keeps stopping, so it is not restarted again.",
      fix: "See Output \u203a CLLM for the reason, then run \u201cCLLM: Restart Language Server\u201d.",
    });
    return { action: CloseAction.DoNotRestart, handled: true };
  }

  private fail(problem: DiscoveryProblem): void {
    this.output.error(`${problem.problem} ${problem.fix}`);
    this.listener.failed(problem);
    if (this.notified) return;
    this.notified = true;
    void vscode.window
      .showErrorMessage(`CLLM: ${problem.problem} ${problem.fix}`, "Open Settings", "Show Log", "Retry")
      .then((choice) => {
        if (choice === "Open Settings") void vscode.commands.executeCommand("workbench.action.openSettings", "cllm.");
        else if (choice === "Show Log") this.output.show();
        else if (choice === "Retry") void this.restart();
      });
  }
}

export function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
