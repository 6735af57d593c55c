"""docker-compose.yml, the Dockerfile and the configs they mount: valid, pinned, read-only, healthy,
and consistent with each other (service names, ports, paths).

The fast, daemon-free half: the compose file is validated by Debian's ``docker-compose config -q``
(the real parser), and the configs it mounts are the very files the other tests run (the exporter
config is loaded by the real loader here and run by tests/integration/test_dashboard_queries.py).
``make compose-test`` (tests/compose/run.py) runs the stack itself on a real Docker engine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from exporter.commands import healthcheck
from exporter.config import load_file, parse_duration
from grafana import panels

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
# The `ha` profile's services (docs/scaling.md, "The compose profile"); tested at the end.
HA_SERVICES = {"feedwatch-shard-0", "feedwatch-shard-1", "prometheus-a", "prometheus-b", "alertmanager-a",
               "alertmanager-b", "victoriametrics"}
COMPOSE = yaml.safe_load(COMPOSE_FILE.read_text())
SERVICES: dict = COMPOSE["services"]
PASSWORD_VAR = "GRAFANA_ADMIN_PASSWORD"


def compose(*args: str, password: str | None = "not-a-real-password") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != PASSWORD_VAR}
    if password is not None:
        env[PASSWORD_VAR] = password
    binary = shutil.which("docker-compose")
    assert binary, "Debian's docker-compose is required (apt-get install --no-install-recommends docker-compose)"
    return subprocess.run([binary, "-f", str(COMPOSE_FILE), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def bind_mounts(service: dict) -> list[tuple[str, str, str]]:
    """(source, target, mode) of every bind mount (short syntax: ./src:/dst:ro)."""
    mounts = []
    for volume in service.get("volumes", []):
        parts = volume.split(":")
        if parts[0].startswith((".", "/")):
            mounts.append((parts[0], parts[1], parts[2] if len(parts) > 2 else "rw"))
    return mounts


def mount_target(service: str, source: str) -> str:
    (target,) = [t for s, t, _ in bind_mounts(SERVICES[service]) if s.rstrip("/") == source]
    return target


# --- the compose file ------------------------------------------------------------------------------

def test_docker_compose_config_accepts_the_file():
    result = compose("config", "-q")
    assert result.returncode == 0, result.stderr


def test_grafana_admin_password_has_no_default():
    result = compose("config", "-q", password=None)
    assert result.returncode != 0
    assert PASSWORD_VAR in result.stderr
    assert COMPOSE_FILE.read_text().count(f"${{{PASSWORD_VAR}:?") == 1
    env = SERVICES["grafana"]["environment"]
    assert env["GF_SECURITY_ADMIN_PASSWORD"].startswith(f"${{{PASSWORD_VAR}:?")


def test_the_stack_has_every_service():
    assert set(SERVICES) - HA_SERVICES == {"simulator", "simulator-bot", "feedwatch", "prometheus", "alertmanager",
                                          "grafana"}
    assert HA_SERVICES <= set(SERVICES)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_images_are_pinned(name):
    service = SERVICES[name]
    image = service["image"]
    repo, _, tag = image.rpartition(":")
    assert repo and tag and "/" not in tag, f"{name}: {image} has no tag"
    assert tag != "latest"
    if "build" in service:
        assert service["build"]["context"] == "."       # our own image, built from this tree
    else:
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: {image} is not pinned to a release"


def _binary_version(binary: str) -> str:
    output = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    return re.search(r"version (\d+\.\d+)\.", output.stdout + output.stderr).group(1)


def test_prometheus_and_alertmanager_images_match_the_tested_binaries():
    """The integration tests run Debian's binaries; the images run the same minor release."""
    assert SERVICES["prometheus"]["image"].startswith(f"prom/prometheus:v{_binary_version('prometheus')}.")
    assert SERVICES["alertmanager"]["image"].startswith(
        f"prom/alertmanager:v{_binary_version('prometheus-alertmanager')}.")


