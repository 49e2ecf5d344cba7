"""MOUSE: Meta-Optimization Using Sequential Experiences.

In-context reinforcement learning: a transformer reads a reset-free stream of step records
(observation, action, reward, done, time) and outputs action logits, Q-values or action vectors.
"""

__version__ = "0.1.0"
