#!/usr/bin/env bash
# Install code-server (VS Code in the browser) for the extension's end-to-end test, offline-safe.
#
# `npm install code-server` does not work on a machine that only reaches package registries: its install script
# refuses to run as root, builds `kerberos` (needs libkrb5-dev) and has @vscode/ripgrep download `rg` from GitHub.
# So: unpack the registry tarball, install its pinned dependencies (npm-shrinkwrap.json) without install
# scripts, do by hand what its postinstall does, put Debian's ripgrep where @vscode/ripgrep looks, and rebuild
# the native modules against the system Node headers.
#
# Usage: install-code-server.sh [DEST]   (default: <repo>/.tools/code-server; skipped when already installed)
set -euo pipefail

VERSION=4.99.4
HERE="$(cd "$(dirname "$0")" && pwd)"
DEST="${1:-$HERE/../../.tools/code-server}"
STAMP="$DEST/.installed-$VERSION"

if [ -f "$STAMP" ]; then
    exit 0
fi
for tool in node npm rg; do
    command -v "$tool" >/dev/null || { echo "install-code-server: '$tool' is required (apt-get install nodejs npm ripgrep)" >&2; exit 1; }
done

rm -rf "$DEST"
mkdir -p "$DEST"
DEST="$(cd "$DEST" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "install-code-server: fetching code-server@$VERSION" >&2
(cd "$work" && npm pack --silent "code-server@$VERSION" >/dev/null)
tar -xzf "$work/code-server-$VERSION.tgz" -C "$DEST" --strip-components=1

export npm_config_nodedir=/usr
npm_quiet=(--omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error)

echo "install-code-server: installing dependencies" >&2
(cd "$DEST" && npm install "${npm_quiet[@]}")
(cd "$DEST/lib/vscode" && npm install "${npm_quiet[@]}")
(cd "$DEST/lib/vscode/extensions" && npm install "${npm_quiet[@]}")

# What code-server's postinstall.sh does besides installing.
ln -sfn node_modules "$DEST/lib/vscode/node_modules.asar"
ln -sfn code-linux.sh "$DEST/lib/vscode/bin/remote-cli/code-server"
ln -sfn browser-linux.sh "$DEST/lib/vscode/bin/helpers/browser.sh"

rg_dir="$DEST/lib/vscode/node_modules/@vscode/ripgrep/bin"
mkdir -p "$rg_dir"
cp "$(command -v rg)" "$rg_dir/rg"

# node-gyp straight from npm's own copy: node-pty's postinstall would otherwise fetch another node-gyp.
echo "install-code-server: building native modules" >&2
node_gyp=(node "$(npm prefix -g)/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js")
if [ ! -f "${node_gyp[1]}" ]; then
    command -v node-gyp >/dev/null || { echo "install-code-server: node-gyp not found (apt-get install node-gyp)" >&2; exit 1; }
    node_gyp=(node-gyp)
fi
for module in @vscode/spdlog node-pty native-watchdog; do
    (cd "$DEST/lib/vscode/node_modules/$module" && "${node_gyp[@]}" rebuild --loglevel=error >/dev/null)
done
(cd "$DEST" && npm rebuild --build-from-source --loglevel=error argon2 >/dev/null)

touch "$STAMP"
echo "install-code-server: code-server $VERSION ready in $DEST" >&2
