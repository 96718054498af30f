"""The configuration: its settings as typed dataclasses (`model`), what each key means
(`keys`), loading and checking the TOML (`load`, `tables`, `overlap`, `toml`), and the
reference and example configs written from the settings (`reference`, `examples`)."""
