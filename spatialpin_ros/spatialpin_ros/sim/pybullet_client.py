"""What every owner of a PyBullet client shares: closing it once, and use as a context
manager (ROS-free)."""

from __future__ import annotations

import pybullet as pb


class PyBulletClientOwner:
    """Mixin for a class that connects its own PyBullet client and keeps its id in
    ``client``: ``close()`` disconnects it (once; a negative id means closed), and ``with``
    closes it at the end of the block."""

    client: int

    def close(self) -> None:
        if self.client is not None and self.client >= 0:
            try:
                pb.disconnect(physicsClientId=self.client)
            except pb.error:
                pass
            self.client = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
