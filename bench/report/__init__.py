"""Reading records: tables in every format, plots, one record shown, a module exported."""

TABLES = ("modules", "controls", "patch", "composition")  # the report's tables, in its order (``bench report --table``)
