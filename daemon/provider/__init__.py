"""The provider's API: OAuth2 tokens and the multipart upload, over verified TLS."""
