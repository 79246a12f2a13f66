"""Pictures of the estimates: memory and speed charts, predicted against measured.

- `series`: the numbers (memory and speed swept over context length or batch)
- `figure`: a chart as plain data (panels, areas, lines, reference lines, ticks)
- `charts`: series → figures
- `matplotlib_render` (PNG/SVG files, needs the `plot` extra), `svg` (inline SVG, standard
  library only) and `terminal` (plain text): figures → output

Nothing here imports matplotlib at import time.
"""
