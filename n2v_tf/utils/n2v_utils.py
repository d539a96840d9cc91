"""n2v 0.3.x's ``n2v.utils.n2v_utils`` names, from their n2v_tf homes (:mod:`n2v_tf.masking`, :mod:`n2v_tf.qc`)."""
from ..masking import (manipulate_val_data, pm_identity, pm_mean, pm_median, pm_normal_additive, pm_normal_fitted,
                       pm_normal_withoutCP, pm_uniform_withCP, pm_uniform_withoutCP, tta_backward, tta_forward)
from ..qc import autocorrelation

__all__ = ["autocorrelation", "manipulate_val_data", "pm_identity", "pm_mean", "pm_median", "pm_normal_additive",
           "pm_normal_fitted", "pm_normal_withoutCP", "pm_uniform_withCP", "pm_uniform_withoutCP", "tta_backward",
           "tta_forward"]
