"""Declarative automation: derived tables and images follow ingestion without a manual run."""

from __future__ import annotations

from dagster import AssetSelection, AutomationConditionSensorDefinition, DefaultSensorStatus

# Switched on by default: without it the eager conditions on downstream assets never fire.
downstream_automation = AutomationConditionSensorDefinition(
    "downstream_automation",
    target=AssetSelection.groups("warehouse", "analytics", "images"),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    description="Recomputes coverage, derived tables and images after new ingestion.",
)
