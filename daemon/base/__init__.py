"""What every layer stands on: the error tree, names as people see them, crash-safe writes,
folders held by descriptor, locks, timestamps, logging and records for people."""
