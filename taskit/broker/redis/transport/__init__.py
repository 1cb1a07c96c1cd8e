"""How the Redis broker talks to Redis: the fast hiredis transport (``fast``, ``sync``) and its
command packing (``packing``)."""
