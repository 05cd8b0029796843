"""The `data` config group: where MNIST comes from (sources), its splits (mnist), and the noise
the robustness tests add (noise)."""
