"""The provider's formats, checked before anything goes up: CSV files, message.properties,
dropped ZIPs, and the guard against a broken export."""
