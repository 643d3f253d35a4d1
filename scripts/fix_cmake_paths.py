"""Point the CMake files of ROS 2 PyPI wheels at this interpreter.

The wheels' CMake exports name the build machine's paths (/opt/python/cp311-cp311/...). CMake
then fails with "Imported target ... includes non-existent path". This rewrites those prefixes,
in every *.cmake file under the virtual environment's share/, to this interpreter's include
directory and the venv's site-packages. Idempotent.
"""

import sys
import sysconfig
from pathlib import Path

OLD_INCLUDE = "/opt/python/cp311-cp311/include/python3.11"
OLD_SITE = "/opt/python/cp311-cp311/lib/python3.11/site-packages"


def main() -> int:
    prefix = Path(sys.prefix)
    include = sysconfig.get_paths()["include"]
    site = sysconfig.get_paths()["purelib"]
    changed = 0
    for path in (prefix / "share").rglob("*.cmake"):
        text = path.read_text(errors="surrogateescape")
        new = text.replace(OLD_INCLUDE, include).replace(OLD_SITE, site)
        if new != text:
            path.write_text(new, errors="surrogateescape")
            changed += 1
    print(f"fix_cmake_paths: rewrote {changed} CMake files under {prefix / 'share'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
