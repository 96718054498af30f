"""A group's batches on disk: the work folder, manifests, history, retention, requeueing."""
