"""The composition root: the command line, the runtime that serves until stopped, and the wiring of
each mode (replay, inspect, generate, live, demo). The only package that imports across layers;
nothing below it imports it."""
