"""LM back ends: model resolution, the embedded llama.cpp engine, robust structured output."""
