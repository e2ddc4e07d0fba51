"""Minimal V4L2 ioctl bindings (x86_64 / aarch64 Linux struct layouts), no C extension."""