def test_grafana_image_matches_the_dashboard_sdk_build():
    from importlib.metadata import version
    sdk_grafana = version("grafana-foundation-sdk").split("!")[1]          # "<build>!11.6.0"
    major_minor = ".".join(sdk_grafana.split(".")[:2])
    assert SERVICES["grafana"]["image"].startswith(f"grafana/grafana:{major_minor}.")
    assert major_minor.startswith("11.")


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_bind_mounts_are_read_only_and_exist_in_the_repository(name):
    for source, target, mode in bind_mounts(SERVICES[name]):
        assert mode == "ro", f"{name}: {source} -> {target} must be mounted :ro"
        path = (ROOT / source).resolve()
        assert path.is_relative_to(ROOT), f"{name}: {source} is outside the repository"
        assert path.exists(), f"{name}: {source} does not exist"


def test_state_lives_in_named_volumes():
    declared = set(COMPOSE["volumes"])
    for name in ("prometheus", "alertmanager", "grafana"):
        named = [v.split(":")[0] for v in SERVICES[name]["volumes"] if not v.startswith((".", "/"))]
        assert named, f"{name} keeps its data in a named volume"
        assert set(named) <= declared
    used = {v.split(":")[0] for s in SERVICES.values() for v in s.get("volumes", []) if not v.startswith((".", "/"))}
    assert used == declared, "every declared volume is used"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_has_a_healthcheck_and_waits_for_healthy_dependencies(name):
    service = SERVICES[name]
    check = service["healthcheck"]
    assert check["test"][0] == "CMD" and len(check["test"]) > 1
    for key in ("interval", "timeout", "retries"):
        assert key in check
    for dependency, condition in service.get("depends_on", {}).items():
        assert dependency in SERVICES
        assert condition == {"condition": "service_healthy"}


def test_ports_are_published_on_loopback_only():
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name}: {port}"


# --- consistency between the files ----------------------------------------------------------------

def _prometheus_config() -> dict:
    return yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())


def _scrape_targets(job: str) -> list[str]:
    (config,) = [c for c in _prometheus_config()["scrape_configs"] if c["job_name"] == job]
    return [t for static in config["static_configs"] for t in static["targets"]]


def test_prometheus_reaches_services_by_their_compose_names():
    for target in _scrape_targets("feedwatch") + _scrape_targets("alertmanager"):
        host, port = target.split(":")
        assert host in SERVICES, f"prometheus.yml target {target} is not a compose service"
    (exporter_target,) = _scrape_targets("feedwatch")
    assert exporter_target.split(":")[1] == load_file(str(ROOT / "deploy/feedwatch.yml")).listen.rsplit(":", 1)[1]
    for alerting in _prometheus_config()["alerting"]["alertmanagers"]:
        for target in alerting["static_configs"][0]["targets"]:
            assert target == "alertmanager:9093"


def test_prometheus_loads_its_config_and_rules_from_the_mount():
    target = mount_target("prometheus", "./prometheus")
    assert f"--config.file={target}/prometheus.yml" in SERVICES["prometheus"]["command"]
    for pattern in _prometheus_config()["rule_files"]:
        assert list((ROOT / "prometheus").glob(pattern)), f"rule_files {pattern} matches nothing"


def test_alertmanager_loads_its_config_from_the_mount():
    target = mount_target("alertmanager", "./alertmanager")
    assert f"--config.file={target}/alertmanager.yml" in SERVICES["alertmanager"]["command"]
    assert (ROOT / "alertmanager" / "alertmanager.yml").exists()


def test_alertmanager_can_load_every_time_zone_its_config_names():
    # The prom/alertmanager image has no zoneinfo; Go reads ZONEINFO first, so every location the
    # time intervals use must be a real TZif file under the mounted directory ZONEINFO names.
    target = mount_target("alertmanager", "./alertmanager")
    zoneinfo = SERVICES["alertmanager"]["environment"]["ZONEINFO"]
    assert zoneinfo.startswith(target + "/")
    local = ROOT / "alertmanager" / zoneinfo[len(target) + 1:]
    config = (ROOT / "alertmanager" / "alertmanager.yml").read_text()
    locations = set(re.findall(r"location:\s*([A-Za-z_]+/[A-Za-z_]+)", config))
    assert locations == {"America/New_York"}
    for location in locations:
        data = (local / location).read_bytes()
        assert data.startswith(b"TZif"), f"{location} is not a TZif file"
        system = Path("/usr/share/zoneinfo") / location
        if system.exists():  # the committed copy is the same database the tests' binary uses
            assert data == system.read_bytes(), f"{location} differs from {system}: refresh it"


