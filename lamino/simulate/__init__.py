"""lamino.simulate: scanner digital twins (spectra, detectors, instruments) and the acquisition simulator.

``simulate(phantom, geometry, scanner=Scanner.preset(...), seed=...)`` returns a :class:`~lamino.io.Scan` of raw
detector readings with flats, darks, ground truth and provenance. The forward model (design.md):
I = Σ_E N₀(E)·η(E)·w(E)·exp(−Σ_m μ_m(E)·L_m), each material projected once, then the detector chain.
``Scan`` and ``flat_dark_correct`` live in the core (:mod:`lamino.io`) and are re-exported here. The instrument
presets of :meth:`Scanner.preset` are package data (``presets.toml``, checked by :mod:`lamino.simulate.presets`).
"""

from lamino.io import GroundTruth, Scan, flat_dark_correct
from lamino.simulate.detector import Detector
from lamino.simulate.scanner import Scanner
from lamino.simulate.simulate import simulate
from lamino.simulate.spectrum import Spectrum

__all__ = ["Detector", "GroundTruth", "Scan", "Scanner", "Spectrum", "flat_dark_correct", "simulate"]
