"""Uploads: multipart uploads and copies, write-back of staged files, the crash journal."""
