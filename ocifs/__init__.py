"""ocifs: an S3-compatible bucket as a local directory, compatible with s3fs-fuse's object format."""

__version__ = "0.1.0"
