"""`hemoscan db ...`: apply, roll back and inspect the database migrations."""

from __future__ import annotations

import argparse

from hemoscan.settings import get_settings


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    db = subparsers.add_parser(
        "db",
        help="manage the results database (migrations)",
        description="Apply or inspect the database migrations on HEMOSCAN_DATABASE_URL "
        "(default: the embedded SQLite file).",
    )
    sub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = sub.add_parser("upgrade", help="apply migrations (default: up to the newest)")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(func=_upgrade)
    down = sub.add_parser("downgrade", help="roll migrations back to REVISION ('base': all)")
    down.add_argument("revision")
    down.set_defaults(func=_downgrade)
    cur = sub.add_parser("current", help="print the database's current revision")
    cur.set_defaults(func=_current)


def _url() -> str:
    return get_settings().effective_database_url


def _safe(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _upgrade(args: argparse.Namespace) -> int:
    from schema.db import current_revision, upgrade

    url = _url()
    upgrade(url, args.revision)
    print(f"database {_safe(url)} at revision {current_revision(url)}")
    return 0


def _downgrade(args: argparse.Namespace) -> int:
    from schema.db import current_revision, downgrade

    url = _url()
    downgrade(url, args.revision)
    print(f"database {_safe(url)} at revision {current_revision(url) or 'base (empty)'}")
    return 0


def _current(args: argparse.Namespace) -> int:
    from schema.db import current_revision

    url = _url()
    print(f"database {_safe(url)} at revision {current_revision(url) or 'base (empty)'}")
    return 0
