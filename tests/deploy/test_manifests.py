"""The deployment files name only settings that exist (service/settings.py, the table in
docs/operations.md), with values the settings accept: pydantic-settings ignores an unknown
``EVX_*`` variable or secret file without a word, so a misspelt name would silently leave the
default in force. Reads deploy/compose.yaml, the Kubernetes manifests and the Dockerfile's ENV;
no container is started."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
#: Read by load_settings() itself, not a field of the table.
DIRECT = {"EVX_SECRETS_DIR"}
IMAGE = "evidence-exchange"


def setting_variables() -> set[str]:
    return {f"EVX_{name.upper()}" for name in Settings.model_fields} | DIRECT


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def evx_services() -> dict[str, dict[str, Any]]:
    """The compose services that run the API image (anchors and merge keys resolved)."""
    services = compose()["services"]
    found = {name: s for name, s in services.items() if str(s.get("image", "")).startswith(IMAGE)}
    assert {"migrate", "api"} <= set(found), sorted(services)
    return found


def k8s_documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        # Kubernetes objects only (kustomization.yaml is kustomize's own file)
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d and "metadata" in d]
    return docs


def k8s_environments() -> dict[str, dict[str, str]]:
    """EVX_* settings per source: the ConfigMap, and each container's own ``env`` list."""
    found: dict[str, dict[str, str]] = {}
    for doc in k8s_documents():
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] == "ConfigMap":
            found[name] = {k: str(v) for k, v in doc["data"].items()}
        template = doc.get("spec", {}).get("template", {}).get("spec", {})
        for container in template.get("containers", []) + template.get("initContainers", []):
            if "env" in container:
                found[f"{name}/{container['name']}"] = {
                    e["name"]: str(e.get("value", "")) for e in container["env"]}
    return found


def dockerfile_environment() -> dict[str, str]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(re.findall(r"(\w+)=(\S+)", line))
    return env


def evx_names(env: dict[str, str]) -> set[str]:
    return {key for key in env if key.startswith("EVX_")}


def test_compose_sets_only_known_settings() -> None:
    known = setting_variables()
    for name, service in evx_services().items():
        unknown = evx_names(service["environment"]) - known
        assert not unknown, f"compose service {name} sets {sorted(unknown)}: not settings"


def test_compose_secret_files_are_settings_or_named_by_one() -> None:
    """A file ``evx_<name>`` in EVX_SECRETS_DIR is read as setting ``<name>``; any other secret
    an API service mounts must be the file a ``*_FILE`` setting names."""
    fields = set(Settings.model_fields)
    for name, service in evx_services().items():
        env = service["environment"]
        secrets_dir = env["EVX_SECRETS_DIR"]
        named = {value for key, value in env.items() if key.endswith("_FILE")}
        for secret in service["secrets"]:
            target = secret["target"] if isinstance(secret, dict) else secret
            assert target.startswith("evx_"), (name, target)
            assert target.removeprefix("evx_") in fields or f"{secrets_dir}/{target}" in named, (
                f"compose service {name} mounts secret {target}: neither a setting nor a file "
                f"a *_FILE setting names")
        assert set(compose()["secrets"]) >= {
            s["source"] if isinstance(s, dict) else s for s in service["secrets"]}


def test_kubernetes_sets_only_known_settings() -> None:
    known = setting_variables()
    environments = k8s_environments()
    assert "ConfigMap/evx-config" in environments
    for source, env in environments.items():
        unknown = evx_names(env) - known
        assert not unknown, f"{source} sets {sorted(unknown)}: not settings"
    fields = set(Settings.model_fields)
    for doc in k8s_documents():
        if doc["kind"] == "Secret" and doc["metadata"]["name"].endswith("settings"):
            files = set(doc["stringData"])
            assert {f.removeprefix("evx_") for f in files} <= fields, (doc["metadata"], files)


def test_dockerfile_sets_only_known_settings() -> None:
    env = dockerfile_environment()
    assert env["EVX_DATA_DIR"] == "/var/lib/evx"
    assert evx_names(env) <= setting_variables()


@pytest.mark.parametrize("source", ["compose:api", "compose:migrate", "k8s:ConfigMap/evx-config"])
def test_values_are_accepted(source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The settings load with these values (and placeholder secrets), as the container would."""
    kind, _, name = source.partition(":")
    env = (evx_services()[name]["environment"] if kind == "compose"
           else k8s_environments()[name])
    env = {**dockerfile_environment(), **env}
    for key in [k for k in os.environ if k.startswith("EVX_")]:
        monkeypatch.delenv(key)
    for key in evx_names(env):
        monkeypatch.setenv(key, str(env[key]))
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for field in ("database_url", "s3_access_key", "s3_secret_key"):
        (secrets / f"evx_{field}").write_text("postgresql+psycopg://u:p@db/evx"
                                              if field == "database_url" else "placeholder")
    monkeypatch.setenv("EVX_SECRETS_DIR", str(secrets))
    settings = load_settings()
    assert settings.object_store == env["EVX_OBJECT_STORE"] == "s3"
    assert settings.s3_access_key is not None  # read from the secrets folder
    assert settings.resolved_database_url.startswith("postgresql+psycopg://")
