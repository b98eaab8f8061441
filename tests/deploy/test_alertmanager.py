"""Alertmanager: the config passes amtool, routes by severity to two Slack receivers, inhibits a
warning under the critical of the same alert, and takes the webhook URL only from a secret file."""

from pathlib import Path

import yaml

from deploy.paths import DEPLOY, output, run

CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"
WEBHOOK_FILE = "/run/secrets/slack_webhook_url"


def config() -> dict:
    return yaml.safe_load(CONFIG.read_text())


def test_config_passes_amtool(amtool: str) -> None:
    result = run(amtool, "check-config", str(CONFIG))
    assert result.returncode == 0, output(result)
    assert (
        "SUCCESS" in result.stdout and "2 receivers" in result.stdout and "1 inhibit rules" in result.stdout
    )


def test_routes_send_critical_and_warning_to_their_receivers(amtool: str) -> None:
    for labels, receiver in [
        (["severity=critical", "alertname=MethtraderGuardNotActive"], "slack-critical"),
        (["severity=warning", "alertname=MethtraderGuardNotActive"], "slack-warnings"),
        (["alertname=SomethingWithoutSeverity"], "slack-warnings"),
    ]:
        result = run(
            amtool,
            "config",
            "routes",
            "test",
            f"--config.file={CONFIG}",
            f"--verify.receivers={receiver}",
            *labels,
        )
        assert result.returncode == 0, (labels, output(result))
        assert result.stdout.strip() == receiver


def test_webhook_url_comes_only_from_the_secret_file(amtool: str, tmp_path: Path) -> None:
    text = CONFIG.read_text()
    assert config()["global"]["slack_api_url_file"] == WEBHOOK_FILE
    assert "hooks.slack.com" not in text and "api_url:" not in text.replace("slack_api_url_file:", "")
    # amtool does not open the file: the check passes where the secret does not exist ...
    missing = tmp_path / "alertmanager-missing-secret.yml"
    missing.write_text(text.replace(WEBHOOK_FILE, str(tmp_path / "no-such-secret")))
    result = run(amtool, "check-config", str(missing))
    assert result.returncode == 0, output(result)
    # ... and without the file setting there is no URL at all: amtool rejects the config.
    stripped = tmp_path / "alertmanager-no-url.yml"
    stripped.write_text("\n".join(line for line in text.splitlines() if "slack_api_url_file" not in line))
    result = run(amtool, "check-config", str(stripped))
    assert result.returncode != 0 and "no global Slack API URL" in result.stdout, output(result)


def test_receivers_send_resolved_and_link_the_runbook() -> None:
    for receiver in config()["receivers"]:
        for slack in receiver["slack_configs"]:
            assert slack["send_resolved"] is True and slack["channel"].startswith("#")
            assert "{{ .Annotations.runbook_url }}" in slack["text"]


def test_critical_inhibits_the_warning_of_the_same_alert_and_target() -> None:
    route = config()["route"]
    assert route["group_by"] == ["alertname", "job", "instance"]
    (rule,) = config()["inhibit_rules"]
    assert rule["source_matchers"] == ['severity = "critical"']
    assert rule["target_matchers"] == ['severity = "warning"']
    assert {"alertname", "job", "instance"} <= set(rule["equal"])
