"""n2v 0.3.x import paths (``n2v.internals...``), so that notebooks only replace ``n2v`` by ``n2v_tf``."""
