"""What dropd shows of itself: status.json, metrics, and whether a dropd still runs."""
