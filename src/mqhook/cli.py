"""Command line: ``mqhook run`` (the daemon), ``mqhook admin passwd``, ``mqhook sink``,
``mqhook deadletters``, ``mqhook bench`` and ``mqhook version``."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from mqhook import __version__
from mqhook.errors import ConfigError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mqhook", description="MQTT broker with EMQX-compatible webhooks")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the broker (embedded defaults: MQTT 127.0.0.1:1883, admin 127.0.0.1:18083)")
    run.add_argument("--config", metavar="FILE", help="TOML config file")
    run.add_argument("--mqtt-bind", metavar="HOST:PORT", help="MQTT listener address (port 0 = any free port)")
    run.add_argument("--admin-bind", metavar="HOST:PORT", help="admin HTTP address (port 0 = any free port)")
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    run.add_argument("--data-dir", metavar="DIR", help="administrators, API keys and API webhooks (default ./data)")
    run.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="N broker processes sharing the MQTT port(s), routed through NATS (needs mqhook[cluster]); default 1",
    )
    # Set by the --workers supervisor on each worker it starts (not for users).
    for hidden in ("--worker", "--node", "--cluster-node", "--nats-url"):
        run.add_argument(hidden, help=argparse.SUPPRESS)
    run.add_argument(
        "--webhook",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="add a webhook on all messages and events (repeatable)",
    )
    admin = sub.add_parser("admin", help="manage the admin server's users (the daemon need not run)")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True)
    passwd = admin_sub.add_parser(
        "passwd", help="set an administrator's password, read from stdin (asked twice on a terminal)"
    )
    passwd.add_argument("user", nargs="?", default="admin", help="the administrator (default admin)")
    passwd.add_argument("--data-dir", metavar="DIR", help="the daemon's data directory (default: the config's)")
    passwd.add_argument("--config", metavar="FILE", help="TOML config file (for its data_dir)")
    pw = sub.add_parser("passwd", help="manage an MQTT password file (authn.password_file)")
    pw.add_argument("--file", required=True, metavar="FILE", help="the password file (created if missing)")
    pw.add_argument("action", choices=["add", "remove", "list"])
    pw.add_argument("user", nargs="?", help="the user (add, remove)")
    pw.add_argument("--superuser", action="store_true", help="add: the user bypasses the ACL")
    acl = sub.add_parser("acl", help="ACL tools")
    acl_sub = acl.add_subparsers(dest="acl_command", required=True)
    check = acl_sub.add_parser("check", help="explain the ACL's decision for one client and topic")
    check.add_argument("--file", required=True, metavar="FILE", help="the ACL file (authz.acl_file)")
    check.add_argument("--no-match", choices=["allow", "deny"], default="allow", help="authz.no_match (allow)")
    check.add_argument("--username")
    check.add_argument("--clientid", default="")
    check.add_argument("--ipaddr", default="127.0.0.1")
    check.add_argument("action", choices=["publish", "subscribe"])
    check.add_argument("topic")
    dead = sub.add_parser(
        "deadletters",
        help="list, replay or purge a webhook's dead letters (files while mqhook is stopped, or --api)",
    )
    dead.add_argument("action", choices=["list", "replay", "purge"])
    dead.add_argument("webhook", help="the webhook's name")
    dead.add_argument("--data-dir", metavar="DIR", help="the daemon's data directory (default: the config's)")
    dead.add_argument("--config", metavar="FILE", help="TOML config file (for its data_dir)")
    dead.add_argument("--since", metavar="T", help="given up at or after T (unix seconds or ISO 8601)")
    dead.add_argument("--until", metavar="T", help="given up before T (unix seconds or ISO 8601)")
    dead.add_argument("--api", metavar="URL", help="a running daemon's admin URL, e.g. http://127.0.0.1:18083")
    dead.add_argument("--api-key", metavar="KEY:SECRET", help="an API key for --api (POST /api/v1/api_keys)")
    sink = sub.add_parser("sink", help="a little webhook receiver: prints every body, answers 200")
    sink.add_argument("--host", default="127.0.0.1")
    sink.add_argument("--port", type=int, default=5000)
    sub.add_parser("bench", help="load-test harness and webhook receiver (see `mqhook bench --help`)", add_help=False)
    sub.add_parser("version", help="print the version")
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    over: dict[str, Any] = {}
    if args.mqtt_bind:
        over.setdefault("mqtt", {})["bind"] = args.mqtt_bind
    if args.admin_bind:
        over.setdefault("admin", {})["bind"] = args.admin_bind
    if args.log_level:
        over.setdefault("log", {})["level"] = args.log_level
    if args.data_dir:
        over["data_dir"] = args.data_dir
    if args.node:
        over["node"] = args.node
    if args.nats_url:
        over.setdefault("cluster", {})["nats_url"] = args.nats_url
    if args.cluster_node:
        over.setdefault("cluster", {})["node"] = args.cluster_node
    return over


def _run_args(argv: list[str]) -> list[str]:
    """The ``mqhook run`` arguments a worker gets from its supervisor: all but ``--workers`` and the
    addresses and directory the supervisor sets itself."""
    out: list[str] = []
    skip = False
    for arg in argv[1:]:  # argv[0] is "run"
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in ("--workers", "--mqtt-bind", "--admin-bind", "--data-dir"):
            skip = "=" not in arg
            continue
        out.append(arg)
    return out


def _read_password() -> str:
    """A new password from stdin: asked twice on a terminal, else the first line."""
    if sys.stdin.isatty():
        import getpass

        first = getpass.getpass("New password: ")
        if getpass.getpass("Again: ") != first:
            raise ValueError("the two passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def _passwd(args: argparse.Namespace) -> int:
    """``mqhook passwd``: the password is read from stdin (asked twice on a terminal)."""
    from pathlib import Path

    from mqhook.access.passwd import PasswordFile

    try:
        path = Path(args.file)
        pf = PasswordFile.load(path, field="--file") if path.exists() else PasswordFile()
        if args.action == "list":
            for name, (_, superuser) in sorted(pf.users.items()):
                print(f"{name}{' (superuser)' if superuser else ''}")
            return 0
        if not args.user:
            raise ValueError(f"{args.action} needs a USER")
        if args.action == "remove":
            if not pf.remove(args.user):
                raise ValueError(f"no user {args.user!r} in {args.file}")
        else:
            password = _read_password()
            if not password:
                raise ValueError("an empty password")
            pf.set(args.user, password, args.superuser)
        pf.save(path)
    except (ValueError, ConfigError, OSError) as exc:
        print(f"mqhook passwd: {exc}", file=sys.stderr)
        return 2
    print(f"mqhook passwd: {args.file}: {args.action} {args.user} done (SIGHUP makes a running mqhook read it)",
          file=sys.stderr)  # fmt: skip
    return 0


def _acl_check(args: argparse.Namespace) -> int:
    """``mqhook acl check``: prints the decision and the rule; exit 0 if allowed, 1 if denied."""
    from mqhook.access.acl import FileAuthorizer
    from mqhook.access.settings import AuthzConfig

    try:
        authz = FileAuthorizer(AuthzConfig(acl_file=args.file, no_match=args.no_match))
    except ConfigError as exc:
        print(f"mqhook acl check: {exc}", file=sys.stderr)
        return 2
    answer = authz.explain(args.username, args.clientid, args.ipaddr, args.action, args.topic)
    print(answer)
    return 0 if answer.startswith("allow") else 1


def _admin(args: argparse.Namespace) -> int:
    from mqhook import config as config_mod
    from mqhook.admin.store import Store, StoreError
    from mqhook.passwords import hash_password

    try:
        data_dir = args.data_dir or config_mod.load(args.config, warn=lambda message: None).data_dir
        password = _read_password()
        if len(password) < 8:
            raise ValueError("a password of at least 8 characters is needed")
        store = Store(data_dir)
        hashed = hash_password(password)
        if store.user(args.user) is None:
            store.add_user(args.user, hashed)
            print(f"mqhook: administrator {args.user!r} created in {store.path}", file=sys.stderr)
        else:
            store.set_password(args.user, hashed)  # also ends the user's tokens
            print(f"mqhook: password of {args.user!r} changed in {store.path}", file=sys.stderr)
        store.close()
    except (ValueError, ConfigError, StoreError) as exc:
        print(f"mqhook admin passwd: {exc}", file=sys.stderr)
        return 2
    return 0


def _deadletters_api(args: argparse.Namespace) -> int:
    """Through a running daemon's REST API (``/api/v1/webhooks/{name}/deadletters``)."""
    import base64
    import json
    import urllib.error
    import urllib.parse
    import urllib.request

    query = urllib.parse.urlencode({k: v for k, v in (("since", args.since), ("until", args.until)) if v})
    path = f"/api/v1/webhooks/{urllib.parse.quote(args.webhook, safe='')}/deadletters"
    method = {"list": "GET", "replay": "POST", "purge": "DELETE"}[args.action]
    if args.action == "replay":
        path += "/replay"
    if args.action == "list":
        query += ("&" if query else "") + "limit=10000"
    req = urllib.request.Request(args.api.rstrip("/") + path + (f"?{query}" if query else ""), method=method)
    if args.api_key:
        req.add_header("Authorization", "Basic " + base64.b64encode(args.api_key.encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            body = json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        print(f"mqhook deadletters: {exc.code}: {exc.read().decode(errors='replace')}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"mqhook deadletters: {args.api}: {exc}", file=sys.stderr)
        return 1
    if args.action == "list":
        for item in body["data"]:
            print(json.dumps(item, separators=(",", ":")))
        print(f"{body['meta']['count']} dead letter(s)", file=sys.stderr)
    else:
        print(json.dumps(body), file=sys.stderr)
    return 0


def _deadletters(args: argparse.Namespace) -> int:
    """``mqhook deadletters``: with ``--api`` through the running daemon; else on the files, which a
    running daemon owns: ``list`` reads them at any time, ``replay``/``purge`` need it stopped."""
    import asyncio
    import json

    from mqhook import config as config_mod
    from mqhook.webhook.deadletter import DeadLetters, DeadLettersLocked, as_json, parse_time
    from mqhook.webhook.spool import Spool, SpoolLocked, spool_dir

    if args.api:
        return _deadletters_api(args)
    try:
        since = None if args.since is None else parse_time(args.since)
        until = None if args.until is None else parse_time(args.until)
        data_dir = args.data_dir or config_mod.load(args.config, warn=lambda message: None).data_dir
    except (ValueError, ConfigError) as exc:
        print(f"mqhook deadletters: {exc}", file=sys.stderr)
        return 2
    where = spool_dir(data_dir, args.webhook)
    if not (where / "dead.log").exists():
        print(f"mqhook deadletters: no dead letters for {args.webhook!r} in {where}", file=sys.stderr)
        return 0 if args.action == "list" else 1
    try:
        if args.action == "list":
            items = DeadLetters(where, 1 << 62, owner=False).select(since, until)
            for item in items:
                print(json.dumps(as_json(item), separators=(",", ":")))
            print(f"{len(items)} dead letter(s)", file=sys.stderr)
            return 0
        store = DeadLetters(where, 1 << 62)
        try:
            taken = store.take(since, until)
            if args.action == "replay" and taken:
                try:
                    spool = Spool(where, fsync="always")
                except SpoolLocked:
                    store.put_back(taken)
                    raise
                for _, _, key, data in taken:
                    spool.append(data, key)
                asyncio.run(spool.close())
        finally:
            store.close()
    except (DeadLettersLocked, SpoolLocked):
        print(
            f"mqhook deadletters: {where} is in use by a running mqhook; use --api URL --api-key KEY:SECRET "
            "(or the REST API) while it runs",
            file=sys.stderr,
        )
        return 1
    except OSError as exc:
        print(f"mqhook deadletters: {exc}", file=sys.stderr)
        return 1
    done = "put back into the spool (delivered at the next start of a durable webhook)"
    print(f"mqhook deadletters: {len(taken)} dead letter(s) {done if args.action == 'replay' else 'purged'}",
          file=sys.stderr)  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:  # its own parser, imported only when asked for
        from mqhook.loadtest.cli import main as bench_main

        return bench_main(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(__version__)
        return 0
    if args.command == "admin":
        return _admin(args)
    if args.command == "passwd":
        return _passwd(args)
    if args.command == "acl":
        return _acl_check(args)
    if args.command == "deadletters":
        return _deadletters(args)
    if args.command == "sink":
        from mqhook import sink

        return sink.main(["--host", args.host, "--port", str(args.port)])
    from mqhook import config as config_mod
    from mqhook.webhook.model import webhook_from_flag

    def warn(message: str) -> None:  # logging is not set up yet: straight to stderr
        print(f"mqhook: warning: {message}", file=sys.stderr)

    try:
        cfg = config_mod.load(args.config, overrides=_overrides(args), warn=warn)
        if args.webhook:
            cfg.webhooks.extend(webhook_from_flag(flag) for flag in args.webhook)
            cfg = config_mod.validate(cfg)
    except ConfigError as exc:
        print(f"mqhook: config error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=cfg.log.level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.workers < 1:
        print(f"mqhook: --workers: {args.workers} is invalid; expected 1 or more", file=sys.stderr)
        return 2
    if args.workers > 1 and not args.worker:
        from mqhook.cluster.workers import supervise

        try:
            return supervise(cfg, args.workers, _run_args(argv))
        except ConfigError as exc:
            print(f"mqhook: config error: {exc}", file=sys.stderr)
            return 2
    from mqhook.app import run

    return run(cfg, reuse_port=bool(args.worker))


if __name__ == "__main__":
    sys.exit(main())
