"""A library with its own import root (`imports = ["imp"]`), like generated protos have."""

WORDS = "hello from the image"
