"""The size-vs-quality picture: every variant as a point, the Pareto frontier, the gate
and the served variant; as a PNG, a self-contained HTML page and a text summary."""
