"""Metadata: s3fs's object format, inode numbers, lookups, listings and namespace changes."""
