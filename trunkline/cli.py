"""The ``trunkline`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from trunkline.config import ConfigError, load_settings


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def _loop_policy() -> None:
    try:
        import uvloop
    except ImportError:  # the stock loop works, only slower
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def cmd_run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        sys.stderr.write(f"trunkline: {exc}\n")
        return 2
    _setup_logging(settings.log_level)
    _loop_policy()
    from cdr.spool import SpoolError
    from trunkline.app import run_forever

    try:
        asyncio.run(run_forever(settings, config_path=args.config))
    except (OSError, SpoolError) as exc:
        sys.stderr.write(f"trunkline: cannot start: {exc}\n")
        return 1
    return 0


def cmd_billing(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        sys.stderr.write(f"trunkline: {exc}\n")
        return 2
    _setup_logging(settings.log_level)
    import signal
    import threading

    from trunkline.billing import run_billing

    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        # Only set a flag: the batch being written is committed and its position saved first.
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop)
    try:
        return run_billing(settings, stop=stop, parent_pid=args.parent_pid)
    except OSError as exc:
        sys.stderr.write(f"trunkline billing: {exc}\n")
        return 1


def cmd_migrate(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        sys.stderr.write(f"trunkline: {exc}\n")
        return 2
    _setup_logging(settings.log_level)
    from provisioning.migrate import upgrade

    settings.var_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    sys.stdout.write("database is at the latest schema\n")
    return 0


def cmd_admin_token(args: argparse.Namespace) -> int:
    if not args.rotate:
        sys.stderr.write("trunkline admin-token: nothing to do (use --rotate)\n")
        return 2
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        sys.stderr.write(f"trunkline: {exc}\n")
        return 2
    if settings.admin_token:
        sys.stderr.write("trunkline admin-token: TRUNKLINE_ADMIN_TOKEN is set; change the variable instead\n")
        return 2
    _setup_logging(settings.log_level)
    from provisioning.db import session_factory_from_url
    from provisioning.tokens import rotate_admin_token

    token_file = settings.var_dir / "admin-token"
    token = rotate_admin_token(session_factory_from_url(settings.database_url), token_file=token_file)
    # Shown once; the database keeps only its hash.  The previous token stops working at once
    # on this node and within 0.5 s on running ones (their verification cache).
    sys.stdout.write(f"New admin API token (also saved to {token_file}; the previous one is revoked):\n  {token}\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["rate"]:
        # The file-based batch rater owns its arguments (docs/rating.md): hand them over whole.
        from rating.batch import main as rate_main

        return rate_main(args_list[1:])
    if args_list[:1] == ["rerate"]:
        from trunkline.rerate import main as rerate_main

        return rerate_main(args_list[1:])
    parser = argparse.ArgumentParser(prog="trunkline", description="Trunkline softswitch")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start the switch (SIP, registrar, B2BUA, admin API)")
    run.add_argument("--config", help="TOML configuration file (TRUNKLINE_* variables override it)")
    run.set_defaults(func=cmd_run)
    bil = sub.add_parser("billing", help="run the billing sidecar: CDRs from the spool into the database "
                                         "(`trunkline run` starts it unless billing.enabled = false)")
    bil.add_argument("--config", help="TOML configuration file (TRUNKLINE_* variables override it)")
    bil.add_argument("--parent-pid", type=int, default=None,
                     help="stop when this process is gone (set by `trunkline run` for its child)")
    bil.set_defaults(func=cmd_billing)
    sub.add_parser("rate", help="rate a directory of CDRs and tariffs: trunkline rate --input DIR --output DIR "
                                "(see `trunkline rate --help`)")
    sub.add_parser("rerate", help="re-rate stored CDRs after a tariff change: trunkline rerate --from T --to T "
                                  "[--customer ID] (see `trunkline rerate --help`)")
    mig = sub.add_parser("migrate", help="create or upgrade the database schema")
    mig.add_argument("--config")
    mig.set_defaults(func=cmd_migrate)
    tok = sub.add_parser("admin-token", help="rotate the service provider's API token: trunkline admin-token --rotate")
    tok.add_argument("--rotate", action="store_true",
                     help="issue a new token, print it once, save it to <var_dir>/admin-token, revoke the old one")
    tok.add_argument("--config", help="TOML configuration file (TRUNKLINE_* variables override it)")
    tok.set_defaults(func=cmd_admin_token)
    args = parser.parse_args(args_list)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
