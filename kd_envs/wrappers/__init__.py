"""Wrappers: context drift schedules for the study of interference inside one task."""

from kd_envs.wrappers.drift import DRIFT_KINDS, PHASE_UNITS, ContextDrift, DriftSchedule

__all__ = ["DRIFT_KINDS", "PHASE_UNITS", "ContextDrift", "DriftSchedule"]
