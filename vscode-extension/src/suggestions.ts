/**
 * Turning suggestions off and on ("CLLM: Toggle Suggestions", a click on the status-bar item). The state is the
 * `cllm.enable` setting, so it persists and the server hears it too (it then completes nothing); while it is off
 * the extension also asks the server for no inline completions at all. No `vscode` import: unit-tested directly.
 */

import { ReadSetting } from "./settings";
import { ViewState } from "./status";

/** The setting that holds the state, in the `cllm` section. */
export const ENABLE_KEY = "enable";

/** Whether suggestions are on: unless `cllm.enable` is false. */
export function suggestionsEnabled(read: ReadSetting): boolean {
  return read(ENABLE_KEY) !== false;
}

/** Where `cllm.enable` is set now (VS Code's `inspect()`): a workspace value hides the user's. */
export interface EnableValues {
  workspaceValue?: unknown;
}

/**
 * The settings the toggle writes: the workspace's when the workspace sets `cllm.enable` (writing the user's would
 * change nothing there), else the user's, so that the choice holds in every window.
 */
export function toggleTarget(values: EnableValues | undefined): "workspace" | "global" {
  return values?.workspaceValue !== undefined ? "workspace" : "global";
}

/** What the status bar shows: "off" while suggestions are off, whatever the model does, except a server error. */
export function shownState(state: ViewState, enabled: boolean): ViewState {
  return enabled || state.kind === "error" ? state : { kind: "disabled" };
}
