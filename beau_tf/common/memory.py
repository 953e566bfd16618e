"""How much memory this machine can still give a process."""

import os

GIB = 2**30


def available_bytes() -> int:
    """Memory a new allocation can get without swapping: Linux's
    MemAvailable (free memory plus the page cache it can drop), else the
    free physical pages."""
    try:
        with open("/proc/meminfo") as stream:
            for line in stream:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def process_bytes(pid: int | None = None) -> tuple[int, int]:
    """(resident, anonymous) bytes of a process (this one by default): RSS,
    and the part of it not backed by files (what memory-mapped files, which
    the page cache can drop, do not count in); (0, 0) once it is gone."""
    try:
        with open(f"/proc/{pid or 'self'}/status") as stream:
            fields = dict(line.split(":", 1) for line in stream)
    except (OSError, ValueError):
        return 0, 0

    def kib(name):
        return int(fields.get(name, "0 kB").split()[0]) * 1024

    return kib("VmRSS"), kib("RssAnon")
