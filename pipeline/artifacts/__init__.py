"""How every stage writes its files: atomically, resumably, with canonical JSON and sha256 fingerprints;
one run per output (locks); HDF5 attribute text."""
