"""polydiff-tabular: TabDDPM-style diffusion of mixed numeric and categorical tables (Kotelnikov et al. 2023)."""
