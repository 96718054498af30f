"""Configuration files for tests: written to a folder, with the tables dropd requires."""

from __future__ import annotations

from pathlib import Path

TEST_ENVIRONMENT = """
[environments.test]
token_url = "https://apps-test.iu.edu/uaa-stg/oauth/token"
base_url = "https://lms-lti-3rdpartyprovisioning-stg.apps-test.iu.edu"
client_id = "my-unit"
client_secret_env = "DROPD_TEST_SECRET"
"""


def write(tmp_path: Path, text: str, name: str = "dropd.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def group(body: str, key: str = "music") -> str:
    """A [groups.KEY] table on the test environment, with `body` added."""
    lines = [f"[groups.{key}]", body]
    if "environment =" not in body:
        lines.append('environment = "test"')
    if "folder =" not in body:
        lines.append(f'folder = "/srv/drop/{key}"')
    return TEST_ENVIRONMENT + "\n".join(lines) + "\n"


def state_dir(path: str) -> str:
    return f'[daemon]\nstate_dir = "{path}"\n'
