"""The FUSE face: the thin pyfuse3 Operations class and the errno boundary."""
