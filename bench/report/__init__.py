"""Reading records: tables in every format, plots, one record shown, a module exported."""
