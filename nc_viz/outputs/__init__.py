"""What ncviz writes (DESIGN 4: `outputs/`): per-image records, reports, figures."""
