"""Capacity planning (lab 11): from a workload to a fleet and its cost.

``trace`` (the shipped day of traffic and what a plan reads from it), ``sizing`` (how many requests a
replica's memory holds), ``perfmodel`` (step times from FLOPs and bytes, calibrated fractions, the
highest rate within an SLO), ``fleet`` (replicas, GPUs, cost), ``prices`` (GPU-hour prices with source
and date), ``spec`` and ``plan`` (the chain behind ``inferlab plan``), ``explore`` (the notebook's
interactive table).
"""
from inferlab.capacity import perfmodel, prices, trace
from inferlab.capacity.fleet import fleet
from inferlab.capacity.plan import cheapest, make_plan, report, table
from inferlab.capacity.sizing import layout_concurrency, replica_concurrency
from inferlab.capacity.spec import PlanError, Spec, load, parse

__all__ = ["PlanError", "Spec", "cheapest", "fleet", "layout_concurrency", "load", "make_plan", "parse", "perfmodel", "prices",
           "replica_concurrency", "report", "table", "trace"]
