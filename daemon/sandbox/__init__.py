"""A local stand-in for the provider's API (`dropd sandbox`), for tests and the demo."""
