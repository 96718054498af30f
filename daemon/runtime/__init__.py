"""The running service: the scheduler, each group's runtime, the upload pool, signals, systemd."""
