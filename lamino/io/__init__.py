"""File I/O of lamino (core: imports no phantoms, simulate, recon or studies), one job per module:

- :mod:`lamino.io.files`: atomic writes (a temporary name, then a rename) and overwrite checks;
- :mod:`lamino.io.correction`: flat/dark correction into line integrals;
- :mod:`lamino.io.scan`: the :class:`Scan` dataset and its :class:`GroundTruth`;
- :mod:`lamino.io.volume`: the :class:`Volume` dataset (a reconstruction and how it was made);
- :mod:`lamino.io.nxtomo`: NeXus files, NXtomo scans and NXtomoproc volumes;
- :mod:`lamino.io.tiff`: TIFF export of a scan.

The names below are re-exported so that ``from lamino.io import Scan`` (etc.) works.
"""

from lamino.io.correction import flat_dark_correct
from lamino.io.files import atomic_write
from lamino.io.nxtomo import DARK, FLAT, FORMAT, FORMAT_VERSION, NXTOMO_VERSION, PROJECTION, VOLUME_FORMAT
from lamino.io.scan import GroundTruth, Scan
from lamino.io.volume import Volume

__all__ = ["DARK", "FLAT", "FORMAT", "FORMAT_VERSION", "NXTOMO_VERSION", "PROJECTION", "VOLUME_FORMAT", "GroundTruth",
           "Scan", "Volume", "atomic_write", "flat_dark_correct"]
