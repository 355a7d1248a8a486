/**
 * Reaching the dashboard of the language server's own Workspace (`cllm lsp --http-port N`): a free loopback
 * port to start it on, the token it writes (0600) into the workspace's model folder, and the one-time link.
 * No `vscode` import: unit-tested directly.
 */
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";

/** The file, inside the model folder, where the server writes its bearer token (server/workspace.py). */
export const TOKEN_FILE = "token";

/** The dashboard link that hands the token to the page (server/http.py `HttpServer.dashboard_url`). */
export function dashboardUrl(port: number, token: string): string {
  return `http://127.0.0.1:${port}/?token=${encodeURIComponent(token)}`;
}

/** A port that is free on 127.0.0.1 right now. */
export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      probe.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}

/** The token written at or after `sinceMs` into `modelDir`, waiting up to `timeoutMs`; undefined if none came. */
export async function waitForToken(modelDir: string, sinceMs: number, timeoutMs = 15_000): Promise<string | undefined> {
  const file = path.join(modelDir, TOKEN_FILE);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const token = readFreshToken(file, sinceMs);
    if (token) return token;
    if (Date.now() >= deadline) return undefined;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

function readFreshToken(file: string, sinceMs: number): string | undefined {
  try {
    // Whole-second mtimes on some file systems: allow the second the server was started in.
    if (fs.statSync(file).mtimeMs < sinceMs - 1000) return undefined;
    return fs.readFileSync(file, "ascii").trim() || undefined;
  } catch {
    return undefined;
  }
}
