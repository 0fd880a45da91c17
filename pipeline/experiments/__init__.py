"""The paper's tables from many runs: the experiment grid, reading runs, mean ± std, significance, the table."""
