"""``trunkline rerate --from T --to T [--customer ID]``: re-rate stored CDRs after a tariff change.

The whole range is re-rated and the balances adjusted by the difference in one transaction, or
nothing changes (:mod:`provisioning.billing.rerate`).  A progress bar is drawn on stderr when it
is a terminal (``--progress`` / ``--no-progress`` force it); the summary goes to stdout.

Exit status: 0 done, 1 failed (nothing changed; the reason on stderr), 2 usage.
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import datetime

from rating.batch import Progress

log = logging.getLogger("trunkline.rerate")


def _instant(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 instant: {text!r}") from exc
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a UTC offset (e.g. 2026-01-01T00:00:00Z)")
    return moment


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="trunkline rerate",
        description="Re-rate stored CDRs whose rating instant (answer, else start) is in [--from, --to): "
        "all of them and the ledger adjusted by the difference, or nothing (one transaction). "
        "Customers with call bundles get the whole calendar months re-rated (docs/billing.md).",
    )
    p.add_argument("--from", dest="since", required=True, type=_instant, help="start (inclusive), ISO 8601 with offset")
    p.add_argument("--to", dest="until", required=True, type=_instant, help="end (exclusive), ISO 8601 with offset")
    p.add_argument("--customer", type=int, default=None, help="only this customer's calls")
    p.add_argument("--config", help="TOML configuration file (TRUNKLINE_* variables override it)")
    bar = p.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None, help="always draw the bar")
    bar.add_argument("--no-progress", dest="progress", action="store_false", help="never draw the bar")
    p.add_argument("--threads", type=int, default=None, help="rating threads (default: CPU count, at most 4)")
    return p


def main(argv: list[str]) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) if exc.code in (0, None) else 2
    from trunkline.config import ConfigError, load_settings

    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        sys.stderr.write(f"trunkline rerate: {exc}\n")
        return 2
    logging.basicConfig(level=getattr(logging, settings.log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from provisioning.billing.rerate import rerate
    from provisioning.db import engine_of, session_factory_from_url
    from provisioning.errors import InvalidValue, NotFound

    show = sys.stderr.isatty() if args.progress is None else args.progress
    bar = Progress(sys.stderr if show else None)
    factory = session_factory_from_url(settings.database_url)
    try:
        result = rerate(factory, since=args.since, until=args.until, customer_id=args.customer, progress=bar,
                        threads=args.threads)
    except (InvalidValue, NotFound) as exc:
        bar.close()
        sys.stderr.write(f"trunkline rerate: {exc}; nothing was changed\n")
        return 1
    except Exception as exc:
        bar.close()
        log.debug("re-rating failed", exc_info=True)
        sys.stderr.write(f"trunkline rerate: failed, nothing was changed: {exc!r}\n")
        return 1
    finally:
        engine_of(factory).dispose()
    bar.close()
    sign = "-" if result.difference_micro < 0 else ""
    whole, frac = divmod(abs(result.difference_micro), 10**6)
    sys.stdout.write(
        f"billing run {result.run_id}: {result.calls:,} call(s) re-rated ({result.in_range:,} in the range, the rest "
        f"completing bundle months) in {result.seconds:.1f} s; {result.entries} ledger adjustment(s) for "
        f"{result.customers} customer(s), difference {sign}{whole}.{frac:06d}\n"
    )
    return 0
