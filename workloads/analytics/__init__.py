"""Partner analytics: each party's web app, and Woodgrove's k-anonymous aggregates."""
