"""Create `.env` from `.env.example` with fresh secrets, once: `python3 mk/make_env.py` (run by `make env` / `make up`).

Every `change-me` value becomes a new random secret (a Fernet key for *FERNET_KEY), an empty AIRFLOW_UID becomes
this user's id, and everything else is copied as it is. An existing `.env` is never changed; if it still holds a
`change-me` placeholder the command fails and names the variables. Standard library only: it runs on the host's
python3 before any virtual environment exists.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import sys
import tempfile
from pathlib import Path

PLACEHOLDER = "change-me"
ROOT = Path(__file__).resolve().parent.parent
LOGINS = (("Airflow", "AIRFLOW_ADMIN_USERNAME", "AIRFLOW_ADMIN_PASSWORD"),
          ("Grafana", "GRAFANA_ADMIN_USER", "GRAFANA_ADMIN_PASSWORD"))


def fernet_key() -> str:
    """A key for cryptography's Fernet: urlsafe base64 of 32 random bytes."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")


def new_secret(name: str) -> str:
    """A fresh value for the placeholder of variable `name` (URL-safe: it also goes into the database URL).

    48 random bytes make 64 characters: the API's HS512 JWT key should be at least 64 bytes long."""
    return fernet_key() if name.endswith("FERNET_KEY") else secrets.token_urlsafe(48)


def split_assignment(line: str) -> tuple[str, str] | None:
    """(name, value) of a `NAME=value` line; None for comments and blank lines."""
    stripped = line.strip()
    if not stripped or stripped.startswith("#") or "=" not in stripped:
        return None
    name, _, value = stripped.partition("=")
    return name.strip(), value.strip()


def filled_lines(example_lines: list[str], uid: int) -> tuple[list[str], dict[str, str]]:
    """The example's lines with placeholders filled, and the values that were filled in, by variable."""
    lines, filled = [], {}
    for line in example_lines:
        assignment = split_assignment(line)
        if assignment is not None:
            name, value = assignment
            if value == PLACEHOLDER:
                filled[name] = new_secret(name)
            elif name == "AIRFLOW_UID" and not value:
                filled[name] = str(uid)
            if name in filled:
                line = f"{name}={filled[name]}"
        lines.append(line)
    return lines, filled


def placeholders_left(lines: list[str]) -> list[str]:
    """Variables whose value is still the placeholder."""
    return [name for name, value in filter(None, map(split_assignment, lines)) if value == PLACEHOLDER]


def write_private(path: Path, text: str) -> None:
    """Write `text` atomically, readable by this user only (the file holds secrets)."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def login_lines(values: dict[str, str], generated: dict[str, str]) -> list[str]:
    """'<service> login: user / password' for each login whose password was generated."""
    return [f"  {service} login: {values.get(user, 'admin')} / {generated[password]}"
            for service, user, password in LOGINS if password in generated]


def make_env(example: Path, target: Path, uid: int) -> int:
    """Create `target` from `example` unless it exists; returns the exit status."""
    if target.exists():
        left = placeholders_left(target.read_text(encoding="utf-8").splitlines())
        if left:
            print(f"make_env: {target} still has the placeholder '{PLACEHOLDER}' for: {', '.join(left)}. "
                  f"Set real values there, or delete {target} to have them generated.", file=sys.stderr)
            return 1
        print(f"make_env: {target} exists, left as it is")
        return 0
    if not example.is_file():
        print(f"make_env: {example} is missing: cannot create {target}", file=sys.stderr)
        return 1
    lines, filled = filled_lines(example.read_text(encoding="utf-8").splitlines(), uid)
    write_private(target, "\n".join(lines) + "\n")
    values = dict(filter(None, map(split_assignment, lines)))
    print(f"make_env: created {target} from {example} with new values for: {', '.join(filled) or 'nothing'}")
    for line in login_lines(values, filled):
        print(line)
    print(f"make_env: the secrets are in {target} only (git-ignored); keep it.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 mk/make_env.py", description=__doc__.splitlines()[0])
    parser.add_argument("--example", type=Path, default=ROOT / ".env.example", help="the template (.env.example)")
    parser.add_argument("--env", type=Path, default=ROOT / ".env", help="the file to create (.env)")
    args = parser.parse_args(argv)
    return make_env(args.example, args.env, os.getuid())


if __name__ == "__main__":
    sys.exit(main())
