"""Reading finished sweeps: the trial table and `mnist-sweep-report` (report), the robustness
summary (robustness) against the notebook's models (references), and where studies are (studies)."""
