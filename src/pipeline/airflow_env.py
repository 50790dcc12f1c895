"""The embedded Airflow set-up, in one place.

Every way this project runs Airflow on one machine takes its environment from here: ``make demo``
(through ``pipeline demo`` and ``make airflow-db``), ``scripts/airflow.sh`` (``make up`` and the
docker services), ``benchmarks/run.py`` and the end-to-end tests. The set-up is:

- ``PIPELINE_HOME``: where a run writes everything (default ``<checkout>/var``);
- ``AIRFLOW_HOME``: ``$PIPELINE_HOME/airflow``, holding the SQLite metadata DB and the task logs;
- the DAG and plugin folders of the checkout, no example DAGs;
- the ``spark_default`` connection: ``local[*]`` unless told otherwise;
- the venv's ``bin`` first on ``PATH``, so ``airflow`` and ``spark-submit`` are the pinned ones.

A person may point ``AIRFLOW_HOME`` and ``AIRFLOW_CONN_SPARK_DEFAULT`` elsewhere (another home, a
standalone Spark master): :func:`user_env` keeps what they set. The DAG and plugin folders always
come from the checkout. :func:`prepare` puts the minimal ``scripts/airflow.cfg`` into a new
``AIRFLOW_HOME`` before Airflow writes its default one, which would pin this checkout's absolute
paths (a moved checkout would then use the original's metadata DB), and adds the secrets all of the
home's Airflow processes must share.

Shell scripts read the same values: ``eval "$(python -m pipeline.airflow_env --repo "$REPO")"``.
"""

from __future__ import annotations

import argparse
import base64
import configparser
import io
import json
import os
import shlex
import secrets
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from pipeline.paths import atomic_write_text

__all__ = ["checkout", "embedded_env", "user_env", "passwords_file", "prepare", "migrate", "main"]

# What a person may set for themselves; everything else in embedded_env() is the set-up's.
USER_SETTABLE = ("AIRFLOW_HOME", "AIRFLOW_CONN_SPARK_DEFAULT")


def checkout(repo: Path | str | None = None) -> Path:
    """The checkout whose ``dags/`` runs: ``repo`` if given, else the one this package is installed
    from (``pip install -e .``), else the working directory."""
    candidates = [Path(repo)] if repo else [Path(__file__).resolve().parents[2], Path.cwd()]
    for path in candidates:
        if (path / "dags" / "music_recs_nightly.py").is_file():
            return path.resolve()
    raise FileNotFoundError(f"no dags/music_recs_nightly.py under {', '.join(map(str, candidates))}: "
                            "run from the project's checkout or pass --repo")


