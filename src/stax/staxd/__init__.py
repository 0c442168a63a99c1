"""staxd, the optional root broker that opens perf descriptors for unprivileged stax-servers.

Also home of ``stax setup``, which installs it as a systemd service.
"""
