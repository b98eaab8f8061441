"""The compose stack: `docker compose config` where the compose plugin exists, and everywhere a
structural check (healthchecks, named volumes, secrets as files, wiring between the services and
the config files); the methtrader Dockerfile and the Caddyfile."""

import json
import re
import shutil
from typing import Any

import pytest
import yaml

from deploy.paths import DEPLOY, REPO, output, run

COMPOSE = DEPLOY / "docker-compose.yml"
SERVICES = {
    "methtrader", "postgres", "redis", "mlflow", "prometheus", "alertmanager", "grafana", "loki", "alloy",
    "caddy",
}  # fmt: skip
SECRETS = {"slack_webhook_url", "bybit_api_key", "bybit_api_secret", "postgres_password"}
STATEFUL = {"methtrader", "postgres", "redis", "mlflow", "prometheus", "alertmanager", "loki", "grafana"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|API_KEY|TOKEN|WEBHOOK", re.IGNORECASE)


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of every volume entry of a service."""
    return [tuple(entry.split(":")[:2]) for entry in service.get("volumes", [])]  # type: ignore[misc]


def _compose_plugin() -> bool:
    return shutil.which("docker") is not None and run("docker", "compose", "version").returncode == 0


@pytest.mark.skipif(
    not _compose_plugin(),
    reason="no `docker compose` here (a docker CLI without the compose plugin); structural tests run instead",
)
def test_docker_compose_config_is_valid() -> None:
    result = run("docker", "compose", "-f", str(COMPOSE), "config", "-q")
    assert result.returncode == 0, output(result)


def test_the_stack_has_every_service_with_a_healthcheck() -> None:
    assert set(services()) == SERVICES
    for name, service in services().items():
        check = service.get("healthcheck")
        assert check, f"{name}: no healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL") and len(check["test"]) > 1, name
        assert {"interval", "timeout", "retries"} <= set(check), name
        assert service.get("restart") == "unless-stopped", name


def test_depends_on_waits_for_healthy_services() -> None:
    for name, service in services().items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services() and "healthcheck" in services()[dependency], (name, dependency)
            assert condition == {"condition": "service_healthy"}, (name, dependency)


def test_named_volumes_are_declared_and_bind_mounts_exist() -> None:
    declared = set(compose()["volumes"])
    used = set()
    for name, service in services().items():
        named = [source for source, _ in mounts(service) if not source.startswith((".", "/"))]
        used.update(named)
        assert set(named) <= declared, name
        for source, _ in mounts(service):
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), f"{name}: {source} missing"
        if name in STATEFUL:
            assert named, f"{name} keeps state but has no named volume"
    assert used == declared, f"declared but unused: {declared - used}"


def test_secrets_are_files_and_never_plain_environment() -> None:
    secrets = compose()["secrets"]
    assert set(secrets) >= SECRETS
    for name, secret in secrets.items():
        assert secret == {"file": f"./secrets/{name}"}, name
    assert (DEPLOY / "secrets" / ".gitignore").read_text().splitlines()[-2:] == ["*", "!.gitignore"]
    for name, service in services().items():
        mounted = set(service.get("secrets", []))
        assert mounted <= set(secrets), name
        for key, value in service.get("environment", {}).items():
            if SECRET_NAME.search(key) and key != "GF_USERS_ALLOW_SIGN_UP":
                assert key.endswith("_FILE"), f"{name}: {key} must be a *_FILE"
            if key.endswith("_FILE"):
                assert value.removeprefix("/run/secrets/") in mounted, f"{name}: {key}={value} not mounted"
    methtrader = services()["methtrader"]
    assert set(methtrader["secrets"]) >= SECRETS
    alertmanager_config = (DEPLOY / "alertmanager" / "alertmanager.yml").read_text()
    assert "/run/secrets/slack_webhook_url" in alertmanager_config
    assert "slack_webhook_url" in services()["alertmanager"]["secrets"]


def test_methtrader_is_built_from_the_repository_and_reaches_its_servers() -> None:
    service = services()["methtrader"]
    assert (DEPLOY / service["build"]["context"]).resolve() == REPO
    assert (REPO / service["build"]["dockerfile"]) == DEPLOY / "Dockerfile"
    env = service["environment"]
    assert (
        env["METHTRADER_DATABASE_URL"].startswith("postgresql+psycopg://")
        and "@postgres:5432/" in env["METHTRADER_DATABASE_URL"]
    )
    assert env["METHTRADER_REDIS_URL"] == "redis://redis:6379/0"
    assert env["METHTRADER_MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert service["command"] == ["methtrader", "run", "--quiet"]


def test_prometheus_targets_and_grafana_sources_are_compose_services() -> None:
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = [
        t for job in prometheus["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]
    ]
    targets += [
        t
        for am in prometheus["alerting"]["alertmanagers"]
        for sc in am["static_configs"]
        for t in sc["targets"]
    ]
    sources = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "datasources.yml").read_text()
    )
    targets += [source["url"].removeprefix("http://") for source in sources["datasources"]]
    for target in targets:
        host = target.split(":")[0]
        assert host in SERVICES or host == "localhost", target
    assert "9464" in services()["methtrader"]["expose"]


def test_dockerfile_installs_the_locked_requirements_then_the_package() -> None:
    text = re.sub(r"\\\n\s*", " ", (DEPLOY / "Dockerfile").read_text())  # join continued lines
    instructions = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert instructions[0] == "FROM python:3.11-slim"
    assert "RUN pip install -r requirements/run.lock" in instructions
    assert any(line.startswith("RUN pip install --no-deps .") for line in instructions)
    assert instructions.index("RUN pip install -r requirements/run.lock") < next(
        i for i, line in enumerate(instructions) if line.startswith("RUN pip install --no-deps .")
    )
    cmd = next(line for line in instructions if line.startswith("CMD "))
    assert json.loads(cmd.removeprefix("CMD ")) == ["methtrader", "run", "--quiet"]
    user = next(line for line in instructions if line.startswith("USER "))
    assert user.split()[1] not in ("root", "0")
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    for line in instructions:
        if line.startswith("COPY "):
            *sources, _ = line.split()[1:]
            for source in sources:
                assert (REPO / source).exists(), source
                assert f"!{source}" in ignore or f"!{source}/" in ignore, (
                    f"{source} excluded from the context"
                )


def test_caddy_proxies_grafana_and_the_health_endpoints() -> None:
    text = (DEPLOY / "caddy" / "Caddyfile").read_text()
    body = re.sub(r"#[^\n]*", "", text)
    assert body.count("{") == body.count("}")
    upstreams = dict(re.findall(r"reverse_proxy\s+(?:@\w+\s+)?([\w-]+):(\d+)", body))
    assert upstreams == {"grafana": "3000", "methtrader": "9464"}
    assert "@health path /healthz /readyz" in body  # /metrics is not published
    assert "9464" in services()["methtrader"]["expose"]
    assert services()["methtrader"]["environment"]["METHTRADER_METRICS_HOST"] == "0.0.0.0"
    assert services()["caddy"]["ports"] == ["80:80", "443:443"]