def embedded_env(home: Path | str, *, spark_master: str = "local[*]", repo: Path | str | None = None) -> dict[str, str]:
    """The variables of the embedded set-up with everything under ``home`` (only these, not ``os.environ``)."""
    home, root = Path(home), checkout(repo)
    bin_dir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    return {
        "PIPELINE_HOME": str(home),
        "AIRFLOW_HOME": str(home / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(root / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(root / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps({"conn_type": "spark", "host": spark_master}),
        "PATH": path if path.split(os.pathsep)[:1] == [bin_dir] else f"{bin_dir}{os.pathsep}{path}",
    }


def user_env(base: Mapping[str, str] | None = None, *, repo: Path | str | None = None) -> dict[str, str]:
    """``base`` (default ``os.environ``) with the embedded set-up applied, keeping the ``PIPELINE_HOME``
    (default ``<checkout>/var``) and the :data:`USER_SETTABLE` values it already sets."""
    base = dict(os.environ if base is None else base)
    home = base.get("PIPELINE_HOME") or str(checkout(repo) / "var")
    env = {**base, **embedded_env(home, repo=repo)}
    env.update({k: base[k] for k in USER_SETTABLE if base.get(k)})
    return env


# Settings every Airflow process of one home must share. Airflow writes them into the default
# airflow.cfg it generates; without them each process draws its own at start, and the scheduler's
# task tokens are refused by the API server ("Invalid auth token"), its sessions and its encrypted
# connections are unreadable to the others. The variables of the same names (compose sets them) win.
_SHARED_SECRETS = {
    ("core", "fernet_key"): lambda: base64.urlsafe_b64encode(os.urandom(32)).decode(),
    ("api", "secret_key"): lambda: secrets.token_urlsafe(16),
    ("api_auth", "jwt_secret"): lambda: secrets.token_urlsafe(32),
}


def passwords_file(env: Mapping[str, str]) -> Path:
    """Where the simple auth manager keeps its users' passwords (Airflow's own default under the home)."""
    configured = env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE")
    return Path(configured) if configured else Path(env["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated"


def _admin_password(env: Mapping[str, str]) -> None:
    """Write the admin's password before any API server starts (Airflow would generate it only on its first
    start, so the README could not name a file to read); Airflow keeps the passwords it finds there."""
    path = passwords_file(env)
    if not path.exists():
        atomic_write_text(path, json.dumps({"admin": secrets.token_urlsafe(12)}) + "\n")
        path.chmod(0o600)


def prepare(env: Mapping[str, str], *, repo: Path | str | None = None) -> Path:
    """Create ``AIRFLOW_HOME`` with the minimal ``airflow.cfg``, this home's shared secrets and the admin's
    password file; an existing file is kept and only given the secrets it lacks. Returns ``AIRFLOW_HOME``."""
    airflow_home = Path(env["AIRFLOW_HOME"])
    airflow_home.mkdir(parents=True, exist_ok=True)
    _admin_password(env)
    cfg = airflow_home / "airflow.cfg"
    text = cfg.read_text() if cfg.exists() else (checkout(repo) / "scripts" / "airflow.cfg").read_text()
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    missing = [(section, option) for section, option in _SHARED_SECRETS
               if not parser.has_option(section, option) and f"AIRFLOW__{section.upper()}__{option.upper()}" not in env]
    if cfg.exists() and not missing:
        return airflow_home
    for section, option in missing:
        if not parser.has_section(section):
            parser.add_section(section)
        parser.set(section, option, _SHARED_SECRETS[section, option]())
    header = text[: text.find("\n[") + 1]  # the comment block above the first section
    body = io.StringIO()
    parser.write(body)
    atomic_write_text(cfg, header + body.getvalue())
    cfg.chmod(0o600)  # it holds the secrets
    return airflow_home


def migrate(env: Mapping[str, str], log: Path | None = None, *, repo: Path | str | None = None) -> None:
    """:func:`prepare`, then ``airflow db migrate`` in ``env``; its output goes to ``log`` if given.
    Raises ``RuntimeError`` with the output's tail when the migration fails."""
    prepare(env, repo=repo)
    out = subprocess.run(["airflow", "db", "migrate"], env=dict(env), capture_output=True, text=True, timeout=600)
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(out.stdout + out.stderr)
    if out.returncode != 0:
        tail = "\n".join((out.stdout + out.stderr).splitlines()[-30:])
        raise RuntimeError(f"airflow db migrate failed in {env['AIRFLOW_HOME']}" + (f" (log {log})" if log else "")
                           + f":\n{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.airflow_env", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", help="the checkout (default: the one this package is installed from, or .)")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("exports", help="print `export NAME=value` lines for a shell to eval (the default)")
    sub.add_parser("prepare", help="create AIRFLOW_HOME with the minimal airflow.cfg")
    mig = sub.add_parser("migrate", help="prepare, then `airflow db migrate`")
    mig.add_argument("--log", type=Path, help="write airflow's output here (printed only on failure)")
    args = parser.parse_args(argv)
    try:
        env = user_env(repo=args.repo)
        if args.command == "prepare":
            prepare(env, repo=args.repo)
        elif args.command == "migrate":
            migrate(env, args.log, repo=args.repo)
        else:
            for name in embedded_env(env["PIPELINE_HOME"], repo=args.repo):
                print(f"export {name}={shlex.quote(env[name])}")
    except (FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
