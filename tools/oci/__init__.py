"""Deterministic OCI images for py_binary targets (see build_image.py and docs/adr/0002-oci-images.md)."""
