"""Image-quality, resolution, crack-detection and acquisition metrics, each documented with its formula.

- :mod:`~lamino.studies.metrics.image`: RMSE, NRMSE, PSNR, SSIM, CNR;
- :mod:`~lamino.studies.metrics.resolution`: edge spread / MTF (in-plane and through-plane), Siemens-star
  resolution and isotropy, noise power spectrum;
- :mod:`~lamino.studies.metrics.cracks`: crack segmentation, Dice / precision / recall, detection by orientation;
- :mod:`~lamino.studies.metrics.coverage`: Fourier coverage (missing cone) of a geometry, dose proxy;
- :mod:`~lamino.studies.metrics.ideal`: the ideal-scan truth (the truth with the missing cone removed), the
  reference of the ``*_ideal`` fidelity metrics.
"""

from lamino.studies.metrics.coverage import (
    dose_proxy,
    fourier_coverage_map,
    missing_cone_fraction,
    plot_fourier_coverage,
)
from lamino.studies.metrics.cracks import (
    crack_detection,
    dice,
    orientation_class,
    otsu_threshold,
    precision,
    recall,
    score_cracks,
    segment_cracks,
)
from lamino.studies.metrics.ideal import ideal_filter, ideal_truth, measured_energy_fraction
from lamino.studies.metrics.image import cnr, nrmse, psnr, rmse, ssim
from lamino.studies.metrics.resolution import (
    edge_response,
    in_plane_resolution,
    noise_power_spectrum,
    star_resolution,
    through_plane_resolution,
)

__all__ = ["cnr", "crack_detection", "dice", "dose_proxy", "edge_response", "fourier_coverage_map",
           "ideal_filter", "ideal_truth", "in_plane_resolution", "measured_energy_fraction",
           "missing_cone_fraction", "noise_power_spectrum", "nrmse", "orientation_class", "otsu_threshold",
           "plot_fourier_coverage", "precision", "psnr", "recall", "rmse", "score_cracks", "segment_cracks", "ssim",
           "star_resolution", "through_plane_resolution"]
