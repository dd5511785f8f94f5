"""Small data sets used to train and check detectors (see :mod:`trtedge.datasets.shapes`)."""
