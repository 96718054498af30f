"""A drop folder's files: watched, classified, and ready once complete."""
