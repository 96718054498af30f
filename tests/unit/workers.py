"""Shared plumbing of the unit tests: one group's run-time state on real folders."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from daemon.base.errors import SecretError
from daemon.config.load import load_config
from daemon.runtime.group import GroupWorker, build_group


def music_worker(tmp_path: Path, moment: datetime, markers: str = "auto") -> GroupWorker:
    """Group `music` (its folder made under `tmp_path`) on an environment whose secret is
    unset and whose servers are not there: for what a group does before any upload."""
    folder = tmp_path / "music"
    folder.mkdir()
    path = tmp_path / "dropd.toml"
    path.write_text(
        f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n\n'
        '[environments.test]\ntoken_url = "http://127.0.0.1:9/oauth/token"\n'
        'base_url = "http://127.0.0.1:9"\nclient_id = "unit-a"\nclient_secret_env = "S"\n\n'
        f'[groups.music]\nenvironment = "test"\nfolder = "{folder}"\n'
        f'done_markers = "{markers}"\n',
        encoding="utf-8",
    )
    config = load_config(path)
    return build_group(config, config.groups["music"], SecretError("test", "unset"), lambda: moment)
