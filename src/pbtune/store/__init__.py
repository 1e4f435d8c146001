"""Durable run state: the append-only journal and verified checkpoint files (no Ray, no torch).

Why a layer of its own, inside the engines: the engine writes checkpoints and journal events, and
the results layer (rollback, the result writer) and ``pbtune resume`` read them; keeping both
formats here lets every one of them import it without the engine importing upward.
"""
