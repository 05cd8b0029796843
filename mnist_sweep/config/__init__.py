"""The configs as code: where they live and their one check (registry), the typed schemas of each
group (schema, train_options), and the conditional search spaces sweeps name (search_spaces)."""
