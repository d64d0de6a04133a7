"""Abuse control: the keyed source of a client, trapped and refused attempts. (Stub:
filled in by the abuse-resistance work.)"""

from __future__ import annotations