def test_grafana_provisioning_matches_the_mounts():
    assert mount_target("grafana", "./grafana/provisioning") == "/etc/grafana/provisioning"
    providers = yaml.safe_load((ROOT / "grafana/provisioning/dashboards/feedwatch.yml").read_text())["providers"]
    assert [p["options"]["path"] for p in providers] == [mount_target("grafana", "./grafana/dashboards")]
    home = SERVICES["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(providers[0]["options"]["path"] + "/")
    assert (ROOT / "grafana/dashboards" / Path(home).name).exists()


def test_grafana_datasource_points_at_the_prometheus_service():
    (source,) = yaml.safe_load((ROOT / "grafana/provisioning/datasources/prometheus.yml").read_text())["datasources"]
    assert source["uid"] == panels.PROVISIONED_DATASOURCE_UID
    url = urlsplit(source["url"])
    assert url.hostname == "prometheus" and url.port == 9090
    # $__rate_interval is computed from this: it must be the real scrape interval.
    assert parse_duration(source["jsonData"]["timeInterval"]) == parse_duration(
        _prometheus_config()["global"]["scrape_interval"])


def _simulators() -> dict[str, list[str]]:
    return {name: service["command"] for name, service in SERVICES.items()
            if service.get("command", [None])[0] == "simulate"}


def _flag(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_exporter_config_loads_and_watches_the_simulators():
    config = load_file(str(ROOT / "deploy/feedwatch.yml"))
    assert mount_target("feedwatch", "./deploy/feedwatch.yml") == "/etc/feedwatch/feedwatch.yml"
    assert SERVICES["feedwatch"]["command"] == ["run", "-c", "/etc/feedwatch/feedwatch.yml"]
    assert config.listen.startswith(":"), "inside the container the exporter listens on every interface"
    simulators = _simulators()
    assert {"simulator", "simulator-bot"} <= set(simulators)
    watched = set()
    for feed in config.feeds:
        url = urlsplit(feed.url)
        assert url.hostname in simulators, f"{feed.name}: {feed.url} is not a simulator service"
        command = simulators[url.hostname]
        assert str(url.port) == _flag(command, "--port"), feed.url
        assert _flag(command, "--host") == "0.0.0.0", "reachable from the exporter's container"
        assert url.hostname in SERVICES["feedwatch"]["depends_on"]
        assert not feed.market, "the simulator trades around the clock: the demo is live at any hour"
        if feed.symbols:
            assert sorted(feed.symbols) == sorted(_flag(command, "--symbols").split(","))
        watched.add(url.hostname)
    assert watched == set(simulators), "every simulator is watched"
    venues = {_flag(command, "--venue") for command in simulators.values()}
    assert {feed.kind for feed in config.feeds} == venues


def test_trading_state_lives_in_the_exporter_volume():
    config = load_file(str(ROOT / "deploy/feedwatch.yml"))
    volumes = {v.split(":")[1]: v.split(":")[0] for v in SERVICES["feedwatch"]["volumes"] if not v.startswith(".")}
    assert str(Path(config.trading.state_file).parent) in volumes
    # The bot's account prices its positions with a feed the exporter watches.
    feeds = {feed.name for feed in config.feeds}
    for account in config.trading.accounts:
        assert set(account.symbols.values()) <= feeds


def test_simulators_and_exporter_run_the_same_image():
    for name in _simulators():
        assert SERVICES[name]["image"] == SERVICES["feedwatch"]["image"]
        assert SERVICES[name]["healthcheck"]["test"][-1].count(_flag(SERVICES[name]["command"], "--port")) == 1


def test_compose_commands_are_accepted_by_the_cli():
    """Each feedwatch service's command line parses with the real argument parser."""
    from exporter.cli import build_parser
    parser = build_parser()
    for name in ["feedwatch", "feedwatch-shard-0", "feedwatch-shard-1", *_simulators()]:
        args = parser.parse_args(SERVICES[name]["command"])
        assert callable(args.func), name


# --- the `ha` profile (docs/scaling.md, "The compose profile") ------------------------------------

COMPOSE_HA = ROOT / "deploy" / "compose-ha"


def _ha_prometheus_config() -> dict:
    return yaml.safe_load((COMPOSE_HA / "prometheus.yml").read_text())


def _ha_targets(name: str) -> list[dict]:
    return yaml.safe_load((COMPOSE_HA / "targets" / name).read_text())


def test_docker_compose_config_accepts_the_ha_profile():
    result = compose("--profile", "ha", "config", "--services")
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == set(SERVICES)


def test_the_ha_profile_is_opt_in():
    for name, service in SERVICES.items():
        assert service.get("profiles", []) == (["ha"] if name in HA_SERVICES else []), name
    # Nothing the demo runs depends on the profile's services.
    for name in set(SERVICES) - HA_SERVICES:
        assert not set(SERVICES[name].get("depends_on", {})) & HA_SERVICES, name


def test_the_ha_prometheus_config_is_the_ha_pairs_plus_the_victoriametrics_snippet():
    expected = yaml.safe_load((ROOT / "deploy" / "ha" / "prometheus.yml").read_text())
    expected.update(yaml.safe_load((ROOT / "deploy" / "remote-storage" / "victoriametrics.yml").read_text()))
    assert _ha_prometheus_config() == expected


def test_promtool_accepts_the_ha_prometheus_config_as_mounted(tmp_path: Path):
    # The container's layout: the config, the targets and the rules side by side.
    for service in ("prometheus-a", "prometheus-b"):
        assert {t: s for s, t, _ in bind_mounts(SERVICES[service])} == {
            "/etc/prometheus/prometheus.yml": "./deploy/compose-ha/prometheus.yml",
            "/etc/prometheus/targets": "./deploy/compose-ha/targets",
            "/etc/prometheus/rules": "./prometheus/rules"}
    (tmp_path / "prometheus.yml").symlink_to(COMPOSE_HA / "prometheus.yml")
    (tmp_path / "targets").symlink_to(COMPOSE_HA / "targets")
    (tmp_path / "rules").symlink_to(ROOT / "prometheus" / "rules")
    result = subprocess.run(["promtool", "check", "config", str(tmp_path / "prometheus.yml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "FAILED" not in result.stdout + result.stderr, result.stdout + result.stderr


def test_the_pair_differs_by_replica_only():
    a, b = SERVICES["prometheus-a"], SERVICES["prometheus-b"]
    assert (a["environment"], b["environment"]) == ({"REPLICA": "a"}, {"REPLICA": "b"})
    assert a["command"] == b["command"]
    assert "--enable-feature=expand-external-labels" in a["command"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in a["command"]
    assert a["image"] == b["image"] == SERVICES["prometheus"]["image"]
    assert set(a["depends_on"]) == set(b["depends_on"]) == HA_SERVICES - {"prometheus-a", "prometheus-b"}


def test_every_shard_is_scraped_with_its_label_and_runs_its_own_share():
    groups = _ha_targets("feedwatch.yml")
    shards = {}
    for group in groups:
        (target,) = group["targets"]
        host, port = target.split(":")
        command = SERVICES[host]["command"]
        shards[group["labels"]["shard"]] = _flag(command, "--shard")
        assert port == load_file(str(ROOT / "deploy/feedwatch.yml")).listen.rsplit(":", 1)[1]
        # The same exporter config as the demo's exporter, mounted the same way.
        assert mount_target(host, "./deploy/feedwatch.yml") == "/etc/feedwatch/feedwatch.yml"
        assert command[:3] == SERVICES["feedwatch"]["command"]
    assert shards == {str(i): f"{i}/{len(groups)}" for i in range(len(groups))} and len(groups) == 2


def test_only_shard_0_keeps_trading_state():
    from exporter.sharding import Shard
    config = load_file(str(ROOT / "deploy/feedwatch.yml"))
    assert Shard(0, 2).share(config).config.trading is not None
    assert Shard(1, 2).share(config).config.trading is None
    state_dir = str(Path(config.trading.state_file).parent)
    assert f"feedwatch-shard-0-data:{state_dir}" in SERVICES["feedwatch-shard-0"]["volumes"]
    assert not [v for v in SERVICES["feedwatch-shard-1"]["volumes"] if not v.startswith(".")]


def test_the_alertmanagers_form_one_cluster_and_both_receive_every_alert():
    (group,) = _ha_targets("alertmanagers.yml")
    assert sorted(group["targets"]) == ["alertmanager-a:9093", "alertmanager-b:9093"]
    a, b = SERVICES["alertmanager-a"]["command"], SERVICES["alertmanager-b"]["command"]
    for command in (a, b):
        assert "--config.file=/etc/alertmanager/alertmanager.yml" in command
        assert "--cluster.listen-address=0.0.0.0:9094" in command
    # b joins a once a runs (a peer that does not resolve yet stops Alertmanager at start).
    assert [f for f in a if f.startswith("--cluster.peer=")] == []
    assert [f for f in b if f.startswith("--cluster.peer=")] == ["--cluster.peer=alertmanager-a:9094"]
    assert SERVICES["alertmanager-b"]["depends_on"] == {"alertmanager-a": {"condition": "service_healthy"}}
    for name in ("alertmanager-a", "alertmanager-b"):
        assert SERVICES[name]["image"] == SERVICES["alertmanager"]["image"]
        assert SERVICES[name]["environment"] == SERVICES["alertmanager"]["environment"]
        assert mount_target(name, "./alertmanager") == mount_target("alertmanager", "./alertmanager")


def test_victoriametrics_deduplicates_at_the_feedwatch_scrape_interval_and_runs_as_nobody():
    vm = SERVICES["victoriametrics"]
    (remote,) = _ha_prometheus_config()["remote_write"]
    assert remote["url"] == "http://victoriametrics:8428/api/v1/write"
    (job,) = [j for j in _ha_prometheus_config()["scrape_configs"] if j["job_name"] == "feedwatch"]
    dedup = [f.split("=", 1)[1] for f in vm["command"] if f.startswith("-dedup.minScrapeInterval=")]
    assert dedup == [job["scrape_interval"]]
    assert vm["user"] == "65534:65534" and vm["read_only"] is True
    # The release the integration tests run (Debian's package).
    installed = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "victoria-metrics"],
                               capture_output=True, text=True, timeout=30).stdout
    assert vm["image"] == f"victoriametrics/victoria-metrics:v{installed.split('+')[0]}"


# --- the Dockerfile --------------------------------------------------------------------------------

DOCKERFILE = (ROOT / "Dockerfile").read_text()
INSTRUCTIONS = [line for line in re.sub(r"\\\n", " ", DOCKERFILE).splitlines()
                if line.strip() and not line.lstrip().startswith("#")]


def _instructions(keyword: str) -> list[str]:
    return [line.split(None, 1)[1] for line in INSTRUCTIONS if line.split(None, 1)[0].upper() == keyword]


def test_dockerfile_base_images_are_pinned_python_311():
    for base in _instructions("FROM"):
        image = base.split()[0]
        if "@sha256:" in image:
            continue
        assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", image), image


def test_dockerfile_runs_as_a_non_root_user():
    (user,) = _instructions("USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) > 0
    assert INSTRUCTIONS.index(f"USER {user}") > max(i for i, line in enumerate(INSTRUCTIONS) if line.startswith("FROM"))


def test_dockerfile_exposes_checks_and_runs_feedwatch():
    assert _instructions("EXPOSE") == ["10119"]
    (check,) = _instructions("HEALTHCHECK")
    # The probe that knows the web config (TLS, basic auth): tests/integration/test_healthcheck.py.
    assert check.endswith('CMD ["feedwatch", "healthcheck"]')
    assert healthcheck.DEFAULT_URL == "http://127.0.0.1:10119/-/healthy"
    assert SERVICES["feedwatch"]["healthcheck"]["test"] == ["CMD", "feedwatch", "healthcheck"]
    assert _instructions("ENTRYPOINT") == ['["feedwatch"]']
    assert _instructions("CMD")[-1] == '["run", "-c", "/etc/feedwatch/feedwatch.yml"]'


def test_dockerignore_lets_in_exactly_what_the_dockerfile_copies():
    rules = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert rules[0] == "*", "an allow-list: everything is excluded unless re-included"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    copied = set()
    for copy in _instructions("COPY"):
        if copy.startswith("--from"):
            continue
        copied |= {Path(source).as_posix().rstrip("/") for source in copy.split()[:-1]}
    assert copied == allowed
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: missing"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'readme = "README.md"' in pyproject and "README.md" in copied
    # Every folder the wheel ships as a resource is in the build context, or the image's package
    # would lack its rules and configs.
    mapped = tomllib.loads(pyproject)["tool"]["setuptools"]["package-dir"].values()
    assert set(mapped) <= copied
    assert "exporter" in copied
