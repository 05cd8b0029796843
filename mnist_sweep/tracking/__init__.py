"""The `tracking` config group: a trial's MLflow run (runs), its per-epoch metrics sent beside
training (delivery), and its figures (plots), drawn by a helper process (render)."""
