"""The S3 client: boto3 set up for S3-compatible stores, one method per request, errors as errno.

Nothing here knows about files, caches or FUSE; everything above reaches the bucket through
:class:`ocifs.s3.store.Store`.
"""
