"""n2v 0.3.x's ``n2v.internals.N2V_DataGenerator``; the class lives in :mod:`n2v_tf.data`."""
from ..data import N2V_DataGenerator

__all__ = ["N2V_DataGenerator"]
