"""dropd: the drop-folder uploader for the Canvas and Expand Provisioning API."""

__version__ = "0.1.0"
