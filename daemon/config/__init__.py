"""The configuration: its settings as typed dataclasses, loading the TOML, and every key checked."""
