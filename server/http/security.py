"""Security rules of the local model server: who may talk to it, and with what.

A model server on loopback is reachable by every web page the user opens: a page cannot read a cross-origin
response, but it can send requests (a form POST, a `fetch` in no-cors mode) and, through DNS rebinding, make its
own host name resolve to 127.0.0.1 and then read responses as "same origin". The rules here close those doors:

- Host: a request must name the server itself (`127.0.0.1:PORT`, `localhost:PORT`, `[::1]:PORT`). A rebinding
  page's requests carry the attacker's host name and are refused with 403. When the operator explicitly binds a
  non-loopback address (`--allow-remote`), that address is accepted too, and so is any IP literal when binding a
  wildcard address: rebinding needs a DNS name, so IP literals are safe.
- Origin: a request that carries an `Origin` (browsers add it to cross-origin and to non-GET requests) must come
  from one of the same names; anything else, including the opaque `null`, is refused with 403.
- Token: `Authorization: Bearer <token>` is required on every endpoint that computes, starts or stops work, or
  streams training details: completions (the model reproduces the workspace's code), train, cancel, events.
  Only the dashboard's static files, `/v1/status` and `/v1/models` are public; they read nothing from disk and
  start nothing. The token is the key given with `--api-key` / `CLLM_API_KEY`, else the one in
  `<model_dir>/token`, created once from `secrets.token_urlsafe` with mode 0600 (only the user, and the editor
  acting for the user, can read it) and reused by every later server on that folder, so a client's saved key
  keeps working across restarts. It is compared in constant time and never logged.
- Dashboard hand-over: the editor command, or the URL printed at start (to a terminal only), opens `/?token=...`;
  the server renders
  the token into the page (a `<meta>` tag, never a script) only when it is correct, the page moves it into memory
  and strips it from the address bar with `history.replaceState`. Pages are sent with `Cache-Control: no-store`,
  `Referrer-Policy: no-referrer` and a strict same-origin Content-Security-Policy, so the token is neither cached
  nor sent anywhere else. Opened without a valid token the dashboard is read-only.
- Bodies are limited (1 MB by default, 413) and training paths must resolve, after following symlinks, inside
  an allowed root.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import os
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
MAX_BODY_BYTES = 1 << 20
TOKEN_FILE_MODE = 0o600
API_KEY_ENV = "CLLM_API_KEY"


class PathOutsideRoot(ValueError):
    """A requested path that does not lie inside any allowed root once symlinks are resolved."""


def generate_token() -> str:
    """A fresh bearer token (32 random bytes, URL-safe text)."""
    return secrets.token_urlsafe(32)


def check_api_key(key: str) -> str:
    """`key` when it can be sent as `Authorization: Bearer <key>` (visible ASCII, no spaces), else ValueError."""
    if not key or not all("!" <= ch <= "~" for ch in key):
        raise ValueError("the API key must be non-empty visible ASCII without spaces")
    return key


def stable_token(path: Path, api_key: str | None = None) -> str:
    """The server's bearer token: `api_key` when given (the token file is then left alone), else the token in
    the file at `path`, created once (0600) when missing and reused ever after; an empty or damaged file is
    replaced.

    The file appears whole or not at all (written aside, then hard-linked into place, which fails when it exists),
    so two servers starting at once on one model folder end up with the same token."""
    if api_key is not None:
        return check_api_key(api_key)
    while True:
        try:
            token = check_api_key(path.read_text(encoding="ascii").strip())
            if os.stat(path).st_mode & 0o077:  # an older file readable by others: make it private again
                os.chmod(path, TOKEN_FILE_MODE)
            return token
        except FileNotFoundError:
            damaged = False
        except (UnicodeDecodeError, ValueError):
            damaged = True
        token = generate_token()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, aside = tempfile.mkstemp(prefix=".token.", dir=path.parent)  # mkstemp creates it 0600
        try:
            with os.fdopen(fd, "w", encoding="ascii") as file:
                file.write(token)
            if damaged:
                os.replace(aside, path)
                return token
            os.link(aside, path)
            return token
        except FileExistsError:  # another server created it first: read theirs
            continue
        finally:
            with contextlib.suppress(OSError):
                os.unlink(aside)


def token_matches(expected: str, authorization: str | None) -> bool:
    """True when an `Authorization` header value is `Bearer <expected>` (constant-time comparison).

    Tokens are ASCII: a header with other characters (or undecodable bytes) is simply not the token."""
    if not authorization or not authorization.isascii():
        return False
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode(), expected.encode())


def is_loopback_host(host: str) -> bool:
    """True for an address or name that only reaches this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


def _split_host_port(value: str) -> tuple[str, str]:
    """("name", "port") of a Host header value; the port is "" when absent. IPv6 literals keep their brackets."""
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return value, ""
        return value[: end + 1], value[end + 2:] if value[end + 1: end + 2] == ":" else ""
    name, _, port = value.rpartition(":")
    return (name, port) if name else (value, "")


def _is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
        return True
    except ValueError:
        return False


@dataclass
class AccessPolicy:
    """The server's own identity (bound host and actual port) and its token; decides Host, Origin and auth."""

    bind_host: str
    port: int
    token: str
    allowed_roots: tuple[Path, ...] = field(default_factory=tuple)

    def host_allowed(self, host_header: str | None) -> bool:
        """True when a Host header names this server (see the module docstring)."""
        if not host_header:
            return False
        name, port = _split_host_port(host_header.strip().lower())
        if port != str(self.port):
            return False
        if name in LOOPBACK_NAMES:
            return True
        if is_loopback_host(self.bind_host):
            return False
        if _is_wildcard(self.bind_host):
            return _is_ip_literal(name)
        bound = self.bind_host.lower()
        return name == (f"[{bound}]" if ":" in bound and not bound.startswith("[") else bound)

    def origin_allowed(self, origin: str | None) -> bool:
        """True when there is no Origin header or it is this server's own http origin."""
        if origin is None:
            return True
        scheme, sep, rest = origin.strip().lower().partition("://")
        if scheme != "http" or not sep or "/" in rest:
            return False
        return self.host_allowed(rest)

    def authorized(self, authorization: str | None) -> bool:
        """True when the Authorization header carries this server's token."""
        return token_matches(self.token, authorization)

    def resolve_training_path(self, requested: str) -> Path:
        """The real path of `requested` (relative paths are taken from the first root) when it lies inside an
        allowed root after resolving symlinks; raises PathOutsideRoot otherwise, before anything is read."""
        if not self.allowed_roots:
            raise PathOutsideRoot("no training root is configured")
        try:
            candidate = Path(requested).expanduser()
        except RuntimeError:  # '~name/...' where this machine knows no user 'name'
            raise PathOutsideRoot(f"path {requested!r} starts with the home folder of an unknown user") from None
        if not candidate.is_absolute():
            candidate = self.allowed_roots[0] / candidate
        real = Path(os.path.realpath(candidate))
        for root in self.allowed_roots:
            real_root = Path(os.path.realpath(root))
            if real == real_root or real_root in real.parents:
                return real
        roots = ", ".join(str(r) for r in self.allowed_roots)
        raise PathOutsideRoot(f"path {requested!r} resolves outside the allowed root(s): {roots}")
