"""What the control server and ``mattecam ctl`` agree on: the address and the token header.

Kept free of heavy imports: ``mattecam ctl`` reads it without loading OpenCV or the pipeline.
"""

from __future__ import annotations

#: The only address the control server listens on, and the one the client talks to.
HOST = "127.0.0.1"
#: The request header that carries the token published in the endpoint file.
TOKEN_HEADER = "X-Mattecam-Token"
