"""llm-heuristics terminal user interface (Textual). A thin client of the engine."""
