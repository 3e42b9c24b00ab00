"""The Flask API (application factory and blueprints) — built on the engine in orchestrator/."""
