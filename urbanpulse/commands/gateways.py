"""``urbanpulse gateways create | list | revoke | bind``: who may publish for which sensors."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys
from pathlib import Path
from typing import Any

import orjson

from urbanpulse.commands import EXIT_USAGE, CommandError, database
from urbanpulse.core.mqtt_login import (
    Identity,
    MqttLoginError,
    password_field,
    password_of,
    username_of,
)
from urbanpulse.core.settings import Settings
from urbanpulse.gateways import service
from urbanpulse.gateways.acl import bootstrap_config, merged_dynsec
from urbanpulse.gateways.broker import BrokerAdminError
from urbanpulse.storage import gateways as store
from urbanpulse.storage.keys import record_audit

log = logging.getLogger(__name__)

DESCRIPTION = (
    "Gateways own sensors: each has its own MQTT credentials and may publish only the data and "
    "status topics of the sensors bound to it.  Changes reach the broker at once (no restart)."
)
ACTIONS = {
    "create": "create a gateway and print its MQTT username, client id and password "
    "(shown only now; the broker stores it hashed)",
    "list": "list gateways, their state and their sensors",
    "revoke": "revoke a gateway: its credentials stop working and the broker disconnects it",
    "bind": "let a gateway publish for registered sensors (SENSOR_ID ...)",
    "init-broker": "write the platform's MQTT identities (admin, bridge, and the publisher if "
    "URBANPULSE_MQTT__PASSWORD is set) into a Mosquitto dynamic-security file, keeping the "
    "gateways it holds; for brokers outside the local stack, before the broker starts",
}


def add_gateways_parser(sub: Any, epilog: str) -> None:
    parser = sub.add_parser(
        "gateways",
        help="Gateways and their MQTT credentials: create, list, revoke, bind.",
        description=DESCRIPTION,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=cmd_gateways)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser("create", help=ACTIONS["create"], description=ACTIONS["create"])
    create.add_argument("gateway_id", metavar="GATEWAY_ID", help="its MQTT username and client id")
    create.add_argument("--name", help="a human-readable name, e.g. its site")
    actions.add_parser("list", help=ACTIONS["list"], description=ACTIONS["list"])
    revoke = actions.add_parser("revoke", help=ACTIONS["revoke"], description=ACTIONS["revoke"])
    revoke.add_argument("gateway_id", metavar="GATEWAY_ID")
    bind = actions.add_parser("bind", help=ACTIONS["bind"], description=ACTIONS["bind"])
    bind.add_argument("gateway_id", metavar="GATEWAY_ID")
    bind.add_argument("sensor_ids", metavar="SENSOR_ID", nargs="+", help="registered sensors")
    init = actions.add_parser(
        "init-broker", help=ACTIONS["init-broker"], description=ACTIONS["init-broker"]
    )
    init.add_argument("file", metavar="FILE", help="the broker's plugin_opt_config_file")


def cmd_init_broker(settings: Settings, path: Path) -> int:
    mqtt = settings.mqtt
    passwords = {}
    for identity in Identity:
        secret = getattr(mqtt, password_field(identity))
        if secret is not None:
            passwords[username_of(mqtt, identity)] = secret.get_secret_value()
    for required in (Identity.ADMIN, Identity.BRIDGE):
        if username_of(mqtt, required) not in passwords:
            password_of(mqtt, required)  # raises, saying which setting to set
    try:
        existing = orjson.loads(path.read_bytes()) if path.exists() else None
    except (OSError, orjson.JSONDecodeError) as exc:
        raise CommandError(f"cannot read {path} as a dynamic-security file: {exc}") from None
    document = merged_dynsec(existing, bootstrap_config(mqtt, passwords))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    sys.stdout.write(f"wrote {', '.join(sorted(passwords))} to {path}\n")
    return 0


def cmd_gateways(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "init-broker":
        return cmd_init_broker(settings, Path(args.file))
    actor = f"cli:{getpass.getuser()}"

    async def main() -> None:
        async with database(settings.database) as conn, conn.transaction():
            if args.action == "create":
                issued = await service.create_gateway(
                    conn, settings.mqtt, args.gateway_id, args.name
                )
                await record_audit(conn, None, actor, "gateway.create", args.gateway_id)
                sys.stdout.write(
                    f"username:  {issued.username}\nclient id: {issued.client_id}\n"
                    f"password:  {issued.password}\n"
                )
                log.info("created gateway %s; its password is shown only now", args.gateway_id)
            elif args.action == "revoke":
                await service.revoke_gateway(conn, settings.mqtt, args.gateway_id)
                await record_audit(conn, None, actor, "gateway.revoke", args.gateway_id)
                sys.stdout.write(f"revoked {args.gateway_id}\n")
            elif args.action == "bind":
                _gateway, bound = await service.bind_sensors(
                    conn, settings.mqtt, args.gateway_id, args.sensor_ids
                )
                detail = {"sensors": bound}
                await record_audit(conn, None, actor, "gateway.bind", args.gateway_id, detail)
                sys.stdout.write(f"bound {len(bound)} new sensors to {args.gateway_id}\n")
            else:
                for gateway in await store.list_gateways(conn):
                    state = "active" if gateway.active else "revoked"
                    sensors = " ".join(gateway.sensors) or "-"
                    sys.stdout.write(f"{gateway.gateway_id:<24} {state:<8} {sensors}\n")

    try:
        asyncio.run(main())
    except service.GatewayError as exc:
        raise CommandError(str(exc), EXIT_USAGE if exc.status == 422 else 1) from None
    except (BrokerAdminError, MqttLoginError) as exc:
        raise CommandError(f"the MQTT broker did not take the change: {exc}") from None
    return 0
