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
