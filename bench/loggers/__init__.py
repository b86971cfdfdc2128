"""Built-in loggers: observer plugins of ``on_run_event`` that do nothing unless ``MODBENCH_LOG`` names them."""
