/**
 * The Python extension (ms-python.python), through its typed API (@vscode/python-extension), when it is installed:
 * its active interpreter is a place to find cllm and a Python to install the extension's own server with, and a
 * change of it restarts the server. Without that extension both are no-ops.
 */
import { PVSC_EXTENSION_ID, PythonExtension } from "@vscode/python-extension";
import * as vscode from "vscode";

async function api(): Promise<PythonExtension | undefined> {
  if (!vscode.extensions.getExtension(PVSC_EXTENSION_ID)) return undefined;
  try {
    return await PythonExtension.api();
  } catch {
    return undefined;
  }
}

/** The executable of the workspace's active interpreter in the Python extension, if any. */
export async function activeInterpreter(resource: vscode.Uri | undefined): Promise<string | undefined> {
  const python = await api();
  if (!python) return undefined;
  try {
    const active = python.environments.getActiveEnvironmentPath(resource);
    const resolved = await python.environments.resolveEnvironment(active);
    return resolved?.executable.uri?.fsPath ?? active.path;
  } catch {
    return undefined;
  }
}

/** Call `listener` whenever the active interpreter changes; undefined without the Python extension. */
export async function onInterpreterChange(listener: () => void): Promise<vscode.Disposable | undefined> {
  const python = await api();
  return python?.environments.onDidChangeActiveEnvironmentPath(() => listener());
}
