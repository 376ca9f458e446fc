"""Grafana dashboards as code: built from the TMDB and the panel layouts in
`config/dashboards/`, and pushed to a Grafana server."""
