"""Persistence of decoded telemetry: the InfluxDB contract (what is written, how), the
writer that posts it, the disk spool that holds it while InfluxDB cannot, and the
dead letters."""
