"""How every stage writes its files: atomically, resumably, with canonical JSON and sha256 fingerprints."""
