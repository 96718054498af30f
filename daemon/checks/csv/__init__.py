"""CSV files as the provider's server reads them: formats, row scanning, counting."""
